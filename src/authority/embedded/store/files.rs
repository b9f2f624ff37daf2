//! One object file: finding it, parsing it (its `apiVersion`, `kind` and name checked against
//! where it lies), and replacing or removing it atomically.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::Deserialize;

use super::{Layout, StateObject, StoreError, io_error};

/// The file of object `name` in directory `dir`.
pub(crate) fn object_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.yaml"))
}

/// Whether a directory entry is hidden (the lock, the change marker, temporary files).
pub(crate) fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

/// Names of the directories under `namespaces/`, sorted.
pub(crate) fn namespace_dirs(layout: &Layout) -> Result<Vec<String>, StoreError> {
    let dir = layout.namespaces();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(&dir)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(&dir))?;
        let is_dir = entry.file_type().map_err(io_error(&dir))?.is_dir();
        let name = entry.file_name();
        if is_dir
            && !is_hidden(&name)
            && let Some(name) = name.to_str()
        {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// The `apiVersion` and `kind` of any object, whatever else it holds.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    api_version: Option<String>,
    kind: Option<String>,
}

/// Parses one object from `text`, the contents of `path` (named in errors with line and column).
pub(crate) fn parse<T: StateObject>(path: &Path, text: &str) -> Result<T, StoreError> {
    // Checked first, and on their own, so that an object in the wrong place is reported at the
    // `kind:` line (serde_yaml would point at the start of the document).
    if let Ok(found) = serde_yaml::from_str::<TypeMeta>(text) {
        for (key, value, expected) in [
            ("apiVersion", found.api_version, T::API_VERSION),
            ("kind", found.kind, T::KIND),
        ] {
            if let Some(value) = value.filter(|v| v != expected) {
                return Err(StoreError::Parse {
                    path: path.to_path_buf(),
                    line: line_of(text, key),
                    column: None,
                    reason: format!(
                        "{key} is {value:?} but this directory holds {} objects ({key}: {expected})",
                        T::KIND
                    ),
                });
            }
        }
    }
    serde_yaml::from_str(text).map_err(|e| {
        let location = e.location();
        let mut reason = e.to_string();
        if let Some(at) = &location {
            // serde_yaml appends the location; it is already in front of the message.
            reason = reason.replace(
                &format!(" at line {} column {}", at.line(), at.column()),
                "",
            );
        }
        StoreError::Parse {
            path: path.to_path_buf(),
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
            reason: format!("{reason} (in a {} object)", T::KIND),
        }
    })
}

/// The 1-based line of the first `key:` in `text`, to point an error at it.
fn line_of(text: &str, key: &str) -> Option<usize> {
    let prefix = format!("{key}:");
    text.lines()
        .position(|line| line.trim_start().starts_with(&prefix))
        .map(|i| i + 1)
}

/// Reads the object in `path`; `None` when there is no such file.
pub(crate) fn read_object<T: StateObject>(path: &Path) -> Result<Option<T>, StoreError> {
    match fs::read_to_string(path) {
        Ok(text) => parse(path, &text).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path)(e)),
    }
}

/// Reads every `*.yaml` object in `dir` (none when `dir` does not exist), sorted by file name.
/// Each object's name must match its file name, and a namespaced object's namespace its
/// directory; a missing name or namespace is filled in from the place.
pub(crate) fn read_objects<T: StateObject>(
    dir: &Path,
    namespace: Option<&str>,
) -> Result<Vec<T>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(dir)(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".yaml")
            && !stem.is_empty()
            && !name.starts_with('.')
        {
            files.push((stem.to_string(), entry.path()));
        }
    }
    files.sort();
    let mut objects = Vec::with_capacity(files.len());
    for (stem, path) in files {
        // Deleted since we listed the directory: not an object any more.
        let Some(mut object) = read_object::<T>(&path)? else {
            continue;
        };
        check_identity(&path, object.meta(), &stem, namespace)?;
        let meta = object.meta_mut();
        meta.name.get_or_insert(stem);
        if let Some(ns) = namespace {
            meta.namespace.get_or_insert_with(|| ns.to_string());
        }
        objects.push(object);
    }
    Ok(objects)
}

/// The name in a file must be the file's name, and the namespace (if given) its directory's:
/// the CLI finds objects by file name, and a mismatch would make two names for one object.
pub(crate) fn check_identity(
    path: &Path,
    meta: &ObjectMeta,
    name: &str,
    namespace: Option<&str>,
) -> Result<(), StoreError> {
    let mismatch = |reason: String| StoreError::Parse {
        path: path.to_path_buf(),
        line: None,
        column: None,
        reason,
    };
    if let Some(found) = meta.name.as_deref()
        && found != name
    {
        return Err(mismatch(format!(
            "metadata.name is {found:?} but the file is named for {name:?}; rename the file or fix the name"
        )));
    }
    if let (Some(found), Some(expected)) = (meta.namespace.as_deref(), namespace)
        && found != expected
    {
        return Err(mismatch(format!(
            "metadata.namespace is {found:?} but the file is in namespace {expected:?}'s directory; move the file or fix the namespace"
        )));
    }
    Ok(())
}

/// Sets `metadata.uid` (a new UUID) and `creationTimestamp` (now) where missing, as the API
/// server does when it creates an object.
pub(crate) fn stamp(meta: &mut ObjectMeta) {
    meta.uid
        .get_or_insert_with(|| uuid::Uuid::new_v4().to_string());
    meta.creation_timestamp.get_or_insert_with(|| {
        let now = i64::try_from(crate::token::now()).unwrap_or(0);
        Time(k8s_openapi::jiff::Timestamp::from_second(now).unwrap_or_default())
    });
}

/// Writes `object` to `path` atomically.
pub(crate) fn write_object<T: StateObject>(path: &Path, object: &T) -> Result<(), StoreError> {
    let text = serde_yaml::to_string(object).map_err(|source| StoreError::Serialize {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, text.as_bytes())
}

/// Replaces `path` with `bytes` (0600) atomically, creating its directory if missing.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    crate::fs::write_atomic(path, bytes, 0o600).map_err(io_error(path))
}

/// Removes `path` durably.
pub(crate) fn remove_file(path: &Path) -> Result<(), StoreError> {
    fs::remove_file(path).map_err(io_error(path))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    crate::fs::sync_dir(dir).map_err(io_error(dir))
}

/// Creates `dir` and its missing parents, readable by the owner only.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error(dir))
}

/// Whether `path` exists (an error other than "not found" is an error, not a no).
pub(crate) fn exists(path: &Path) -> Result<bool, StoreError> {
    path.try_exists().map_err(io_error(path))
}
