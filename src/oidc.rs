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
//! claim with `groups_prefix`; no claim value may be or become a reserved `system:` name, so
//! only the `kubernetes` preset, which maps `sub` = `system:serviceaccount:NS:NAME` to that
//! service account and its groups as the API server does, yields one. Verified tokens are
//! remembered (by their SHA-256) until they expire, and taken again only while the key that
//! verified them is still in the issuer's set, so a warm request costs a hash, a lookup and a
//! scan of a few keys.
//!
//! The outcome is typed: `None` (not an ID token of ours), [`Unverified::Refused`] (401, a
//! failed login) or [`Unverified::Unreachable`] (the issuer's keys cannot be had: an outage,
//! 503 with `Retry-After`, counted against no one).

mod keys;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, Validation};
use moka::Expiry;
use moka::future::Cache;
use sha2::{Digest, Sha256};

use crate::identity::{self, UserInfo};
use crate::upstream::auth::AuthError;

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

/// The prefix of the names Kubernetes and regate reserve for themselves.
const RESERVED: &str = "system:";
/// Most characters of a claim value quoted in a refusal.
const QUOTED: usize = 80;

/// Why an ID token of a configured issuer is not taken.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Unverified {
    /// The token is not valid, or names no user regate takes from claims: a failed login. The
    /// reason is safe to show the client and to log (it never holds the token).
    #[error("{0}")]
    Refused(String),
    /// The token could not be checked: the issuer's keys cannot be had.
    #[error(transparent)]
    Unreachable(#[from] IssuerUnreachable),
}

/// An issuer whose keys cannot be fetched, none kept matching a token's `kid`. The message
/// names the issuer (as the token does) and is safe to show; the cause, with addresses and raw
/// errors, is for the log.
#[derive(Clone, Debug, thiserror::Error)]
#[error("the ID token's issuer {issuer} cannot be reached for its keys; retry later")]
pub struct IssuerUnreachable {
    issuer: String,
    #[source]
    cause: keys::KeysError,
}

/// Issuers whose keys cannot be had, for `/readyz`: the message says only that, never an
/// address or a raw error; [`IssuersUnready::detail`] is for the log.
#[derive(Debug, thiserror::Error)]
#[error("oidc issuer unreachable")]
pub struct IssuersUnready {
    detail: String,
}

impl IssuersUnready {
    /// Each issuer and why its keys cannot be had, for the log.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

/// What became of a token.
#[derive(Clone, Debug)]
struct Verified {
    user: UserInfo,
    /// Its `exp`, seconds since the epoch.
    expires: u64,
    /// The key that verified it: the token is taken again only while the issuer lists it.
    key: keys::KeyRef,
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
    pub fn new(settings: &[IssuerSettings]) -> Result<Issuers, AuthError> {
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
    /// all but its expiry verifies (signature, issuer, audience, `nbf`), or why not. Never
    /// cached.
    pub async fn after_expiry(&self, token: &str) -> Option<Result<UserInfo, Unverified>> {
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
    /// why not.
    pub async fn verify(&self, token: &str) -> Option<Result<UserInfo, Unverified>> {
        let iss = unverified_issuer(token)?;
        let issuer = self.issuers.iter().find(|i| i.settings.issuer == iss)?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(verified) = self.verified.get(&digest).await {
            if issuer.keys.holds(&verified.key) {
                return Some(Ok(verified.user));
            }
            // Its key left the issuer's set: verified again below, and refused with the key.
            self.verified.invalidate(&digest).await;
        }
        Some(match issuer.check(token, true).await {
            Ok(verified) => {
                let user = verified.user.clone();
                self.verified.insert(digest, verified).await;
                Ok(user)
            }
            Err(why) => Err(why),
        })
    }

    /// `Err` when the keys of an issuer cannot be had: its last fetch failed, and it keeps no
    /// keys or only keys it could not refresh (`oidc/keys.rs`).
    pub fn ready(&self) -> Result<(), IssuersUnready> {
        let failing: Vec<String> = self
            .issuers
            .iter()
            .filter_map(|i| {
                let error = i.keys.unready()?;
                Some(format!("{}: {error}", i.settings.issuer))
            })
            .collect();
        match failing.is_empty() {
            true => Ok(()),
            false => Err(IssuersUnready {
                detail: failing.join("; "),
            }),
        }
    }
}

impl Issuer {
    /// Verifies `token`, its expiry only when `expiry` is set.
    async fn check(&self, token: &str, expiry: bool) -> Result<Verified, Unverified> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| match header_alg(token) {
            // `none` and the like are no algorithm to the parser.
            Some(alg) => Unverified::Refused(format!(
                "ID token algorithm {alg:?} is not accepted (RS256, ES256, PS256 or EdDSA)"
            )),
            None => Unverified::Refused("malformed ID token".to_string()),
        })?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(Unverified::Refused(format!(
                "ID token algorithm {:?} is not accepted (RS256, ES256, PS256 or EdDSA)",
                header.alg
            )));
        }
        let (key, key_ref) = self
            .keys
            .key(header.kid.as_deref(), header.alg)
            .await
            .map_err(|missing| match missing {
                keys::Missing::NotListed => Unverified::Refused(
                    "no key of the ID token's issuer matches its kid (a retired or unknown key)"
                        .into(),
                ),
                keys::Missing::Unreachable(cause) => Unverified::Unreachable(IssuerUnreachable {
                    issuer: self.settings.issuer.clone(),
                    cause,
                }),
            })?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&self.settings.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.validate_exp = expiry;
        validation.leeway = LEEWAY.as_secs();
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map_err(|e| Unverified::Refused(refusal(&e, &self.settings)))?;
        let claims = data.claims;
        let now = crate::token::now();
        if claims["iat"]
            .as_u64()
            .is_some_and(|iat| iat > now + LEEWAY.as_secs())
        {
            return Err(Unverified::Refused(
                "ID token issued in the future (iat): check the clocks".into(),
            ));
        }
        let expires = claims["exp"].as_u64().unwrap_or(0);
        let user = map(&self.settings.mapping, &claims).map_err(Unverified::Refused)?;
        Ok(Verified {
            user,
            expires,
            key: key_ref,
        })
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

/// The user `claims` name under `mapping`. Outside the `kubernetes` preset no claim value may
/// be, or become with its prefix, a reserved `system:` name: the token is refused, naming it.
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
            let user = unreserved(username_claim, "user", name, username_prefix)?;
            let groups = match groups_claim {
                None => Vec::new(),
                Some(claim) => {
                    let values: Vec<&str> = match &claims[claim.as_str()] {
                        serde_json::Value::Array(items) => {
                            items.iter().filter_map(|g| g.as_str()).collect()
                        }
                        serde_json::Value::String(g) => vec![g.as_str()],
                        _ => Vec::new(),
                    };
                    values
                        .into_iter()
                        .map(|g| unreserved(claim, "group", g, groups_prefix))
                        .collect::<Result<_, _>>()?
                }
            };
            Ok(UserInfo::authenticated(user, String::new(), groups))
        }
    }
}

/// `prefix` + `value` of `claim`, unless the value or the name it makes is reserved
/// (`system:`): only Kubernetes names those users and groups, and claims are not Kubernetes.
fn unreserved(claim: &str, kind: &str, value: &str, prefix: &str) -> Result<String, String> {
    let name = format!("{prefix}{value}");
    let quoted: String = value.chars().take(QUOTED).collect();
    if value.starts_with(RESERVED) {
        return Err(format!(
            "ID token {claim} claim value {quoted:?} is a reserved {RESERVED} {kind}: claims \
             never name one (a cluster's service-account tokens take preset: kubernetes)"
        ));
    }
    if name.starts_with(RESERVED) {
        let name: String = name.chars().take(QUOTED).collect();
        return Err(format!(
            "ID token {claim} claim value {quoted:?} becomes the reserved {RESERVED} {kind} \
             {name:?} with its prefix: claims never name one"
        ));
    }
    Ok(name)
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
