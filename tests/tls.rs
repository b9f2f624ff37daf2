//! regate over HTTPS and HTTP/2 with a CA made in the test: curl (h2 and HTTP/1.1), skopeo with
//! verification on, the Docker engine trusting the CA through `certs.d`, containerd through
//! `hosts.toml`; answers to HEAD without a body (curl, nghttp's frames, Go's h2 client); a
//! certificate replaced on disk during a pull; and a registry that itself serves TLS, as the
//! upstream and as a remote.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

/// An Env whose regate serves TLS with a certificate of `ca` for the local names.
fn tls_env(ca: &TestCa, builder: EnvBuilder) -> Env {
    builder.tls(&ca.local_server("gateway")).run()
}

fn cert_dir(dir: &Path) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("regate-ca-")
        .tempdir_in(dir)
        .expect("create the CA dir")
}

/// `HTTP_VERSION STATUS` of `curl -o /dev/null URL` with `extra` flags.
fn version_and_status(url: &str, extra: &[&str]) -> String {
    let mut args = vec!["-o", "/dev/null", "-w", "%{http_version} %{http_code}"];
    args.extend_from_slice(extra);
    args.push(url);
    let out = curl(&args);
    assert!(out.status.success(), "curl {url}: {}", show_output(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn https_serves_h2_and_http1_and_only_to_clients_trusting_the_ca() {
    let work = tempfile::tempdir().expect("dir");
    let ca = TestCa::new(work.path(), "ca");
    let env = tls_env(&ca, Env::builder().namespaces(PROJECTS));
    assert!(env.url().starts_with("https://"), "{}", env.url());
    let base = format!("{}/v2/", env.url());
    let ca_file = ca.ca_file.to_str().expect("utf-8 path");

    assert_eq!(
        version_and_status(&base, &["--cacert", ca_file, "--http2"]),
        "2 401"
    );
    assert_eq!(
        version_and_status(&base, &["--cacert", ca_file, "--http1.1"]),
        "1.1 401"
    );
    // The challenge points at the https realm, over h2 too (no Host header there).
    let out = curl(&[
        "--cacert",
        ca_file,
        "--http2",
        "-D",
        "-",
        "-o",
        "/dev/null",
        &base,
    ]);
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        head.contains(&format!("realm=\"https://{}/openshift/token\"", env.host())),
        "{head}"
    );

    // A token and a manifest over h2: the whole pipeline, not only the challenge.
    let image = Image::unique(10_000);
    env.seed("project-a/app", "v1", &image);
    let token = env.token("default", "project-a");
    let creds = format!("anything:{token}");
    let manifest_url = format!("{}/v2/project-a/app/manifests/v1", env.url());
    let token_url = format!(
        "{}/openshift/token?service=regate&scope=repository:project-a/app:pull",
        env.url()
    );
    let out = curl(&["--cacert", ca_file, "--http2", "-u", &creds, &token_url]);
    assert!(out.status.success(), "{}", show_output(&out));
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("token JSON");
    let bearer = format!(
        "Authorization: Bearer {}",
        body["token"].as_str().expect("token")
    );
    assert_eq!(
        version_and_status(
            &manifest_url,
            &[
                "--cacert",
                ca_file,
                "--http2",
                "-H",
                &bearer,
                "-H",
                "Accept: application/vnd.oci.image.manifest.v1+json"
            ]
        ),
        "2 200"
    );

    // Without the CA, verification fails: nothing is trusted by accident.
    let out = curl(&["-o", "/dev/null", &base]);
    assert!(!out.status.success(), "{}", show_output(&out));
    // Plain HTTP to the TLS port is not answered as HTTP.
    let out = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://{}/v2/", env.host()),
    ]);
    assert_ne!(String::from_utf8_lossy(&out.stdout).trim(), "401");
}

/// `skopeo copy` with verification on and `cert_dir` trusted for the docker side.
fn skopeo_verified(env: &Env, src: &str, dst: &str, token: &str, cert_dir: &Path) -> Output {
    let mut cmd = Command::new("skopeo");
    let creds = format!("anything:{token}");
    cmd.arg("--insecure-policy")
        .arg("--tmpdir")
        .arg(env.dir())
        .args(["copy", "--preserve-digests"]);
    if src.starts_with("docker://") {
        cmd.args(["--src-tls-verify=true", "--src-creds", &creds])
            .arg("--src-cert-dir")
            .arg(cert_dir);
    }
    if dst.starts_with("docker://") {
        cmd.args(["--dest-tls-verify=true", "--dest-creds", &creds])
            .arg("--dest-cert-dir")
            .arg(cert_dir);
    }
    cmd.arg(src).arg(dst);
    run_bounded(cmd, Duration::from_secs(600))
}

#[test]
fn skopeo_pushes_and_pulls_over_https_with_verification() {
    let work = tempfile::tempdir().expect("dir");
    let ca = TestCa::new(work.path(), "ca");
    let env = tls_env(&ca, Env::builder().namespaces(PROJECTS));
    let certs = cert_dir(work.path());
    fs::copy(&ca.ca_file, certs.path().join("ca.crt")).expect("copy the CA");
    let image = oci_layout(&env.dir().join("img"), &unique_bytes(200_000));
    let builder = env.token("builder", "project-a");

    let untrusted = skopeo_verified(
        &env,
        &env.oci_ref("img"),
        &env.docker_ref("project-a/app:v1"),
        &builder,
        work.path(),
    );
    expect_failure(&untrusted, "a push that does not trust the CA");
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert!(
        stderr.contains("certificate") || stderr.contains("x509"),
        "{stderr}"
    );

    let push = skopeo_verified(
        &env,
        &env.oci_ref("img"),
        &env.docker_ref("project-a/app:v1"),
        &builder,
        certs.path(),
    );
    env.expect_success(&push, "skopeo push over https");
    let pull = skopeo_verified(
        &env,
        &env.docker_ref("project-a/app:v1"),
        &env.oci_ref("pulled"),
        &env.token("default", "project-a"),
        certs.path(),
    );
    env.expect_success(&pull, "skopeo pull over https");
    let pulled = env.dir().join("pulled");
    assert_eq!(oci_manifest_digest(&pulled), image.manifest_digest);
    assert_eq!(
        digest_file(&oci_blob(&pulled, &image.layer_digest)),
        image.layer_digest
    );
}

/// `/etc/docker/certs.d/HOST/ca.crt`, removed on drop.
struct DockerTrust(PathBuf);

impl DockerTrust {
    fn new(host: &str, ca: &TestCa) -> DockerTrust {
        let dir = Path::new("/etc/docker/certs.d").join(host);
        fs::create_dir_all(&dir).expect("create certs.d (tests run as root)");
        fs::write(dir.join("ca.crt"), ca.pem()).expect("write certs.d/ca.crt");
        DockerTrust(dir)
    }
}

impl Drop for DockerTrust {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_docker_engine_logs_in_pushes_and_pulls_trusting_the_ca_in_certs_d() {
    // The engine skips verification for 127.0.0.0/8; the Docker bridge's address is verified.
    let bridge = docker_bridge_ip().expect("the Docker bridge docker0 has an IPv4 address");
    let work = tempfile::tempdir().expect("dir");
    let ca = TestCa::new(work.path(), "ca");
    let env = tls_env(
        &ca,
        Env::builder()
            .namespaces(PROJECTS)
            .listen(&format!("{bridge}:0")),
    );
    let host = env.host();
    let docker = env.docker();
    let builder = env.token("builder", "project-a");

    let login = docker.login(&host, "anything", &builder);
    expect_failure(&login, "docker login before the CA is trusted");

    let _trust = DockerTrust::new(&host, &ca);
    let login = docker.login(&host, "anything", &builder);
    env.expect_success(&login, "docker login over https");
    let tag = format!("{host}/project-a/app:v1");
    docker.image(&tag);
    let push = docker.run(&["push", &tag]);
    env.expect_success(&push, "docker push over https");
    docker.ok(&["rmi", &tag]);
    let login = docker.login(&host, "anything", &env.token("default", "project-a"));
    env.expect_success(&login, "docker login as default");
    let pull = docker.pull(&tag);
    env.expect_success(&pull, "docker pull over https");
    assert!(docker.has_image(&tag));
}

#[test]
fn containerd_pulls_with_the_ca_in_hosts_toml() {
    let work = tempfile::tempdir().expect("dir");
    let ca = TestCa::new(work.path(), "ca");
    let env = tls_env(&ca, Env::builder().namespaces(PROJECTS));
    let image = Image::runnable();
    env.seed("project-a/app", "v1", &image);
    let host = env.host();
    let hosts_dir = work.path().join("hosts");
    let host_dir = hosts_dir.join(&host);
    fs::create_dir_all(&host_dir).expect("create hosts dir");
    fs::write(
        host_dir.join("hosts.toml"),
        format!(
            "server = \"https://{host}\"\n\n[host.\"https://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"{}\"\n",
            ca.ca_file.display()
        ),
    )
    .expect("write hosts.toml");
    let reference = format!("{host}/project-a/app:v1");
    let containerd = Containerd::start(work.path());
    let creds = format!("anything:{}", env.token("default", "project-a"));
    let ctr = |args: &[&str]| containerd.ctr(args);
    let untrusted = ctr(&["images", "pull", "--user", &creds, &reference]);
    expect_failure(&untrusted, "ctr pull without the CA");
    let hosts = hosts_dir.to_str().expect("utf-8 path");
    let pull = ctr(&[
        "images",
        "pull",
        "--snapshotter",
        "native",
        "--hosts-dir",
        hosts,
        "--user",
        &creds,
        &reference,
    ]);
    env.expect_success(&pull, "ctr pull over https");
    assert!(
        String::from_utf8_lossy(&pull.stdout).contains("done"),
        "{}",
        show_output(&pull)
    );
}

#[test]
fn a_certificate_replaced_during_a_pull_keeps_the_pull_and_serves_new_connections() {
    let work = tempfile::tempdir().expect("dir");
    let first = TestCa::new(&work.path().join("first"), "first");
    let second = TestCa::new(&work.path().join("second"), "second");
    let served = first.local_server("gateway");
    let env = Env::builder().namespaces(PROJECTS).tls(&served).run();
    let layout = work.path().join("big");
    let image = oci_layout_big(&layout, 256 << 20);
    let seed = env.skopeo_copy(
        &format!("oci:{}:latest", layout.display()),
        &env.registry_ref("project-a/big:v1"),
        None,
    );
    env.expect_success(&seed, "seeding 256 MiB straight into the registry");
    fs::remove_dir_all(&layout).expect("free the layout");
    let digest = image.layer_digest.clone();
    let token = env.token("default", "project-a");
    let token_url = format!(
        "{}/openshift/token?service=regate&scope=repository:project-a/big:pull",
        env.url()
    );
    let first_ca = first.ca_file.to_str().expect("utf-8 path");
    let out = curl(&[
        "--cacert",
        first_ca,
        "-u",
        &format!("anything:{token}"),
        &token_url,
    ]);
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("token JSON");
    let bearer = format!(
        "Authorization: Bearer {}",
        body["token"].as_str().expect("token")
    );
    let target = work.path().join("pulled");
    // Slow enough (about 8 s) for the swap to happen mid-transfer.
    let mut pull = Command::new("curl");
    pull.args(["-sS", "--fail", "--http2", "--limit-rate", "32M", "-L"])
        .args(["--cacert", first_ca, "-H", &bearer, "-o"])
        .arg(&target)
        .arg(format!("{}/v2/project-a/big/blobs/{digest}", env.url()));
    let mut pull = pull.spawn().expect("start the pull");
    let started = Instant::now();
    while fs::metadata(&target).map_or(0, |m| m.len()) < 16 << 20 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the pull did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Rotate as cert-manager does: a new certificate, from another CA, over the same files.
    let replacement = second.local_server("replacement");
    fs::copy(&replacement.key_file, &served.key_file).expect("replace the key");
    fs::copy(&replacement.cert_file, &served.cert_file).expect("replace the certificate");
    let base = format!("{}/v2/", env.url());
    let second_ca = second.ca_file.to_str().expect("utf-8 path");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = curl(&[
            "--cacert",
            second_ca,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &base,
        ]);
        if String::from_utf8_lossy(&out.stdout).trim() == "401" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new connections never got the new certificate: {}\n{}",
            show_output(&out),
            env.regate_log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let still_pulling = pull.try_wait().expect("poll the pull").is_none();
    let status = pull.wait().expect("the pull ends");
    assert!(status.success(), "the pull in flight completed");
    assert!(still_pulling, "the swap happened while the pull ran");
    assert_eq!(digest_file(&target), digest, "byte-exact");
    // The old CA no longer verifies new connections.
    let out = curl(&["--cacert", first_ca, "-o", "/dev/null", &base]);
    assert!(!out.status.success(), "{}", show_output(&out));
}

/// `image` (the layout `img` in the Env's dir) pushed as `project-a/app:v1` by the builder and
/// pulled back byte-exact by the default service account, through regate.
fn push_then_pull(env: &Env, image: &Image, what: &str) {
    let push = env.skopeo_copy(
        &env.oci_ref("img"),
        &env.docker_ref("project-a/app:v1"),
        Some(&env.token("builder", "project-a")),
    );
    env.expect_success(&push, &format!("push {what}"));
    let pull = env.skopeo_copy(
        &env.docker_ref("project-a/app:v1"),
        &env.oci_ref("pulled"),
        Some(&env.token("default", "project-a")),
    );
    env.expect_success(&pull, &format!("pull {what}"));
    assert_eq!(
        oci_manifest_digest(&env.dir().join("pulled")),
        image.manifest_digest
    );
}

/// A registry serving TLS with a certificate of `ca`.
fn tls_registry_config(ca: &TestCa, name: &str) -> String {
    let cert = ca.server(name, &["127.0.0.1", "localhost"]);
    format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        cert.cert_file.display(),
        cert.key_file.display()
    )
}

#[test]
fn a_registry_serving_tls_works_as_the_upstream_and_as_a_remote() {
    let work = tempfile::tempdir().expect("dir");
    let ca = TestCa::new(work.path(), "ca");
    // The upstream: the Env's own registry over https, trusted through SSL_CERT_FILE.
    let mut env = Env::builder()
        .namespaces(&["project-a", "mirror"])
        .registry_config(&tls_registry_config(&ca, "upstream"))
        .regate_env("SSL_CERT_FILE", ca.ca_file.to_str().expect("utf-8 path"))
        .without_regate()
        .run();
    let upstream = format!("https://{}", env.registry_addr());
    // The remote: a second TLS registry holding library/app:v1.
    let remote_dir = work.path().join("remote");
    fs::create_dir_all(&remote_dir).expect("remote dir");
    let remote = Registry::start(&remote_dir, "remote", &tls_registry_config(&ca, "remote"));
    let remote_url = format!("https://{}", remote.addr);
    let image = oci_layout(&env.dir().join("img"), &unique_bytes(60_000));
    let certs = cert_dir(work.path());
    fs::copy(&ca.ca_file, certs.path().join("ca.crt")).expect("copy the CA");
    let mut seed = Command::new("skopeo");
    seed.args([
        "--insecure-policy",
        "copy",
        "--preserve-digests",
        "--dest-cert-dir",
    ])
    .arg(certs.path())
    .arg(env.oci_ref("img"))
    .arg(format!("docker://{}/library/app:v1", remote.addr));
    let out = run_bounded(seed, Duration::from_secs(300));
    env.expect_success(&out, "seeding the TLS remote");

    let mut config =
        format!("remotes:\n  - namespace: mirror\n    url: {remote_url}\n    prefix: library\n");
    if env.mode().is_kubernetes() {
        config.push_str(KUBERNETES_TEST_CONFIG);
    }
    env.set_gateway_config(&config);
    env.set_upstream(&upstream);
    env.start_regate();

    push_then_pull(&env, &image, "through regate to a TLS upstream");
    let mirrored = env.skopeo_copy(
        &env.docker_ref("mirror/app:v1"),
        &env.oci_ref("mirrored"),
        Some(&env.token("default", "mirror")),
    );
    env.expect_success(&mirrored, "pull from the TLS remote");
    assert_eq!(
        oci_manifest_digest(&env.dir().join("mirrored")),
        image.manifest_digest
    );
}

#[test]
fn authority_serve_over_tls_writes_a_kubeconfig_trusting_its_ca_and_gateways_review_through_it() {
    let work = tempfile::tempdir().expect("dir");
    let ca = TestCa::new(work.path(), "ca");
    let cert = ca.server("authority", &["127.0.0.1", "localhost"]);
    let env = Env::builder()
        .authority(AuthorityMode::Kubernetes)
        .authority_arg("--tls-cert")
        .authority_arg(cert.cert_file.to_str().expect("utf-8 path"))
        .authority_arg("--tls-key")
        .authority_arg(cert.key_file.to_str().expect("utf-8 path"))
        .namespaces(PROJECTS)
        .run();
    let text = fs::read_to_string(env.kubeconfig()).expect("the kubeconfig");
    let kubeconfig: serde_yaml::Value = serde_yaml::from_str(&text).expect("YAML");
    let cluster = &kubeconfig["clusters"][0]["cluster"];
    let server = cluster["server"].as_str().expect("server");
    assert!(server.starts_with("https://127.0.0.1:"), "{server}");
    let ca_data = cluster["certificate-authority-data"]
        .as_str()
        .expect("certificate-authority-data");
    use base64::Engine as _;
    let ca_pem = base64::engine::general_purpose::STANDARD
        .decode(ca_data)
        .expect("base64");
    assert_eq!(String::from_utf8_lossy(&ca_pem).trim(), ca.pem().trim());

    // The gateway (kubernetes mode, that kubeconfig) authenticates and authorizes over TLS.
    let image = oci_layout(&env.dir().join("img"), &unique_bytes(30_000));
    push_then_pull(&env, &image, "reviewed by the authority over TLS");
    let denied = env.skopeo_copy(
        &env.docker_ref("project-a/app:v1"),
        &env.oci_ref("denied"),
        Some(&env.token("default", "project-b")),
    );
    expect_failure(&denied, "another project's pull, refused over TLS");
}

#[test]
fn a_client_that_never_finishes_the_handshake_is_closed_after_the_header_deadline() {
    use std::io::{Read, Write};
    let work = tempfile::tempdir().expect("dir");
    let ca = TestCa::new(work.path(), "ca");
    let mut config = "connections:\n  header_timeout: 1s\n".to_string();
    if AuthorityMode::from_env().is_kubernetes() {
        config.push_str(KUBERNETES_TEST_CONFIG);
    }
    let env = tls_env(&ca, Env::builder().gateway_config(&config));
    for hello in [
        &b""[..],
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
    ] {
        let mut stream = std::net::TcpStream::connect(env.addr()).expect("connect");
        stream.write_all(hello).expect("send");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let closed = matches!(stream.read(&mut buf), Ok(0) | Err(_));
        let took = started.elapsed();
        assert!(closed, "the connection was closed");
        assert!(
            took < Duration::from_secs(5),
            "closed after the 1 s deadline, not {took:?}"
        );
    }
    // Service goes on.
    let out = curl(&[
        "--cacert",
        ca.ca_file.to_str().expect("utf-8 path"),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{}/v2/", env.url()),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "401");
}

/// `curl -v -I` of `url` over `version` (`--http2` or `--http1.1`) trusting `ca`, with the
/// request headers `headers`: the answer's head, once curl says the exchange ended cleanly (an
/// h2 answer to HEAD with a body is "stream 1 was not closed cleanly: PROTOCOL_ERROR").
fn curl_head(url: &str, version: &str, ca: &TestCa, headers: &[String]) -> Reply {
    let mut args = vec![
        "-v",
        "-I",
        version,
        "--cacert",
        ca.ca_path(),
        "-o",
        "/dev/null",
    ];
    args.extend(["-D", "-"]);
    for header in headers {
        args.extend(["-H", header.as_str()]);
    }
    args.push(url);
    let out = curl(&args);
    let what = format!("curl {version} -I {url}");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what}: {}", show_output(&out));
    assert!(
        !log.contains("not closed cleanly") && !log.contains("PROTOCOL_ERROR"),
        "{what}: {log}"
    );
    assert!(
        log.contains("left intact"),
        "{what} keeps its connection: {log}"
    );
    let reply = parse_reply(&out.stdout, true).expect("curl dumps the answer's head");
    let expected = if version == "--http2" {
        "HTTP/2 "
    } else {
        "HTTP/1.1 "
    };
    assert!(
        out.stdout.starts_with(expected.as_bytes()),
        "{what}: {reply}"
    );
    reply
}

/// `nghttp -nv` HEAD of `url` with `headers` (h2 always): the answer's `:status`, once its
/// frames show the HEADERS frame ending the stream, no DATA frame carrying a byte, and no reset.
fn nghttp_head(url: &str, headers: &[String]) -> u16 {
    let mut cmd = Command::new("nghttp");
    cmd.args(["-nv", "-H", ":method: HEAD"]);
    for header in headers {
        cmd.args(["-H", header.as_str()]);
    }
    cmd.arg(url);
    let out = run_bounded(cmd, Duration::from_secs(60));
    let frames = String::from_utf8_lossy(&out.stdout).into_owned();
    let what = format!("nghttp HEAD {url}");
    assert!(out.status.success(), "{what}: {}", show_output(&out));
    let lines: Vec<&str> = frames.lines().collect();
    let answer = lines
        .iter()
        .position(|l| l.contains("recv HEADERS frame"))
        .unwrap_or_else(|| panic!("{what}: no HEADERS received:\n{frames}"));
    assert!(
        lines
            .get(answer + 1)
            .is_some_and(|l| l.contains("END_STREAM")),
        "{what}: the answer's HEADERS end the stream:\n{frames}"
    );
    let data_len = |line: &str| -> Option<u64> {
        let rest = line.split("recv DATA frame <length=").nth(1)?;
        rest.split(',').next()?.parse().ok()
    };
    assert!(
        lines.iter().filter_map(|l| data_len(l)).all(|len| len == 0),
        "{what}: DATA in an answer to HEAD:\n{frames}"
    );
    assert!(!frames.contains("send RST_STREAM"), "{what}:\n{frames}");
    lines
        .iter()
        .find_map(|l| l.split(":status: ").nth(1))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("{what}: no :status:\n{frames}"))
}

/// The request headers of a pull with `token`: Basic credentials, and OCI manifests accepted.
fn pull_headers(token: &str) -> Vec<String> {
    let value = Auth::Basic(token).header().expect("a header");
    vec![
        format!("authorization: {value}"),
        format!("accept: {OCI_MANIFEST}"),
    ]
}

#[test]
fn head_answers_end_their_stream_without_a_body_over_h2_and_http1() {
    let features = curl(&["--version"]);
    assert!(
        String::from_utf8_lossy(&features.stdout).contains(" HTTP2"),
        "this curl speaks h2: {}",
        show_output(&features)
    );
    let work = tempfile::tempdir().expect("dir");
    let ca = TestCa::new(work.path(), "ca");
    let embedded = AuthorityMode::from_env() == AuthorityMode::Embedded;
    let mut builder = Env::builder().namespaces(PROJECTS);
    if embedded {
        // The console needs the embedded authority (docs/console.md).
        builder = builder.serve_arg("--console");
    }
    let mut env = tls_env(&ca, builder);
    let image = Image::unique(3_000);
    env.seed("project-a/app", "v1", &image);
    let manifest = "/v2/project-a/app/manifests/v1";
    let upstream = env.registry_head(manifest);
    let (reader, stranger) = (
        pull_headers(&env.token("default", "project-a")),
        pull_headers(&env.token("default", "project-b")),
    );
    let mut cases: Vec<(&str, Vec<String>, u16)> = vec![
        ("/v2/", vec![], 401),
        (manifest, stranger.clone(), 403),
        ("/nope", vec![], 404),
        ("/v2/project-a/app/manifests/v9", reader.clone(), 404),
        ("/healthz", vec![], 200),
        ("/readyz", vec![], 200),
        ("/metrics", vec![], 200),
        (manifest, reader.clone(), 200),
    ];
    if embedded {
        cases.push(("/console/login", vec![], 200));
    }
    let check = |env: &Env, cases: &[(&str, Vec<String>, u16)]| {
        for (path, headers, status) in cases {
            let url = format!("{}{path}", env.url());
            for version in ["--http2", "--http1.1"] {
                let reply = curl_head(&url, version, &ca, headers);
                assert_eq!(reply.status, *status, "HEAD {path} {version}: {reply}");
                if *status == 200 && *path == manifest {
                    // A forwarded HEAD keeps the registry's length and digest (behaviour.md §6).
                    for name in ["content-length", "docker-content-digest"] {
                        assert_eq!(reply.header(name), upstream.header(name), "{name}: {reply}");
                    }
                }
            }
            assert_eq!(nghttp_head(&url, headers), *status, "nghttp HEAD {path}");
        }
    };
    check(&env, &cases);
    // regate's own 5xx: the registry down is 503 at /readyz and 502 for a pull.
    env.stop_registry();
    check(&env, &[("/readyz", vec![], 503), (manifest, reader, 502)]);
}

/// skopeo 1.9, ctr 1.6 and the Docker engine 20.10 offer no ALPN protocol to a registry with a
/// CA of its own, so they speak HTTP/1.1 to regate. Go's default transport offers h2: the
/// registry as a pull-through cache uses it (`GODEBUG=http2debug=1` shows it), and its client
/// asks for a tag with HEAD first, as containerd does.
#[test]
fn a_go_h2_client_sending_head_reads_refusals_without_protocol_errors() {
    let work = tempfile::tempdir().expect("dir");
    let ca = TestCa::new(work.path(), "ca");
    let env = tls_env(&ca, Env::builder().namespaces(PROJECTS));
    let (readable, unreadable) = (Image::unique(2_000), Image::unique(2_000));
    env.seed("project-a/app", "v1", &readable);
    env.seed("project-b/app", "v1", &unreadable);
    let token = env.token("default", "project-a");
    let proxy = format!(
        "proxy:\n  remoteurl: {}\n  username: anything\n  password: {token}\n",
        env.url()
    );
    let go_h2 = [("SSL_CERT_FILE", ca.ca_path()), ("GODEBUG", "http2debug=1")];
    let mut cache = Registry::start_with_env(work.path(), "cache", &proxy, &go_h2);
    let pull = |repo: &str| {
        Reply::from_request(
            client()
                .get(format!("http://{}/v2/{repo}/manifests/v1", cache.addr))
                .header("Accept", OCI_MANIFEST),
        )
    };

    let pulled = pull("project-a/app");
    env.expect_status(&pulled, 200, "a pull through the cache");
    assert_eq!(pulled.body, readable.manifest);
    let refused = pull("project-b/app");
    assert_ne!(refused.status, 200, "{refused}");
    wait_for(Duration::from_secs(5), "regate's 403 to the HEAD", || {
        env.regate_log()
            .contains("method=HEAD path=\"/v2/project-b/app/manifests/v1\" status=403")
            .then_some(())
    });
    let log = read_lossy(&cache.log);
    kill(&mut cache.child);
    assert!(
        log.contains("http2: Transport"),
        "the cache spoke h2: {log}"
    );
    assert!(
        !log.contains("protocol error"),
        "a HEAD answered without DATA: {}",
        tail(&log, 20)
    );
}

/// Over h2, as Go clients and browsers send it: a token form is read before the request takes a
/// place among `max_in_flight`, so one trickled on its stream holds none (408 at the deadline)
/// while a token is issued on another connection meanwhile; a form sent whole is taken.
#[test]
fn a_token_form_trickled_over_h2_holds_no_place_others_need() {
    use std::io::Write as _;
    let work = tempfile::tempdir().expect("dir");
    let ca = TestCa::new(work.path(), "ca");
    let base = if AuthorityMode::from_env().is_kubernetes() {
        KUBERNETES_TEST_CONFIG
    } else {
        ""
    };
    let env = tls_env(
        &ca,
        Env::builder()
            .namespaces(&["project-a"])
            .gateway_config(&format!(
                "{base}connections:\n  request_timeout: 4s\n  max_in_flight: 1\n"
            )),
    );
    let token = env.token("builder", "project-a");
    let cacert = ca.ca_file.to_str().expect("utf-8 path");
    let realm = format!("{}/openshift/token", env.url());

    // A form whose body comes three bytes at first, then nothing.
    let mut slow = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--http2", "--cacert", cacert])
        .args(["-o", "/dev/null", "-w", "%{http_version} %{http_code}"])
        .args([
            "-X",
            "POST",
            "-H",
            "Content-Type: application/x-www-form-urlencoded",
        ])
        .args(["-T", "-", &realm])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start curl");
    let mut stdin = slow.stdin.take().expect("stdin");
    stdin.write_all(b"gra").expect("the first bytes");
    stdin.flush().expect("flush");
    std::thread::sleep(Duration::from_secs(1));

    let scope = "?service=regate&scope=repository:project-a/app:pull";
    let user = format!("anything:{token}");
    let meanwhile = version_and_status(
        &format!("{realm}{scope}"),
        &["--http2", "--cacert", cacert, "-u", &user],
    );
    assert_eq!(meanwhile, "2 200", "a token while the form trickles");
    let whole = version_and_status(
        &realm,
        &[
            "--http2",
            "--cacert",
            cacert,
            "--data-urlencode",
            "grant_type=password",
            "--data-urlencode",
            "username=anything",
            "--data-urlencode",
            &format!("password={token}"),
            "--data-urlencode",
            "scope=repository:project-a/app:pull",
            "--data-urlencode",
            "service=regate",
        ],
    );
    assert_eq!(whole, "2 200", "a form sent whole over h2");

    // Cut at the deadline, as the access log says (curl, still uploading, may report the
    // stream's reset rather than the answer).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = env.regate_log();
        let cut = log.lines().any(|line| {
            line.contains("method=POST")
                && line.contains("path=\"/openshift/token\"")
                && line.contains("status=408")
        });
        if cut {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no 408 for the trickled form:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(stdin);
    let _ = slow.kill();
    let _ = slow.wait();
}
