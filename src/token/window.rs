//! Push windows (docs/behaviour.md §3): a push outlives the credential it started with, on every
//! replica, because the registry token the client holds carries the window, sealed.
//!
//! A registry token is issued to a credential that verified in full. When that credential
//! expires before the token would, and the token was asked for push on some repositories, the
//! token carries a [`PushWindow`]: those repositories, when the credential expires, the identity
//! it named, and when the window closes (`token.lifetime` past the credential's expiry). The
//! token's `exp` is then the window's close. Past the credential's expiry the token is taken
//! only for the steps of a push to those repositories (`server/push_window.rs` decides); its
//! sealed credential is still the one it came from, so no other credential of the same identity
//! gains anything. Sealing (AES-256-GCM under the key every replica shares) keeps the client
//! from reading or changing it, and the token's signature binds it to that one credential.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use secrecy::ExposeSecret;

use super::{Purpose, RegistryClaims, Signer, TokenError};
use crate::identity::UserInfo;

/// A push window, as a registry token carries it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PushWindow {
    /// The repositories the token was asked to push to.
    pub repositories: Vec<String>,
    /// When the credential the token carries expires (seconds since the epoch).
    pub credential_expiry: u64,
    /// When the window closes: `token.lifetime` past `credential_expiry`.
    pub closes: u64,
    /// Who the credential named when it verified in full.
    pub user: UserInfo,
}

impl PushWindow {
    /// The window of a token issued `now` for `lifetime` to `user`, whose credential expires at
    /// `credential_expiry`, asked to push to `repositories`: `None` when the credential outlives
    /// the token (its holder comes back with it while it is valid), when its expiry is unknown,
    /// or when nothing is pushed.
    pub fn at_issue(
        user: &UserInfo,
        credential_expiry: Option<u64>,
        repositories: Vec<String>,
        now: u64,
        lifetime: Duration,
    ) -> Option<PushWindow> {
        let credential_expiry = credential_expiry?;
        let lifetime = lifetime.as_secs();
        if repositories.is_empty() || credential_expiry >= now.saturating_add(lifetime) {
            return None;
        }
        Some(PushWindow {
            repositories,
            credential_expiry,
            closes: credential_expiry.saturating_add(lifetime),
            user: user.clone(),
        })
    }

    /// Whether a step of a push to `repository` at `now` is inside the window: the credential
    /// has expired (before that, its refusal is for another reason), the window has not closed,
    /// and the repository is one of the window's.
    pub fn admits(&self, repository: &str, now: u64) -> bool {
        now >= self.credential_expiry
            && now < self.closes
            && self.repositories.iter().any(|r| r == repository)
    }
}

impl Signer {
    /// `window`, sealed for a registry token's `win` claim.
    pub(super) fn seal_window(&self, window: &PushWindow) -> Result<String, TokenError> {
        let plain = serde_json::to_vec(window).map_err(|e| TokenError::Sign(e.to_string()))?;
        self.seal_for(Purpose::PushWindow, &plain)
    }

    /// The push window a verified registry token carries, if any.
    pub fn push_window(&self, claims: &RegistryClaims) -> Result<Option<PushWindow>, TokenError> {
        let Some(sealed) = &claims.win else {
            return Ok(None);
        };
        let plain = self.open_for(Purpose::PushWindow, sealed)?;
        serde_json::from_slice(plain.expose_secret())
            .map(Some)
            .map_err(|_| TokenError::Invalid("malformed token".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserInfo {
        UserInfo::authenticated("ci:main".into(), String::new(), vec![])
    }

    #[test]
    fn a_window_only_where_the_credential_ends_first_and_something_is_pushed() {
        let l = Duration::from_secs(600);
        let repos = || vec!["project-a/app".to_string()];
        assert!(PushWindow::at_issue(&user(), None, repos(), 1000, l).is_none());
        assert!(PushWindow::at_issue(&user(), Some(1600), repos(), 1000, l).is_none());
        assert!(PushWindow::at_issue(&user(), Some(1020), vec![], 1000, l).is_none());
        let w = PushWindow::at_issue(&user(), Some(1020), repos(), 1000, l).expect("a window");
        assert_eq!((w.credential_expiry, w.closes), (1020, 1620));
    }

    #[test]
    fn a_window_admits_its_repositories_between_expiry_and_close() {
        let w = PushWindow::at_issue(
            &user(),
            Some(1020),
            vec!["project-a/app".into()],
            1000,
            Duration::from_secs(600),
        )
        .expect("a window");
        assert!(
            !w.admits("project-a/app", 1010),
            "before the credential expires"
        );
        assert!(w.admits("project-a/app", 1020));
        assert!(w.admits("project-a/app", 1619));
        assert!(!w.admits("project-a/app", 1620), "closed");
        assert!(!w.admits("project-a/other", 1100), "another repository");
    }

    #[test]
    fn a_sealed_window_opens_only_as_a_window_of_the_same_key() {
        let signer = Signer::random();
        let w = PushWindow::at_issue(
            &user(),
            Some(super::super::now() + 5),
            vec!["project-a/app".into()],
            super::super::now(),
            Duration::from_secs(600),
        )
        .expect("a window");
        let credential = secrecy::SecretString::from("an API token".to_string());
        let issued = signer
            .issue_registry_token(&user(), Some(&credential), w.closes, Some(&w))
            .expect("signed");
        let claims = signer.verify_registry_token(&issued.token).expect("valid");
        assert_eq!(signer.push_window(&claims).expect("opens"), Some(w.clone()));
        // A credential's seal is not a window's, and another key opens neither.
        let mut swapped = claims.clone();
        swapped.win = swapped.cred.clone();
        assert!(signer.push_window(&swapped).is_err());
        assert!(Signer::random().push_window(&claims).is_err());
    }
}
