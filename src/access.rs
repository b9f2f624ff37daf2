//! What a request must be allowed to do: the RBAC checks of a method on a [`Route`] (docs/behaviour.md §2).
//!
//! [`plan`] maps a request to a [`Plan`]: the [`Attributes`] that must all be allowed, the source
//! of a cross-repository mount (checked softly: if denied, [`without_mount`] turns the request
//! into a plain upload start, as distribution and OpenShift do), whether the catalog must be
//! filtered per caller, and the scope a 401 challenge names. It decides nothing itself and does
//! no I/O; the authority and the cache answer the checks. A method not listed for a route is
//! refused here, so nothing reaches the registry unchecked.

use http::Method;
use percent_encoding::percent_decode_str;

use crate::policy::Attributes;
use crate::route::{Name, Route, RouteError};

#[cfg(test)]
mod tests;

/// The checks a request needs before it may be forwarded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Checks that must all be allowed, asked in this order.
    pub required: Vec<Attributes>,
    /// The source of a cross-repository mount (`POST .../blobs/uploads/?mount=&from=`).
    pub mount_source: Option<MountSource>,
    /// `GET /v2/_catalog`: the response is to be filtered to what the caller may see.
    pub catalog: bool,
    /// The scope a 401 challenge names, e.g. `repository:ns/app:pull,push`.
    pub scope: Option<String>,
}

impl Plan {
    /// The repository the request is about, from its scope; `None` for `/v2/` and the catalog.
    pub fn repository(&self) -> Option<&str> {
        let scope = self.scope.as_deref()?.strip_prefix("repository:")?;
        scope.rsplit_once(':').map(|(name, _actions)| name)
    }
}

/// The repository a blob is mounted from, and the check that allows reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountSource {
    /// The `from` repository.
    pub from: Name,
    /// `get` on its layers; if denied the gateway drops `mount`/`from` and starts a plain upload.
    pub check: Attributes,
}

/// Why a request cannot be planned.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum AccessError {
    /// The route exists but not for this method: 405 `UNSUPPORTED`.
    #[error("{method} is not supported on {what}")]
    MethodNotAllowed {
        /// The request's method.
        method: String,
        /// The endpoint, for the message, e.g. `manifests`.
        what: &'static str,
        /// The methods the endpoint does take (the `Allow` header).
        allow: &'static str,
    },
    /// The `from` of a cross-repository mount is not a repository name: 400 `NAME_INVALID`.
    #[error("the `from` parameter of the blob mount is not a repository: {0}")]
    InvalidMountSource(RouteError),
}

/// What a method on a repository route needs, before it becomes attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Need {
    /// `get` on L.
    Pull,
    /// `get` and `update` on L.
    Push,
    /// `update` on L: cancelling an upload only discards what the caller could have written.
    Cancel,
    /// Cluster `delete` on `images`: OpenShift's prune right.
    Delete,
}

/// The RBAC checks `method` on `route` needs; `query` is the raw query string, if any.
pub fn plan(method: &Method, route: &Route, query: Option<&str>) -> Result<Plan, AccessError> {
    let Some(name) = route.name() else {
        return match (route, method.as_str()) {
            // Identity only: a client probing `/v2/` learns whether its credentials work.
            (Route::Base, "GET" | "HEAD") => Ok(Plan::default()),
            (Route::Catalog, "GET") => Ok(Plan {
                catalog: true,
                scope: Some("registry:catalog:*".to_owned()),
                ..Plan::default()
            }),
            _ => Err(not_allowed(method, route)),
        };
    };
    let need = need(method, route).ok_or_else(|| not_allowed(method, route))?;
    let layers = |verb| Attributes::layers(verb, name.namespace(), name.imagestream());
    let (required, actions) = match need {
        Need::Pull => (vec![layers("get")], "pull"),
        Need::Push => (vec![layers("get"), layers("update")], "pull,push"),
        // The client holds a push token for the session it cancels; ask for the same.
        Need::Cancel => (vec![layers("update")], "pull,push"),
        Need::Delete => (vec![Attributes::cluster("delete", "images")], "delete"),
    };
    let mount_source = match (route, query) {
        (Route::UploadStart { .. }, Some(query)) => mount_source(query)?,
        _ => None,
    };
    Ok(Plan {
        required,
        mount_source,
        catalog: false,
        scope: Some(format!("repository:{name}:{actions}")),
    })
}

/// The methods a route accepts, for the `Allow` header of a 405.
pub fn allowed_methods(route: &Route) -> &'static str {
    match route {
        Route::Base => "GET, HEAD",
        Route::Catalog => "GET",
        Route::Manifest { .. } => "GET, HEAD, PUT, DELETE",
        Route::Blob { .. } => "GET, HEAD, DELETE",
        Route::UploadStart { .. } => "POST",
        Route::Upload { .. } => "GET, HEAD, PATCH, PUT, DELETE",
        Route::Tags { .. } | Route::Referrers { .. } => "GET, HEAD",
    }
}

/// What `method` on a repository route needs; `None` if the route does not take it.
fn need(method: &Method, route: &Route) -> Option<Need> {
    let need = match (route, method.as_str()) {
        (
            Route::Manifest { .. }
            | Route::Blob { .. }
            | Route::Tags { .. }
            | Route::Referrers { .. },
            "GET" | "HEAD",
        ) => Need::Pull,
        (Route::Manifest { .. }, "PUT") => Need::Push,
        (Route::Manifest { .. } | Route::Blob { .. }, "DELETE") => Need::Delete,
        (Route::UploadStart { .. }, "POST") => Need::Push,
        // Not POST: distribution treats a POST on a session as a new upload start that reads
        // `mount`/`from`, which would bypass the mount check made for the start route only.
        (Route::Upload { .. }, "GET" | "HEAD" | "PATCH" | "PUT") => Need::Push,
        (Route::Upload { .. }, "DELETE") => Need::Cancel,
        _ => return None,
    };
    Some(need)
}

fn not_allowed(method: &Method, route: &Route) -> AccessError {
    let what = match route {
        Route::Base => "the API base /v2/",
        Route::Catalog => "the catalog /v2/_catalog",
        Route::Manifest { .. } => "manifests",
        Route::Blob { .. } => "blobs",
        Route::UploadStart { .. } => "the upload start /blobs/uploads/",
        Route::Upload { .. } => "upload sessions",
        Route::Tags { .. } => "the tag list",
        Route::Referrers { .. } => "referrers",
    };
    AccessError::MethodNotAllowed {
        method: method.as_str().to_owned(),
        what,
        allow: allowed_methods(route),
    }
}

/// The source of a mount, if the query asks for one the way distribution reads it: both
/// `mount` and `from` present and non-empty, the first value of each counting.
fn mount_source(query: &str) -> Result<Option<MountSource>, AccessError> {
    let mut mount = None;
    let mut from = None;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key_is(key, "mount") {
            mount.get_or_insert(value);
        } else if key_is(key, "from") {
            // An upstream that takes the last value would mount from a repository other than
            // the one checked; no client sends two, so refuse rather than guess.
            if from.is_some_and(|first| first != value) {
                return Err(AccessError::InvalidMountSource(RouteError::NameInvalid(
                    "the query has more than one `from` parameter; a mount has one source".into(),
                )));
            }
            from = Some(value);
        }
    }
    let (Some(mount), Some(from)) = (mount, from) else {
        return Ok(None);
    };
    if mount.is_empty() || from.is_empty() {
        return Ok(None);
    }
    let from = percent_decode_str(from).decode_utf8().map_err(|_| {
        AccessError::InvalidMountSource(RouteError::NameInvalid(
            "the `from` parameter is not UTF-8 once decoded".into(),
        ))
    })?;
    let from = Name::parse(&from).map_err(AccessError::InvalidMountSource)?;
    let check = Attributes::layers("get", from.namespace(), from.imagestream());
    Ok(Some(MountSource { from, check }))
}

/// `query` without its `mount` and `from` parameters; every other byte kept, in order (the
/// signed `_state` must reach distribution unchanged). Empty when nothing else is left.
pub fn without_mount(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    let mut first = true;
    for pair in query.split('&') {
        let key = pair.split_once('=').map_or(pair, |(key, _)| key);
        if key_is(key, "mount") || key_is(key, "from") {
            continue;
        }
        if !first {
            out.push('&');
        }
        out.push_str(pair);
        first = false;
    }
    out
}

/// Whether a raw query key decodes to `name`, as the upstream's query parser sees it (`fro%6D`
/// is `from` to Go's `url.ParseQuery`). `+` needs no care: it decodes to a space, which
/// neither `mount` nor `from` contains.
fn key_is(raw: &str, name: &str) -> bool {
    percent_decode_str(raw).eq(name.bytes())
}

/// One resource scope of a token request, `TYPE:NAME:ACTIONS` (Docker token spec), e.g.
/// `repository:project-a/app:pull,push` or `registry:catalog:*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// `repository` or `registry` (a `(class)` suffix is dropped: the registry ignores it).
    pub kind: String,
    /// The repository, or `catalog`.
    pub name: String,
    /// The actions asked for, in order, without duplicates.
    pub actions: Vec<String>,
}

impl Scope {
    /// Parses one scope. A `repository` scope must name a valid repository (the 400 of docs/behaviour.md §4);
    /// `None` for a scope too malformed to name a resource, which grants nothing.
    pub fn parse(scope: &str) -> Result<Option<Scope>, RouteError> {
        // The name may hold a `:` (a registry host with a port), so type and actions are split
        // off the ends.
        let Some((kind, rest)) = scope.split_once(':') else {
            return Ok(None);
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            return Ok(None);
        };
        let kind = kind.split_once('(').map_or(kind, |(kind, _class)| kind);
        if kind == "repository" {
            Name::parse(name)?;
        }
        let mut list: Vec<String> = Vec::new();
        for action in actions.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            if !list.iter().any(|a| a == action) {
                list.push(action.to_owned());
            }
        }
        Ok(Some(Scope {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions: list,
        }))
    }
}

/// The RBAC checks that grant `action` on a scope's resource in a registry token (what the
/// registry then lets the token do; docs/behaviour.md §2, §9): `pull` -> `get` and `push` -> `update` on
/// the repository's layers, `delete` -> cluster `delete images`, `*` -> all three,
/// `registry:catalog:*` -> cluster `list imagestreams`. `None`: regate never grants it.
pub fn scope_checks(kind: &str, name: &str, action: &str) -> Option<Vec<Attributes>> {
    match (kind, action) {
        ("repository", _) => {
            let name = Name::parse(name).ok()?;
            let layers = |verb| Attributes::layers(verb, name.namespace(), name.imagestream());
            match action {
                "pull" => Some(vec![layers("get")]),
                "push" => Some(vec![layers("update")]),
                "delete" => Some(vec![Attributes::cluster("delete", "images")]),
                "*" => Some(vec![
                    layers("get"),
                    layers("update"),
                    Attributes::cluster("delete", "images"),
                ]),
                _ => None,
            }
        }
        ("registry", "*") if name == "catalog" => {
            Some(vec![Attributes::cluster("list", "imagestreams")])
        }
        _ => None,
    }
}
