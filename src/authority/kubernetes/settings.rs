//! How the Kubernetes authority is set up: the review mode, how hard to lean on the API server,
//! and finding the cluster configuration (flag, `KUBECONFIG`, `~/.kube/config`, in-cluster).

use std::path::PathBuf;
use std::time::Duration;

use kube::config::{InClusterError, KubeConfigOptions, Kubeconfig, KubeconfigError};

/// How regate asks the API server (`--review delegated|self`, config `authority.review`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReviewMode {
    /// `TokenReview` and `SubjectAccessReview` with regate's own credentials (needs the
    /// `system:auth-delegator` ClusterRole).
    #[default]
    Delegated,
    /// `SelfSubjectReview` and `SelfSubjectAccessReview` with the caller's own token, as
    /// OpenShift's registry does; regate needs no privilege.
    #[value(name = "self")]
    #[serde(rename = "self")]
    SelfReview,
}

/// How to reach the API server and how hard to lean on it.
#[derive(Clone, Debug)]
pub struct KubernetesSettings {
    /// The kubeconfig file; `None` means `KUBECONFIG`, else `~/.kube/config`, else in-cluster.
    pub kubeconfig: Option<PathBuf>,
    /// Who asks: regate (`Delegated`) or the caller (`SelfReview`).
    pub review: ReviewMode,
    /// `spec.audiences` of each TokenReview; empty means the API server's own audience.
    pub audiences: Vec<String>,
    /// Requests per second toward the API, sustained.
    pub qps: f64,
    /// Requests toward the API allowed at once above `qps`.
    pub burst: u32,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// Attempts after the first on 429, 5xx and connection or timeout errors.
    pub retries: u32,
    /// The first retry waits up to this long (full jitter); each later one up to twice as long.
    pub retry_backoff: Duration,
    /// How long one review may take, attempts, waits and rate limit included.
    pub deadline: Duration,
    /// How long an identity is reused (never past the token's own `exp`).
    pub token_cache_ttl: Duration,
    /// How long a token the API rejected stays rejected without asking again.
    pub invalid_token_ttl: Duration,
    /// Most tokens whose identity is kept.
    pub token_cache_size: u64,
}

impl Default for KubernetesSettings {
    /// 50 requests/s with bursts of 100, 5 s per attempt, 2 retries from 100 ms within 10 s,
    /// identities kept 2 min (rejections 10 s), at most 10,000 tokens.
    fn default() -> Self {
        KubernetesSettings {
            kubeconfig: None,
            review: ReviewMode::Delegated,
            audiences: Vec::new(),
            qps: 50.0,
            burst: 100,
            timeout: Duration::from_secs(5),
            retries: 2,
            retry_backoff: Duration::from_millis(100),
            deadline: Duration::from_secs(10),
            token_cache_ttl: Duration::from_secs(120),
            invalid_token_ttl: Duration::from_secs(10),
            token_cache_size: 10_000,
        }
    }
}

/// Why the Kubernetes authority cannot start; each message names the flag or file to fix.
#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    /// Neither a kubeconfig nor an in-cluster service account was found.
    #[error(
        "no Kubernetes configuration found: pass --kubeconfig FILE, set KUBECONFIG, create ~/.kube/config, or run in a pod with a service account (in-cluster: {in_cluster})"
    )]
    NotFound {
        /// Why the in-cluster configuration could not be read.
        #[source]
        in_cluster: InClusterError,
    },
    /// A kubeconfig file exists but cannot be read or used.
    #[error("{origin}: cannot load the kubeconfig: {source}")]
    Kubeconfig {
        /// The file (or `KUBECONFIG=...` when it came from the environment).
        origin: String,
        /// kube's error.
        #[source]
        source: KubeconfigError,
    },
    /// A client for the API server cannot be built (TLS material, proxy, exec plugin).
    #[error("cannot build a client for the kubernetes API {api}: {source}")]
    Client {
        /// The API server.
        api: String,
        /// kube's error.
        #[source]
        source: kube::Error,
    },
    /// A setting has a value that cannot work.
    #[error("kubernetes authority: `{field}` {reason}")]
    Setting {
        /// The field of [`KubernetesSettings`].
        field: &'static str,
        /// What is wrong and what would be right.
        reason: String,
    },
}

/// Reads the kubeconfig named by `path`, else `KUBECONFIG`, else `~/.kube/config`, else the
/// in-cluster service account (kube's `Config::infer` order, but a kubeconfig that exists and
/// is broken is an error rather than a silent fall back to in-cluster).
pub(super) async fn load_config(path: Option<&PathBuf>) -> Result<kube::Config, KubernetesError> {
    let options = KubeConfigOptions::default();
    if let Some(path) = path {
        let origin = path.display().to_string();
        let kubeconfig =
            Kubeconfig::read_from(path).map_err(|source| KubernetesError::Kubeconfig {
                origin: origin.clone(),
                source,
            })?;
        return kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|source| KubernetesError::Kubeconfig { origin, source });
    }
    if let Some(value) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        return kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|source| KubernetesError::Kubeconfig {
                origin: format!("KUBECONFIG={}", value.to_string_lossy()),
                source,
            });
    }
    match kube::Config::from_kubeconfig(&options).await {
        Ok(config) => Ok(config),
        Err(KubeconfigError::FindPath) => in_cluster(),
        Err(KubeconfigError::ReadConfig(error, _))
            if error.kind() == std::io::ErrorKind::NotFound =>
        {
            in_cluster()
        }
        Err(source) => Err(KubernetesError::Kubeconfig {
            origin: "~/.kube/config".into(),
            source,
        }),
    }
}

fn in_cluster() -> Result<kube::Config, KubernetesError> {
    kube::Config::incluster().map_err(|in_cluster| KubernetesError::NotFound { in_cluster })
}

pub(super) fn validate(settings: &KubernetesSettings) -> Result<(), KubernetesError> {
    let bad = |field, reason: &str| {
        Err(KubernetesError::Setting {
            field,
            reason: reason.to_string(),
        })
    };
    if !(settings.qps.is_finite() && settings.qps > 0.0) {
        return bad("qps", "must be a positive number of requests per second");
    }
    if settings.burst == 0 {
        return bad("burst", "must be at least 1");
    }
    if settings.timeout.is_zero() || settings.deadline.is_zero() {
        return bad("timeout", "and the deadline must be longer than zero");
    }
    Ok(())
}
