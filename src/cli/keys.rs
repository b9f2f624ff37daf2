//! `regate keys init|rotate|show`: the signing keys of token-server mode, where a stock registry
//! (`auth: token`) verifies the tokens regate issues. Each command prints the `auth:` section to
//! paste into the registry's config.yml, so the registry and regate agree on the key files.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use anyhow::Context;

use super::StateArg;
use crate::config::{Config, ServeArgs, default_state_dir, token_server_defaults as defaults};
use crate::token::keys::{self, KeyAlgorithm, Published};

/// `realm` when neither `--realm` nor `--config` gives it: `regate serve`'s default address.
const DEFAULT_REALM: &str = "http://127.0.0.1:8080/token";

/// `regate keys ...`.
#[derive(Debug, Subcommand)]
pub(super) enum Keys {
    /// Create the first signing key of a key directory and print the registry's auth section.
    #[command(after_help = "Examples:\n  \
        regate keys init --realm https://regate.example.com/token >> /etc/docker/registry/config.yml\n  \
        regate keys init --config /etc/regate/regate.yaml\n  \
        regate keys init --dir /etc/regate/keys --algorithm rs256")]
    Init(Init),
    /// Sign with a new key; the old key stays trusted until the next rotation. Without a gap:
    /// --stage first, restart the registry, then rotate.
    #[command(after_help = "Examples:\n  \
        regate keys rotate --stage && systemctl restart docker-registry   # publish the next key\n  \
        regate keys rotate                                                 # sign with it, no restart\n  \
        regate keys rotate --dir /etc/regate/keys && systemctl restart docker-registry   # in one step")]
    Rotate(Rotate),
    /// Print the registry's auth section for an existing key directory.
    #[command(after_help = "Example:\n  \
        regate keys show --dir /etc/regate/keys --realm https://regate.example.com/token")]
    Show(Show),
}

/// Where the key directory is.
#[derive(Debug, Args)]
struct DirArg {
    /// The key directory [default: <state>/keys]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    #[command(flatten)]
    state: StateArg,
}

impl DirArg {
    /// `--dir`, else the config's `token_server.keys`, else `<state>/keys`.
    fn dir(&self, registry: &Registry) -> PathBuf {
        self.dir
            .clone()
            .or_else(|| registry.keys.clone())
            .unwrap_or_else(|| {
                self.state
                    .state
                    .clone()
                    .unwrap_or_else(default_state_dir)
                    .join(defaults::KEYS_DIR)
            })
    }
}

/// What the registry's `auth.token` section says besides the key files.
#[derive(Debug, Args, Default)]
pub(super) struct RegistryArgs {
    /// regate's config file: its token_server section (and public_url or listen, for the realm)
    /// gives what the flags below leave unset, so the block matches what `regate serve` does
    #[arg(long, value_name = "FILE")]
    pub(super) config: Option<PathBuf>,
    /// The token endpoint the registry sends clients to (auth.token.realm)
    /// [default: http://127.0.0.1:8080/token]
    #[arg(long, value_name = "URL")]
    pub(super) realm: Option<String>,
    /// The service name clients ask tokens for (auth.token.service) [default: registry]
    #[arg(long, value_name = "NAME")]
    pub(super) service: Option<String>,
    /// The issuer the registry expects in tokens (auth.token.issuer) [default: regate]
    #[arg(long, value_name = "NAME")]
    pub(super) issuer: Option<String>,
}

/// The registry's settings, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Registry {
    pub(super) realm: String,
    pub(super) service: String,
    pub(super) issuer: String,
    /// The config's `token_server.keys`, when a config was read.
    pub(super) keys: Option<PathBuf>,
}

impl RegistryArgs {
    pub(super) fn resolve(&self, state: &StateArg) -> anyhow::Result<Registry> {
        let from_config = match &self.config {
            Some(path) => Some(from_config(path, state)?),
            None => None,
        };
        let from_config = from_config.as_ref();
        let pick = |flag: &Option<String>, config: Option<&String>, default: &str| {
            flag.clone()
                .or_else(|| config.cloned())
                .unwrap_or_else(|| default.to_string())
        };
        let registry = Registry {
            realm: pick(&self.realm, from_config.map(|c| &c.realm), DEFAULT_REALM),
            service: pick(
                &self.service,
                from_config.map(|c| &c.service),
                defaults::SERVICE,
            ),
            issuer: pick(
                &self.issuer,
                from_config.map(|c| &c.issuer),
                defaults::ISSUER,
            ),
            keys: from_config.and_then(|c| c.keys.clone()),
        };
        let realm = &registry.realm;
        let parsed = url::Url::parse(realm)
            .map_err(|e| anyhow::anyhow!("--realm {realm:?} is not a URL ({e}); e.g. --realm https://regate.example.com/token"))?;
        anyhow::ensure!(
            matches!(parsed.scheme(), "http" | "https") && !realm.chars().any(char::is_control),
            "--realm {realm:?} must be an http or https URL, e.g. https://regate.example.com/token"
        );
        for (flag, value) in [
            ("--service", &registry.service),
            ("--issuer", &registry.issuer),
        ] {
            anyhow::ensure!(
                !value.trim().is_empty() && !value.chars().any(char::is_control),
                "{flag} {value:?} must be a non-empty name on one line"
            );
        }
        Ok(registry)
    }
}

/// The registry settings `regate serve --config FILE` would use in token-server mode.
fn from_config(path: &std::path::Path, state: &StateArg) -> anyhow::Result<Registry> {
    let config = Config::load(&ServeArgs {
        config: Some(path.to_path_buf()),
        state: state.state.clone(),
        ..ServeArgs::default()
    })?;
    let ts = config.token_server.with_context(|| {
        format!(
            "{}: no token_server section; add one (config/regate.yaml shows every field) or \
             leave out --config",
            path.display()
        )
    })?;
    let origin = match &config.public_url {
        Some(origin) => origin.url(),
        None => {
            // The address regate listens on; a wildcard is not one clients can use.
            let mut addr = config.listen;
            anyhow::ensure!(
                addr.port() != 0,
                "{}: listen has port 0 (a free port picked at start-up), so the realm is not \
                 known yet; set public_url there or pass --realm",
                path.display()
            );
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}")
        }
    };
    Ok(Registry {
        realm: format!("{origin}{}", ts.realm_path),
        service: ts.service,
        issuer: ts.issuer,
        keys: Some(ts.keys),
    })
}

/// `regate keys init`.
#[derive(Debug, Args)]
pub(super) struct Init {
    #[command(flatten)]
    dir: DirArg,
    /// The key algorithm.
    #[arg(long, value_enum, default_value_t = KeyAlgorithm::Es256)]
    algorithm: KeyAlgorithm,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// `regate keys rotate`.
#[derive(Debug, Args)]
pub(super) struct Rotate {
    #[command(flatten)]
    dir: DirArg,
    /// The new key's algorithm [default: the current key's, or the staged key's]
    #[arg(long, value_enum)]
    algorithm: Option<KeyAlgorithm>,
    /// Only publish the next key beside the signing one; after the registry restarts and trusts
    /// it, `regate keys rotate` signs with it without any token being refused
    #[arg(long)]
    stage: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// `regate keys show`.
#[derive(Debug, Args)]
pub(super) struct Show {
    #[command(flatten)]
    dir: DirArg,
    #[command(flatten)]
    registry: RegistryArgs,
}

impl Keys {
    pub(super) fn run(self) -> anyhow::Result<()> {
        match self {
            Keys::Init(args) => {
                // Checked before the key is made, so a typo leaves no directory behind.
                let registry = args.registry.resolve(&args.dir.state)?;
                let published = keys::init(&args.dir.dir(&registry), args.algorithm)?;
                print!("{}", registry_config(&published, &registry));
            }
            Keys::Rotate(args) => {
                let registry = args.registry.resolve(&args.dir.state)?;
                let dir = args.dir.dir(&registry);
                let staged_before = keys::published(&dir)?.next;
                let published = if args.stage {
                    keys::stage(&dir, args.algorithm)?
                } else {
                    keys::rotate(&dir, args.algorithm)?
                };
                print!("{}", registry_config(&published, &registry));
                eprintln!(
                    "{}",
                    rotation_advice(args.stage, staged_before.is_some(), &published)
                );
            }
            Keys::Show(args) => {
                let registry = args.registry.resolve(&args.dir.state)?;
                let published = keys::published(&args.dir.dir(&registry))?;
                print!("{}", registry_config(&published, &registry));
            }
        }
        Ok(())
    }
}

/// What the operator must do after `keys rotate`, and what stays valid.
fn rotation_advice(stage: bool, was_staged: bool, published: &Published) -> String {
    let signing = &published.signing.libtrust_id;
    match (stage, was_staged) {
        (true, _) => format!(
            "staged key {next}: restart the registry so it trusts it, then run `regate keys \
             rotate` to sign with it (no token is refused in between); tokens of the retired \
             previous key stop working at that restart",
            next = published
                .next
                .as_ref()
                .map_or("?", |n| n.libtrust_id.as_str())
        ),
        (false, true) => format!(
            "now signing with the staged key {signing}, which the registry already trusts: no \
             restart needed; tokens of the previous key stay valid until they expire"
        ),
        (false, false) => format!(
            "now signing with {signing}: restart the registry now so it reads the new bundle \
             (until then it refuses tokens of the new key; `--stage` first avoids that gap); \
             tokens of the previous key stay valid until they expire"
        ),
    }
}

/// The `auth:` section of the registry's config.yml for `published` keys.
pub(super) fn registry_config(published: &Published, registry: &Registry) -> String {
    let bundle = published.bundle.display().to_string();
    let jwks = published.jwks.display().to_string();
    format!(
        "# docker-registry config.yml: regate at {realm} issues the tokens (key {kid})\n\
         auth:\n  \
           token:\n    \
             realm: {realm_value}\n    \
             service: {service}\n    \
             issuer: {issuer}\n    \
             rootcertbundle: {bundle}\n    \
             # distribution 3 may use instead: jwks: {jwks} (with token_server.trust: jwks in regate's config)\n",
        realm = registry.realm,
        kid = published.signing.libtrust_id,
        realm_value = yaml_scalar(&registry.realm),
        service = yaml_scalar(&registry.service),
        issuer = yaml_scalar(&registry.issuer),
        bundle = yaml_scalar(&bundle),
        jwks = yaml_scalar(&jwks),
    )
}

/// `value` as a YAML scalar: plain when it is unambiguous, else double-quoted (a JSON string is
/// a valid YAML double-quoted scalar), so a path with a space or a `#` still parses.
fn yaml_scalar(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:@%+=~,".contains(c))
        && value
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '_')
        && !value.ends_with(':')
        && !value.contains(": ")
        // Words YAML would read as something other than a string.
        && !matches!(
            value.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        )
        && value.parse::<f64>().is_err();
    if plain {
        value.to_string()
    } else {
        serde_json::to_string(value).unwrap_or_default()
    }
}
