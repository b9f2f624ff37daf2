//! Docker config documents (pull secrets) and the kubelet's way of picking their entries for an
//! image (docs/behaviour.md §8).
//!
//! Two formats are read, told apart by shape: `.dockerconfigjson`
//! (`{"auths":{KEY:{...}}, ...}`, what `kubectl create secret docker-registry` and `docker login`
//! write) and the legacy `.dockercfg` (`{KEY:{"auth":..., "email":...}}`). An entry's `auth`
//! (base64 of `user:password`, padded or not) wins over `username`/`password`; an
//! `identitytoken` (an OAuth2 refresh token, as `docker login` stores for registries that issue
//! one) wins over both, as the docker client uses it when present. An entry with nothing usable
//! (a credential-helper placeholder) is skipped.
//!
//! Matching follows `k8s.io/kubernetes/pkg/credentialprovider/keyring.go`
//! (`BasicDockerKeyring.Add`/`Lookup`, `URLsMatch`): a key loses its `http://`/`https://` scheme
//! and a leading `/v1/` or `/v2/`; it matches an image when the ports are equal, the hosts have
//! as many labels and each key label matches as a glob (`*.example.com` matches `a.example.com`,
//! neither `example.com` nor `a.b.example.com`), and the key's path is a prefix of the image's.
//! Matches come most specific first. Where this differs from the kubelet it is stricter: the path
//! prefix is taken by whole segments (`quay.io/team` does not match `quay.io/team2/app`), specific
//! means longest first (then reverse lexical, the kubelet's only order), host names compare
//! case-insensitively, and the Docker Hub fallback (an entry for `https://index.docker.io/v1/`
//! used for `docker.io` images) applies only to images whose host is a Docker Hub name, never to
//! a bare dotless host, since regate's images always name the host credentials are sent to.

mod matching;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use matching::{Pattern, Target};

/// One credential. Debug never shows secrets.
#[derive(Clone)]
pub enum Credential {
    /// A user name and password, sent as HTTP Basic or in a token request.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: SecretString,
    },
    /// An OAuth2 refresh token (`identitytoken`), exchanged at a token realm.
    IdentityToken(SecretString),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credential::IdentityToken(_) => {
                f.debug_tuple("IdentityToken").field(&"<redacted>").finish()
            }
        }
    }
}

/// A keyring entry: the key as written in the file, and its credential.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The key as written in the document (`quay.io`, `https://index.docker.io/v1/`, ...).
    pub key: String,
    /// Its credential.
    pub credential: Credential,
}

/// Why a docker config document could not be read, parsed or updated. Messages never quote a
/// secret.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The document is not JSON at all.
    #[error(
        "not JSON ({reason}); a pull secret is a .dockerconfigjson document as `kubectl create secret docker-registry` writes it, e.g. {{\"auths\":{{\"registry.example.com\":{{\"auth\":\"<base64 of user:password>\"}}}}}}"
    )]
    Syntax {
        /// The JSON parser's complaint (position, no content).
        reason: String,
    },
    /// A part of the document has the wrong shape or an unusable value.
    #[error("{field}: {reason}")]
    Shape {
        /// Where in the document, e.g. `auths["quay.io"].auth`.
        field: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// [`upsert_basic`] was given something it cannot write.
    #[error("cannot store a login for {registry:?}: {reason}")]
    Login {
        /// The registry asked for.
        registry: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A file could not be read.
    #[error(
        "{path}: {source}; check `upstream.pull_secret` in the configuration, or create the file with `regate registry login --to {to}`",
        path = .path.display(),
        to = crate::shell::quote_path(.path)
    )]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// A file does not hold a usable docker config document.
    #[error(
        "{path}: {source}; fix the file (or rewrite the entry with `regate registry login --to {to}`)",
        path = .path.display(),
        to = crate::shell::quote_path(.path)
    )]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with its content.
        #[source]
        source: Box<KeyringError>,
    },
}

/// Entries of one or more docker config documents, most specific first.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    /// One list per chained document, each sorted most specific first.
    lists: Vec<Vec<Indexed>>,
}

/// An entry with its parsed key.
#[derive(Clone, Debug)]
struct Indexed {
    entry: Entry,
    pattern: Pattern,
}

impl Keyring {
    /// Parses a `.dockerconfigjson` or `.dockercfg` document (detected by shape).
    pub fn parse(json: &[u8]) -> Result<Keyring, KeyringError> {
        let document: Value = serde_json::from_slice(json).map_err(|e| KeyringError::Syntax {
            reason: e.to_string(),
        })?;
        let Value::Object(top) = document else {
            return Err(KeyringError::Shape {
                field: "the document".into(),
                reason: format!(
                    "expected an object ({{\"auths\":{{...}}}}), found {}",
                    kind(&document)
                ),
            });
        };
        let (entries, prefix) = match docker_format(&top) {
            Format::ConfigJson => match top.get("auths") {
                None | Some(Value::Null) => return Ok(Keyring::default()),
                Some(Value::Object(auths)) => (auths, "auths"),
                Some(other) => {
                    return Err(KeyringError::Shape {
                        field: "auths".into(),
                        reason: format!(
                            "expected an object of registry entries, found {}",
                            kind(other)
                        ),
                    });
                }
            },
            Format::Legacy => (&top, ""),
        };
        let mut list = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let field = format!("{prefix}[{}]", quoted(key));
            let pattern = Pattern::parse(key).map_err(|reason| KeyringError::Shape {
                field: field.clone(),
                reason: format!("{reason}; write the key as `host[:port][/path]`"),
            })?;
            if let Some(credential) = credential(&field, value)? {
                list.push(Indexed {
                    entry: Entry {
                        key: key.clone(),
                        credential,
                    },
                    pattern,
                });
            }
        }
        // Most specific first: longest key, then reverse lexical (the kubelet's order); equal
        // keys keep the document's order.
        list.sort_by(|a, b| {
            let (a, b) = (&a.pattern.normalized, &b.pattern.normalized);
            b.len().cmp(&a.len()).then_with(|| b.cmp(a))
        });
        let lists = if list.is_empty() { vec![] } else { vec![list] };
        Ok(Keyring { lists })
    }

    /// All entries of `self` then `other` (used to chain SA secrets, namespace secrets, global
    /// file); each list keeps its own order, nothing is re-sorted across lists.
    pub fn chain(mut self, other: Keyring) -> Keyring {
        self.lists.extend(other.lists);
        self
    }

    /// The entries matching `image` (`host[:port]/path/...`, no scheme; a tag or digest on the
    /// last segment is ignored), most specific first (per chained list). A list without a match
    /// lends its Docker Hub entry (key `https://index.docker.io/v1/` or `index.docker.io`) to an
    /// image on `docker.io`, `index.docker.io` or `registry-1.docker.io`, as the kubelet does.
    pub fn lookup(&self, image: &str) -> Vec<&Entry> {
        let Some(target) = Target::parse(image) else {
            return vec![];
        };
        let mut found = Vec::new();
        for list in &self.lists {
            let before = found.len();
            found.extend(
                list.iter()
                    .filter(|e| e.pattern.matches(&target))
                    .map(|e| &e.entry),
            );
            if found.len() == before && target.is_docker_hub() {
                found.extend(
                    list.iter()
                        .filter(|e| e.pattern.is_docker_hub_default())
                        .map(|e| &e.entry),
                );
            }
        }
        found
    }

    /// Whether no document had a usable entry.
    pub fn is_empty(&self) -> bool {
        self.lists.iter().all(Vec::is_empty)
    }

    /// How many usable entries all documents have.
    pub fn len(&self) -> usize {
        self.lists.iter().map(Vec::len).sum()
    }

    /// Every entry, list by list, most specific first within a list.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.lists.iter().flatten().map(|e| &e.entry)
    }
}

/// `json` (a `.dockerconfigjson` document, or empty for a new file) with the entry for `registry`
/// set to Basic `username`/`password` (as "auth" base64), every other entry and top-level key
/// kept as they were (top-level and entry keys come out in lexical order). An entry whose key
/// means the same registry (`https://quay.io/v1/` for `quay.io`) is replaced too, so the new
/// credential is the one used. For `regate registry login --to FILE`.
pub fn upsert_basic(
    json: &[u8],
    registry: &str,
    username: &str,
    password: &SecretString,
) -> Result<Vec<u8>, KeyringError> {
    let login_error = |reason: &str| KeyringError::Login {
        registry: registry.to_string(),
        reason: reason.to_string(),
    };
    let pattern = Pattern::parse(registry)
        .map_err(|reason| login_error(&format!("{reason}; name it as `host[:port][/path]`")))?;
    if username.is_empty() {
        return Err(login_error("the user name is empty; give one"));
    }
    if username.contains(':') {
        return Err(login_error(
            "the user name contains ':', which Basic authentication cannot carry; check the user name",
        ));
    }

    let mut top = if json.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        match serde_json::from_slice(json).map_err(|e| KeyringError::Syntax {
            reason: e.to_string(),
        })? {
            Value::Object(top) => top,
            other => {
                return Err(KeyringError::Shape {
                    field: "the document".into(),
                    reason: format!(
                        "expected an object ({{\"auths\":{{...}}}}), found {}",
                        kind(&other)
                    ),
                });
            }
        }
    };
    if docker_format(&top) == Format::Legacy {
        return Err(login_error(
            "the document is a legacy .dockercfg (entries at the top level); convert it to .dockerconfigjson by moving its entries under \"auths\"",
        ));
    }
    let auths = top
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if auths.is_null() {
        *auths = Value::Object(Map::new());
    }
    let Value::Object(auths) = auths else {
        return Err(KeyringError::Shape {
            field: "auths".into(),
            reason: format!(
                "expected an object of registry entries, found {}",
                kind(auths)
            ),
        });
    };
    auths.retain(|key, _| {
        Pattern::parse(key).map_or(true, |other| other.normalized != pattern.normalized)
    });
    let pair = secrecy::zeroize::Zeroizing::new(format!("{username}:{}", password.expose_secret()));
    let mut entry = Map::new();
    entry.insert(
        "auth".into(),
        Value::String(STANDARD.encode(pair.as_bytes())),
    );
    auths.insert(registry.to_string(), Value::Object(entry));

    let mut out =
        serde_json::to_vec_pretty(&Value::Object(top)).map_err(|e| KeyringError::Syntax {
            reason: e.to_string(),
        })?;
    out.push(b'\n');
    Ok(out)
}

/// The two document formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// `.dockerconfigjson` / `config.json`: entries under `auths`.
    ConfigJson,
    /// `.dockercfg`: entries at the top level.
    Legacy,
}

/// Top-level keys of a docker `config.json` besides `auths`: a document with one of them but no
/// `auths` is a config without entries, not a legacy `.dockercfg`.
const CONFIG_JSON_KEYS: &[&str] = &[
    "auths",
    "credsStore",
    "credHelpers",
    "HttpHeaders",
    "psFormat",
    "imagesFormat",
    "pluginsFormat",
    "statsFormat",
    "servicesFormat",
    "networksFormat",
    "secretFormat",
    "configFormat",
    "nodesFormat",
    "detachKeys",
    "proxies",
    "currentContext",
    "cliPluginsExtraDirs",
    "plugins",
    "aliases",
    "experimental",
    "stackOrchestrator",
    "kubernetes",
    "features",
];

/// Which format `top` is in: `.dockerconfigjson` if it has `auths` or another `config.json` key
/// (or nothing at all), else the legacy `.dockercfg`.
fn docker_format(top: &Map<String, Value>) -> Format {
    if top.is_empty() || top.keys().any(|k| CONFIG_JSON_KEYS.contains(&k.as_str())) {
        Format::ConfigJson
    } else {
        Format::Legacy
    }
}

/// The credential of the entry at `field`, `None` when it has nothing usable.
fn credential(field: &str, value: &Value) -> Result<Option<Credential>, KeyringError> {
    let Value::Object(entry) = value else {
        return Err(KeyringError::Shape {
            field: field.to_string(),
            reason: format!(
                "expected an object with \"auth\" (or \"username\" and \"password\", or \"identitytoken\"), found {}",
                kind(value)
            ),
        });
    };
    let text = |name: &str| -> Result<&str, KeyringError> {
        match entry.get(name) {
            None | Some(Value::Null) => Ok(""),
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(KeyringError::Shape {
                field: format!("{field}.{name}"),
                reason: format!("expected a string, found {}", kind(other)),
            }),
        }
    };
    let auth = text("auth")?;
    let username = text("username")?;
    let password = text("password")?;
    let identity_token = text("identitytoken")?;
    text("email")?;

    if !identity_token.is_empty() {
        return Ok(Some(Credential::IdentityToken(SecretString::from(
            identity_token,
        ))));
    }
    if !auth.trim().is_empty() {
        let (username, password) = decode_auth(auth).map_err(|reason| KeyringError::Shape {
            field: format!("{field}.auth"),
            reason,
        })?;
        if username.is_empty() && password.expose_secret().is_empty() {
            return Ok(None);
        }
        return Ok(Some(Credential::Basic { username, password }));
    }
    if username.is_empty() && password.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credential::Basic {
        username: username.to_string(),
        password: SecretString::from(password),
    }))
}

/// Base64 with or without padding, lenient on trailing bits like Go's decoder.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The user and password of an `auth` field: base64 of `user:password`, split at the first ':'
/// (the password may hold more). Errors never quote the value.
fn decode_auth(auth: &str) -> Result<(String, SecretString), String> {
    const FIX: &str = "write base64 of `user:password` (e.g. `printf %s user:password | base64`)";
    let compact: secrecy::zeroize::Zeroizing<String> = auth
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect::<String>()
        .into();
    let decoded = secrecy::zeroize::Zeroizing::new(
        LENIENT
            .decode(compact.as_bytes())
            .map_err(|_| format!("not base64; {FIX}"))?,
    );
    let text = std::str::from_utf8(&decoded).map_err(|_| format!("not UTF-8 text; {FIX}"))?;
    let (username, password) = text
        .split_once(':')
        .ok_or_else(|| format!("decodes to no `user:password` pair (no ':'); {FIX}"))?;
    Ok((username.to_string(), SecretString::from(password)))
}

/// A JSON string literal of `key`, for naming a field.
fn quoted(key: &str) -> String {
    Value::String(key.to_string()).to_string()
}

/// What kind of JSON value `value` is, for messages (never its content).
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether `image` matches `key` as the kubelet matches a credential key or a `matchImages`
/// entry (host globs per label, port, path prefix); `Err` when `key` is not a key.
pub fn key_matches_image(key: &str, image: &str) -> Result<bool, String> {
    let pattern = matching::Pattern::parse(key)?;
    Ok(matching::Target::parse(image).is_some_and(|target| pattern.matches(&target)))
}

#[cfg(test)]
mod tests;
