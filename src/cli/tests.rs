use clap::CommandFactory;

use super::*;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("regate").chain(args.iter().copied()))
}

#[test]
fn the_command_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn every_command_has_an_example() {
    fn check(command: &clap::Command, path: &str) {
        let path = format!("{path} {}", command.get_name());
        let subcommands: Vec<_> = command.get_subcommands().collect();
        if subcommands.is_empty() {
            let help = command.get_after_help().map(|h| h.to_string());
            assert!(
                help.is_some_and(|h| h.contains("Example")),
                "{path} has no example"
            );
        }
        for sub in subcommands {
            check(sub, &path);
        }
    }
    for sub in Cli::command().get_subcommands() {
        check(sub, "regate");
    }
}

#[test]
fn the_issue_commands_parse() {
    for args in [
        &["create", "namespace", "project-a"][..],
        &["create", "serviceaccount", "ci", "-n", "project-a"],
        &["create", "user", "alice", "--group", "a", "--group", "b"],
        &["create", "token", "builder", "-n", "project-a"],
        &[
            "create",
            "token",
            "builder",
            "-n",
            "project-a",
            "--duration",
            "10m",
        ],
        &["create", "token", "--user", "alice"],
        &[
            "policy",
            "add-role-to-user",
            "system:image-puller",
            "system:serviceaccount:project-a:default",
            "-n",
            "project-b",
        ],
        &[
            "policy",
            "add-role-to-user",
            "system:image-pusher",
            "-z",
            "ci",
            "-n",
            "b",
        ],
        &[
            "policy",
            "add-role-to-group",
            "system:image-puller",
            "system:serviceaccounts:project-a",
            "-n",
            "project-b",
        ],
        &["policy", "remove-role-from-user", "r", "alice", "-n", "b"],
        &["policy", "remove-role-from-group", "r", "g", "-n", "b"],
        &[
            "policy",
            "add-cluster-role-to-user",
            "system:image-pruner",
            "alice",
        ],
        &["policy", "add-cluster-role-to-group", "r", "g"],
        &["policy", "remove-cluster-role-from-user", "r", "u"],
        &["policy", "remove-cluster-role-from-group", "r", "g"],
        &["delete", "namespace", "a"],
        &["delete", "serviceaccount", "ci", "-n", "a"],
        &["delete", "user", "alice", "--state", "/tmp/x"],
        &["serve", "--listen", "127.0.0.1:0", "--state", "/tmp/x"],
    ] {
        parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    }
}

#[test]
fn missing_arguments_are_usage_errors() {
    for args in [
        &["create", "token", "builder"][..],
        &["create", "token"],
        &["create", "token", "builder", "-n", "a", "--user", "alice"],
        &["create", "token", "--user", "alice", "--duration", "soon"],
        &["policy", "add-role-to-user", "r", "alice"],
        &["policy", "add-role-to-user", "r", "-n", "a"],
        &["policy", "add-role-to-group", "r", "-n", "a"],
        &["policy", "add-cluster-role-to-user", "r", "-z", "ci"],
        &["create", "serviceaccount", "ci"],
    ] {
        assert!(parse(args).is_err(), "{args:?} parsed");
    }
}

#[test]
fn token_duration_defaults_to_an_hour() {
    let Ok(Cli {
        command: Command::Create(create::Create::Token(args)),
    }) = parse(&["create", "token", "--user", "alice"])
    else {
        panic!("not a token command");
    };
    assert!(format!("{args:?}").contains("duration: 3600s"), "{args:?}");
}

#[test]
fn messages_read_like_oc() {
    assert_eq!(
        policy::message(
            policy::Change::Add,
            "system:image-puller",
            &["system:serviceaccount:project-a:default".into()]
        ),
        r#"clusterrole.rbac.authorization.k8s.io/system:image-puller added: "system:serviceaccount:project-a:default""#
    );
    assert_eq!(
        policy::message(policy::Change::Remove, "r", &["a".into(), "b".into()]),
        r#"clusterrole.rbac.authorization.k8s.io/r removed: ["a" "b"]"#
    );
}
