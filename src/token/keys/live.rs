//! The signing key a server uses, reloaded when the key directory changes, so `keys rotate`
//! takes effect without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::material::SigningKey;
use super::{KeyDir, KeyError, RELOAD_INTERVAL};

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
