//! One consistent reading of the state directory ([`load`] into a [`Snapshot`], under the
//! readers' lock), what the authority answers from, and the directory's [`Fingerprint`], by which
//! the reloader sees that something changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::path::Path;

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};

use super::store::*;
use crate::identity::{UserInfo, service_account_of, service_account_user};
use crate::policy::Policy;
use crate::upstream::keyring::Keyring;
use crate::upstream::secret::{PullSecret, chain_pull_secrets, check_secret};

/// A user as stored: what authenticating its token needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredUser {
    /// `metadata.uid`; tokens carry it, so a recreated user's old tokens are refused.
    pub uid: String,
    /// The user's groups (without the implicit ones).
    pub groups: Vec<String>,
}

/// Everything the authority needs from one consistent reading of the state directory.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Roles and bindings.
    pub policy: Policy,
    /// Namespace names.
    pub namespaces: BTreeSet<String>,
    /// Service account uids by (namespace, name).
    pub service_accounts: HashMap<(String, String), String>,
    /// Users by name.
    pub users: HashMap<String, StoredUser>,
    /// Whether the policy grants the anonymous identity anything (computed once per load).
    pub anonymous_has_grants: bool,
    /// Docker config Secrets by (namespace, name), for pulling from upstream registries; sorted,
    /// so a namespace's Secrets are one range, by name.
    pub pull_secrets: BTreeMap<(String, String), PullSecret>,
    /// The Secret names each service account lists in `imagePullSecrets` (linked for pull), by
    /// (namespace, name), in their listed order; service accounts listing none are absent.
    pub image_pull_secrets: HashMap<(String, String), Vec<String>>,
    /// Every service account and user as an authenticated caller (implicit groups included),
    /// by full name: made once per load rather than once per request (see [`Snapshot::caller`]).
    pub callers: HashMap<String, UserInfo>,
    /// The Namespace objects as stored, by name: what `regate authority serve` answers, from
    /// the same reading as the policy it authorizes with.
    pub namespace_objects: BTreeMap<String, Namespace>,
    /// The ServiceAccount objects as stored, by (namespace, name), for the same.
    pub service_account_objects: BTreeMap<(String, String), ServiceAccount>,
}

impl Snapshot {
    /// The service account or user `name` as an authenticated caller, if it exists with uid
    /// `uid`; `None` when it was deleted or recreated (another uid).
    pub fn caller(&self, name: &str, uid: &str) -> Option<UserInfo> {
        if let Some(caller) = self.callers.get(name) {
            return (caller.uid == uid).then(|| caller.clone());
        }
        // A snapshot built by hand (tests) has no callers made.
        let groups = self.groups_of(name, uid)?;
        Some(UserInfo::authenticated(name.into(), uid.into(), groups))
    }

    /// The stored groups of the service account or user `name` if it exists with uid `uid`;
    /// `None` when it was deleted or recreated (another uid).
    pub fn groups_of(&self, name: &str, uid: &str) -> Option<Vec<String>> {
        if let Some((ns, sa)) = service_account_of(name) {
            let stored = self
                .service_accounts
                .get(&(ns.to_string(), sa.to_string()))?;
            return (stored == uid).then(Vec::new);
        }
        let user = self.users.get(name)?;
        (user.uid == uid).then(|| user.groups.clone())
    }

    /// The docker config Secrets to pull `namespace`'s remote images with for `user`, in the
    /// order they are tried (see [`crate::authority::Authority::pull_keyring`]): those `user`'s
    /// service account (if it is one) lists in `imagePullSecrets`, in that order, then every one
    /// of `namespace` by name, each Secret once. A linked Secret that does not exist is skipped;
    /// one that does not parse is skipped with a warning naming it.
    pub fn pull_keyring(&self, user: &UserInfo, namespace: &str) -> Keyring {
        let mut used: Vec<(&str, &str)> = Vec::new();
        let mut chosen: Vec<(&str, &str, &PullSecret)> = Vec::new();
        if let Some((sa_ns, sa)) = service_account_of(&user.name) {
            let linked = self
                .image_pull_secrets
                .get(&(sa_ns.to_string(), sa.to_string()));
            for name in linked.into_iter().flatten() {
                if used.contains(&(sa_ns, name.as_str())) {
                    continue;
                }
                used.push((sa_ns, name));
                match self.pull_secrets.get(&(sa_ns.to_string(), name.clone())) {
                    Some(secret) => chosen.push((sa_ns, name, secret)),
                    None => tracing::debug!(
                        namespace = sa_ns,
                        secret = %name,
                        service_account = sa,
                        "a Secret linked for pull does not exist; skipped"
                    ),
                }
            }
        }
        let start = (namespace.to_string(), String::new());
        let in_namespace = self
            .pull_secrets
            .range(start..)
            .take_while(|((ns, _), _)| ns == namespace);
        for ((ns, name), secret) in in_namespace {
            if !used.contains(&(ns.as_str(), name.as_str())) {
                chosen.push((ns, name, secret));
            }
        }
        chain_pull_secrets(
            chosen
                .into_iter()
                .map(|(ns, name, secret)| (ns, name, &secret.keyring)),
        )
    }
}

/// Reads the whole state directory into a [`Snapshot`]. The first file that does not parse is
/// an error naming file, line and reason; the caller keeps its last good snapshot.
pub fn load(dir: &Path) -> Result<Snapshot, StoreError> {
    let layout = Layout::new(dir);
    // Probe the directory itself so that a missing state dir is reported as such.
    fs::metadata(dir).map_err(io_error(dir))?;
    let _lock = lock_shared(&layout)?;

    let cluster_roles: Vec<ClusterRole> = read_objects(&layout.cluster_roles(), None)?;
    let cluster_role_bindings: Vec<ClusterRoleBinding> =
        read_objects(&layout.cluster_role_bindings(), None)?;
    let users: Vec<User> = read_objects(&layout.users(), None)?;

    let mut snapshot = Snapshot::default();
    let (mut roles, mut role_bindings) = (Vec::new(), Vec::new());
    for ns in namespace_dirs(&layout)? {
        // A directory without namespace.yaml is a namespace half created or half deleted.
        let file = layout.namespace_file(&ns);
        let Some(mut namespace) = read_object::<Namespace>(&file)? else {
            continue;
        };
        check_identity(&file, namespace.meta(), &ns, None)?;
        namespace.metadata.name.get_or_insert_with(|| ns.clone());
        snapshot.namespace_objects.insert(ns.clone(), namespace);
        let service_accounts: Vec<ServiceAccount> =
            read_objects(&layout.service_accounts(&ns), Some(&ns))?;
        for sa in service_accounts {
            let key = (ns.clone(), sa.metadata.name.clone().unwrap_or_default());
            snapshot.service_account_objects.insert(key, sa.clone());
            let name = sa.metadata.name.unwrap_or_default();
            let uid = sa.metadata.uid.unwrap_or_default();
            let pull: Vec<String> = sa
                .image_pull_secrets
                .into_iter()
                .flatten()
                .map(|r| r.name)
                .collect();
            if !pull.is_empty() {
                snapshot
                    .image_pull_secrets
                    .insert((ns.clone(), name.clone()), pull);
            }
            snapshot.service_accounts.insert((ns.clone(), name), uid);
        }
        roles.extend(read_objects::<Role>(&layout.roles(&ns), Some(&ns))?);
        role_bindings.extend(read_objects::<RoleBinding>(
            &layout.role_bindings(&ns),
            Some(&ns),
        )?);
        let dir = layout.secrets(&ns);
        for secret in read_objects::<Secret>(&dir, Some(&ns))? {
            let name = secret.metadata.name.clone().unwrap_or_default();
            let pull = check_secret(&secret).map_err(|reason| StoreError::Parse {
                path: object_file(&dir, &name),
                line: None,
                column: None,
                reason,
            })?;
            snapshot.pull_secrets.insert((ns.clone(), name), pull);
        }
        snapshot.namespaces.insert(ns);
    }
    for user in users {
        let name = user.metadata.name.unwrap_or_default();
        let uid = user.metadata.uid.unwrap_or_default();
        snapshot.users.insert(
            name,
            StoredUser {
                uid,
                groups: user.groups,
            },
        );
    }
    snapshot.callers = callers(&snapshot);
    snapshot.policy = Policy::new(cluster_roles, roles, cluster_role_bindings, role_bindings);
    snapshot.anonymous_has_grants = snapshot.policy.grants_anything_to(&UserInfo::anonymous());
    Ok(snapshot)
}

/// [`Snapshot::callers`] of `snapshot`'s service accounts and users, as
/// [`Snapshot::groups_of`] finds them (a user named like a service account is not one).
fn callers(snapshot: &Snapshot) -> HashMap<String, UserInfo> {
    let accounts = snapshot
        .service_accounts
        .iter()
        .map(|((ns, sa), uid)| (service_account_user(ns, sa), ns, sa, uid))
        .filter(|(name, ns, sa, _)| service_account_of(name) == Some((ns.as_str(), sa.as_str())))
        .map(|(name, _, _, uid)| (name, uid.clone(), Vec::new()));
    let users = snapshot
        .users
        .iter()
        .filter(|(name, _)| service_account_of(name).is_none())
        .map(|(name, user)| (name.clone(), user.uid.clone(), user.groups.clone()));
    accounts
        .chain(users)
        .map(|(name, uid, groups)| {
            let caller = UserInfo::authenticated(name.clone(), uid, groups);
            (name, caller)
        })
        .collect()
}

/// A cheap summary of every file's path, modification time, size and inode: it changes whenever
/// a file is written (atomic replacement makes a new inode), added or removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint(u64);

/// The [`Fingerprint`] of the state directory `dir`: the sum of one hash per file (of its path
/// and stamp), so the walk's order does not matter and nothing is sorted (the reloader takes
/// one every 250 ms, however large the directory).
pub fn fingerprint(dir: &Path) -> Result<Fingerprint, StoreError> {
    let mut sum = 0u64;
    let mut files = 0u64;
    collect_files(dir, &mut |path, stamp| {
        use std::os::unix::ffi::OsStrExt;
        let mut hasher = DefaultHasher::new();
        path.as_os_str().as_bytes().hash(&mut hasher);
        stamp.hash(&mut hasher);
        sum = sum.wrapping_add(hasher.finish());
        files += 1;
    })?;
    let mut hasher = DefaultHasher::new();
    (sum, files).hash(&mut hasher);
    Ok(Fingerprint(hasher.finish()))
}

/// Hands `each` the path and [`crate::fs::Stamp`] of every visible file under `dir`.
fn collect_files(
    dir: &Path,
    each: &mut impl FnMut(&Path, crate::fs::Stamp),
) -> Result<(), StoreError> {
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        if is_hidden(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        let file_type = entry.file_type().map_err(io_error(&path))?;
        if file_type.is_dir() {
            match collect_files(&path, each) {
                // Removed while we walked: the next fingerprint sees the result.
                Err(StoreError::Io { error, .. }) if error.kind() == io::ErrorKind::NotFound => {}
                other => other?,
            }
            continue;
        }
        // Gone while we walked (`stamp` is `None`): the next fingerprint sees the result.
        if let Some(stamp) = crate::fs::stamp(&path) {
            each(&path, stamp);
        }
    }
    Ok(())
}
