//! The one error type the gateway answers with, and its OCI error body.
//!
//! Every response regate makes itself is an [`ApiError`]: its `IntoResponse` writes the status,
//! `Docker-Distribution-API-Version: registry/2.0`, the challenge where one is due, and the
//! body `{"errors":[{"code","message","detail"}]}` of the distribution spec. Messages are for
//! the client and never carry a credential or an internal error's text.

use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode, header};
use serde::Serialize;

/// The header every registry response carries.
pub const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
/// Its value.
pub const API_VERSION_VALUE: HeaderValue = HeaderValue::from_static("registry/2.0");

/// Seconds a client should wait before retrying when the authority is down.
const RETRY_AFTER_SECS: &str = "5";

/// Why regate could not answer, kept for the log and never sent to the client.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// `error` and its sources, `a: b: c`, each source left out when the text already says it:
/// hyper's and kube's own messages often name only their layer.
pub fn chain(error: &dyn std::error::Error) -> String {
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

/// The message of a 503 for `cause`: its own when it is an authority error with one safe to
/// show, else the fixed one.
fn unavailable_message(cause: &Cause) -> String {
    cause
        .downcast_ref::<crate::authority::AuthorityError>()
        .and_then(crate::authority::AuthorityError::public_message)
        .unwrap_or_else(|| "authorization is unavailable, retry later".into())
}

/// An answer regate gives itself instead of forwarding.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: no usable credential, or anonymous may not do this. `challenge` is the whole
    /// `WWW-Authenticate` value.
    #[error("{message}")]
    Unauthorized {
        /// `Bearer realm="…",service="…"[,scope="…"][,error="invalid_token"]`.
        challenge: String,
        /// What the client should do.
        message: String,
    },
    /// 403: authenticated but not allowed; `message` says which role grants it.
    #[error("{message}")]
    Denied {
        /// The hint, e.g. the `regate policy add-role-to-user …` command.
        message: String,
        /// identity, verb, resource, namespace, name.
        detail: serde_json::Value,
    },
    /// 400 NAME_INVALID (or another 400 code such as DIGEST_INVALID).
    #[error("{message}")]
    BadRequest {
        /// The OCI error code.
        code: &'static str,
        /// Which rule was broken.
        message: String,
    },
    /// 401 from the token endpoint: the credential was refused.
    #[error("{message}")]
    InvalidCredential {
        /// Why, without the credential.
        message: String,
    },
    /// 404 NOT_FOUND: not a registry API path.
    #[error("not found")]
    NotFound,
    /// 405 UNSUPPORTED, with the methods the path does take.
    #[error("{message}")]
    Unsupported {
        /// What is not supported.
        message: String,
        /// The `Allow` header.
        allow: &'static str,
    },
    /// 503 UNAVAILABLE: more requests in flight than `connections.max_in_flight`; shed.
    #[error("regate is handling as many requests as it may at once; retry shortly")]
    Overloaded,
    /// 429 TOOMANYREQUESTS: too many failed logins from this address or for this user name.
    #[error("too many failed logins; retry in {retry_after} s")]
    TooManyRequests {
        /// Seconds until the next attempt is taken (`Retry-After`).
        retry_after: u64,
    },
    /// 431: a header too large to read.
    #[error("request header too large")]
    HeaderTooLarge,
    /// 503 UNAVAILABLE: the authority cannot answer (or a token cannot be signed); nothing was
    /// forwarded. The message is fixed unless the cause has one safe to show (an OIDC issuer
    /// that cannot be reached is named).
    #[error("{}", unavailable_message(cause))]
    AuthorityUnavailable {
        /// Why, for the log only.
        cause: Cause,
    },
    /// 502: the registry behind regate could not be reached or answered badly.
    #[error("the registry behind the gateway is unreachable")]
    UpstreamUnreachable {
        /// Why, for the log only.
        cause: Cause,
    },
    /// 504: the registry behind regate did not answer in time.
    #[error("the registry behind the gateway did not answer in time")]
    UpstreamTimeout,
    /// 504: a request without a streaming body was not answered within
    /// `connections.request_timeout`.
    #[error("no answer within {}; retry later", humantime::format_duration(*limit))]
    RequestTimeout {
        /// `connections.request_timeout`.
        limit: std::time::Duration,
    },
    /// 413: a body regate reads itself (a form) is larger than it takes; the connection is
    /// closed.
    #[error("{0}")]
    BodyTooLarge(crate::body::BodyError),
    /// 408: a body regate reads itself did not arrive whole within
    /// `connections.request_timeout`; the connection is closed.
    #[error("{0}")]
    BodyTimeout(crate::body::BodyError),
    /// 502: the registry behind regate wants credentials regate does not have or that it
    /// refused; the message names the registry and the fix (never a credential).
    #[error("{message}")]
    UpstreamCredentials {
        /// What happened and what the operator can do.
        message: String,
    },
}

#[derive(Serialize)]
struct Body<'a> {
    errors: [Entry<'a>; 1],
}

#[derive(Serialize)]
struct Entry<'a> {
    code: &'a str,
    message: String,
    detail: serde_json::Value,
}

impl From<crate::body::BodyError> for ApiError {
    /// 413 for a body past its cap, 408 for one too slow, 400 for one the connection lost.
    fn from(e: crate::body::BodyError) -> Self {
        match e {
            crate::body::BodyError::TooLarge { .. } => ApiError::BodyTooLarge(e),
            crate::body::BodyError::TooSlow { .. } => ApiError::BodyTimeout(e),
            crate::body::BodyError::Failed(_) => ApiError::BadRequest {
                code: "UNSUPPORTED",
                message: e.to_string(),
            },
        }
    }
}

impl From<crate::authority::AuthorityError> for ApiError {
    /// Fail closed: an authority that cannot answer is a 503.
    fn from(e: crate::authority::AuthorityError) -> Self {
        ApiError::AuthorityUnavailable { cause: Box::new(e) }
    }
}

impl From<crate::route::RouteError> for ApiError {
    /// 404 for a path outside the API, 400 with the rule's code for a malformed one.
    fn from(e: crate::route::RouteError) -> Self {
        match e {
            crate::route::RouteError::NotFound => ApiError::NotFound,
            e => ApiError::BadRequest {
                code: e.code(),
                message: e.to_string(),
            },
        }
    }
}

impl From<crate::access::AccessError> for ApiError {
    /// 405 with the methods the endpoint takes, or the 400 of a malformed mount source.
    fn from(e: crate::access::AccessError) -> Self {
        match e {
            crate::access::AccessError::MethodNotAllowed { allow, .. } => ApiError::Unsupported {
                message: e.to_string(),
                allow,
            },
            crate::access::AccessError::InvalidMountSource(inner) => inner.into(),
        }
    }
}

impl ApiError {
    /// The 502 for a registry that could not be reached or answered badly, because of `cause`.
    pub fn upstream(cause: impl Into<Cause>) -> Self {
        ApiError::UpstreamUnreachable {
            cause: cause.into(),
        }
    }

    /// What went wrong inside regate, for the log: never part of the answer.
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match self {
            ApiError::AuthorityUnavailable { cause } | ApiError::UpstreamUnreachable { cause } => {
                Some(cause.as_ref())
            }
            _ => None,
        }
    }

    /// 400 `UNSUPPORTED`: a request regate will not read, with what is wrong.
    pub fn unsupported(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code: "UNSUPPORTED",
            message: message.into(),
        }
    }

    /// Whether this refuses a credential that was presented (a failed login): an invalid or
    /// malformed token, not a challenge to a caller who showed none.
    pub fn is_refused_credential(&self) -> bool {
        match self {
            ApiError::InvalidCredential { .. } => true,
            ApiError::Unauthorized { challenge, .. } => {
                challenge.contains("error=\"invalid_token\"")
                    || challenge.contains("error=\"invalid_request\"")
            }
            _ => false,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized { .. } | ApiError::InvalidCredential { .. } => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::Denied { .. } => StatusCode::FORBIDDEN,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Unsupported { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::HeaderTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::AuthorityUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::UpstreamUnreachable { .. } | ApiError::UpstreamCredentials { .. } => {
                StatusCode::BAD_GATEWAY
            }
            ApiError::UpstreamTimeout | ApiError::RequestTimeout { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
        }
    }

    /// The OCI error code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized { .. } | ApiError::InvalidCredential { .. } => "UNAUTHORIZED",
            ApiError::Denied { .. } => "DENIED",
            ApiError::BadRequest { code, .. } => code,
            ApiError::NotFound => "NOT_FOUND",
            ApiError::Unsupported { .. } => "UNSUPPORTED",
            ApiError::HeaderTooLarge | ApiError::BodyTooLarge(_) => "SIZE_INVALID",
            ApiError::BodyTimeout(_) => "UNAVAILABLE",
            ApiError::TooManyRequests { .. } => "TOOMANYREQUESTS",
            ApiError::Overloaded => "UNAVAILABLE",
            ApiError::AuthorityUnavailable { .. }
            | ApiError::UpstreamTimeout
            | ApiError::RequestTimeout { .. } => "UNAVAILABLE",
            ApiError::UpstreamUnreachable { .. } | ApiError::UpstreamCredentials { .. } => {
                "UNAVAILABLE"
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            ApiError::Denied { detail, .. } => detail.clone(),
            _ => serde_json::Value::Null,
        };
        let body = Body {
            errors: [Entry {
                code: self.code(),
                message: self.to_string(),
                detail,
            }],
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (status, json).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        headers.insert(API_VERSION, API_VERSION_VALUE);
        match &self {
            ApiError::Unauthorized { challenge, .. } => {
                if let Ok(v) = HeaderValue::from_str(challenge) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            ApiError::Unsupported { allow, .. } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::AuthorityUnavailable { .. } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECS),
                );
            }
            ApiError::Overloaded => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::TooManyRequests { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            // The rest of the body is not read: the connection cannot carry another request.
            ApiError::BodyTooLarge(_) | ApiError::BodyTimeout(_) => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response.extensions_mut().insert(Refusal::from(self));
        response
    }
}

/// What an [`ApiError`] leaves on its response for the access log (one line per request,
/// `server/access_log.rs`), so converting an error never logs and each refusal is logged once.
#[derive(Clone, Debug)]
pub struct Refusal {
    /// The status answered.
    pub status: StatusCode,
    /// The message the client got.
    pub message: String,
    /// True when the authority could not answer and the request was refused for that alone.
    pub fail_closed: bool,
    /// What went wrong inside regate, never sent to the client.
    pub cause: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        let status = error.status();
        let message = error.to_string();
        let fail_closed = matches!(error, ApiError::AuthorityUnavailable { .. });
        let cause = match error {
            ApiError::AuthorityUnavailable { cause } | ApiError::UpstreamUnreachable { cause } => {
                Some(std::sync::Arc::from(cause))
            }
            _ => None,
        };
        Refusal {
            status,
            message,
            fail_closed,
            cause,
        }
    }
}
