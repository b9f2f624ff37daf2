//! Unit tests of the Kubernetes authority against a fake API server on 127.0.0.1, reached
//! through kube's real client stack, so what the fake records is what a cluster would receive.
//!
//! One file past the usual size: every test drives the same fake API server fixture, and the
//! sections (identity, decisions, review modes, retries and deadlines, pull secrets, secrets in
//! messages) read best side by side.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use std::sync::atomic::AtomicUsize;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::authentication::v1::{SelfSubjectReviewStatus, TokenReviewStatus};
use kube::config::{
    AuthInfo, Cluster, Context, InClusterError, Kubeconfig, NamedAuthInfo, NamedCluster,
    NamedContext,
};

use super::*;
use crate::identity::ANONYMOUS;

/// The token regate's own kubeconfig carries.
const REGATE_TOKEN: &str = "regate-sa-token";
/// The paths the four reviews are POSTed to.
const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
const SELF_SUBJECT_REVIEWS: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
const ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
const SELF_ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";

/// One request the fake API received.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    authorization: Option<String>,
    body: Bytes,
}

impl Received {
    /// The body as the review type the path says it is.
    fn review<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).expect("the request body is the review type")
    }
}

/// What the fake API answers.
#[derive(Clone, Debug)]
enum Reply {
    /// 200: the token is this user (a TokenReview or a SelfSubjectReview, by the path).
    User {
        name: &'static str,
        uid: &'static str,
        groups: Vec<&'static str>,
    },
    /// 200: the TokenReview asked, with this status.
    TokenReview(TokenReviewStatus),
    /// 200: a (Self)SubjectAccessReview with this status.
    Access(SubjectAccessReviewStatus),
    /// 200: any object, already encoded.
    Object(serde_json::Value),
    /// This status with a Kubernetes `Status` body carrying `message`.
    Status(StatusCode, String),
    /// 429 with `Retry-After: n`.
    RetryAfter(u64),
    /// Never answers.
    Hang,
    /// Answers after a while.
    Slow(Duration, Box<Reply>),
}

type Answerer = Arc<dyn Fn(&Received, usize) -> Reply + Send + Sync>;

#[derive(Clone)]
struct FakeState {
    answer: Answerer,
    received: Arc<Mutex<Vec<Received>>>,
    calls: Arc<AtomicUsize>,
}

/// A fake API server; dropped with the test's runtime.
struct FakeApi {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl FakeApi {
    async fn start(answer: Answerer) -> FakeApi {
        let received = Arc::new(Mutex::new(Vec::new()));
        let state = FakeState {
            answer,
            received: received.clone(),
            calls: Arc::new(AtomicUsize::new(0)),
        };
        let app = Router::new()
            .route("/{*path}", axum::routing::post(fake_handler))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeApi { url, received }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    fn only(&self) -> Received {
        let received = self.received();
        assert_eq!(received.len(), 1, "{received:?}");
        received.into_iter().next().expect("one request")
    }
}

async fn fake_handler(
    State(state): State<FakeState>,
    uri: http::Uri,
    headers: http::HeaderMap,
    body: Bytes,
) -> Response {
    let received = Received {
        path: uri.path().to_string(),
        authorization: headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.to_str().expect("ascii").to_string()),
        body,
    };
    state.received.lock().expect("lock").push(received.clone());
    let call = state
        .calls
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let reply = (state.answer)(&received, call);
    respond(&received, reply).await
}

async fn respond(received: &Received, mut reply: Reply) -> Response {
    loop {
        match reply {
            Reply::Slow(delay, inner) => {
                tokio::time::sleep(delay).await;
                reply = *inner;
            }
            Reply::Hang => std::future::pending::<()>().await,
            _ => break,
        }
    }
    let object = match reply {
        Reply::User { name, uid, groups } => {
            let user = KubeUserInfo {
                username: Some(name.into()),
                uid: Some(uid.into()),
                groups: Some(groups.iter().map(|g| g.to_string()).collect()),
                extra: None,
            };
            if received.path == SELF_SUBJECT_REVIEWS {
                to_json(&SelfSubjectReview {
                    status: Some(SelfSubjectReviewStatus {
                        user_info: Some(user),
                    }),
                    ..SelfSubjectReview::default()
                })
            } else {
                let asked: TokenReview = received.review();
                to_json(&TokenReview {
                    status: Some(TokenReviewStatus {
                        authenticated: Some(true),
                        user: Some(user),
                        audiences: asked.spec.audiences.clone(),
                        error: None,
                    }),
                    ..asked
                })
            }
        }
        Reply::TokenReview(status) => to_json(&TokenReview {
            status: Some(status),
            ..received.review()
        }),
        Reply::Access(status) => {
            if received.path == SELF_ACCESS_REVIEWS {
                to_json(&SelfSubjectAccessReview {
                    status: Some(status),
                    ..received.review()
                })
            } else {
                to_json(&SubjectAccessReview {
                    status: Some(status),
                    ..received.review()
                })
            }
        }
        Reply::Object(object) => object,
        Reply::Status(code, message) => {
            let status = kube::core::Status::failure(&message, "Failure").with_code(code.as_u16());
            return (code, axum::Json(status)).into_response();
        }
        Reply::RetryAfter(seconds) => {
            let status =
                kube::core::Status::failure("too many requests", "TooManyRequests").with_code(429);
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(http::header::RETRY_AFTER, seconds.to_string())],
                axum::Json(status),
            )
                .into_response();
        }
        Reply::Slow(..) | Reply::Hang => unreachable!("handled above"),
    };
    axum::Json(object).into_response()
}

fn to_json<T: serde::Serialize>(object: &T) -> serde_json::Value {
    serde_json::to_value(object).expect("encode")
}

fn builder() -> Reply {
    Reply::User {
        name: "system:serviceaccount:project-a:builder",
        uid: "uid-builder",
        groups: vec!["system:serviceaccounts", "system:serviceaccounts:project-a"],
    }
}

/// A TokenReview that did not authenticate, with this `status.error`.
fn unauthenticated(error: impl Into<String>) -> Reply {
    Reply::TokenReview(TokenReviewStatus {
        authenticated: Some(false),
        error: Some(error.into()),
        ..TokenReviewStatus::default()
    })
}

fn allowed(reason: Option<&str>) -> Reply {
    Reply::Access(SubjectAccessReviewStatus {
        allowed: true,
        reason: reason.map(str::to_string),
        ..SubjectAccessReviewStatus::default()
    })
}

fn denied() -> Reply {
    Reply::Access(SubjectAccessReviewStatus::default())
}

/// Settings that fail fast enough for tests.
fn quick() -> KubernetesSettings {
    KubernetesSettings {
        timeout: Duration::from_millis(300),
        retry_backoff: Duration::from_millis(10),
        deadline: Duration::from_secs(2),
        ..KubernetesSettings::default()
    }
}

/// A fake API answering with `answer`, and an authority talking to it as regate
/// (`REGATE_TOKEN`) with `settings`.
struct Fixture {
    settings: KubernetesSettings,
    answer: Answerer,
}

impl Fixture {
    fn answering(answer: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static) -> Self {
        Fixture {
            settings: quick(),
            answer: Arc::new(answer),
        }
    }

    fn with(mut self, change: impl FnOnce(&mut KubernetesSettings)) -> Self {
        change(&mut self.settings);
        self
    }

    async fn run(self) -> (Arc<Kubernetes>, FakeApi) {
        let api = FakeApi::start(self.answer).await;
        let mut config = kube::Config::new(api.url.parse().expect("url"));
        config.auth_info.token = Some(SecretString::from(REGATE_TOKEN));
        let authority = Kubernetes::from_config(config, self.settings).expect("authority");
        (authority, api)
    }
}

fn token(value: &str) -> SecretString {
    SecretString::from(value.to_string())
}

/// Who `authority` says `value` is; the test fails if it cannot answer.
async fn authenticate(authority: &Kubernetes, value: &str) -> Authn {
    authority.authenticate(&token(value)).await.expect("answer")
}

/// What `authority` decides for `user` (with the caller's `token`, if any) on `attrs`; the test
/// fails if it cannot answer.
async fn authorize(
    authority: &Kubernetes,
    user: &UserInfo,
    token: Option<&SecretString>,
    attrs: &Attributes,
) -> Decision {
    authority
        .authorize(user, token, attrs)
        .await
        .expect("answer")
}

fn unavailable(result: Result<impl std::fmt::Debug, AuthorityError>) -> String {
    match result {
        Err(AuthorityError::Unavailable(cause)) => {
            assert!(
                cause.downcast_ref::<ClusterError>().is_some(),
                "the cause is typed: {cause:?}"
            );
            cause.to_string()
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// A JWT-shaped token (unsigned; only the claims matter here) expiring at `exp` (Unix seconds).
fn jwt_expiring_at(exp: f64) -> SecretString {
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(v).expect("json"))
    };
    let header = b64(&serde_json::json!({"alg": "RS256"}));
    let claims = b64(&serde_json::json!({"sub": "x", "exp": exp}));
    token(&format!("{header}.{claims}.c2ln"))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

// --- TokenReview ------------------------------------------------------------------------------

#[tokio::test]
async fn token_review_maps_an_authenticated_user() {
    let (authority, api) = Fixture::answering(|_, _| builder())
        .with(|s| s.audiences = vec!["regate".into()])
        .run()
        .await;
    let authn = authenticate(&authority, "sa-token").await;
    assert_eq!(
        authn,
        Authn::User(UserInfo::authenticated(
            "system:serviceaccount:project-a:builder".into(),
            "uid-builder".into(),
            vec![
                "system:serviceaccounts".into(),
                "system:serviceaccounts:project-a".into()
            ],
        ))
    );
    let received = api.only();
    assert_eq!(received.path, TOKEN_REVIEWS);
    assert_eq!(
        received.authorization.as_deref(),
        Some("Bearer regate-sa-token")
    );
    let review: TokenReview = received.review();
    assert_eq!(review.spec.token, "sa-token");
    assert_eq!(review.spec.audiences, Some(vec!["regate".to_string()]));
}

#[tokio::test]
async fn token_review_without_audiences_leaves_them_to_the_server() {
    let (authority, api) = Fixture::answering(|_, _| builder()).run().await;
    authenticate(&authority, "a-caller-token").await;
    assert_eq!(api.only().review::<TokenReview>().spec.audiences, None);
}

#[tokio::test]
async fn unauthenticated_token_is_invalid_with_the_servers_reason() {
    let (authority, _api) = Fixture::answering(|_, _| unauthenticated("token has expired"))
        .run()
        .await;
    let authn = authenticate(&authority, "old").await;
    assert_eq!(
        authn,
        Authn::Invalid {
            reason: "token has expired".into()
        }
    );
}

#[tokio::test]
async fn authenticated_without_a_user_name_is_invalid() {
    let (authority, _api) = Fixture::answering(|_, _| {
        Reply::TokenReview(TokenReviewStatus {
            authenticated: Some(true),
            ..TokenReviewStatus::default()
        })
    })
    .run()
    .await;
    let authn = authenticate(&authority, "a-caller-token").await;
    assert!(matches!(authn, Authn::Invalid { .. }), "{authn:?}");
}

#[tokio::test]
async fn token_for_other_audiences_is_invalid() {
    let (authority, _api) = Fixture::answering(|_, _| {
        Reply::TokenReview(TokenReviewStatus {
            authenticated: Some(true),
            audiences: Some(vec!["someone-else".into()]),
            user: Some(KubeUserInfo {
                username: Some("alice".into()),
                ..KubeUserInfo::default()
            }),
            error: None,
        })
    })
    .with(|s| s.audiences = vec!["regate".into()])
    .run()
    .await;
    let authn = authenticate(&authority, "a-caller-token").await;
    let Authn::Invalid { reason } = authn else {
        panic!("expected Invalid, got {authn:?}");
    };
    assert!(reason.contains("someone-else"), "{reason}");
}

#[tokio::test]
async fn forbidden_token_review_names_the_cluster_role_to_bind() {
    let (authority, api) = Fixture::answering(|_, _| {
        Reply::Status(StatusCode::FORBIDDEN, "tokenreviews is forbidden".into())
    })
    .run()
    .await;
    let message = unavailable(authority.authenticate(&token("a-caller-token")).await);
    assert!(message.contains("system:auth-delegator"), "{message}");
    assert!(message.contains(&api.url), "{message}");
    assert_eq!(api.received().len(), 1, "a 403 is not retried");
}

// --- the token cache --------------------------------------------------------------------------

#[tokio::test]
async fn concurrent_requests_for_one_token_make_one_review() {
    let (authority, api) =
        Fixture::answering(|_, _| Reply::Slow(Duration::from_millis(100), Box::new(builder())))
            .run()
            .await;
    let waiters = (0..200).map(|_| {
        let authority = authority.clone();
        tokio::spawn(async move { authority.authenticate(&token("shared")).await })
    });
    for waiter in futures_join(waiters).await {
        assert!(matches!(waiter, Ok(Authn::User(_))), "{waiter:?}");
    }
    assert_eq!(api.received().len(), 1);
    assert_eq!(authority.reviews_made(), 1);

    authenticate(&authority, "another").await;
    assert_eq!(api.received().len(), 2, "a different token is reviewed");
    authenticate(&authority, "shared").await;
    assert_eq!(api.received().len(), 2, "a known token is not");
}

/// Awaits every task, in order.
async fn futures_join<T>(tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut results = Vec::new();
    for task in tasks.collect::<Vec<_>>() {
        results.push(task.await.expect("task"));
    }
    results
}

#[tokio::test]
async fn an_invalid_token_is_remembered_only_briefly() {
    let (authority, api) = Fixture::answering(|_, _| unauthenticated("bad token"))
        .with(|s| s.invalid_token_ttl = Duration::from_millis(300))
        .run()
        .await;
    let bad = token("bad");
    authority.authenticate(&bad).await.expect("answer");
    authority.authenticate(&bad).await.expect("answer");
    assert_eq!(api.received().len(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    authority.authenticate(&bad).await.expect("answer");
    assert_eq!(api.received().len(), 2);
}

#[tokio::test]
async fn an_identity_is_not_kept_past_the_tokens_own_expiry() {
    let (authority, api) = Fixture::answering(|_, _| builder()).run().await;
    let expiring = jwt_expiring_at(unix_now() + 0.5);
    authority.authenticate(&expiring).await.expect("answer");
    authority.authenticate(&expiring).await.expect("answer");
    assert_eq!(api.received().len(), 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    authority.authenticate(&expiring).await.expect("answer");
    assert_eq!(api.received().len(), 2);
}

#[test]
fn expiry_is_read_from_jwt_claims_only() {
    let left = expiry_of(&jwt_expiring_at(unix_now() + 60.0)).expect("a JWT with exp");
    assert!(left > Duration::from_secs(58) && left <= Duration::from_secs(60));
    assert_eq!(
        expiry_of(&jwt_expiring_at(unix_now() - 60.0)),
        Some(Duration::ZERO)
    );
    assert_eq!(expiry_of(&token("not-a-jwt")), None);
    assert_eq!(expiry_of(&token("a.%%%.c")), None);
}

#[tokio::test]
async fn errors_are_not_cached() {
    let (authority, api) = Fixture::answering(|_, call| {
        if call == 0 {
            Reply::Status(StatusCode::FORBIDDEN, "not yet".into())
        } else {
            builder()
        }
    })
    .run()
    .await;
    let t = token("a-caller-token");
    unavailable(authority.authenticate(&t).await);
    assert!(matches!(
        authority.authenticate(&t).await,
        Ok(Authn::User(_))
    ));
    assert_eq!(api.received().len(), 2);
}

// --- SubjectAccessReview ----------------------------------------------------------------------

fn alice() -> UserInfo {
    UserInfo::authenticated("alice".into(), "uid-alice".into(), vec!["devs".into()])
}

/// A pull of image stream `b` of namespace `a`, for tests where the request does not matter.
fn pull() -> Attributes {
    Attributes::layers("get", "a", "b")
}

#[tokio::test]
async fn sar_carries_the_user_and_exact_resource_attributes() {
    let (authority, api) = Fixture::answering(|_, _| allowed(None)).run().await;
    let attrs = Attributes::layers("get", "project-a", "app/web");
    authorize(&authority, &alice(), None, &attrs).await;
    let received = api.only();
    assert_eq!(received.path, ACCESS_REVIEWS);
    assert_eq!(
        received.authorization.as_deref(),
        Some("Bearer regate-sa-token")
    );
    let spec = received.review::<SubjectAccessReview>().spec;
    assert_eq!(spec.user.as_deref(), Some("alice"));
    assert_eq!(spec.uid.as_deref(), Some("uid-alice"));
    assert_eq!(spec.groups, Some(alice().groups));
    assert_eq!(
        spec.resource_attributes,
        Some(ResourceAttributes {
            namespace: Some("project-a".into()),
            verb: Some("get".into()),
            group: Some("image.openshift.io".into()),
            resource: Some("imagestreams".into()),
            subresource: Some("layers".into()),
            name: Some("app/web".into()),
            ..ResourceAttributes::default()
        })
    );
    assert_eq!(spec.non_resource_attributes, None);
}

#[tokio::test]
async fn cluster_scoped_checks_have_no_namespace() {
    let (authority, api) = Fixture::answering(|_, _| allowed(None)).run().await;
    let attrs = Attributes::cluster("delete", "images");
    authorize(&authority, &alice(), None, &attrs).await;
    let attributes = api
        .only()
        .review::<SubjectAccessReview>()
        .spec
        .resource_attributes
        .expect("resource attributes");
    assert_eq!(
        attributes,
        ResourceAttributes {
            verb: Some("delete".into()),
            group: Some("image.openshift.io".into()),
            resource: Some("images".into()),
            ..ResourceAttributes::default()
        }
    );
}

#[tokio::test]
async fn only_allowed_true_allows() {
    let cases = vec![
        (allowed(Some("RBAC: allowed by RoleBinding x")), true),
        (allowed(None), true),
        (denied(), false),
        (
            Reply::Access(SubjectAccessReviewStatus {
                allowed: false,
                denied: Some(true),
                reason: Some("explicitly denied".into()),
                ..SubjectAccessReviewStatus::default()
            }),
            false,
        ),
        (
            Reply::Access(SubjectAccessReviewStatus {
                allowed: false,
                evaluation_error: Some("webhook failed".into()),
                ..SubjectAccessReviewStatus::default()
            }),
            false,
        ),
        // A 200 with no status at all.
        (
            Reply::Object(to_json(&SubjectAccessReview::default())),
            false,
        ),
    ];
    for (reply, allows) in cases {
        let shown = format!("{reply:?}");
        let (authority, _api) = Fixture::answering(move |_, _| reply.clone()).run().await;
        let decision = authorize(&authority, &alice(), None, &pull()).await;
        assert_eq!(decision.allowed(), allows, "{shown}: {decision:?}");
    }
}

#[tokio::test]
async fn allow_names_the_servers_reason_or_rbac() {
    let (authority, _api) =
        Fixture::answering(|_, call| allowed((call == 0).then_some("RBAC: allowed by X")))
            .run()
            .await;
    assert_eq!(
        authorize(&authority, &alice(), None, &pull()).await,
        Decision::Allow {
            by: "RBAC: allowed by X".into()
        }
    );
    assert_eq!(
        authorize(&authority, &alice(), None, &pull()).await,
        Decision::Allow {
            by: "kubernetes RBAC".into()
        }
    );
}

// --- retries, timeouts, deadline, rate limit --------------------------------------------------

#[tokio::test]
async fn a_500_is_retried_and_the_retry_answers() {
    let (authority, api) = Fixture::answering(|_, call| {
        if call == 0 {
            Reply::Status(StatusCode::INTERNAL_SERVER_ERROR, "etcd hiccup".into())
        } else {
            allowed(None)
        }
    })
    .run()
    .await;
    let decision = authorize(&authority, &alice(), None, &pull()).await;
    assert!(decision.allowed());
    assert_eq!(api.received().len(), 2);
    assert_eq!(authority.reviews_made(), 2);
}

#[tokio::test]
async fn always_500_is_unavailable_after_the_retries() {
    let (authority, api) = Fixture::answering(|_, _| {
        Reply::Status(
            StatusCode::SERVICE_UNAVAILABLE,
            "apiserver is shutting down".into(),
        )
    })
    .with(|s| s.retries = 2)
    .run()
    .await;
    let message = unavailable(authority.authenticate(&token("a-caller-token")).await);
    assert_eq!(api.received().len(), 3, "the first attempt and 2 retries");
    assert!(message.contains(&api.url), "{message}");
    assert!(message.contains("tokenreviews"), "{message}");
    assert!(message.contains("503"), "{message}");
}

#[tokio::test]
async fn a_hanging_api_is_unavailable_within_the_deadline() {
    let (authority, api) = Fixture::answering(|_, _| Reply::Hang)
        .with(|s| {
            s.timeout = Duration::from_millis(200);
            s.retries = 10;
            s.deadline = Duration::from_millis(700);
        })
        .run()
        .await;
    let started = std::time::Instant::now();
    let message = unavailable(authority.authorize(&alice(), None, &pull()).await);
    let took = started.elapsed();
    assert!(took < Duration::from_millis(900), "{took:?}");
    assert!(message.contains("no answer"), "{message}");
    let attempts = api.received().len();
    assert!((2..=4).contains(&attempts), "{attempts} attempts");
}

#[tokio::test]
async fn an_unreachable_api_is_unavailable_and_says_where() {
    // A port that was just free: nothing listens there.
    let url = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", listener.local_addr().expect("address"))
    };
    let config = kube::Config::new(url.parse().expect("url"));
    let authority = Kubernetes::from_config(config, quick()).expect("authority");
    let message = unavailable(authority.authenticate(&token("secret-value")).await);
    assert!(message.contains(&url), "{message}");
    assert!(!message.contains("secret-value"), "{message}");
    assert_eq!(authority.reviews_made(), 3);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (authority, api) = Fixture::answering(|_, call| {
        if call == 0 {
            Reply::RetryAfter(1)
        } else {
            builder()
        }
    })
    .with(|s| s.deadline = Duration::from_secs(3))
    .run()
    .await;
    let started = std::time::Instant::now();
    let authn = authenticate(&authority, "a-caller-token").await;
    assert!(matches!(authn, Authn::User(_)));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited as asked"
    );
    assert_eq!(api.received().len(), 2);
}

#[tokio::test]
async fn retry_after_past_the_deadline_fails_at_once() {
    let (authority, api) = Fixture::answering(|_, _| Reply::RetryAfter(30)).run().await;
    let started = std::time::Instant::now();
    let message = unavailable(authority.authenticate(&token("a-caller-token")).await);
    assert!(started.elapsed() < Duration::from_millis(500));
    assert!(message.contains("past the deadline"), "{message}");
    assert_eq!(api.received().len(), 1);
}

#[tokio::test]
async fn the_rate_limit_holds_requests_back_within_the_deadline() {
    let (authority, api) = Fixture::answering(|_, _| builder())
        .with(|s| {
            s.qps = 0.5;
            s.burst = 1;
            s.deadline = Duration::from_millis(300);
        })
        .run()
        .await;
    authenticate(&authority, "one").await;
    let message = unavailable(authority.authenticate(&token("two")).await);
    assert!(message.contains("rate limit"), "{message}");
    assert_eq!(api.received().len(), 1);
}

// --- review: self -----------------------------------------------------------------------------

fn self_review() -> impl FnOnce(&mut KubernetesSettings) {
    |s| s.review = ReviewMode::SelfReview
}

#[tokio::test]
async fn self_review_authenticates_with_the_callers_token() {
    let (authority, api) = Fixture::answering(|_, _| builder())
        .with(self_review())
        .run()
        .await;
    assert!(authority.needs_caller_token());
    let authn = authenticate(&authority, "caller-token").await;
    assert!(
        matches!(authn, Authn::User(ref u) if u.name == "system:serviceaccount:project-a:builder")
    );
    let received = api.only();
    assert_eq!(received.path, SELF_SUBJECT_REVIEWS);
    assert_eq!(
        received.authorization.as_deref(),
        Some("Bearer caller-token"),
        "the caller's token, never regate's"
    );
}

#[tokio::test]
async fn self_review_401_is_an_invalid_token() {
    let (authority, _api) =
        Fixture::answering(|_, _| Reply::Status(StatusCode::UNAUTHORIZED, "Unauthorized".into()))
            .with(self_review())
            .run()
            .await;
    let authn = authenticate(&authority, "revoked").await;
    assert!(matches!(authn, Authn::Invalid { .. }), "{authn:?}");
}

#[tokio::test]
async fn self_access_review_asks_as_the_caller() {
    let (authority, api) = Fixture::answering(|_, _| allowed(None))
        .with(self_review())
        .run()
        .await;
    let push = Attributes::layers("update", "project-a", "web");
    let decision = authorize(&authority, &alice(), Some(&token("caller-token")), &push).await;
    assert!(decision.allowed());
    let received = api.only();
    assert_eq!(received.path, SELF_ACCESS_REVIEWS);
    assert_eq!(
        received.authorization.as_deref(),
        Some("Bearer caller-token")
    );
    let spec = received.review::<SelfSubjectAccessReview>().spec;
    assert_eq!(
        spec.resource_attributes,
        Some(ResourceAttributes::from(&Attributes::layers(
            "update",
            "project-a",
            "web"
        )))
    );
}

#[tokio::test]
async fn anonymous_self_access_review_sends_no_credentials_and_a_refusal_is_a_deny() {
    for status in [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN] {
        let (authority, api) =
            Fixture::answering(move |_, _| Reply::Status(status, "anonymous".into()))
                .with(self_review())
                .run()
                .await;
        let decision = authority
            .authorize(&UserInfo::anonymous(), None, &pull())
            .await
            .expect("a refusal is an answer");
        assert!(!decision.allowed());
        assert!(decision.reason().contains(status.as_str()), "{decision:?}");
        let received = api.only();
        assert_eq!(received.authorization, None, "as {ANONYMOUS}");
    }
}

#[tokio::test]
async fn anonymous_self_access_review_may_be_allowed() {
    let (authority, api) = Fixture::answering(|_, _| allowed(None))
        .with(self_review())
        .run()
        .await;
    let attrs = Attributes::layers("get", "public", "base");
    let decision = authorize(&authority, &UserInfo::anonymous(), None, &attrs).await;
    assert!(decision.allowed());
    assert_eq!(api.only().authorization, None);
}

#[tokio::test]
async fn self_review_without_a_token_never_asks_as_anonymous_for_a_user() {
    let (authority, api) = Fixture::answering(|_, _| allowed(None))
        .with(self_review())
        .run()
        .await;
    let decision = authorize(&authority, &alice(), None, &pull()).await;
    assert_eq!(
        decision,
        Decision::deny("review: self needs the caller's own token, and none came with the request")
    );
    assert!(api.received().is_empty());
}

#[tokio::test]
async fn delegated_mode_does_not_need_the_callers_token() {
    let (authority, _api) = Fixture::answering(|_, _| builder()).run().await;
    assert!(!authority.needs_caller_token());
    assert!(!authority.anonymous_has_grants().await.expect("answer"));
    assert_eq!(authority.generation(), 0);
}

// --- secrets ----------------------------------------------------------------------------------

#[tokio::test]
async fn the_token_never_appears_in_an_error() {
    const SECRET: &str = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0.very-secret-signature";
    let (authority, _api) = Fixture::answering(|received, _| {
        // An API server that echoes the request into its error message.
        let echoed = String::from_utf8_lossy(&received.body).into_owned();
        Reply::Status(StatusCode::INTERNAL_SERVER_ERROR, echoed)
    })
    .with(|s| s.retries = 0)
    .run()
    .await;
    let error = authority
        .authenticate(&token(SECRET))
        .await
        .expect_err("500 is an error");
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("<token>"), "{shown}");
}

#[tokio::test]
async fn an_echoed_token_is_redacted_from_an_invalid_reason() {
    let (authority, _api) = Fixture::answering(|received, _| {
        let asked: TokenReview = received.review();
        unauthenticated(format!("invalid bearer token {}", asked.spec.token))
    })
    .run()
    .await;
    let authn = authenticate(&authority, "hunter2-token").await;
    assert_eq!(
        authn,
        Authn::Invalid {
            reason: "invalid bearer token <token>".into()
        }
    );
}

#[tokio::test]
async fn debug_output_shows_no_key_or_token() {
    let (authority, api) = Fixture::answering(|_, _| builder()).run().await;
    authenticate(&authority, "t0ken-value").await;
    let shown = format!("{authority:?}");
    assert!(shown.contains(&api.url), "{shown}");
    assert!(!shown.contains("t0ken-value"), "{shown}");
}

// --- start-up ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_kubeconfig_file_is_used_with_its_credentials() {
    let api = FakeApi::start(Arc::new(|received: &Received, _| {
        if received.path == SELF_ACCESS_REVIEWS {
            allowed(None)
        } else {
            builder()
        }
    }))
    .await;
    let kubeconfig = Kubeconfig {
        clusters: vec![NamedCluster {
            name: "fake".into(),
            cluster: Some(Cluster {
                server: Some(api.url.clone()),
                ..Cluster::default()
            }),
            ..NamedCluster::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: "regate".into(),
            auth_info: Some(AuthInfo {
                token: Some(SecretString::from("from-the-file")),
                ..AuthInfo::default()
            }),
            ..NamedAuthInfo::default()
        }],
        contexts: vec![NamedContext {
            name: "fake".into(),
            context: Some(Context {
                cluster: "fake".into(),
                user: Some("regate".into()),
                ..Context::default()
            }),
            ..NamedContext::default()
        }],
        current_context: Some("fake".into()),
        ..Kubeconfig::default()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&kubeconfig).expect("yaml")).expect("write");

    let authority = Kubernetes::new(KubernetesSettings {
        kubeconfig: Some(path.clone()),
        ..quick()
    })
    .await
    .expect("authority");
    assert_eq!(authority.api(), api.url);
    authenticate(&authority, "a-caller-token").await;
    assert_eq!(
        api.only().authorization.as_deref(),
        Some("Bearer from-the-file")
    );

    // The same file in review: self: regate's own token is never sent.
    let authority = Kubernetes::new(KubernetesSettings {
        kubeconfig: Some(path),
        review: ReviewMode::SelfReview,
        ..quick()
    })
    .await
    .expect("authority");
    authorize(&authority, &UserInfo::anonymous(), None, &pull()).await;
    assert_eq!(api.received()[1].authorization, None);
}

#[tokio::test]
async fn a_missing_kubeconfig_file_is_named() {
    let error = Kubernetes::new(KubernetesSettings {
        kubeconfig: Some("/nonexistent/regate/kubeconfig".into()),
        ..KubernetesSettings::default()
    })
    .await
    .expect_err("no such file");
    let shown = error.to_string();
    assert!(
        shown.starts_with("/nonexistent/regate/kubeconfig: "),
        "{shown}"
    );
}

#[test]
fn no_configuration_names_every_way_to_give_one() {
    let error = KubernetesError::NotFound {
        in_cluster: InClusterError::ReadEnvironmentVariable(std::env::VarError::NotPresent),
    };
    let shown = error.to_string();
    for needed in [
        "--kubeconfig",
        "KUBECONFIG",
        "in-cluster",
        "service account",
    ] {
        assert!(shown.contains(needed), "{needed}: {shown}");
    }
}

#[test]
fn unusable_settings_are_refused() {
    let config = || kube::Config::new("http://127.0.0.1:1".parse().expect("url"));
    for (settings, field) in [
        (
            KubernetesSettings {
                qps: 0.0,
                ..KubernetesSettings::default()
            },
            "qps",
        ),
        (
            KubernetesSettings {
                burst: 0,
                ..KubernetesSettings::default()
            },
            "burst",
        ),
    ] {
        let error = Kubernetes::from_config(config(), settings).expect_err("refused");
        assert!(error.to_string().contains(field), "{error}");
    }
}

#[test]
fn the_api_origin_drops_user_info_and_path() {
    let url: http::Uri = "https://user:pw@10.0.0.1:6443/prefix".parse().expect("url");
    assert_eq!(origin(&url), "https://10.0.0.1:6443");
}

// --- Extra (token scopes) -----------------------------------------------------------------

#[tokio::test]
async fn token_scopes_in_extra_reach_the_subject_access_review() {
    let scopes = std::collections::BTreeMap::from([(
        "scopes.authorization.openshift.io".to_string(),
        vec!["user:info".to_string()],
    )]);
    let extra = scopes.clone();
    let (authority, api) = Fixture::answering(move |received, _| {
        if received.path == ACCESS_REVIEWS {
            return allowed(None);
        }
        Reply::TokenReview(TokenReviewStatus {
            authenticated: Some(true),
            user: Some(KubeUserInfo {
                username: Some("alice".into()),
                uid: Some("uid-alice".into()),
                groups: None,
                extra: Some(extra.clone()),
            }),
            ..TokenReviewStatus::default()
        })
    })
    .run()
    .await;
    let Authn::User(user) = authenticate(&authority, "scoped-token").await else {
        panic!("the scoped token authenticates");
    };
    assert_eq!(user.extra, scopes);
    let attrs = Attributes::layers("get", "p", "app");
    authorize(&authority, &user, None, &attrs).await;
    let received = api.received();
    let sar = received
        .iter()
        .find(|r| r.path == ACCESS_REVIEWS)
        .expect("a SubjectAccessReview was sent");
    assert_eq!(sar.review::<SubjectAccessReview>().spec.extra, Some(scopes));
}
