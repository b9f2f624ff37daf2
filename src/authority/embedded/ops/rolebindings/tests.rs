use std::path::Path;

use k8s_openapi::api::rbac::v1::RoleRef;

use super::*;
use crate::authority::embedded::bootstrap::{IMAGE_PULLER, cluster_role_ref};
use crate::authority::embedded::snapshot::load;
use crate::authority::embedded::store::Layout;

fn opened() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store.create_namespace("a").expect("namespace");
    (dir, store)
}

fn user(name: &str) -> Subject {
    Subject {
        api_group: None,
        kind: USER_KIND.to_string(),
        name: name.to_string(),
        namespace: None,
    }
}

/// A binding `name` of `system:image-puller` to user `who`, as a client sends it.
fn binding(name: &str, who: &str) -> RoleBinding {
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        role_ref: cluster_role_ref(IMAGE_PULLER),
        subjects: Some(vec![user(who)]),
    }
}

/// The stored binding `name` of namespace `a`, as the authority loads it.
fn loaded(dir: &Path, name: &str) -> Option<RoleBinding> {
    load(dir)
        .expect("load")
        .policy
        .role_bindings_in("a")
        .iter()
        .find(|b| b.metadata.name.as_deref() == Some(name))
        .cloned()
}

fn version_of(dir: &Path, name: &str) -> String {
    resource_version(&loaded(dir, name).expect("stored"))
}

#[test]
fn a_created_binding_is_stored_stamped_and_defaulted() {
    let (dir, store) = opened();
    let mut sent = binding("pullers", "bob");
    sent.metadata.uid = Some("client-chosen".into());
    sent.metadata.resource_version = Some("7".into());
    let written = store.create_role_binding("a", sent).expect("create");
    let uid = written.metadata.uid.clone().expect("uid");
    assert_ne!(uid, "client-chosen");
    assert!(written.metadata.creation_timestamp.is_some());
    assert_eq!(written.metadata.resource_version, None, "never stored");
    assert_eq!(written.metadata.namespace.as_deref(), Some("a"));
    let subjects = written.subjects.as_deref().unwrap_or_default();
    assert_eq!(subjects[0].api_group.as_deref(), Some(RBAC_GROUP));
    // What was returned is what a reader loads, to the version.
    let stored = loaded(dir.path(), "pullers").expect("stored");
    assert_eq!(stored, written);
    assert_eq!(resource_version(&stored), resource_version(&written));

    let again = store.create_role_binding("a", binding("pullers", "carol"));
    assert!(matches!(again, Err(BindingError::AlreadyExists { .. })));
    let missing = store.create_role_binding("nowhere", binding("pullers", "bob"));
    assert!(matches!(
        missing,
        Err(BindingError::Store(StoreError::NamespaceNotFound { .. }))
    ));
}

#[test]
fn an_invalid_binding_names_every_bad_field_and_writes_nothing() {
    let (dir, store) = opened();
    let mut bad = binding("../x", "");
    bad.role_ref = RoleRef {
        api_group: Some("example.com".into()),
        kind: "Robot".into(),
        name: String::new(),
    };
    bad.subjects = Some(vec![
        user(""),
        Subject {
            api_group: Some(RBAC_GROUP.into()),
            kind: SERVICE_ACCOUNT_KIND.into(),
            name: "Not_A_Name".into(),
            namespace: None,
        },
        Subject {
            kind: "Robot".into(),
            ..user("r2")
        },
    ]);
    let Err(BindingError::Invalid { causes, .. }) = store.create_role_binding("a", bad) else {
        panic!("accepted");
    };
    let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "metadata.name",
            "roleRef.apiGroup",
            "roleRef.kind",
            "roleRef.name",
            "subjects[0].name",
            "subjects[1].apiGroup",
            "subjects[1].name",
            "subjects[2].kind",
        ]
    );
    assert_eq!(causes[4].reason, "FieldValueRequired");
    assert!(
        causes[7].detail.contains("supported values"),
        "{}",
        causes[7]
    );
    let files = std::fs::read_dir(Layout::new(dir.path()).role_bindings("a"))
        .expect("dir")
        .count();
    assert_eq!(files, 2, "only the namespace's own bindings");
}

#[test]
fn a_replace_based_on_an_old_version_loses_and_the_role_is_fixed() {
    let (dir, store) = opened();
    let created = store
        .create_role_binding("a", binding("pullers", "bob"))
        .expect("create");
    let read = version_of(dir.path(), "pullers");

    // Another writer (here the CLI's way) changes it: the version read is now old.
    let mut newer = created.clone();
    newer.subjects = Some(vec![user("bob"), user("carol")]);
    let current = Preconditions::default();
    store
        .replace_role_binding("a", newer, &current)
        .expect("unconditional replace");
    assert_ne!(version_of(dir.path(), "pullers"), read);

    let stale = Preconditions {
        resource_version: Some(read),
        uid: None,
    };
    let lost = store.replace_role_binding("a", binding("pullers", "dave"), &stale);
    let Err(BindingError::Conflict { reason, .. }) = lost else {
        panic!("a stale replace won: {lost:?}");
    };
    assert_eq!(reason, MODIFIED);

    let fresh = Preconditions {
        resource_version: Some(version_of(dir.path(), "pullers")),
        uid: created.metadata.uid.clone(),
    };
    let replaced = store
        .replace_role_binding("a", binding("pullers", "dave"), &fresh)
        .expect("replace");
    assert_eq!(replaced.metadata.uid, created.metadata.uid, "uid kept");
    assert_eq!(
        replaced.metadata.creation_timestamp,
        created.metadata.creation_timestamp
    );
    assert_eq!(loaded(dir.path(), "pullers"), Some(replaced));

    let mut other_role = binding("pullers", "dave");
    other_role.role_ref = cluster_role_ref("admin");
    let Err(BindingError::Invalid { causes, .. }) =
        store.replace_role_binding("a", other_role, &Preconditions::default())
    else {
        panic!("roleRef changed");
    };
    assert_eq!(causes[0].field, "roleRef");
    assert!(causes[0].detail.contains("cannot change roleRef"));

    let missing =
        store.replace_role_binding("a", binding("nobody", "x"), &Preconditions::default());
    assert!(matches!(missing, Err(BindingError::NotFound { .. })));
}

#[test]
fn delete_honours_its_preconditions() {
    let (dir, store) = opened();
    let created = store
        .create_role_binding("a", binding("pullers", "bob"))
        .expect("create");
    let wrong_uid = Preconditions {
        resource_version: None,
        uid: Some("another".into()),
    };
    let refused = store.delete_role_binding("a", "pullers", &wrong_uid);
    assert!(matches!(refused, Err(BindingError::Conflict { .. })));
    let old_version = Preconditions {
        resource_version: Some("1".into()),
        uid: None,
    };
    let refused = store.delete_role_binding("a", "pullers", &old_version);
    assert!(matches!(refused, Err(BindingError::Conflict { .. })));
    assert!(loaded(dir.path(), "pullers").is_some(), "nothing deleted");

    let right = Preconditions {
        resource_version: Some(version_of(dir.path(), "pullers")),
        uid: created.metadata.uid.clone(),
    };
    let deleted = store
        .delete_role_binding("a", "pullers", &right)
        .expect("delete");
    assert_eq!(deleted.metadata.uid, created.metadata.uid);
    assert!(loaded(dir.path(), "pullers").is_none());
    let again = store.delete_role_binding("a", "pullers", &Preconditions::default());
    assert!(matches!(again, Err(BindingError::NotFound { .. })));
}

#[test]
fn the_version_follows_the_content_only() {
    let mut one = binding("pullers", "bob");
    let first = resource_version(&one);
    assert_eq!(first, resource_version(&one.clone()), "stable");
    one.metadata.resource_version = Some("anything".into());
    assert_eq!(
        resource_version(&one),
        first,
        "the version itself is not hashed"
    );
    one.subjects = Some(vec![user("carol")]);
    assert_ne!(resource_version(&one), first);
    assert!(first.parse::<u64>().is_ok(), "a decimal u64: {first}");
}
