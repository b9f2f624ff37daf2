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

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
        dir = .dir.display()
    )]
    Exists {
        /// The key directory.
        dir: PathBuf,
        /// Its signing key.
        path: PathBuf,
    },
    /// The directory has no signing key.
    #[error(
        "{dir} has no signing key ({path} is missing); create one with `regate keys init --dir {dir}`",
        dir = .dir.display(),
        path = .path.display()
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
        dir = .dir.display()
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

/// The key tokens are signed with, loaded once, reused for every token.
pub struct SigningKey {
    info: KeyInfo,
    cert: Cert,
    private: PrivateKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        f.debug_struct("SigningKey")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Loads `signing-key.pem` and its certificate (in `signing-cert.pem`, or in
    /// `previous-cert.pem` while a rotation is being written).
    pub fn load(dir: &Path) -> Result<SigningKey, KeyError> {
        let keys = KeyDir::new(dir);
        let key_path = keys.signing_key();
        // The key is read before the certificates: rotation writes the key last, so whatever
        // key is read here has its certificate on disk already.
        let Some(key_pem) = read_optional(&key_path)? else {
            return Err(KeyError::Missing {
                dir: dir.to_path_buf(),
                path: key_path,
            });
        };
        let invalid = |reason: String| KeyError::Invalid {
            path: key_path.clone(),
            reason,
        };
        let pair = rcgen::KeyPair::from_pem(&key_pem)
            .map_err(|e| invalid(format!("not a PKCS#8 private key ({e})")))?;
        let algorithm = if pair.algorithm() == &rcgen::PKCS_ECDSA_P256_SHA256 {
            KeyAlgorithm::Es256
        } else if pair.algorithm() == &rcgen::PKCS_RSA_SHA256 {
            KeyAlgorithm::Rs256
        } else {
            return Err(invalid(
                "the key is neither P-256 (es256) nor RSA (rs256)".into(),
            ));
        };
        let spki = rcgen::PublicKeyData::subject_public_key_info(&pair);
        let pkcs8 = pair.serialize_der();
        let private = PrivateKey::from_pkcs8(algorithm, &pkcs8).map_err(invalid)?;

        let mut certs = Vec::new();
        for path in [keys.signing_cert(), keys.previous_cert()] {
            if let Some(text) = read_optional(&path)? {
                certs.push(Cert::from_pem_file(&path, &text)?);
            }
        }
        let Some(cert) = certs.into_iter().find(|c| c.spki == spki) else {
            return Err(KeyError::Mismatch {
                dir: dir.to_path_buf(),
                key: key_path,
                cert: keys.signing_cert(),
                previous: keys.previous_cert(),
            });
        };
        let decoding = cert.public.decoding_key();
        Ok(SigningKey {
            info: cert.info.clone(),
            cert,
            private,
            decoding,
        })
    }

    /// The key's algorithm and identifiers.
    pub fn info(&self) -> &KeyInfo {
        &self.info
    }

    /// The JOSE header for `trust`: `alg`, and for [`Trust::RootCertBundle`] `x5c` (the
    /// certificate, standard base64 DER) with `kid` the libtrust ID; for [`Trust::Jwks`] `kid`
    /// the JWK thumbprint and no `x5c`.
    pub fn header(&self, trust: Trust) -> Header {
        let mut header = Header::new(self.jwt_algorithm());
        match trust {
            Trust::RootCertBundle => {
                header.kid = Some(self.info.libtrust_id.clone());
                header.x5c = Some(vec![STANDARD.encode(&self.cert.der)]);
            }
            Trust::Jwks => header.kid = Some(self.info.thumbprint.clone()),
        }
        header
    }

    /// A compact JWT of `claims` with the header for `trust`.
    pub fn sign<T: Serialize>(&self, trust: Trust, claims: &T) -> Result<String, KeyError> {
        // A JWS in compact form (RFC 7515 §7.1), as jsonwebtoken writes it, signed by ring.
        let failed = |e: serde_json::Error| KeyError::Sign(e.to_string());
        let header = serde_json::to_vec(&self.header(trust)).map_err(failed)?;
        let claims = serde_json::to_vec(claims).map_err(failed)?;
        let mut jws = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = self.private.sign(jws.as_bytes())?;
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(jws)
    }

    /// Verifying key of the public half (for tests and tools), built from the certificate.
    pub fn decoding_key(&self) -> DecodingKey {
        self.decoding.clone()
    }

    /// The JWT algorithm tokens are signed with.
    pub fn jwt_algorithm(&self) -> Algorithm {
        self.info.algorithm.jwt()
    }
}

/// A private key as ring signs with it. jsonwebtoken's pure-Rust ES256 took about 570 µs a
/// token in a release build here, ring takes a few tens: token issuance is bound by it.
enum PrivateKey {
    /// P-256; signatures are the fixed-size `r || s` JWS wants.
    Es256(ring::signature::EcdsaKeyPair),
    /// RSA with PKCS#1 v1.5 padding and SHA-256.
    Rs256(ring::signature::RsaKeyPair),
}

impl PrivateKey {
    /// The key of a DER PKCS#8 document; `Err` says why ring refuses it.
    fn from_pkcs8(algorithm: KeyAlgorithm, pkcs8: &[u8]) -> Result<PrivateKey, String> {
        use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RsaKeyPair};
        let rng = ring::rand::SystemRandom::new();
        match algorithm {
            KeyAlgorithm::Es256 => {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
                    .map(PrivateKey::Es256)
                    .map_err(|e| format!("not a usable P-256 key ({e})"))
            }
            KeyAlgorithm::Rs256 => RsaKeyPair::from_pkcs8(pkcs8)
                .map(PrivateKey::Rs256)
                .map_err(|e| format!("not a usable RSA key ({e})")),
        }
    }

    /// The JWS signature of `input`.
    fn sign(&self, input: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let failed = |e: ring::error::Unspecified| KeyError::Sign(e.to_string());
        match self {
            PrivateKey::Es256(key) => Ok(key.sign(&rng, input).map_err(failed)?.as_ref().to_vec()),
            PrivateKey::Rs256(key) => {
                let mut signature = vec![0; key.public().modulus_len()];
                key.sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &rng,
                    input,
                    &mut signature,
                )
                .map_err(failed)?;
                Ok(signature)
            }
        }
    }
}

/// libtrust key ID of a DER SubjectPublicKeyInfo: the first 240 bits of its SHA-256 in base32,
/// as 12 groups of 4 joined by `:`.
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    let digest = Sha256::digest(spki_der);
    let encoded = base32(&digest[..30]);
    let groups: Vec<&str> = (0..encoded.len())
        .step_by(4)
        .map(|i| &encoded[i..i + 4])
        .collect();
    groups.join(":")
}

/// RFC 4648 base32 (standard alphabet) of `bytes`, whose length is a multiple of 5, so there is
/// no padding. Hand-written: 30 bytes are all it ever encodes.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    debug_assert_eq!(bytes.len() % 5, 0);
    let mut out = String::with_capacity(bytes.len() / 5 * 8);
    for chunk in bytes.chunks(5) {
        let block = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        for i in (0..8).rev() {
            out.push(char::from(ALPHABET[((block >> (i * 5)) & 31) as usize]));
        }
    }
    out
}

/// The signing key of a directory, reloaded when its files change (a server picks up
/// `keys rotate` without a restart).
pub struct LiveKey {
    dir: PathBuf,
    key: ArcSwap<SigningKey>,
    /// The fingerprint of the files the key (or the last failed load) was read from.
    seen: Mutex<Fingerprint>,
    /// The last reload failure logged, so each distinct failure is logged once.
    last_error: crate::reload::LastError,
}

impl std::fmt::Debug for LiveKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveKey")
            .field("dir", &self.dir)
            .field("key", &self.current().info)
            .finish_non_exhaustive()
    }
}

impl LiveKey {
    /// Loads the directory's signing key; an error when it does not load, since there is no
    /// last good key yet.
    pub fn open(dir: &Path) -> Result<Arc<LiveKey>, KeyError> {
        let seen = fingerprint(dir);
        let key = SigningKey::load(dir)?;
        Ok(Arc::new(LiveKey {
            dir: dir.to_path_buf(),
            key: ArcSwap::from_pointee(key),
            seen: Mutex::new(seen),
            last_error: crate::reload::LastError::default(),
        }))
    }

    /// The key to sign with now.
    pub fn current(&self) -> Arc<SigningKey> {
        self.key.load_full()
    }

    /// Reloads if the files changed since the last look; `Ok(true)` when a new key is in force.
    /// On error the old key stays, and the same broken files are not re-read until they change.
    pub fn reload(&self) -> Result<bool, KeyError> {
        let now = fingerprint(&self.dir);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if *seen == now {
                return Ok(false);
            }
            // Taken before loading: a write racing the load changes the fingerprint again, so
            // the next look reloads.
            *seen = now;
        }
        let key = SigningKey::load(&self.dir)?;
        let changed = key.cert.spki != self.key.load().cert.spki;
        self.key.store(Arc::new(key));
        Ok(changed)
    }

    /// Polls every [`RELOAD_INTERVAL`] (a tokio task) and swaps in a changed key; files that do
    /// not load keep the old key and log file and reason once. The task stops when the last
    /// `Arc<LiveKey>` is dropped. Needs a tokio runtime.
    pub fn spawn_reloader(self: &Arc<Self>) {
        crate::reload::spawn(self, RELOAD_INTERVAL, "signing key", Self::poll);
    }

    /// One look by the reloader: reload, and log a failure once until it changes or is fixed.
    fn poll(&self) {
        match self.last_error.note(self.reload()) {
            crate::reload::Reloaded::Changed { .. } => {
                let info = &self.current().info;
                tracing::info!(
                    dir = %self.dir.display(),
                    kid = %info.libtrust_id,
                    algorithm = %info.algorithm,
                    "signing key reloaded"
                );
            }
            crate::reload::Reloaded::Failed(message) => tracing::warn!(
                "signing key not reloaded, still signing with the old key: {message}"
            ),
            crate::reload::Reloaded::Unchanged => {}
        }
    }
}

/// The stamps of the files a [`SigningKey`] is loaded from; atomic replacement makes a new
/// inode, so every write changes them.
type Fingerprint = Vec<Option<crate::fs::Stamp>>;

fn fingerprint(dir: &Path) -> Fingerprint {
    let keys = KeyDir::new(dir);
    [
        keys.signing_key(),
        keys.signing_cert(),
        keys.previous_cert(),
    ]
    .iter()
    .map(|path| crate::fs::stamp(path))
    .collect()
}

/// A public key, as JWKs spell it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum PublicKey {
    /// A P-256 point.
    Ec { x: Vec<u8>, y: Vec<u8> },
    /// An RSA modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

impl PublicKey {
    /// The key of a DER SubjectPublicKeyInfo, if it is P-256 or RSA.
    fn from_spki(spki: &[u8]) -> Option<PublicKey> {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        use rsa::pkcs8::DecodePublicKey;
        use rsa::traits::PublicKeyParts;
        if let Ok(key) = p256::PublicKey::from_public_key_der(spki) {
            let point = key.to_encoded_point(false);
            Some(PublicKey::Ec {
                x: point.x()?.to_vec(),
                y: point.y()?.to_vec(),
            })
        } else if let Ok(key) = rsa::RsaPublicKey::from_public_key_der(spki) {
            Some(PublicKey::Rsa {
                n: key.n().to_bytes_be(),
                e: key.e().to_bytes_be(),
            })
        } else {
            None
        }
    }

    fn algorithm(&self) -> KeyAlgorithm {
        match self {
            PublicKey::Ec { .. } => KeyAlgorithm::Es256,
            PublicKey::Rsa { .. } => KeyAlgorithm::Rs256,
        }
    }

    /// The RFC 7638 thumbprint: SHA-256 of the required members in lexicographic order, no
    /// whitespace, base64url without padding.
    fn thumbprint(&self) -> String {
        let canonical = match self {
            PublicKey::Ec { x, y } => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                URL_SAFE_NO_PAD.encode(x),
                URL_SAFE_NO_PAD.encode(y)
            ),
            PublicKey::Rsa { n, e } => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                URL_SAFE_NO_PAD.encode(e),
                URL_SAFE_NO_PAD.encode(n)
            ),
        };
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// The key's JWK, `kid` its thumbprint.
    fn jwk(&self) -> serde_json::Value {
        let kid = self.thumbprint();
        match self {
            PublicKey::Ec { x, y } => serde_json::json!({
                "kty": "EC",
                "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(x),
                "y": URL_SAFE_NO_PAD.encode(y),
                "alg": "ES256",
                "use": "sig",
                "kid": kid,
            }),
            PublicKey::Rsa { n, e } => serde_json::json!({
                "kty": "RSA",
                "n": URL_SAFE_NO_PAD.encode(n),
                "e": URL_SAFE_NO_PAD.encode(e),
                "alg": "RS256",
                "use": "sig",
                "kid": kid,
            }),
        }
    }

    fn decoding_key(&self) -> DecodingKey {
        match self {
            PublicKey::Ec { x, y } => {
                // jsonwebtoken verifies EC signatures with the SEC1 uncompressed point.
                DecodingKey::from_ec_der(&[&[0x04][..], x, y].concat())
            }
            PublicKey::Rsa { n, e } => DecodingKey::from_rsa_raw_components(n, e),
        }
    }
}

/// A certificate of a key directory.
#[derive(Clone, Debug)]
struct Cert {
    /// PEM, as written to the files.
    pem: String,
    der: Vec<u8>,
    /// Its DER SubjectPublicKeyInfo.
    spki: Vec<u8>,
    public: PublicKey,
    info: KeyInfo,
}

impl Cert {
    fn from_der(der: Vec<u8>) -> Result<Cert, String> {
        use x509_cert::der::{Decode, Encode};
        let spki = x509_cert::Certificate::from_der(&der)
            .and_then(|c| c.tbs_certificate.subject_public_key_info.to_der())
            .map_err(|e| format!("not an X.509 certificate ({e})"))?;
        let public =
            PublicKey::from_spki(&spki).ok_or("the certificate's key is neither P-256 nor RSA")?;
        let info = KeyInfo {
            algorithm: public.algorithm(),
            libtrust_id: libtrust_key_id(&spki),
            thumbprint: public.thumbprint(),
        };
        Ok(Cert {
            pem: pem::encode_config(
                &pem::Pem::new(CERTIFICATE, der.as_slice()),
                pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
            ),
            der,
            spki,
            public,
            info,
        })
    }

    /// The one certificate of the PEM file `path`.
    fn from_pem_file(path: &Path, text: &str) -> Result<Cert, KeyError> {
        let invalid = |reason: String| KeyError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let mut blocks = pem_certificates(text).map_err(invalid)?;
        if blocks.len() != 1 {
            return Err(invalid(format!(
                "holds {} certificates, expected 1",
                blocks.len()
            )));
        }
        Cert::from_der(blocks.remove(0)).map_err(invalid)
    }
}

/// A newly generated key and its certificate.
struct Fresh {
    key_pem: String,
    cert: Cert,
}

fn generate(algorithm: KeyAlgorithm) -> Result<Fresh, KeyError> {
    let failed = |reason: String| KeyError::Generate { algorithm, reason };
    let pair = match algorithm {
        KeyAlgorithm::Es256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| failed(e.to_string()))?,
        KeyAlgorithm::Rs256 => {
            // ring signs with RSA keys but does not generate them.
            use rsa::pkcs8::EncodePrivateKey;
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, RSA_BITS)
                .map_err(|e| failed(e.to_string()))?;
            let pkcs8 = key.to_pkcs8_der().map_err(|e| failed(e.to_string()))?;
            rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
                &pkcs8.as_bytes().into(),
                &rcgen::PKCS_RSA_SHA256,
            )
            .map_err(|e| failed(e.to_string()))?
        }
    };
    let now = time::OffsetDateTime::now_utc();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, CERT_COMMON_NAME);
    params.not_before = now - CERT_BACKDATE;
    params.not_after = now + CERT_LIFETIME;
    // A trust anchor of its own: Go's x509 and OpenSSL accept it as the root of a one-element
    // chain. No extended key usage means any, which is what distribution asks for.
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyCertSign,
    ];
    let cert = params
        .self_signed(&pair)
        .map_err(|e| failed(e.to_string()))?;
    let cert = Cert::from_der(cert.der().to_vec()).map_err(failed)?;
    Ok(Fresh {
        key_pem: pair.serialize_pem(),
        cert,
    })
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

/// The PEM label of a certificate.
const CERTIFICATE: &str = "CERTIFICATE";

/// The DER of every CERTIFICATE block of PEM `text`; other blocks and text outside blocks are
/// ignored.
fn pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let blocks = pem::parse_many(text).map_err(|e| format!("malformed PEM ({e})"))?;
    Ok(blocks
        .into_iter()
        .filter(|block| block.tag() == CERTIFICATE)
        .map(pem::Pem::into_contents)
        .collect())
}

#[cfg(test)]
mod tests;
