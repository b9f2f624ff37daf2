//! Where a request claims to come to: the request target, `Host`, and a trusted proxy's
//! `X-Forwarded-*` and `X-Request-Id` (docs/behaviour.md §10).
//!
//! These values end up in the realm of a challenge and in rewritten `Location` headers, so they
//! are checked before any other work: `host[:port]` only (a reg-name, an IPv4 address or a
//! bracketed IPv6 address), one `Host` header, an origin-form target, and no `CONNECT`. Anything
//! else is a 400 (405 for `CONNECT`) that never reaches the registry.

use std::net::{Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
use http::{HeaderMap, Method, Uri, Version, header};

use crate::config::{Config, TrustedProxies};
use crate::error::ApiError;
use crate::proxy::PublicOrigin;

/// Longest host name (RFC 1035) plus room for a port.
const MAX_AUTHORITY_LEN: usize = 253 + 6;

/// Refuses what regate will not answer: `CONNECT`, an absolute-form target, two `Host` headers
/// or one that is not `host[:port]`.
pub(super) fn check_target(req: &Request) -> Result<(), ApiError> {
    if req.method() == Method::CONNECT {
        return Err(ApiError::Unsupported {
            message: "regate is not a proxy: CONNECT is not supported".into(),
            allow: "GET, HEAD, POST, PUT, PATCH, DELETE",
        });
    }
    // In HTTP/2 every request has an authority (`:authority`); in HTTP/1 only a proxy request.
    if req.version() < Version::HTTP_2 && req.uri().authority().is_some() {
        return Err(bad(
            "an absolute-form request target is for proxies; send the path only",
        ));
    }
    if let Some(authority) = req.uri().authority()
        && !is_authority(authority.as_str())
    {
        return Err(bad("the :authority must be host[:port]"));
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    if let Some(host) = hosts.next() {
        if hosts.next().is_some() {
            return Err(bad("more than one Host header"));
        }
        if !host.to_str().is_ok_and(is_authority) {
            return Err(bad("the Host header must be host[:port]"));
        }
        // RFC 9113 §8.3.1: a Host naming another authority than `:authority` is malformed, so
        // whichever of the two a later step reads, it reads the same.
        if let Some(authority) = req.uri().authority()
            && !host
                .as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes())
        {
            return Err(bad("the Host header must match the :authority"));
        }
    }
    Ok(())
}

/// The authority a request was sent to, however it arrived: HTTP/2's `:authority` (the URI's
/// authority; HTTP/1 has one only in an absolute-form target, RFC 9112 §3.2.2), else `Host`.
/// Not checked here: [`check_target`] refuses one that is not `host[:port]`.
pub(super) fn authority<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    match uri.authority() {
        Some(authority) => Some(authority.as_str()),
        None => text(headers, "host"),
    }
}

/// Longest `X-Request-Id` kept from a trusted proxy.
const MAX_REQUEST_ID_LEN: usize = 128;

/// `req` without its `X-Request-Id` unless a trusted proxy sent it (one value, at most 128
/// visible ASCII characters): a client must not name its request in the audit log, nor pass
/// itself off as another. What is dropped is replaced by regate's own.
pub(super) fn untrusted_request_id_dropped(
    mut req: Request,
    trusted_proxies: &TrustedProxies,
) -> Request {
    let headers = req.headers();
    if !headers.contains_key("x-request-id") {
        return req;
    }
    let trusted = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|c| trusted_proxies.contains(&c.0.ip()));
    let mut values = headers.get_all("x-request-id").iter();
    let sound = values.next().is_some_and(|v| {
        v.len() <= MAX_REQUEST_ID_LEN && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
    }) && values.next().is_none();
    if !(trusted && sound) {
        req.headers_mut().remove("x-request-id");
    }
    req
}

/// The origin clients reach regate at: `public_url`, else a trusted proxy's
/// `X-Forwarded-Proto` and `X-Forwarded-Host` (each checked like `Host`), else the request's
/// [`authority`] (HTTP/2's `:authority`, HTTP/1's `Host`), else the listen address; the scheme
/// is `https` when regate serves TLS.
pub(super) fn public_origin(req: &Request, config: &Config) -> Result<PublicOrigin, ApiError> {
    if let Some(origin) = &config.public_url {
        return Ok(origin.clone());
    }
    let (trusted_proxies, listen) = (&config.trusted_proxies, config.listen);
    let headers = req.headers();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let trusted = peer.is_some_and(|ip| trusted_proxies.contains(&ip));
    let forwarded = |name| trusted.then(|| text(headers, name)).flatten();
    let host = match forwarded("x-forwarded-host") {
        Some(host) if is_authority(host) => host.to_string(),
        Some(_) => return Err(bad("X-Forwarded-Host must be host[:port]")),
        // Checked by `check_target` already.
        None => authority(req.uri(), headers)
            .filter(|h| is_authority(h))
            .map_or_else(|| listen.to_string(), str::to_string),
    };
    let scheme = match forwarded("x-forwarded-proto") {
        None if config.tls.is_some() => "https",
        None => "http",
        Some(p) if p.eq_ignore_ascii_case("http") => "http",
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        Some(_) => return Err(bad("X-Forwarded-Proto must be http or https")),
    };
    Ok(PublicOrigin {
        scheme: scheme.to_string(),
        host,
    })
}

fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether `s` is `host[:port]`: a reg-name of letters, digits, `-`, `.` and `_`, or a bracketed
/// IPv6 address, and an optional port of 1 to 5 digits up to 65535.
pub fn is_authority(s: &str) -> bool {
    if s.is_empty() || s.len() > MAX_AUTHORITY_LEN {
        return false;
    }
    let (host_ok, port) = match s.strip_prefix('[') {
        Some(rest) => {
            let Some((v6, after)) = rest.split_once(']') else {
                return false;
            };
            let port = match after {
                "" => None,
                _ => match after.strip_prefix(':') {
                    Some(port) => Some(port),
                    None => return false,
                },
            };
            (v6.parse::<Ipv6Addr>().is_ok(), port)
        }
        None => {
            let (host, port) = match s.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (s, None),
            };
            let reg_name = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            (reg_name, port)
        }
    };
    host_ok
        && port.is_none_or(|p| {
            !p.is_empty()
                && p.len() <= 5
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u32>().is_ok_and(|n| n <= 65535)
        })
}

fn bad(message: &str) -> ApiError {
    ApiError::unsupported(message)
}

#[cfg(test)]
mod tests {
    use super::is_authority;

    #[test]
    fn authorities() {
        for good in [
            "localhost",
            "127.0.0.1:5000",
            "registry.example.com",
            "reg_1.example:443",
            "[::1]",
            "[::1]:8080",
            "[2001:db8::1]:65535",
        ] {
            assert!(is_authority(good), "{good}");
        }
        for bad in [
            "",
            "evil.example\",error=\"insufficient_scope",
            "evil.example/x?y=",
            "a:b:c",
            "host:",
            "host:65536",
            "host:123456",
            "[::1",
            "[zz::1]",
            "[::1]x",
            "user@host",
            "host name",
            "\u{a0}host",
            ":80",
        ] {
            assert!(!is_authority(bad), "{bad:?}");
        }
    }
}
