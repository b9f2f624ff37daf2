//! The changes an operator makes to the state directory, as `kubectl create`/`delete` and
//! `oc policy` make them to a cluster: namespaces, service accounts, users, role bindings,
//! tokens.
//!
//! Every change runs under the writers' lock (see [`super::store`]), so concurrent CLI processes
//! never lose each other's changes.

mod rolebindings;
mod secrets;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::bootstrap::{self, RBAC_GROUP, cluster_role_ref};
use super::object::{
    Object, validate_dns_label, validate_dns_subdomain, validate_path_segment, validate_user_name,
};
use super::store::{
    StateObject, Store, StoreError, User, exists, object_file, read_object, read_objects, stamp,
};
use crate::identity::{service_account_of, service_account_user};
use crate::policy::{CLUSTER_ROLE_KIND, GROUP_KIND, SERVICE_ACCOUNT_KIND, USER_KIND};
use crate::suggest::did_you_mean;
use crate::token::Issued;
pub use rolebindings::{BindingError, FieldError, check_role_binding, resource_version};
pub use secrets::{LinkFor, SecretError};

/// Someone a role can be bound to, as `oc policy` names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubjectRef {
    /// A user, by name.
    User(String),
    /// A group, by name.
    Group(String),
    /// A service account.
    ServiceAccount {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
}

impl SubjectRef {
    /// A SUBJECT of `add-role-to-user`: `system:serviceaccount:NS:NAME` names a service account
    /// (as `oc` reads it), anything else a user.
    pub fn user(name: &str) -> Self {
        match service_account_of(name) {
            Some((namespace, name)) => SubjectRef::ServiceAccount {
                namespace: namespace.to_string(),
                name: name.to_string(),
            },
            None => SubjectRef::User(name.to_string()),
        }
    }

    /// The RBAC subject.
    pub fn to_subject(&self) -> Subject {
        match self {
            SubjectRef::User(name) => Subject {
                api_group: Some(RBAC_GROUP.to_string()),
                kind: USER_KIND.to_string(),
                name: name.clone(),
                namespace: None,
            },
            SubjectRef::Group(name) => Subject {
                api_group: Some(RBAC_GROUP.to_string()),
                kind: GROUP_KIND.to_string(),
                name: name.clone(),
                namespace: None,
            },
            SubjectRef::ServiceAccount { namespace, name } => Subject {
                api_group: None,
                kind: SERVICE_ACCOUNT_KIND.to_string(),
                name: name.clone(),
                namespace: Some(namespace.clone()),
            },
        }
    }

    /// Whether `subject`, in a binding of namespace `binding_ns` ("" for a cluster binding),
    /// names this subject. A ServiceAccount subject without namespace is of the binding's.
    fn is(&self, subject: &Subject, binding_ns: &str) -> bool {
        let wanted = self.to_subject();
        let namespace_of = |s: &Subject| {
            s.namespace
                .clone()
                .filter(|ns| !ns.is_empty())
                .or_else(|| (s.kind == SERVICE_ACCOUNT_KIND).then(|| binding_ns.to_string()))
        };
        subject.kind == wanted.kind
            && subject.name == wanted.name
            && namespace_of(subject) == namespace_of(&wanted)
    }
}

impl fmt::Display for SubjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectRef::User(name) | SubjectRef::Group(name) => f.write_str(name),
            SubjectRef::ServiceAccount { namespace, name } => {
                f.write_str(&service_account_user(namespace, name))
            }
        }
    }
}

/// What RoleBinding and ClusterRoleBinding share, so that adding and removing subjects is
/// written once for both.
trait Binding: StateObject + Clone {
    /// `RoleBinding` or `ClusterRoleBinding`, for messages.
    const BINDING_KIND: &'static str;
    /// A binding with no subjects yet.
    fn new(meta: ObjectMeta, role_ref: RoleRef) -> Self;
    /// The role it grants.
    fn role_ref(&self) -> &RoleRef;
    /// Its subjects.
    fn subjects(&self) -> &[Subject];
    /// Its subjects, to change.
    fn subjects_mut(&mut self) -> &mut Option<Vec<Subject>>;
}

macro_rules! binding {
    ($ty:ty) => {
        impl Binding for $ty {
            const BINDING_KIND: &'static str = <$ty as StateObject>::KIND;
            fn new(metadata: ObjectMeta, role_ref: RoleRef) -> Self {
                Self {
                    metadata,
                    role_ref,
                    subjects: None,
                }
            }
            fn role_ref(&self) -> &RoleRef {
                &self.role_ref
            }
            fn subjects(&self) -> &[Subject] {
                self.subjects.as_deref().unwrap_or_default()
            }
            fn subjects_mut(&mut self) -> &mut Option<Vec<Subject>> {
                &mut self.subjects
            }
        }
    };
}
binding!(RoleBinding);
binding!(ClusterRoleBinding);

fn is_binding_of(binding: &impl Binding, role: &str) -> bool {
    let role_ref = binding.role_ref();
    role_ref.kind == CLUSTER_ROLE_KIND && role_ref.name == role
}

impl Store {
    /// Creates namespace `ns` with its service accounts and bindings (docs/behaviour.md §7); fails if
    /// it exists.
    pub fn create_namespace(&self, ns: &str) -> Result<(), StoreError> {
        self.create_namespace_objects(ns).map(drop)
    }

    /// [`Store::create_namespace`], returning the objects written (or, in a dry run, that
    /// would be): the namespace, then its service accounts and bindings.
    pub fn create_namespace_objects(&self, ns: &str) -> Result<Vec<Object>, StoreError> {
        validate_dns_label("namespace", ns)?;
        let _lock = self.lock()?;
        let file = self.layout.namespace_file(ns);
        if exists(&file)? {
            return Err(already_exists("namespace", ns, None));
        }
        let dir = self.layout.namespace_dir(ns);
        // Leftovers of an interrupted delete belong to no namespace; they must not come back.
        if exists(&dir)? {
            self.remove_dir(&dir)?;
        }
        let objects = bootstrap::namespace_objects(ns);
        let mut written = Vec::new();
        for mut sa in objects.service_accounts {
            let name = sa.metadata.name.clone().unwrap_or_default();
            stamp(&mut sa.metadata);
            self.write(&object_file(&self.layout.service_accounts(ns), &name), &sa)?;
            written.push(Object::ServiceAccount(sa));
        }
        for mut binding in objects.role_bindings {
            let name = binding.metadata.name.clone().unwrap_or_default();
            stamp(&mut binding.metadata);
            self.write(
                &object_file(&self.layout.role_bindings(ns), &name),
                &binding,
            )?;
            written.push(Object::RoleBinding(binding));
        }
        // Last: the namespace exists for readers only once everything above does.
        let mut namespace = objects.namespace;
        stamp(&mut namespace.metadata);
        self.write(&file, &namespace)?;
        written.insert(0, Object::Namespace(namespace));
        Ok(written)
    }

    /// Deletes namespace `ns` and everything in it; its service accounts' tokens stop working.
    pub fn delete_namespace(&self, ns: &str) -> Result<(), StoreError> {
        validate_path_segment("namespace", ns)?;
        let _lock = self.lock()?;
        self.require_namespace(ns)?;
        // First: from here on the namespace, and with it every object in it, is gone for readers.
        self.remove(&self.layout.namespace_file(ns))?;
        let dir = self.layout.namespace_dir(ns);
        self.remove_dir(&dir)
    }

    /// Creates service account `name` in `ns`.
    pub fn create_service_account(&self, ns: &str, name: &str) -> Result<(), StoreError> {
        self.create_service_account_object(ns, name).map(drop)
    }

    /// [`Store::create_service_account`], returning the service account written.
    pub fn create_service_account_object(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<ServiceAccount, StoreError> {
        validate_path_segment("namespace", ns)?;
        validate_dns_subdomain("serviceaccount", name)?;
        let _lock = self.lock()?;
        self.require_namespace(ns)?;
        let path = self.service_account_file(ns, name);
        if exists(&path)? {
            return Err(already_exists("serviceaccount", name, Some(ns)));
        }
        let mut sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(ns.to_string()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        stamp(&mut sa.metadata);
        self.write(&path, &sa)?;
        Ok(sa)
    }

    /// Deletes service account `name` of `ns`; its tokens stop working.
    pub fn delete_service_account(&self, ns: &str, name: &str) -> Result<(), StoreError> {
        validate_path_segment("namespace", ns)?;
        validate_path_segment("serviceaccount", name)?;
        let _lock = self.lock()?;
        self.require_service_account(ns, name)?;
        self.remove(&self.service_account_file(ns, name))
    }

    /// Creates user `name` in `groups`.
    pub fn create_user(&self, name: &str, groups: &[String]) -> Result<(), StoreError> {
        self.create_user_object(name, groups).map(drop)
    }

    /// [`Store::create_user`], returning the user written.
    pub fn create_user_object(&self, name: &str, groups: &[String]) -> Result<User, StoreError> {
        validate_user_name(name)?;
        let mut unique: Vec<String> = Vec::new();
        for group in groups {
            if group.trim().is_empty() {
                return Err(StoreError::InvalidName {
                    kind: "group",
                    name: group.clone(),
                    reason: "a group name may not be empty".into(),
                });
            }
            if !unique.contains(group) {
                unique.push(group.clone());
            }
        }
        let _lock = self.lock()?;
        let path = object_file(&self.layout.users(), name);
        if exists(&path)? {
            return Err(already_exists("user", name, None));
        }
        let mut user = User::new(name, unique);
        stamp(&mut user.metadata);
        self.write(&path, &user)?;
        Ok(user)
    }

    /// Deletes user `name`; its tokens stop working.
    pub fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        validate_path_segment("user", name)?;
        let _lock = self.lock()?;
        let path = object_file(&self.layout.users(), name);
        if !exists(&path)? {
            return Err(StoreError::UserNotFound {
                name: name.to_string(),
                suggestion: close_names(&self.layout.users(), name),
            });
        }
        self.remove(&path)
    }

    /// Binds ClusterRole `role` to `subjects` in namespace `ns`, as `oc policy add-role-to-user`
    /// (see [`Store::add_cluster_role`] for how the binding is chosen).
    pub fn add_role(
        &self,
        ns: &str,
        role: &str,
        subjects: &[SubjectRef],
    ) -> Result<(), StoreError> {
        validate_path_segment("namespace", ns)?;
        validate_path_segment("clusterrole", role)?;
        let _lock = self.lock()?;
        self.require_namespace(ns)?;
        self.require_role(role)?;
        self.require_subjects(subjects)?;
        add_subjects::<RoleBinding>(
            self,
            &self.layout.role_bindings(ns),
            Some(ns),
            role,
            subjects,
        )
    }

    /// Removes `subjects` from every RoleBinding of ClusterRole `role` in `ns`, deleting bindings
    /// left without subjects, as `oc policy remove-role-from-user`. Removing a subject that no
    /// binding names is an error, as in `oc`.
    pub fn remove_role(
        &self,
        ns: &str,
        role: &str,
        subjects: &[SubjectRef],
    ) -> Result<(), StoreError> {
        validate_path_segment("namespace", ns)?;
        let _lock = self.lock()?;
        self.require_namespace(ns)?;
        remove_subjects::<RoleBinding>(
            self,
            &self.layout.role_bindings(ns),
            Some(ns),
            role,
            subjects,
        )
    }

    /// Binds ClusterRole `role` to `subjects` cluster-wide, as `oc adm policy
    /// add-cluster-role-to-user`. Nothing changes when one binding of the role already names
    /// every subject; otherwise the subjects are added to the binding named after the role
    /// (`ROLE`, or `ROLE-0`, `ROLE-1`, ... when that name is taken by a binding of another
    /// role), which is created if needed.
    pub fn add_cluster_role(&self, role: &str, subjects: &[SubjectRef]) -> Result<(), StoreError> {
        validate_path_segment("clusterrole", role)?;
        let _lock = self.lock()?;
        self.require_role(role)?;
        self.require_subjects(subjects)?;
        add_subjects::<ClusterRoleBinding>(
            self,
            &self.layout.cluster_role_bindings(),
            None,
            role,
            subjects,
        )
    }

    /// Removes `subjects` from every ClusterRoleBinding of `role`, as
    /// `oc adm policy remove-cluster-role-from-user`.
    pub fn remove_cluster_role(
        &self,
        role: &str,
        subjects: &[SubjectRef],
    ) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        remove_subjects::<ClusterRoleBinding>(
            self,
            &self.layout.cluster_role_bindings(),
            None,
            role,
            subjects,
        )
    }

    /// An API token for service account `name` of `ns`, valid for `lifetime`.
    pub fn create_service_account_token(
        &self,
        ns: &str,
        name: &str,
        lifetime: Duration,
    ) -> Result<Issued, StoreError> {
        validate_path_segment("namespace", ns)?;
        validate_path_segment("serviceaccount", name)?;
        self.require_namespace(ns)?;
        let path = self.service_account_file(ns, name);
        let sa: ServiceAccount =
            read_object(&path)?.ok_or_else(|| StoreError::ServiceAccountNotFound {
                namespace: ns.to_string(),
                name: name.to_string(),
                suggestion: close_names(&self.layout.service_accounts(ns), name),
            })?;
        let uid = required_uid(&path, sa.metadata.uid)?;
        Ok(self
            .signer
            .issue_api_token(&service_account_user(ns, name), &uid, lifetime)?)
    }

    /// An API token for user `name`, valid for `lifetime`.
    pub fn create_user_token(&self, name: &str, lifetime: Duration) -> Result<Issued, StoreError> {
        validate_path_segment("user", name)?;
        let path = object_file(&self.layout.users(), name);
        let user: User = read_object(&path)?.ok_or_else(|| StoreError::UserNotFound {
            name: name.to_string(),
            suggestion: close_names(&self.layout.users(), name),
        })?;
        let uid = required_uid(&path, user.metadata.uid)?;
        Ok(self.signer.issue_api_token(name, &uid, lifetime)?)
    }

    fn service_account_file(&self, ns: &str, name: &str) -> PathBuf {
        object_file(&self.layout.service_accounts(ns), name)
    }

    fn require_namespace(&self, ns: &str) -> Result<(), StoreError> {
        let file = self.layout.namespace_file(ns);
        match read_object::<Namespace>(&file)? {
            Some(_) => Ok(()),
            None => Err(StoreError::NamespaceNotFound {
                namespace: ns.to_string(),
                suggestion: close_names(&self.layout.namespaces(), ns),
            }),
        }
    }

    fn require_service_account(&self, ns: &str, name: &str) -> Result<(), StoreError> {
        self.require_namespace(ns)?;
        if exists(&self.service_account_file(ns, name))? {
            Ok(())
        } else {
            Err(StoreError::ServiceAccountNotFound {
                namespace: ns.to_string(),
                name: name.to_string(),
                suggestion: close_names(&self.layout.service_accounts(ns), name),
            })
        }
    }

    fn require_role(&self, role: &str) -> Result<(), StoreError> {
        let path = object_file(&self.layout.cluster_roles(), role);
        match read_object::<ClusterRole>(&path)? {
            Some(_) => Ok(()),
            None => Err(StoreError::RoleNotFound {
                name: role.to_string(),
                suggestion: close_names(&self.layout.cluster_roles(), role),
                path,
            }),
        }
    }

    /// Service accounts must exist to be bound (a typo would otherwise grant nothing, silently);
    /// users and groups need not, as in `oc` (they may come from elsewhere).
    fn require_subjects(&self, subjects: &[SubjectRef]) -> Result<(), StoreError> {
        for subject in subjects {
            if let SubjectRef::ServiceAccount { namespace, name } = subject {
                validate_path_segment("namespace", namespace)?;
                validate_path_segment("serviceaccount", name)?;
                self.require_service_account(namespace, name)?;
            }
        }
        Ok(())
    }
}

/// `; did you mean ...?` naming the objects in `dir` (files `NAME.yaml`, or directories) close
/// to `wanted`; nothing when none is close or `dir` cannot be read.
fn close_names(dir: &Path, wanted: &str) -> String {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return String::new();
    };
    let names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| !n.starts_with('.'))
        .map(|n| n.strip_suffix(".yaml").map(str::to_string).unwrap_or(n))
        .collect();
    did_you_mean(wanted, names.iter().map(String::as_str))
}

fn already_exists(kind: &'static str, name: &str, namespace: Option<&str>) -> StoreError {
    StoreError::AlreadyExists {
        kind,
        name: name.to_string(),
        namespace: namespace.map(str::to_string),
    }
}

fn required_uid(path: &Path, uid: Option<String>) -> Result<String, StoreError> {
    uid.filter(|uid| !uid.is_empty())
        .ok_or_else(|| StoreError::Parse {
            path: path.to_path_buf(),
            line: None,
            column: None,
            reason: "metadata.uid is missing; tokens are bound to it. Add a unique metadata.uid \
                     (e.g. from `uuidgen`) or delete and recreate the object"
                .into(),
        })
}

/// Adds `subjects` to a binding of `role` in `dir` (see [`Store::add_cluster_role`]).
fn add_subjects<B: Binding>(
    store: &Store,
    dir: &Path,
    namespace: Option<&str>,
    role: &str,
    subjects: &[SubjectRef],
) -> Result<(), StoreError> {
    let bindings: Vec<B> = read_objects(dir, namespace)?;
    match with_subjects(&bindings, namespace, role, subjects) {
        None => Ok(()),
        Some(binding) => {
            let name = binding.meta().name.clone().unwrap_or_default();
            store.write(&object_file(dir, &name), &binding)
        }
    }
}

/// The binding that adding `subjects` to `role` among `bindings` writes, chosen as
/// [`Store::add_cluster_role`] says; `None` when one binding of the role names them all.
fn with_subjects<B: Binding>(
    bindings: &[B],
    namespace: Option<&str>,
    role: &str,
    subjects: &[SubjectRef],
) -> Option<B> {
    let binding_ns = namespace.unwrap_or_default();
    // As oc: nothing to do when one binding of the role already names every subject.
    let already_bound = bindings.iter().any(|b| {
        is_binding_of(b, role)
            && subjects
                .iter()
                .all(|s| b.subjects().iter().any(|p| s.is(p, binding_ns)))
    });
    if already_bound {
        return None;
    }

    let mut name = role.to_string();
    let mut suffix = 0;
    loop {
        let existing = bindings
            .iter()
            .find(|b| b.meta().name.as_deref() == Some(name.as_str()));
        let mut binding = match existing {
            Some(b) if is_binding_of(b, role) => b.clone(),
            Some(_) => {
                name = format!("{role}-{suffix}");
                suffix += 1;
                continue;
            }
            None => {
                let mut meta = ObjectMeta {
                    name: Some(name.clone()),
                    namespace: namespace.map(str::to_string),
                    ..ObjectMeta::default()
                };
                stamp(&mut meta);
                B::new(meta, cluster_role_ref(role))
            }
        };
        let present = binding.subjects_mut().get_or_insert_with(Vec::new);
        for subject in subjects {
            if !present.iter().any(|p| subject.is(p, binding_ns)) {
                present.push(subject.to_subject());
            }
        }
        return Some(binding);
    }
}

/// The RoleBinding of namespace `namespace` that `regate policy add-role-to-user ROLE SUBJECT`
/// writes, given the namespace's `bindings` (a new one, or one of them with the subjects
/// added); `None` when one binding of `role` already names every subject.
pub fn role_binding_with(
    bindings: &[RoleBinding],
    namespace: &str,
    role: &str,
    subjects: &[SubjectRef],
) -> Option<RoleBinding> {
    with_subjects(bindings, Some(namespace), role, subjects)
}

/// What removing subjects does to one binding.
#[derive(Clone, Debug, PartialEq)]
pub enum Removal<B> {
    /// Left with other subjects: written back without them.
    Replace(B),
    /// Left without subjects: deleted (by name), as `oc` does.
    Delete(String),
}

/// Removes `subjects` from every binding of `role` in `dir`.
fn remove_subjects<B: Binding>(
    store: &Store,
    dir: &Path,
    namespace: Option<&str>,
    role: &str,
    subjects: &[SubjectRef],
) -> Result<(), StoreError> {
    let bindings = read_objects::<B>(dir, namespace)?;
    for removal in without_subjects(bindings, namespace, role, subjects)? {
        match removal {
            Removal::Delete(name) => store.remove(&object_file(dir, &name))?,
            Removal::Replace(binding) => {
                let name = binding.meta().name.clone().unwrap_or_default();
                store.write(&object_file(dir, &name), &binding)?;
            }
        }
    }
    Ok(())
}

/// The changes removing `subjects` from every binding of `role` among `bindings` makes; an
/// error when no binding names any of them, as in `oc`.
fn without_subjects<B: Binding>(
    bindings: Vec<B>,
    namespace: Option<&str>,
    role: &str,
    subjects: &[SubjectRef],
) -> Result<Vec<Removal<B>>, StoreError> {
    let binding_ns = namespace.unwrap_or_default();
    let mut removals = Vec::new();
    for mut binding in bindings {
        if !is_binding_of(&binding, role) {
            continue;
        }
        let Some(present) = binding.subjects_mut().as_mut() else {
            continue;
        };
        let before = present.len();
        present.retain(|p| !subjects.iter().any(|s| s.is(p, binding_ns)));
        let left = present.len();
        if left == before {
            continue;
        }
        let name = binding.meta().name.clone().unwrap_or_default();
        // As oc: a binding left without subjects is deleted.
        removals.push(if left == 0 {
            Removal::Delete(name)
        } else {
            Removal::Replace(binding)
        });
    }
    if removals.is_empty() {
        return Err(StoreError::NotBound {
            binding_kind: B::BINDING_KIND,
            namespace: namespace.map(str::to_string),
            role: role.to_string(),
            subjects: subjects
                .iter()
                .map(|s| format!("{:?}", s.to_string()))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(removals)
}

/// What `regate policy remove-role-from-user ROLE SUBJECT -n NAMESPACE` does to the namespace's
/// `bindings`; an error when none of `role` names a subject.
pub fn role_bindings_without(
    bindings: Vec<RoleBinding>,
    namespace: &str,
    role: &str,
    subjects: &[SubjectRef],
) -> Result<Vec<Removal<RoleBinding>>, StoreError> {
    without_subjects(bindings, Some(namespace), role, subjects)
}

#[cfg(test)]
mod tests;
