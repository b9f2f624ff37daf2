//! `regate apply -f FILE|DIR|-`: create or update objects from Kubernetes manifests, as
//! `kubectl apply` does, printing one line per object (`KIND/NAME created|configured|unchanged`).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::StateArg;
use crate::authority::embedded::Object;
use crate::authority::embedded::Store;
use crate::authority::embedded::{Document, Outcome, expand_sources, parse_manifests, read_source};

/// Manifest files, as `kubectl apply -f` and `kubectl delete -f` take them.
#[derive(Debug, Args)]
pub(super) struct Files {
    /// A manifest file, a directory of *.yaml, *.yml and *.json files, or - for stdin
    /// (repeatable).
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-")]
    pub(super) files: Vec<PathBuf>,
}

impl Files {
    /// Every document of every file, in order.
    pub(super) fn documents(&self) -> anyhow::Result<Vec<Document>> {
        let mut documents = Vec::new();
        for source in &self.files {
            for file in expand_sources(source)? {
                let text = read_source(&file)?;
                let name = file.display().to_string();
                documents.extend(parse_manifests(&name, &text)?);
            }
        }
        Ok(documents)
    }
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    regate apply -f project-a.yaml\n  \
    regate apply -f manifests/ --dry-run\n  \
    regate get rolebindings -A -o yaml | regate apply -f -")]
pub(super) struct Apply {
    #[command(flatten)]
    files: Files,
    /// The namespace of namespaced objects that name none.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Print what would change, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the objects as stored (yaml) instead of one line each.
    #[arg(short = 'o', long, value_name = "FORMAT", value_parser = ["yaml"])]
    output: Option<String>,
    #[command(flatten)]
    state: StateArg,
}

impl Apply {
    pub(super) fn run(self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.files.files.is_empty(),
            "name the manifests with -f FILE, -f DIR or -f - (stdin)"
        );
        let documents = self.files.documents()?;
        let dir = self.state.dir();
        let store = Store::open_without_bootstrap(&dir)
            .with_context(|| {
                format!(
                    "cannot open state directory {} (flag --state)",
                    dir.display()
                )
            })?
            .with_dry_run(self.dry_run);
        let outcomes = store.apply(documents, self.namespace.as_deref())?;
        print_outcomes(&outcomes, self.output.is_some(), self.dry_run)
    }
}

/// Prints `KIND/NAME ACTION` per object, or with `yaml` the objects as YAML documents.
pub(super) fn print_outcomes(
    outcomes: &[Outcome],
    yaml: bool,
    dry_run: bool,
) -> anyhow::Result<()> {
    if yaml {
        let objects: Vec<&Object> = outcomes.iter().map(|o| &o.object).collect();
        print!("{}", objects_yaml(&objects)?);
        return Ok(());
    }
    let suffix = if dry_run { " (dry run)" } else { "" };
    for outcome in outcomes {
        println!("{} {}{suffix}", outcome.object.reference(), outcome.action);
    }
    Ok(())
}

/// Objects as YAML documents separated by `---`, which `regate apply -f` reads back.
pub(super) fn objects_yaml(objects: &[&Object]) -> anyhow::Result<String> {
    let mut out = String::new();
    for (i, object) in objects.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(
            &object
                .to_yaml()
                .with_context(|| format!("cannot write {} as YAML", object.reference()))?,
        );
    }
    Ok(out)
}
