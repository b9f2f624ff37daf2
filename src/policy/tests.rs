use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::identity::{UserInfo, service_account_user};

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(strings(groups)),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

fn meta(namespace: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        ..ObjectMeta::default()
    }
}

fn cluster_role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: meta(None, name),
        rules: Some(rules),
        ..ClusterRole::default()
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: Some("rbac.authorization.k8s.io".to_string()),
        kind: kind.to_string(),
        name: name.to_string(),
    }
}

fn subject(kind: &str, name: &str, namespace: Option<&str>) -> Subject {
    Subject {
        kind: kind.to_string(),
        name: name.to_string(),
        namespace: namespace.map(str::to_string),
        ..Subject::default()
    }
}

fn role_binding(namespace: &str, name: &str, role: RoleRef, subjects: Vec<Subject>) -> RoleBinding {
    RoleBinding {
        metadata: meta(Some(namespace), name),
        role_ref: role,
        subjects: Some(subjects),
    }
}

fn cluster_binding(name: &str, role: &str, subjects: Vec<Subject>) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(None, name),
        role_ref: role_ref(CLUSTER_ROLE_KIND, role),
        subjects: Some(subjects),
    }
}

fn alice() -> UserInfo {
    UserInfo::authenticated("alice".into(), "uid-alice".into(), vec!["devs".into()])
}

fn sa(namespace: &str, name: &str) -> UserInfo {
    UserInfo::authenticated(service_account_user(namespace, name), "uid".into(), vec![])
}

fn pull(namespace: &str) -> Attributes {
    Attributes::layers("get", namespace, "app")
}

/// A policy with one ClusterRole `r` holding `rules`, bound to user alice in namespace `a`.
fn alice_in_a(rules: Vec<PolicyRule>) -> Policy {
    Policy::new(
        vec![cluster_role("r", rules)],
        vec![],
        vec![],
        vec![role_binding(
            "a",
            "r",
            role_ref(CLUSTER_ROLE_KIND, "r"),
            vec![subject(USER_KIND, "alice", None)],
        )],
    )
}

fn allowed(policy: &Policy, user: &UserInfo, attrs: &Attributes) -> bool {
    policy.evaluate(user, attrs).allowed()
}

#[test]
fn role_binding_to_cluster_role_allows_in_its_namespace_only() {
    let policy = alice_in_a(vec![rule(
        &[IMAGE_GROUP],
        &["imagestreams/layers"],
        &["get"],
    )]);
    assert_eq!(
        policy.evaluate(&alice(), &pull("a")),
        Decision::Allow {
            by: "RoleBinding a/r (ClusterRole r)".into()
        }
    );
    assert_eq!(
        policy.evaluate(&alice(), &pull("b")),
        Decision::deny("no RoleBinding in b or ClusterRoleBinding grants it")
    );
    // Nor at cluster scope.
    assert!(!allowed(
        &policy,
        &alice(),
        &Attributes::cluster("get", "imagestreams")
    ));
}

#[test]
fn verbs_must_match_or_be_star() {
    let policy = alice_in_a(vec![rule(
        &[IMAGE_GROUP],
        &["imagestreams/layers"],
        &["get"],
    )]);
    assert!(!allowed(
        &policy,
        &alice(),
        &Attributes::layers("update", "a", "app")
    ));
    let policy = alice_in_a(vec![rule(&[IMAGE_GROUP], &["imagestreams/layers"], &["*"])]);
    assert!(allowed(
        &policy,
        &alice(),
        &Attributes::layers("update", "a", "app")
    ));
}

#[test]
fn api_groups_star_and_legacy_unification() {
    for groups in [&["*"][..], &[""], &[IMAGE_GROUP]] {
        let policy = alice_in_a(vec![rule(groups, &["imagestreams/layers"], &["get"])]);
        assert!(allowed(&policy, &alice(), &pull("a")), "{groups:?}");
    }
    // A request in the legacy group is matched by an image.openshift.io rule too.
    let policy = alice_in_a(vec![rule(
        &[IMAGE_GROUP],
        &["imagestreams/layers"],
        &["get"],
    )]);
    let mut legacy = pull("a");
    legacy.group = String::new();
    assert!(allowed(&policy, &alice(), &legacy));
    // Another group does not match.
    let policy = alice_in_a(vec![rule(&["apps"], &["imagestreams/layers"], &["get"])]);
    assert!(!allowed(&policy, &alice(), &pull("a")));
}

#[test]
fn resources_with_subresources() {
    let cases = [
        ("*", true),
        ("imagestreams/layers", true),
        ("*/layers", true),
        ("imagestreams/*", true),
        // The resource alone does not grant its subresources, as in Kubernetes.
        ("imagestreams", false),
        ("imagestreams/secrets", false),
        ("images/layers", false),
    ];
    for (resource, expected) in cases {
        let policy = alice_in_a(vec![rule(&[IMAGE_GROUP], &[resource], &["get"])]);
        assert_eq!(
            allowed(&policy, &alice(), &pull("a")),
            expected,
            "{resource}"
        );
    }
    // A subresource rule does not grant the resource itself.
    let policy = alice_in_a(vec![rule(&[IMAGE_GROUP], &["imagestreams/*"], &["get"])]);
    let mut whole = pull("a");
    whole.subresource = String::new();
    assert!(!allowed(&policy, &alice(), &whole));
}

#[test]
fn resource_names_restrict_when_present() {
    let mut named = rule(&[IMAGE_GROUP], &["imagestreams/layers"], &["get"]);
    named.resource_names = Some(strings(&["app"]));
    let policy = alice_in_a(vec![named]);
    assert!(allowed(
        &policy,
        &alice(),
        &Attributes::layers("get", "a", "app")
    ));
    assert!(!allowed(
        &policy,
        &alice(),
        &Attributes::layers("get", "a", "other")
    ));
    // A request for all names is not granted by a rule listing some.
    assert!(!allowed(
        &policy,
        &alice(),
        &Attributes::layers("get", "a", "")
    ));
}

#[test]
fn group_subjects_including_implicit_groups() {
    let rules = vec![rule(&[IMAGE_GROUP], &["imagestreams/layers"], &["get"])];
    let bound_to = |group: &str| {
        Policy::new(
            vec![cluster_role("r", rules.clone())],
            vec![],
            vec![],
            vec![role_binding(
                "a",
                "b",
                role_ref(CLUSTER_ROLE_KIND, "r"),
                vec![subject(GROUP_KIND, group, None)],
            )],
        )
    };
    let anonymous = UserInfo::anonymous();

    let policy = bound_to("system:authenticated");
    assert!(allowed(&policy, &alice(), &pull("a")));
    assert!(allowed(&policy, &sa("x", "default"), &pull("a")));
    assert!(!allowed(&policy, &anonymous, &pull("a")));

    let policy = bound_to("system:unauthenticated");
    assert!(allowed(&policy, &anonymous, &pull("a")));
    assert!(!allowed(&policy, &alice(), &pull("a")));

    let policy = bound_to("system:serviceaccounts:x");
    assert!(allowed(&policy, &sa("x", "default"), &pull("a")));
    assert!(!allowed(&policy, &sa("y", "default"), &pull("a")));
    assert!(!allowed(&policy, &alice(), &pull("a")));

    let policy = bound_to("devs");
    assert!(allowed(&policy, &alice(), &pull("a")));
}

#[test]
fn service_account_subjects() {
    let rules = vec![rule(&[IMAGE_GROUP], &["imagestreams/layers"], &["get"])];
    let bound_to = |subject: Subject| {
        Policy::new(
            vec![cluster_role("r", rules.clone())],
            vec![],
            vec![cluster_binding("c", "r", vec![subject.clone()])],
            vec![role_binding(
                "a",
                "b",
                role_ref(CLUSTER_ROLE_KIND, "r"),
                vec![subject],
            )],
        )
    };
    // Namespace given.
    let policy = bound_to(subject(SERVICE_ACCOUNT_KIND, "builder", Some("x")));
    assert!(allowed(&policy, &sa("x", "builder"), &pull("b")));
    assert!(!allowed(&policy, &sa("y", "builder"), &pull("b")));
    assert!(!allowed(&policy, &sa("x", "default"), &pull("b")));

    // No namespace: the RoleBinding's namespace; a ClusterRoleBinding's subject then matches no one.
    let policy = bound_to(subject(SERVICE_ACCOUNT_KIND, "builder", None));
    assert!(allowed(&policy, &sa("a", "builder"), &pull("a")));
    assert!(!allowed(&policy, &sa("a", "builder"), &pull("b")));
    assert!(!allowed(&policy, &sa("x", "builder"), &pull("a")));

    // A user named like a service account but given as a User subject is matched by name.
    let policy = bound_to(subject(
        USER_KIND,
        &service_account_user("x", "builder"),
        None,
    ));
    assert!(allowed(&policy, &sa("x", "builder"), &pull("z")));
}

#[test]
fn cluster_role_binding_applies_everywhere_and_at_cluster_scope() {
    let policy = Policy::new(
        vec![cluster_role(
            "system:image-pruner",
            vec![rule(&[IMAGE_GROUP], &["images"], &["delete"])],
        )],
        vec![],
        vec![cluster_binding(
            "pruners",
            "system:image-pruner",
            vec![subject(USER_KIND, "alice", None)],
        )],
        vec![],
    );
    assert_eq!(
        policy.evaluate(&alice(), &Attributes::cluster("delete", "images")),
        Decision::Allow {
            by: "ClusterRoleBinding pruners (ClusterRole system:image-pruner)".into()
        }
    );
    let mut namespaced = Attributes::cluster("delete", "images");
    namespaced.namespace = "anything".into();
    assert!(allowed(&policy, &alice(), &namespaced));
    assert!(!allowed(&policy, &sa("x", "default"), &namespaced));
}

#[test]
fn role_binding_to_role_uses_the_role_of_its_own_namespace() {
    let role = |namespace: &str, verbs: &[&str]| Role {
        metadata: meta(Some(namespace), "puller"),
        rules: Some(vec![rule(&[IMAGE_GROUP], &["imagestreams/layers"], verbs)]),
    };
    let policy = Policy::new(
        vec![],
        // Namespace b's role would grant update, a's only get.
        vec![role("a", &["get"]), role("b", &["get", "update"])],
        vec![],
        vec![role_binding(
            "a",
            "rb",
            role_ref(ROLE_KIND, "puller"),
            vec![subject(USER_KIND, "alice", None)],
        )],
    );
    assert_eq!(
        policy.evaluate(&alice(), &pull("a")),
        Decision::Allow {
            by: "RoleBinding a/rb (Role puller)".into()
        }
    );
    assert!(!allowed(
        &policy,
        &alice(),
        &Attributes::layers("update", "a", "app")
    ));
}

#[test]
fn dangling_role_reference_grants_nothing() {
    let policy = Policy::new(
        vec![],
        vec![],
        vec![cluster_binding(
            "c",
            "missing",
            vec![subject(USER_KIND, "alice", None)],
        )],
        vec![role_binding(
            "a",
            "rb",
            role_ref(ROLE_KIND, "missing"),
            vec![subject(USER_KIND, "alice", None)],
        )],
    );
    assert!(!allowed(&policy, &alice(), &pull("a")));
    assert!(!policy.grants_anything_to(&alice()));
}

#[test]
fn grants_anything_to_anonymous() {
    let rules = vec![rule(&[IMAGE_GROUP], &["imagestreams/layers"], &["get"])];
    let policy = alice_in_a(rules.clone());
    assert!(policy.grants_anything_to(&alice()));
    assert!(!policy.grants_anything_to(&UserInfo::anonymous()));

    let policy = Policy::new(
        vec![cluster_role("r", rules)],
        vec![],
        vec![],
        vec![role_binding(
            "a",
            "anon",
            role_ref(CLUSTER_ROLE_KIND, "r"),
            vec![subject(GROUP_KIND, "system:unauthenticated", None)],
        )],
    );
    assert!(policy.grants_anything_to(&UserInfo::anonymous()));
}

#[test]
fn binding_a_role_needs_every_permission_it_grants() {
    let puller = cluster_role(
        "puller",
        vec![rule(&[""], &["imagestreams/layers"], &["get"])],
    );
    let admin = cluster_role(
        "admin",
        vec![
            rule(&[""], &["imagestreams/layers"], &["get", "update"]),
            rule(
                &["rbac.authorization.k8s.io"],
                &["rolebindings"],
                &["create"],
            ),
        ],
    );
    let everything = cluster_role("everything", vec![rule(&["*"], &["*"], &["*"])]);
    let bind = |name: &str, role: &str, ns: &str| {
        role_binding(
            ns,
            name,
            role_ref(CLUSTER_ROLE_KIND, role),
            vec![subject(USER_KIND, name, None)],
        )
    };
    let policy = Policy::new(
        vec![puller, admin, everything],
        vec![],
        vec![],
        vec![bind("ann", "admin", "a"), bind("pat", "puller", "a")],
    );
    let user = |name: &str| UserInfo::authenticated(name.into(), String::new(), vec![]);
    assert_eq!(policy.first_not_held(&user("ann"), "puller", "a"), None);
    assert_eq!(policy.first_not_held(&user("ann"), "admin", "a"), None);
    let missing = policy
        .first_not_held(&user("ann"), "everything", "a")
        .unwrap();
    assert_eq!(
        (missing.verb.as_str(), missing.resource.as_str()),
        ("*", "*")
    );
    let missing = policy.first_not_held(&user("pat"), "admin", "a").unwrap();
    assert_eq!(missing.full_resource(), "imagestreams/layers");
    assert_eq!(missing.verb, "update");
    // What ann holds in a, she does not hold in b.
    assert!(policy.first_not_held(&user("ann"), "puller", "b").is_some());
    assert_eq!(
        policy.cluster_role_names(),
        ["admin", "everything", "puller"]
    );
    assert_eq!(policy.role_bindings_in("a").len(), 2);
    assert!(policy.role_bindings_in("b").is_empty());
}

#[test]
fn a_subject_goes_by_the_name_regate_policy_takes() {
    let sa = subject(SERVICE_ACCOUNT_KIND, "default", None);
    assert_eq!(
        subject_name(&sa, "project-a").as_deref(),
        Some("system:serviceaccount:project-a:default")
    );
    assert_eq!(subject_name(&sa, ""), None, "no namespace: names nobody");
    let elsewhere = subject(SERVICE_ACCOUNT_KIND, "ci", Some("project-b"));
    assert_eq!(
        subject_name(&elsewhere, "project-a").as_deref(),
        Some("system:serviceaccount:project-b:ci")
    );
    assert_eq!(
        subject_name(&subject(GROUP_KIND, "devs", None), "").as_deref(),
        Some("devs")
    );
    assert_eq!(subject_name(&subject("Robot", "r2", None), "a"), None);
}

#[test]
fn a_refused_push_is_granted_by_the_pusher_role() {
    let get = Attributes::layers("get", "ns", "app");
    assert_eq!(role_granting_request(&get, false), "system:image-puller");
    assert_eq!(role_granting_request(&get, true), "system:image-pusher");
    let delete = Attributes::cluster("delete", "images");
    assert_eq!(role_granting_request(&delete, true), "system:image-pruner");
}
