//! `regate create namespace|serviceaccount|user|token`.

use std::time::Duration;

use clap::{Args, Subcommand};

use super::StateArg;

#[derive(Debug, Subcommand)]
pub(super) enum Create {
    /// Create a namespace with service accounts default, builder and deployer, and the bindings
    /// system:image-pullers (its service accounts may pull) and system:image-builders (builder
    /// may push).
    #[command(after_help = "Example:\n  regate create namespace project-a")]
    Namespace {
        /// Namespace name (lower-case letters, digits and '-').
        name: String,
        #[command(flatten)]
        state: StateArg,
    },
    /// Create a service account in a namespace.
    #[command(
        visible_alias = "sa",
        after_help = "Example:\n  regate create serviceaccount ci -n project-a"
    )]
    Serviceaccount {
        /// Service account name.
        name: String,
        /// Its namespace.
        #[arg(short = 'n', long)]
        namespace: String,
        #[command(flatten)]
        state: StateArg,
    },
    /// Create a user, optionally in groups.
    #[command(after_help = "Example:\n  regate create user alice --group developers")]
    User {
        /// User name.
        name: String,
        /// A group the user is in (repeatable).
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        #[command(flatten)]
        state: StateArg,
    },
    /// Create an API token for a service account or a user; prints only the token.
    #[command(after_help = "Examples:\n  \
        TOKEN=$(regate create token builder -n project-a)\n  \
        docker login 127.0.0.1:8080 -u anything -p \"$TOKEN\"\n  \
        regate create token --user alice --duration 24h")]
    Token(TokenArgs),
}

#[derive(Debug, Args)]
pub(super) struct TokenArgs {
    /// Service account name (with -n).
    #[arg(
        value_name = "SERVICEACCOUNT",
        required_unless_present = "user",
        conflicts_with = "user",
        requires = "namespace"
    )]
    service_account: Option<String>,
    /// Namespace of the service account.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Create a token for this user instead of a service account.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// How long the token is valid, e.g. 10m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[command(flatten)]
    state: StateArg,
}

impl Create {
    pub(super) fn run(self) -> anyhow::Result<()> {
        match self {
            Create::Namespace { name, state } => {
                state.open()?.create_namespace(&name)?;
                println!("namespace/{name} created");
            }
            Create::Serviceaccount {
                name,
                namespace,
                state,
            } => {
                state.open()?.create_service_account(&namespace, &name)?;
                println!("serviceaccount/{name} created");
            }
            Create::User {
                name,
                groups,
                state,
            } => {
                state.open()?.create_user(&name, &groups)?;
                println!("user.user.openshift.io/{name} created");
            }
            Create::Token(args) => {
                let store = args.state.open()?;
                let issued = match (&args.user, &args.service_account, &args.namespace) {
                    (Some(user), _, _) => store.create_user_token(user, args.duration)?,
                    (None, Some(sa), Some(ns)) => {
                        store.create_service_account_token(ns, sa, args.duration)?
                    }
                    // clap enforces SERVICEACCOUNT -n NS or --user.
                    _ => anyhow::bail!("name a service account (SA -n NS) or --user NAME"),
                };
                println!("{}", issued.token);
            }
        }
        Ok(())
    }
}
