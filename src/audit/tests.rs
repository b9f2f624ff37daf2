use std::time::{Duration, SystemTime};

use super::*;

fn pull(namespace: &str) -> Attributes {
    Attributes::layers("get", namespace, "app")
}

fn request<'a>(groups: &'a [String]) -> RequestRecord<'a> {
    RequestRecord {
        request_id: "id-1",
        client: Some("10.0.0.7".parse().unwrap()),
        method: "GET",
        path: "/v2/project-b/app/manifests/latest",
        user: Some("system:serviceaccount:project-a:default"),
        groups,
        status: 403,
    }
}

fn parse(bytes: &[u8]) -> Vec<serde_json::Value> {
    let text = std::str::from_utf8(bytes).unwrap();
    assert!(text.ends_with('\n'), "{text}");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_decision_line_has_every_field() {
    let groups = vec!["system:serviceaccounts".to_string()];
    let events = [
        Event::Decision {
            time: SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_484_262_123_456),
            attrs: pull("project-b"),
            decision: Some(Decision::deny(
                "no RoleBinding in project-b or ClusterRoleBinding grants it",
            )),
            cache_hit: true,
        },
        Event::Decision {
            time: SystemTime::now(),
            attrs: pull("project-c"),
            decision: None,
            cache_hit: false,
        },
    ];
    let lines = parse(&lines(&request(&groups), &events));
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0],
        serde_json::json!({
            "time": "2025-11-30T06:31:02.123456Z",
            "event": "decision",
            "request_id": "id-1",
            "client": "10.0.0.7",
            "method": "GET",
            "path": "/v2/project-b/app/manifests/latest",
            "user": "system:serviceaccount:project-a:default",
            "groups": ["system:serviceaccounts"],
            "verb": "get",
            "resource": "imagestreams/layers",
            "namespace": "project-b",
            "name": "app",
            "allowed": false,
            "reason": "no RoleBinding in project-b or ClusterRoleBinding grants it",
            "cache_hit": true,
            "status": 403,
        })
    );
    assert_eq!(lines[1]["allowed"], false);
    assert_eq!(lines[1]["reason"], FAIL_CLOSED);
    assert_eq!(lines[1]["namespace"], "project-c");
}

#[test]
fn a_token_line_names_the_realm_and_scope_never_the_token() {
    let groups = vec![];
    let events = [Event::Token {
        time: SystemTime::now(),
        realm: "token_server",
        scope: Some("repository:project-a/app:pull".into()),
        expires_in: 300,
        refresh_token: true,
    }];
    let line = &parse(&lines(&request(&groups), &events))[0];
    assert_eq!(line["event"], "token");
    assert_eq!(line["realm"], "token_server");
    assert_eq!(line["scope"], "repository:project-a/app:pull");
    assert_eq!(line["expires_in"], 300);
    assert_eq!(line["refresh_token"], true);
    assert!(line.get("token").is_none() && line.get("verb").is_none());
}

#[test]
fn hostile_paths_and_names_stay_inside_one_line() {
    let groups = vec!["a\"b\nc".to_string()];
    let record = RequestRecord {
        path: "/v2/x\r\n{\"forged\":true}/manifests/latest",
        user: Some("eve\n{\"event\":\"decision\"}"),
        ..request(&groups)
    };
    let events = [Event::Decision {
        time: SystemTime::now(),
        attrs: pull("p"),
        decision: Some(Decision::Allow { by: "x".into() }),
        cache_hit: false,
    }];
    let lines = parse(&lines(&record, &events));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["user"], "eve\n{\"event\":\"decision\"}");
}

fn file_output(dir: &std::path::Path, max_size: u64, max_files: u32) -> AuditOutput {
    AuditOutput::File {
        path: dir.join("audit.log"),
        max_size,
        max_files,
    }
}

fn line(n: usize) -> Vec<u8> {
    format!("{{\"n\":{n},\"pad\":\"{}\"}}\n", "x".repeat(80)).into_bytes()
}

/// Every line in `audit.log` and its rotated files, oldest file first.
fn read_all(dir: &std::path::Path, max_files: u32) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    for n in (1..=max_files).rev() {
        if let Ok(bytes) = std::fs::read(dir.join(format!("audit.log.{n}"))) {
            all.extend(parse(&bytes));
        }
    }
    all.extend(parse(&std::fs::read(dir.join("audit.log")).unwrap()));
    all
}

#[test]
fn the_file_rotates_by_size_keeping_max_files_and_whole_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(&file_output(dir.path(), 4096, 3)).unwrap();
    for n in 0..200 {
        log.write(line(n));
    }
    log.flush();
    for n in 1..=3 {
        let rotated = dir.path().join(format!("audit.log.{n}"));
        let size = std::fs::metadata(&rotated).unwrap().len();
        assert!(
            size <= 4096 && size > 3000,
            "{} is {size} bytes",
            rotated.display()
        );
    }
    assert!(!dir.path().join("audit.log.4").exists());
    // The newest lines, in order, none cut.
    let kept: Vec<u64> = read_all(dir.path(), 3)
        .iter()
        .map(|l| l["n"].as_u64().unwrap())
        .collect();
    assert!(kept.len() > 100, "{}", kept.len());
    assert_eq!(*kept.last().unwrap(), 199);
    assert!(kept.windows(2).all(|w| w[1] == w[0] + 1), "{kept:?}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("audit.log"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn reopen_follows_a_file_moved_away() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(&file_output(dir.path(), 1 << 20, 1)).unwrap();
    log.write(line(1));
    log.flush();
    std::fs::rename(dir.path().join("audit.log"), dir.path().join("moved")).unwrap();
    // Until reopened, lines follow the moved file (as with any log and logrotate).
    log.write(line(2));
    log.reopen();
    log.write(line(3));
    log.flush();
    let moved = parse(&std::fs::read(dir.path().join("moved")).unwrap());
    let new = parse(&std::fs::read(dir.path().join("audit.log")).unwrap());
    assert_eq!(moved.len(), 2);
    assert_eq!(new.len(), 1);
    assert_eq!(new[0]["n"], 3);
}

#[test]
fn lines_from_many_threads_stay_whole() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(AuditLog::open(&file_output(dir.path(), 1 << 30, 1)).unwrap());
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for n in 0..500 {
                    // Two lines per request, as a push writes them.
                    let mut both = line(t * 1000 + n);
                    both.extend(line(t * 1000 + n));
                    log.write(both);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    log.flush();
    let all = parse(&std::fs::read(dir.path().join("audit.log")).unwrap());
    assert_eq!(all.len(), 16 * 500 * 2);
    // A request's lines are adjacent.
    for pair in all.chunks(2) {
        assert_eq!(pair[0]["n"], pair[1]["n"]);
    }
}

#[test]
fn an_unwritable_path_fails_at_open_naming_the_field() {
    let error = AuditLog::open(&AuditOutput::File {
        path: "/nonexistent-dir/audit.log".into(),
        max_size: 4096,
        max_files: 1,
    })
    .err()
    .expect("no such directory");
    let text = error.to_string();
    assert!(
        text.starts_with("audit.path /nonexistent-dir/audit.log: "),
        "{text}"
    );
}

#[test]
fn a_binding_line_says_what_was_changed_and_whether() {
    let groups = vec!["system:authenticated".to_string()];
    let record = RequestRecord {
        method: "POST",
        path: "/console/namespaces/project-b/grant",
        user: Some("ops"),
        client: None,
        status: 303,
        ..request(&groups)
    };
    let command = "regate policy add-role-to-user system:image-puller alice -n project-b";
    let events = [
        Event::Binding {
            time: SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_484_262_123_456),
            command: command.to_string(),
            namespace: "project-b".to_string(),
            refused: None,
        },
        Event::Binding {
            time: SystemTime::now(),
            command: command.to_string(),
            namespace: "project-b".to_string(),
            refused: Some("Not granted: ops may not create rolebindings".to_string()),
        },
    ];
    let lines = parse(&lines(&record, &events));
    assert_eq!(
        lines[0],
        serde_json::json!({
            "time": "2025-11-30T06:31:02.123456Z",
            "event": "binding",
            "request_id": "id-1",
            "method": "POST",
            "path": "/console/namespaces/project-b/grant",
            "user": "ops",
            "groups": ["system:authenticated"],
            "command": command,
            "namespace": "project-b",
            "done": true,
            "status": 303,
        })
    );
    assert_eq!(lines[1]["done"], false);
    assert_eq!(
        lines[1]["refused"],
        "Not granted: ops may not create rolebindings"
    );
}
