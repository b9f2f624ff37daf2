//! The connections to one registry: HTTP/1.1 over TCP or TLS, opened on demand and kept for
//! the next request once a response has been read to its end.
//!
//! It is what hyper-util's pooled client does for one origin, without what regate does not use
//! (many origins keyed by URI, HTTP/2 negotiation, a connect race for every request): a
//! request takes the most recently used idle connection, or opens one, and its response body
//! gives the connection back when it ends. A connection the registry closed while it was idle
//! is found out when a request is written to it; hyper hands such a request back unsent, and it
//! is sent again on another connection, once.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response, Uri};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower::ServiceExt as _;

/// Idle connections kept at most; more are closed as their responses end.
const MAX_IDLE: usize = 128;

/// Why a request could not be sent or its response headers not read.
pub type PoolError = Box<dyn std::error::Error + Send + Sync>;

/// The open connections to one registry.
pub struct Pool {
    connector: HttpsConnector<HttpConnector>,
    /// `scheme://authority/`: what the connector dials.
    target: Uri,
    /// Oldest first: a request takes the newest from the back; expired ones leave from the
    /// front.
    idle: Mutex<VecDeque<Idle>>,
    /// How long an unused connection is kept.
    idle_timeout: Duration,
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

impl Pool {
    /// No connection yet to `target`; each is opened through `connector`.
    pub fn new(
        connector: HttpsConnector<HttpConnector>,
        target: Uri,
        idle_timeout: Duration,
    ) -> Arc<Pool> {
        Arc::new(Pool {
            connector,
            target,
            idle: Mutex::new(VecDeque::new()),
            idle_timeout,
        })
    }

    /// Sends `req` (origin-form URI, `Host` set) and returns the response once its headers
    /// are read; its body streams from the connection and gives it back at its end.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, PoolError> {
        let mut retried = false;
        loop {
            let (mut sender, reused) = self.checkout().await?;
            match sender.try_send_request(req).await {
                Ok(response) => {
                    let pool = Arc::downgrade(self);
                    return Ok(response.map(|body| {
                        Body::new(GivesBack {
                            body,
                            sender: Some(sender),
                            pool,
                        })
                    }));
                }
                Err(mut error) => match error.take_message() {
                    // Not written: the idle connection had been closed by the registry.
                    Some(unsent) if reused && !retried => {
                        retried = true;
                        req = unsent;
                    }
                    _ => return Err(error.into_error().into()),
                },
            }
        }
    }

    /// The most recently used idle connection that is still open, or a new one; the flag says
    /// whether it was reused.
    async fn checkout(&self) -> Result<(SendRequest<Body>, bool), PoolError> {
        loop {
            let idle = self
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_back();
            let Some(Idle { mut sender, since }) = idle else {
                break;
            };
            if sender.is_closed() || since.elapsed() > self.idle_timeout {
                continue;
            }
            // Ready as soon as the connection has finished with the response given back.
            if sender.ready().await.is_ok() {
                return Ok((sender, true));
            }
        }
        // Boxed: connecting is rare once warm, and its future is larger than a send's.
        Ok((Box::pin(self.connect()).await?, false))
    }

    /// A new connection to the registry.
    async fn connect(&self) -> Result<SendRequest<Body>, PoolError> {
        let io = self.connector.clone().oneshot(self.target.clone()).await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(async move {
            // Ends when the registry or regate closes the connection; nothing to report.
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// Keeps `sender` for the next request (unless closed, or enough are kept already).
    fn give_back(&self, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // The oldest connection is let go if unused too long or closed: one look per request,
        // and the newest-first reuse leaves the stale ones at the front.
        if idle
            .front()
            .is_some_and(|i| i.sender.is_closed() || i.since.elapsed() > self.idle_timeout)
        {
            idle.pop_front();
        }
        if idle.len() < MAX_IDLE {
            idle.push_back(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }
}

/// A response body that gives its connection back to the pool when it has been read to the
/// end; one dropped before its end takes the connection with it (unread bytes are on it).
struct GivesBack {
    body: Incoming,
    sender: Option<SendRequest<Body>>,
    pool: Weak<Pool>,
}

impl GivesBack {
    fn ended(&mut self) {
        if let (Some(sender), Some(pool)) = (self.sender.take(), self.pool.upgrade()) {
            pool.give_back(sender);
        }
    }
}

impl HttpBody for GivesBack {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        match &frame {
            None => self.ended(),
            Some(Err(_)) => self.sender = None,
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for GivesBack {
    fn drop(&mut self) {
        // The server stops polling a body that says it has ended (a HEAD, a 204, the last
        // byte of a Content-Length): the connection is free then too.
        if self.body.is_end_stream() {
            self.ended();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// A registry stand-in on 127.0.0.1 answering every request `200 ok`; with `close_after`,
    /// it closes each connection after that many answers, without saying so (as a server
    /// timing out an idle connection does). Returns its URI and the connections it accepted.
    async fn registry(close_after: Option<usize>) -> (Uri, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut answered = 0;
                    let mut buffer = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    while let Ok(read) = stream.read(&mut buffer).await {
                        if read == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buffer[..read]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if stream.write_all(answer).await.is_err() {
                                return;
                            }
                            answered += 1;
                            if close_after == Some(answered) {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (format!("http://{addr}/").parse().expect("uri"), accepted)
    }

    fn pool(target: Uri) -> Arc<Pool> {
        let connector =
            crate::upstream::auth::https_connector(Duration::from_secs(5)).expect("connector");
        Pool::new(connector, target, Duration::from_secs(60))
    }

    async fn get(pool: &Arc<Pool>) -> String {
        let request = Request::get("/v2/")
            .header(http::header::HOST, "registry")
            .body(Body::empty())
            .expect("request");
        let response = pool.send(request).await.expect("an answer");
        let body = response.into_body().collect().await.expect("body");
        String::from_utf8_lossy(&body.to_bytes()).into_owned()
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_response_is_read() {
        let (target, accepted) = registry(None).await;
        let pool = pool(target);
        for _ in 0..5 {
            assert_eq!(get(&pool).await, "ok");
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one connection for five requests"
        );
    }

    #[tokio::test]
    async fn a_connection_the_registry_closed_is_replaced_without_an_error() {
        let (target, accepted) = registry(Some(1)).await;
        let pool = pool(target);
        for _ in 0..3 {
            assert_eq!(get(&pool).await, "ok");
            // Let the registry's close reach regate's side, or not: either way the next
            // request is answered.
            tokio::task::yield_now().await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_unread_body_takes_its_connection_with_it() {
        let (target, accepted) = registry(None).await;
        let pool = pool(target);
        let request = Request::get("/v2/")
            .header(http::header::HOST, "registry")
            .body(Body::empty())
            .expect("request");
        let response = pool.send(request).await.expect("an answer");
        drop(response);
        assert_eq!(get(&pool).await, "ok");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "the half-read connection is not reused"
        );
    }
}
