//! Reading manifests: splitting `---` documents, telling each document's kind from its
//! `apiVersion` and `kind`, and parsing it (or each item of a `kind: List`) into an [`Object`],
//! with errors that name the file, the line and the field.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::authority::embedded::object::{Kind, Object};
use crate::authority::embedded::store::{USER_API_VERSION, USER_KIND};
use crate::suggest::did_you_mean;
use crate::upstream::secret::{SECRET_TYPES, check_secret};

use super::{ApplyError, Document};

/// Splits `text` into YAML documents at `---` lines: (first line, text) of each.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut documents = Vec::new();
    let mut start = 1;
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") {
            documents.push((start, std::mem::take(&mut current)));
            start = i + 2;
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    documents.push((start, current));
    documents
}

/// Parses the manifests in `text` (read from `source`, named in errors): YAML or JSON, several
/// documents, `kind: List` expanded. Empty documents are skipped and not counted.
pub fn parse_manifests(source: &str, text: &str) -> Result<Vec<Document>, ApplyError> {
    let mut documents = Vec::new();
    let mut number = 0;
    for (start, doc) in split_documents(text) {
        let error = |number, line: Option<usize>, reason: String| ApplyError::Manifest {
            source_name: source.to_string(),
            document: number,
            line,
            reason,
        };
        // A line of the document as a line of the file.
        let in_file = |line: Option<usize>| Some(start + line.unwrap_or(1) - 1);
        let value: serde_yaml::Value = serde_yaml::from_str(&doc).map_err(|e| {
            error(
                number + 1,
                in_file(e.location().map(|l| l.line())),
                strip_location(&e),
            )
        })?;
        if value.is_null() {
            continue;
        }
        number += 1;
        let line_of = |key: &str| {
            let line = doc
                .lines()
                .position(|l| l.trim_start().trim_start_matches('"').starts_with(key))
                .map(|i| i + 1);
            in_file(line)
        };
        let mut push = |object| {
            documents.push(Document {
                source: source.to_string(),
                number,
                line: start,
                object,
            })
        };
        if type_of(&value).1 == "List" {
            let items = value.get("items").and_then(|i| i.as_sequence());
            for (i, item) in items.into_iter().flatten().enumerate() {
                let kind = check_type(item).map_err(|(key, reason)| {
                    error(
                        number,
                        line_of("items"),
                        format!("items[{i}].{key}: {reason}"),
                    )
                })?;
                let object = typed_value(kind, item).map_err(|e| {
                    let mut reason = strip_location(&e);
                    if kind == Kind::Secret {
                        reason = redact_strings(&reason);
                    }
                    error(number, line_of("items"), format!("items[{i}]: {reason}"))
                })?;
                push(object);
            }
            continue;
        }
        let kind = check_type(&value)
            .map_err(|(key, reason)| error(number, line_of(key), format!("{key}: {reason}")))?;
        let object = typed_str(kind, &doc).map_err(|e| {
            let mut reason = strip_location(&e);
            if kind == Kind::Secret {
                reason = redact_strings(&reason);
            }
            error(number, in_file(e.location().map(|l| l.line())), reason)
        })?;
        // Checked here too (apply checks again) to point at the line of the field.
        if let Object::Secret(secret) = &object
            && let Err(reason) = check_secret(secret)
        {
            let key = SECRET_TYPES
                .iter()
                .find(|(t, _)| secret.type_.as_deref() == Some(*t))
                .map_or("type", |(_, key)| *key);
            let line = if reason.starts_with("type") || reason.ends_with("is missing") {
                line_of(if reason.starts_with("type") {
                    "type"
                } else {
                    "metadata"
                })
            } else {
                line_of(key)
            };
            return Err(error(number, line, reason));
        }
        push(object);
    }
    Ok(documents)
}

/// `reason` with the text of every quoted string value replaced, so that an error about a Secret
/// never shows its data.
pub(super) fn redact_strings(reason: &str) -> String {
    let mut out = String::new();
    let mut rest = reason;
    while let Some(at) = rest.find("string \"") {
        let (head, tail) = rest.split_at(at + "string \"".len());
        out.push_str(head);
        out.push_str("<redacted>\"");
        rest = tail.find('"').map_or("", |end| &tail[end + 1..]);
    }
    out.push_str(rest);
    out
}

/// serde_yaml's message without the ` at line L column C` it appends.
fn strip_location(e: &serde_yaml::Error) -> String {
    let message = e.to_string();
    match e.location() {
        Some(at) => message.replace(
            &format!(" at line {} column {}", at.line(), at.column()),
            "",
        ),
        None => message,
    }
}

/// The `apiVersion` and `kind` of a document ("" when missing).
fn type_of(value: &serde_yaml::Value) -> (String, String) {
    let get = |key: &str| {
        value
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    (get("apiVersion"), get("kind"))
}

/// The apiVersion and kind of each kind, as manifests write them.
const TYPES: [(Kind, &str, &str); 8] = [
    (Kind::Namespace, "v1", "Namespace"),
    (Kind::ServiceAccount, "v1", "ServiceAccount"),
    (Kind::Secret, "v1", "Secret"),
    (Kind::Role, "rbac.authorization.k8s.io/v1", "Role"),
    (
        Kind::ClusterRole,
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
    ),
    (
        Kind::RoleBinding,
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
    ),
    (
        Kind::ClusterRoleBinding,
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
    ),
    (Kind::User, USER_API_VERSION, USER_KIND),
];

/// The kind of a document; the error is (field, reason).
fn check_type(value: &serde_yaml::Value) -> Result<Kind, (&'static str, String)> {
    let (api_version, kind) = type_of(value);
    let kinds = || TYPES.iter().map(|(_, _, k)| *k);
    if kind.is_empty() {
        return Err((
            "kind",
            "missing; every object needs apiVersion and kind".into(),
        ));
    }
    let Some((found, want_version, _)) = TYPES.iter().find(|(_, _, k)| *k == kind) else {
        return Err((
            "kind",
            format!(
                "{kind:?} is not kept by regate{}; kinds: {}",
                did_you_mean(&kind, kinds()),
                kinds().collect::<Vec<_>>().join(", ")
            ),
        ));
    };
    if api_version != *want_version {
        return Err((
            "apiVersion",
            format!("{api_version:?} is not the apiVersion of {kind} ({want_version})"),
        ));
    }
    Ok(*found)
}

/// Deserializes the object of `kind` with `$parse` (a generic function call).
macro_rules! typed {
    ($kind:expr, $parse:ident($($arg:expr),*)) => {
        match $kind {
            Kind::Namespace => $parse($($arg),*).map(Object::Namespace),
            Kind::ServiceAccount => $parse($($arg),*).map(Object::ServiceAccount),
            Kind::Secret => $parse($($arg),*).map(Object::Secret),
            Kind::Role => $parse($($arg),*).map(Object::Role),
            Kind::ClusterRole => $parse($($arg),*).map(Object::ClusterRole),
            Kind::RoleBinding => $parse($($arg),*).map(Object::RoleBinding),
            Kind::ClusterRoleBinding => $parse($($arg),*).map(Object::ClusterRoleBinding),
            Kind::User => $parse($($arg),*).map(Object::User),
        }
    };
}

/// The object of `kind` in document text `doc` (errors carry its line).
fn typed_str(kind: Kind, doc: &str) -> Result<Object, serde_yaml::Error> {
    use serde_yaml::from_str;
    typed!(kind, from_str(doc))
}

/// The object of `kind` in a List item.
fn typed_value(kind: Kind, item: &serde_yaml::Value) -> Result<Object, serde_yaml::Error> {
    fn from_value<T: serde::de::DeserializeOwned>(
        v: &serde_yaml::Value,
    ) -> Result<T, serde_yaml::Error> {
        serde_yaml::from_value(v.clone())
    }
    typed!(kind, from_value(item))
}

/// Moves `stringData` into `data`, as the API server does on write.
pub(super) fn fold_string_data(secret: &mut Secret) {
    if let Some(strings) = secret.string_data.take() {
        let data = secret.data.get_or_insert_with(Default::default);
        for (key, value) in strings {
            data.insert(key, ByteString(value.into_bytes()));
        }
    }
}

/// Server-set fields a manifest may carry (from `get -o yaml` of a cluster) that are not kept.
pub(super) fn clear_server_fields(meta: &mut ObjectMeta) {
    meta.resource_version = None;
    meta.managed_fields = None;
    meta.generation = None;
    meta.self_link = None;
}
