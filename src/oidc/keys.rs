//! An issuer's signing keys: its JWKS, found through discovery
//! (`ISSUER/.well-known/openid-configuration`, `jwks_uri`) unless `jwks_url` is given.
//!
//! Fetched on first use, and again behind the request that finds them older than
//! [`REFRESH_AFTER`]; a token whose `kid` is not in the set fetches it at once (an issuer
//! rotating its keys), but at most once per [`MIN_INTERVAL`] per issuer, so a flood of made-up
//! `kid`s cannot make regate hammer the issuer. When the issuer cannot be reached, the keys
//! fetched last keep verifying for [`KEEP_FOR`]; a `kid` they lack fails closed.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::upstream::auth::Http;

/// Keys older than this are fetched again when next used.
const REFRESH_AFTER: Duration = Duration::from_secs(300);
/// Keys fetched last are used this long while the issuer cannot be reached.
const KEEP_FOR: Duration = Duration::from_secs(24 * 3600);
/// At most one fetch per issuer this often.
const MIN_INTERVAL: Duration = Duration::from_secs(2);
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

struct Loaded {
    keys: Vec<Key>,
    fetched: Instant,
}

struct Key {
    kid: Option<String>,
    /// The `alg` the JWK names, if it names one.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

/// One issuer's keys.
pub(super) struct Keys {
    issuer: String,
    jwks_url: RwLock<Option<String>>,
    http: Http,
    loaded: RwLock<Option<Arc<Loaded>>>,
    /// When the last fetch started; one fetch at a time.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl Keys {
    pub(super) fn new(issuer: &str, jwks_url: Option<String>) -> Result<Keys, String> {
        Ok(Keys {
            issuer: issuer.trim_end_matches('/').to_string(),
            jwks_url: RwLock::new(jwks_url),
            http: Http::new(FETCH_TIMEOUT).map_err(|e| e.to_string())?,
            loaded: RwLock::new(None),
            last_fetch: tokio::sync::Mutex::new(None),
        })
    }

    fn current(&self) -> Option<Arc<Loaded>> {
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The key for a token signed with `alg` under `kid`.
    pub(super) async fn key(
        self: &Arc<Self>,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, String> {
        let current = self.current();
        if let Some(loaded) = current.as_ref().filter(|l| l.fetched.elapsed() < KEEP_FOR)
            && let Some(key) = find(loaded, kid, alg)
        {
            if loaded.fetched.elapsed() >= REFRESH_AFTER {
                // Stale: verify with it now and fetch the set behind the request, so an issuer
                // that is slow or down never holds requests up.
                let keys = self.clone();
                tokio::spawn(async move {
                    if let Err(error) = keys.fetch(false).await {
                        tracing::warn!(issuer = %keys.issuer, %error, "OIDC issuer's keys cannot be fetched; verifying with the keys fetched last");
                    }
                });
            }
            return Ok(key);
        }
        // Never fetched, or a kid not in the set: fetch (rate limited), look again.
        let fetched = self.fetch(true).await;
        let current = self.current();
        if let Some(loaded) = current.as_ref().filter(|l| l.fetched.elapsed() < KEEP_FOR)
            && let Some(key) = find(loaded, kid, alg)
        {
            return Ok(key);
        }
        Err(match fetched {
            Err(error) => format!(
                "the ID token's issuer cannot be reached for its keys ({error}), and no key kept matches"
            ),
            Ok(()) => "no key of the ID token's issuer matches its kid".to_string(),
        })
    }

    /// Fetches the key set unless another fetch started less than [`MIN_INTERVAL`] ago; waits
    /// for a fetch under way when `wait`, else leaves it to that one.
    async fn fetch(&self, wait: bool) -> Result<(), String> {
        let mut last = match self.last_fetch.try_lock() {
            Ok(last) => last,
            Err(_) if wait => self.last_fetch.lock().await,
            Err(_) => return Ok(()),
        };
        if last.is_some_and(|t| t.elapsed() < MIN_INTERVAL) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let url = self.jwks_url().await?;
        let body = self.get(&url).await?;
        let set: JwkSet =
            serde_json::from_slice(&body).map_err(|e| format!("{url} is not a JWK set ({e})"))?;
        let keys: Vec<Key> = set.keys.iter().filter_map(usable).collect();
        if keys.is_empty() {
            return Err(format!("{url} lists no signing key regate can use"));
        }
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(Loaded {
            keys,
            fetched: Instant::now(),
        }));
        Ok(())
    }

    /// `jwks_url`, or the discovery document's `jwks_uri` (remembered once found).
    async fn jwks_url(&self) -> Result<String, String> {
        if let Some(url) = self
            .jwks_url
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Ok(url);
        }
        let discovery = format!("{}/.well-known/openid-configuration", self.issuer);
        let body = self.get(&discovery).await?;
        let document: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("{discovery} is not JSON ({e})"))?;
        if document["issuer"].as_str().map(|i| i.trim_end_matches('/')) != Some(&self.issuer) {
            return Err(format!("{discovery} names another issuer"));
        }
        let url = document["jwks_uri"]
            .as_str()
            .ok_or_else(|| format!("{discovery} has no jwks_uri"))?
            .to_string();
        *self.jwks_url.write().unwrap_or_else(|e| e.into_inner()) = Some(url.clone());
        Ok(url)
    }

    async fn get(&self, url: &str) -> Result<Bytes, String> {
        let request = http::Request::get(url);
        let answer = self
            .http
            .exchange(request, Bytes::new(), url)
            .await
            .map_err(|e| e.to_string())?;
        if !answer.status.is_success() {
            return Err(format!("{url} answered {}", answer.status));
        }
        Ok(answer.body)
    }
}

/// A JWK as a key, when it is a signing key of an accepted kind.
fn usable(jwk: &Jwk) -> Option<Key> {
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(a.to_string().parse::<Algorithm>().ok()?),
    };
    if alg.is_some_and(|a| !super::ALGORITHMS.contains(&a)) {
        return None;
    }
    Some(Key {
        kid: jwk.common.key_id.clone(),
        alg,
        key: DecodingKey::from_jwk(jwk).ok()?,
    })
}

/// The key named `kid` (or the only key, for a token without one) that fits `alg`.
fn find(loaded: &Loaded, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
    let fits = |k: &&Key| k.alg.is_none_or(|a| a == alg);
    match kid {
        Some(kid) => loaded
            .keys
            .iter()
            .filter(fits)
            .find(|k| k.kid.as_deref() == Some(kid)),
        None => match loaded.keys.iter().filter(fits).collect::<Vec<_>>()[..] {
            [only] => Some(only),
            _ => None,
        },
    }
    .map(|k| k.key.clone())
}
