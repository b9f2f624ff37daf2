//! The tower stack one review goes through, outermost first:
//!
//! - [`Retries`], a `tower::retry` policy: 429 (honouring `Retry-After`), 5xx, timeouts and
//!   transport errors are tried again after a full-jitter backoff, never past the deadline;
//! - [`Pace`]: a permit from the client-side token bucket, unless it would come too late;
//! - [`Timebox`]: each attempt's timeout, cut short by the deadline;
//! - [`Exchange`]: one HTTP request and its answer, read whole (bounded).
//!
//! Each [`Attempt`] carries its number and the deadline of the whole call, so every layer can
//! decide on its own; an error says how many requests were sent and why the last one failed.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri, header};
use http_body_util::{BodyExt, Limited};
use tokio::time::Instant;
use tower::Service;
use tower::retry::Policy;

use super::super::error::Failure;
use super::Pacing;
use crate::error::chain as error_chain;

/// Largest answer read from the API; a review is a few hundred bytes.
const MAX_ANSWER: usize = 1 << 20;
/// Longest wait between two attempts, whatever the attempt number.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(2);

type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// One request as each attempt sends it. Not `Debug`: the headers may carry the caller's token.
#[derive(Clone)]
pub(super) struct Attempt {
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When the whole call must be over.
    pub deadline: Instant,
    /// 1 for the first attempt.
    pub number: u32,
}

/// The API's answer to be read by the caller: 2xx, or a 4xx other than 429.
pub(super) struct Answered {
    pub status: StatusCode,
    pub body: Bytes,
}

/// An attempt that failed, and how many requests the call had sent by then.
#[derive(Debug)]
pub(super) struct Failed {
    pub sent: u32,
    pub failure: Failure,
}

impl Failed {
    fn sent(attempt: &Attempt, failure: Failure) -> Self {
        Failed {
            sent: attempt.number,
            failure,
        }
    }

    fn unsent(attempt: &Attempt, failure: Failure) -> Self {
        Failed {
            sent: attempt.number - 1,
            failure,
        }
    }
}

/// Retries transient failures with full-jitter backoff, within the attempt's deadline.
#[derive(Clone)]
pub(super) struct Retries {
    retries: u32,
    backoff: Duration,
}

impl Retries {
    pub(super) fn new(pacing: &Pacing) -> Self {
        Retries {
            retries: pacing.retries,
            backoff: pacing.backoff,
        }
    }
}

impl Policy<Attempt, Answered, Failed> for Retries {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        attempt: &mut Attempt,
        result: &mut Result<Answered, Failed>,
    ) -> Option<Self::Future> {
        let Err(failed) = result else {
            return None;
        };
        if !failed.failure.is_transient() || attempt.number > self.retries {
            return None;
        }
        let retry_after = match &failed.failure {
            Failure::Answered { retry_after, .. } => *retry_after,
            _ => None,
        };
        let delay = retry_after.unwrap_or_else(|| full_jitter(self.backoff, attempt.number));
        if Instant::now() + delay >= attempt.deadline {
            if let (
                Some(after),
                Failure::Answered {
                    status, message, ..
                },
            ) = (retry_after, &failed.failure)
            {
                failed.failure = Failure::RetryTooLate {
                    status: *status,
                    message: message.clone(),
                    after,
                };
            }
            return None;
        }
        attempt.number += 1;
        Some(tokio::time::sleep(delay))
    }

    fn clone_request(&mut self, attempt: &Attempt) -> Option<Attempt> {
        Some(attempt.clone())
    }
}

/// A delay drawn uniformly from zero to `base * 2^(attempt-1)`, capped: "full jitter", so that
/// replicas retrying after one outage do not arrive together.
pub(super) fn full_jitter(base: Duration, attempt: u32) -> Duration {
    let ceiling = base
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    ceiling.mul_f64(rand::random::<f64>())
}

/// Waits for a permit from the shared token bucket before each attempt.
#[derive(Clone)]
pub(super) struct Pace<S> {
    inner: S,
    bucket: Arc<TokenBucket>,
    pacing: Pacing,
}

impl<S> Pace<S> {
    pub(super) fn new(inner: S, bucket: Arc<TokenBucket>, pacing: Pacing) -> Self {
        Pace {
            inner,
            bucket,
            pacing,
        }
    }
}

impl<S> Service<Attempt> for Pace<S>
where
    S: Service<Attempt, Response = Answered, Error = Failed> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Answered;
    type Error = Failed;
    type Future = Boxed<Result<Answered, Failed>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Failed>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, attempt: Attempt) -> Self::Future {
        // The inner services are always ready (they hold no capacity), so a clone may be called.
        let mut inner = self.inner.clone();
        let bucket = self.bucket.clone();
        let pacing = self.pacing.clone();
        Box::pin(async move {
            if !bucket.wait(attempt.deadline).await {
                let failure = Failure::NoRoom {
                    qps: pacing.qps,
                    burst: pacing.burst,
                    deadline: pacing.deadline,
                };
                return Err(Failed::unsent(&attempt, failure));
            }
            inner.call(attempt).await
        })
    }
}

/// Gives each attempt its timeout, or what is left of the deadline if that is less.
#[derive(Clone)]
pub(super) struct Timebox<S> {
    inner: S,
    timeout: Duration,
    deadline: Duration,
}

impl<S> Timebox<S> {
    pub(super) fn new(inner: S, pacing: &Pacing) -> Self {
        Timebox {
            inner,
            timeout: pacing.timeout,
            deadline: pacing.deadline,
        }
    }
}

impl<S> Service<Attempt> for Timebox<S>
where
    S: Service<Attempt, Response = Answered, Error = Failed>,
    S::Future: Send + 'static,
{
    type Response = Answered;
    type Error = Failed;
    type Future = Boxed<Result<Answered, Failed>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Failed>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, attempt: Attempt) -> Self::Future {
        let deadline = self.deadline;
        let remaining = attempt.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            let failure = Failure::DeadlinePassed { deadline };
            return Box::pin(async move { Err(Failed::unsent(&attempt, failure)) });
        }
        let within = self.timeout.min(remaining);
        let cut_short = within < self.timeout;
        let number = attempt.number;
        let answer = self.inner.call(attempt);
        Box::pin(async move {
            match tokio::time::timeout(within, answer).await {
                Ok(result) => result,
                Err(_) => Err(Failed {
                    sent: number,
                    failure: if cut_short {
                        Failure::NoAnswerBeforeDeadline { deadline }
                    } else {
                        Failure::NoAnswer { within }
                    },
                }),
            }
        })
    }
}

/// One HTTP exchange with the API server, counted.
#[derive(Clone)]
pub(super) struct Exchange {
    pub client: kube::Client,
    /// HTTP requests sent, shared with [`super::Transport::sent`].
    pub sent: Arc<AtomicU64>,
}

impl Service<Attempt> for Exchange {
    type Response = Answered;
    type Error = Failed;
    type Future = Boxed<Result<Answered, Failed>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Failed>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, attempt: Attempt) -> Self::Future {
        self.sent.fetch_add(1, Ordering::Relaxed);
        let mut request = http::Request::new(kube::client::Body::from(attempt.body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = attempt.uri.clone();
        *request.headers_mut() = attempt.headers.clone();
        let client = self.client.clone();
        Box::pin(async move {
            let response = client
                .send(request)
                .await
                .map_err(|e| Failed::sent(&attempt, Failure::Transport(error_chain(&e))))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| {
                    let text = format!("reading the answer: {}", error_chain(e.as_ref()));
                    Failed::sent(&attempt, Failure::Transport(text))
                })?
                .to_bytes();
            let status = parts.status;
            if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                let failure = Failure::Answered {
                    status,
                    message: super::status_message(&body),
                    retry_after: (status == StatusCode::TOO_MANY_REQUESTS)
                        .then(|| retry_after(&parts.headers))
                        .flatten(),
                };
                return Err(Failed::sent(&attempt, failure));
            }
            Ok(Answered { status, body })
        })
    }
}

/// A `Retry-After` in seconds (what the API server sends; an HTTP date is ignored).
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds = headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

/// A token bucket: `burst` requests at once, refilled at `qps` per second. A waiter reserves
/// its permit when it arrives, so waiters are served in order, and gives it back at once when
/// it could not be had before its deadline.
pub(super) struct TokenBucket {
    qps: f64,
    burst: f64,
    state: Mutex<Bucket>,
}

struct Bucket {
    /// Permits available; negative when waiters have reserved permits not yet refilled.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

impl TokenBucket {
    pub(super) fn new(qps: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            qps,
            burst,
            state: Mutex::new(Bucket {
                tokens: burst,
                at: Instant::now(),
            }),
        }
    }

    /// Waits for a permit; false (without waiting) when it would come after `deadline`.
    pub(super) async fn wait(&self, deadline: Instant) -> bool {
        let ready = {
            let mut bucket = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * self.qps;
            bucket.tokens = (bucket.tokens + refill).min(self.burst);
            bucket.at = now;
            bucket.tokens -= 1.0;
            if bucket.tokens >= 0.0 {
                return true;
            }
            let ready = now + Duration::from_secs_f64(-bucket.tokens / self.qps);
            if ready > deadline {
                bucket.tokens += 1.0;
                return false;
            }
            ready
        };
        tokio::time::sleep_until(ready).await;
        true
    }
}
