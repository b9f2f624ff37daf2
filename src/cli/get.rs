//! `regate get KIND [NAME]`: the state directory's objects as `kubectl get` shows a cluster's,
//! as aligned tables, `-o wide`, `-o name`, or whole objects with `-o yaml|json` (a `List` when
//! several) that `regate apply -f` takes back.
//!
//! Reading ([`crate::authority::embedded::list`]) is apart from rendering ([`render`]),
//! which takes the current time as a parameter so that tests pin the `AGE` column.

mod columns;

use std::io::Write;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde::Serialize;

use super::StateArg;
use crate::authority::embedded::{Objects, list};
use crate::suggest::did_you_mean;
use columns::{Listed, name_of};

/// The namespace kubectl uses when neither `-n` nor `-A` is given.
const DEFAULT_NAMESPACE: &str = "default";

/// `regate get`.
#[derive(Debug, Args)]
pub(super) struct Get {
    /// Kind: namespaces (ns), serviceaccounts (sa), roles, rolebindings, clusterroles,
    /// clusterrolebindings, secrets, users; plural, singular or short; KIND/NAME also works.
    kind: String,
    /// Only the object of this name (an error when there is none).
    name: Option<String>,
    /// Namespace of namespaced kinds [default: default].
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Objects of every namespace, with a NAMESPACE column.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    all_namespaces: bool,
    /// Output format [default: a table].
    #[arg(short = 'o', long, value_enum)]
    output: Option<Format>,
    #[command(flatten)]
    state: StateArg,
}

/// What `-o` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(super) enum Format {
    /// Whole objects as YAML.
    Yaml,
    /// Whole objects as JSON.
    Json,
    /// `KIND.GROUP/NAME` per object.
    Name,
    /// The table with more columns.
    Wide,
}

impl Get {
    pub(super) fn run(self) -> anyhow::Result<()> {
        let (kind, name) = match (self.kind.split_once('/'), self.name) {
            (Some(_), Some(name)) => bail!(
                "there is a NAME ({name}) besides {}: give KIND NAME or KIND/NAME, not both",
                self.kind
            ),
            (Some((kind, name)), None) => (kind.to_string(), Some(name.to_string())),
            (None, name) => (self.kind, name),
        };
        let kind = Kind::parse(&kind)?;
        let scope = match (self.all_namespaces, self.namespace) {
            (true, _) => Scope::All,
            (false, Some(ns)) => Scope::Namespace {
                name: ns,
                defaulted: false,
            },
            (false, None) => Scope::Namespace {
                name: DEFAULT_NAMESPACE.to_string(),
                defaulted: true,
            },
        };
        let query = Query {
            kind,
            name,
            scope,
            format: self.output,
        };
        let store = self.state.open()?;
        let dir = store.layout().root();
        let objects =
            list(dir).with_context(|| format!("cannot read state directory {}", dir.display()))?;
        let now = i64::try_from(crate::token::now()).unwrap_or(i64::MAX);
        let rendered = render(&objects, &query, now)?;
        std::io::stdout()
            .write_all(rendered.stdout.as_bytes())
            .context("cannot write to stdout")?;
        eprint!("{}", rendered.stderr);
        Ok(())
    }
}

/// A kind `regate get` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// v1 Namespace.
    Namespace,
    /// v1 ServiceAccount.
    ServiceAccount,
    /// rbac.authorization.k8s.io/v1 Role.
    Role,
    /// rbac.authorization.k8s.io/v1 RoleBinding.
    RoleBinding,
    /// rbac.authorization.k8s.io/v1 ClusterRole.
    ClusterRole,
    /// rbac.authorization.k8s.io/v1 ClusterRoleBinding.
    ClusterRoleBinding,
    /// v1 Secret.
    Secret,
    /// user.openshift.io/v1 User.
    User,
}

impl Kind {
    const ALL: [Kind; 8] = [
        Kind::Namespace,
        Kind::ServiceAccount,
        Kind::Role,
        Kind::RoleBinding,
        Kind::ClusterRole,
        Kind::ClusterRoleBinding,
        Kind::Secret,
        Kind::User,
    ];

    /// Plural, singular and short names, as kubectl accepts them.
    fn names(self) -> &'static [&'static str] {
        match self {
            Kind::Namespace => &["namespaces", "namespace", "ns"],
            Kind::ServiceAccount => &["serviceaccounts", "serviceaccount", "sa"],
            Kind::Role => &["roles", "role"],
            Kind::RoleBinding => &["rolebindings", "rolebinding"],
            Kind::ClusterRole => &["clusterroles", "clusterrole"],
            Kind::ClusterRoleBinding => &["clusterrolebindings", "clusterrolebinding"],
            Kind::Secret => &["secrets", "secret"],
            Kind::User => &["users", "user"],
        }
    }

    /// The API group, empty for the core group.
    fn group(self) -> &'static str {
        match self {
            Kind::Namespace | Kind::ServiceAccount | Kind::Secret => "",
            Kind::Role | Kind::RoleBinding | Kind::ClusterRole | Kind::ClusterRoleBinding => {
                "rbac.authorization.k8s.io"
            }
            Kind::User => "user.openshift.io",
        }
    }

    /// Whether objects of this kind live in a namespace.
    fn namespaced(self) -> bool {
        matches!(
            self,
            Kind::ServiceAccount | Kind::Role | Kind::RoleBinding | Kind::Secret
        )
    }

    /// `NAME` or `NAME.GROUP`, as kubectl names resources in messages and `-o name`.
    fn qualified(self, name: &str) -> String {
        match self.group() {
            "" => name.to_string(),
            group => format!("{name}.{group}"),
        }
    }

    /// The kind named `wanted` (case-insensitive; `NAME.GROUP` too), or an error naming the
    /// close matches.
    pub(super) fn parse(wanted: &str) -> anyhow::Result<Kind> {
        let lower = wanted.to_lowercase();
        let (name, group) = match lower.split_once('.') {
            Some((name, group)) => (name, Some(group)),
            None => (lower.as_str(), None),
        };
        let found = Kind::ALL
            .into_iter()
            .find(|kind| kind.names().contains(&name) && group.is_none_or(|g| g == kind.group()));
        match found {
            Some(kind) => Ok(kind),
            None => {
                // Plurals and short names only: "rolebinding or rolebindings" would say one
                // thing twice.
                let candidates = Kind::ALL
                    .iter()
                    .flat_map(|k| std::iter::once(k.names()[0]).chain(k.names().get(2).copied()));
                let known = Kind::ALL.map(|k| match k.names() {
                    [plural, _, short] => format!("{plural} ({short})"),
                    names => names[0].to_string(),
                });
                bail!(
                    "the server doesn't have a resource type {wanted:?}{}. Kinds: {}",
                    did_you_mean(name, candidates),
                    known.join(", ")
                )
            }
        }
    }

    /// The table's column headers.
    fn headers(self, wide: bool) -> Vec<&'static str> {
        let mut headers = match self {
            Kind::Namespace => vec!["NAME", "STATUS", "AGE"],
            Kind::ServiceAccount => vec!["NAME", "SECRETS", "AGE"],
            Kind::Role | Kind::ClusterRole => vec!["NAME", "CREATED AT"],
            Kind::RoleBinding | Kind::ClusterRoleBinding => vec!["NAME", "ROLE", "AGE"],
            Kind::Secret => vec!["NAME", "TYPE", "DATA", "AGE"],
            Kind::User => vec!["NAME", "UID", "FULL NAME", "IDENTITIES"],
        };
        if wide {
            match self {
                Kind::RoleBinding | Kind::ClusterRoleBinding => {
                    headers.extend(["USERS", "GROUPS", "SERVICEACCOUNTS"]);
                }
                Kind::User => headers.push("GROUPS"),
                _ => {}
            }
        }
        headers
    }
}

/// Which namespaces a namespaced kind is listed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Scope {
    /// One namespace.
    Namespace {
        /// Its name.
        name: String,
        /// Whether it is `default` because no `-n` was given.
        defaulted: bool,
    },
    /// Every namespace (`-A`).
    All,
}

/// What to show: `regate get`'s arguments, checked.
#[derive(Clone, Debug)]
pub(super) struct Query {
    /// The kind.
    pub(super) kind: Kind,
    /// One object's name.
    pub(super) name: Option<String>,
    /// The namespaces (ignored for cluster-scoped kinds).
    pub(super) scope: Scope,
    /// `-o`; `None` for the table.
    pub(super) format: Option<Format>,
}

/// What `regate get` prints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Rendered {
    /// The output proper.
    pub(super) stdout: String,
    /// Notes such as `No resources found in NS namespace.`.
    pub(super) stderr: String,
}

/// What `query` shows of `objects` at `now` (seconds since the epoch); an error when the object,
/// or the namespace, does not exist.
pub(super) fn render(objects: &Objects, query: &Query, now: i64) -> anyhow::Result<Rendered> {
    match query.kind {
        Kind::Namespace => render_kind(&objects.namespaces, objects, query, now),
        Kind::ServiceAccount => render_kind(&objects.service_accounts, objects, query, now),
        Kind::Role => render_kind(&objects.roles, objects, query, now),
        Kind::RoleBinding => render_kind(&objects.role_bindings, objects, query, now),
        Kind::ClusterRole => render_kind(&objects.cluster_roles, objects, query, now),
        Kind::ClusterRoleBinding => {
            render_kind(&objects.cluster_role_bindings, objects, query, now)
        }
        Kind::Secret => render_kind(&objects.secrets, objects, query, now),
        Kind::User => render_kind(&objects.users, objects, query, now),
    }
}

fn render_kind<T: Listed>(
    all: &[T],
    objects: &Objects,
    query: &Query,
    now: i64,
) -> anyhow::Result<Rendered> {
    let kind = query.kind;
    let plural = kind.names()[0];
    // The namespace the objects must be in; None for every namespace or a cluster-scoped kind.
    let namespace = match (&query.scope, kind.namespaced()) {
        (Scope::Namespace { name, defaulted }, true) => {
            check_namespace(objects, name, *defaulted)?;
            Some(name.as_str())
        }
        (Scope::All, true) if query.name.is_some() => bail!(
            "a resource cannot be retrieved by name across all namespaces; give -n NAMESPACE instead of -A"
        ),
        _ => None,
    };
    let in_scope: Vec<&T> = all
        .iter()
        .filter(|o| namespace.is_none_or(|ns| o.meta().namespace.as_deref() == Some(ns)))
        .collect();
    let (selected, single) = match &query.name {
        Some(name) => {
            let found = in_scope
                .iter()
                .copied()
                .find(|o| o.meta().name.as_deref() == Some(name.as_str()));
            match found {
                Some(object) => (vec![object], true),
                None => {
                    let names = in_scope.iter().filter_map(|o| o.meta().name.as_deref());
                    bail!(
                        "{} {name:?} not found{}{}",
                        kind.qualified(plural),
                        namespace
                            .map(|ns| format!(" in namespace {ns:?}"))
                            .unwrap_or_default(),
                        did_you_mean(name, names)
                    )
                }
            }
        }
        None => (in_scope, false),
    };

    let mut rendered = Rendered::default();
    match query.format {
        Some(Format::Yaml) => {
            let value = document(&selected, single)?;
            rendered.stdout = serde_yaml::to_string(&value).context("cannot write YAML")?;
        }
        Some(Format::Json) => {
            let value = document(&selected, single)?;
            rendered.stdout = pretty_json(&value)?;
        }
        Some(Format::Name) | Some(Format::Wide) | None if selected.is_empty() => {
            rendered.stderr = match namespace {
                Some(ns) => format!("No resources found in {ns} namespace.\n"),
                None => "No resources found\n".to_string(),
            };
        }
        Some(Format::Name) => {
            let prefix = kind.qualified(kind.names()[1]);
            for object in &selected {
                let name = name_of(object.meta());
                rendered.stdout.push_str(&format!("{prefix}/{name}\n"));
            }
        }
        Some(Format::Wide) | None => {
            let wide = query.format == Some(Format::Wide);
            let with_namespace = kind.namespaced() && query.scope == Scope::All;
            let mut rows = Vec::with_capacity(selected.len() + 1);
            let mut headers: Vec<String> =
                kind.headers(wide).into_iter().map(String::from).collect();
            if with_namespace {
                headers.insert(0, "NAMESPACE".to_string());
            }
            rows.push(headers);
            for object in &selected {
                let mut cells = object.cells(now, wide);
                if with_namespace {
                    cells.insert(0, object.meta().namespace.clone().unwrap_or_default());
                }
                rows.push(cells);
            }
            rendered.stdout = table(&rows);
        }
    }
    Ok(rendered)
}

/// The namespace must exist; the error names the close matches, and says where `default` came
/// from when no `-n` was given.
fn check_namespace(objects: &Objects, ns: &str, defaulted: bool) -> anyhow::Result<()> {
    let names = || {
        objects
            .namespaces
            .iter()
            .filter_map(|n| n.metadata.name.as_deref())
    };
    if names().any(|name| name == ns) {
        return Ok(());
    }
    if defaulted {
        let existing: Vec<&str> = names().collect();
        bail!(
            "namespaces {ns:?} not found: without -n, get looks in namespace {ns:?} as kubectl does, and regate creates no such namespace; give -n NAMESPACE{} or -A for every namespace",
            match existing.as_slice() {
                [] => " (there is none yet: regate create namespace NAME)".to_string(),
                some => format!(" (one of {})", some.join(", ")),
            }
        );
    }
    bail!("namespaces {ns:?} not found{}", did_you_mean(ns, names()))
}

/// One object as itself, or several as a `List`, as kubectl writes them; each with its
/// `apiVersion` and `kind`, so `regate apply -f` takes the output back.
fn document<T: Listed>(selected: &[&T], single: bool) -> anyhow::Result<serde_json::Value> {
    let values = selected
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()
        .context("cannot write an object")?;
    if single && let [one] = values.as_slice() {
        return Ok(one.clone());
    }
    Ok(serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": values,
        "metadata": { "resourceVersion": "" },
    }))
}

/// JSON indented by four spaces, as kubectl writes it, with a final newline.
fn pretty_json(value: &serde_json::Value) -> anyhow::Result<String> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    value
        .serialize(&mut serializer)
        .context("cannot write JSON")?;
    out.push(b'\n');
    String::from_utf8(out).context("JSON output is not UTF-8")
}

/// Rows aligned in columns as kubectl aligns them: each column as wide as its widest cell plus
/// three spaces, no trailing blanks.
pub(super) fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|row| row.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                let pad = widths[c] - cell.chars().count() + 3;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
