//! Sending one review to the API server, through a stack of tower layers ([`layers`]): retries
//! with full-jitter backoff on 429 (honouring `Retry-After`), 5xx and transport errors; a
//! client-side token bucket; a timeout per attempt; all inside one overall deadline. Anything
//! else the API answers goes back to the caller, who knows what a 401 or 403 means for its
//! review.
//!
//! The token bucket is regate's own rather than `governor`'s: a waiter reserves its permit in
//! arrival order and gives it back when it could only come after the deadline, which governor's
//! `until_ready` (polling, unordered) cannot express.

mod layers;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderValue, StatusCode, header};
use kube::core::params::PostParams;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};

use super::error::ClusterError;
use layers::{Attempt, Exchange, Pace, Retries, Timebox, TokenBucket};

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
    bucket: Arc<TokenBucket>,
    /// HTTP requests sent, retries included.
    sent: Arc<AtomicU64>,
}

impl Transport {
    /// Paces and retries requests through `client`; `api` names the server in messages.
    pub(super) fn new(client: kube::Client, api: String, pacing: Pacing) -> Self {
        Transport {
            client,
            api,
            bucket: Arc::new(TokenBucket::new(pacing.qps, pacing.burst)),
            pacing,
            sent: Arc::new(AtomicU64::new(0)),
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

    /// `GET /healthz` of the API server, within one attempt's timeout (not paced, not counted:
    /// it is a probe, not a review).
    pub(super) async fn healthz(&self) -> Result<(), ClusterError> {
        let what = "GET /healthz".to_string();
        let request = http::Request::get("/healthz")
            .body(Vec::new())
            .map_err(|e| ClusterError::Read {
                api: self.api.clone(),
                what: what.clone(),
                detail: e.to_string(),
            })?;
        match tokio::time::timeout(self.pacing.timeout, self.client.request_text(request)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(ClusterError::Read {
                api: self.api.clone(),
                what,
                detail: crate::error::chain(&error),
            }),
            Err(_) => Err(ClusterError::ReadTimeout {
                api: self.api.clone(),
                what,
                within: self.pacing.timeout,
            }),
        }
    }

    /// How long one attempt may take.
    pub(super) fn attempt_timeout(&self) -> Duration {
        self.pacing.timeout
    }

    /// How long one call may take in all.
    pub(super) fn deadline(&self) -> Duration {
        self.pacing.deadline
    }

    /// POSTs `object` to its collection (`create`) and reads the answer. `bearer` replaces the
    /// client's own credentials for this request (the caller's token in `review: self`). An
    /// error says which server and what failed; it never contains the request body or headers,
    /// and `secret` (the token under review) is cut out of any text the server sent, in case it
    /// echoes the request.
    pub(super) async fn create<T>(
        &self,
        object: &T,
        bearer: Option<&HeaderValue>,
        secret: Option<&SecretString>,
    ) -> Result<Answer<T>, ClusterError>
    where
        T: kube::Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        let path = T::url_path(&(), None);
        let kind = || T::kind(&()).to_string();
        let encode_failed = |detail: String| ClusterError::Encode {
            api: self.api.clone(),
            kind: kind(),
            detail,
        };
        let body = serde_json::to_vec(object).map_err(|e| encode_failed(e.to_string()))?;
        let (parts, body) = kube::core::Request::new(path.as_str())
            .create(&PostParams::default(), body)
            .map_err(|e| encode_failed(e.to_string()))?
            .into_parts();
        let mut headers = parts.headers;
        if let Some(bearer) = bearer {
            headers.insert(header::AUTHORIZATION, bearer.clone());
        }
        let started = Instant::now();
        let attempt = Attempt {
            uri: parts.uri,
            headers,
            body: body.into(),
            deadline: started + self.pacing.deadline,
            number: 1,
        };
        let exchange = Exchange {
            client: self.client.clone(),
            sent: self.sent.clone(),
        };
        let stack = ServiceBuilder::new()
            .layer(RetryLayer::new(Retries::new(&self.pacing)))
            .layer_fn(|inner| Pace::new(inner, self.bucket.clone(), self.pacing.clone()))
            .layer_fn(|inner| Timebox::new(inner, &self.pacing))
            .service(exchange);
        // The server's text may echo the request, token included.
        let scrub = |text: String| match secret {
            Some(secret) => redact(text, secret),
            None => text,
        };
        match stack.oneshot(attempt).await {
            Ok(answer) if answer.status.is_success() => serde_json::from_slice(&answer.body)
                .map(Answer::Object)
                .map_err(|e| ClusterError::NotAReview {
                    api: self.api.clone(),
                    path,
                    status: answer.status,
                    kind: kind(),
                    detail: scrub(e.to_string()),
                }),
            Ok(answer) => Ok(Answer::Refused {
                status: answer.status,
                message: scrub(status_message(&answer.body)),
            }),
            Err(failed) => Err(ClusterError::GaveUp {
                api: self.api.clone(),
                path,
                attempts: failed.sent,
                elapsed: started.elapsed(),
                last: failed.failure.scrubbed(scrub),
            }),
        }
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

#[cfg(test)]
mod tests;
