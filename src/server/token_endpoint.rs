//! The token endpoints: the gateway's realm (`/openshift/token` by default) and, in
//! token-server mode, a distribution registry's realm (`/token` by default).
//!
//! Both authenticate the same way: `GET` with Basic `any:API-TOKEN` (docker, skopeo) or no
//! credentials (anonymous), and the OAuth2 `POST` form (`grant_type=password` or
//! `refresh_token`, which containerd tries first). They differ in what they answer:
//! - the gateway's realm: a short-lived token carrying the caller's identity; the gateway
//!   authorizes every request made with it, so scopes are checked for validity only;
//! - the token server's realm: a token the registry checks itself, so the decision is made here:
//!   its `access` claim is the requested scopes cut down to what RBAC allows (a denied scope is
//!   left out, not an error, as the token spec says).

use std::time::{Duration, UNIX_EPOCH};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{Method, header};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::access_log::Trail;
use super::failed_logins::Attempt;
use super::failed_logins::FailedLogins;
use super::identify::Identities;
use crate::access::{self, Scope};
use crate::body::{Deadline, read_bounded};
use crate::cache::Decisions;
use crate::config::TokenServerSettings;
use crate::error::ApiError;
use crate::identity::{self, Caller, Credential, UserInfo};
use crate::token::distribution::{DistributionClaims, ResourceActions};
use crate::token::keys::LiveKey;
use crate::token::window::PushWindow;
use crate::token::{Issued, Signer};

/// Largest OAuth2 form body read.
pub(super) const FORM_LIMIT: usize = 64 * 1024;
/// Longest a refresh token lives when the API token's own expiry is unknown or later.
const REFRESH_MAX: Duration = Duration::from_secs(24 * 3600);

/// Token-server mode: its settings and the key its tokens are signed with.
pub struct TokenServer {
    /// The validated `token_server:` section.
    pub settings: TokenServerSettings,
    /// The key directory's signing key, reloaded on rotation.
    pub key: std::sync::Arc<LiveKey>,
}

/// What the token endpoint uses of the gateway, and nothing more.
pub(super) struct Endpoint<'a> {
    /// Authentication of API, registry and refresh tokens.
    pub identities: Identities<'a>,
    /// Decisions, for the token server's `access` claim and the review mode.
    pub decisions: &'a Decisions,
    /// Signs registry and refresh tokens.
    pub signer: &'a Signer,
    /// `token.lifetime`.
    pub token_lifetime: Duration,
    /// Failed logins, to count the OAuth2 form's user name.
    pub failed_logins: &'a FailedLogins,
    /// The request's trail: the identity for the access line, decisions and the token issued
    /// for the audit log.
    pub trail: Trail,
    /// When the OAuth2 form must have arrived: the request's deadline.
    pub body_deadline: Deadline,
}

/// Which realm a token request came to.
#[derive(Clone, Copy)]
pub(super) enum Realm<'a> {
    /// The gateway's own: identity tokens for requests through regate.
    Gateway,
    /// A distribution registry's, in token-server mode: signed access tokens.
    TokenServer(&'a TokenServer),
}

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
    /// `scopes` parsed, one per resource (filled by [`asked_scopes`] before anything else).
    asked: Vec<Scope>,
    offline: bool,
    grant_type: Option<String>,
    password: Option<SecretString>,
    refresh_token: Option<SecretString>,
    /// The OAuth2 form's `username`: not used for the decision, only to count failed logins.
    username: Option<String>,
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
                "username" => p.username = Some(value.into_owned()),
                // service, account, client_id: accepted, not used for the decision.
                _ => {}
            }
        }
        p
    }
}

/// Answers a token request made to `realm`.
pub(super) async fn handle(
    ep: &Endpoint<'_>,
    realm: Realm<'_>,
    req: Request,
    attempt: Option<&mut Attempt>,
) -> Result<Response, ApiError> {
    let mut params = match *req.method() {
        Method::GET | Method::HEAD => Params::parse(req.uri().query().unwrap_or("").as_bytes()),
        Method::POST => {
            let (parts, body) = req.into_parts();
            let body = read_bounded(&parts.headers, body, FORM_LIMIT, ep.body_deadline).await?;
            let mut params = Params::parse(&body);
            // The form's user name counts too, and may already be barred.
            if let Some(attempt) = attempt {
                *attempt = std::mem::take(attempt).with_name(params.username.as_deref());
                ep.failed_logins.check(attempt)?;
            }
            let grant = params.grant_type.take();
            return post(ep, realm, params, grant.as_deref()).await;
        }
        _ => {
            return Err(ApiError::Unsupported {
                message: "the token endpoint takes GET or POST".into(),
                allow: "GET, HEAD, POST",
            });
        }
    };
    params.asked = asked_scopes(&params.scopes)?;
    let header = req.headers().get(header::AUTHORIZATION);
    if header.is_some_and(|h| h.len() > identity::MAX_AUTHORIZATION_LEN) {
        return Err(ApiError::HeaderTooLarge);
    }
    let credential = identity::credential(header).map_err(|e| ApiError::InvalidCredential {
        message: e.to_string(),
    })?;
    let caller = match credential {
        Credential::Anonymous => Caller::anonymous(),
        Credential::Token(token) => authenticate_api_token(ep, token).await?,
    };
    respond(ep, realm, &caller, &params).await
}

/// The OAuth2 form: `grant_type=password` (password = API token) or `refresh_token`.
async fn post(
    ep: &Endpoint<'_>,
    realm: Realm<'_>,
    mut params: Params,
    grant: Option<&str>,
) -> Result<Response, ApiError> {
    params.asked = asked_scopes(&params.scopes)?;
    match grant {
        Some("password") => {
            let password = params
                .password
                .take()
                .filter(|p| !p.expose_secret().is_empty())
                .ok_or_else(|| bad("grant_type=password needs a password (the API token)"))?;
            let caller = authenticate_api_token(ep, password).await?;
            respond(ep, realm, &caller, &params).await
        }
        Some("refresh_token") => {
            let token = params
                .refresh_token
                .as_ref()
                .ok_or_else(|| bad("grant_type=refresh_token needs refresh_token"))?;
            let claims = ep
                .signer
                .verify_refresh_token(token.expose_secret())
                .map_err(|e| ApiError::InvalidCredential {
                    message: format!("{e}: log in again"),
                })?;
            // The identity as the authority sees it now, from the API token the refresh token
            // carries: a refresh token dies with its API token and its subject.
            let caller = ep
                .identities
                .reauthenticate(&claims)
                .await?
                .map_err(|reason| ApiError::InvalidCredential {
                    message: format!("{reason}: log in again"),
                })?;
            // A refresh answers an access token only; the client keeps its refresh token.
            let params = Params {
                offline: false,
                ..params
            };
            respond(ep, realm, &caller, &params).await
        }
        Some(other) => Err(bad(&format!(
            "grant_type {other:?} is not supported; use password or refresh_token"
        ))),
        None => Err(bad("grant_type is missing; use password or refresh_token")),
    }
}

/// Who an API token belongs to; 401 when the authority refuses it.
async fn authenticate_api_token(
    ep: &Endpoint<'_>,
    token: SecretString,
) -> Result<Caller, ApiError> {
    ep.identities
        .authenticate(token)
        .await?
        .map_err(|reason| ApiError::InvalidCredential {
            message: format!("{reason}: log in with a valid API token as the password"),
        })
}

/// The token response for `caller`: the realm's token, and a refresh token when asked for.
/// Neither outlives the caller's API token where its expiry can be read, but for the push
/// window a gateway token may carry (`token/window.rs`).
async fn respond(
    ep: &Endpoint<'_>,
    realm: Realm<'_>,
    caller: &Caller,
    params: &Params,
) -> Result<Response, ApiError> {
    let user = &caller.user;
    ep.trail.identify(user);
    let api_token = caller.token.as_ref();
    // Whole seconds, rounded down: a token never ends after its API token.
    let api_expiry = api_token
        .and_then(|t| crate::token::unverified_expiry(t.expose_secret()))
        .map(|exp| exp as u64);
    let (issued, scope) = match realm {
        Realm::Gateway => {
            let issued = gateway_token(ep, caller, api_expiry, &params.asked)?;
            let scope = (!params.scopes.is_empty()).then(|| params.scopes.join(" "));
            (issued, scope)
        }
        Realm::TokenServer(ts) => {
            let access = granted(ep, user, api_token, &params.asked).await?;
            let scope = access
                .iter()
                .map(|a| format!("{}:{}:{}", a.kind, a.name, a.actions.join(",")))
                .collect::<Vec<_>>()
                .join(" ");
            let issued = registry_token(ts, user, access, api_expiry)?;
            (issued, Some(scope).filter(|s| !s.is_empty()))
        }
    };
    // Reviewing as the caller hands the caller's own API token back as the access token: a
    // refresh token would add nothing, and OpenShift's registry issues none there either.
    let reviews_as_caller = ep.decisions.authority().needs_caller_token();
    let refresh_token = match api_token.filter(|_| params.offline && !reviews_as_caller) {
        Some(api_token) => {
            let cap = crate::token::now() + REFRESH_MAX.as_secs();
            let expires_at = api_expiry.map_or(cap, |e| e.min(cap));
            Some(
                ep.signer
                    .issue_refresh_token(user, api_token, expires_at)
                    .map_err(sign_error)?
                    .token,
            )
        }
        // Anonymous callers have nothing to refresh.
        None => None,
    };
    let realm_label = match realm {
        Realm::Gateway => "gateway",
        Realm::TokenServer(_) => "token_server",
    };
    crate::metrics::get()
        .tokens_issued
        .get_or_create(&crate::metrics::RealmLabels { realm: realm_label })
        .inc();
    let expires_in = issued.expires_at.saturating_sub(issued.issued_at);
    ep.trail.issued(crate::audit::Event::Token {
        time: std::time::SystemTime::now(),
        realm: realm_label,
        scope: scope.clone(),
        expires_in,
        refresh_token: refresh_token.is_some(),
    });
    let issued_at =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(issued.issued_at));
    let body = TokenResponse {
        access_token: issued.token.clone(),
        token: issued.token,
        expires_in,
        issued_at: issued_at.to_string(),
        scope,
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

/// A token that cannot be signed is a 503, as an authority that cannot answer: no token is
/// better than a wrong one.
fn sign_error(e: impl std::error::Error + Send + Sync + 'static) -> ApiError {
    ApiError::AuthorityUnavailable { cause: Box::new(e) }
}

/// The gateway realm's token: a registry token carrying the caller's API token sealed, or, when
/// the authority reviews as the caller, the caller's own API token handed back. A registry
/// token asked for push by a caller whose API token ends before it carries a push window and
/// lives until the window closes (`token/window.rs`).
fn gateway_token(
    ep: &Endpoint<'_>,
    caller: &Caller,
    api_expiry: Option<u64>,
    asked: &[Scope],
) -> Result<Issued, ApiError> {
    let issued_at = crate::token::now();
    let lifetime_end = issued_at + ep.token_lifetime.as_secs();
    if let Some(token) = caller
        .token
        .as_ref()
        .filter(|_| ep.decisions.authority().needs_caller_token())
    {
        // As OpenShift's registry in this mode: every request must carry a token the cluster
        // knows, so the caller's own is the registry token (and no window can outlive it).
        return Ok(Issued {
            token: token.expose_secret().to_string(),
            issued_at,
            expires_at: api_expiry.unwrap_or(lifetime_end),
        });
    }
    let pushed: Vec<String> = asked
        .iter()
        .filter(|s| s.kind == "repository" && s.actions.iter().any(|a| a == "push" || a == "*"))
        .map(|s| s.name.clone())
        .collect();
    // Anonymous callers have no credential to outlive.
    let window = caller.token.as_ref().and_then(|_| {
        PushWindow::at_issue(
            &caller.user,
            api_expiry,
            pushed,
            issued_at,
            ep.token_lifetime,
        )
    });
    let expires_at = match &window {
        Some(window) => window.closes,
        None => api_expiry.map_or(lifetime_end, |e| e.min(lifetime_end)),
    };
    ep.signer
        .issue_registry_token(
            &caller.user,
            caller.token.as_ref(),
            expires_at,
            window.as_ref(),
        )
        .map_err(sign_error)
}

/// A token-server token granting `access` to `user`, signed with the current key.
fn registry_token(
    ts: &TokenServer,
    user: &UserInfo,
    access: Vec<ResourceActions>,
    api_expiry: Option<u64>,
) -> Result<Issued, ApiError> {
    let s = &ts.settings;
    let mut claims = DistributionClaims::new(&s.issuer, &s.service, &user.name, s.lifetime, access);
    // The registry cannot ask regate again: the token must end when its API token does.
    if let Some(api_expiry) = api_expiry {
        claims.exp = claims.exp.min(api_expiry.max(claims.iat + 1));
    }
    let token = ts
        .key
        .current()
        .sign(s.trust, &claims)
        .map_err(sign_error)?;
    Ok(Issued {
        token,
        issued_at: claims.iat,
        expires_at: claims.exp,
    })
}

/// The requested scopes cut down to what `user` may do, asked through the decision cache.
/// A resource with nothing allowed is left out.
/// An authority that cannot answer is a 503: no token is better than a wrong one.
async fn granted(
    ep: &Endpoint<'_>,
    user: &UserInfo,
    token: Option<&SecretString>,
    asked: &[Scope],
) -> Result<Vec<ResourceActions>, ApiError> {
    let mut access = Vec::with_capacity(asked.len());
    for scope in asked {
        let mut actions = Vec::new();
        for action in &scope.actions {
            let Some(checks) = access::scope_checks(&scope.kind, &scope.name, action) else {
                continue;
            };
            let mut refused = None;
            for attrs in &checks {
                let trail = Some(&ep.trail);
                if !super::decide_audited(ep.decisions, trail, user, token, attrs).await? {
                    refused = Some(attrs);
                    break;
                }
            }
            match refused {
                None => actions.push(action.clone()),
                // Not an error for the client (the token just lacks it), but what an operator
                // looks for when a pull fails at the registry.
                Some(attrs) => tracing::info!(
                    identity = %user.name,
                    scope = %format!("{}:{}:{action}", scope.kind, scope.name),
                    grant = %crate::policy::grant_command(
                        crate::policy::role_granting(attrs),
                        &user.name,
                        attrs
                    ),
                    "token-server: action not granted"
                ),
            }
        }
        if !actions.is_empty() {
            access.push(ResourceActions {
                kind: scope.kind.clone(),
                name: scope.name.clone(),
                actions,
            });
        }
    }
    Ok(access)
}

/// The requested scopes, parsed, repeated ones for one resource merged. Every
/// `repository:NAME:ACTIONS` scope must name a valid repository (400 otherwise).
fn asked_scopes(scopes: &[String]) -> Result<Vec<Scope>, ApiError> {
    let mut asked: Vec<Scope> = Vec::new();
    for text in scopes {
        let Some(scope) = Scope::parse(text).map_err(|e| invalid_scope(text, e))? else {
            continue;
        };
        match asked
            .iter_mut()
            .find(|s| s.kind == scope.kind && s.name == scope.name)
        {
            Some(same) => {
                for action in scope.actions {
                    if !same.actions.contains(&action) {
                        same.actions.push(action);
                    }
                }
            }
            None => asked.push(scope),
        }
    }
    Ok(asked)
}

fn invalid_scope(scope: &str, e: crate::route::RouteError) -> ApiError {
    ApiError::BadRequest {
        code: "NAME_INVALID",
        message: format!("scope {scope:?}: {e}"),
    }
}

fn bad(message: &str) -> ApiError {
    ApiError::unsupported(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(pairs: &[(&str, &str)]) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        /// Any bytes as a query or form body parse without panicking.
        #[test]
        fn any_form_parses(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Params::parse(&bytes);
        }

        /// What an OAuth2 client encodes is what regate reads: the secrets verbatim, every
        /// space-separated scope once per occurrence, the offline flags.
        #[test]
        fn an_encoded_form_round_trips(
            password in "\\PC{1,64}",
            refresh in "\\PC{1,64}",
            user in "\\PC{0,32}",
            scopes in proptest::collection::vec("[a-z]{1,8}:[a-z0-9/]{1,16}:(pull|push|pull,push)", 0..4),
            offline in any::<bool>(),
        ) {
            let scope = scopes.join(" ");
            let body = encode(&[
                ("grant_type", "password"),
                ("username", &user),
                ("password", &password),
                ("refresh_token", &refresh),
                ("scope", &scope),
                ("access_type", if offline { "offline" } else { "online" }),
            ]);
            let p = Params::parse(body.as_bytes());
            prop_assert_eq!(p.grant_type.as_deref(), Some("password"));
            prop_assert_eq!(p.password.as_ref().map(|s| s.expose_secret().to_string()), Some(password));
            prop_assert_eq!(p.refresh_token.as_ref().map(|s| s.expose_secret().to_string()), Some(refresh));
            prop_assert_eq!(p.username.as_deref(), Some(user.as_str()));
            prop_assert_eq!(p.scopes, scopes);
            prop_assert_eq!(p.offline, offline);
        }
    }
}
