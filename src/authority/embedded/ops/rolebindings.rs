//! RoleBindings written whole, as the Kubernetes API writes them (for `regate authority
//! serve`): create, replace and delete, each checked as Kubernetes validates a RoleBinding and
//! done under the writers' lock, so the CLI and the server never lose each other's changes and
//! a running authority reloads on the change marker as it does after `regate policy`.
//!
//! The state directory keeps no resourceVersion. [`resource_version`] derives one from an
//! object's content, so it changes exactly when the stored object does; a replace or delete
//! given the version (or uid) the caller read is refused, under the lock, once the object has
//! changed, so of two writers that read the same version only one wins.

use std::fmt;

use k8s_openapi::api::rbac::v1::{RoleBinding, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Preconditions};
use serde::Serialize;

use crate::authority::embedded::object::{validate_dns_subdomain, validate_path_segment};
use crate::authority::embedded::store::{
    Store, StoreError, check_identity, exists, object_file, read_object, stamp,
};
use crate::policy::{
    CLUSTER_ROLE_KIND, GROUP_KIND, RBAC_GROUP, ROLE_KIND, SERVICE_ACCOUNT_KIND, USER_KIND,
};

/// Kubernetes' answer to a replace based on an old version, kept in its words since clients
/// (kubectl's retry loops) recognise it.
const MODIFIED: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

/// One invalid field, as Kubernetes' `field.Error` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field's path, e.g. `subjects[0].kind`.
    pub field: String,
    /// The `Status` cause reason: `FieldValueRequired`, `FieldValueInvalid` or
    /// `FieldValueNotSupported`.
    pub reason: &'static str,
    /// What is wrong, without the field, e.g. `Required value`.
    pub detail: String,
}

impl FieldError {
    /// `field` must be given.
    fn required(field: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            reason: "FieldValueRequired",
            detail: "Required value".to_string(),
        }
    }

    /// `field` holds `value`, which breaks `rule`.
    fn invalid(field: impl Into<String>, value: &str, rule: &str) -> Self {
        FieldError {
            field: field.into(),
            reason: "FieldValueInvalid",
            detail: format!("Invalid value: {value:?}: {rule}"),
        }
    }

    /// `field` holds `value`, which is none of `supported`.
    fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let supported: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        FieldError {
            field: field.into(),
            reason: "FieldValueNotSupported",
            detail: format!(
                "Unsupported value: {value:?}: supported values: {}",
                supported.join(", ")
            ),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.detail)
    }
}

/// Why a RoleBinding could not be created, replaced or deleted; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    /// The state directory could not be read or changed, or the namespace does not exist.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The RoleBinding is not valid: every invalid field is named.
    #[error("rolebinding {name:?} is invalid: {}", list(causes))]
    Invalid {
        /// Its name (may be empty, when that is what is wrong).
        name: String,
        /// The invalid fields.
        causes: Vec<FieldError>,
    },
    /// Creating a RoleBinding whose name is taken.
    #[error("rolebinding {name:?} already exists in namespace {namespace:?}; replace it instead")]
    AlreadyExists {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// No such RoleBinding.
    #[error("rolebinding {name:?} not found in namespace {namespace:?}")]
    NotFound {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The stored RoleBinding is not the one the caller based the change on.
    #[error("rolebinding {name:?} in namespace {namespace:?}: {reason}")]
    Conflict {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Which precondition failed, in Kubernetes' words.
        reason: String,
    },
}

fn list(causes: &[FieldError]) -> String {
    let causes: Vec<String> = causes.iter().map(FieldError::to_string).collect();
    causes.join(", ")
}

/// The `metadata.resourceVersion` of `object`: a 64-bit hash (SipHash-1-3 with a fixed key, so
/// every process and release agrees) of its JSON without any resourceVersion it carries, in
/// decimal. The same content always has the same version and any change gives another, so a
/// client's optimistic concurrency works although the store keeps no versions.
pub fn resource_version<T>(object: &T) -> String
where
    T: Serialize + Clone + k8s_openapi::Metadata<Ty = ObjectMeta>,
{
    let mut object = object.clone();
    object.metadata_mut().resource_version = None;
    let mut hasher = HashWriter(siphasher::sip::SipHasher13::new());
    // k8s-openapi types always serialise, and writing into a hasher cannot fail.
    let _ = serde_json::to_writer(&mut hasher, &object);
    std::hash::Hasher::finish(&hasher.0).to_string()
}

/// Feeds JSON straight into the hasher, so no copy of the object is made.
struct HashWriter(siphasher::sip::SipHasher13);

impl std::io::Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        std::hash::Hasher::write(&mut self.0, bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Makes `binding` what a RoleBinding of `ns` is stored as, or names every invalid field, as
/// the Kubernetes API server defaults and validates one: the namespace set (a different one is
/// invalid), fields only a server sets dropped, User and Group subjects given the RBAC API group
/// when they name none; `metadata.name` and `roleRef.name` valid object names, `roleRef` a Role
/// or ClusterRole of the RBAC group, every subject a named User, Group or ServiceAccount of its
/// API group.
pub fn check_role_binding(ns: &str, binding: &mut RoleBinding) -> Result<(), BindingError> {
    let mut causes = Vec::new();
    let meta = &mut binding.metadata;
    match meta.namespace.as_deref() {
        None | Some("") => meta.namespace = Some(ns.to_string()),
        Some(found) if found != ns => causes.push(FieldError::invalid(
            "metadata.namespace",
            found,
            &format!("does not match the namespace {ns:?} it is written to"),
        )),
        Some(_) => {}
    }
    meta.resource_version = None;
    meta.managed_fields = None;
    meta.generation = None;
    meta.self_link = None;
    meta.deletion_timestamp = None;
    meta.deletion_grace_period_seconds = None;
    let name = meta.name.clone().unwrap_or_default();
    if name.is_empty() {
        causes.push(FieldError::required("metadata.name"));
    } else if let Err(StoreError::InvalidName { reason, .. }) =
        validate_path_segment("rolebinding", &name)
    {
        causes.push(FieldError::invalid("metadata.name", &name, &reason));
    }

    let role_ref = &binding.role_ref;
    let group = role_ref.api_group.as_deref().unwrap_or_default();
    if group != RBAC_GROUP {
        causes.push(FieldError::not_supported(
            "roleRef.apiGroup",
            group,
            &[RBAC_GROUP],
        ));
    }
    if role_ref.kind != ROLE_KIND && role_ref.kind != CLUSTER_ROLE_KIND {
        causes.push(FieldError::not_supported(
            "roleRef.kind",
            &role_ref.kind,
            &[ROLE_KIND, CLUSTER_ROLE_KIND],
        ));
    }
    if role_ref.name.is_empty() {
        causes.push(FieldError::required("roleRef.name"));
    } else if let Err(StoreError::InvalidName { reason, .. }) =
        validate_path_segment("role", &role_ref.name)
    {
        causes.push(FieldError::invalid("roleRef.name", &role_ref.name, &reason));
    }

    for (i, subject) in binding.subjects.iter_mut().flatten().enumerate() {
        check_subject(&format!("subjects[{i}]"), subject, &mut causes);
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(BindingError::Invalid { name, causes })
    }
}

/// Defaults and checks one subject (`at` is its path), as Kubernetes' `SetDefaults_Subject`
/// and `ValidateRoleBindingSubject` do for a RoleBinding.
fn check_subject(at: &str, subject: &mut Subject, causes: &mut Vec<FieldError>) {
    let group = subject.api_group.clone().unwrap_or_default();
    let namespaced = subject
        .namespace
        .as_deref()
        .is_some_and(|ns| !ns.is_empty());
    if !namespaced {
        subject.namespace = None;
    }
    if subject.name.is_empty() {
        causes.push(FieldError::required(format!("{at}.name")));
    }
    match subject.kind.as_str() {
        SERVICE_ACCOUNT_KIND => {
            if !group.is_empty() {
                causes.push(FieldError::not_supported(
                    format!("{at}.apiGroup"),
                    &group,
                    &[""],
                ));
            }
            subject.api_group = None;
            if !subject.name.is_empty()
                && let Err(StoreError::InvalidName { reason, .. }) =
                    validate_dns_subdomain("serviceaccount", &subject.name)
            {
                causes.push(FieldError::invalid(
                    format!("{at}.name"),
                    &subject.name,
                    &reason,
                ));
            }
        }
        USER_KIND | GROUP_KIND => {
            if group.is_empty() {
                subject.api_group = Some(RBAC_GROUP.to_string());
            } else if group != RBAC_GROUP {
                causes.push(FieldError::not_supported(
                    format!("{at}.apiGroup"),
                    &group,
                    &[RBAC_GROUP],
                ));
            }
        }
        other => causes.push(FieldError::not_supported(
            format!("{at}.kind"),
            other,
            &[SERVICE_ACCOUNT_KIND, USER_KIND, GROUP_KIND],
        )),
    }
}

/// A failed precondition, in Kubernetes' words: `replacing` says whether the version was the
/// one a replace was based on (Kubernetes words that one differently).
fn precondition_failed(
    stored: &RoleBinding,
    expected: &Preconditions,
    replacing: bool,
) -> Option<String> {
    let uid = stored.metadata.uid.as_deref().unwrap_or_default();
    if let Some(wanted) = expected.uid.as_deref().filter(|u| !u.is_empty())
        && wanted != uid
    {
        return Some(format!(
            "Precondition failed: UID in precondition: {wanted}, UID in object meta: {uid}"
        ));
    }
    let version = resource_version(stored);
    match expected
        .resource_version
        .as_deref()
        .filter(|v| !v.is_empty())
    {
        Some(wanted) if wanted != version && replacing => Some(MODIFIED.to_string()),
        Some(wanted) if wanted != version => Some(format!(
            "Precondition failed: ResourceVersion in precondition: {wanted}, ResourceVersion in \
             object meta: {version}"
        )),
        _ => None,
    }
}

impl Store {
    /// Creates `binding` in namespace `ns` (see [`check_role_binding`]), stamped with a new uid
    /// and creation time as the API server does; the namespace must exist and the name must be
    /// free. Returns it as written (or, in a dry run, as it would be).
    pub fn create_role_binding(
        &self,
        ns: &str,
        mut binding: RoleBinding,
    ) -> Result<RoleBinding, BindingError> {
        validate_path_segment("namespace", ns)?;
        check_role_binding(ns, &mut binding)?;
        let name = binding.metadata.name.clone().unwrap_or_default();
        let _lock = self.lock()?;
        self.require_namespace(ns)?;
        let path = object_file(&self.layout.role_bindings(ns), &name);
        if exists(&path)? {
            return Err(BindingError::AlreadyExists {
                namespace: ns.to_string(),
                name,
            });
        }
        // The server's, never the client's.
        binding.metadata.uid = None;
        binding.metadata.creation_timestamp = None;
        stamp(&mut binding.metadata);
        self.write(&path, &binding)?;
        Ok(binding)
    }

    /// Replaces RoleBinding `binding` of `ns` (named by its `metadata.name`; see
    /// [`check_role_binding`]), keeping its uid and creation time, if `expected` holds for the
    /// stored one (its resourceVersion and uid, where given). Its `roleRef` may not change: a
    /// binding means one role for its whole life, as in Kubernetes.
    pub fn replace_role_binding(
        &self,
        ns: &str,
        mut binding: RoleBinding,
        expected: &Preconditions,
    ) -> Result<RoleBinding, BindingError> {
        validate_path_segment("namespace", ns)?;
        check_role_binding(ns, &mut binding)?;
        let name = binding.metadata.name.clone().unwrap_or_default();
        let _lock = self.lock()?;
        let stored = self.stored_role_binding(ns, &name)?;
        if let Some(reason) = precondition_failed(&stored, expected, true) {
            return Err(BindingError::Conflict {
                namespace: ns.to_string(),
                name,
                reason,
            });
        }
        if stored.role_ref != binding.role_ref {
            let value = serde_json::to_string(&binding.role_ref).unwrap_or_default();
            return Err(BindingError::Invalid {
                name,
                causes: vec![FieldError {
                    field: "roleRef".to_string(),
                    reason: "FieldValueInvalid",
                    detail: format!(
                        "Invalid value: {value}: cannot change roleRef; delete the binding and \
                         create one of the other role"
                    ),
                }],
            });
        }
        binding.metadata.uid = stored.metadata.uid;
        binding.metadata.creation_timestamp = stored.metadata.creation_timestamp;
        let path = object_file(&self.layout.role_bindings(ns), &name);
        self.write(&path, &binding)?;
        Ok(binding)
    }

    /// Deletes RoleBinding `name` of `ns`, if `expected` holds for it (its resourceVersion and
    /// uid, where given). Returns the binding deleted.
    pub fn delete_role_binding(
        &self,
        ns: &str,
        name: &str,
        expected: &Preconditions,
    ) -> Result<RoleBinding, BindingError> {
        let _lock = self.lock()?;
        let stored = self.stored_role_binding(ns, name)?;
        if let Some(reason) = precondition_failed(&stored, expected, false) {
            return Err(BindingError::Conflict {
                namespace: ns.to_string(),
                name: name.to_string(),
                reason,
            });
        }
        self.remove(&object_file(&self.layout.role_bindings(ns), name))?;
        Ok(stored)
    }

    /// RoleBinding `name` of `ns` as the authority loads it (name and namespace filled in from
    /// its place, so its [`resource_version`] is the one served); the caller holds the lock.
    fn stored_role_binding(&self, ns: &str, name: &str) -> Result<RoleBinding, BindingError> {
        let not_found = || BindingError::NotFound {
            namespace: ns.to_string(),
            name: name.to_string(),
        };
        // A name that cannot be a file cannot be stored; and in a namespace that does not exist
        // (or is half deleted) nothing is, as readers see it.
        if validate_path_segment("namespace", ns).is_err()
            || validate_path_segment("rolebinding", name).is_err()
            || !exists(&self.layout.namespace_file(ns))?
        {
            return Err(not_found());
        }
        let path = object_file(&self.layout.role_bindings(ns), name);
        let mut binding: RoleBinding = read_object(&path)?.ok_or_else(not_found)?;
        check_identity(&path, &binding.metadata, name, Some(ns))?;
        binding
            .metadata
            .name
            .get_or_insert_with(|| name.to_string());
        binding
            .metadata
            .namespace
            .get_or_insert_with(|| ns.to_string());
        Ok(binding)
    }
}

#[cfg(test)]
mod tests;
