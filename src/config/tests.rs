use super::*;

fn load_yaml(yaml: &str, args: ServeArgs) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("regate.yaml");
    std::fs::write(&path, yaml).unwrap();
    Config::load(&ServeArgs {
        config: Some(path),
        ..args
    })
}

#[test]
fn flags_override_the_file() {
    let c = load_yaml(
        "listen: 127.0.0.1:9000\nupstream: http://127.0.0.1:5000\ncache:\n  deny_ttl: 10s\n",
        ServeArgs {
            listen: Some("127.0.0.1:0".into()),
            ..ServeArgs::default()
        },
    )
    .unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:0");
    assert_eq!(c.cache.deny_ttl, std::time::Duration::from_secs(10));
    assert_eq!(c.cache.allow_ttl, std::time::Duration::from_secs(300));
}

#[test]
fn errors_name_the_file_and_field() {
    let e = load_yaml("cache:\n  allow_ttl: soon\n", ServeArgs::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("regate.yaml: field `cache.allow_ttl`"), "{e}");
    let e = load_yaml("listn: 1\n", ServeArgs::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("regate.yaml:1: unknown field `listn`"), "{e}");
    let e = load_yaml("public_url: ftp://x\n", ServeArgs::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("public_url"), "{e}");
}

#[test]
fn the_shipped_example_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/regate.yaml");
    Config::load(&ServeArgs {
        config: Some(path),
        ..ServeArgs::default()
    })
    .unwrap();
}

#[test]
fn a_bad_flag_is_named_as_typed() {
    let e = Config::load(&ServeArgs {
        public_url: Some("registry.example.com".into()),
        ..ServeArgs::default()
    })
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("--public-url: "), "{e}");
}

#[test]
fn token_server_mode_is_on_with_the_section_and_takes_defaults() {
    let args = || ServeArgs {
        state: Some("/srv/regate".into()),
        ..ServeArgs::default()
    };
    assert!(
        load_yaml("listen: 127.0.0.1:0\n", args())
            .unwrap()
            .token_server
            .is_none()
    );
    let ts = load_yaml("token_server: {}\n", args())
        .unwrap()
        .token_server
        .unwrap();
    assert_eq!(ts.realm_path, "/token");
    assert_eq!(ts.service, "registry");
    assert_eq!(ts.issuer, "regate");
    assert_eq!(ts.keys, std::path::PathBuf::from("/srv/regate/keys"));
    assert_eq!(ts.trust, crate::token::keys::Trust::RootCertBundle);
    assert_eq!(ts.lifetime, std::time::Duration::from_secs(3600));
    let ts = load_yaml(
        "token_server:\n  service: reg.example.com\n  trust: jwks\n  lifetime: 20m\n",
        args(),
    )
    .unwrap()
    .token_server
    .unwrap();
    assert_eq!(ts.service, "reg.example.com");
    assert_eq!(ts.trust, crate::token::keys::Trust::Jwks);
    assert_eq!(ts.lifetime, std::time::Duration::from_secs(1200));
}

#[test]
fn token_server_errors_name_the_field() {
    for (yaml, field) in [
        (
            "token_server:\n  realm_path: /openshift/token\n",
            "token_server.realm_path",
        ),
        (
            "token_server:\n  realm_path: /v2/token\n",
            "token_server.realm_path",
        ),
        ("token_server:\n  service: ''\n", "token_server.service"),
        (
            "token_server:\n  lifetime: forever\n",
            "token_server.lifetime",
        ),
        ("token_server:\n  trust: x5c\n", "trust"),
        ("token_server:\n  servce: x\n", "servce"),
    ] {
        let e = load_yaml(yaml, ServeArgs::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains(field), "{yaml:?}: {e}");
    }
}

#[test]
fn upstream_is_a_url_or_a_section_with_the_pull_secret() {
    let c = load_yaml("upstream: http://127.0.0.1:5001\n", ServeArgs::default()).unwrap();
    assert_eq!(c.upstream, "http://127.0.0.1:5001");
    assert_eq!(c.pull_secret, None);
    let c = load_yaml(
        "upstream:\n  url: http://127.0.0.1:5002\n  pull_secret: /etc/regate/ps.json\n",
        ServeArgs::default(),
    )
    .unwrap();
    assert_eq!(c.upstream, "http://127.0.0.1:5002");
    assert_eq!(c.pull_secret, Some("/etc/regate/ps.json".into()));
    // the flags win
    let c = load_yaml(
        "upstream:\n  pull_secret: /a.json\n",
        ServeArgs {
            upstream: Some("http://127.0.0.1:5003".into()),
            pull_secret: Some("/b.json".into()),
            ..ServeArgs::default()
        },
    )
    .unwrap();
    assert_eq!(c.upstream, "http://127.0.0.1:5003");
    assert_eq!(c.pull_secret, Some("/b.json".into()));
    let e = load_yaml("upstream:\n  pull_secrets: x\n", ServeArgs::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("regate.yaml") && e.contains("unknown field `pull_secrets`"),
        "{e}"
    );
}

#[test]
fn remotes_map_a_namespace_to_a_registry_and_prefix() {
    let c = load_yaml(
        "remotes:\n  - namespace: mirror\n    url: https://quay.io/\n    prefix: /library/\n  - namespace: hub\n    url: http://127.0.0.1:5001\n",
        ServeArgs::default(),
    )
    .unwrap();
    assert_eq!(
        c.remotes,
        vec![
            RemoteSettings {
                namespace: "mirror".into(),
                url: "https://quay.io".into(),
                prefix: "library".into(),
            },
            RemoteSettings {
                namespace: "hub".into(),
                url: "http://127.0.0.1:5001".into(),
                prefix: String::new(),
            },
        ]
    );
    for (yaml, says) in [
        (
            "remotes:\n  - namespace: Mirror\n    url: https://quay.io\n",
            "not a namespace",
        ),
        (
            "remotes:\n  - namespace: a/b\n    url: https://quay.io\n",
            "not a namespace",
        ),
        (
            "remotes:\n  - namespace: m\n    url: quay.io\n",
            "not an origin",
        ),
        (
            "remotes:\n  - namespace: m\n    url: https://quay.io/v2\n",
            "not an origin",
        ),
        (
            "remotes:\n  - namespace: m\n    url: https://a\n  - namespace: m\n    url: https://b\n",
            "listed twice",
        ),
        (
            "remotes:\n  - namespace: m\n    url: https://a\n    prefix: UP\n",
            "prefix",
        ),
    ] {
        let e = load_yaml(yaml, ServeArgs::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("field `remotes`") && e.contains(says),
            "{yaml:?}: {e}"
        );
    }
}

/// Clients reuse a token for 60 s whatever `expires_in` says: a shorter lifetime only breaks
/// long pushes, so it is refused with the field and the minimum named.
#[test]
fn token_lifetimes_under_60s_are_refused() {
    for (yaml, field) in [
        ("token:\n  lifetime: 1s\n", "token.lifetime"),
        ("token:\n  lifetime: 0s\n", "token.lifetime"),
        ("token:\n  lifetime: 59s\n", "token.lifetime"),
        ("token_server:\n  lifetime: 30s\n", "token_server.lifetime"),
    ] {
        let e = load_yaml(yaml, ServeArgs::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("field `{field}`")), "{yaml}: {e}");
        assert!(e.contains("minimum of 60s"), "{yaml}: {e}");
    }
    let c = load_yaml("token:\n  lifetime: 60s\n", ServeArgs::default()).unwrap();
    assert_eq!(c.token_lifetime, std::time::Duration::from_secs(60));
}

#[test]
fn tls_takes_both_files_from_the_section_or_the_flags() {
    let config = load_yaml(
        "tls:\n  cert_file: /etc/tls/tls.crt\n  key_file: /etc/tls/tls.key\n",
        ServeArgs::default(),
    )
    .expect("valid");
    let files = config.tls.expect("tls");
    assert_eq!(files.cert_file, PathBuf::from("/etc/tls/tls.crt"));
    assert_eq!(files.key_file, PathBuf::from("/etc/tls/tls.key"));

    let e = load_yaml(
        "tls:\n  cert_file: /etc/tls/tls.crt\n",
        ServeArgs::default(),
    )
    .expect_err("no key");
    let message = e.to_string();
    assert!(message.contains("tls.key_file"), "{message}");
    assert!(message.contains("regate.yaml"), "{message}");

    let e = load_yaml("tls:\n  cert: /etc/tls/tls.crt\n", ServeArgs::default())
        .expect_err("unknown field");
    assert!(e.to_string().contains("cert"), "{e}");

    let flags = ServeArgs {
        tls: TlsArgs {
            tls_cert: Some("/flag/tls.crt".into()),
            tls_key: Some("/flag/tls.key".into()),
        },
        ..ServeArgs::default()
    };
    let config = load_yaml("tls:\n  cert_file: /etc/tls/tls.crt\n", flags).expect("flags win");
    assert_eq!(
        config.tls.expect("tls").cert_file,
        PathBuf::from("/flag/tls.crt")
    );
    assert!(
        load_yaml("", ServeArgs::default())
            .expect("valid")
            .tls
            .is_none(),
        "plain HTTP without a certificate"
    );
}

#[test]
fn audit_is_off_unless_a_path_is_given() {
    let c = load_yaml("listen: 127.0.0.1:0\n", ServeArgs::default()).unwrap();
    assert_eq!(c.audit, None);
    let c = load_yaml("audit:\n  path: \"-\"\n", ServeArgs::default()).unwrap();
    assert_eq!(c.audit, Some(crate::audit::AuditOutput::Stdout));
    let c = load_yaml(
        "audit:\n  path: /var/log/regate/audit.log\n",
        ServeArgs::default(),
    )
    .unwrap();
    assert_eq!(
        c.audit,
        Some(crate::audit::AuditOutput::File {
            path: "/var/log/regate/audit.log".into(),
            max_size: 100 * 1024 * 1024,
            max_files: 5,
        })
    );
    for (size, bytes) in [("64KiB", 64 * 1024), ("1 GiB", 1 << 30), ("5MB", 5_000_000)] {
        let c = load_yaml(
            &format!("audit:\n  path: a.log\n  max_size: {size}\n  max_files: 2\n"),
            ServeArgs::default(),
        )
        .unwrap();
        let Some(crate::audit::AuditOutput::File { max_size, .. }) = c.audit else {
            panic!("a file");
        };
        assert_eq!(max_size, bytes, "{size}");
    }
    let c = load_yaml(
        "audit:\n  path: a.log\n  max_size: 8192\n",
        ServeArgs::default(),
    )
    .unwrap();
    assert!(matches!(
        c.audit,
        Some(crate::audit::AuditOutput::File { max_size: 8192, .. })
    ));
}

#[test]
fn audit_errors_name_the_field() {
    for (yaml, field, hint) in [
        ("audit:\n  max_files: 2\n", "audit.path", "\"-\" for stdout"),
        (
            "audit:\n  path: a.log\n  max_size: lots\n",
            "audit.max_size",
            "100MiB",
        ),
        (
            "audit:\n  path: a.log\n  max_size: 12\n",
            "audit.max_size",
            "at least 4KiB",
        ),
        (
            "audit:\n  path: a.log\n  max_files: 0\n",
            "audit.max_files",
            "at least 1",
        ),
        (
            "audit:\n  path: \"-\"\n  max_size: 1MiB\n",
            "audit.max_size",
            "a file only",
        ),
        ("audit:\n  file: a.log\n", "unknown field `file`", "path"),
    ] {
        let e = load_yaml(yaml, ServeArgs::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains(field) && e.contains(hint), "{yaml}: {e}");
    }
}

#[test]
fn request_timeout_defaults_to_a_minute_and_is_at_least_a_second() {
    let c = load_yaml("listen: 127.0.0.1:0\n", ServeArgs::default()).unwrap();
    assert_eq!(
        c.connections.request_timeout,
        std::time::Duration::from_secs(60)
    );
    let c = load_yaml(
        "connections:\n  request_timeout: 5s\n",
        ServeArgs::default(),
    )
    .unwrap();
    assert_eq!(
        c.connections.request_timeout,
        std::time::Duration::from_secs(5)
    );
    let e = load_yaml(
        "connections:\n  request_timeout: 10ms\n",
        ServeArgs::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("connections.request_timeout"), "{e}");
}

#[test]
fn oidc_issuers_are_validated_naming_the_field() {
    let c = load_yaml(
        "identity:\n  oidc:\n    - issuer: https://token.actions.githubusercontent.com/\n      audiences: [regate]\n      username_prefix: \"github:\"\n      groups_claim: repository_owner\n    - issuer: https://kubernetes.default.svc\n      audiences: [regate]\n      preset: kubernetes\n",
        ServeArgs::default(),
    )
    .unwrap();
    assert_eq!(c.oidc.len(), 2);
    assert_eq!(
        c.oidc[0].issuer,
        "https://token.actions.githubusercontent.com"
    );
    assert_eq!(
        c.oidc[0].mapping,
        crate::oidc::Mapping::Claims {
            username_claim: "sub".into(),
            username_prefix: "github:".into(),
            groups_claim: Some("repository_owner".into()),
            // Groups take the users' prefix unless told otherwise.
            groups_prefix: "github:".into(),
        }
    );
    assert_eq!(c.oidc[1].mapping, crate::oidc::Mapping::Kubernetes);
    for (yaml, field, hint) in [
        (
            "    - audiences: [regate]\n      preset: kubernetes\n",
            "identity.oidc.issuer",
            "iss",
        ),
        (
            "    - issuer: http://issuer.example.com\n      audiences: [regate]\n      preset: kubernetes\n",
            "identity.oidc.issuer",
            "https://",
        ),
        (
            "    - issuer: https://i.example.com\n      preset: kubernetes\n",
            "identity.oidc.audiences",
            "aud",
        ),
        (
            "    - issuer: https://i.example.com\n      audiences: [regate]\n",
            "identity.oidc.username_prefix",
            "prefix",
        ),
        (
            "    - issuer: https://i.example.com\n      audiences: [regate]\n      username_prefix: \"system:ci:\"\n",
            "identity.oidc.username_prefix",
            "system:",
        ),
        (
            "    - issuer: https://i.example.com\n      audiences: [regate]\n      username_prefix: \"sys\"\n",
            "identity.oidc.username_prefix",
            "\"ci:\"",
        ),
        (
            "    - issuer: https://i.example.com\n      audiences: [regate]\n      username_prefix: \"ci:\"\n      groups_claim: groups\n      groups_prefix: \"system:\"\n",
            "identity.oidc.groups_prefix",
            "leave it out",
        ),
        (
            "    - issuer: https://i.example.com\n      audiences: [regate]\n      username_prefix: \"ci:\"\n      groups_claim: groups\n      groups_prefix: \"\"\n",
            "identity.oidc.groups_prefix",
            "\"ci-group:\"",
        ),
        (
            "    - issuer: https://i.example.com\n      audiences: [regate]\n      preset: openshift\n",
            "identity.oidc.preset",
            "kubernetes",
        ),
        (
            "    - issuer: https://i.example.com\n      audiences: [regate]\n      preset: kubernetes\n      username_claim: email\n",
            "identity.oidc.preset",
            "remove",
        ),
        (
            "    - issuer: https://i.example.com\n      audiences: [regate]\n      preset: kubernetes\n      jwks_url: ftp://x/keys\n",
            "identity.oidc.jwks_url",
            "https://",
        ),
        (
            "    - issuer: https://i.example.com\n      audiences: [regate]\n      preset: kubernetes\n    - issuer: https://i.example.com/\n      audiences: [x]\n      preset: kubernetes\n",
            "identity.oidc.issuer",
            "twice",
        ),
    ] {
        let e = load_yaml(&format!("identity:\n  oidc:\n{yaml}"), ServeArgs::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("regate.yaml") && e.contains(field) && e.contains(hint),
            "{yaml}: {e}"
        );
    }
    // Loopback issuers may be plain HTTP (sidecars, tests).
    let c = load_yaml(
        "identity:\n  oidc:\n    - issuer: http://127.0.0.1:8181\n      audiences: [regate]\n      preset: kubernetes\n",
        ServeArgs::default(),
    )
    .unwrap();
    assert_eq!(c.oidc[0].issuer, "http://127.0.0.1:8181");
}

#[test]
fn the_console_is_off_unless_asked_for_and_takes_defaults() {
    let c = load_yaml("listen: 127.0.0.1:0\n", ServeArgs::default()).unwrap();
    assert_eq!(c.console, None);
    let flag = ServeArgs {
        console: true,
        ..ServeArgs::default()
    };
    let c = load_yaml("listen: 127.0.0.1:0\n", flag).unwrap();
    assert_eq!(c.console, Some(ConsoleSettings::default()));
    let c = load_yaml(
        "console:\n  listen: 127.0.0.1:9443\n  session_idle: 5m\n  session_max: 2h\n",
        ServeArgs::default(),
    )
    .unwrap();
    let console = c.console.unwrap();
    assert_eq!(console.listen, Some("127.0.0.1:9443".parse().unwrap()));
    assert_eq!(console.session_idle, std::time::Duration::from_secs(300));
    assert_eq!(console.session_max, std::time::Duration::from_secs(7200));
}

#[test]
fn console_errors_name_the_field() {
    for (yaml, field, hint) in [
        (
            "console:\n  listen: here\n",
            "console.listen",
            "0.0.0.0:9443",
        ),
        (
            "console:\n  session_idle: 10s\n",
            "console.session_idle",
            "at least 1m",
        ),
        (
            "console:\n  session_max: often\n",
            "console.session_max",
            "30s, 5m or 1h",
        ),
        ("console:\n  port: 1\n", "unknown field `port`", "listen"),
        (
            "token:\n  realm_path: /console/token\n",
            "token.realm_path",
            "/console/",
        ),
    ] {
        let e = load_yaml(yaml, ServeArgs::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains(field) && e.contains(hint), "{yaml}: {e}");
    }
}

#[test]
fn failed_login_limits_are_shared_out_among_replicas() {
    let c = load_yaml(
        "failed_logins:\n  burst: 30\n  refill: 1s\n  replicas: 4\n",
        ServeArgs::default(),
    )
    .unwrap();
    assert_eq!(c.failed_logins.burst, 8, "30 over 4 replicas, rounded up");
    assert_eq!(c.failed_logins.refill, std::time::Duration::from_secs(4));
    let e = load_yaml("failed_logins:\n  replicas: 0\n", ServeArgs::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("failed_logins.replicas"), "{e}");
}

#[test]
fn trusted_proxies_are_addresses_or_networks() {
    let c = load_yaml(
        "trusted_proxies: [10.0.0.5, 10.244.0.0/16, \"fd00::/8\"]\n",
        ServeArgs::default(),
    )
    .unwrap();
    let trusted = |ip: &str| c.trusted_proxies.contains(&ip.parse().unwrap());
    assert!(trusted("10.0.0.5"));
    assert!(!trusted("10.0.0.6"));
    assert!(trusted("10.244.3.17"));
    assert!(!trusted("10.245.0.1"));
    assert!(trusted("fd00::1"));
    let e = load_yaml("trusted_proxies: [10.0.0.0/33]\n", ServeArgs::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("trusted_proxies") && e.contains("10.244.0.0/16"),
        "{e}"
    );
}
