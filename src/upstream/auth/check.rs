//! `regate registry login`'s check: does a registry (or its token realm) accept a credential?

use std::time::Duration;

use url::Url;

use super::{
    AuthError, Challenge, Discovered, Fetched, Http, basic_header, bearer_header, discover,
    host_port, parse_origin, parse_realm, request_token, without_query,
};
use crate::upstream::keyring::Credential;

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
pub(super) fn candidate_origins(registry: &str) -> Result<Vec<Url>, AuthError> {
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
