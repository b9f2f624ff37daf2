//! The operator CLI: `regate serve`, `create`, `policy` and `delete` commands that change the
//! embedded authority's state directory the way `kubectl` and `oc` change a cluster, and
//! `regate authority serve`, which serves that state over the Kubernetes API.
//!
//! The commands may run while `regate serve` runs: the server notices the change within a
//! second. Errors are printed as `error: ...` with exit code 1.

mod apply;
mod authority;
mod authz;
mod completion;
mod create;
mod credential_provider;
mod delete;
mod get;
mod keys;
mod policy;
mod registry;
mod secrets;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::authority::embedded::Store;
use crate::config::{ServeArgs, default_state_dir};

/// regate: a registry auth gateway with OpenShift-style RBAC.
#[derive(Debug, Parser)]
#[command(
    name = "regate",
    version,
    about,
    propagate_version = true,
    after_help = "Examples:\n  \
        regate create namespace project-a\n  \
        regate serve --upstream http://127.0.0.1:5000\n  \
        regate policy explain project-a/app --as alice\n\n\
        Every command has examples in its --help, e.g. regate policy who-can --help"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How servers write their logs (to stderr): `text` for people, `json` (one object a
    /// line) for log collectors. Levels and modules come from RUST_LOG (default `info`; e.g.
    /// `RUST_LOG=regate=debug`, `RUST_LOG=warn`).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "REGATE_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the gateway in front of a registry.
    #[command(after_help = "Example:\n  \
        regate serve --listen 127.0.0.1:8080 --upstream http://127.0.0.1:5000")]
    Serve(ServeArgs),
    /// Create a namespace, service account, user, token or registry Secret.
    #[command(
        subcommand,
        after_help = "Examples:\n  regate create namespace project-a\n  \
            regate create token builder -n project-a"
    )]
    Create(create::Create),
    /// Grant or revoke roles, as `oc policy`.
    #[command(
        subcommand,
        after_help = "Examples:\n  \
            regate policy add-role-to-user system:image-puller alice -n project-a\n  \
            regate policy who-can get imagestreams/layers -n project-a"
    )]
    Policy(policy::Policy),
    /// Link registry Secrets to a service account, as `oc secrets`.
    #[command(
        subcommand,
        after_help = "Examples:\n  \
            regate secrets link default upstream-pull --for=pull -n project-a\n  \
            regate secrets unlink default upstream-pull -n project-a"
    )]
    Secrets(secrets::Secrets),
    /// Keep credentials for secured upstream registries in pull secret files, as `oc registry`.
    #[command(
        subcommand,
        after_help = "Example:\n  \
            regate registry login --registry=quay.io --auth-basic-stdin --to=pull-secret.json \
            < credentials.txt"
    )]
    Registry(registry::Registry),
    /// Create or update objects from Kubernetes manifests (YAML or JSON), as kubectl apply.
    Apply(apply::Apply),
    /// Delete objects by kind and name, or those of manifests; a namespace's tokens stop at once.
    Delete(delete::Delete),
    /// Show objects as kubectl does: tables, -o wide|name|yaml|json.
    #[command(after_help = "Examples:\n  \
        regate get rolebindings -n project-a -o wide\n  \
        regate get sa -A\n  \
        regate get clusterrole system:image-puller -o yaml")]
    Get(get::Get),
    /// Serve the embedded authority over the Kubernetes API, for gateways in kubernetes mode.
    #[command(
        subcommand,
        after_help = "Example:\n  \
            regate authority serve --listen 127.0.0.1:6443 --kubeconfig authority.kubeconfig"
    )]
    Authority(authority::Authority),
    /// Ask whether a subject may do something, as `kubectl auth`.
    #[command(
        subcommand,
        after_help = "Example:\n  \
            regate auth can-i get imagestreams/layers -n project-a --as alice"
    )]
    Auth(authz::Auth),
    /// Create, rotate and show the keys a registry verifies regate's tokens with (token-server
    /// mode).
    #[command(
        subcommand,
        after_help = "Examples:\n  \
            regate keys init --realm https://regate.example.com/token\n  \
            regate keys rotate"
    )]
    Keys(keys::Keys),
    /// Kubelet image credential provider: hand a pod's service-account token to the runtime as
    /// its password for regate (stdin: CredentialProviderRequest, stdout: the response).
    #[command(after_help = "Example (run by the kubelet, see deploy/kubelet/):\n  \
            regate credential-provider --registry registry.example.com")]
    CredentialProvider(credential_provider::CredentialProvider),
    /// Print the shell completion script for bash, zsh or fish.
    #[command(after_help = completion::EXAMPLES)]
    Completion(completion::Completion),
}

/// `--state DIR`, taken by every command that changes the state directory.
#[derive(Debug, Args)]
struct StateArg {
    /// State directory of the embedded authority [default: $XDG_STATE_HOME/regate, else
    /// ~/.local/state/regate]
    #[arg(long, env = "REGATE_STATE", value_name = "DIR")]
    state: Option<PathBuf>,
}

/// The state directory this command used, so that an error about an object not found there can
/// name it (a forgotten `REGATE_STATE` otherwise looks like a missing object).
static STATE_USED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

impl StateArg {
    /// The state directory: `--state`, `REGATE_STATE`, or the default; remembered for errors.
    fn dir(&self) -> PathBuf {
        let dir = self.state.clone().unwrap_or_else(default_state_dir);
        let _ = STATE_USED.set(dir.clone());
        dir
    }

    /// Opens the state directory for changes, creating it on first use.
    fn open(&self) -> anyhow::Result<Store> {
        let dir = self.dir();
        Store::open(&dir).with_context(|| {
            format!(
                "cannot open state directory {} (flag --state)",
                dir.display()
            )
        })
    }
}

/// Runs the CLI and returns the process's exit code.
pub fn main() -> ExitCode {
    // A command whose output is piped into `head` ends quietly when the pipe closes, as every
    // Unix tool does, instead of panicking in `println!` (Rust ignores SIGPIPE by default).
    // Serving commands ignore it again (see `server_runtime`): sockets report EPIPE as errors.
    set_sigpipe(libc::SIG_DFL);
    let cli = Cli::parse();
    let result = run(cli);
    crate::logs::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let text = format!("{error:#}");
            eprintln!(
                "error: {text}{}{}",
                looked_in(&error),
                permission_hint(&text)
            );
            ExitCode::FAILURE
        }
    }
}

/// ` (in state directory DIR, ...)` when `error` says an object was not found in the state
/// directory this command used; nothing otherwise.
fn looked_in(error: &anyhow::Error) -> String {
    let not_found = error.chain().any(|cause| {
        cause
            .downcast_ref::<crate::authority::embedded::StoreError>()
            .is_some_and(crate::authority::embedded::StoreError::is_not_found)
            || cause
                .downcast_ref::<crate::authority::embedded::ApplyError>()
                .is_some_and(|e| {
                    matches!(e, crate::authority::embedded::ApplyError::NotFound { .. })
                })
    });
    match STATE_USED.get() {
        Some(dir) if not_found => format!(
            " (looked in state directory {}; another is chosen with --state or REGATE_STATE)",
            dir.display()
        ),
        _ => String::new(),
    }
}

/// The fix for a permission error: which user regate runs as (the container image's is 10001).
fn permission_hint(text: &str) -> String {
    if !text.contains("(os error 13)") && !text.contains("ermission denied") {
        return String::new();
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    format!(
        " (regate runs as uid {uid}: the file or directory must be readable and writable by \
         it, e.g. chown -R {uid} on the state directory; the container image runs as uid 10001)"
    )
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args, cli.log_format),
        Command::Create(command) => command.run(),
        Command::Policy(command) => command.run(),
        Command::Secrets(command) => command.run(),
        Command::Registry(command) => command.run(),
        Command::Apply(command) => command.run(),
        Command::Delete(command) => command.run(),
        Command::Get(command) => command.run(),
        Command::Authority(command) => command.run(cli.log_format),
        Command::Auth(command) => command.run(),
        Command::Keys(command) => command.run(),
        Command::CredentialProvider(command) => command.run(),
        Command::Completion(command) => command.run(),
    }
}

fn serve(args: ServeArgs, log_format: LogFormat) -> anyhow::Result<()> {
    server_runtime(log_format)?.block_on(crate::server::serve(args))
}

/// Sets what SIGPIPE does to this process.
fn set_sigpipe(action: libc::sighandler_t) {
    // SAFETY: `signal` with SIG_DFL or SIG_IGN installs no handler code; it is called before
    // any thread of ours starts.
    unsafe {
        libc::signal(libc::SIGPIPE, action);
    }
}

/// Logging and the async runtime, as every serving command needs them.
fn server_runtime(log_format: LogFormat) -> anyhow::Result<tokio::runtime::Runtime> {
    // A closed log or stdout pipe must not kill a server; writes to it fail instead.
    set_sigpipe(libc::SIG_IGN);
    // Logs go to stderr; stdout is kept for the `listening on` line scripts wait for.
    crate::logs::init(match log_format {
        LogFormat::Text => crate::logs::Format::Text,
        LogFormat::Json => crate::logs::Format::Json,
    });
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `--dry-run` and `-o yaml`, taken by every create that writes an object.
#[derive(Debug, Args)]
struct WriteArgs {
    /// Print what would change, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the objects as stored (yaml) instead of one line.
    #[arg(short = 'o', long, value_name = "FORMAT", value_parser = ["yaml"])]
    output: Option<String>,
}

impl WriteArgs {
    /// Opens the state directory, in a dry run if asked.
    fn open(&self, state: &StateArg) -> anyhow::Result<Store> {
        Ok(state.open()?.with_dry_run(self.dry_run))
    }

    /// Prints the objects as YAML with `-o yaml`, else `line` (marked as a dry run if so).
    fn report(
        &self,
        objects: &[crate::authority::embedded::Object],
        line: &str,
    ) -> anyhow::Result<()> {
        if self.output.is_some() {
            print!(
                "{}",
                apply::objects_yaml(&objects.iter().collect::<Vec<_>>())?
            );
        } else if self.dry_run {
            println!("{line} (dry run)");
        } else {
            println!("{line}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
