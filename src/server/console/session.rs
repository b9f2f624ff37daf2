//! Console sessions, carried by the browser: the `__Host-regate-console` cookie holds the whole
//! session sealed with the signing key ([`Signer::seal_for`], [`Purpose::ConsoleSession`]), so
//! every replica sharing the key reads it and none keeps a session of its own (docs/console.md,
//! "Signing in"; docs/architecture.md, "What each replica keeps alone").
//!
//! A session is the token the person signed in with, its CSRF token, when it started, when it
//! was last used, and the flash (what the last change did, shown once on the next page). Each
//! page re-issues the cookie with a fresh last-used time, and a cookie unused for
//! `session_idle` or older than `session_max` opens nothing. A session is never worth more than
//! its token: every page authenticates the token again (console.rs), so a revoked or expired
//! token ends it on every replica at once. Whatever does not open (another key, altered, cut
//! short, garbage) is no session.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, header};
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};

use crate::config::ConsoleSettings;
use crate::token::seal::sealed_len;
use crate::token::{Purpose, Signer, TokenError};

/// The session cookie. `__Host-` makes browsers refuse it unless it is `Secure`, has `Path=/`
/// and names no domain, so no sibling host can plant or overwrite it.
pub(super) const COOKIE: &str = "__Host-regate-console";

/// The `Set-Cookie` value that deletes the session cookie.
const CLEARED: &str =
    "__Host-regate-console=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict";

/// Longest `Set-Cookie` value sent, attributes included. Browsers keep a cookie whose name and
/// value take at most 4096 bytes (RFC 6265 §6.1; Chromium and Firefox drop longer ones), so
/// counting the attributes too leaves a margin.
pub(super) const COOKIE_LIMIT: usize = 4096;

/// Longest flash text kept, in bytes; longer text is cut. Every session leaves room for it,
/// so a change's outcome never pushes a cookie past [`COOKIE_LIMIT`].
const FLASH_MAX: usize = 300;

/// The layout of a session, version 1, before sealing:
/// version (1) ‖ started (8, big-endian seconds since the epoch) ‖ last used (8) ‖ CSRF token
/// (43, base64url) ‖ flash kind (1: none, done, not done) ‖ flash length (2) ‖ flash text ‖
/// token form (1: as given, JWT) ‖ token.
const VERSION: u8 = 1;
/// Length of a CSRF token: 256 random bits in base64url.
const CSRF_LEN: usize = 43;
/// Bytes of a session besides its flash text and its token.
const FIXED: usize = 1 + 8 + 8 + CSRF_LEN + 1 + 2 + 1;

/// Flash kinds.
const NO_FLASH: u8 = 0;
const FLASH_DONE: u8 = 1;
const FLASH_NOT_DONE: u8 = 2;

/// Token forms: the token's bytes as given, or a JWT's three parts base64url-decoded (a
/// quarter shorter, so longer ID tokens fit in a cookie).
const TOKEN_AS_GIVEN: u8 = 0;
const TOKEN_JWT: u8 = 1;

/// Why a session cookie could not be made.
#[derive(Debug, thiserror::Error)]
pub(super) enum SessionError {
    /// The token does not fit in a cookie, even packed.
    #[error(
        "the token is {len} characters long, too long for the session cookie (browsers keep \
         at most {COOKIE_LIMIT} bytes of a cookie)"
    )]
    TooLong {
        /// The token's length, in characters.
        len: usize,
    },
    /// Sealing failed.
    #[error("cannot seal the session")]
    Seal(#[source] TokenError),
}

/// One signed-in person, as their cookie says.
pub(super) struct Session {
    /// The API or ID token they signed in with; authenticated again on every page.
    pub(super) token: SecretString,
    /// The token every form of this session carries back.
    pub(super) csrf: String,
    /// When they signed in (seconds since the epoch).
    started: u64,
    /// What the last change did, shown once on the next page.
    flash: Mutex<Option<Flash>>,
}

/// The outcome of a change, shown on the page after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Flash {
    /// Whether it was done.
    pub(super) done: bool,
    /// What to tell.
    pub(super) text: String,
}

/// Console sessions, sealed with the gateway's signing key.
pub(super) struct Sessions {
    signer: Arc<Signer>,
    /// `session_idle` and `session_max`, in seconds.
    idle: u64,
    max: u64,
}

impl Sessions {
    /// Sessions sealed by `signer`, ending as `settings` say.
    pub(super) fn new(signer: Arc<Signer>, settings: &ConsoleSettings) -> Sessions {
        Sessions {
            signer,
            idle: settings.session_idle.as_secs(),
            max: settings.session_max.as_secs(),
        }
    }

    /// A new session for `token`, as the `Set-Cookie` value that hands it to the browser;
    /// [`SessionError::TooLong`] when the cookie could not hold it.
    pub(super) fn start(&self, token: SecretString) -> Result<HeaderValue, SessionError> {
        self.start_at(token, crate::token::now())
    }

    fn start_at(&self, token: SecretString, now: u64) -> Result<HeaderValue, SessionError> {
        // The longest this session's cookie will be: with a flash as long as any.
        let packed = packed_token_len(token.expose_secret());
        let longest = FIXED + FLASH_MAX + packed;
        if set_cookie_len(longest, self.max) > COOKIE_LIMIT {
            return Err(SessionError::TooLong {
                len: token.expose_secret().len(),
            });
        }
        let session = Session {
            token,
            csrf: URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()),
            started: now,
            flash: Mutex::new(None),
        };
        self.issue_at(&session, now)
    }

    /// The live session the request's cookie holds, if any.
    pub(super) fn find(&self, headers: &HeaderMap) -> Option<Session> {
        self.find_at(headers, crate::token::now())
    }

    fn find_at(&self, headers: &HeaderMap, now: u64) -> Option<Session> {
        let value = cookie_value(headers)?;
        if value.len() > COOKIE_LIMIT {
            return None;
        }
        let plain = self.signer.open_for(Purpose::ConsoleSession, value).ok()?;
        let (session, used) = Session::unpack(plain.expose_secret())?;
        let live =
            now.saturating_sub(used) < self.idle && now.saturating_sub(session.started) < self.max;
        live.then_some(session)
    }

    /// The `Set-Cookie` value re-issuing `session`, last used now, with its flash as it is now.
    pub(super) fn renew(&self, session: &Session) -> Result<HeaderValue, SessionError> {
        self.issue_at(session, crate::token::now())
    }

    fn issue_at(&self, session: &Session, now: u64) -> Result<HeaderValue, SessionError> {
        let plain = session.pack(now);
        let sealed = self
            .signer
            .seal_for(Purpose::ConsoleSession, &plain)
            .map_err(SessionError::Seal)?;
        // The browser may drop it when no replica would take it any more.
        let left = self.max.saturating_sub(now.saturating_sub(session.started));
        Ok(cookie(&sealed, self.idle.min(left)))
    }

    /// The `Set-Cookie` value that deletes the session cookie: sign-out, or a session that
    /// ended. A copy kept elsewhere still opens until its limits (docs/console.md).
    pub(super) fn end() -> HeaderValue {
        HeaderValue::from_static(CLEARED)
    }
}

impl Session {
    /// Keeps `text` for the next page (cut to [`FLASH_MAX`] bytes).
    pub(super) fn tell(&self, done: bool, text: String) {
        let text = cut(text, FLASH_MAX);
        *self.flash.lock().unwrap_or_else(|e| e.into_inner()) = Some(Flash { done, text });
    }

    /// What the last change did, once: the cookie this page re-issues no longer holds it.
    pub(super) fn told(&self) -> Option<Flash> {
        self.flash.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Whether `given` is this session's CSRF token, compared in constant time.
    pub(super) fn csrf_matches(&self, given: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        bool::from(self.csrf.as_bytes().ct_eq(given.as_bytes()))
    }

    /// The session in its version-1 layout, last used at `used`; wiped when dropped, as it
    /// holds the token.
    fn pack(&self, used: u64) -> Zeroizing<Vec<u8>> {
        let flash = self.flash.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let token = self.token.expose_secret();
        let flash_len = flash.as_ref().map_or(0, |f| f.text.len());
        let mut out = Zeroizing::new(Vec::with_capacity(FIXED + flash_len + token.len()));
        out.push(VERSION);
        out.extend_from_slice(&self.started.to_be_bytes());
        out.extend_from_slice(&used.to_be_bytes());
        out.extend_from_slice(self.csrf.as_bytes());
        match &flash {
            None => out.extend_from_slice(&[NO_FLASH, 0, 0]),
            Some(Flash { done, text }) => {
                out.push(if *done { FLASH_DONE } else { FLASH_NOT_DONE });
                // `tell` keeps it under FLASH_MAX, so it always fits in two bytes.
                let len = u16::try_from(text.len()).unwrap_or(0);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&text.as_bytes()[..usize::from(len)]);
            }
        }
        pack_token(token, &mut out);
        out
    }

    /// A session from its layout, and when it was last used; `None` unless it is whole.
    fn unpack(plain: &[u8]) -> Option<(Session, u64)> {
        let mut r = Reader(plain);
        if r.u8()? != VERSION {
            return None;
        }
        let started = r.u64()?;
        let used = r.u64()?;
        let csrf = std::str::from_utf8(r.take(CSRF_LEN)?).ok()?.to_string();
        let kind = r.u8()?;
        let len = r.u16()?;
        let text = r.take(usize::from(len))?;
        let flash = match kind {
            NO_FLASH => None,
            FLASH_DONE | FLASH_NOT_DONE => Some(Flash {
                done: kind == FLASH_DONE,
                text: std::str::from_utf8(text).ok()?.to_string(),
            }),
            _ => return None,
        };
        let token = unpack_token(r.0)?;
        let session = Session {
            token,
            csrf,
            started,
            flash: Mutex::new(flash),
        };
        Some((session, used))
    }
}

/// Appends `token` in its shortest form: a JWT whose three parts are canonical base64url as
/// the parts' bytes (each of the first two after its length), anything else as given.
fn pack_token(token: &str, out: &mut Vec<u8>) {
    if let Some(parts) = jwt_parts(token) {
        out.push(TOKEN_JWT);
        for part in &parts[..2] {
            // `jwt_parts` took only parts whose length fits.
            let len = u16::try_from(part.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(part);
        }
        out.extend_from_slice(&parts[2]);
    } else {
        out.push(TOKEN_AS_GIVEN);
        out.extend_from_slice(token.as_bytes());
    }
}

/// The token [`pack_token`] packed into `bytes`.
fn unpack_token(bytes: &[u8]) -> Option<SecretString> {
    let mut r = Reader(bytes);
    let token = match r.u8()? {
        TOKEN_AS_GIVEN => std::str::from_utf8(r.0).ok()?.to_string(),
        TOKEN_JWT => {
            let len = r.u16()?;
            let header = r.take(usize::from(len))?;
            let len = r.u16()?;
            let payload = r.take(usize::from(len))?;
            [header, payload, r.0]
                .map(|part| URL_SAFE_NO_PAD.encode(part))
                .join(".")
        }
        _ => return None,
    };
    (!token.is_empty()).then(|| SecretString::from(token))
}

/// Bytes `token` takes once packed, its form byte included.
fn packed_token_len(token: &str) -> usize {
    1 + jwt_parts(token).map_or(token.len(), |parts| {
        4 + parts.iter().map(|part| part.len()).sum::<usize>()
    })
}

/// A JWT's three parts decoded, when each is base64url that encodes back to the same text
/// (so unpacking gives the token exactly) and the first two fit a two-byte length; the
/// decoded bytes are wiped when dropped.
fn jwt_parts(token: &str) -> Option<[Zeroizing<Vec<u8>>; 3]> {
    let mut parts = token.split('.');
    let mut next = || {
        let text = parts.next()?;
        let bytes = Zeroizing::new(URL_SAFE_NO_PAD.decode(text).ok()?);
        (URL_SAFE_NO_PAD.encode(&*bytes) == text).then_some(bytes)
    };
    let decoded = [next()?, next()?, next()?];
    let short = |part: &Zeroizing<Vec<u8>>| u16::try_from(part.len()).is_ok();
    (parts.next().is_none() && short(&decoded[0]) && short(&decoded[1])).then_some(decoded)
}

/// A cursor over a session's bytes: every read is `None` past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// `text` cut to at most `max` bytes on a character boundary, ending with `…` when cut.
fn cut(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

/// The session cookie's value in the request's `Cookie` headers.
fn cookie_value(headers: &HeaderMap) -> Option<&str> {
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

/// The cookie's attributes, for `max_age` seconds.
fn attributes(max_age: u64) -> String {
    format!("; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict")
}

/// Length of the `Set-Cookie` value holding a session of `plain_len` bytes for `max_age`
/// seconds.
fn set_cookie_len(plain_len: usize, max_age: u64) -> usize {
    COOKIE.len() + 1 + sealed_len(plain_len) + attributes(max_age).len()
}

/// The cookie carrying `sealed` for `max_age` seconds; the one that deletes it should the
/// value not be a header value (it always is: base64url).
fn cookie(sealed: &str, max_age: u64) -> HeaderValue {
    let text = format!("{COOKIE}={sealed}{}", attributes(max_age));
    let mut value = HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(CLEARED));
    value.set_sensitive(true);
    value
}

#[cfg(test)]
mod tests;
