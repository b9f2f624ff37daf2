//! One line per request, written when its response body has been sent whole (or dropped): method,
//! path (never the query, which may carry upload state), status, bytes, duration, the identity
//! regate settled on, and for a refusal its message and, for a failure inside regate, its cause.
//! It is the only line a request produces, refusals included: denials and routine answers at
//! info, failures inside regate at warn, an authority that cannot answer at error.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{Method, StatusCode};

use crate::body::{Watch, Watched};
use crate::error::Refusal;
use crate::metrics::{RequestLabels, RouteKind};

/// Where the pipeline records who the caller turned out to be, for the access line.
#[derive(Clone, Default)]
pub(super) struct Identity(Arc<Mutex<Option<String>>>);

impl Identity {
    /// Records the caller's user name.
    pub(super) fn set(&self, name: &str) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(name.to_string());
    }

    fn get(&self) -> String {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| "-".to_string())
    }
}

/// The paths of the token realms, so requests to them count as `token` in the metrics.
#[derive(Clone)]
pub(super) struct Realms(pub Arc<Vec<String>>);

/// The middleware: hands the pipeline an [`Identity`] slot, counts the request's bytes both
/// ways, and logs the line (and counts the request) when the response body ends.
pub(super) async fn access_log(State(realms): State<Realms>, req: Request, next: Next) -> Response {
    let identity = Identity::default();
    let route = RouteKind::of(req.uri().path(), &realms.0);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = Instant::now();
    let mut req = req.map(|body| Watched::body(body, BytesIn));
    req.extensions_mut().insert(identity.clone());
    let response = next.run(req).await;
    crate::metrics::get().transfers_in_flight.inc();
    let (parts, body) = response.into_parts();
    let line = Line {
        route,
        method,
        path,
        started,
        identity,
        status: parts.status,
        refusal: parts.extensions.get::<Refusal>().cloned(),
        bytes: 0,
    };
    Response::from_parts(parts, Watched::body(body, line))
}

/// What the line says, filled in as the request goes.
struct Line {
    route: RouteKind,
    method: Method,
    path: String,
    started: Instant,
    identity: Identity,
    status: StatusCode,
    refusal: Option<Refusal>,
    bytes: u64,
}

impl Line {
    fn count(&self) {
        let metrics = crate::metrics::get();
        metrics
            .requests
            .get_or_create(&RequestLabels {
                route: self.route,
                method: crate::metrics::method_label(&self.method),
                status: crate::metrics::status_class(self.status.as_u16()),
            })
            .inc();
        metrics.transfers_in_flight.dec();
    }

    fn write(&self) {
        let (method, path, status, bytes) =
            (&self.method, &self.path, self.status.as_u16(), self.bytes);
        let ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let duration_ms = (ms * 10.0).round() / 10.0;
        let identity = self.identity.get();
        match &self.refusal {
            None => tracing::info!(%method, path, status, bytes, duration_ms, identity, "request"),
            Some(r) => {
                let error = &r.message;
                let cause = r.cause.as_ref().map(tracing::field::display);
                if r.fail_closed {
                    tracing::error!(%method, path, status, bytes, duration_ms, identity, error, cause, "request refused: the authority cannot answer (fail closed)");
                } else if r.status.is_server_error() {
                    tracing::warn!(%method, path, status, bytes, duration_ms, identity, error, cause, "request failed");
                } else {
                    tracing::info!(%method, path, status, bytes, duration_ms, identity, error, "request refused");
                }
            }
        }
    }
}

// The response body counts what it sends into the line, which is written (and the request
// counted) when the body is sent whole or dropped.
impl Watch for Line {
    fn data(&mut self, len: usize) {
        self.bytes += len as u64;
        crate::metrics::get().bytes_out.inc_by(len as u64);
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        self.count();
        self.write();
    }
}

/// Counts request body bytes (`regate_request_body_bytes`).
struct BytesIn;

impl Watch for BytesIn {
    fn data(&mut self, len: usize) {
        crate::metrics::get().bytes_in.inc_by(len as u64);
    }
}
