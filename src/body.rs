//! Bodies with something attached. [`Watched`] tells a watcher about each data frame it passes
//! on, and keeps the watcher until the body is sent whole or dropped: what counts bytes for the
//! access log and the metrics, and what keeps a request "in flight" for the connection table.
//! [`Lingering`] is a request body that, given up before its end, is read and thrown away
//! within bounds, so the answer reaches a client still sending (docs/behaviour.md §10).
//! [`read_bounded`] reads the bodies regate takes itself, capped and by a deadline.

mod bounded;

#[cfg(test)]
pub(crate) use bounded::tests::Stalled;
pub use bounded::{BodyError, Deadline, read_bounded};

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Frame, SizeHint};

/// Told the size of each data frame; dropped with the body.
pub trait Watch: Send + Unpin + 'static {
    /// `len` bytes went through.
    fn data(&mut self, len: usize);
}

/// `inner`, watched by `watch`.
pub struct Watched<W: Watch> {
    inner: Body,
    watch: W,
}

impl<W: Watch> Watched<W> {
    /// `inner` as an axum body, watched by `watch`.
    pub fn body(inner: Body, watch: W) -> Body {
        Body::new(Watched { inner, watch })
    }
}

impl<W: Watch> HttpBody for Watched<W> {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let len = data.len();
            self.watch.data(len);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How much of an unread request body is read and thrown away after its answer
/// (docs/behaviour.md §10): past any bound the connection is closed instead.
#[derive(Clone, Copy, Debug)]
pub struct Linger {
    /// Bytes read at most.
    pub bytes: u64,
    /// Time at most, from when the body was given up.
    pub total: Duration,
    /// Time at most without a frame.
    pub idle: Duration,
}

impl Linger {
    /// nginx's lingering close (`lingering_time 30s`, `lingering_timeout 5s`), plus a size
    /// bound so that no client keeps regate reading: 64 MiB is under a second on a LAN.
    pub const DEFAULT: Linger = Linger {
        bytes: 64 << 20,
        total: Duration::from_secs(30),
        idle: Duration::from_secs(5),
    };
}

/// A request body that, dropped before its end, is read to its end and thrown away by a task
/// of its own within [`Linger`], which holds `keep` until then.
///
/// An HTTP/1.1 server that answers without reading the body (a refusal) and then closes makes
/// the kernel reset the connection while the client is still sending, and the answer is lost
/// with it (nginx reports 502 and marks the server failed). While the task reads, hyper sends
/// the answer, and a body read whole leaves the connection fit for the next request.
pub struct Lingering<B, K>
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    K: Send + Unpin + 'static,
{
    /// `None` once it ended.
    body: Option<B>,
    /// Dropped when the body ends, or when its drain does.
    keep: Option<K>,
    bounds: &'static Linger,
    /// Whether a frame was ever asked for.
    polled: bool,
    /// The client waits for `100 Continue` before it sends: a body never asked for is not on
    /// its way, and asking for it now would only invite it.
    expects_continue: bool,
}

impl<B, K> Lingering<B, K>
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    K: Send + Unpin + 'static,
{
    /// `body`, drained within `bounds` if dropped early; `expects_continue` when its request
    /// has `Expect: 100-continue`.
    pub fn new(body: B, keep: K, bounds: &'static Linger, expects_continue: bool) -> Self {
        Lingering {
            body: Some(body),
            keep: Some(keep),
            bounds,
            polled: false,
            expects_continue,
        }
    }
}

impl<B, K> HttpBody for Lingering<B, K>
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    K: Send + Unpin + 'static,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        this.polled = true;
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(body).poll_frame(cx);
        if let Poll::Ready(None | Some(Err(_))) = polled {
            // Nothing is left to drain.
            this.body = None;
            this.keep = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl<B, K> Drop for Lingering<B, K>
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    K: Send + Unpin + 'static,
{
    fn drop(&mut self) {
        let Some(body) = self.body.take() else {
            return;
        };
        // Nothing left; a body the client was never asked for; or one known to pass the bound,
        // where closing at once loses nothing reading it would save.
        if body.is_end_stream()
            || (self.expects_continue && !self.polled)
            || body.size_hint().lower() > self.bounds.bytes
        {
            return;
        }
        // Outside a runtime the process is ending: nothing to keep a connection for.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(discard(body, self.keep.take(), *self.bounds));
        }
    }
}

/// Reads `body` to its end and throws it away, giving up (and so closing the connection) past
/// `bounds`; holds `keep` meanwhile.
async fn discard<B, K>(mut body: B, keep: Option<K>, bounds: Linger)
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    let _keep = keep;
    let mut left = bounds.bytes;
    let total = tokio::time::sleep(bounds.total);
    tokio::pin!(total);
    loop {
        let frame = tokio::select! {
            frame = tokio::time::timeout(bounds.idle, body.frame()) => frame,
            () = &mut total => {
                tracing::debug!("unread request body not drained within {:?}", bounds.total);
                return;
            }
        };
        let len = match frame {
            Ok(Some(Ok(frame))) => frame.data_ref().map_or(0, |data| data.len()),
            // The end, a broken body, or nothing within `idle`.
            _ => return,
        };
        match left.checked_sub(u64::try_from(len).unwrap_or(u64::MAX)) {
            Some(rest) => left = rest,
            None => {
                tracing::debug!("unread request body longer than {} bytes", bounds.bytes);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
