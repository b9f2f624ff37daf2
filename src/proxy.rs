//! Forwarding an allowed request to the registry and its answer back, streaming both ways.
//!
//! Nothing here decides anything: by the time a request reaches [`Upstream::forward`] it has
//! been authorized. The request loses the client's credentials and proxy headers and gains
//! regate's own `X-Forwarded-*`; the response loses hop-by-hop headers and has `Location`/`Link`
//! headers that point at the registry's own origin rewritten to the gateway's public URL.
//! Bodies are passed through as streams, never buffered.

use std::time::Duration;

use axum::body::Body;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, Uri};

mod pool;

use crate::error::ApiError;

const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Why an upstream URL cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Not an absolute `http(s)://host[:port]` URL.
    #[error("upstream {url:?} is not an http(s)://host:port URL ({reason})")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// TLS cannot be set up for an https upstream.
    #[error("upstream {url:?}: {source}")]
    Tls {
        /// The URL given.
        url: String,
        /// Why.
        #[source]
        source: crate::upstream::auth::AuthError,
    },
}

/// The gateway's own origin as clients see it, e.g. `http://127.0.0.1:8080`.
#[derive(Clone, Debug)]
pub struct PublicOrigin {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]`.
    pub host: String,
}

impl PublicOrigin {
    /// `scheme://host`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.host)
    }
}

/// A request to the registry at `origin` failed (connection refused, reset, TLS).
#[derive(Debug, thiserror::Error)]
#[error("registry request to {origin} failed: {source}")]
pub struct RegistryFailed {
    /// The registry.
    pub origin: String,
    /// What failed.
    #[source]
    pub source: pool::PoolError,
}

/// The registry behind regate and the connections to it.
pub struct Upstream {
    pool: std::sync::Arc<pool::Pool>,
    /// `http(s)://host:port`, no trailing slash.
    origin: String,
    authority: http::uri::Authority,
    /// The `Host` header requests to it carry: its `host[:port]`.
    host: HeaderValue,
    /// How long a request without a body may wait for the registry's response headers.
    header_timeout: Duration,
}

impl Upstream {
    /// Whether the registry answers `GET /v2/` (any status below 500: 401 is an answer), within
    /// the header timeout; `Err` says what went wrong. For `/readyz`.
    pub async fn probe(&self) -> Result<http::StatusCode, String> {
        let request = Request::get("/v2/")
            .header(header::HOST, self.host.clone())
            .body(Body::empty())
            .map_err(|e| e.to_string())?;
        let sent = tokio::time::timeout(self.header_timeout, self.pool.send(request));
        match sent.await {
            Ok(Ok(response)) if response.status().is_server_error() => Err(format!(
                "{} answered GET /v2/ with {}",
                self.origin,
                response.status()
            )),
            Ok(Ok(response)) => Ok(response.status()),
            Ok(Err(error)) => Err(format!("{}: {}", self.origin, crate::error::chain(&*error))),
            Err(_) => Err(format!(
                "{}: no answer to GET /v2/ within {}",
                self.origin,
                humantime::format_duration(self.header_timeout)
            )),
        }
    }

    /// A client for the registry at `url` (`http://host:port` or `https://host[:port]`, checked
    /// against the system's CA certificates).
    pub fn new(url: &str, header_timeout: Duration) -> Result<Self, UpstreamError> {
        let bad = |reason| UpstreamError::BadUrl {
            url: url.to_string(),
            reason,
        };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let scheme = match uri.scheme_str() {
            Some(scheme @ ("http" | "https")) => scheme.to_string(),
            _ => return Err(bad("write http://host:port or https://host")),
        };
        let authority = uri.authority().cloned().ok_or(bad("no host"))?;
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("give the origin only, without a path"));
        }
        let connector =
            crate::upstream::auth::https_connector(Duration::from_secs(5)).map_err(|source| {
                UpstreamError::Tls {
                    url: url.to_string(),
                    source,
                }
            })?;
        let target = Uri::builder()
            .scheme(scheme.as_str())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|_| bad("not a URL"))?;
        Ok(Upstream {
            pool: pool::Pool::new(connector, target, Duration::from_secs(60)),
            origin: format!("{scheme}://{authority}"),
            host: HeaderValue::from_str(authority.as_str()).map_err(|_| bad("no host"))?,
            authority,
            header_timeout,
        })
    }

    /// The registry's `host:port`, as image references and pull secrets name it.
    pub fn authority(&self) -> &str {
        self.authority.as_str()
    }

    /// The registry's origin, `http://host:port`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Sends `req` (path and query as the client sent them, or as the gateway rewrote them) to
    /// the registry and returns its streaming response, headers rewritten for the client.
    pub async fn forward(
        &self,
        req: Request<Body>,
        public: &PublicOrigin,
        credential: Option<HeaderValue>,
    ) -> Result<Response<Body>, ApiError> {
        let (mut parts, body) = req.into_parts();
        // Origin form (`/v2/...?query`), as HTTP/1.1 sends it to an origin server.
        if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
            let path_and_query = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            parts.uri = path_and_query.parse().map_err(|_| ApiError::NotFound)?;
        }
        // The client may speak HTTP/2 to regate; the registry is spoken to in HTTP/1.1.
        parts.version = http::Version::HTTP_11;
        strip_request_headers(&mut parts.headers);
        parts.headers.insert(header::HOST, self.host.clone());
        // regate's own credential for the registry (a pull secret), never the client's.
        if let Some(credential) = credential {
            parts.headers.insert(header::AUTHORIZATION, credential);
        }
        if let Ok(v) = HeaderValue::from_str(&public.scheme) {
            parts.headers.insert(X_FORWARDED_PROTO, v);
        }
        if let Ok(v) = HeaderValue::from_str(&public.host) {
            parts.headers.insert(X_FORWARDED_HOST, v);
        }
        let has_body = !matches!(parts.method, Method::GET | Method::HEAD | Method::DELETE);
        let sent = self.pool.send(Request::from_parts(parts, body));
        // Only a request without a body gets a deadline for the response headers: with a body,
        // the registry answers after the last byte, which may take as long as the upload.
        let started = std::time::Instant::now();
        let result = if has_body {
            sent.await
        } else {
            tokio::time::timeout(self.header_timeout, sent)
                .await
                .map_err(|_| ApiError::UpstreamTimeout)?
        };
        crate::metrics::get()
            .upstream_seconds
            .observe(started.elapsed().as_secs_f64());
        let response = result.map_err(|source| {
            ApiError::upstream(RegistryFailed {
                origin: self.origin.clone(),
                source,
            })
        })?;
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        self.rewrite_links(&mut parts.headers, public);
        Ok(Response::from_parts(parts, body))
    }

    /// Points `Location` and `Link` headers at the gateway when they point at the registry.
    fn rewrite_links(&self, headers: &mut HeaderMap, public: &PublicOrigin) {
        let public = public.url();
        for name in [header::LOCATION, header::LINK] {
            let Some(value) = headers.get(&name).and_then(|v| v.to_str().ok()) else {
                continue;
            };
            if !value.contains(&self.origin) {
                continue;
            }
            let rewritten = value.replace(&self.origin, &public);
            if let Ok(v) = HeaderValue::from_str(&rewritten) {
                headers.insert(name, v);
            }
        }
    }
}

/// Removes what must not reach the registry: hop-by-hop headers, the client's credentials and
/// cookies, and proxy headers a client could forge.
fn strip_request_headers(headers: &mut HeaderMap) {
    strip(headers, |name| {
        matches!(
            *name,
            header::AUTHORIZATION | header::COOKIE | header::FORWARDED | header::HOST
        ) || name.as_str().starts_with("x-forwarded-")
    });
}

/// Removes the hop-by-hop headers of RFC 9110 §7.6.1, and those `Connection` names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip(headers, |_| false);
}

/// The hop-by-hop headers, and the proxy ones a client must not pass through.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

/// Removes the hop-by-hop headers, those `Connection` names, and those `also` picks. One look
/// over the names first: most messages carry few of them, and each removal hashes its name.
fn strip(headers: &mut HeaderMap, also: impl Fn(&HeaderName) -> bool) {
    let mut doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| HOP_BY_HOP.contains(name) || also(name))
        .cloned()
        .collect();
    if doomed.contains(&header::CONNECTION) {
        let listed = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok());
        doomed.extend(listed);
    }
    for name in doomed {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests;
