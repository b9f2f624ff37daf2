use super::*;

fn b64(v: serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A JWT with `header` and `claims` and a made-up signature.
fn jwt(header: serde_json::Value, claims: serde_json::Value) -> String {
    format!("{}.{}.c2ln", b64(header), b64(claims))
}

fn settings(mapping: Mapping) -> IssuerSettings {
    IssuerSettings {
        issuer: "https://issuer.example.com".into(),
        audiences: vec!["regate".into()],
        // Never fetched: the tests below are refused before any key is needed.
        jwks_url: Some("https://127.0.0.1:9/keys".into()),
        mapping,
    }
}

#[test]
fn only_tokens_naming_a_configured_issuer_are_taken() {
    let t = jwt(
        serde_json::json!({"alg": "ES256"}),
        serde_json::json!({"iss": "https://issuer.example.com"}),
    );
    assert_eq!(
        unverified_issuer(&t).as_deref(),
        Some("https://issuer.example.com")
    );
    assert_eq!(unverified_issuer("an-opaque-api-token"), None);
    assert_eq!(unverified_issuer("a.b.c.d"), None);
    let t = jwt(
        serde_json::json!({"alg": "ES256"}),
        serde_json::json!({"sub": "x"}),
    );
    assert_eq!(unverified_issuer(&t), None);
}

#[tokio::test]
async fn none_and_hmac_algorithms_are_refused_before_any_key_is_looked_up() {
    let issuers = Issuers::new(&[settings(Mapping::Kubernetes)]).unwrap();
    let claims = serde_json::json!({"iss": "https://issuer.example.com", "aud": "regate", "sub": "system:serviceaccount:a:b", "exp": 4_000_000_000u64});
    for alg in ["none", "HS256", "HS512", "RS384"] {
        let t = jwt(serde_json::json!({"alg": alg, "kid": "k"}), claims.clone());
        let refused = issuers
            .verify(&t)
            .await
            .expect("ours")
            .expect_err("refused")
            .to_string();
        assert!(
            refused.contains("not accepted") || refused.contains("malformed"),
            "{alg}: {refused}"
        );
    }
    // Another issuer's token is not ours to judge.
    let other = jwt(
        serde_json::json!({"alg": "ES256"}),
        serde_json::json!({"iss": "https://elsewhere"}),
    );
    assert!(issuers.verify(&other).await.is_none());
}

#[test]
fn the_kubernetes_preset_maps_a_service_account() {
    let claims = serde_json::json!({
        "sub": "system:serviceaccount:project-a:builder",
        "kubernetes.io": {"serviceaccount": {"name": "builder", "uid": "u-1"}},
    });
    let user = map(&Mapping::Kubernetes, &claims).unwrap();
    assert_eq!(user.name, "system:serviceaccount:project-a:builder");
    assert_eq!(user.uid, "u-1");
    for group in [
        "system:serviceaccounts",
        "system:serviceaccounts:project-a",
        "system:authenticated",
    ] {
        assert!(user.groups.iter().any(|g| g == group), "{group}");
    }
    let alice = serde_json::json!({"sub": "alice"});
    assert!(map(&Mapping::Kubernetes, &alice).is_err());
}

#[test]
fn claims_map_with_their_prefixes() {
    let mapping = Mapping::Claims {
        username_claim: "sub".into(),
        username_prefix: "ci:".into(),
        groups_claim: Some("groups".into()),
        groups_prefix: "ci-group:".into(),
    };
    let claims = serde_json::json!({"sub": "repo:org/app:ref:refs/heads/main", "groups": ["builders", 7, "release"]});
    let user = map(&mapping, &claims).unwrap();
    assert_eq!(user.name, "ci:repo:org/app:ref:refs/heads/main");
    assert!(user.groups.contains(&"ci-group:builders".to_string()));
    assert!(user.groups.contains(&"ci-group:release".to_string()));
    assert!(user.groups.contains(&"system:authenticated".to_string()));
    assert_eq!(user.groups.len(), 3);
    assert!(
        map(&mapping, &serde_json::json!({"groups": []})).is_err(),
        "no sub"
    );
}

#[test]
fn claims_never_name_reserved_users_or_groups() {
    let mapping = |prefix: &str| Mapping::Claims {
        username_claim: "sub".into(),
        username_prefix: prefix.into(),
        groups_claim: Some("groups".into()),
        groups_prefix: prefix.into(),
    };
    let refused = |mapping: &Mapping, claims: serde_json::Value| {
        map(mapping, &claims).expect_err("a reserved name is refused")
    };
    // A group of service accounts, even behind a prefix: the value is named.
    let why = refused(
        &mapping("ci:"),
        serde_json::json!({"sub": "repo:org/app", "groups": ["release", "system:serviceaccounts:project-b"]}),
    );
    assert!(
        why.contains("groups claim value \"system:serviceaccounts:project-b\"")
            && why.contains("reserved"),
        "{why}"
    );
    let why = refused(
        &mapping("ci:"),
        serde_json::json!({"sub": "repo:org/app", "groups": "system:masters"}),
    );
    assert!(why.contains("\"system:masters\""), "{why}");
    // A service account's name as a user outside the kubernetes preset.
    let why = refused(
        &mapping("ci:"),
        serde_json::json!({"sub": "system:serviceaccount:project-b:default"}),
    );
    assert!(why.contains("sub claim value"), "{why}");
    // A prefix that spells system: with the value (config refuses it; the mapping too).
    let why = refused(&mapping("sys"), serde_json::json!({"sub": "tem:admin"}));
    assert!(why.contains("\"system:admin\""), "{why}");
    let why = refused(
        &Mapping::Claims {
            username_claim: "sub".into(),
            username_prefix: "ci:".into(),
            groups_claim: Some("groups".into()),
            groups_prefix: String::new(),
        },
        serde_json::json!({"sub": "a", "groups": ["system:authenticated"]}),
    );
    assert!(why.contains("system:authenticated"), "{why}");
    // Values that merely hold the word are names like any other.
    let user = map(
        &mapping("ci:"),
        &serde_json::json!({"sub": "repo:system:x", "groups": ["team-system:"]}),
    )
    .expect("no reserved name");
    assert_eq!(user.name, "ci:repo:system:x");
    assert!(user.groups.contains(&"ci:team-system:".to_string()));
}

/// A P-256 key as a signer and as the JWK an issuer lists.
fn es256(kid: &str) -> (jsonwebtoken::EncodingKey, serde_json::Value) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
    let point = pair.public_key_raw();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    (
        jsonwebtoken::EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("EC key"),
        serde_json::json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        }),
    )
}

fn signed(key: &jsonwebtoken::EncodingKey, kid: &str) -> String {
    let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    let now = crate::token::now();
    let claims = serde_json::json!({
        "iss": "https://issuer.example.com", "aud": "regate", "sub": "repo:org/app",
        "iat": now, "exp": now + 600,
    });
    jsonwebtoken::encode(&header, &claims, key).expect("sign")
}

fn jwks(keys: &[&serde_json::Value]) -> jsonwebtoken::jwk::JwkSet {
    serde_json::from_value(serde_json::json!({ "keys": keys })).expect("a JWK set")
}

/// A remembered token is taken again only while the key that verified it, by `kid` and by
/// fingerprint, is in the issuer's set: retired, or replaced under the same `kid`, it is not.
#[tokio::test]
async fn a_remembered_token_is_taken_only_while_its_key_is_listed() {
    let ci = Mapping::Claims {
        username_claim: "sub".into(),
        username_prefix: "ci:".into(),
        groups_claim: None,
        groups_prefix: "ci:".into(),
    };
    let issuers = Issuers::new(&[settings(ci)]).unwrap();
    let keys = &issuers.issuers[0].keys;
    let (k1, jwk1) = es256("k1");
    let (k2, jwk2) = es256("k2");
    let (_, impostor) = es256("k1");
    let token = signed(&k1, "k1");
    let other = signed(&k2, "k2");

    keys.fetched(&jwks(&[&jwk1, &jwk2])).unwrap();
    let user = issuers
        .verify(&token)
        .await
        .expect("ours")
        .expect("verifies");
    assert_eq!(user.name, "ci:repo:org/app");
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    assert!(issuers.verified.get(&digest).await.is_some());
    assert!(
        issuers.verify(&token).await.expect("ours").is_ok(),
        "remembered"
    );

    // k1 retired: the remembered token is refused (its kid named), the other key's still taken.
    keys.fetched(&jwks(&[&jwk2])).unwrap();
    let why = issuers
        .verify(&token)
        .await
        .expect("ours")
        .expect_err("its key is gone");
    assert!(
        matches!(why, Unverified::Refused(ref r) if r.contains("kid")),
        "{why}"
    );
    assert!(issuers.verify(&other).await.expect("ours").is_ok());

    // k1 back: taken again. Another key published as k1: not the key that verified it.
    keys.fetched(&jwks(&[&jwk1, &jwk2])).unwrap();
    assert!(issuers.verify(&token).await.expect("ours").is_ok());
    keys.fetched(&jwks(&[&impostor, &jwk2])).unwrap();
    let why = issuers
        .verify(&token)
        .await
        .expect("ours")
        .expect_err("another key under its kid");
    assert!(
        matches!(why, Unverified::Refused(ref r) if r.contains("signature")),
        "{why}"
    );
}

/// An issuer that cannot be reached is an outage, not a refusal: the error names the issuer and
/// not the address tried (that is in its source, for the log), and the issuers are not ready.
#[tokio::test]
async fn an_unreachable_issuer_cannot_check_a_token_and_is_not_ready() {
    let issuers = Issuers::new(&[settings(Mapping::Kubernetes)]).unwrap();
    assert!(
        issuers.ready().is_ok(),
        "nothing fetched yet, nothing failed"
    );
    let (key, _) = es256("k");
    let why = issuers
        .verify(&signed(&key, "k"))
        .await
        .expect("ours")
        .expect_err("cannot be checked");
    let Unverified::Unreachable(unreachable) = &why else {
        panic!("{why:?}");
    };
    let message = unreachable.to_string();
    assert!(
        message.contains("https://issuer.example.com") && !message.contains("127.0.0.1"),
        "{message}"
    );
    let cause = crate::error::chain(unreachable);
    assert!(cause.contains("127.0.0.1:9"), "{cause}");
    let unready = issuers.ready().expect_err("not ready");
    assert_eq!(unready.to_string(), "oidc issuer unreachable");
    assert!(
        unready.detail().contains("127.0.0.1:9"),
        "{}",
        unready.detail()
    );
}
