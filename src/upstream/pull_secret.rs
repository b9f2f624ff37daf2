//! The global pull-secret file (`upstream.pull_secret`), followed live (docs/behaviour.md §8).
//!
//! The file is polled like the other reloaded files ([`crate::reload`]): a change of its
//! modification time, size, inode or device — through symlinks, so the `..data` swap of a mounted
//! Kubernetes Secret counts — makes it re-read. A version that does not parse (or a file briefly
//! gone) keeps the previous keyring in force and is logged once with file and reason. Callers
//! take [`PullSecretFile::keyring`] once per request, so a reload never changes the credential
//! of a transfer already under way.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use super::keyring::{Keyring, KeyringError};

/// How often [`PullSecretFile::spawn_reloader`] looks at the file.
pub const RELOAD_INTERVAL: Duration = Duration::from_millis(250);

/// The global pull-secret file (`upstream.pull_secret`), reloaded when it changes: a file that
/// does not parse keeps the previous keyring and logs file and reason once.
pub struct PullSecretFile {
    path: PathBuf,
    keyring: ArcSwap<Keyring>,
    /// What was last looked at: the file's fingerprint, and the digest of the content the
    /// keyring in force was parsed from.
    seen: Mutex<Seen>,
    /// The last reload failure logged, so each distinct failure is logged once.
    last_error: crate::reload::LastError,
}

/// The state [`PullSecretFile::reload`] compares against.
struct Seen {
    fingerprint: Fingerprint,
    digest: [u8; 32],
}

/// (mtime seconds, mtime nanoseconds, size, inode, device) of the file, following symlinks;
/// `None` when it cannot be stat'ed.
type Fingerprint = Option<crate::fs::Stamp>;

impl std::fmt::Debug for PullSecretFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullSecretFile")
            .field("path", &self.path)
            .field("entries", &self.keyring.load().len())
            .finish_non_exhaustive()
    }
}

impl PullSecretFile {
    /// Loads the file; an error (naming the file and the fix) if it cannot be read or parsed at
    /// start-up, since there is no previous keyring to keep.
    pub fn open(path: &Path) -> Result<Arc<PullSecretFile>, KeyringError> {
        let fingerprint = fingerprint(path);
        let (keyring, digest) = load(path)?;
        Ok(Arc::new(PullSecretFile {
            path: path.to_path_buf(),
            keyring: ArcSwap::from_pointee(keyring),
            seen: Mutex::new(Seen {
                fingerprint,
                digest,
            }),
            last_error: crate::reload::LastError::default(),
        }))
    }

    /// The file this follows.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The keyring in force now. Take it once per request.
    pub fn keyring(&self) -> Arc<Keyring> {
        self.keyring.load_full()
    }

    /// Re-reads if the file changed since the last look; `Ok(true)` when a new keyring is in
    /// force (`Ok(false)` also when the file was rewritten with the same content). On error the
    /// previous keyring stays, and the same broken file is not re-read until it changes.
    pub fn reload(&self) -> Result<bool, KeyringError> {
        let now = fingerprint(&self.path);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.fingerprint == now {
                return Ok(false);
            }
            // Taken before reading: a write racing the read changes the fingerprint again, so
            // the next look re-reads.
            seen.fingerprint = now;
        }
        let (keyring, digest) = load(&self.path)?;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.digest == digest {
            return Ok(false);
        }
        seen.digest = digest;
        self.keyring.store(Arc::new(keyring));
        Ok(true)
    }

    /// Polls every [`RELOAD_INTERVAL`] via [`crate::reload::spawn`] and swaps in a changed
    /// keyring; a file that does not load keeps the old one and is logged once. The task stops
    /// when the last `Arc<PullSecretFile>` is dropped. Needs a tokio runtime.
    pub fn spawn_reloader(self: &Arc<Self>) {
        crate::reload::spawn(self, RELOAD_INTERVAL, "pull-secret file", Self::poll);
    }

    /// One look by the reloader: reload, and log a failure once until it changes or is fixed.
    fn poll(&self) {
        match self.last_error.note(self.reload()) {
            crate::reload::Reloaded::Changed { .. } => tracing::info!(
                file = %self.path.display(),
                entries = self.keyring.load().len(),
                "pull-secret file reloaded"
            ),
            crate::reload::Reloaded::Failed(message) => tracing::warn!(
                "pull-secret file not reloaded, still using the previous credentials: {message}"
            ),
            crate::reload::Reloaded::Unchanged => {}
        }
    }
}

/// Reads and parses the file; errors name it.
fn load(path: &Path) -> Result<(Keyring, [u8; 32]), KeyringError> {
    let bytes = secrecy::zeroize::Zeroizing::new(std::fs::read(path).map_err(|source| {
        KeyringError::Io {
            path: path.to_path_buf(),
            source,
        }
    })?);
    let keyring = Keyring::parse(&bytes).map_err(|source| KeyringError::File {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    Ok((keyring, Sha256::digest(&*bytes).into()))
}

fn fingerprint(path: &Path) -> Fingerprint {
    // Follows symlinks: a Secret mount's swap of `..data` changes the target's inode.
    crate::fs::stamp(path)
}

#[cfg(test)]
mod tests;
