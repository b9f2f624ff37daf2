//! Start-up: `regate serve` loads the config, opens the authority, builds the [`Gateway`]
//! ([`Gateway::build`], the one way to build one: `serve`, in-process tests and benches use it),
//! listens, and serves until SIGTERM or Ctrl-C, then drains transfers in flight.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::console::Backing;
use super::{Gateway, Remote, TokenServer, UpstreamCredentials, app, failed_logins};
use crate::authority::Authority;
use crate::authority::embedded::Embedded;
use crate::authority::kubernetes::Kubernetes;
use crate::cache::Decisions;
use crate::config::{Config, ServeArgs};
use crate::connections;
use crate::proxy::Upstream;
use crate::token::Signer;

/// How long a graceful shutdown waits for transfers in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

impl Gateway {
    /// Everything a request needs, from a validated `config`, its `authority` and the key of
    /// registry tokens. Starts the reloaders of token-server keys and the pull secret, so it
    /// needs a tokio runtime. Errors name the config field to fix (this is start-up, the
    /// binary's edge, hence `anyhow`).
    pub fn build(
        config: Config,
        authority: Arc<dyn Authority>,
        signer: Arc<Signer>,
    ) -> anyhow::Result<Gateway> {
        let upstream = Upstream::new(&config.upstream, config.upstream_timeout)
            .with_context(|| format!("upstream {}", config.upstream))?;
        let token_server = match &config.token_server {
            None => None,
            Some(settings) => {
                let key = crate::token::keys::LiveKey::open(&settings.keys).with_context(|| {
                    format!(
                        "token_server.keys {}: create the keys with `regate keys init --dir {}`",
                        settings.keys.display(),
                        crate::shell::quote_path(&settings.keys)
                    )
                })?;
                key.spawn_reloader();
                tracing::info!(
                    realm = %settings.realm_path,
                    service = %settings.service,
                    issuer = %settings.issuer,
                    key = %key.current().info().libtrust_id,
                    "token-server mode"
                );
                Some(TokenServer {
                    settings: settings.clone(),
                    key,
                })
            }
        };
        let pull_secret = match &config.pull_secret {
            None => None,
            Some(path) => {
                let file = crate::upstream::pull_secret::PullSecretFile::open(path)
                    .with_context(|| format!("upstream.pull_secret {}", path.display()))?;
                file.spawn_reloader();
                let auth = crate::upstream::auth::UpstreamAuth::new(
                    &config.upstream,
                    config.upstream_timeout,
                )
                .context("upstream")?;
                Some(UpstreamCredentials { file, auth })
            }
        };
        let mut remotes = Vec::new();
        for settings in &config.remotes {
            let what = || format!("remotes: namespace {}", settings.namespace);
            remotes.push(Remote {
                upstream: Upstream::new(&settings.url, config.upstream_timeout)
                    .with_context(what)?,
                auth: crate::upstream::auth::UpstreamAuth::new(
                    &settings.url,
                    config.upstream_timeout,
                )
                .with_context(what)?,
                settings: settings.clone(),
            });
        }
        let audit = match &config.audit {
            None => None,
            Some(output) => Some(Arc::new(crate::audit::AuditLog::open(output)?)),
        };
        // ID tokens of the configured issuers are verified here, before the authority is asked.
        let authority = crate::authority::trusting::Trusting::wrap(&config.oidc, authority)
            .map_err(|e| anyhow::anyhow!("identity.oidc: {e}"))?;
        Ok(Gateway {
            audit,
            admission: super::shed::Admission::new(config.connections.max_in_flight),
            per_client: super::shed::PerClient::new(config.connections.max_in_flight_per_client),
            decisions: Decisions::new(
                Arc::new(crate::authority::measured::Measured(authority)),
                &config.cache,
            ),
            failed_logins: failed_logins::FailedLogins::new(&config.failed_logins),
            signer,
            upstream,
            token_server,
            pull_secret,
            remotes,
            config,
            draining: std::sync::atomic::AtomicBool::new(false),
        })
    }
}

/// `regate serve`: load the config, open the authority, listen, and serve until SIGTERM/Ctrl-C.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(&args)?;
    let tls = serving_tls(config.tls.as_ref())?;
    let (authority, signer, backing) = open_authority(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (flag --listen)", config.listen))?;
    let bound = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!("{}", summary(&config, &format!("{scheme}://{bound}")));
    if let Some(addr) = config.metrics_listen {
        let metrics = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (metrics.listen)"))?;
        tracing::info!("metrics at http://{}/metrics", metrics.local_addr()?);
        tokio::spawn(async move {
            if let Err(error) = axum::serve(metrics, super::metrics_app()).await {
                tracing::error!(%error, "the metrics listener failed");
            }
        });
    }
    let connections = config.connections.clone();
    let console_settings = config.console.clone();
    let gateway = Arc::new(Gateway::build(config, authority, signer)?);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let service = match console_settings {
        None => app(gateway.clone()),
        Some(settings) => {
            let recent = Arc::new(super::console::Recent::default());
            let console = super::console::Console::new(gateway.clone(), backing, &settings, recent);
            if let Some(addr) = settings.listen {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (console.listen)"))?;
                tracing::info!("console at {scheme}://{}/console/", listener.local_addr()?);
                tokio::spawn(connections::serve(
                    listener,
                    console.router(),
                    connections.clone(),
                    tls.clone(),
                    stop_rx.clone(),
                    DRAIN_TIMEOUT,
                ));
            } else {
                tracing::info!("console at {scheme}://{bound}/console/");
            }
            if tls.is_none() {
                tracing::warn!(
                    "the console is served over plain HTTP: browsers keep its Secure session \
                     cookie only on the loopback address; configure tls: (or a TLS proxy) for \
                     anyone else"
                );
            }
            super::service::App::with_console(gateway.clone(), &console, settings.listen.is_none())
        }
    };
    // Printed only once the socket accepts, so a script can wait for this line.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {scheme}://{bound}")?;
        out.flush()?;
    }
    // Only for a file: SIGHUP keeps its default (exit) otherwise.
    if let (Some(audit), Some(crate::audit::AuditOutput::File { .. })) =
        (gateway.audit.clone(), &gateway.config.audit)
    {
        reopen_on_hangup(audit)?;
    }
    let server = tokio::spawn(connections::serve(
        listener,
        service,
        connections,
        tls,
        stop_rx,
        DRAIN_TIMEOUT,
    ));
    shutdown_signal().await;
    gateway
        .draining
        .store(true, std::sync::atomic::Ordering::Release);
    tracing::info!("shutting down; waiting up to {DRAIN_TIMEOUT:?} for transfers in flight");
    let _ = stop_tx.send(true);
    server.await?;
    if let Some(audit) = gateway.audit.clone() {
        tokio::task::spawn_blocking(move || audit.flush()).await?;
    }
    Ok(())
}

/// Reopens the audit file on every SIGHUP, after logrotate (or an operator) moved it away.
fn reopen_on_hangup(audit: Arc<crate::audit::AuditLog>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            audit.reopen();
        }
    });
    Ok(())
}

/// The start-up line a person reads: where regate listens, what it fronts, who decides, TLS,
/// and which token realms it serves.
fn summary(config: &Config, url: &str) -> String {
    let authority = match &config.authority {
        crate::config::Authority::Embedded => {
            format!("embedded (state {})", config.state.display())
        }
        crate::config::Authority::Kubernetes(k8s) => format!(
            "kubernetes ({} reviews, kubeconfig {})",
            match k8s.review {
                crate::authority::kubernetes::ReviewMode::Delegated => "delegated",
                crate::authority::kubernetes::ReviewMode::SelfReview => "self",
            },
            k8s.kubeconfig
                .as_ref()
                .map_or("from KUBECONFIG or in-cluster".to_string(), |p| p
                    .display()
                    .to_string())
        ),
    };
    let tls = match &config.tls {
        Some(files) => format!("on ({}, reloaded on change)", files.cert_file.display()),
        None => "off (plain HTTP)".to_string(),
    };
    let mut tokens = format!(
        "realm {} ({} registry tokens)",
        config.realm_path,
        humantime::format_duration(config.token_lifetime)
    );
    if let Some(ts) = &config.token_server {
        tokens.push_str(&format!(
            "; token-server realm {} for service {}",
            ts.realm_path, ts.service
        ));
    }
    let audit = match &config.audit {
        None => "off".to_string(),
        Some(crate::audit::AuditOutput::Stdout) => "stdout".to_string(),
        Some(crate::audit::AuditOutput::File { path, .. }) => {
            format!("{} (reopened on SIGHUP)", path.display())
        }
    };
    format!(
        "regate serving {url} in front of {}; authority: {authority}; TLS: {tls}; tokens: {tokens}; audit log: {audit}; remote namespaces: {}",
        config.upstream,
        config.remotes.len()
    )
}

/// The TLS configuration to serve with, its certificate reloaded as it changes; `None` for
/// plain HTTP. Needs a tokio runtime.
pub fn serving_tls(
    files: Option<&crate::tls::TlsFiles>,
) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    let Some(files) = files else {
        return Ok(None);
    };
    let live = crate::tls::LiveCert::open(files.clone())
        .context("TLS (tls.cert_file and tls.key_file, or --tls-cert and --tls-key)")?;
    live.spawn_reloader();
    Ok(Some(live.server_config()))
}

/// The configured authority, the key that signs registry tokens, and the embedded store when
/// that is the authority (the console reads and changes it).
async fn open_authority(
    config: &Config,
) -> anyhow::Result<(Arc<dyn Authority>, Arc<Signer>, Backing)> {
    let key_file = |path: &std::path::Path| -> anyhow::Result<Arc<Signer>> {
        Ok(Arc::new(Signer::load_or_create(path).with_context(
            || format!("token.key_file {}", path.display()),
        )?))
    };
    match &config.authority {
        crate::config::Authority::Embedded => {
            let embedded = Embedded::open(&config.state)
                .with_context(|| format!("opening state directory {}", config.state.display()))?;
            embedded.spawn_reloader();
            let signer = match &config.token_key_file {
                Some(path) => key_file(path)?,
                None => embedded.signer(),
            };
            Ok((embedded.clone(), signer, Backing::Embedded(embedded)))
        }
        crate::config::Authority::Kubernetes(k8s) => {
            let authority = Kubernetes::new(k8s.clone())
                .await
                .context("connecting to the Kubernetes API (authority: kubernetes)")?;
            let signer = match &config.token_key_file {
                Some(path) => key_file(path)?,
                None => {
                    tracing::info!(
                        "registry tokens are signed with a key of this process only; set \
                         token.key_file to a shared key when several replicas serve one address"
                    );
                    Arc::new(Signer::random())
                }
            };
            Ok((authority.clone(), signer, Backing::Kubernetes(authority)))
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
