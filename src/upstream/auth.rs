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

mod challenge;
mod check;
mod client;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use base64::Engine;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::upstream::keyring::{Credential, Entry, Keyring};
pub use challenge::{Challenge, parse_challenge};
pub use check::check_credential;
pub(crate) use client::{Http, https_connector};

/// How long a token lives when the realm does not say (`expires_in` absent or 0), per the
/// distribution token spec.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// A cached token is dropped 10% of its lifetime before it expires, but never more than this
/// early.
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// How many tokens one registry's cache keeps (one per realm, service and scope).
const TOKEN_CACHE_CAPACITY: u64 = 10_000;
/// The OAuth2 `client_id` regate names itself with when it refreshes an identity token.
const CLIENT_ID: &str = "regate";

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
         e.g. regate registry login --registry={} --auth-basic-stdin --to=FILE",
        crate::shell::Quoted(.registry)
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

#[cfg(test)]
mod tests;
