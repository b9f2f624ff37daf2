//! `regate authority serve`: an [`Authority`] (in practice the embedded store) answered over the
//! Kubernetes API wire format, so gateways in `kubernetes` mode can share one embedded authority
//! without a cluster, and the web console can act toward it as the signed-in person.
//!
//! It owns the four review endpoints a Kubernetes API server offers for delegated
//! authentication and authorization (`tokenreviews`, `subjectaccessreviews`, and their `self`
//! forms), with bodies parsed into and answered from the `k8s-openapi` types; the bearer-token
//! authentication and RBAC check of its own clients (TokenReview and SubjectAccessReview need
//! `create` on them, which ClusterRole `system:auth-delegator` grants); the reads gateways make
//! for pull credentials (a service account, a namespace's docker config Secrets); the objects
//! the console shows and edits (`objects.rs`: namespaces, service accounts, roles, cluster
//! roles and both kinds of binding, listed and read; `rbac.rs`: RoleBindings created, replaced
//! and deleted with Kubernetes' conflict, validation and escalation rules), each request
//! authorized by the store's RBAC as the Kubernetes API server would; errors as Kubernetes
//! `Status` objects; the service account and kubeconfig its clients use ([`provision_client`],
//! [`write_kubeconfig`]); and a count of the reviews answered (`GET /debug/reviews`) that tests
//! use to observe the gateways' caches.

mod client;
mod endpoints;
mod objects;
mod rbac;
mod status;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use http::{HeaderMap, StatusCode, header};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReviewStatus};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::embedded::{
    AUTH_DELEGATOR, AUTHENTICATION_GROUP, AUTHORIZATION_GROUP, PULL_SECRET_READER,
};
use super::embedded::{Embedded, Snapshot, StoreError};
use super::{Authn, Authority};
use crate::identity::UserInfo;
use crate::policy::{Attributes, Decision};
pub use client::{client_url, kubeconfig, provision_client, write_kubeconfig};
use endpoints::{bearer, parse, unavailable};
use endpoints::{
    healthz, review_counts, secrets, self_subject_access_review, self_subject_review,
    service_account, subject_access_review, token_review,
};
pub use status::{Resource, StatusError};

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
/// `GET`: the namespaces (`list` at cluster scope).
pub const NAMESPACES_PATH: &str = "/api/v1/namespaces";
/// `GET`: one namespace (`get`; the request's namespace is the namespace itself).
pub const NAMESPACE_PATH: &str = "/api/v1/namespaces/{namespace}";
/// `GET`: a namespace's service accounts.
pub const SERVICE_ACCOUNTS_PATH: &str = "/api/v1/namespaces/{namespace}/serviceaccounts";
/// `GET`: the ClusterRoles.
pub const CLUSTER_ROLES_PATH: &str = "/apis/rbac.authorization.k8s.io/v1/clusterroles";
/// `GET`: one ClusterRole.
pub const CLUSTER_ROLE_PATH: &str = "/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}";
/// `GET`: the ClusterRoleBindings.
pub const CLUSTER_ROLE_BINDINGS_PATH: &str =
    "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings";
/// `GET`: a namespace's Roles.
pub const ROLES_PATH: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles";
/// `GET` (list), `POST` (create): a namespace's RoleBindings.
pub const ROLE_BINDINGS_PATH: &str =
    "/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings";
/// `GET`, `PUT` (replace), `DELETE`: one RoleBinding.
pub const ROLE_BINDING_PATH: &str =
    "/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings/{name}";
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

/// Largest body read; reviews are a few hundred bytes and a RoleBinding a few kilobytes
/// (Kubernetes allows 3 MiB for any object, but nothing here needs more than a token and a few
/// names).
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
    /// How long a review's body may take to arrive (the connections' `request_timeout`).
    body_timeout: Duration,
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
            body_timeout: crate::config::ConnectionSettings::default().request_timeout,
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

    /// Gives a review's body `limit` to arrive whole (default: the connections'
    /// `request_timeout`).
    pub fn with_body_timeout(mut self, limit: Duration) -> Self {
        self.body_timeout = limit;
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
            reason: Some(match decision {
                Decision::Allow { by } => by,
                Decision::Deny { reason } => reason,
            }),
            evaluation_error: None,
        })
    }
}

/// The router: the four review endpoints, the objects, `/healthz` and `/debug/reviews`.
pub fn app(server: Arc<ApiServer>) -> Router {
    const GET: &str = "GET, HEAD";
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
        .route(NAMESPACES_PATH, only(get(objects::namespaces), GET))
        .route(NAMESPACE_PATH, only(get(objects::namespace), GET))
        .route(
            SERVICE_ACCOUNTS_PATH,
            only(get(objects::service_accounts), GET),
        )
        .route(CLUSTER_ROLES_PATH, only(get(objects::cluster_roles), GET))
        .route(CLUSTER_ROLE_PATH, only(get(objects::cluster_role), GET))
        .route(
            CLUSTER_ROLE_BINDINGS_PATH,
            only(get(objects::cluster_role_bindings), GET),
        )
        .route(ROLES_PATH, only(get(objects::roles), GET))
        .route(
            ROLE_BINDINGS_PATH,
            only(
                get(objects::role_bindings).post(rbac::create_role_binding),
                "GET, HEAD, POST",
            ),
        )
        .route(
            ROLE_BINDING_PATH,
            only(
                get(objects::role_binding)
                    .put(rbac::replace_role_binding)
                    .delete(rbac::delete_role_binding),
                "GET, HEAD, PUT, DELETE",
            ),
        )
        .route(HEALTHZ_PATH, only_get(get(healthz)))
        .route(REVIEWS_PATH, only_get(get(review_counts)))
        .fallback(|| async { StatusError::NotFound })
        .layer(axum::middleware::from_fn_with_state(
            server.clone(),
            read_body,
        ))
        .with_state(server)
}

/// Reads a request's body, when it has one, before any handler: reviews are small, so a body
/// past [`MAX_BODY`] is refused with 413 (at once when its `Content-Length` says so), and one
/// not whole within the connections' `request_timeout` with 408, before the caller is even
/// authenticated (docs/behaviour.md §10). The handlers then read it from memory.
async fn read_body(
    axum::extract::State(server): axum::extract::State<Arc<ApiServer>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::body::HttpBody as _;
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let deadline = crate::body::Deadline::after(server.body_timeout);
    match crate::body::read_bounded(&parts.headers, body, MAX_BODY, deadline).await {
        Ok(body) => {
            let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(body));
            next.run(req).await
        }
        Err(error) => StatusError::from(error).into_response(),
    }
}

fn only_post(route: MethodRouter<Arc<ApiServer>>) -> MethodRouter<Arc<ApiServer>> {
    only(route, "POST")
}

fn only_get(route: MethodRouter<Arc<ApiServer>>) -> MethodRouter<Arc<ApiServer>> {
    only(route, "GET, HEAD")
}

/// `route`, answering any other method than its own (`allow`) with 405.
fn only(route: MethodRouter<Arc<ApiServer>>, allow: &'static str) -> MethodRouter<Arc<ApiServer>> {
    route.fallback(move || async move { StatusError::MethodNotAllowed { allow } })
}

/// Serves `server` on `listener` (over TLS when `tls` is given, with the gateway's connection
/// deadlines and cap) until `shutdown` completes, then lets reviews in flight finish for at
/// most `drain`: bounded, since with injected latency (a "hung" authority) waiting for every
/// review could take as long as the latency.
pub async fn serve(
    listener: tokio::net::TcpListener,
    server: Arc<ApiServer>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    crate::connections::serve(
        listener,
        app(server),
        crate::config::ConnectionSettings::default(),
        tls,
        stop_rx,
        drain,
    )
    .await;
}

#[cfg(test)]
mod tests;
