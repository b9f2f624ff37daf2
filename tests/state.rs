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
