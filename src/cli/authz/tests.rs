use k8s_openapi::api::rbac::v1::{RoleBinding, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::authority::embedded::StoredUser;
use crate::authority::embedded::{cluster_role_ref, cluster_roles, namespace_objects};

/// project-a and project-b as `regate create namespace` makes them, user alice (group
/// developers), and alice bound to system:image-puller in project-b.
fn snapshot() -> Snapshot {
    let mut snapshot = Snapshot::default();
    let mut bindings = Vec::new();
    for ns in ["project-a", "project-b"] {
        let objects = namespace_objects(ns);
        for sa in objects.service_accounts {
            let name = sa.metadata.name.unwrap_or_default();
            let uid = format!("uid-{ns}-{name}");
            snapshot
                .service_accounts
                .insert((ns.to_string(), name), uid);
        }
        bindings.extend(objects.role_bindings);
        snapshot.namespaces.insert(ns.to_string());
    }
    bindings.push(RoleBinding {
        metadata: ObjectMeta {
            name: Some("system:image-puller".into()),
            namespace: Some("project-b".into()),
            ..ObjectMeta::default()
        },
        role_ref: cluster_role_ref(IMAGE_PULLER),
        subjects: Some(vec![Subject {
            kind: "User".into(),
            name: "alice".into(),
            ..Subject::default()
        }]),
    });
    snapshot.users.insert(
        "alice".into(),
        StoredUser {
            uid: "uid-alice".into(),
            groups: vec!["developers".into()],
        },
    );
    snapshot.policy = Policy::new(cluster_roles(), Vec::new(), Vec::new(), bindings);
    snapshot
}

fn request(verb: &str, resource: &str, name: Option<&str>, ns: Option<&str>) -> Request {
    Request {
        verb: verb.into(),
        resource: resource.into(),
        name: name.map(Into::into),
        namespace: ns.map(Into::into),
    }
}

fn subject(name: &str, groups: &[&str]) -> AsSubject {
    AsSubject {
        subject: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

fn error_of<T: std::fmt::Debug>(result: anyhow::Result<T>) -> String {
    format!("{:#}", result.expect_err("an error"))
}

#[test]
fn who_can_lists_users_and_groups_with_their_bindings() {
    let snapshot = snapshot();
    let attrs = request("get", "imagestreams/layers", None, Some("project-b"))
        .attributes(&snapshot)
        .unwrap();
    assert_eq!(
        who_can(&snapshot.policy, &attrs),
        "\
Namespace: project-b
Verb:      get
Resource:  imagestreams.image.openshift.io/layers

Users:  alice                                    RoleBinding project-b/system:image-puller (ClusterRole system:image-puller)
        system:serviceaccount:project-b:builder  RoleBinding project-b/system:image-builders (ClusterRole system:image-builder)

Groups: system:serviceaccounts:project-b         RoleBinding project-b/system:image-pullers (ClusterRole system:image-puller)
"
    );
}

#[test]
fn who_can_says_none_and_drops_the_namespace_of_cluster_resources() {
    let snapshot = snapshot();
    let attrs = request("delete", "images", None, Some("project-a"))
        .attributes(&snapshot)
        .unwrap();
    assert_eq!(attrs, Attributes::cluster("delete", "images"));
    assert_eq!(
        who_can(&snapshot.policy, &attrs),
        "\
Namespace: <all>
Verb:      delete
Resource:  images.image.openshift.io

Users:  none

Groups: none
"
    );
}

#[test]
fn who_can_push_is_the_builder_only() {
    let snapshot = snapshot();
    let attrs = request(
        "update",
        "imagestreams/layers",
        Some("app"),
        Some("project-a"),
    )
    .attributes(&snapshot)
    .unwrap();
    let who = snapshot.policy.who_can(&attrs);
    assert_eq!(who.len(), 1, "{who:?}");
    assert_eq!(who[0].name, "system:serviceaccount:project-a:builder");
    assert_eq!(who[0].kind, "ServiceAccount");
}

#[test]
fn can_i_answers_yes_or_no_and_says_why_when_verbose() {
    let snapshot = snapshot();
    let alice = identity(&snapshot, &subject("alice", &[])).unwrap();
    assert_eq!(
        alice.groups,
        ["developers", "system:authenticated"],
        "stored and implicit groups"
    );
    let pull_b = Attributes::layers("get", "project-b", "");
    let pull_a = Attributes::layers("get", "project-a", "");
    let answer = |attrs: &Attributes, verbose| {
        let decision = snapshot.policy.evaluate(&alice, attrs);
        can_i(&snapshot.policy, &alice, attrs, &decision, verbose)
    };
    assert_eq!(answer(&pull_b, false), "yes\n");
    assert_eq!(answer(&pull_a, false), "no\n");
    assert_eq!(
        answer(&pull_b, true),
        "yes\nallowed by RoleBinding project-b/system:image-puller (ClusterRole system:image-puller)\n"
    );
    assert_eq!(
        answer(&pull_a, true),
        "no\nno ClusterRoleBinding nor RoleBinding of namespace project-a grants alice get \
         imagestreams/layers in namespace project-a\n\
         to grant it: regate policy add-role-to-user system:image-puller alice -n project-a\n"
    );
}

#[test]
fn as_group_and_service_accounts_get_their_groups() {
    let snapshot = snapshot();
    let sa = identity(
        &snapshot,
        &subject("system:serviceaccount:project-a:default", &["extra"]),
    )
    .unwrap();
    assert_eq!(sa.uid, "uid-project-a-default");
    assert_eq!(
        sa.groups,
        [
            "extra",
            "system:authenticated",
            "system:serviceaccounts",
            "system:serviceaccounts:project-a"
        ]
    );
    // The group binding of project-a lets every service account of project-a pull there.
    let pull_a = Attributes::layers("get", "project-a", "app");
    assert!(snapshot.policy.evaluate(&sa, &pull_a).allowed());
    // --as-group grants what a binding of that group grants.
    let bob = identity(
        &snapshot,
        &subject("bob", &["system:serviceaccounts:project-b"]),
    )
    .unwrap();
    let pull_b = Attributes::layers("get", "project-b", "app");
    assert!(snapshot.policy.evaluate(&bob, &pull_b).allowed());
}

#[test]
fn explain_names_the_deciding_bindings_and_the_missing_grants() {
    let snapshot = snapshot();
    let name = Name::parse("project-b/app").unwrap();
    let sa = identity(
        &snapshot,
        &subject("system:serviceaccount:project-a:default", &[]),
    )
    .unwrap();
    assert_eq!(
        explain(&snapshot.policy, &sa, &name),
        "\
Repository: project-b/app (namespace project-b, image stream app)
Subject:    system:serviceaccount:project-a:default (groups system:authenticated, system:serviceaccounts, system:serviceaccounts:project-a)

pull:   no   get imagestreams/layers: no binding
             to grant it: regate policy add-role-to-user system:image-puller system:serviceaccount:project-a:default -n project-b
push:   no   get imagestreams/layers: no binding
             update imagestreams/layers: no binding
             to grant it: regate policy add-role-to-user system:image-pusher system:serviceaccount:project-a:default -n project-b
delete: no   delete images (cluster scope): no binding
             to grant it: regate policy add-cluster-role-to-user system:image-pruner system:serviceaccount:project-a:default
"
    );
    let alice = identity(&snapshot, &subject("alice", &[])).unwrap();
    assert_eq!(
        explain(&snapshot.policy, &alice, &name),
        "\
Repository: project-b/app (namespace project-b, image stream app)
Subject:    alice (groups developers, system:authenticated)

pull:   yes  get imagestreams/layers: RoleBinding project-b/system:image-puller (ClusterRole system:image-puller)
push:   no   get imagestreams/layers: RoleBinding project-b/system:image-puller (ClusterRole system:image-puller)
             update imagestreams/layers: no binding
             to grant it: regate policy add-role-to-user system:image-pusher alice -n project-b
delete: no   delete images (cluster scope): no binding
             to grant it: regate policy add-cluster-role-to-user system:image-pruner alice
"
    );
}

#[test]
fn mistakes_name_the_close_matches() {
    let snapshot = snapshot();
    let attributes = |verb, resource, ns| request(verb, resource, None, ns).attributes(&snapshot);
    assert_eq!(
        error_of(attributes("get", "imagestreams/layers", Some("project-c"))),
        "namespace \"project-c\" not found; did you mean project-a or project-b?; \
         create it with: regate create namespace project-c"
    );
    assert!(
        error_of(attributes("get", "imagestream/layers", Some("project-a"))).starts_with(
            "unknown resource \"imagestream/layers\"; did you mean imagestreams/layers"
        ),
    );
    assert!(
        error_of(attributes("pull", "imagestreams/layers", None))
            .starts_with("\"pull\" is not an RBAC verb: a pull is `get`"),
    );
    assert!(
        error_of(attributes("gett", "images", None))
            .starts_with("unknown verb \"gett\"; did you mean get?")
    );
    let who = |name: &str| error_of(identity(&snapshot, &subject(name, &[])));
    assert_eq!(
        who("system:serviceaccount:project-a:buidler"),
        "serviceaccount \"buidler\" not found in namespace \"project-a\"; did you mean builder?; \
         create it with: regate create serviceaccount buidler -n project-a"
    );
    assert_eq!(
        who("system:serviceacount:project-a:builder"),
        "unknown subject kind \"system:serviceacount\" in \
         \"system:serviceacount:project-a:builder\"; did you mean system:serviceaccount? \
         (a service account is system:serviceaccount:NAMESPACE:NAME)"
    );
    assert!(who("system:serviceaccounts:project-a").contains("is a group, not a user"));
    assert!(who("system:serviceaccount:project-a").contains("NAMESPACE:NAME"));
    assert!(who("system:serviceaccount:project-z:default").contains("did you mean project-a"));
}

#[test]
fn resources_take_an_explicit_group() {
    assert_eq!(
        parse_resource("imagestreams.image.openshift.io/layers").unwrap(),
        (
            IMAGE_GROUP.into(),
            "imagestreams".into(),
            "layers".into(),
            true
        )
    );
    assert_eq!(
        parse_resource("rolebindings").unwrap(),
        (
            RBAC_GROUP.into(),
            "rolebindings".into(),
            String::new(),
            true
        )
    );
}

#[test]
fn who_can_reads_cluster_bindings_and_service_accounts_without_namespace() {
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    let mut snapshot = snapshot();
    let subject = |kind: &str, name: &str| Subject {
        kind: kind.into(),
        name: name.into(),
        ..Subject::default()
    };
    let pruners = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some("pruners".into()),
            ..ObjectMeta::default()
        },
        role_ref: cluster_role_ref(IMAGE_PRUNER),
        subjects: Some(vec![
            subject("User", "alice"),
            // A ServiceAccount subject of a cluster binding needs its namespace: names nobody.
            subject("ServiceAccount", "robot"),
            subject("Robot", "r2d2"),
        ]),
    };
    let pushers = RoleBinding {
        metadata: ObjectMeta {
            name: Some("pushers".into()),
            namespace: Some("project-a".into()),
            ..ObjectMeta::default()
        },
        role_ref: cluster_role_ref(IMAGE_PUSHER),
        // Without a namespace, the binding's.
        subjects: Some(vec![subject("ServiceAccount", "deployer")]),
    };
    snapshot.policy = Policy::new(cluster_roles(), Vec::new(), vec![pruners], vec![pushers]);
    let who = snapshot
        .policy
        .who_can(&Attributes::cluster("delete", "images"));
    assert_eq!(
        who,
        [Grantee {
            kind: "User".into(),
            name: "alice".into(),
            by: "ClusterRoleBinding pruners (ClusterRole system:image-pruner)".into(),
        }]
    );
    let who = snapshot
        .policy
        .who_can(&Attributes::layers("update", "project-a", "app"));
    assert_eq!(
        who,
        [Grantee {
            kind: "ServiceAccount".into(),
            name: "system:serviceaccount:project-a:deployer".into(),
            by: "RoleBinding project-a/pushers (ClusterRole system:image-pusher)".into(),
        }]
    );
    // Another namespace's check does not see project-a's binding.
    assert!(
        snapshot
            .policy
            .who_can(&Attributes::layers("update", "project-b", "app"))
            .is_empty()
    );
}

#[test]
fn anonymous_is_unauthenticated() {
    let snapshot = snapshot();
    let anonymous = identity(&snapshot, &subject("system:anonymous", &[])).unwrap();
    assert_eq!(anonymous, UserInfo::anonymous());
    let pull = Attributes::layers("get", "project-b", "app");
    assert!(!snapshot.policy.evaluate(&anonymous, &pull).allowed());
    let with_group = identity(
        &snapshot,
        &subject("system:anonymous", &["system:serviceaccounts:project-b"]),
    )
    .unwrap();
    assert!(snapshot.policy.evaluate(&with_group, &pull).allowed());
}
