//! The console's routes: thin handlers that find the viewer, ask [`Console`] what they may see
//! or do, and render a page. Every write is a POST carrying the session's CSRF token from a
//! page of the same origin; a refused write changes nothing and says why.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, Request, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use maud::Markup;
use secrecy::SecretString;

use super::super::access_log::Trail;
use super::pages::{self, Who};
use super::session::{SessionError, Sessions};
use super::{Console, Identified, Refused, Viewer};
use crate::body::{BodyError, Deadline, read_bounded};
use crate::policy::{self, Attributes, Grantee};

/// Longest form read: a sign-in token is a few KiB at most, the other forms far less.
const FORM_BYTES: usize = 32 * 1024;
/// What a name put into a path segment has encoded: all but RFC 3986's unreserved characters.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// Repositories whose tags one namespace page lists.
const TAGGED_REPOSITORIES: usize = 100;

pub(super) type ConsoleState = State<Arc<Console>>;

/// The routes under `/console/`.
pub(super) fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(home))
        .route("/console/login", get(sign_in_page).post(sign_in))
        .route("/console/logout", post(sign_out))
        .route("/console/namespaces", get(namespaces))
        .route("/console/namespaces/{namespace}", get(namespace))
        .route(
            "/console/namespaces/{namespace}/grant",
            post(super::changes::grant),
        )
        .route(
            "/console/namespaces/{namespace}/revoke",
            post(super::changes::revoke),
        )
        .route("/console/decisions", get(super::decisions::list))
        .route("/console/decisions/{seq}", get(super::decisions::explain))
        .route("/console/assets/console.css", get(css))
        .route("/console/assets/console.js", get(js))
        .fallback(|| async { Refused::NotFound("no such page".into()) })
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            read_form,
        ))
        // The origin first: a foreign form is refused before its body is read.
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            from_own_pages,
        ))
        .layer(axum::middleware::map_response(guarded))
        .layer(axum::middleware::from_fn(identified))
        .with_state(console)
}

/// Names the viewer on the request's access line (beside the API, where the access log runs).
async fn identified(req: Request, next: axum::middleware::Next) -> Response {
    let trail = Trail::of(&req);
    let mut response = next.run(req).await;
    if let Some(Identified(user)) = response.extensions_mut().remove::<Identified>() {
        trail.identify(&user);
    }
    response
}

/// Every write (any method not safe by RFC 9110 §9.2.1: the forms' POSTs) passes
/// [`same_origin`] before its handler runs, so no form can be added without the check.
async fn from_own_pages(
    State(console): ConsoleState,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    if !req.method().is_safe()
        && let Err(refused) = same_origin(&console, req.uri(), req.headers())
    {
        return refused.into_response();
    }
    next.run(req).await
}

/// Reads a request's body, when it has one, before any handler: at most [`FORM_BYTES`], whole
/// within `connections.request_timeout` of its headers (docs/console.md, "Forms and
/// headers"). A visitor who trickles a form is answered 408, one who sends too much 413, and
/// the connection is closed; no one, signed in or not, holds a connection longer. The handlers
/// then read the form from memory.
async fn read_form(
    State(console): ConsoleState,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::body::HttpBody as _;
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let deadline = Deadline::after(console.gateway.config.connections.request_timeout);
    let (parts, body) = req.into_parts();
    match read_bounded(&parts.headers, body, FORM_BYTES, deadline).await {
        Ok(form) => next.run(Request::from_parts(parts, Body::from(form))).await,
        Err(error) => Refused::Body(error).into_response(),
    }
}

/// Headers on every console answer: no framing, no inline script, no caching of pages.
async fn guarded(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        "content-security-policy",
        "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; \
         img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(headers, "x-frame-options", "DENY");
    set(headers, "x-content-type-options", "nosniff");
    // `no-referrer` would make browsers send `Origin: null` on the console's own forms.
    set(headers, "referrer-policy", "same-origin");
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, "cache-control", "no-store");
    }
    response
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            // No live session: the cookie that failed to open is deleted.
            Refused::SignIn(None) => {
                return signed_out(Redirect::to("/console/login").into_response());
            }
            Refused::SignIn(Some(message)) => {
                return signed_out(page(
                    StatusCode::UNAUTHORIZED,
                    pages::sign_in(Some(&message), false),
                ));
            }
            Refused::Forbidden(m) => (StatusCode::FORBIDDEN, "Not allowed", m),
            Refused::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m),
            Refused::BadRequest(m) => (StatusCode::BAD_REQUEST, "Cannot take this request", m),
            Refused::Body(error) => {
                let status = match error {
                    BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                    BodyError::TooSlow { .. } => StatusCode::REQUEST_TIMEOUT,
                    BodyError::Failed(_) => StatusCode::BAD_REQUEST,
                };
                let message = format!("{error}.");
                let mut response = page(
                    status,
                    pages::refusal("Cannot read this form", &message, None),
                );
                // The rest of the body is not read: the connection cannot carry another request.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return response;
            }
            Refused::TooMany => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed sign-ins",
                "Too many failed sign-ins from this address: wait a minute and try again.".into(),
            ),
            Refused::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "The authority could not answer, so nothing was shown or changed: try again \
                 shortly (see /readyz)."
                    .into(),
            ),
        };
        page(status, pages::refusal(title, &message, None))
    }
}

fn page(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// `response` with the session cookie deleted.
fn signed_out(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::SET_COOKIE, Sessions::end());
    response
}

/// A page for `viewer` (see [`for_viewer`]).
pub(super) fn viewed(console: &Console, viewer: &Viewer, markup: Markup) -> Response {
    for_viewer(console, viewer, page(StatusCode::OK, markup))
}

/// `response` answering `viewer`: their session re-issued, last used now and with its flash as
/// the page left it (docs/console.md, "Signing in"), and their name left for the access line.
pub(super) fn for_viewer(console: &Console, viewer: &Viewer, mut response: Response) -> Response {
    match console.sessions.renew(&viewer.session) {
        Ok(cookie) => {
            response.headers_mut().insert(header::SET_COOKIE, cookie);
        }
        // The cookie the browser has stays good until its idle limit.
        Err(error) => tracing::warn!(%error, "console: cannot renew the session"),
    }
    response
        .extensions_mut()
        .insert(Identified(viewer.user.clone()));
    response
}

pub(super) fn who(viewer: &Viewer) -> Who<'_> {
    Who {
        name: &viewer.user.name,
        csrf: &viewer.session.csrf,
        cluster: viewer.cluster,
    }
}

async fn home(State(console): ConsoleState, headers: HeaderMap) -> Redirect {
    match console.sessions.find(&headers) {
        Some(_) => Redirect::to("/console/namespaces"),
        None => Redirect::to("/console/login"),
    }
}

async fn sign_in_page(State(console): ConsoleState, uri: Uri, headers: HeaderMap) -> Response {
    if console.sessions.find(&headers).is_some() {
        return Redirect::to("/console/namespaces").into_response();
    }
    page(
        StatusCode::OK,
        pages::sign_in(None, plain_http(&console, &uri, &headers)),
    )
}

/// `POST /console/login`: the token authenticated as the gateway authenticates it, a failure
/// counted against the client as a failed `docker login` is.
async fn sign_in(State(console): ConsoleState, req: Request) -> Result<Response, Refused> {
    let gateway = &console.gateway;
    let attempt = super::super::failed_logins::Attempt::of(&req, &gateway.config.trusted_proxies);
    if gateway.failed_logins.check(&attempt).is_err() {
        crate::metrics::get().rate_limited.inc();
        return Err(Refused::TooMany);
    }
    let plain = plain_http(&console, req.uri(), req.headers());
    let body = axum::body::to_bytes(req.into_body(), FORM_BYTES)
        .await
        .map_err(|_| Refused::BadRequest("the sign-in form is too large".into()))?;
    let token = url::form_urlencoded::parse(&body)
        .find(|(key, _)| key == "token")
        .map(|(_, value)| value.trim().to_string())
        .filter(|token| !token.is_empty());
    let Some(token) = token else {
        let message = "Paste a token to sign in.";
        return Ok(page(
            StatusCode::BAD_REQUEST,
            pages::sign_in(Some(message), plain),
        ));
    };
    let token = SecretString::from(token);
    match console.authenticate(&token).await? {
        Ok(user) => {
            let cookie = match console.sessions.start(token) {
                Ok(cookie) => cookie,
                Err(error @ SessionError::TooLong { .. }) => {
                    let message = format!(
                        "This token cannot be kept: {error}. Sign in with an API token \
                         (regate create token --user NAME) or an ID token with fewer claims."
                    );
                    return Ok(page(
                        StatusCode::BAD_REQUEST,
                        pages::sign_in(Some(&message), plain),
                    ));
                }
                Err(error @ SessionError::Seal(_)) => {
                    tracing::error!(%error, "console: cannot start a session");
                    let message = "regate could not start the session: see its log.";
                    return Ok(page(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        pages::refusal("Cannot sign in", message, None),
                    ));
                }
            };
            tracing::info!(user = %user.name, "console: signed in");
            let mut response = Redirect::to("/console/namespaces").into_response();
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            response.extensions_mut().insert(Identified(user));
            Ok(response)
        }
        Err(reason) => {
            let metrics = crate::metrics::get();
            metrics.failed_logins.inc();
            if gateway.failed_logins.count(&attempt).is_some() {
                metrics.rate_limited.inc();
                return Err(Refused::TooMany);
            }
            let message = format!("This token was refused: {reason}.");
            Ok(page(
                StatusCode::UNAUTHORIZED,
                pages::sign_in(Some(&message), plain),
            ))
        }
    }
}

/// Whether the sign-in page should warn that the session cookie will not be kept: plain HTTP
/// to a host that is not the loopback address.
fn plain_http(console: &Console, uri: &Uri, headers: &HeaderMap) -> bool {
    if console.gateway.config.tls.is_some() {
        return false;
    }
    let host = super::super::origin::authority(uri, headers).unwrap_or("");
    !["127.", "localhost", "[::1]"]
        .iter()
        .any(|loopback| host.starts_with(loopback))
}

/// A form posted to regate: from a page of the console's own origin, with the session's CSRF
/// token.
#[derive(serde::Deserialize)]
struct Posted {
    #[serde(default)]
    csrf: String,
}

async fn sign_out(
    State(console): ConsoleState,
    headers: HeaderMap,
    form: Result<Form<Posted>, FormRejection>,
) -> Result<Response, Refused> {
    let Some(session) = console.sessions.find(&headers) else {
        return Err(Refused::SignIn(None));
    };
    let Ok(Form(form)) = form else {
        return Err(Refused::BadRequest("the form is not readable".into()));
    };
    if !session.csrf_matches(&form.csrf) {
        return Err(csrf_refused());
    }
    Ok(signed_out(Redirect::to("/console/login").into_response()))
}

pub(super) fn csrf_refused() -> Refused {
    Refused::BadRequest(
        "This form is out of date (its CSRF token does not match your session): reload the page \
         and try again."
            .into(),
    )
}

/// Refuses a write from another site: the browser's `Sec-Fetch-Site` and `Origin` must name
/// this console's own origin when present (browsers send them on every form POST). The origin
/// is the authority the request was sent to (HTTP/2's `:authority`, HTTP/1's `Host`), or the
/// configured `public_url` (behind a proxy that rewrites `Host`).
fn same_origin(console: &Console, uri: &Uri, headers: &HeaderMap) -> Result<(), Refused> {
    let cross = || Refused::Forbidden("Forms are taken only from the console's own pages.".into());
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.as_bytes(), b"same-origin" | b"none")
    {
        return Err(cross());
    }
    let mut origins = headers.get_all(header::ORIGIN).iter();
    let (Some(origin), None) = (origins.next(), origins.next()) else {
        // None at all (not a browser: the CSRF token decides), or several: refused.
        return if headers.contains_key(header::ORIGIN) {
            Err(cross())
        } else {
            Ok(())
        };
    };
    let host = super::super::origin::authority(uri, headers);
    let public = console.gateway.config.public_url.as_ref();
    let ours = origin.to_str().ok().is_some_and(|origin| {
        public.is_some_and(|p| p.url() == origin)
            || origin.split_once("://").is_some_and(|(scheme, rest)| {
                matches!(scheme, "http" | "https") && Some(rest) == host
            })
    });
    if ours { Ok(()) } else { Err(cross()) }
}

/// The namespaces page's query: `open` names a namespace to go to.
#[derive(serde::Deserialize)]
struct Open {
    #[serde(default)]
    open: String,
}

async fn namespaces(
    State(console): ConsoleState,
    headers: HeaderMap,
    open: Result<Query<Open>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Refused> {
    let viewer = console.viewer(&headers).await?;
    // A namespace opened by name: one the list cannot show (a viewer who may not list them).
    if let Ok(Query(Open { open })) = open
        && !open.trim().is_empty()
    {
        let name = percent_encoding::utf8_percent_encode(open.trim(), PATH_SEGMENT);
        let to = format!("/console/namespaces/{name}");
        return Ok(for_viewer(
            &console,
            &viewer,
            Redirect::to(&to).into_response(),
        ));
    }
    let visible = console.namespaces(&viewer).await?;
    let (catalog, registry_error) = match console.catalog().await {
        Ok(catalog) => (catalog, None),
        Err(error) => (BTreeMap::new(), Some(error)),
    };
    let rows: Vec<pages::NamespaceRow> = visible
        .into_iter()
        .map(|name| pages::NamespaceRow {
            repositories: catalog.get(&name).map_or(0, Vec::len),
            service_accounts: console.directory.service_account_count(&name),
            name,
        })
        .collect();
    let markup = pages::namespaces(&who(&viewer), &rows, registry_error.as_deref());
    Ok(viewed(&console, &viewer, markup))
}

async fn namespace(
    State(console): ConsoleState,
    Path(ns): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let viewer = console.viewer(&headers).await?;
    console.namespace(&viewer, &ns).await?;
    let contents = console.directory.contents(&viewer, &ns).await?;
    let policy = contents.held.policy();
    let repositories = match console.catalog().await {
        Err(error) => Err(error),
        Ok(mut catalog) => {
            let mut repositories = Vec::new();
            for (i, name) in catalog
                .remove(&ns)
                .unwrap_or_default()
                .into_iter()
                .enumerate()
            {
                let tags = if i < TAGGED_REPOSITORIES {
                    console.tags(&name).await
                } else {
                    Err("not listed here (too many repositories)".into())
                };
                repositories.push(pages::Repository { name, tags });
            }
            Ok(repositories)
        }
    };
    let bindings = policy
        .role_bindings_in(&ns)
        .iter()
        .map(|binding| {
            let role_ref = &binding.role_ref;
            pages::Binding {
                name: binding.metadata.name.clone().unwrap_or_default(),
                role: format!("{} {}", role_ref.kind, role_ref.name),
                cluster_role: (role_ref.kind == policy::CLUSTER_ROLE_KIND)
                    .then(|| role_ref.name.clone()),
                subjects: binding
                    .subjects
                    .iter()
                    .flatten()
                    .map(|s| {
                        let name = policy::subject_name(s, &ns).unwrap_or_else(|| s.name.clone());
                        (s.kind.clone(), name)
                    })
                    .collect(),
            }
        })
        .collect();
    // Offer the roles the viewer may grant here; none, with the reason, when they may not.
    let mut roles = Vec::new();
    let mut no_grant = console.may_bind(&viewer, &ns).await?.err();
    if no_grant.is_none() {
        for role in policy.cluster_role_names() {
            match console.grantable(&viewer, policy, &ns, role) {
                Ok(()) => roles.push(role.to_string()),
                Err(why) if no_grant.is_none() => no_grant = Some(why),
                Err(_) => {}
            }
        }
    }
    let view = pages::NamespaceView {
        repositories,
        pullers: grantees(policy.who_can(&Attributes::layers("get", &ns, ""))),
        pushers: grantees(policy.who_can(&Attributes::layers("update", &ns, ""))),
        bindings,
        service_accounts: contents.service_accounts,
        secrets: contents.secrets,
        partial: contents.partial,
        no_grant: roles.is_empty().then(|| no_grant.unwrap_or_default()),
        roles,
        may_revoke: console.may_revoke(&viewer, &ns).await?,
        name: ns,
    };
    let flash = viewer.session.told();
    let markup = pages::namespace(&who(&viewer), &view, flash.as_ref());
    Ok(viewed(&console, &viewer, markup))
}

/// Grantees merged per subject, each with every binding that grants it.
pub(super) fn grantees(list: Vec<Grantee>) -> Vec<pages::Grantee> {
    let mut merged: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for Grantee { kind, name, by } in list {
        let bindings = merged.entry((kind, name)).or_default();
        if !bindings.contains(&by) {
            bindings.push(by);
        }
    }
    merged
        .into_iter()
        .map(|((kind, name), by)| pages::Grantee { kind, name, by })
        .collect()
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", pages::CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", pages::JS)
}

fn asset(content_type: &'static str, text: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        text,
    )
        .into_response()
}
