//! Where the console reads and changes the objects it shows (docs/console.md): the embedded
//! store, or a Kubernetes API server asked as the signed-in viewer.
//!
//! With the embedded authority the console reads the authority's snapshot and changes the state
//! directory as `regate policy` does, after asking RBAC itself. With a Kubernetes authority it
//! holds no privilege of its own: every read and write goes to the API server with the viewer's
//! token, so the API server's RBAC decides what they see and change (escalation included), as
//! for the Kubernetes dashboard. What they may not read is left out, and the page says so.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};

use super::{Refused, Viewer, pages};
use crate::authority::embedded::{
    Embedded, Removal, Snapshot, Store, StoreError, SubjectRef, cluster_roles, role_binding_with,
    role_bindings_without,
};
use crate::authority::kubernetes::{AsViewer, Kubernetes, ViewerError};
use crate::policy::{Attributes, Policy};
use crate::upstream::secret::SECRET_TYPES;

/// The console's source of namespaces, bindings and service accounts.
pub(super) enum Directory {
    /// The state directory of the embedded authority.
    Embedded(Arc<Embedded>),
    /// The cluster's API server, asked with each viewer's own token.
    Cluster(Arc<Kubernetes>),
}

/// Roles and bindings, as far as the viewer may read them.
pub(super) enum Held {
    /// All of them: the embedded authority's snapshot.
    Snapshot(Arc<Snapshot>),
    /// Those the API server let the viewer read.
    Read(Box<Policy>),
}

impl Held {
    /// The policy to explain and list grants from.
    pub(super) fn policy(&self) -> &Policy {
        match self {
            Held::Snapshot(snapshot) => &snapshot.policy,
            Held::Read(policy) => policy,
        }
    }
}

/// What one namespace page shows of the directory.
pub(super) struct Contents {
    /// Roles and bindings: the namespace's, the cluster's.
    pub held: Held,
    /// What the viewer could not read of them, said on the page; `None` when nothing is missing.
    pub partial: Option<String>,
    /// Its service accounts, or why they are not shown.
    pub service_accounts: Result<Vec<pages::ServiceAccount>, String>,
    /// Its docker config Secrets by name, or why they are not shown.
    pub secrets: Result<Vec<String>, String>,
}

/// How many times a grant or removal is tried again when a binding changed under it.
const CONFLICT_RETRIES: usize = 3;

impl Directory {
    /// Whether the viewer may do `attrs`, asked of the API server (a SelfSubjectAccessReview);
    /// `None` for the embedded store, where the gateway's decision cache answers.
    pub(super) async fn can_i(
        &self,
        viewer: &Viewer,
        attrs: &Attributes,
    ) -> Option<Result<bool, Refused>> {
        match self {
            Directory::Embedded(_) => None,
            Directory::Cluster(cluster) => Some(
                cluster
                    .as_viewer(&viewer.token)
                    .can_i(attrs)
                    .await
                    .map_err(refused),
            ),
        }
    }

    /// Every namespace the viewer may list; `None` when they may not list namespaces.
    pub(super) async fn namespace_names(
        &self,
        viewer: &Viewer,
    ) -> Result<Option<Vec<String>>, Refused> {
        match self {
            Directory::Embedded(embedded) => Ok(Some(
                embedded.snapshot().namespaces.iter().cloned().collect(),
            )),
            Directory::Cluster(cluster) => {
                match cluster
                    .as_viewer(&viewer.token)
                    .list::<Namespace>(None)
                    .await
                {
                    Ok(list) => {
                        let mut names: Vec<String> =
                            list.into_iter().filter_map(|ns| ns.metadata.name).collect();
                        names.sort();
                        Ok(Some(names))
                    }
                    Err(ViewerError::Forbidden(_)) => Ok(None),
                    Err(error) => Err(refused(error)),
                }
            }
        }
    }

    /// Whether namespace `ns` exists, as far as the viewer can tell (a namespace they may not
    /// read is taken to exist; what they may read of it decides the rest).
    pub(super) async fn exists(&self, viewer: &Viewer, ns: &str) -> Result<bool, Refused> {
        match self {
            Directory::Embedded(embedded) => Ok(embedded.snapshot().namespaces.contains(ns)),
            Directory::Cluster(cluster) => {
                match cluster
                    .as_viewer(&viewer.token)
                    .get::<Namespace>(None, ns)
                    .await
                {
                    Ok(_) | Err(ViewerError::Forbidden(_)) => Ok(true),
                    Err(ViewerError::NotFound(_)) => Ok(false),
                    Err(error) => Err(refused(error)),
                }
            }
        }
    }

    /// How many service accounts `ns` has, when it costs nothing to say (embedded only).
    pub(super) fn service_account_count(&self, ns: &str) -> Option<usize> {
        match self {
            Directory::Embedded(embedded) => Some(
                embedded
                    .snapshot()
                    .service_accounts
                    .keys()
                    .filter(|(sa_ns, _)| sa_ns == ns)
                    .count(),
            ),
            Directory::Cluster(_) => None,
        }
    }

    /// The roles and bindings that bear on namespace `ns`, as far as the viewer may read them,
    /// and what they could not read.
    pub(super) async fn held(
        &self,
        viewer: &Viewer,
        ns: &str,
    ) -> Result<(Held, Option<String>), Refused> {
        match self {
            Directory::Embedded(embedded) => Ok((Held::Snapshot(embedded.snapshot()), None)),
            Directory::Cluster(cluster) => read_policy(&cluster.as_viewer(&viewer.token), ns).await,
        }
    }

    /// Everything the namespace page shows of namespace `ns`.
    pub(super) async fn contents(&self, viewer: &Viewer, ns: &str) -> Result<Contents, Refused> {
        let (held, partial) = self.held(viewer, ns).await?;
        let (service_accounts, secrets) = match self {
            Directory::Embedded(embedded) => {
                let snapshot = embedded.snapshot();
                let accounts = snapshot
                    .service_accounts
                    .keys()
                    .filter(|(sa_ns, _)| sa_ns == ns)
                    .map(|(_, name)| pages::ServiceAccount {
                        pull_secrets: snapshot
                            .image_pull_secrets
                            .get(&(ns.to_string(), name.clone()))
                            .cloned()
                            .unwrap_or_default(),
                        name: name.clone(),
                    })
                    .collect();
                let secrets = snapshot
                    .pull_secrets
                    .keys()
                    .filter(|(secret_ns, _)| secret_ns == ns)
                    .map(|(_, name)| name.clone())
                    .collect();
                (Ok(accounts), Ok(secrets))
            }
            Directory::Cluster(cluster) => {
                let api = cluster.as_viewer(&viewer.token);
                let (accounts, secrets) = tokio::join!(
                    api.list::<ServiceAccount>(Some(ns)),
                    api.list::<Secret>(Some(ns))
                );
                let accounts = readable(accounts, "service accounts", ns)?.map(|list| {
                    list.into_iter()
                        .map(|sa| pages::ServiceAccount {
                            name: sa.metadata.name.unwrap_or_default(),
                            pull_secrets: sa
                                .image_pull_secrets
                                .into_iter()
                                .flatten()
                                .map(|reference| reference.name)
                                .collect(),
                        })
                        .collect()
                });
                // Names only: the data that came with them is dropped here.
                let secrets = readable(secrets, "secrets", ns)?.map(|list| {
                    list.into_iter()
                        .filter(|s| {
                            s.type_
                                .as_deref()
                                .is_some_and(|t| SECRET_TYPES.iter().any(|(known, _)| *known == t))
                        })
                        .filter_map(|s| s.metadata.name)
                        .collect()
                });
                (accounts, secrets)
            }
        };
        let mut service_accounts: Result<Vec<pages::ServiceAccount>, String> = service_accounts;
        if let Ok(accounts) = &mut service_accounts {
            accounts.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(Contents {
            held,
            partial,
            service_accounts,
            secrets,
        })
    }

    /// Makes `op` for `subject` with ClusterRole `role` in `ns`, as `regate policy
    /// add-role-to-user` or `remove-role-from-user` does; `Err` is the store's or the API
    /// server's refusal, for the viewer.
    pub(super) async fn change(
        &self,
        viewer: &Viewer,
        op: Op,
        ns: &str,
        role: &str,
        subject: SubjectRef,
    ) -> Result<(), String> {
        match self {
            Directory::Embedded(embedded) => {
                let (ns, role) = (ns.to_string(), role.to_string());
                in_store(embedded, move |store| match op {
                    Op::Grant => store.add_role(&ns, &role, &[subject]),
                    Op::Revoke => store.remove_role(&ns, &role, &[subject]),
                })
                .await
            }
            Directory::Cluster(cluster) => {
                let api = cluster.as_viewer(&viewer.token);
                retried(|| async {
                    match op {
                        Op::Grant => grant_as(&api, ns, role, &subject).await,
                        Op::Revoke => revoke_as(&api, ns, role, &subject).await,
                    }
                })
                .await
            }
        }
    }
}

/// Adding a subject to a role's bindings in a namespace, or removing it.
#[derive(Clone, Copy)]
pub(super) enum Op {
    Grant,
    Revoke,
}

/// Runs `op` on the embedded authority's state directory, as `regate policy` does; `Err` is the
/// store's message.
async fn in_store<F>(embedded: &Embedded, op: F) -> Result<(), String>
where
    F: FnOnce(&Store) -> Result<(), StoreError> + Send + 'static,
{
    let dir = embedded.dir().to_path_buf();
    let done = tokio::task::spawn_blocking(move || {
        let store = Store::open(&dir)?;
        op(&store)
    })
    .await;
    match done {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err("the change was interrupted".into()),
    }
}

/// Why a change asked of the API server failed: whether reading again and retrying may help.
enum Failed {
    /// A binding changed between the read and the write (409).
    Conflict,
    /// Anything else, said to the viewer.
    Final(String),
}

impl From<ViewerError> for Failed {
    fn from(error: ViewerError) -> Self {
        match error {
            ViewerError::Conflict(_) => Failed::Conflict,
            ViewerError::Unavailable { .. } => {
                tracing::warn!(%error, "console: the Kubernetes API could not answer");
                Failed::Final("the Kubernetes API could not answer; nothing was changed".into())
            }
            other => Failed::Final(other.to_string()),
        }
    }
}

/// Runs a read-then-write `change` again while a binding changed under it, a few times.
async fn retried<F, Fut>(change: F) -> Result<(), String>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), Failed>>,
{
    for _ in 0..CONFLICT_RETRIES {
        match change().await {
            Ok(()) => return Ok(()),
            Err(Failed::Final(why)) => return Err(why),
            Err(Failed::Conflict) => {}
        }
    }
    Err("the bindings kept changing while this change was made; try again".into())
}

/// Adds `subject` to the bindings of `role` in `ns` as `regate policy add-role-to-user` does:
/// into the role's binding, or a new one. A viewer who may create and delete bindings but not
/// update them (`registry-admin`) gets a binding of its own for the subject instead.
async fn grant_as(
    api: &AsViewer<'_>,
    ns: &str,
    role: &str,
    subject: &SubjectRef,
) -> Result<(), Failed> {
    let subjects = std::slice::from_ref(subject);
    let bindings: Vec<RoleBinding> = api.list(Some(ns)).await?;
    let Some(binding) = role_binding_with(&bindings, ns, role, subjects) else {
        return Ok(());
    };
    let name = binding.metadata.name.clone().unwrap_or_default();
    if !bindings
        .iter()
        .any(|b| b.metadata.name.as_deref() == Some(&name))
    {
        api.create(Some(ns), &fresh(binding, &name)).await?;
        return Ok(());
    }
    // Sent with the resourceVersion it was read at: a change made meanwhile gives 409.
    match api.replace(Some(ns), &name, &binding).await {
        Err(ViewerError::Forbidden(_)) => {
            let alone = role_binding_with(&[], ns, role, subjects)
                .ok_or_else(|| Failed::Final("nothing to bind".into()))?;
            api.create(Some(ns), &fresh(alone, &free_name(&bindings, role)))
                .await?;
            Ok(())
        }
        answer => answer.map(drop).map_err(Failed::from),
    }
}

/// Removes `subject` from the bindings of `role` in `ns` as `regate policy
/// remove-role-from-user` does: a binding left empty is deleted, one shared with others is
/// written back without the subject. For a viewer who may not update bindings, the others'
/// copy is created under a new name first, and the old binding deleted only if unchanged since
/// it was read, so nobody else loses access on the way.
async fn revoke_as(
    api: &AsViewer<'_>,
    ns: &str,
    role: &str,
    subject: &SubjectRef,
) -> Result<(), Failed> {
    let bindings: Vec<RoleBinding> = api.list(Some(ns)).await?;
    let version_of = |name: &str| {
        bindings
            .iter()
            .find(|b| b.metadata.name.as_deref() == Some(name))
            .and_then(|b| b.metadata.resource_version.clone())
    };
    let removals = role_bindings_without(bindings.clone(), ns, role, std::slice::from_ref(subject))
        .map_err(|e| Failed::Final(e.to_string()))?;
    for removal in removals {
        match removal {
            Removal::Delete(name) => delete(api, ns, &name, version_of(&name)).await?,
            Removal::Replace(binding) => {
                let name = binding.metadata.name.clone().unwrap_or_default();
                match api.replace(Some(ns), &name, &binding).await {
                    Err(ViewerError::Forbidden(_)) => {
                        let copy = fresh(binding, &free_name(&bindings, role));
                        let copy_name = copy.metadata.name.clone().unwrap_or_default();
                        api.create(Some(ns), &copy).await?;
                        if let Err(failed) = delete(api, ns, &name, version_of(&name)).await {
                            // The old binding changed or stays: take the copy back.
                            let _ = api.delete::<RoleBinding>(Some(ns), &copy_name, None).await;
                            return Err(failed);
                        }
                    }
                    answer => answer.map(drop)?,
                }
            }
        }
    }
    Ok(())
}

/// Deletes binding `name`, if still at `version`; one deleted meanwhile is what was asked.
async fn delete(
    api: &AsViewer<'_>,
    ns: &str,
    name: &str,
    version: Option<String>,
) -> Result<(), Failed> {
    match api
        .delete::<RoleBinding>(Some(ns), name, version.as_deref())
        .await
    {
        Ok(()) | Err(ViewerError::NotFound(_)) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// `binding` as a new object named `name`: the fields the API server stamps cleared.
fn fresh(mut binding: RoleBinding, name: &str) -> RoleBinding {
    binding.metadata.name = Some(name.to_string());
    binding.metadata.uid = None;
    binding.metadata.creation_timestamp = None;
    binding.metadata.resource_version = None;
    binding
}

/// The first of `ROLE-0`, `ROLE-1`, ... that no binding of `bindings` is named.
fn free_name(bindings: &[RoleBinding], role: &str) -> String {
    (0..)
        .map(|n| format!("{role}-{n}"))
        .find(|name| {
            !bindings
                .iter()
                .any(|b| b.metadata.name.as_deref() == Some(name))
        })
        .unwrap_or_else(|| role.to_string())
}

/// The roles and bindings bearing on `ns` that the viewer may read: the namespace's Roles and
/// RoleBindings, the ClusterRoles (regate's defaults when the cluster's may not be read), and
/// the ClusterRoleBindings. RBAC only adds, so a grant found in part of it is a grant; a grant
/// may be missing, which the returned note says.
async fn read_policy(api: &AsViewer<'_>, ns: &str) -> Result<(Held, Option<String>), Refused> {
    let (cluster_roles_read, cluster_bindings, roles, bindings) = tokio::join!(
        api.list::<ClusterRole>(None),
        api.list::<ClusterRoleBinding>(None),
        list_in::<Role>(api, ns),
        list_in::<RoleBinding>(api, ns),
    );
    let mut missing = Vec::new();
    let bindings = readable(bindings, "rolebindings", ns)?
        .map_err(|why| Refused::NotFound(format!("no namespace {ns:?} you may see: {why}")))?;
    let cluster_roles_read =
        readable(cluster_roles_read, "clusterroles", ns)?.unwrap_or_else(|_| {
            missing.push("ClusterRoles (regate's default roles are shown instead)");
            cluster_roles()
        });
    let cluster_bindings =
        readable(cluster_bindings, "clusterrolebindings", ns)?.unwrap_or_else(|_| {
            missing.push("ClusterRoleBindings (grants in every namespace are not shown)");
            Vec::new()
        });
    let roles = readable(roles, "roles", ns)?.unwrap_or_else(|_| {
        missing.push("Roles of this namespace");
        Vec::new()
    });
    let partial =
        (!missing.is_empty()).then(|| format!("You may not read {}.", missing.join(", nor ")));
    let policy = Policy::new(cluster_roles_read, roles, cluster_bindings, bindings);
    Ok((Held::Read(Box::new(policy)), partial))
}

/// The objects of kind `K` in `ns`; none for no namespace (a cluster-scoped decision).
async fn list_in<K>(api: &AsViewer<'_>, ns: &str) -> Result<Vec<K>, ViewerError>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if ns.is_empty() {
        return Ok(Vec::new());
    }
    api.list(Some(ns)).await
}

/// A list the viewer read, or (inner `Err`) why they may not read it; other failures refuse the
/// page.
fn readable<T>(
    listed: Result<Vec<T>, ViewerError>,
    what: &str,
    ns: &str,
) -> Result<Result<Vec<T>, String>, Refused> {
    match listed {
        Ok(list) => Ok(Ok(list)),
        Err(ViewerError::Forbidden(_)) => Ok(Err(format!("you may not list {what} in {ns}"))),
        Err(error) => Err(refused(error)),
    }
}

/// A failed request made as the viewer, as the console answers it.
fn refused(error: ViewerError) -> Refused {
    match error {
        ViewerError::Unauthorized(message) => Refused::SignIn(Some(format!(
            "Your session ended: {message}. Sign in with a valid token."
        ))),
        ViewerError::Forbidden(message) => Refused::Forbidden(message),
        ViewerError::NotFound(message) => Refused::NotFound(message),
        ViewerError::Conflict(message) | ViewerError::Refused(message) => {
            Refused::BadRequest(message)
        }
        ViewerError::Unavailable { .. } => {
            // Failing closed: the cause goes to the log, never to the page.
            tracing::warn!(%error, "console: the Kubernetes API could not answer");
            Refused::Unavailable
        }
    }
}
