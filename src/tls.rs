//! Serving over TLS: a PEM certificate chain and key, offered with ALPN `h2` and `http/1.1`, and
//! reloaded when the files change (cert-manager renewing a mounted Secret) without dropping a
//! connection: a handshake takes whatever certificate is in force when it starts, and
//! connections already open keep theirs.
//!
//! A pair of files that does not load (a key not yet written beside its new certificate, a key
//! that does not match) leaves the last good pair in force and is logged once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::reload::{LastError, Reloaded};

/// How often the certificate files are looked at.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// ALPN protocol ids, most wanted first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Where the certificate chain and key are (`tls.cert_file`, `tls.key_file`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server's certificate first, then its intermediates.
    pub cert_file: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// Why a certificate or key cannot be used; each names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds no certificate.
    #[error(
        "{path}: no PEM certificate (`-----BEGIN CERTIFICATE-----`) found; tls.cert_file must be the PEM chain, server certificate first"
    )]
    NoCertificate {
        /// The file.
        path: String,
    },
    /// The file holds no usable private key.
    #[error(
        "{path}: no PEM private key found ({reason}); tls.key_file must be a PEM key (PKCS#8, RSA or EC)"
    )]
    NoKey {
        /// The file.
        path: String,
        /// What the parser said.
        reason: String,
    },
    /// The key is of a kind rustls cannot sign with, or does not match the certificate.
    #[error("{key} does not go with {cert}: {reason}; give the key the certificate was issued for")]
    Mismatch {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
        /// rustls's reason.
        reason: String,
    },
}

/// The certificate in force, swapped when the files change.
pub struct LiveCert {
    files: TlsFiles,
    current: ArcSwap<CertifiedKey>,
    /// Stamps of the two files the current pair was loaded from.
    seen: Mutex<Stamps>,
    last_error: LastError,
}

type Stamps = [Option<crate::fs::Stamp>; 2];

impl std::fmt::Debug for LiveCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCert")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl LiveCert {
    /// Loads the pair; an error when it does not load, since there is no last good pair yet.
    pub fn open(files: TlsFiles) -> Result<Arc<LiveCert>, TlsError> {
        let seen = stamps(&files);
        let key = load(&files)?;
        Ok(Arc::new(LiveCert {
            files,
            current: ArcSwap::from_pointee(key),
            seen: Mutex::new(seen),
            last_error: LastError::default(),
        }))
    }

    /// Looks at the files every [`RELOAD_INTERVAL`] and swaps in a changed pair. Needs a tokio
    /// runtime; stops when the last `Arc` is dropped.
    pub fn spawn_reloader(self: &Arc<Self>) {
        crate::reload::spawn(self, RELOAD_INTERVAL, "TLS certificate", |live| {
            live.poll();
        });
    }

    /// Reloads when either file changed since the pair in force was read.
    pub fn poll(&self) -> Reloaded {
        let now = stamps(&self.files);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if *seen == now {
            return Reloaded::Unchanged;
        }
        let result = load(&self.files).map(|key| {
            self.current.store(Arc::new(key));
            *seen = now;
            true
        });
        let outcome = self.last_error.note(result);
        match &outcome {
            Reloaded::Changed { .. } => tracing::info!(
                cert = %self.files.cert_file.display(),
                "TLS certificate reloaded; new connections get it"
            ),
            Reloaded::Failed(error) => tracing::warn!(
                "TLS certificate not reloaded, the previous one stays in force: {error}"
            ),
            Reloaded::Unchanged => {}
        }
        outcome
    }

    /// The server configuration: this certificate (live), ALPN `h2` then `http/1.1`.
    pub fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // The ring provider supports the safe default versions, so this cannot fail.
        let builder = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|_| unreachable!("ring supports TLS 1.2 and 1.3"));
        let mut config = builder
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

impl ResolvesServerCert for LiveCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn stamps(files: &TlsFiles) -> Stamps {
    [
        crate::fs::stamp(&files.cert_file),
        crate::fs::stamp(&files.key_file),
    ]
}

/// Reads and checks the pair.
fn load(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let chain = read_chain(&files.cert_file)?;
    let key_path = files.key_file.display().to_string();
    let pem = read(&files.key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::NoKey {
        path: key_path.clone(),
        reason: e.to_string(),
    })?;
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    CertifiedKey::from_der(chain, key, &provider).map_err(|e| TlsError::Mismatch {
        cert: files.cert_file.display().to_string(),
        key: key_path,
        reason: e.to_string(),
    })
}

/// The certificates of a PEM file, in order; an error when there is none.
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let chain: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.display().to_string(),
        });
    }
    Ok(chain)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests;
