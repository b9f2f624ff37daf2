//! The objects the web console reads as the signed-in person (as the Kubernetes dashboard
//! does): namespaces, service accounts, roles, cluster roles and both kinds of binding, each
//! list and get authorized by the store's RBAC with the attributes the Kubernetes API server's
//! `RequestInfo` gives the request, and answered from the snapshot that authorized it (no
//! second reading of the state directory to disagree with it). RoleBinding writes are in
//! [`super::rbac`].
//!
//! Every object served carries a `metadata.resourceVersion` derived from its content
//! ([`resource_version`]); a list's changes whenever one of its items' does.

use std::hash::Hasher;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path as UrlPath, Query, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use k8s_openapi::api::core::v1::{Namespace, NamespaceStatus, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta};
use serde::{Deserialize, Serialize};

use super::ApiServer;
use super::status::{Resource, StatusError};
use crate::authority::embedded::{Embedded, resource_version};
use crate::identity::UserInfo;
use crate::policy::{Attributes, RBAC_GROUP};

/// Core `namespaces`.
pub(super) const NAMESPACES: Resource = Resource {
    group: "",
    plural: "namespaces",
};
/// Core `serviceaccounts`.
pub(super) const SERVICE_ACCOUNTS: Resource = Resource {
    group: "",
    plural: "serviceaccounts",
};
/// RBAC `clusterroles`.
pub(super) const CLUSTER_ROLES: Resource = Resource {
    group: RBAC_GROUP,
    plural: "clusterroles",
};
/// RBAC `clusterrolebindings`.
pub(super) const CLUSTER_ROLE_BINDINGS: Resource = Resource {
    group: RBAC_GROUP,
    plural: "clusterrolebindings",
};
/// RBAC `roles`.
pub(super) const ROLES: Resource = Resource {
    group: RBAC_GROUP,
    plural: "roles",
};
/// RBAC `rolebindings`.
pub(super) const ROLE_BINDINGS: Resource = Resource {
    group: RBAC_GROUP,
    plural: "rolebindings",
};

impl ApiServer {
    /// The caller and the store to answer from, once the caller has shown a valid token whose
    /// user the store's RBAC allows `verb` on `resource` named `name` (empty: a list or create)
    /// in `namespace` (empty: cluster scope): the check the Kubernetes API server's RBAC
    /// authorizer makes before any handler runs.
    /// The snapshot to answer a list from, once the caller may `list` `resource` in
    /// `namespace` (`""`: cluster scope) and `query` asks nothing this server cannot honour.
    pub(super) async fn listable(
        &self,
        headers: &HeaderMap,
        query: Result<Query<ListOptions>, QueryRejection>,
        resource: Resource,
        namespace: &str,
    ) -> Result<Arc<crate::authority::embedded::Snapshot>, StatusError> {
        let (_, embedded) = self
            .permitted(headers, "list", resource, namespace, "")
            .await?;
        list_options(query)?;
        Ok(embedded.snapshot())
    }

    pub(super) async fn permitted(
        &self,
        headers: &HeaderMap,
        verb: &'static str,
        resource: Resource,
        namespace: &str,
        name: &str,
    ) -> Result<(UserInfo, Arc<Embedded>), StatusError> {
        self.delay().await;
        let caller = self.authenticated(headers).await?;
        let attrs = Attributes {
            verb: verb.to_string(),
            group: resource.group.to_string(),
            resource: resource.plural.to_string(),
            subresource: String::new(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        if !self.decide(&caller, &attrs).await?.allowed() {
            tracing::info!(user = %caller.name, "client may not {}", attrs.describe());
            return Err(StatusError::Denied {
                user: caller.name,
                verb,
                resource,
                namespace: namespace.to_string(),
                name: name.to_string(),
            });
        }
        let objects = self.objects.clone().ok_or(StatusError::NotFound)?;
        Ok((caller, objects))
    }
}

/// The query of a list. Selectors and watches are refused, since answering them with every
/// object would be wrong; `limit`, `continue` and `resourceVersion` are ignored, which
/// Kubernetes allows (the whole, current list is one page).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct ListOptions {
    label_selector: String,
    field_selector: String,
    watch: String,
}

/// The list options of `query`, if this server can honour them (400 otherwise).
pub(super) fn list_options(
    query: Result<Query<ListOptions>, QueryRejection>,
) -> Result<ListOptions, StatusError> {
    let Query(options) = query.map_err(|e| StatusError::BadRequest(e.body_text()))?;
    if !options.label_selector.is_empty() || !options.field_selector.is_empty() {
        return Err(StatusError::BadRequest(
            "label and field selectors are not supported here; list without them and filter \
             the items"
                .to_string(),
        ));
    }
    if !matches!(options.watch.as_str(), "" | "false" | "0") {
        return Err(StatusError::BadRequest(
            "watch is not supported here; list again to see changes".to_string(),
        ));
    }
    Ok(options)
}

/// `object` with its `metadata.resourceVersion`.
pub(super) fn versioned<T>(mut object: T) -> T
where
    T: Serialize + Clone + k8s_openapi::Metadata<Ty = ObjectMeta>,
{
    let version = resource_version(&object);
    object.metadata_mut().resource_version = Some(version);
    object
}

/// 200 with `object`, versioned.
pub(super) fn one<T>(object: T) -> Response
where
    T: Serialize + Clone + k8s_openapi::Metadata<Ty = ObjectMeta>,
{
    axum::Json(versioned(object)).into_response()
}

/// 200 with the list of `items` (`kind: XList`, as kube-rs and client-go expect), each
/// versioned; the list's version is a hash of its items' names and versions.
fn list_of<T>(items: impl IntoIterator<Item = T>) -> Response
where
    T: Serialize + Clone + k8s_openapi::ListableResource + k8s_openapi::Metadata<Ty = ObjectMeta>,
{
    let items: Vec<T> = items.into_iter().map(versioned).collect();
    let mut hasher = siphasher::sip::SipHasher13::new();
    for item in &items {
        let meta = item.metadata();
        for part in [&meta.namespace, &meta.name, &meta.resource_version] {
            hasher.write(part.as_deref().unwrap_or_default().as_bytes());
            hasher.write_u8(0);
        }
    }
    let list = k8s_openapi::List::<T> {
        items,
        metadata: ListMeta {
            resource_version: Some(hasher.finish().to_string()),
            ..ListMeta::default()
        },
    };
    axum::Json(list).into_response()
}

/// A namespace as served: as stored, `Active` (a namespace is gone at once when deleted, never
/// `Terminating`).
fn active(mut namespace: Namespace) -> Namespace {
    namespace.status = Some(NamespaceStatus {
        phase: Some("Active".to_string()),
        ..NamespaceStatus::default()
    });
    namespace
}

pub(super) async fn namespaces(
    State(server): State<Arc<ApiServer>>,
    query: Result<Query<ListOptions>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, StatusError> {
    let snapshot = server.listable(&headers, query, NAMESPACES, "").await?;
    Ok(list_of(
        snapshot.namespace_objects.values().cloned().map(active),
    ))
}

pub(super) async fn namespace(
    State(server): State<Arc<ApiServer>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, StatusError> {
    // As Kubernetes' RequestInfo reads it: a namespace's own namespace is itself.
    let (_, embedded) = server
        .permitted(&headers, "get", NAMESPACES, &name, &name)
        .await?;
    match embedded.snapshot().namespace_objects.get(&name) {
        Some(namespace) => Ok(one(active(namespace.clone()))),
        None => Err(StatusError::Missing {
            resource: NAMESPACES,
            name,
        }),
    }
}

pub(super) async fn service_accounts(
    State(server): State<Arc<ApiServer>>,
    UrlPath(namespace): UrlPath<String>,
    query: Result<Query<ListOptions>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, StatusError> {
    let snapshot = server
        .listable(&headers, query, SERVICE_ACCOUNTS, &namespace)
        .await?;
    let start = (namespace.clone(), String::new());
    let accounts: Vec<ServiceAccount> = snapshot
        .service_account_objects
        .range(start..)
        .take_while(|((ns, _), _)| *ns == namespace)
        .map(|(_, account)| account.clone())
        .collect();
    Ok(list_of(accounts))
}

pub(super) async fn cluster_roles(
    State(server): State<Arc<ApiServer>>,
    query: Result<Query<ListOptions>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, StatusError> {
    let snapshot = server.listable(&headers, query, CLUSTER_ROLES, "").await?;
    Ok(list_of(
        snapshot.policy.cluster_roles().into_iter().cloned(),
    ))
}

pub(super) async fn cluster_role(
    State(server): State<Arc<ApiServer>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, StatusError> {
    let (_, embedded) = server
        .permitted(&headers, "get", CLUSTER_ROLES, "", &name)
        .await?;
    match embedded.snapshot().policy.cluster_role(&name) {
        Some(role) => Ok(one(role.clone())),
        None => Err(StatusError::Missing {
            resource: CLUSTER_ROLES,
            name,
        }),
    }
}

pub(super) async fn cluster_role_bindings(
    State(server): State<Arc<ApiServer>>,
    query: Result<Query<ListOptions>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, StatusError> {
    let snapshot = server
        .listable(&headers, query, CLUSTER_ROLE_BINDINGS, "")
        .await?;
    Ok(list_of(snapshot.policy.cluster_role_bindings().to_vec()))
}

pub(super) async fn roles(
    State(server): State<Arc<ApiServer>>,
    UrlPath(namespace): UrlPath<String>,
    query: Result<Query<ListOptions>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, StatusError> {
    let snapshot = server.listable(&headers, query, ROLES, &namespace).await?;
    Ok(list_of(
        snapshot.policy.roles_in(&namespace).into_iter().cloned(),
    ))
}

pub(super) async fn role_bindings(
    State(server): State<Arc<ApiServer>>,
    UrlPath(namespace): UrlPath<String>,
    query: Result<Query<ListOptions>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, StatusError> {
    let snapshot = server
        .listable(&headers, query, ROLE_BINDINGS, &namespace)
        .await?;
    // A namespace that does not exist has none, as in Kubernetes.
    Ok(list_of(
        snapshot.policy.role_bindings_in(&namespace).to_vec(),
    ))
}

pub(super) async fn role_binding(
    State(server): State<Arc<ApiServer>>,
    UrlPath((namespace, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, StatusError> {
    let (_, embedded) = server
        .permitted(&headers, "get", ROLE_BINDINGS, &namespace, &name)
        .await?;
    let snapshot = embedded.snapshot();
    let found = snapshot
        .policy
        .role_bindings_in(&namespace)
        .iter()
        .find(|b| b.metadata.name.as_deref() == Some(name.as_str()));
    match found {
        Some(binding) => Ok(one(binding.clone())),
        None => Err(StatusError::Missing {
            resource: ROLE_BINDINGS,
            name,
        }),
    }
}
