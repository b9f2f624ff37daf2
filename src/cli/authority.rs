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
    /// Fault injection for tests: answer every review after this delay, e.g. 5ms.
    #[arg(long, hide = true, value_name = "DURATION", value_parser = humantime::parse_duration)]
    inject_latency: Option<Duration>,
}

impl Authority {
    pub(super) fn run(self) -> anyhow::Result<()> {
        match self {
            Authority::Serve(args) => super::server_runtime()?.block_on(serve(args)),
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
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
    let server = ApiServer::new(embedded.clone())
        .with_objects(embedded)
        .with_latency(args.inject_latency);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (flag --listen)", args.listen))?;
    let bound = listener.local_addr()?;
    let url = apiserver::client_url(bound);
    if let (Some(path), Some(token)) = (&args.kubeconfig, client_token) {
        apiserver::write_kubeconfig(path, &apiserver::kubeconfig(&url, token))?;
        tracing::info!(kubeconfig = %path.display(), "wrote the gateways' kubeconfig");
    }
    tracing::info!(listen = %bound, state = %dir.display(), "serving the authority");
    // Printed only once the socket accepts (and the kubeconfig is written), so a script can
    // wait for this line.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{bound}")?;
        out.flush()?;
    }
    apiserver::serve(
        listener,
        Arc::new(server),
        crate::server::shutdown_signal(),
        DRAIN_TIMEOUT,
    )
    .await?;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
#[cfg(test)]
mod tests;
