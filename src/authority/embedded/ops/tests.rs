use k8s_openapi::api::core::v1::Secret;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::authority::embedded::snapshot::load;
use crate::authority::embedded::store::{Layout, write_object};
use crate::identity::UserInfo;
use crate::policy::{Attributes, Decision};
use crate::token::Signer;

fn opened() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    (dir, store)
}

fn sa(ns: &str, name: &str) -> UserInfo {
    UserInfo::authenticated(service_account_user(ns, name), "uid".into(), vec![])
}

fn user(name: &str) -> UserInfo {
    UserInfo::authenticated(name.into(), "uid".into(), vec![])
}

fn may(dir: &Path, who: &UserInfo, verb: &str, ns: &str) -> bool {
    load(dir)
        .expect("load")
        .policy
        .evaluate(who, &Attributes::layers(verb, ns, "app"))
        .allowed()
}

fn role_bindings(dir: &Path, ns: &str) -> Vec<RoleBinding> {
    read_objects(&Layout::new(dir).role_bindings(ns), Some(ns)).expect("bindings")
}

#[test]
fn a_new_namespace_has_its_service_accounts_and_bindings() {
    let (dir, store) = opened();
    store.create_namespace("project-a").expect("create");
    let snapshot = load(dir.path()).expect("load");
    for name in bootstrap::NAMESPACE_SERVICE_ACCOUNTS {
        let uid = &snapshot.service_accounts[&("project-a".to_string(), name.to_string())];
        assert_eq!(uid.len(), 36, "{name} has a uuid");
    }
    let builder = sa("project-a", "builder");
    let default = sa("project-a", "default");
    assert!(may(dir.path(), &builder, "update", "project-a"));
    assert!(may(dir.path(), &default, "get", "project-a"));
    assert!(!may(dir.path(), &default, "update", "project-a"));
    assert_eq!(
        snapshot
            .policy
            .evaluate(&default, &Attributes::layers("get", "project-a", "app")),
        Decision::Allow {
            by: "RoleBinding project-a/system:image-pullers (ClusterRole system:image-puller)"
                .into()
        }
    );
    store.create_namespace("project-b").expect("create b");
    assert!(!may(dir.path(), &default, "get", "project-b"));
}

#[test]
fn creating_an_existing_or_misnamed_namespace_fails() {
    let (_dir, store) = opened();
    store.create_namespace("a").expect("create");
    let err = store.create_namespace("a").expect_err("exists");
    assert_eq!(err.to_string(), r#"namespace "a" already exists"#);
    for bad in ["", "A", "-a", "a-", "a/b", "..", "a.b", &"x".repeat(64)] {
        let err = store.create_namespace(bad).expect_err(bad);
        assert!(
            matches!(err, StoreError::InvalidName { .. }),
            "{bad}: {err}"
        );
    }
}

#[test]
fn unknown_namespace_role_and_service_account_name_the_fix() {
    let (_dir, store) = opened();
    let err = store
        .add_role("nope", "system:image-puller", &[SubjectRef::user("alice")])
        .expect_err("no namespace");
    assert!(
        err.to_string().contains("regate create namespace nope"),
        "{err}"
    );

    store.create_namespace("a").expect("create");
    let err = store
        .add_role("a", "no-such-role", &[SubjectRef::user("alice")])
        .expect_err("no role");
    assert!(
        err.to_string()
            .contains("clusterrole \"no-such-role\" not found"),
        "{err}"
    );
    assert!(err.to_string().contains("system:image-puller"), "{err}");

    let err = store
        .add_role(
            "a",
            "system:image-puller",
            &[SubjectRef::user("system:serviceaccount:a:ghost")],
        )
        .expect_err("no sa");
    assert!(
        err.to_string()
            .contains("regate create serviceaccount ghost -n a"),
        "{err}"
    );
    let err = store
        .create_service_account_token("a", "ghost", Duration::from_secs(60))
        .expect_err("no sa");
    assert!(
        matches!(err, StoreError::ServiceAccountNotFound { .. }),
        "{err}"
    );
    let err = store
        .create_user_token("ghost", Duration::from_secs(60))
        .expect_err("no user");
    assert!(
        err.to_string().contains("regate create user ghost"),
        "{err}"
    );
}

#[test]
fn add_role_to_user_and_back() {
    let (dir, store) = opened();
    store.create_namespace("a").expect("a");
    store.create_namespace("b").expect("b");
    let default_a = SubjectRef::user("system:serviceaccount:a:default");
    assert_eq!(
        default_a,
        SubjectRef::ServiceAccount {
            namespace: "a".into(),
            name: "default".into()
        }
    );
    let who = sa("a", "default");
    assert!(!may(dir.path(), &who, "get", "b"));

    store
        .add_role("b", "system:image-puller", std::slice::from_ref(&default_a))
        .expect("add");
    assert!(may(dir.path(), &who, "get", "b"));
    // Idempotent: adding again changes nothing.
    let before = role_bindings(dir.path(), "b");
    store
        .add_role("b", "system:image-puller", std::slice::from_ref(&default_a))
        .expect("add again");
    assert_eq!(before, role_bindings(dir.path(), "b"));
    let binding = before
        .iter()
        .find(|b| b.metadata.name.as_deref() == Some("system:image-puller"))
        .expect("binding named after the role");
    assert_eq!(binding.subjects.as_ref().map(Vec::len), Some(1));

    store
        .remove_role("b", "system:image-puller", std::slice::from_ref(&default_a))
        .expect("remove");
    assert!(!may(dir.path(), &who, "get", "b"));
    // The emptied binding is gone, as oc deletes it.
    assert!(
        !role_bindings(dir.path(), "b")
            .iter()
            .any(|b| b.metadata.name.as_deref() == Some("system:image-puller"))
    );
    let err = store
        .remove_role("b", "system:image-puller", &[default_a])
        .expect_err("nothing to remove");
    assert!(matches!(err, StoreError::NotBound { .. }), "{err}");
}

#[test]
fn add_role_to_group_and_remove_from_every_binding() {
    let (dir, store) = opened();
    store.create_namespace("a").expect("a");
    store.create_namespace("b").expect("b");
    let group = SubjectRef::Group("system:serviceaccounts:a".into());
    store
        .add_role("b", "system:image-puller", std::slice::from_ref(&group))
        .expect("add");
    assert!(may(dir.path(), &sa("a", "deployer"), "get", "b"));

    // The namespace's own system:image-pullers names its service accounts' group: removing that
    // group removes it from that binding too, and the emptied binding is deleted.
    let own = SubjectRef::Group("system:serviceaccounts:b".into());
    store
        .remove_role("b", "system:image-puller", std::slice::from_ref(&own))
        .expect("remove own");
    assert!(!may(dir.path(), &sa("b", "default"), "get", "b"));
    assert!(may(dir.path(), &sa("a", "default"), "get", "b"));
    store
        .remove_role("b", "system:image-puller", &[group])
        .expect("remove");
    assert!(!may(dir.path(), &sa("a", "default"), "get", "b"));
}

#[test]
fn a_binding_name_taken_by_another_role_gets_a_suffix() {
    let (dir, store) = opened();
    store.create_namespace("a").expect("a");
    let taken = RoleBinding {
        metadata: ObjectMeta {
            name: Some("edit".into()),
            namespace: Some("a".into()),
            ..ObjectMeta::default()
        },
        role_ref: cluster_role_ref("view"),
        subjects: Some(vec![SubjectRef::user("carol").to_subject()]),
    };
    let layout = Layout::new(dir.path());
    write_object(&object_file(&layout.role_bindings("a"), "edit"), &taken).expect("write");
    store
        .add_role("a", "edit", &[SubjectRef::user("alice")])
        .expect("add");
    let bindings = role_bindings(dir.path(), "a");
    let added = bindings
        .iter()
        .find(|b| b.metadata.name.as_deref() == Some("edit-0"))
        .expect("edit-0");
    assert_eq!(added.role_ref.name, "edit");
    assert!(may(dir.path(), &user("alice"), "update", "a"));
    assert!(!may(dir.path(), &user("carol"), "update", "a"));
}

#[test]
fn twenty_concurrent_writers_leave_twenty_subjects() {
    let (dir, store) = opened();
    store.create_namespace("a").expect("a");
    let dir = Arc::new(dir.path().to_path_buf());
    let threads: Vec<_> = (0..20)
        .map(|i| {
            let dir = Arc::clone(&dir);
            std::thread::spawn(move || {
                // Each writer opens the directory itself, as a separate CLI process would.
                Store::open(&dir)
                    .and_then(|s| {
                        s.add_role(
                            "a",
                            "system:image-puller",
                            &[SubjectRef::User(format!("user-{i}"))],
                        )
                    })
                    .expect("add")
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("join");
    }
    let snapshot = load(&dir).expect("load");
    for i in 0..20 {
        let who = user(&format!("user-{i}"));
        assert!(
            snapshot
                .policy
                .evaluate(&who, &Attributes::layers("get", "a", "app"))
                .allowed(),
            "user-{i}"
        );
    }
}

#[test]
fn cluster_roles_bind_everywhere() {
    let (dir, store) = opened();
    store.create_namespace("a").expect("a");
    let alice = SubjectRef::user("alice");
    store
        .add_cluster_role("system:image-pruner", std::slice::from_ref(&alice))
        .expect("add");
    let delete = Attributes::cluster("delete", "images");
    assert!(
        load(dir.path())
            .expect("load")
            .policy
            .evaluate(&user("alice"), &delete)
            .allowed()
    );
    store
        .add_cluster_role("system:image-puller", &[SubjectRef::Group("devs".into())])
        .expect("group");
    let dev = UserInfo::authenticated("dave".into(), "u".into(), vec!["devs".into()]);
    assert!(may(dir.path(), &dev, "get", "anything"));

    store
        .remove_cluster_role("system:image-pruner", &[alice])
        .expect("remove");
    assert!(
        !load(dir.path())
            .expect("load")
            .policy
            .evaluate(&user("alice"), &delete)
            .allowed()
    );
}

#[test]
fn service_accounts_and_users_are_created_once_and_deleted() {
    let (dir, store) = opened();
    store.create_namespace("a").expect("a");
    store.create_service_account("a", "robot").expect("sa");
    let err = store
        .create_service_account("a", "robot")
        .expect_err("twice");
    assert_eq!(
        err.to_string(),
        r#"serviceaccount "robot" already exists in namespace "a""#
    );
    store
        .create_user("alice", &["devs".into(), "devs".into()])
        .expect("user");
    store.create_user("alice", &[]).expect_err("twice");
    store.create_user("sys:tem", &[]).expect_err("colon");
    let snapshot = load(dir.path()).expect("load");
    assert!(
        snapshot
            .service_accounts
            .contains_key(&("a".into(), "robot".into()))
    );
    assert_eq!(snapshot.users["alice"].groups, vec!["devs".to_string()]);

    store
        .delete_service_account("a", "robot")
        .expect("delete sa");
    store.delete_user("alice").expect("delete user");
    store.delete_user("alice").expect_err("gone");
    let snapshot = load(dir.path()).expect("load");
    assert!(
        !snapshot
            .service_accounts
            .contains_key(&("a".into(), "robot".into()))
    );
    assert!(!snapshot.users.contains_key("alice"));
}

#[test]
fn tokens_carry_the_subject_and_its_uid() {
    let (dir, store) = opened();
    store.create_namespace("a").expect("a");
    let issued = store
        .create_service_account_token("a", "builder", Duration::from_secs(600))
        .expect("token");
    let signer = Signer::load_or_create(&Layout::new(dir.path()).signing_key()).expect("key");
    let claims = signer.verify_api_token(&issued.token).expect("valid");
    assert_eq!(claims.sub, "system:serviceaccount:a:builder");
    let snapshot = load(dir.path()).expect("load");
    assert_eq!(
        snapshot.service_accounts[&("a".to_string(), "builder".to_string())],
        claims.uid
    );
    assert!(claims.exp - claims.iat == 600);

    store.create_user("alice", &["devs".into()]).expect("user");
    let issued = store
        .create_user_token("alice", Duration::from_secs(60))
        .expect("token");
    let claims = signer.verify_api_token(&issued.token).expect("valid");
    assert_eq!(claims.sub, "alice");
    assert_eq!(snapshot_user_uid(dir.path(), "alice"), claims.uid);
}

fn snapshot_user_uid(dir: &Path, name: &str) -> String {
    load(dir).expect("load").users[name].uid.clone()
}

#[test]
fn deleting_a_namespace_removes_everything_in_it() {
    let (dir, store) = opened();
    store.create_namespace("a").expect("a");
    store.delete_namespace("a").expect("delete");
    assert!(!Layout::new(dir.path()).namespace_dir("a").exists());
    let err = store.delete_namespace("a").expect_err("gone");
    assert!(matches!(err, StoreError::NamespaceNotFound { .. }), "{err}");
    // And it can be created again, with new uids.
    store.create_namespace("a").expect("again");
}

#[test]
fn linking_secrets_is_idempotent_and_unlinking_removes_them() {
    use k8s_openapi::ByteString;
    let (_dir, store) = opened();
    store.create_namespace("team").expect("namespace");
    let mut secret = Secret {
        metadata: ObjectMeta {
            name: Some("pull".into()),
            namespace: Some("team".into()),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(
            [(
                ".dockerconfigjson".to_string(),
                ByteString(br#"{"auths":{}}"#.to_vec()),
            )]
            .into(),
        ),
        ..Secret::default()
    };
    store.create_secret_object(secret.clone()).expect("create");
    let both = LinkFor {
        pull: true,
        mount: true,
    };
    let names = ["pull".to_string()];
    let (sa, changed) = store
        .link_secrets("team", "default", &names, both)
        .expect("link");
    assert!(changed);
    assert_eq!(sa.image_pull_secrets.as_ref().map(Vec::len), Some(1));
    let (_, changed) = store
        .link_secrets("team", "default", &names, both)
        .expect("link again");
    assert!(!changed, "linking twice changes nothing");
    assert!(matches!(
        store.link_secrets("team", "default", &["pul".into()], both),
        Err(SecretError::NotFound { .. })
    ));
    let sa = store
        .unlink_secrets("team", "default", &names)
        .expect("unlink");
    assert!(sa.image_pull_secrets.is_none() && sa.secrets.is_none());
    assert!(matches!(
        store.unlink_secrets("team", "default", &names),
        Err(SecretError::NotLinked { .. })
    ));

    secret.type_ = Some("Opaque".into());
    secret.metadata.name = Some("opaque".into());
    assert!(matches!(
        store.create_secret_object(secret),
        Err(SecretError::Invalid { .. })
    ));
}

/// The planners the console uses against an API server write what `regate policy` writes: the
/// role's binding with the subject added, and on removal a delete for a binding left empty and
/// a replacement for one shared with others.
#[test]
fn binding_changes_are_planned_as_the_store_makes_them() {
    let (dir, store) = opened();
    store.create_namespace("project-a").expect("namespace");
    let alice = SubjectRef::User("alice".into());
    let bob = SubjectRef::User("bob".into());
    let bindings = role_bindings(dir.path(), "project-a");
    let planned = role_binding_with(
        &bindings,
        "project-a",
        crate::authority::embedded::IMAGE_PULLER,
        std::slice::from_ref(&alice),
    )
    .expect("a new binding");
    store
        .add_role(
            "project-a",
            crate::authority::embedded::IMAGE_PULLER,
            std::slice::from_ref(&alice),
        )
        .expect("add");
    let written = role_bindings(dir.path(), "project-a");
    let stored = written
        .iter()
        .find(|b| b.metadata.name == planned.metadata.name)
        .expect("the planned name was written");
    assert_eq!(stored.role_ref, planned.role_ref);
    assert_eq!(stored.subjects, planned.subjects);
    assert_eq!(
        role_binding_with(
            &written,
            "project-a",
            crate::authority::embedded::IMAGE_PULLER,
            std::slice::from_ref(&alice)
        ),
        None,
        "already bound: nothing to write"
    );

    store
        .add_role(
            "project-a",
            crate::authority::embedded::IMAGE_PULLER,
            std::slice::from_ref(&bob),
        )
        .expect("add bob");
    let shared = role_bindings(dir.path(), "project-a");
    match role_bindings_without(
        shared.clone(),
        "project-a",
        crate::authority::embedded::IMAGE_PULLER,
        &[bob],
    )
    .as_deref()
    {
        Ok([Removal::Replace(binding)]) => {
            let names: Vec<&str> = binding
                .subjects
                .iter()
                .flatten()
                .map(|s| s.name.as_str())
                .collect();
            assert_eq!(names, ["alice"]);
        }
        other => panic!("one binding replaced without bob: {other:?}"),
    }
    store
        .add_role("project-a", "registry-viewer", std::slice::from_ref(&alice))
        .expect("add a role to alice alone");
    let alone = role_bindings_without(
        role_bindings(dir.path(), "project-a"),
        "project-a",
        "registry-viewer",
        &[alice],
    );
    assert!(
        matches!(alone.as_deref(), Ok([Removal::Delete(name)]) if name == "registry-viewer"),
        "{alone:?}"
    );
    let nobody = SubjectRef::User("carol".into());
    assert!(
        role_bindings_without(
            shared,
            "project-a",
            crate::authority::embedded::IMAGE_PULLER,
            &[nobody]
        )
        .is_err()
    );
}
