//! The config file's shape, as serde reads it: every field optional, unknown fields refused
//! (with the line), nothing validated yet. [`super::Config::load`] validates it.

use std::path::PathBuf;

use super::AuthorityKind;
use crate::authority::kubernetes::ReviewMode;

/// The config file's shape; every field is optional.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) listen: Option<String>,
    pub(super) upstream: Option<UpstreamField>,
    pub(super) state: Option<PathBuf>,
    pub(super) public_url: Option<String>,
    pub(super) service: Option<String>,
    pub(super) upstream_timeout: Option<String>,
    pub(super) trusted_proxies: Option<Vec<String>>,
    #[serde(default)]
    pub(super) token: TokenSection,
    #[serde(default)]
    pub(super) cache: CacheSection,
    #[serde(default)]
    pub(super) authority: AuthoritySection,
    pub(super) token_server: Option<TokenServerSection>,
    #[serde(default)]
    pub(super) remotes: Vec<RemoteSection>,
    #[serde(default)]
    pub(super) connections: ConnectionsSection,
    #[serde(default)]
    pub(super) failed_logins: FailedLoginsSection,
    pub(super) tls: Option<TlsSection>,
    pub(super) metrics: Option<MetricsSection>,
    pub(super) audit: Option<AuditSection>,
    #[serde(default)]
    pub(super) identity: IdentitySection,
    pub(super) console: Option<ConsoleSection>,
}

/// `console:`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConsoleSection {
    pub(super) listen: Option<String>,
    pub(super) session_idle: Option<String>,
    pub(super) session_max: Option<String>,
}

/// `identity:`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IdentitySection {
    #[serde(default)]
    pub(super) oidc: Vec<OidcSection>,
}

/// One entry of `identity.oidc`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OidcSection {
    pub(super) issuer: Option<String>,
    #[serde(default)]
    pub(super) audiences: Vec<String>,
    pub(super) jwks_url: Option<String>,
    pub(super) preset: Option<String>,
    pub(super) username_claim: Option<String>,
    pub(super) username_prefix: Option<String>,
    pub(super) groups_claim: Option<String>,
    pub(super) groups_prefix: Option<String>,
}

/// `audit:`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditSection {
    pub(super) path: Option<PathBuf>,
    pub(super) max_size: Option<serde_yaml::Value>,
    pub(super) max_files: Option<u32>,
}

/// `metrics:`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MetricsSection {
    pub(super) listen: Option<String>,
}

/// `tls:`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsSection {
    pub(super) cert_file: Option<PathBuf>,
    pub(super) key_file: Option<PathBuf>,
}

/// `connections:`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConnectionsSection {
    pub(super) header_timeout: Option<String>,
    pub(super) idle_timeout: Option<String>,
    pub(super) max: Option<usize>,
    pub(super) max_in_flight: Option<usize>,
    pub(super) max_in_flight_per_client: Option<usize>,
    pub(super) request_timeout: Option<String>,
}

/// `failed_logins:`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FailedLoginsSection {
    pub(super) burst: Option<u32>,
    pub(super) refill: Option<String>,
    pub(super) replicas: Option<u32>,
}

/// One entry of `remotes:`: a namespace whose images are pulled from another registry.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RemoteSection {
    pub(super) namespace: String,
    pub(super) url: String,
    #[serde(default)]
    pub(super) prefix: String,
}

/// `upstream:` is the registry's URL, or a section with it and the pull secret.
#[derive(Debug)]
pub(super) enum UpstreamField {
    /// `upstream: http://127.0.0.1:5000`
    Url(String),
    /// `upstream: {url: ..., pull_secret: ...}`
    Section(UpstreamSection),
}

impl<'de> serde::Deserialize<'de> for UpstreamField {
    // By hand rather than `untagged`, whose error ("did not match any variant") hides the
    // misspelt field.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match <serde_yaml::Value as serde::Deserialize>::deserialize(d)? {
            serde_yaml::Value::String(url) => Ok(UpstreamField::Url(url)),
            other => serde_yaml::from_value(other)
                .map(UpstreamField::Section)
                .map_err(|e| serde::de::Error::custom(format!("upstream: {e}"))),
        }
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpstreamSection {
    pub(super) url: Option<String>,
    pub(super) pull_secret: Option<PathBuf>,
}

/// `token_server:` present turns token-server mode on: regate is the realm of a
/// distribution registry configured with `auth: token`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenServerSection {
    pub(super) realm_path: Option<String>,
    pub(super) service: Option<String>,
    pub(super) issuer: Option<String>,
    pub(super) keys: Option<PathBuf>,
    pub(super) trust: Option<crate::token::keys::Trust>,
    pub(super) lifetime: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthoritySection {
    pub(super) kind: Option<AuthorityKind>,
    pub(super) kubeconfig: Option<PathBuf>,
    pub(super) review: Option<ReviewMode>,
    #[serde(default)]
    pub(super) audiences: Vec<String>,
    pub(super) qps: Option<f64>,
    pub(super) burst: Option<u32>,
    pub(super) timeout: Option<String>,
    pub(super) retries: Option<u32>,
    pub(super) token_cache_ttl: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenSection {
    pub(super) realm_path: Option<String>,
    pub(super) lifetime: Option<String>,
    pub(super) key_file: Option<PathBuf>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CacheSection {
    pub(super) allow_ttl: Option<String>,
    pub(super) deny_ttl: Option<String>,
    pub(super) max_entries: Option<u64>,
    pub(super) stale_if_error: Option<String>,
}
