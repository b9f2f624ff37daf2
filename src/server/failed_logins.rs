//! Failed logins, rate limited per client address and per presented user name
//! (docs/behaviour.md §10).
//!
//! Each address (IPv6 by its /64, which one host usually holds whole) and each user name has a
//! GCRA bucket from `governor`: `burst` failures at once, then one more per `refill`. A failure
//! that finds a bucket empty is answered 429 `TOOMANYREQUESTS` with `Retry-After` instead of
//! 401.
//!
//! An address whose bucket is empty is barred until it has room again: every request with
//! credentials from it is answered 429 before any authority is asked, so a guess made while
//! barred cannot succeed and costs the authority nothing. A user name is never barred that way:
//! `docker login` takes any user name, so many clients present the same one, and a hard bar
//! would let one attacker lock them all out. An exhausted name only turns further *failures*
//! into 429s. Successful requests and anonymous ones cost nothing here.
//!
//! The buckets live in a size-bounded `moka` cache, so a flood from many addresses costs
//! bounded memory (the oldest buckets are dropped first, which only forgives their owners).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request};
use base64::Engine;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};
use http::header;
use moka::sync::Cache;

use crate::config::{FailedLoginSettings, TrustedProxies};
use crate::error::ApiError;

/// Most buckets kept, addresses and names together.
const MAX_BUCKETS: u64 = 100_000;
/// Longest user name kept as a key; a longer one is cut (it is only a key).
const MAX_NAME_LEN: usize = 256;

/// Who a login attempt is counted against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Address(IpAddr),
    Name(String),
}

/// One key's bucket, and until when the key is barred (ms since [`FailedLogins::epoch`]).
struct Bucket {
    limiter: DefaultDirectRateLimiter,
    barred_until: AtomicU64,
}

/// The failed-login limiter of one gateway.
pub struct FailedLogins {
    quota: Option<Quota>,
    buckets: Cache<Key, Arc<Bucket>>,
    epoch: Instant,
}

/// The client a request counts against: its address (and a trusted proxy's `X-Forwarded-For`)
/// and the user name it presents, if any.
#[derive(Debug, Default)]
pub struct Attempt {
    keys: Vec<Key>,
    /// The `Authorization` header (marked sensitive: `Debug` hides it), whose Basic user name
    /// is read only when the attempt fails.
    authorization: Option<http::HeaderValue>,
}

impl FailedLogins {
    /// A limiter with `settings`.
    pub fn new(settings: &FailedLoginSettings) -> Self {
        let quota = NonZeroU32::new(settings.burst).and_then(|burst| {
            Quota::with_period(settings.refill.max(Duration::from_millis(1)))
                .map(|q| q.allow_burst(burst))
        });
        // A bucket untouched for the time it takes to fill up again is full: forget it.
        let idle = settings.refill.saturating_mul(settings.burst.max(1)) + Duration::from_secs(1);
        FailedLogins {
            quota,
            buckets: Cache::builder()
                .max_capacity(MAX_BUCKETS)
                .time_to_idle(idle)
                .build(),
            epoch: Instant::now(),
        }
    }

    /// 429 when the attempt's address is barred now.
    pub fn check(&self, attempt: &Attempt) -> Result<(), ApiError> {
        if self.quota.is_none() {
            return Ok(());
        }
        let now = self.now_ms();
        let barred = attempt
            .keys
            .iter()
            .filter(|key| matches!(key, Key::Address(_)))
            .filter_map(|key| self.buckets.get(key))
            .map(|bucket| bucket.barred_until.load(Ordering::Relaxed))
            .max()
            .filter(|&until| until > now);
        match barred {
            Some(until) => {
                tracing::debug!(client = ?attempt.address(), "refused: barred for failed logins");
                Err(too_many(until - now))
            }
            None => Ok(()),
        }
    }

    /// Counts a failed login; the 429 to answer instead of `error` when it used up the burst.
    pub fn failed(&self, attempt: &Attempt, error: ApiError) -> ApiError {
        match self.count(attempt) {
            Some(left) => too_many(millis(left)),
            None => error,
        }
    }

    /// Counts a failed login; how long its client is barred when it used up the burst.
    pub fn count(&self, attempt: &Attempt) -> Option<Duration> {
        let quota = self.quota?;
        let clock = DefaultClock::default();
        let mut wait = None::<Duration>;
        for key in &attempt.keys_with_name() {
            let bucket = self.buckets.get_with(key.clone(), || {
                Arc::new(Bucket {
                    limiter: governor::RateLimiter::direct(quota),
                    barred_until: AtomicU64::new(0),
                })
            });
            if let Err(not_until) = bucket.limiter.check() {
                let left = not_until.wait_time_from(clock.now());
                let until = self.now_ms() + millis(left).max(1);
                bucket.barred_until.fetch_max(until, Ordering::Relaxed);
                wait = Some(wait.map_or(left, |w| w.max(left)));
            }
        }
        if let Some(left) = wait {
            tracing::warn!(
                client = ?attempt.address(),
                "too many failed logins; refusing this client for {left:?}"
            );
        }
        wait
    }

    fn now_ms(&self) -> u64 {
        millis(self.epoch.elapsed())
    }
}

impl Attempt {
    /// The keys `req` counts against. The address is the peer's, or, when the peer is one of
    /// `trusted_proxies`, the last `X-Forwarded-For` entry that is not one of them.
    pub fn of(req: &Request, trusted_proxies: &TrustedProxies) -> Attempt {
        let mut keys = Vec::with_capacity(2);
        if let Some(address) = counted_address(req, trusted_proxies) {
            keys.push(Key::Address(address));
        }
        let authorization = req.headers().get(header::AUTHORIZATION).map(|value| {
            let mut value = value.clone();
            value.set_sensitive(true);
            value
        });
        Attempt {
            keys,
            authorization,
        }
    }

    /// The keys a failure counts against: the address, and the Basic user name (decoded only
    /// now: most attempts do not fail) unless the form's `username` is that name already.
    fn keys_with_name(&self) -> Vec<Key> {
        let mut keys = self.keys.clone();
        if let Some(name) = self.authorization.as_ref().and_then(basic_user) {
            let key = Key::Name(name);
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        keys
    }

    /// The client address counted, for logs. The user name is never logged: a client may have
    /// typed a secret there.
    fn address(&self) -> Option<IpAddr> {
        self.keys.iter().find_map(|key| match key {
            Key::Address(ip) => Some(*ip),
            Key::Name(_) => None,
        })
    }

    /// Also counts the user name a token request's form presents (`username`).
    pub fn with_name(mut self, name: Option<&str>) -> Attempt {
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            let key = Key::Name(cut(name));
            if !self.keys.contains(&key) {
                self.keys.push(key);
            }
        }
        self
    }
}

/// The address `req` counts against, as failed logins count it: the client's address (see
/// [`client_address`]), an IPv6 one by its /64. `None` without a peer (in-process tests).
pub(super) fn counted_address(req: &Request, trusted_proxies: &TrustedProxies) -> Option<IpAddr> {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>()?.0.ip();
    Some(prefix(client_address(peer, req, trusted_proxies)))
}

/// The client's address: the peer, or the right-most untrusted `X-Forwarded-For` entry when the
/// peer is a trusted proxy.
pub(super) fn client_address(
    peer: IpAddr,
    req: &Request,
    trusted_proxies: &TrustedProxies,
) -> IpAddr {
    if !trusted_proxies.contains(&peer) {
        return peer;
    }
    // Each proxy appends the address it saw: the right-most untrusted one is the client.
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for entry in forwarded.iter().rev() {
        match entry.parse::<IpAddr>() {
            Ok(ip) if trusted_proxies.contains(&ip) => continue,
            Ok(ip) => return ip,
            // Unreadable: what is left of it may be forged; count the proxy itself.
            Err(_) => return peer,
        }
    }
    peer
}

/// An IPv6 address's /64 (v4-mapped addresses as IPv4); IPv4 addresses as they are.
fn prefix(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The user name of a Basic `Authorization` header, if it has a non-empty one.
fn basic_user(value: &http::HeaderValue) -> Option<String> {
    let value = value.to_str().ok()?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    // Decoded a few blocks at a time, only until the `:`: the password (the token) is not
    // decoded here, and the bytes of it that share the name's block are cleared.
    let mut decoded = Vec::new();
    for chunk in rest.trim().as_bytes().chunks(64) {
        let start = decoded.len();
        base64::engine::general_purpose::STANDARD
            .decode_vec(chunk, &mut decoded)
            .ok()?;
        if let Some(colon) = decoded[start..].iter().position(|b| *b == b':') {
            decoded[start + colon..].fill(0);
            decoded.truncate(start + colon);
            let user = String::from_utf8(decoded).ok()?;
            return (!user.is_empty()).then(|| cut(&user));
        }
        if decoded.len() > 4 * MAX_NAME_LEN {
            break;
        }
    }
    decoded.fill(0);
    None
}

fn cut(name: &str) -> String {
    let mut end = name.len().min(MAX_NAME_LEN);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The 429 for a client barred `left_ms` more milliseconds (Retry-After rounded up).
fn too_many(left_ms: u64) -> ApiError {
    ApiError::TooManyRequests {
        retry_after: left_ms.div_ceil(1000).max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(peer: &str, headers: &[(&str, &str)]) -> Request {
        let mut builder = Request::builder().uri("/v2/");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut req = builder.body(axum::body::Body::empty()).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        req
    }

    fn settings(burst: u32) -> FailedLoginSettings {
        FailedLoginSettings {
            burst,
            refill: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_burst_then_429_for_that_address_only() {
        let limiter = FailedLogins::new(&settings(3));
        let attacker = Attempt::of(&request("10.0.0.1:1000", &[]), &TrustedProxies::default());
        let other = Attempt::of(&request("10.0.0.2:1000", &[]), &TrustedProxies::default());
        for _ in 0..3 {
            limiter.check(&attacker).unwrap();
            let e = limiter.failed(&attacker, ApiError::NotFound);
            assert!(matches!(e, ApiError::NotFound), "{e:?}");
        }
        let e = limiter.failed(&attacker, ApiError::NotFound);
        let ApiError::TooManyRequests { retry_after } = e else {
            panic!("{e:?}");
        };
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        assert!(limiter.check(&attacker).is_err());
        limiter.check(&other).unwrap();
    }

    #[test]
    fn a_user_name_is_limited_across_addresses() {
        let limiter = FailedLogins::new(&settings(2));
        // base64("ci:wrong")
        let basic = [("authorization", "Basic Y2k6d3Jvbmc=")];
        for i in 0..2 {
            let a = Attempt::of(
                &request(&format!("10.0.1.{i}:1"), &basic),
                &TrustedProxies::default(),
            );
            let _ = limiter.failed(&a, ApiError::NotFound);
        }
        let fresh = Attempt::of(&request("10.0.2.1:1", &basic), &TrustedProxies::default());
        limiter.check(&fresh).unwrap();
        assert!(matches!(
            limiter.failed(&fresh, ApiError::NotFound),
            ApiError::TooManyRequests { .. }
        ));
        // A name is not barred before authentication: others present the same name.
        limiter.check(&fresh).unwrap();
        assert!(matches!(
            limiter.failed(&fresh, ApiError::NotFound),
            ApiError::TooManyRequests { .. }
        ));
        // The name is barred, not the address: the same host with no name is still served.
        let anonymous = Attempt::of(&request("10.0.2.1:1", &[]), &TrustedProxies::default());
        limiter.check(&anonymous).unwrap();
        let elsewhere = Attempt::of(&request("10.0.3.1:1", &[]), &TrustedProxies::default());
        limiter.check(&elsewhere).unwrap();
    }

    #[test]
    fn forwarded_for_counts_from_trusted_proxies_only() {
        let proxy: IpAddr = "192.0.2.1".parse().unwrap();
        let xff = [("x-forwarded-for", "203.0.113.9, 198.51.100.7")];
        let via_proxy = Attempt::of(
            &request("192.0.2.1:1", &xff),
            &TrustedProxies::from_iter([proxy]),
        );
        assert_eq!(
            via_proxy.keys,
            vec![Key::Address("198.51.100.7".parse().unwrap())]
        );
        let direct = Attempt::of(
            &request("192.0.2.50:1", &xff),
            &TrustedProxies::from_iter([proxy]),
        );
        assert_eq!(
            direct.keys,
            vec![Key::Address("192.0.2.50".parse().unwrap())]
        );
        let v6 = Attempt::of(
            &request("[2001:db8:1:2:3:4:5:6]:1", &[]),
            &TrustedProxies::default(),
        );
        assert_eq!(
            v6.keys,
            vec![Key::Address("2001:db8:1:2::".parse().unwrap())]
        );
    }

    #[test]
    fn zero_burst_turns_it_off() {
        let limiter = FailedLogins::new(&settings(0));
        let a = Attempt::of(&request("10.0.0.1:1", &[]), &TrustedProxies::default());
        for _ in 0..100 {
            assert!(matches!(
                limiter.failed(&a, ApiError::NotFound),
                ApiError::NotFound
            ));
        }
        limiter.check(&a).unwrap();
    }

    #[test]
    fn a_failure_counts_the_basic_user_and_debug_hides_the_credential() {
        use base64::Engine as _;
        let credential = base64::engine::general_purpose::STANDARD.encode("alice:s3cret-token");
        let authorization = format!("Basic {credential}");
        let limiter = FailedLogins::new(&settings(1));
        let first = Attempt::of(
            &request("10.0.4.1:1", &[("authorization", &authorization)]),
            &TrustedProxies::default(),
        );
        let shown = format!("{first:?}");
        assert!(!shown.contains(&credential), "{shown}");
        assert!(matches!(
            limiter.failed(&first, ApiError::NotFound),
            ApiError::NotFound
        ));
        // Another address, the same name: the name's bucket is empty.
        let second = Attempt::of(
            &request("10.0.5.1:1", &[("authorization", &authorization)]),
            &TrustedProxies::default(),
        );
        assert!(matches!(
            limiter.failed(&second, ApiError::NotFound),
            ApiError::TooManyRequests { .. }
        ));
    }

    #[test]
    fn the_basic_user_is_read_without_decoding_the_password() {
        use base64::Engine as _;
        let basic = |text: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(text)
            )
        };
        let user = |value: &str| basic_user(&http::HeaderValue::from_str(value).unwrap());
        let long_token = "t".repeat(2000);
        assert_eq!(
            user(&basic(&format!("alice:{long_token}"))).as_deref(),
            Some("alice")
        );
        let long_name = "n".repeat(100);
        assert_eq!(user(&basic(&format!("{long_name}:x"))), Some(long_name));
        // What follows the name's block is not decoded at all.
        let mut broken = basic("bob:secret-but-long-enough-to-span-several-blocks-of-base64-text");
        broken.push_str("!!!!");
        assert_eq!(user(&broken).as_deref(), Some("bob"));
        assert_eq!(user(&basic(":no-name")), None);
        assert_eq!(user(&basic("no-colon-at-all")), None);
        assert_eq!(user("Basic %%%%"), None);
        assert_eq!(user("Bearer abc"), None);
    }
}
