//! Why the cluster's API could not answer: the typed cause behind
//! [`AuthorityError::Unavailable`](crate::authority::AuthorityError::Unavailable) in
//! kubernetes mode. Every message names the API server, says what failed and what to check, and
//! never contains a token (text the server sent is scrubbed of it before it lands here).

use std::time::Duration;

use http::StatusCode;
use humantime::format_duration;

/// A review or read the API did not answer usefully; the gateway fails closed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ClusterError {
    /// The review could not even be encoded (a bug, not an outage).
    #[error("kubernetes API {api}: cannot encode the {kind} request: {detail}")]
    Encode {
        /// The API server's origin.
        api: String,
        /// The review's kind.
        kind: String,
        /// serde's message.
        detail: String,
    },
    /// Every attempt failed, or the rate limit or deadline left no room for one.
    #[error(
        "kubernetes API {api}: POST {path} failed after {attempts} attempt(s) in {elapsed:.1?}: {last}{}",
        if *.attempts == 0 { "" } else { "; check that the API server is reachable and healthy" }
    )]
    GaveUp {
        /// The API server's origin.
        api: String,
        /// The collection posted to.
        path: String,
        /// Requests sent (0 when none could be).
        attempts: u32,
        /// Time spent in all.
        elapsed: Duration,
        /// Why the last attempt failed.
        last: Failure,
    },
    /// A 2xx whose body is not the review asked for.
    #[error(
        "kubernetes API {api}: POST {path} answered {status} with a body that is not a {kind}: {detail}"
    )]
    NotAReview {
        /// The API server's origin.
        api: String,
        /// The collection posted to.
        path: String,
        /// The HTTP status.
        status: StatusCode,
        /// The review's kind.
        kind: String,
        /// serde's message.
        detail: String,
    },
    /// A 4xx (other than 429) to a review; `hint` says what to fix when regate knows.
    #[error("kubernetes API {api}: POST {resource} answered {status}: {message}{}", hint.map(|h| format!("; {h}")).unwrap_or_default())]
    Refused {
        /// The API server's origin.
        api: String,
        /// The review resource, e.g. `subjectaccessreviews`.
        resource: &'static str,
        /// The HTTP status.
        status: StatusCode,
        /// The `message` of the API's `Status` body.
        message: String,
        /// What to change.
        hint: Option<&'static str>,
    },
    /// The cluster is older than `SelfSubjectReview` (Kubernetes 1.28).
    #[error(
        "kubernetes API {api}: selfsubjectreviews is not served (Kubernetes 1.28 or later is needed); use `review: delegated`"
    )]
    NoSelfReviews {
        /// The API server's origin.
        api: String,
    },
    /// A read (service account, Secrets) failed.
    #[error("kubernetes API {api}: {what}: {detail}")]
    Read {
        /// The API server's origin.
        api: String,
        /// What was read, e.g. `get serviceaccount ns/name`.
        what: String,
        /// kube's message.
        detail: String,
    },
    /// A read got no answer within the deadline.
    #[error("kubernetes API {api}: {what}: no answer within {}", format_duration(*.within))]
    ReadTimeout {
        /// The API server's origin.
        api: String,
        /// What was read.
        what: String,
        /// The deadline.
        within: Duration,
    },
}

/// Why one attempt of a review failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Failure {
    /// The client-side token bucket would only have a permit after the deadline.
    #[error(
        "the client-side rate limit ({qps} requests/s, burst {burst}) had no room before the {} deadline; raise qps/burst if the API server can take more",
        format_duration(*.deadline)
    )]
    NoRoom {
        /// Configured requests per second.
        qps: f64,
        /// Configured burst.
        burst: u32,
        /// The configured deadline.
        deadline: Duration,
    },
    /// The deadline passed before this attempt could be sent.
    #[error("the {} deadline passed", format_duration(*.deadline))]
    DeadlinePassed {
        /// The configured deadline.
        deadline: Duration,
    },
    /// The attempt's own timeout passed.
    #[error("no answer within {}", format_duration(*.within))]
    NoAnswer {
        /// The per-attempt timeout.
        within: Duration,
    },
    /// The overall deadline passed while the attempt waited.
    #[error("no answer before the {} deadline", format_duration(*.deadline))]
    NoAnswerBeforeDeadline {
        /// The configured deadline.
        deadline: Duration,
    },
    /// Connecting, TLS, or reading the answer failed.
    #[error("{0}")]
    Transport(String),
    /// 429 or 5xx.
    #[error("{}", answered(*.status, .message))]
    Answered {
        /// The HTTP status.
        status: StatusCode,
        /// The `message` of the API's `Status` body, if any.
        message: String,
        /// The server's `Retry-After`, in seconds.
        retry_after: Option<Duration>,
    },
    /// 429 with a `Retry-After` that ends past the deadline.
    #[error(
        "{}; the server asked to retry after {}, past the deadline",
        answered(*.status, .message),
        format_duration(*.after)
    )]
    RetryTooLate {
        /// The HTTP status.
        status: StatusCode,
        /// The `message` of the API's `Status` body, if any.
        message: String,
        /// The server's `Retry-After`.
        after: Duration,
    },
}

impl Failure {
    /// Whether another attempt may succeed: an answer that did not come, or came as 429/5xx.
    pub(super) fn is_transient(&self) -> bool {
        matches!(
            self,
            Failure::NoAnswer { .. } | Failure::Transport(_) | Failure::Answered { .. }
        )
    }

    /// The same failure with `scrub` applied to any text the server or the network sent.
    pub(super) fn scrubbed(self, scrub: impl Fn(String) -> String) -> Self {
        match self {
            Failure::Transport(text) => Failure::Transport(scrub(text)),
            Failure::Answered {
                status,
                message,
                retry_after,
            } => Failure::Answered {
                status,
                message: scrub(message),
                retry_after,
            },
            Failure::RetryTooLate {
                status,
                message,
                after,
            } => Failure::RetryTooLate {
                status,
                message: scrub(message),
                after,
            },
            other => other,
        }
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
