use std::fs;
use std::time::Duration;

use secrecy::SecretString;

use super::*;

fn open() -> (tempfile::TempDir, Arc<Embedded>, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded = Embedded::open(dir.path()).expect("open");
    let store = Store::open(dir.path()).expect("store");
    (dir, embedded, store)
}

fn secret(token: &str) -> SecretString {
    SecretString::from(token.to_string())
}

fn sa_token(store: &Store, ns: &str, name: &str) -> SecretString {
    let issued = store
        .create_service_account_token(ns, name, Duration::from_secs(600))
        .expect("token");
    secret(&issued.token)
}

async fn identity(embedded: &Embedded, token: &SecretString) -> Authn {
    embedded.authenticate(token).await.expect("answer")
}

#[tokio::test]
async fn a_service_account_token_proves_the_service_account() {
    let (_dir, embedded, store) = open();
    store.create_namespace("a").expect("ns");
    assert!(embedded.reload().expect("reload"));
    let token = sa_token(&store, "a", "builder");
    let Authn::User(user) = identity(&embedded, &token).await else {
        panic!("not authenticated");
    };
    assert_eq!(user.name, "system:serviceaccount:a:builder");
    assert!(
        user.groups
            .contains(&"system:serviceaccounts:a".to_string())
    );
    let push = Attributes::layers("update", "a", "app");
    assert!(
        embedded
            .authorize(&user, None, &push)
            .await
            .expect("decide")
            .allowed()
    );
}

#[tokio::test]
async fn a_user_token_carries_the_stored_groups() {
    let (_dir, embedded, store) = open();
    store.create_user("alice", &["devs".into()]).expect("user");
    embedded.reload().expect("reload");
    let issued = store
        .create_user_token("alice", Duration::from_secs(60))
        .expect("token");
    let Authn::User(user) = identity(&embedded, &secret(&issued.token)).await else {
        panic!("not authenticated");
    };
    assert_eq!(user.name, "alice");
    assert_eq!(user.groups, vec!["devs", "system:authenticated"]);
}

#[tokio::test]
async fn deleting_a_namespace_revokes_its_service_account_tokens() {
    let (_dir, embedded, store) = open();
    store.create_namespace("a").expect("ns");
    embedded.reload().expect("reload");
    let token = sa_token(&store, "a", "default");
    let Authn::User(_) = identity(&embedded, &token).await else {
        panic!("not authenticated");
    };
    store.delete_namespace("a").expect("delete");
    let Authn::Invalid { reason } = identity(&embedded, &token).await else {
        panic!("token of a deleted service account accepted");
    };
    assert!(reason.contains("no longer exists"), "{reason}");
}

/// A change the CLI makes is in force on the next authentication, without waiting for the
/// reloader (which is not even running here): the writer's lock bumps the change marker.
#[tokio::test]
async fn a_cli_change_is_in_force_on_the_next_authentication() {
    let (_dir, embedded, store) = open();
    store.create_namespace("tmp1").expect("ns");
    let token = sa_token(&store, "tmp1", "builder");
    let Authn::User(user) = identity(&embedded, &token).await else {
        panic!("a new service account's token refused before a reload");
    };
    assert_eq!(user.name, "system:serviceaccount:tmp1:builder");
    store.delete_namespace("tmp1").expect("delete");
    let Authn::Invalid { .. } = identity(&embedded, &token).await else {
        panic!("a deleted namespace's token accepted before a reload");
    };
}

/// A subject written by hand (no writer's lock, so no marker) is looked for in the directory
/// before its token is called deleted.
#[tokio::test]
async fn a_subject_the_snapshot_lacks_is_looked_for_in_the_directory() {
    let (dir, embedded, _store) = open();
    let other = Store::open(dir.path()).expect("store");
    // Written with the marker removed afterwards: only the directory knows.
    other.create_namespace("late").expect("ns");
    let token = sa_token(&other, "late", "default");
    std::fs::remove_file(dir.path().join(".changes")).expect("marker");
    // The marker's removal is not taken for a change: only the directory knows.
    let changes = embedded.marker.changes();
    embedded.caught_up.store(changes, Ordering::SeqCst);
    let Authn::User(_) = identity(&embedded, &token).await else {
        panic!("an existing subject reported deleted");
    };
}

#[tokio::test]
async fn the_token_of_a_recreated_service_account_is_refused() {
    let (_dir, embedded, store) = open();
    store.create_namespace("a").expect("ns");
    store.create_service_account("a", "robot").expect("sa");
    let old = sa_token(&store, "a", "robot");
    store.delete_service_account("a", "robot").expect("delete");
    store
        .create_service_account("a", "robot")
        .expect("recreate");
    embedded.reload().expect("reload");
    assert!(matches!(
        identity(&embedded, &old).await,
        Authn::Invalid { .. }
    ));
    let new = sa_token(&store, "a", "robot");
    assert!(matches!(identity(&embedded, &new).await, Authn::User(_)));
}

#[tokio::test]
async fn a_bad_token_is_invalid_and_the_reason_does_not_echo_it() {
    let (_dir, embedded, _store) = open();
    let token = "not.a.jwt-secret-value";
    let Authn::Invalid { reason } = identity(&embedded, &secret(token)).await else {
        panic!("accepted garbage");
    };
    assert!(!reason.contains("secret-value"), "{reason}");
    let other = Signer::from_secret(&[7u8; 32])
        .issue_api_token("alice", "u", Duration::from_secs(60))
        .expect("token");
    assert!(matches!(
        identity(&embedded, &secret(&other.token)).await,
        Authn::Invalid { .. }
    ));
}

#[tokio::test]
async fn a_broken_file_keeps_the_last_good_policy() {
    let (dir, embedded, store) = open();
    store.create_namespace("a").expect("ns");
    embedded.reload().expect("reload");
    let generation = embedded.generation();
    let good = embedded.snapshot();

    let path = Layout::new(dir.path())
        .role_bindings("a")
        .join("system:image-pullers.yaml");
    let text = fs::read_to_string(&path).expect("read");
    fs::write(
        &path,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nroleRef: [\n",
    )
    .expect("break");
    let err = embedded.reload().expect_err("broken");
    assert!(
        err.to_string().starts_with(&format!("{}:", path.display())),
        "{err}"
    );
    assert!(
        matches!(err, StoreError::Parse { line: Some(_), .. }),
        "{err}"
    );
    assert_eq!(embedded.generation(), generation);
    assert!(Arc::ptr_eq(&good, &embedded.snapshot()));
    let default =
        UserInfo::authenticated("system:serviceaccount:a:default".into(), "u".into(), vec![]);
    let pull = Attributes::layers("get", "a", "app");
    assert!(
        embedded
            .authorize(&default, None, &pull)
            .await
            .expect("decide")
            .allowed()
    );
    // The same broken state is not re-read.
    assert!(!embedded.reload().expect("unchanged"));

    fs::write(&path, text).expect("fix");
    assert!(embedded.reload().expect("fixed"));
    assert!(embedded.generation() > generation);
}

#[tokio::test]
async fn the_reloader_puts_changes_in_force_within_a_second() {
    let (_dir, embedded, store) = open();
    embedded.spawn_reloader();
    store.create_namespace("a").expect("ns");
    let generation = embedded.generation();
    let anonymous = UserInfo::anonymous();
    let pull = Attributes::layers("get", "a", "app");
    assert!(!embedded.anonymous_has_grants().await.expect("answer"));
    store
        .add_role(
            "a",
            "system:image-puller",
            &[SubjectRef::Group("system:unauthenticated".into())],
        )
        .expect("grant");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(embedded.generation() > generation);
    assert!(
        embedded
            .authorize(&anonymous, None, &pull)
            .await
            .expect("decide")
            .allowed()
    );
    assert!(embedded.anonymous_has_grants().await.expect("answer"));
}

/// Creates docker config Secret `name` in `ns` with one entry, for `quay.io`, whose user name is
/// `user` (so a keyring's entries tell which Secret they came from); `auth` replaces the entry's
/// base64 `auth` when given (to make a Secret the keyring cannot use).
pub(crate) fn pull_secret(store: &Store, ns: &str, name: &str, user: &str, auth: Option<&str>) {
    use base64::Engine;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw"));
    let auth = auth.unwrap_or(&encoded);
    let json = format!(r#"{{"auths":{{"quay.io":{{"auth":"{auth}"}}}}}}"#);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(
            [(
                ".dockerconfigjson".to_string(),
                ByteString(json.into_bytes()),
            )]
            .into(),
        ),
        ..Secret::default()
    };
    store.create_secret_object(secret).expect("create secret");
}

fn link_for_pull(store: &Store, ns: &str, sa: &str, secrets: &[&str]) {
    let names: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
    let pull = ops::LinkFor {
        pull: true,
        mount: false,
    };
    store
        .link_secrets(ns, sa, &names, pull)
        .expect("link for pull");
}

/// The user names of `keyring`'s entries, in the order they are tried.
fn tried(keyring: &Keyring) -> Vec<String> {
    keyring
        .entries()
        .map(|e| match &e.credential {
            crate::upstream::keyring::Credential::Basic { username, .. } => username.clone(),
            other => panic!("unexpected credential {other:?}"),
        })
        .collect()
}

fn sa_user(ns: &str, name: &str) -> UserInfo {
    UserInfo::authenticated(
        crate::identity::service_account_user(ns, name),
        "uid".into(),
        vec![],
    )
}

#[tokio::test]
async fn pull_keyring_tries_linked_secrets_then_the_namespaces_by_name_each_once() {
    let (dir, embedded, store) = open();
    store.create_namespace("team").expect("ns");
    store.create_namespace("team-x").expect("ns");
    for name in ["zeta", "beta", "alpha", "gone"] {
        pull_secret(&store, "team", name, name, None);
    }
    pull_secret(&store, "team", "broken", "broken", Some("not base64!"));
    pull_secret(&store, "team-x", "elsewhere", "elsewhere", None);
    link_for_pull(
        &store,
        "team",
        "builder",
        &["zeta", "gone", "broken", "beta"],
    );
    // A linked Secret deleted afterwards is skipped.
    fs::remove_file(Layout::new(dir.path()).secrets("team").join("gone.yaml")).expect("rm");
    embedded.reload().expect("reload");

    let builder = sa_user("team", "builder");
    let keyring = embedded
        .pull_keyring(&builder, "team")
        .await
        .expect("keyring");
    assert_eq!(tried(&keyring), ["zeta", "beta", "alpha"]);

    // Not a service account, or one without links: the namespace's Secrets by name.
    let alice = UserInfo::authenticated("alice".into(), "uid".into(), vec![]);
    for user in [alice, UserInfo::anonymous(), sa_user("team", "default")] {
        let keyring = embedded.pull_keyring(&user, "team").await.expect("keyring");
        assert_eq!(tried(&keyring), ["alpha", "beta", "zeta"], "{}", user.name);
    }
    let keyring = embedded
        .pull_keyring(&builder, "nowhere")
        .await
        .expect("keyring");
    assert_eq!(tried(&keyring), ["zeta", "beta"], "linked ones only");
}

#[tokio::test]
async fn pull_keyring_takes_linked_secrets_from_the_service_accounts_namespace() {
    let (_dir, embedded, store) = open();
    store.create_namespace("build").expect("ns");
    store.create_namespace("app").expect("ns");
    pull_secret(&store, "build", "cred", "build-cred", None);
    pull_secret(&store, "build", "unlinked", "build-unlinked", None);
    // Same name as the linked one, another namespace: not a duplicate.
    pull_secret(&store, "app", "cred", "app-cred", None);
    link_for_pull(&store, "build", "default", &["cred"]);
    embedded.reload().expect("reload");
    let keyring = embedded
        .pull_keyring(&sa_user("build", "default"), "app")
        .await
        .expect("keyring");
    assert_eq!(tried(&keyring), ["build-cred", "app-cred"]);

    // Unlinking takes effect with the next snapshot.
    store
        .unlink_secrets("build", "default", &["cred".into()])
        .expect("unlink");
    embedded.reload().expect("reload");
    let keyring = embedded
        .pull_keyring(&sa_user("build", "default"), "app")
        .await
        .expect("keyring");
    assert_eq!(tried(&keyring), ["app-cred"]);
}

/// A grant made with the CLI is in force for the next decision, for anonymous callers too,
/// without waiting for the reloader (not running here).
#[tokio::test]
async fn a_grant_is_in_force_for_the_next_decision() {
    let (_dir, embedded, store) = open();
    store.create_namespace("pub").expect("ns");
    let before = embedded.generation();
    let pull = Attributes::layers("get", "pub", "app");
    let anonymous = UserInfo::anonymous();
    assert!(
        !embedded
            .authorize(&anonymous, None, &pull)
            .await
            .expect("decide")
            .allowed()
    );
    store
        .add_role(
            "pub",
            "system:image-puller",
            &[SubjectRef::Group("system:unauthenticated".into())],
        )
        .expect("grant");
    assert_ne!(embedded.generation(), before, "a new generation at once");
    assert!(
        embedded
            .authorize(&anonymous, None, &pull)
            .await
            .expect("decide")
            .allowed()
    );
    assert!(embedded.anonymous_has_grants().await.expect("answer"));
}

#[tokio::test]
async fn the_callers_made_at_load_are_those_groups_of_would_make() {
    let (_dir, embedded, store) = open();
    store.create_namespace("a").expect("ns");
    store.create_user("alice", &["devs".into()]).expect("user");
    embedded.reload().expect("reload");
    let snapshot = embedded.snapshot();
    let mut subjects: Vec<(String, String)> = snapshot
        .service_accounts
        .iter()
        .map(|((ns, sa), uid)| (crate::identity::service_account_user(ns, sa), uid.clone()))
        .chain(
            snapshot
                .users
                .iter()
                .map(|(name, user)| (name.clone(), user.uid.clone())),
        )
        .collect();
    subjects.sort();
    assert!(subjects.len() >= 4, "{subjects:?}");
    for (name, uid) in &subjects {
        let expected = snapshot
            .groups_of(name, uid)
            .map(|groups| UserInfo::authenticated(name.clone(), uid.clone(), groups));
        let made = snapshot.caller(name, uid);
        assert_eq!(
            made.as_ref().map(|u| (&u.name, &u.uid, &u.groups)),
            expected.as_ref().map(|u| (&u.name, &u.uid, &u.groups)),
            "{name}"
        );
        assert!(snapshot.caller(name, "another-uid").is_none(), "{name}");
    }
}
