//! The JWTs regate signs: API tokens (the password of `docker login`), registry tokens (from the
//! token endpoint) and refresh tokens (`offline_token=true`).
//!
//! All are HS256 under one secret kept in the state directory (`signing.key`, mode 0600) and
//! told apart by their audience, so one kind can never be used as another. Keys and validations
//! are built once in [`Signer`] and reused for every request.
//!
//! A registry or refresh token is never worth more than the API token it came from
//! (docs/behaviour.md §10): it carries that API token sealed (AES-256-GCM under a key derived
//! from the same secret, [`seal`]), and every use authenticates the API token again, so the
//! identity is the authority's current one and the token dies with its credential, but for
//! the push window a registry token may carry ([`window`]), which takes only the steps of that
//! push past it. The web console's session cookies are sealed the same way, for a purpose of
//! their own.
//!
//! Clients send the same token with every request, so a token whose signature checked out is
//! remembered by its SHA-256 for a few minutes ([`Verified`]): a repeat costs a hash and a
//! lookup instead of base64, JSON and HMAC, and its expiry is still checked on every use. Only
//! good tokens are remembered, and a new key (a reload or rotation) starts with none.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::{Deserialize, Serialize};

use crate::identity::UserInfo;

pub mod distribution;
pub mod keys;
pub mod seal;
pub mod window;

pub use seal::Purpose;

/// The `iss` of every token regate signs.
pub const ISSUER: &str = "regate";
/// Audience of API tokens.
pub const API_AUDIENCE: &str = "regate/api";
/// Audience of registry tokens.
pub const REGISTRY_AUDIENCE: &str = "regate/registry";
/// Audience of refresh tokens.
pub const REFRESH_AUDIENCE: &str = "regate/refresh";

/// Bytes of the HS256 secret.
const SECRET_LEN: usize = 32;

/// Why a token could not be signed or verified, or the key not read.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token is malformed, mis-signed, expired or of another kind. Never contains the token.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The signing key file could not be read or written.
    #[error("signing key {path}: {error}")]
    Key {
        /// The key file.
        path: String,
        /// The I/O or decoding failure; in the message, not the error chain, so `{:#}` says it
        /// once.
        error: std::io::Error,
    },
    /// Signing failed (should not happen with a valid key).
    #[error("cannot sign token: {0}")]
    Sign(String),
}

/// Claims of an API token: who it belongs to.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiClaims {
    /// Issuer, [`ISSUER`].
    pub iss: String,
    /// Audience, [`API_AUDIENCE`].
    pub aud: String,
    /// User name, e.g. `system:serviceaccount:ns:builder` or `alice`.
    pub sub: String,
    /// The uid of the service account or user; a recreated object has another uid.
    pub uid: String,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expires at (seconds since the epoch).
    pub exp: u64,
    /// Unique token id.
    pub jti: String,
}

/// Claims of a registry or refresh token: the API token it came from, sealed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RegistryClaims {
    /// Issuer, [`ISSUER`].
    pub iss: String,
    /// Audience, [`REGISTRY_AUDIENCE`] or [`REFRESH_AUDIENCE`].
    pub aud: String,
    /// User name when issued, for logs; the identity in force comes from `cred`.
    pub sub: String,
    /// The API token, sealed (see `Signer::seal`); absent for anonymous tokens only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cred: Option<String>,
    /// The push window a registry token carries, sealed (see [`window::PushWindow`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub win: Option<String>,
    /// Issued at.
    pub iat: u64,
    /// Expires at.
    pub exp: u64,
    /// Unique token id.
    pub jti: String,
}

/// A token and when it expires.
#[derive(Debug)]
pub struct Issued {
    /// The compact JWT.
    pub token: String,
    /// Issued at (seconds since the epoch).
    pub issued_at: u64,
    /// Expires at (seconds since the epoch).
    pub expires_at: u64,
}

/// Signs and verifies regate's tokens with one secret.
pub struct Signer {
    /// Seals the API token inside registry and refresh tokens, and console sessions.
    sealing: seal::Seals,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Any of the three audiences: what a token is, is read from the claims it verified with.
    any: Validation,
    /// As `any`, but for `exp`: only to tell whose an expired token is.
    expired: Validation,
    /// Tokens whose signature verified under this key, by SHA-256.
    verified: moka::sync::Cache<[u8; 32], Arc<Verified>>,
}

/// How many verified tokens a signer remembers, and for how long at most.
const VERIFIED_MAX: u64 = 10_000;
const VERIFIED_TTL: Duration = Duration::from_secs(300);

/// Whether a token's `exp` is checked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Checked,
    /// Only for what an authority can tell of an expired credential (push windows).
    Ignored,
}

/// The claims of a token whose signature and issuer verified: any of the three kinds, told
/// apart by `aud`.
#[derive(Clone, Debug, Deserialize)]
struct Verified {
    iss: String,
    aud: String,
    sub: String,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    cred: Option<String>,
    #[serde(default)]
    win: Option<String>,
    iat: u64,
    exp: u64,
    jti: String,
}

impl Verified {
    /// The claims if the token is of `audience` and, with `Expiry::Checked`, has not expired
    /// (as jsonwebtoken checks `exp`, with no leeway).
    fn of(&self, audience: &str, expiry: Expiry) -> Result<&Verified, TokenError> {
        if self.aud != audience {
            return Err(TokenError::Invalid("token is of another kind".into()));
        }
        if expiry == Expiry::Checked && self.exp < now() {
            return Err(TokenError::Invalid("token expired".into()));
        }
        Ok(self)
    }

    fn api(&self, expiry: Expiry) -> Result<ApiClaims, TokenError> {
        let claims = self.of(API_AUDIENCE, expiry)?;
        Ok(ApiClaims {
            iss: claims.iss.clone(),
            aud: claims.aud.clone(),
            sub: claims.sub.clone(),
            uid: claims
                .uid
                .clone()
                .ok_or_else(|| TokenError::Invalid("malformed token".into()))?,
            iat: claims.iat,
            exp: claims.exp,
            jti: claims.jti.clone(),
        })
    }

    fn identity(&self, audience: &str) -> Result<RegistryClaims, TokenError> {
        let claims = self.of(audience, Expiry::Checked)?;
        Ok(RegistryClaims {
            iss: claims.iss.clone(),
            aud: claims.aud.clone(),
            sub: claims.sub.clone(),
            cred: claims.cred.clone(),
            win: claims.win.clone(),
            iat: claims.iat,
            exp: claims.exp,
            jti: claims.jti.clone(),
        })
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer { .. }")
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn validation(audiences: &[&str]) -> Validation {
    let mut v = Validation::new(Algorithm::HS256);
    v.set_audience(audiences);
    v.set_issuer(&[ISSUER]);
    v.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    // One clock signs and checks: an expired token is expired now, not a minute later.
    v.leeway = 0;
    v
}

fn random_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Signer {
    /// A signer for a raw secret.
    pub fn from_secret(secret: &[u8]) -> Self {
        Signer {
            sealing: seal::Seals::derive(secret),
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            any: validation(&[API_AUDIENCE, REGISTRY_AUDIENCE, REFRESH_AUDIENCE]),
            expired: Validation {
                validate_exp: false,
                ..validation(&[API_AUDIENCE, REGISTRY_AUDIENCE, REFRESH_AUDIENCE])
            },
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_MAX)
                .time_to_live(VERIFIED_TTL)
                .build(),
        }
    }

    /// A signer with a fresh random key, known to this process only.
    pub fn random() -> Self {
        let mut secret = [0u8; SECRET_LEN];
        rand::fill(&mut secret);
        Self::from_secret(&secret)
    }

    /// Reads the key at `path`, creating it (mode 0600, atomically, once even under concurrent
    /// creators) when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, TokenError> {
        let key_err = |error| TokenError::Key {
            path: path.display().to_string(),
            error,
        };
        if !path.exists() {
            let mut secret = [0u8; SECRET_LEN];
            rand::fill(&mut secret);
            let encoded = base64::engine::general_purpose::STANDARD.encode(secret);
            // Another process may win the race; then its key is the key.
            crate::fs::create_atomic(path, encoded.as_bytes(), 0o600).map_err(key_err)?;
        }
        warn_if_readable_by_others(path);
        let text = std::fs::read_to_string(path).map_err(key_err)?;
        let secret = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| key_err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        if secret.len() < SECRET_LEN {
            return Err(key_err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "key is shorter than 32 bytes; delete the file to create a new one (this revokes every token)",
            )));
        }
        Ok(Self::from_secret(&secret))
    }

    fn sign<T: Serialize>(&self, claims: &T) -> Result<String, TokenError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| TokenError::Sign(e.to_string()))
    }

    /// An API token for user name `sub` (uid `uid`) valid for `lifetime`.
    pub fn issue_api_token(
        &self,
        sub: &str,
        uid: &str,
        lifetime: Duration,
    ) -> Result<Issued, TokenError> {
        let iat = now();
        let exp = iat.saturating_add(lifetime.as_secs().max(1));
        let claims = ApiClaims {
            iss: ISSUER.into(),
            aud: API_AUDIENCE.into(),
            sub: sub.into(),
            uid: uid.into(),
            iat,
            exp,
            jti: random_id(),
        };
        Ok(Issued {
            token: self.sign(&claims)?,
            issued_at: iat,
            expires_at: exp,
        })
    }

    /// Checks an API token's signature, audience and expiry.
    pub fn verify_api_token(&self, token: &str) -> Result<ApiClaims, TokenError> {
        self.verified(token)?.api(Expiry::Checked)
    }

    /// Checks an API token's signature and audience but not its expiry: only to tell whose an
    /// expired token is, for a push that started while it was valid (docs/behaviour.md §3).
    pub fn verify_api_token_ignoring_expiry(&self, token: &str) -> Result<ApiClaims, TokenError> {
        decode::<Verified>(token, &self.decoding, &self.expired)?.api(Expiry::Ignored)
    }

    /// The claims of `token` if its signature and issuer verify under this key (remembered, so
    /// a repeat skips the decoding); its kind and expiry are for the caller to check.
    fn verified(&self, token: &str) -> Result<Arc<Verified>, TokenError> {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if let Some(verified) = self.verified.get(&digest) {
            return Ok(verified);
        }
        let verified = Arc::new(decode::<Verified>(token, &self.decoding, &self.any)?);
        self.verified.insert(digest, verified.clone());
        Ok(verified)
    }

    /// `plain` sealed for `purpose` under this key: text only a signer with the same secret
    /// opens, and only for the same purpose ([`seal`]).
    pub fn seal_for(&self, purpose: Purpose, plain: &[u8]) -> Result<String, TokenError> {
        self.sealing.seal(purpose, plain)
    }

    /// What `sealed` holds, if [`Signer::seal_for`] made it for `purpose` under this key and it
    /// was not altered; `Err` (never saying more) for anything else.
    pub fn open_for(&self, purpose: Purpose, sealed: &str) -> Result<SecretSlice<u8>, TokenError> {
        self.sealing.open(purpose, sealed)
    }

    /// The API token a verified registry or refresh token carries; `None` for anonymous ones.
    pub fn unseal(&self, claims: &RegistryClaims) -> Result<Option<SecretString>, TokenError> {
        let Some(sealed) = &claims.cred else {
            return Ok(None);
        };
        let invalid = || TokenError::Invalid("malformed token".into());
        let purpose = credential_purpose(&claims.aud).ok_or_else(invalid)?;
        let plain = self.open_for(purpose, sealed).map_err(|_| invalid())?;
        let token = std::str::from_utf8(plain.expose_secret()).map_err(|_| invalid())?;
        Ok(Some(SecretString::from(token)))
    }

    fn issue_identity(
        &self,
        user: &UserInfo,
        credential: Option<&SecretString>,
        audience: &str,
        expires_at: u64,
        window: Option<&window::PushWindow>,
    ) -> Result<Issued, TokenError> {
        let iat = now();
        let claims = RegistryClaims {
            iss: ISSUER.into(),
            aud: audience.into(),
            sub: user.name.clone(),
            cred: credential
                .map(|c| {
                    let purpose = credential_purpose(audience)
                        .ok_or_else(|| TokenError::Sign(format!("no credential in {audience}")))?;
                    self.seal_for(purpose, c.expose_secret().as_bytes())
                })
                .transpose()?,
            win: window.map(|w| self.seal_window(w)).transpose()?,
            iat,
            exp: expires_at.max(iat + 1),
            jti: random_id(),
        };
        Ok(Issued {
            token: self.sign(&claims)?,
            issued_at: iat,
            expires_at: claims.exp,
        })
    }

    /// A registry token for `user`, proven by `credential` (its API token; `None` only for
    /// anonymous), valid until `expires_at`, carrying the push `window` if one is given.
    pub fn issue_registry_token(
        &self,
        user: &UserInfo,
        credential: Option<&SecretString>,
        expires_at: u64,
        window: Option<&window::PushWindow>,
    ) -> Result<Issued, TokenError> {
        self.issue_identity(user, credential, REGISTRY_AUDIENCE, expires_at, window)
    }

    /// Checks a registry token; `Err` for anything else, an API token included.
    pub fn verify_registry_token(&self, token: &str) -> Result<RegistryClaims, TokenError> {
        self.verified(token)?.identity(REGISTRY_AUDIENCE)
    }

    /// A refresh token for `user`, proven by `credential`, that expires at `expires_at`.
    pub fn issue_refresh_token(
        &self,
        user: &UserInfo,
        credential: &SecretString,
        expires_at: u64,
    ) -> Result<Issued, TokenError> {
        self.issue_identity(user, Some(credential), REFRESH_AUDIENCE, expires_at, None)
    }

    /// Checks a refresh token.
    pub fn verify_refresh_token(&self, token: &str) -> Result<RegistryClaims, TokenError> {
        self.verified(token)?.identity(REFRESH_AUDIENCE)
    }
}

/// What the credential inside a token of `audience` is sealed for.
fn credential_purpose(audience: &str) -> Option<Purpose> {
    match audience {
        REGISTRY_AUDIENCE => Some(Purpose::RegistryCredential),
        REFRESH_AUDIENCE => Some(Purpose::RefreshCredential),
        _ => None,
    }
}

/// When a JWT says it expires (seconds since the epoch, fractions kept), read without checking
/// its signature: only to bound what is derived from a token some authority has accepted, never
/// to trust it.
pub fn unverified_expiry(token: &str) -> Option<f64> {
    #[derive(Deserialize)]
    struct Claims {
        exp: Option<f64>,
    }
    let payload = token.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let exp = serde_json::from_slice::<Claims>(&json).ok()?.exp?;
    (exp.is_finite() && exp >= 0.0).then_some(exp)
}

fn decode<T: serde::de::DeserializeOwned>(
    token: &str,
    key: &DecodingKey,
    validation: &Validation,
) -> Result<T, TokenError> {
    use jsonwebtoken::errors::ErrorKind;
    jsonwebtoken::decode::<T>(token, key, validation)
        .map(|d| d.claims)
        .map_err(|e| {
            let reason = match e.kind() {
                ErrorKind::ExpiredSignature => "token expired",
                ErrorKind::InvalidSignature => "token signed by another key",
                ErrorKind::InvalidAudience => "token is of another kind",
                ErrorKind::InvalidIssuer => "token issued by someone else",
                _ => "malformed token",
            };
            TokenError::Invalid(reason.into())
        })
}

/// Warns (in the log) when the key file at `path` may be read by users other than its owner:
/// whoever reads it can mint any token.
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            "signing key {} is readable by other users (mode {:o}): whoever reads it can make \
             any token; run: chmod 600 {}",
            path.display(),
            meta.permissions().mode() & 0o777,
            crate::shell::quote_path(path)
        );
    }
}

#[cfg(test)]
mod tests;
