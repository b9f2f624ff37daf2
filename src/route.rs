//! The OCI distribution URL grammar: which endpoint a `/v2/...` path names, and for which
//! repository.
//!
//! [`parse`] turns the raw, undecoded request path into a [`Route`], and [`Name::parse`] checks a
//! repository name (from a URL, a token-endpoint scope or a mount's `from`). Matching is done on
//! the bytes the client sent: nothing is percent-decoded or normalised, so `%2F`, `//`, `/./` or
//! `..` can never turn one repository's path into another's behind regate's back; they are
//! rejected as [`RouteError::NameInvalid`] instead. Both parsers work by hand on byte slices, as
//! they run on every request.

use std::fmt;
use std::str::FromStr;

#[cfg(test)]
mod tests;

/// Longest repository name, in bytes, as in distribution's `reference` package.
pub const MAX_NAME_LEN: usize = 255;
/// Longest tag, in bytes (the OCI spec's `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`).
pub const MAX_TAG_LEN: usize = 128;
/// Longest upload session id regate accepts; distribution's are 36-character UUIDs.
pub const MAX_UPLOAD_ID_LEN: usize = 128;

/// The OCI grammar of one name component, quoted in error messages.
const COMPONENT_GRAMMAR: &str = "[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*";

/// A valid repository name `<namespace>/<imagestream>`, e.g. `project-a/app/web`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name {
    full: String,
    /// Byte index of the first `/`, the end of the namespace.
    slash: usize,
}

impl Name {
    /// Checks `s` against the repository name rules (docs/behaviour.md §1) and keeps it.
    pub fn parse(s: &str) -> Result<Name, RouteError> {
        let slash = check_name(s)?;
        Ok(Name {
            full: s.to_owned(),
            slash,
        })
    }

    /// The whole name, e.g. `project-a/app/web`.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The first component, the Kubernetes namespace: `project-a`.
    pub fn namespace(&self) -> &str {
        &self.full[..self.slash]
    }

    /// The rest, the image stream: `app/web`.
    pub fn imagestream(&self) -> &str {
        &self.full[self.slash + 1..]
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl FromStr for Name {
    type Err = RouteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Name::parse(s)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.full
    }
}

/// An endpoint of the OCI distribution API.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// `/v2/` (or `/v2`): the API version check.
    Base,
    /// `/v2/_catalog`: the repository list.
    Catalog,
    /// `/v2/<name>/manifests/<tag|digest>`.
    Manifest {
        /// The repository.
        name: Name,
        /// A tag or a digest, as checked by the grammar.
        reference: String,
    },
    /// `/v2/<name>/blobs/<digest>`.
    Blob {
        /// The repository.
        name: Name,
        /// The blob's digest.
        digest: String,
    },
    /// `/v2/<name>/blobs/uploads/` (with or without the trailing slash): start an upload.
    UploadStart {
        /// The repository.
        name: Name,
    },
    /// `/v2/<name>/blobs/uploads/<id>`: an upload session.
    Upload {
        /// The repository.
        name: Name,
        /// The upload session id.
        id: String,
    },
    /// `/v2/<name>/tags/list`.
    Tags {
        /// The repository.
        name: Name,
    },
    /// `/v2/<name>/referrers/<digest>`.
    Referrers {
        /// The repository.
        name: Name,
        /// The subject's digest.
        digest: String,
    },
}

impl Route {
    /// The repository the route is about; `None` for the base and the catalog.
    pub fn name(&self) -> Option<&Name> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::UploadStart { name }
            | Route::Upload { name, .. }
            | Route::Tags { name }
            | Route::Referrers { name, .. } => Some(name),
        }
    }
}

/// Why a path is not a valid OCI endpoint.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum RouteError {
    /// Not under `/v2/`, or not one of the endpoint shapes: answered 404 `NOT_FOUND`.
    #[error("no such endpoint of the OCI distribution API")]
    NotFound,
    /// The repository name breaks a rule, which the message names: 400 `NAME_INVALID`.
    #[error("invalid repository name: {0}")]
    NameInvalid(String),
    /// A manifest's tag is malformed: 400 `MANIFEST_INVALID`.
    #[error("invalid manifest reference: {0}")]
    ReferenceInvalid(String),
    /// A digest (of a blob, a manifest or a referrers subject) is malformed: 400 `DIGEST_INVALID`.
    #[error("invalid digest: {0}")]
    DigestInvalid(String),
}

impl RouteError {
    /// The OCI error code of the response.
    pub fn code(&self) -> &'static str {
        match self {
            RouteError::NotFound => "NOT_FOUND",
            RouteError::NameInvalid(_) => "NAME_INVALID",
            RouteError::ReferenceInvalid(_) => "MANIFEST_INVALID",
            RouteError::DigestInvalid(_) => "DIGEST_INVALID",
        }
    }
}

/// Parses a raw request path (undecoded, without the query) into the endpoint it names.
pub fn parse(raw_path: &str) -> Result<Route, RouteError> {
    let Some(rest) = raw_path.strip_prefix("/v2") else {
        return Err(RouteError::NotFound);
    };
    let rest = match rest {
        "" | "/" => return Ok(Route::Base),
        // `/v2foo` is not under `/v2/`.
        _ => rest.strip_prefix('/').ok_or(RouteError::NotFound)?,
    };
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }

    // Fixed suffixes first: their last segment (`list`, `uploads`, or nothing) is not a
    // reference, so they cannot be confused with the variable-tail shapes below.
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Ok(Route::Tags {
            name: Name::parse(name)?,
        });
    }
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Ok(Route::UploadStart {
            name: Name::parse(name)?,
        });
    }

    // `<name>/<kind>/<last>`. Splitting at the last two slashes makes the name everything
    // before the last matching suffix, so a repository may have a component called `blobs`
    // or `manifests` (`a/blobs/blobs/<digest>` is a blob of `a/blobs`).
    let (head, last) = rest.rsplit_once('/').ok_or(RouteError::NotFound)?;
    let (before, kind) = head.rsplit_once('/').ok_or(RouteError::NotFound)?;
    // No shape ends in an empty segment other than the upload start handled above.
    if last.is_empty() {
        return Err(RouteError::NotFound);
    }
    match kind {
        "manifests" => {
            let name = Name::parse(before)?;
            check_reference(last)?;
            Ok(Route::Manifest {
                name,
                reference: last.to_owned(),
            })
        }
        "blobs" => {
            let name = Name::parse(before)?;
            check_digest(last)?;
            Ok(Route::Blob {
                name,
                digest: last.to_owned(),
            })
        }
        "referrers" => {
            let name = Name::parse(before)?;
            check_digest(last)?;
            Ok(Route::Referrers {
                name,
                digest: last.to_owned(),
            })
        }
        "uploads" => {
            let name = before.strip_suffix("/blobs").ok_or(RouteError::NotFound)?;
            let name = Name::parse(name)?;
            // Distribution's router does not match a malformed id either: it is not an upload
            // endpoint, so 404 (and `.`/`..` must never reach a server that might normalise).
            if !valid_upload_id(last) {
                return Err(RouteError::NotFound);
            }
            Ok(Route::Upload {
                name,
                id: last.to_owned(),
            })
        }
        _ => Err(RouteError::NotFound),
    }
}

/// Checks a repository name; returns the byte index of its first `/`.
fn check_name(s: &str) -> Result<usize, RouteError> {
    let invalid = |why: String| Err(RouteError::NameInvalid(why));
    if s.is_empty() {
        return invalid("the name is empty; it must be <namespace>/<imagestream>".into());
    }
    if s.len() > MAX_NAME_LEN {
        return invalid(format!(
            "the name is {} bytes long; at most {MAX_NAME_LEN} are allowed",
            s.len()
        ));
    }
    // Checked before the components so the message names the real problem: an encoded
    // character is never decoded into a separator or a dot.
    if s.contains('%') {
        return invalid(format!(
            "{s:?} contains a percent-encoded character; names are matched undecoded and \
             `%` is not allowed"
        ));
    }
    for component in s.split('/') {
        match component {
            "" => {
                return invalid(format!(
                    "{s:?} has an empty component (a leading, trailing or doubled `/`)"
                ));
            }
            "." | ".." => {
                return invalid(format!(
                    "{s:?} has a `{component}` component; relative path components are \
                     not allowed"
                ));
            }
            _ if !valid_component(component.as_bytes()) => {
                let hint = if component.bytes().any(|b| b.is_ascii_uppercase()) {
                    " (names are lowercase)"
                } else {
                    ""
                };
                return invalid(format!(
                    "component {component:?} of {s:?} does not match {COMPONENT_GRAMMAR}{hint}"
                ));
            }
            _ => {}
        }
    }
    match s.find('/') {
        Some(slash) => Ok(slash),
        None => invalid(format!(
            "{s:?} has one component; a name is <namespace>/<imagestream>, e.g. myproject/{s}"
        )),
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &[u8]) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        // A run of alphanumerics, which every component starts and ends with.
        let start = i;
        while i < c.len() && alnum(c[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == c.len() {
            return true;
        }
        // A separator, then the loop demands another alphanumeric run.
        match c[i] {
            b'.' => i += 1,
            b'_' => i += if c.get(i + 1) == Some(&b'_') { 2 } else { 1 },
            b'-' => {
                while c.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// A manifest reference: a digest if it has a `:`, else a tag.
fn check_reference(r: &str) -> Result<(), RouteError> {
    if r.contains(':') {
        return check_digest(r);
    }
    let b = r.as_bytes();
    let first_ok = b
        .first()
        .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_');
    let rest_ok = b
        .iter()
        .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    if first_ok && rest_ok && b.len() <= MAX_TAG_LEN {
        Ok(())
    } else {
        Err(RouteError::ReferenceInvalid(format!(
            "tag {r:?} does not match [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}"
        )))
    }
}

/// `algorithm:encoded` per the OCI image spec, with the registered algorithms' exact forms.
fn check_digest(d: &str) -> Result<(), RouteError> {
    let invalid = |why: &str| Err(RouteError::DigestInvalid(format!("{d:?} {why}")));
    let Some((algorithm, encoded)) = d.split_once(':') else {
        return invalid("is not of the form algorithm:encoded, e.g. sha256:<64 hex digits>");
    };
    // algorithm: [a-z0-9]+([+._-][a-z0-9]+)*
    let alg_ok = algorithm.split(['+', '.', '_', '-']).all(|part| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    if !alg_ok {
        return invalid("has an algorithm outside [a-z0-9]+([+._-][a-z0-9]+)*");
    }
    let lower_hex = |n: usize| {
        encoded.len() == n
            && encoded
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    match algorithm {
        "sha256" if !lower_hex(64) => invalid("is not sha256: and 64 lowercase hex digits"),
        "sha512" if !lower_hex(128) => invalid("is not sha512: and 128 lowercase hex digits"),
        _ if encoded.is_empty()
            || !encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-')) =>
        {
            invalid("has an encoded part outside [a-zA-Z0-9=_-]+")
        }
        _ => Ok(()),
    }
}

/// An upload session id: `[A-Za-z0-9_.=-]{1,128}`, but never `.` or `..`.
fn valid_upload_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_UPLOAD_ID_LEN
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'=' | b'-'))
}
