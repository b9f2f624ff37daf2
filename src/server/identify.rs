//! Who is calling (docs/behaviour.md §3, §10): anonymous, the holder of an API token (asked of
//! the authority), or the holder of one of regate's registry or refresh tokens.
//!
//! A registry or refresh token is never worth more than the API token it came from: it carries
//! that token sealed, and every use authenticates it again through the authority (and its
//! identity cache). So removing a user from a group, deleting a service account or namespace,
//! or the API token expiring, stops the tokens issued from it as fast as it stops the API token.

use http::{HeaderMap, header};
use secrecy::{ExposeSecret, SecretString};

use super::Gateway;
use crate::authority::{Authn, Authority, AuthorityError};
use crate::error::ApiError;
use crate::identity::{self, Caller, Credential, CredentialError};
use crate::proxy::PublicOrigin;
use crate::token::{RegistryClaims, Signer};

impl Gateway {
    /// Who is calling: anonymous, a registry token's identity, or an API token's (asked of the
    /// authority). A credential that is present but unusable is a 401 with `invalid_token`,
    /// unless the request is a step of a push to `push_to` made with a registry token whose
    /// push window admits it (`server/push_window.rs`).
    pub(super) async fn identify(
        &self,
        headers: &HeaderMap,
        public: &PublicOrigin,
        scope: Option<&str>,
        push_to: Option<&str>,
    ) -> Result<Caller, ApiError> {
        let header = headers.get(header::AUTHORIZATION);
        if header.is_some_and(|h| h.len() > identity::MAX_AUTHORIZATION_LEN) {
            return Err(ApiError::HeaderTooLarge);
        }
        let token = match identity::credential(header) {
            Ok(Credential::Anonymous) => return Ok(Caller::anonymous()),
            Ok(Credential::Token(token)) => token,
            Err(CredentialError::UnknownScheme) => {
                return Err(self.challenge(
                    public,
                    scope,
                    None,
                    &CredentialError::UnknownScheme.to_string(),
                ));
            }
            Err(e) => {
                return Err(self.challenge(public, scope, Some("invalid_request"), &e.to_string()));
            }
        };
        let identities = self.identities();
        let authn = match self.signer.verify_registry_token(token.expose_secret()) {
            Ok(claims) => match (identities.reauthenticate(&claims).await?, push_to) {
                (Err(reason), Some(repository)) => identities
                    .in_push_window(&claims, repository)
                    .await
                    .unwrap_or(Err(reason)),
                (authn, _) => authn,
            },
            // Not one of regate's registry tokens: an API token for the authority.
            Err(_) => identities.authenticate(token).await?,
        };
        authn.map_err(|reason| {
            self.challenge(
                public,
                scope,
                Some("invalid_token"),
                &format!("{reason}: log in again with a valid token"),
            )
        })
    }

    /// What authenticating needs: the key of registry tokens and the authority.
    pub(super) fn identities(&self) -> Identities<'_> {
        Identities {
            signer: &self.signer,
            authority: self.decisions.authority().as_ref(),
        }
    }
}

/// Authentication of API tokens and of regate's registry and refresh tokens, for the gateway
/// and the token endpoint alike.
#[derive(Clone, Copy)]
pub(super) struct Identities<'a> {
    signer: &'a Signer,
    authority: &'a dyn Authority,
}

impl Identities<'_> {
    /// Who an API token belongs to now; `Err(reason)` when the authority refuses it.
    pub(super) async fn authenticate(
        &self,
        token: SecretString,
    ) -> Result<Result<Caller, String>, AuthorityError> {
        Ok(match self.authority.authenticate(&token).await? {
            Authn::User(user) => Ok(Caller {
                user,
                token: Some(token),
            }),
            Authn::Invalid { reason } => Err(reason),
        })
    }

    /// Who a registry token whose credential is refused names inside its push window, for a
    /// step of a push to `repository` (see `push_window.rs`); `None` when no window admits it.
    pub(super) async fn in_push_window(
        &self,
        claims: &RegistryClaims,
        repository: &str,
    ) -> Option<Result<Caller, String>> {
        super::push_window::admit(self.signer, self.authority, claims, repository).await
    }

    /// Who the holder of a verified registry or refresh token is now: its sealed API token
    /// authenticated again. Anonymous tokens carry none and stay anonymous.
    pub(super) async fn reauthenticate(
        &self,
        claims: &RegistryClaims,
    ) -> Result<Result<Caller, String>, AuthorityError> {
        let credential = match self.signer.unseal(claims) {
            Ok(credential) => credential,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let Some(credential) = credential else {
            return Ok(if claims.sub == identity::ANONYMOUS {
                Ok(Caller::anonymous())
            } else {
                Err("malformed token".into())
            });
        };
        Ok(match self.authenticate(credential).await? {
            // The same subject, as the authority sees it now (groups, uid, scopes).
            Ok(caller) if caller.user.name == claims.sub => Ok(caller),
            Ok(_) => Err("the identity of this token has changed".into()),
            Err(reason) => Err(format!(
                "the API token behind this token is refused ({reason})"
            )),
        })
    }
}
