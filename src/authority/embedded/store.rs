//! The state directory: Kubernetes-style YAML objects, one object per file, readable and editable
//! by hand.
//!
//! ```text
//! STATE/signing.key                                  token key (token::Signer), mode 0600
//! STATE/cluster/clusterroles/NAME.yaml               rbac.authorization.k8s.io/v1 ClusterRole
//! STATE/cluster/clusterrolebindings/NAME.yaml        rbac.authorization.k8s.io/v1 ClusterRoleBinding
//! STATE/cluster/users/NAME.yaml                      user.openshift.io/v1 User
//! STATE/namespaces/NS/namespace.yaml                 v1 Namespace
//! STATE/namespaces/NS/serviceaccounts/NAME.yaml      v1 ServiceAccount
//! STATE/namespaces/NS/roles/NAME.yaml                rbac.authorization.k8s.io/v1 Role
//! STATE/namespaces/NS/rolebindings/NAME.yaml         rbac.authorization.k8s.io/v1 RoleBinding
//! STATE/namespaces/NS/secrets/NAME.yaml              v1 Secret (docker config types only)
//! ```
//!
//! This module owns the layout, the [`Store`] writers open, and the primitives they and the
//! reader use; reading the whole directory ([`super::snapshot::load`]) and change detection are
//! in [`super::snapshot`], the operations the CLI runs in [`super::ops`]. Consistency rests on
//! three rules:
//!
//! - every file is replaced atomically (temporary file in the same directory, fsync, rename), so
//!   a reader sees a file whole, old or new;
//! - writers hold an exclusive lock of `STATE/.lock` around each read-modify-write and
//!   [`super::snapshot::load`] holds a shared one, so a snapshot never sees half of a multi-file change made by the CLI;
//! - a namespace exists exactly when its `namespace.yaml` does: it is written after the
//!   namespace's other objects and removed before them, so even a hand-made copy or a crash
//!   never shows a namespace without its service accounts and bindings.
//!
//! Files and directories whose name starts with `.` (the lock, temporary files, editor swap
//! files) and files not ending in `.yaml` are ignored.

mod files;

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::bootstrap;
use crate::shell::CommandLine;
use crate::token::Signer;
use crate::token::TokenError;
pub(crate) use files::{
    check_identity, create_private_dir, exists, is_hidden, namespace_dirs, object_file,
    read_object, read_objects, remove_file, stamp, write_object,
};

/// `regate create namespace NAMESPACE`, quoted for the shell: the fix named wherever a
/// namespace is missing.
pub(crate) fn create_namespace_command(namespace: &str) -> String {
    CommandLine::new(&["regate", "create", "namespace"])
        .arg(namespace)
        .to_string()
}

/// `apiVersion` of [`User`].
pub const USER_API_VERSION: &str = "user.openshift.io/v1";
/// `kind` of [`User`].
pub const USER_KIND: &str = "User";

impl StoreError {
    /// Whether it says an object the command named does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            StoreError::NamespaceNotFound { .. }
                | StoreError::ServiceAccountNotFound { .. }
                | StoreError::UserNotFound { .. }
                | StoreError::RoleNotFound { .. }
        )
    }
}

/// Why the state directory could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file or directory could not be read or written.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The failure; in the message, not the error chain, so `{:#}` says it once.
        error: io::Error,
    },
    /// A state file does not parse, or holds another object than its place in the layout says.
    #[error("{}: {reason}", location(path, *line, *column))]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem, when known.
        line: Option<usize>,
        /// 1-based column of the problem, when known.
        column: Option<usize>,
        /// What is wrong and, where it helps, how to fix it.
        reason: String,
    },
    /// The signing key could not be read or created, or a token not signed.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// An object to create already exists.
    #[error("{kind} {name:?} already exists{}", in_namespace(namespace.as_deref()))]
    AlreadyExists {
        /// e.g. `namespace`, `serviceaccount`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// Its namespace, for namespaced objects.
        namespace: Option<String>,
    },
    /// The namespace does not exist.
    #[error(
        "namespace {namespace:?} not found{suggestion}; create it with: {}",
        create_namespace_command(.namespace)
    )]
    NamespaceNotFound {
        /// The namespace.
        namespace: String,
        /// `; did you mean ...?` naming close matches, or nothing.
        suggestion: String,
    },
    /// The service account does not exist.
    #[error(
        "serviceaccount {name:?} not found in namespace {namespace:?}{suggestion}; create it with: {}",
        CommandLine::new(&["regate", "create", "serviceaccount"]).arg(.name).option("-n", .namespace)
    )]
    ServiceAccountNotFound {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// `; did you mean ...?` naming close matches, or nothing.
        suggestion: String,
    },
    /// The user does not exist.
    #[error(
        "user {name:?} not found{suggestion}; create it with: {}",
        CommandLine::new(&["regate", "create", "user"]).arg(.name)
    )]
    UserNotFound {
        /// The user name.
        name: String,
        /// `; did you mean ...?` naming close matches, or nothing.
        suggestion: String,
    },
    /// No ClusterRole of that name.
    #[error(
        "clusterrole {name:?} not found{suggestion} (no file {}); built-in roles: {}; to define it, write a ClusterRole to that file",
        path.display(),
        builtin_roles()
    )]
    RoleNotFound {
        /// The role name.
        name: String,
        /// `; did you mean ...?` naming close matches, or nothing.
        suggestion: String,
        /// Where it would be.
        path: PathBuf,
    },
    /// Nothing to remove: no binding of the role names the subjects.
    #[error("no {binding_kind}{} binds clusterrole {role:?} to {subjects}", in_namespace(namespace.as_deref()))]
    NotBound {
        /// `RoleBinding` or `ClusterRoleBinding`.
        binding_kind: &'static str,
        /// The namespace of RoleBindings.
        namespace: Option<String>,
        /// The role.
        role: String,
        /// The subjects, as given.
        subjects: String,
    },
    /// A name that cannot be an object name (or a file name).
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        /// e.g. `namespace`.
        kind: &'static str,
        /// The name given.
        name: String,
        /// The rule it breaks.
        reason: String,
    },
    /// An object could not be written as YAML (a bug: every object is serialisable).
    #[error("cannot write {}: {source}", path.display())]
    Serialize {
        /// The file it was meant for.
        path: PathBuf,
        /// The failure.
        #[source]
        source: serde_yaml::Error,
    },
}

fn location(path: &Path, line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!("{}:{line}:{column}", path.display()),
        (Some(line), None) => format!("{}:{line}", path.display()),
        _ => path.display().to_string(),
    }
}

fn in_namespace(namespace: Option<&str>) -> String {
    namespace
        .map(|ns| format!(" in namespace {ns:?}"))
        .unwrap_or_default()
}

fn builtin_roles() -> String {
    super::bootstrap::cluster_roles()
        .iter()
        .filter_map(|r| r.metadata.name.clone())
        .collect::<Vec<_>>()
        .join(", ")
}

/// An `io::Error` on `path` as a [`StoreError`].
pub(crate) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |error| StoreError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// An OpenShift `User` (`user.openshift.io/v1`); k8s-openapi has no type for it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// `user.openshift.io/v1`.
    #[serde(default)]
    pub api_version: String,
    /// `User`.
    #[serde(default)]
    pub kind: String,
    /// Name, uid, creation time.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Groups the user is in, besides the implicit `system:authenticated`.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl User {
    /// A user named `name` in `groups`, not yet stamped with a uid.
    pub fn new(name: &str, groups: Vec<String>) -> Self {
        User {
            api_version: USER_API_VERSION.to_string(),
            kind: USER_KIND.to_string(),
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..ObjectMeta::default()
            },
            groups,
        }
    }
}

/// An object kept in the state directory.
pub(crate) trait StateObject: Serialize + DeserializeOwned {
    /// Its `apiVersion`.
    const API_VERSION: &'static str;
    /// Its `kind`.
    const KIND: &'static str;
    /// Its metadata.
    fn meta(&self) -> &ObjectMeta;
    /// Its metadata, to stamp or normalise.
    fn meta_mut(&mut self) -> &mut ObjectMeta;
}

macro_rules! state_object {
    ($ty:ty, $api_version:expr, $kind:expr) => {
        impl StateObject for $ty {
            const API_VERSION: &'static str = $api_version;
            const KIND: &'static str = $kind;
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
    ($($ty:ty),*) => {$(
        state_object!(
            $ty,
            <$ty as k8s_openapi::Resource>::API_VERSION,
            <$ty as k8s_openapi::Resource>::KIND
        );
    )*};
}

state_object!(
    Namespace,
    ServiceAccount,
    ClusterRole,
    Role,
    ClusterRoleBinding,
    RoleBinding,
    Secret
);
state_object!(User, USER_API_VERSION, USER_KIND);

/// Where each object lives in a state directory.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout of the state directory `root`.
    pub fn new(root: &Path) -> Self {
        Layout {
            root: root.to_path_buf(),
        }
    }

    /// The state directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The token signing key.
    pub fn signing_key(&self) -> PathBuf {
        self.root.join("signing.key")
    }

    /// The writers' lock file.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join(".lock")
    }

    /// The change marker every writer grows when it lets go of the lock (hidden, so loads and
    /// fingerprints ignore it).
    pub fn change_marker(&self) -> PathBuf {
        self.root.join(".changes")
    }

    /// Directory of ClusterRoles.
    pub fn cluster_roles(&self) -> PathBuf {
        self.root.join("cluster/clusterroles")
    }

    /// Directory of ClusterRoleBindings.
    pub fn cluster_role_bindings(&self) -> PathBuf {
        self.root.join("cluster/clusterrolebindings")
    }

    /// Directory of Users.
    pub fn users(&self) -> PathBuf {
        self.root.join("cluster/users")
    }

    /// Directory holding one directory per namespace.
    pub fn namespaces(&self) -> PathBuf {
        self.root.join("namespaces")
    }

    /// The directory of namespace `ns`.
    pub fn namespace_dir(&self, ns: &str) -> PathBuf {
        self.namespaces().join(ns)
    }

    /// The Namespace object of `ns`; the namespace exists when this file does.
    pub fn namespace_file(&self, ns: &str) -> PathBuf {
        self.namespace_dir(ns).join("namespace.yaml")
    }

    /// Directory of the service accounts of `ns`.
    pub fn service_accounts(&self, ns: &str) -> PathBuf {
        self.namespace_dir(ns).join("serviceaccounts")
    }

    /// Directory of the Roles of `ns`.
    pub fn roles(&self, ns: &str) -> PathBuf {
        self.namespace_dir(ns).join("roles")
    }

    /// Directory of the RoleBindings of `ns`.
    pub fn role_bindings(&self, ns: &str) -> PathBuf {
        self.namespace_dir(ns).join("rolebindings")
    }

    /// Directory of the Secrets of `ns`.
    pub fn secrets(&self, ns: &str) -> PathBuf {
        self.namespace_dir(ns).join("secrets")
    }
}

/// A state directory opened for changes.
#[derive(Debug)]
pub struct Store {
    pub(super) layout: Layout,
    pub(super) signer: Signer,
    /// When set, changes are checked and reported but nothing is written.
    pub(super) dry_run: bool,
}

impl Store {
    /// Opens the state directory `dir` for changes: creates it (mode 0700) and its signing key
    /// when missing, and creates any missing bootstrap ClusterRole (as OpenShift reconciles its
    /// bootstrap policy at start; existing roles, edited or not, are left alone).
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let store = Store::open_without_bootstrap(dir)?;
        let _lock = store.lock()?;
        store.write_missing_bootstrap_roles()?;
        Ok(store)
    }

    /// Opens the state directory like [`Store::open`] but leaves creating missing bootstrap
    /// ClusterRoles to the caller ([`Store::apply`] does it after applying, so that applying a
    /// saved copy of them restores their uids).
    pub fn open_without_bootstrap(dir: &Path) -> Result<Store, StoreError> {
        create_private_dir(dir)?;
        let layout = Layout::new(dir);
        let signer = Signer::load_or_create(&layout.signing_key())?;
        Ok(Store {
            layout,
            signer,
            dry_run: false,
        })
    }

    /// Creates the bootstrap ClusterRoles that are missing; the caller holds the lock.
    pub(super) fn write_missing_bootstrap_roles(&self) -> Result<(), StoreError> {
        for mut role in bootstrap::cluster_roles() {
            let name = role.metadata.name.clone().unwrap_or_default();
            let path = object_file(&self.layout.cluster_roles(), &name);
            if !exists(&path)? {
                stamp(&mut role.metadata);
                self.write(&path, &role)?;
            }
        }
        Ok(())
    }

    /// The state directory's layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The same store, checking changes without writing them when `dry_run` is set.
    pub fn with_dry_run(mut self, dry_run: bool) -> Store {
        self.dry_run = dry_run;
        self
    }

    /// Whether changes are only checked, not written.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// Takes the writers' lock, held until the file is dropped.
    pub(super) fn lock(&self) -> Result<WriteLock, StoreError> {
        lock_exclusive(&self.layout)
    }

    /// Writes `object` to `path`, unless this is a dry run.
    pub(super) fn write<T: StateObject>(&self, path: &Path, object: &T) -> Result<(), StoreError> {
        if self.dry_run {
            return Ok(());
        }
        write_object(path, object)
    }

    /// Removes the file `path`, unless this is a dry run.
    pub(super) fn remove(&self, path: &Path) -> Result<(), StoreError> {
        if self.dry_run {
            return Ok(());
        }
        remove_file(path)
    }

    /// Removes the directory `dir` and everything in it, unless this is a dry run.
    pub(super) fn remove_dir(&self, dir: &Path) -> Result<(), StoreError> {
        if self.dry_run {
            return Ok(());
        }
        std::fs::remove_dir_all(dir).map_err(io_error(dir))
    }
}

/// The writers' exclusive lock. Released when dropped, after one byte is appended to the
/// change marker: a running server watches it (`marker.rs`) and reloads before its next
/// authentication or decision, so a change the CLI made is in force on the next request.
pub(crate) struct WriteLock {
    _file: File,
    marker: PathBuf,
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        // The marker only hurries a reload; the reloader's polling stays the fallback, so an
        // error here costs a quarter of a second at most and is not worth failing the change.
        let _ = bump_marker(&self.marker);
    }
}

/// Grows the change marker by one byte (starting again when it reaches 1 MiB: the inode and
/// time change with it, so a reader still sees a new stamp).
fn bump_marker(marker: &Path) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(marker)?;
    if file.metadata()?.len() >= 1 << 20 {
        file.set_len(0)?;
    }
    file.write_all(b".")
}

/// Takes the writers' exclusive lock; it is released when the returned guard is dropped.
/// Locks are per open file, so threads of one process exclude each other as processes do.
pub(crate) fn lock_exclusive(layout: &Layout) -> Result<WriteLock, StoreError> {
    let path = layout.lock_file();
    Ok(WriteLock {
        _file: crate::fs::lock_exclusive(&path).map_err(io_error(&path))?,
        marker: layout.change_marker(),
    })
}

/// Takes the readers' shared lock, if the lock file exists (no writer has run otherwise);
/// released when the returned file is dropped.
pub(crate) fn lock_shared(layout: &Layout) -> Result<Option<File>, StoreError> {
    let path = layout.lock_file();
    crate::fs::lock_shared(&path).map_err(io_error(&path))
}

#[cfg(test)]
mod tests;
