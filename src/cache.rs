//! The decision cache between the gateway and the authority.
//!
//! Every authorization goes through [`Decisions::decide`]: a `moka` cache keyed by the policy
//! generation and a keyed hash of (user name, groups, extras, attributes), with separate
//! lifetimes for allows and denies, one authority call per key however many requests wait for
//! it, and a bounded size.
//! Errors are never cached. Because the authority's generation is part of the key, a decision
//! made under an older policy is never served after a reload.
//!
//! Each answer says whether the cache gave it ([`Decided::cache_hit`], for the audit log), and
//! lookups and evictions are counted in the metrics.
//!
//! `stale_if_error` (off by default) keeps allows for that much longer in a second cache, used
//! only when the authority cannot answer; every such use is logged.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use secrecy::SecretString;

use crate::authority::{Authority, AuthorityError};
use crate::identity::UserInfo;
use crate::policy::{Attributes, Decision};

/// Lifetimes and size of the decision cache.
#[derive(Clone, Debug)]
pub struct CacheSettings {
    /// How long an allow is reused.
    pub allow_ttl: Duration,
    /// How long a deny is reused.
    pub deny_ttl: Duration,
    /// Most decisions kept.
    pub max_entries: u64,
    /// How long past its TTL an allow may still be served while the authority cannot answer;
    /// zero (the default) fails closed at once.
    pub stale_if_error: Duration,
}

impl Default for CacheSettings {
    /// The Kubernetes webhook authorizer's defaults: 5 min for allows, 30 s for denies.
    fn default() -> Self {
        CacheSettings {
            allow_ttl: Duration::from_secs(300),
            deny_ttl: Duration::from_secs(30),
            max_entries: 100_000,
            stale_if_error: Duration::ZERO,
        }
    }
}

/// A decision's key: the policy generation and a keyed 128-bit SipHash of the question (user
/// name, groups, extra attributes such as token scopes, and the attributes asked), so a lookup
/// builds no strings. The hash key is random per process: nobody can aim for a collision, and
/// a chance one is about 2^-95 among 100,000 entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    generation: u64,
    question: u128,
}

/// Makes [`Key`]s.
struct Keys(siphasher::sip128::SipHasher13);

impl Keys {
    fn new() -> Keys {
        let bytes: [u8; 16] = rand::random();
        Keys(siphasher::sip128::SipHasher13::new_with_key(&bytes))
    }

    fn key(&self, generation: u64, user: &UserInfo, attrs: &Attributes) -> Key {
        use siphasher::sip128::Hasher128 as _;
        use std::hash::Hash as _;
        let mut hasher = self.0;
        // std's `Hash` for strings ends each with 0xff, which no UTF-8 string holds, and
        // prefixes sequences with their length: distinct questions hash distinct inputs.
        (&user.name, &user.groups, &user.extra, attrs).hash(&mut hasher);
        Key {
            generation,
            question: hasher.finish128().as_u128(),
        }
    }
}

struct ByOutcome {
    allow: Duration,
    deny: Duration,
}

impl Expiry<Key, Decision> for ByOutcome {
    fn expire_after_create(&self, _: &Key, value: &Decision, _: Instant) -> Option<Duration> {
        Some(if value.allowed() {
            self.allow
        } else {
            self.deny
        })
    }
}

/// A decision, and whether the cache had it (no question to the authority for this request).
#[derive(Clone, Debug)]
pub struct Decided {
    /// The authority's answer.
    pub decision: Decision,
    /// True when this request did not ask the authority.
    pub cache_hit: bool,
}

impl Decided {
    /// True when allowed.
    pub fn allowed(&self) -> bool {
        self.decision.allowed()
    }
}

/// Counts an entry leaving the cache, by cause.
fn count_eviction(_: Arc<Key>, _: Decision, cause: moka::notification::RemovalCause) {
    use moka::notification::RemovalCause;
    let cause = match cause {
        // Only a load replaces an entry here, and a load runs only for a key with no live
        // entry: a replaced entry is an expired one asked again (moka reports it as replaced).
        RemovalCause::Expired | RemovalCause::Replaced => "expired",
        RemovalCause::Size => "size",
        // `invalidate_all` on a policy change.
        RemovalCause::Explicit => "invalidated",
    };
    crate::metrics::get()
        .cache_evictions
        .get_or_create(&crate::metrics::EvictionLabels { cause })
        .inc();
}

/// Cached authorization decisions in front of an [`Authority`].
pub struct Decisions {
    authority: Arc<dyn Authority>,
    cache: Cache<Key, Decision>,
    /// Allows kept `allow_ttl + stale_if_error`, for when the authority is down; `None` when off.
    stale: Option<Cache<Key, Decision>>,
    /// The generation the cache last saw; a newer one drops every older entry.
    seen_generation: AtomicU64,
    keys: Keys,
}

impl Decisions {
    /// A cache in front of `authority`.
    pub fn new(authority: Arc<dyn Authority>, settings: &CacheSettings) -> Self {
        let cache = Cache::builder()
            .max_capacity(settings.max_entries)
            .expire_after(ByOutcome {
                allow: settings.allow_ttl,
                deny: settings.deny_ttl,
            })
            .eviction_listener(count_eviction)
            .build();
        let stale = (!settings.stale_if_error.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(settings.max_entries)
                .time_to_live(settings.allow_ttl + settings.stale_if_error)
                .build()
        });
        Decisions {
            seen_generation: AtomicU64::new(authority.generation()),
            authority,
            cache,
            stale,
            keys: Keys::new(),
        }
    }

    /// The authority behind the cache.
    pub fn authority(&self) -> &Arc<dyn Authority> {
        &self.authority
    }

    /// Whether `user` may do `attrs`, from the cache or (once per key) the authority. `token`
    /// is the caller's credential, passed on to the authority but not part of the key: two
    /// tokens of one identity share decisions.
    pub async fn decide(
        &self,
        user: &UserInfo,
        token: Option<&SecretString>,
        attrs: &Attributes,
    ) -> Result<Decided, AuthorityError> {
        let generation = self.authority.generation();
        if self.seen_generation.swap(generation, Ordering::Relaxed) != generation {
            // Old entries can never be hit again; free their room now.
            self.cache.invalidate_all();
        }
        let key = self.keys.key(generation, user, attrs);
        // Set when this call, not another one or an earlier one, asked the authority.
        let asked = std::sync::atomic::AtomicBool::new(false);
        let load = async {
            asked.store(true, Ordering::Relaxed);
            let metrics = crate::metrics::get();
            metrics.cache_loads_in_flight.inc();
            let answer = self.authority.authorize(user, token, attrs).await;
            metrics.cache_loads_in_flight.dec();
            answer
        };
        // Counts the lookup; true when the cache answered.
        let count = |asked: &std::sync::atomic::AtomicBool| {
            let hit = !asked.load(Ordering::Relaxed);
            let result = if hit { "hit" } else { "miss" };
            crate::metrics::get()
                .cache
                .get_or_create(&crate::metrics::CacheLabels { result })
                .inc();
            hit
        };
        let Some(stale) = &self.stale else {
            let decision = self.cache.try_get_with(key, load).await.map_err(unshared);
            let cache_hit = count(&asked);
            return decision.map(|decision| Decided {
                decision,
                cache_hit,
            });
        };
        let loaded = self.cache.entry(key).or_try_insert_with(load).await;
        let cache_hit = count(&asked);
        match loaded {
            Ok(entry) => {
                if entry.is_fresh() && entry.value().allowed() {
                    stale.insert(key, entry.value().clone()).await;
                }
                Ok(Decided {
                    decision: entry.into_value(),
                    cache_hit,
                })
            }
            Err(error) => match stale.get(&key).await {
                Some(decision) => {
                    tracing::warn!(
                        user = %user.name,
                        verb = %attrs.verb,
                        resource = %attrs.full_resource(),
                        namespace = %attrs.namespace,
                        name = %attrs.name,
                        %error,
                        "authority cannot answer; serving an expired allow (stale_if_error)"
                    );
                    Ok(Decided {
                        decision,
                        cache_hit: true,
                    })
                }
                None => Err(unshared(error)),
            },
        }
    }
}

/// The authority's error out of moka's shared `Arc`, without wrapping it again.
fn unshared(error: Arc<AuthorityError>) -> AuthorityError {
    AuthorityError::clone(&error)
}

#[cfg(test)]
mod tests;
