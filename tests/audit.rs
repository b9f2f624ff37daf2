//! The audit log, read back from a real `regate serve`: one JSON line per decision and per token
//! issued with every documented field, never a credential; whole lines under 10,000 concurrent
//! requests; rotation by size; reopening on SIGHUP; stdout with `audit.path: "-"`.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

/// A file for the audit log, kept (with the directory it is in) as long as the test runs.
struct AuditFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

/// regate with the audit log in an [`AuditFile`], the `audit:` section's other fields and
/// any more config in `more`, and decisions kept long enough that a repeated request is a cache
/// hit in every mode; `token_server` turns token-server mode on.
fn audited(more: &str, token_server: bool) -> (AuditFile, Env) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("audit.log");
    let mut builder = Env::builder().namespaces(PROJECTS).gateway_config(&format!(
        "cache:\n  allow_ttl: 60s\n  deny_ttl: 60s\naudit:\n  path: {}\n{more}",
        path.display()
    ));
    if token_server {
        builder = builder.token_server();
    }
    (AuditFile { _dir: dir, path }, builder.run())
}

/// The lines of `path` once there are at least `want` (each must parse whole).
fn audit_lines(path: &Path, want: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    // Lines are written in batches: once there are enough, wait for the file to stop growing,
    // so a request's lines queued behind the first batch are in too.
    let mut last = None;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines = parse_lines(&text);
        let settled = last == Some(text.len());
        if (lines.len() >= want && settled) || Instant::now() > deadline {
            return lines;
        }
        last = (lines.len() >= want).then_some(text.len());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every line of `text` as JSON; a line that is not whole JSON fails the test.
fn parse_lines(text: &str) -> Vec<serde_json::Value> {
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "a cut line at the end"
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

/// The lines of one request.
fn of_request<'a>(lines: &'a [serde_json::Value], reply: &Reply) -> Vec<&'a serde_json::Value> {
    let id = reply.header("x-request-id").expect("a request id");
    lines.iter().filter(|l| l["request_id"] == id).collect()
}

#[test]
fn every_decision_and_token_is_one_line_with_its_fields_and_no_secret() {
    let (audit, env) = audited("", false);
    let path = &audit.path;
    let builder = env.token("builder", "project-a");
    let puller = env.token("default", "project-a");
    let started = std::time::SystemTime::now();

    let image = Image::unique(512);
    push_image(
        &env.url(),
        Auth::Basic(&builder),
        "project-a/app",
        "v1",
        &image,
    )
    .unwrap_or_else(|r| panic!("push: {} {}", r.status, r.text()));
    let pulled = env.get_manifest("project-a/app", "v1", Auth::Basic(&puller));
    assert_eq!(pulled.status, 200);
    let again = env.get_manifest("project-a/app", "v1", Auth::Basic(&puller));
    let denied = env.get_manifest("project-b/app", "v1", Auth::Basic(&puller));
    assert_eq!(denied.status, 403);
    let token = env.send(
        "GET",
        "/openshift/token?scope=repository:project-a/app:pull&service=regate",
        Auth::Basic(&puller),
    );
    assert_eq!(token.status, 200);
    let registry_token = token.json()["token"].as_str().unwrap().to_string();
    let with_token = env.get_manifest("project-a/app", "v1", Auth::Bearer(&registry_token));
    assert_eq!(with_token.status, 200);
    // A refused credential is no decision: no line.
    let refused = env.get_manifest("project-a/app", "v1", Auth::Basic("not-a-token"));
    assert_eq!(refused.status, 401);

    let lines = audit_lines(path, 10);
    let text = std::fs::read_to_string(path).unwrap();
    for secret in [&builder, &puller, &registry_token] {
        assert!(
            !text.contains(secret.as_str()),
            "a credential in the audit log"
        );
        assert!(
            !env.regate_log().contains(secret.as_str()),
            "a credential in the log"
        );
    }
    assert!(of_request(&lines, &refused).is_empty(), "{text}");
    for line in &lines {
        let time = humantime::parse_rfc3339(line["time"].as_str().unwrap()).expect("RFC 3339");
        assert!(time >= started - Duration::from_secs(1), "{line}");
        assert_eq!(line["client"], "127.0.0.1", "{line}");
        assert!(!line["request_id"].as_str().unwrap().is_empty(), "{line}");
        assert!(line["status"].is_u64(), "{line}");
    }

    // The pull: one allowed decision with the binding that allowed it, a cache miss.
    let pull = of_request(&lines, &pulled);
    assert_eq!(pull.len(), 1, "{text}");
    let pull = pull[0];
    assert_eq!(pull["event"], "decision");
    assert_eq!(pull["method"], "GET");
    assert_eq!(pull["path"], "/v2/project-a/app/manifests/v1");
    assert_eq!(pull["user"], "system:serviceaccount:project-a:default");
    let groups: Vec<&str> = pull["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    assert!(
        groups.contains(&"system:serviceaccounts:project-a")
            && groups.contains(&"system:authenticated"),
        "{groups:?}"
    );
    assert_eq!(pull["verb"], "get");
    assert_eq!(pull["resource"], "imagestreams/layers");
    assert_eq!(pull["namespace"], "project-a");
    assert_eq!(pull["name"], "app");
    assert_eq!(pull["allowed"], true);
    assert!(
        pull["reason"].as_str().unwrap().contains("image-puller"),
        "the binding that allowed it: {pull}"
    );
    assert_eq!(pull["status"], 200);
    assert_eq!(pull["cache_hit"], false);
    assert_eq!(of_request(&lines, &again)[0]["cache_hit"], true);

    // The refusal: why, and the 403.
    let refusal = of_request(&lines, &denied);
    assert_eq!(refusal.len(), 1, "{text}");
    assert_eq!(refusal[0]["allowed"], false);
    assert_eq!(refusal[0]["namespace"], "project-b");
    assert_eq!(refusal[0]["status"], 403);
    assert!(!refusal[0]["reason"].as_str().unwrap().is_empty());

    // The token: realm, scope, lifetime; never the token.
    let issued = of_request(&lines, &token);
    assert_eq!(issued.len(), 1, "{text}");
    assert_eq!(issued[0]["event"], "token");
    assert_eq!(issued[0]["realm"], "gateway");
    assert_eq!(issued[0]["scope"], "repository:project-a/app:pull");
    assert_eq!(issued[0]["user"], "system:serviceaccount:project-a:default");
    assert!(issued[0]["expires_in"].as_u64().unwrap() > 0);
    assert_eq!(issued[0]["status"], 200);
    // A request with the registry token is audited as the identity it carries.
    assert_eq!(
        of_request(&lines, &with_token)[0]["user"],
        "system:serviceaccount:project-a:default"
    );

    // The push: each request's get and update on project-a/app, all allowed.
    let pushes: Vec<_> = lines
        .iter()
        .filter(|l| l["user"] == "system:serviceaccount:project-a:builder")
        .collect();
    assert!(pushes.iter().any(|l| l["verb"] == "update"), "{text}");
    assert!(pushes.iter().all(|l| l["allowed"] == true), "{text}");
}

#[test]
fn token_server_tokens_record_the_scope_granted() {
    let (audit, env) = audited("", true);
    let path = &audit.path;
    let puller = env.token("default", "project-a");
    let reply = env.send(
        "GET",
        &format!("/token?service={TOKEN_SERVICE}&scope=repository:project-a/app:pull,push"),
        Auth::Basic(&puller),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let lines = audit_lines(path, 3);
    let mine = of_request(&lines, &reply);
    let token = mine
        .iter()
        .find(|l| l["event"] == "token")
        .expect("a token line");
    assert_eq!(token["realm"], "token_server");
    // Pull granted, push not: the scope is what the token grants.
    assert_eq!(token["scope"], "repository:project-a/app:pull");
    let push = mine
        .iter()
        .find(|l| l["verb"] == "update")
        .expect("the push decision");
    assert_eq!(push["allowed"], false);
}

#[test]
fn ten_thousand_concurrent_requests_give_ten_thousand_whole_lines() {
    const REQUESTS: usize = 10_000;
    // Before regate starts: it inherits the limit, and keeps its connections to half of it.
    raise_open_file_limit(2 * REQUESTS as u64);
    let (audit, env) = audited(
        "connections:\n  max: 15000\n  max_in_flight: 15000\n",
        false,
    );
    let path = &audit.path;
    let puller = env.token("default", "project-a");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Per request: (status, X-Request-Id) of its answer, and the transport errors before it.
    let statuses = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("client");
        // All started at once, nearly all on a connection of their own (a late starter may
        // reuse one an early answer left idle).
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(REQUESTS));
        let tasks: Vec<_> = (0..REQUESTS)
            .map(|n| {
                let (client, barrier) = (client.clone(), barrier.clone());
                // Mostly refused pulls (answered by regate alone), some allowed ones that reach
                // the registry (404: no such repository).
                let ns = if n % 10 == 0 {
                    "project-a"
                } else {
                    "project-b"
                };
                let url = format!("{}/v2/{ns}/app/tags/list", env.url());
                let token = puller.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    // At the connection cap (half of 20,000 files where that is the hard limit)
                    // regate may shed an idle connection the client is reusing that instant;
                    // a GET is then sent again, as Docker's and Go's clients do.
                    let mut errors = Vec::new();
                    for _ in 0..2 {
                        match client.get(&url).basic_auth("x", Some(&token)).send().await {
                            Ok(r) => {
                                let id = r
                                    .headers()
                                    .get("x-request-id")
                                    .and_then(|v| v.to_str().ok());
                                let id = id.unwrap_or("").to_string();
                                return (r.status().as_u16(), id, errors);
                            }
                            Err(e) => errors.push(format!("{e:?}")),
                        }
                    }
                    (0, String::new(), errors)
                })
            })
            .collect();
        let mut statuses = Vec::with_capacity(REQUESTS);
        for task in tasks {
            statuses.push(task.await.expect("task"));
        }
        statuses
    });
    let errors: Vec<&String> = statuses.iter().flat_map(|(_, _, e)| e).collect();
    if !errors.is_empty() {
        eprintln!("{} requests sent again, first: {}", errors.len(), errors[0]);
    }
    // A few sheds at the cap are expected; more would be connections lost.
    assert!(errors.len() <= REQUESTS / 100, "{errors:?}");
    assert!(
        statuses.iter().all(|(s, _, _)| matches!(s, 403 | 404)),
        "every request answered, refused or not found: {:?}",
        statuses.iter().map(|(s, _, _)| s).collect::<HashSet<_>>()
    );

    // A request sent again may have been logged the first time too (its answer lost on the
    // way back): at most one line more per resend.
    let lines = audit_lines(path, REQUESTS);
    assert!(
        (REQUESTS..=REQUESTS + errors.len()).contains(&lines.len()),
        "one line per request: {}",
        lines.len()
    );
    let ids: HashSet<&str> = lines
        .iter()
        .map(|l| l["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), lines.len(), "every request once");
    assert!(statuses.iter().all(|(_, id, _)| ids.contains(id.as_str())));
    let allowed = lines.iter().filter(|l| l["allowed"] == true).count();
    assert!(
        (REQUESTS / 10..=REQUESTS / 10 + errors.len()).contains(&allowed),
        "one allowed line per pull from project-a: {allowed}"
    );
}

/// Raises this process's open-file limit to `want`, and the hard limit too where allowed (as
/// root), so that regate, started after, can keep that many connections (it keeps its
/// connection cap to half its limit).
fn raise_open_file_limit(want: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write only the struct given.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        let raised = libc::rlimit {
            rlim_cur: want.max(limit.rlim_cur),
            rlim_max: want.max(limit.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            limit.rlim_cur = limit.rlim_max;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
    }
    assert!(
        limit.rlim_cur >= want,
        "the open-file limit {} is below the {want} this test needs (ulimit -Hn)",
        limit.rlim_cur
    );
}

#[test]
fn the_file_rotates_by_size_and_is_reopened_on_sighup() {
    let (audit, env) = audited("  max_size: 4KiB\n  max_files: 2\n", false);
    let path = &audit.path;
    let logs = path.parent().expect("a directory");
    let puller = env.token("default", "project-a");
    for _ in 0..40 {
        let reply = env.get_manifest("project-b/app", "v1", Auth::Basic(&puller));
        assert_eq!(reply.status, 403);
    }
    let rotated = |n: u32| logs.join(format!("audit.log.{n}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !rotated(2).exists() {
        assert!(Instant::now() < deadline, "rotated twice");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!rotated(3).exists(), "max_files: 2");
    let mut total = 0;
    for file in [rotated(2), rotated(1), path.clone()] {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.len() <= 4096,
            "{} is {} bytes",
            file.display(),
            text.len()
        );
        total += parse_lines(&text).len();
    }
    assert!(total >= 10, "{total}");

    // logrotate's way: move the file, then SIGHUP; new lines go to a new file.
    let moved = logs.join("audit.log.moved");
    std::fs::rename(path, &moved).unwrap();
    env.signal_regate(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env.regate_log().contains("audit log reopened") {
        assert!(Instant::now() < deadline, "{}", env.regate_log_tail(20));
        std::thread::sleep(Duration::from_millis(50));
    }
    let reply = env.get_manifest("project-b/app", "v1", Auth::Basic(&puller));
    assert_eq!(reply.status, 403, "still serving after SIGHUP");
    let lines = audit_lines(path, 1);
    assert_eq!(lines.len(), 1);
    assert_eq!(of_request(&lines, &reply).len(), 1);
}

#[test]
fn audit_lines_go_to_stdout_with_a_dash() {
    let env = Env::builder()
        .namespaces(PROJECTS)
        .gateway_config("audit:\n  path: \"-\"\n")
        .run();
    let puller = env.token("default", "project-a");
    let reply = env.get_manifest("project-b/app", "v1", Auth::Basic(&puller));
    assert_eq!(reply.status, 403);
    let id = reply.header("x-request-id").unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stdout = env.regate_stdout();
        let found = stdout
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("whole JSON"))
            .find(|l| l["request_id"] == id.as_str());
        if let Some(line) = found {
            assert_eq!(line["allowed"], false);
            assert_eq!(line["status"], 403);
            // Logs stay on stderr.
            assert!(!env.regate_log().contains("\"event\":\"decision\""));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no audit line on stdout: {stdout}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_request_id_is_regates_own_unless_a_trusted_proxy_sent_it() {
    let (audit, env) = audited("trusted_proxies: [10.9.9.9]\n", false);
    let puller = env.token("default", "project-a");
    let forged = Reply::from_request(
        Auth::Basic(&puller)
            .apply(
                env.client()
                    .get(format!("{}/v2/project-b/app/manifests/v1", env.url())),
            )
            .header("x-request-id", "someone-elses-request"),
    );
    assert_eq!(forged.status, 403);
    let id = forged.header("x-request-id").expect("an id");
    assert_ne!(id, "someone-elses-request");
    let lines = audit_lines(&audit.path, 1);
    assert_eq!(lines[0]["request_id"], id);
    drop(env);

    // From a trusted proxy (the tests' own address here), a sound id is kept; a long one is not.
    let (audit, env) = audited("trusted_proxies: [127.0.0.1]\n", false);
    let puller = env.token("default", "project-a");
    let send = |id: &str| {
        Reply::from_request(
            Auth::Basic(&puller)
                .apply(
                    env.client()
                        .get(format!("{}/v2/project-b/app/manifests/v1", env.url())),
                )
                .header("x-request-id", id),
        )
    };
    assert_eq!(send("lb-7f3a").header("x-request-id"), Some("lb-7f3a"));
    let long = "x".repeat(200);
    assert_ne!(send(&long).header("x-request-id"), Some(long.as_str()));
    let lines = audit_lines(&audit.path, 2);
    assert_eq!(lines[0]["request_id"], "lb-7f3a");
    assert!(
        !std::fs::read_to_string(&audit.path)
            .unwrap()
            .contains(&long)
    );
}
