//! The endpoints of `regate authority serve`: the four reviews, the service account and Secret
//! reads the gateway's pull secrets need, health and the review counts. Each authenticates and
//! authorizes its caller, parses the body into the `k8s-openapi` type, and answers from the
//! authority.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path as UrlPath, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};
use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{
    SelfSubjectReview, SelfSubjectReviewStatus, TokenReview, TokenReviewStatus,
    UserInfo as K8sUserInfo,
};
use k8s_openapi::api::authorization::v1::{SelfSubjectAccessReview, SubjectAccessReview};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use secrecy::SecretString;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::status::StatusError;
use super::{ApiServer, Review, ReviewCounts};
use crate::authority::{Authn, AuthorityError};
use crate::identity::UserInfo;
use crate::upstream::secret::SECRET_TYPES;

pub(super) async fn token_review(
    State(server): State<Arc<ApiServer>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, StatusError> {
    let (caller, mut review) = server
        .accept::<TokenReview>(Review::Token, &headers, body)
        .await?;
    if review.spec.token.is_empty() {
        return Err(StatusError::BadRequest(
            "token is required for TokenReview in authentication".to_string(),
        ));
    }
    // Taken out of the review so that the answer does not carry it back.
    let token = SecretString::from(std::mem::take(&mut review.spec.token));
    let status = match server.authority.authenticate(&token).await {
        Ok(Authn::User(user)) => TokenReviewStatus {
            authenticated: Some(true),
            user: Some(K8sUserInfo::from(&user)),
            audiences: review.spec.audiences.clone(),
            error: None,
        },
        Ok(Authn::Invalid { reason }) => TokenReviewStatus {
            authenticated: Some(false),
            error: Some(reason),
            ..TokenReviewStatus::default()
        },
        Err(error) => return Err(unavailable(error)),
    };
    tracing::debug!(
        client = %caller.name,
        authenticated = status.authenticated == Some(true),
        user = status.user.as_ref().and_then(|u| u.username.as_deref()).unwrap_or(""),
        "tokenreview"
    );
    review.status = Some(status);
    Ok(server.created(Review::Token, &review))
}

pub(super) async fn subject_access_review(
    State(server): State<Arc<ApiServer>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, StatusError> {
    let (caller, mut review) = server
        .accept::<SubjectAccessReview>(Review::SubjectAccess, &headers, body)
        .await?;
    let spec = &review.spec;
    one_kind_of_attributes(
        Review::SubjectAccess,
        spec.resource_attributes.is_some(),
        spec.non_resource_attributes.is_some(),
    )?;
    let user = UserInfo {
        name: spec.user.clone().unwrap_or_default(),
        uid: spec.uid.clone().unwrap_or_default(),
        // As given: a SubjectAccessReview names every group; none is implied.
        groups: spec.groups.clone().unwrap_or_default(),
        extra: spec.extra.clone().unwrap_or_default(),
    };
    if user.name.is_empty() && user.groups.is_empty() {
        return Err(invalid(
            Review::SubjectAccess,
            "spec.user: Invalid value: \"\": at least one of user or group must be specified",
        ));
    }
    let status = server
        .access_status(&user, spec.resource_attributes.as_ref())
        .await?;
    tracing::debug!(client = %caller.name, user = %user.name, allowed = status.allowed, "subjectaccessreview");
    review.status = Some(status);
    Ok(server.created(Review::SubjectAccess, &review))
}

pub(super) async fn self_subject_review(
    State(server): State<Arc<ApiServer>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, StatusError> {
    let (caller, mut review) = server
        .accept::<SelfSubjectReview>(Review::SelfSubject, &headers, body)
        .await?;
    review.status = Some(SelfSubjectReviewStatus {
        user_info: Some(K8sUserInfo::from(&caller)),
    });
    tracing::debug!(user = %caller.name, "selfsubjectreview");
    Ok(server.created(Review::SelfSubject, &review))
}

pub(super) async fn self_subject_access_review(
    State(server): State<Arc<ApiServer>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, StatusError> {
    let (caller, mut review) = server
        .accept::<SelfSubjectAccessReview>(Review::SelfSubjectAccess, &headers, body)
        .await?;
    let spec = &review.spec;
    one_kind_of_attributes(
        Review::SelfSubjectAccess,
        spec.resource_attributes.is_some(),
        spec.non_resource_attributes.is_some(),
    )?;
    let status = server
        .access_status(&caller, spec.resource_attributes.as_ref())
        .await?;
    tracing::debug!(user = %caller.name, allowed = status.allowed, "selfsubjectaccessreview");
    review.status = Some(status);
    Ok(server.created(Review::SelfSubjectAccess, &review))
}

pub(super) async fn service_account(
    State(server): State<Arc<ApiServer>>,
    UrlPath((namespace, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, StatusError> {
    let snapshot = server
        .readable(&headers, "get", "serviceaccounts", &namespace, &name)
        .await?;
    // As stored, with its resourceVersion, as the console's service account list shows it.
    match snapshot
        .service_account_objects
        .get(&(namespace, name.clone()))
    {
        Some(account) => Ok(super::objects::one(account.clone())),
        None => Err(StatusError::ObjectNotFound {
            resource: "serviceaccounts",
            name,
        }),
    }
}

/// The query of a list request; only `fieldSelector` is understood.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListQuery {
    #[serde(default)]
    field_selector: String,
}

pub(super) async fn secrets(
    State(server): State<Arc<ApiServer>>,
    UrlPath(namespace): UrlPath<String>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Response, StatusError> {
    let wanted = secret_type_selector(&query.field_selector)?;
    let snapshot = server
        .readable(&headers, "list", "secrets", &namespace, "")
        .await?;
    let start = (namespace.clone(), String::new());
    let items = snapshot
        .pull_secrets
        .range(start..)
        .take_while(|((ns, _), _)| *ns == namespace)
        .filter(|(_, pull)| wanted.as_deref().is_none_or(|t| t == pull.secret_type))
        .map(|((ns, name), pull)| {
            let key = SECRET_TYPES
                .iter()
                .find(|(t, _)| *t == pull.secret_type)
                .map_or(".dockerconfigjson", |(_, key)| key);
            let config = secrecy::ExposeSecret::expose_secret(&pull.config);
            Secret {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    ..ObjectMeta::default()
                },
                type_: Some(pull.secret_type.clone()),
                data: Some([(key.to_string(), ByteString(config.as_bytes().to_vec()))].into()),
                ..Secret::default()
            }
        })
        .collect();
    let list = k8s_openapi::List::<Secret> {
        items,
        metadata: Default::default(),
    };
    Ok(axum::Json(list).into_response())
}

/// The Secret type a list's `fieldSelector` asks for (`type=T` or `type==T`); `None` for no
/// selector. Other fields and operators are refused, as this server cannot honour them.
pub(super) fn secret_type_selector(selector: &str) -> Result<Option<String>, StatusError> {
    if selector.is_empty() {
        return Ok(None);
    }
    let value = selector
        .strip_prefix("type==")
        .or_else(|| selector.strip_prefix("type="))
        .filter(|v| !v.contains(',') && !v.contains('='));
    match value {
        Some(value) => Ok(Some(value.to_string())),
        None => Err(StatusError::BadRequest(format!(
            "field selector {selector:?} is not supported here; only \"type=TYPE\" is"
        ))),
    }
}

pub(super) async fn healthz() -> &'static str {
    "ok"
}

pub(super) async fn review_counts(
    State(server): State<Arc<ApiServer>>,
) -> axum::Json<ReviewCounts> {
    axum::Json(server.reviews())
}

/// The bearer token of an `Authorization` value; `None` without one. Any other scheme, an empty
/// token or an unreadable value is 401, as the API server's bearer authenticator answers.
pub(super) fn bearer(value: Option<&HeaderValue>) -> Result<Option<SecretString>, StatusError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| StatusError::Unauthorized)?
        .trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(StatusError::Unauthorized);
    }
    Ok(Some(SecretString::from(token.to_string())))
}

/// The review in `body`: 413 when it is too large, 400 when it is not JSON of that kind.
pub(super) fn parse<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, StatusError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            StatusError::TooLarge
        } else {
            StatusError::BadRequest("cannot read the request body".to_string())
        }
    })?;
    // serde's message names the JSON problem and position, never more of the body than a
    // mistyped value, and goes only to the client that sent it.
    serde_json::from_slice(&bytes)
        .map_err(|e| StatusError::BadRequest(format!("cannot decode the request body: {e}")))
}

/// Kubernetes' validation: a review names resource or non-resource attributes, exactly one.
pub(super) fn one_kind_of_attributes(
    review: Review,
    resource: bool,
    non_resource: bool,
) -> Result<(), StatusError> {
    if resource == non_resource {
        return Err(invalid(
            review,
            "spec.resourceAttributes: Invalid value: exactly one of nonResourceAttributes or \
             resourceAttributes must be specified",
        ));
    }
    Ok(())
}

pub(super) fn invalid(review: Review, cause: &str) -> StatusError {
    StatusError::Invalid {
        kind: review.kind(),
        group: review.group(),
        cause: cause.to_string(),
    }
}

pub(super) fn unavailable(error: AuthorityError) -> StatusError {
    tracing::warn!(%error, "the authority cannot answer");
    StatusError::Unavailable
}
