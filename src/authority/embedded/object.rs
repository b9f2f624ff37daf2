//! The objects the state directory keeps ([`Object`], of a [`Kind`]) and the rules their names
//! follow. Both the operations the CLI runs ([`super::ops`]) and manifests ([`super::apply`])
//! build on this; neither imports the other for it.

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use std::path::PathBuf;

use super::store::{Layout, StateObject, StoreError, User, object_file};
use crate::suggest::did_you_mean;

/// A kind regate does not know, with close matches.
#[derive(Debug, thiserror::Error)]
#[error("unknown kind {kind:?}{suggestion}; kinds: {}", KINDS_HELP)]
pub struct UnknownKind {
    /// The kind given.
    pub kind: String,
    /// Close matches.
    pub suggestion: String,
}

const KINDS_HELP: &str = "namespace (ns), serviceaccount (sa), role, rolebinding, clusterrole, \
                          clusterrolebinding, secret, user";

/// The kinds of object the state directory keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// v1 Namespace.
    Namespace,
    /// rbac.authorization.k8s.io/v1 ClusterRole.
    ClusterRole,
    /// rbac.authorization.k8s.io/v1 ClusterRoleBinding.
    ClusterRoleBinding,
    /// user.openshift.io/v1 User.
    User,
    /// v1 ServiceAccount.
    ServiceAccount,
    /// rbac.authorization.k8s.io/v1 Role.
    Role,
    /// rbac.authorization.k8s.io/v1 RoleBinding.
    RoleBinding,
    /// v1 Secret.
    Secret,
}

const ALL_KINDS: [Kind; 8] = [
    Kind::Namespace,
    Kind::ClusterRole,
    Kind::ClusterRoleBinding,
    Kind::User,
    Kind::ServiceAccount,
    Kind::Role,
    Kind::RoleBinding,
    Kind::Secret,
];

impl Kind {
    /// kubectl's names for the kind: singular, plural, short, and `KIND.GROUP`.
    fn names(self) -> &'static [&'static str] {
        match self {
            Kind::Namespace => &["namespace", "namespaces", "ns"],
            Kind::ServiceAccount => &["serviceaccount", "serviceaccounts", "sa"],
            Kind::Role => &["role", "roles", "role.rbac.authorization.k8s.io"],
            Kind::RoleBinding => &[
                "rolebinding",
                "rolebindings",
                "rolebinding.rbac.authorization.k8s.io",
            ],
            Kind::ClusterRole => &[
                "clusterrole",
                "clusterroles",
                "clusterrole.rbac.authorization.k8s.io",
            ],
            Kind::ClusterRoleBinding => &[
                "clusterrolebinding",
                "clusterrolebindings",
                "clusterrolebinding.rbac.authorization.k8s.io",
            ],
            Kind::Secret => &["secret", "secrets"],
            Kind::User => &["user", "users", "user.user.openshift.io"],
        }
    }

    /// The kind named `name` as kubectl takes it (`rolebindings`, `sa`, `Role`, ...); an
    /// unknown name is an error naming the close matches.
    pub fn parse(name: &str) -> Result<Kind, UnknownKind> {
        let lower = name.to_lowercase();
        ALL_KINDS
            .into_iter()
            .find(|k| k.names().contains(&lower.as_str()))
            .ok_or_else(|| UnknownKind {
                kind: name.to_string(),
                suggestion: did_you_mean(
                    &lower,
                    ALL_KINDS.iter().flat_map(|k| k.names().iter().copied()),
                ),
            })
    }

    /// `kind.group` as kubectl prints it before `/NAME` (`namespace`, `role.rbac...`).
    pub fn resource(self) -> &'static str {
        match self {
            Kind::Namespace => "namespace",
            Kind::ServiceAccount => "serviceaccount",
            Kind::Secret => "secret",
            other => other.names()[2],
        }
    }

    /// Whether objects of the kind live in a namespace.
    pub fn is_namespaced(self) -> bool {
        matches!(
            self,
            Kind::ServiceAccount | Kind::Role | Kind::RoleBinding | Kind::Secret
        )
    }

    /// The singular name, for messages.
    pub(crate) fn singular(self) -> &'static str {
        self.names()[0]
    }

    /// The directory holding objects of this kind (of namespace `ns` for namespaced kinds).
    fn dir(self, layout: &Layout, ns: &str) -> PathBuf {
        match self {
            Kind::Namespace => layout.namespaces(),
            Kind::ClusterRole => layout.cluster_roles(),
            Kind::ClusterRoleBinding => layout.cluster_role_bindings(),
            Kind::User => layout.users(),
            Kind::ServiceAccount => layout.service_accounts(ns),
            Kind::Role => layout.roles(ns),
            Kind::RoleBinding => layout.role_bindings(ns),
            Kind::Secret => layout.secrets(ns),
        }
    }

    /// The file of object `name` (in `ns` for namespaced kinds).
    pub(crate) fn file(self, layout: &Layout, ns: &str, name: &str) -> PathBuf {
        match self {
            Kind::Namespace => layout.namespace_file(name),
            other => object_file(&other.dir(layout, ns), name),
        }
    }

    /// The names of the existing objects of this kind (in `ns`), for close matches.
    pub(crate) fn existing_names(self, layout: &Layout, ns: &str) -> Vec<String> {
        let dir = self.dir(layout, ns);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| !n.starts_with('.'))
            .map(|n| match self {
                Kind::Namespace => n,
                _ => n.strip_suffix(".yaml").unwrap_or(&n).to_string(),
            })
            .collect()
    }
}

/// One object of a manifest, typed.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    /// A Namespace.
    Namespace(Namespace),
    /// A ServiceAccount.
    ServiceAccount(ServiceAccount),
    /// A Role.
    Role(Role),
    /// A ClusterRole.
    ClusterRole(ClusterRole),
    /// A RoleBinding.
    RoleBinding(RoleBinding),
    /// A ClusterRoleBinding.
    ClusterRoleBinding(ClusterRoleBinding),
    /// A Secret of a docker config type.
    Secret(Secret),
    /// An OpenShift User.
    User(User),
}

/// Runs `$body` with `$o` bound to the typed object inside `$object`.
macro_rules! each {
    ($object:expr, $o:ident => $body:expr) => {
        match $object {
            Object::Namespace($o) => $body,
            Object::ServiceAccount($o) => $body,
            Object::Role($o) => $body,
            Object::ClusterRole($o) => $body,
            Object::RoleBinding($o) => $body,
            Object::ClusterRoleBinding($o) => $body,
            Object::Secret($o) => $body,
            Object::User($o) => $body,
        }
    };
}
pub(crate) use each;

impl Object {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Object::Namespace(_) => Kind::Namespace,
            Object::ServiceAccount(_) => Kind::ServiceAccount,
            Object::Role(_) => Kind::Role,
            Object::ClusterRole(_) => Kind::ClusterRole,
            Object::RoleBinding(_) => Kind::RoleBinding,
            Object::ClusterRoleBinding(_) => Kind::ClusterRoleBinding,
            Object::Secret(_) => Kind::Secret,
            Object::User(_) => Kind::User,
        }
    }

    /// Its metadata.
    pub fn meta(&self) -> &ObjectMeta {
        each!(self, o => o.meta())
    }

    pub(crate) fn meta_mut(&mut self) -> &mut ObjectMeta {
        each!(self, o => o.meta_mut())
    }

    /// Its name ("" when missing).
    pub fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or_default()
    }

    /// Its namespace ("" for cluster objects).
    pub fn namespace(&self) -> &str {
        if self.kind().is_namespaced() {
            self.meta().namespace.as_deref().unwrap_or_default()
        } else {
            ""
        }
    }

    /// `KIND.GROUP/NAME`, as kubectl prints it.
    pub fn reference(&self) -> String {
        format!("{}/{}", self.kind().resource(), self.name())
    }

    /// The object as YAML (Secret data included: only for `-o yaml`).
    pub fn to_yaml(&self) -> Result<String, serde_yaml::Error> {
        each!(self, o => serde_yaml::to_string(o))
    }

    /// An object of `kind` with only its name and namespace, to delete by name.
    pub fn named(kind: Kind, name: &str, namespace: Option<&str>) -> Object {
        let metadata = ObjectMeta {
            name: Some(name.to_string()),
            namespace: namespace
                .filter(|_| kind.is_namespaced())
                .map(str::to_string),
            ..ObjectMeta::default()
        };
        match kind {
            Kind::Namespace => Object::Namespace(Namespace {
                metadata,
                ..Default::default()
            }),
            Kind::ServiceAccount => Object::ServiceAccount(ServiceAccount {
                metadata,
                ..Default::default()
            }),
            Kind::Role => Object::Role(Role {
                metadata,
                ..Default::default()
            }),
            Kind::ClusterRole => Object::ClusterRole(ClusterRole {
                metadata,
                ..Default::default()
            }),
            Kind::RoleBinding => Object::RoleBinding(RoleBinding {
                metadata,
                ..Default::default()
            }),
            Kind::ClusterRoleBinding => Object::ClusterRoleBinding(ClusterRoleBinding {
                metadata,
                ..Default::default()
            }),
            Kind::Secret => Object::Secret(Secret {
                metadata,
                ..Default::default()
            }),
            Kind::User => {
                let mut user = User::new(name, Vec::new());
                user.metadata = metadata;
                Object::User(user)
            }
        }
    }
}

fn invalid(kind: &'static str, name: &str, reason: &str) -> StoreError {
    StoreError::InvalidName {
        kind,
        name: name.to_string(),
        reason: reason.to_string(),
    }
}

/// A name usable as one file name: not empty, `.` or `..`, no `/`, no leading `.` (such files
/// are ignored), no control characters.
pub(crate) fn validate_path_segment(kind: &'static str, name: &str) -> Result<(), StoreError> {
    if name.is_empty() {
        return Err(invalid(kind, name, "may not be empty"));
    }
    if name.starts_with('.') {
        return Err(invalid(kind, name, "may not start with '.'"));
    }
    if name.contains('/') || name.contains('%') {
        return Err(invalid(kind, name, "may not contain '/' or '%'"));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(kind, name, "may not contain control characters"));
    }
    Ok(())
}

/// An OpenShift user name: a path segment without `:` (names with `:` are reserved for
/// `system:` identities) or whitespace.
pub(crate) fn validate_user_name(name: &str) -> Result<(), StoreError> {
    validate_path_segment("user", name)?;
    if name.contains(':') {
        return Err(invalid("user", name, "may not contain ':'"));
    }
    if name.chars().any(char::is_whitespace) || name == "~" {
        return Err(invalid(
            "user",
            name,
            "may not contain whitespace or be '~'",
        ));
    }
    Ok(())
}

/// A Kubernetes DNS-1123 label (what a namespace name is): 1 to 63 of `a-z`, `0-9`, `-`,
/// starting and ending with a letter or digit. Such a name is also a valid first component of
/// an OCI repository name.
pub(crate) fn validate_dns_label(kind: &'static str, name: &str) -> Result<(), StoreError> {
    const RULE: &str = "must be 1 to 63 lower-case letters, digits or '-', starting and ending \
                        with a letter or digit (e.g. 'project-a')";
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let valid_ends = !name.starts_with('-') && !name.ends_with('-');
    if name.is_empty() || name.len() > 63 || !valid_chars || !valid_ends {
        return Err(invalid(kind, name, RULE));
    }
    Ok(())
}

/// A Kubernetes DNS-1123 subdomain (what a service account name is): dot-separated labels, at
/// most 253 characters.
pub(crate) fn validate_dns_subdomain(kind: &'static str, name: &str) -> Result<(), StoreError> {
    if name.len() > 253
        || name
            .split('.')
            .any(|label| validate_dns_label(kind, label).is_err())
    {
        return Err(invalid(
            kind,
            name,
            "must be lower-case letters, digits, '-' and '.', each dot-separated part starting \
             and ending with a letter or digit (e.g. 'builder')",
        ));
    }
    Ok(())
}
