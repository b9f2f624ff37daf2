//! Pull secrets in the store: creating docker config Secrets, and linking them to service
//! accounts for pull or mount, as `oc secrets link` does.

use k8s_openapi::api::core::v1::{LocalObjectReference, ObjectReference, Secret, ServiceAccount};

use crate::authority::embedded::object::{validate_dns_subdomain, validate_path_segment};
use crate::authority::embedded::store::{
    Store, StoreError, exists, object_file, read_object, stamp,
};
use crate::suggest::did_you_mean;
use crate::upstream::secret::check_secret;

use super::{already_exists, close_names};

/// Why a Secret could not be created, linked or unlinked.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The state directory could not be read or changed, or a name is invalid.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The Secret is not one regate keeps (see [`crate::upstream::secret::check_secret`]).
    #[error("secret {name:?}: {reason}")]
    Invalid {
        /// The Secret's name.
        name: String,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// The Secret does not exist.
    #[error(
        "secret {name:?} not found in namespace {namespace:?}{suggestion}; create it with: {}",
        crate::shell::CommandLine::new(&["regate", "create", "secret", "docker-registry"])
            .arg(.name)
            .option("-n", .namespace)
            .flag("--docker-server=SERVER")
            .flag("--docker-username=USER")
            .flag("--docker-password-stdin")
    )]
    NotFound {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// `; did you mean ...?` naming close matches, or nothing.
        suggestion: String,
    },
    /// Unlinking a Secret the service account does not name.
    #[error(
        "secret {name:?} is not linked to serviceaccount {service_account:?} in namespace {namespace:?}{suggestion}"
    )]
    NotLinked {
        /// The namespace.
        namespace: String,
        /// The service account.
        service_account: String,
        /// The Secret.
        name: String,
        /// `; did you mean ...?` naming close linked Secrets, or nothing.
        suggestion: String,
    },
}

/// Which lists of a service account `link_secrets` adds to, as `oc secrets link --for`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkFor {
    /// `imagePullSecrets`: used to pull images.
    pub pull: bool,
    /// `secrets`: mountable by the service account's pods.
    pub mount: bool,
}

impl Store {
    /// Creates `secret` (its `metadata.namespace` and `metadata.name` set) as `kubectl create
    /// secret` does: it must be of a type regate keeps, its namespace must exist and it must not.
    /// Returns it as written (or, in a dry run, as it would be).
    pub fn create_secret_object(&self, mut secret: Secret) -> Result<Secret, SecretError> {
        let ns = secret.metadata.namespace.clone().unwrap_or_default();
        let name = secret.metadata.name.clone().unwrap_or_default();
        validate_path_segment("namespace", &ns)?;
        validate_dns_subdomain("secret", &name)?;
        check_secret(&secret).map_err(|reason| SecretError::Invalid {
            name: name.clone(),
            reason,
        })?;
        let _lock = self.lock()?;
        self.require_namespace(&ns)?;
        let path = object_file(&self.layout.secrets(&ns), &name);
        if exists(&path)? {
            return Err(already_exists("secret", &name, Some(&ns)).into());
        }
        stamp(&mut secret.metadata);
        self.write(&path, &secret)?;
        Ok(secret)
    }

    /// Adds `secrets` of `ns` to service account `sa`'s `imagePullSecrets` and/or `secrets`, as
    /// `oc secrets link`: each must exist; ones already listed stay where they are. Returns the
    /// service account and whether it changed.
    pub fn link_secrets(
        &self,
        ns: &str,
        sa: &str,
        secrets: &[String],
        link: LinkFor,
    ) -> Result<(ServiceAccount, bool), SecretError> {
        validate_path_segment("namespace", ns)?;
        validate_path_segment("serviceaccount", sa)?;
        for name in secrets {
            validate_path_segment("secret", name)?;
        }
        let _lock = self.lock()?;
        let mut account = self.read_service_account(ns, sa)?;
        for name in secrets {
            if !exists(&object_file(&self.layout.secrets(ns), name))? {
                return Err(SecretError::NotFound {
                    namespace: ns.to_string(),
                    name: name.clone(),
                    suggestion: close_names(&self.layout.secrets(ns), name),
                });
            }
        }
        let before = account.clone();
        for name in secrets {
            if link.pull {
                let pull = account.image_pull_secrets.get_or_insert_with(Vec::new);
                if !pull.iter().any(|r| r.name == *name) {
                    pull.push(LocalObjectReference { name: name.clone() });
                }
            }
            if link.mount {
                let mount = account.secrets.get_or_insert_with(Vec::new);
                if !mount
                    .iter()
                    .any(|r| r.name.as_deref() == Some(name.as_str()))
                {
                    mount.push(ObjectReference {
                        name: Some(name.clone()),
                        ..ObjectReference::default()
                    });
                }
            }
        }
        let changed = account != before;
        if changed {
            self.write(&self.service_account_file(ns, sa), &account)?;
        }
        Ok((account, changed))
    }

    /// Removes `secrets` from service account `sa`'s `imagePullSecrets` and `secrets`, as `oc
    /// secrets unlink`; the Secrets need not exist any more, but each must be linked (else
    /// nothing changes). Lists left empty are removed.
    pub fn unlink_secrets(
        &self,
        ns: &str,
        sa: &str,
        secrets: &[String],
    ) -> Result<ServiceAccount, SecretError> {
        validate_path_segment("namespace", ns)?;
        validate_path_segment("serviceaccount", sa)?;
        let _lock = self.lock()?;
        let mut account = self.read_service_account(ns, sa)?;
        let pull_names = account
            .image_pull_secrets
            .iter()
            .flatten()
            .map(|r| r.name.as_str());
        let mount_names = account
            .secrets
            .iter()
            .flatten()
            .filter_map(|r| r.name.as_deref());
        let linked: Vec<&str> = pull_names.chain(mount_names).collect();
        if let Some(name) = secrets.iter().find(|s| !linked.contains(&s.as_str())) {
            return Err(SecretError::NotLinked {
                namespace: ns.to_string(),
                service_account: sa.to_string(),
                name: name.clone(),
                suggestion: did_you_mean(name, linked.iter().copied()),
            });
        }
        let unlinked = |name: &str| !secrets.iter().any(|s| s == name);
        if let Some(pull) = &mut account.image_pull_secrets {
            pull.retain(|r| unlinked(&r.name));
        }
        if let Some(mount) = &mut account.secrets {
            mount.retain(|r| r.name.as_deref().is_none_or(unlinked));
        }
        account.image_pull_secrets = account.image_pull_secrets.filter(|l| !l.is_empty());
        account.secrets = account.secrets.filter(|l| !l.is_empty());
        self.write(&self.service_account_file(ns, sa), &account)?;
        Ok(account)
    }

    /// Service account `name` of `ns`, or the error naming what is missing.
    fn read_service_account(&self, ns: &str, name: &str) -> Result<ServiceAccount, StoreError> {
        self.require_namespace(ns)?;
        read_object(&self.service_account_file(ns, name))?.ok_or_else(|| {
            StoreError::ServiceAccountNotFound {
                namespace: ns.to_string(),
                name: name.to_string(),
                suggestion: close_names(&self.layout.service_accounts(ns), name),
            }
        })
    }
}
