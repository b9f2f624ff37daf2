//! OIDC issuers as identities (`identity.oidc`): ID tokens from CI systems (GitHub Actions,
//! GitLab CI, Tekton) and a cluster's projected service-account tokens, verified offline against
//! the issuer's published keys, so no TokenReview and no pull secret is needed.
//!
//! A token is taken to be an ID token when its (unverified) `iss` is a configured issuer; then
//! it is verified and nothing else: a token that fails is refused, never handed on to the
//! authority. Verification: an allow-listed algorithm (RS256, ES256, PS256, EdDSA; never `none`
//! or HS*), a key of the issuer's JWKS (`oidc/keys.rs`: discovery, cache, refresh on an unknown
//! `kid`), `iss`, `aud` (one of the configured audiences), `exp`, `nbf` and `iat` with a small
//! leeway. The claims then map to a user: `username_prefix` + the username claim, and the groups
//! claim with `groups_prefix`; the `kubernetes` preset maps `sub` =
//! `system:serviceaccount:NS:NAME` to that service account and its groups, as the API server
//! does. Verified tokens are remembered (by their SHA-256) until they expire, so a warm request
//! costs a hash and a lookup.

mod keys;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, Validation};
use moka::Expiry;
use moka::future::Cache;
use sha2::{Digest, Sha256};

use crate::identity::{self, UserInfo};

/// The algorithms an ID token may be signed with.
pub const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::RS256,
    Algorithm::ES256,
    Algorithm::PS256,
    Algorithm::EdDSA,
];
/// Clock skew allowed on `exp`, `nbf` and `iat`.
const LEEWAY: Duration = Duration::from_secs(30);
/// Most verified tokens remembered.
const REMEMBERED: u64 = 100_000;

/// One configured issuer, validated (see docs/behaviour.md §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerSettings {
    /// The `iss` its tokens carry, an `https://` URL (`http://` on loopback only).
    pub issuer: String,
    /// Tokens must name one of these in `aud`.
    pub audiences: Vec<String>,
    /// Where its keys are; `None`: from `ISSUER/.well-known/openid-configuration`.
    pub jwks_url: Option<String>,
    /// How its claims become a user.
    pub mapping: Mapping,
}

/// How a verified token's claims become a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mapping {
    /// `sub` = `system:serviceaccount:NS:NAME`, that service account with its groups.
    Kubernetes,
    /// A user named by a claim, with groups from another.
    Claims {
        /// The claim naming the user, e.g. `sub`.
        username_claim: String,
        /// Put before it, e.g. `github:`, so no token can name a user of another source.
        username_prefix: String,
        /// The claim listing groups, if any.
        groups_claim: Option<String>,
        /// Put before each group.
        groups_prefix: String,
    },
}

/// What became of a token.
#[derive(Clone, Debug)]
struct Verified {
    user: UserInfo,
    /// Its `exp`, seconds since the epoch.
    expires: u64,
}

struct UntilExpiry;

impl Expiry<[u8; 32], Verified> for UntilExpiry {
    fn expire_after_create(&self, _: &[u8; 32], v: &Verified, _: Instant) -> Option<Duration> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Some(Duration::from_secs(v.expires.saturating_sub(now)))
    }
}

/// The configured issuers, their keys, and the tokens verified lately.
pub struct Issuers {
    issuers: Vec<Issuer>,
    verified: Cache<[u8; 32], Verified>,
}

struct Issuer {
    settings: IssuerSettings,
    keys: Arc<keys::Keys>,
}

impl Issuers {
    /// The issuers of `settings`; keys are fetched when first needed.
    pub fn new(settings: &[IssuerSettings]) -> Result<Issuers, String> {
        let mut issuers = Vec::with_capacity(settings.len());
        for s in settings {
            issuers.push(Issuer {
                keys: Arc::new(keys::Keys::new(&s.issuer, s.jwks_url.clone())?),
                settings: s.clone(),
            });
        }
        Ok(Issuers {
            issuers,
            verified: Cache::builder()
                .max_capacity(REMEMBERED)
                .expire_after(UntilExpiry)
                .build(),
        })
    }

    /// `None` when `token` is not an ID token of a configured issuer; else who it names when
    /// all but its expiry verifies (signature, issuer, audience, `nbf`), or why it is refused.
    /// Never cached.
    pub async fn after_expiry(&self, token: &str) -> Option<Result<UserInfo, String>> {
        let iss = unverified_issuer(token)?;
        let issuer = self.issuers.iter().find(|i| i.settings.issuer == iss)?;
        Some(
            issuer
                .check(token, false)
                .await
                .map(|verified| verified.user),
        )
    }

    /// `None` when `token` is not an ID token of a configured issuer; else who it names, or
    /// why it is refused.
    pub async fn verify(&self, token: &str) -> Option<Result<UserInfo, String>> {
        let iss = unverified_issuer(token)?;
        let issuer = self.issuers.iter().find(|i| i.settings.issuer == iss)?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(verified) = self.verified.get(&digest).await {
            return Some(Ok(verified.user));
        }
        Some(match issuer.check(token, true).await {
            Ok(verified) => {
                let user = verified.user.clone();
                self.verified.insert(digest, verified).await;
                Ok(user)
            }
            Err(reason) => Err(reason),
        })
    }
}

impl Issuer {
    /// Verifies `token`, its expiry only when `expiry` is set.
    async fn check(&self, token: &str, expiry: bool) -> Result<Verified, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| match header_alg(token) {
            // `none` and the like are no algorithm to the parser.
            Some(alg) => {
                format!("ID token algorithm {alg:?} is not accepted (RS256, ES256, PS256 or EdDSA)")
            }
            None => "malformed ID token".to_string(),
        })?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(format!(
                "ID token algorithm {:?} is not accepted (RS256, ES256, PS256 or EdDSA)",
                header.alg
            ));
        }
        let key = self.keys.key(header.kid.as_deref(), header.alg).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&self.settings.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.validate_exp = expiry;
        validation.leeway = LEEWAY.as_secs();
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map_err(|e| refusal(&e, &self.settings))?;
        let claims = data.claims;
        let now = crate::token::now();
        if claims["iat"]
            .as_u64()
            .is_some_and(|iat| iat > now + LEEWAY.as_secs())
        {
            return Err("ID token issued in the future (iat): check the clocks".into());
        }
        let expires = claims["exp"].as_u64().unwrap_or(0);
        let user = map(&self.settings.mapping, &claims)?;
        Ok(Verified { user, expires })
    }
}

/// Why `error` refuses a token, for the client and the log (never the token).
fn refusal(error: &jsonwebtoken::errors::Error, s: &IssuerSettings) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => "ID token expired: mint a new one".into(),
        ErrorKind::ImmatureSignature => "ID token not valid yet (nbf)".into(),
        ErrorKind::InvalidAudience => format!(
            "ID token audience is not {}: mint it for that audience",
            s.audiences.join(" or ")
        ),
        ErrorKind::InvalidIssuer => "ID token issuer mismatch".into(),
        ErrorKind::InvalidSignature => "ID token signature does not verify".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("ID token has no {claim} claim"),
        ErrorKind::InvalidAlgorithm => "ID token algorithm does not fit its key".into(),
        _ => "malformed ID token".into(),
    }
}

/// The user `claims` name under `mapping`.
fn map(mapping: &Mapping, claims: &serde_json::Value) -> Result<UserInfo, String> {
    match mapping {
        Mapping::Kubernetes => {
            let sub = claims["sub"].as_str().unwrap_or_default();
            if identity::service_account_of(sub).is_none() {
                return Err("ID token sub is not system:serviceaccount:NAMESPACE:NAME".into());
            }
            let uid = claims["kubernetes.io"]["serviceaccount"]["uid"]
                .as_str()
                .unwrap_or_default();
            Ok(UserInfo::authenticated(
                sub.to_string(),
                uid.to_string(),
                vec![],
            ))
        }
        Mapping::Claims {
            username_claim,
            username_prefix,
            groups_claim,
            groups_prefix,
        } => {
            let name = claims[username_claim.as_str()]
                .as_str()
                .filter(|n| !n.is_empty())
                .ok_or_else(|| format!("ID token has no {username_claim} claim"))?;
            let groups = match groups_claim {
                None => Vec::new(),
                Some(claim) => match &claims[claim.as_str()] {
                    serde_json::Value::Array(items) => items
                        .iter()
                        .filter_map(|g| g.as_str())
                        .map(|g| format!("{groups_prefix}{g}"))
                        .collect(),
                    serde_json::Value::String(g) => vec![format!("{groups_prefix}{g}")],
                    _ => Vec::new(),
                },
            };
            Ok(UserInfo::authenticated(
                format!("{username_prefix}{name}"),
                String::new(),
                groups,
            ))
        }
    }
}

/// The `alg` a JWT's header names, whatever it is, for the refusal's message.
fn header_alg(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let alg = value["alg"].as_str()?;
    Some(alg.chars().take(16).collect())
}

/// The `iss` of a JWT, read without verifying anything: only to pick the issuer.
fn unverified_issuer(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || payload.len() > 16 * 1024 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    serde_json::from_slice::<Iss>(&bytes).ok()?.iss
}

/// A shared handle, as the gateway and `authority serve` keep it.
pub type SharedIssuers = Arc<Issuers>;

#[cfg(test)]
mod tests;
