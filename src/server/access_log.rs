//! One line per request, written when its response body has been sent whole (or dropped): method,
//! path (never the query, which may carry upload state), status, bytes, duration, the identity
//! regate settled on, the request id (as in the audit log), and for a refusal its message and, for a failure inside regate, its cause.
//! It is the only line a request produces, refusals included: denials and routine answers at
//! info, failures inside regate at warn, an authority that cannot answer at error.
//!
//! The same middleware keeps the request's [`Trail`]: the identity the pipeline settled on and,
//! when the audit log is on, the decisions and tokens it made, written as audit lines as soon
//! as the response headers are known (a pull's decision is on record before its transfer ends).

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use axum::extract::Request;
use axum::response::Response;
use http::{Method, StatusCode};
use tracing::Instrument;

use super::console::Recent;
use super::failed_logins::client_address;
use crate::audit::{AuditLog, Event, RequestRecord};
use crate::body::{Watch, Watched};
use crate::error::Refusal;
use crate::identity::UserInfo;
use crate::metrics::{RequestLabels, RouteKind};
use crate::policy::Attributes;

/// What the pipeline records about a request as it goes: who the caller turned out to be (for
/// the access line) and, when recording, what was decided and issued (for the audit log and
/// the console's recent decisions).
#[derive(Clone, Default)]
pub(super) struct Trail(Arc<Mutex<Recorded>>);

#[derive(Default)]
struct Recorded {
    /// Whether events are kept: the audit log or the console wants them.
    auditing: bool,
    user: Option<String>,
    groups: Vec<String>,
    events: Vec<Event>,
}

impl Trail {
    fn new(auditing: bool) -> Trail {
        Trail(Arc::new(Mutex::new(Recorded {
            auditing,
            ..Recorded::default()
        })))
    }

    /// The trail the access log gave `req`; a detached one when there is none (in-process
    /// tests that call the pipeline directly).
    pub(super) fn of(req: &Request) -> Trail {
        req.extensions().get::<Trail>().cloned().unwrap_or_default()
    }

    fn recorded(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records who the caller is.
    pub(super) fn identify(&self, user: &UserInfo) {
        let mut recorded = self.recorded();
        recorded.user = Some(user.name.clone());
        if recorded.auditing {
            recorded.groups = user.groups.clone();
        }
    }

    /// Records a decision for the audit log; `decision` is `None` when the authority could
    /// not answer.
    pub(super) fn decided(&self, attrs: &Attributes, decided: Option<&crate::cache::Decided>) {
        let mut recorded = self.recorded();
        if recorded.auditing {
            recorded.events.push(Event::Decision {
                time: SystemTime::now(),
                attrs: attrs.clone(),
                decision: decided.map(|d| d.decision.clone()),
                cache_hit: decided.is_some_and(|d| d.cache_hit),
            });
        }
    }

    /// Records a token issued, for the audit log.
    pub(super) fn issued(&self, event: Event) {
        let mut recorded = self.recorded();
        if recorded.auditing {
            recorded.events.push(event);
        }
    }

    fn user(&self) -> String {
        self.recorded()
            .user
            .clone()
            .unwrap_or_else(|| "-".to_string())
    }
}

/// What the access-log middleware needs: the token realms' paths (requests to them count as
/// `token` in the metrics), the audit log, and the proxies whose forwarded address is believed.
pub(super) struct LogState {
    pub realms: Arc<Vec<String>>,
    pub audit: Option<Arc<AuditLog>>,
    /// The console's stream of recent decisions, when the console is served.
    pub recent: Option<Arc<Recent>>,
    pub trusted_proxies: Arc<crate::config::TrustedProxies>,
}

/// The middleware: hands the pipeline a [`Trail`], counts the request's bytes both ways, writes
/// the request's audit lines when its response headers are known, and logs the access line
/// (and counts the request) when the response body ends.
pub(super) async fn access_log<F, A>(state: &LogState, req: Request, next: F) -> Response
where
    F: FnOnce(Request) -> A,
    A: Future<Output = Response>,
{
    let started = Instant::now();
    // The audit log names requests by their id, so a client's own is dropped: only a trusted
    // proxy's is kept, else regate makes one. The registry and the client see it too.
    let mut req = super::origin::untrusted_request_id_dropped(req, &state.trusted_proxies);
    let request_id = match req.headers().get(X_REQUEST_ID) {
        Some(id) => id.clone(),
        None => {
            let id = new_request_id();
            req.headers_mut().insert(X_REQUEST_ID, id.clone());
            id
        }
    };
    let recording = state.audit.is_some() || state.recent.is_some();
    let trail = Trail::new(recording);
    let route = RouteKind::of(req.uri().path(), &state.realms);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // Method, path and request id only: headers may carry credentials.
    let span = tracing::debug_span!("request", %method, path, id = id_text(&request_id));
    // Read only when recording.
    let client = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .filter(|_| recording)
        .map(|peer| client_address(peer.0.ip(), &req, &state.trusted_proxies));
    let mut req = req.map(|body| Watched::body(body, BytesIn));
    req.extensions_mut().insert(trail.clone());
    let mut response = next(req).instrument(span).await;
    if !response.headers().contains_key(X_REQUEST_ID) {
        response
            .headers_mut()
            .insert(X_REQUEST_ID, request_id.clone());
    }
    if recording {
        let request = RequestRecord {
            request_id: id_text(&request_id),
            client,
            method: method.as_str(),
            path: &path,
            user: None,
            groups: &[],
            status: response.status().as_u16(),
        };
        record(state, &trail, request);
    }
    crate::metrics::get().transfers_in_flight.inc();
    let (parts, body) = response.into_parts();
    let line = Line {
        route,
        method,
        path,
        started,
        trail,
        request_id,
        status: parts.status,
        refusal: parts.extensions.get::<Refusal>().cloned(),
        bytes: 0,
    };
    Response::from_parts(parts, Watched::body(body, line))
}

/// The header naming a request.
const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// A new request id: a random UUID.
fn new_request_id() -> http::HeaderValue {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Uuid::new_v4().hyphenated();
    http::HeaderValue::from_str(id.encode_lower(&mut text)).expect("a UUID is a valid header value")
}

/// The request id as text (checked visible ASCII when it came from a proxy).
fn id_text(id: &http::HeaderValue) -> &str {
    id.to_str().unwrap_or("")
}

/// Hands the request's events, if it decided or issued anything, to the audit log and the
/// console's stream of recent decisions.
fn record(state: &LogState, trail: &Trail, request: RequestRecord<'_>) {
    let lines = {
        let mut recorded = trail.recorded();
        if recorded.events.is_empty() {
            return;
        }
        let events = std::mem::take(&mut recorded.events);
        let request = RequestRecord {
            user: recorded.user.as_deref(),
            groups: &recorded.groups,
            ..request
        };
        if let Some(recent) = &state.recent {
            recent.record(&request, &events);
        }
        state
            .audit
            .as_ref()
            .map(|_| crate::audit::lines(&request, &events))
    };
    if let (Some(audit), Some(lines)) = (&state.audit, lines) {
        audit.write(lines);
    }
}

/// What the line says, filled in as the request goes.
struct Line {
    route: RouteKind,
    method: Method,
    path: String,
    started: Instant,
    trail: Trail,
    request_id: http::HeaderValue,
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
        let identity = self.trail.user();
        let request_id = id_text(&self.request_id);
        match &self.refusal {
            None if crate::logs::plain_text() && tracing::enabled!(tracing::Level::INFO) => {
                // The line `tracing::info!` below makes, without its per-field formatting.
                crate::logs::write_text(module_path!(), |line| {
                    use crate::logs::quoted;
                    use std::fmt::Write as _;
                    // `duration_ms` in tenths, as `{:?}` shows the rounded float.
                    let tenths = (ms * 10.0).round() as u64;
                    let _ = write!(line, "request method={method} path=");
                    quoted(line, path);
                    let _ = write!(
                        line,
                        " status={status} bytes={bytes} duration_ms={}.{} identity=",
                        tenths / 10,
                        tenths % 10
                    );
                    quoted(line, &identity);
                    line.push_str(" request_id=");
                    quoted(line, request_id);
                });
            }
            None => {
                tracing::info!(%method, path, status, bytes, duration_ms, identity, request_id, "request")
            }
            Some(r) => {
                let error = &r.message;
                let cause = r.cause.as_ref().map(tracing::field::display);
                if r.fail_closed {
                    tracing::error!(%method, path, status, bytes, duration_ms, identity, request_id, error, cause, "request refused: the authority cannot answer (fail closed)");
                } else if r.status.is_server_error() {
                    tracing::warn!(%method, path, status, bytes, duration_ms, identity, request_id, error, cause, "request failed");
                } else {
                    tracing::info!(%method, path, status, bytes, duration_ms, identity, request_id, error, "request refused");
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
