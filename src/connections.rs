//! Accepting and keeping connections (docs/behaviour.md §10): a client cannot hold regate down
//! by opening sockets and sending nothing, half a header, or nothing more after a response.
//!
//! - A request header must arrive whole within `header_timeout` (hyper's header-read timer,
//!   which also runs while a keep-alive connection waits for its next request).
//! - A connection with no request in flight for `idle_timeout` is closed.
//! - At most `max` connections are kept. A new one over the cap closes the connection that has
//!   been idle longest; when every connection is busy, the new one is closed instead. Running
//!   out of file descriptors in `accept` sheds an idle connection the same way.
//! - At start the open-file limit is raised to its hard limit, and `max` is kept to half of it
//!   (the other half is for connections to the registry, the state directory and logs).
//!
//! "In flight" lasts from the request's head to the last byte of its response body, so a long
//! pull or push is never mistaken for an idle connection; over HTTP/1.1, a request body left
//! unread (a refusal) is then read and thrown away within [`Linger::DEFAULT`], and the request
//! stays in flight until that ends, so the answer reaches a client still sending and the
//! connection can be kept ([`Lingering`]).
//!
//! Draining (after `stop`): connections are still accepted and served until no request has
//! been in flight, on any connection, for [`QUIET`], counted from the signal or from the last
//! request's end, whichever is later; a connection closing forgets nothing of that.
//!
//! With TLS ([`crate::tls`]) the handshake must also end within `header_timeout`; a client
//! that negotiates `h2` by ALPN is served HTTP/2, any other HTTP/1.1.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, HttpBody as _};
use axum::extract::ConnectInfo;
use axum::response::Response;
use http::{Method, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::body::{Linger, Lingering, Watched};
use crate::config::ConnectionSettings;

/// What a listener serves: a `tower::Service` answering every request (an axum `Router`, or
/// the gateway's own `App`).
pub trait HttpService:
    tower::Service<
        http::Request<Body>,
        Response = Response,
        Error = std::convert::Infallible,
        Future: Send,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl HttpService for axum::Router {}

/// One connection's state, shared by its task, its requests and the table.
struct Conn {
    /// Requests whose response body has not been sent whole yet.
    in_flight: AtomicUsize,
    /// When the last request ended (or the connection opened), in ms since the table's epoch.
    idle_since: AtomicU64,
    /// Asks the connection's task to close (idle: at once; busy: after its requests).
    close: Notify,
}

/// Every open connection, to shed the idlest when full.
struct Table {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    epoch: Instant,
    /// When a request last ended or a connection was last accepted (or draining began), in ms
    /// since `epoch`: kept here, not only per connection, so that a connection closing after
    /// its last request does not take that request's end with it.
    last_active: AtomicU64,
    /// Set once accepting has stopped: a connection that joins the table later (its TLS
    /// handshake was under way) closes as soon as it is idle.
    closing: AtomicBool,
}

impl Table {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Something happened now that a draining server must wait [`QUIET`] after.
    fn touch(&self) {
        self.last_active.fetch_max(self.now_ms(), Ordering::Release);
    }

    fn len(&self) -> usize {
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn insert(&self, conn: Arc<Conn>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.insert(id, conn);
        id
    }

    fn remove(&self, id: u64) {
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// True when no request is in flight and none ended, nor was a connection accepted, within
    /// `quiet`.
    fn quiet_for(&self, quiet: Duration) -> bool {
        let quiet = u64::try_from(quiet.as_millis()).unwrap_or(u64::MAX);
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        // In flight first: a request ending stores `last_active` before it leaves `in_flight`.
        conns
            .values()
            .all(|c| c.in_flight.load(Ordering::Acquire) == 0)
            && self
                .now_ms()
                .saturating_sub(self.last_active.load(Ordering::Acquire))
                >= quiet
    }

    /// Asks every connection to close (idle ones at once, busy ones after their requests),
    /// and any that joins later.
    fn close_all(&self) {
        self.closing.store(true, Ordering::Release);
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        for conn in conns.values() {
            conn.close.notify_one();
        }
    }

    /// Asks the connection idle longest to close; false when none is idle.
    fn shed_idlest(&self) -> bool {
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let idlest = conns
            .values()
            .filter(|c| c.in_flight.load(Ordering::Acquire) == 0)
            .min_by_key(|c| c.idle_since.load(Ordering::Relaxed));
        match idlest {
            Some(conn) => {
                conn.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Marks a request in flight until dropped (with the response body, or with the request).
struct InFlight {
    conn: Arc<Conn>,
    table: Arc<Table>,
}

impl InFlight {
    fn new(conn: &Arc<Conn>, table: &Arc<Table>) -> Self {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight {
            conn: conn.clone(),
            table: table.clone(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.table.now_ms();
        self.conn.idle_since.store(now, Ordering::Relaxed);
        self.table.last_active.fetch_max(now, Ordering::Release);
        self.conn.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

// A response body keeps its request in flight until it is sent whole or dropped.
impl crate::body::Watch for InFlight {
    fn data(&mut self, _: usize) {}
}

/// Raises the soft open-file limit to the hard one; returns the limit in force.
pub fn raise_open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    Some(limit.rlim_cur)
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until `stop` turns true, then
/// stops accepting, lets the open connections finish what they are doing (up to `drain`) and
/// returns.
pub async fn serve<S: HttpService>(
    listener: TcpListener,
    app: S,
    settings: ConnectionSettings,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
) {
    let tls = tls.map(TlsAcceptor::from);
    let open_files = raise_open_file_limit();
    let max = match open_files {
        Some(limit) => {
            let fit = usize::try_from(limit / 2).unwrap_or(usize::MAX).max(1);
            if fit < settings.max {
                tracing::warn!(
                    open_file_limit = limit,
                    "connections.max lowered from {} to {fit}: half the open-file limit; raise \
                     the limit (ulimit -n, LimitNOFILE=) to keep more",
                    settings.max
                );
            }
            settings.max.min(fit)
        }
        None => settings.max,
    };
    let table = Arc::new(Table {
        conns: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
        epoch: Instant::now(),
        last_active: AtomicU64::new(0),
        closing: AtomicBool::new(false),
    });
    let mut last_accept_error = None::<Instant>;
    // Draining (after `stop`): `/readyz` already says 503, and connections are still accepted
    // until no request has been in flight for `QUIET` (counted from the signal at the
    // earliest), so a push or pull that is under way gets its next request in, even on a new
    // connection, while load balancers stop sending new clients. Then accepting stops.
    let mut drain_deadline = None::<Instant>;
    loop {
        // Checked here too, so that connections arriving faster than the check below runs
        // cannot hold the drain open past its deadline.
        if drain_deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let accepted = tokio::select! {
            // In this order: the signal, a connection already waiting, and only then the check
            // whether to stop accepting.
            biased;
            _ = stop.wait_for(|stop| *stop), if drain_deadline.is_none() => {
                drain_deadline = Some(Instant::now() + drain);
                table.touch();
                continue;
            }
            accepted = listener.accept() => accepted,
            () = tokio::time::sleep(Duration::from_millis(50)), if drain_deadline.is_some() => {
                if table.quiet_for(QUIET) || drain_deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                continue;
            }
        };
        match accepted {
            Ok((stream, peer)) => {
                table.touch();
                if table.len() >= max && !table.shed_idlest() {
                    // Everyone is busy: refusing the newcomer keeps the others' transfers.
                    tracing::debug!(%peer, "connection refused: {max} connections, all busy");
                    drop(stream);
                    continue;
                }
                let task = Connection {
                    table: table.clone(),
                    app: app.clone(),
                    settings: settings.clone(),
                };
                tokio::spawn(task.accept(stream, peer, tls.clone()));
            }
            Err(error) => {
                // Out of descriptors (EMFILE/ENFILE) or a connection reset before accept: free
                // room by shedding an idle connection, and do not spin.
                table.shed_idlest();
                if last_accept_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(%error, connections = table.len(), "accept failed");
                    last_accept_error = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    // No new connection now: idle ones close at once, busy ones after their requests.
    drop(listener);
    let deadline = drain_deadline.unwrap_or_else(Instant::now);
    table.close_all();
    while table.len() > 0 {
        if Instant::now() >= deadline {
            tracing::warn!(
                "{} connections still busy after {drain:?}; stopping anyway",
                table.len()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The answer to a HEAD: `response`'s headers, with the `Content-Length` its body would have
/// had (RFC 9110 §9.3.2), and an empty body that says it has ended.
///
/// hyper's HTTP/1 never sends a body for HEAD, but its HTTP/2 sends whatever body it is given
/// (a HEADERS frame without END_STREAM, then DATA), which clients reset as PROTOCOL_ERROR. So
/// every answer of every listener passes here, whoever built it: regate's own errors, pages,
/// health and forwarded answers (whose upstream `Content-Length` is kept, docs/behaviour.md §6).
fn without_body(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    if !body.is_end_stream()
        && !parts.headers.contains_key(header::CONTENT_LENGTH)
        && let Some(len) = body.size_hint().exact()
    {
        parts.headers.insert(header::CONTENT_LENGTH, len.into());
    }
    // Dropping the body ends it: the access line is written, and a forwarded answer's
    // connection to the registry goes back to the pool (it has no body for a HEAD).
    drop(body);
    Response::from_parts(parts, Body::empty())
}

/// How long no request may have been in flight before a draining server stops accepting and
/// closes its connections.
const QUIET: Duration = Duration::from_secs(3);

/// The HTTP version a connection speaks: HTTP/2 only when TLS negotiated `h2`.
#[derive(Clone, Copy)]
enum Protocol {
    Http1,
    Http2,
}

/// What one connection's task needs.
struct Connection<S> {
    table: Arc<Table>,
    app: S,
    settings: ConnectionSettings,
}

impl<S: HttpService> Connection<S> {
    /// Completes the TLS handshake, if any, within the header deadline, then serves.
    async fn accept(self, stream: TcpStream, peer: SocketAddr, tls: Option<TlsAcceptor>) {
        let _ = stream.set_nodelay(true);
        let Some(acceptor) = tls else {
            return self.run(stream, peer, Protocol::Http1).await;
        };
        let handshake = tokio::time::timeout(self.settings.header_timeout, acceptor.accept(stream));
        match handshake.await {
            Ok(Ok(stream)) => {
                let protocol = match stream.get_ref().1.alpn_protocol() {
                    Some(b"h2") => Protocol::Http2,
                    _ => Protocol::Http1,
                };
                self.run(stream, peer, protocol).await;
            }
            Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake not done within the header deadline"),
        }
    }

    async fn run<T>(self, stream: T, peer: SocketAddr, protocol: Protocol)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let conn = Arc::new(Conn {
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(self.table.now_ms()),
            close: Notify::new(),
        });
        let id = self.table.insert(conn.clone());
        let service = {
            let (conn, table, app) = (conn.clone(), self.table.clone(), self.app.clone());
            hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                let in_flight = InFlight::new(&conn, &table);
                req.extensions_mut().insert(ConnectInfo(peer));
                // HTTP/2 ends an unread body by resetting the stream alone (NO_ERROR); HTTP/1.1
                // has to read it, or close with the client still sending (`Lingering`).
                let head = req.method() == Method::HEAD;
                let req = match protocol {
                    Protocol::Http1 if !req.body().is_end_stream() => {
                        let expects = req.headers().contains_key(http::header::EXPECT);
                        let reading = InFlight::new(&conn, &table);
                        req.map(|body| {
                            Body::new(Lingering::new(body, reading, &Linger::DEFAULT, expects))
                        })
                    }
                    Protocol::Http1 | Protocol::Http2 => req.map(Body::new),
                };
                let response = app.clone().oneshot(req);
                async move {
                    let mut response = response.await?;
                    if head {
                        response = without_body(response);
                    }
                    Ok::<_, std::convert::Infallible>(
                        response.map(|inner| Watched::body(inner, in_flight)),
                    )
                }
            })
        };
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.settings.header_timeout)
            .keep_alive(true);
        builder.http2().timer(TokioTimer::new());
        let builder = match protocol {
            Protocol::Http1 => builder.http1_only(),
            Protocol::Http2 => builder.http2_only(),
        };
        let http = builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(http);
        let mut closing = self.table.closing.load(Ordering::Acquire);
        if closing {
            http.as_mut().graceful_shutdown();
        }
        loop {
            let idle_for = self
                .table
                .now_ms()
                .saturating_sub(conn.idle_since.load(Ordering::Relaxed));
            let idle = conn.in_flight.load(Ordering::Acquire) == 0;
            let idle_left = self
                .settings
                .idle_timeout
                .saturating_sub(Duration::from_millis(idle_for));
            if idle && (closing || idle_left.is_zero()) {
                // No request is in flight: dropping the connection loses nothing.
                break;
            }
            // A busy connection is looked at again soon after its requests end.
            let check_in = if idle {
                idle_left
            } else {
                self.settings.idle_timeout.min(Duration::from_secs(1))
            };
            tokio::select! {
                _ = http.as_mut() => break,
                () = conn.close.notified() => {
                    closing = true;
                    http.as_mut().graceful_shutdown();
                }
                () = tokio::time::sleep(check_in.max(Duration::from_millis(10))) => {}
            }
        }
        self.table.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;
    use http::{HeaderValue, StatusCode};
    use hyper::body::Body as _;

    use super::*;

    #[test]
    fn an_answer_to_head_ends_at_once_and_keeps_its_length() {
        // regate's own answer: the length its body would have had.
        let own = without_body((StatusCode::NOT_FOUND, "not here\n").into_response());
        assert_eq!(own.status(), StatusCode::NOT_FOUND);
        assert_eq!(own.headers()[header::CONTENT_LENGTH], "9");
        assert!(own.body().is_end_stream());
        // A forwarded answer: the registry's length stays, whatever the body.
        let mut forwarded = Response::new(Body::empty());
        forwarded
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("4096"));
        let forwarded = without_body(forwarded);
        assert_eq!(forwarded.headers()[header::CONTENT_LENGTH], "4096");
        assert!(forwarded.body().is_end_stream());
        // No length invented where the answer had none.
        let empty = without_body(Response::new(Body::empty()));
        assert!(!empty.headers().contains_key(header::CONTENT_LENGTH));
    }
}
