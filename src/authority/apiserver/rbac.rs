//! RoleBindings written over the Kubernetes API, with its semantics: create (201), replace (200,
//! refused with 409 when based on an old `resourceVersion`, 422 when `roleRef` changes) and
//! delete (200 with a `Status`), `?dryRun=All` honoured.
//!
//! As in Kubernetes, `create` or `update` on `rolebindings` is not enough: the writer must hold
//! every permission of the bound role in the namespace, or have the `bind` verb on it (the
//! escalation check), so a namespace admin can share what they have and nothing more. The
//! change itself is made by the [`Store`], under the writers' lock, so the CLI sees it and a
//! running authority reloads it on the change marker, as after `regate policy`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path as UrlPath, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    DeleteOptions, Preconditions, Status, StatusDetails,
};
use serde::Deserialize;

use super::ApiServer;
use super::endpoints::parse;
use super::objects::{CLUSTER_ROLES, NAMESPACES, ROLE_BINDINGS, ROLES, versioned};
use super::status::StatusError;
use crate::authority::embedded::{BindingError, Embedded, Store, StoreError, check_role_binding};
use crate::identity::UserInfo;
use crate::policy::{Attributes, RBAC_GROUP, ROLE_KIND};

/// `kind` of the objects written here.
const KIND: &str = "RoleBinding";
/// `apiVersion` of the objects written here.
const API_VERSION: &str = "rbac.authorization.k8s.io/v1";

/// The query of a write; only `dryRun` matters (field managers and validation levels are
/// ignored, as nothing here merges or prunes fields).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct WriteOptions {
    dry_run: String,
}

/// Whether `query` asks for a dry run (`dryRun=All`); any other value is 400, as Kubernetes
/// answers it.
fn dry_run(query: Result<Query<WriteOptions>, QueryRejection>) -> Result<bool, StatusError> {
    let Query(options) = query.map_err(|e| StatusError::BadRequest(e.body_text()))?;
    dry_run_value(std::iter::once(options.dry_run.as_str()).filter(|v| !v.is_empty()))
}

/// Whether the `dryRun` values ask for one: none is no, `All` yes, anything else 400.
fn dry_run_value<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<bool, StatusError> {
    let mut dry = false;
    for value in values {
        if value != "All" {
            return Err(StatusError::BadRequest(format!(
                "dryRun: Unsupported value: {value:?}: supported values: \"All\""
            )));
        }
        dry = true;
    }
    Ok(dry)
}

/// The RoleBinding in `body`: 400 when it is not JSON, not an object, or an object of another
/// kind or version; a missing `kind` or `apiVersion` is taken to be the endpoint's, as the API
/// server defaults them from the URL.
fn role_binding_body(body: Result<Bytes, BytesRejection>) -> Result<RoleBinding, StatusError> {
    let value: serde_json::Value = parse(body)?;
    let Some(object) = value.as_object() else {
        return Err(StatusError::BadRequest(format!(
            "the request body is not a JSON object; send a {KIND} (apiVersion {API_VERSION})"
        )));
    };
    for (field, wanted) in [("kind", KIND), ("apiVersion", API_VERSION)] {
        match object.get(field) {
            None => {}
            Some(serde_json::Value::String(found)) if found == wanted => {}
            Some(found) => {
                return Err(StatusError::BadRequest(format!(
                    "the request body has {field} {found}, but this endpoint takes a {KIND} \
                     ({field}: {wanted})"
                )));
            }
        }
    }
    serde_json::from_value(value)
        .map_err(|e| StatusError::BadRequest(format!("cannot decode the {KIND}: {e}")))
}

/// 400 unless `binding` names no namespace or `namespace`, the URL's.
fn same_namespace(binding: &RoleBinding, namespace: &str) -> Result<(), StatusError> {
    match binding.metadata.namespace.as_deref() {
        Some(found) if !found.is_empty() && found != namespace => {
            Err(StatusError::BadRequest(format!(
                "the namespace of the object ({found}) does not match the namespace on the \
                 request ({namespace})"
            )))
        }
        _ => Ok(()),
    }
}

/// The `Status` a refused store change is answered with; a failure of the state directory
/// itself is logged here and answered 500 without its text.
fn binding_status(error: BindingError) -> StatusError {
    match error {
        BindingError::Invalid { name, causes } => StatusError::InvalidObject {
            kind: KIND,
            group: RBAC_GROUP,
            name,
            causes,
        },
        BindingError::AlreadyExists { name, .. } => StatusError::AlreadyExists {
            resource: ROLE_BINDINGS,
            name,
        },
        BindingError::NotFound { name, .. } => StatusError::Missing {
            resource: ROLE_BINDINGS,
            name,
        },
        BindingError::Conflict { name, reason, .. } => StatusError::Conflict {
            resource: ROLE_BINDINGS,
            name,
            reason,
        },
        BindingError::Store(StoreError::NamespaceNotFound { namespace, .. }) => {
            StatusError::Missing {
                resource: NAMESPACES,
                name: namespace,
            }
        }
        // A namespace that cannot be a directory name cannot exist.
        BindingError::Store(StoreError::InvalidName {
            kind: "namespace",
            name,
            ..
        }) => StatusError::Missing {
            resource: NAMESPACES,
            name,
        },
        BindingError::Store(error) => {
            tracing::error!(error = %error, "cannot change a rolebinding in the state directory");
            StatusError::Internal
        }
    }
}

/// Runs `change` on the store of `embedded` (a dry run when `dry_run`), on the blocking pool:
/// it waits for the writers' lock, which the CLI may hold, and writes files.
async fn in_store<T: Send + 'static>(
    embedded: &Embedded,
    dry_run: bool,
    change: impl FnOnce(&Store) -> Result<T, BindingError> + Send + 'static,
) -> Result<T, StatusError> {
    let dir = embedded.dir().to_path_buf();
    let outcome = tokio::task::spawn_blocking(move || {
        let store = Store::open_without_bootstrap(&dir)?.with_dry_run(dry_run);
        change(&store)
    })
    .await;
    match outcome {
        Ok(result) => result.map_err(binding_status),
        Err(error) => {
            tracing::error!(%error, "a rolebinding change did not finish");
            Err(StatusError::Internal)
        }
    }
}

impl ApiServer {
    /// Kubernetes' escalation check for `caller` writing `binding` in `namespace`: allowed with
    /// the `bind` verb on the bound role, else only if `caller` holds every permission it
    /// grants there. A role that does not exist cannot be checked, so, as in Kubernetes, only
    /// those who may bind it may bind it (404 naming it otherwise): binding a name before it is
    /// defined would grant whatever it is later defined with.
    async fn may_bind(
        &self,
        caller: &UserInfo,
        namespace: &str,
        binding: &RoleBinding,
        embedded: &Embedded,
    ) -> Result<(), StatusError> {
        let role_ref = &binding.role_ref;
        let (resource, word) = if role_ref.kind == ROLE_KIND {
            (ROLES, "role")
        } else {
            (CLUSTER_ROLES, "clusterrole")
        };
        let bind = Attributes {
            verb: "bind".to_string(),
            group: RBAC_GROUP.to_string(),
            resource: resource.plural.to_string(),
            subresource: String::new(),
            namespace: namespace.to_string(),
            name: role_ref.name.clone(),
        };
        if self.decide(caller, &bind).await?.allowed() {
            return Ok(());
        }
        // The snapshot the decision above caught up with.
        let snapshot = embedded.snapshot();
        let policy = &snapshot.policy;
        let rules = if role_ref.kind == ROLE_KIND {
            policy
                .role(namespace, &role_ref.name)
                .map(|r| r.rules.as_deref().unwrap_or_default())
        } else {
            policy
                .cluster_role(&role_ref.name)
                .map(|r| r.rules.as_deref().unwrap_or_default())
        };
        let Some(rules) = rules else {
            return Err(StatusError::Missing {
                resource,
                name: role_ref.name.clone(),
            });
        };
        let Some(missing) = policy.first_not_held_of(caller, rules, namespace) else {
            return Ok(());
        };
        let name = binding.metadata.name.clone().unwrap_or_default();
        tracing::info!(
            user = %caller.name,
            "client may not bind {word} {} in {namespace}: it does not hold {}",
            role_ref.name,
            missing.describe()
        );
        Err(StatusError::Escalation {
            user: caller.name.clone(),
            groups: caller.groups.clone(),
            name,
            role: format!("{word} {:?}", role_ref.name),
            missing: missing.describe(),
        })
    }
}

pub(super) async fn create_role_binding(
    State(server): State<Arc<ApiServer>>,
    UrlPath(namespace): UrlPath<String>,
    query: Result<Query<WriteOptions>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, StatusError> {
    let (caller, embedded) = server
        .permitted(&headers, "create", ROLE_BINDINGS, &namespace, "")
        .await?;
    let dry_run = dry_run(query)?;
    let mut binding = role_binding_body(body)?;
    same_namespace(&binding, &namespace)?;
    // As Kubernetes' namespace admission: before validation, so the answer names the cause.
    if !embedded.snapshot().namespaces.contains(&namespace) {
        return Err(StatusError::Missing {
            resource: NAMESPACES,
            name: namespace,
        });
    }
    check_role_binding(&namespace, &mut binding).map_err(binding_status)?;
    server
        .may_bind(&caller, &namespace, &binding, &embedded)
        .await?;
    let written = in_store(&embedded, dry_run, move |store| {
        store.create_role_binding(&namespace, binding)
    })
    .await?;
    tracing::info!(user = %caller.name, binding = ?written.metadata.name, dry_run, "rolebinding created");
    Ok((StatusCode::CREATED, axum::Json(versioned(written))).into_response())
}

pub(super) async fn replace_role_binding(
    State(server): State<Arc<ApiServer>>,
    UrlPath((namespace, name)): UrlPath<(String, String)>,
    query: Result<Query<WriteOptions>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, StatusError> {
    let (caller, embedded) = server
        .permitted(&headers, "update", ROLE_BINDINGS, &namespace, &name)
        .await?;
    let dry_run = dry_run(query)?;
    let mut binding = role_binding_body(body)?;
    same_namespace(&binding, &namespace)?;
    let given = binding.metadata.name.as_deref().unwrap_or_default();
    if given != name {
        return Err(StatusError::BadRequest(format!(
            "the name of the object ({given}) does not match the name on the URL ({name})"
        )));
    }
    // Taken before the check clears them: the version (and uid) the caller read, which the
    // store compares under the writers' lock; without a version the replace is unconditional.
    let expected = Preconditions {
        resource_version: binding.metadata.resource_version.clone(),
        uid: binding.metadata.uid.clone(),
    };
    check_role_binding(&namespace, &mut binding).map_err(binding_status)?;
    server
        .may_bind(&caller, &namespace, &binding, &embedded)
        .await?;
    let written = in_store(&embedded, dry_run, move |store| {
        store.replace_role_binding(&namespace, binding, &expected)
    })
    .await?;
    tracing::info!(user = %caller.name, binding = %name, dry_run, "rolebinding replaced");
    Ok(axum::Json(versioned(written)).into_response())
}

pub(super) async fn delete_role_binding(
    State(server): State<Arc<ApiServer>>,
    UrlPath((namespace, name)): UrlPath<(String, String)>,
    query: Result<Query<WriteOptions>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, StatusError> {
    let (caller, embedded) = server
        .permitted(&headers, "delete", ROLE_BINDINGS, &namespace, &name)
        .await?;
    let in_query = dry_run(query)?;
    // kube-rs and client-go send DeleteOptions as the body; an empty body is none.
    let options: DeleteOptions = match &body {
        Ok(bytes) if bytes.is_empty() => DeleteOptions::default(),
        _ => parse(body)?,
    };
    let in_body = dry_run_value(options.dry_run.iter().flatten().map(String::as_str))?;
    let expected = options.preconditions.unwrap_or_default();
    let target = name.clone();
    let deleted = in_store(&embedded, in_query || in_body, move |store| {
        store.delete_role_binding(&namespace, &target, &expected)
    })
    .await?;
    tracing::info!(user = %caller.name, binding = %name, "rolebinding deleted");
    let status = Status {
        status: Some("Success".to_string()),
        details: Some(StatusDetails {
            name: Some(name),
            group: Some(RBAC_GROUP.to_string()),
            kind: Some(ROLE_BINDINGS.plural.to_string()),
            uid: deleted.metadata.uid,
            ..StatusDetails::default()
        }),
        ..Status::default()
    };
    Ok(axum::Json(status).into_response())
}
