//! Rendering of `regate get`: exact tables (snapshots as strings), -A, -o wide|name|yaml|json,
//! and the errors, over fixed objects and a fixed `now`.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::columns::human_duration;
use super::*;
use crate::authority::embedded::User;

/// 2026-11-22T12:00:00Z, "now" in every test.
const NOW: i64 = 1_795_348_800;

fn meta(name: &str, namespace: Option<&str>, age_seconds: i64) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(String::from),
        uid: Some(format!("uid-{name}")),
        creation_timestamp: Some(Time(
            Timestamp::from_second(NOW - age_seconds).expect("a valid time"),
        )),
        ..ObjectMeta::default()
    }
}

fn subject(kind: &str, name: &str, namespace: Option<&str>) -> Subject {
    Subject {
        kind: kind.to_string(),
        name: name.to_string(),
        namespace: namespace.map(String::from),
        api_group: (kind != "ServiceAccount").then(|| "rbac.authorization.k8s.io".to_string()),
    }
}

fn role_binding(ns: &str, name: &str, role: &str, subjects: Vec<Subject>) -> RoleBinding {
    RoleBinding {
        metadata: meta(name, Some(ns), 300),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_string()),
            kind: "ClusterRole".to_string(),
            name: role.to_string(),
        },
        subjects: Some(subjects),
    }
}

/// Two namespaces with service accounts, bindings, a role, a secret; a cluster role and binding;
/// a user.
fn objects() -> Objects {
    let namespaces = ["project-a", "project-b"]
        .map(|ns| Namespace {
            metadata: meta(ns, None, 2 * 86_400 + 3_600),
            ..Namespace::default()
        })
        .to_vec();
    let service_accounts = [
        ("project-a", "builder", 45),
        ("project-a", "default", 45),
        ("project-b", "default", 600),
    ]
    .map(|(ns, name, age)| ServiceAccount {
        metadata: meta(name, Some(ns), age),
        ..ServiceAccount::default()
    })
    .to_vec();
    let role_bindings = vec![
        role_binding(
            "project-a",
            "system:image-puller",
            "system:image-puller",
            vec![
                subject("User", "alice", None),
                subject("User", "bob", None),
                subject("ServiceAccount", "ci", Some("project-b")),
            ],
        ),
        role_binding(
            "project-a",
            "system:image-pullers",
            "system:image-puller",
            vec![subject("Group", "system:serviceaccounts:project-a", None)],
        ),
        role_binding(
            "project-b",
            "system:image-builders",
            "system:image-builder",
            vec![subject("ServiceAccount", "builder", Some("project-b"))],
        ),
    ];
    let roles = vec![Role {
        metadata: meta("reader", Some("project-a"), 3_600),
        rules: None,
    }];
    let secrets = vec![Secret {
        metadata: meta("pull-secret", Some("project-a"), 7 * 3_600 + 5 * 60),
        type_: Some("kubernetes.io/dockerconfigjson".to_string()),
        data: Some(
            [(
                ".dockerconfigjson".to_string(),
                ByteString(br#"{"auths":{"r.example":{"auth":"c2VjcmV0"}}}"#.to_vec()),
            )]
            .into(),
        ),
        ..Secret::default()
    }];
    let cluster_roles = vec![ClusterRole {
        metadata: meta("system:image-puller", None, 86_400),
        ..ClusterRole::default()
    }];
    let cluster_role_bindings = vec![ClusterRoleBinding {
        metadata: meta("registry-admins", None, 400 * 86_400),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_string()),
            kind: "ClusterRole".to_string(),
            name: "registry-admin".to_string(),
        },
        subjects: Some(vec![subject("Group", "admins", None)]),
    }];
    let mut alice = User::new("alice", vec!["devs".to_string(), "ops".to_string()]);
    alice.metadata = meta("alice", None, 10);
    Objects {
        namespaces,
        service_accounts,
        roles,
        role_bindings,
        secrets,
        cluster_roles,
        cluster_role_bindings,
        users: vec![alice],
    }
}

fn query(kind: &str, name: Option<&str>, ns: Option<&str>, format: Option<Format>) -> Query {
    Query {
        kind: Kind::parse(kind).expect("a known kind"),
        name: name.map(String::from),
        scope: match ns {
            Some("-A") => Scope::All,
            Some(ns) => Scope::Namespace {
                name: ns.to_string(),
                defaulted: false,
            },
            None => Scope::Namespace {
                name: DEFAULT_NAMESPACE.to_string(),
                defaulted: true,
            },
        },
        format,
    }
}

fn stdout(kind: &str, name: Option<&str>, ns: Option<&str>, format: Option<Format>) -> String {
    let rendered = render(&objects(), &query(kind, name, ns, format), NOW)
        .unwrap_or_else(|e| panic!("get {kind} renders: {e:#}"));
    assert_eq!(rendered.stderr, "", "get {kind}");
    rendered.stdout
}

fn error(kind: &str, name: Option<&str>, ns: Option<&str>) -> String {
    match render(&objects(), &query(kind, name, ns, None), NOW) {
        Ok(rendered) => panic!("get {kind} must fail, printed {rendered:?}"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn kinds_are_found_by_plural_singular_short_and_group_names() {
    for (name, kind) in [
        ("namespaces", Kind::Namespace),
        ("ns", Kind::Namespace),
        ("SA", Kind::ServiceAccount),
        ("serviceaccount", Kind::ServiceAccount),
        ("rolebinding", Kind::RoleBinding),
        ("rolebindings.rbac.authorization.k8s.io", Kind::RoleBinding),
        ("clusterrole", Kind::ClusterRole),
        ("secret", Kind::Secret),
        ("users.user.openshift.io", Kind::User),
    ] {
        assert_eq!(Kind::parse(name).ok(), Some(kind), "{name}");
    }
    let e = format!("{:#}", Kind::parse("rolebindigs").expect_err("a typo"));
    assert!(
        e.starts_with(
            "the server doesn't have a resource type \"rolebindigs\"; did you mean rolebindings"
        ),
        "{e}"
    );
    assert!(e.contains("serviceaccounts (sa)"), "{e}");
    assert!(Kind::parse("rolebindings.apps").is_err());
}

#[test]
fn ages_read_as_kubectl_writes_them() {
    for (seconds, text) in [
        (-5, "<invalid>"),
        (-1, "0s"),
        (45, "45s"),
        (119, "119s"),
        (300, "5m"),
        (310, "5m10s"),
        (3_599, "59m"),
        (3 * 3_600 + 120, "3h2m"),
        (20 * 3_600, "20h"),
        (2 * 86_400 + 3_600, "2d1h"),
        (3 * 86_400, "3d"),
        (400 * 86_400, "400d"),
        (3 * 365 * 86_400 + 20 * 86_400, "3y20d"),
        (10 * 365 * 86_400, "10y"),
    ] {
        assert_eq!(human_duration(seconds), text, "{seconds}s");
    }
}

#[test]
fn tables_of_each_kind() {
    assert_eq!(
        stdout("namespaces", None, None, None),
        "\
NAME        STATUS   AGE
project-a   Active   2d1h
project-b   Active   2d1h
"
    );
    assert_eq!(
        stdout("sa", None, Some("project-a"), None),
        "\
NAME      SECRETS   AGE
builder   0         45s
default   0         45s
"
    );
    assert_eq!(
        stdout("roles", None, Some("project-a"), None),
        "\
NAME     CREATED AT
reader   2026-11-22T11:00:00Z
"
    );
    assert_eq!(
        stdout("rolebindings", None, Some("project-a"), None),
        "\
NAME                   ROLE                              AGE
system:image-puller    ClusterRole/system:image-puller   5m
system:image-pullers   ClusterRole/system:image-puller   5m
"
    );
    assert_eq!(
        stdout("clusterroles", None, None, None),
        "\
NAME                  CREATED AT
system:image-puller   2026-11-21T12:00:00Z
"
    );
    assert_eq!(
        stdout("clusterrolebindings", None, None, None),
        "\
NAME              ROLE                         AGE
registry-admins   ClusterRole/registry-admin   400d
"
    );
    assert_eq!(
        stdout("users", None, None, None),
        "\
NAME    UID         FULL NAME   IDENTITIES
alice   uid-alice
"
    );
}

#[test]
fn secret_tables_show_type_and_count_never_data() {
    let table = stdout("secrets", None, Some("project-a"), None);
    assert_eq!(
        table,
        "\
NAME          TYPE                             DATA   AGE
pull-secret   kubernetes.io/dockerconfigjson   1      7h5m
"
    );
    for format in [Some(Format::Wide), Some(Format::Name), None] {
        let out = stdout("secrets", None, Some("project-a"), format);
        assert!(!out.contains("auths") && !out.contains("eyJ"), "{out}");
    }
}

#[test]
fn all_namespaces_adds_the_namespace_column_to_namespaced_kinds_only() {
    assert_eq!(
        stdout("serviceaccounts", None, Some("-A"), None),
        "\
NAMESPACE   NAME      SECRETS   AGE
project-a   builder   0         45s
project-a   default   0         45s
project-b   default   0         10m
"
    );
    assert_eq!(
        stdout("clusterroles", None, Some("-A"), None),
        stdout("clusterroles", None, None, None)
    );
}

#[test]
fn wide_bindings_list_their_subjects() {
    assert_eq!(
        stdout("rolebindings", None, Some("-A"), Some(Format::Wide)),
        "\
NAMESPACE   NAME                    ROLE                               AGE   USERS        GROUPS                             SERVICEACCOUNTS
project-a   system:image-puller     ClusterRole/system:image-puller    5m    alice, bob                                      project-b/ci
project-a   system:image-pullers    ClusterRole/system:image-puller    5m                 system:serviceaccounts:project-a
project-b   system:image-builders   ClusterRole/system:image-builder   5m                                                    project-b/builder
"
    );
    assert_eq!(
        stdout("clusterrolebindings", None, None, Some(Format::Wide)),
        "\
NAME              ROLE                         AGE    USERS   GROUPS   SERVICEACCOUNTS
registry-admins   ClusterRole/registry-admin   400d           admins
"
    );
    assert_eq!(
        stdout("users", None, None, Some(Format::Wide)),
        "\
NAME    UID         FULL NAME   IDENTITIES   GROUPS
alice   uid-alice                            devs,ops
"
    );
}

#[test]
fn names_are_kind_dot_group_slash_name() {
    assert_eq!(
        stdout("rolebindings", None, Some("project-a"), Some(Format::Name)),
        "rolebinding.rbac.authorization.k8s.io/system:image-puller\n\
         rolebinding.rbac.authorization.k8s.io/system:image-pullers\n"
    );
    assert_eq!(
        stdout("ns", None, None, Some(Format::Name)),
        "namespace/project-a\nnamespace/project-b\n"
    );
    assert_eq!(
        stdout("user", Some("alice"), None, Some(Format::Name)),
        "user.user.openshift.io/alice\n"
    );
}

#[test]
fn one_object_is_itself_several_are_a_list() {
    assert_eq!(
        stdout(
            "rolebinding",
            Some("system:image-pullers"),
            Some("project-a"),
            Some(Format::Yaml)
        ),
        "\
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  creationTimestamp: 2026-11-22T11:55:00Z
  name: system:image-pullers
  namespace: project-a
  uid: uid-system:image-pullers
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:image-puller
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: Group
  name: system:serviceaccounts:project-a
"
    );
    assert_eq!(
        stdout("sa", None, Some("project-b"), Some(Format::Json)),
        r#"{
    "apiVersion": "v1",
    "items": [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                "creationTimestamp": "2026-11-22T11:50:00Z",
                "name": "default",
                "namespace": "project-b",
                "uid": "uid-default"
            }
        }
    ],
    "kind": "List",
    "metadata": {
        "resourceVersion": ""
    }
}
"#
    );
    let list: serde_json::Value =
        serde_yaml::from_str(&stdout("users", None, None, Some(Format::Yaml))).expect("YAML");
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"][0]["apiVersion"], "user.openshift.io/v1");
    assert_eq!(list["items"][0]["kind"], "User");
    assert_eq!(list["items"][0]["groups"][1], "ops");
}

#[test]
fn secret_data_is_printed_with_yaml_only() {
    let yaml = stdout(
        "secret",
        Some("pull-secret"),
        Some("project-a"),
        Some(Format::Yaml),
    );
    let secret: Secret = serde_yaml::from_str(&yaml).expect("a Secret");
    assert_eq!(secret, objects().secrets[0]);
}

#[test]
fn nothing_found_is_said_on_stderr() {
    let mut objects = objects();
    objects.roles.clear();
    let rendered = render(
        &objects,
        &query("roles", None, Some("project-a"), None),
        NOW,
    )
    .expect("renders");
    assert_eq!(
        rendered,
        Rendered {
            stdout: String::new(),
            stderr: "No resources found in project-a namespace.\n".to_string(),
        }
    );
    let rendered = render(&objects, &query("roles", None, Some("-A"), None), NOW).expect("renders");
    assert_eq!(rendered.stderr, "No resources found\n");
    let rendered = render(
        &objects,
        &query("roles", None, Some("project-b"), Some(Format::Yaml)),
        NOW,
    )
    .expect("renders");
    assert_eq!(
        rendered.stdout,
        "apiVersion: v1\nitems: []\nkind: List\nmetadata:\n  resourceVersion: ''\n"
    );
}

#[test]
fn unknown_names_and_namespaces_name_the_close_matches() {
    assert_eq!(
        error("rolebinding", Some("system:image-pullr"), Some("project-a")),
        "rolebindings.rbac.authorization.k8s.io \"system:image-pullr\" \
         not found in namespace \"project-a\"; did you mean system:image-puller or system:image-pullers?"
    );
    assert_eq!(
        error("ns", Some("project-c"), None),
        "namespaces \"project-c\" not found; did you mean project-a \
         or project-b?"
    );
    assert_eq!(
        error("sa", None, Some("projet-a")),
        "namespaces \"projet-a\" not found; did you mean project-a \
         or project-b?"
    );
    let e = error("sa", None, None);
    assert!(
        e.starts_with("namespaces \"default\" not found: without -n")
            && e.contains("(one of project-a, project-b) or -A"),
        "{e}"
    );
    assert!(
        error("sa", Some("default"), Some("-A")).contains("cannot be retrieved by name across all")
    );
}

#[test]
fn tables_align_on_the_widest_cell() {
    let rows = [["A", "BB", "C"], ["long", "", "x"]]
        .map(|r| r.map(String::from).to_vec())
        .to_vec();
    assert_eq!(table(&rows), "A      BB   C\nlong        x\n");
}
