//! The access questions of the CLI as a whole process against a real state directory:
//! `regate policy who-can`, `regate auth can-i`, `regate policy explain` (exact outputs and exit
//! codes), and `regate completion`.

mod common;

use std::process::Command;

use common::*;

/// `project-a` and `project-b`, and no server: these commands only read the state directory.
fn env() -> Env {
    Env::builder().namespaces(PROJECTS).cli_only().run()
}

/// Runs `args` and checks the exit code, returning stdout.
fn expect(env: &Env, args: &[&str], code: i32) -> String {
    stdout(&env.regate_exit(args, code))
}

#[test]
fn who_can_lists_subjects_and_their_bindings() {
    let env = env();
    env.regate_ok(&["create", "user", "alice", "--group", "developers"]);
    env.regate_ok(&[
        "policy",
        "add-role-to-user",
        "system:image-puller",
        "alice",
        "-n",
        "project-b",
    ]);
    assert_eq!(
        expect(
            &env,
            &["policy", "who-can", "get", "imagestreams/layers", "-n", "project-b"],
            0
        ),
        "\
Namespace: project-b
Verb:      get
Resource:  imagestreams.image.openshift.io/layers

Users:  alice                                    RoleBinding project-b/system:image-puller (ClusterRole system:image-puller)
        system:serviceaccount:project-b:builder  RoleBinding project-b/system:image-builders (ClusterRole system:image-builder)

Groups: system:serviceaccounts:project-b         RoleBinding project-b/system:image-pullers (ClusterRole system:image-puller)
"
    );
    assert_eq!(
        expect(&env, &["policy", "who-can", "delete", "images"], 0),
        "\
Namespace: <all>
Verb:      delete
Resource:  images.image.openshift.io

Users:  none

Groups: none
"
    );
}

#[test]
fn can_i_answers_with_its_exit_code() {
    let env = env();
    let sa = "system:serviceaccount:project-a:default";
    let can_i = |ns: &str, verbose: bool, code| {
        let mut args = vec![
            "auth",
            "can-i",
            "get",
            "imagestreams/layers",
            "app",
            "-n",
            ns,
            "--as",
            sa,
        ];
        if verbose {
            args.push("-v");
        }
        expect(&env, &args, code)
    };
    assert_eq!(can_i("project-a", false, 0), "yes\n");
    assert_eq!(can_i("project-b", false, 1), "no\n");
    assert_eq!(
        can_i("project-a", true, 0),
        "yes\nallowed by RoleBinding project-a/system:image-pullers (ClusterRole system:image-puller)\n"
    );
    assert_eq!(
        can_i("project-b", true, 1),
        "no\nno ClusterRoleBinding nor RoleBinding of namespace project-b grants \
         system:serviceaccount:project-a:default get imagestreams/layers \"app\" in namespace \
         project-b\nto grant it: regate policy add-role-to-user system:image-puller \
         system:serviceaccount:project-a:default -n project-b\n"
    );
    // --as-group: a member of project-b's service account group may pull from project-b.
    let out = expect(
        &env,
        &[
            "auth",
            "can-i",
            "get",
            "imagestreams/layers",
            "-n",
            "project-b",
            "--as",
            "bob",
            "--as-group",
            "system:serviceaccounts:project-b",
        ],
        0,
    );
    assert_eq!(out, "yes\n");
}

#[test]
fn explain_prints_the_command_that_grants_and_after_it_allows() {
    let env = env();
    let sa = "system:serviceaccount:project-a:default";
    let explain = || expect(&env, &["policy", "explain", "project-b/app", "--as", sa], 0);
    let before = explain();
    assert_eq!(
        before,
        "\
Repository: project-b/app (namespace project-b, image stream app)
Subject:    system:serviceaccount:project-a:default (groups system:authenticated, system:serviceaccounts, system:serviceaccounts:project-a)

pull:   no   get imagestreams/layers: no binding
             to grant it: regate policy add-role-to-user system:image-puller system:serviceaccount:project-a:default -n project-b
push:   no   get imagestreams/layers: no binding
             update imagestreams/layers: no binding
             to grant it: regate policy add-role-to-user system:image-pusher system:serviceaccount:project-a:default -n project-b
delete: no   delete images (cluster scope): no binding
             to grant it: regate policy add-cluster-role-to-user system:image-pruner system:serviceaccount:project-a:default
"
    );
    // Run every printed command, as an operator would paste it.
    for line in before.lines() {
        let Some(command) = line.trim().strip_prefix("to grant it: regate ") else {
            continue;
        };
        let args: Vec<&str> = command.split_whitespace().collect();
        env.regate_ok(&args);
    }
    assert_eq!(
        explain(),
        "\
Repository: project-b/app (namespace project-b, image stream app)
Subject:    system:serviceaccount:project-a:default (groups system:authenticated, system:serviceaccounts, system:serviceaccounts:project-a)

pull:   yes  get imagestreams/layers: RoleBinding project-b/system:image-puller (ClusterRole system:image-puller)
push:   yes  get imagestreams/layers: RoleBinding project-b/system:image-puller (ClusterRole system:image-puller)
             update imagestreams/layers: RoleBinding project-b/system:image-pusher (ClusterRole system:image-pusher)
delete: yes  delete images (cluster scope): ClusterRoleBinding system:image-pruner (ClusterRole system:image-pruner)
"
    );
    // The cluster binding the pruner grant made is what who-can lists for manifest deletes.
    assert_eq!(
        expect(&env, &["policy", "who-can", "delete", "images"], 0),
        "\
Namespace: <all>
Verb:      delete
Resource:  images.image.openshift.io

Users:  system:serviceaccount:project-a:default  ClusterRoleBinding system:image-pruner (ClusterRole system:image-pruner)

Groups: none
"
    );
}

#[test]
fn mistakes_are_errors_naming_the_close_matches() {
    let env = env();
    let fails = |args: &[&str], message: &str| {
        let out = env.regate(args);
        assert_eq!(out.status.code(), Some(1), "{}", show_output(&out));
        assert!(
            stderr(&out).contains(message),
            "`regate {}` must say {message:?}: {}",
            args.join(" "),
            show_output(&out)
        );
        assert_eq!(stdout(&out), "", "nothing on stdout");
    };
    fails(
        &[
            "policy",
            "who-can",
            "get",
            "imagestreams/layers",
            "-n",
            "project-c",
        ],
        "error: namespace \"project-c\" not found; did you mean project-a or project-b?; \
         create it with: regate create namespace project-c",
    );
    fails(
        &[
            "policy",
            "who-can",
            "get",
            "imagestream/layers",
            "-n",
            "project-a",
        ],
        "did you mean imagestreams/layers",
    );
    fails(
        &[
            "auth",
            "can-i",
            "get",
            "imagestreams/layers",
            "-n",
            "project-a",
            "--as",
            "system:serviceacount:project-a:builder",
        ],
        "unknown subject kind \"system:serviceacount\"",
    );
    fails(
        &[
            "policy",
            "explain",
            "project-a/app",
            "--as",
            "system:serviceaccount:project-a:buildr",
        ],
        "did you mean builder?",
    );
    // A repository name is checked as the gateway checks it.
    fails(
        &["policy", "explain", "Project-A/app", "--as", "alice"],
        "error: invalid repository name",
    );
}

#[test]
fn completion_scripts_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(REGATE)
            .args(["completion", shell])
            .output()
            .expect("run regate completion");
        assert!(out.status.success(), "{shell}: {}", show_output(&out));
        let script = stdout(&out);
        assert!(
            script.contains("regate") && script.contains("who-can"),
            "{shell} script: {script}"
        );
    }
}

/// `explain` and the gateway agree: each command `explain` prints is the one the gateway's 403
/// for that request names.
#[test]
fn explain_prints_the_commands_the_gateways_403s_name() {
    let env = Env::with_projects();
    let sa = "system:serviceaccount:project-a:default";
    let explained = env.regate_ok(&["policy", "explain", "project-b/app", "--as", sa]);
    let commands: Vec<&str> = explained
        .lines()
        .filter_map(|line| line.trim().strip_prefix("to grant it: "))
        .collect();
    assert_eq!(commands.len(), 3, "pull, push, delete: {explained}");

    let token = env.token("default", "project-a");
    let digest = format!("sha256:{}", "0".repeat(64));
    let replies = [
        env.get_manifest("project-b/app", "v1", Auth::Basic(&token)),
        env.start_upload("project-b/app", Auth::Basic(&token)),
        env.send(
            "DELETE",
            &format!("/v2/project-b/app/manifests/{digest}"),
            Auth::Basic(&token),
        ),
    ];
    for (reply, command) in replies.iter().zip(&commands) {
        let error = env.expect_error(reply, 403, "DENIED", command);
        let message = error["message"].as_str().unwrap_or_default();
        assert!(
            message.ends_with(&format!("grants it: {command}")),
            "the 403 names {command:?}: {message}"
        );
    }
}

/// The bash script, sourced into a real bash, completes a subcommand.
#[test]
fn bash_completes_subcommands() {
    let script = Command::new(REGATE)
        .args(["completion", "bash"])
        .output()
        .expect("run regate completion bash");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("regate.bash");
    std::fs::write(&path, &script.stdout).expect("write the script");
    let out = Command::new("bash")
        .arg("-c")
        .arg(
            "source \"$1\"; COMP_WORDS=(regate policy wh); COMP_CWORD=2; \
             _regate regate wh policy; echo \"${COMPREPLY[@]}\"",
        )
        .arg("bash")
        .arg(&path)
        .output()
        .expect("run bash");
    assert_eq!(stdout(&out), "who-can\n", "{}", show_output(&out));
}
