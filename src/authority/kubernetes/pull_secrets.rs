//! Reading a namespace's pull secrets from the cluster: the Secrets a service account links
//! for pull, then the namespace's docker config Secrets by name (see
//! [`Authority::pull_keyring`](crate::authority::Authority::pull_keyring)).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, ListParams};

use super::{ClusterError, Kubernetes};
use crate::upstream::keyring::Keyring;
use crate::upstream::secret::{SECRET_TYPES, chain_pull_secrets, check_secret};

impl Kubernetes {
    /// Reads from the cluster what [`Authority::pull_keyring`] chains: the Secrets `account`
    /// lists in `imagePullSecrets` (looked up among its namespace's docker config Secrets), then
    /// `namespace`'s by name. When regate may not read them (403) it says so once per cache
    /// period and pulls without them; other failures are errors.
    pub(super) async fn read_pull_keyring(
        &self,
        account: Option<&(String, String)>,
        namespace: &str,
    ) -> Result<Keyring, ClusterError> {
        let mut chosen: Vec<(String, String, Result<Keyring, String>)> = Vec::new();
        let mut linked_names: Vec<String> = Vec::new();
        if let Some((sa_ns, sa)) = account {
            let accounts: Api<ServiceAccount> = Api::namespaced(self.transport.client(), sa_ns);
            let what = format!("get serviceaccount {sa_ns}/{sa}");
            let Some(found) = self.read(&what, accounts.get_opt(sa)).await? else {
                return Ok(Keyring::default());
            };
            let linked = found.and_then(|a| a.image_pull_secrets).unwrap_or_default();
            if !linked.is_empty() {
                let Some(mut secrets) = self.docker_secrets(sa_ns).await? else {
                    return Ok(Keyring::default());
                };
                for reference in linked {
                    if linked_names.contains(&reference.name) {
                        continue;
                    }
                    linked_names.push(reference.name.clone());
                    match secrets.remove(&reference.name) {
                        Some(parsed) => chosen.push((sa_ns.clone(), reference.name, parsed)),
                        None => tracing::debug!(
                            namespace = %sa_ns,
                            secret = %reference.name,
                            service_account = %sa,
                            "a Secret linked for pull does not exist; skipped"
                        ),
                    }
                }
            }
        }
        let Some(secrets) = self.docker_secrets(namespace).await? else {
            return Ok(Keyring::default());
        };
        let same_namespace = account.is_some_and(|(sa_ns, _)| sa_ns == namespace);
        for (name, parsed) in secrets {
            if !(same_namespace && linked_names.contains(&name)) {
                chosen.push((namespace.to_string(), name, parsed));
            }
        }
        Ok(chain_pull_secrets(chosen.iter().map(
            |(ns, name, parsed)| (ns.as_str(), name.as_str(), parsed),
        )))
    }

    /// `ns`'s docker config Secrets by name, each parsed; `None` when regate may not list them.
    async fn docker_secrets(
        &self,
        ns: &str,
    ) -> Result<Option<BTreeMap<String, Result<Keyring, String>>>, ClusterError> {
        let mut found = BTreeMap::new();
        for (secret_type, _) in SECRET_TYPES {
            let secrets: Api<Secret> = Api::namespaced(self.transport.client(), ns);
            let params = ListParams::default().fields(&format!("type={secret_type}"));
            let what = format!("list secrets in namespace {ns} of type {secret_type}");
            let Some(list) = self.read(&what, secrets.list(&params)).await? else {
                return Ok(None);
            };
            for secret in list.items {
                let name = secret.metadata.name.clone().unwrap_or_default();
                let parsed = check_secret(&secret).and_then(|pull| pull.keyring);
                found.insert(name, parsed);
            }
        }
        Ok(Some(found))
    }

    /// Awaits one read of the API within the deadline; `Ok(None)` (logged) when regate is not
    /// allowed to make it.
    async fn read<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<Option<T>, ClusterError> {
        let deadline = self.transport.deadline();
        match tokio::time::timeout(deadline, call).await {
            Ok(Ok(answer)) => Ok(Some(answer)),
            Ok(Err(kube::Error::Api(status))) if status.is_forbidden() => {
                tracing::warn!(
                    api = %self.api(),
                    "regate may not {what} ({}); pulling without the namespace's pull secrets. Grant regate's identity get on serviceaccounts and list on secrets (deploy/kubernetes/) to use them",
                    status.message
                );
                Ok(None)
            }
            Ok(Err(error)) => Err(ClusterError::Read {
                api: self.api().to_string(),
                what: what.to_string(),
                detail: error.to_string(),
            }),
            Err(_) => Err(ClusterError::ReadTimeout {
                api: self.api().to_string(),
                what: what.to_string(),
                within: deadline,
            }),
        }
    }
}
