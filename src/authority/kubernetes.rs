//! The Kubernetes authority: a cluster's API server says who a token belongs to and what RBAC
//! allows, through the review APIs (the module owns the client, its pacing and the token cache).
//!
//! Two modes ([`ReviewMode`]). `Delegated`: regate asks with its own credentials,
//! `TokenReview` for identity and `SubjectAccessReview` for decisions (it needs the
//! `system:auth-delegator` ClusterRole). `SelfReview`: regate asks as the caller, with the
//! caller's own token, `SelfSubjectReview` and `SelfSubjectAccessReview`, as OpenShift's
//! registry does; regate then needs no privilege at all.
//!
//! Identities are cached here (a TokenReview per token per [`KubernetesSettings::token_cache_ttl`],
//! never past the token's own expiry), keyed by an HMAC of the token under a per-process random
//! key. Decisions are not cached here: [`crate::cache::Decisions`] does that in front of every
//! authority. Every call toward the API is paced and retried (`kubernetes/transport.rs`); when
//! the API cannot answer in time the result is [`AuthorityError::Unavailable`], its cause a
//! [`ClusterError`], and the gateway fails closed.

mod error;
mod pull_secrets;
mod settings;
mod transport;
mod viewer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderValue, StatusCode};
use k8s_openapi::api::authentication::v1::{
    SelfSubjectReview, TokenReview, TokenReviewSpec, UserInfo as KubeUserInfo,
};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec, SubjectAccessReview,
    SubjectAccessReviewSpec, SubjectAccessReviewStatus,
};
use moka::Expiry;
use moka::future::Cache;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::{Authn, Authority, AuthorityError};
use crate::identity::{UserInfo, service_account_of};
use crate::policy::{Attributes, Decision};
use crate::upstream::keyring::Keyring;
pub use error::{ClusterError, Failure};
pub use settings::{KubernetesError, KubernetesSettings, ReviewMode};
use settings::{load_config, validate};
use transport::{Answer, Pacing, Transport, redact};
pub use viewer::{AsViewer, ViewerError};

/// How long the pull secrets read for one (service account, namespace) are reused, at most:
/// never longer than identities (`token_cache_ttl`), so a short identity cache also makes a new
/// Secret take effect soon.
pub const PULL_KEYRING_TTL: Duration = Duration::from_secs(30);

/// Most (service account, namespace) keyrings kept.
const PULL_KEYRING_CACHE_SIZE: u64 = 10_000;

/// The caller's service account (namespace, name), if it is one, and the namespace pulled.
type PullKey = (Option<(String, String)>, String);

/// An identity and how long to keep it.
#[derive(Clone)]
struct Cached {
    authn: Authn,
    ttl: Duration,
}

struct PerEntry;

impl Expiry<[u8; 32], Cached> for PerEntry {
    fn expire_after_create(&self, _: &[u8; 32], value: &Cached, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// The Kubernetes API server as regate's authority.
pub struct Kubernetes {
    transport: Transport,
    /// The cluster configuration without credentials, for requests made as a person with their
    /// own token ([`Kubernetes::as_viewer`]).
    viewer_client: kube::Client,
    review: ReviewMode,
    audiences: Vec<String>,
    token_cache_ttl: Duration,
    invalid_token_ttl: Duration,
    /// Keyed by HMAC-SHA256(token) under a key drawn at start-up: a memory dump or a debug
    /// print of the cache gives nothing that can be replayed or brute-forced offline.
    tokens: Cache<[u8; 32], Cached>,
    token_key: Hmac<Sha256>,
    /// [`Authority::pull_keyring`] answers, kept [`PULL_KEYRING_TTL`].
    pull_keyrings: Cache<PullKey, Keyring>,
}

impl std::fmt::Debug for Kubernetes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubernetes")
            .field("api", &self.transport.api())
            .field("review", &self.review)
            .finish_non_exhaustive()
    }
}

impl Kubernetes {
    /// Loads the cluster configuration (see [`KubernetesSettings::kubeconfig`]) and builds the
    /// client. Nothing is sent to the API yet.
    pub async fn new(settings: KubernetesSettings) -> Result<Arc<Kubernetes>, KubernetesError> {
        let config = load_config(settings.kubeconfig.as_ref()).await?;
        Kubernetes::from_config(config, settings)
    }

    /// Builds the authority for an already loaded cluster configuration (needs a tokio runtime:
    /// the client spawns its connection task).
    pub fn from_config(
        mut config: kube::Config,
        settings: KubernetesSettings,
    ) -> Result<Arc<Kubernetes>, KubernetesError> {
        validate(&settings)?;
        let api = origin(&config.cluster_url);
        // Retries are ours (counted, jittered, bounded by the deadline); kube's would multiply them.
        config.default_retry = false;
        let viewer_client = {
            let mut config = config.clone();
            config.auth_info = kube::config::AuthInfo::default();
            kube::Client::try_from(config).map_err(|source| KubernetesError::Client {
                api: api.clone(),
                source,
            })?
        };
        if settings.review == ReviewMode::SelfReview {
            // Each request carries the caller's token instead. With no credentials kube adds no
            // auth layer at all, so nothing overwrites that header; and regate's own client
            // certificate, if any, is dropped too, so no request is ever made as regate.
            config.auth_info = kube::config::AuthInfo::default();
        }
        let client = kube::Client::try_from(config).map_err(|source| KubernetesError::Client {
            api: api.clone(),
            source,
        })?;
        let pacing = Pacing {
            qps: settings.qps,
            burst: settings.burst,
            timeout: settings.timeout,
            retries: settings.retries,
            backoff: settings.retry_backoff,
            deadline: settings.deadline,
        };
        let token_key =
            Hmac::<Sha256>::new_from_slice(&rand::random::<[u8; 32]>()).map_err(|e| {
                KubernetesError::Setting {
                    field: "token_cache",
                    reason: format!("cannot key the token cache: {e}"),
                }
            })?;
        Ok(Arc::new(Kubernetes {
            transport: Transport::new(client, api, pacing),
            viewer_client,
            review: settings.review,
            audiences: settings.audiences,
            token_cache_ttl: settings.token_cache_ttl,
            invalid_token_ttl: settings.invalid_token_ttl.min(settings.token_cache_ttl),
            tokens: Cache::builder()
                .max_capacity(settings.token_cache_size)
                .expire_after(PerEntry)
                .build(),
            token_key,
            pull_keyrings: Cache::builder()
                .max_capacity(PULL_KEYRING_CACHE_SIZE)
                .time_to_live(PULL_KEYRING_TTL.min(settings.token_cache_ttl))
                .build(),
        }))
    }

    /// The API server's origin, e.g. `https://10.0.0.1:6443`.
    pub fn api(&self) -> &str {
        self.transport.api()
    }

    /// The review mode in force.
    pub fn review_mode(&self) -> ReviewMode {
        self.review
    }

    /// HTTP requests sent to the API so far, retries included (for tests and benchmarks).
    pub fn reviews_made(&self) -> u64 {
        self.transport.sent()
    }

    fn token_key(&self, token: &SecretString) -> [u8; 32] {
        let mut mac = self.token_key.clone();
        mac.update(token.expose_secret().as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Asks the API who `token` is, once (the cache holds the answer).
    async fn review_token(&self, token: &SecretString) -> Result<Cached, AuthorityError> {
        let authn = match self.review {
            ReviewMode::Delegated => self.token_review(token).await,
            ReviewMode::SelfReview => self.self_subject_review(token).await,
        }
        .map_err(AuthorityError::unavailable)?;
        let ttl = match &authn {
            Authn::User(_) => expiry_of(token)
                .map(|left| left.min(self.token_cache_ttl))
                .unwrap_or(self.token_cache_ttl),
            Authn::Invalid { .. } => self.invalid_token_ttl,
        };
        Ok(Cached { authn, ttl })
    }

    async fn token_review(&self, token: &SecretString) -> Result<Authn, ClusterError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.expose_secret().to_string(),
                audiences: (!self.audiences.is_empty()).then(|| self.audiences.clone()),
            },
            ..TokenReview::default()
        };
        let review = match self.transport.create(&review, None, Some(token)).await? {
            Answer::Object(review) => review,
            Answer::Refused { status, message } => {
                return Err(self.refused_as_regate("tokenreviews", status, message));
            }
        };
        let status = review.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            return Ok(Authn::Invalid {
                reason: status
                    .error
                    .filter(|e| !e.is_empty())
                    .map(|e| redact(e, token))
                    .unwrap_or_else(|| "the API server did not authenticate the token".into()),
            });
        }
        // As client-go's webhook authenticator: the token must be meant for one of our audiences.
        if !self.audiences.is_empty() {
            let granted = status.audiences.unwrap_or_default();
            if !granted.iter().any(|a| self.audiences.contains(a)) {
                return Ok(Authn::Invalid {
                    reason: format!(
                        "the token is for audiences {granted:?}, not {:?}",
                        self.audiences
                    ),
                });
            }
        }
        Ok(user_of(status.user))
    }

    async fn self_subject_review(&self, token: &SecretString) -> Result<Authn, ClusterError> {
        let Some(bearer) = bearer(token) else {
            return Ok(Authn::Invalid {
                reason: "the token has characters not allowed in an HTTP header".into(),
            });
        };
        let review = match self
            .transport
            .create(&SelfSubjectReview::default(), Some(&bearer), Some(token))
            .await?
        {
            Answer::Object(review) => review,
            Answer::Refused {
                status: StatusCode::UNAUTHORIZED,
                ..
            } => {
                return Ok(Authn::Invalid {
                    reason: "the API server rejected the token (expired, revoked or not a token of this cluster)".into(),
                });
            }
            Answer::Refused {
                status: StatusCode::FORBIDDEN,
                ..
            } => {
                return Ok(Authn::Invalid {
                    reason: "the API server does not let this identity review itself (create selfsubjectreviews.authentication.k8s.io, granted by system:basic-user)".into(),
                });
            }
            Answer::Refused {
                status: StatusCode::NOT_FOUND,
                ..
            } => {
                return Err(ClusterError::NoSelfReviews {
                    api: self.api().to_string(),
                });
            }
            Answer::Refused { status, message } => {
                return Err(self.refused("selfsubjectreviews", status, message, None));
            }
        };
        Ok(user_of(review.status.and_then(|s| s.user_info)))
    }

    async fn subject_access_review(
        &self,
        user: &UserInfo,
        attrs: &Attributes,
    ) -> Result<Decision, ClusterError> {
        // The user as reviews carry it, spread over the spec's own fields.
        let KubeUserInfo {
            username,
            uid,
            groups,
            extra,
        } = KubeUserInfo::from(user);
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: username,
                uid,
                groups,
                extra,
                resource_attributes: Some(ResourceAttributes::from(attrs)),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        match self.transport.create(&review, None, None).await? {
            Answer::Object(review) => Ok(decision_of(review.status)),
            Answer::Refused { status, message } => {
                Err(self.refused_as_regate("subjectaccessreviews", status, message))
            }
        }
    }

    async fn self_subject_access_review(
        &self,
        user: &UserInfo,
        token: Option<&SecretString>,
        attrs: &Attributes,
    ) -> Result<Decision, ClusterError> {
        let bearer = match token {
            Some(token) => match bearer(token) {
                Some(bearer) => Some(bearer),
                None => {
                    return Ok(Decision::deny(
                        "the caller's token cannot be sent as a bearer token",
                    ));
                }
            },
            None if user.is_anonymous() => None,
            None => {
                // Asking without a token would be asking as anonymous, whose grants are not a
                // subset of this user's; deny rather than answer for someone else.
                tracing::warn!(
                    user = %user.name,
                    "review: self needs the caller's own token, but none came with the request; denied"
                );
                return Ok(Decision::deny(
                    "review: self needs the caller's own token, and none came with the request",
                ));
            }
        };
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes::from(attrs)),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        match self
            .transport
            .create(&review, bearer.as_ref(), token)
            .await?
        {
            Answer::Object(review) => Ok(decision_of(review.status)),
            // The caller may not even ask (anonymous, or a token revoked since it was
            // authenticated): that is a no, not an outage.
            Answer::Refused {
                status: status @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
                ..
            } => Ok(Decision::deny(format!(
                "the API server refused the caller's own review ({status})"
            ))),
            Answer::Refused { status, message } => {
                Err(self.refused("selfsubjectaccessreviews", status, message, None))
            }
        }
    }

    /// A 4xx answer to a review regate made as itself, with what to fix.
    fn refused_as_regate(
        &self,
        resource: &'static str,
        status: StatusCode,
        message: String,
    ) -> ClusterError {
        let hint = match status {
            StatusCode::UNAUTHORIZED => {
                "regate's own credentials were rejected; check the kubeconfig or the pod's service account token"
            }
            StatusCode::FORBIDDEN => {
                "regate's identity may not create reviews; bind its service account to the ClusterRole system:auth-delegator (deploy/kubernetes/), or use `review: self`"
            }
            _ => "unexpected answer",
        };
        self.refused(resource, status, message, Some(hint))
    }

    fn refused(
        &self,
        resource: &'static str,
        status: StatusCode,
        message: String,
        hint: Option<&'static str>,
    ) -> ClusterError {
        ClusterError::Refused {
            api: self.api().to_string(),
            resource,
            status,
            message,
            hint,
        }
    }
}

#[async_trait]
impl Authority for Kubernetes {
    async fn authenticate(&self, token: &SecretString) -> Result<Authn, AuthorityError> {
        let key = self.token_key(token);
        // One review per token however many requests wait; errors are returned to every waiter
        // and not kept, so the next request asks again.
        self.tokens
            .try_get_with(key, self.review_token(token))
            .await
            .map(|cached| cached.authn)
            .map_err(|error| AuthorityError::clone(&error))
    }

    async fn authorize(
        &self,
        user: &UserInfo,
        token: Option<&SecretString>,
        attrs: &Attributes,
    ) -> Result<Decision, AuthorityError> {
        let decision = match self.review {
            ReviewMode::Delegated => self.subject_access_review(user, attrs).await,
            ReviewMode::SelfReview => self.self_subject_access_review(user, token, attrs).await,
        };
        decision.map_err(AuthorityError::unavailable)
    }

    fn needs_caller_token(&self) -> bool {
        self.review == ReviewMode::SelfReview
    }

    async fn pull_keyring(
        &self,
        user: &UserInfo,
        namespace: &str,
    ) -> Result<Keyring, AuthorityError> {
        if self.review == ReviewMode::SelfReview {
            // regate has no identity of its own to read Secrets with, and callers' tokens are not
            // meant to be used for that: only the global pull secret applies.
            return Ok(Keyring::default());
        }
        let account =
            service_account_of(&user.name).map(|(ns, sa)| (ns.to_string(), sa.to_string()));
        let key = (account, namespace.to_string());
        let read = self.read_pull_keyring(key.0.as_ref(), namespace);
        self.pull_keyrings
            .try_get_with_by_ref(&key, async {
                read.await.map_err(AuthorityError::unavailable)
            })
            .await
            .map_err(|error| AuthorityError::clone(&error))
    }

    async fn ready(&self) -> Result<(), AuthorityError> {
        self.transport
            .healthz()
            .await
            .map_err(AuthorityError::unavailable)
    }

    async fn anonymous_has_grants(&self) -> Result<bool, AuthorityError> {
        // Answering would mean listing every binding; anonymous callers are challenged on
        // `GET /v2/` instead, fetch an anonymous token, and each route's review decides.
        Ok(false)
    }

    fn generation(&self) -> u64 {
        // RBAC changes in the cluster are not observed; cached decisions age out by their TTL.
        0
    }
}

/// `scheme://host:port` of the API server, without any user info or path.
fn origin(url: &http::Uri) -> String {
    let scheme = url.scheme_str().unwrap_or("https");
    match (url.host(), url.port_u16()) {
        (Some(host), Some(port)) => format!("{scheme}://{host}:{port}"),
        (Some(host), None) => format!("{scheme}://{host}"),
        _ => url.to_string(),
    }
}

/// The `Authorization` value that sends `token`, marked sensitive so no layer prints it.
fn bearer(token: &SecretString) -> Option<HeaderValue> {
    let mut value = HeaderValue::try_from(format!("Bearer {}", token.expose_secret())).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// The identity in a review's status, with Kubernetes' implicit groups.
fn user_of(user: Option<KubeUserInfo>) -> Authn {
    let user = user.unwrap_or_default();
    match user.username.filter(|name| !name.is_empty()) {
        Some(name) => Authn::User(UserInfo {
            extra: user.extra.unwrap_or_default(),
            ..UserInfo::authenticated(
                name,
                user.uid.unwrap_or_default(),
                user.groups.unwrap_or_default(),
            )
        }),
        None => Authn::Invalid {
            reason: "the API server accepted the token but named no user".into(),
        },
    }
}

/// Only an explicit `allowed: true` allows; a missing status, `denied`, or an evaluation error
/// with `allowed: false` all deny.
fn decision_of(status: Option<SubjectAccessReviewStatus>) -> Decision {
    match status {
        Some(status) if status.allowed => Decision::Allow {
            by: status
                .reason
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "kubernetes RBAC".into()),
        },
        Some(status) => {
            if let Some(error) = status.evaluation_error.as_ref().filter(|e| !e.is_empty()) {
                tracing::debug!(%error, "the API server reported an evaluation error; denied");
            }
            match status.reason.filter(|r| !r.is_empty()) {
                Some(reason) => Decision::deny(reason),
                None => Decision::deny("the API server's authorizers do not allow it"),
            }
        }
        None => Decision::deny("the review came back without a status"),
    }
}

/// How long until the token's own `exp`, if it is a JWT that has one (read unverified: only to
/// bound the cache, the API has verified the token).
fn expiry_of(token: &SecretString) -> Option<Duration> {
    let exp = crate::token::unverified_expiry(token.expose_secret())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    Some(Duration::try_from_secs_f64(exp - now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests;
