//! A body that tells a watcher about each data frame it passes on, and keeps the watcher until
//! the body is sent whole or dropped: what counts bytes for the access log and the metrics,
//! and what keeps a request "in flight" for the connection table. [`read_bounded`] reads the
//! bodies regate takes itself, capped and by a deadline.

mod bounded;

#[cfg(test)]
pub(crate) use bounded::tests::Stalled;
pub use bounded::{BodyError, Deadline, read_bounded};

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, HttpBody};
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
