use std::fs;

use super::*;
use crate::authority::embedded::Store;

#[test]
fn objects_come_whole_and_sorted_by_namespace_then_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    for ns in ["zeta", "alpha"] {
        store.create_namespace(ns).expect("namespace");
    }
    store.create_user("bob", &[]).expect("user");
    // Hand-written, without apiVersion and kind: the listing says them.
    fs::write(
        store.layout().users().join("alice.yaml"),
        "metadata:\n  name: alice\ngroups: [devs]\n",
    )
    .expect("write user");
    // A namespace half created (no namespace.yaml) is no namespace, nor are its objects.
    fs::create_dir_all(store.layout().service_accounts("half")).expect("mkdir");
    fs::write(
        store.layout().service_accounts("half").join("ghost.yaml"),
        "apiVersion: v1\nkind: ServiceAccount\n",
    )
    .expect("write sa");

    let objects = list(dir.path()).expect("list");
    let names = |metas: Vec<&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>| {
        metas
            .into_iter()
            .map(|m| {
                format!(
                    "{}/{}",
                    m.namespace.as_deref().unwrap_or("-"),
                    m.name.as_deref().unwrap_or("?")
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(objects.namespaces.iter().map(|n| &n.metadata).collect()),
        ["-/alpha", "-/zeta"]
    );
    assert_eq!(
        names(
            objects
                .service_accounts
                .iter()
                .map(|s| &s.metadata)
                .collect()
        ),
        [
            "alpha/builder",
            "alpha/default",
            "alpha/deployer",
            "zeta/builder",
            "zeta/default",
            "zeta/deployer"
        ]
    );
    assert_eq!(
        names(objects.users.iter().map(|u| &u.metadata).collect()),
        ["-/alice", "-/bob"]
    );
    assert_eq!(objects.users[0].api_version, USER_API_VERSION);
    assert_eq!(objects.users[0].kind, USER_KIND);
    assert!(
        objects
            .cluster_roles
            .iter()
            .any(|r| r.metadata.name.as_deref() == Some("system:image-puller"))
    );
    assert!(objects.secrets.is_empty());
}

#[test]
fn a_file_that_does_not_parse_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    store.create_namespace("a").expect("namespace");
    let path = store.layout().secrets("a").join("bad.yaml");
    fs::create_dir_all(store.layout().secrets("a")).expect("mkdir");
    fs::write(&path, "apiVersion: v1\nkind: Secret\ndata: [\n").expect("write");
    let error = list(dir.path()).expect_err("a broken file").to_string();
    assert!(error.starts_with(&path.display().to_string()), "{error}");
}
