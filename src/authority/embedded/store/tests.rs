use std::fs;
use std::os::unix::fs::MetadataExt;

use k8s_openapi::api::rbac::v1::ClusterRole;

use super::files::write_atomic;
use super::*;
use crate::authority::embedded::bootstrap;
use crate::authority::embedded::snapshot::{fingerprint, load};
use crate::identity::UserInfo;
use crate::policy::Policy;
use crate::policy::{Attributes, IMAGE_GROUP};

fn opened() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    (dir, store)
}

#[test]
fn open_creates_a_private_dir_key_and_bootstrap_roles() {
    let parent = tempfile::tempdir().expect("tempdir");
    let dir = parent.path().join("state");
    Store::open(&dir).expect("open");
    let mode = fs::metadata(&dir).expect("stat").mode() & 0o777;
    assert_eq!(mode, 0o700);
    let key_mode = fs::metadata(dir.join("signing.key")).expect("key").mode() & 0o777;
    assert_eq!(key_mode, 0o600);
    let snapshot = load(&dir).expect("load");
    for role in bootstrap::cluster_roles() {
        let name = role.metadata.name.expect("name");
        let path = dir.join(format!("cluster/clusterroles/{name}.yaml"));
        let stored: ClusterRole = read_object(&path).expect("parse").expect("exists");
        assert!(stored.metadata.uid.is_some(), "{name} has a uid");
        assert!(stored.metadata.creation_timestamp.is_some());
    }
    assert!(!snapshot.anonymous_has_grants);
}

#[test]
fn open_recreates_a_deleted_bootstrap_role_but_keeps_an_edited_one() {
    let (dir, _store) = opened();
    let roles = Layout::new(dir.path()).cluster_roles();
    fs::remove_file(roles.join("system:image-puller.yaml")).expect("rm");
    let view = roles.join("view.yaml");
    let edited = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: view\nrules: []\n";
    fs::write(&view, edited).expect("edit");
    Store::open(dir.path()).expect("reopen");
    assert!(roles.join("system:image-puller.yaml").exists());
    assert_eq!(fs::read_to_string(&view).expect("read"), edited);
}

#[test]
fn a_broken_file_is_an_error_naming_file_line_and_reason() {
    let (dir, store) = opened();
    store.create_namespace("a").expect("ns");
    let path = Layout::new(dir.path())
        .role_bindings("a")
        .join("broken.yaml");
    fs::write(
        &path,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: [oops\n",
    )
    .expect("write");
    let err = load(dir.path()).expect_err("broken");
    let StoreError::Parse { path: at, line, .. } = &err else {
        panic!("not a parse error: {err}");
    };
    assert_eq!(at, &path);
    assert!(line.is_some(), "{err}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("{}:", path.display())),
        "{message}"
    );
}

#[test]
fn a_wrong_kind_is_reported_with_its_line() {
    let (dir, _store) = opened();
    let path = Layout::new(dir.path()).cluster_roles().join("odd.yaml");
    fs::write(
        &path,
        "apiVersion: rbac.authorization.k8s.io/v1\nmetadata:\n  name: odd\nkind: Role\n",
    )
    .expect("write");
    let err = load(dir.path()).expect_err("wrong kind");
    assert!(
        matches!(&err, StoreError::Parse { line: Some(4), .. }),
        "{err}"
    );
    assert!(err.to_string().contains("ClusterRole"), "{err}");
}

#[test]
fn a_user_of_another_kind_is_reported() {
    let (dir, _store) = opened();
    let users = Layout::new(dir.path()).users();
    fs::create_dir_all(&users).expect("mkdir");
    let path = users.join("bob.yaml");
    fs::write(
        &path,
        "apiVersion: v1\nkind: User\nmetadata:\n  name: bob\n",
    )
    .expect("write");
    let err = load(dir.path()).expect_err("wrong apiVersion");
    assert!(
        matches!(&err, StoreError::Parse { line: Some(1), .. }),
        "{err}"
    );
    assert!(err.to_string().contains(USER_API_VERSION), "{err}");
}

#[test]
fn a_name_that_does_not_match_the_file_is_reported() {
    let (dir, _store) = opened();
    let path = Layout::new(dir.path()).cluster_roles().join("a.yaml");
    fs::write(
        &path,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: b\n",
    )
    .expect("write");
    let err = load(dir.path()).expect_err("mismatch");
    assert!(err.to_string().contains("rename the file"), "{err}");
}

#[test]
fn hand_written_objects_without_name_take_the_file_name() {
    let (dir, _store) = opened();
    let layout = Layout::new(dir.path());
    fs::write(
        layout.cluster_roles().join("pull-all.yaml"),
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nrules:\n- apiGroups: ['*']\n  resources: ['*']\n  verbs: [get]\n",
    )
    .expect("role");
    fs::create_dir_all(layout.cluster_role_bindings()).expect("mkdir");
    fs::write(
        layout.cluster_role_bindings().join("anyone.yaml"),
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pull-all}\nsubjects:\n- {kind: Group, name: 'system:unauthenticated'}\n",
    )
    .expect("binding");
    let snapshot = load(dir.path()).expect("load");
    assert!(snapshot.anonymous_has_grants);
    let decision = snapshot
        .policy
        .evaluate(&UserInfo::anonymous(), &Attributes::layers("get", "x", "y"));
    assert!(decision.allowed());
}

#[test]
fn a_namespace_directory_without_namespace_yaml_does_not_exist() {
    let (dir, store) = opened();
    store.create_namespace("a").expect("ns");
    fs::remove_file(Layout::new(dir.path()).namespace_file("a")).expect("rm");
    let snapshot = load(dir.path()).expect("load");
    assert!(snapshot.namespaces.is_empty());
    assert!(snapshot.service_accounts.is_empty());
    let sa = UserInfo::authenticated(
        crate::identity::service_account_user("a", "default"),
        String::new(),
        vec![],
    );
    assert!(
        !snapshot
            .policy
            .evaluate(&sa, &Attributes::layers("get", "a", "app"))
            .allowed()
    );
}

#[test]
fn ignored_files_are_ignored() {
    let (dir, store) = opened();
    store.create_namespace("a").expect("ns");
    let bindings = Layout::new(dir.path()).role_bindings("a");
    fs::write(bindings.join(".swap.yaml"), "not: [yaml").expect("hidden");
    fs::write(bindings.join("notes.txt"), "not: [yaml").expect("txt");
    fs::write(bindings.join("old.yaml~"), "not: [yaml").expect("backup");
    load(dir.path()).expect("load ignores them");
}

#[test]
fn fingerprint_changes_with_every_write_and_only_then() {
    let (dir, store) = opened();
    let first = fingerprint(dir.path()).expect("fp");
    assert_eq!(first, fingerprint(dir.path()).expect("fp"));
    // The lock file and temporary files are not state.
    fs::write(dir.path().join(".tmp-x"), "x").expect("hidden");
    assert_eq!(first, fingerprint(dir.path()).expect("fp"));

    store.create_namespace("a").expect("ns");
    let second = fingerprint(dir.path()).expect("fp");
    assert_ne!(first, second);

    // Rewriting a file with the same bytes still counts: atomic replacement makes a new inode.
    let path = Layout::new(dir.path()).namespace_file("a");
    let text = fs::read(&path).expect("read");
    write_atomic(&path, &text).expect("rewrite");
    assert_ne!(second, fingerprint(dir.path()).expect("fp"));
}

#[test]
fn image_pruner_role_grants_cluster_image_delete() {
    let role = bootstrap::cluster_roles()
        .into_iter()
        .find(|r| r.metadata.name.as_deref() == Some(bootstrap::IMAGE_PRUNER))
        .expect("pruner");
    let policy = Policy::new(
        vec![role],
        vec![],
        vec![ClusterRoleBinding {
            metadata: ObjectMeta {
                name: Some("p".into()),
                ..ObjectMeta::default()
            },
            role_ref: bootstrap::cluster_role_ref(bootstrap::IMAGE_PRUNER),
            subjects: Some(vec![
                super::super::SubjectRef::User("alice".into()).to_subject(),
            ]),
        }],
        vec![],
    );
    let alice = UserInfo::authenticated("alice".into(), "u".into(), vec![]);
    let mut delete = Attributes::cluster("delete", "images");
    assert!(policy.evaluate(&alice, &delete).allowed());
    delete.group = IMAGE_GROUP.into();
    delete.resource = "imagestreams".into();
    assert!(!policy.evaluate(&alice, &delete).allowed());
}
