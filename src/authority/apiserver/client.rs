//! The identity `regate authority serve`'s clients use: a service account bound to
//! `system:auth-delegator`, its token, and the kubeconfig that carries them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use kube::config::{
    AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
};
use secrecy::SecretString;

use super::{
    ApiServerError, CLIENT_NAMESPACE, CLIENT_SERVICE_ACCOUNT, CLIENT_TOKEN_LIFETIME,
    KUBECONFIG_CLUSTER,
};
use crate::authority::embedded::{AUTH_DELEGATOR, PULL_SECRET_READER};
use crate::authority::embedded::{Store, StoreError, SubjectRef};
use crate::identity::service_account_user;
use crate::token::Issued;

/// Creates, where missing, namespace [`CLIENT_NAMESPACE`] and its service account
/// [`CLIENT_SERVICE_ACCOUNT`], binds it cluster-wide to ClusterRole `system:auth-delegator`,
/// and issues it a token valid for [`CLIENT_TOKEN_LIFETIME`]: the credential of the written
/// kubeconfig. Safe to run again and concurrently (each run issues a new token; older ones stay
/// valid until they expire or the service account is deleted).
pub fn provision_client(store: &Store) -> Result<Issued, ApiServerError> {
    let provision = || {
        ignore_existing(store.create_namespace(CLIENT_NAMESPACE))?;
        ignore_existing(store.create_service_account(CLIENT_NAMESPACE, CLIENT_SERVICE_ACCOUNT))?;
        let client = [SubjectRef::ServiceAccount {
            namespace: CLIENT_NAMESPACE.to_string(),
            name: CLIENT_SERVICE_ACCOUNT.to_string(),
        }];
        store.add_cluster_role(AUTH_DELEGATOR, &client)?;
        store.add_cluster_role(PULL_SECRET_READER, &client)?;
        store.create_service_account_token(
            CLIENT_NAMESPACE,
            CLIENT_SERVICE_ACCOUNT,
            CLIENT_TOKEN_LIFETIME,
        )
    };
    provision().map_err(|source| ApiServerError::Provision { source })
}

fn ignore_existing(result: Result<(), StoreError>) -> Result<(), StoreError> {
    match result {
        Err(StoreError::AlreadyExists { .. }) => Ok(()),
        other => other,
    }
}

/// The URL clients reach a server bound to `bound` at: an unspecified address (`0.0.0.0`,
/// `::`) becomes the loopback address of its family, which always reaches it.
pub fn client_url(bound: SocketAddr, scheme: &str) -> String {
    let ip = match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("{scheme}://{}", SocketAddr::new(ip, bound.port()))
}

/// The kubeconfig of a client of the server at `server_url` authenticating with `token`: one
/// cluster, one user, one context, all current. `ca_pem` (the CA that signed an https
/// server's certificate) becomes `certificate-authority-data`.
pub fn kubeconfig(server_url: &str, token: SecretString, ca_pem: Option<&str>) -> Kubeconfig {
    let user = service_account_user(CLIENT_NAMESPACE, CLIENT_SERVICE_ACCOUNT);
    Kubeconfig {
        api_version: Some("v1".to_string()),
        kind: Some("Config".to_string()),
        clusters: vec![NamedCluster {
            name: KUBECONFIG_CLUSTER.to_string(),
            cluster: Some(Cluster {
                server: Some(server_url.to_string()),
                certificate_authority_data: ca_pem.map(|pem| STANDARD.encode(pem)),
                ..Cluster::default()
            }),
            ..NamedCluster::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: user.clone(),
            auth_info: Some(AuthInfo {
                token: Some(token),
                ..AuthInfo::default()
            }),
            ..NamedAuthInfo::default()
        }],
        contexts: vec![NamedContext {
            name: KUBECONFIG_CLUSTER.to_string(),
            context: Some(Context {
                cluster: KUBECONFIG_CLUSTER.to_string(),
                user: Some(user),
                ..Context::default()
            }),
            ..NamedContext::default()
        }],
        current_context: Some(KUBECONFIG_CLUSTER.to_string()),
        ..Kubeconfig::default()
    }
}

/// Writes `config` to `path` atomically (a reader sees the old file or the new one) with mode
/// 0600, since it holds a token.
pub fn write_kubeconfig(path: &Path, config: &Kubeconfig) -> Result<(), ApiServerError> {
    let failed = |source| ApiServerError::WriteKubeconfig {
        path: path.to_path_buf(),
        source,
    };
    let text = serde_yaml::to_string(config).map_err(ApiServerError::SerializeKubeconfig)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(failed)?;
    }
    crate::fs::write_atomic(path, text.as_bytes(), 0o600).map_err(failed)
}
