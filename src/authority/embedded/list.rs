//! Read-only listing of the state directory: every object whole, as `regate get` shows it.
//!
//! [`super::load`] keeps only what the authority needs (policy, uids, groups); [`list`] keeps
//! the objects as stored, with their metadata, so they can be printed as tables or written back
//! out as YAML that `regate apply -f` takes. Objects come sorted by namespace, then name, so the
//! output is stable.

use std::fs;
use std::path::Path;

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};

use super::store::{
    Layout, StoreError, USER_API_VERSION, USER_KIND, User, io_error, lock_shared, namespace_dirs,
    read_object, read_objects,
};

/// Every object of the state directory, each list sorted by namespace, then name.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    /// Namespaces (only those whose `namespace.yaml` exists).
    pub namespaces: Vec<Namespace>,
    /// Service accounts of every namespace.
    pub service_accounts: Vec<ServiceAccount>,
    /// Roles of every namespace.
    pub roles: Vec<Role>,
    /// RoleBindings of every namespace.
    pub role_bindings: Vec<RoleBinding>,
    /// Secrets of every namespace (`namespaces/NS/secrets/NAME.yaml`).
    pub secrets: Vec<Secret>,
    /// ClusterRoles.
    pub cluster_roles: Vec<ClusterRole>,
    /// ClusterRoleBindings.
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    /// Users.
    pub users: Vec<User>,
}

/// Reads every object of the state directory `dir`, under the readers' lock so that a change a
/// CLI writer makes is seen whole or not at all. The first file that does not parse is an error
/// naming file, line and reason.
pub fn list(dir: &Path) -> Result<Objects, StoreError> {
    let layout = Layout::new(dir);
    fs::metadata(dir).map_err(io_error(dir))?;
    let _lock = lock_shared(&layout)?;

    let mut objects = Objects {
        cluster_roles: read_objects(&layout.cluster_roles(), None)?,
        cluster_role_bindings: read_objects(&layout.cluster_role_bindings(), None)?,
        users: read_objects(&layout.users(), None)?,
        ..Objects::default()
    };
    for user in &mut objects.users {
        // Files written by hand may leave these out; the output must say them for `apply`.
        if user.api_version.is_empty() {
            user.api_version = USER_API_VERSION.to_string();
        }
        if user.kind.is_empty() {
            user.kind = USER_KIND.to_string();
        }
    }
    for ns in namespace_dirs(&layout)? {
        let file = layout.namespace_file(&ns);
        // A directory without namespace.yaml is a namespace half created or half deleted.
        let Some(mut namespace) = read_object::<Namespace>(&file)? else {
            continue;
        };
        namespace.metadata.name.get_or_insert_with(|| ns.clone());
        objects.namespaces.push(namespace);
        objects
            .service_accounts
            .extend(read_objects::<ServiceAccount>(
                &layout.service_accounts(&ns),
                Some(&ns),
            )?);
        objects
            .roles
            .extend(read_objects::<Role>(&layout.roles(&ns), Some(&ns))?);
        objects.role_bindings.extend(read_objects::<RoleBinding>(
            &layout.role_bindings(&ns),
            Some(&ns),
        )?);
        objects
            .secrets
            .extend(read_objects::<Secret>(&layout.secrets(&ns), Some(&ns))?);
    }
    Ok(objects)
}

#[cfg(test)]
mod tests;
