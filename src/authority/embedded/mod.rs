//! The embedded authority: regate's own RBAC store, a directory of Kubernetes-style YAML objects
//! (see [`Store`] for the layout) that the CLI changes (`ops.rs`) while the server runs.
//!
//! [`Embedded`] answers the gateway from an in-memory [`Snapshot`] held in an [`ArcSwap`], so a
//! request never touches the disk. A background task ([`Embedded::spawn_reloader`]) polls the
//! directory's [`Fingerprint`] and swaps in a new snapshot when something changed; a directory
//! that does not load (a hand edit gone wrong) keeps the last good snapshot in force.
//!
//! Polling alone would leave a window after a CLI change (a deleted namespace's tokens working
//! for a moment, a new service account's token refused). So every authentication also looks at
//! the store's change marker (one `stat`, see `store::WriteLock`) and reloads first when a
//! writer has been there; and a token whose subject the snapshot lacks is checked against the
//! directory itself before it is refused (docs/behaviour.md §10).

mod apply;
mod bootstrap;
mod list;
mod marker;
mod object;
mod ops;
mod snapshot;
mod store;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

// The facade: the CLI and the sibling authorities use the store through these names only.
pub use apply::{
    Action, ApplyError, Document, Outcome, expand_sources, parse_manifests, read_source,
};
pub use bootstrap::{
    AUTH_DELEGATOR, AUTHENTICATION_GROUP, AUTHORIZATION_GROUP, IMAGE_BUILDER, IMAGE_PRUNER,
    IMAGE_PULLER, IMAGE_PUSHER, NamespaceObjects, PULL_SECRET_READER, cluster_role_ref,
    cluster_roles, namespace_objects,
};
pub use list::{Objects, list};
pub use object::{Kind, Object, UnknownKind};
pub use ops::{
    BindingError, FieldError, LinkFor, Removal, SecretError, SubjectRef, check_role_binding,
    resource_version, role_binding_with, role_bindings_without,
};
pub use snapshot::{Fingerprint, Snapshot, StoredUser, fingerprint, load};
pub use store::{Layout, Store, StoreError, User};

use super::{AfterExpiry, Authn, Authority, AuthorityError};
use crate::identity::UserInfo;
use crate::policy::{Attributes, Decision};
use crate::token::{Signer, TokenError};
use crate::upstream::keyring::Keyring;
pub use crate::upstream::secret::PullSecret;

/// How often the reloader looks for changes. A change is in force within this plus the time a
/// load takes, well under the one second docs/behaviour.md promises.
pub const RELOAD_INTERVAL: Duration = Duration::from_millis(250);

/// The embedded authority over one state directory.
pub struct Embedded {
    dir: PathBuf,
    /// The change marker, looked at before every review.
    marker: marker::Marker,
    /// The marker's change count the snapshot in force has caught up with.
    caught_up: AtomicU64,
    snapshot: ArcSwap<Snapshot>,
    /// Reloaded with the snapshot, so deleting `signing.key` (rotating it) takes effect live.
    signer: ArcSwap<Signer>,
    generation: AtomicU64,
    /// The fingerprint of the directory the snapshot (or the last failed load) was read from.
    seen: Mutex<Option<Fingerprint>>,
    /// The last reload failure logged, so each distinct failure is logged once.
    last_error: crate::reload::LastError,
    /// Held for a whole reload, so a request that waits for one sees its result.
    reloading: Mutex<()>,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded")
            .field("dir", &self.dir)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl Embedded {
    /// Opens the state directory (creating it, its key and the bootstrap roles if missing) and
    /// loads it; an error when it does not load, since there is no last good policy yet.
    pub fn open(state_dir: &Path) -> Result<Arc<Embedded>, StoreError> {
        Store::open(state_dir)?;
        let marker = marker::Marker::watch(Layout::new(state_dir).change_marker());
        let seen = fingerprint(state_dir)?;
        let snapshot = load(state_dir)?;
        let signer = Signer::load_or_create(&Layout::new(state_dir).signing_key())?;
        Ok(Arc::new(Embedded {
            dir: state_dir.to_path_buf(),
            marker,
            caught_up: AtomicU64::new(0),
            snapshot: ArcSwap::from_pointee(snapshot),
            signer: ArcSwap::from_pointee(signer),
            generation: AtomicU64::new(1),
            seen: Mutex::new(Some(seen)),
            last_error: crate::reload::LastError::default(),
            reloading: Mutex::new(()),
        }))
    }

    /// Starts the task that reloads the state directory when it changes (polled every
    /// [`RELOAD_INTERVAL`]). It stops when the last `Arc<Embedded>` is dropped. Needs a tokio
    /// runtime.
    pub fn spawn_reloader(self: &Arc<Self>) {
        crate::reload::spawn(self, RELOAD_INTERVAL, "policy", Self::poll);
    }

    /// Reloads if the directory changed since the last look; `Ok(true)` when a new snapshot is in
    /// force. On error the last good snapshot stays, and the same broken state is not re-read
    /// until something changes again.
    pub fn reload(&self) -> Result<bool, StoreError> {
        let _reloading = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let now = fingerprint(&self.dir)?;
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if *seen == Some(now) {
                return Ok(false);
            }
            // Taken before loading: a write racing the load changes the fingerprint again, so
            // the next look reloads.
            *seen = Some(now);
        }
        let snapshot = load(&self.dir)?;
        let signer = Signer::load_or_create(&Layout::new(&self.dir).signing_key())?;
        self.snapshot.store(Arc::new(snapshot));
        self.signer.store(Arc::new(signer));
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(true)
    }

    /// Reloads first if a writer has let go of the lock since the snapshot in force was loaded
    /// (one cheap look at the marker when nothing changed). A request that sees a change
    /// another request is still reloading for waits for that reload.
    fn catch_up(&self) {
        let changes = self.marker.changes();
        if changes == self.caught_up.load(Ordering::Acquire) {
            return;
        }
        self.poll();
        self.caught_up.fetch_max(changes, Ordering::AcqRel);
    }

    /// The subject of an API token as a caller, or `None` when it does not exist (or is a
    /// recreated object with another uid) in the snapshot and in the directory either.
    fn caller_of(&self, name: &str, uid: &str) -> Option<UserInfo> {
        self.catch_up();
        if let Some(caller) = self.snapshot.load().caller(name, uid) {
            return Some(caller);
        }
        // A subject written by hand, or by a writer racing this request, exists before the
        // reloader sees it: never call it deleted without looking.
        self.poll();
        self.snapshot.load().caller(name, uid)
    }

    /// One look by the reloader: reload, and log a failure once until it changes or is fixed.
    fn poll(&self) {
        match self.last_error.note(self.reload()) {
            crate::reload::Reloaded::Changed { recovered: true } => tracing::info!(
                dir = %self.dir.display(),
                "state directory loads again; its current policy is in force"
            ),
            crate::reload::Reloaded::Failed(message) => tracing::error!(
                dir = %self.dir.display(),
                "cannot reload the state directory: {message}. The last good policy stays in force; fix or remove the file and it is picked up automatically"
            ),
            _ => {}
        }
    }

    /// The policy and identities in force.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The key that signs and verifies tokens.
    pub fn signer(&self) -> Arc<Signer> {
        self.signer.load_full()
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait]
impl Authority for Embedded {
    async fn authenticate(&self, token: &SecretString) -> Result<Authn, AuthorityError> {
        let claims = match self.signer.load().verify_api_token(token.expose_secret()) {
            Ok(claims) => claims,
            Err(TokenError::Invalid(reason)) => return Ok(Authn::Invalid { reason }),
            Err(other) => {
                return Ok(Authn::Invalid {
                    reason: other.to_string(),
                });
            }
        };
        // The uid check makes a deleted, or deleted and recreated, subject's tokens useless.
        Ok(match self.caller_of(&claims.sub, &claims.uid) {
            Some(caller) => Authn::User(caller),
            None => Authn::Invalid {
                reason: format!(
                    "{} no longer exists (deleted or recreated); create a new token",
                    claims.sub
                ),
            },
        })
    }

    async fn after_expiry(&self, token: &SecretString) -> AfterExpiry {
        let claims = match self
            .signer
            .load()
            .verify_api_token_ignoring_expiry(token.expose_secret())
        {
            Ok(claims) => claims,
            Err(e) => {
                return AfterExpiry::Refused {
                    reason: e.to_string(),
                };
            }
        };
        match self.caller_of(&claims.sub, &claims.uid) {
            Some(caller) => AfterExpiry::Identity(caller),
            None => AfterExpiry::Refused {
                reason: format!("{} no longer exists (deleted or recreated)", claims.sub),
            },
        }
    }

    async fn authorize(
        &self,
        user: &UserInfo,
        _token: Option<&SecretString>,
        attrs: &Attributes,
    ) -> Result<Decision, AuthorityError> {
        // `regate authority serve` answers reviews here without authenticating first.
        self.catch_up();
        Ok(self.snapshot.load().policy.evaluate(user, attrs))
    }

    async fn pull_keyring(
        &self,
        user: &UserInfo,
        namespace: &str,
    ) -> Result<Keyring, AuthorityError> {
        Ok(self.snapshot.load().pull_keyring(user, namespace))
    }

    async fn anonymous_has_grants(&self) -> Result<bool, AuthorityError> {
        self.catch_up();
        Ok(self.snapshot.load().anonymous_has_grants)
    }

    fn generation(&self) -> u64 {
        // Asked before every cached decision: a CLI change (anonymous access included) is in
        // force on the next request, not at the reloader's next tick.
        self.catch_up();
        self.generation.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
pub(crate) mod tests;
