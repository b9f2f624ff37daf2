//! `Lingering` with a body fed by the test: what is drained, what is let go at once, and each
//! bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::*;

/// Small bounds, so the tests see each one passed.
static SMALL: Linger = Linger {
    bytes: 1000,
    total: Duration::from_millis(600),
    idle: Duration::from_millis(200),
};

/// A body fed through a channel, counting what was taken from it; ends when the sender drops.
struct Fed {
    rx: mpsc::Receiver<Bytes>,
    taken: Arc<AtomicU64>,
    length: Option<u64>,
}

impl HttpBody for Fed {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.rx.poll_recv(cx).map(|chunk| {
            chunk.map(|data| {
                self.taken.fetch_add(data.len() as u64, Ordering::Relaxed);
                Ok(Frame::data(data))
            })
        })
    }

    fn size_hint(&self) -> SizeHint {
        self.length
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

/// A lingering body fed by `feed`, with what the test watches.
struct Case {
    body: Lingering<Fed, oneshot::Sender<()>>,
    feed: mpsc::Sender<Bytes>,
    /// Bytes taken from the body.
    taken: Arc<AtomicU64>,
    /// Closed when `keep` is dropped.
    kept: oneshot::Receiver<()>,
}

/// A body of `length` bytes (`None`: unknown) whose request may expect `100 Continue`.
fn case(length: Option<u64>, expects_continue: bool) -> Case {
    let (feed, rx) = mpsc::channel(4);
    let taken = Arc::new(AtomicU64::new(0));
    let (keep, kept) = oneshot::channel();
    let body = Fed {
        rx,
        taken: taken.clone(),
        length,
    };
    Case {
        body: Lingering::new(body, keep, &SMALL, expects_continue),
        feed,
        taken,
        kept,
    }
}

/// Resolves when `keep` was dropped; panics if that takes over 3 s.
async fn released(kept: oneshot::Receiver<()>) {
    tokio::time::timeout(Duration::from_secs(3), kept)
        .await
        .expect("keep released within 3 s")
        .expect_err("keep is dropped, never used");
}

/// Whether `keep` was dropped already.
fn released_now(kept: &mut oneshot::Receiver<()>) -> bool {
    kept.try_recv() == Err(oneshot::error::TryRecvError::Closed)
}

#[tokio::test]
async fn a_body_dropped_unread_is_read_to_its_end_then_keep_is_released() {
    let Case {
        body,
        feed,
        taken,
        kept,
    } = case(None, false);
    drop(body);
    for _ in 0..5 {
        feed.send(Bytes::from_static(&[7; 100]))
            .await
            .expect("still read");
    }
    drop(feed);
    released(kept).await;
    assert_eq!(taken.load(Ordering::Relaxed), 500);
}

#[tokio::test]
async fn a_body_read_to_its_end_releases_keep_at_once() {
    let mut c = case(None, false);
    c.feed.send(Bytes::from_static(b"abc")).await.expect("send");
    drop(c.feed);
    let read = c.body.collect().await.expect("read").to_bytes();
    assert_eq!(&read[..], b"abc");
    assert!(released_now(&mut c.kept));
}

#[tokio::test]
async fn draining_stops_past_the_byte_bound() {
    let Case {
        body,
        feed,
        taken,
        kept,
    } = case(None, false);
    drop(body);
    let mut sent = 0u64;
    while feed.send(Bytes::from_static(&[7; 100])).await.is_ok() {
        sent += 100;
        assert!(sent <= 2000, "the drain stops reading");
    }
    released(kept).await;
    assert!(taken.load(Ordering::Relaxed) <= SMALL.bytes + 100);
}

#[tokio::test]
async fn draining_stops_when_no_data_comes_within_idle() {
    let c = case(None, false);
    drop(c.body);
    let started = std::time::Instant::now();
    released(c.kept).await;
    assert!(started.elapsed() >= SMALL.idle, "waited for data");
    assert!(c.feed.is_closed(), "the body was let go");
}

#[tokio::test]
async fn draining_stops_after_its_total_time_however_data_trickles() {
    let c = case(None, false);
    drop(c.body);
    let started = std::time::Instant::now();
    // A byte every 50 ms: never idle for long, and never past the byte bound.
    while c.feed.send(Bytes::from_static(b"x")).await.is_ok() {
        assert!(started.elapsed() < Duration::from_secs(3), "the drain ends");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        started.elapsed() >= SMALL.total,
        "read until the total bound"
    );
    released(c.kept).await;
}

#[tokio::test]
async fn a_body_known_to_pass_the_bound_is_let_go_at_once() {
    let mut c = case(Some(SMALL.bytes + 1), false);
    drop(c.body);
    assert!(c.feed.is_closed());
    assert!(released_now(&mut c.kept));
    assert_eq!(c.taken.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_body_waiting_for_100_continue_and_never_asked_for_is_let_go() {
    let mut c = case(Some(10), true);
    drop(c.body);
    assert!(c.feed.is_closed(), "no 100 Continue is invited");
    assert!(released_now(&mut c.kept));
}

#[tokio::test]
async fn a_body_waiting_for_100_continue_once_asked_for_is_drained() {
    let Case {
        mut body,
        feed,
        taken,
        kept,
    } = case(Some(10), true);
    feed.send(Bytes::from_static(b"abcde")).await.expect("send");
    let first = body.frame().await.expect("a frame").expect("data");
    assert_eq!(first.data_ref().map(Bytes::len), Some(5));
    drop(body);
    feed.send(Bytes::from_static(b"fghij"))
        .await
        .expect("still read");
    drop(feed);
    released(kept).await;
    assert_eq!(taken.load(Ordering::Relaxed), 10);
}
