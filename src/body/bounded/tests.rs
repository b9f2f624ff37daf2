use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::HttpBody;
use hyper::body::Frame;

use super::*;

/// A body whose bytes never come.
pub(crate) struct Stalled;

impl HttpBody for Stalled {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Poll::Pending
    }
}

fn content_length(length: usize) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_LENGTH, length.into());
    headers
}

const SOON: Duration = Duration::from_secs(2);

#[tokio::test]
async fn a_body_within_the_cap_is_read_whole() {
    let headers = content_length(5);
    let read = read_bounded(&headers, Body::from("a=b&c"), 5, Deadline::after(SOON));
    assert_eq!(read.await.expect("read"), "a=b&c");
}

#[tokio::test]
async fn a_larger_content_length_is_refused_before_a_byte_is_read() {
    let headers = content_length(6);
    let read = read_bounded(&headers, Body::new(Stalled), 5, Deadline::after(SOON));
    assert!(matches!(read.await, Err(BodyError::TooLarge { limit: 5 })));
}

#[tokio::test]
async fn more_bytes_than_the_cap_without_a_length_are_refused() {
    let headers = HeaderMap::new();
    let read = read_bounded(&headers, Body::from("abcdef"), 5, Deadline::after(SOON));
    assert!(matches!(read.await, Err(BodyError::TooLarge { limit: 5 })));
}

#[tokio::test]
async fn a_body_not_whole_by_the_deadline_is_given_up() {
    let limit = Duration::from_millis(200);
    let started = Instant::now();
    let headers = content_length(5);
    let read = read_bounded(&headers, Body::new(Stalled), 5, Deadline::after(limit));
    let error = read.await.expect_err("never whole");
    assert!(matches!(error, BodyError::TooSlow { limit: l } if l == limit));
    let waited = started.elapsed();
    assert!(waited >= limit && waited < limit * 5, "{waited:?}");
    assert!(error.to_string().contains("within 200ms"), "{error}");
}
