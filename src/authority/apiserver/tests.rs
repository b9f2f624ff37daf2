//! The Kubernetes-API face of the embedded authority, in-process: each endpoint's answers, the
//! errors as Kubernetes `Status`, the client provisioning, and a real `kube` client against it.
//!
//! One file past the usual size: the endpoints share one fixture (a provisioned state directory
//! and the server over it), and each section is one endpoint.

use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

use axum::body::Body;
use http::HeaderValue;
use http::Request;
use http_body_util::BodyExt;
use k8s_openapi::api::authentication::v1::{
    SelfSubjectReview, TokenReview, TokenReviewSpec, UserInfo as K8sUserInfo,
};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::config::Kubeconfig;
use secrecy::{ExposeSecret, SecretString};
use tower::ServiceExt;

use super::*;
use crate::authority::embedded::{Embedded, Store, SubjectRef};
use crate::identity::UNAUTHENTICATED;
use crate::identity::service_account_user;

/// A state directory with the gateway's client provisioned, namespace `project-a`, and user
/// `alice`; the server over it.
struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
    embedded: Arc<Embedded>,
    server: Arc<ApiServer>,
    /// The kubeconfig's token: `system:serviceaccount:regate-system:regate`.
    gateway: SecretString,
    /// A token of `project-a/builder` (may push to project-a, may not review).
    builder: SecretString,
    /// A token of `project-a/default` (may pull from project-a).
    default: SecretString,
}

impl Default for Fixture {
    fn default() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let gateway = secret(provision_client(&store).expect("provision").token);
        store.create_namespace("project-a").expect("namespace");
        store.create_user("alice", &["devs".into()]).expect("user");
        let builder = sa_token(&store, "project-a", "builder");
        let default = sa_token(&store, "project-a", "default");
        let embedded = Embedded::open(dir.path()).expect("open");
        let server = Arc::new(ApiServer::new(embedded.clone()).with_objects(embedded.clone()));
        Fixture {
            dir,
            store,
            embedded,
            server,
            gateway,
            builder,
            default,
        }
    }
}

impl Fixture {
    /// Picks up changes made through `store`.
    fn reload(&self) {
        self.embedded.reload().expect("reload");
    }

    /// `POST path` with `body` serialised from a k8s-openapi type.
    async fn post<T: Serialize>(
        &self,
        path: &str,
        token: Option<&SecretString>,
        body: &T,
    ) -> Response {
        let bytes = serde_json::to_vec(body).expect("serialise");
        self.send("POST", path, token, Body::from(bytes)).await
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&SecretString>,
        body: Body,
    ) -> Response {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(
                header::AUTHORIZATION,
                format!("Bearer {}", token.expose_secret()),
            );
        }
        app(self.server.clone())
            .oneshot(request.body(body).expect("request"))
            .await
            .expect("infallible")
    }

    /// A TokenReview of `token` by the gateway, answered 201.
    async fn token_review(&self, token: &str, audiences: Option<Vec<String>>) -> TokenReview {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences,
            },
            ..TokenReview::default()
        };
        let response = self
            .post(TOKEN_REVIEWS_PATH, Some(&self.gateway), &review)
            .await;
        created(response).await
    }

    /// A SubjectAccessReview by the gateway of `user` in `groups` doing `attributes`.
    async fn subject_access_review(
        &self,
        user: Option<&str>,
        groups: Option<Vec<String>>,
        attributes: ResourceAttributes,
    ) -> SubjectAccessReviewStatus {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.map(str::to_string),
                groups,
                resource_attributes: Some(attributes),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let response = self
            .post(SUBJECT_ACCESS_REVIEWS_PATH, Some(&self.gateway), &review)
            .await;
        let answer: SubjectAccessReview = created(response).await;
        answer.status.expect("status")
    }

    /// A SelfSubjectAccessReview by the holder of `token` (anonymous for `None`).
    async fn self_access(
        &self,
        token: Option<&SecretString>,
        attributes: ResourceAttributes,
    ) -> SubjectAccessReviewStatus {
        let review = self_access_review(attributes);
        let response = self
            .post(SELF_SUBJECT_ACCESS_REVIEWS_PATH, token, &review)
            .await;
        let answer: SelfSubjectAccessReview = created(response).await;
        answer.status.expect("status")
    }
}

fn secret(token: String) -> SecretString {
    SecretString::from(token)
}

fn sa_token(store: &Store, ns: &str, name: &str) -> SecretString {
    let issued = store
        .create_service_account_token(ns, name, Duration::from_secs(600))
        .expect("token");
    secret(issued.token)
}

/// `verb` on `imagestreams/layers` named `name` in `namespace`: what the gateway asks.
fn layers(verb: &str, namespace: &str, name: &str) -> ResourceAttributes {
    ResourceAttributes {
        verb: Some(verb.to_string()),
        group: Some(crate::policy::IMAGE_GROUP.to_string()),
        resource: Some("imagestreams".to_string()),
        subresource: Some("layers".to_string()),
        namespace: Some(namespace.to_string()),
        name: Some(name.to_string()),
        ..ResourceAttributes::default()
    }
}

fn self_access_review(attributes: ResourceAttributes) -> SelfSubjectAccessReview {
    SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(attributes),
            non_resource_attributes: None,
        },
        ..SelfSubjectAccessReview::default()
    }
}

async fn body_of(response: Response) -> Bytes {
    response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
}

/// The 201 answer, parsed as a Kubernetes client parses it.
async fn created<T: DeserializeOwned>(response: Response) -> T {
    let status = response.status();
    let body = body_of(response).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).expect("a k8s-openapi object")
}

/// The `Status` of an error answer, checked to match the HTTP status.
async fn failure(response: Response, code: StatusCode, reason: &str) -> Status {
    assert_eq!(response.status(), code);
    assert_eq!(
        response.headers().get(header::CONTENT_TYPE),
        Some(&HeaderValue::from_static("application/json"))
    );
    let status: Status = serde_json::from_slice(&body_of(response).await).expect("a Status");
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert_eq!(status.code, Some(i32::from(code.as_u16())));
    assert_eq!(status.reason.as_deref(), Some(reason));
    status
}

fn has_group(user: &K8sUserInfo, group: &str) -> bool {
    user.groups.iter().flatten().any(|g| g == group)
}

// --- tokenreviews ---

#[tokio::test]
async fn a_token_review_proves_the_service_account() {
    let fx = Fixture::default();
    let audiences = Some(vec!["regate".to_string()]);
    let answer = fx
        .token_review(fx.builder.expose_secret(), audiences.clone())
        .await;
    let status = answer.status.expect("status");
    assert_eq!(status.authenticated, Some(true));
    assert_eq!(status.audiences, audiences);
    assert_eq!(status.error, None);
    let user = status.user.expect("user");
    assert_eq!(
        user.username.as_deref(),
        Some("system:serviceaccount:project-a:builder")
    );
    assert!(user.uid.as_ref().is_some_and(|uid| !uid.is_empty()));
    assert!(has_group(&user, "system:serviceaccounts:project-a"));
    assert!(has_group(&user, "system:authenticated"));
    // The answer does not carry the token back.
    assert!(answer.spec.token.is_empty());
}

#[tokio::test]
async fn a_token_review_of_a_user_token_carries_its_groups() {
    let fx = Fixture::default();
    let token = fx
        .store
        .create_user_token("alice", Duration::from_secs(600))
        .expect("token")
        .token;
    let status = fx.token_review(&token, None).await.status.expect("status");
    let user = status.user.expect("user");
    assert_eq!(user.username.as_deref(), Some("alice"));
    assert!(has_group(&user, "devs"));
}

#[tokio::test]
async fn a_bad_token_is_reviewed_as_unauthenticated_with_the_reason() {
    let fx = Fixture::default();
    let status = fx
        .token_review("not-a-token", Some(vec!["regate".into()]))
        .await
        .status
        .expect("status");
    assert_eq!(status.authenticated, Some(false));
    assert_eq!(status.user, None);
    assert_eq!(status.audiences, None);
    assert!(status.error.is_some_and(|e| !e.is_empty()));
}

#[tokio::test]
async fn a_deleted_service_accounts_token_is_reviewed_as_unauthenticated() {
    let fx = Fixture::default();
    fx.store
        .delete_service_account("project-a", "builder")
        .expect("delete");
    fx.reload();
    let status = fx
        .token_review(fx.builder.expose_secret(), None)
        .await
        .status
        .expect("status");
    assert_eq!(status.authenticated, Some(false));
    assert!(status.error.is_some_and(|e| e.contains("no longer exists")));
}

#[tokio::test]
async fn an_empty_token_is_a_bad_request() {
    let fx = Fixture::default();
    let review = TokenReview::default();
    let response = fx
        .post(TOKEN_REVIEWS_PATH, Some(&fx.gateway), &review)
        .await;
    failure(response, StatusCode::BAD_REQUEST, "BadRequest").await;
}

// --- client authentication and authorization ---

#[tokio::test]
async fn reviews_without_a_valid_bearer_token_are_unauthorized() {
    let fx = Fixture::default();
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: fx.builder.expose_secret().to_string(),
            audiences: None,
        },
        ..TokenReview::default()
    };
    let bad = secret("not-a-token".to_string());
    for path in [TOKEN_REVIEWS_PATH, SUBJECT_ACCESS_REVIEWS_PATH] {
        for token in [None, Some(&bad)] {
            let response = fx.post(path, token, &review).await;
            let status = failure(response, StatusCode::UNAUTHORIZED, "Unauthorized").await;
            assert_eq!(status.message.as_deref(), Some("Unauthorized"));
        }
    }
    for token in [None, Some(&bad)] {
        let response = fx
            .post(
                SELF_SUBJECT_REVIEWS_PATH,
                token,
                &SelfSubjectReview::default(),
            )
            .await;
        failure(response, StatusCode::UNAUTHORIZED, "Unauthorized").await;
    }
    // Only Bearer: a Basic credential, even with a valid token, is refused.
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("x:{}", fx.gateway.expose_secret())
        )
    );
    for value in [basic.as_str(), "Bearer", "Bearer  "] {
        let request = Request::post(TOKEN_REVIEWS_PATH)
            .header(header::AUTHORIZATION, value)
            .body(Body::from(serde_json::to_vec(&review).expect("json")))
            .expect("request");
        let response = app(fx.server.clone())
            .oneshot(request)
            .await
            .expect("answer");
        failure(response, StatusCode::UNAUTHORIZED, "Unauthorized").await;
    }
    assert_eq!(fx.server.reviews(), ReviewCounts::default());
}

#[tokio::test]
async fn delegated_reviews_need_auth_delegator() {
    let fx = Fixture::default();
    let token_review = TokenReview {
        spec: TokenReviewSpec {
            token: fx.default.expose_secret().to_string(),
            audiences: None,
        },
        ..TokenReview::default()
    };
    let response = fx
        .post(TOKEN_REVIEWS_PATH, Some(&fx.builder), &token_review)
        .await;
    let status = failure(response, StatusCode::FORBIDDEN, "Forbidden").await;
    let message = status.message.expect("message");
    assert!(
        message.contains("\"system:serviceaccount:project-a:builder\"")
            && message.contains("\"tokenreviews\"")
            && message.contains("authentication.k8s.io")
            && message.contains("add-cluster-role-to-user system:auth-delegator"),
        "{message}"
    );
    let details = status.details.expect("details");
    assert_eq!(details.kind.as_deref(), Some("tokenreviews"));

    let access_review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some("alice".into()),
            resource_attributes: Some(layers("get", "project-a", "app")),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let response = fx
        .post(
            SUBJECT_ACCESS_REVIEWS_PATH,
            Some(&fx.builder),
            &access_review,
        )
        .await;
    let status = failure(response, StatusCode::FORBIDDEN, "Forbidden").await;
    assert!(
        status
            .message
            .is_some_and(|m| m.contains("\"subjectaccessreviews\""))
    );

    // Granting the role is all it takes (picked up with the next reload).
    fx.store
        .add_cluster_role(
            AUTH_DELEGATOR,
            &[SubjectRef::user("system:serviceaccount:project-a:builder")],
        )
        .expect("bind");
    fx.reload();
    let response = fx
        .post(TOKEN_REVIEWS_PATH, Some(&fx.builder), &token_review)
        .await;
    let answer: TokenReview = created(response).await;
    assert_eq!(answer.status.and_then(|s| s.authenticated), Some(true));
}

#[tokio::test]
async fn malformed_bodies_are_bad_requests() {
    let fx = Fixture::default();
    for path in [
        TOKEN_REVIEWS_PATH,
        SUBJECT_ACCESS_REVIEWS_PATH,
        SELF_SUBJECT_REVIEWS_PATH,
        SELF_SUBJECT_ACCESS_REVIEWS_PATH,
    ] {
        let response = fx
            .send("POST", path, Some(&fx.gateway), Body::from("{\"spec\": "))
            .await;
        failure(response, StatusCode::BAD_REQUEST, "BadRequest").await;
    }
    // Another kind's body is refused by its apiVersion/kind, as the API server does.
    let response = fx
        .post(
            TOKEN_REVIEWS_PATH,
            Some(&fx.gateway),
            &self_access_review(layers("get", "project-a", "app")),
        )
        .await;
    failure(response, StatusCode::BAD_REQUEST, "BadRequest").await;
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let fx = Fixture::default();
    let response = fx
        .send(
            "POST",
            TOKEN_REVIEWS_PATH,
            Some(&fx.gateway),
            Body::from(vec![b' '; MAX_BODY + 1]),
        )
        .await;
    failure(
        response,
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestEntityTooLarge",
    )
    .await;
}

#[tokio::test]
async fn a_body_not_whole_in_time_is_refused() {
    let mut fx = Fixture::default();
    let limit = Duration::from_millis(200);
    fx.server = Arc::new(ApiServer::new(fx.embedded.clone()).with_body_timeout(limit));
    let started = std::time::Instant::now();
    let response = fx
        .send(
            "POST",
            TOKEN_REVIEWS_PATH,
            None,
            Body::new(crate::body::Stalled),
        )
        .await;
    assert!(started.elapsed() < limit * 4, "{:?}", started.elapsed());
    assert_eq!(response.headers()[header::CONNECTION], "close");
    failure(response, StatusCode::REQUEST_TIMEOUT, "Timeout").await;
}

// --- subjectaccessreviews ---

#[tokio::test]
async fn a_subject_access_review_evaluates_the_policy() {
    let fx = Fixture::default();
    let builder = "system:serviceaccount:project-a:builder";
    let groups = Some(vec![
        "system:serviceaccounts".to_string(),
        "system:serviceaccounts:project-a".to_string(),
        "system:authenticated".to_string(),
    ]);
    let push = fx
        .subject_access_review(
            Some(builder),
            groups.clone(),
            layers("update", "project-a", "app"),
        )
        .await;
    assert!(push.allowed);
    assert_eq!(push.denied, Some(false));
    assert!(
        push.reason
            .is_some_and(|r| r.contains("system:image-builders")),
    );
    let elsewhere = fx
        .subject_access_review(Some(builder), groups, layers("get", "project-b", "app"))
        .await;
    assert!(!elsewhere.allowed);
    assert_eq!(elsewhere.denied, Some(false));
    // Why, for the gateway's audit log.
    assert_eq!(
        elsewhere.reason.as_deref(),
        Some("no RoleBinding in project-b or ClusterRoleBinding grants it")
    );
}

#[tokio::test]
async fn a_subject_access_review_uses_the_groups_as_given() {
    let fx = Fixture::default();
    // Pull is granted to group system:serviceaccounts:project-a ...
    let by_group = fx
        .subject_access_review(
            None,
            Some(vec!["system:serviceaccounts:project-a".into()]),
            layers("get", "project-a", "app"),
        )
        .await;
    assert!(by_group.allowed);
    // ... and no group is implied from the user name.
    let without_groups = fx
        .subject_access_review(
            Some("system:serviceaccount:project-a:default"),
            None,
            layers("get", "project-a", "app"),
        )
        .await;
    assert!(!without_groups.allowed);
}

#[tokio::test]
async fn invalid_subject_access_reviews_are_unprocessable() {
    let fx = Fixture::default();
    let no_subject = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            resource_attributes: Some(layers("get", "project-a", "app")),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let no_attributes = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some("alice".into()),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    for review in [no_subject, no_attributes] {
        let response = fx
            .post(SUBJECT_ACCESS_REVIEWS_PATH, Some(&fx.gateway), &review)
            .await;
        let status = failure(response, StatusCode::UNPROCESSABLE_ENTITY, "Invalid").await;
        assert!(
            status
                .message
                .is_some_and(|m| m.starts_with("SubjectAccessReview.authorization.k8s.io"))
        );
    }
}

#[tokio::test]
async fn non_resource_urls_are_never_granted() {
    let fx = Fixture::default();
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some("alice".into()),
            non_resource_attributes: Some(NonResourceAttributes {
                path: Some("/healthz".into()),
                verb: Some("get".into()),
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let response = fx
        .post(SUBJECT_ACCESS_REVIEWS_PATH, Some(&fx.gateway), &review)
        .await;
    let answer: SubjectAccessReview = created(response).await;
    assert!(!answer.status.expect("status").allowed);
}

// --- self reviews ---

#[tokio::test]
async fn a_self_subject_review_names_the_caller() {
    let fx = Fixture::default();
    let response = fx
        .post(
            SELF_SUBJECT_REVIEWS_PATH,
            Some(&fx.default),
            &SelfSubjectReview::default(),
        )
        .await;
    let answer: SelfSubjectReview = created(response).await;
    let user = answer.status.and_then(|s| s.user_info).expect("user info");
    assert_eq!(
        user.username.as_deref(),
        Some("system:serviceaccount:project-a:default")
    );
    assert!(has_group(&user, "system:serviceaccounts:project-a"));
}

#[tokio::test]
async fn a_self_subject_access_review_needs_no_privilege() {
    let fx = Fixture::default();
    let pull = fx
        .self_access(Some(&fx.default), layers("get", "project-a", "app"))
        .await;
    assert!(pull.allowed);
    assert!(
        pull.reason
            .is_some_and(|r| r.contains("system:image-pullers"))
    );
    let push = fx
        .self_access(Some(&fx.default), layers("update", "project-a", "app"))
        .await;
    assert!(!push.allowed);
    assert_eq!(push.denied, Some(false));
}

#[tokio::test]
async fn an_anonymous_caller_may_ask_about_itself() {
    let fx = Fixture::default();
    let pull = layers("get", "project-a", "app");
    assert!(!fx.self_access(None, pull.clone()).await.allowed);
    fx.store
        .add_role(
            "project-a",
            crate::authority::embedded::IMAGE_PULLER,
            &[SubjectRef::Group(UNAUTHENTICATED.to_string())],
        )
        .expect("grant anonymous pull");
    fx.reload();
    let answer = fx.self_access(None, pull).await;
    assert!(answer.allowed);
    assert!(answer.reason.is_some_and(|r| r.contains("project-a")));
    // A bad token is not anonymous: it is refused.
    let bad = secret("not-a-token".into());
    let response = fx
        .post(
            SELF_SUBJECT_ACCESS_REVIEWS_PATH,
            Some(&bad),
            &self_access_review(layers("get", "project-a", "app")),
        )
        .await;
    failure(response, StatusCode::UNAUTHORIZED, "Unauthorized").await;
}

#[tokio::test]
async fn a_self_subject_access_review_needs_one_kind_of_attributes() {
    let fx = Fixture::default();
    let review = SelfSubjectAccessReview::default();
    let response = fx
        .post(SELF_SUBJECT_ACCESS_REVIEWS_PATH, Some(&fx.default), &review)
        .await;
    failure(response, StatusCode::UNPROCESSABLE_ENTITY, "Invalid").await;
}

// --- other paths, counters, latency ---

#[tokio::test]
async fn unknown_paths_and_methods_answer_status() {
    let fx = Fixture::default();
    let response = fx
        .send("POST", "/apis/v1/pods", Some(&fx.gateway), Body::empty())
        .await;
    failure(response, StatusCode::NOT_FOUND, "NotFound").await;
    let response = fx
        .send("GET", TOKEN_REVIEWS_PATH, Some(&fx.gateway), Body::empty())
        .await;
    assert_eq!(
        response.headers().get(header::ALLOW),
        Some(&HeaderValue::from_static("POST"))
    );
    failure(response, StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed").await;
    let response = fx.send("DELETE", HEALTHZ_PATH, None, Body::empty()).await;
    failure(response, StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed").await;
}

#[tokio::test]
async fn healthz_answers_ok() {
    let fx = Fixture::default();
    let response = fx.send("GET", HEALTHZ_PATH, None, Body::empty()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_of(response).await.as_ref(), b"ok");
}

#[tokio::test]
async fn debug_reviews_counts_the_answered_reviews() {
    let fx = Fixture::default();
    fx.token_review(fx.builder.expose_secret(), None).await;
    fx.token_review("bad", None).await;
    fx.subject_access_review(Some("alice"), None, layers("get", "project-a", "app"))
        .await;
    fx.self_access(None, layers("get", "project-a", "app"))
        .await;
    // Refused requests are not answered reviews.
    let response = fx
        .post(TOKEN_REVIEWS_PATH, None, &TokenReview::default())
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = fx.send("GET", REVIEWS_PATH, None, Body::empty()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let counts: ReviewCounts = serde_json::from_slice(&body_of(response).await).expect("json");
    assert_eq!(
        counts,
        ReviewCounts {
            tokenreviews: 2,
            subjectaccessreviews: 1,
            selfsubjectreviews: 0,
            selfsubjectaccessreviews: 1,
        }
    );
}

#[tokio::test]
async fn injected_latency_delays_every_review() {
    let mut fx = Fixture::default();
    let latency = Duration::from_millis(60);
    fx.server = Arc::new(
        ApiServer::new(fx.embedded.clone())
            .with_objects(fx.embedded.clone())
            .with_latency(Some(latency)),
    );
    let start = Instant::now();
    fx.self_access(None, layers("get", "project-a", "app"))
        .await;
    assert!(start.elapsed() >= latency);
    let start = Instant::now();
    let response = fx.send("GET", HEALTHZ_PATH, None, Body::empty()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(start.elapsed() < latency, "only reviews wait");
}

// --- the gateway's client: provisioning and kubeconfig ---

#[tokio::test]
async fn provisioning_is_repeatable_and_every_token_works() {
    let fx = Fixture::default();
    let again = secret(provision_client(&fx.store).expect("again").token);
    fx.reload();
    for token in [&fx.gateway, &again] {
        let response = fx
            .post(
                SELF_SUBJECT_REVIEWS_PATH,
                Some(token),
                &SelfSubjectReview::default(),
            )
            .await;
        let answer: SelfSubjectReview = created(response).await;
        let name = answer.status.and_then(|s| s.user_info?.username);
        assert_eq!(
            name.as_deref(),
            Some("system:serviceaccount:regate-system:regate")
        );
    }
}

#[test]
fn the_client_url_replaces_an_unspecified_address() {
    let url = |addr: &str| client_url(addr.parse().expect("address"), "http");
    assert_eq!(url("0.0.0.0:6443"), "http://127.0.0.1:6443");
    assert_eq!(url("[::]:6443"), "http://[::1]:6443");
    assert_eq!(url("10.0.0.1:80"), "http://10.0.0.1:80");
}

#[test]
fn the_kubeconfig_is_private_and_kube_reads_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sub").join("authority.kubeconfig");
    let token = "header.payload.signature";
    let config = kubeconfig("http://127.0.0.1:6443", secret(token.to_string()), None);
    write_kubeconfig(&path, &config).expect("write");
    // Written again over itself (a restart): still private.
    write_kubeconfig(&path, &config).expect("rewrite");
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let read = Kubeconfig::read_from(&path).expect("kube parses it");
    assert_eq!(read.current_context.as_deref(), Some(KUBECONFIG_CLUSTER));
    let cluster = read.clusters[0].cluster.as_ref().expect("cluster");
    assert_eq!(cluster.server.as_deref(), Some("http://127.0.0.1:6443"));
    let user = read.auth_infos[0].auth_info.as_ref().expect("user");
    assert_eq!(
        user.token.as_ref().map(|t| t.expose_secret().to_string()),
        Some(token.to_string())
    );
    let context = read.contexts[0].context.as_ref().expect("context");
    assert_eq!(
        context.user.as_deref(),
        Some(read.auth_infos[0].name.as_str())
    );
}

/// A real `kube` client, configured from the written kubeconfig, talks to the server over TCP:
/// the wire format is the one kube-rs speaks, answers and errors both.
#[tokio::test]
async fn a_kube_client_reviews_through_the_written_kubeconfig() {
    use kube::api::{Api, PostParams};

    let fx = Fixture::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = client_url(listener.local_addr().expect("address"), "http");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(serve(
        listener,
        fx.server.clone(),
        None,
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));
    let path = fx.dir.path().join("kubeconfig");
    write_kubeconfig(&path, &kubeconfig(&url, fx.gateway.clone(), None)).expect("write");

    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&path).expect("read"),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("config");
    let client = kube::Client::try_from(config).expect("client");

    let review = TokenReview {
        spec: TokenReviewSpec {
            token: fx.builder.expose_secret().to_string(),
            audiences: None,
        },
        ..TokenReview::default()
    };
    let answer = Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("tokenreview");
    let user = answer.status.and_then(|s| s.user).expect("user");
    assert_eq!(
        user.username.as_deref(),
        Some("system:serviceaccount:project-a:builder")
    );

    let access = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: user.username,
            groups: user.groups,
            resource_attributes: Some(layers("update", "project-a", "app")),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &access)
        .await
        .expect("subjectaccessreview");
    assert!(answer.status.expect("status").allowed);

    // An error reaches the client as the Status it is.
    let mut denied_config = kube::Config::new(url.parse().expect("url"));
    denied_config.auth_info.token = Some(fx.builder.clone());
    let denied = kube::Client::try_from(denied_config).expect("client");
    let error = Api::<TokenReview>::all(denied)
        .create(&PostParams::default(), &review)
        .await
        .expect_err("forbidden");
    match error {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 403);
            assert_eq!(status.reason, "Forbidden");
        }
        other => panic!("not a Status: {other:?}"),
    }

    assert_eq!(fx.server.reviews().tokenreviews, 1);
    let _ = stop.send(());
    serving.await.expect("join");
}

// --- service accounts and Secrets, for gateways' pull credentials ---

/// Creates docker config Secret `name` in `ns` with one `quay.io` entry for user `user`.
fn pull_secret(store: &Store, ns: &str, name: &str, user: &str) {
    crate::authority::embedded::tests::pull_secret(store, ns, name, user, None);
}

/// project-a's Secrets `beta` and `alpha`, `beta` linked for pull to `project-a/builder`.
fn with_pull_secrets(fx: &Fixture) {
    pull_secret(&fx.store, "project-a", "beta", "beta");
    pull_secret(&fx.store, "project-a", "alpha", "alpha");
    let pull = crate::authority::embedded::LinkFor {
        pull: true,
        mount: false,
    };
    fx.store
        .link_secrets("project-a", "builder", &["beta".into()], pull)
        .expect("link");
    fx.reload();
}

#[tokio::test]
async fn the_gateway_may_read_service_accounts_and_docker_config_secrets() {
    let fx = Fixture::default();
    with_pull_secrets(&fx);
    let path = "/api/v1/namespaces/project-a/serviceaccounts/builder";
    let response = fx.send("GET", path, Some(&fx.gateway), Body::empty()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let account: ServiceAccount =
        serde_json::from_slice(&body_of(response).await).expect("a ServiceAccount");
    let linked: Vec<_> = account.image_pull_secrets.iter().flatten().collect();
    assert_eq!(linked.len(), 1);
    assert_eq!(linked[0].name, "beta");

    let path = "/api/v1/namespaces/project-a/secrets?fieldSelector=type%3Dkubernetes.io%2Fdockerconfigjson";
    let response = fx.send("GET", path, Some(&fx.gateway), Body::empty()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let list: k8s_openapi::List<Secret> =
        serde_json::from_slice(&body_of(response).await).expect("a SecretList");
    let names: Vec<_> = list
        .items
        .iter()
        .filter_map(|s| s.metadata.name.as_deref())
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    let path =
        "/api/v1/namespaces/project-a/secrets?fieldSelector=type%3Dkubernetes.io%2Fdockercfg";
    let response = fx.send("GET", path, Some(&fx.gateway), Body::empty()).await;
    let list: k8s_openapi::List<Secret> =
        serde_json::from_slice(&body_of(response).await).expect("a SecretList");
    assert!(list.items.is_empty());

    let path = "/api/v1/namespaces/project-a/serviceaccounts/nobody";
    let response = fx.send("GET", path, Some(&fx.gateway), Body::empty()).await;
    failure(response, StatusCode::NOT_FOUND, "NotFound").await;
    let path = "/api/v1/namespaces/project-a/secrets?fieldSelector=metadata.name%3Dx";
    let response = fx.send("GET", path, Some(&fx.gateway), Body::empty()).await;
    failure(response, StatusCode::BAD_REQUEST, "BadRequest").await;

    // Others may not read them, and nobody without a token.
    let path = "/api/v1/namespaces/project-a/secrets";
    let response = fx.send("GET", path, Some(&fx.builder), Body::empty()).await;
    let status = failure(response, StatusCode::FORBIDDEN, "Forbidden").await;
    assert!(
        status
            .message
            .unwrap_or_default()
            .contains(PULL_SECRET_READER)
    );
    let response = fx.send("GET", path, None, Body::empty()).await;
    failure(response, StatusCode::UNAUTHORIZED, "Unauthorized").await;
}

/// The Kubernetes authority, in `review: delegated` mode, reads pull credentials from the
/// server over TCP with the written kubeconfig.
#[tokio::test]
async fn the_kubernetes_authority_reads_pull_keyrings_through_the_server() {
    use crate::authority::kubernetes::{Kubernetes, KubernetesSettings};
    use crate::upstream::keyring::Credential;

    let fx = Fixture::default();
    with_pull_secrets(&fx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = client_url(listener.local_addr().expect("address"), "http");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(serve(
        listener,
        fx.server.clone(),
        None,
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));
    let authority_with = |token: SecretString| {
        let mut config = kube::Config::new(url.parse().expect("url"));
        config.auth_info.token = Some(token);
        Kubernetes::from_config(config, KubernetesSettings::default()).expect("authority")
    };
    let tried = |keyring: &crate::upstream::keyring::Keyring| -> Vec<String> {
        keyring
            .entries()
            .map(|e| match &e.credential {
                Credential::Basic { username, .. } => username.clone(),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    };
    let builder = UserInfo::authenticated(
        service_account_user("project-a", "builder"),
        "uid".into(),
        vec![],
    );
    let gateway = authority_with(fx.gateway.clone());
    let keyring = gateway
        .pull_keyring(&builder, "project-a")
        .await
        .expect("keyring");
    assert_eq!(tried(&keyring), ["beta", "alpha"]);
    let keyring = gateway
        .pull_keyring(&UserInfo::anonymous(), "project-a")
        .await
        .expect("keyring");
    assert_eq!(tried(&keyring), ["alpha", "beta"]);

    // Without the reader role the gateway pulls without them rather than failing.
    let unprivileged = authority_with(fx.default.clone());
    let keyring = unprivileged
        .pull_keyring(&builder, "project-a")
        .await
        .expect("keyring");
    assert!(keyring.is_empty());

    let _ = stop.send(());
    serving.await.expect("join");
}

#[path = "objects_tests.rs"]
mod objects_tests;
