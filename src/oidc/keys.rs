//! An issuer's signing keys: its JWKS, found through discovery
//! (`ISSUER/.well-known/openid-configuration`, `jwks_uri`) unless `jwks_url` is given.
//!
//! Fetched on first use, and again behind the request that finds them older than
//! [`REFRESH_AFTER`] (the use of a remembered token included); a token whose `kid` is not in
//! the set fetches it at once (an issuer rotating its keys), but at most once per
//! [`MIN_INTERVAL`] per issuer, so a flood of made-up `kid`s cannot make regate hammer the
//! issuer. One fetch per issuer is in flight at a time, on a task of its own: every request that
//! needs it waits for that one and shares its outcome, so a hanging issuer holds them all up for
//! one [`FETCH_TIMEOUT`] (discovery and key set together), not one each, and a request that gives
//! up ends it for no other. Answers are read up to 1 MiB (the HTTP client's cap).
//!
//! When the issuer cannot be reached, the keys fetched last keep verifying for [`KEEP_FOR`]; a
//! `kid` they lack cannot be checked, which the caller answers as an outage, never as a refusal.
//! Each key carries a fingerprint of its public parameters, so a token verified once is taken
//! again only while the same key is still listed.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::upstream::auth::{AuthError, Http};

/// Keys older than this are fetched again when next used.
const REFRESH_AFTER: Duration = Duration::from_secs(300);
/// Keys fetched last are used this long while the issuer cannot be reached.
const KEEP_FOR: Duration = Duration::from_secs(24 * 3600);
/// At most one fetch per issuer this often.
const MIN_INTERVAL: Duration = Duration::from_secs(2);
/// How long one fetch may take, discovery included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an issuer's keys could not be fetched. For the log and as the cause of a 503: the text
/// names addresses and raw errors, so it is never the client's message.
#[derive(Clone, Debug, thiserror::Error)]
pub(super) enum KeysError {
    /// The exchange failed: no connection, no answer in time, a body past the cap.
    #[error("{0}")]
    Exchange(String),
    /// The issuer answered, but not 2xx.
    #[error("{url} answered {status}")]
    Status {
        /// What was asked.
        url: String,
        /// What it answered.
        status: http::StatusCode,
    },
    /// The answer is not the document asked for.
    #[error("{url} is not {what} ({detail})")]
    Malformed {
        /// What was asked.
        url: String,
        /// What it should have been.
        what: &'static str,
        /// The parser's complaint.
        detail: String,
    },
    /// The discovery document names another issuer, or no `jwks_uri`.
    #[error("{url} {problem}")]
    Discovery {
        /// The discovery document's address.
        url: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The set lists no key regate can verify with.
    #[error("{url} lists no signing key regate can use")]
    NoUsableKey {
        /// The key set's address.
        url: String,
    },
    /// Discovery and key set together took longer than [`FETCH_TIMEOUT`].
    #[error("no key set within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The fetch ended without an outcome (its task was lost).
    #[error("the key-set fetch was abandoned")]
    Abandoned,
}

/// A key as a verified token remembers it: its `kid` and a fingerprint (SHA-256) of its public
/// parameters, so a new key published under an old `kid` is another key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct KeyRef {
    kid: Option<String>,
    fingerprint: [u8; 32],
}

/// Why no key was found for a token.
#[derive(Debug)]
pub(super) enum Missing {
    /// The set fetched lists none for its `kid` and algorithm: the token is refused.
    NotListed,
    /// The set could not be fetched and the keys kept have none: the token cannot be checked.
    Unreachable(KeysError),
}

struct Loaded {
    keys: Vec<Key>,
    fetched: Instant,
}

struct Key {
    id: KeyRef,
    /// The `alg` the JWK names, if it names one.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

/// A finished fetch.
#[derive(Clone, Debug)]
struct Fetched {
    started: Instant,
    outcome: Result<(), KeysError>,
}

/// The last fetch, and the one under way.
#[derive(Default)]
struct Flight {
    last: Option<Fetched>,
    /// Where the fetch under way sends its outcome; every waiter holds a receiver.
    under_way: Option<UnderWay>,
}

/// A fetch under way, as its waiters hold it.
type UnderWay = watch::Receiver<Option<Fetched>>;

/// One issuer's keys.
pub(super) struct Keys {
    issuer: String,
    jwks_url: RwLock<Option<String>>,
    http: Http,
    loaded: RwLock<Option<Arc<Loaded>>>,
    flight: Mutex<Flight>,
}

impl Keys {
    pub(super) fn new(issuer: &str, jwks_url: Option<String>) -> Result<Keys, AuthError> {
        Ok(Keys {
            issuer: issuer.trim_end_matches('/').to_string(),
            jwks_url: RwLock::new(jwks_url),
            http: Http::new(FETCH_TIMEOUT)?,
            loaded: RwLock::new(None),
            flight: Mutex::new(Flight::default()),
        })
    }

    fn current(&self) -> Option<Arc<Loaded>> {
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The keys in force while they may be used; when they are stale a fetch is started
    /// behind the caller, so an issuer that is slow or down never holds requests up.
    fn usable(self: &Arc<Self>) -> Option<Arc<Loaded>> {
        let loaded = self.current().filter(|l| l.fetched.elapsed() < KEEP_FOR)?;
        if loaded.fetched.elapsed() >= REFRESH_AFTER {
            let _ = self.join_or_start();
        }
        Some(loaded)
    }

    /// The key for a token signed with `alg` under `kid`, and which key it is.
    pub(super) async fn key(
        self: &Arc<Self>,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<(DecodingKey, KeyRef), Missing> {
        if let Some(found) = self.usable().and_then(|l| find(&l, kid, alg)) {
            return Ok(found);
        }
        // Never fetched, or a kid not in the set: fetch (shared, rate limited), look again.
        let fetched = self.fetch().await;
        if let Some(found) = self.usable().and_then(|l| find(&l, kid, alg)) {
            return Ok(found);
        }
        Err(match fetched {
            Err(error) => Missing::Unreachable(error),
            Ok(()) => Missing::NotListed,
        })
    }

    /// Whether `id` is still a key of the set in force (a stale set is fetched again behind
    /// the caller): a remembered token is taken only while its key is.
    pub(super) fn holds(self: &Arc<Self>, id: &KeyRef) -> bool {
        self.usable()
            .is_some_and(|loaded| loaded.keys.iter().any(|k| k.id == *id))
    }

    /// Why the keys are not to be relied on, for readiness: the last fetch failed, and no keys
    /// are kept or those kept are older than [`REFRESH_AFTER`] (they could not be refreshed).
    /// A fetch is then started behind the caller, so readiness comes back without traffic.
    pub(super) fn unready(self: &Arc<Self>) -> Option<KeysError> {
        let failed = {
            let flight = self.flight.lock().unwrap_or_else(|e| e.into_inner());
            flight.last.as_ref()?.outcome.clone().err()?
        };
        if self
            .current()
            .is_some_and(|l| l.fetched.elapsed() < REFRESH_AFTER)
        {
            return None;
        }
        let _ = self.join_or_start();
        Some(failed)
    }

    /// The outcome of a fetch: the one under way, a new one, or, when the last one started
    /// less than [`MIN_INTERVAL`] ago, that one's.
    async fn fetch(self: &Arc<Self>) -> Result<(), KeysError> {
        let mut under_way = match self.join_or_start() {
            Ok(under_way) => under_way,
            Err(recent) => return recent,
        };
        match under_way.wait_for(Option::is_some).await {
            Ok(fetched) => fetched
                .as_ref()
                .map_or(Err(KeysError::Abandoned), |f| f.outcome.clone()),
            Err(_) => Err(KeysError::Abandoned),
        }
    }

    /// The fetch under way to wait for, started here if none is; `Err` with the last outcome
    /// when it started less than [`MIN_INTERVAL`] ago.
    fn join_or_start(self: &Arc<Self>) -> Result<UnderWay, Result<(), KeysError>> {
        let mut flight = self.flight.lock().unwrap_or_else(|e| e.into_inner());
        // A fetch whose task is gone (its sender dropped) is not under way any more.
        if let Some(under_way) = flight
            .under_way
            .as_ref()
            .filter(|r| r.has_changed().is_ok())
        {
            return Ok(under_way.clone());
        }
        if let Some(last) = flight
            .last
            .as_ref()
            .filter(|l| l.started.elapsed() < MIN_INTERVAL)
        {
            return Err(last.outcome.clone());
        }
        let (done, under_way) = watch::channel(None);
        flight.under_way = Some(under_way.clone());
        drop(flight);
        // On a task of its own: a request that gives up does not end the fetch its waiters share.
        let keys = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let outcome = tokio::time::timeout(FETCH_TIMEOUT, keys.load())
                .await
                .unwrap_or(Err(KeysError::Timeout(FETCH_TIMEOUT)));
            if let Err(error) = &outcome {
                tracing::warn!(issuer = %keys.issuer, %error, "OIDC issuer's keys cannot be fetched");
                crate::metrics::get()
                    .oidc_jwks_fetch_failures
                    .get_or_create(&crate::metrics::IssuerLabels {
                        issuer: keys.issuer.clone(),
                    })
                    .inc();
            }
            let fetched = Fetched { started, outcome };
            {
                let mut flight = keys.flight.lock().unwrap_or_else(|e| e.into_inner());
                flight.last = Some(fetched.clone());
                flight.under_way = None;
            }
            let _ = done.send(Some(fetched));
        });
        Ok(under_way)
    }

    /// Fetches the key set and puts it in force.
    async fn load(&self) -> Result<(), KeysError> {
        let url = self.jwks_url().await?;
        let body = self.get(&url).await?;
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| KeysError::Malformed {
            url: url.clone(),
            what: "a JWK set",
            detail: e.to_string(),
        })?;
        self.install(&set, &url)
    }

    /// Puts `set` in force as a fetch that just succeeded would.
    #[cfg(test)]
    pub(super) fn fetched(&self, set: &JwkSet) -> Result<(), KeysError> {
        self.install(set, "(test)")?;
        self.flight.lock().unwrap_or_else(|e| e.into_inner()).last = Some(Fetched {
            started: Instant::now(),
            outcome: Ok(()),
        });
        Ok(())
    }

    /// Puts the usable keys of `set` (fetched from `url`) in force.
    fn install(&self, set: &JwkSet, url: &str) -> Result<(), KeysError> {
        let keys: Vec<Key> = set.keys.iter().filter_map(usable).collect();
        if keys.is_empty() {
            return Err(KeysError::NoUsableKey {
                url: url.to_string(),
            });
        }
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(Loaded {
            keys,
            fetched: Instant::now(),
        }));
        Ok(())
    }

    /// `jwks_url`, or the discovery document's `jwks_uri` (remembered once found).
    async fn jwks_url(&self) -> Result<String, KeysError> {
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
            serde_json::from_slice(&body).map_err(|e| KeysError::Malformed {
                url: discovery.clone(),
                what: "JSON",
                detail: e.to_string(),
            })?;
        if document["issuer"].as_str().map(|i| i.trim_end_matches('/')) != Some(&self.issuer) {
            return Err(KeysError::Discovery {
                url: discovery,
                problem: "names another issuer",
            });
        }
        let url = document["jwks_uri"]
            .as_str()
            .ok_or(KeysError::Discovery {
                url: discovery,
                problem: "has no jwks_uri",
            })?
            .to_string();
        *self.jwks_url.write().unwrap_or_else(|e| e.into_inner()) = Some(url.clone());
        Ok(url)
    }

    async fn get(&self, url: &str) -> Result<Bytes, KeysError> {
        let request = http::Request::get(url);
        let answer = self
            .http
            .exchange(request, Bytes::new(), url)
            .await
            .map_err(|e| KeysError::Exchange(e.to_string()))?;
        if !answer.status.is_success() {
            return Err(KeysError::Status {
                url: url.to_string(),
                status: answer.status,
            });
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
    let parameters = serde_json::to_vec(&jwk.algorithm).ok()?;
    Some(Key {
        id: KeyRef {
            kid: jwk.common.key_id.clone(),
            fingerprint: Sha256::digest(&parameters).into(),
        },
        alg,
        key: DecodingKey::from_jwk(jwk).ok()?,
    })
}

/// The key named `kid` (or the only key, for a token without one) that fits `alg`.
fn find(loaded: &Loaded, kid: Option<&str>, alg: Algorithm) -> Option<(DecodingKey, KeyRef)> {
    let fits = |k: &&Key| k.alg.is_none_or(|a| a == alg);
    match kid {
        Some(kid) => loaded
            .keys
            .iter()
            .filter(fits)
            .find(|k| k.id.kid.as_deref() == Some(kid)),
        None => match loaded.keys.iter().filter(fits).collect::<Vec<_>>()[..] {
            [only] => Some(only),
            _ => None,
        },
    }
    .map(|k| (k.key.clone(), k.id.clone()))
}
