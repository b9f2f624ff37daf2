//! Sending one review to the API server: a client-side token bucket, a timeout per attempt, and
//! retries with full-jitter backoff on 429 (honouring `Retry-After`), 5xx and transport errors,
//! all inside one overall deadline. Anything else the API answers goes back to the caller, who
//! knows what a 401 or 403 means for its review.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use kube::core::params::PostParams;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

/// Largest answer read from the API; a review is a few hundred bytes.
const MAX_ANSWER: usize = 1 << 20;
/// Longest wait between two attempts, whatever the attempt number.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How requests toward the API are paced and retried.
#[derive(Clone, Debug)]
pub(super) struct Pacing {
    pub qps: f64,
    pub burst: u32,
    pub timeout: Duration,
    pub retries: u32,
    pub backoff: Duration,
    pub deadline: Duration,
}

/// What the API answered a review with, when it answered at all.
#[derive(Debug)]
pub(super) enum Answer<T> {
    /// 2xx with the review, status filled in.
    Object(T),
    /// A 4xx other than 429: the request itself was refused (for example 401, 403, 404).
    Refused {
        /// The HTTP status.
        status: StatusCode,
        /// The `message` of the API's `Status` body, if it sent one.
        message: String,
    },
}

/// A `kube::Client` with pacing and retries in front of it.
pub(super) struct Transport {
    client: kube::Client,
    /// The API server's origin, for messages.
    api: String,
    pacing: Pacing,
    bucket: TokenBucket,
    /// HTTP requests sent, retries included.
    sent: AtomicU64,
}

impl Transport {
    /// Paces and retries requests through `client`; `api` names the server in messages.
    pub(super) fn new(client: kube::Client, api: String, pacing: Pacing) -> Self {
        Transport {
            client,
            api,
            bucket: TokenBucket::new(pacing.qps, pacing.burst),
            pacing,
            sent: AtomicU64::new(0),
        }
    }

    /// The API server's origin, e.g. `https://10.0.0.1:6443`.
    pub(super) fn api(&self) -> &str {
        &self.api
    }

    /// HTTP requests sent to the API so far, retries included.
    pub(super) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// The client, for reads made through `kube::Api` (paced by the caller's cache, not here);
    /// each counts as one request sent.
    pub(super) fn client(&self) -> kube::Client {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.client.clone()
    }

    /// How long one call may take in all.
    pub(super) fn deadline(&self) -> Duration {
        self.pacing.deadline
    }

    /// POSTs `object` to its collection (`create`) and reads the answer. `bearer` replaces the
    /// client's own credentials for this request (the caller's token in `review: self`). `Err`
    /// is an operator-facing message saying which server and what failed; it never contains
    /// the request body or headers, and `secret` (the token under review) is cut out of any
    /// text the server sent, in case it echoes the request.
    pub(super) async fn create<T>(
        &self,
        object: &T,
        bearer: Option<&HeaderValue>,
        secret: Option<&SecretString>,
    ) -> Result<Answer<T>, String>
    where
        T: kube::Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        let path = T::url_path(&(), None);
        let what = format!("POST {path}");
        let body = serde_json::to_vec(object)
            .map_err(|e| format!("cannot encode the {} request: {e}", T::kind(&())))?;
        let started = Instant::now();
        let deadline = started + self.pacing.deadline;
        let mut attempts = 0;
        let last = loop {
            if !self.bucket.wait(deadline).await {
                break format!(
                    "the client-side rate limit ({} requests/s, burst {}) had no room before the {} deadline; raise qps/burst if the API server can take more",
                    self.pacing.qps,
                    self.pacing.burst,
                    humantime::format_duration(self.pacing.deadline)
                );
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break format!(
                    "the {} deadline passed",
                    humantime::format_duration(self.pacing.deadline)
                );
            }
            let request = kube::core::Request::new(path.as_str())
                .create(&PostParams::default(), body.clone())
                .map_err(|e| format!("cannot build {what}: {e}"))?;
            let mut request = request.map(kube::client::Body::from);
            if let Some(bearer) = bearer {
                request
                    .headers_mut()
                    .insert(header::AUTHORIZATION, bearer.clone());
            }
            attempts += 1;
            self.sent.fetch_add(1, Ordering::Relaxed);
            let per_attempt = self.pacing.timeout.min(remaining);
            let outcome = tokio::time::timeout(per_attempt, self.send(request)).await;
            let (failure, retry_after) = match outcome {
                Err(_) if per_attempt < self.pacing.timeout => (
                    format!(
                        "no answer before the {} deadline",
                        humantime::format_duration(self.pacing.deadline)
                    ),
                    None,
                ),
                Err(_) => (
                    format!(
                        "no answer within {}",
                        humantime::format_duration(per_attempt)
                    ),
                    None,
                ),
                Ok(Err(transport)) => (transport, None),
                Ok(Ok((status, headers, bytes))) => {
                    // The server's text may echo the request, token included.
                    let scrub = |text: String| match secret {
                        Some(secret) => redact(text, secret),
                        None => text,
                    };
                    if status.is_success() {
                        return serde_json::from_slice(&bytes).map(Answer::Object).map_err(|e| {
                            format!(
                                "kubernetes API {}: {what} answered {status} with a body that is not a {}: {}",
                                self.api,
                                T::kind(&()),
                                scrub(e.to_string())
                            )
                        });
                    }
                    let message = scrub(status_message(&bytes));
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        (answered(status, &message), retry_after(&headers))
                    } else if status.is_server_error() {
                        (answered(status, &message), None)
                    } else {
                        return Ok(Answer::Refused { status, message });
                    }
                }
            };
            if attempts > self.pacing.retries {
                break failure;
            }
            let delay = retry_after.unwrap_or_else(|| full_jitter(self.pacing.backoff, attempts));
            if Instant::now() + delay >= deadline {
                break match retry_after {
                    Some(after) => format!(
                        "{failure}; the server asked to retry after {}, past the deadline",
                        humantime::format_duration(after)
                    ),
                    None => failure,
                };
            }
            tokio::time::sleep(delay).await;
        };
        Err(format!(
            "kubernetes API {}: {what} failed after {attempts} attempt(s) in {:.1?}: {last}{}",
            self.api,
            started.elapsed(),
            if attempts == 0 {
                ""
            } else {
                "; check that the API server is reachable and healthy"
            }
        ))
    }

    /// One HTTP exchange; the answer read whole (bounded). `Err` describes a transport failure.
    async fn send(
        &self,
        request: http::Request<kube::client::Body>,
    ) -> Result<(StatusCode, HeaderMap, Bytes), String> {
        let response = self
            .client
            .send(request)
            .await
            .map_err(|e| error_chain(&e))?;
        let (parts, body) = response.into_parts();
        let bytes = Limited::new(body, MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {}", error_chain(e.as_ref())))?
            .to_bytes();
        Ok((parts.status, parts.headers, bytes))
    }
}

/// `503 Service Unavailable: <the server's message>`.
fn answered(status: StatusCode, message: &str) -> String {
    if message.is_empty() {
        status.to_string()
    } else {
        format!("{status}: {message}")
    }
}

/// The `message` of a Kubernetes `Status` body, or nothing.
fn status_message(bytes: &[u8]) -> String {
    serde_json::from_slice::<kube::core::Status>(bytes)
        .map(|status| status.message)
        .unwrap_or_default()
}

/// `message` with every occurrence of `secret` replaced.
pub(super) fn redact(message: String, secret: &SecretString) -> String {
    let secret = secret.expose_secret();
    if secret.is_empty() || !message.contains(secret) {
        return message;
    }
    message.replace(secret, "<token>")
}

/// A `Retry-After` in seconds (what the API server sends; an HTTP date is ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds = headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

/// A delay drawn uniformly from zero to `base * 2^(attempt-1)`, capped: "full jitter", so that
/// replicas retrying after one outage do not arrive together.
fn full_jitter(base: Duration, attempt: u32) -> Duration {
    let ceiling = base
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    ceiling.mul_f64(rand::random::<f64>())
}

/// An error and its sources, `a: b: c`, since kube's own Display often names only the layer.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A token bucket: `burst` requests at once, refilled at `qps` per second. A waiter reserves
/// its permit when it arrives, so waiters are served in order, and gives it back at once when
/// it could not be had before its deadline.
struct TokenBucket {
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
    fn new(qps: f64, burst: u32) -> Self {
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
    async fn wait(&self, deadline: Instant) -> bool {
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

#[cfg(test)]
mod tests;
