//! The asymmetric keys of token-server mode: a registry configured with `auth: token` verifies
//! the JWTs regate issues itself, trusting the certificates of a key directory.
//!
//! A key directory holds `signing-key.pem` (PKCS#8, mode 0600), its self-signed
//! `signing-cert.pem`, the `previous-cert.pem` of the key before the last rotation, and what the
//! registry reads: `bundle.pem` (its `rootcertbundle`, distribution 2.8) and `jwks.json` (its
//! `jwks`, distribution 3). Every file is replaced atomically, and [`rotate`] publishes the new
//! key's certificate before it switches the signing key, so a server never signs with a key the
//! published files lack. [`LiveKey`] holds the key a server signs with and picks up a rotation
//! without a restart.
//!
//! Two keys are published at any time. The registry reads them only when it starts, so a
//! rotation without a gap takes two steps: [`stage`] publishes the next key (`next-key.pem`,
//! `next-cert.pem`) beside the signing one, the registry is restarted and trusts both, then
//! [`rotate`] signs with the staged key while the old one stays published as previous.

mod live;
mod material;

use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

pub use live::LiveKey;
use material::{Cert, Fresh, generate};
pub use material::{SigningKey, libtrust_key_id};

/// How often [`LiveKey::spawn_reloader`] looks at the key directory.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// Bits of a generated RSA key.
const RSA_BITS: usize = 2048;

/// Common name of the self-signed certificates.
const CERT_COMMON_NAME: &str = "regate token signer";

/// Lifetime of a certificate: the registry checks it, so it must outlive any sane rotation period.
const CERT_LIFETIME: time::Duration = time::Duration::days(3650);

/// How far a certificate's `notBefore` is back-dated, for a registry whose clock is behind.
const CERT_BACKDATE: time::Duration = time::Duration::hours(1);

/// Key algorithm.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum KeyAlgorithm {
    /// ECDSA with P-256 and SHA-256.
    #[default]
    Es256,
    /// RSA (2048 bits) PKCS#1 v1.5 with SHA-256.
    Rs256,
}

impl KeyAlgorithm {
    /// The JWT `alg` of the algorithm.
    pub fn jwt(self) -> Algorithm {
        match self {
            KeyAlgorithm::Es256 => Algorithm::ES256,
            KeyAlgorithm::Rs256 => Algorithm::RS256,
        }
    }

    /// The name used on the command line and in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::Es256 => "es256",
            KeyAlgorithm::Rs256 => "rs256",
        }
    }
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How the registry trusts regate's keys, i.e. what the JWT header carries.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
pub enum Trust {
    /// The registry's `rootcertbundle` (distribution 2.8 and 3): the header carries `x5c` and
    /// the libtrust `kid`.
    #[default]
    #[serde(rename = "rootcertbundle")]
    #[value(name = "rootcertbundle")]
    RootCertBundle,
    /// The registry's `jwks` (distribution 3 only): the header's `kid` is the JWK thumbprint.
    #[serde(rename = "jwks")]
    #[value(name = "jwks")]
    Jwks,
}

/// Why a key directory could not be read, written or used. Each message names the file and the
/// fix.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A file or the directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// `init` on a directory that already has a key.
    #[error(
        "{path} already exists; replace the key with `regate keys rotate --dir {dir}` (or remove the directory to start over)",
        path = .path.display(),
        dir = crate::shell::quote_path(.dir)
    )]
    Exists {
        /// The key directory.
        dir: PathBuf,
        /// Its signing key.
        path: PathBuf,
    },
    /// The directory has no signing key.
    #[error(
        "{dir} has no signing key ({path} is missing); create one with `regate keys init --dir {quoted}`",
        dir = .dir.display(),
        path = .path.display(),
        quoted = crate::shell::quote_path(.dir)
    )]
    Missing {
        /// The key directory.
        dir: PathBuf,
        /// The missing signing key.
        path: PathBuf,
    },
    /// A file holds no usable key or certificate.
    #[error(
        "{path}: {reason}; restore the file from a backup, or remove the key directory and run `regate keys init` (then restart the registry with the new bundle)",
        path = .path.display()
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No published certificate holds the signing key's public key.
    #[error(
        "neither {cert} nor {previous} is the certificate of {key}; run `regate keys rotate --dir {dir}` to publish a new key, then restart the registry",
        cert = .cert.display(),
        previous = .previous.display(),
        key = .key.display(),
        dir = crate::shell::quote_path(.dir)
    )]
    Mismatch {
        /// The key directory.
        dir: PathBuf,
        /// The signing key.
        key: PathBuf,
        /// The signing certificate.
        cert: PathBuf,
        /// The previous certificate.
        previous: PathBuf,
    },
    /// `rotate --algorithm` names another algorithm than the staged key's.
    #[error(
        "{dir} has a staged {staged} key, not {asked}; rotate without --algorithm to sign with it, or stage a {asked} key first with `regate keys rotate --stage --algorithm {asked}`",
        dir = .dir.display()
    )]
    StagedAlgorithm {
        /// The key directory.
        dir: PathBuf,
        /// The staged key's algorithm.
        staged: KeyAlgorithm,
        /// The algorithm asked for.
        asked: KeyAlgorithm,
    },
    /// Generating a key or certificate failed (should not happen).
    #[error("cannot generate a {algorithm} key: {reason}")]
    Generate {
        /// The algorithm asked for.
        algorithm: KeyAlgorithm,
        /// What failed.
        reason: String,
    },
    /// Signing a token failed (should not happen with a loaded key).
    #[error("cannot sign token: {0}")]
    Sign(String),
}

/// The files of a key directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyDir {
    dir: PathBuf,
}

impl KeyDir {
    /// The key directory at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        KeyDir { dir: path.into() }
    }

    /// The directory itself.
    pub fn dir(&self) -> PathBuf {
        self.dir.clone()
    }

    /// `signing-key.pem`: the private key tokens are signed with (PKCS#8 PEM, mode 0600).
    pub fn signing_key(&self) -> PathBuf {
        self.dir.join("signing-key.pem")
    }

    /// `signing-cert.pem`: the self-signed certificate of the signing key.
    pub fn signing_cert(&self) -> PathBuf {
        self.dir.join("signing-cert.pem")
    }

    /// `previous-cert.pem`: the certificate of the key before the last rotation.
    pub fn previous_cert(&self) -> PathBuf {
        self.dir.join("previous-cert.pem")
    }

    /// `next-key.pem`: a staged key, published but not yet signing (mode 0600).
    pub fn next_key(&self) -> PathBuf {
        self.dir.join("next-key.pem")
    }

    /// `next-cert.pem`: the staged key's certificate.
    pub fn next_cert(&self) -> PathBuf {
        self.dir.join("next-cert.pem")
    }

    /// `bundle.pem`: the signing certificate and the previous (or staged) one, the registry's
    /// `rootcertbundle`.
    pub fn bundle(&self) -> PathBuf {
        self.dir.join("bundle.pem")
    }

    /// `jwks.json`: the JWKs of both keys, the registry's `jwks` (distribution 3).
    pub fn jwks(&self) -> PathBuf {
        self.dir.join("jwks.json")
    }

    /// `.lock`: held while `init` or `rotate` writes; hidden, so the state fingerprint skips it.
    fn lock(&self) -> PathBuf {
        self.dir.join(".lock")
    }
}

/// A key's identifiers, for printing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key's algorithm.
    pub algorithm: KeyAlgorithm,
    /// The libtrust key ID distribution 2.8 matches a header `kid` against.
    pub libtrust_id: String,
    /// The RFC 7638 JWK thumbprint, the `kid` of its JWK.
    pub thumbprint: String,
}

/// What `init`/`rotate` published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// The key tokens are signed with.
    pub signing: KeyInfo,
    /// The key before the last rotation, still trusted.
    pub previous: Option<KeyInfo>,
    /// A staged key, trusted and signing after the next `rotate`.
    pub next: Option<KeyInfo>,
    /// Absolute path of `bundle.pem`.
    pub bundle: PathBuf,
    /// Absolute path of `jwks.json`.
    pub jwks: PathBuf,
}

/// Creates the directory's first key; [`KeyError::Exists`] if it already has one.
pub fn init(dir: &Path, algorithm: KeyAlgorithm) -> Result<Published, KeyError> {
    let keys = KeyDir::new(dir);
    create_dir(dir)?;
    let _lock = lock(&keys)?;
    if keys.signing_key().exists() {
        return Err(KeyError::Exists {
            dir: dir.to_path_buf(),
            path: keys.signing_key(),
        });
    }
    let fresh = generate(algorithm)?;
    // A directory left half-written by an earlier `init` has no key file: overwriting is safe.
    remove_if_exists(&keys.previous_cert())?;
    publish(&keys, &fresh.cert, None)?;
    write_atomic(&keys.signing_cert(), fresh.cert.pem.as_bytes(), 0o644)?;
    // Last: the key file's existence means the directory is complete.
    write_atomic(&keys.signing_key(), fresh.key_pem.as_bytes(), 0o600)?;
    sync_dir(dir)?;
    Ok(published_of(&keys, &fresh.cert, None, None))
}

/// Signs with a new key from now on; the old key's certificate stays published as previous, the
/// one before it is dropped. The new key is the staged one if [`stage`] made one (the registry
/// already trusts it), else a fresh key of `algorithm` (`None`: the current key's), which the
/// registry trusts only once it is restarted.
pub fn rotate(dir: &Path, algorithm: Option<KeyAlgorithm>) -> Result<Published, KeyError> {
    let keys = KeyDir::new(dir);
    let _lock = lock(&keys)?;
    let current = SigningKey::load(dir)?;
    let fresh = match staged(&keys, &current)? {
        Some(next) => {
            if let Some(asked) = algorithm.filter(|a| *a != next.cert.info.algorithm) {
                return Err(KeyError::StagedAlgorithm {
                    dir: dir.to_path_buf(),
                    staged: next.cert.info.algorithm,
                    asked,
                });
            }
            next
        }
        None => generate(algorithm.unwrap_or(current.info.algorithm))?,
    };
    // The order keeps every intermediate state loadable: the current key's certificate is
    // published as previous before the new key's certificate replaces it, and the key file,
    // which decides what is signed with, is replaced last.
    write_atomic(&keys.previous_cert(), current.cert.pem.as_bytes(), 0o644)?;
    publish(&keys, &fresh.cert, Some(&current.cert))?;
    write_atomic(&keys.signing_cert(), fresh.cert.pem.as_bytes(), 0o644)?;
    write_atomic(&keys.signing_key(), fresh.key_pem.as_bytes(), 0o600)?;
    remove_if_exists(&keys.next_key())?;
    remove_if_exists(&keys.next_cert())?;
    sync_dir(dir)?;
    Ok(published_of(&keys, &fresh.cert, Some(&current.cert), None))
}

/// Makes and publishes the next key without signing with it, replacing any staged one: the
/// bundle and JWKS then hold the signing and the staged key, and the previous key is dropped
/// (its tokens stop working when the registry is restarted to read them).
pub fn stage(dir: &Path, algorithm: Option<KeyAlgorithm>) -> Result<Published, KeyError> {
    let keys = KeyDir::new(dir);
    let _lock = lock(&keys)?;
    let current = SigningKey::load(dir)?;
    let fresh = generate(algorithm.unwrap_or(current.info.algorithm))?;
    write_atomic(&keys.next_key(), fresh.key_pem.as_bytes(), 0o600)?;
    write_atomic(&keys.next_cert(), fresh.cert.pem.as_bytes(), 0o644)?;
    publish(&keys, &current.cert, Some(&fresh.cert))?;
    remove_if_exists(&keys.previous_cert())?;
    sync_dir(dir)?;
    Ok(published_of(&keys, &current.cert, None, Some(&fresh.cert)))
}

/// The staged key, if the directory has one that is not already the signing key (a rotation
/// interrupted after switching keys leaves the staged files behind).
fn staged(keys: &KeyDir, current: &SigningKey) -> Result<Option<Fresh>, KeyError> {
    let (Some(key_pem), Some(cert)) = (
        read_optional(&keys.next_key())?,
        read_optional(&keys.next_cert())?,
    ) else {
        return Ok(None);
    };
    let cert = Cert::from_pem_file(&keys.next_cert(), &cert)?;
    if cert.spki == current.cert.spki {
        return Ok(None);
    }
    let pair = rcgen::KeyPair::from_pem(&key_pem).map_err(|e| KeyError::Invalid {
        path: keys.next_key(),
        reason: format!("not a PKCS#8 private key ({e})"),
    })?;
    if rcgen::PublicKeyData::subject_public_key_info(&pair) != cert.spki {
        return Err(KeyError::Invalid {
            path: keys.next_cert(),
            reason: format!("is not the certificate of {}", keys.next_key().display()),
        });
    }
    Ok(Some(Fresh { key_pem, cert }))
}

/// Reads what a directory publishes (for `keys show`).
pub fn published(dir: &Path) -> Result<Published, KeyError> {
    let keys = KeyDir::new(dir);
    let signing = SigningKey::load(dir)?;
    let previous = match read_optional(&keys.previous_cert())? {
        Some(text) => Some(Cert::from_pem_file(&keys.previous_cert(), &text)?),
        None => None,
    };
    let next = match read_optional(&keys.next_cert())? {
        Some(text) => Some(Cert::from_pem_file(&keys.next_cert(), &text)?),
        None => None,
    };
    // Right after a rotation interrupted before its key was written, the previous (or after
    // one interrupted before the staged files were removed, the staged) certificate is the
    // signing one: it is not a second key.
    let previous = previous.filter(|p| p.spki != signing.cert.spki);
    let next = next.filter(|n| n.spki != signing.cert.spki);
    Ok(published_of(
        &keys,
        &signing.cert,
        previous.as_ref(),
        next.as_ref(),
    ))
}

/// Writes `bundle.pem` and `jwks.json` for `signing` and the `other` trusted key (the previous
/// or the staged one).
fn publish(keys: &KeyDir, signing: &Cert, other: Option<&Cert>) -> Result<(), KeyError> {
    let certs: Vec<&Cert> = std::iter::once(signing).chain(other).collect();
    let bundle: String = certs.iter().map(|c| c.pem.as_str()).collect();
    write_atomic(&keys.bundle(), bundle.as_bytes(), 0o644)?;
    let jwks = serde_json::json!({
        "keys": certs.iter().map(|c| c.public.jwk()).collect::<Vec<_>>(),
    });
    let mut jwks = serde_json::to_string_pretty(&jwks).unwrap_or_default();
    jwks.push('\n');
    write_atomic(&keys.jwks(), jwks.as_bytes(), 0o644)
}

fn published_of(
    keys: &KeyDir,
    signing: &Cert,
    previous: Option<&Cert>,
    next: Option<&Cert>,
) -> Published {
    // The registry's configuration needs absolute paths: it runs from another directory.
    let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    Published {
        signing: signing.info.clone(),
        previous: previous.map(|c| c.info.clone()),
        next: next.map(|c| c.info.clone()),
        bundle: absolute(keys.bundle()),
        jwks: absolute(keys.jwks()),
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn create_dir(dir: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error(dir))
}

/// Takes the directory's lock, so two `init`s or `rotate`s never interleave their writes.
fn lock(keys: &KeyDir) -> Result<std::fs::File, KeyError> {
    let path = keys.lock();
    crate::fs::lock_exclusive(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => KeyError::Missing {
            dir: keys.dir(),
            path: keys.signing_key(),
        },
        _ => io_error(&path)(e),
    })
}

/// The text of `path`, `None` if it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, KeyError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path)(e)),
    }
}

fn remove_if_exists(path: &Path) -> Result<(), KeyError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(path)(e)),
        _ => Ok(()),
    }
}

/// Replaces `path` with `bytes` (mode `mode`) atomically: a reader sees the old or the new file,
/// never a part.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    crate::fs::write_atomic(path, bytes, mode).map_err(io_error(path))
}

/// Makes the renames durable.
fn sync_dir(dir: &Path) -> Result<(), KeyError> {
    crate::fs::sync_dir(dir).map_err(io_error(dir))
}

#[cfg(test)]
mod tests;
