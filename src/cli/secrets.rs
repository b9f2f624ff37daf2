//! `regate create secret docker-registry|generic`, as `kubectl create secret` makes registry
//! credentials, and `regate secrets link|unlink`, as `oc secrets` attaches them to a service
//! account. regate keeps only the two docker config Secret types
//! ([`SECRET_TYPES`]); the store checks them as `regate apply` does.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::{Args, Subcommand};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use super::StateArg;
use super::WriteArgs;
use crate::authority::embedded::LinkFor;
use crate::authority::embedded::Object;
use crate::suggest::did_you_mean;
use crate::upstream::secret::{SECRET_TYPES, check_secret};

/// The registry `kubectl create secret docker-registry` writes credentials for by default.
const DOCKER_HUB: &str = "https://index.docker.io/v1/";

/// `regate create secret ...`.
#[derive(Debug, Subcommand)]
pub(super) enum CreateSecret {
    /// Create a kubernetes.io/dockerconfigjson Secret with credentials for one registry, as
    /// `kubectl create secret docker-registry`.
    #[command(after_help = "Examples:\n  \
        regate create secret docker-registry upstream-pull -n project-a \\\n      \
        --docker-server=registry.example.com --docker-username=robot --docker-password-stdin \
        < password.txt\n  \
        regate create secret docker-registry upstream-pull -n project-a \\\n      \
        --docker-server=registry.example.com --docker-username=robot --docker-password=s3cret \
        --dry-run -o yaml")]
    DockerRegistry(DockerRegistryArgs),
    /// Create a Secret from files, as `kubectl create secret generic`; regate keeps only
    /// --type=kubernetes.io/dockerconfigjson (key .dockerconfigjson) and
    /// --type=kubernetes.io/dockercfg (key .dockercfg).
    #[command(after_help = "Examples:\n  \
        regate create secret generic upstream-pull -n project-a \\\n      \
        --from-file=.dockerconfigjson=$HOME/.docker/config.json \
        --type=kubernetes.io/dockerconfigjson\n  \
        regate create secret generic legacy -n project-a \\\n      \
        --from-file=.dockercfg=$HOME/.dockercfg --type=kubernetes.io/dockercfg")]
    Generic(GenericArgs),
}

#[derive(Debug, Args)]
pub(super) struct DockerRegistryArgs {
    /// Secret name.
    name: String,
    /// Its namespace.
    #[arg(short = 'n', long)]
    namespace: String,
    /// The registry the credentials are for.
    #[arg(long, value_name = "SERVER", default_value = DOCKER_HUB)]
    docker_server: String,
    /// User name for the registry.
    #[arg(long, value_name = "USER")]
    docker_username: String,
    /// Password for the registry (visible to other users in `ps`; prefer
    /// --docker-password-stdin).
    #[arg(
        long,
        value_name = "PASSWORD",
        required_unless_present = "docker_password_stdin",
        conflicts_with = "docker_password_stdin"
    )]
    docker_password: Option<String>,
    /// Read the password from stdin (one trailing newline is dropped).
    #[arg(long)]
    docker_password_stdin: bool,
    /// Email for the registry (kept in the config; registries ignore it).
    #[arg(long, value_name = "EMAIL")]
    docker_email: Option<String>,
    #[command(flatten)]
    write: WriteArgs,
    #[command(flatten)]
    state: StateArg,
}

#[derive(Debug, Args)]
pub(super) struct GenericArgs {
    /// Secret name.
    name: String,
    /// Its namespace.
    #[arg(short = 'n', long)]
    namespace: String,
    /// A file whose content becomes data KEY (the file's name when KEY= is left out)
    /// (repeatable).
    #[arg(long = "from-file", value_name = "[KEY=]PATH", required = true)]
    from_file: Vec<String>,
    /// The Secret type: kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg.
    #[arg(long = "type", value_name = "TYPE")]
    secret_type: Option<String>,
    #[command(flatten)]
    write: WriteArgs,
    #[command(flatten)]
    state: StateArg,
}

impl CreateSecret {
    pub(super) fn run(self) -> anyhow::Result<()> {
        let (secret, write, state) = match self {
            CreateSecret::DockerRegistry(args) => {
                let password = match (&args.docker_password, args.docker_password_stdin) {
                    (_, true) => read_password(std::io::stdin())?,
                    (Some(password), false) => password.clone(),
                    // clap requires one of them.
                    (None, false) => {
                        anyhow::bail!("give --docker-password-stdin or --docker-password")
                    }
                };
                let config = docker_config_json(
                    &args.docker_server,
                    &args.docker_username,
                    &password,
                    args.docker_email.as_deref().unwrap_or_default(),
                );
                let data = BTreeMap::from([(
                    ".dockerconfigjson".to_string(),
                    ByteString(config.into_bytes()),
                )]);
                let secret = new_secret(
                    &args.namespace,
                    &args.name,
                    "kubernetes.io/dockerconfigjson",
                    data,
                );
                (secret, args.write, args.state)
            }
            CreateSecret::Generic(args) => {
                let secret = generic_secret(&args)?;
                (secret, args.write, args.state)
            }
        };
        let name = secret.metadata.name.clone().unwrap_or_default();
        let secret = write.open(&state)?.create_secret_object(secret)?;
        write.report(&[Object::Secret(secret)], &format!("secret/{name} created"))
    }
}

/// A Secret of `secret_type` named `name` in `ns` holding `data`.
fn new_secret(
    ns: &str,
    name: &str,
    secret_type: &str,
    data: BTreeMap<String, ByteString>,
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(ns.to_string()),
            ..ObjectMeta::default()
        },
        type_: Some(secret_type.to_string()),
        data: Some(data),
        ..Secret::default()
    }
}

/// One registry's entry of a docker config, as kubectl's `DockerConfigEntry` (field order and
/// `omitempty` included).
#[derive(Serialize)]
struct DockerConfigEntry<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    username: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    password: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    email: &'a str,
    #[serde(skip_serializing_if = "String::is_empty")]
    auth: String,
}

#[derive(Serialize)]
struct DockerConfigJson<'a> {
    auths: BTreeMap<&'a str, DockerConfigEntry<'a>>,
}

/// `{"auths":{SERVER:{"username":..,"password":..,"email":..,"auth":base64(USER:PASS)}}}`, byte
/// for byte as kubectl writes it (Go's encoding/json: compact, `<`, `>`, `&`, U+2028 and U+2029
/// escaped).
pub(super) fn docker_config_json(server: &str, user: &str, password: &str, email: &str) -> String {
    let entry = DockerConfigEntry {
        username: user,
        password,
        email,
        auth: BASE64.encode(format!("{user}:{password}")),
    };
    let config = DockerConfigJson {
        auths: BTreeMap::from([(server, entry)]),
    };
    // Serialising strings into a string cannot fail.
    let json = serde_json::to_string(&config).unwrap_or_default();
    // These characters only occur inside JSON strings, where the escape means the same.
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// The password on `input`, without one trailing newline (as `docker login --password-stdin`).
fn read_password(mut input: impl Read) -> anyhow::Result<String> {
    let mut text = String::new();
    input
        .read_to_string(&mut text)
        .context("--docker-password-stdin: cannot read the password from stdin")?;
    let password = text.strip_suffix('\n').unwrap_or(&text);
    let password = password.strip_suffix('\r').unwrap_or(password);
    anyhow::ensure!(
        !password.is_empty(),
        "--docker-password-stdin: stdin held no password; pipe it in, e.g. \
         regate create secret docker-registry ... --docker-password-stdin < password.txt"
    );
    Ok(password.to_string())
}

/// The types regate keeps and their keys, for messages.
fn kept_types() -> String {
    SECRET_TYPES
        .map(|(t, key)| format!("--type={t} (key {key})"))
        .join(" or ")
}

/// The Secret `create secret generic` describes, checked as the store checks Secrets, with
/// errors naming the flag to fix.
fn generic_secret(args: &GenericArgs) -> anyhow::Result<Secret> {
    let Some(secret_type) = args.secret_type.as_deref() else {
        anyhow::bail!(
            "--type is missing: regate keeps only docker config Secrets: {}, e.g. \
             --type=kubernetes.io/dockerconfigjson --from-file=.dockerconfigjson=PATH",
            kept_types()
        );
    };
    let Some((_, key)) = SECRET_TYPES.iter().find(|(t, _)| *t == secret_type) else {
        anyhow::bail!(
            "--type={secret_type} is not kept by regate{}; it keeps only {}",
            did_you_mean(secret_type, SECRET_TYPES.iter().map(|(t, _)| *t)),
            kept_types()
        );
    };
    let mut data = BTreeMap::new();
    let mut sources: BTreeMap<String, PathBuf> = BTreeMap::new();
    for spec in &args.from_file {
        let (data_key, path) = from_file_spec(spec)?;
        let bytes = std::fs::read(&path)
            .with_context(|| format!("--from-file={spec}: cannot read {}", path.display()))?;
        if data.insert(data_key.clone(), ByteString(bytes)).is_some() {
            anyhow::bail!(
                "--from-file={spec}: key {data_key} is given twice; name each file's key \
                 with --from-file=KEY=PATH"
            );
        }
        sources.insert(data_key, path);
    }
    let Some(path) = sources.get(*key) else {
        let given = sources.keys().cloned().collect::<Vec<_>>().join(", ");
        let example = sources
            .values()
            .next()
            .map_or("PATH".to_string(), |p| p.display().to_string());
        anyhow::bail!(
            "--from-file: a {secret_type} Secret holds its JSON under key {key}, but the keys \
             given are {given}; name the key: --from-file={key}={example}"
        );
    };
    let secret = new_secret(&args.namespace, &args.name, secret_type, data);
    if let Err(reason) = check_secret(&secret) {
        anyhow::bail!("--from-file={key}={}: {reason}", path.display());
    }
    Ok(secret)
}

/// `KEY=PATH`, or `PATH` whose file name is the key, as kubectl reads `--from-file`.
fn from_file_spec(spec: &str) -> anyhow::Result<(String, PathBuf)> {
    let (key, path) = match spec.split_once('=') {
        Some((key, path)) => {
            anyhow::ensure!(
                !key.is_empty() && !path.is_empty(),
                "--from-file={spec}: give KEY=PATH or PATH"
            );
            (key.to_string(), PathBuf::from(path))
        }
        None => {
            let path = PathBuf::from(spec);
            let key = path
                .file_name()
                .and_then(|n| n.to_str())
                .with_context(|| {
                    format!("--from-file={spec}: no file name to use as the key; give KEY=PATH")
                })?
                .to_string();
            (key, path)
        }
    };
    anyhow::ensure!(
        is_data_key(&key),
        "--from-file={spec}: key {key:?} must be letters, digits, '-', '_' and '.'"
    );
    anyhow::ensure!(
        !Path::new(&path).is_dir(),
        "--from-file={spec}: {} is a directory; regate reads files only (--from-file=KEY=PATH)",
        path.display()
    );
    Ok((key, path))
}

/// A Secret data key as Kubernetes allows it: `[-._a-zA-Z0-9]+`.
fn is_data_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `regate secrets link|unlink`.
#[derive(Debug, Subcommand)]
pub(super) enum Secrets {
    /// Add Secrets to a service account, as `oc secrets link`: --for=pull to
    /// imagePullSecrets, --for=mount (the default) to secrets, --for=pull,mount to both.
    #[command(after_help = "Examples:\n  \
        regate secrets link default upstream-pull --for=pull -n project-a\n  \
        regate secrets link builder upstream-pull other-pull --for=pull,mount -n project-a")]
    Link {
        /// The service account.
        #[arg(value_name = "SERVICEACCOUNT")]
        service_account: String,
        /// The Secrets of the namespace to link (NAME or secret/NAME).
        #[arg(value_name = "SECRET", required = true)]
        secrets: Vec<String>,
        /// What the Secrets are for: pull (imagePullSecrets), mount (secrets), or both.
        #[arg(
            long = "for",
            value_name = "pull|mount",
            value_delimiter = ',',
            value_parser = ["pull", "mount"],
            default_value = "mount"
        )]
        for_: Vec<String>,
        /// Their namespace.
        #[arg(short = 'n', long)]
        namespace: String,
        #[command(flatten)]
        write: WriteArgs,
        #[command(flatten)]
        state: StateArg,
    },
    /// Remove Secrets from a service account's imagePullSecrets and secrets, as
    /// `oc secrets unlink`.
    #[command(after_help = "Example:\n  \
        regate secrets unlink default upstream-pull -n project-a")]
    Unlink {
        /// The service account.
        #[arg(value_name = "SERVICEACCOUNT")]
        service_account: String,
        /// The Secrets to unlink (NAME or secret/NAME).
        #[arg(value_name = "SECRET", required = true)]
        secrets: Vec<String>,
        /// Their namespace.
        #[arg(short = 'n', long)]
        namespace: String,
        #[command(flatten)]
        write: WriteArgs,
        #[command(flatten)]
        state: StateArg,
    },
}

/// `NAME` of `NAME`, `secret/NAME` or `secrets/NAME`, as oc takes them.
fn secret_name(arg: &str) -> String {
    arg.strip_prefix("secret/")
        .or_else(|| arg.strip_prefix("secrets/"))
        .unwrap_or(arg)
        .to_string()
}

impl Secrets {
    pub(super) fn run(self) -> anyhow::Result<()> {
        match self {
            Secrets::Link {
                service_account,
                secrets,
                for_,
                namespace,
                write,
                state,
            } => {
                let link = LinkFor {
                    pull: for_.iter().any(|f| f == "pull"),
                    mount: for_.iter().any(|f| f == "mount"),
                };
                let names: Vec<String> = secrets.iter().map(|s| secret_name(s)).collect();
                let (sa, changed) =
                    write
                        .open(&state)?
                        .link_secrets(&namespace, &service_account, &names, link)?;
                let action = if changed { "configured" } else { "unchanged" };
                write.report(
                    &[Object::ServiceAccount(sa)],
                    &format!("serviceaccount/{service_account} {action}"),
                )
            }
            Secrets::Unlink {
                service_account,
                secrets,
                namespace,
                write,
                state,
            } => {
                let names: Vec<String> = secrets.iter().map(|s| secret_name(s)).collect();
                let sa =
                    write
                        .open(&state)?
                        .unlink_secrets(&namespace, &service_account, &names)?;
                write.report(
                    &[Object::ServiceAccount(sa)],
                    &format!("serviceaccount/{service_account} configured"),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docker_config_is_the_one_kubectl_writes() {
        // kubectl create secret docker-registry s --docker-server=registry.example.com
        //   --docker-username=robot --docker-password=s3cret --docker-email=r@example.com
        assert_eq!(
            docker_config_json("registry.example.com", "robot", "s3cret", "r@example.com"),
            r#"{"auths":{"registry.example.com":{"username":"robot","password":"s3cret","email":"r@example.com","auth":"cm9ib3Q6czNjcmV0"}}}"#
        );
        assert_eq!(
            docker_config_json("r", "u", "a<b>&c", ""),
            r#"{"auths":{"r":{"username":"u","password":"a\u003cb\u003e\u0026c","auth":"dTphPGI+JmM="}}}"#,
            "no email key when none is given; HTML characters escaped as Go does"
        );
    }

    #[test]
    fn the_stdin_password_loses_one_trailing_newline() {
        assert_eq!(read_password(&b"pw\n"[..]).unwrap(), "pw");
        assert_eq!(read_password(&b"pw\r\n"[..]).unwrap(), "pw");
        assert_eq!(read_password(&b"p w\n\n"[..]).unwrap(), "p w\n");
        assert!(read_password(&b"\n"[..]).is_err());
    }

    #[test]
    fn from_file_takes_the_file_name_as_the_key() {
        let (key, path) = from_file_spec("/home/me/.dockercfg").unwrap();
        assert_eq!(
            (key.as_str(), path),
            (".dockercfg", PathBuf::from("/home/me/.dockercfg"))
        );
        let (key, path) = from_file_spec(".dockerconfigjson=config.json").unwrap();
        assert_eq!(
            (key.as_str(), path),
            (".dockerconfigjson", PathBuf::from("config.json"))
        );
        assert!(from_file_spec("=x").is_err());
        assert!(from_file_spec("a b=x").is_err());
    }

    #[test]
    fn secret_names_may_carry_the_kind() {
        assert_eq!(secret_name("secret/a"), "a");
        assert_eq!(secret_name("secrets/a"), "a");
        assert_eq!(secret_name("a"), "a");
    }
}
