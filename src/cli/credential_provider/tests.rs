use super::*;

fn provider() -> CredentialProvider {
    CredentialProvider {
        registries: vec!["registry.example.com".into(), "*.regate.test:5000".into()],
        max_cache_duration: Duration::from_secs(600),
    }
}

/// A JWT-shaped token expiring at `exp` (unsigned: the provider does not verify it).
fn token(exp: u64) -> String {
    use base64::Engine;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    format!(
        "{}.{}.sig",
        b64(serde_json::json!({"alg": "RS256"})),
        b64(serde_json::json!({"exp": exp, "sub": "system:serviceaccount:a:default"}))
    )
}

fn request(image: &str, token: Option<&str>) -> Vec<u8> {
    let mut r = serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "CredentialProviderRequest",
        "image": image,
        "serviceAccountAnnotations": {"example.com/x": "y"},
    });
    if let Some(t) = token {
        r["serviceAccountToken"] = t.into();
    }
    r.to_string().into_bytes()
}

fn json(r: &Response) -> serde_json::Value {
    serde_json::to_value(r).unwrap()
}

#[test]
fn regates_images_get_the_token_cached_until_shortly_before_it_expires() {
    let now = 1_000_000;
    let t = token(now + 3600);
    let r = json(
        &provider()
            .answer(
                &request("registry.example.com/project-a/app:v1", Some(&t)),
                now,
            )
            .unwrap(),
    );
    assert_eq!(r["apiVersion"], API_VERSION);
    assert_eq!(r["kind"], "CredentialProviderResponse");
    assert_eq!(r["cacheKeyType"], "Registry");
    assert_eq!(
        r["cacheDuration"], "10m0s",
        "capped by --max-cache-duration"
    );
    assert_eq!(r["auth"]["registry.example.com"]["password"], t.as_str());
    assert_eq!(r["auth"].as_object().unwrap().len(), 1);

    // A token with 5 minutes left is cached 4 (never into its last minute); 30 s left: not at all.
    let t = token(now + 300);
    let r = json(
        &provider()
            .answer(&request("registry.example.com/a/b", Some(&t)), now)
            .unwrap(),
    );
    assert_eq!(r["cacheDuration"], "4m0s");
    let t = token(now + 30);
    let r = json(
        &provider()
            .answer(&request("registry.example.com/a/b", Some(&t)), now)
            .unwrap(),
    );
    assert_eq!(r["cacheDuration"], "0s");
    assert_eq!(r["auth"]["registry.example.com"]["password"], t.as_str());

    // Globs per label and the port, as the kubelet matches.
    let t = token(now + 3600);
    let r = json(
        &provider()
            .answer(&request("eu.regate.test:5000/a/b@sha256:00", Some(&t)), now)
            .unwrap(),
    );
    assert!(r["auth"]["*.regate.test:5000"].is_object(), "{r}");
}

#[test]
fn another_registrys_image_gets_empty_auth_even_without_a_token() {
    for image in [
        "docker.io/library/busybox",
        "registry.example.com.evil.io/x",
        "regate.test:5000/x",
        "eu.regate.test/x",
    ] {
        let r = json(&provider().answer(&request(image, None), 0).unwrap());
        assert_eq!(r["auth"], serde_json::json!({}), "{image}");
        assert_eq!(r["cacheDuration"], "0s");
    }
}

#[test]
fn malformed_requests_are_one_line_errors() {
    let cases: [(&[u8], &str); 5] = [
        (b"not json", "not a CredentialProviderRequest"),
        (br#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1beta1","kind":"CredentialProviderRequest","image":"registry.example.com/a"}"#, "apiVersion"),
        (br#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"Pod","image":"registry.example.com/a"}"#, "kind"),
        (br#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest"}"#, "no image"),
        (br#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"registry.example.com/a"}"#, "serviceAccountToken"),
    ];
    for (input, expected) in cases {
        let e = format!("{:#}", provider().answer(input, 0).err().expect("an error"));
        assert!(e.contains(expected) && !e.contains('\n'), "{e}");
    }
}

#[test]
fn durations_print_as_go_does() {
    assert_eq!(go_duration(Duration::ZERO), "0s");
    assert_eq!(go_duration(Duration::from_secs(59)), "59s");
    assert_eq!(go_duration(Duration::from_secs(3723)), "1h2m3s");
}
