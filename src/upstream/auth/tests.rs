//! Authenticating to secured registries against a fake registry and token realm on 127.0.0.1:
//! challenge parsing, Basic and Bearer flows, token caching, delegated realms and the login
//! check. One file past the usual size: the tests share the fake's fixture.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::Method;

use http::HeaderMap;

use super::check::candidate_origins;
use super::*;

const TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn challenges_parse() {
    let bearer = |realm: &str, service: Option<&str>, scope: Option<&str>| {
        Some(Challenge::Bearer {
            realm: realm.into(),
            service: service.map(Into::into),
            scope: scope.map(Into::into),
        })
    };
    let basic = |realm: Option<&str>| {
        Some(Challenge::Basic {
            realm: realm.map(Into::into),
        })
    };
    let table = [
        (
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull""#,
            bearer(
                "https://auth.docker.io/token",
                Some("registry.docker.io"),
                Some("repository:library/ubuntu:pull"),
            ),
        ),
        (
            r#"Bearer realm="https://r.example/token",service="r",scope="repository:a/b:pull,push""#,
            bearer(
                "https://r.example/token",
                Some("r"),
                Some("repository:a/b:pull,push"),
            ),
        ),
        (
            r#"Basic realm="Registry Realm""#,
            basic(Some("Registry Realm")),
        ),
        ("Basic", basic(None)),
        ("basic realm=x", basic(Some("x"))),
        (
            r#"  bEaReR   Realm = "https://a/token" ,  SERVICE=svc  "#,
            bearer("https://a/token", Some("svc"), None),
        ),
        (
            "Bearer realm=https://a/token,service=svc",
            bearer("https://a/token", Some("svc"), None),
        ),
        (
            r#"Bearer realm="https://a/t\"q\\",service="a,b""#,
            bearer(r#"https://a/t"q\"#, Some("a,b"), None),
        ),
        (
            r#"Basic realm="x", Bearer realm="https://a/token""#,
            bearer("https://a/token", None, None),
        ),
        (r#"Negotiate, Basic realm="x""#, basic(Some("x"))),
        (r#"Bearer realm="", Basic"#, basic(None)),
        ("", None),
        ("Bearer", None),
        (r#"Bearer service="x""#, None),
        ("Negotiate", None),
        (r#"Bearer realm="https://a/token"#, None),
        (r#"Bearer realm="a" junk"#, None),
        ("\"quoted\"", None),
        ("=", None),
        ("Bearer realm=", None),
    ];
    for (value, expected) in table {
        assert_eq!(parse_challenge(value), expected, "{value:?}");
    }
}

#[test]
fn token_lifetimes() {
    let cache_for = |body: &str| parse_token(body.as_bytes(), "r").map(|t| t.cache_for);
    assert_eq!(
        cache_for(r#"{"token":"t"}"#).ok(),
        Some(Duration::from_secs(54))
    );
    assert_eq!(
        cache_for(r#"{"access_token":"t","expires_in":0}"#).ok(),
        Some(Duration::from_secs(54))
    );
    assert_eq!(
        cache_for(r#"{"token":"t","expires_in":3600}"#).ok(),
        Some(Duration::from_secs(3570))
    );
    assert_eq!(
        cache_for(r#"{"token":"","access_token":"t","expires_in":"x"}"#).ok(),
        Some(Duration::from_secs(54))
    );
    for bad in [
        r#"{"token":""}"#,
        "{}",
        "[]",
        "not json",
        r#"{"token":"a\nb"}"#,
    ] {
        assert!(
            matches!(
                parse_token(bad.as_bytes(), "r"),
                Err(AuthError::BadTokenResponse { .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn origins_are_checked() {
    for good in ["http://127.0.0.1:5000", "https://registry.example.com/"] {
        assert!(parse_origin(good).is_ok(), "{good}");
    }
    for bad in [
        "127.0.0.1:5000",
        "ftp://x",
        "http://x/v2/",
        "http://u:p@x",
        "http://",
    ] {
        assert!(UpstreamAuth::new(bad, TIMEOUT).is_err(), "{bad}");
    }
    let origins = |r: &str| {
        candidate_origins(r)
            .map(|o| o.iter().map(|u| u.to_string()).collect::<Vec<_>>())
            .ok()
    };
    assert_eq!(
        origins("quay.io/ns/app"),
        Some(vec!["https://quay.io/".to_string()])
    );
    assert_eq!(
        origins("localhost:5000"),
        Some(vec![
            "https://localhost:5000/".to_string(),
            "http://localhost:5000/".to_string()
        ])
    );
    assert_eq!(
        origins("[::1]:5000"),
        Some(vec![
            "https://[::1]:5000/".to_string(),
            "http://[::1]:5000/".to_string()
        ])
    );
    assert_eq!(
        origins("http://r.example:5000/x"),
        Some(vec!["http://r.example:5000/".to_string()])
    );
}

/// A request the fake's token endpoint received.
#[derive(Clone, Debug)]
struct Hit {
    method: Method,
    /// The Basic user name, if any.
    user: Option<String>,
    /// The query (GET) or form (POST) parameters.
    params: Vec<(String, String)>,
}

impl Hit {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A fake registry and token realm in one server: `GET /v2/` and `GET|POST /token`.
#[derive(Default)]
struct Fake {
    /// `WWW-Authenticate` of a 401 to `/v2/`; `None`: `/v2/` is open.
    challenge: Mutex<Option<String>>,
    /// Basic credentials accepted by `/v2/` and `/token`.
    basic: Vec<(&'static str, &'static str)>,
    /// Identity tokens `/token` accepts as refresh tokens.
    refresh: Vec<&'static str>,
    /// Whether `/token` issues tokens without credentials.
    anonymous: bool,
    /// The `expires_in` of issued tokens.
    expires_in: Option<u64>,
    /// Tokens issued, which `/v2/` accepts.
    issued: Mutex<Vec<String>>,
    token_hits: Mutex<Vec<Hit>>,
    v2_hits: AtomicUsize,
}

impl Fake {
    /// Serves on `ip`, port chosen by the system; returns the `host:port` served.
    async fn serve(self, ip: &str) -> (String, Arc<Fake>) {
        let fake = Arc::new(self);
        let app = Router::new()
            .route("/v2/", get(v2))
            .route("/token", get(token).post(token))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind((ip, 0))
            .await
            .expect("bind the fake");
        let addr = listener.local_addr().expect("fake address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr.to_string(), fake)
    }

    fn set_challenge(&self, value: &str) {
        *self.challenge.lock().unwrap() = Some(value.to_string());
    }

    fn hits(&self) -> Vec<Hit> {
        self.token_hits.lock().unwrap().clone()
    }

    fn basic_user(&self, headers: &HeaderMap) -> Option<Result<String, ()>> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let encoded = value.strip_prefix("Basic ")?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, pass) = decoded.split_once(':')?;
        Some(if self.basic.contains(&(user, pass)) {
            Ok(user.to_string())
        } else {
            Err(())
        })
    }
}

async fn v2(State(fake): State<Arc<Fake>>, headers: HeaderMap) -> Response {
    fake.v2_hits.fetch_add(1, Ordering::SeqCst);
    let Some(challenge) = fake.challenge.lock().unwrap().clone() else {
        return "{}".into_response();
    };
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let bearer_ok = auth
        .strip_prefix("Bearer ")
        .is_some_and(|t| fake.issued.lock().unwrap().iter().any(|i| i == t));
    if bearer_ok || matches!(fake.basic_user(&headers), Some(Ok(_))) {
        return "{}".into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, challenge)],
        "{}",
    )
        .into_response()
}

async fn token(
    State(fake): State<Arc<Fake>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let raw = if method == Method::POST {
        body.to_vec()
    } else {
        query.unwrap_or_default().into_bytes()
    };
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&raw).into_owned().collect();
    let basic = fake.basic_user(&headers);
    let hit = Hit {
        method: method.clone(),
        user: basic.clone().and_then(Result::ok),
        params,
    };
    fake.token_hits.lock().unwrap().push(hit.clone());
    let accepted = match (&method, basic) {
        (&Method::POST, _) => {
            hit.param("grant_type") == Some("refresh_token")
                && hit
                    .param("refresh_token")
                    .is_some_and(|t| fake.refresh.contains(&t))
        }
        (_, Some(basic)) => basic.is_ok(),
        (_, None) => fake.anonymous,
    };
    if !accepted {
        let status = if method == Method::POST {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UNAUTHORIZED
        };
        return (status, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#).into_response();
    }
    let mut issued = fake.issued.lock().unwrap();
    let token = format!("tok-{}", issued.len() + 1);
    issued.push(token.clone());
    let body = match fake.expires_in {
        Some(expires_in) => serde_json::json!({"token": token, "expires_in": expires_in}),
        None => serde_json::json!({"access_token": token}),
    };
    axum::Json(body).into_response()
}

/// A keyring of `(key, credential)` where a credential is `user:pass` or `token:ID` (an
/// identity token).
fn keyring(entries: &[(&str, &str)]) -> Keyring {
    let auths: serde_json::Map<String, serde_json::Value> = entries
        .iter()
        .map(|(key, credential)| {
            let value = match credential.strip_prefix("token:") {
                Some(token) => serde_json::json!({ "identitytoken": token }),
                None => serde_json::json!({
                    "auth": base64::engine::general_purpose::STANDARD.encode(credential)
                }),
            };
            (key.to_string(), value)
        })
        .collect();
    let json = serde_json::json!({ "auths": auths });
    Keyring::parse(json.to_string().as_bytes()).expect("test keyring")
}

fn header_text(value: Option<HeaderValue>) -> Option<String> {
    value.map(|v| {
        assert!(v.is_sensitive());
        v.to_str().expect("ascii header").to_string()
    })
}

const SCOPE: &str = "repository:ns/app:pull";

#[tokio::test]
async fn an_open_registry_needs_nothing() {
    let (host, fake) = Fake::default().serve("127.0.0.1").await;
    let auth = UpstreamAuth::new(&format!("http://{host}"), TIMEOUT).unwrap();
    let keys = keyring(&[(&host, "alice:pw")]);
    let image = format!("{host}/ns/app");
    for _ in 0..2 {
        let got = auth.authorization(&keys, &image, Some(SCOPE));
        assert!(got.await.unwrap().is_none());
    }
    assert_eq!(fake.v2_hits.load(Ordering::SeqCst), 1, "/v2/ asked once");
}

#[tokio::test]
async fn basic_is_sent_preemptively() {
    let fake = Fake {
        basic: vec![("alice", "pw")],
        ..Fake::default()
    };
    fake.set_challenge(r#"Basic realm="fake""#);
    let (host, fake) = fake.serve("127.0.0.1").await;
    let auth = UpstreamAuth::new(&format!("http://{host}"), TIMEOUT).unwrap();
    let keys = keyring(&[(&format!("{host}/ns/app"), "token:x"), (&host, "alice:pw")]);
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:pw")
    );
    let image = format!("{host}/ns/app");
    for _ in 0..2 {
        let got = auth.authorization(&keys, &image, Some(SCOPE));
        assert_eq!(header_text(got.await.unwrap()), Some(expected.clone()));
    }
    assert_eq!(fake.v2_hits.load(Ordering::SeqCst), 1);

    let none = keyring(&[("other.example", "alice:pw")]);
    let err = auth
        .authorization(&none, &format!("{host}/ns/app"), Some(SCOPE))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::NoCredentials { .. }), "{err}");
    assert!(err.to_string().contains(&host), "{err}");

    // The proxy saw a 401: the challenge is asked again.
    auth.rejected(Some(SCOPE));
    auth.authorization(&keys, &format!("{host}/ns/app"), Some(SCOPE))
        .await
        .unwrap();
    assert_eq!(fake.v2_hits.load(Ordering::SeqCst), 2);
}

/// A registry whose `/v2/` sends clients to its own `/token`.
async fn bearer_registry(fake: Fake) -> (String, Arc<Fake>, UpstreamAuth) {
    let (host, fake) = fake.serve("127.0.0.1").await;
    fake.set_challenge(&format!(
        r#"Bearer realm="http://{host}/token",service="fake-registry""#
    ));
    let auth = UpstreamAuth::new(&format!("http://{host}"), TIMEOUT).unwrap();
    (host, fake, auth)
}

#[tokio::test]
async fn bearer_tokens_are_fetched_with_basic_and_cached() {
    let (host, fake, auth) = bearer_registry(Fake {
        basic: vec![("alice", "pw")],
        expires_in: Some(300),
        ..Fake::default()
    })
    .await;
    let keys = keyring(&[(&host, "alice:pw")]);
    let image = format!("{host}/ns/app");
    for _ in 0..2 {
        let got = auth.authorization(&keys, &image, Some(SCOPE)).await;
        assert_eq!(header_text(got.unwrap()).as_deref(), Some("Bearer tok-1"));
    }
    let hits = fake.hits();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].method, Method::GET);
    assert_eq!(hits[0].user.as_deref(), Some("alice"));
    assert_eq!(hits[0].param("service"), Some("fake-registry"));
    assert_eq!(hits[0].param("scope"), Some(SCOPE));
    assert_eq!(hits[0].param("account"), Some("alice"));

    // Another scope is another token; several scopes go as several parameters.
    let push = "repository:ns/app:pull,push repository:ns/base:pull";
    let got = auth.authorization(&keys, &image, Some(push)).await;
    assert_eq!(header_text(got.unwrap()).as_deref(), Some("Bearer tok-2"));
    let hits = fake.hits();
    let scopes: Vec<_> = hits[1]
        .params
        .iter()
        .filter(|(n, _)| n == "scope")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        scopes,
        ["repository:ns/app:pull,push", "repository:ns/base:pull"]
    );

    // A 401 with the token: forgotten, fetched again.
    auth.rejected(Some(SCOPE));
    let got = auth.authorization(&keys, &image, Some(SCOPE)).await;
    assert_eq!(header_text(got.unwrap()).as_deref(), Some("Bearer tok-3"));
    assert_eq!(fake.v2_hits.load(Ordering::SeqCst), 2);
    // The other scope's token was kept.
    let got = auth.authorization(&keys, &image, Some(push)).await;
    assert_eq!(header_text(got.unwrap()).as_deref(), Some("Bearer tok-2"));
    assert_eq!(fake.hits().len(), 3);
}

#[tokio::test]
async fn tokens_are_fetched_again_before_they_expire() {
    let (host, fake, auth) = bearer_registry(Fake {
        basic: vec![("alice", "pw")],
        expires_in: Some(1),
        ..Fake::default()
    })
    .await;
    let keys = keyring(&[(&host, "alice:pw")]);
    let image = format!("{host}/ns/app");
    let got = auth.authorization(&keys, &image, Some(SCOPE)).await;
    assert_eq!(header_text(got.unwrap()).as_deref(), Some("Bearer tok-1"));
    let got = auth.authorization(&keys, &image, Some(SCOPE)).await;
    assert_eq!(header_text(got.unwrap()).as_deref(), Some("Bearer tok-1"));
    // Cached for 0.9 s of the 1 s lifetime.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let got = auth.authorization(&keys, &image, Some(SCOPE)).await;
    assert_eq!(header_text(got.unwrap()).as_deref(), Some("Bearer tok-2"));
    assert_eq!(fake.hits().len(), 2);
}

#[tokio::test]
async fn concurrent_requests_fetch_one_token() {
    let (host, fake, auth) = bearer_registry(Fake {
        basic: vec![("alice", "pw")],
        ..Fake::default()
    })
    .await;
    let keys = keyring(&[(&host, "alice:pw")]);
    let image = format!("{host}/ns/app");
    let keys = Arc::new(keys);
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (auth, keys, image) = (auth.clone(), keys.clone(), image.clone());
        calls.spawn(async move { auth.authorization(&keys, &image, Some(SCOPE)).await });
    }
    while let Some(got) = calls.join_next().await {
        let got = got.expect("task");
        assert_eq!(header_text(got.unwrap()).as_deref(), Some("Bearer tok-1"));
    }
    assert_eq!(fake.hits().len(), 1);
    assert_eq!(fake.v2_hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn identity_tokens_are_posted_as_a_refresh_token_form() {
    let (host, fake, auth) = bearer_registry(Fake {
        refresh: vec!["id-token-1"],
        ..Fake::default()
    })
    .await;
    let keys = keyring(&[(&host, "token:id-token-1")]);
    let got = auth
        .authorization(&keys, &format!("{host}/ns/app"), Some(SCOPE))
        .await;
    assert_eq!(header_text(got.unwrap()).as_deref(), Some("Bearer tok-1"));
    let hits = fake.hits();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].method, Method::POST);
    assert_eq!(hits[0].user, None);
    assert_eq!(hits[0].param("grant_type"), Some("refresh_token"));
    assert_eq!(hits[0].param("refresh_token"), Some("id-token-1"));
    assert_eq!(hits[0].param("client_id"), Some("regate"));
    assert_eq!(hits[0].param("service"), Some("fake-registry"));
    assert_eq!(hits[0].param("scope"), Some(SCOPE));
}

/// A registry on 127.0.0.1 whose realm is another host, 127.0.0.2.
async fn delegated(realm: Fake) -> (String, String, Arc<Fake>, UpstreamAuth) {
    let (realm_host, realm) = realm.serve("127.0.0.2").await;
    let (host, registry) = Fake::default().serve("127.0.0.1").await;
    registry.set_challenge(&format!(
        r#"Bearer realm="http://{realm_host}/token",service="fake-registry""#
    ));
    let auth = UpstreamAuth::new(&format!("http://{host}"), TIMEOUT).unwrap();
    (host, realm_host, realm, auth)
}

#[tokio::test]
async fn a_realm_on_another_host_gets_its_own_entry_first() {
    let (host, realm_host, realm, auth) = delegated(Fake {
        basic: vec![("realm-user", "rpw")],
        ..Fake::default()
    })
    .await;
    let keys = keyring(&[(&host, "alice:pw"), (&realm_host, "realm-user:rpw")]);
    let got = auth
        .authorization(&keys, &format!("{host}/ns/app"), Some(SCOPE))
        .await;
    assert_eq!(header_text(got.unwrap()).as_deref(), Some("Bearer tok-1"));
    let hits = realm.hits();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].user.as_deref(), Some("realm-user"));
}

#[tokio::test]
async fn a_realm_on_another_host_gets_the_registry_entry_else() {
    let (host, _realm_host, realm, auth) = delegated(Fake {
        basic: vec![("alice", "pw")],
        ..Fake::default()
    })
    .await;
    let keys = keyring(&[(&host, "alice:pw"), ("elsewhere.example", "x:y")]);
    let got = auth
        .authorization(&keys, &format!("{host}/ns/app"), Some(SCOPE))
        .await;
    assert_eq!(header_text(got.unwrap()).as_deref(), Some("Bearer tok-1"));
    let hits = realm.hits();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].user.as_deref(), Some("alice"));
}

#[tokio::test]
async fn matching_entries_are_tried_most_specific_first() {
    let (host, fake, auth) = bearer_registry(Fake {
        basic: vec![("alice", "pw")],
        ..Fake::default()
    })
    .await;
    let keys = keyring(&[
        (&host, "alice:pw"),
        (&format!("{host}/ns"), "carol:old"),
        (&format!("{host}/ns/app"), "bob:wrong"),
    ]);
    let got = auth
        .authorization(&keys, &format!("{host}/ns/app"), Some(SCOPE))
        .await;
    assert_eq!(header_text(got.unwrap()).as_deref(), Some("Bearer tok-1"));
    let users: Vec<_> = fake
        .hits()
        .into_iter()
        .map(|h| h.param("account").map(String::from))
        .collect();
    assert_eq!(
        users,
        [
            Some("bob".into()),
            Some("carol".into()),
            Some("alice".into())
        ]
    );
}

#[tokio::test]
async fn every_entry_refused_is_rejected() {
    let (host, fake, auth) = bearer_registry(Fake {
        basic: vec![("alice", "pw")],
        refresh: vec!["good"],
        ..Fake::default()
    })
    .await;
    let keys = keyring(&[
        (&host, "alice:s3cret-password"),
        (&format!("{host}/ns"), "token:s3cret-identity"),
    ]);
    let err = auth
        .authorization(&keys, &format!("{host}/ns/app"), Some(SCOPE))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::Rejected { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("credentials rejected"), "{message}");
    assert!(message.contains(&host), "{message}");
    for shown in [message, format!("{err:?}")] {
        assert!(!shown.contains("s3cret"), "{shown}");
    }
    assert_eq!(fake.hits().len(), 2);
    // Refusals are not cached: the next request asks again.
    let _ = auth
        .authorization(&keys, &format!("{host}/ns/app"), Some(SCOPE))
        .await;
    assert_eq!(fake.hits().len(), 4);
}

#[tokio::test]
async fn no_entry_is_no_credentials_unless_the_realm_is_anonymous() {
    let (host, fake, auth) = bearer_registry(Fake::default()).await;
    let keys = keyring(&[("elsewhere.example", "x:y")]);
    let err = auth
        .authorization(&keys, &format!("{host}/ns/app"), Some(SCOPE))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::NoCredentials { .. }), "{err:?}");
    assert_eq!(fake.hits()[0].user, None);

    let (host, _, auth) = bearer_registry(Fake {
        anonymous: true,
        ..Fake::default()
    })
    .await;
    let got = auth
        .authorization(&keys, &format!("{host}/library/ubuntu"), Some(SCOPE))
        .await;
    assert_eq!(header_text(got.unwrap()).as_deref(), Some("Bearer tok-1"));
}

#[tokio::test]
async fn an_unreachable_registry_says_so() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    drop(listener);
    let auth = UpstreamAuth::new(&format!("http://{host}"), TIMEOUT).unwrap();
    let err = auth
        .authorization(&keyring(&[]), &format!("{host}/a"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains(&host), "{err}");
}

fn basic(user: &str, pass: &str) -> Credential {
    Credential::Basic {
        username: user.into(),
        password: SecretString::from(pass),
    }
}

#[tokio::test]
async fn credentials_are_checked_against_basic_registries() {
    let fake = Fake {
        basic: vec![("alice", "pw")],
        ..Fake::default()
    };
    fake.set_challenge(r#"Basic realm="fake""#);
    let (host, _fake) = fake.serve("127.0.0.1").await;
    // https first; the plain-http fake fails the TLS handshake, so http follows on loopback.
    check_credential(&host, &basic("alice", "pw"), TIMEOUT)
        .await
        .unwrap();
    check_credential(&format!("http://{host}"), &basic("alice", "pw"), TIMEOUT)
        .await
        .unwrap();
    let err = check_credential(&format!("{host}/ns/app"), &basic("alice", "bad"), TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::Rejected { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("credentials rejected by {host}"))
    );
}

#[tokio::test]
async fn credentials_are_checked_through_the_realm() {
    let (host, fake, _) = bearer_registry(Fake {
        basic: vec![("alice", "pw")],
        ..Fake::default()
    })
    .await;
    check_credential(&format!("http://{host}"), &basic("alice", "pw"), TIMEOUT)
        .await
        .unwrap();
    let err = check_credential(&format!("http://{host}"), &basic("alice", "no"), TIMEOUT)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("credentials rejected"), "{err}");
    assert_eq!(fake.hits().len(), 2);

    let (open, _) = Fake::default().serve("127.0.0.1").await;
    check_credential(&format!("http://{open}"), &basic("x", "y"), TIMEOUT)
        .await
        .unwrap();
}
