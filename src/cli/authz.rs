//! Questions about access, answered from the state directory without changing it:
//! `regate policy who-can` (who may, through which binding, as `oc policy who-can`),
//! `regate auth can-i` (yes or no for one subject, as `kubectl auth can-i`) and
//! `regate policy explain` (pull, push and delete of one repository, with the command that
//! grants what is missing, as the gateway's 403 names it).
//!
//! Every answer comes from [`Policy`], the evaluator the gateway itself asks, so the CLI and
//! the gateway cannot disagree. Unknown verbs, resources, namespaces, service accounts and
//! subject kinds are errors naming the close matches.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::StateArg;
use crate::authority::embedded::{IMAGE_PRUNER, IMAGE_PULLER, IMAGE_PUSHER};
use crate::authority::embedded::{Snapshot, StoreError, load};
use crate::identity::{
    ANONYMOUS, SERVICE_ACCOUNT_PREFIX, SERVICE_ACCOUNTS, UserInfo, service_account_of,
};
use crate::policy::{
    Attributes, Decision, GROUP_KIND, Grantee, IMAGE_GROUP, Policy, RBAC_GROUP, grant_command,
    role_granting,
};
use crate::route::Name;
use crate::suggest::did_you_mean;

/// The verbs RBAC rules name (`*` aside).
const VERBS: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

/// The resources the commands know: `resource[/subresource]`, its API group, and whether it is
/// namespaced.
const RESOURCES: &[(&str, &str, bool)] = &[
    ("imagestreams/layers", IMAGE_GROUP, true),
    ("imagestreams", IMAGE_GROUP, true),
    ("imagestreamtags", IMAGE_GROUP, true),
    ("imagestreamimages", IMAGE_GROUP, true),
    ("imagestreammappings", IMAGE_GROUP, true),
    ("imagetags", IMAGE_GROUP, true),
    ("images", IMAGE_GROUP, false),
    ("roles", RBAC_GROUP, true),
    ("rolebindings", RBAC_GROUP, true),
    ("clusterroles", RBAC_GROUP, false),
    ("clusterrolebindings", RBAC_GROUP, false),
    ("namespaces", "", false),
    ("serviceaccounts", "", true),
    ("secrets", "", true),
    ("tokenreviews", "authentication.k8s.io", false),
    ("subjectaccessreviews", "authorization.k8s.io", false),
];

/// `regate policy who-can` and `regate policy explain`, flattened into `regate policy`.
#[derive(Debug, Subcommand)]
pub(super) enum PolicyQuery {
    /// List who may do VERB on RESOURCE, and through which binding, as `oc policy who-can`.
    #[command(after_help = "Examples:\n  \
        # who may pull from project-a\n  \
        regate policy who-can get imagestreams/layers -n project-a\n  \
        # who may push to image stream app of project-a\n  \
        regate policy who-can update imagestreams/layers app -n project-a\n  \
        # who may delete manifests and blobs (cluster scope)\n  \
        regate policy who-can delete images")]
    WhoCan(WhoCan),
    /// Whether SUBJECT may pull, push and delete a repository, why, and how to grant it.
    #[command(after_help = "Examples:\n  \
        regate policy explain project-b/app --as system:serviceaccount:project-a:default\n  \
        regate policy explain project-a/tools/builder --as alice --as-group developers")]
    Explain(Explain),
}

/// `regate auth ...`, as `kubectl auth`.
#[derive(Debug, Subcommand)]
pub(super) enum Auth {
    /// Whether SUBJECT may do VERB on RESOURCE: prints yes (exit code 0) or no (exit code 1), as
    /// `kubectl auth can-i`.
    #[command(after_help = "Examples:\n  \
        # may project-a's default service account pull from project-b?\n  \
        regate auth can-i get imagestreams/layers -n project-b --as system:serviceaccount:project-a:default\n  \
        # may alice push to project-a/app, and which binding says so?\n  \
        regate auth can-i update imagestreams/layers app -n project-a --as alice -v\n  \
        # may alice delete manifests?\n  \
        regate auth can-i delete images --as alice")]
    CanI(CanI),
}

/// VERB RESOURCE [NAME] -n NS: the request asked about.
#[derive(Debug, Args)]
pub(super) struct Request {
    /// The verb: get (pull), update (push), delete, list, create, ...
    verb: String,
    /// The resource, e.g. imagestreams/layers, imagestreams, images; RESOURCE.GROUP/SUB names
    /// the API group (image.openshift.io by default for image resources).
    resource: String,
    /// A resource name, e.g. the image stream `app`; every name when absent.
    name: Option<String>,
    /// The namespace; without it the check is cluster-wide (only cluster bindings grant it).
    /// Ignored for cluster-scoped resources such as images.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
}

/// --as SUBJECT [--as-group G]...: who is asking.
#[derive(Debug, Args)]
pub(super) struct AsSubject {
    /// The user name, or a service account as system:serviceaccount:NAMESPACE:NAME.
    #[arg(long = "as", value_name = "SUBJECT")]
    subject: String,
    /// A group the subject is in, besides its stored and implicit ones (repeatable).
    #[arg(long = "as-group", value_name = "GROUP")]
    groups: Vec<String>,
}

#[derive(Debug, Args)]
pub(super) struct WhoCan {
    #[command(flatten)]
    request: Request,
    #[command(flatten)]
    state: StateArg,
}

#[derive(Debug, Args)]
pub(super) struct CanI {
    #[command(flatten)]
    request: Request,
    #[command(flatten)]
    subject: AsSubject,
    /// Also print the binding that allowed it, or the command that would grant it.
    #[arg(short = 'v', long)]
    verbose: bool,
    #[command(flatten)]
    state: StateArg,
}

#[derive(Debug, Args)]
pub(super) struct Explain {
    /// The repository, e.g. project-b/app (its first component is the namespace).
    repository: String,
    #[command(flatten)]
    subject: AsSubject,
    #[command(flatten)]
    state: StateArg,
}

impl PolicyQuery {
    pub(super) fn run(self) -> anyhow::Result<()> {
        match self {
            PolicyQuery::WhoCan(args) => {
                let snapshot = read_state(&args.state)?;
                let attrs = args.request.attributes(&snapshot)?;
                print!("{}", who_can(&snapshot.policy, &attrs));
            }
            PolicyQuery::Explain(args) => {
                let snapshot = read_state(&args.state)?;
                let name = Name::parse(&args.repository)?;
                require_namespace(&snapshot, name.namespace())?;
                let user = identity(&snapshot, &args.subject)?;
                print!("{}", explain(&snapshot.policy, &user, &name));
            }
        }
        Ok(())
    }
}

impl Auth {
    pub(super) fn run(self) -> anyhow::Result<()> {
        match self {
            Auth::CanI(args) => {
                let snapshot = read_state(&args.state)?;
                let attrs = args.request.attributes(&snapshot)?;
                let user = identity(&snapshot, &args.subject)?;
                let decision = snapshot.policy.evaluate(&user, &attrs);
                let answer = can_i(&snapshot.policy, &user, &attrs, &decision, args.verbose);
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(answer.as_bytes())?;
                stdout.flush()?;
                if !decision.allowed() {
                    // `no` is an answer, not an error: exit code 1 without `error:`, as kubectl.
                    std::process::exit(1);
                }
            }
        }
        Ok(())
    }
}

/// Reads the state directory `--state` names, without changing it.
fn read_state(state: &StateArg) -> anyhow::Result<Snapshot> {
    let dir: PathBuf = state.dir();
    load(&dir).with_context(|| {
        format!(
            "cannot read state directory {} (flag --state or REGATE_STATE; \
             `regate create namespace NAME` creates it)",
            dir.display()
        )
    })
}

impl Request {
    /// The attributes of the request, checked against the known verbs, resources and the
    /// namespaces of `snapshot`.
    fn attributes(&self, snapshot: &Snapshot) -> anyhow::Result<Attributes> {
        if matches!(self.verb.as_str(), "pull" | "push") {
            bail!(
                "{:?} is not an RBAC verb: a pull is `get` and a push `get` and `update` on \
                 imagestreams/layers, e.g. regate auth can-i get imagestreams/layers -n NAMESPACE \
                 --as SUBJECT (or regate policy explain NAMESPACE/NAME --as SUBJECT)",
                self.verb
            );
        }
        if self.verb != "*" && !VERBS.contains(&self.verb.as_str()) {
            bail!(
                "unknown verb {:?}{}; verbs: {}",
                self.verb,
                did_you_mean(&self.verb, VERBS.iter().copied()),
                VERBS.join(", ")
            );
        }
        let (group, resource, subresource, namespaced) = parse_resource(&self.resource)?;
        let namespace = match (&self.namespace, namespaced) {
            (Some(ns), true) => {
                require_namespace(snapshot, ns)?;
                ns.clone()
            }
            // As kubectl: the namespace of a cluster-scoped resource is dropped.
            _ => String::new(),
        };
        Ok(Attributes {
            verb: self.verb.clone(),
            group,
            resource,
            subresource,
            namespace,
            name: self.name.clone().unwrap_or_default(),
        })
    }
}

/// `(group, resource, subresource, namespaced)` of `RESOURCE[.GROUP][/SUB]`.
fn parse_resource(text: &str) -> anyhow::Result<(String, String, String, bool)> {
    let (head, subresource) = match text.split_once('/') {
        Some((head, sub)) => (head, Some(sub)),
        None => (text, None),
    };
    let (resource, group) = match head.split_once('.') {
        Some((resource, group)) => (resource, Some(group)),
        None => (head, None),
    };
    let full = match subresource {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_string(),
    };
    let Some((_, known_group, namespaced)) = RESOURCES.iter().find(|(r, ..)| *r == full) else {
        let known = RESOURCES.iter().map(|(r, ..)| *r);
        bail!(
            "unknown resource {text:?}{}; resources: {}",
            did_you_mean(&full, known.clone()),
            known.collect::<Vec<_>>().join(", ")
        );
    };
    let group = group.unwrap_or(known_group).to_string();
    Ok((
        group,
        resource.to_string(),
        subresource.unwrap_or_default().to_string(),
        *namespaced,
    ))
}

/// An error unless `namespace` exists, naming the close matches and the command creating it.
fn require_namespace(snapshot: &Snapshot, namespace: &str) -> anyhow::Result<()> {
    if snapshot.namespaces.contains(namespace) {
        return Ok(());
    }
    Err(StoreError::NamespaceNotFound {
        namespace: namespace.to_string(),
        suggestion: did_you_mean(namespace, snapshot.namespaces.iter().map(String::as_str)),
    }
    .into())
}

/// The identity `--as`/`--as-group` name, as the gateway would see it after authentication:
/// the stored groups of a stored user, the extra groups, and Kubernetes' implicit ones;
/// `system:anonymous` is a caller without credentials.
fn identity(snapshot: &Snapshot, subject: &AsSubject) -> anyhow::Result<UserInfo> {
    let name = subject.subject.as_str();
    if name == ANONYMOUS {
        // A caller without credentials: in `system:unauthenticated`, not `system:authenticated`.
        let mut user = UserInfo::anonymous();
        for group in &subject.groups {
            if !user.groups.contains(group) {
                user.groups.push(group.clone());
            }
        }
        return Ok(user);
    }
    let (uid, mut groups) = if let Some((ns, sa)) = service_account_of(name) {
        require_namespace(snapshot, ns)?;
        let key = (ns.to_string(), sa.to_string());
        let Some(uid) = snapshot.service_accounts.get(&key) else {
            let names = snapshot
                .service_accounts
                .keys()
                .filter(|(n, _)| n == ns)
                .map(|(_, sa)| sa.as_str());
            return Err(StoreError::ServiceAccountNotFound {
                namespace: ns.to_string(),
                name: sa.to_string(),
                suggestion: did_you_mean(sa, names),
            }
            .into());
        };
        (uid.clone(), Vec::new())
    } else {
        check_user_name(name)?;
        match snapshot.users.get(name) {
            Some(user) => (user.uid.clone(), user.groups.clone()),
            None => {
                // Kubernetes impersonates any name; say so, since a typo would answer `no`.
                eprintln!(
                    "warning: user {name:?} is not in the state directory{}; \
                     answering for a user with no stored groups",
                    did_you_mean(name, snapshot.users.keys().map(String::as_str))
                );
                (String::new(), Vec::new())
            }
        }
    };
    for group in &subject.groups {
        if !groups.contains(group) {
            groups.push(group.clone());
        }
    }
    Ok(UserInfo::authenticated(name.to_string(), uid, groups))
}

/// An error when a `--as` value that is not a service account looks like a mistyped one, or
/// names a group.
fn check_user_name(name: &str) -> anyhow::Result<()> {
    let sa_kind = SERVICE_ACCOUNT_PREFIX.trim_end_matches(':');
    if name == SERVICE_ACCOUNTS
        || name.starts_with(&format!("{SERVICE_ACCOUNTS}:"))
        || name.starts_with("system:authenticated")
        || name.starts_with("system:unauthenticated")
    {
        bail!(
            "{name:?} is a group, not a user; pass it with --as-group {} (and a user with --as)",
            crate::shell::Quoted(name)
        );
    }
    if name.starts_with(SERVICE_ACCOUNT_PREFIX) {
        bail!(
            "{name:?} is not a service account name; write it as \
             system:serviceaccount:NAMESPACE:NAME"
        );
    }
    // `KIND:NAMESPACE:NAME` with a KIND close to `system:serviceaccount`.
    let parts: Vec<&str> = name.split(':').collect();
    if parts.len() >= 3 {
        let kind = parts[..parts.len() - 2].join(":");
        let hint = did_you_mean(&kind, [sa_kind]);
        if !hint.is_empty() {
            bail!(
                "unknown subject kind {kind:?} in {name:?}{hint} \
                 (a service account is system:serviceaccount:NAMESPACE:NAME)"
            );
        }
    }
    Ok(())
}

/// `RESOURCE.GROUP[/SUB]`, as oc shows a resource.
fn resource_display(attrs: &Attributes) -> String {
    let mut text = attrs.resource.clone();
    if !attrs.group.is_empty() {
        text = format!("{text}.{}", attrs.group);
    }
    if !attrs.subresource.is_empty() {
        text = format!("{text}/{}", attrs.subresource);
    }
    text
}

/// The answer of `regate policy who-can`, in `oc policy who-can`'s layout, each subject
/// followed by the bindings that grant it.
fn who_can(policy: &Policy, attrs: &Attributes) -> String {
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for Grantee { kind, name, by } in policy.who_can(attrs) {
        let section = if kind == GROUP_KIND {
            &mut groups
        } else {
            &mut users
        };
        let bindings = section.entry(name).or_default();
        if !bindings.contains(&by) {
            bindings.push(by);
        }
    }
    let width = users.keys().chain(groups.keys()).map(String::len).max();
    let section = |entries: &BTreeMap<String, Vec<String>>| {
        if entries.is_empty() {
            return "none".to_string();
        }
        let width = width.unwrap_or_default();
        entries
            .iter()
            .map(|(name, by)| format!("{name:<width$}  {}", by.join(", ")))
            .collect::<Vec<_>>()
            .join("\n        ")
    };
    // As oc: a cluster-scoped or every-namespace check shows `<all>`.
    let namespace = if attrs.namespace.is_empty() {
        "<all>"
    } else {
        &attrs.namespace
    };
    let mut resource = resource_display(attrs);
    if !attrs.name.is_empty() {
        resource = format!("{resource} {:?}", attrs.name);
    }
    format!(
        "Namespace: {namespace}\nVerb:      {}\nResource:  {resource}\n\n\
         Users:  {}\n\nGroups: {}\n",
        attrs.verb,
        section(&users),
        section(&groups)
    )
}

/// `yes` or `no`, and with `verbose` the binding that allowed it, or what would grant it.
fn can_i(
    policy: &Policy,
    user: &UserInfo,
    attrs: &Attributes,
    decision: &Decision,
    verbose: bool,
) -> String {
    match (decision, verbose) {
        (Decision::Allow { .. }, false) => "yes\n".to_string(),
        (Decision::Deny { .. }, false) => "no\n".to_string(),
        (Decision::Allow { by }, true) => format!("yes\nallowed by {by}\n"),
        (Decision::Deny { .. }, true) => {
            let scope = if attrs.namespace.is_empty() {
                "no ClusterRoleBinding".to_string()
            } else {
                format!(
                    "no ClusterRoleBinding nor RoleBinding of namespace {}",
                    attrs.namespace
                )
            };
            let mut text = format!("no\n{scope} grants {} {}\n", user.name, attrs.describe());
            let role = role_granting(attrs);
            if policy.cluster_role_allows(role, attrs) {
                text.push_str(&format!(
                    "to grant it: {}\n",
                    grant_command(role, &user.name, attrs)
                ));
            }
            text
        }
    }
}

/// The answer of `regate policy explain`: for pull, push and delete of `name`, whether `user`
/// may, the binding deciding each check, and the command that grants what is missing (the one
/// the gateway's 403 names).
fn explain(policy: &Policy, user: &UserInfo, name: &Name) -> String {
    let layers = |verb| Attributes::layers(verb, name.namespace(), name.imagestream());
    let actions = [
        ("pull", vec![layers("get")], IMAGE_PULLER),
        ("push", vec![layers("get"), layers("update")], IMAGE_PUSHER),
        (
            "delete",
            vec![Attributes::cluster("delete", "images")],
            IMAGE_PRUNER,
        ),
    ];
    let mut text = format!(
        "Repository: {name} (namespace {}, image stream {})\nSubject:    {} (groups {})\n\n",
        name.namespace(),
        name.imagestream(),
        user.name,
        user.groups.join(", ")
    );
    const INDENT: &str = "             ";
    for (action, checks, role) in actions {
        let decisions: Vec<(Attributes, Decision)> = checks
            .into_iter()
            .map(|attrs| {
                let decision = policy.evaluate(user, &attrs);
                (attrs, decision)
            })
            .collect();
        let allowed = decisions.iter().all(|(_, d)| d.allowed());
        let label = format!("{action}:");
        text.push_str(&format!(
            "{label:<8}{:<5}",
            if allowed { "yes" } else { "no" }
        ));
        for (i, (attrs, decision)) in decisions.iter().enumerate() {
            if i > 0 {
                text.push_str(INDENT);
            }
            let by = match decision {
                Decision::Allow { by } => by.as_str(),
                Decision::Deny { .. } => "no binding",
            };
            let scope = if attrs.namespace.is_empty() {
                " (cluster scope)"
            } else {
                ""
            };
            text.push_str(&format!(
                "{} {}{scope}: {by}\n",
                attrs.verb,
                attrs.full_resource()
            ));
        }
        if let Some((attrs, _)) = decisions.iter().find(|(_, d)| !d.allowed()) {
            text.push_str(&format!(
                "{INDENT}to grant it: {}\n",
                grant_command(role, &user.name, attrs)
            ));
        }
    }
    text
}

#[cfg(test)]
mod tests;
