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
        ..
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

#[test]
fn the_keys_commands_parse() {
    for args in [
        &["keys", "init"][..],
        &["keys", "init", "--dir", "/tmp/k", "--algorithm", "rs256"],
        &[
            "keys",
            "init",
            "--state",
            "/tmp/s",
            "--realm",
            "https://regate.example.com/token",
            "--service",
            "registry.example.com",
            "--issuer",
            "regate",
        ],
        &["keys", "rotate", "--dir", "/tmp/k"],
        &["keys", "rotate", "--algorithm", "es256"],
        &["keys", "show", "--state", "/tmp/s"],
    ] {
        parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    }
    assert!(parse(&["keys", "init", "--algorithm", "hs256"]).is_err());
}

/// The stdout of `regate keys init|rotate|show` as a registry's config.yml reads it.
fn registry_auth(
    published: &crate::token::keys::Published,
    registry: &keys::Registry,
) -> serde_yaml::Value {
    let text = keys::registry_config(published, registry);
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(yaml.as_mapping().map(|m| m.len()), Some(1), "{text}");
    yaml["auth"]["token"].clone()
}

#[test]
fn the_keys_output_is_the_registry_auth_section() {
    let tmp = tempfile::tempdir().unwrap();
    let published =
        crate::token::keys::init(tmp.path(), crate::token::keys::KeyAlgorithm::Es256).unwrap();
    let registry = keys::Registry {
        realm: "http://127.0.0.1:8080/token".into(),
        service: "registry".into(),
        issuer: "regate".into(),
        keys: None,
    };
    let text = keys::registry_config(&published, &registry);
    assert!(
        text.starts_with(&format!(
            "# docker-registry config.yml: regate at http://127.0.0.1:8080/token issues the tokens (key {})\nauth:\n  token:\n    realm: http://127.0.0.1:8080/token\n",
            published.signing.libtrust_id
        )),
        "{text}"
    );
    let token = registry_auth(&published, &registry);
    assert_eq!(token["realm"], "http://127.0.0.1:8080/token");
    assert_eq!(token["service"], "registry");
    assert_eq!(token["issuer"], "regate");
    assert_eq!(token["rootcertbundle"].as_str(), published.bundle.to_str());
    assert!(published.bundle.is_absolute());
    assert!(text.contains(&format!("jwks: {}", published.jwks.display())));

    // Values YAML would misread are quoted.
    let odd = keys::Registry {
        realm: "https://regate.example.com/token?a=b#c".into(),
        service: "true".into(),
        issuer: "regate: the issuer".into(),
        keys: None,
    };
    let token = registry_auth(&published, &odd);
    assert_eq!(token["realm"], "https://regate.example.com/token?a=b#c");
    assert_eq!(token["service"], "true");
    assert_eq!(token["issuer"], "regate: the issuer");
}

#[test]
fn keys_init_rotate_and_show_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let dir = dir.to_str().unwrap();
    run(parse(&["keys", "show", "--dir", dir]).unwrap()).expect_err("show before init must fail");
    run(parse(&["keys", "init", "--dir", dir]).unwrap()).unwrap();
    let error = run(parse(&["keys", "init", "--dir", dir]).unwrap()).unwrap_err();
    assert!(
        format!("{error:#}").contains("regate keys rotate"),
        "{error:#}"
    );
    run(parse(&["keys", "rotate", "--dir", dir, "--algorithm", "rs256"]).unwrap()).unwrap();
    run(parse(&["keys", "show", "--dir", dir]).unwrap()).unwrap();
    let published = crate::token::keys::published(std::path::Path::new(dir)).unwrap();
    assert_eq!(
        published.signing.algorithm,
        crate::token::keys::KeyAlgorithm::Rs256
    );
    assert!(published.previous.is_some());
    let error = run(parse(&[
        "keys",
        "init",
        "--dir",
        "/nonexistent-x",
        "--realm",
        "ftp://x",
    ])
    .unwrap())
    .unwrap_err();
    assert!(format!("{error:#}").contains("--realm"), "{error:#}");
}

#[test]
fn keys_take_realm_service_issuer_and_dir_from_regates_config() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("regate.yaml");
    let keys_dir = tmp.path().join("k");
    std::fs::write(
        &config,
        format!(
            "public_url: https://regate.example.com\ntoken_server:\n  realm_path: /auth/token\n  \
             service: reg.example.com\n  issuer: us\n  keys: {}\n",
            keys_dir.display()
        ),
    )
    .unwrap();
    let args = keys::RegistryArgs {
        config: Some(config.clone()),
        issuer: Some("flag-wins".into()),
        ..Default::default()
    };
    let registry = args.resolve(&StateArg { state: None }).unwrap();
    assert_eq!(
        registry,
        keys::Registry {
            realm: "https://regate.example.com/auth/token".into(),
            service: "reg.example.com".into(),
            issuer: "flag-wins".into(),
            keys: Some(keys_dir.clone()),
        }
    );

    let no_section = tmp.path().join("plain.yaml");
    std::fs::write(&no_section, "listen: 127.0.0.1:0\n").unwrap();
    let cli = Cli::try_parse_from([
        "regate",
        "keys",
        "show",
        "--config",
        no_section.to_str().unwrap(),
    ])
    .unwrap();
    let err = format!("{:#}", run(cli).unwrap_err());
    assert!(err.contains("no token_server section"), "{err}");
}

#[test]
fn the_secret_commands_parse() {
    for args in [
        &[
            "create",
            "secret",
            "docker-registry",
            "s",
            "--docker-server=r.example.com",
            "--docker-username=u",
            "--docker-password=p",
            "--docker-email=e@example.com",
            "-n",
            "ns",
        ][..],
        &[
            "create",
            "secret",
            "docker-registry",
            "s",
            "--docker-username=u",
            "--docker-password-stdin",
            "-n",
            "ns",
            "--dry-run",
            "-o",
            "yaml",
        ],
        &[
            "create",
            "secret",
            "generic",
            "s",
            "--from-file=.dockerconfigjson=config.json",
            "--type=kubernetes.io/dockerconfigjson",
            "-n",
            "ns",
        ],
        &[
            "secrets",
            "link",
            "default",
            "a",
            "b",
            "--for=pull",
            "-n",
            "ns",
        ],
        &[
            "secrets",
            "link",
            "default",
            "a",
            "--for=pull,mount",
            "-n",
            "ns",
        ],
        &["secrets", "unlink", "default", "a", "-n", "ns"],
    ] {
        parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    }
    for args in [
        // A password is needed, once.
        &[
            "create",
            "secret",
            "docker-registry",
            "s",
            "--docker-username=u",
            "-n",
            "ns",
        ][..],
        &[
            "create",
            "secret",
            "docker-registry",
            "s",
            "--docker-username=u",
            "--docker-password=p",
            "--docker-password-stdin",
            "-n",
            "ns",
        ],
        &["create", "secret", "generic", "s", "-n", "ns"],
        &["secrets", "link", "default", "-n", "ns"],
        &["secrets", "link", "default", "a", "--for=push", "-n", "ns"],
    ] {
        assert!(parse(args).is_err(), "{args:?} must be refused");
    }
}

/// Arbitrary words for a subject, namespace or role: any text without NUL (which no argument
/// can hold), or text dense in what a shell reads as code.
fn hostile_word() -> impl proptest::strategy::Strategy<Value = String> {
    proptest::prop_oneof![
        "[^\\x00]{0,24}",
        "[-a-z0-9: '\"$`(){}\\\\;|*&<>!#~=?\\[\\]\n\t]{0,24}",
    ]
}

/// The values `regate` parses from `args` for `policy VERB ROLE SUBJECT [-n NS]`.
fn parsed_policy_args(args: &[String]) -> (String, String, Vec<String>, Option<String>) {
    let matches = Cli::command()
        .try_get_matches_from(std::iter::once("regate".to_string()).chain(args.iter().cloned()))
        .unwrap_or_else(|e| panic!("{args:?} does not parse: {e}"));
    let (_, policy) = matches.subcommand().expect("policy");
    let (verb, command) = policy.subcommand().expect("a policy verb");
    let role = command
        .get_one::<String>("role")
        .cloned()
        .unwrap_or_default();
    let subjects = if verb.ends_with("-group") {
        "groups"
    } else {
        "users"
    };
    let users = command
        .get_many::<String>(subjects)
        .map(|users| users.cloned().collect())
        .unwrap_or_default();
    let namespace = command.get_one::<String>("namespace").cloned();
    (verb.to_string(), role, users, namespace)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// Every `regate policy` command regate prints (the 403's, `explain`'s, `can-i`'s, the
    /// console's), run by bash, gives `regate` exactly the role, subject and namespace it
    /// names, which the CLI parses back into the same values.
    #[test]
    fn printed_policy_commands_give_the_cli_exactly_their_words(
        role in hostile_word(),
        subject in hostile_word(),
        namespace in hostile_word(),
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let namespaced = crate::policy::Attributes::layers("get", &namespace, "app");
        let cluster = crate::policy::Attributes::cluster("delete", "images");
        let mut commands = Vec::new();
        for attrs in [&namespaced, &cluster] {
            // An empty namespace is the cluster scope: a cluster grant.
            let (verb, ns) = match attrs.namespace.as_str() {
                "" => ("add-cluster-role-to-user", None),
                ns => ("add-role-to-user", Some(ns.to_string())),
            };
            let command = crate::policy::grant_command(&role, &subject, attrs);
            commands.push((command, verb, ns));
        }
        // The console's revoke of a group, with any namespace at all.
        let verb = "remove-role-from-group";
        let command = crate::policy::policy_command(verb, &role, &subject, Some(&namespace));
        commands.push((command, verb, Some(namespace.clone())));
        for (command, verb, ns) in commands {
            let args = crate::shell::tests::arguments_bash_gives(&command, dir.path());
            let parsed = parsed_policy_args(&args);
            proptest::prop_assert_eq!(
                parsed,
                (verb.to_string(), role.clone(), vec![subject.clone()], ns),
                "{}", command
            );
        }
        let std::result::Result::Ok(entries) = std::fs::read_dir(dir.path()) else {
            panic!("read the temp dir");
        };
        proptest::prop_assert_eq!(entries.count(), 0, "a command created a file");
    }
}
