//! The gateway as one `tower::Service`, [`App`]: every request goes through the access log
//! (`access_log.rs`), then to liveness, `/metrics` (when it is served on this address), the
//! console (when it is served here) or the gateway's [`dispatch`].
//!
//! Written by hand rather than as an axum `Router` with a `from_fn` layer: with three fixed
//! paths in front of one fallback, the router's lookup, its boxed services and the middleware's
//! boxed `Next` were a tenth of the CPU of an authorized pull (BENCHMARKS.md).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode, header};

use super::access_log::{self, LogState};
use super::console::Console;
use super::{Gateway, dispatch, metrics};

/// The whole HTTP service of `regate serve`; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct App(Arc<Inner>);

struct Inner {
    gateway: Arc<Gateway>,
    log: LogState,
    /// Whether `/metrics` is answered here (no `metrics.listen` of its own).
    metrics_here: bool,
    /// The console's routes, when `/console/` is served here.
    console: Option<axum::Router>,
}

impl App {
    /// The service in front of `gateway`.
    pub fn new(gateway: Arc<Gateway>) -> App {
        App::build(gateway, None, false)
    }

    /// The service in front of `gateway`, feeding `console` its recent decisions, and serving
    /// it at `/console/` when `here` (else it has an address of its own).
    pub fn with_console(gateway: Arc<Gateway>, console: &Arc<Console>, here: bool) -> App {
        App::build(gateway, Some(console), here)
    }

    fn build(gateway: Arc<Gateway>, console: Option<&Arc<Console>>, here: bool) -> App {
        let mut realms = vec![gateway.config.realm_path.clone()];
        if let Some(ts) = &gateway.token_server {
            realms.push(ts.settings.realm_path.clone());
        }
        let log = LogState {
            realms: Arc::new(realms),
            audit: gateway.audit.clone(),
            recent: console.map(|c| c.recent()),
            trusted_proxies: Arc::new(gateway.config.trusted_proxies.clone()),
        };
        App(Arc::new(Inner {
            metrics_here: gateway.config.metrics_listen.is_none(),
            console: console.filter(|_| here).map(Console::router),
            gateway,
            log,
        }))
    }
}

impl crate::connections::HttpService for App {}

impl tower::Service<Request> for App {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let app = self.0.clone();
        Box::pin(async move {
            let answer = access_log::access_log(&app.log, req, |req| app.answer(req)).await;
            Ok(answer)
        })
    }
}

impl Inner {
    /// Liveness and `/metrics` are never shed (`dispatch` sheds the rest).
    async fn answer(&self, req: Request) -> Response {
        match req.uri().path() {
            "/healthz" => "ok\n".into_response(),
            "/metrics" if self.metrics_here => match *req.method() {
                Method::GET | Method::HEAD => metrics().await,
                _ => (
                    StatusCode::METHOD_NOT_ALLOWED,
                    [(header::ALLOW, "GET,HEAD")],
                )
                    .into_response(),
            },
            path => match &self.console {
                Some(console) if is_console(path) => {
                    match tower::ServiceExt::oneshot(console.clone(), req).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    }
                }
                _ => dispatch(&self.gateway, req).await,
            },
        }
    }
}

/// Whether `path` is the console's.
fn is_console(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/")
}
