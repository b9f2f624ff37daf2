//! The token endpoint (`/openshift/token` by default): the realm of regate's Bearer challenge.
//!
//! `GET` with Basic `any:API-TOKEN` (docker, skopeo) or no credentials (anonymous), and the
//! OAuth2 `POST` form (`grant_type=password` or `refresh_token`, which containerd tries first),
//! answer a short-lived registry token carrying the caller's identity. The gateway still
//! authorizes every request made with it; scopes are checked for validity only.

use std::time::{Duration, UNIX_EPOCH};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{Method, header};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::Gateway;
use crate::authority::Authn;
use crate::error::ApiError;
use crate::identity::{self, Credential, UserInfo};
use crate::route::Name;

/// Largest OAuth2 form body read.
const FORM_LIMIT: usize = 64 * 1024;
/// Longest a refresh token lives when the API token's own expiry is unknown or later.
const REFRESH_MAX: Duration = Duration::from_secs(24 * 3600);

#[derive(Serialize)]
struct TokenResponse {
    token: String,
    access_token: String,
    expires_in: u64,
    issued_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
}

/// The request's parameters, from the query (GET) or the form (POST).
#[derive(Default)]
struct Params {
    scopes: Vec<String>,
    offline: bool,
    grant_type: Option<String>,
    password: Option<SecretString>,
    refresh_token: Option<SecretString>,
}

impl Params {
    fn parse(encoded: &[u8]) -> Params {
        let mut p = Params::default();
        for (key, value) in url::form_urlencoded::parse(encoded) {
            match key.as_ref() {
                "scope" => p
                    .scopes
                    .extend(value.split(' ').filter(|s| !s.is_empty()).map(String::from)),
                "offline_token" => p.offline |= value == "true",
                "access_type" => p.offline |= value == "offline",
                "grant_type" => p.grant_type = Some(value.into_owned()),
                "password" => p.password = Some(SecretString::from(value.into_owned())),
                "refresh_token" => p.refresh_token = Some(SecretString::from(value.into_owned())),
                // service, account, client_id, username: accepted, not used for the decision.
                _ => {}
            }
        }
        p
    }
}

/// Answers a token request.
pub(super) async fn handle(gw: &Gateway, req: Request) -> Result<Response, ApiError> {
    let params = match *req.method() {
        Method::GET | Method::HEAD => Params::parse(req.uri().query().unwrap_or("").as_bytes()),
        Method::POST => {
            let body = axum::body::to_bytes(req.into_body(), FORM_LIMIT)
                .await
                .map_err(|_| bad("the form is larger than 64 KiB"))?;
            let mut params = Params::parse(&body);
            let grant = params.grant_type.take();
            return post(gw, params, grant.as_deref()).await;
        }
        _ => {
            return Err(ApiError::Unsupported {
                message: "the token endpoint takes GET or POST".into(),
                allow: "GET, HEAD, POST",
            });
        }
    };
    check_scopes(&params.scopes)?;
    let header = req.headers().get(header::AUTHORIZATION);
    if header.is_some_and(|h| h.len() > identity::MAX_AUTHORIZATION_LEN) {
        return Err(ApiError::HeaderTooLarge);
    }
    let credential = identity::credential(header).map_err(|e| ApiError::InvalidCredential {
        message: e.to_string(),
    })?;
    match credential {
        Credential::Anonymous => respond(gw, &UserInfo::anonymous(), &params, None, None),
        Credential::Token(token) => {
            let (user, api_expiry) = authenticate_api_token(gw, &token).await?;
            respond(gw, &user, &params, api_expiry, Some(&token))
        }
    }
}

/// The OAuth2 form: `grant_type=password` (password = API token) or `refresh_token`.
async fn post(gw: &Gateway, params: Params, grant: Option<&str>) -> Result<Response, ApiError> {
    check_scopes(&params.scopes)?;
    match grant {
        Some("password") => {
            let password = params
                .password
                .as_ref()
                .filter(|p| !p.expose_secret().is_empty())
                .ok_or_else(|| bad("grant_type=password needs a password (the API token)"))?;
            let (user, api_expiry) = authenticate_api_token(gw, password).await?;
            respond(gw, &user, &params, api_expiry, Some(password))
        }
        Some("refresh_token") => {
            let token = params
                .refresh_token
                .as_ref()
                .ok_or_else(|| bad("grant_type=refresh_token needs refresh_token"))?;
            let claims = gw
                .signer
                .verify_refresh_token(token.expose_secret())
                .map_err(|e| ApiError::InvalidCredential {
                    message: format!("{e}: log in again"),
                })?;
            let user = claims.user();
            let exists = gw
                .decisions
                .authority()
                .still_exists(&user)
                .await
                .map_err(super::unavailable)?;
            if !exists {
                return Err(ApiError::InvalidCredential {
                    message: "the identity of this refresh token no longer exists".into(),
                });
            }
            // A refresh answers an access token only; the client keeps its refresh token.
            let params = Params {
                offline: false,
                ..params
            };
            respond(gw, &user, &params, None, None)
        }
        Some(other) => Err(bad(&format!(
            "grant_type {other:?} is not supported; use password or refresh_token"
        ))),
        None => Err(bad("grant_type is missing; use password or refresh_token")),
    }
}

/// Who an API token belongs to, and when the token itself expires (if regate can tell).
async fn authenticate_api_token(
    gw: &Gateway,
    token: &SecretString,
) -> Result<(UserInfo, Option<u64>), ApiError> {
    match gw
        .decisions
        .authority()
        .authenticate(token)
        .await
        .map_err(super::unavailable)?
    {
        Authn::User(user) => {
            let expiry = gw
                .signer
                .verify_api_token(token.expose_secret())
                .ok()
                .map(|c| c.exp);
            Ok((user, expiry))
        }
        Authn::Invalid { reason } => Err(ApiError::InvalidCredential {
            message: format!("{reason}: log in with a valid API token as the password"),
        }),
    }
}

/// The token response: a registry token for `user` (and a refresh token when asked for), or,
/// when the authority reviews as the caller, the caller's own API token handed back.
fn respond(
    gw: &Gateway,
    user: &UserInfo,
    params: &Params,
    api_expiry: Option<u64>,
    api_token: Option<&SecretString>,
) -> Result<Response, ApiError> {
    let sign_error = |e: crate::token::TokenError| {
        tracing::error!(error = %e, "cannot sign a registry token");
        ApiError::AuthorityUnavailable
    };
    let own_token = api_token.filter(|_| gw.decisions.authority().needs_caller_token());
    let issued = match own_token {
        // As OpenShift's registry in this mode: every request must carry a token the cluster
        // knows, so the caller's own is the registry token, and there is no refresh token.
        Some(token) => {
            let issued_at = crate::token::now();
            crate::token::Issued {
                token: token.expose_secret().to_string(),
                issued_at,
                expires_at: api_expiry.unwrap_or(issued_at + gw.config.token_lifetime.as_secs()),
            }
        }
        None => gw
            .signer
            .issue_registry_token(user, gw.config.token_lifetime)
            .map_err(sign_error)?,
    };
    let refresh_token = if params.offline && !user.is_anonymous() && own_token.is_none() {
        let cap = crate::token::now() + REFRESH_MAX.as_secs();
        let expires_at = api_expiry.map_or(cap, |e| e.min(cap));
        Some(
            gw.signer
                .issue_refresh_token(user, expires_at)
                .map_err(sign_error)?
                .token,
        )
    } else {
        None
    };
    let issued_at =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(issued.issued_at));
    let body = TokenResponse {
        access_token: issued.token.clone(),
        token: issued.token,
        expires_in: issued.expires_at.saturating_sub(issued.issued_at),
        issued_at: issued_at.to_string(),
        scope: (!params.scopes.is_empty()).then(|| params.scopes.join(" ")),
        refresh_token,
    };
    let mut response = axum::Json(body).into_response();
    // Tokens must not be cached by anything between regate and the client.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// Every `repository:NAME:ACTIONS` scope must name a valid repository (400 otherwise).
fn check_scopes(scopes: &[String]) -> Result<(), ApiError> {
    for scope in scopes {
        let mut parts = scope.splitn(2, ':');
        let kind = parts.next().unwrap_or("");
        if !kind.starts_with("repository") {
            continue;
        }
        let rest = parts.next().unwrap_or("");
        let name = rest.rsplit_once(':').map_or(rest, |(name, _actions)| name);
        Name::parse(name).map_err(|e| ApiError::BadRequest {
            code: "NAME_INVALID",
            message: format!("scope {scope:?}: {e}"),
        })?;
    }
    Ok(())
}

fn bad(message: &str) -> ApiError {
    ApiError::BadRequest {
        code: "UNSUPPORTED",
        message: message.to_string(),
    }
}
