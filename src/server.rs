//! The HTTP service: `regate serve`, the gateway pipeline and the token endpoint.
//!
//! Every `/v2/` request runs one pipeline, each step a module of its own:
//! [`route::parse`] (the OCI URL) -> [`access::plan`] (the RBAC checks it needs) ->
//! [`identify`](Gateway::identify) (who is calling) -> [`decide`](Gateway::decide) (through the
//! decision cache) -> [`Upstream::forward`] (streamed to the registry). Anything refused on the
//! way is answered by regate itself with an [`ApiError`] and never reaches the registry.

mod catalog;
mod connections;
mod failed_logins;
mod identify;
mod origin;
mod token_endpoint;

pub use connections::ConnectionSettings;
pub use failed_logins::FailedLoginSettings;
pub use token_endpoint::TokenServer;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::access::{self, Plan};
use crate::authority::embedded::Embedded;
use crate::authority::kubernetes::Kubernetes;
use crate::authority::{Authority, AuthorityError};
use crate::cache::Decisions;
use crate::config::{Config, ServeArgs};
use crate::error::{API_VERSION, API_VERSION_VALUE, ApiError};
use crate::identity::{Caller, UserInfo};
use crate::policy::{self, Attributes};
use crate::proxy::{PublicOrigin, Upstream};
use crate::route::{self, Name, Route};
use crate::token::Signer;

/// How long a graceful shutdown waits for transfers in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

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

/// The whole HTTP service, ready for `axum::serve` or `tower::ServiceExt::oneshot`.
pub fn app(gateway: Arc<Gateway>) -> Router {
    // Outermost first: a request id is set before the trace span records it, and copied to the
    // response after everything else ran.
    let layers = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            // Method, path and request id only: headers may carry credentials.
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::debug_span!("request", method = %req.method(), path = %req.uri().path(), id)
        }))
        .layer(PropagateRequestIdLayer::x_request_id());
    Router::new()
        .fallback(dispatch)
        .with_state(gateway)
        .layer(layers)
}

/// Routes by raw path: the token endpoint, `/v2/`, a health check; 404 for the rest.
async fn dispatch(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    let result = match origin::check_target(&req) {
        Ok(()) => route_request(&gw, req).await,
        Err(e) => Err(e),
    };
    api_version(result.unwrap_or_else(|e| {
        // Denials are what operators look for ("why can't X pull?"); challenges are routine.
        match e.status() {
            s if s.is_server_error() => tracing::warn!(status = %s, error = %e, "refused"),
            StatusCode::FORBIDDEN => tracing::info!(error = %e, "denied"),
            s => tracing::debug!(status = %s, error = %e, "refused"),
        }
        e.into_response()
    }))
}

/// The answer to a request whose target and `Host` are sound. A request that presents
/// credentials is refused (429) while its client is barred for failed logins, and counts as a
/// failed login when they are refused.
async fn route_request(gw: &Gateway, req: Request) -> Result<Response, ApiError> {
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
        return if path == "/healthz" {
            Ok((StatusCode::OK, "ok\n").into_response())
        } else {
            Err(ApiError::NotFound)
        };
    }
    // The OAuth2 form carries its credentials in the body.
    let presents_credentials = req.headers().contains_key(header::AUTHORIZATION)
        || (realm.is_some() && req.method() == http::Method::POST);
    let mut attempt =
        presents_credentials.then(|| failed_logins::Attempt::of(&req, &gw.config.trusted_proxies));
    if let Some(attempt) = &attempt {
        gw.failed_logins.check(attempt)?;
    }
    let result = match realm {
        Some(realm) => token_endpoint::handle(gw, realm, req, attempt.as_mut()).await,
        None => gw.handle(req).await,
    };
    match (result, attempt) {
        (Err(e), Some(attempt)) if e.is_refused_credential() => {
            Err(gw.failed_logins.failed(&attempt, e))
        }
        (result, _) => result,
    }
}

impl Gateway {
    /// The pipeline: parse route -> plan access -> identify -> decide -> forward.
    async fn handle(&self, mut req: Request) -> Result<Response, ApiError> {
        let route = route::parse(req.uri().path()).map_err(route_error)?;
        let plan = access::plan(req.method(), &route, req.uri().query())
            .map_err(|e| access_error(e, &route))?;
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
        let public = origin::public_origin(
            &req,
            self.config.public_url.as_ref(),
            &self.config.trusted_proxies,
            self.config.listen,
        )?;
        let caller = self
            .identify(req.headers(), &public, plan.scope.as_deref())
            .await?;

        for attrs in &plan.required {
            self.decide(&caller, attrs, &plan, &public).await?;
        }
        if matches!(route, Route::Base) && caller.user.is_anonymous() {
            self.anonymous_base(&public).await?;
        }
        if matches!(route, Route::UploadStart { .. }) {
            self.mount_or_plain_upload(&mut req, &caller, &plan).await?;
        }
        if plan.catalog {
            return self.catalog(req, &caller, &public).await;
        }
        if let (Some(remote), Some(name)) = (remote, route.name()) {
            return self
                .forward_remote(req, &public, remote, name, &caller)
                .await;
        }
        self.forward(req, &public, &plan).await
    }

    /// Forwards an authorized request to the registry behind regate, with regate's own
    /// credential for it if it needs one (the global pull secret).
    async fn forward(
        &self,
        req: Request,
        public: &PublicOrigin,
        plan: &Plan,
    ) -> Result<Response, ApiError> {
        // Taken once: a reload during the transfer does not change what it uses.
        let keyring = self.pull_secret.as_ref().map(|c| c.file.keyring());
        let credentials = self.pull_secret.as_ref().zip(keyring.as_deref());
        let image = match plan.repository() {
            Some(name) => format!("{}/{name}", self.upstream.authority()),
            None => self.upstream.authority().to_string(),
        };
        let target = Target {
            upstream: &self.upstream,
            credentials: credentials.map(|(c, k)| (&c.auth, k)),
            image,
            scope: upstream_scope(plan),
        };
        self.send(target, req, public).await
    }

    /// Forwards an authorized pull in a remote namespace to its registry: `NS/app` becomes
    /// `PREFIX/app` there, and the credentials tried are the caller's service account's and the
    /// namespace's pull secrets, then the global one.
    async fn forward_remote(
        &self,
        mut req: Request,
        public: &PublicOrigin,
        remote: &Remote,
        name: &Name,
        caller: &Caller,
    ) -> Result<Response, ApiError> {
        let prefix = &remote.settings.prefix;
        let repository = if prefix.is_empty() {
            name.imagestream().to_string()
        } else {
            format!("{prefix}/{}", name.imagestream())
        };
        let path = req.uri().path();
        let rest = path
            .strip_prefix(&format!("/v2/{name}/"))
            .ok_or(ApiError::NotFound)?;
        let path = format!("/v2/{repository}/{rest}");
        let query = req.uri().query().unwrap_or("").to_string();
        *req.uri_mut() = with_query(&path.parse().map_err(|_| ApiError::NotFound)?, &query)?;
        let mut keyring = self
            .decisions
            .authority()
            .pull_keyring(&caller.user, name.namespace())
            .await
            .map_err(unavailable)?;
        if let Some(global) = &self.pull_secret {
            keyring = keyring.chain((*global.file.keyring()).clone());
        }
        let target = Target {
            upstream: &remote.upstream,
            credentials: Some((&remote.auth, &keyring)),
            image: format!("{}/{repository}", remote.upstream.authority()),
            scope: Some(format!("repository:{repository}:pull")),
        };
        self.send(target, req, public).await
    }

    /// Sends `req` to `target` with the credential its challenge asks for. A 401 from it is
    /// never passed on: the client was authorized by regate, and a challenge naming the
    /// registry's realm would only mislead it; it becomes a 502 naming the fix.
    async fn send(
        &self,
        target: Target<'_>,
        req: Request,
        public: &PublicOrigin,
    ) -> Result<Response, ApiError> {
        let upstream = target.upstream;
        let origin = upstream.origin();
        let scope = target.scope.as_deref();
        let credential = match target.credentials {
            None => None,
            Some((auth, keyring)) => auth
                .authorization(keyring, &target.image, scope)
                .await
                .map_err(|e| upstream_credentials(origin, e.to_string()))?,
        };
        let sent = credential.is_some();
        let response = upstream.forward(req, public, credential).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        if let Some((auth, _)) = target.credentials {
            auth.rejected(scope);
        }
        Err(upstream_credentials(
            origin,
            if sent {
                format!(
                    "credentials rejected by the registry at {origin}: fix its entry in the pull \
                     secret, e.g. `regate registry login --registry {} --auth-basic-stdin --to FILE`",
                    upstream.authority()
                )
            } else {
                format!(
                    "the registry at {origin} asks for credentials and regate has none for it: \
                     give regate a pull secret (upstream.pull_secret or --pull-secret, or a \
                     namespace's docker-registry secret for a remote namespace)"
                )
            },
        ))
    }

    /// The remote (pull-through) namespace `namespace` is, if it is one.
    fn remote(&self, namespace: &str) -> Option<&Remote> {
        self.remotes
            .iter()
            .find(|r| r.settings.namespace == namespace)
    }

    /// `GET /v2/` for anonymous callers: 200 only where some binding grants anonymous anything,
    /// else the challenge that makes docker and skopeo send credentials.
    async fn anonymous_base(&self, public: &PublicOrigin) -> Result<(), ApiError> {
        let authority = self.decisions.authority();
        if authority
            .anonymous_has_grants()
            .await
            .map_err(unavailable)?
        {
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
        caller: &Caller,
        plan: &Plan,
    ) -> Result<(), ApiError> {
        let allowed = match &plan.mount_source {
            Some(mount) => self.allowed(caller, &mount.check).await?,
            None => false,
        };
        let query = req.uri().query().unwrap_or("");
        if !allowed && !query.is_empty() {
            let query = access::without_mount(query);
            *req.uri_mut() = with_query(req.uri(), &query)?;
        }
        Ok(())
    }

    /// Whether `caller` may do `attrs` (cached); 503 when the authority cannot say.
    async fn allowed(&self, caller: &Caller, attrs: &Attributes) -> Result<bool, ApiError> {
        let decision = self
            .decisions
            .decide(&caller.user, caller.token.as_ref(), attrs);
        Ok(decision.await.map_err(unavailable)?.allowed())
    }

    /// Allows, or refuses with 401 (anonymous: log in) or 403 (naming the role that grants it).
    async fn decide(
        &self,
        caller: &Caller,
        attrs: &Attributes,
        plan: &Plan,
        public: &PublicOrigin,
    ) -> Result<(), ApiError> {
        if self.allowed(caller, attrs).await? {
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

    /// A 401 with the Bearer challenge of BEHAVIOUR §5.
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

/// Where [`Gateway::send`] sends a request, and with which credentials.
struct Target<'a> {
    upstream: &'a Upstream,
    /// What answers the registry's challenge, and the pull secrets to answer it with.
    credentials: Option<(
        &'a crate::upstream::auth::UpstreamAuth,
        &'a crate::upstream::keyring::Keyring,
    )>,
    /// `host[:port]/repository`, to pick pull-secret entries by.
    image: String,
    /// The scope a Bearer token for the request needs.
    scope: Option<String>,
}

/// A 502 about regate's credentials toward a registry, logged for the operator.
fn upstream_credentials(origin: &str, message: String) -> ApiError {
    tracing::warn!(upstream = %origin, "{message}");
    ApiError::UpstreamCredentials { message }
}

/// The scope regate asks the registry's realm for: the request's own, and for a mount also
/// pull on its source, as distribution checks both.
fn upstream_scope(plan: &Plan) -> Option<String> {
    let scope = plan.scope.clone()?;
    Some(match &plan.mount_source {
        Some(mount) => format!("{scope} repository:{}:pull", mount.from),
        None => scope,
    })
}

/// The 403 for `user` refused `attrs`, with the command that would grant what the request needs.
fn denied(user: &UserInfo, attrs: &Attributes, plan: &Plan) -> ApiError {
    // A push needs get and update; the hint names the role that grants the whole request.
    let pushing = plan.required.iter().any(|a| a.verb == "update");
    let role = if pushing && attrs.subresource == "layers" {
        "system:image-pusher"
    } else {
        policy::role_granting(attrs)
    };
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

fn unavailable(e: AuthorityError) -> ApiError {
    tracing::error!(error = %e, "authority cannot answer; refusing (fail closed)");
    ApiError::AuthorityUnavailable
}

fn route_error(e: route::RouteError) -> ApiError {
    match e {
        route::RouteError::NotFound => ApiError::NotFound,
        e => ApiError::BadRequest {
            code: e.code(),
            message: e.to_string(),
        },
    }
}

fn access_error(e: access::AccessError, route: &Route) -> ApiError {
    match e {
        access::AccessError::MethodNotAllowed { .. } => ApiError::Unsupported {
            message: e.to_string(),
            allow: access::allowed_methods(route),
        },
        access::AccessError::InvalidMountSource(inner) => route_error(inner),
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

/// `regate serve`: load the config, open the authority, listen, and serve until SIGTERM/Ctrl-C.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(&args)?;
    let (authority, signer) = open_authority(&config).await?;
    let upstream = Upstream::new(&config.upstream, config.upstream_timeout)?;
    let decisions = Decisions::new(authority, &config.cache);
    let token_server = match &config.token_server {
        None => None,
        Some(settings) => {
            let key = crate::keys::LiveKey::open(&settings.keys).with_context(|| {
                format!(
                    "token_server.keys {}: create the keys with `regate keys init --dir {}`",
                    settings.keys.display(),
                    settings.keys.display()
                )
            })?;
            key.spawn_reloader();
            tracing::info!(
                realm = %settings.realm_path,
                service = %settings.service,
                issuer = %settings.issuer,
                key = %key.current().info().libtrust_id,
                "token-server mode"
            );
            Some(TokenServer {
                settings: settings.clone(),
                key,
            })
        }
    };
    let pull_secret = match &config.pull_secret {
        None => None,
        Some(path) => {
            let file = crate::upstream::pull_secret::PullSecretFile::open(path)
                .with_context(|| format!("upstream.pull_secret {}", path.display()))?;
            file.spawn_reloader();
            let auth =
                crate::upstream::auth::UpstreamAuth::new(&config.upstream, config.upstream_timeout)
                    .context("upstream")?;
            Some(UpstreamCredentials { file, auth })
        }
    };
    let mut remotes = Vec::new();
    for settings in &config.remotes {
        let what = || format!("remotes: namespace {}", settings.namespace);
        remotes.push(Remote {
            upstream: Upstream::new(&settings.url, config.upstream_timeout).with_context(what)?,
            auth: crate::upstream::auth::UpstreamAuth::new(&settings.url, config.upstream_timeout)
                .with_context(what)?,
            settings: settings.clone(),
        });
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (flag --listen)", config.listen))?;
    let bound = listener.local_addr()?;
    tracing::info!(listen = %bound, upstream = %config.upstream, authority = ?config.authority, "serving");
    let failed_logins = failed_logins::FailedLogins::new(&config.failed_logins);
    let connections = config.connections.clone();
    let gateway = Arc::new(Gateway {
        failed_logins,
        config,
        decisions,
        signer,
        upstream,
        token_server,
        pull_secret,
        remotes,
    });
    // Printed only once the socket accepts, so a script can wait for this line.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{bound}")?;
        out.flush()?;
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(connections::serve(
        listener,
        app(gateway),
        connections,
        stop_rx,
        DRAIN_TIMEOUT,
    ));
    shutdown_signal().await;
    tracing::info!("shutting down; waiting up to {DRAIN_TIMEOUT:?} for transfers in flight");
    let _ = stop_tx.send(true);
    server.await?;
    Ok(())
}

/// The configured authority, and the key that signs registry tokens.
async fn open_authority(config: &Config) -> anyhow::Result<(Arc<dyn Authority>, Arc<Signer>)> {
    let key_file = |path: &std::path::Path| -> anyhow::Result<Arc<Signer>> {
        Ok(Arc::new(Signer::load_or_create(path).with_context(
            || format!("token.key_file {}", path.display()),
        )?))
    };
    match &config.authority {
        crate::config::Authority::Embedded => {
            let embedded = Embedded::open(&config.state)
                .with_context(|| format!("opening state directory {}", config.state.display()))?;
            embedded.spawn_reloader();
            let signer = match &config.token_key_file {
                Some(path) => key_file(path)?,
                None => embedded.signer(),
            };
            Ok((embedded, signer))
        }
        crate::config::Authority::Kubernetes(k8s) => {
            let authority = Kubernetes::new(k8s.clone())
                .await
                .context("connecting to the Kubernetes API (authority: kubernetes)")?;
            let signer = match &config.token_key_file {
                Some(path) => key_file(path)?,
                None => {
                    tracing::info!(
                        "registry tokens are signed with a key of this process only; set \
                         token.key_file to a shared key when several replicas serve one address"
                    );
                    Arc::new(Signer::random())
                }
            };
            Ok((authority, signer))
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests;
