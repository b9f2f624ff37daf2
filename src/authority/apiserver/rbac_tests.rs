//! RoleBindings written over the API: the escalation rules a namespace admin meets, what a
//! write changes for the authority and the CLI (and theirs for the API), concurrent writers,
//! and refused bodies and changes, with nothing written.

use super::*;

/// Whether the authority, asked as the gateway asks it, lets user `name` do `attrs`.
async fn may(embedded: &Embedded, name: &str, attrs: &crate::policy::Attributes) -> bool {
    let user = UserInfo::authenticated(name.into(), "uid".into(), vec![]);
    embedded
        .authorize(&user, None, attrs)
        .await
        .expect("decision")
        .allowed()
}

#[tokio::test]
async fn a_namespace_admin_shares_their_namespace_and_nothing_more() {
    let cx = console();
    let alice = &cx.alice;
    assert!(
        cx.binding_names(alice, "project-a")
            .await
            .contains(&"registry-admin".to_string())
    );
    let response = cx
        .fx
        .send(
            "GET",
            &role_bindings_path("project-b"),
            Some(alice),
            Body::empty(),
        )
        .await;
    let status = failure(response, StatusCode::FORBIDDEN, "Forbidden").await;
    assert!(
        status
            .message
            .unwrap_or_default()
            .contains("in the namespace \"project-b\"")
    );
    let response = cx
        .create(alice, "project-b", json(&binding("x", IMAGE_PULLER, "bob")))
        .await;
    let status = failure(response, StatusCode::FORBIDDEN, "Forbidden").await;
    assert!(
        status
            .message
            .unwrap_or_default()
            .contains("cannot create resource")
    );

    // Binding `admin` would give bob what alice does not have.
    let response = cx
        .create(
            alice,
            "project-a",
            json(&binding("bob-admin", "admin", "bob")),
        )
        .await;
    let status = failure(response, StatusCode::FORBIDDEN, "Forbidden").await;
    let message = status.message.unwrap_or_default();
    let expected = "rolebindings.rbac.authorization.k8s.io \"bob-admin\" is forbidden: user \
                    \"alice\" (groups=[\"devs\" \"system:authenticated\"]) is attempting to grant \
                    RBAC permissions not currently held: ";
    assert!(message.starts_with(expected), "{message}");
    assert!(message.contains("in namespace project-a"), "{message}");
    // A Role is checked the same way, and a role that does not exist cannot be checked.
    let mut deleter = binding("bob-deleter", "image-deleter", "bob");
    deleter.role_ref.kind = "Role".to_string();
    let response = cx.create(alice, "project-a", json(&deleter)).await;
    let status = failure(response, StatusCode::FORBIDDEN, "Forbidden").await;
    assert!(status.message.unwrap_or_default().contains("delete images"));
    let response = cx
        .create(
            alice,
            "project-a",
            json(&binding("bob-ghost", "ghost", "bob")),
        )
        .await;
    let status = failure(response, StatusCode::NOT_FOUND, "NotFound").await;
    assert_eq!(
        status.message.as_deref(),
        Some("clusterroles.rbac.authorization.k8s.io \"ghost\" not found")
    );
    let names = cx.binding_names(alice, "project-a").await;
    assert!(!names.iter().any(|n| n.starts_with("bob-")), "{names:?}");

    // What she holds she may share.
    let response = cx
        .create(
            alice,
            "project-a",
            json(&binding("bob-pull", IMAGE_PULLER, "bob")),
        )
        .await;
    let shared: RoleBinding = created(response).await;
    assert_eq!(shared.metadata.namespace.as_deref(), Some("project-a"));
    let mut reader = binding("bob-reader", "layer-reader", "bob");
    reader.role_ref.kind = "Role".to_string();
    let response = cx.create(alice, "project-a", json(&reader)).await;
    let _: RoleBinding = created(response).await;
    // registry-admin may not update bindings.
    let response = cx
        .fx
        .send(
            "PUT",
            &role_binding_path("project-a", "bob-pull"),
            Some(alice),
            json(&binding("bob-pull", IMAGE_PULLER, "carol")),
        )
        .await;
    failure(response, StatusCode::FORBIDDEN, "Forbidden").await;

    // With `bind` on `admin` she may bind it without holding it, as in Kubernetes.
    cx.fx
        .store
        .add_role(
            "project-a",
            "admin-binder",
            &[SubjectRef::User("alice".to_string())],
        )
        .expect("bind");
    let response = cx
        .create(
            alice,
            "project-a",
            json(&binding("bob-admin", "admin", "bob")),
        )
        .await;
    let _: RoleBinding = created(response).await;
}

// --- what a write changes, and who sees it ---

#[tokio::test]
async fn an_api_binding_grants_at_once_and_cli_changes_show_in_the_api() {
    let cx = console();
    let pull = crate::policy::Attributes::layers("get", "project-a", "app");
    let may_pull = || may(&cx.fx.embedded, "bob", &pull);
    assert!(!may_pull().await);
    let response = cx
        .create(
            &cx.carol,
            "project-a",
            json(&binding(IMAGE_PULLER, IMAGE_PULLER, "bob")),
        )
        .await;
    let made: RoleBinding = created(response).await;
    // No reload asked for: the authority catches up on the change marker.
    assert!(may_pull().await);
    // `regate policy who-can` and `regate get rolebindings` read the same directory.
    let dir = cx.fx.dir.path();
    let snapshot = crate::authority::embedded::load(dir).expect("load");
    assert!(
        snapshot
            .policy
            .who_can(&pull)
            .iter()
            .any(|g| g.name == "bob")
    );
    let listed = crate::authority::embedded::list(dir).expect("list");
    assert!(
        listed
            .role_bindings
            .iter()
            .any(|b| b.metadata.uid == made.metadata.uid)
    );

    // The CLI adds erin to that binding (it is named after the role): its version changes, and
    // a replace based on the one read before is refused.
    cx.fx
        .store
        .add_role(
            "project-a",
            IMAGE_PULLER,
            &[SubjectRef::User("erin".to_string())],
        )
        .expect("add-role-to-user");
    let path = role_binding_path("project-a", IMAGE_PULLER);
    let response = cx
        .fx
        .send("GET", &path, Some(&cx.carol), Body::empty())
        .await;
    let now: RoleBinding = ok(response).await;
    let subjects: Vec<_> = now
        .subjects
        .iter()
        .flatten()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(subjects, ["bob", "erin"]);
    assert_ne!(
        now.metadata.resource_version,
        made.metadata.resource_version
    );
    let mut stale = made.clone();
    stale.subjects = Some(vec![user_subject("mallory")]);
    let response = cx
        .fx
        .send("PUT", &path, Some(&cx.carol), json(&stale))
        .await;
    let status = failure(response, StatusCode::CONFLICT, "Conflict").await;
    assert_eq!(
        status.message.as_deref(),
        Some(
            "Operation cannot be fulfilled on rolebindings.rbac.authorization.k8s.io \
             \"system:image-puller\": the object has been modified; please apply your changes \
             to the latest version and try again"
        )
    );

    // A binding the CLI makes is in the API's list at once.
    cx.fx
        .store
        .add_role(
            "project-a",
            IMAGE_PUSHER,
            &[SubjectRef::User("dave".to_string())],
        )
        .expect("add-role-to-user");
    let names = cx.binding_names(&cx.carol, "project-a").await;
    assert!(names.contains(&IMAGE_PUSHER.to_string()), "{names:?}");

    // Deleted over the API: bob may no longer pull.
    let response = cx
        .fx
        .send("DELETE", &path, Some(&cx.carol), Body::empty())
        .await;
    let status: Status = ok(response).await;
    assert_eq!(status.status.as_deref(), Some("Success"));
    let details = status.details.expect("details");
    assert_eq!(details.name.as_deref(), Some(IMAGE_PULLER));
    assert_eq!(details.kind.as_deref(), Some("rolebindings"));
    assert!(!may_pull().await);
}

#[tokio::test]
async fn two_writers_of_one_version_cannot_both_win() {
    let cx = console();
    let response = cx
        .create(
            &cx.carol,
            "project-a",
            json(&binding("pullers", IMAGE_PULLER, "bob")),
        )
        .await;
    let read: RoleBinding = created(response).await;
    let path = role_binding_path("project-a", "pullers");
    let write = |who: &str| {
        let mut change = read.clone();
        change.subjects = Some(vec![user_subject(who)]);
        cx.fx.send("PUT", &path, Some(&cx.carol), json(&change))
    };
    let (first, second) = tokio::join!(write("x"), write("y"));
    let mut codes = [first.status(), second.status()];
    codes.sort();
    assert_eq!(codes, [StatusCode::OK, StatusCode::CONFLICT]);
}

// --- bodies and changes that are refused, with nothing written ---

#[tokio::test]
async fn bad_bodies_and_changes_are_refused_and_write_nothing() {
    let cx = console();
    let root = &cx.root;
    let before = cx.binding_names(root, "project-a").await;
    for (body, words) in [
        ("not json", "cannot decode the request body"),
        ("[1, 2]", "not a JSON object"),
        (
            r#"{"kind": "ClusterRoleBinding", "metadata": {"name": "x"}}"#,
            "takes a RoleBinding",
        ),
        (
            r#"{"apiVersion": "v1", "metadata": {"name": "x"}}"#,
            "takes a RoleBinding",
        ),
        (
            r#"{"metadata": {"name": 7}}"#,
            "cannot decode the RoleBinding",
        ),
    ] {
        let response = cx.create(root, "project-a", Body::from(body)).await;
        let status = failure(response, StatusCode::BAD_REQUEST, "BadRequest").await;
        let message = status.message.unwrap_or_default();
        assert!(message.contains(words), "{body}: {message}");
    }
    let mut elsewhere = binding("x", IMAGE_PULLER, "bob");
    elsewhere.metadata.namespace = Some("project-b".to_string());
    let response = cx.create(root, "project-a", json(&elsewhere)).await;
    failure(response, StatusCode::BAD_REQUEST, "BadRequest").await;

    let mut robot = binding("x", IMAGE_PULLER, "r2");
    robot.subjects = Some(vec![Subject {
        kind: "Robot".to_string(),
        ..user_subject("r2")
    }]);
    let response = cx.create(root, "project-a", json(&robot)).await;
    let status = failure(response, StatusCode::UNPROCESSABLE_ENTITY, "Invalid").await;
    let causes = status.details.and_then(|d| d.causes).expect("causes");
    assert_eq!(causes[0].field.as_deref(), Some("subjects[0].kind"));
    assert!(status.message.unwrap_or_default().starts_with(
        "RoleBinding.rbac.authorization.k8s.io \"x\" is invalid: subjects[0].kind: \
             Unsupported value: \"Robot\""
    ));
    let mut nameless = binding("", IMAGE_PULLER, "bob");
    nameless.metadata.name = None;
    let response = cx.create(root, "project-a", json(&nameless)).await;
    let status = failure(response, StatusCode::UNPROCESSABLE_ENTITY, "Invalid").await;
    let causes = status.details.and_then(|d| d.causes).expect("causes");
    assert_eq!(causes[0].field.as_deref(), Some("metadata.name"));

    let response = cx
        .create(root, "nowhere", json(&binding("x", IMAGE_PULLER, "bob")))
        .await;
    let status = failure(response, StatusCode::NOT_FOUND, "NotFound").await;
    assert_eq!(
        status.message.as_deref(),
        Some("namespaces \"nowhere\" not found")
    );

    let response = cx
        .create(root, "project-a", json(&binding("x", IMAGE_PULLER, "bob")))
        .await;
    let x: RoleBinding = created(response).await;
    let response = cx
        .create(
            root,
            "project-a",
            json(&binding("x", IMAGE_PULLER, "carol")),
        )
        .await;
    let status = failure(response, StatusCode::CONFLICT, "AlreadyExists").await;
    assert_eq!(
        status.message.as_deref(),
        Some("rolebindings.rbac.authorization.k8s.io \"x\" already exists")
    );

    let path = role_binding_path("project-a", "x");
    let mut other_role = x.clone();
    other_role.role_ref = RoleRef {
        name: IMAGE_PUSHER.to_string(),
        ..x.role_ref.clone()
    };
    let response = cx
        .fx
        .send("PUT", &path, Some(root), json(&other_role))
        .await;
    let status = failure(response, StatusCode::UNPROCESSABLE_ENTITY, "Invalid").await;
    let causes = status.details.and_then(|d| d.causes).expect("causes");
    assert_eq!(causes[0].field.as_deref(), Some("roleRef"));
    assert!(
        causes[0]
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("cannot change roleRef")
    );
    let response = cx
        .fx
        .send(
            "PUT",
            &role_binding_path("project-a", "y"),
            Some(root),
            json(&x),
        )
        .await;
    failure(response, StatusCode::BAD_REQUEST, "BadRequest").await;
    let response = cx
        .fx
        .send(
            "PUT",
            &role_binding_path("project-a", "nobody"),
            Some(root),
            json(&binding("nobody", IMAGE_PULLER, "bob")),
        )
        .await;
    failure(response, StatusCode::NOT_FOUND, "NotFound").await;

    // A dry run answers as a create would and stores nothing.
    let response = cx
        .fx
        .send(
            "POST",
            &format!("{}?dryRun=All", role_bindings_path("project-a")),
            Some(root),
            json(&binding("dry", IMAGE_PULLER, "bob")),
        )
        .await;
    let _: RoleBinding = created(response).await;

    let mut after = cx.binding_names(root, "project-a").await;
    after.retain(|n| n != "x");
    assert_eq!(after, before);
    let response = cx.fx.send("GET", &path, Some(root), Body::empty()).await;
    let stored: RoleBinding = ok(response).await;
    assert_eq!(stored, x, "the refused replaces changed nothing");
}
