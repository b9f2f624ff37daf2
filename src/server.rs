//! The HTTP service: `regate serve`, the gateway pipeline and the token endpoint.
//!
//! Every `/v2/` request runs one pipeline, each step a module of its own:
//! [`route::parse`] (the OCI URL) -> [`access::plan`] (the RBAC checks it needs) ->
//! `Gateway::identify` (who is calling) -> `Gateway::decide` (through the decision cache) ->
//! [`Upstream::forward`] (streamed to the registry). Anything refused on the way is answered by
//! regate itself with an [`ApiError`] and never reaches the registry.

mod access_log;
mod catalog;
pub mod console;
mod health;

mod failed_logins;
mod forward;
mod identify;
mod origin;
mod push_window;
mod service;
mod shed;
mod start;
mod token_endpoint;

pub(crate) use start::shutdown_signal;
pub use start::{serve, serving_tls};
pub use token_endpoint::TokenServer;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, header};

use crate::access::{self, Plan};
use crate::body::Deadline;
use crate::cache::Decisions;
use crate::config::Config;
use crate::error::{API_VERSION, API_VERSION_VALUE, ApiError};
use crate::identity::{Caller, UserInfo};
use crate::policy::{self, Attributes};
use crate::proxy::{PublicOrigin, Upstream};
use crate::route::{self, Route};
use crate::token::Signer;
use access_log::Trail;

/// Everything a request needs, built once at start-up.
pub struct Gateway {
    /// The validated configuration.
    pub config: Config,
    /// Cached decisions in front of the authority.
    pub decisions: Decisions,
    /// Signs and checks registry and refresh tokens.
    pub signer: Arc<Signer>,
    /// The registry behind regate.
    pub upstream: Upstream,
    /// Token-server mode, when configured: regate is the realm of a distribution registry.
    pub token_server: Option<TokenServer>,
    /// regate's own credentials toward the registry, when it is secured (a pull secret).
    pub pull_secret: Option<UpstreamCredentials>,
    /// Remote (pull-through) namespaces.
    pub remotes: Vec<Remote>,
    /// Failed logins counted per client address and user name.
    pub failed_logins: failed_logins::FailedLogins,
    /// Set on SIGTERM: `/readyz` answers 503 while transfers in flight finish.
    pub draining: std::sync::atomic::AtomicBool,
    /// The audit log, when `audit:` is configured.
    pub audit: Option<Arc<crate::audit::AuditLog>>,
    /// Requests being handled, for load shedding (`shed.rs`).
    pub(crate) admission: shed::Admission,
    /// Requests without credentials in flight per client address.
    pub(crate) per_client: shed::PerClient,
}

/// A remote (pull-through) namespace, ready to forward to.
pub struct Remote {
    /// What the config says.
    pub settings: crate::config::RemoteSettings,
    /// The remote registry.
    pub upstream: Upstream,
    /// Challenge discovery and the token cache of the remote registry.
    pub auth: crate::upstream::auth::UpstreamAuth,
}

/// The global pull secret and what answers the registry's challenges with it.
pub struct UpstreamCredentials {
    /// The file, followed live.
    pub file: Arc<crate::upstream::pull_secret::PullSecretFile>,
    /// Challenge discovery and the token cache of the registry.
    pub auth: crate::upstream::auth::UpstreamAuth,
}

/// The whole HTTP service (`service.rs`), ready for `connections::serve` or
/// `tower::ServiceExt::oneshot`.
pub fn app(gateway: Arc<Gateway>) -> service::App {
    service::App::new(gateway)
}

/// Routes by raw path: the token endpoint, `/v2/`, a health check; 404 for the rest. Beyond
/// `max_in_flight` requests being handled, 503 at once, and so beyond
/// `max_in_flight_per_client` requests without credentials of one client. A request without a
/// streaming body must be answered (headers) within `connections.request_timeout`; a form body
/// regate reads itself must have arrived by then (408 when not, docs/behaviour.md §10), and is
/// read before the request takes one of the `max_in_flight` places (docs/behaviour.md §5).
async fn dispatch(gw: &Gateway, req: Request) -> Response {
    let limit = gw.config.connections.request_timeout;
    let deadline = (!streams_upload(&req)).then(|| Deadline::after(limit));
    let _client_place = match anonymous_client(gw, &req) {
        None => None,
        Some(address) => match gw.per_client.enter(address) {
            Some(place) => Some(place),
            None => {
                crate::metrics::get().client_limited.inc();
                return api_version(ApiError::Overloaded.into_response());
            }
        },
    };
    let req = match deadline {
        Some(deadline) => match form_read_first(gw, req, deadline).await {
            Ok(req) => req,
            Err(error) => return api_version(error.into_response()),
        },
        None => req,
    };
    let Some(_admitted) = gw.admission.enter() else {
        crate::metrics::get().shed.inc();
        return api_version(ApiError::Overloaded.into_response());
    };
    let answer = async {
        origin::check_target(&req)?;
        route_request(gw, req, deadline).await
    };
    let result = match deadline {
        // A body read by the same deadline ends first (the inner future is polled first), so
        // a trickling form is answered 408, not 504.
        Some(deadline) => tokio::time::timeout_at(deadline.at, answer)
            .await
            .unwrap_or(Err(ApiError::RequestTimeout { limit })),
        None => answer.await,
    };
    api_version(result.unwrap_or_else(IntoResponse::into_response))
}

/// The client address of `req` when it carries no credentials in its headers (so is counted
/// per client, [`shed::PerClient`]); `/readyz` never is, so probes answer whatever clients do.
fn anonymous_client(gw: &Gateway, req: &Request) -> Option<std::net::IpAddr> {
    if req.headers().contains_key(header::AUTHORIZATION) || req.uri().path() == "/readyz" {
        return None;
    }
    failed_logins::counted_address(req, &gw.config.trusted_proxies)
}

/// `req` with its OAuth2 form already read, when it is a POST to a token realm: read whole by
/// `deadline` and within the form's cap (408 or 413 otherwise) while the request holds no place
/// among `max_in_flight`, so clients trickling forms cannot take the places others need.
async fn form_read_first(
    gw: &Gateway,
    req: Request,
    deadline: Deadline,
) -> Result<Request, ApiError> {
    use axum::body::HttpBody as _;
    let path = req.uri().path();
    let to_realm = path == gw.config.realm_path
        || gw
            .token_server
            .as_ref()
            .is_some_and(|ts| path == ts.settings.realm_path);
    if !(to_realm && req.method() == http::Method::POST) || req.body().is_end_stream() {
        return Ok(req);
    }
    let (parts, body) = req.into_parts();
    let form =
        crate::body::read_bounded(&parts.headers, body, token_endpoint::FORM_LIMIT, deadline)
            .await?;
    Ok(Request::from_parts(parts, axum::body::Body::from(form)))
}

/// Whether `req` carries blob data to an upload session, which takes as long as its bytes take
/// (bounded by the connection's idle deadline instead of a request deadline).
fn streams_upload(req: &Request) -> bool {
    use axum::body::HttpBody as _;
    matches!(
        *req.method(),
        http::Method::PATCH | http::Method::PUT | http::Method::POST
    ) && req.uri().path().contains("/blobs/uploads")
        && !req.body().is_end_stream()
}

/// `/metrics` alone, for `metrics.listen`.
pub fn metrics_app() -> Router {
    Router::new().route("/metrics", axum::routing::get(metrics))
}

/// `GET /metrics`: the Prometheus exposition (never shed, like liveness).
async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        crate::metrics::get().encode(),
    )
        .into_response()
}

/// The answer to a request whose target and `Host` are sound. A request that presents
/// credentials is refused (429) while its client is barred for failed logins, and counts as a
/// failed login when they are refused. A form body is read by `deadline` (the request's, when
/// it has one).
async fn route_request(
    gw: &Gateway,
    req: Request,
    deadline: Option<Deadline>,
) -> Result<Response, ApiError> {
    let path = req.uri().path();
    let token_server = gw
        .token_server
        .as_ref()
        .filter(|ts| path == ts.settings.realm_path);
    let realm = match token_server {
        Some(ts) => Some(token_endpoint::Realm::TokenServer(ts)),
        None => (path == gw.config.realm_path).then_some(token_endpoint::Realm::Gateway),
    };
    let is_api = path == "/v2" || path.starts_with("/v2/");
    if realm.is_none() && !is_api {
        return match path {
            "/readyz" => Ok(Box::pin(health::readyz(gw)).await),
            _ => Err(ApiError::NotFound),
        };
    }
    // The OAuth2 form carries its credentials in the body.
    let presents_credentials = req.headers().contains_key(header::AUTHORIZATION)
        || (realm.is_some() && req.method() == http::Method::POST);
    let mut attempt =
        presents_credentials.then(|| failed_logins::Attempt::of(&req, &gw.config.trusted_proxies));
    if let Some(attempt) = &attempt
        && let Err(barred) = gw.failed_logins.check(attempt)
    {
        crate::metrics::get().rate_limited.inc();
        return Err(barred);
    }
    let result = match realm {
        Some(realm) => {
            let endpoint = token_endpoint::Endpoint {
                identities: gw.identities(),
                decisions: &gw.decisions,
                signer: &gw.signer,
                token_lifetime: gw.config.token_lifetime,
                failed_logins: &gw.failed_logins,
                trail: Trail::of(&req),
                body_deadline: deadline
                    .unwrap_or_else(|| Deadline::after(gw.config.connections.request_timeout)),
            };
            Box::pin(token_endpoint::handle(
                &endpoint,
                realm,
                req,
                attempt.as_mut(),
            ))
            .await
        }
        None => gw.handle(req).await,
    };
    match (result, attempt) {
        (Err(e), Some(attempt)) if e.is_refused_credential() => {
            let metrics = crate::metrics::get();
            metrics.failed_logins.inc();
            let answer = gw.failed_logins.failed(&attempt, e);
            if matches!(answer, ApiError::TooManyRequests { .. }) {
                metrics.rate_limited.inc();
            }
            Err(answer)
        }
        (result, _) => result,
    }
}

impl Gateway {
    /// The pipeline: parse route -> plan access -> identify -> decide -> forward.
    async fn handle(&self, mut req: Request) -> Result<Response, ApiError> {
        let route = route::parse(req.uri().path())?;
        let plan = access::plan(req.method(), &route, req.uri().query())?;
        if matches!(route, Route::UploadStart { .. }) {
            refuse_form_body(req.headers())?;
        }
        let remote = route.name().and_then(|name| self.remote(name.namespace()));
        if let Some(remote) = remote
            && !matches!(*req.method(), http::Method::GET | http::Method::HEAD)
        {
            return Err(ApiError::Unsupported {
                message: format!(
                    "namespace {} mirrors {}: it can only be pulled from",
                    remote.settings.namespace, remote.settings.url
                ),
                allow: "GET, HEAD",
            });
        }
        let public = origin::public_origin(&req, &self.config)?;
        let push_to = push_window::push_step(req.method(), &route).map(|n| n.as_str());
        let caller = self
            .identify(req.headers(), &public, plan.scope.as_deref(), push_to)
            .await?;
        let trail = Trail::of(&req);
        trail.identify(&caller.user);

        for attrs in &plan.required {
            self.decide(&trail, &caller, attrs, &plan, &public).await?;
        }
        if matches!(route, Route::Base) && caller.user.is_anonymous() {
            self.anonymous_base(&public).await?;
        }
        if matches!(route, Route::UploadStart { .. }) {
            Box::pin(self.mount_or_plain_upload(&mut req, &trail, &caller, &plan)).await?;
        }
        if plan.catalog {
            return Box::pin(self.catalog(req, &trail, &caller, &public)).await;
        }
        if let (Some(remote), Some(name)) = (remote, route.name()) {
            return Box::pin(self.forward_remote(req, &public, remote, name, &caller)).await;
        }
        self.forward(req, &public, &plan).await
    }

    /// `GET /v2/` for anonymous callers: 200 only where some binding grants anonymous anything,
    /// else the challenge that makes docker and skopeo send credentials.
    async fn anonymous_base(&self, public: &PublicOrigin) -> Result<(), ApiError> {
        let authority = self.decisions.authority();
        if authority.anonymous_has_grants().await? {
            Ok(())
        } else {
            Err(self.challenge(public, None, None, "authentication required"))
        }
    }

    /// Keeps a cross-repository mount only when the caller may pull its source; otherwise the
    /// request goes on as a plain upload start, as distribution and OpenShift do. Without `from`
    /// the registry would pick the source itself (the OCI spec allows it), so a lone `mount` is
    /// dropped too.
    async fn mount_or_plain_upload(
        &self,
        req: &mut Request,
        trail: &Trail,
        caller: &Caller,
        plan: &Plan,
    ) -> Result<(), ApiError> {
        let allowed = match &plan.mount_source {
            Some(mount) => self.allowed(Some(trail), caller, &mount.check).await?,
            None => false,
        };
        let query = req.uri().query().unwrap_or("");
        if !allowed && !query.is_empty() {
            let query = access::without_mount(query);
            *req.uri_mut() = with_query(req.uri(), &query)?;
        }
        Ok(())
    }

    /// Whether `caller` may do `attrs` (cached); 503 when the authority cannot say. The
    /// decision goes on the request's `trail` for the audit log, when one is given.
    async fn allowed(
        &self,
        trail: Option<&Trail>,
        caller: &Caller,
        attrs: &Attributes,
    ) -> Result<bool, ApiError> {
        decide_audited(
            &self.decisions,
            trail,
            &caller.user,
            caller.token.as_ref(),
            attrs,
        )
        .await
    }

    /// Allows, or refuses with 401 (anonymous: log in) or 403 (naming the role that grants it).
    async fn decide(
        &self,
        trail: &Trail,
        caller: &Caller,
        attrs: &Attributes,
        plan: &Plan,
        public: &PublicOrigin,
    ) -> Result<(), ApiError> {
        if self.allowed(Some(trail), caller, attrs).await? {
            return Ok(());
        }
        let user = &caller.user;
        if user.is_anonymous() {
            return Err(self.challenge(
                public,
                plan.scope.as_deref(),
                None,
                "authentication required",
            ));
        }
        Err(denied(user, attrs, plan))
    }

    /// A 401 with the Bearer challenge of docs/behaviour.md §5.
    fn challenge(
        &self,
        public: &PublicOrigin,
        scope: Option<&str>,
        error: Option<&str>,
        message: &str,
    ) -> ApiError {
        let mut challenge = format!(
            "Bearer realm=\"{}{}\",service=\"{}\"",
            public.url(),
            self.config.realm_path,
            self.config.service
        );
        if let Some(scope) = scope {
            challenge.push_str(&format!(",scope=\"{scope}\""));
        }
        if let Some(error) = error {
            challenge.push_str(&format!(",error=\"{error}\""));
        }
        ApiError::Unauthorized {
            challenge,
            message: message.to_string(),
        }
    }
}

/// Whether `user` may do `attrs`, through the decision cache, recorded on `trail` (when given)
/// for the audit log; 503 when the authority cannot say. The gateway and the token endpoint
/// both decide through here.
async fn decide_audited(
    decisions: &Decisions,
    trail: Option<&Trail>,
    user: &UserInfo,
    token: Option<&secrecy::SecretString>,
    attrs: &Attributes,
) -> Result<bool, ApiError> {
    let decided = decisions.decide(user, token, attrs).await;
    if let Some(trail) = trail {
        trail.decided(attrs, decided.as_ref().ok());
    }
    Ok(decided?.allowed())
}

/// The 403 for `user` refused `attrs`, with the command that would grant what the request needs.
fn denied(user: &UserInfo, attrs: &Attributes, plan: &Plan) -> ApiError {
    // A push needs get and update; the hint names the role that grants the whole request.
    let pushing = plan.required.iter().any(|a| a.verb == "update");
    let role = policy::role_granting_request(attrs, pushing);
    let what = if attrs.namespace.is_empty() {
        format!("{} {} at cluster scope", attrs.verb, attrs.full_resource())
    } else {
        format!(
            "{} {} \"{}\" in namespace \"{}\"",
            attrs.verb,
            attrs.full_resource(),
            attrs.name,
            attrs.namespace
        )
    };
    let command = policy::grant_command(role, &user.name, attrs);
    ApiError::Denied {
        message: format!(
            "\"{}\" may not {what}; role {role} grants it: {command}",
            user.name
        ),
        detail: serde_json::json!({
            "identity": user.name,
            "verb": attrs.verb,
            "group": attrs.group,
            "resource": attrs.full_resource(),
            "namespace": attrs.namespace,
            "name": attrs.name,
        }),
    }
}

/// Refuses an upload start whose body the registry might read as a form. distribution reads
/// `mount`/`from` with Go's `FormValue`, which prefers a form body over the query, and Go's
/// `mime.ParseMediaType` trims Unicode spaces and keeps the media type even when a parameter is
/// malformed: so a Content-Type regate cannot read exactly the way Go would is refused too
/// (fail closed), and so is a second Content-Type (Go reads the first, a proxy may read another).
fn refuse_form_body(headers: &HeaderMap) -> Result<(), ApiError> {
    let refuse = |message: &str| {
        Err(ApiError::BadRequest {
            code: "UNSUPPORTED",
            message: format!(
                "{message}; an upload start takes no form body: send mount and from in the query"
            ),
        })
    };
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let Some(value) = values.next() else {
        return Ok(());
    };
    if values.next().is_some() {
        return refuse("more than one Content-Type header");
    }
    // Visible ASCII and tabs only: no byte that Go could take for a Unicode space.
    let Ok(text) = value.to_str() else {
        return refuse("the Content-Type is not plain ASCII");
    };
    let media_type = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim_matches(|c: char| c.is_ascii_whitespace())
        .to_ascii_lowercase();
    if media_type == "application/x-www-form-urlencoded" || media_type.starts_with("multipart/") {
        return refuse(&format!("Content-Type {media_type} is a form"));
    }
    Ok(())
}

fn with_query(uri: &http::Uri, query: &str) -> Result<http::Uri, ApiError> {
    let path_and_query = if query.is_empty() {
        uri.path().to_string()
    } else {
        format!("{}?{query}", uri.path())
    };
    path_and_query.parse().map_err(|_| ApiError::BadRequest {
        code: "UNSUPPORTED",
        message: "unreadable query string".into(),
    })
}

/// Adds `Docker-Distribution-API-Version` to regate's own answers that lack it.
fn api_version(mut response: Response) -> Response {
    response
        .headers_mut()
        .entry(API_VERSION)
        .or_insert(API_VERSION_VALUE);
    response
}

#[cfg(test)]
mod tests;
