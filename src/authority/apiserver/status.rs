//! Errors of `regate authority serve` as the Kubernetes API answers them: a `Status` object
//! with the HTTP status, reason and message a client (kubectl, kube-rs, client-go) expects.

use std::fmt;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};

use super::MAX_BODY;
use super::objects::ROLE_BINDINGS;
use crate::authority::embedded::{AUTH_DELEGATOR, FieldError, PULL_SECRET_READER};

/// A kind of object served, as RBAC and `Status` name it: its API group and plural.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resource {
    /// The API group, `""` for the core group.
    pub group: &'static str,
    /// The plural, as in the URL, e.g. `rolebindings`.
    pub plural: &'static str,
}

impl fmt::Display for Resource {
    /// Kubernetes' `GroupResource`: `rolebindings.rbac.authorization.k8s.io`, `namespaces`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            f.write_str(self.plural)
        } else {
            write!(f, "{}.{}", self.plural, self.group)
        }
    }
}

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
    /// 403: RBAC does not allow the caller this request, in the Kubernetes API server's words.
    #[error(
        "{} is forbidden: User \"{user}\" cannot {verb} resource \"{}\" in API group \"{}\" {}",
        named(resource, name),
        resource.plural,
        resource.group,
        scope(namespace)
    )]
    Denied {
        /// The caller.
        user: String,
        /// e.g. `list`.
        verb: &'static str,
        /// What was asked for.
        resource: Resource,
        /// The namespace of the request; empty at cluster scope.
        namespace: String,
        /// The object's name; empty for a list or create.
        name: String,
    },
    /// 403: a RoleBinding would grant permissions its writer does not hold (Kubernetes'
    /// escalation check), naming the first one missing.
    #[error(
        "{ROLE_BINDINGS} \"{name}\" is forbidden: user \"{user}\" (groups={}) is attempting to \
         grant RBAC permissions not currently held: {missing}; binding {role} needs every \
         permission it grants, or the bind verb on it",
        go_strings(groups)
    )]
    Escalation {
        /// The caller.
        user: String,
        /// The caller's groups.
        groups: Vec<String>,
        /// The binding's name.
        name: String,
        /// The role, e.g. `clusterrole "admin"`.
        role: String,
        /// The first permission not held, e.g. `get imagestreams/layers in namespace a`.
        missing: String,
    },
    /// 404: no such object.
    #[error("{resource} \"{name}\" not found")]
    Missing {
        /// What was asked for.
        resource: Resource,
        /// The name asked for.
        name: String,
    },
    /// 409: an object of that name exists.
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        /// The object's resource.
        resource: Resource,
        /// Its name.
        name: String,
    },
    /// 409: the object is not the one the change was based on.
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {reason}")]
    Conflict {
        /// The object's resource.
        resource: Resource,
        /// Its name.
        name: String,
        /// Which precondition failed.
        reason: String,
    },
    /// 422: the object is well-formed but not valid; every invalid field is a cause.
    #[error("{kind}.{group} \"{name}\" is invalid: {}", fields(causes))]
    InvalidObject {
        /// e.g. `RoleBinding`.
        kind: &'static str,
        /// Its API group.
        group: &'static str,
        /// Its name, as given.
        name: String,
        /// The invalid fields.
        causes: Vec<FieldError>,
    },
    /// 500: the state directory could not be read or changed; the cause is in the server's log,
    /// not sent to the client.
    #[error("the state directory cannot be changed now; the authority's log says why")]
    Internal,
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

/// `RESOURCE "NAME"`, or `RESOURCE` alone without a name, as Kubernetes' `NewForbidden` starts.
fn named(resource: &Resource, name: &str) -> String {
    if name.is_empty() {
        resource.to_string()
    } else {
        format!("{resource} {name:?}")
    }
}

/// `in the namespace "NS"`, or `at the cluster scope`.
fn scope(namespace: &str) -> String {
    if namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace {namespace:?}")
    }
}

/// Strings as Go's `%q` prints a slice: `["a" "b"]`.
fn go_strings(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

/// Kubernetes' aggregate of field errors: one alone, several in brackets.
fn fields(causes: &[FieldError]) -> String {
    let all: Vec<String> = causes.iter().map(FieldError::to_string).collect();
    match all.as_slice() {
        [one] => one.clone(),
        _ => format!("[{}]", all.join(", ")),
    }
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
            StatusError::Forbidden { .. }
            | StatusError::ForbiddenRead { .. }
            | StatusError::Denied { .. }
            | StatusError::Escalation { .. } => (StatusCode::FORBIDDEN, "Forbidden"),
            StatusError::ObjectNotFound { .. } | StatusError::Missing { .. } => {
                (StatusCode::NOT_FOUND, "NotFound")
            }
            StatusError::AlreadyExists { .. } => (StatusCode::CONFLICT, "AlreadyExists"),
            StatusError::Conflict { .. } => (StatusCode::CONFLICT, "Conflict"),
            StatusError::InvalidObject { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
            StatusError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
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
            StatusError::Denied { resource, name, .. } => Some(object_details(resource, name)),
            StatusError::Escalation { name, .. } => Some(object_details(&ROLE_BINDINGS, name)),
            StatusError::Missing { resource, name }
            | StatusError::AlreadyExists { resource, name }
            | StatusError::Conflict { resource, name, .. } => Some(object_details(resource, name)),
            StatusError::InvalidObject {
                kind,
                group,
                name,
                causes,
            } => Some(StatusDetails {
                group: Some(group.to_string()),
                kind: Some(kind.to_string()),
                name: Some(name.clone()),
                causes: Some(
                    causes
                        .iter()
                        .map(|cause| StatusCause {
                            field: Some(cause.field.clone()),
                            message: Some(cause.detail.clone()),
                            reason: Some(cause.reason.to_string()),
                        })
                        .collect(),
                ),
                ..StatusDetails::default()
            }),
            _ => None,
        }
    }
}

/// The details Kubernetes gives an error about one object (or a request for several): its
/// name, the resource as `kind`, and the group unless core.
fn object_details(resource: &Resource, name: &str) -> StatusDetails {
    StatusDetails {
        group: (!resource.group.is_empty()).then(|| resource.group.to_string()),
        kind: Some(resource.plural.to_string()),
        name: (!name.is_empty()).then(|| name.to_string()),
        ..StatusDetails::default()
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
