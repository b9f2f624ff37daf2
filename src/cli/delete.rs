//! `regate delete KIND NAME... [-n NS]` and `regate delete -f FILE|DIR|-`, as `kubectl delete`.
//! Deleting a namespace deletes everything in it; a deleted service account's or user's tokens
//! stop working at once.

use clap::Args;

use super::StateArg;
use super::apply::Files;
use crate::authority::embedded::{Kind, Object};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    regate delete namespace project-a\n  \
    regate delete sa ci -n project-a\n  \
    regate delete rolebinding system:image-puller -n project-b --dry-run\n  \
    regate delete -f project-a.yaml")]
pub(super) struct Delete {
    /// The kind: namespace (ns), serviceaccount (sa), role, rolebinding, clusterrole,
    /// clusterrolebinding, secret, user (singular, plural or short); KIND/NAME also works.
    #[arg(required_unless_present = "files", conflicts_with = "files")]
    kind: Option<String>,
    /// Names of the objects to delete.
    #[arg(value_name = "NAME", requires = "kind")]
    names: Vec<String>,
    #[command(flatten)]
    files: Files,
    /// The namespace of namespaced objects.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Print what would be deleted, and delete nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    state: StateArg,
}

impl Delete {
    pub(super) fn run(self) -> anyhow::Result<()> {
        let mut names = self.names.clone();
        let objects = match &self.kind {
            Some(kind) => {
                // kubectl's KIND/NAME form.
                let kind = match kind.split_once('/') {
                    Some((kind, name)) => {
                        names.insert(0, name.to_string());
                        kind
                    }
                    None => kind,
                };
                let kind = Kind::parse(kind)?;
                anyhow::ensure!(
                    !names.is_empty(),
                    "name the {} to delete: regate delete {} NAME",
                    kind.resource(),
                    self.kind.as_deref().unwrap_or_default()
                );
                if kind.is_namespaced() && self.namespace.is_none() {
                    anyhow::bail!("a {} is in a namespace: add -n NAMESPACE", kind.resource());
                }
                names
                    .iter()
                    .map(|name| Object::named(kind, name, self.namespace.as_deref()))
                    .collect()
            }
            None => {
                let mut objects = Vec::new();
                for doc in self.files.documents()? {
                    let mut object = doc.object;
                    if object.kind().is_namespaced() && object.namespace().is_empty() {
                        let Some(ns) = &self.namespace else {
                            anyhow::bail!(
                                "{}: document {}: metadata.namespace is missing; set it or pass -n NAMESPACE",
                                doc.source,
                                doc.number
                            );
                        };
                        object = Object::named(object.kind(), object.name(), Some(ns));
                    }
                    objects.push(object);
                }
                objects
            }
        };
        let store = self.state.open()?.with_dry_run(self.dry_run);
        let suffix = if self.dry_run { " (dry run)" } else { "" };
        for outcome in store.delete_objects(&objects)? {
            let object = &outcome.object;
            println!(
                "{} {:?} deleted{suffix}",
                object.kind().resource(),
                object.name()
            );
        }
        Ok(())
    }
}
