//! Requests to the API server made as a person, with their own bearer token: the web console's
//! reads and writes in kubernetes mode (docs/console.md, "With a Kubernetes authority"). The API
//! server authenticates and authorizes each one itself, as it does for the Kubernetes
//! dashboard; regate's own credentials are never on them.
//!
//! The client here is the authority's cluster configuration with its credentials removed, so
//! kube adds no auth layer and the `Authorization` header set per request is the only one.
//! Each request gets one attempt within the authority's per-attempt timeout: a person waits
//! behind it, and a write must not be sent twice.

use http::{HeaderValue, StatusCode, header};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::Resource;
use kube::core::params::{DeleteParams, GetParams, ListParams, PostParams, Preconditions};
use kube::core::{ObjectList, Request};
use secrecy::SecretString;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Kubernetes, bearer, redact};
use crate::policy::Attributes;

/// Why a request made as the viewer did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ViewerError {
    /// 401: the API server does not take the viewer's token.
    #[error("the Kubernetes API does not accept your token: {0}")]
    Unauthorized(String),
    /// 403: RBAC does not allow it; the API server's message says what is missing.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such object or namespace.
    #[error("{0}")]
    NotFound(String),
    /// 409: it exists already, or changed since it was read.
    #[error("{0}")]
    Conflict(String),
    /// Any other refusal (400, 422, ...), with the API server's message.
    #[error("{0}")]
    Refused(String),
    /// The API server could not be asked or did not answer in time; the cause is for the log.
    #[error("kubernetes API {api}: {detail}")]
    Unavailable {
        /// The API server's origin.
        api: String,
        /// What failed.
        detail: String,
    },
}

/// The API server, as one signed-in person.
pub struct AsViewer<'a> {
    cluster: &'a Kubernetes,
    token: &'a SecretString,
}

impl Kubernetes {
    /// Requests made as the holder of `token`, never as regate.
    pub fn as_viewer<'a>(&'a self, token: &'a SecretString) -> AsViewer<'a> {
        AsViewer {
            cluster: self,
            token,
        }
    }
}

impl AsViewer<'_> {
    /// Every object of kind `K` in `namespace` (`None`: cluster-scoped kinds).
    pub async fn list<K>(&self, namespace: Option<&str>) -> Result<Vec<K>, ViewerError>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        let request = Request::new(K::url_path(&(), namespace)).list(&ListParams::default());
        let list: ObjectList<K> = self.send(request).await?;
        Ok(list.items)
    }

    /// Object `name` of kind `K`.
    pub async fn get<K>(&self, namespace: Option<&str>, name: &str) -> Result<K, ViewerError>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        self.send(Request::new(K::url_path(&(), namespace)).get(name, &GetParams::default()))
            .await
    }

    /// Creates `object` in `namespace`.
    pub async fn create<K>(&self, namespace: Option<&str>, object: &K) -> Result<K, ViewerError>
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        let body = self.encode(object)?;
        let request =
            Request::new(K::url_path(&(), namespace)).create(&PostParams::default(), body);
        self.send(request).await
    }

    /// Replaces object `name` with `object`; its `resourceVersion`, when set, must still be
    /// the stored one (409 otherwise).
    pub async fn replace<K>(
        &self,
        namespace: Option<&str>,
        name: &str,
        object: &K,
    ) -> Result<K, ViewerError>
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        let body = self.encode(object)?;
        let request =
            Request::new(K::url_path(&(), namespace)).replace(name, &PostParams::default(), body);
        self.send(request).await
    }

    /// Deletes object `name` of kind `K`; when `version` is given, only while it is still at
    /// that `resourceVersion` (409 otherwise).
    pub async fn delete<K>(
        &self,
        namespace: Option<&str>,
        name: &str,
        version: Option<&str>,
    ) -> Result<(), ViewerError>
    where
        K: Resource<DynamicType = ()>,
    {
        let params = DeleteParams {
            preconditions: version.map(|v| Preconditions {
                resource_version: Some(v.to_string()),
                uid: None,
            }),
            ..DeleteParams::default()
        };
        let request = Request::new(K::url_path(&(), namespace)).delete(name, &params);
        // The answer is the object or a `Status`; either means it is gone.
        let _: serde_json::Value = self.send(request).await?;
        Ok(())
    }

    /// Whether the viewer may do `attrs`: a SelfSubjectAccessReview.
    pub async fn can_i(&self, attrs: &Attributes) -> Result<bool, ViewerError> {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes::from(attrs)),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let answered: SelfSubjectAccessReview = self.create(None, &review).await?;
        Ok(answered.status.is_some_and(|status| status.allowed))
    }

    fn encode<K: Serialize>(&self, object: &K) -> Result<Vec<u8>, ViewerError> {
        serde_json::to_vec(object).map_err(|e| self.unavailable(format!("cannot encode: {e}")))
    }

    fn unavailable(&self, detail: String) -> ViewerError {
        ViewerError::Unavailable {
            api: self.cluster.api().to_string(),
            detail,
        }
    }

    /// Sends `request` with the viewer's token, once, within the per-attempt timeout.
    async fn send<T: DeserializeOwned>(
        &self,
        request: Result<http::Request<Vec<u8>>, kube::core::request::Error>,
    ) -> Result<T, ViewerError> {
        let mut request = request.map_err(|e| self.unavailable(e.to_string()))?;
        let bearer: HeaderValue = bearer(self.token)
            .ok_or_else(|| ViewerError::Unauthorized("it cannot be sent as a header".into()))?;
        request.headers_mut().insert(header::AUTHORIZATION, bearer);
        let what = format!("{} {}", request.method(), request.uri().path());
        let client = self.cluster.viewer_client.clone();
        let timeout = self.cluster.transport.attempt_timeout();
        let answer = match tokio::time::timeout(timeout, client.request::<T>(request)).await {
            Err(_) => return Err(self.unavailable(format!("{what}: no answer within {timeout:?}"))),
            Ok(answer) => answer,
        };
        // The server's text could echo the request, token included.
        let scrub = |text: String| redact(text, self.token);
        match answer {
            Ok(value) => Ok(value),
            Err(kube::Error::Api(status)) => {
                let message = scrub(status.message.clone());
                Err(match StatusCode::from_u16(status.code) {
                    Ok(StatusCode::UNAUTHORIZED) => ViewerError::Unauthorized(message),
                    Ok(StatusCode::FORBIDDEN) => ViewerError::Forbidden(message),
                    Ok(StatusCode::NOT_FOUND) => ViewerError::NotFound(message),
                    Ok(StatusCode::CONFLICT) => ViewerError::Conflict(message),
                    Ok(code) if code.is_client_error() => ViewerError::Refused(message),
                    _ => self.unavailable(format!("{what} answered {}: {message}", status.code)),
                })
            }
            Err(error) => {
                Err(self.unavailable(format!("{what}: {}", scrub(crate::error::chain(&error)))))
            }
        }
    }
}
