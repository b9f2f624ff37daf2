//! The tokens of token-server mode: JWTs a distribution registry verifies itself.
//!
//! Their claims follow the Docker token spec as distribution checks them: `iss` is the
//! registry's `auth.token.issuer`, `aud` its `service`, `exp`/`nbf`/`iat` bound the time the
//! token may start requests, and `access` lists what the holder may do, per repository. They are
//! signed by [`crate::token::keys::SigningKey`] with a key the registry trusts, never by the gateway's
//! own HS256 secret.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a token lets its holder do on one resource.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResourceActions {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The repository, or `catalog`.
    pub name: String,
    /// Granted actions: `pull`, `push`, `delete`, `*`.
    pub actions: Vec<String>,
}

/// Claims of a token-server token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DistributionClaims {
    /// The registry's `auth.token.issuer`.
    pub iss: String,
    /// The identity's user name (`system:anonymous` for anonymous callers).
    pub sub: String,
    /// The registry's `auth.token.service`.
    pub aud: String,
    /// Expires at (seconds since the epoch).
    pub exp: u64,
    /// Not valid before (seconds since the epoch).
    pub nbf: u64,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Unique token id.
    pub jti: String,
    /// What the token grants; empty for a token that only proves who its holder is.
    pub access: Vec<ResourceActions>,
}

impl DistributionClaims {
    /// Claims for `subject`, valid from now for `lifetime`.
    pub fn new(
        issuer: &str,
        service: &str,
        subject: &str,
        lifetime: Duration,
        access: Vec<ResourceActions>,
    ) -> Self {
        let iat = super::now();
        DistributionClaims {
            iss: issuer.to_string(),
            sub: subject.to_string(),
            aud: service.to_string(),
            exp: iat.saturating_add(lifetime.as_secs().max(1)),
            nbf: iat,
            iat,
            jti: super::random_id(),
            access,
        }
    }
}
