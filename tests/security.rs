//! Holes a hostile review found, each closed (docs/behaviour.md §10): form bodies on an upload
//! start, catalog pagination, `Host` injection, short token lifetimes, a closed stdout, and
//! changes of the state directory seen on the very next request.

mod common;

use std::io::Read as _;
use std::process::{Command, Stdio};

use common::*;

/// A raw upload start to `repo` with these header lines (bytes, not necessarily UTF-8) and
/// body, over its own connection.
fn raw_upload_start(env: &Env, token: &str, headers: &[&[u8]], body: &[u8]) -> Reply {
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("any:{token}"));
    let mut req = format!(
        "POST /v2/project-b/x/blobs/uploads/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Authorization: Basic {basic}\r\nContent-Length: {}\r\n",
        env.host(),
        body.len()
    )
    .into_bytes();
    for header in headers {
        req.extend_from_slice(header);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    env.raw(&req).expect("a reply")
}

/// distribution reads `mount`/`from` from a form body, and Go's media type parser trims
/// Unicode spaces and keeps the type when a parameter is malformed: every spelling of a form
/// on an upload start is refused, so project-b's builder cannot mount project-a's blob.
#[test]
fn a_form_body_on_an_upload_start_is_refused_however_it_is_spelled() {
    let env = Env::with_projects();
    let secret = unique_bytes(5_000);
    let d = digest(&secret);
    if let Err(reply) = push_blob(&env.registry_url(), Auth::None, "project-a/secret", &secret) {
        panic!("seeding project-a/secret: {reply}");
    }
    let builder_b = env.token("builder", "project-b");
    let form = format!("mount={d}&from=project-a/secret");
    let multipart = format!(
        "--XX\r\nContent-Disposition: form-data; name=\"mount\"\r\n\r\n{d}\r\n--XX\r\n\
         Content-Disposition: form-data; name=\"from\"\r\n\r\nproject-a/secret\r\n--XX--\r\n"
    );
    let cases: &[(&str, &[&[u8]], &str)] = &[
        (
            "NBSP prefix",
            &[b"Content-Type: \xc2\xa0application/x-www-form-urlencoded"],
            &form,
        ),
        (
            "NEL prefix",
            &[b"Content-Type: \xc2\x85application/x-www-form-urlencoded"],
            &form,
        ),
        (
            "NBSP suffix",
            &[b"Content-Type: application/x-www-form-urlencoded\xc2\xa0"],
            &form,
        ),
        (
            "Latin-1 charset",
            &[b"Content-Type: application/x-www-form-urlencoded; charset=\xe9"],
            &form,
        ),
        (
            "plain form",
            &[b"Content-Type: application/x-www-form-urlencoded"],
            &form,
        ),
        (
            "upper case",
            &[b"Content-Type: APPLICATION/X-WWW-FORM-URLENCODED"],
            &form,
        ),
        (
            "tab and params",
            &[b"Content-Type: \tapplication/x-www-form-urlencoded ;charset=utf-8"],
            &form,
        ),
        (
            "NBSP multipart",
            &[b"Content-Type: \xc2\xa0multipart/form-data; boundary=XX"],
            &multipart,
        ),
        (
            "multipart",
            &[b"Content-Type: multipart/form-data; boundary=XX"],
            &multipart,
        ),
        (
            "two Content-Types",
            &[
                b"Content-Type: application/octet-stream",
                b"Content-Type: application/x-www-form-urlencoded",
            ],
            &form,
        ),
    ];
    for (what, headers, body) in cases {
        let reply = raw_upload_start(&env, &builder_b, headers, body.as_bytes());
        env.expect_error(&reply, 400, "UNSUPPORTED", what);
    }
    env.assert_registry_never_saw("no form upload start reached the registry", |r| {
        r.starts_with("POST /v2/project-b/x/blobs/uploads")
    });
    let held = env.registry_head(&format!("/v2/project-b/x/blobs/{d}"));
    assert_eq!(
        held.status, 404,
        "project-a's blob was never mounted: {held}"
    );

    // An upload start as clients send it still works: no body, or bytes that are no form.
    let plain = raw_upload_start(&env, &builder_b, &[], b"");
    env.expect_upload_started(&plain, "an upload start with no Content-Type");
    let octets = raw_upload_start(
        &env,
        &builder_b,
        &[b"Content-Type: application/octet-stream"],
        b"",
    );
    env.expect_upload_started(&octets, "an upload start with application/octet-stream");
}

/// The catalog a caller may not see whole is paged from its filtered list: walking `n=1` pages
/// shows every visible repository once, never another, and no page but the last is empty.
#[test]
fn catalog_pages_are_built_from_the_filtered_list() {
    let env = Env::with_projects();
    let image = Image::unique(256);
    let visible = [
        "project-a/app",
        "project-a/m",
        "project-a/tools/x",
        "project-a/z",
    ];
    let hidden = [
        "project-b/app",
        "project-b/a",
        "project-b/secret",
        "project-b/zz",
    ];
    for repo in visible.iter().chain(&hidden) {
        env.seed(repo, "v1", &image);
    }
    let reader = env.token("default", "project-a");
    let mut seen = Vec::new();
    let mut target = "/v2/_catalog?n=1".to_string();
    for page in 0.. {
        assert!(page <= visible.len(), "the walk ends: {seen:?}");
        let reply = env.send("GET", &target, Auth::Basic(&reader));
        env.expect_status(&reply, 200, &format!("catalog page {target}"));
        for name in hidden {
            assert!(
                !format!("{reply}").contains(name),
                "{name} leaked in {target}: {reply}"
            );
        }
        let repos: Vec<String> = reply.json()["repositories"]
            .as_array()
            .unwrap_or_else(|| panic!("repositories array: {reply}"))
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        match reply.header("Link") {
            Some(link) => {
                assert_eq!(repos.len(), 1, "a page with a next one is full: {reply}");
                let next = link
                    .strip_prefix('<')
                    .and_then(|l| l.split_once('>'))
                    .map(|(url, _)| url.to_string())
                    .unwrap_or_else(|| panic!("Link is <url>; rel=\"next\": {link}"));
                seen.extend(repos);
                target = next;
            }
            None => {
                seen.extend(repos);
                break;
            }
        }
    }
    let want: Vec<String> = visible.iter().map(|s| s.to_string()).collect();
    assert_eq!(seen, want, "every visible repository once, in order");

    // A cursor naming a repository the caller may not see reveals nothing either.
    let reply = env.send(
        "GET",
        "/v2/_catalog?n=1&last=project-a%2Fsecret",
        Auth::Basic(&reader),
    );
    env.expect_status(&reply, 200, "catalog after a hidden name");
    assert_eq!(
        reply.json()["repositories"],
        serde_json::json!(["project-a/tools/x"]),
        "{reply}"
    );
    let link = reply.header("Link").unwrap_or_default();
    assert!(link.contains("last=project-a%2Ftools%2Fx"), "{reply}");
    let end = env.send(
        "GET",
        "/v2/_catalog?n=5&last=project-a%2Fz",
        Auth::Basic(&reader),
    );
    assert_eq!(end.json()["repositories"], serde_json::json!([]), "{end}");
    assert!(
        end.header("Link").is_none(),
        "the end has no next page: {end}"
    );
}

/// `Host` goes into the challenge's realm: anything but `host[:port]`, and a second `Host`, is
/// a 400; so are an absolute-form target (regate is not a proxy) and CONNECT (405).
#[test]
fn host_and_request_target_are_checked_first() {
    let env = Env::with_projects();
    let raw = |head: &str| {
        let req = format!("{head}\r\nConnection: close\r\n\r\n");
        env.raw(req.as_bytes()).expect("a reply")
    };
    let cases = [
        (
            "quote in Host",
            "GET /v2/ HTTP/1.1\r\nHost: evil.example\",error=\"insufficient_scope".to_string(),
        ),
        (
            "path in Host",
            "GET /v2/ HTTP/1.1\r\nHost: evil.example/x?y=".to_string(),
        ),
        (
            "two Hosts",
            format!(
                "GET /v2/ HTTP/1.1\r\nHost: {}\r\nHost: evil.example",
                env.host()
            ),
        ),
        (
            "user info in Host",
            "GET /v2/ HTTP/1.1\r\nHost: a@evil.example".to_string(),
        ),
        (
            "bad port",
            "GET /v2/ HTTP/1.1\r\nHost: evil.example:99999".to_string(),
        ),
        (
            "absolute-form target",
            format!(
                "GET http://evil.example/v2/project-a/app/manifests/v1 HTTP/1.1\r\nHost: {}",
                env.host()
            ),
        ),
        (
            "token endpoint with a bad Host",
            "GET /openshift/token HTTP/1.1\r\nHost: evil.example/x".to_string(),
        ),
    ];
    for (what, head) in &cases {
        let reply = raw(head);
        env.expect_error(&reply, 400, "UNSUPPORTED", what);
        assert!(
            reply.header("WWW-Authenticate").is_none(),
            "{what}: {reply}"
        );
        assert!(
            !format!("{reply}").contains("evil.example"),
            "{what}: {reply}"
        );
    }
    let connect = raw(&format!(
        "CONNECT evil.example:443 HTTP/1.1\r\nHost: {}",
        env.host()
    ));
    env.expect_error(&connect, 405, "UNSUPPORTED", "CONNECT");
    env.assert_registry_never_saw("nothing was forwarded", |r| {
        r.contains("evil") || r.starts_with("CONNECT")
    });

    // A sound Host still names the realm.
    let ok = raw(&format!(
        "GET /v2/ HTTP/1.1\r\nHost: localhost:{}",
        env.addr().port()
    ));
    env.expect_status(&ok, 401, "a sound Host gets the challenge");
    let challenge = ok.header("WWW-Authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with(&format!(
            "Bearer realm=\"http://localhost:{}/openshift/token\"",
            env.addr().port()
        )),
        "{challenge}"
    );
}

/// Clients use a token for 60 s whatever `expires_in` says: a shorter lifetime is refused at
/// start with the field and the minimum named.
#[test]
fn a_token_lifetime_under_60s_is_a_configuration_error() {
    let env = Env::builder().without_regate().run();
    for (yaml, field) in [
        ("token:\n  lifetime: 1s\n", "token.lifetime"),
        ("token:\n  lifetime: 0s\n", "token.lifetime"),
        ("token_server:\n  lifetime: 59s\n", "token_server.lifetime"),
    ] {
        let path = env.dir().join("short.yaml");
        std::fs::write(&path, format!("listen: 127.0.0.1:0\n{yaml}")).expect("config");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_regate"));
        cmd.args(["serve", "--config"])
            .arg(&path)
            .env("REGATE_STATE", env.dir().join("state"));
        let out = run_bounded(cmd, std::time::Duration::from_secs(20));
        assert!(
            !out.status.success(),
            "{yaml}: refused: {}",
            show_output(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(field) && stderr.contains("60s"),
            "{yaml}: {stderr}"
        );
        assert!(stderr.contains("short.yaml"), "names the file: {stderr}");
    }
}

/// Output piped into a reader that has gone (`regate completion bash | head`) ends the command
/// quietly: no panic, no message.
#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    let dir = tempfile::tempdir().expect("dir");
    for args in [
        &["completion", "bash"][..],
        &["get", "clusterroles"][..],
        &["--help"][..],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_regate"))
            .args(args)
            .env("REGATE_STATE", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn regate");
        // Close the pipe before regate writes: its first write finds no reader.
        drop(child.stdout.take());
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        let status = child.wait().expect("wait");
        assert_ne!(status.code(), Some(101), "{args:?} panicked: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
    }
}

/// A service account created a moment ago logs in at once (it is looked for in the state
/// directory, never called deleted), and a deleted namespace's token stops on the next request
/// with the embedded authority (within the identity cache's lifetime in kubernetes modes).
#[test]
fn state_changes_are_in_force_on_the_next_request() {
    let env = Env::with_projects();
    for round in 0..3 {
        let ns = format!("tmp{round}");
        env.regate_ok(&["create", "namespace", &ns]);
        let token = env.token("builder", &ns);
        let reply = env.send("GET", "/v2/", Auth::Basic(&token));
        env.expect_status(
            &reply,
            200,
            &format!("a new service account's token in {ns}, at once"),
        );
        env.regate_ok(&["delete", "namespace", &ns]);
        if env.mode().is_kubernetes() {
            std::thread::sleep(POLICY_DELAY);
        }
        let reply = env.send("GET", "/v2/", Auth::Basic(&token));
        env.expect_invalid_token(&reply, &format!("a token of deleted namespace {ns}"));
    }
}
