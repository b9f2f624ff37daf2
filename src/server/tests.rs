//! The pipeline in-process, with an authority that cannot answer: nothing may be forwarded.

use super::*;
use crate::authority::{Authn, Authority, AuthorityError};
use crate::config::{Config, ServeArgs};
use async_trait::async_trait;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tower::ServiceExt;

/// An authority that errors on every question.
struct Down;

#[async_trait]
impl Authority for Down {
    async fn authenticate(&self, _: &SecretString) -> Result<Authn, AuthorityError> {
        Err(AuthorityError::unavailable("connection refused"))
    }
    async fn authorize(
        &self,
        _: &UserInfo,
        _: Option<&SecretString>,
        _: &Attributes,
    ) -> Result<policy::Decision, AuthorityError> {
        Err(AuthorityError::unavailable("connection refused"))
    }
    async fn anonymous_has_grants(&self) -> Result<bool, AuthorityError> {
        Err(AuthorityError::unavailable("connection refused"))
    }
    fn generation(&self) -> u64 {
        0
    }
}

/// A registry stand-in that only counts the connections it gets.
async fn counting_upstream() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    (format!("http://{addr}"), count)
}

fn gateway(upstream: &str) -> Arc<Gateway> {
    gateway_with(upstream, |_| {})
}

fn gateway_with(upstream: &str, adjust: impl FnOnce(&mut Config)) -> Arc<Gateway> {
    built(upstream, Arc::new(Down), adjust)
}

/// A gateway built as `serve` builds one, in front of `authority`.
fn built(
    upstream: &str,
    authority: Arc<dyn Authority>,
    adjust: impl FnOnce(&mut Config),
) -> Arc<Gateway> {
    let signer = Arc::new(Signer::from_secret(&[1u8; 32]));
    let mut config = Config::load(&ServeArgs {
        upstream: Some(upstream.to_string()),
        public_url: Some("http://gw.test".into()),
        ..ServeArgs::default()
    })
    .unwrap();
    adjust(&mut config);
    Arc::new(Gateway::build(config, authority, signer).unwrap())
}

async fn send(gw: Arc<Gateway>, method: &str, path: &str, auth: Option<String>) -> Response {
    let mut req = http::Request::builder().method(method).uri(path);
    if let Some(auth) = auth {
        req = req.header(header::AUTHORIZATION, auth);
    }
    app(gw)
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn an_authority_that_cannot_answer_gets_503_and_nothing_is_forwarded() {
    let (upstream, connections) = counting_upstream().await;
    let gw = gateway(&upstream);
    // A registry token's API token is authenticated again at each use: the authority is asked.
    let user = UserInfo::authenticated("alice".into(), "u".into(), vec![]);
    let token = gw
        .signer
        .issue_registry_token(
            &user,
            Some(&SecretString::from("api-token")),
            crate::token::now() + 60,
            None,
        )
        .unwrap()
        .token;
    let cases = [
        ("GET", "/v2/p/app/manifests/v1", None),
        (
            "GET",
            "/v2/p/app/manifests/v1",
            Some("Basic YW55OnRva2Vu".to_string()),
        ),
        (
            "HEAD",
            "/v2/p/app/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000",
            Some(format!("Bearer {token}")),
        ),
        (
            "POST",
            "/v2/p/app/blobs/uploads/",
            Some(format!("Bearer {token}")),
        ),
        ("GET", "/v2/", None),
        (
            "GET",
            "/openshift/token",
            Some("Basic YW55OnRva2Vu".to_string()),
        ),
    ];
    for (method, path, auth) in cases {
        let response = send(gw.clone(), method, path, auth).await;
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {path}"
        );
        assert!(
            response.headers().contains_key(header::RETRY_AFTER),
            "{method} {path}"
        );
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "nothing reached the registry"
    );
}

#[tokio::test]
async fn errors_are_oci_json_with_the_api_version_header() {
    let (upstream, _) = counting_upstream().await;
    let response = send(
        gateway(&upstream),
        "GET",
        "/v2/onecomponent/manifests/v1",
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()[API_VERSION], "registry/2.0");
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["errors"][0]["code"], "NAME_INVALID");

    let response = send(gateway(&upstream), "PUT", "/v2/_catalog", None).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(response.headers().contains_key(header::ALLOW));
}

#[tokio::test]
async fn an_upload_start_with_a_form_body_is_refused() {
    let (upstream, connections) = counting_upstream().await;
    let gw = gateway(&upstream);
    let req = http::Request::builder()
        .method("POST")
        .uri("/v2/p/app/blobs/uploads/?mount=sha256:00&from=p/other")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("from=secret/repo"))
        .unwrap();
    let response = app(gw).oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_realm_follows_host_and_only_a_trusted_proxys_forwarded_headers() {
    let (upstream, _) = counting_upstream().await;
    let gw = gateway_with(&upstream, |c| {
        c.public_url = None;
        c.trusted_proxies = ["10.0.0.1".parse().unwrap()].into_iter().collect();
    });
    let realm = |peer: &str| {
        let mut req = http::Request::get("/v2/")
            .header(header::HOST, "gw.example:8080")
            .header("x-forwarded-host", "public.example")
            .header("x-forwarded-proto", "https")
            // Refused before the (down) authority is asked.
            .header(header::AUTHORIZATION, "Basic !!!")
            .body(Body::empty())
            .unwrap();
        let peer: SocketAddr = format!("{peer}:4000").parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(peer));
        let gw = gw.clone();
        async move {
            let response = app(gw).oneshot(req).await.unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            response.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .to_string()
        }
    };
    assert!(
        realm("192.0.2.7")
            .await
            .starts_with("Bearer realm=\"http://gw.example:8080/openshift/token\"")
    );
    assert!(
        realm("10.0.0.1")
            .await
            .starts_with("Bearer realm=\"https://public.example/openshift/token\"")
    );
}

#[tokio::test]
async fn over_h2_the_realm_follows_the_authority_and_a_host_naming_another_is_refused() {
    let (upstream, _) = counting_upstream().await;
    let gw = gateway_with(&upstream, |c| c.public_url = None);
    let h2 = |host: Option<&str>| {
        let mut req = http::Request::get("https://gw.example:8443/v2/")
            .version(http::Version::HTTP_2)
            // Refused before the (down) authority is asked.
            .header(header::AUTHORIZATION, "Basic !!!");
        if let Some(host) = host {
            req = req.header(header::HOST, host);
        }
        app(gw.clone()).oneshot(req.body(Body::empty()).unwrap())
    };
    for host in [None, Some("GW.example:8443")] {
        let response = h2(host).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "Host {host:?}");
        let challenge = response.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap();
        assert!(
            challenge.starts_with("Bearer realm=\"http://gw.example:8443/openshift/token\""),
            "{challenge}"
        );
    }
    let response = h2(Some("evil.example")).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

/// An authority knowing one token (`t0k`, user `alice`) that may pull, and push, in
/// namespace `p` only.
struct PullPushInP;

#[async_trait]
impl Authority for PullPushInP {
    async fn authenticate(&self, token: &SecretString) -> Result<Authn, AuthorityError> {
        Ok(match token.expose_secret() {
            "t0k" => Authn::User(UserInfo::authenticated("alice".into(), "u1".into(), vec![])),
            _ => Authn::Invalid {
                reason: "unknown token".into(),
            },
        })
    }
    async fn authorize(
        &self,
        user: &UserInfo,
        _: Option<&SecretString>,
        attrs: &Attributes,
    ) -> Result<policy::Decision, AuthorityError> {
        let allowed = user.name == "alice"
            && attrs.namespace == "p"
            && attrs.subresource == "layers"
            && matches!(attrs.verb.as_str(), "get" | "update");
        Ok(if allowed {
            policy::Decision::Allow { by: "test".into() }
        } else {
            policy::Decision::deny("test")
        })
    }
    async fn anonymous_has_grants(&self) -> Result<bool, AuthorityError> {
        Ok(false)
    }
    fn generation(&self) -> u64 {
        0
    }
}

/// A gateway in token-server mode (keys in `dir`) in front of `authority`.
fn token_server_gateway(authority: Arc<dyn Authority>, dir: &std::path::Path) -> Arc<Gateway> {
    crate::token::keys::init(dir, crate::token::keys::KeyAlgorithm::Es256).unwrap();
    let settings = crate::config::TokenServerSettings {
        realm_path: "/token".into(),
        service: "reg".into(),
        issuer: "regate-unit".into(),
        keys: dir.to_path_buf(),
        trust: crate::token::keys::Trust::RootCertBundle,
        lifetime: Duration::from_secs(300),
    };
    built("http://127.0.0.1:9", authority, |config| {
        config.token_server = Some(settings);
    })
}

/// `GET /token?scope=..` with Basic `any:t0k`; the status and the verified claims.
async fn token_server_token(
    gw: &Arc<Gateway>,
    scopes: &[&str],
) -> (
    StatusCode,
    Option<crate::token::distribution::DistributionClaims>,
) {
    let query: String = scopes.iter().map(|s| format!("scope={s}&")).collect();
    let response = send(
        gw.clone(),
        "GET",
        &format!("/token?{query}service=reg"),
        Some("Basic YW55OnQwaw==".into()),
    )
    .await;
    let status = response.status();
    if status != StatusCode::OK {
        return (status, None);
    }
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let ts = gw.token_server.as_ref().unwrap();
    let key = ts.key.current();
    let mut validation = jsonwebtoken::Validation::new(key.jwt_algorithm());
    validation.set_audience(&["reg"]);
    validation.set_issuer(&["regate-unit"]);
    let claims = jsonwebtoken::decode(
        json["token"].as_str().unwrap(),
        &key.decoding_key(),
        &validation,
    )
    .unwrap()
    .claims;
    (status, Some(claims))
}

#[tokio::test]
async fn the_token_server_grants_the_allowed_part_of_each_scope() {
    let dir = tempfile::tempdir().unwrap();
    let gw = token_server_gateway(Arc::new(PullPushInP), dir.path());
    let (status, claims) = token_server_token(
        &gw,
        &[
            "repository:p/app:pull",
            "repository:p/app:push,delete",
            "repository:q/app:pull",
            "repository:p/other:*",
            "registry:catalog:*",
            "repository:p/app:pull",
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let claims = claims.unwrap();
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.aud, "reg");
    let access: Vec<(String, Vec<String>)> = claims
        .access
        .into_iter()
        .map(|a| (format!("{}:{}", a.kind, a.name), a.actions))
        .collect();
    // repeated scopes merged; delete, `*`, q/ and the catalog are not allowed
    assert_eq!(
        access,
        vec![(
            "repository:p/app".to_string(),
            vec!["pull".to_string(), "push".to_string()]
        )]
    );
    let (status, _) = token_server_token(&gw, &["repository:Bad/app:pull"]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_token_server_issues_nothing_when_the_authority_cannot_answer() {
    let dir = tempfile::tempdir().unwrap();
    let gw = token_server_gateway(Arc::new(Down), dir.path());
    let (status, _) = token_server_token(&gw, &["repository:p/app:pull"]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

/// A POST of the OAuth2 form to the gateway's realm, of `length` bytes that never come.
fn stalled_form(length: usize) -> http::Request<Body> {
    http::Request::post("/openshift/token")
        .header(header::HOST, "gw.test")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::CONTENT_LENGTH, length)
        .body(Body::new(crate::body::Stalled))
        .unwrap()
}

#[tokio::test]
async fn a_token_form_too_slow_or_too_large_is_refused_and_its_connection_closed() {
    let (upstream, _) = counting_upstream().await;
    let limit = Duration::from_millis(300);
    let gw = gateway_with(&upstream, |c| c.connections.request_timeout = limit);

    let started = std::time::Instant::now();
    let slow = app(gw.clone()).oneshot(stalled_form(40)).await.unwrap();
    let waited = started.elapsed();
    assert_eq!(
        slow.status(),
        StatusCode::REQUEST_TIMEOUT,
        "not the 504 of a slow answer"
    );
    assert!(waited >= limit && waited < limit * 4, "{waited:?}");
    assert_eq!(slow.headers()[header::CONNECTION], "close");

    let started = std::time::Instant::now();
    let large = app(gw).oneshot(stalled_form(10 << 20)).await.unwrap();
    assert_eq!(large.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        started.elapsed() < limit,
        "refused by its length, nothing read"
    );
    assert_eq!(large.headers()[header::CONNECTION], "close");
    let body = axum::body::to_bytes(large.into_body(), 4096).await.unwrap();
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["errors"][0]["code"], "SIZE_INVALID");
}
