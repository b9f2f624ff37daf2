//! Console sessions: a random id in an `HttpOnly`, `Secure`, `SameSite=Strict` cookie, and on
//! the server the token the person signed in with and the session's CSRF token.
//!
//! A session is never worth more than its token: every page authenticates the token again
//! (through the authority's token cache), so a revoked or expired token ends the session at
//! its next click. Sessions are kept by the SHA-256 of their id, so the lookup does not compare
//! the secret byte by byte, and they end after `session_idle` unused or `session_max` in all.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, header};
use moka::sync::Cache;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use crate::config::ConsoleSettings;

/// The session cookie. `__Host-` makes browsers refuse it unless it is `Secure`, has `Path=/`
/// and names no domain, so no sibling host can plant or overwrite it.
pub(super) const COOKIE: &str = "__Host-regate-console";

/// Most sessions kept at once; beyond, the least recently used end.
const MAX_SESSIONS: u64 = 10_000;

/// One signed-in person.
pub(super) struct Session {
    /// The API or ID token they signed in with; authenticated again on every page.
    pub(super) token: SecretString,
    /// The token every form of this session carries back.
    pub(super) csrf: String,
    started: Instant,
    /// What the last change did, shown once on the next page.
    flash: Mutex<Option<Flash>>,
}

/// The outcome of a change, shown on the page after it.
#[derive(Clone, Debug)]
pub(super) struct Flash {
    /// Whether it was done.
    pub(super) done: bool,
    /// What to tell.
    pub(super) text: String,
}

/// The sessions of one console.
pub(super) struct Sessions {
    live: Cache<[u8; 32], Arc<Session>>,
    max: std::time::Duration,
}

impl Sessions {
    /// No sessions yet, ending as `settings` say.
    pub(super) fn new(settings: &ConsoleSettings) -> Sessions {
        Sessions {
            live: Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .time_to_idle(settings.session_idle)
                .time_to_live(settings.session_max)
                .build(),
            max: settings.session_max,
        }
    }

    /// A new session for `token`, and the `Set-Cookie` value that hands its id to the browser.
    pub(super) fn start(&self, token: SecretString) -> HeaderValue {
        let id = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let session = Session {
            token,
            csrf: URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()),
            started: Instant::now(),
            flash: Mutex::new(None),
        };
        self.live.insert(key(&id), Arc::new(session));
        cookie(&id, self.max.as_secs())
    }

    /// The session the request's cookie names, if it is live.
    pub(super) fn find(&self, headers: &HeaderMap) -> Option<Arc<Session>> {
        let id = session_id(headers)?;
        let session = self.live.get(&key(id))?;
        (session.started.elapsed() < self.max).then_some(session)
    }

    /// Ends the session the request's cookie names; the `Set-Cookie` value that clears it.
    pub(super) fn end(&self, headers: &HeaderMap) -> HeaderValue {
        if let Some(id) = session_id(headers) {
            self.live.invalidate(&key(id));
        }
        cookie("", 0)
    }
}

impl Session {
    /// Keeps `flash` for the next page.
    pub(super) fn tell(&self, done: bool, text: String) {
        *self.flash.lock().unwrap_or_else(|e| e.into_inner()) = Some(Flash { done, text });
    }

    /// What the last change did, once.
    pub(super) fn told(&self) -> Option<Flash> {
        self.flash.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Whether `given` is this session's CSRF token, compared in constant time.
    pub(super) fn csrf_matches(&self, given: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        bool::from(self.csrf.as_bytes().ct_eq(given.as_bytes()))
    }
}

/// The session id in the request's `Cookie` headers.
fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// The cookie carrying `id` for `max_age` seconds (0: delete it).
fn cookie(id: &str, max_age: u64) -> HeaderValue {
    let text =
        format!("{COOKIE}={id}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict");
    let mut value = HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""));
    value.set_sensitive(true);
    value
}

#[cfg(test)]
mod tests;
