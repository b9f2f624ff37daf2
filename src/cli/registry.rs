//! `regate registry login`, as `oc registry login`: puts a registry's credentials into a pull
//! secret file (`.dockerconfigjson`), such as the global pull secret `regate serve` reads to
//! authenticate to secured upstream registries (docs/behaviour.md §8).
//!
//! The credentials are checked against the registry first (`--skip-check` leaves that out);
//! the file is only written when they work, atomically and readable by its owner only.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use secrecy::SecretString;

use crate::upstream::auth::{AuthError, check_credential};
use crate::upstream::keyring::{Credential, upsert_basic};

/// How long the check may wait for each answer of the registry or its token realm.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// `regate registry ...`.
#[derive(Debug, Subcommand)]
pub(super) enum Registry {
    /// Add or replace a registry's credentials in a pull secret file, as `oc registry login`;
    /// other entries stay as they are.
    #[command(after_help = "Examples:\n  \
        regate registry login --registry=quay.io --auth-basic-stdin --to=pull-secret.json \
        < credentials.txt   # one line: USER:PASS\n  \
        regate registry login --registry=registry.example.com/team/app \
        --auth-basic=robot:s3cret --to=/etc/regate/pull-secret.json\n  \
        regate registry login --registry=127.0.0.1:5000 --auth-basic=dev:dev --to=ps.json \
        --skip-check")]
    Login(Login),
}

/// `regate registry login`.
#[derive(Debug, Args)]
pub(super) struct Login {
    /// The registry: host[:port], or host[:port]/namespace/repository for credentials that
    /// apply to that repository only.
    #[arg(long, value_name = "REGISTRY")]
    registry: String,
    /// USER:PASS, split at the first ':' (visible to other users in `ps`; prefer
    /// --auth-basic-stdin).
    #[arg(
        long,
        value_name = "USER:PASS",
        value_parser = secret_arg,
        required_unless_present = "auth_basic_stdin",
        conflicts_with = "auth_basic_stdin"
    )]
    auth_basic: Option<SecretString>,
    /// Read USER:PASS from the first line of stdin.
    #[arg(long)]
    auth_basic_stdin: bool,
    /// The pull secret file to update (created if missing, written with mode 0600).
    #[arg(long, value_name = "FILE")]
    to: PathBuf,
    /// Write the credentials without first checking them against the registry.
    #[arg(long)]
    skip_check: bool,
}

/// Keeps a secret argument out of `Debug` output (clap never fails on it, so never echoes it).
fn secret_arg(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value))
}

impl Registry {
    pub(super) fn run(self) -> anyhow::Result<()> {
        match self {
            Registry::Login(args) => login(args),
        }
    }
}

fn login(args: Login) -> anyhow::Result<()> {
    let pair = match args.auth_basic {
        Some(pair) => pair,
        None => read_first_line(std::io::stdin().lock())?,
    };
    let (username, password) = split_basic(&pair)?;
    let file = &args.to;
    let existing = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    // Before the check, so a broken file is reported without asking the registry anything.
    let updated = upsert_basic(&existing, &args.registry, &username, &password)
        .with_context(|| format!("cannot update {}", file.display()))?;
    if !args.skip_check {
        let credential = Credential::Basic { username, password };
        check(&args.registry, &credential, file)?;
    }
    write_private(file, &updated)?;
    println!(
        "Saved credentials for {} into {}",
        args.registry,
        file.display()
    );
    Ok(())
}

/// Checks `credential` against `registry` on a small runtime of its own; the error says why
/// nothing is written to `file`.
fn check(registry: &str, credential: &Credential, file: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let Err(error) = runtime.block_on(check_credential(registry, credential, CHECK_TIMEOUT)) else {
        return Ok(());
    };
    let file = file.display();
    Err(match error {
        AuthError::Rejected { registry, reason } => anyhow::anyhow!(
            "credentials rejected by {registry}: {reason}; check USER:PASS (nothing was written \
             to {file}; --skip-check writes the credentials without checking them)"
        ),
        other => anyhow::anyhow!(
            "cannot check the credentials with {registry}: {other}; nothing was written to \
             {file}; pass --skip-check to write them without checking"
        ),
    })
}

/// `USER:PASS` split at the first `:`; both parts must be non-empty. The value is never
/// quoted in an error: it may be a password.
fn split_basic(pair: &SecretString) -> anyhow::Result<(String, SecretString)> {
    use secrecy::ExposeSecret;
    let Some((username, password)) = pair.expose_secret().split_once(':') else {
        anyhow::bail!("the credentials must be USER:PASS, with a ':' after the user name");
    };
    anyhow::ensure!(
        !username.is_empty(),
        "the credentials must be USER:PASS; the user name before the ':' is empty"
    );
    anyhow::ensure!(
        !password.is_empty(),
        "the credentials must be USER:PASS; the password after the ':' is empty"
    );
    Ok((username.to_string(), SecretString::from(password)))
}

/// The first line of `input`, without its line ending, for --auth-basic-stdin.
fn read_first_line(mut input: impl BufRead) -> anyhow::Result<SecretString> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .context("cannot read USER:PASS from stdin (--auth-basic-stdin)")?;
    let line = SecretString::from(line);
    use secrecy::ExposeSecret;
    let text = line.expose_secret();
    let text = text.strip_suffix('\n').unwrap_or(text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    anyhow::ensure!(
        !text.is_empty(),
        "stdin is empty; give USER:PASS on its first line (--auth-basic-stdin)"
    );
    Ok(SecretString::from(text))
}

/// Replaces `file` with `content` atomically, readable and writable by its owner only.
fn write_private(file: &Path, content: &[u8]) -> anyhow::Result<()> {
    crate::fs::write_atomic(file, content, 0o600)
        .with_context(|| format!("cannot write {}", file.display()))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use std::io::Write;

    fn split(pair: &str) -> anyhow::Result<(String, String)> {
        split_basic(&SecretString::from(pair)).map(|(u, p)| (u, p.expose_secret().to_string()))
    }

    #[test]
    fn credentials_split_at_the_first_colon() {
        assert_eq!(
            split("robot:s3cret").unwrap(),
            ("robot".into(), "s3cret".into())
        );
        assert_eq!(
            split("robot:a:b:").unwrap(),
            ("robot".into(), "a:b:".into())
        );
        for bad in ["robot", ":s3cret", "robot:", ""] {
            let err = split(bad).unwrap_err().to_string();
            assert!(err.contains("USER:PASS"), "{bad}: {err}");
            if bad.len() > 1 {
                assert!(!err.contains(bad), "{bad} echoed: {err}");
            }
        }
    }

    #[test]
    fn the_flags_parse_and_the_password_stays_hidden() {
        use clap::Parser;
        let parse = |args: &[&str]| {
            crate::cli::Cli::try_parse_from(
                ["regate", "registry", "login"].iter().chain(args).copied(),
            )
        };
        let cli = parse(&[
            "--registry=quay.io/ns",
            "--auth-basic=robot:s3cret",
            "--to=f",
        ])
        .expect("parses");
        assert!(!format!("{cli:?}").contains("s3cret"), "{cli:?}");
        parse(&[
            "--registry=quay.io",
            "--auth-basic-stdin",
            "--to=f",
            "--skip-check",
        ])
        .expect("parses");
        for bad in [
            &["--registry=q", "--to=f"][..],
            &[
                "--registry=q",
                "--auth-basic=a:b",
                "--auth-basic-stdin",
                "--to=f",
            ],
            &["--registry=q", "--auth-basic=a:b"],
            &["--auth-basic=a:b", "--to=f"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn stdin_gives_its_first_line() {
        let read =
            |input: &str| read_first_line(input.as_bytes()).map(|s| s.expose_secret().to_string());
        assert_eq!(read("u:p\n").unwrap(), "u:p");
        assert_eq!(read("u:p\r\nmore\n").unwrap(), "u:p");
        assert_eq!(read("u: p \n").unwrap(), "u: p ");
        assert_eq!(read("u:p").unwrap(), "u:p");
        assert!(read("").is_err());
        assert!(read("\n").is_err());
    }

    #[test]
    fn files_are_replaced_privately() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ps.json");
        std::fs::write(&file, "old").unwrap();
        write_private(&file, b"{}\n").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"{}\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn login_writes_the_entry_and_keeps_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ps.json");
        std::fs::write(
            &file,
            r#"{"auths":{"other.example":{"auth":"eDp5"}},"credsStore":"desktop"}"#,
        )
        .unwrap();
        login(Login {
            registry: "registry.example.com/team/app".into(),
            auth_basic: Some(SecretString::from("robot:a:b")),
            auth_basic_stdin: false,
            to: file.clone(),
            skip_check: true,
        })
        .unwrap();
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(written["credsStore"], "desktop");
        assert_eq!(written["auths"]["other.example"]["auth"], "eDp5");
        let keyring =
            crate::upstream::keyring::Keyring::parse(&std::fs::read(&file).unwrap()).unwrap();
        let found = keyring.lookup("registry.example.com/team/app");
        let [entry] = found.as_slice() else {
            panic!("{found:?}");
        };
        let Credential::Basic { username, password } = &entry.credential else {
            panic!("not basic");
        };
        assert_eq!(username, "robot");
        assert_eq!(password.expose_secret(), "a:b");
    }

    /// A registry on loopback refusing every request with a Basic challenge; its `host:port`.
    fn refusing_registry() -> String {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let mut buf = [0; 4096];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"r\"\r\n\
                      Content-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        host
    }

    #[test]
    fn rejected_credentials_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ps.json");
        let registry = refusing_registry();
        let err = login(Login {
            registry: format!("{registry}/ns/app"),
            auth_basic: Some(SecretString::from("robot:s3cret")),
            auth_basic_stdin: false,
            to: file.clone(),
            skip_check: false,
        })
        .unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains(&format!("credentials rejected by {registry}")),
            "{message}"
        );
        assert!(message.contains("--skip-check"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
        assert!(!file.exists());
    }

    #[test]
    fn a_failed_check_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ps.json");
        // A port nothing listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let registry = listener.local_addr().unwrap().to_string();
        drop(listener);
        let err = login(Login {
            registry: registry.clone(),
            auth_basic: Some(SecretString::from("robot:s3cret")),
            auth_basic_stdin: false,
            to: file.clone(),
            skip_check: false,
        })
        .unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("--skip-check"), "{message}");
        assert!(message.contains(&registry), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
        assert!(!file.exists());
    }
}
