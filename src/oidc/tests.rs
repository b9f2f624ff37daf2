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
            .expect_err("refused");
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
