//! `regate policy ...`: grant and revoke roles as `oc policy` and `oc adm policy` do, printing
//! what `oc` prints.

use clap::{Args, Subcommand};

use super::StateArg;
use crate::authority::embedded::{Store, SubjectRef};

#[derive(Debug, Subcommand)]
pub(super) enum Policy {
    /// Bind a role to users or service accounts in a namespace.
    #[command(after_help = "Examples:\n  \
        # let project-a's default service account pull from project-b\n  \
        regate policy add-role-to-user system:image-puller system:serviceaccount:project-a:default -n project-b\n  \
        # let project-b's ci service account push to project-b\n  \
        regate policy add-role-to-user system:image-pusher -z ci -n project-b")]
    AddRoleToUser(UsersInNamespace),
    /// Remove users or service accounts from every binding of a role in a namespace.
    #[command(after_help = "Example:\n  \
        regate policy remove-role-from-user system:image-puller system:serviceaccount:project-a:default -n project-b")]
    RemoveRoleFromUser(UsersInNamespace),
    /// Bind a role to groups in a namespace.
    #[command(after_help = "Examples:\n  \
        # let every service account of project-a pull from project-b\n  \
        regate policy add-role-to-group system:image-puller system:serviceaccounts:project-a -n project-b\n  \
        # let anyone, even without credentials, pull from project-b\n  \
        regate policy add-role-to-group system:image-puller system:unauthenticated -n project-b")]
    AddRoleToGroup(GroupsInNamespace),
    /// Remove groups from every binding of a role in a namespace.
    #[command(after_help = "Example:\n  \
        regate policy remove-role-from-group system:image-puller system:serviceaccounts:project-a -n project-b")]
    RemoveRoleFromGroup(GroupsInNamespace),
    /// Bind a role to users or service accounts in every namespace and at cluster scope.
    #[command(after_help = "Example:\n  \
        # let alice delete manifests and blobs (OpenShift's prune right)\n  \
        regate policy add-cluster-role-to-user system:image-pruner alice")]
    AddClusterRoleToUser(UsersInCluster),
    /// Remove users or service accounts from every cluster binding of a role.
    #[command(after_help = "Example:\n  \
        regate policy remove-cluster-role-from-user system:image-pruner alice")]
    RemoveClusterRoleFromUser(UsersInCluster),
    /// Bind a role to groups in every namespace and at cluster scope.
    #[command(after_help = "Example:\n  \
        regate policy add-cluster-role-to-group registry-viewer developers")]
    AddClusterRoleToGroup(GroupsInCluster),
    /// Remove groups from every cluster binding of a role.
    #[command(after_help = "Example:\n  \
        regate policy remove-cluster-role-from-group registry-viewer developers")]
    RemoveClusterRoleFromGroup(GroupsInCluster),
    #[command(flatten)]
    Query(super::authz::PolicyQuery),
}

#[derive(Debug, Args)]
pub(super) struct UsersInNamespace {
    /// The ClusterRole, e.g. system:image-puller, system:image-pusher, registry-viewer.
    role: String,
    /// User names, or service accounts written system:serviceaccount:NAMESPACE:NAME.
    #[arg(value_name = "USER", required_unless_present = "serviceaccounts")]
    users: Vec<String>,
    /// A service account of the namespace given with -n (repeatable).
    #[arg(short = 'z', long = "serviceaccount", value_name = "NAME")]
    serviceaccounts: Vec<String>,
    /// The namespace of the binding.
    #[arg(short = 'n', long)]
    namespace: String,
    /// Print what would change, and change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    state: StateArg,
}

#[derive(Debug, Args)]
pub(super) struct GroupsInNamespace {
    /// The ClusterRole, e.g. system:image-puller.
    role: String,
    /// Group names, e.g. system:serviceaccounts:project-a, system:authenticated.
    #[arg(value_name = "GROUP", required = true)]
    groups: Vec<String>,
    /// The namespace of the binding.
    #[arg(short = 'n', long)]
    namespace: String,
    /// Print what would change, and change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    state: StateArg,
}

#[derive(Debug, Args)]
pub(super) struct UsersInCluster {
    /// The ClusterRole, e.g. system:image-pruner.
    role: String,
    /// User names, or service accounts written system:serviceaccount:NAMESPACE:NAME.
    #[arg(value_name = "USER", required_unless_present = "serviceaccounts")]
    users: Vec<String>,
    /// A service account of the namespace given with -n (repeatable).
    #[arg(
        short = 'z',
        long = "serviceaccount",
        value_name = "NAME",
        requires = "namespace"
    )]
    serviceaccounts: Vec<String>,
    /// The namespace of the service accounts given with -z.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Print what would change, and change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    state: StateArg,
}

#[derive(Debug, Args)]
pub(super) struct GroupsInCluster {
    /// The ClusterRole, e.g. registry-viewer.
    role: String,
    /// Group names.
    #[arg(value_name = "GROUP", required = true)]
    groups: Vec<String>,
    /// Print what would change, and change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    state: StateArg,
}

/// Adds or removes.
#[derive(Clone, Copy)]
pub(super) enum Change {
    Add,
    Remove,
}

impl Policy {
    pub(super) fn run(self) -> anyhow::Result<()> {
        use Change::{Add, Remove};
        match self {
            Policy::AddRoleToUser(args) => args.run(Add),
            Policy::RemoveRoleFromUser(args) => args.run(Remove),
            Policy::AddRoleToGroup(args) => args.run(Add),
            Policy::RemoveRoleFromGroup(args) => args.run(Remove),
            Policy::AddClusterRoleToUser(args) => args.run(Add),
            Policy::RemoveClusterRoleFromUser(args) => args.run(Remove),
            Policy::AddClusterRoleToGroup(args) => args.run(Add),
            Policy::RemoveClusterRoleFromGroup(args) => args.run(Remove),
            Policy::Query(query) => query.run(),
        }
    }
}

impl UsersInNamespace {
    fn run(self, change: Change) -> anyhow::Result<()> {
        let (subjects, targets) =
            user_subjects(&self.users, &self.serviceaccounts, Some(&self.namespace))?;
        let store = self.state.open()?.with_dry_run(self.dry_run);
        apply(&store, change, Some(&self.namespace), &self.role, &subjects)?;
        report(change, &self.role, &targets, self.dry_run);
        Ok(())
    }
}

impl GroupsInNamespace {
    fn run(self, change: Change) -> anyhow::Result<()> {
        let subjects = group_subjects(&self.groups);
        let store = self.state.open()?.with_dry_run(self.dry_run);
        apply(&store, change, Some(&self.namespace), &self.role, &subjects)?;
        report(change, &self.role, &self.groups, self.dry_run);
        Ok(())
    }
}

impl UsersInCluster {
    fn run(self, change: Change) -> anyhow::Result<()> {
        let (subjects, targets) = user_subjects(
            &self.users,
            &self.serviceaccounts,
            self.namespace.as_deref(),
        )?;
        let store = self.state.open()?.with_dry_run(self.dry_run);
        apply(&store, change, None, &self.role, &subjects)?;
        report(change, &self.role, &targets, self.dry_run);
        Ok(())
    }
}

impl GroupsInCluster {
    fn run(self, change: Change) -> anyhow::Result<()> {
        let subjects = group_subjects(&self.groups);
        let store = self.state.open()?.with_dry_run(self.dry_run);
        apply(&store, change, None, &self.role, &subjects)?;
        report(change, &self.role, &self.groups, self.dry_run);
        Ok(())
    }
}

/// The subjects named by USER arguments and `-z` service accounts of `namespace`, and the
/// targets as `oc` prints them (users, then the `-z` names).
fn user_subjects(
    users: &[String],
    serviceaccounts: &[String],
    namespace: Option<&str>,
) -> anyhow::Result<(Vec<SubjectRef>, Vec<String>)> {
    let mut subjects: Vec<SubjectRef> = users.iter().map(|u| SubjectRef::user(u)).collect();
    for name in serviceaccounts {
        if name.starts_with("system:serviceaccount") {
            anyhow::bail!(
                "--serviceaccount (-z) takes a short service account name (e.g. `default`); \
                 pass {name} as a USER argument instead"
            );
        }
        let Some(namespace) = namespace else {
            anyhow::bail!("-z {name} needs the namespace of the service account: add -n NAMESPACE");
        };
        subjects.push(SubjectRef::ServiceAccount {
            namespace: namespace.to_string(),
            name: name.clone(),
        });
    }
    let targets = users.iter().chain(serviceaccounts).cloned().collect();
    Ok((subjects, targets))
}

fn group_subjects(groups: &[String]) -> Vec<SubjectRef> {
    groups.iter().cloned().map(SubjectRef::Group).collect()
}

fn apply(
    store: &Store,
    change: Change,
    namespace: Option<&str>,
    role: &str,
    subjects: &[SubjectRef],
) -> anyhow::Result<()> {
    match (change, namespace) {
        (Change::Add, Some(ns)) => store.add_role(ns, role, subjects)?,
        (Change::Remove, Some(ns)) => store.remove_role(ns, role, subjects)?,
        (Change::Add, None) => store.add_cluster_role(role, subjects)?,
        (Change::Remove, None) => store.remove_cluster_role(role, subjects)?,
    }
    Ok(())
}

/// Prints what `oc` prints, e.g.
/// `clusterrole.rbac.authorization.k8s.io/system:image-puller added: "alice"`.
fn report(change: Change, role: &str, targets: &[String], dry_run: bool) {
    let suffix = if dry_run { " (dry run)" } else { "" };
    println!("{}{suffix}", message(change, role, targets));
}

pub(super) fn message(change: Change, role: &str, targets: &[String]) -> String {
    let verb = match change {
        Change::Add => "added",
        Change::Remove => "removed",
    };
    let targets = match targets {
        [one] => format!("{one:?}"),
        many => format!(
            "[{}]",
            many.iter()
                .map(|t| format!("{t:?}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    };
    format!("clusterrole.rbac.authorization.k8s.io/{role} {verb}: {targets}")
}
