//! Errors of `regate authority serve` as the Kubernetes API answers them: a `Status` object
//! with the HTTP status, reason and message a client (kubectl, kube-rs, client-go) expects.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusDetails};

use super::MAX_BODY;
use crate::authority::embedded::{AUTH_DELEGATOR, PULL_SECRET_READER};

/// A request the server answers with a Kubernetes `Status` instead of a review.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// 401: no, or no valid, bearer token.
    #[error("Unauthorized")]
    Unauthorized,
    /// 403: the caller may not create this review.
    #[error(
        "{resource}.{group} is forbidden: User \"{user}\" cannot create resource \"{resource}\" \
         in API group \"{group}\" at the cluster scope; grant it with: {}",
        cluster_grant(AUTH_DELEGATOR, .user)
    )]
    Forbidden {
        /// The caller.
        user: String,
        /// The review resource, e.g. `tokenreviews`.
        resource: &'static str,
        /// Its API group.
        group: &'static str,
    },
    /// 403: the caller may not read these objects.
    #[error(
        "{resource} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API \
         group \"\" in the namespace \"{namespace}\"; grant it with: {}",
        cluster_grant(PULL_SECRET_READER, .user)
    )]
    ForbiddenRead {
        /// The caller.
        user: String,
        /// `get` or `list`.
        verb: &'static str,
        /// `serviceaccounts` or `secrets`.
        resource: &'static str,
        /// The namespace read.
        namespace: String,
    },
    /// 404: no such object.
    #[error("{resource} \"{name}\" not found")]
    ObjectNotFound {
        /// e.g. `serviceaccounts`.
        resource: &'static str,
        /// The name asked for.
        name: String,
    },
    /// 400: the body is not a review of the endpoint's kind.
    #[error("{0}")]
    BadRequest(String),
    /// 422: the review is well-formed but not valid.
    #[error("{kind}.{group} \"\" is invalid: {cause}")]
    Invalid {
        /// e.g. `SubjectAccessReview`.
        kind: &'static str,
        /// Its API group.
        group: &'static str,
        /// The field and rule.
        cause: String,
    },
    /// 413: the body is larger than [`MAX_BODY`].
    #[error("the request body is larger than {MAX_BODY} bytes")]
    TooLarge,
    /// 408: the body did not arrive whole in time.
    #[error("{0}")]
    Timeout(crate::body::BodyError),
    /// 503: the authority behind the server cannot answer.
    #[error("the authority cannot answer now; retry")]
    Unavailable,
    /// 404: no such path.
    #[error("the server could not find the requested resource")]
    NotFound,
    /// 405: the path exists but not for this method.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed {
        /// The `Allow` header.
        allow: &'static str,
    },
}

/// The command binding ClusterRole `role` to `user`, quoted for the shell.
fn cluster_grant(role: &str, user: &str) -> String {
    crate::policy::policy_command("add-cluster-role-to-user", role, user, None)
}

impl From<crate::body::BodyError> for StatusError {
    /// 413 past [`MAX_BODY`], 408 when too slow, 400 when the connection failed.
    fn from(error: crate::body::BodyError) -> Self {
        match error {
            crate::body::BodyError::TooLarge { .. } => StatusError::TooLarge,
            crate::body::BodyError::TooSlow { .. } => StatusError::Timeout(error),
            crate::body::BodyError::Failed(_) => StatusError::BadRequest(error.to_string()),
        }
    }
}

impl StatusError {
    /// The HTTP status and the `Status.reason` Kubernetes gives it.
    fn status_and_reason(&self) -> (StatusCode, &'static str) {
        match self {
            StatusError::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            StatusError::Forbidden { .. } | StatusError::ForbiddenRead { .. } => {
                (StatusCode::FORBIDDEN, "Forbidden")
            }
            StatusError::ObjectNotFound { .. } => (StatusCode::NOT_FOUND, "NotFound"),
            StatusError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
            StatusError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
            StatusError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge"),
            StatusError::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "Timeout"),
            StatusError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
            StatusError::NotFound => (StatusCode::NOT_FOUND, "NotFound"),
            StatusError::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed")
            }
        }
    }

    /// The `Status.details` Kubernetes gives it.
    fn details(&self) -> Option<StatusDetails> {
        match self {
            StatusError::Forbidden {
                resource, group, ..
            } => Some(StatusDetails {
                group: Some(group.to_string()),
                kind: Some(resource.to_string()),
                ..StatusDetails::default()
            }),
            StatusError::ForbiddenRead { resource, .. } => Some(StatusDetails {
                kind: Some(resource.to_string()),
                ..StatusDetails::default()
            }),
            StatusError::ObjectNotFound { resource, name } => Some(StatusDetails {
                kind: Some(resource.to_string()),
                name: Some(name.clone()),
                ..StatusDetails::default()
            }),
            StatusError::Invalid { kind, group, .. } => Some(StatusDetails {
                group: Some(group.to_string()),
                kind: Some(kind.to_string()),
                ..StatusDetails::default()
            }),
            _ => None,
        }
    }
}

impl IntoResponse for StatusError {
    fn into_response(self) -> Response {
        let (code, reason) = self.status_and_reason();
        let body = Status {
            code: Some(i32::from(code.as_u16())),
            details: self.details(),
            message: Some(self.to_string()),
            reason: Some(reason.to_string()),
            status: Some("Failure".to_string()),
            ..Status::default()
        };
        let mut response = (code, axum::Json(body)).into_response();
        match &self {
            StatusError::MethodNotAllowed { allow } => {
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            StatusError::Unavailable => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            // The rest of the body is not read: the connection cannot carry another request.
            StatusError::TooLarge | StatusError::Timeout(_) => {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}
