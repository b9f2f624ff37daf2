//! `regate authority serve`: an [`Authority`] (in practice the embedded store) answered over the
//! Kubernetes API wire format, so gateways in `kubernetes` mode can share one embedded authority
//! without a cluster.
//!
//! It owns the four review endpoints a Kubernetes API server offers for delegated
//! authentication and authorization (`tokenreviews`, `subjectaccessreviews`, and their `self`
//! forms), with bodies parsed into and answered from the `k8s-openapi` types; the bearer-token
//! authentication and RBAC check of its own clients (TokenReview and SubjectAccessReview need
//! `create` on them, which ClusterRole `system:auth-delegator` grants); errors as Kubernetes
//! `Status` objects; the service account and kubeconfig its clients use ([`provision_client`],
//! [`write_kubeconfig`]); and a count of the reviews answered (`GET /debug/reviews`) that tests
//! use to observe the gateways' caches.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{
    SelfSubjectReview, SelfSubjectReviewStatus, TokenReview, TokenReviewStatus,
    UserInfo as K8sUserInfo,
};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SubjectAccessReview, SubjectAccessReviewStatus,
};
use k8s_openapi::api::core::v1::{LocalObjectReference, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Status, StatusDetails};
use kube::config::{
    AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
};
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::embedded::bootstrap::{
    AUTH_DELEGATOR, AUTHENTICATION_GROUP, AUTHORIZATION_GROUP, PULL_SECRET_READER,
};
use super::embedded::{Embedded, Snapshot, Store, StoreError, SubjectRef};
use super::{Authn, Authority, AuthorityError};
use crate::identity::{UserInfo, service_account_user};
use crate::policy::{Attributes, Decision};
use crate::token::Issued;
use crate::upstream::secret::SECRET_TYPES;

/// `POST`: authenticate a token (TokenReview).
pub const TOKEN_REVIEWS_PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
/// `POST`: who the caller is (SelfSubjectReview).
pub const SELF_SUBJECT_REVIEWS_PATH: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
/// `POST`: may a user do something (SubjectAccessReview).
pub const SUBJECT_ACCESS_REVIEWS_PATH: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
/// `POST`: may the caller do something (SelfSubjectAccessReview).
pub const SELF_SUBJECT_ACCESS_REVIEWS_PATH: &str =
    "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
/// `GET`: a service account (`{namespace}`, `{name}`), for gateways reading `imagePullSecrets`.
pub const SERVICE_ACCOUNT_PATH: &str = "/api/v1/namespaces/{namespace}/serviceaccounts/{name}";
/// `GET`: a namespace's docker config Secrets (`fieldSelector=type=...` understood).
pub const SECRETS_PATH: &str = "/api/v1/namespaces/{namespace}/secrets";
/// `GET`: liveness, answers `ok`.
pub const HEALTHZ_PATH: &str = "/healthz";
/// `GET`: [`ReviewCounts`] as JSON.
pub const REVIEWS_PATH: &str = "/debug/reviews";

/// The namespace of the service account the written kubeconfig authenticates as.
pub const CLIENT_NAMESPACE: &str = "regate-system";
/// The service account the written kubeconfig authenticates as.
pub const CLIENT_SERVICE_ACCOUNT: &str = "regate";
/// Lifetime of the kubeconfig's token: long, since the file (mode 0600) is the credential and
/// gateways read it once at start; deleting the service account revokes it.
pub const CLIENT_TOKEN_LIFETIME: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// The name of the cluster and context in the written kubeconfig.
pub const KUBECONFIG_CLUSTER: &str = "regate";

/// Largest review body read; reviews are a few hundred bytes (Kubernetes allows 3 MiB for any
/// object, but nothing here needs more than a token and a few names).
pub const MAX_BODY: usize = 1024 * 1024;

/// Why setting up the authority's clients failed (the request path answers `Status` objects
/// instead, see [`StatusError`]).
#[derive(Debug, thiserror::Error)]
pub enum ApiServerError {
    /// The client service account, its binding or its token could not be created.
    #[error(
        "cannot set up service account {CLIENT_NAMESPACE}/{CLIENT_SERVICE_ACCOUNT} (bound to \
         {AUTH_DELEGATOR}) for the kubeconfig"
    )]
    Provision {
        /// The state directory's failure.
        #[source]
        source: StoreError,
    },
    /// The kubeconfig could not be written.
    #[error("cannot write kubeconfig {} (flag --kubeconfig)", path.display())]
    WriteKubeconfig {
        /// The file asked for.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The kubeconfig could not be serialised (a bug: the type always serialises).
    #[error("cannot serialise the kubeconfig")]
    SerializeKubeconfig(#[source] serde_yaml::Error),
}

/// A review kind: indexes the counters and names the resource in `Status` messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Review {
    Token,
    SubjectAccess,
    SelfSubject,
    SelfSubjectAccess,
}

impl Review {
    /// The resource name, as in the URL.
    fn resource(self) -> &'static str {
        match self {
            Review::Token => "tokenreviews",
            Review::SubjectAccess => "subjectaccessreviews",
            Review::SelfSubject => "selfsubjectreviews",
            Review::SelfSubjectAccess => "selfsubjectaccessreviews",
        }
    }

    /// The API group.
    fn group(self) -> &'static str {
        match self {
            Review::Token | Review::SelfSubject => AUTHENTICATION_GROUP,
            Review::SubjectAccess | Review::SelfSubjectAccess => AUTHORIZATION_GROUP,
        }
    }

    /// The kind, for `Invalid` messages.
    fn kind(self) -> &'static str {
        match self {
            Review::Token => "TokenReview",
            Review::SubjectAccess => "SubjectAccessReview",
            Review::SelfSubject => "SelfSubjectReview",
            Review::SelfSubjectAccess => "SelfSubjectAccessReview",
        }
    }

    /// The index of its counter.
    fn index(self) -> usize {
        self as usize
    }
}

/// Reviews answered (201) since start, by resource: the body of `GET /debug/reviews`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewCounts {
    /// TokenReviews answered.
    pub tokenreviews: u64,
    /// SubjectAccessReviews answered.
    pub subjectaccessreviews: u64,
    /// SelfSubjectReviews answered.
    pub selfsubjectreviews: u64,
    /// SelfSubjectAccessReviews answered.
    pub selfsubjectaccessreviews: u64,
}

/// The state behind the router: the authority, the counters, the injected latency.
pub struct ApiServer {
    authority: Arc<dyn Authority>,
    /// The store whose service accounts and Secrets are served; `None` serves none (404).
    objects: Option<Arc<Embedded>>,
    /// Fault injection for tests: every review waits this long before it is answered.
    latency: Option<Duration>,
    /// Answered reviews, indexed by [`Review::index`].
    answered: [AtomicU64; 4],
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("latency", &self.latency)
            .field("answered", &self.reviews())
            .finish_non_exhaustive()
    }
}

impl ApiServer {
    /// Serves `authority`'s answers.
    pub fn new(authority: Arc<dyn Authority>) -> Self {
        ApiServer {
            authority,
            objects: None,
            latency: None,
            answered: Default::default(),
        }
    }

    /// Also serves `embedded`'s service accounts and docker config Secrets (read-only, `get` and
    /// `list` as RBAC allows the caller), as gateways read them for pull credentials.
    pub fn with_objects(mut self, embedded: Arc<Embedded>) -> Self {
        self.objects = Some(embedded);
        self
    }

    /// Makes every review wait `latency` before it is answered (a slow API server, for tests
    /// and benchmarks); `None` answers at once.
    pub fn with_latency(mut self, latency: Option<Duration>) -> Self {
        self.latency = latency.filter(|d| !d.is_zero());
        self
    }

    /// The reviews answered so far.
    pub fn reviews(&self) -> ReviewCounts {
        let count = |review: Review| self.answered[review.index()].load(Ordering::Relaxed);
        ReviewCounts {
            tokenreviews: count(Review::Token),
            subjectaccessreviews: count(Review::SubjectAccess),
            selfsubjectreviews: count(Review::SelfSubject),
            selfsubjectaccessreviews: count(Review::SelfSubjectAccess),
        }
    }

    /// The first steps of every review endpoint: waits the injected latency, finds out who is
    /// asking ([`ApiServer::asker`]), and decodes the review in `body`. The endpoint then fills
    /// in the review's status and answers with [`ApiServer::created`].
    async fn accept<T: DeserializeOwned>(
        &self,
        review: Review,
        headers: &HeaderMap,
        body: Result<Bytes, BytesRejection>,
    ) -> Result<(UserInfo, T), StatusError> {
        self.delay().await;
        let caller = self.asker(review, headers).await?;
        Ok((caller, parse(body)?))
    }

    /// Who is asking for `review`, if they may: TokenReview and SubjectAccessReview need a valid
    /// token whose user may `create` them, SelfSubjectReview a valid token, and
    /// SelfSubjectAccessReview nothing (without a token the caller is anonymous).
    async fn asker(&self, review: Review, headers: &HeaderMap) -> Result<UserInfo, StatusError> {
        match review {
            Review::Token | Review::SubjectAccess => {
                let caller = self.authenticated(headers).await?;
                self.require_create(&caller, review).await?;
                Ok(caller)
            }
            Review::SelfSubject => self.authenticated(headers).await,
            // The gateway in `review: self` mode asks this way for anonymous pulls.
            Review::SelfSubjectAccess => Ok(self
                .caller(headers)
                .await?
                .unwrap_or_else(UserInfo::anonymous)),
        }
    }

    /// Waits the injected latency, if any.
    async fn delay(&self) {
        if let Some(latency) = self.latency {
            tokio::time::sleep(latency).await;
        }
    }

    /// Who is calling: `None` without an `Authorization` header, the token's identity with a
    /// valid bearer token, 401 otherwise (a bad token never falls back to anonymous, as in
    /// Kubernetes).
    async fn caller(&self, headers: &HeaderMap) -> Result<Option<UserInfo>, StatusError> {
        let Some(token) = bearer(headers.get(header::AUTHORIZATION))? else {
            return Ok(None);
        };
        match self.authority.authenticate(&token).await {
            Ok(Authn::User(user)) => Ok(Some(user)),
            Ok(Authn::Invalid { reason }) => {
                tracing::debug!(%reason, "client token refused");
                Err(StatusError::Unauthorized)
            }
            Err(error) => Err(unavailable(error)),
        }
    }

    /// The caller, who must have shown a valid token.
    async fn authenticated(&self, headers: &HeaderMap) -> Result<UserInfo, StatusError> {
        self.caller(headers).await?.ok_or(StatusError::Unauthorized)
    }

    /// Checks that `caller` may `create` `review` at cluster scope, as the API server's RBAC
    /// authorizer does before any handler runs.
    async fn require_create(&self, caller: &UserInfo, review: Review) -> Result<(), StatusError> {
        let attrs = Attributes {
            verb: "create".to_string(),
            group: review.group().to_string(),
            resource: review.resource().to_string(),
            subresource: String::new(),
            namespace: String::new(),
            name: String::new(),
        };
        let decision = self.decide(caller, &attrs).await?;
        if decision.allowed() {
            return Ok(());
        }
        tracing::info!(
            user = %caller.name,
            resource = review.resource(),
            "client may not create {}; bind it to {AUTH_DELEGATOR}",
            review.resource()
        );
        Err(StatusError::Forbidden {
            user: caller.name.clone(),
            resource: review.resource(),
            group: review.group(),
        })
    }

    /// The snapshot to answer a read from, once the caller has shown a valid token whose user
    /// may `verb` `resource` (core group) in `namespace` (`name`, for a get).
    async fn readable(
        &self,
        headers: &HeaderMap,
        verb: &'static str,
        resource: &'static str,
        namespace: &str,
        name: &str,
    ) -> Result<Arc<Snapshot>, StatusError> {
        self.delay().await;
        let caller = self.authenticated(headers).await?;
        let attrs = Attributes {
            verb: verb.to_string(),
            group: String::new(),
            resource: resource.to_string(),
            subresource: String::new(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        if !self.decide(&caller, &attrs).await?.allowed() {
            tracing::info!(
                user = %caller.name,
                "client may not {verb} {resource} in {namespace}; bind it to {PULL_SECRET_READER}"
            );
            return Err(StatusError::ForbiddenRead {
                user: caller.name,
                verb,
                resource,
                namespace: namespace.to_string(),
            });
        }
        let objects = self.objects.as_ref().ok_or(StatusError::NotFound)?;
        Ok(objects.snapshot())
    }

    async fn decide(&self, user: &UserInfo, attrs: &Attributes) -> Result<Decision, StatusError> {
        self.authority
            .authorize(user, None, attrs)
            .await
            .map_err(unavailable)
    }

    /// 201 with `body`, counted.
    fn created<T: Serialize>(&self, review: Review, body: &T) -> Response {
        self.answered[review.index()].fetch_add(1, Ordering::Relaxed);
        (StatusCode::CREATED, axum::Json(body)).into_response()
    }

    /// The `SubjectAccessReviewStatus` for `user` doing `attributes` (`None` when the review
    /// asked about a non-resource URL, which regate's policy never grants).
    async fn access_status(
        &self,
        user: &UserInfo,
        attributes: Option<&ResourceAttributes>,
    ) -> Result<SubjectAccessReviewStatus, StatusError> {
        let Some(attributes) = attributes else {
            return Ok(SubjectAccessReviewStatus {
                allowed: false,
                denied: Some(false),
                reason: Some("regate's authority grants no non-resource URLs".to_string()),
                evaluation_error: None,
            });
        };
        let decision = self.decide(user, &Attributes::from(attributes)).await?;
        Ok(SubjectAccessReviewStatus {
            allowed: decision.allowed(),
            // RBAC has no deny rules: a "no" is "no opinion", never an explicit denial.
            denied: Some(false),
            reason: match decision {
                Decision::Allow { by } => Some(by),
                Decision::Deny => None,
            },
            evaluation_error: None,
        })
    }
}

/// The router: the four review endpoints, `/healthz` and `/debug/reviews`.
pub fn app(server: Arc<ApiServer>) -> Router {
    Router::new()
        .route(TOKEN_REVIEWS_PATH, only_post(post(token_review)))
        .route(
            SUBJECT_ACCESS_REVIEWS_PATH,
            only_post(post(subject_access_review)),
        )
        .route(
            SELF_SUBJECT_REVIEWS_PATH,
            only_post(post(self_subject_review)),
        )
        .route(
            SELF_SUBJECT_ACCESS_REVIEWS_PATH,
            only_post(post(self_subject_access_review)),
        )
        .route(SERVICE_ACCOUNT_PATH, only_get(get(service_account)))
        .route(SECRETS_PATH, only_get(get(secrets)))
        .route(HEALTHZ_PATH, only_get(get(healthz)))
        .route(REVIEWS_PATH, only_get(get(review_counts)))
        .fallback(|| async { StatusError::NotFound })
        // Reviews are small; a body past this is refused with 413 before it is buffered.
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(server)
}

fn only_post(route: MethodRouter<Arc<ApiServer>>) -> MethodRouter<Arc<ApiServer>> {
    route.fallback(|| async { StatusError::MethodNotAllowed { allow: "POST" } })
}

fn only_get(route: MethodRouter<Arc<ApiServer>>) -> MethodRouter<Arc<ApiServer>> {
    route.fallback(|| async { StatusError::MethodNotAllowed { allow: "GET, HEAD" } })
}

/// Serves `server` on `listener` until `shutdown` completes, then lets reviews in flight finish
/// for at most `drain`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    server: Arc<ApiServer>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let serving = axum::serve(listener, app(server)).with_graceful_shutdown(async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    });
    let mut serving = tokio::spawn(async move { serving.await });
    tokio::select! {
        result = &mut serving => return result.map_err(std::io::Error::other)?,
        () = shutdown => {}
    }
    let _ = stop_tx.send(true);
    // Bounded: with injected latency (a "hung" authority) waiting for every review could take
    // as long as the latency.
    match tokio::time::timeout(drain, serving).await {
        Ok(result) => result.map_err(std::io::Error::other)?,
        Err(_) => {
            tracing::warn!("reviews still in flight after {drain:?}; stopping anyway");
            Ok(())
        }
    }
}

async fn token_review(
    State(server): State<Arc<ApiServer>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, StatusError> {
    let (caller, mut review) = server
        .accept::<TokenReview>(Review::Token, &headers, body)
        .await?;
    if review.spec.token.is_empty() {
        return Err(StatusError::BadRequest(
            "token is required for TokenReview in authentication".to_string(),
        ));
    }
    // Taken out of the review so that the answer does not carry it back.
    let token = SecretString::from(std::mem::take(&mut review.spec.token));
    let status = match server.authority.authenticate(&token).await {
        Ok(Authn::User(user)) => TokenReviewStatus {
            authenticated: Some(true),
            user: Some(K8sUserInfo::from(&user)),
            audiences: review.spec.audiences.clone(),
            error: None,
        },
        Ok(Authn::Invalid { reason }) => TokenReviewStatus {
            authenticated: Some(false),
            error: Some(reason),
            ..TokenReviewStatus::default()
        },
        Err(error) => return Err(unavailable(error)),
    };
    tracing::debug!(
        client = %caller.name,
        authenticated = status.authenticated == Some(true),
        user = status.user.as_ref().and_then(|u| u.username.as_deref()).unwrap_or(""),
        "tokenreview"
    );
    review.status = Some(status);
    Ok(server.created(Review::Token, &review))
}

async fn subject_access_review(
    State(server): State<Arc<ApiServer>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, StatusError> {
    let (caller, mut review) = server
        .accept::<SubjectAccessReview>(Review::SubjectAccess, &headers, body)
        .await?;
    let spec = &review.spec;
    one_kind_of_attributes(
        Review::SubjectAccess,
        spec.resource_attributes.is_some(),
        spec.non_resource_attributes.is_some(),
    )?;
    let user = UserInfo {
        name: spec.user.clone().unwrap_or_default(),
        uid: spec.uid.clone().unwrap_or_default(),
        // As given: a SubjectAccessReview names every group; none is implied.
        groups: spec.groups.clone().unwrap_or_default(),
        extra: spec.extra.clone().unwrap_or_default(),
    };
    if user.name.is_empty() && user.groups.is_empty() {
        return Err(invalid(
            Review::SubjectAccess,
            "spec.user: Invalid value: \"\": at least one of user or group must be specified",
        ));
    }
    let status = server
        .access_status(&user, spec.resource_attributes.as_ref())
        .await?;
    tracing::debug!(client = %caller.name, user = %user.name, allowed = status.allowed, "subjectaccessreview");
    review.status = Some(status);
    Ok(server.created(Review::SubjectAccess, &review))
}

async fn self_subject_review(
    State(server): State<Arc<ApiServer>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, StatusError> {
    let (caller, mut review) = server
        .accept::<SelfSubjectReview>(Review::SelfSubject, &headers, body)
        .await?;
    review.status = Some(SelfSubjectReviewStatus {
        user_info: Some(K8sUserInfo::from(&caller)),
    });
    tracing::debug!(user = %caller.name, "selfsubjectreview");
    Ok(server.created(Review::SelfSubject, &review))
}

async fn self_subject_access_review(
    State(server): State<Arc<ApiServer>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, StatusError> {
    let (caller, mut review) = server
        .accept::<SelfSubjectAccessReview>(Review::SelfSubjectAccess, &headers, body)
        .await?;
    let spec = &review.spec;
    one_kind_of_attributes(
        Review::SelfSubjectAccess,
        spec.resource_attributes.is_some(),
        spec.non_resource_attributes.is_some(),
    )?;
    let status = server
        .access_status(&caller, spec.resource_attributes.as_ref())
        .await?;
    tracing::debug!(user = %caller.name, allowed = status.allowed, "selfsubjectaccessreview");
    review.status = Some(status);
    Ok(server.created(Review::SelfSubjectAccess, &review))
}

async fn service_account(
    State(server): State<Arc<ApiServer>>,
    UrlPath((namespace, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, StatusError> {
    let snapshot = server
        .readable(&headers, "get", "serviceaccounts", &namespace, &name)
        .await?;
    let key = (namespace, name);
    let Some(uid) = snapshot.service_accounts.get(&key) else {
        return Err(StatusError::ObjectNotFound {
            resource: "serviceaccounts",
            name: key.1,
        });
    };
    let pull = snapshot.image_pull_secrets.get(&key).map(|names| {
        names
            .iter()
            .map(|name| LocalObjectReference { name: name.clone() })
            .collect()
    });
    let (namespace, name) = key;
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace),
            uid: Some(uid.clone()),
            ..ObjectMeta::default()
        },
        image_pull_secrets: pull,
        ..ServiceAccount::default()
    };
    Ok(axum::Json(account).into_response())
}

/// The query of a list request; only `fieldSelector` is understood.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    #[serde(default)]
    field_selector: String,
}

async fn secrets(
    State(server): State<Arc<ApiServer>>,
    UrlPath(namespace): UrlPath<String>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Response, StatusError> {
    let wanted = secret_type_selector(&query.field_selector)?;
    let snapshot = server
        .readable(&headers, "list", "secrets", &namespace, "")
        .await?;
    let start = (namespace.clone(), String::new());
    let items = snapshot
        .pull_secrets
        .range(start..)
        .take_while(|((ns, _), _)| *ns == namespace)
        .filter(|(_, pull)| wanted.as_deref().is_none_or(|t| t == pull.secret_type))
        .map(|((ns, name), pull)| {
            let key = SECRET_TYPES
                .iter()
                .find(|(t, _)| *t == pull.secret_type)
                .map_or(".dockerconfigjson", |(_, key)| key);
            let config = secrecy::ExposeSecret::expose_secret(&pull.config);
            Secret {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    ..ObjectMeta::default()
                },
                type_: Some(pull.secret_type.clone()),
                data: Some([(key.to_string(), ByteString(config.as_bytes().to_vec()))].into()),
                ..Secret::default()
            }
        })
        .collect();
    let list = k8s_openapi::List::<Secret> {
        items,
        metadata: Default::default(),
    };
    Ok(axum::Json(list).into_response())
}

/// The Secret type a list's `fieldSelector` asks for (`type=T` or `type==T`); `None` for no
/// selector. Other fields and operators are refused, as this server cannot honour them.
fn secret_type_selector(selector: &str) -> Result<Option<String>, StatusError> {
    if selector.is_empty() {
        return Ok(None);
    }
    let value = selector
        .strip_prefix("type==")
        .or_else(|| selector.strip_prefix("type="))
        .filter(|v| !v.contains(',') && !v.contains('='));
    match value {
        Some(value) => Ok(Some(value.to_string())),
        None => Err(StatusError::BadRequest(format!(
            "field selector {selector:?} is not supported here; only \"type=TYPE\" is"
        ))),
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn review_counts(State(server): State<Arc<ApiServer>>) -> axum::Json<ReviewCounts> {
    axum::Json(server.reviews())
}

/// The bearer token of an `Authorization` value; `None` without one. Any other scheme, an empty
/// token or an unreadable value is 401, as the API server's bearer authenticator answers.
fn bearer(value: Option<&HeaderValue>) -> Result<Option<SecretString>, StatusError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| StatusError::Unauthorized)?
        .trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(StatusError::Unauthorized);
    }
    Ok(Some(SecretString::from(token.to_string())))
}

/// The review in `body`: 413 when it is too large, 400 when it is not JSON of that kind.
fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, StatusError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            StatusError::TooLarge
        } else {
            StatusError::BadRequest("cannot read the request body".to_string())
        }
    })?;
    // serde's message names the JSON problem and position, never more of the body than a
    // mistyped value, and goes only to the client that sent it.
    serde_json::from_slice(&bytes)
        .map_err(|e| StatusError::BadRequest(format!("cannot decode the request body: {e}")))
}

/// Kubernetes' validation: a review names resource or non-resource attributes, exactly one.
fn one_kind_of_attributes(
    review: Review,
    resource: bool,
    non_resource: bool,
) -> Result<(), StatusError> {
    if resource == non_resource {
        return Err(invalid(
            review,
            "spec.resourceAttributes: Invalid value: exactly one of nonResourceAttributes or \
             resourceAttributes must be specified",
        ));
    }
    Ok(())
}

fn invalid(review: Review, cause: &str) -> StatusError {
    StatusError::Invalid {
        kind: review.kind(),
        group: review.group(),
        cause: cause.to_string(),
    }
}

fn unavailable(error: AuthorityError) -> StatusError {
    tracing::warn!(%error, "the authority cannot answer");
    StatusError::Unavailable
}

/// A request the server answers with a Kubernetes `Status` instead of a review.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// 401: no, or no valid, bearer token.
    #[error("Unauthorized")]
    Unauthorized,
    /// 403: the caller may not create this review.
    #[error(
        "{resource}.{group} is forbidden: User \"{user}\" cannot create resource \"{resource}\" \
         in API group \"{group}\" at the cluster scope; grant it with: regate policy \
         add-cluster-role-to-user {AUTH_DELEGATOR} {user}"
    )]
    Forbidden {
        /// The caller.
        user: String,
        /// The review resource, e.g. `tokenreviews`.
        resource: &'static str,
        /// Its API group.
        group: &'static str,
    },
    /// 403: the caller may not read these objects.
    #[error(
        "{resource} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API \
         group \"\" in the namespace \"{namespace}\"; grant it with: regate policy \
         add-cluster-role-to-user {PULL_SECRET_READER} {user}"
    )]
    ForbiddenRead {
        /// The caller.
        user: String,
        /// `get` or `list`.
        verb: &'static str,
        /// `serviceaccounts` or `secrets`.
        resource: &'static str,
        /// The namespace read.
        namespace: String,
    },
    /// 404: no such object.
    #[error("{resource} \"{name}\" not found")]
    ObjectNotFound {
        /// e.g. `serviceaccounts`.
        resource: &'static str,
        /// The name asked for.
        name: String,
    },
    /// 400: the body is not a review of the endpoint's kind.
    #[error("{0}")]
    BadRequest(String),
    /// 422: the review is well-formed but not valid.
    #[error("{kind}.{group} \"\" is invalid: {cause}")]
    Invalid {
        /// e.g. `SubjectAccessReview`.
        kind: &'static str,
        /// Its API group.
        group: &'static str,
        /// The field and rule.
        cause: String,
    },
    /// 413: the body is larger than [`MAX_BODY`].
    #[error("the request body is larger than {MAX_BODY} bytes")]
    TooLarge,
    /// 503: the authority behind the server cannot answer.
    #[error("the authority cannot answer now; retry")]
    Unavailable,
    /// 404: no such path.
    #[error("the server could not find the requested resource")]
    NotFound,
    /// 405: the path exists but not for this method.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed {
        /// The `Allow` header.
        allow: &'static str,
    },
}

impl StatusError {
    /// The HTTP status and the `Status.reason` Kubernetes gives it.
    fn status_and_reason(&self) -> (StatusCode, &'static str) {
        match self {
            StatusError::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            StatusError::Forbidden { .. } | StatusError::ForbiddenRead { .. } => {
                (StatusCode::FORBIDDEN, "Forbidden")
            }
            StatusError::ObjectNotFound { .. } => (StatusCode::NOT_FOUND, "NotFound"),
            StatusError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
            StatusError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
            StatusError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge"),
            StatusError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
            StatusError::NotFound => (StatusCode::NOT_FOUND, "NotFound"),
            StatusError::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed")
            }
        }
    }

    /// The `Status.details` Kubernetes gives it.
    fn details(&self) -> Option<StatusDetails> {
        match self {
            StatusError::Forbidden {
                resource, group, ..
            } => Some(StatusDetails {
                group: Some(group.to_string()),
                kind: Some(resource.to_string()),
                ..StatusDetails::default()
            }),
            StatusError::ForbiddenRead { resource, .. } => Some(StatusDetails {
                kind: Some(resource.to_string()),
                ..StatusDetails::default()
            }),
            StatusError::ObjectNotFound { resource, name } => Some(StatusDetails {
                kind: Some(resource.to_string()),
                name: Some(name.clone()),
                ..StatusDetails::default()
            }),
            StatusError::Invalid { kind, group, .. } => Some(StatusDetails {
                group: Some(group.to_string()),
                kind: Some(kind.to_string()),
                ..StatusDetails::default()
            }),
            _ => None,
        }
    }
}

impl IntoResponse for StatusError {
    fn into_response(self) -> Response {
        let (code, reason) = self.status_and_reason();
        let body = Status {
            code: Some(i32::from(code.as_u16())),
            details: self.details(),
            message: Some(self.to_string()),
            reason: Some(reason.to_string()),
            status: Some("Failure".to_string()),
            ..Status::default()
        };
        let mut response = (code, axum::Json(body)).into_response();
        match &self {
            StatusError::MethodNotAllowed { allow } => {
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            StatusError::Unavailable => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

/// Creates, where missing, namespace [`CLIENT_NAMESPACE`] and its service account
/// [`CLIENT_SERVICE_ACCOUNT`], binds it cluster-wide to ClusterRole `system:auth-delegator`,
/// and issues it a token valid for [`CLIENT_TOKEN_LIFETIME`]: the credential of the written
/// kubeconfig. Safe to run again and concurrently (each run issues a new token; older ones stay
/// valid until they expire or the service account is deleted).
pub fn provision_client(store: &Store) -> Result<Issued, ApiServerError> {
    let provision = || {
        ignore_existing(store.create_namespace(CLIENT_NAMESPACE))?;
        ignore_existing(store.create_service_account(CLIENT_NAMESPACE, CLIENT_SERVICE_ACCOUNT))?;
        let client = [SubjectRef::ServiceAccount {
            namespace: CLIENT_NAMESPACE.to_string(),
            name: CLIENT_SERVICE_ACCOUNT.to_string(),
        }];
        store.add_cluster_role(AUTH_DELEGATOR, &client)?;
        store.add_cluster_role(PULL_SECRET_READER, &client)?;
        store.create_service_account_token(
            CLIENT_NAMESPACE,
            CLIENT_SERVICE_ACCOUNT,
            CLIENT_TOKEN_LIFETIME,
        )
    };
    provision().map_err(|source| ApiServerError::Provision { source })
}

fn ignore_existing(result: Result<(), StoreError>) -> Result<(), StoreError> {
    match result {
        Err(StoreError::AlreadyExists { .. }) => Ok(()),
        other => other,
    }
}

/// The URL clients reach a server bound to `bound` at: an unspecified address (`0.0.0.0`,
/// `::`) becomes the loopback address of its family, which always reaches it.
pub fn client_url(bound: SocketAddr) -> String {
    let ip = match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, bound.port()))
}

/// The kubeconfig of a client of the server at `server_url` authenticating with `token`: one
/// cluster, one user, one context, all current.
pub fn kubeconfig(server_url: &str, token: SecretString) -> Kubeconfig {
    let user = service_account_user(CLIENT_NAMESPACE, CLIENT_SERVICE_ACCOUNT);
    Kubeconfig {
        api_version: Some("v1".to_string()),
        kind: Some("Config".to_string()),
        clusters: vec![NamedCluster {
            name: KUBECONFIG_CLUSTER.to_string(),
            cluster: Some(Cluster {
                server: Some(server_url.to_string()),
                ..Cluster::default()
            }),
            ..NamedCluster::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: user.clone(),
            auth_info: Some(AuthInfo {
                token: Some(token),
                ..AuthInfo::default()
            }),
            ..NamedAuthInfo::default()
        }],
        contexts: vec![NamedContext {
            name: KUBECONFIG_CLUSTER.to_string(),
            context: Some(Context {
                cluster: KUBECONFIG_CLUSTER.to_string(),
                user: Some(user),
                ..Context::default()
            }),
            ..NamedContext::default()
        }],
        current_context: Some(KUBECONFIG_CLUSTER.to_string()),
        ..Kubeconfig::default()
    }
}

/// Writes `config` to `path` atomically (a reader sees the old file or the new one) with mode
/// 0600, since it holds a token.
pub fn write_kubeconfig(path: &Path, config: &Kubeconfig) -> Result<(), ApiServerError> {
    let failed = |source| ApiServerError::WriteKubeconfig {
        path: path.to_path_buf(),
        source,
    };
    let text = serde_yaml::to_string(config).map_err(ApiServerError::SerializeKubeconfig)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(failed)?;
    }
    crate::fs::write_atomic(path, text.as_bytes(), 0o600).map_err(failed)
}

#[cfg(test)]
mod tests;
