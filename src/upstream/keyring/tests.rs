use super::*;

fn b64(s: &str) -> String {
    STANDARD.encode(s)
}

/// The issue's seed example file.
fn seed() -> Keyring {
    let json = serde_json::json!({
        "auths": {
            "quay.io": {"auth": b64("quay-user:quay-pass")},
            "quay.io/repository-main": {"auth": b64("main-user:main-pass")},
            "*.example.com": {"username": "glob-user", "password": "glob-pass"},
        }
    });
    Keyring::parse(json.to_string().as_bytes()).expect("seed parses")
}

fn keys<'a>(found: &[&'a Entry]) -> Vec<&'a str> {
    found.iter().map(|e| e.key.as_str()).collect()
}

fn basic(entry: &Entry) -> (&str, &str) {
    match &entry.credential {
        Credential::Basic { username, password } => (username, password.expose_secret()),
        other => panic!("expected Basic, got {other:?}"),
    }
}

#[test]
fn matching_table() {
    let keyring = seed();
    let cases: &[(&str, &[&str])] = &[
        (
            "quay.io/repository-main/app",
            &["quay.io/repository-main", "quay.io"],
        ),
        (
            "quay.io/repository-main",
            &["quay.io/repository-main", "quay.io"],
        ),
        (
            "quay.io/repository-main/app:v1",
            &["quay.io/repository-main", "quay.io"],
        ),
        ("quay.io/other/app", &["quay.io"]),
        ("quay.io/other/app@sha256:abcd", &["quay.io"]),
        ("quay.io", &["quay.io"]),
        ("QUAY.IO/other/app", &["quay.io"]),
        // Path prefix by whole segments.
        ("quay.io/repository-main2/app", &["quay.io"]),
        ("a.example.com/x/y", &["*.example.com"]),
        ("example.com/x", &[]),
        ("a.b.example.com/x", &[]),
        ("a.example.org/x", &[]),
        // The port must match.
        ("quay.io:5000/repository-main/app", &[]),
        ("a.example.com:443/x", &[]),
        ("ghcr.io/x", &[]),
        ("[::1]:5000/x", &[]),
        ("", &[]),
    ];
    for (image, expected) in cases {
        assert_eq!(&keys(&keyring.lookup(image)), expected, "lookup({image:?})");
    }
    let found = keyring.lookup("quay.io/repository-main/app");
    assert_eq!(basic(found[0]), ("main-user", "main-pass"));
    assert_eq!(basic(found[1]), ("quay-user", "quay-pass"));
    assert_eq!(
        basic(keyring.lookup("a.example.com/x")[0]),
        ("glob-user", "glob-pass")
    );
}

#[test]
fn keys_lose_scheme_and_api_version() {
    let json = serde_json::json!({
        "auths": {
            "https://quay.io/v1/": {"auth": b64("a:1")},
            "http://registry.local:5000/v2/team": {"auth": b64("b:2")},
            "https://ghcr.io/org/": {"auth": b64("c:3")},
            "[::1]:5000": {"auth": b64("d:4")},
        }
    });
    let keyring = Keyring::parse(json.to_string().as_bytes()).unwrap();
    assert_eq!(
        keys(&keyring.lookup("quay.io/x/y")),
        ["https://quay.io/v1/"]
    );
    assert_eq!(
        keys(&keyring.lookup("registry.local:5000/team/app")),
        ["http://registry.local:5000/v2/team"]
    );
    assert!(keyring.lookup("registry.local:5000/other/app").is_empty());
    assert!(keyring.lookup("registry.local/team/app").is_empty());
    assert_eq!(
        keys(&keyring.lookup("ghcr.io/org/app")),
        ["https://ghcr.io/org/"]
    );
    assert!(keyring.lookup("ghcr.io/organisation/app").is_empty());
    assert_eq!(keys(&keyring.lookup("[::1]:5000/app")), ["[::1]:5000"]);
    assert!(keyring.lookup("[::1]/app").is_empty());
}

#[test]
fn most_specific_first_longest_then_reverse_lexical() {
    let json = serde_json::json!({
        "auths": {
            "*.example.com": {"auth": b64("glob:1")},
            "a.example.com": {"auth": b64("exact:1")},
            "*.example.com/team/sub": {"auth": b64("deep:1")},
            "a.example.com/team": {"auth": b64("team:1")},
        }
    });
    let keyring = Keyring::parse(json.to_string().as_bytes()).unwrap();
    assert_eq!(
        keys(&keyring.lookup("a.example.com/team/sub/app")),
        [
            "*.example.com/team/sub",
            "a.example.com/team",
            "a.example.com",
            "*.example.com"
        ]
    );
}

#[test]
fn glob_labels() {
    let json = serde_json::json!({
        "auths": {
            "registry-?.example.com": {"auth": b64("q:1")},
            "[a-c]*.corp.net": {"auth": b64("class:1")},
            "[^x]y.corp.org": {"auth": b64("neg:1")},
        }
    });
    let keyring = Keyring::parse(json.to_string().as_bytes()).unwrap();
    // As with the kubelet's url.Parse, '?' in a key starts a query: no single-character glob.
    assert!(keyring.lookup("registry-1.example.com/x").is_empty());
    assert_eq!(keyring.lookup("build.corp.net/x").len(), 1);
    assert!(keyring.lookup("deploy.corp.net/x").is_empty());
    assert_eq!(keyring.lookup("ay.corp.org/x").len(), 1);
    assert!(keyring.lookup("xy.corp.org/x").is_empty());

    let bad = serde_json::json!({"auths": {"[a-.example.com": {"auth": b64("u:p")}}});
    let error = Keyring::parse(bad.to_string().as_bytes())
        .unwrap_err()
        .to_string();
    assert!(error.contains(r#"auths["[a-.example.com"]"#), "{error}");
}

#[test]
fn docker_hub_fallback() {
    let json = serde_json::json!({
        "auths": {"https://index.docker.io/v1/": {"auth": b64("hub:pw")}}
    });
    let keyring = Keyring::parse(json.to_string().as_bytes()).unwrap();
    for image in [
        "docker.io/library/nginx",
        "index.docker.io/library/nginx",
        "registry-1.docker.io/library/nginx",
    ] {
        assert_eq!(
            keys(&keyring.lookup(image)),
            ["https://index.docker.io/v1/"],
            "{image}"
        );
    }
    // Never lent to another host, a dotless one included.
    assert!(keyring.lookup("quay.io/library/nginx").is_empty());
    assert!(keyring.lookup("registry/library/nginx").is_empty());
    assert!(keyring.lookup("docker.io:5000/library/nginx").is_empty());

    // A direct match wins over the fallback.
    let json = serde_json::json!({
        "auths": {
            "https://index.docker.io/v1/": {"auth": b64("hub:pw")},
            "docker.io": {"auth": b64("direct:pw")},
        }
    });
    let keyring = Keyring::parse(json.to_string().as_bytes()).unwrap();
    assert_eq!(
        keys(&keyring.lookup("docker.io/library/nginx")),
        ["docker.io"]
    );
}

#[test]
fn chain_keeps_each_lists_order() {
    let first = Keyring::parse(br#"{"auths":{"quay.io":{"auth":"YTox"}}}"#).unwrap();
    let second = seed();
    let chained = first.chain(Keyring::default()).chain(second);
    assert_eq!(
        keys(&chained.lookup("quay.io/repository-main/app")),
        ["quay.io", "quay.io/repository-main", "quay.io"]
    );
    assert_eq!(chained.len(), 4);
    assert!(!chained.is_empty());
    assert!(Keyring::default().is_empty());
    assert!(Keyring::default().chain(Keyring::default()).is_empty());
}

#[test]
fn auth_wins_over_username_and_password() {
    let json = serde_json::json!({
        "auths": {"quay.io": {"auth": b64("from-auth:secret"), "username": "u", "password": "p"}}
    });
    let keyring = Keyring::parse(json.to_string().as_bytes()).unwrap();
    assert_eq!(
        basic(keyring.lookup("quay.io/x")[0]),
        ("from-auth", "secret")
    );
}

#[test]
fn auth_padded_unpadded_and_colons() {
    // "ab:c" encodes to 6 characters with "==" padding; "user:pa:ss:" to 16 without.
    for (auth, expected) in [
        ("YWI6Yw==", ("ab", "c")),
        ("YWI6Yw", ("ab", "c")),
        ("YWI6\\nYw==", ("ab", "c")),
    ] {
        let json = format!(r#"{{"auths":{{"quay.io":{{"auth":"{auth}"}}}}}}"#);
        let keyring = Keyring::parse(json.as_bytes()).unwrap();
        assert_eq!(basic(keyring.lookup("quay.io/x")[0]), expected, "{auth:?}");
    }
    let json = serde_json::json!({"auths": {"quay.io": {"auth": b64("user:pa:ss:")}}});
    let keyring = Keyring::parse(json.to_string().as_bytes()).unwrap();
    assert_eq!(basic(keyring.lookup("quay.io/x")[0]), ("user", "pa:ss:"));
}

#[test]
fn username_password_and_identity_token() {
    let json = serde_json::json!({
        "auths": {
            "quay.io": {"username": "u", "password": "p", "email": "u@example.com"},
            "acr.example.com": {"auth": b64("00000000-0000-0000-0000-000000000000:"), "identitytoken": "refresh-me"},
        }
    });
    let keyring = Keyring::parse(json.to_string().as_bytes()).unwrap();
    assert_eq!(basic(keyring.lookup("quay.io/x")[0]), ("u", "p"));
    match &keyring.lookup("acr.example.com/x")[0].credential {
        Credential::IdentityToken(token) => assert_eq!(token.expose_secret(), "refresh-me"),
        other => panic!("expected IdentityToken, got {other:?}"),
    }
}

#[test]
fn entries_without_credentials_are_skipped() {
    let json = serde_json::json!({
        "auths": {
            "helper.example.com": {},
            "empty.example.com": {"auth": ""},
            "nulls.example.com": {"auth": null, "username": null},
            "colon.example.com": {"auth": b64(":")},
            "quay.io": {"auth": b64("u:p")},
        },
        "credsStore": "desktop",
    });
    let keyring = Keyring::parse(json.to_string().as_bytes()).unwrap();
    assert_eq!(
        keyring
            .entries()
            .map(|e| e.key.as_str())
            .collect::<Vec<_>>(),
        ["quay.io"]
    );
}

#[test]
fn legacy_dockercfg() {
    let json = serde_json::json!({
        "https://quay.io": {"auth": b64("legacy:pw"), "email": "x@example.com"},
        "registry.example.com:5000": {"auth": b64("other:pw")},
    });
    let keyring = Keyring::parse(json.to_string().as_bytes()).unwrap();
    assert_eq!(basic(keyring.lookup("quay.io/x")[0]), ("legacy", "pw"));
    assert_eq!(keyring.lookup("registry.example.com:5000/x").len(), 1);
}

#[test]
fn documents_without_entries() {
    for json in [
        "{}",
        r#"{"auths":{}}"#,
        r#"{"auths":null}"#,
        r#"{"credHelpers":{"gcr.io":"gcloud"}}"#,
    ] {
        assert!(
            Keyring::parse(json.as_bytes()).unwrap().is_empty(),
            "{json}"
        );
    }
}

#[test]
fn malformed_documents_name_what_is_wrong() {
    let cases: &[(&[u8], &str)] = &[
        (b"{\"auths\":", "not JSON"),
        (b"not json", "not JSON"),
        (b"[]", "the document: expected an object"),
        (
            br#"{"auths":[]}"#,
            "auths: expected an object of registry entries",
        ),
        (
            br#"{"auths":{"quay.io":"x"}}"#,
            r#"auths["quay.io"]: expected an object"#,
        ),
        (
            br#"{"auths":{"quay.io":{"auth":42}}}"#,
            r#"auths["quay.io"].auth: expected a string, found a number"#,
        ),
        (
            br#"{"auths":{"quay.io":{"password":true}}}"#,
            r#"auths["quay.io"].password: expected a string"#,
        ),
        (
            br#"{"auths":{"quay.io":{"auth":"!!!not-base64"}}}"#,
            r#"auths["quay.io"].auth: not base64"#,
        ),
        (
            br#"{"auths":{"quay.io":{"auth":"bm9jb2xvbg=="}}}"#,
            r#"auths["quay.io"].auth: decodes to no `user:password` pair"#,
        ),
        (
            br#"{"auths":{"quay.io:https":{"auth":"YTpi"}}}"#,
            r#"auths["quay.io:https"]: port "https" is not a number"#,
        ),
        (
            br#"{"auths":{"":{"auth":"YTpi"}}}"#,
            r#"auths[""]: has no registry host"#,
        ),
        (br#"{"quay.io":[1]}"#, r#"["quay.io"]: expected an object"#),
    ];
    for (json, expected) in cases {
        let error = Keyring::parse(json).unwrap_err().to_string();
        assert!(
            error.contains(expected),
            "{}: {error:?} lacks {expected:?}",
            String::from_utf8_lossy(json)
        );
    }
}

#[test]
fn debug_shows_no_secret() {
    let json = serde_json::json!({
        "auths": {
            "quay.io": {"auth": b64("user:hunter2-password")},
            "acr.example.com": {"identitytoken": "hunter2-token"},
        }
    });
    let keyring = Keyring::parse(json.to_string().as_bytes()).unwrap();
    let debug = format!("{keyring:?} {:?}", keyring.lookup("quay.io/x"));
    assert!(debug.contains("user"), "{debug}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(!debug.contains(&b64("user:hunter2-password")), "{debug}");
}

#[test]
fn upsert_keeps_everything_else() {
    let original = serde_json::json!({
        "auths": {
            "quay.io": {"auth": b64("old:old")},
            "https://quay.io/v1/": {"auth": b64("older:older")},
            "ghcr.io": {"auth": b64("keep:me"), "email": "k@example.com"},
        },
        "credHelpers": {"gcr.io": "gcloud"},
        "HttpHeaders": {"User-Agent": "regate-test"},
    });
    let password = SecretString::from("n:e:w");
    let out = upsert_basic(
        original.to_string().as_bytes(),
        "quay.io",
        "new-user",
        &password,
    )
    .unwrap();
    let written: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(written["credHelpers"], original["credHelpers"]);
    assert_eq!(written["HttpHeaders"], original["HttpHeaders"]);
    assert_eq!(written["auths"]["ghcr.io"], original["auths"]["ghcr.io"]);
    assert_eq!(
        written["auths"]["quay.io"],
        serde_json::json!({"auth": b64("new-user:n:e:w")})
    );
    // The equivalent spelling is gone, so the new credential is the one used.
    assert!(written["auths"].get("https://quay.io/v1/").is_none());

    let keyring = Keyring::parse(&out).unwrap();
    let found = keyring.lookup("quay.io/x");
    assert_eq!(found.len(), 1);
    assert_eq!(basic(found[0]), ("new-user", "n:e:w"));
}

#[test]
fn upsert_creates_and_adds() {
    let password = SecretString::from("pw");
    let out = upsert_basic(b"", "registry.example.com:5000", "u", &password).unwrap();
    let again = upsert_basic(&out, "quay.io/team", "t", &password).unwrap();
    let keyring = Keyring::parse(&again).unwrap();
    assert_eq!(
        basic(keyring.lookup("registry.example.com:5000/x")[0]),
        ("u", "pw")
    );
    assert_eq!(basic(keyring.lookup("quay.io/team/x")[0]), ("t", "pw"));
    assert!(keyring.lookup("quay.io/other").is_empty());
}

#[test]
fn upsert_refuses_what_it_cannot_write() {
    let password = SecretString::from("pw");
    let legacy = serde_json::json!({"quay.io": {"auth": b64("u:p")}}).to_string();
    let cases: &[(&[u8], &str, &str, &str)] = &[
        (legacy.as_bytes(), "ghcr.io", "u", "legacy .dockercfg"),
        (b"", "ghcr.io", "a:b", "contains ':'"),
        (b"", "ghcr.io", "", "user name is empty"),
        (b"", "", "u", "has no registry host"),
        (b"[1]", "ghcr.io", "u", "expected an object"),
        (
            br#"{"auths":"x"}"#,
            "ghcr.io",
            "u",
            "auths: expected an object",
        ),
        (b"{", "ghcr.io", "u", "not JSON"),
    ];
    for (json, registry, username, expected) in cases {
        let error = upsert_basic(json, registry, username, &password)
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        assert!(!error.contains("pw"), "{error}");
    }
}
