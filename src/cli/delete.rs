//! `regate delete namespace|serviceaccount|user`.

use clap::Subcommand;

use super::StateArg;

#[derive(Debug, Subcommand)]
pub(super) enum Delete {
    /// Delete a namespace and everything in it; its service accounts' tokens stop working.
    #[command(after_help = "Example:\n  regate delete namespace project-a")]
    Namespace {
        /// Namespace name.
        name: String,
        #[command(flatten)]
        state: StateArg,
    },
    /// Delete a service account; its tokens stop working.
    #[command(
        visible_alias = "sa",
        after_help = "Example:\n  regate delete serviceaccount ci -n project-a"
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
    /// Delete a user; its tokens stop working.
    #[command(after_help = "Example:\n  regate delete user alice")]
    User {
        /// User name.
        name: String,
        #[command(flatten)]
        state: StateArg,
    },
}

impl Delete {
    pub(super) fn run(self) -> anyhow::Result<()> {
        match self {
            Delete::Namespace { name, state } => {
                state.open()?.delete_namespace(&name)?;
                println!("namespace {name:?} deleted");
            }
            Delete::Serviceaccount {
                name,
                namespace,
                state,
            } => {
                state.open()?.delete_service_account(&namespace, &name)?;
                println!("serviceaccount {name:?} deleted");
            }
            Delete::User { name, state } => {
                state.open()?.delete_user(&name)?;
                println!("user.user.openshift.io {name:?} deleted");
            }
        }
        Ok(())
    }
}
