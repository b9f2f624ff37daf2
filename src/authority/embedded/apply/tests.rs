//! Unit tests of manifests, apply and delete.

use super::manifests::redact_strings;
use super::*;
use crate::authority::embedded::snapshot::load;

fn opened() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_without_bootstrap(dir.path()).expect("open");
    (dir, store)
}

fn parse(text: &str) -> Result<Vec<Document>, ApplyError> {
    parse_manifests("m.yaml", text)
}

const SECRET: &str = "apiVersion: v1
kind: Secret
metadata: {name: pull, namespace: a}
type: kubernetes.io/dockerconfigjson
stringData:
  .dockerconfigjson: '{\"auths\": {\"quay.io\": {\"auth\": \"eDp5\"}}}'
";

#[test]
fn documents_are_numbered_and_empty_ones_skipped() {
    let text = "---\n# nothing\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: s, namespace: a}\n";
    let docs = parse(text).expect("parses");
    let found: Vec<_> = docs
        .iter()
        .map(|d| (d.number, d.line, d.object.reference()))
        .collect();
    assert_eq!(
        found,
        vec![
            (1, 4, "namespace/a".to_string()),
            (2, 10, "serviceaccount/s".to_string())
        ]
    );
}

#[test]
fn errors_name_document_line_and_field_in_the_whole_file() {
    let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: s\n  labels: [x]\n";
    let err = parse(text).expect_err("labels must be a map").to_string();
    assert!(
        err.starts_with("m.yaml: document 2, line 9: metadata.labels: invalid type"),
        "{err}"
    );
    let err = parse("apiVersion: v1\nkind: Namespace\n  bad: [\n")
        .expect_err("syntax")
        .to_string();
    assert!(err.starts_with("m.yaml: document 1, line "), "{err}");
    let err = parse("apiVersion: v2\nkind: Namespace\n")
        .expect_err("version")
        .to_string();
    assert!(
        err.contains(
            "document 1, line 1: apiVersion: \"v2\" is not the apiVersion of Namespace (v1)"
        ),
        "{err}"
    );
    let err = parse("metadata: {name: a}\n")
        .expect_err("kind")
        .to_string();
    assert!(err.contains("kind: missing"), "{err}");
}

#[test]
fn a_list_is_expanded_and_json_is_read() {
    let text = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}}
    ]}"#;
    let refs: Vec<_> = parse(text)
        .expect("parses")
        .iter()
        .map(|d| d.object.reference())
        .collect();
    assert_eq!(
        refs,
        ["namespace/a", "clusterrole.rbac.authorization.k8s.io/r"]
    );
}

#[test]
fn kinds_take_kubectl_names_and_suggest_close_ones() {
    assert_eq!(Kind::parse("ns").ok(), Some(Kind::Namespace));
    assert_eq!(Kind::parse("sa").ok(), Some(Kind::ServiceAccount));
    assert_eq!(Kind::parse("RoleBindings").ok(), Some(Kind::RoleBinding));
    assert_eq!(Kind::parse("secret").ok(), Some(Kind::Secret));
    let err = Kind::parse("clusterrol").expect_err("typo").to_string();
    assert!(err.contains("did you mean clusterrole"), "{err}");
}

#[test]
fn secrets_must_be_docker_configs() {
    let check = |text: &str| {
        let (_dir, store) = opened();
        store.create_namespace("a").expect("ns");
        store.apply(parse(text)?, None)
    };
    check(SECRET).expect("a dockerconfigjson secret applies");
    // Checked when parsing, at the field's line, and again by apply.
    let err = parse(&SECRET.replace("auths", "registries"))
        .expect_err("no auths")
        .to_string();
    assert!(
        err.contains("document 1, line 6: data..dockerconfigjson"),
        "{err}"
    );
    for (text, reason) in [
        (
            SECRET.replace("kubernetes.io/dockerconfigjson", "Opaque"),
            "type: \"Opaque\"",
        ),
        (SECRET.replace("auths", "registries"), "has no \"auths\""),
        (
            SECRET.replace("{\"auth\": \"eDp5\"}", "3"),
            "must be a JSON object",
        ),
        (
            SECRET.replace(".dockerconfigjson:", "config.json:"),
            "data..dockerconfigjson is missing",
        ),
    ] {
        let err = check(&text).expect_err(reason).to_string();
        assert!(err.contains(reason), "{reason:?} in {err}");
    }
}

#[test]
fn apply_creates_updates_keeps_uids_and_is_idempotent() {
    let (dir, store) = opened();
    let text = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: a}}\n---\n{SECRET}");
    let actions = |outcomes: Vec<Outcome>| -> Vec<Action> {
        outcomes.into_iter().map(|o| o.action).collect()
    };
    let first = store
        .apply(parse(&text).expect("parses"), None)
        .expect("apply");
    assert_eq!(actions(first.clone()), [Action::Created, Action::Created]);
    let snapshot = load(dir.path()).expect("load");
    assert!(snapshot.namespaces.contains("a"));
    assert!(
        snapshot
            .service_accounts
            .contains_key(&("a".into(), "builder".into())),
        "a namespace applied gets its default service accounts"
    );
    let pull = &snapshot.pull_secrets[&("a".to_string(), "pull".to_string())];
    assert_eq!(pull.secret_type, "kubernetes.io/dockerconfigjson");
    assert!(!format!("{pull:?}").contains("eDp5"), "no secret in Debug");

    let again = store
        .apply(parse(&text).expect("parses"), None)
        .expect("apply");
    assert_eq!(actions(again), [Action::Unchanged, Action::Unchanged]);

    let changed = text.replace("eDp5", "eTp6");
    let third = store
        .apply(parse(&changed).expect("parses"), None)
        .expect("apply");
    assert_eq!(
        actions(third.clone()),
        [Action::Unchanged, Action::Configured]
    );
    assert_eq!(third[1].object.meta().uid, first[1].object.meta().uid);
}

#[test]
fn a_bad_document_writes_nothing_and_dry_runs_write_nothing() {
    let (dir, store) = opened();
    let before = crate::authority::embedded::fingerprint(dir.path()).expect("fingerprint");
    let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: s, namespace: nowhere}\n";
    let err = store
        .apply(parse(text).expect("parses"), None)
        .expect_err("unknown namespace");
    assert!(
        err.to_string().contains("namespace \"nowhere\" not found"),
        "{err}"
    );
    let dry = store.with_dry_run(true);
    let ok = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n";
    let outcomes = dry
        .apply(parse(ok).expect("parses"), None)
        .expect("dry run");
    assert_eq!(outcomes[0].action, Action::Created);
    dry.delete_objects(&[]).expect("nothing to delete");
    let after = crate::authority::embedded::fingerprint(dir.path()).expect("fingerprint");
    assert_eq!(before, after, "nothing written");
}

#[test]
fn delete_names_close_matches_and_takes_a_namespace_whole() {
    let (dir, store) = opened();
    store.create_namespace("team").expect("ns");
    let err = store
        .delete_objects(&[Object::named(Kind::ServiceAccount, "buildr", Some("team"))])
        .expect_err("typo")
        .to_string();
    assert!(err.contains("did you mean builder?"), "{err}");
    let outcomes = store
        .delete_objects(&[
            Object::named(Kind::Namespace, "team", None),
            Object::named(Kind::ServiceAccount, "builder", Some("team")),
        ])
        .expect("delete");
    assert_eq!(outcomes.len(), 2);
    assert!(!dir.path().join("namespaces/team").exists());
}

#[test]
fn errors_about_secrets_do_not_show_their_data() {
    let text =
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: a}\ndata: \"hunter2\"\n";
    let err = parse(text).expect_err("data must be a map").to_string();
    assert!(
        err.contains("line 4: data: invalid type: string \"<redacted>\""),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    assert_eq!(
        redact_strings("a string \"x\" and string \"y"),
        "a string \"<redacted>\" and string \"<redacted>\""
    );
}
