//! What operators steer and watch: `/readyz` saying which dependency is down, load shedding
//! beyond `connections.max_in_flight` and recovery, the request deadline, one access line per
//! request (JSON logs), metrics, and a drain on SIGTERM that lets a push in flight finish. The
//! audit log has its own file (tests/audit.rs).

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::*;

fn body(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).to_string()
}

/// `config` and, in kubernetes modes, the fixture's short cache lifetimes before it.
fn with_mode_config(config: &str) -> String {
    if AuthorityMode::from_env().is_kubernetes() {
        format!("{KUBERNETES_TEST_CONFIG}{config}")
    } else {
        config.to_string()
    }
}

/// A registry that accepts connections and never answers, and regate with `config` in front of
/// it; the registry's connections are refused once the listener is dropped.
fn before_a_hung_registry(config: &str) -> (TcpListener, Env) {
    let hung = TcpListener::bind("127.0.0.1:0").expect("bind");
    let hung_url = format!("http://{}", hung.local_addr().expect("address"));
    let env = Env::builder()
        .namespaces(PROJECTS)
        .upstream(&hung_url)
        .gateway_config(&with_mode_config(config))
        .run();
    (hung, env)
}

#[test]
fn readyz_is_200_only_while_the_authority_and_the_registry_answer() {
    let mut env = Env::with_projects();
    let ready = env.send("GET", "/readyz", Auth::None);
    assert_eq!(ready.status, 200, "{}", body(&ready));
    assert!(body(&ready).contains("authority: ok"), "{}", body(&ready));
    assert!(body(&ready).contains("upstream: ok"), "{}", body(&ready));
    assert_eq!(env.send("GET", "/healthz", Auth::None).status, 200);

    if env.mode().is_kubernetes() {
        let authority = env.stop_authority();
        let reply = env.send("GET", "/readyz", Auth::None);
        assert_eq!(reply.status, 503, "{}", body(&reply));
        assert!(
            body(&reply).contains("authority: not answering"),
            "{}",
            body(&reply)
        );
        assert!(body(&reply).contains("upstream: ok"), "{}", body(&reply));
        env.start_authority(Some(authority));
        let deadline = Instant::now() + Duration::from_secs(10);
        while env.send("GET", "/readyz", Auth::None).status != 200 {
            assert!(
                Instant::now() < deadline,
                "ready again once the authority is back"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    let registry = env.registry_url();
    let registry_addr = registry.trim_start_matches("http://").to_string();
    env.stop_registry();
    let reply = env.send("GET", "/readyz", Auth::None);
    assert_eq!(reply.status, 503, "{}", body(&reply));
    assert!(
        body(&reply).contains("upstream: not answering"),
        "{}",
        body(&reply)
    );
    // Anyone may ask: the body names the dependency, never its address or the error's text,
    // which go to the log and the metric.
    let text = body(&reply);
    for secret in [registry_addr.as_str(), "127.0.0.1", "refused", "error"] {
        assert!(!text.contains(secret), "{secret:?} in /readyz: {text}");
    }
    assert!(
        env.regate_log().contains(&registry_addr),
        "the cause, with the address, is in the log"
    );
    let metrics = body(&env.send("GET", "/metrics", Auth::None));
    assert!(
        metrics.contains("regate_dependency_up{dependency=\"upstream\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("regate_dependency_up{dependency=\"authority\"} 1"),
        "{metrics}"
    );
    // Liveness does not depend on either.
    assert_eq!(env.send("GET", "/healthz", Auth::None).status, 200);
}

#[test]
fn requests_beyond_max_in_flight_are_shed_and_service_recovers() {
    // A registry that accepts connections and never answers holds requests in flight.
    let (hung, env) = before_a_hung_registry("connections:\n  max_in_flight: 2\n");
    let token = env.token("default", "project-a");
    let url = env.url();
    let held: Vec<_> = (0..2)
        .map(|_| {
            let (url, token) = (url.clone(), token.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(60))
                    .build()
                    .expect("client");
                client
                    .get(format!("{url}/v2/project-a/app/manifests/v1"))
                    .basic_auth("anything", Some(&token))
                    .send()
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            })
        })
        .collect();
    // Both reach the hung registry.
    let mut accepted = Vec::new();
    hung.set_nonblocking(true).expect("nonblocking");
    let deadline = Instant::now() + Duration::from_secs(20);
    while accepted.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the held requests reached the registry"
        );
        match hung.accept() {
            Ok((stream, _)) => accepted.push(stream),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }

    let shed = env.send("GET", "/v2/project-a/app/manifests/v2", Auth::Basic(&token));
    let err = env.expect_error(&shed, 503, "UNAVAILABLE", "a request over the limit");
    assert!(
        err["message"].as_str().is_some_and(|m| m.contains("retry")),
        "{err}"
    );
    assert_eq!(shed.header("retry-after"), Some("1"));
    assert_eq!(
        env.send("GET", "/healthz", Auth::None).status,
        200,
        "liveness is not shed"
    );

    // The registry fails the held requests: both end, and regate serves again.
    drop(accepted);
    drop(hung);
    for h in held {
        let status = h.join().expect("held request");
        assert_eq!(
            status, 502,
            "the held request ends with the registry's failure"
        );
    }
    let after = env.send("GET", "/v2/", Auth::None);
    assert_eq!(after.status, 401, "service recovered: {}", body(&after));
}

/// A request body sent in `chunks` pieces, `pause` apart.
struct Slow {
    chunks: usize,
    pause: Duration,
}

impl std::io::Read for Slow {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.chunks == 0 {
            return Ok(0);
        }
        std::thread::sleep(self.pause);
        self.chunks -= 1;
        let n = buf.len().min(1024);
        buf[..n].fill(b'x');
        Ok(n)
    }
}

#[test]
fn a_request_without_a_streaming_body_has_a_deadline_and_upload_data_has_none() {
    let config = with_mode_config("connections:\n  request_timeout: 1s\n");
    // Blob data sent slowly for 3 s is not cut at 1 s: it goes as fast as the client sends.
    let env = Env::builder()
        .namespaces(PROJECTS)
        .gateway_config(&config)
        .run();
    let builder = env.token("builder", "project-a");
    let start = env.send(
        "POST",
        "/v2/project-a/app/blobs/uploads/",
        Auth::Basic(&builder),
    );
    assert_eq!(start.status, 202, "{}", body(&start));
    let location = absolute(&env.url(), start.header("location").expect("Location"));
    let slow = Slow {
        chunks: 6,
        pause: Duration::from_millis(500),
    };
    let patch = Reply::from_request(
        Auth::Basic(&builder)
            .apply(client().patch(location))
            .header("Content-Type", "application/octet-stream")
            .body(reqwest::blocking::Body::new(slow)),
    );
    assert_eq!(patch.status, 202, "{}", body(&patch));
    assert_eq!(patch.header("range"), Some("0-6143"));

    // A registry that never answers: a manifest GET gets its 504 at the deadline.
    let (hung, env) = before_a_hung_registry("connections:\n  request_timeout: 1s\n");
    let token = env.token("default", "project-a");
    let asked = Instant::now();
    let reply = env.get_manifest("project-a/app", "v1", Auth::Basic(&token));
    let err = env.expect_error(&reply, 504, "UNAVAILABLE", "a request past its deadline");
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "{:?}",
        asked.elapsed()
    );
    assert!(
        err["message"].as_str().is_some_and(|m| m.contains("1s")),
        "{err}"
    );
    drop(hung);
}

#[test]
fn every_request_is_one_json_access_line_with_no_secret() {
    let env = Env::builder()
        .namespaces(PROJECTS)
        .serve_arg("--log-format")
        .serve_arg("json")
        .run();
    let image = Image::unique(3000);
    env.seed("project-a/app", "v1", &image);
    let default = env.token("default", "project-a");
    let stranger = env.token("default", "project-b");
    let allowed = env.get_manifest("project-a/app", "v1", Auth::Basic(&default));
    assert_eq!(allowed.status, 200);
    let denied = env.get_manifest("project-a/app", "v1", Auth::Basic(&stranger));
    assert_eq!(denied.status, 403);
    let anonymous = env.send("GET", "/v2/", Auth::None);
    assert_eq!(anonymous.status, 401);

    // The lines are written when each body ends; give the last one a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let lines = loop {
        let log = env.regate_log();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .filter(|v: &serde_json::Value| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("request"))
            })
            .collect();
        if lines.len() >= 3 || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = env.regate_log();
    assert!(
        !log.contains(&default) && !log.contains(&stranger),
        "no token in the log"
    );
    let of = |status: u64| {
        let found: Vec<_> = lines.iter().filter(|l| l["status"] == status).collect();
        assert_eq!(found.len(), 1, "one line for the {status}: {lines:?}");
        found[0].clone()
    };
    let ok = of(200);
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["path"], "/v2/project-a/app/manifests/v1");
    assert_eq!(ok["identity"], "system:serviceaccount:project-a:default");
    assert_eq!(
        ok["request_id"].as_str(),
        allowed.header("x-request-id"),
        "the id the response and the audit log carry"
    );
    assert_eq!(ok["bytes"].as_u64(), Some(image.manifest.len() as u64));
    assert!(ok["duration_ms"].as_f64().is_some());
    assert_eq!(ok["level"], "INFO");
    let refused = of(403);
    assert_eq!(
        refused["identity"],
        "system:serviceaccount:project-b:default"
    );
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("project-a")),
        "{refused}"
    );
    let challenged = of(401);
    assert_eq!(challenged["identity"], "system:anonymous");
}

#[test]
fn the_text_access_line_has_tracings_layout_and_obeys_rust_log() {
    let image = Image::unique(1000);
    let text = Env::builder().namespaces(PROJECTS).run();
    text.seed("project-a/app", "v1", &image);
    let default = text.token("default", "project-a");
    let allowed = text.get_manifest("project-a/app", "v1", Auth::Basic(&default));
    assert_eq!(allowed.status, 200);
    let id = allowed.header("x-request-id").expect("an id").to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let log = text.regate_log();
        if let Some(line) = log.lines().find(|l| l.contains(&id)) {
            break line.to_string();
        }
        assert!(Instant::now() < deadline, "no access line for {id}:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    };
    // `TIME  INFO TARGET: request key=value ...`, as tracing's text format writes every line.
    let (time, rest) = line.split_once("  INFO ").expect("two spaces, the level");
    assert!(
        time.len() == 27 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "an RFC 3339 time with microseconds: {line}"
    );
    let expected = format!(
        "regate::server::access_log: request method=GET path=\"/v2/project-a/app/manifests/v1\" \
         status=200 bytes={} duration_ms=",
        image.manifest.len()
    );
    assert!(rest.starts_with(&expected), "{line}");
    assert!(
        rest.ends_with(&format!(
            " identity=\"system:serviceaccount:project-a:default\" request_id=\"{id}\""
        )),
        "{line}"
    );
    assert!(!text.regate_log().contains(&default), "no token in the log");

    // RUST_LOG still decides: at `warn`, no access line at all.
    let quiet = Env::builder()
        .namespaces(PROJECTS)
        .regate_env("RUST_LOG", "warn")
        .run();
    quiet.seed("project-a/app", "v1", &image);
    let token = quiet.token("default", "project-a");
    let reply = quiet.get_manifest("project-a/app", "v1", Auth::Basic(&token));
    assert_eq!(reply.status, 200);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !quiet.regate_log().contains("access_log"),
        "{}",
        quiet.regate_log()
    );
}

/// regate trusting an OIDC issuer (user names `ci:` + `sub`, so any text is a user name),
/// failed logins unlimited (so no warning joins the access lines), and in embedded mode the
/// console beside the API.
fn logging_env() -> (Issuer, Env) {
    let issuer = Issuer::start();
    let mut config = issuer.config("      username_prefix: \"ci:\"\n");
    config.push_str("failed_logins:\n  burst: 0\n");
    let mut env = Env::builder()
        .namespaces(PROJECTS)
        .gateway_config(&with_mode_config(&config));
    if AuthorityMode::from_env() == AuthorityMode::Embedded {
        env = env.serve_arg("--console");
    }
    let env = env.run();
    // Every start-up line is out once a request's access line is.
    let reply = env.send("GET", "/healthz", Auth::None);
    let id = reply
        .header("x-request-id")
        .expect("a request id")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env.regate_log().contains(&id) {
        assert!(Instant::now() < deadline, "no access line for /healthz");
        std::thread::sleep(Duration::from_millis(50));
    }
    (issuer, env)
}

/// `Authorization: Basic` of `user` and a token no authority takes.
fn basic_with_bad_token(user: &str) -> String {
    use base64::Engine as _;
    let pair = format!("{user}:not-a-token");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// The text log lines written after the first `before`, up to the access line of the request
/// answered with `reply`, the last one sent: a request's other lines, forged or not, are
/// written before its access line, or in the same write.
fn lines_until(env: &Env, before: usize, reply: &Reply) -> Vec<String> {
    let id = reply.header("x-request-id").expect("a request id");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = env.regate_log();
        if log.contains(id) {
            return log.lines().skip(before).map(str::to_string).collect();
        }
        assert!(Instant::now() < deadline, "no access line for {id}:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `line` is one tracing text line: `TIME  LEVEL target: …`, no control character.
fn is_one_clean_line(line: &str) -> bool {
    let time = line.split("  ").next().unwrap_or_default();
    time.len() == 27
        && time.ends_with('Z')
        && !line
            .chars()
            .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
}

/// User names and subjects with a newline and a terminal escape (docs/behaviour.md §10): a
/// Basic user name (counted for failed logins, never logged), the OAuth2 form's `username`,
/// an OIDC subject (the identity of a 403, and in its message), a console sign-in (a field of
/// its own line). Each request is still one text line, escaped, and no line is forged.
#[test]
fn names_from_clients_never_forge_a_text_log_line() {
    const HOSTILE: &str = "mallory\n2026-01-01T00:00:00.000000Z  INFO regate: forged \x1b[31mred";
    let (issuer, env) = logging_env();
    let before = env.regate_log().lines().count();
    let mut requests = 0;

    let basic = Reply::from_request(
        client()
            .get(format!("{}/v2/", env.url()))
            .header("Authorization", basic_with_bad_token(HOSTILE)),
    );
    assert_eq!(basic.status, 401, "{}", body(&basic));
    let form = env.post_token_form(&[
        ("grant_type", "password"),
        ("username", HOSTILE),
        ("password", "not-a-token"),
    ]);
    assert_eq!(form.status, 401, "{}", body(&form));
    let token = issuer.token(HOSTILE);
    let denied = env.get_manifest("project-a/app", "v1", Auth::Basic(&token));
    assert_eq!(denied.status, 403, "{}", body(&denied));
    requests += 3;
    let mut last = denied;
    let mut extra = 0;
    if AuthorityMode::from_env() == AuthorityMode::Embedded {
        let signed_in = console_sign_in(&env, &token);
        assert_eq!(signed_in.status, 303, "{}", body(&signed_in));
        requests += 1;
        extra += 1; // `console: signed in`, naming the user
        last = signed_in;
    }

    let lines = lines_until(&env, before, &last);
    assert_eq!(lines.len(), requests + extra, "{lines:#?}");
    for line in &lines {
        assert!(is_one_clean_line(line), "{line:?}");
    }
    let escaped = "ci:mallory\\n2026-01-01T00:00:00.000000Z  INFO regate: forged \\u{1b}[31mred";
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" status=403 ") && l.contains(&format!("identity=\"{escaped}\""))),
        "the 403's identity, escaped: {lines:#?}"
    );
    if extra > 0 {
        assert!(
            lines
                .iter()
                .any(|l| l.contains("console: signed in") && l.contains(escaped)),
            "the console's sign-in line, escaped: {lines:#?}"
        );
    }
    assert!(!env.regate_log().contains(&token), "no ID token in the log");
}

/// Whatever text a refused request carries as a user name (Basic's, the OAuth2 form's, or an
/// OIDC subject's, also signed in to the console with), it makes one text log line per request
/// (and one for the sign-in), with no raw control character.
#[test]
fn any_user_name_of_a_refused_request_is_one_clean_log_line() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let (issuer, env) = logging_env();
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    let names = prop_oneof![
        any::<String>(),
        "[a-z\n\r\t\x1b\u{85}\u{2028}\\[0-9;m\" ]{0,30}"
    ];
    runner
        .run(&names, |name| {
            let before = env.regate_log().lines().count();
            let basic = Reply::from_request(
                client()
                    .get(format!("{}/v2/", env.url()))
                    .header("Authorization", basic_with_bad_token(&name)),
            );
            prop_assert_eq!(basic.status, 401);
            let form = env.post_token_form(&[
                ("grant_type", "password"),
                ("username", name.as_str()),
                ("password", "not-a-token"),
            ]);
            prop_assert_eq!(form.status, 401);
            let token = issuer.token(&name);
            let refused = env.get_manifest("project-a/app", "v1", Auth::Basic(&token));
            prop_assert!(matches!(refused.status, 401 | 403), "{}", refused.status);
            let (mut last, mut expected) = (refused, 3);
            if AuthorityMode::from_env() == AuthorityMode::Embedded {
                // A sign-in names its user in a line of its own, then its access line.
                let signed_in = console_sign_in(&env, &token);
                expected += if signed_in.status == 303 { 2 } else { 1 };
                last = signed_in;
            }
            let lines = lines_until(&env, before, &last);
            prop_assert_eq!(lines.len(), expected, "{:#?}", lines);
            for line in &lines {
                prop_assert!(is_one_clean_line(line), "{:?}", line);
            }
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
}

#[test]
fn sigterm_lets_a_push_in_flight_finish_and_exits_0() {
    let mut env = Env::with_projects();
    let layout = env.dir().join("big");
    let image = oci_layout_big(&layout, 256 << 20);
    let builder = env.token("builder", "project-a");
    let source = format!("oci:{}:latest", layout.display());
    let target = env.docker_ref("project-a/big:v1");
    let push = {
        let (env_dir, source, target, builder) = (
            env.dir().to_path_buf(),
            source.clone(),
            target.clone(),
            builder.clone(),
        );
        std::thread::spawn(move || {
            let mut cmd = std::process::Command::new("skopeo");
            cmd.arg("--insecure-policy")
                .arg("--tmpdir")
                .arg(&env_dir)
                .args(["copy", "--preserve-digests", "--dest-tls-verify=false"])
                .args(["--dest-creds", &format!("anything:{builder}")])
                .arg(&source)
                .arg(&target);
            run_bounded(cmd, Duration::from_secs(600))
        })
    };
    // SIGTERM in the middle of the layer: once the registry holds 32 MiB of the upload.
    let uploads = env
        .dir()
        .join("registry-data/docker/registry/v2/repositories/project-a/big/_uploads");
    let uploaded = || -> u64 {
        std::fs::read_dir(&uploads)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::metadata(e.path().join("data")).ok())
            .map(|m| m.len())
            .max()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while uploaded() < 32 << 20 {
        assert!(Instant::now() < deadline, "the layer upload started");
        std::thread::sleep(Duration::from_millis(5));
    }
    env.signal_regate(libc::SIGTERM);
    let at_signal = uploaded();
    let pushed = push.join().expect("push thread");
    env.expect_success(&pushed, "the push in flight at SIGTERM");
    assert!(
        at_signal < 256 << 20,
        "SIGTERM came mid-layer ({at_signal} bytes in)"
    );
    let status = env.wait_regate(Duration::from_secs(40));
    assert!(
        status.success(),
        "regate exits 0 after draining: {status:?}"
    );
    // Byte-exact: the registry has the manifest and the layer under their digests.
    let layer = format!("/v2/project-a/big/blobs/{}", image.layer_digest);
    let reply = raw_http(
        env.registry_addr(),
        &build_raw("HEAD", &layer, &env.registry_addr().to_string(), &[], b""),
    )
    .expect("HEAD the layer");
    assert_eq!(reply.status, 200, "the layer is in the registry");
    assert_eq!(
        reply.header("docker-content-digest"),
        Some(image.layer_digest.as_str())
    );
}

/// A request sent on a connection of its own that regate closes after answering (as a client
/// that does not reuse it), at `time` since `since`: its reply, or why there was none.
fn once_at(env: &Env, since: Instant, time: Duration, request: &[u8]) -> std::io::Result<Reply> {
    std::thread::sleep(time.saturating_sub(since.elapsed()));
    env.raw(request)
}

/// The drain's quiet period (docs/behaviour.md §10) runs from the end of the last request on
/// any connection, kept or since closed: a push whose data request ends after SIGTERM on a
/// connection then closed gets its closing PUT in on a new connection 1 s later (it was refused
/// when the quiet period was counted only over the connections still open), and a request 2 s
/// after that is still accepted; then, 3 s with nothing in flight, regate exits 0.
#[test]
fn sigterm_accepts_new_connections_until_3_s_after_the_last_request_even_closed() {
    use std::io::Write as _;
    let mut env = Env::with_projects();
    let builder = env.token("builder", "project-a");
    let started = env.start_upload("project-a/drain", Auth::Basic(&builder));
    let target = location_target(&env.expect_upload_started(&started, "upload start"));
    let credentials = Auth::Basic(&builder).header().expect("Basic credentials");
    // The data, chunked, on a connection of its own, in flight at SIGTERM.
    let mut data = std::net::TcpStream::connect(env.addr()).expect("connect");
    data.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let head = format!(
        "PATCH {target} HTTP/1.1\r\nHost: {}\r\nAuthorization: {credentials}\r\n\
         Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n5\r\nhello\r\n",
        env.host()
    );
    data.write_all(head.as_bytes())
        .expect("send the first chunk");
    std::thread::sleep(Duration::from_millis(300));
    env.signal_regate(libc::SIGTERM);
    let signalled = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    data.write_all(b"0\r\n\r\n").expect("send the last chunk");
    let mut reply = Vec::new();
    std::io::Read::read_to_end(&mut data, &mut reply).expect("the data request's answer");
    // regate closed that connection (`Connection: close`): nothing is open now.
    let data_ended = Instant::now();
    let reply = parse_reply(&reply, false).expect("an HTTP reply");
    let target = location_target(&env.expect_upload_started(&reply, "the data request"));
    let put = build_raw(
        "PUT",
        &add_query(&target, "digest", &digest(b"hello")),
        &env.host(),
        &[("Authorization", credentials.as_str())],
        b"",
    );
    let closing = once_at(&env, data_ended, Duration::from_secs(1), &put).unwrap_or_else(|e| {
        panic!(
            "the closing PUT {:?} after SIGTERM, 1 s after the data request ended: {e}\n{}",
            signalled.elapsed(),
            env.regate_log_tail(20)
        )
    });
    env.expect_status(&closing, 201, "the closing PUT after SIGTERM");
    let put_ended = Instant::now();
    let healthz = build_raw("GET", "/healthz", &env.host(), &[], b"");
    let later = once_at(&env, put_ended, Duration::from_secs(2), &healthz).unwrap_or_else(|e| {
        panic!(
            "a connection 2 s after the last request ended ({:?} after SIGTERM): {e}",
            signalled.elapsed()
        )
    });
    env.expect_status(&later, 200, "GET /healthz 2 s after the last request");
    let last_ended = Instant::now();
    let status = env.wait_regate(Duration::from_secs(15));
    assert!(
        status.success(),
        "regate exits 0 after draining: {status:?}"
    );
    assert!(
        last_ended.elapsed() >= Duration::from_millis(2900),
        "regate waited 3 s after the last request: it exited {:?} after it",
        last_ended.elapsed()
    );
}

/// The quiet period starts at the signal at the earliest: an idle regate (no request for
/// longer than 3 s) still accepts and answers a client 1.5 s after SIGTERM, with `/readyz` 503,
/// so a load balancer that has not yet seen it draining loses no request; then it exits 0.
#[test]
fn sigterm_on_an_idle_regate_still_accepts_for_3_s() {
    let mut env = Env::start();
    let readyz = build_raw("GET", "/readyz", &env.host(), &[], b"");
    env.expect_status(&env.raw(&readyz).expect("/readyz"), 200, "/readyz before");
    std::thread::sleep(Duration::from_millis(3500));
    env.signal_regate(libc::SIGTERM);
    let signalled = Instant::now();
    let draining = once_at(&env, signalled, Duration::from_millis(1500), &readyz)
        .unwrap_or_else(|e| panic!("a connection 1.5 s after SIGTERM to an idle regate: {e}"));
    env.expect_status(&draining, 503, "/readyz while draining");
    let asked = Instant::now();
    let status = env.wait_regate(Duration::from_secs(15));
    assert!(
        status.success(),
        "regate exits 0 after draining: {status:?}"
    );
    assert!(
        asked.elapsed() >= Duration::from_millis(2900),
        "regate waited 3 s after the last request: it exited {:?} after it",
        asked.elapsed()
    );
}

/// The value of the series `name{labels}` (labels as written, in order) in `text`.
fn series(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[test]
fn metrics_count_what_happened_and_pass_promtool() {
    let logs = tempfile::tempdir().expect("temp dir");
    // Short cache lifetimes (in every mode), so an expiry shows; and the audit log on.
    let env = Env::builder()
        .namespaces(PROJECTS)
        .gateway_config(&format!(
            "{KUBERNETES_TEST_CONFIG}audit:\n  path: {}\n",
            logs.path().join("audit.log").display()
        ))
        .run();
    let image = Image::unique(2000);
    env.seed("project-a/app", "v1", &image);
    let default = env.token("default", "project-a");
    let stranger = env.token("default", "project-b");
    for _ in 0..3 {
        let reply = env.get_manifest("project-a/app", "v1", Auth::Basic(&default));
        assert_eq!(reply.status, 200);
    }
    assert_eq!(
        env.get_manifest("project-a/app", "v1", Auth::Basic(&stranger))
            .status,
        403
    );
    assert_eq!(
        env.send("GET", "/v2/", Auth::Basic("not-a-token")).status,
        401
    );
    let token = env.send(
        "GET",
        "/openshift/token?scope=repository:project-a/app:pull",
        Auth::Basic(&default),
    );
    assert_eq!(token.status, 200);
    // Past the cache lifetime: the decision expired and is asked again.
    std::thread::sleep(Duration::from_millis(600));
    let reply = env.get_manifest("project-a/app", "v1", Auth::Basic(&default));
    assert_eq!(reply.status, 200);

    let reply = env.send("GET", "/metrics", Auth::None);
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        reply.headers
    );
    let text = body(&reply);
    assert!(
        !text.contains(&default) && !text.contains("project-a"),
        "no token or name in labels"
    );

    let mut promtool = std::process::Command::new("promtool");
    promtool
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = promtool
        .spawn()
        .expect("promtool (Debian package prometheus; .ci/run installs it)");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("write metrics");
    }
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}\n{text}",
        show_output(&out)
    );

    let at_least = |series_name: &str, min: f64| {
        let value =
            series(&text, series_name).unwrap_or_else(|| panic!("no {series_name} in\n{text}"));
        assert!(value >= min, "{series_name} = {value}, expected >= {min}");
    };
    at_least(
        r#"regate_requests_total{route="manifest",method="GET",status="2xx"}"#,
        3.0,
    );
    at_least(
        r#"regate_requests_total{route="manifest",method="GET",status="4xx"}"#,
        1.0,
    );
    at_least(
        r#"regate_requests_total{route="token",method="GET",status="2xx"}"#,
        1.0,
    );
    at_least(r#"regate_decision_cache_lookups_total{result="hit"}"#, 2.0);
    at_least(r#"regate_decision_cache_lookups_total{result="miss"}"#, 2.0);
    at_least(
        r#"regate_authority_reviews_total{kind="authorize",result="allowed"}"#,
        1.0,
    );
    at_least(
        r#"regate_authority_reviews_total{kind="authorize",result="denied"}"#,
        1.0,
    );
    at_least(
        r#"regate_authority_reviews_total{kind="authenticate",result="valid"}"#,
        1.0,
    );
    at_least("regate_failed_logins_total", 1.0);
    at_least(r#"regate_tokens_issued_total{realm="gateway"}"#, 1.0);
    at_least("regate_upstream_response_duration_seconds_count", 3.0);
    at_least(
        "regate_response_body_bytes_total",
        3.0 * image.manifest.len() as f64,
    );
    at_least(
        &format!(
            r#"regate_build_info{{version="{}"}}"#,
            env!("CARGO_PKG_VERSION")
        ),
        1.0,
    );
    assert!(text.contains("regate_transfers_in_flight"), "{text}");
    at_least(
        r#"regate_decision_cache_evictions_total{cause="expired"}"#,
        1.0,
    );
    // Two decisions and a token at least, once the writer has caught up.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = body(&env.send("GET", "/metrics", Auth::None));
        if series(&text, "regate_audit_lines_total").is_some_and(|n| n >= 3.0) {
            assert_eq!(series(&text, "regate_audit_write_errors_total"), Some(0.0));
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn metrics_listen_serves_them_apart_from_the_api() {
    let port = free_port();
    let mut config = format!("metrics:\n  listen: 127.0.0.1:{port}\n");
    if AuthorityMode::from_env().is_kubernetes() {
        config.push_str(KUBERNETES_TEST_CONFIG);
    }
    let env = Env::builder().gateway_config(&config).run();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        match reqwest::blocking::get(&url).and_then(|r| r.text()) {
            Ok(text) => break text,
            Err(e) => {
                assert!(Instant::now() < deadline, "GET {url}: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    assert!(text.contains("regate_build_info{"), "{text}");
    assert_eq!(
        env.send("GET", "/metrics", Auth::None).status,
        404,
        "not on the API's address"
    );
}

/// A console sign-in with `token`, from the console's own origin.
fn console_sign_in(env: &Env, token: &str) -> Reply {
    Reply::from_request(
        client()
            .post(format!("{}/console/login", env.url()))
            .header("Origin", env.url())
            .form(&[("token", token)]),
    )
}

/// The README's first command, `scripts/quickstart` (with this build's binary): it serves and
/// prints the lines to paste, docker push and pull among them; started again while the first
/// still holds its ports, it stops at once and says which port, instead of reporting the old
/// one as its own.
#[test]
fn the_quickstart_serves_and_refuses_taken_ports() {
    use std::io::BufRead as _;
    if AuthorityMode::from_env() != AuthorityMode::Embedded {
        return; // The quickstart runs the embedded authority only.
    }
    let work = tempfile::tempdir().expect("dir");
    let ports = [free_port(), free_port(), free_port()];
    let quickstart = |dir: &std::path::Path| {
        let mut command = std::process::Command::new("bash");
        command
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/quickstart"))
            .env("REGATE_BIN", REGATE)
            .env("QUICKSTART_DIR", dir)
            .env("REGATE_PORT", ports[0].to_string())
            .env("REGATE_TLS_PORT", ports[1].to_string())
            .env("REGISTRY_PORT", ports[2].to_string())
            .env_remove("REGATE_STATE")
            .stdin(std::process::Stdio::null());
        command
    };
    let mut first = quickstart(work.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the quickstart");
    let stdout = first.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut printed = String::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !printed.contains("Ctrl-C stops") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                printed.push_str(&line);
                printed.push('\n');
            }
            Err(_) => panic!("the quickstart never said it was ready:\n{printed}"),
        }
    }
    let url = format!("127.0.0.1:{}", ports[0]);
    for wanted in [
        format!("regate is serving http://{url}"),
        format!("docker login {url}"),
        format!("docker push {url}/project-a/app:v2"),
        format!("docker pull {url}/project-a/app:v1"),
    ] {
        assert!(printed.contains(&wanted), "{wanted:?} in:\n{printed}");
    }

    // Again, while the first holds the ports.
    let again = tempfile::tempdir().expect("dir");
    let out = run_bounded(quickstart(again.path()), Duration::from_secs(60));
    let text = stderr(&out);
    assert!(!out.status.success(), "a second quickstart fails: {text}");
    assert!(
        text.contains(&format!("port {} on 127.0.0.1 is in use", ports[2])),
        "{text}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("regate is serving"),
        "nothing claims to serve"
    );

    // SIGTERM: the script's trap stops the registry and both regates.
    // SAFETY: kill(2) on the child's pid, which is ours and not yet reaped.
    unsafe {
        libc::kill(first.id() as i32, libc::SIGTERM);
    }
    let _ = first.wait();
}
