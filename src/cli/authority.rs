//! `regate authority serve`: the embedded authority served over the Kubernetes API (see
//! [`crate::authority::apiserver`]), and the kubeconfig its clients, regate gateways in
//! `kubernetes` mode, use.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use secrecy::SecretString;

use super::StateArg;
use crate::authority::apiserver::{self, ApiServer};
use crate::authority::embedded::Embedded;

/// How long a shutdown waits for reviews in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Subcommand)]
pub(super) enum Authority {
    /// Serve the embedded authority over the Kubernetes API (TokenReview, SubjectAccessReview
    /// and their self forms), so gateways in kubernetes mode share it without a cluster.
    #[command(after_help = "Example:\n  \
        regate authority serve --listen 127.0.0.1:6443 --kubeconfig authority.kubeconfig\n  \
        regate serve --authority kubernetes --kubeconfig authority.kubeconfig \\\n    \
        --listen 127.0.0.1:8080 --upstream http://127.0.0.1:5000")]
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Address to listen on, e.g. 127.0.0.1:6443 (port 0 picks a free one; the `listening on`
    /// line says which).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    #[command(flatten)]
    state: StateArg,
    /// Write a kubeconfig for gateways here (mode 0600): this server's address and a token of
    /// service account regate-system/regate, created if missing and bound to
    /// system:auth-delegator.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    tls: crate::config::TlsArgs,
    /// The CA written into the kubeconfig as certificate-authority-data when serving TLS
    /// (default: the last certificate of --tls-cert, right for a self-signed certificate or a
    /// chain that ends with its CA).
    #[arg(long = "tls-ca", value_name = "FILE", requires = "tls_cert")]
    tls_ca: Option<PathBuf>,
    /// regate's config file: the OIDC issuers of its identity.oidc are trusted here too, so
    /// TokenReviews and self reviews know the ID tokens the gateways know.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Fault injection for tests: answer every review after this delay, e.g. 5ms.
    #[arg(long, hide = true, value_name = "DURATION", value_parser = humantime::parse_duration)]
    inject_latency: Option<Duration>,
}

impl Authority {
    pub(super) fn run(self, log_format: super::LogFormat) -> anyhow::Result<()> {
        match self {
            Authority::Serve(args) => super::server_runtime(log_format)?.block_on(serve(args)),
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let files = match (&args.tls.tls_cert, &args.tls.tls_key) {
        (Some(cert_file), Some(key_file)) => Some(crate::tls::TlsFiles {
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
        }),
        _ => None,
    };
    let tls = crate::server::serving_tls(files.as_ref())?;
    let ca_pem = match &files {
        Some(files) => Some(kubeconfig_ca(args.tls_ca.as_deref(), &files.cert_file)?),
        None => None,
    };
    let store = args.state.open()?;
    let dir = store.layout().root().to_path_buf();
    // Before the snapshot is loaded, so the kubeconfig's token works from the first request.
    let client_token = match &args.kubeconfig {
        Some(_) => Some(SecretString::from(
            apiserver::provision_client(&store)?.token,
        )),
        None => None,
    };
    let embedded = Embedded::open(&dir)
        .with_context(|| format!("opening state directory {} (flag --state)", dir.display()))?;
    embedded.spawn_reloader();
    if let Some(latency) = args.inject_latency {
        tracing::warn!("every review is answered after {latency:?} (--inject-latency)");
    }
    let issuers = match &args.config {
        None => Vec::new(),
        Some(path) => {
            crate::config::Config::load(&crate::config::ServeArgs {
                config: Some(path.clone()),
                ..crate::config::ServeArgs::default()
            })?
            .oidc
        }
    };
    let authority = crate::authority::trusting::Trusting::wrap(&issuers, embedded.clone())
        .map_err(|e| anyhow::anyhow!("identity.oidc: {e}"))?;
    let server = ApiServer::new(authority)
        .with_objects(embedded)
        .with_latency(args.inject_latency);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (flag --listen)", args.listen))?;
    let bound = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = apiserver::client_url(bound, scheme);
    if let (Some(path), Some(token)) = (&args.kubeconfig, client_token) {
        let config = apiserver::kubeconfig(&url, token, ca_pem.as_deref());
        apiserver::write_kubeconfig(path, &config)?;
        tracing::info!(kubeconfig = %path.display(), "wrote the gateways' kubeconfig");
    }
    tracing::info!(listen = %bound, state = %dir.display(), "serving the authority");
    // Printed only once the socket accepts (and the kubeconfig is written), so a script can
    // wait for this line.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {scheme}://{bound}")?;
        out.flush()?;
    }
    apiserver::serve(
        listener,
        Arc::new(server),
        tls,
        crate::server::shutdown_signal(),
        DRAIN_TIMEOUT,
    )
    .await;
    Ok(())
}

/// The PEM of the CA clients should trust: `ca_file` whole, else the last certificate of the
/// served chain.
fn kubeconfig_ca(
    ca_file: Option<&std::path::Path>,
    chain: &std::path::Path,
) -> anyhow::Result<String> {
    let (path, certificates) = match ca_file {
        Some(path) => (path, crate::tls::read_chain(path)?),
        None => (chain, crate::tls::read_chain(chain)?),
    };
    let pick: Vec<_> = match ca_file {
        Some(_) => certificates.iter().collect(),
        None => certificates.last().into_iter().collect(),
    };
    let blocks: Vec<pem::Pem> = pick
        .into_iter()
        .map(|der| pem::Pem::new("CERTIFICATE", der.to_vec()))
        .collect();
    anyhow::ensure!(!blocks.is_empty(), "{}: no certificate", path.display());
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    Ok(pem::encode_many_config(&blocks, config))
}

/// Completes on Ctrl-C or SIGTERM.
#[cfg(test)]
mod tests;
