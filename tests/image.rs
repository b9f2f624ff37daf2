//! The container image (Dockerfile, deploy/image/build.sh) built on this machine from this
//! source, statically linked as the image ships it, and regate run from it: as the non-root
//! user, with CA certificates, its state in a named volume, pushing and pulling for skopeo. The
//! static binary alone runs in an empty `scratch` container: what a node of any distribution
//! gets from deploy/kubelet.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

/// `docker ARGS`, bounded.
fn docker(args: &[&str]) -> Output {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    run_bounded(cmd, Duration::from_secs(300))
}

fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        show_output(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// What the test made in the engine, removed on drop.
#[derive(Default)]
struct Made {
    containers: Vec<String>,
    volume: Option<String>,
    image: Option<String>,
}

impl Drop for Made {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = docker(&["rm", "-f", c]);
        }
        if let Some(v) = &self.volume {
            let _ = docker(&["volume", "rm", "-f", v]);
        }
        if let Some(i) = &self.image {
            let _ = docker(&["rmi", "-f", i]);
        }
    }
}

/// This source built statically, as deploy/image/build.sh builds it (a debug build, in a target
/// directory of its own so that it never waits on the lock of the build running these tests).
fn static_binary(root: &Path) -> std::path::PathBuf {
    let target = root.join("target/static");
    let mut build = Command::new(env!("CARGO"));
    build
        .current_dir(root)
        .args([
            "build",
            "--bin",
            "regate",
            "--target",
            "x86_64-unknown-linux-gnu",
        ])
        .env("CARGO_TARGET_DIR", &target)
        .env("RUSTFLAGS", "-C target-feature=+crt-static");
    let out = run_bounded(build, Duration::from_secs(1500));
    assert!(out.status.success(), "static build: {}", show_output(&out));
    target.join("x86_64-unknown-linux-gnu/debug/regate")
}

#[test]
fn the_image_builds_here_runs_as_non_root_and_serves_pushes_and_pulls() {
    let id = format!("{}-{}", std::process::id(), free_port());
    let tag = format!("regate-test:{id}");
    let mut made = Made::default();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let binary = static_binary(root);
    let binary_arg = binary.to_str().expect("utf-8 path");

    // Statically linked: no interpreter, no library, so any x86_64 Linux runs it.
    let mut file = Command::new("file");
    file.arg(&binary);
    let described =
        String::from_utf8_lossy(&run_bounded(file, Duration::from_secs(30)).stdout).to_string();
    assert!(
        described.contains("statically linked") || described.contains("static-pie linked"),
        "{described}"
    );
    // Alone in an empty container: the binary and nothing else.
    let bare = tempfile::tempdir().expect("dir");
    std::fs::copy(&binary, bare.path().join("regate")).expect("copy the binary");
    std::fs::write(
        bare.path().join("Dockerfile"),
        "FROM scratch\nCOPY regate /regate\nENTRYPOINT [\"/regate\"]\n",
    )
    .expect("Dockerfile");
    let bare_tag = format!("regate-bare-test:{id}");
    docker_ok(&[
        "build",
        "-q",
        "-t",
        &bare_tag,
        bare.path().to_str().expect("utf-8"),
    ]);
    let version = docker(&["run", "--rm", &bare_tag, "--version"]);
    let _ = docker(&["rmi", "-f", &bare_tag]);
    assert!(version.status.success(), "{}", show_output(&version));
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("regate "));

    let mut build = Command::new(root.join("deploy/image/build.sh"));
    build.args(["--binary", binary_arg, "--tag", &tag]);
    let out = run_bounded(build, Duration::from_secs(600));
    made.image = Some(tag.clone());
    assert!(out.status.success(), "image build: {}", show_output(&out));

    assert_eq!(
        docker_ok(&["image", "inspect", "--format", "{{.Config.User}}", &tag]),
        "10001:10001"
    );
    // CA certificates are in the image, for https registries and token realms.
    let probe = docker_ok(&["create", &tag]);
    made.containers.push(probe.clone());
    let env = Env::builder().without_regate().run();
    let cas = env.dir().join("cas.crt");
    docker_ok(&[
        "cp",
        &format!("{probe}:/etc/ssl/certs/ca-certificates.crt"),
        cas.to_str().expect("utf-8 path"),
    ]);
    let text = std::fs::read_to_string(&cas).expect("CA bundle");
    assert!(
        text.matches("BEGIN CERTIFICATE").count() > 10,
        "a CA bundle"
    );

    // State in a named volume, written by the image's own CLI as its own user.
    let volume = format!("regate-test-{id}");
    docker_ok(&["volume", "create", &volume]);
    made.volume = Some(volume.clone());
    let mount = format!("{volume}:/var/lib/regate");
    let cli = |args: &[&str]| {
        let mut all = vec!["run", "--rm", "-v", &mount, &tag];
        all.extend_from_slice(args);
        docker_ok(&all)
    };
    cli(&["create", "namespace", "project-a"]);
    let builder = cli(&["create", "token", "builder", "-n", "project-a"]);
    let default = cli(&["create", "token", "default", "-n", "project-a"]);

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let upstream = format!("http://{}", env.registry_addr());
    let name = format!("regate-test-{id}");
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        "-v",
        &mount,
        &tag,
        "serve",
        "--listen",
        &listen,
        "--upstream",
        &upstream,
    ]);
    made.containers.push(name.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !docker_ok(&["logs", &name]).contains("listening on http://") {
        assert!(
            Instant::now() < deadline,
            "the container did not start: {}",
            show_output(&docker(&["logs", &name]))
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = docker_ok(&["inspect", "--format", "{{.State.Pid}}", &name]);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .expect("Uid line");
    assert!(
        uid.split_whitespace().all(|u| u == "10001"),
        "runs as uid 10001: {uid}"
    );

    let image = oci_layout(&env.dir().join("img"), &unique_bytes(80_000));
    let remote = format!("docker://{listen}/project-a/app:v1");
    let push = env.skopeo_copy(&env.oci_ref("img"), &remote, Some(&builder));
    env.expect_success(&push, "push through the container");
    let pull = env.skopeo_copy(&remote, &env.oci_ref("pulled"), Some(&default));
    env.expect_success(&pull, "pull through the container");
    assert_eq!(
        oci_manifest_digest(&env.dir().join("pulled")),
        image.manifest_digest
    );
    let refused = env.skopeo_copy(&env.oci_ref("img"), &remote, Some(&default));
    expect_failure(&refused, "a push by the default service account");
}
