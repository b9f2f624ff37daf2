//! `regate create namespace|serviceaccount|user|token|secret`; every create takes `--dry-run`, and
//! every create but `token` (which prints only the token) `-o yaml`: the objects as stored, or as
//! they would be.

use std::time::Duration;

use clap::{Args, Subcommand};

use super::{StateArg, WriteArgs};
use crate::authority::embedded::Object;

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
        write: WriteArgs,
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
        write: WriteArgs,
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
        write: WriteArgs,
        #[command(flatten)]
        state: StateArg,
    },
    /// Create an API token for a service account or a user; prints only the token.
    #[command(after_help = "Examples:\n  \
        TOKEN=$(regate create token builder -n project-a)\n  \
        docker login 127.0.0.1:8080 -u anything -p \"$TOKEN\"\n  \
        regate create token --user alice --duration 24h")]
    Token(TokenArgs),
    /// Create a Secret with registry credentials (kubernetes.io/dockerconfigjson or
    /// kubernetes.io/dockercfg, the types regate keeps), as `kubectl create secret`.
    #[command(
        subcommand,
        after_help = "Examples:\n  \
            regate create secret docker-registry upstream-pull -n project-a \\\n      \
            --docker-server=registry.example.com --docker-username=robot --docker-password-stdin\n  \
            regate create secret generic upstream-pull -n project-a \\\n      \
            --from-file=.dockerconfigjson=config.json --type=kubernetes.io/dockerconfigjson"
    )]
    Secret(super::secrets::CreateSecret),
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
    /// Check that the subject exists and print what would be created, without the token.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    state: StateArg,
}

impl Create {
    pub(super) fn run(self) -> anyhow::Result<()> {
        match self {
            Create::Namespace { name, write, state } => {
                let objects = write.open(&state)?.create_namespace_objects(&name)?;
                write.report(&objects, &format!("namespace/{name} created"))?;
            }
            Create::Serviceaccount {
                name,
                namespace,
                write,
                state,
            } => {
                let sa = write
                    .open(&state)?
                    .create_service_account_object(&namespace, &name)?;
                write.report(
                    &[Object::ServiceAccount(sa)],
                    &format!("serviceaccount/{name} created"),
                )?;
            }
            Create::User {
                name,
                groups,
                write,
                state,
            } => {
                let user = write.open(&state)?.create_user_object(&name, &groups)?;
                write.report(
                    &[Object::User(user)],
                    &format!("user.user.openshift.io/{name} created"),
                )?;
            }
            Create::Secret(command) => command.run()?,
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
                if args.dry_run {
                    let subject = match (&args.user, &args.service_account, &args.namespace) {
                        (Some(user), _, _) => user.clone(),
                        (None, Some(sa), Some(ns)) => format!("system:serviceaccount:{ns}:{sa}"),
                        _ => String::new(),
                    };
                    println!("token for {subject} created (dry run)");
                } else {
                    println!("{}", issued.token);
                }
            }
        }
        Ok(())
    }
}
