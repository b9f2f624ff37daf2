//! Configuration: the YAML file (`config/regate.yaml`), overridden by `regate serve` flags,
//! validated into one [`Config`] before anything is served.

use std::path::PathBuf;

mod file;
mod sections;

use file::*;
pub use sections::MIN_TOKEN_LIFETIME;
use sections::*;

use crate::authority::kubernetes::{KubernetesSettings, ReviewMode};

/// `regate serve` flags; each overrides the config file's field of the same name.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct ServeArgs {
    /// YAML config file (see config/regate.yaml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free one).
    #[arg(long)]
    pub listen: Option<String>,
    /// The registry behind regate, e.g. http://127.0.0.1:5000.
    #[arg(long)]
    pub upstream: Option<String>,
    /// Docker config file with credentials toward the registry (upstream.pull_secret); edits
    /// take effect without a restart.
    #[arg(long, value_name = "FILE")]
    pub pull_secret: Option<PathBuf>,
    /// State directory of the embedded authority.
    #[arg(long, env = "REGATE_STATE")]
    pub state: Option<PathBuf>,
    /// The URL clients reach regate at, used in challenges and Location headers.
    #[arg(long)]
    pub public_url: Option<String>,
    /// Who authenticates and authorizes: `embedded` (the state directory) or `kubernetes`
    /// (TokenReview and SubjectAccessReview against an API server).
    #[arg(long, value_enum)]
    pub authority: Option<AuthorityKind>,
    /// Kubeconfig for `--authority kubernetes` (else KUBECONFIG, else in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// How `--authority kubernetes` reviews: `delegated` (TokenReview + SubjectAccessReview,
    /// needs system:auth-delegator) or `self` (as the caller, needs no privilege).
    #[arg(long, value_enum)]
    pub review: Option<ReviewMode>,
    /// Serve the web console at /console/ (console: in the config file sets more).
    #[arg(long)]
    pub console: bool,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// `--tls-cert` and `--tls-key`: serve HTTPS (and HTTP/2) instead of plain HTTP.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct TlsArgs {
    /// PEM certificate chain, server certificate first (tls.cert_file); reloaded when it
    /// changes.
    #[arg(long = "tls-cert", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of that certificate (tls.key_file).
    #[arg(long = "tls-key", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Which authority decides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthorityKind {
    /// regate's own RBAC store in the state directory.
    #[default]
    Embedded,
    /// A Kubernetes or OpenShift API server.
    Kubernetes,
}

/// The state directory used when none is given: `$XDG_STATE_HOME/regate`, else
/// `~/.local/state/regate`, else `./regate-state`.
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("regate");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".local/state/regate");
    }
    PathBuf::from("regate-state")
}

/// Why the configuration cannot be used; each message names the file or flag and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid YAML of the expected shape.
    #[error("{path}:{line}: {error} (see config/regate.yaml for every field)")]
    Parse {
        /// The file.
        path: String,
        /// The line of the error (0 when unknown).
        line: usize,
        /// serde_yaml's error, with line and column; in the message, not the error chain, so
        /// `{:#}` says it once.
        error: serde_yaml::Error,
    },
    /// A flag has a value that cannot be used.
    #[error("--{flag}: {reason}")]
    Flag {
        /// The flag without its dashes, e.g. `public-url`.
        flag: String,
        /// What is wrong and what would be right.
        reason: String,
    },
    /// A field of the config file has a value that cannot be used.
    #[error("{origin}: field `{field}`: {reason}")]
    Field {
        /// The config file.
        origin: String,
        /// The field, e.g. `cache.allow_ttl`.
        field: &'static str,
        /// What is wrong and what would be right.
        reason: String,
    },
}

/// A remote (pull-through) namespace, validated: `NAMESPACE/app` is pulled from
/// `URL/v2/PREFIX/app`, with credentials from the caller's and the namespace's pull secrets
/// and the global one. Pushes to it are refused.
/// `trusted_proxies`: the addresses (`10.0.0.5`) and networks (`10.244.0.0/16`, an ingress
/// controller's pod network) whose forwarded headers are believed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

impl TrustedProxies {
    /// Whether `ip` is one of the addresses or in one of the networks.
    pub fn contains(&self, ip: &std::net::IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }
}

impl FromIterator<std::net::IpAddr> for TrustedProxies {
    fn from_iter<I: IntoIterator<Item = std::net::IpAddr>>(iter: I) -> Self {
        TrustedProxies(iter.into_iter().map(ipnet::IpNet::from).collect())
    }
}

/// The `trusted_proxies` entries, each an address or a network in CIDR notation.
fn trusted_proxies(
    entries: Vec<String>,
    field: impl Fn(&'static str, String) -> ConfigError,
) -> Result<TrustedProxies, ConfigError> {
    entries
        .iter()
        .map(|entry| {
            let entry = entry.trim();
            entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    field(
                        "trusted_proxies",
                        format!(
                            "{entry:?} is neither an address nor a network; write e.g. \
                             10.0.0.5 or 10.244.0.0/16"
                        ),
                    )
                })
        })
        .collect::<Result<_, _>>()
        .map(TrustedProxies)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteSettings {
    /// The namespace clients pull from, e.g. `mirror`.
    pub namespace: String,
    /// The remote registry's origin, e.g. `https://quay.io`.
    pub url: String,
    /// The path at the remote the namespace stands for, e.g. `library`; empty for the root.
    pub prefix: String,
}

/// The authority, validated.
#[derive(Clone, Debug)]
pub enum Authority {
    /// The embedded store in `Config::state`.
    Embedded,
    /// A Kubernetes API server.
    Kubernetes(KubernetesSettings),
}

/// Token-server mode, validated: the registry's `auth.token` block must carry the same realm,
/// `service` and `issuer`, and trust the key directory's bundle (`regate keys init` prints it).
#[derive(Clone, Debug)]
pub struct TokenServerSettings {
    /// Path of the realm the registry's clients fetch tokens from.
    pub realm_path: String,
    /// The registry's `auth.token.service`: every token's `aud`.
    pub service: String,
    /// The registry's `auth.token.issuer`: every token's `iss`.
    pub issuer: String,
    /// The key directory (`regate keys init`).
    pub keys: PathBuf,
    /// What the token header carries for the registry to find the key.
    pub trust: crate::token::keys::Trust,
    /// How long a token lets its holder start requests at the registry.
    pub lifetime: std::time::Duration,
}

/// Defaults of token-server mode, shared with `regate keys init` so its block matches.
pub mod token_server_defaults {
    /// Realm path.
    pub const REALM_PATH: &str = "/token";
    /// `service` (the registry's `auth.token.service`).
    pub const SERVICE: &str = "registry";
    /// `issuer` (the registry's `auth.token.issuer`).
    pub const ISSUER: &str = "regate";
    /// Token lifetime: a token is checked when each request starts, so this covers a long
    /// push's requests; it is also how long a revoked grant still works at the registry.
    pub const LIFETIME: std::time::Duration = std::time::Duration::from_secs(3600);
    /// The key directory inside the state directory.
    pub const KEYS_DIR: &str = "keys";
}

/// Connection limits and deadlines, validated.
#[derive(Clone, Debug)]
pub struct ConnectionSettings {
    /// How long a request header may take to arrive, counted from when regate starts waiting.
    pub header_timeout: std::time::Duration,
    /// How long a connection may stay open with no request in flight.
    pub idle_timeout: std::time::Duration,
    /// Most connections kept at once (further capped by the open-file limit).
    pub max: usize,
    /// Most requests handled at once (until their response headers); more are shed with 503.
    pub max_in_flight: usize,
    /// Most requests without credentials one client has in flight at once, a body being read
    /// included; more are refused with 503.
    pub max_in_flight_per_client: usize,
    /// How long a request without a streaming body (all but blob upload data) may take to get
    /// its response headers; then 504.
    pub request_timeout: std::time::Duration,
}

impl Default for ConnectionSettings {
    /// 30 s for a header, 30 s idle, 10,000 connections, 2,048 requests in flight (64 per
    /// client without credentials), 60 s to answer a request without a streaming body.
    fn default() -> Self {
        ConnectionSettings {
            header_timeout: std::time::Duration::from_secs(30),
            idle_timeout: std::time::Duration::from_secs(30),
            max: 10_000,
            max_in_flight: 2048,
            max_in_flight_per_client: 64,
            request_timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// How many failed logins are let through, validated.
#[derive(Clone, Debug)]
pub struct FailedLoginSettings {
    /// Failures allowed at once per address and per user name; 0 turns limiting off.
    pub burst: u32,
    /// After the burst, one more failure per this long.
    pub refill: std::time::Duration,
}

impl Default for FailedLoginSettings {
    /// 30 failures at once, then one a second: a client that typed its token wrong a few times
    /// never notices, a guesser gets one try a second.
    fn default() -> Self {
        FailedLoginSettings {
            burst: 30,
            refill: std::time::Duration::from_secs(1),
        }
    }
}

/// Everything `regate serve` needs, validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to listen on.
    pub listen: std::net::SocketAddr,
    /// The registry's origin, `http://host:port`.
    pub upstream: String,
    /// State directory of the embedded authority.
    pub state: PathBuf,
    /// The gateway's public origin, when configured; else derived per request.
    pub public_url: Option<crate::proxy::PublicOrigin>,
    /// The `service` of challenges and tokens.
    pub service: String,
    /// Path of the token endpoint.
    pub realm_path: String,
    /// Lifetime of registry tokens.
    pub token_lifetime: std::time::Duration,
    /// Decision cache settings.
    pub cache: crate::cache::CacheSettings,
    /// How long a bodiless request waits for the registry's response headers.
    pub upstream_timeout: std::time::Duration,
    /// Peers whose `X-Forwarded-Proto`/`X-Forwarded-Host`/`X-Forwarded-For` are believed.
    pub trusted_proxies: TrustedProxies,
    /// Who decides.
    pub authority: Authority,
    /// Key file of registry tokens; `None`: the state directory's key (embedded) or a key
    /// made per process (kubernetes).
    pub token_key_file: Option<PathBuf>,
    /// Token-server mode, when configured.
    pub token_server: Option<TokenServerSettings>,
    /// The global pull secret (`upstream.pull_secret`): credentials toward the registry.
    pub pull_secret: Option<PathBuf>,
    /// Remote (pull-through) namespaces.
    pub remotes: Vec<RemoteSettings>,
    /// Connection deadlines and cap.
    pub connections: ConnectionSettings,
    /// Failed-login rate limits.
    pub failed_logins: FailedLoginSettings,
    /// The certificate and key to serve HTTPS with; `None`: plain HTTP.
    pub tls: Option<crate::tls::TlsFiles>,
    /// Where `/metrics` is served on its own (`metrics.listen`); `None`: beside the API.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Where audit lines go (`audit:`); `None`: no audit log.
    pub audit: Option<crate::audit::AuditOutput>,
    /// OIDC issuers whose ID tokens are identities (`identity.oidc`).
    pub oidc: Vec<crate::oidc::IssuerSettings>,
    /// The web console (`console:` or `--console`); `None`: not served.
    pub console: Option<ConsoleSettings>,
}

/// `console:`: the web console for operators (docs/console.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleSettings {
    /// Its own address (`console.listen`); `None`: at `/console/` beside the API.
    pub listen: Option<std::net::SocketAddr>,
    /// A session unused this long ends (`console.session_idle`).
    pub session_idle: std::time::Duration,
    /// A session ends this long after sign-in, used or not (`console.session_max`).
    pub session_max: std::time::Duration,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            listen: None,
            // Short: a copy of a session cookie outlives sign-out until it idles out
            // (docs/console.md, "Signing in").
            session_idle: std::time::Duration::from_secs(15 * 60),
            session_max: std::time::Duration::from_secs(8 * 3600),
        }
    }
}

/// Parses a public URL such as `https://registry.example.com` into an origin.
pub fn public_origin(url: &str) -> Option<crate::proxy::PublicOrigin> {
    let uri: http::Uri = url.trim_end_matches('/').parse().ok()?;
    let scheme = uri.scheme_str().filter(|s| *s == "http" || *s == "https")?;
    let host = uri.authority()?.as_str();
    matches!(uri.path(), "" | "/").then(|| crate::proxy::PublicOrigin {
        scheme: scheme.to_string(),
        host: host.to_string(),
    })
}

impl Config {
    /// Reads the config file named by `args` (if any) and applies the flags over it.
    pub fn load(args: &ServeArgs) -> Result<Config, ConfigError> {
        let (file, origin) = match &args.config {
            Some(path) => {
                let origin = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: origin.clone(),
                    source,
                })?;
                let file: FileConfig =
                    serde_yaml::from_str(&text).map_err(|error| ConfigError::Parse {
                        path: origin.clone(),
                        line: error.location().map_or(0, |l| l.line()),
                        error,
                    })?;
                (file, origin)
            }
            None => (FileConfig::default(), "(no config file)".to_string()),
        };
        let field = |field, reason: String| ConfigError::Field {
            origin: origin.clone(),
            field,
            reason,
        };
        // An error names the flag when the value came from one, else the file's field.
        let setting = |flag: Option<&String>, name: &'static str, reason: String| match flag {
            Some(_) => ConfigError::Flag {
                flag: name.replace('_', "-"),
                reason,
            },
            None => field(name, reason),
        };
        let listen = args
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".to_string());
        let listen = listen.parse().map_err(|_| {
            setting(
                args.listen.as_ref(),
                "listen",
                format!("{listen:?} is not an address; write e.g. 127.0.0.1:8080 or [::]:8080"),
            )
        })?;
        let public_url = match args.public_url.clone().or(file.public_url) {
            None => None,
            Some(url) => Some(public_origin(&url).ok_or_else(|| {
                setting(
                    args.public_url.as_ref(),
                    "public_url",
                    format!("{url:?} is not an origin; write e.g. https://registry.example.com"),
                )
            })?),
        };
        let realm_path = file
            .token
            .realm_path
            .unwrap_or_else(|| "/openshift/token".to_string());
        if !realm_path.starts_with('/')
            || realm_path.starts_with("/v2")
            || realm_path.starts_with("/console")
        {
            return Err(field(
                "token.realm_path",
                format!("{realm_path:?} must start with / and lie outside /v2/ and /console/"),
            ));
        }
        let state = args
            .state
            .clone()
            .or(file.state)
            .unwrap_or_else(default_state_dir);
        let token_server = match file.token_server {
            None => None,
            Some(section) => Some(token_server(section, &origin, &state, &realm_path)?),
        };
        let file_upstream = match file.upstream {
            None => UpstreamSection::default(),
            Some(UpstreamField::Url(url)) => UpstreamSection {
                url: Some(url),
                ..UpstreamSection::default()
            },
            Some(UpstreamField::Section(section)) => section,
        };
        let defaults = crate::cache::CacheSettings::default();
        let section = file.authority;
        let authority = match args.authority.or(section.kind).unwrap_or_default() {
            AuthorityKind::Embedded => Authority::Embedded,
            AuthorityKind::Kubernetes => {
                let defaults = KubernetesSettings::default();
                Authority::Kubernetes(KubernetesSettings {
                    kubeconfig: args.kubeconfig.clone().or(section.kubeconfig),
                    review: args.review.or(section.review).unwrap_or_default(),
                    audiences: section.audiences,
                    qps: section.qps.unwrap_or(defaults.qps),
                    burst: section.burst.unwrap_or(defaults.burst),
                    timeout: duration(
                        &origin,
                        "authority.timeout",
                        section.timeout.as_deref(),
                        defaults.timeout,
                    )?,
                    retries: section.retries.unwrap_or(defaults.retries),
                    token_cache_ttl: duration(
                        &origin,
                        "authority.token_cache_ttl",
                        section.token_cache_ttl.as_deref(),
                        defaults.token_cache_ttl,
                    )?,
                    ..defaults
                })
            }
        };
        Ok(Config {
            listen,
            upstream: args
                .upstream
                .clone()
                .or(file_upstream.url)
                .unwrap_or_else(|| "http://127.0.0.1:5000".to_string()),
            state,
            public_url,
            service: file.service.unwrap_or_else(|| "regate".to_string()),
            realm_path,
            token_lifetime: token_lifetime(
                &origin,
                "token.lifetime",
                file.token.lifetime.as_deref(),
                std::time::Duration::from_secs(600),
            )?,
            cache: crate::cache::CacheSettings {
                allow_ttl: duration(
                    &origin,
                    "cache.allow_ttl",
                    file.cache.allow_ttl.as_deref(),
                    defaults.allow_ttl,
                )?,
                deny_ttl: duration(
                    &origin,
                    "cache.deny_ttl",
                    file.cache.deny_ttl.as_deref(),
                    defaults.deny_ttl,
                )?,
                max_entries: file.cache.max_entries.unwrap_or(defaults.max_entries),
                stale_if_error: duration(
                    &origin,
                    "cache.stale_if_error",
                    file.cache.stale_if_error.as_deref(),
                    defaults.stale_if_error,
                )?,
            },
            upstream_timeout: duration(
                &origin,
                "upstream_timeout",
                file.upstream_timeout.as_deref(),
                std::time::Duration::from_secs(30),
            )?,
            trusted_proxies: trusted_proxies(file.trusted_proxies.unwrap_or_default(), field)?,
            token_key_file: file.token.key_file,
            token_server,
            pull_secret: args.pull_secret.clone().or(file_upstream.pull_secret),
            remotes: remotes(file.remotes, &origin)?,
            connections: connections(&file.connections, &origin)?,
            failed_logins: failed_logins(&file.failed_logins, &origin)?,
            tls: tls(&args.tls, file.tls, &origin)?,
            metrics_listen: match file.metrics.and_then(|m| m.listen) {
                None => None,
                Some(addr) => Some(addr.parse().map_err(|_| {
                    field(
                        "metrics.listen",
                        format!("{addr:?} is not an address; write e.g. 0.0.0.0:9090"),
                    )
                })?),
            },
            audit: audit(file.audit, &origin)?,
            oidc: oidc(file.identity.oidc, &origin)?,
            console: console(file.console, args.console, &origin)?,
            authority,
        })
    }
}

#[cfg(test)]
mod tests;
