//! Push windows (docs/behaviour.md §3): a push that starts with a valid ID token finishes even
//! when the token, minted for minutes by a CI system, expires on the way.
//!
//! An upload start answered 202 to a caller whose credential verified in full opens a window on
//! that repository for that identity, `token.lifetime` long. Inside it, the steps of a push on
//! that repository ([`push_step`]) and the token requests for it are accepted with a credential
//! whose only fault is its expiry: an ID token of a trusted issuer, or a registry token made
//! from one, both still verifying but for `exp`, naming the identity the window is for. Every
//! such request is still authorized as any other, so removing the binding stops the push.
//! Nothing else ever takes an expired credential.

use std::time::Duration;

use http::Method;
use moka::sync::Cache;
use secrecy::{ExposeSecret, SecretString};

use crate::authority::{Authn, Authority};
use crate::identity::UserInfo;
use crate::route::{Name, Route};
use crate::token::Signer;

/// Most windows kept at once.
const MAX_WINDOWS: u64 = 100_000;

/// The open windows: (user, repository) → when the window closes (seconds since the epoch).
pub(crate) struct PushWindows {
    open: Cache<(String, String), u64>,
    lifetime: Duration,
}

impl PushWindows {
    /// Windows `lifetime` long.
    pub(crate) fn new(lifetime: Duration) -> PushWindows {
        PushWindows {
            open: Cache::builder()
                .max_capacity(MAX_WINDOWS)
                .time_to_live(lifetime)
                .build(),
            lifetime,
        }
    }

    /// Opens (or renews) the window of `user` on `repository`.
    pub(super) fn open(&self, user: &str, repository: &str) {
        let closes = crate::token::now() + self.lifetime.as_secs();
        self.open
            .insert((user.to_string(), repository.to_string()), closes);
    }

    /// When the window of `user` on `repository` closes, if it is open.
    fn closes(&self, user: &str, repository: &str) -> Option<u64> {
        self.open
            .get(&(user.to_string(), repository.to_string()))
            .filter(|closes| *closes > crate::token::now())
    }

    /// Who `token` names, and when the window on each of `repositories` closes first, if the
    /// token is refused only for its expiry and a window is open for that identity on every one
    /// of them.
    pub(super) async fn admit(
        &self,
        signer: &Signer,
        authority: &dyn Authority,
        token: &SecretString,
        repositories: &[&str],
    ) -> Option<(UserInfo, u64)> {
        if repositories.is_empty() {
            return None;
        }
        let user = expired_identity(signer, authority, token).await?;
        let mut closes = u64::MAX;
        for repository in repositories {
            closes = closes.min(self.closes(&user.name, repository)?);
        }
        Some((user, closes))
    }
}

/// The identity an expired ID token names, or an expired registry token made from an ID token
/// (its sealed ID token expired, or still valid and naming the same subject).
async fn expired_identity(
    signer: &Signer,
    authority: &dyn Authority,
    token: &SecretString,
) -> Option<UserInfo> {
    let Ok(claims) = signer.verify_registry_token_ignoring_expiry(token.expose_secret()) else {
        return authority.expired_identity(token).await;
    };
    let sealed = signer.unseal(&claims).ok()??;
    let user = match authority.authenticate(&sealed).await {
        Ok(Authn::User(user)) => user,
        _ => authority.expired_identity(&sealed).await?,
    };
    (user.name == claims.sub).then_some(user)
}

/// The repository a request is a step of a push to: blob HEAD/GET (does the registry have it),
/// an upload start or session, a manifest HEAD/PUT; `None` for anything else.
pub(super) fn push_step<'a>(method: &Method, route: &'a Route) -> Option<&'a Name> {
    match (route, method) {
        (Route::Blob { name, .. }, &Method::HEAD | &Method::GET)
        | (Route::UploadStart { name }, &Method::POST)
        | (Route::Upload { name, .. }, _)
        | (Route::Manifest { name, .. }, &Method::HEAD | &Method::PUT) => Some(name),
        _ => None,
    }
}
