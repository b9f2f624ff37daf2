//! Unit tests of the pacing pieces: token bucket, backoff, Retry-After.

use http::HeaderMap;

use super::layers::*;
use super::*;

#[tokio::test]
async fn bucket_allows_the_burst_then_paces_at_qps() {
    let bucket = TokenBucket::new(10.0, 3);
    let start = Instant::now();
    let far = start + Duration::from_secs(60);
    for _ in 0..3 {
        assert!(bucket.wait(far).await);
    }
    assert!(
        start.elapsed() < Duration::from_millis(50),
        "the burst waits for nothing"
    );
    assert!(bucket.wait(far).await);
    assert!(bucket.wait(far).await);
    let paced = start.elapsed();
    assert!(
        paced >= Duration::from_millis(195) && paced < Duration::from_millis(400),
        "two more at 10/s take 200 ms: {paced:?}"
    );
}

#[tokio::test]
async fn bucket_refuses_at_once_when_the_permit_is_past_the_deadline() {
    let bucket = TokenBucket::new(5.0, 1);
    let start = Instant::now();
    assert!(bucket.wait(start + Duration::from_millis(10)).await);
    assert!(!bucket.wait(start + Duration::from_millis(10)).await);
    assert!(
        start.elapsed() < Duration::from_millis(50),
        "refused without waiting"
    );
    // The refused permit was given back: the next one is due after 200 ms, not 400.
    assert!(bucket.wait(start + Duration::from_secs(5)).await);
    let waited = start.elapsed();
    assert!(waited < Duration::from_millis(350), "{waited:?}");
}

#[test]
fn full_jitter_stays_under_the_exponential_ceiling() {
    let base = Duration::from_millis(100);
    for attempt in 1..6 {
        let ceiling = (base * (1 << (attempt - 1))).min(MAX_BACKOFF);
        for _ in 0..50 {
            assert!(full_jitter(base, attempt) <= ceiling);
        }
    }
    assert!(full_jitter(base, 40) <= MAX_BACKOFF);
}

#[test]
fn retry_after_reads_seconds_only() {
    let mut headers = HeaderMap::new();
    assert_eq!(retry_after(&headers), None);
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static(" 3 "));
    assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
    headers.insert(
        header::RETRY_AFTER,
        HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
    );
    assert_eq!(retry_after(&headers), None);
}
