//! An [`Authority`] that takes the ID tokens of the configured OIDC issuers itself
//! ([`crate::oidc`]: verified offline) and hands everything else to the one it wraps. The gateway
//! wraps its authority in it, and so does `regate authority serve`, whose TokenReviews and self
//! reviews then know the same identities.
//!
//! A token refused is [`Authn::Invalid`] (a failed login); one that cannot be checked because its
//! issuer's keys cannot be had is [`AuthorityError::Unavailable`], answered 503 with
//! `Retry-After` like any authority outage and counted against no one. `/readyz` reports such
//! an issuer too.

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

use super::{AfterExpiry, Authn, Authority, AuthorityError};
use crate::identity::UserInfo;
use crate::oidc::{IssuerSettings, Issuers, Unverified};
use crate::policy::{Attributes, Decision};
use crate::upstream::auth::AuthError;
use crate::upstream::keyring::Keyring;

/// `inner`, taking the ID tokens of `issuers` itself.
pub struct Trusting {
    issuers: Issuers,
    inner: Arc<dyn Authority>,
}

impl Trusting {
    /// `inner` as it is when no issuer is configured, else wrapped.
    pub fn wrap(
        issuers: &[IssuerSettings],
        inner: Arc<dyn Authority>,
    ) -> Result<Arc<dyn Authority>, AuthError> {
        if issuers.is_empty() {
            return Ok(inner);
        }
        Ok(Arc::new(Trusting {
            issuers: Issuers::new(issuers)?,
            inner,
        }))
    }
}

#[async_trait]
impl Authority for Trusting {
    async fn authenticate(&self, token: &SecretString) -> Result<Authn, AuthorityError> {
        match self.issuers.verify(token.expose_secret()).await {
            Some(Ok(user)) => Ok(Authn::User(user)),
            Some(Err(Unverified::Refused(reason))) => Ok(Authn::Invalid { reason }),
            Some(Err(Unverified::Unreachable(cause))) => Err(AuthorityError::unavailable(cause)),
            None => self.inner.authenticate(token).await,
        }
    }

    async fn authorize(
        &self,
        user: &UserInfo,
        token: Option<&SecretString>,
        attrs: &Attributes,
    ) -> Result<Decision, AuthorityError> {
        self.inner.authorize(user, token, attrs).await
    }

    fn needs_caller_token(&self) -> bool {
        self.inner.needs_caller_token()
    }

    async fn pull_keyring(
        &self,
        user: &UserInfo,
        namespace: &str,
    ) -> Result<Keyring, AuthorityError> {
        self.inner.pull_keyring(user, namespace).await
    }

    async fn after_expiry(&self, token: &SecretString) -> AfterExpiry {
        match self.issuers.after_expiry(token.expose_secret()).await {
            Some(Ok(user)) => AfterExpiry::Identity(user),
            Some(Err(Unverified::Refused(reason))) => AfterExpiry::Refused { reason },
            // Fail closed: a push window outlives its credential only while the issuer's keys
            // can still vouch for it (those kept verify through an outage for 24 h).
            Some(Err(Unverified::Unreachable(cause))) => AfterExpiry::Refused {
                reason: cause.to_string(),
            },
            None => self.inner.after_expiry(token).await,
        }
    }

    /// The authority behind first (its outage is the graver); then the issuers, whose outage
    /// `/readyz` reports without leaving rotation (docs/behaviour.md §10).
    async fn ready(&self) -> Result<(), AuthorityError> {
        self.inner.ready().await?;
        if let Err(unready) = self.issuers.ready() {
            // The detail (addresses, raw errors) is for the log; `/readyz` says only what.
            tracing::warn!(detail = unready.detail(), "not ready: {unready}");
            return Err(AuthorityError::unavailable(unready));
        }
        Ok(())
    }

    async fn anonymous_has_grants(&self) -> Result<bool, AuthorityError> {
        self.inner.anonymous_has_grants().await
    }

    fn generation(&self) -> u64 {
        self.inner.generation()
    }
}

#[cfg(test)]
mod tests;
