//! A registry secured with `auth: htpasswd` behind regate: regate authenticates to it with the
//! global pull secret (`--pull-secret FILE`), follows edits to that file without a restart and
//! without breaking a transfer in flight, and answers a clear 502 when it has no credential or
//! a wrong one. The client's own credential is never what the registry sees.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const USER: &str = "regate-puller";
const PASSWORD: &str = "s3cret:with-colon";

/// An `auth: htpasswd` registry section whose htpasswd file (bcrypt, as distribution needs)
/// lives in `dir`.
fn htpasswd_config(dir: &Path) -> String {
    let hash = bcrypt::hash(PASSWORD, 4).expect("bcrypt");
    let file = dir.join("htpasswd");
    std::fs::write(&file, format!("{USER}:{hash}\n")).expect("write htpasswd");
    format!(
        "auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n",
        file.display()
    )
}

/// A `.dockerconfigjson` with `entries` (key, password) for USER.
fn docker_config(path: &Path, entries: &[(&str, &str)]) {
    write_docker_config(path, USER, entries);
}

/// Writes the pull-secret file (second argument) for the registry at `host:port` (first).
type WriteSecret<'a> = &'a dyn Fn(&str, &Path);

/// An Env whose registry needs htpasswd credentials; regate gets `--pull-secret FILE` when
/// `secret` is given. The registry's host is only known once it runs, so the file is written
/// by `write` after the Env is up and before regate starts.
fn secured_env(secrets: &Path, secret: Option<WriteSecret>) -> Env {
    let file = secrets.join("pull-secret.json");
    let mut builder = Env::builder()
        .namespaces(PROJECTS)
        .registry_config(&htpasswd_config(secrets))
        .without_regate();
    if secret.is_some() {
        builder = builder
            .serve_arg("--pull-secret")
            .serve_arg(file.to_str().expect("utf-8 path"));
    }
    let mut env = builder.run();
    if let Some(write) = secret {
        write(&env.registry_addr().to_string(), &file);
    }
    env.start_regate();
    env
}

fn secret_file(secrets: &Path) -> PathBuf {
    secrets.join("pull-secret.json")
}

#[test]
fn pushes_and_pulls_work_only_with_the_pull_secret() {
    let secrets = tempfile::tempdir().expect("tempdir");
    let image_dir = secrets.path().join("img");
    let image = oci_layout(&image_dir, &unique_bytes(100_000));

    // No pull secret: regate has nothing to answer the registry's challenge with.
    let env = secured_env(secrets.path(), None);
    let builder = env.token("builder", "project-a");
    let push = env.skopeo_copy(
        &format!("oci:{}", image_dir.display()),
        &env.docker_ref("project-a/app:v1"),
        Some(&builder),
    );
    expect_failure(&push, "a push through regate without a pull secret");
    let reply = env.get_manifest("project-a/app", "v1", Auth::Basic(&builder));
    let err = env.expect_error(&reply, 502, "UNAVAILABLE", "no pull secret");
    let message = err["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("asks for credentials")
            && message.contains(&env.registry_addr().to_string()),
        "{message}"
    );
    drop(env);

    // The right credential: push and pull work.
    let env = secured_env(
        secrets.path(),
        Some(&|host: &str, file: &Path| docker_config(file, &[(host, PASSWORD)])),
    );
    let builder = env.token("builder", "project-a");
    let push = env.skopeo_copy(
        &format!("oci:{}", image_dir.display()),
        &env.docker_ref("project-a/app:v1"),
        Some(&builder),
    );
    env.expect_success(&push, "push through regate with the pull secret");
    let default = env.token("default", "project-a");
    let pull = env.skopeo_copy(
        &env.docker_ref("project-a/app:v1"),
        &env.oci_ref("pulled"),
        Some(&default),
    );
    env.expect_success(&pull, "pull through regate with the pull secret");
    assert_eq!(
        oci_manifest_digest(&env.dir().join("pulled")),
        image.manifest_digest
    );
    // regate's authorization still applies: a puller cannot push.
    let push = env.skopeo_copy(
        &format!("oci:{}", image_dir.display()),
        &env.docker_ref("project-a/app:v2"),
        Some(&default),
    );
    expect_failure(&push, "push by a puller");
    let log = env.registry_log();
    assert!(
        !log.contains(&default) && !log.contains(&builder),
        "the clients' tokens never reach the registry"
    );
    drop(env);

    // A wrong password: a clear 502 naming the registry.
    let env = secured_env(
        secrets.path(),
        Some(&|host: &str, file: &Path| docker_config(file, &[(host, "wrong")])),
    );
    let default = env.token("default", "project-a");
    let reply = env.get_manifest("project-a/app", "v1", Auth::Basic(&default));
    let err = env.expect_error(&reply, 502, "UNAVAILABLE", "a wrong pull-secret password");
    let message = err["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("credentials rejected")
            && message.contains(&env.registry_addr().to_string()),
        "{message}"
    );
    assert!(
        !message.contains("wrong"),
        "no credential in the message: {message}"
    );
}

#[test]
fn registry_login_fixes_a_failing_pull_live_while_a_big_pull_runs() {
    let secrets = tempfile::tempdir().expect("tempdir");
    let file = secret_file(secrets.path());
    // project-a has a right, path-specific entry; the host-wide one, used for project-b, is
    // wrong.
    let env = secured_env(
        secrets.path(),
        Some(&|host: &str, file: &Path| {
            docker_config(
                file,
                &[(&format!("{host}/project-a"), PASSWORD), (host, "wrong")],
            )
        }),
    );
    let builder_a = env.token("builder", "project-a");
    let big = unique_bytes(256 << 20);
    if let Err(reply) = push_blob(&env.url(), Auth::Basic(&builder_a), "project-a/big", &big) {
        panic!("pushing 256 MiB through regate to project-a: {reply}");
    }
    let small = Image::unique(4096);
    let builder_b = env.token("builder", "project-b");
    let reply = env.push(Auth::Basic(&builder_b), "project-b/app", "v1", &small);
    assert!(reply.is_err(), "project-b uses the wrong host-wide entry");

    // Start the big pull and read it slowly, so it is in flight across the edit.
    let default_a = env.token("default", "project-a");
    let url = format!("{}/v2/project-a/big/blobs/{}", env.url(), digest(&big));
    let mut response = client()
        .get(url)
        .basic_auth("x", Some(&default_a))
        .send()
        .expect("start the big pull");
    assert_eq!(response.status(), 200);
    let mut received = Vec::with_capacity(big.len());
    let mut chunk = vec![0u8; 1 << 20];
    let mut edited = false;
    loop {
        let n = response.read(&mut chunk).expect("read the big pull");
        if n == 0 {
            break;
        }
        received.extend_from_slice(&chunk[..n]);
        if !edited && received.len() > 16 << 20 {
            let mut login = std::process::Command::new(REGATE);
            login
                .args(["registry", "login", "--registry"])
                .arg(env.registry_addr().to_string())
                .arg("--auth-basic")
                .arg(format!("{USER}:{PASSWORD}"))
                .arg("--to")
                .arg(&file);
            let out = run_bounded(login, Duration::from_secs(60));
            env.expect_success(&out, "regate registry login --to the live file");
            let mode = std::fs::metadata(&file).expect("stat").permissions();
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(mode.mode() & 0o777, 0o600);
            // project-b now pulls and pushes, without a restart
            wait_for(Duration::from_secs(5), "the edit takes effect", || {
                env.push(Auth::Basic(&builder_b), "project-b/app", "v1", &small)
                    .ok()
            });
            edited = true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(edited, "the edit happened during the pull");
    assert_eq!(received.len(), big.len(), "the big pull ran to completion");
    assert!(received == big, "and its bytes are the pushed ones");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("json");
    assert!(json["auths"][format!("{}/project-a", env.registry_addr())].is_object());
    assert!(
        json["credHelpers"].is_object(),
        "other top-level keys kept: {json}"
    );
}
