//! Answering a secured registry's own challenge (docs/behaviour.md §8).
//!
//! A registry says how it wants to be authenticated in the `WWW-Authenticate` header of a 401
//! to `GET /v2/`. [`UpstreamAuth`] asks once per registry and caches the answer:
//!
//! - `Basic`: the first matching pull-secret entry's username and password are sent with every
//!   request, pre-emptively.
//! - `Bearer realm=...,service=...`: a token is fetched from the realm, `GET` with Basic
//!   credentials, or `POST` of an OAuth2 form (`grant_type=refresh_token`) for an identity
//!   token. The entries matching the realm's host are tried first (delegated authentication,
//!   as Docker Hub's `auth.docker.io`), then those of the registry, most specific first, until
//!   the realm accepts one. Tokens are cached per (realm, service, scope) until shortly before
//!   their `expires_in` (60 s when absent, as the token spec says). Without any matching
//!   entry a token is asked for anonymously, which is how public images are pulled.
//!
//! What is sent upstream is built here only from the pull secret: the client's own
//! `Authorization` never leaves regate. Passwords and tokens are kept as [`SecretString`] and
//! never appear in logs, `Debug` output or errors.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use base64::Engine;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{ConfigBuilderExt, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::upstream::keyring::{Credential, Entry, Keyring};

/// How long a token lives when the realm does not say (`expires_in` absent or 0), per the
/// distribution token spec.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// A cached token is dropped 10% of its lifetime before it expires, but never more than this
/// early.
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// How many tokens one registry's cache keeps (one per realm, service and scope).
const TOKEN_CACHE_CAPACITY: u64 = 10_000;
/// The largest body read from a registry's `/v2/` or a realm; a token response is a few KiB.
const MAX_BODY: usize = 1 << 20;
/// The OAuth2 `client_id` regate names itself with when it refreshes an identity token.
const CLIENT_ID: &str = "regate";
const USER_AGENT: &str = concat!("regate/", env!("CARGO_PKG_VERSION"));

/// A registry's challenge, from `WWW-Authenticate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// Username and password on every request.
    Basic {
        /// The protection space, informational only.
        realm: Option<String>,
    },
    /// A token from `realm`, for `service` and `scope`.
    Bearer {
        /// The token endpoint's URL.
        realm: String,
        /// The `service` to ask the realm a token for.
        service: Option<String>,
        /// The scope the registry named, used when the caller names none.
        scope: Option<String>,
    },
}

/// Why regate cannot authenticate to a registry.
#[derive(Clone, Debug, thiserror::Error)]
pub enum AuthError {
    /// The registry's origin is not an `http(s)://host[:port]` URL.
    #[error("registry {origin:?} is not an http(s)://host[:port] URL ({reason})")]
    BadOrigin {
        /// The origin given.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS client could not be set up.
    #[error("cannot set up TLS toward registries ({reason})")]
    Tls {
        /// What failed.
        reason: String,
    },
    /// The registry or its token realm did not answer.
    #[error("cannot reach {url}: {reason}; check the address and that it is up")]
    Unreachable {
        /// What was asked, without its query.
        url: String,
        /// What failed (connection refused, TLS, timeout...).
        reason: String,
    },
    /// The registry or its token realm answered with a status that fits no protocol step.
    #[error("{url} answered {status}; {hint}")]
    UnexpectedStatus {
        /// What was asked, without its query.
        url: String,
        /// The status it answered.
        status: u16,
        /// What was expected instead.
        hint: &'static str,
    },
    /// The registry answered 401 without a challenge regate can answer.
    #[error(
        "{registry} asks for credentials with {challenge:?}, which regate cannot answer: only \
         Basic and Bearer (token realm) challenges are supported"
    )]
    BadChallenge {
        /// The registry's `host[:port]`.
        registry: String,
        /// Its `WWW-Authenticate` values (no secret: the registry's own words).
        challenge: String,
    },
    /// The registry sends clients to a token realm that is not an `http(s)` URL.
    #[error("{registry} names the token realm {realm:?}, which is not usable ({reason})")]
    BadRealm {
        /// The registry's `host[:port]`.
        registry: String,
        /// The realm it named.
        realm: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The token realm answered 200 without a token regate can use.
    #[error("the token realm {url} answered without a usable token ({reason})")]
    BadTokenResponse {
        /// The realm, without query.
        url: String,
        /// What is wrong with the answer.
        reason: &'static str,
    },
    /// The registry needs credentials and the pull secret has none for the image.
    #[error(
        "{registry} requires credentials and the pull secret has no entry for {image}; add one, \
         e.g. regate registry login --registry={registry} --auth-basic-stdin --to=FILE"
    )]
    NoCredentials {
        /// The registry's `host[:port]`.
        registry: String,
        /// The image (or registry) credentials were looked up for.
        image: String,
    },
    /// Every credential the pull secret has for the image was refused.
    #[error(
        "credentials rejected by {registry}: {reason}; update the pull secret (e.g. regate \
         registry login --registry={registry} ...)"
    )]
    Rejected {
        /// The registry's `host[:port]`.
        registry: String,
        /// Who refused what (entry keys and statuses, never a secret).
        reason: String,
    },
}

/// Parses a `WWW-Authenticate` value: one or more challenges, each a case-insensitive scheme
/// and `name=value` parameters whose values may be quoted (with commas and `\"` inside).
/// Of several challenges, Bearer is preferred over Basic; other schemes are ignored. `None`
/// when the value is malformed or offers neither Basic nor a Bearer with a realm.
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let mut basic = None;
    for (scheme, params) in parse_challenges(value)? {
        let param = |name: &str| {
            params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        if scheme.eq_ignore_ascii_case("bearer") {
            let Some(realm) = param("realm").filter(|r| !r.trim().is_empty()) else {
                continue;
            };
            return Some(Challenge::Bearer {
                realm,
                service: param("service"),
                scope: param("scope"),
            });
        }
        if scheme.eq_ignore_ascii_case("basic") && basic.is_none() {
            basic = Some(Challenge::Basic {
                realm: param("realm"),
            });
        }
    }
    basic
}

/// A challenge's scheme and parameters (names as given).
type RawChallenge = (String, Vec<(String, String)>);

/// Splits a `WWW-Authenticate` value into challenges (RFC 9110 §11.6.1); `None` when it is
/// malformed (an unterminated quote, a stray character).
fn parse_challenges(value: &str) -> Option<Vec<RawChallenge>> {
    let mut p = Cursor {
        s: value.as_bytes(),
        pos: 0,
    };
    let mut challenges = Vec::new();
    loop {
        p.skip(b" \t,");
        if p.at_end() {
            break;
        }
        let scheme = p.token()?;
        let mut params = Vec::new();
        loop {
            let before = p.pos;
            p.skip(b" \t,");
            if p.at_end() {
                break;
            }
            let name = p.token()?;
            p.skip(b" \t");
            if p.peek() != Some(b'=') {
                // Not a parameter: the next challenge's scheme.
                p.pos = before;
                break;
            }
            p.pos += 1;
            p.skip(b" \t");
            let value = if p.peek() == Some(b'"') {
                p.quoted()?
            } else {
                p.bare()?
            };
            params.push((name, value));
            p.skip(b" \t");
            if !matches!(p.peek(), None | Some(b',')) {
                return None;
            }
        }
        challenges.push((scheme, params));
    }
    Some(challenges)
}

/// A position in a header value being parsed.
struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip(&mut self, set: &[u8]) {
        while self.peek().is_some_and(|c| set.contains(&c)) {
            self.pos += 1;
        }
    }

    /// A run of bytes that `accept`s, as text; `None` when empty.
    fn run(&mut self, accept: impl Fn(u8) -> bool) -> Option<String> {
        let start = self.pos;
        while self.peek().is_some_and(&accept) {
            self.pos += 1;
        }
        // Runs stop only at ASCII bytes, so the slice is whole UTF-8 characters.
        let text = std::str::from_utf8(&self.s[start..self.pos]).ok()?;
        (!text.is_empty()).then(|| text.to_string())
    }

    /// An RFC 9110 token (a scheme or a parameter name).
    fn token(&mut self) -> Option<String> {
        self.run(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
    }

    /// An unquoted parameter value: anything up to a comma or a blank (lenient, as registries
    /// write `realm=https://...` unquoted).
    fn bare(&mut self) -> Option<String> {
        self.run(|c| !b", \t\"".contains(&c))
    }

    /// A quoted string, its `\x` escapes resolved.
    fn quoted(&mut self) -> Option<String> {
        self.pos += 1; // the opening quote
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return String::from_utf8(out).ok();
                }
                b'\\' => {
                    out.push(*self.s.get(self.pos + 1)?);
                    self.pos += 2;
                }
                c => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }
}

/// Gets and caches what to send a registry. One per upstream (cheap to clone: `Arc` inside).
#[derive(Clone)]
pub struct UpstreamAuth {
    inner: Arc<Inner>,
}

struct Inner {
    http: Http,
    /// `http(s)://host[:port]`, no trailing slash.
    origin: Url,
    /// `host[:port]`, as errors name the registry.
    registry: String,
    /// What `GET /v2/` answered, until [`UpstreamAuth::rejected`].
    challenge: ArcSwapOption<Discovered>,
    /// Held while `GET /v2/` is asked, so concurrent requests ask once.
    discovering: tokio::sync::Mutex<()>,
    tokens: moka::future::Cache<TokenKey, Token>,
}

impl fmt::Debug for UpstreamAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamAuth")
            .field("origin", &self.inner.origin.as_str())
            .finish_non_exhaustive()
    }
}

/// What a registry's `GET /v2/` says about authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Discovered {
    /// 200: no credentials needed.
    Open,
    /// 401 with this challenge.
    Challenged(Challenge),
}

/// What a token is cached under.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct TokenKey {
    realm: String,
    service: Option<String>,
    scope: Option<String>,
}

/// A token from a realm.
#[derive(Clone)]
struct Token {
    secret: SecretString,
    /// How long it may be cached: its lifetime less the refresh margin.
    cache_for: Duration,
}

/// Expires each cached token after its own `cache_for`.
struct TokenExpiry;

impl moka::Expiry<TokenKey, Token> for TokenExpiry {
    fn expire_after_create(&self, _: &TokenKey, token: &Token, _: Instant) -> Option<Duration> {
        Some(token.cache_for)
    }
}

impl UpstreamAuth {
    /// `origin` is `http(s)://host[:port]` of the registry, `timeout` per HTTP exchange.
    pub fn new(origin: &str, timeout: Duration) -> Result<UpstreamAuth, AuthError> {
        let origin = parse_origin(origin)?;
        Ok(UpstreamAuth {
            inner: Arc::new(Inner {
                http: Http::new(timeout)?,
                registry: host_port(&origin),
                origin,
                challenge: ArcSwapOption::empty(),
                discovering: tokio::sync::Mutex::new(()),
                tokens: moka::future::Cache::builder()
                    .max_capacity(TOKEN_CACHE_CAPACITY)
                    .expire_after(TokenExpiry)
                    .support_invalidation_closures()
                    .build(),
            }),
        })
    }

    /// The `Authorization` header for a request to this registry needing `scope` (e.g.
    /// `repository:ns/app:pull,push`, `None` for `/v2/` or the catalog), using `keyring`
    /// entries for `image` (`host[:port]/ns/app`).
    ///
    /// The challenge is discovered with `GET {origin}/v2/` once (a 200 there means no
    /// credentials are needed: `Ok(None)`). Basic: the first matching entry with a username
    /// and password. Bearer: a token from the realm, cached, else fetched trying each entry
    /// for the realm's host, then each for the registry's, most specific first (anonymously
    /// when there is none). `Err(NoCredentials)` when credentials are needed and the keyring
    /// has none that fit; `Err(Rejected)` when the realm refused every candidate (for Basic,
    /// the caller sees the registry's 401 and calls [`UpstreamAuth::rejected`]).
    pub async fn authorization(
        &self,
        keyring: &Keyring,
        image: &str,
        scope: Option<&str>,
    ) -> Result<Option<HeaderValue>, AuthError> {
        let inner = &self.inner;
        let challenge = self.challenge().await?;
        match &*challenge {
            Discovered::Open => Ok(None),
            Discovered::Challenged(Challenge::Basic { .. }) => {
                let basic =
                    keyring
                        .lookup(image)
                        .into_iter()
                        .find_map(|entry| match &entry.credential {
                            Credential::Basic { username, password } => Some((username, password)),
                            Credential::IdentityToken(_) => None,
                        });
                match basic {
                    Some((username, password)) => Ok(Some(basic_header(username, password))),
                    None => Err(AuthError::NoCredentials {
                        registry: inner.registry.clone(),
                        image: image.to_string(),
                    }),
                }
            }
            Discovered::Challenged(Challenge::Bearer {
                realm,
                service,
                scope: challenge_scope,
            }) => {
                let key = TokenKey {
                    realm: realm.clone(),
                    service: service.clone(),
                    scope: scope
                        .map(str::to_string)
                        .or_else(|| challenge_scope.clone()),
                };
                let fetch = self.fetch_token(keyring, image, &key);
                let token = inner
                    .tokens
                    .try_get_with(key.clone(), fetch)
                    .await
                    .map_err(Arc::unwrap_or_clone)?;
                Ok(Some(bearer_header(&token.secret, &key.realm)?))
            }
        }
    }

    /// Told that the registry answered 401 to a request carrying what
    /// [`UpstreamAuth::authorization`] gave: forgets the cached challenge and the tokens for
    /// `scope`, so the next request starts afresh (the challenge may have changed, a token may
    /// have been revoked).
    pub fn rejected(&self, scope: Option<&str>) {
        let previous = self.inner.challenge.swap(None);
        let challenge_scope = match previous.as_deref() {
            Some(Discovered::Challenged(Challenge::Bearer { scope, .. })) => scope.clone(),
            _ => None,
        };
        let scope = scope.map(str::to_string).or(challenge_scope);
        let forgotten = self
            .inner
            .tokens
            .invalidate_entries_if(move |key, _| key.scope == scope);
        if let Err(error) = forgotten {
            tracing::warn!(registry = %self.inner.registry, %error, "cannot forget cached tokens");
        }
    }

    /// The registry's challenge: cached, else asked with `GET /v2/` (once for concurrent
    /// callers).
    async fn challenge(&self) -> Result<Arc<Discovered>, AuthError> {
        let inner = &self.inner;
        if let Some(known) = inner.challenge.load_full() {
            return Ok(known);
        }
        let _asking = inner.discovering.lock().await;
        if let Some(known) = inner.challenge.load_full() {
            return Ok(known);
        }
        let discovered = Arc::new(discover(&inner.http, &inner.origin, None).await?);
        tracing::debug!(registry = %inner.registry, challenge = ?discovered, "registry challenge");
        inner.challenge.store(Some(discovered.clone()));
        Ok(discovered)
    }

    /// A token for `key` from its realm, with the first candidate entry the realm accepts.
    async fn fetch_token(
        &self,
        keyring: &Keyring,
        image: &str,
        key: &TokenKey,
    ) -> Result<Token, AuthError> {
        let inner = &self.inner;
        let realm = parse_realm(&key.realm, &inner.registry)?;
        let realm_host = host_port(&realm);
        // As the kubelet, credentials are picked by the image's registry: with no entry for it,
        // none is sent. With one, a realm on another host (delegated authentication) is asked
        // with its own entry first when the pull secret has one, then with the registry's.
        let registry_entries = keyring.lookup(image);
        let mut candidates: Vec<&Entry> = Vec::new();
        if realm_host != inner.registry && !registry_entries.is_empty() {
            candidates.extend(keyring.lookup(&realm_host));
        }
        for entry in registry_entries {
            if !candidates.iter().any(|c| c.key == entry.key) {
                candidates.push(entry);
            }
        }
        let (service, scope) = (key.service.as_deref(), key.scope.as_deref());
        if candidates.is_empty() {
            return match request_token(&inner.http, &realm, service, scope, None).await? {
                Fetched::Token(token) => Ok(token),
                Fetched::Refused(_) => Err(AuthError::NoCredentials {
                    registry: inner.registry.clone(),
                    image: image.to_string(),
                }),
            };
        }
        let mut refused = Vec::new();
        for entry in candidates {
            let credential = Some(&entry.credential);
            match request_token(&inner.http, &realm, service, scope, credential).await? {
                Fetched::Token(token) => {
                    tracing::debug!(
                        registry = %inner.registry, realm = %without_query(&realm),
                        scope = scope.unwrap_or(""), entry = %entry.key, "fetched a registry token"
                    );
                    return Ok(token);
                }
                Fetched::Refused(status) => {
                    tracing::debug!(
                        registry = %inner.registry, realm = %without_query(&realm),
                        entry = %entry.key, %status, "token realm refused a pull-secret entry"
                    );
                    refused.push(format!("{:?} ({})", entry.key, status.as_u16()));
                }
            }
        }
        Err(AuthError::Rejected {
            registry: inner.registry.clone(),
            reason: format!(
                "its token realm {} refused the pull-secret entries {}",
                without_query(&realm),
                refused.join(", ")
            ),
        })
    }
}

/// `GET {registry}/v2/` with `credential` answered as the registry challenges (Basic, or Bearer
/// via its realm): `Ok` when it ends in 200 (or when the registry needs no credentials at
/// all), `Err(Rejected)` on 401/403. For `regate registry login` without `--skip-check`.
///
/// `registry` is a `host[:port]` (a path after it is ignored; https is tried first, then http
/// for `127.0.0.1`, `localhost` and `[::1]` only), or a full `http(s)://` URL.
pub async fn check_credential(
    registry: &str,
    credential: &Credential,
    timeout: Duration,
) -> Result<(), AuthError> {
    let http = Http::new(timeout)?;
    // The first origin that answers; an unreachable https one falls back to http on loopback.
    let mut found = Err(AuthError::BadOrigin {
        origin: registry.to_string(),
        reason: "no host".to_string(),
    });
    for origin in candidate_origins(registry)? {
        found = discover(&http, &origin, None).await.map(|d| (origin, d));
        if !matches!(found, Err(AuthError::Unreachable { .. })) {
            break;
        }
    }
    let (origin, discovered) = found?;
    let name = host_port(&origin);
    let rejected = |reason: String| AuthError::Rejected {
        registry: name.clone(),
        reason,
    };
    let header = match discovered {
        Discovered::Open => return Ok(()),
        Discovered::Challenged(Challenge::Basic { .. }) => match credential {
            Credential::Basic { username, password } => basic_header(username, password),
            Credential::IdentityToken(_) => {
                return Err(rejected(
                    "it asks for a username and password (Basic), not an identity token".into(),
                ));
            }
        },
        Discovered::Challenged(Challenge::Bearer {
            realm,
            service,
            scope,
        }) => {
            let url = parse_realm(&realm, &name)?;
            let fetched = request_token(
                &http,
                &url,
                service.as_deref(),
                scope.as_deref(),
                Some(credential),
            )
            .await?;
            match fetched {
                Fetched::Token(token) => bearer_header(&token.secret, &realm)?,
                Fetched::Refused(status) => {
                    return Err(rejected(format!(
                        "its token realm {} answered {status}",
                        without_query(&url)
                    )));
                }
            }
        }
    };
    match discover(&http, &origin, Some(header)).await {
        Ok(Discovered::Open) => Ok(()),
        Ok(Discovered::Challenged(_)) => Err(rejected("GET /v2/ answered 401".into())),
        Err(AuthError::UnexpectedStatus { status: 403, .. }) => {
            Err(rejected("GET /v2/ answered 403 Forbidden".into()))
        }
        Err(error) => Err(error),
    }
}

/// The origins to try for `registry` (`host[:port][/path]` or a URL), in order.
fn candidate_origins(registry: &str) -> Result<Vec<Url>, AuthError> {
    if registry.contains("://") {
        let url = Url::parse(registry).map_err(|e| AuthError::BadOrigin {
            origin: registry.to_string(),
            reason: e.to_string(),
        })?;
        return Ok(vec![parse_origin(&format!(
            "{}://{}",
            url.scheme(),
            host_port(&url)
        ))?]);
    }
    let authority = registry.split('/').next().unwrap_or_default();
    let https = parse_origin(&format!("https://{authority}"))?;
    let loopback = matches!(https.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    let mut origins = vec![https];
    if loopback {
        origins.push(parse_origin(&format!("http://{authority}"))?);
    }
    Ok(origins)
}

/// Checks that `origin` is `http(s)://host[:port]` with nothing else.
fn parse_origin(origin: &str) -> Result<Url, AuthError> {
    let bad = |reason: &str| AuthError::BadOrigin {
        origin: origin.to_string(),
        reason: reason.to_string(),
    };
    let url = Url::parse(origin).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("credentials belong in the pull secret, not the URL"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("give the origin only, without a path"));
    }
    Ok(url)
}

/// Checks a Bearer challenge's realm.
fn parse_realm(realm: &str, registry: &str) -> Result<Url, AuthError> {
    let bad = |reason| AuthError::BadRealm {
        registry: registry.to_string(),
        realm: realm.to_string(),
        reason,
    };
    let url = Url::parse(realm).map_err(|_| bad("not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("not an http or https URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("it carries credentials"));
    }
    Ok(url)
}

/// `host[:port]` of `url`, the port left out when it is the scheme's default.
fn host_port(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// `url` without its query and fragment, as errors and logs show it.
fn without_query(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

/// `Basic base64(username:password)`, marked sensitive.
fn basic_header(username: &str, password: &SecretString) -> HeaderValue {
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(format!("{username}:{}", password.expose_secret()));
    let mut value = HeaderValue::try_from(format!("Basic {encoded}"))
        .expect("base64 text is a valid header value");
    value.set_sensitive(true);
    value
}

/// `Bearer TOKEN`, marked sensitive.
fn bearer_header(token: &SecretString, realm: &str) -> Result<HeaderValue, AuthError> {
    let mut value =
        HeaderValue::try_from(format!("Bearer {}", token.expose_secret())).map_err(|_| {
            AuthError::BadTokenResponse {
                url: realm.to_string(),
                reason: "the token is not valid in a header",
            }
        })?;
    value.set_sensitive(true);
    Ok(value)
}

/// `GET {origin}/v2/`, with `authorization` if given: 2xx is [`Discovered::Open`], 401 the
/// challenge it carries.
async fn discover(
    http: &Http,
    origin: &Url,
    authorization: Option<HeaderValue>,
) -> Result<Discovered, AuthError> {
    let registry = host_port(origin);
    let url = format!("{}://{registry}/v2/", origin.scheme());
    let mut request = Request::get(&url);
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    let answer = http.exchange(request, Bytes::new(), &url).await?;
    if answer.status.is_success() {
        return Ok(Discovered::Open);
    }
    if answer.status != StatusCode::UNAUTHORIZED {
        return Err(AuthError::UnexpectedStatus {
            url,
            status: answer.status.as_u16(),
            hint: "a registry answers GET /v2/ with 200 or 401; check that this is a registry's \
                   address",
        });
    }
    let values: Vec<&str> = answer
        .headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let mut challenges = values.iter().filter_map(|v| parse_challenge(v));
    let first = challenges.next();
    let challenge = match first {
        Some(Challenge::Basic { .. }) => challenges
            .find(|c| matches!(c, Challenge::Bearer { .. }))
            .or(first),
        other => other,
    };
    challenge
        .map(Discovered::Challenged)
        .ok_or_else(|| AuthError::BadChallenge {
            registry,
            challenge: values.join(", "),
        })
}

/// What a realm answered a token request.
enum Fetched {
    Token(Token),
    /// 401 or 403 (or, for the OAuth2 form, 400: `invalid_grant`).
    Refused(StatusCode),
}

/// Asks `realm` for a token: `GET` with Basic credentials (or none), or `POST` of the OAuth2
/// refresh-token form for an identity token.
async fn request_token(
    http: &Http,
    realm: &Url,
    service: Option<&str>,
    scope: Option<&str>,
    credential: Option<&Credential>,
) -> Result<Fetched, AuthError> {
    let shown = without_query(realm);
    let scopes = scope.map(str::split_whitespace).into_iter().flatten();
    let answer = match credential {
        Some(Credential::IdentityToken(token)) => {
            // The serializer is not `Send`: finished before the await.
            let body = {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                form.append_pair("grant_type", "refresh_token")
                    .append_pair("refresh_token", token.expose_secret())
                    .append_pair("client_id", CLIENT_ID);
                if let Some(service) = service {
                    form.append_pair("service", service);
                }
                let scope = scopes.collect::<Vec<_>>().join(" ");
                if !scope.is_empty() {
                    form.append_pair("scope", &scope);
                }
                Bytes::from(form.finish())
            };
            let request = Request::post(realm.as_str()).header(
                header::CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=utf-8",
            );
            http.exchange(request, body, &shown).await?
        }
        basic => {
            let mut url = realm.clone();
            {
                let mut query = url.query_pairs_mut();
                if let Some(service) = service {
                    query.append_pair("service", service);
                }
                for scope in scopes {
                    query.append_pair("scope", scope);
                }
                if let Some(Credential::Basic { username, .. }) = basic {
                    query.append_pair("account", username);
                }
            }
            let mut request = Request::get(url.as_str());
            if let Some(Credential::Basic { username, password }) = basic {
                request = request.header(header::AUTHORIZATION, basic_header(username, password));
            }
            http.exchange(request, Bytes::new(), &shown).await?
        }
    };
    let form = matches!(credential, Some(Credential::IdentityToken(_)));
    match answer.status {
        StatusCode::OK => parse_token(&answer.body, &shown).map(Fetched::Token),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Ok(Fetched::Refused(answer.status)),
        StatusCode::BAD_REQUEST if form => Ok(Fetched::Refused(answer.status)),
        status => Err(AuthError::UnexpectedStatus {
            url: shown,
            status: status.as_u16(),
            hint: "a token realm answers 200 with a token, or 401/403 to refused credentials",
        }),
    }
}

/// A token response's token and how long to cache it.
fn parse_token(body: &[u8], realm: &str) -> Result<Token, AuthError> {
    /// The distribution token response; `token` and `access_token` are synonyms.
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        access_token: Option<String>,
        #[serde(default)]
        expires_in: Option<serde_json::Value>,
    }
    let bad = |reason| AuthError::BadTokenResponse {
        url: realm.to_string(),
        reason,
    };
    // The parser's message could quote the body, which holds the token: not shown.
    let body: Body = serde_json::from_slice(body)
        .map_err(|_| bad("not a JSON object with a token or access_token string"))?;
    let secret = [body.token, body.access_token]
        .into_iter()
        .flatten()
        .find(|t| !t.is_empty())
        .map(SecretString::from)
        .ok_or_else(|| bad("neither token nor access_token is set"))?;
    let lifetime = body
        .expires_in
        .as_ref()
        .and_then(serde_json::Value::as_u64)
        .filter(|&s| s > 0)
        .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
    let token = Token {
        secret,
        cache_for: lifetime - (lifetime / 10).min(MAX_REFRESH_MARGIN),
    };
    bearer_header(&token.secret, realm)?;
    Ok(token)
}

/// An HTTP(S) client with a deadline per exchange.
struct Http {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

/// A response, its body read.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Http {
    fn new(timeout: Duration) -> Result<Http, AuthError> {
        let connector = https_connector(timeout)?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Http { client, timeout })
    }

    /// Sends `request` with `body` and reads the answer, all within the timeout. `shown` names
    /// the request in errors (no query: it may name an account).
    async fn exchange(
        &self,
        request: http::request::Builder,
        body: Bytes,
        shown: &str,
    ) -> Result<Answer, AuthError> {
        let unreachable = |reason: String| AuthError::Unreachable {
            url: shown.to_string(),
            reason,
        };
        let request = request
            .header(header::USER_AGENT, USER_AGENT)
            .header(header::ACCEPT, "application/json")
            .body(Full::new(body))
            .map_err(|e| unreachable(format!("cannot build the request: {e}")))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| unreachable(error_chain(&e)))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                unreachable(format!(
                    "no answer within {}",
                    humantime::format_duration(self.timeout)
                ))
            })?
    }
}

/// `error` and its sources, `: `-separated (hyper's own message says little).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A connector for `http://` and `https://` registries (TLS as [`tls_config`]), giving up on a
/// connection after `connect_timeout`. Shared by the proxy and the token fetcher.
pub(crate) fn https_connector(
    connect_timeout: Duration,
) -> Result<HttpsConnector<HttpConnector>, AuthError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    Ok(HttpsConnectorBuilder::new()
        .with_tls_config(tls_config()?)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// The TLS settings: the ring provider and the system's CA certificates, loaded once.
fn tls_config() -> Result<rustls::ClientConfig, AuthError> {
    static CONFIG: OnceLock<Result<rustls::ClientConfig, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let builder = || {
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())
            };
            match builder()?.with_native_roots() {
                Ok(config) => Ok(config.with_no_client_auth()),
                Err(error) => {
                    tracing::warn!(
                        %error,
                        "no CA certificates found: https registries and token realms will be \
                         refused; install the system's CA certificates or set SSL_CERT_FILE"
                    );
                    Ok(builder()?
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth())
                }
            }
        })
        .clone()
        .map_err(|reason| AuthError::Tls { reason })
}

#[cfg(test)]
mod tests;
