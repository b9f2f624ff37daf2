//! `kubectl apply -f` and `kubectl delete` for the state directory: manifests (YAML or JSON,
//! several `---` documents per file, `kind: List`) parsed into [`Object`]s, then created, updated
//! or deleted as one change under the writers' lock.
//!
//! Every document is checked before anything is written, so a bad document writes nothing. An
//! update keeps the stored object's `metadata.uid` and `creationTimestamp` (tokens are bound to
//! the uid), and applying what is already stored changes nothing.

mod manifests;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::bootstrap;
use super::object::{
    Kind, Object, UnknownKind, each, validate_dns_label, validate_dns_subdomain,
    validate_path_segment, validate_user_name,
};
use super::store::Store;
use super::store::{StateObject, StoreError, exists, io_error, object_file, read_object, stamp};
use crate::suggest::did_you_mean;
use crate::upstream::secret::check_secret;
pub use manifests::parse_manifests;
use manifests::{clear_server_fields, fold_string_data};

/// Why a manifest could not be applied or deleted.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A document does not parse, or is not an object regate keeps.
    #[error("{source_name}: document {document}{}: {reason}", at_line(*line))]
    Manifest {
        /// The file (or `-` for stdin).
        source_name: String,
        /// 1-based number of the document in the file.
        document: usize,
        /// 1-based line in the whole file, when known.
        line: Option<usize>,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// A kind regate does not know.
    #[error(transparent)]
    UnknownKind(#[from] UnknownKind),
    /// An object to delete does not exist.
    #[error("{kind} {name:?} not found{}{suggestion}", in_namespace(namespace.as_deref()))]
    NotFound {
        /// e.g. `rolebinding`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// Its namespace, for namespaced kinds.
        namespace: Option<String>,
        /// Close matches.
        suggestion: String,
    },
    /// Reading or writing the state directory failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(", line {l}")).unwrap_or_default()
}

fn in_namespace(namespace: Option<&str>) -> String {
    namespace
        .map(|ns| format!(" in namespace {ns:?}"))
        .unwrap_or_default()
}

/// An object and where it came from, for errors.
#[derive(Clone, Debug)]
pub struct Document {
    /// The file (or `-`).
    pub source: String,
    /// 1-based number of the document in the file.
    pub number: usize,
    /// 1-based line where the document starts in the file.
    pub line: usize,
    /// The object.
    pub object: Object,
}

impl Document {
    fn error(&self, reason: impl Into<String>) -> ApplyError {
        ApplyError::Manifest {
            source_name: self.source.clone(),
            document: self.number,
            line: Some(self.line),
            reason: reason.into(),
        }
    }
}

/// What applying or deleting did (or would do) to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// It did not exist.
    Created,
    /// It existed and differed.
    Configured,
    /// It existed as given.
    Unchanged,
    /// It was removed.
    Deleted,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Created => "created",
            Action::Configured => "configured",
            Action::Unchanged => "unchanged",
            Action::Deleted => "deleted",
        })
    }
}

/// One object's outcome: the object as stored (or as it would be) and what happened.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The object.
    pub object: Object,
    /// What happened to it.
    pub action: Action,
}

/// Fills `object`'s uid and creation time from the stored version at `path`, or stamps new ones;
/// the action is what writing it would be.
fn plan<T: StateObject + PartialEq>(object: &mut T, path: &Path) -> Result<Action, StoreError> {
    let Some(mut stored) = read_object::<T>(path)? else {
        stamp(object.meta_mut());
        return Ok(Action::Created);
    };
    let (meta, old) = (object.meta_mut(), stored.meta_mut());
    // The name and namespace are implied by the file's place when a hand edit leaves them out.
    old.name.clone_from(&meta.name);
    old.namespace.clone_from(&meta.namespace);
    meta.uid.clone_from(&old.uid);
    meta.creation_timestamp.clone_from(&old.creation_timestamp);
    stamp(meta);
    Ok(if *object == stored {
        Action::Unchanged
    } else {
        Action::Configured
    })
}

impl Store {
    /// Creates or updates every object of `documents` as one change: all are checked first (a
    /// bad one writes nothing), under the writers' lock. Namespaced objects without a namespace
    /// go to `default_namespace`. A new Namespace gets the service accounts and bindings
    /// `create namespace` makes, where the documents do not give them.
    pub fn apply(
        &self,
        documents: Vec<Document>,
        default_namespace: Option<&str>,
    ) -> Result<Vec<Outcome>, ApplyError> {
        let _lock = self.lock()?;
        let layout = self.layout().clone();
        let mut documents = documents;
        // Check everything first.
        let mut seen = BTreeSet::new();
        let applied_namespaces: BTreeSet<String> = documents
            .iter()
            .filter(|d| d.object.kind() == Kind::Namespace)
            .map(|d| d.object.name().to_string())
            .collect();
        for doc in &mut documents {
            let kind = doc.object.kind();
            clear_server_fields(doc.object.meta_mut());
            if let Err(reason) = place(kind, doc.object.meta_mut(), default_namespace) {
                return Err(doc.error(reason));
            }
            check_document(doc)?;
            let ns = doc.object.namespace().to_string();
            if kind.is_namespaced()
                && !applied_namespaces.contains(&ns)
                && !exists(&layout.namespace_file(&ns))?
            {
                return Err(doc.error(format!(
                    "metadata.namespace: namespace {ns:?} not found{}; add a Namespace document or run: {}",
                    did_you_mean(&ns, Kind::Namespace.existing_names(&layout, "").iter().map(String::as_str)),
                    super::store::create_namespace_command(&ns)
                )));
            }
            if !seen.insert((kind, ns, doc.object.name().to_string())) {
                return Err(doc.error(format!(
                    "{} appears twice in the input",
                    doc.object.reference()
                )));
            }
        }

        // Plan: what each write would be.
        let mut outcomes = Vec::with_capacity(documents.len());
        let mut new_namespaces = BTreeSet::new();
        for doc in documents {
            let mut object = doc.object;
            let path = object
                .kind()
                .file(&layout, object.namespace(), object.name());
            let action = each!(&mut object, o => plan(o, &path))?;
            if let (Object::Namespace(_), Action::Created) = (&object, action) {
                new_namespaces.insert(object.name().to_string());
            }
            outcomes.push(Outcome { object, action });
        }

        // Write: leftovers of new namespaces go first, namespaces last (a namespace exists for
        // readers only once everything in it does).
        for ns in &new_namespaces {
            let dir = layout.namespace_dir(ns);
            if exists(&dir)? {
                self.remove_dir(&dir)?;
            }
        }
        let mut order: Vec<&Outcome> = outcomes.iter().collect();
        order.sort_by_key(|o| o.object.kind() == Kind::Namespace);
        for outcome in order {
            let object = &outcome.object;
            if object.kind() == Kind::Namespace && new_namespaces.contains(object.name()) {
                self.write_namespace_defaults(object.name(), &outcomes)?;
            }
            if outcome.action != Action::Unchanged {
                let path = object
                    .kind()
                    .file(&layout, object.namespace(), object.name());
                each!(object, o => self.write(&path, o))?;
            }
        }
        // Last, so that applying a saved bootstrap role restores it with its uid.
        self.write_missing_bootstrap_roles()?;
        Ok(outcomes)
    }

    /// Writes the service accounts and bindings of new namespace `ns` that `applied` lacks.
    fn write_namespace_defaults(&self, ns: &str, applied: &[Outcome]) -> Result<(), StoreError> {
        let given = |kind: Kind, name: &str| {
            applied.iter().any(|o| {
                o.object.kind() == kind && o.object.namespace() == ns && o.object.name() == name
            })
        };
        let objects = bootstrap::namespace_objects(ns);
        for mut sa in objects.service_accounts {
            let name = sa.metadata.name.clone().unwrap_or_default();
            if !given(Kind::ServiceAccount, &name) {
                stamp(&mut sa.metadata);
                self.write(
                    &object_file(&self.layout().service_accounts(ns), &name),
                    &sa,
                )?;
            }
        }
        for mut binding in objects.role_bindings {
            let name = binding.metadata.name.clone().unwrap_or_default();
            if !given(Kind::RoleBinding, &name) {
                stamp(&mut binding.metadata);
                self.write(
                    &object_file(&self.layout().role_bindings(ns), &name),
                    &binding,
                )?;
            }
        }
        Ok(())
    }

    /// Deletes every object named by `objects` as one change: all must exist (the first that
    /// does not is an error naming close matches, and nothing is deleted). Deleting a namespace
    /// deletes everything in it, and its service accounts' tokens stop working.
    pub fn delete_objects(&self, objects: &[Object]) -> Result<Vec<Outcome>, ApplyError> {
        let _lock = self.lock()?;
        let layout = self.layout().clone();
        for object in objects {
            let kind = object.kind();
            let (ns, name) = (object.namespace(), object.name());
            check_name(kind, name).map_err(ApplyError::Store)?;
            if kind.is_namespaced() {
                validate_path_segment("namespace", ns)?;
                // An earlier namespace of the same input takes the object with it.
                let going = objects
                    .iter()
                    .any(|o| o.kind() == Kind::Namespace && o.name() == ns);
                if going {
                    continue;
                }
                if !exists(&layout.namespace_file(ns))? {
                    return Err(ApplyError::NotFound {
                        kind: "namespace",
                        name: ns.to_string(),
                        namespace: None,
                        suggestion: did_you_mean(
                            ns,
                            Kind::Namespace
                                .existing_names(&layout, "")
                                .iter()
                                .map(String::as_str),
                        ),
                    });
                }
            }
            if !exists(&kind.file(&layout, ns, name))? {
                let names = kind.existing_names(&layout, ns);
                return Err(ApplyError::NotFound {
                    kind: kind.singular(),
                    name: name.to_string(),
                    namespace: kind.is_namespaced().then(|| ns.to_string()),
                    suggestion: did_you_mean(name, names.iter().map(String::as_str)),
                });
            }
        }
        let mut outcomes = Vec::new();
        for object in objects {
            let kind = object.kind();
            let path = kind.file(&layout, object.namespace(), object.name());
            if kind == Kind::Namespace {
                // First: from here on the namespace, and everything in it, is gone for readers.
                self.remove(&path)?;
                self.remove_dir(&layout.namespace_dir(object.name()))?;
            } else if self.is_dry_run() || exists(&path)? {
                self.remove(&path)?;
            }
            outcomes.push(Outcome {
                object: object.clone(),
                action: Action::Deleted,
            });
        }
        Ok(outcomes)
    }
}

/// Sets or checks the namespace of an object of `kind`: namespaced objects without one go to
/// `default_namespace`; the error names the field.
fn place(kind: Kind, meta: &mut ObjectMeta, default_namespace: Option<&str>) -> Result<(), String> {
    let found = meta.namespace.clone().filter(|ns| !ns.is_empty());
    if !kind.is_namespaced() {
        if let Some(found) = found {
            return Err(format!(
                "metadata.namespace: a {} is not in a namespace (found {found:?}); remove the field",
                kind.singular()
            ));
        }
        meta.namespace = None;
        return Ok(());
    }
    match (found, default_namespace) {
        (None, Some(ns)) => meta.namespace = Some(ns.to_string()),
        (None, None) => {
            return Err(
                "metadata.namespace: missing; set it in the document or pass -n NAMESPACE".into(),
            );
        }
        (Some(found), Some(ns)) if found != ns => {
            return Err(format!(
                "metadata.namespace: {found:?} does not match -n {ns}"
            ));
        }
        _ => {}
    }
    Ok(())
}

/// Checks one object's name and, for Secrets, type and data.
fn check_document(doc: &mut Document) -> Result<(), ApplyError> {
    let kind = doc.object.kind();
    let name = doc.object.name().to_string();
    if name.is_empty() {
        return Err(doc.error("metadata.name: missing"));
    }
    if let Err(e) = check_name(kind, &name) {
        return Err(doc.error(format!("metadata.name: {e}")));
    }
    if kind.is_namespaced()
        && let Err(e) = validate_path_segment("namespace", doc.object.namespace())
    {
        return Err(doc.error(format!("metadata.namespace: {e}")));
    }
    if let Object::Secret(secret) = &mut doc.object {
        fold_string_data(secret);
        if let Err(reason) = check_secret(secret) {
            return Err(doc.error(reason));
        }
    }
    Ok(())
}

/// The naming rule of `kind`.
fn check_name(kind: Kind, name: &str) -> Result<(), StoreError> {
    match kind {
        Kind::Namespace => validate_dns_label("namespace", name),
        Kind::ServiceAccount => validate_dns_subdomain("serviceaccount", name),
        Kind::User => validate_user_name(name),
        other => validate_path_segment(other.singular(), name),
    }
}

/// Reads a manifest file, or stdin for `-`: its text, or an error naming it.
pub fn read_source(source: &Path) -> Result<String, StoreError> {
    use std::io::Read;
    let mut text = String::new();
    if source == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(io_error(source))?;
        return Ok(text);
    }
    std::fs::read_to_string(source).map_err(io_error(source))
}

/// The manifest files `-f` names: a file, `-`, or a directory's `*.yaml`, `*.yml` and `*.json`
/// files, sorted.
pub fn expand_sources(source: &Path) -> Result<Vec<PathBuf>, StoreError> {
    if source == Path::new("-") || !source.is_dir() {
        return Ok(vec![source.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(source).map_err(io_error(source))? {
        let path = entry.map_err(io_error(source))?.path();
        let manifest = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        if manifest && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests;
