//! Request bodies regate reads itself (the token endpoint's OAuth2 form, the console's forms,
//! the reviews of `regate authority serve`): at most a size cap, and whole by a deadline, so
//! an anonymous client can neither make regate buffer without end nor hold a connection open
//! by trickling a byte at a time (docs/behaviour.md §10).

use std::time::Duration;

use axum::body::{Body, Bytes};
use http::{HeaderMap, header};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use tokio::time::Instant;

/// When a body must have arrived whole: `limit` after its request's headers were read.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    /// The instant.
    pub at: Instant,
    /// The time allowed (`connections.request_timeout`), for messages.
    pub limit: Duration,
}

impl Deadline {
    /// `limit` from now.
    pub fn after(limit: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + limit,
            limit,
        }
    }
}

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Larger than the cap, by its `Content-Length` (nothing read) or by the bytes that came.
    #[error("the request body is larger than {limit} bytes, the most regate reads here")]
    TooLarge {
        /// The cap, in bytes.
        limit: usize,
    },
    /// Not whole by the deadline.
    #[error(
        "the request body did not arrive within {} (connections.request_timeout): send it \
         whole at once",
        humantime::format_duration(*limit)
    )]
    TooSlow {
        /// The time it had.
        limit: Duration,
    },
    /// The connection failed while it was read.
    #[error("the request body could not be read")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Reads `body` (of a request with `headers`) whole: at most `limit` bytes, refused at once
/// when its `Content-Length` is larger, and by `deadline`.
pub async fn read_bounded(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    deadline: Deadline,
) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let read = Limited::new(body, limit).collect();
    match tokio::time::timeout_at(deadline.at, read).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<LengthLimitError>() => Err(BodyError::TooLarge { limit }),
        Ok(Err(error)) => Err(BodyError::Failed(error)),
        Err(_) => Err(BodyError::TooSlow {
            limit: deadline.limit,
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests;
