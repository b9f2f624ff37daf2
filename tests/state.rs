//! The embedded authority's state directory under concurrent CLI writers and hand edits, seen
//! through a running `regate serve`.

mod common;

use std::thread;

use common::*;
use k8s_openapi::api::rbac::v1::RoleBinding;

#[test]
fn twenty_parallel_cli_writers_lose_no_subject() {
    let env = Env::with_projects();
    thread::scope(|scope| {
        for i in 0..20 {
            let env = &env;
            scope.spawn(move || {
                env.regate_ok(&[
                    "policy",
                    "add-role-to-user",
                    "system:image-puller",
                    &format!("user-{i}"),
                    "-n",
                    "project-b",
                ]);
            });
        }
    });
    let path = env
        .state_dir()
        .join("namespaces/project-b/rolebindings/system:image-puller.yaml");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let binding: RoleBinding = serde_yaml::from_str(&text).expect("the binding parses");
    let mut names: Vec<String> = binding
        .subjects
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.name)
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(
        names.len(),
        20,
        "every writer's subject is there: {names:?}"
    );

    // And the server sees them: each user may now pull from project-b.
    env.regate_ok(&["create", "user", "user-7"]);
    std::thread::sleep(POLICY_DELAY);
    let image = Image::unique(1024);
    env.seed("project-b/app", "v1", &image);
    let token = env.user_token("user-7");
    let reply = env.get_manifest("project-b/app", "v1", Auth::Basic(&token));
    env.expect_status(&reply, 200, "user-7 pulls after the parallel grants");
}

#[test]
fn a_broken_hand_edit_keeps_the_last_good_policy_and_names_file_and_line() {
    let env = Env::with_projects();
    let image = Image::unique(1024);
    env.seed("project-b/app", "v1", &image);
    let default_a = env.token("default", "project-a");
    env.grant_pull("system:serviceaccount:project-a:default", "project-b");
    let reply = env.get_manifest("project-b/app", "v1", Auth::Basic(&default_a));
    env.expect_status(&reply, 200, "granted before the bad edit");

    // An operator removes the grant by hand but leaves the file broken on line 4.
    let path = env
        .state_dir()
        .join("namespaces/project-b/rolebindings/system:image-puller.yaml");
    std::fs::write(
        &path,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: [oops\n",
    )
    .expect("write the broken file");
    thread::sleep(POLICY_DELAY);
    let log = env.policy_log();
    assert!(
        log.contains("system:image-puller.yaml:4:"),
        "the server log names the file and line 4:\n{}",
        tail(&env.policy_log(), 10)
    );
    let reply = env.get_manifest("project-b/app", "v1", Auth::Basic(&default_a));
    env.expect_status(&reply, 200, "the last good policy stays in force");

    // Fixed by removing the file: the grant is gone, within a second, without a restart.
    std::fs::remove_file(&path).expect("remove the broken file");
    thread::sleep(POLICY_DELAY);
    let reply = env.get_manifest("project-b/app", "v1", Auth::Basic(&default_a));
    env.expect_error(&reply, 403, "DENIED", "after the file was removed");
}

/// An operator's mistakes are said once, on one line, with where regate looked: an object not
/// found names the state directory (a forgotten `REGATE_STATE` otherwise looks like a missing
/// namespace), and a config typo names file, line and field once.
#[test]
fn cli_errors_say_where_they_looked_once() {
    let env = Env::cli_only();
    let out = env.regate(&[
        "policy",
        "add-role-to-user",
        "system:image-puller",
        "alice",
        "-n",
        "project-nope",
    ]);
    expect_failure(&out, "a grant in a namespace that does not exist");
    let text = stderr(&out);
    let state = env.state_dir().display().to_string();
    assert!(
        text.contains("namespace \"project-nope\" not found")
            && text.contains(&format!("looked in state directory {state}"))
            && text.contains("REGATE_STATE"),
        "{text}"
    );
    assert_eq!(text.trim_end().lines().count(), 1, "one line: {text}");

    let config = env.dir().join("typo.yaml");
    std::fs::write(&config, "listen: 127.0.0.1:0\nlisen: 127.0.0.1:0\n").expect("write config");
    let out = env.regate(&[
        "serve",
        "--config",
        config.to_str().expect("utf-8"),
        "--upstream",
        "http://127.0.0.1:9",
    ]);
    expect_failure(&out, "a config with a typo");
    let text = stderr(&out);
    assert_eq!(
        text.matches("unknown field `lisen`").count(),
        1,
        "said once: {text}"
    );
    assert!(text.contains("typo.yaml:2"), "file and line: {text}");
}

/// A signing key others may read is warned about when `regate serve` loads it, with the fix:
/// whoever reads it can make any token.
#[test]
fn a_signing_key_others_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt as _;
    if AuthorityMode::from_env() != AuthorityMode::Embedded {
        // The gateway reads no state directory key in kubernetes mode.
        return;
    }
    let mut env = Env::builder().namespaces(PROJECTS).run();
    let key = env.state_dir().join("signing.key");
    assert!(key.exists(), "the state directory's key: {}", key.display());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    env.start_replicas(1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = env.replica_log(0);
        if log.contains("readable by other users") {
            assert!(log.contains("chmod 600"), "{log}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no warning: {log}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A state directory regate's user may not write is one line, the cause said once, with the
/// user to give access to (the container image's is 10001), and no temporary file's name.
#[test]
fn a_state_directory_it_may_not_write_says_which_user_needs_it() {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("needs root to run the CLI as another user; skipped");
        return;
    }
    let env = Env::cli_only();
    env.regate_ok(&["create", "namespace", "project-a"]);
    let state = env.state_dir().display().to_string();
    let mut command = std::process::Command::new(REGATE);
    command
        .args(["create", "namespace", "project-b", "--state", &state])
        .env_remove("REGATE_STATE")
        .uid(65534)
        .gid(65534);
    let out = run_bounded(command, std::time::Duration::from_secs(30));
    expect_failure(&out, "a state directory of another user");
    let text = stderr(&out);
    assert_eq!(text.trim_end().lines().count(), 1, "one line: {text}");
    assert_eq!(text.matches("ermission denied").count(), 1, "once: {text}");
    assert!(
        text.contains("uid 65534") && text.contains("10001") && !text.contains(".tmp-"),
        "{text}"
    );
}
