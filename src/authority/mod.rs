//! The source of truth for who a token belongs to and what they may do.
//!
//! The gateway talks to an [`Authority`] only through the decision cache ([`crate::cache`]).
//! There are two: [`embedded::Embedded`], regate's own RBAC store in a state directory, and
//! [`kubernetes::Kubernetes`], a Kubernetes or OpenShift API server asked with TokenReview and
//! SubjectAccessReview (or their self-review forms). [`apiserver`] serves the embedded store
//! over that same Kubernetes wire format, so gateways can share one embedded authority.

pub mod apiserver;
pub mod embedded;
pub mod kubernetes;
pub mod measured;
pub mod trusting;

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::identity::UserInfo;
use crate::policy::{Attributes, Decision};

/// What authenticating a token gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authn {
    /// The token is valid and proves this identity.
    User(UserInfo),
    /// The token is not valid (bad signature, expired, subject deleted); `reason` is safe to log
    /// and to show the client (it never contains the token).
    Invalid {
        /// Why, e.g. "token expired".
        reason: String,
    },
}

/// What an authority can tell of a credential that verified once and has expired since.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AfterExpiry {
    /// It verifies but for its expiry, and names this identity as the authority sees it now.
    Identity(UserInfo),
    /// It is refused for more than its expiry (forged, or its subject deleted or recreated).
    Refused {
        /// Why, safe to show the client.
        reason: String,
    },
    /// The authority cannot tell: a Kubernetes API server reviews unexpired tokens only.
    CannotTell,
}

/// The authority could not answer; the gateway fails closed with 503.
#[derive(Clone, Debug, thiserror::Error)]
pub enum AuthorityError {
    /// The authority is unreachable or failed; nothing may be forwarded. The cause is the
    /// authority's own error type (for example [`kubernetes::ClusterError`]), shared so that
    /// cached failures can be handed to every waiter.
    #[error("authority unavailable: {0}")]
    Unavailable(Arc<dyn std::error::Error + Send + Sync>),
}

impl AuthorityError {
    /// The authority could not answer because of `cause`.
    pub fn unavailable(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        AuthorityError::Unavailable(Arc::from(cause.into()))
    }

    /// What the client may be told, when the cause says it safely: an OIDC issuer that cannot
    /// be reached, named as the client's token names it (no address resolved, no raw error).
    /// `None` for every other cause, which stays in the log.
    pub fn public_message(&self) -> Option<String> {
        let AuthorityError::Unavailable(cause) = self;
        cause
            .downcast_ref::<crate::oidc::IssuerUnreachable>()
            .map(ToString::to_string)
    }

    /// The OIDC issuers that make the authority unready, when they are the cause.
    pub fn oidc_unready(&self) -> Option<&crate::oidc::IssuersUnready> {
        let AuthorityError::Unavailable(cause) = self;
        cause.downcast_ref()
    }
}

/// Authentication and authorization, answered by the embedded store or a cluster.
#[async_trait]
pub trait Authority: Send + Sync + 'static {
    /// Who an API token (service account or user token) belongs to.
    async fn authenticate(&self, token: &SecretString) -> Result<Authn, AuthorityError>;

    /// Whether `user` may do `attrs`. `token` is the caller's own credential, for authorities
    /// that ask as the caller (Kubernetes `review: self`); `None` for anonymous callers and
    /// callers showing a registry token.
    async fn authorize(
        &self,
        user: &UserInfo,
        token: Option<&SecretString>,
        attrs: &Attributes,
    ) -> Result<Decision, AuthorityError>;

    /// True when decisions need the caller's own token (Kubernetes `review: self`). The token
    /// endpoint then hands callers their own token back as the registry token, as OpenShift's
    /// registry does, instead of a regate-signed one that would not carry it.
    fn needs_caller_token(&self) -> bool {
        false
    }

    /// The docker config Secrets to pull `namespace`'s remote images with for `user`, chained in
    /// the order they are tried: those linked for pull (`imagePullSecrets`) to `user`'s service
    /// account if `user` is one (`system:serviceaccount:NS:NAME`; the secrets live in NS), then
    /// every docker config Secret of `namespace` by name. A Secret both linked and in `namespace`
    /// comes once, where it is linked; a linked Secret that does not exist is skipped. Secrets
    /// that do not parse are skipped with a warning naming them (never their content). Default:
    /// an empty keyring.
    async fn pull_keyring(
        &self,
        user: &UserInfo,
        namespace: &str,
    ) -> Result<crate::upstream::keyring::Keyring, AuthorityError> {
        let _ = (user, namespace);
        Ok(Default::default())
    }

    /// What the authority can still tell of `token` after its expiry, for a push that started
    /// while it was valid (docs/behaviour.md §3). Default: it cannot tell.
    async fn after_expiry(&self, token: &SecretString) -> AfterExpiry {
        let _ = token;
        AfterExpiry::CannotTell
    }

    /// Whether the authority answers at all, for `/readyz`: `Err` says why not. Default: it is
    /// in this process, so it does.
    async fn ready(&self) -> Result<(), AuthorityError> {
        Ok(())
    }

    /// Whether some binding grants the anonymous identity anything (so `GET /v2/` may answer
    /// anonymous callers 200 instead of a challenge).
    async fn anonymous_has_grants(&self) -> Result<bool, AuthorityError>;

    /// A number that changes whenever decisions may have changed (a policy reload). Cached
    /// decisions are keyed by it, so no decision made under an old policy is served after.
    fn generation(&self) -> u64;
}
