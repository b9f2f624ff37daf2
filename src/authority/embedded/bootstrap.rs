//! OpenShift's bootstrap policy, as far as the registry needs it: the ClusterRoles every state
//! directory gets, and the objects every new namespace gets (docs/behaviour.md §7).
//!
//! The objects are built without `uid` or `creationTimestamp`; the store stamps them when it
//! writes them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::identity::SERVICE_ACCOUNTS;
use crate::policy::{CLUSTER_ROLE_KIND, GROUP_KIND, IMAGE_GROUP, SERVICE_ACCOUNT_KIND};

pub use crate::policy::RBAC_GROUP;

/// Pull: `get` on `imagestreams/layers`.
pub const IMAGE_PULLER: &str = "system:image-puller";
/// Pull and push.
pub const IMAGE_PUSHER: &str = "system:image-pusher";
/// Pull, push, and create image streams: what the `builder` service account has.
pub const IMAGE_BUILDER: &str = "system:image-builder";
/// Delete images cluster-wide: what manifest and blob deletion needs.
pub const IMAGE_PRUNER: &str = "system:image-pruner";
/// Create TokenReviews and SubjectAccessReviews: what a gateway delegating to an API server
/// needs (Kubernetes' own role of that name).
pub const AUTH_DELEGATOR: &str = "system:auth-delegator";
/// Get service accounts and list Secrets: what a gateway reading namespaces' pull secrets from
/// an API server needs (its client is bound to it by `regate authority serve`).
pub const PULL_SECRET_READER: &str = "regate:pull-secrets";

/// The API group of TokenReview and SelfSubjectReview.
pub const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";
/// The API group of SubjectAccessReview and SelfSubjectAccessReview.
pub const AUTHORIZATION_GROUP: &str = "authorization.k8s.io";

/// The service accounts every namespace gets.
pub const NAMESPACE_SERVICE_ACCOUNTS: [&str; 3] = ["default", "builder", "deployer"];
/// The binding letting every service account of a namespace pull from it.
pub const IMAGE_PULLERS_BINDING: &str = "system:image-pullers";
/// The binding letting the namespace's `builder` push to it.
pub const IMAGE_BUILDERS_BINDING: &str = "system:image-builders";

/// Label Kubernetes puts on its bootstrap RBAC objects.
const BOOTSTRAP_LABEL: (&str, &str) = ("kubernetes.io/bootstrapping", "rbac-defaults");

const READ: &[&str] = &["get", "list", "watch"];
const READ_WRITE: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// The image resources an `admin`, `edit` or `view` user sees.
const IMAGE_RESOURCES: &[&str] = &[
    "imagestreamimages",
    "imagestreammappings",
    "imagestreams",
    "imagestreamtags",
    "imagetags",
];

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A rule on image resources, in both groups OpenShift serves them in (`""` and
/// `image.openshift.io`), as OpenShift's bootstrap roles are written.
fn image_rule(verbs: &[&str], resources: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(strings(&["", IMAGE_GROUP])),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

/// A rule on `resources` of API group `group`.
fn rule(group: &str, verbs: &[&str], resources: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(strings(&[group])),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

/// A rule on RBAC objects (who may share a namespace).
fn rbac_rule(verbs: &[&str], resources: &[&str]) -> PolicyRule {
    rule(RBAC_GROUP, verbs, resources)
}

fn cluster_role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([(
                BOOTSTRAP_LABEL.0.to_string(),
                BOOTSTRAP_LABEL.1.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        rules: Some(rules),
        ..ClusterRole::default()
    }
}

fn registry_viewer_rules() -> Vec<PolicyRule> {
    vec![
        image_rule(
            READ,
            &["imagestreams", "imagestreamtags", "imagestreamimages"],
        ),
        image_rule(&["get"], &["imagestreams/layers"]),
    ]
}

fn registry_editor_rules() -> Vec<PolicyRule> {
    let mut rules = registry_viewer_rules();
    rules.push(image_rule(&["update"], &["imagestreams/layers"]));
    rules.push(image_rule(
        &["create", "update", "delete"],
        &["imagestreams"],
    ));
    rules
}

fn edit_rules() -> Vec<PolicyRule> {
    vec![
        image_rule(READ_WRITE, IMAGE_RESOURCES),
        image_rule(&["get", "update"], &["imagestreams/layers"]),
    ]
}

/// The bootstrap ClusterRoles (docs/behaviour.md §7, plus OpenShift's `system:image-pruner` and
/// Kubernetes' `system:auth-delegator` for gateways asking `regate authority serve`).
pub fn cluster_roles() -> Vec<ClusterRole> {
    let mut registry_admin = registry_editor_rules();
    registry_admin.push(rbac_rule(
        &["create", "delete", "get", "list"],
        &["rolebindings"],
    ));
    let mut admin = edit_rules();
    admin.push(rbac_rule(READ_WRITE, &["rolebindings", "roles"]));
    vec![
        cluster_role(
            IMAGE_PULLER,
            vec![image_rule(&["get"], &["imagestreams/layers"])],
        ),
        cluster_role(
            IMAGE_PUSHER,
            vec![image_rule(&["get", "update"], &["imagestreams/layers"])],
        ),
        cluster_role(
            IMAGE_BUILDER,
            vec![
                image_rule(&["get", "update"], &["imagestreams/layers"]),
                image_rule(&["create"], &["imagestreams"]),
            ],
        ),
        cluster_role(
            IMAGE_PRUNER,
            vec![
                image_rule(&["delete", "get", "list"], &["images"]),
                image_rule(&["get", "list"], &["imagestreams"]),
            ],
        ),
        cluster_role("registry-viewer", registry_viewer_rules()),
        cluster_role("registry-editor", registry_editor_rules()),
        cluster_role("registry-admin", registry_admin),
        cluster_role("admin", admin),
        cluster_role("edit", edit_rules()),
        // As in OpenShift, `view` may read image metadata but not pull layers.
        cluster_role("view", vec![image_rule(READ, IMAGE_RESOURCES)]),
        cluster_role(
            AUTH_DELEGATOR,
            vec![
                rule(AUTHENTICATION_GROUP, &["create"], &["tokenreviews"]),
                rule(AUTHORIZATION_GROUP, &["create"], &["subjectaccessreviews"]),
            ],
        ),
        cluster_role(
            PULL_SECRET_READER,
            vec![
                rule("", &["get"], &["serviceaccounts"]),
                rule("", &["list"], &["secrets"]),
            ],
        ),
    ]
}

/// What creating a namespace creates, in one step.
#[derive(Clone, Debug)]
pub struct NamespaceObjects {
    /// The namespace itself.
    pub namespace: Namespace,
    /// `default`, `builder`, `deployer`.
    pub service_accounts: Vec<ServiceAccount>,
    /// `system:image-pullers` and `system:image-builders`.
    pub role_bindings: Vec<RoleBinding>,
}

fn namespaced_meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        ..ObjectMeta::default()
    }
}

/// A reference to ClusterRole `name`, as `roleRef` of a binding.
pub fn cluster_role_ref(name: &str) -> RoleRef {
    RoleRef {
        api_group: Some(RBAC_GROUP.to_string()),
        kind: CLUSTER_ROLE_KIND.to_string(),
        name: name.to_string(),
    }
}

fn binding(namespace: &str, name: &str, role: &str, subject: Subject) -> RoleBinding {
    RoleBinding {
        metadata: namespaced_meta(namespace, name),
        role_ref: cluster_role_ref(role),
        subjects: Some(vec![subject]),
    }
}

/// The objects OpenShift creates with a project: service accounts `default`, `builder`,
/// `deployer`; `system:image-pullers` (group `system:serviceaccounts:<ns>` ->
/// `system:image-puller`) and `system:image-builders` (`<ns>/builder` -> `system:image-builder`).
pub fn namespace_objects(namespace: &str) -> NamespaceObjects {
    let service_accounts = NAMESPACE_SERVICE_ACCOUNTS
        .iter()
        .map(|name| ServiceAccount {
            metadata: namespaced_meta(namespace, name),
            ..ServiceAccount::default()
        })
        .collect();
    let pullers = Subject {
        api_group: Some(RBAC_GROUP.to_string()),
        kind: GROUP_KIND.to_string(),
        name: format!("{SERVICE_ACCOUNTS}:{namespace}"),
        namespace: None,
    };
    let builder = Subject {
        api_group: None,
        kind: SERVICE_ACCOUNT_KIND.to_string(),
        name: "builder".to_string(),
        namespace: Some(namespace.to_string()),
    };
    NamespaceObjects {
        namespace: Namespace {
            metadata: ObjectMeta {
                name: Some(namespace.to_string()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        },
        service_accounts,
        role_bindings: vec![
            binding(namespace, IMAGE_PULLERS_BINDING, IMAGE_PULLER, pullers),
            binding(namespace, IMAGE_BUILDERS_BINDING, IMAGE_BUILDER, builder),
        ],
    }
}
