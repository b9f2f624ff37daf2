//! An [`Authority`] that records every question put to the one it wraps: how many, of which
//! kind, with what result, and how long the answer took (`regate_authority_reviews`,
//! `regate_authority_review_duration_seconds`).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use secrecy::SecretString;

use super::{AfterExpiry, Authn, Authority, AuthorityError};
use crate::identity::UserInfo;
use crate::policy::{Attributes, Decision};
use crate::upstream::keyring::Keyring;

/// `inner`, measured.
pub struct Measured(pub Arc<dyn Authority>);

#[async_trait]
impl Authority for Measured {
    async fn authenticate(&self, token: &SecretString) -> Result<Authn, AuthorityError> {
        let started = Instant::now();
        let answer = self.0.authenticate(token).await;
        let result = match &answer {
            Ok(Authn::User(_)) => "valid",
            Ok(Authn::Invalid { .. }) => "invalid",
            Err(_) => "error",
        };
        crate::metrics::get().review("authenticate", result, started.elapsed());
        answer
    }

    async fn authorize(
        &self,
        user: &UserInfo,
        token: Option<&SecretString>,
        attrs: &Attributes,
    ) -> Result<Decision, AuthorityError> {
        let started = Instant::now();
        let answer = self.0.authorize(user, token, attrs).await;
        let result = match &answer {
            Ok(decision) if decision.allowed() => "allowed",
            Ok(_) => "denied",
            Err(_) => "error",
        };
        crate::metrics::get().review("authorize", result, started.elapsed());
        answer
    }

    fn needs_caller_token(&self) -> bool {
        self.0.needs_caller_token()
    }

    async fn pull_keyring(
        &self,
        user: &UserInfo,
        namespace: &str,
    ) -> Result<Keyring, AuthorityError> {
        self.0.pull_keyring(user, namespace).await
    }

    async fn after_expiry(&self, token: &SecretString) -> AfterExpiry {
        self.0.after_expiry(token).await
    }

    async fn ready(&self) -> Result<(), AuthorityError> {
        self.0.ready().await
    }

    async fn anonymous_has_grants(&self) -> Result<bool, AuthorityError> {
        self.0.anonymous_has_grants().await
    }

    fn generation(&self) -> u64 {
        self.0.generation()
    }
}
