//! Kubernetes RBAC evaluation: does a subject's bindings grant a verb on a resource?
//!
//! [`Policy`] is an immutable snapshot of roles and bindings (the `k8s-openapi` types); it is
//! evaluated the way the Kubernetes RBAC authorizer does: a request is allowed when any
//! ClusterRoleBinding, or any RoleBinding in the request's namespace, binds a subject matching
//! the user (User, Group, ServiceAccount) to a role with a rule matching verb, API group,
//! resource (with subresource), and resource name. There are no deny rules.

use std::collections::HashMap;

use k8s_openapi::api::authorization::v1::ResourceAttributes;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use crate::identity::{UserInfo, service_account_of};

mod objects;

/// The API group of OpenShift's image resources.
pub const IMAGE_GROUP: &str = "image.openshift.io";
/// The API group of roles and bindings.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// What a request asks to do, as Kubernetes' `ResourceAttributes`; empty strings mean "none".
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Attributes {
    /// The verb, e.g. `get`, `update`, `delete`, `list`.
    pub verb: String,
    /// The API group, e.g. `image.openshift.io`.
    pub group: String,
    /// The resource, e.g. `imagestreams`.
    pub resource: String,
    /// The subresource, e.g. `layers`; empty for none.
    pub subresource: String,
    /// The namespace; empty for a cluster-scoped check.
    pub namespace: String,
    /// The resource name; empty for all.
    pub name: String,
}

impl Attributes {
    /// `verb` on `imagestreams/layers` named `imagestream` in `namespace`: the check of a pull
    /// (`get`) or push (`update`).
    pub fn layers(verb: &str, namespace: &str, imagestream: &str) -> Self {
        Attributes {
            verb: verb.to_string(),
            group: IMAGE_GROUP.to_string(),
            resource: "imagestreams".to_string(),
            subresource: "layers".to_string(),
            namespace: namespace.to_string(),
            name: imagestream.to_string(),
        }
    }

    /// `verb` on `resource` (image group) at cluster scope, e.g. `delete images`.
    pub fn cluster(verb: &str, resource: &str) -> Self {
        Attributes {
            verb: verb.to_string(),
            group: IMAGE_GROUP.to_string(),
            resource: resource.to_string(),
            subresource: String::new(),
            namespace: String::new(),
            name: String::new(),
        }
    }

    /// `verb` on RBAC `resource` (e.g. `rolebindings`) in `namespace` ("" for cluster scope).
    pub fn rbac(verb: &str, resource: &str, namespace: &str) -> Self {
        Attributes {
            verb: verb.to_string(),
            group: RBAC_GROUP.to_string(),
            resource: resource.to_string(),
            subresource: String::new(),
            namespace: namespace.to_string(),
            name: String::new(),
        }
    }

    /// The check in words: `get imagestreams/layers "app" in namespace project-a`, `delete
    /// images at cluster scope`.
    pub fn describe(&self) -> String {
        let mut text = format!("{} {}", self.verb, self.full_resource());
        if !self.name.is_empty() {
            text.push_str(&format!(" {:?}", self.name));
        }
        if self.namespace.is_empty() {
            text.push_str(" at cluster scope");
        } else {
            text.push_str(&format!(" in namespace {}", self.namespace));
        }
        text
    }

    /// `resource/subresource`, or `resource` alone.
    pub fn full_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// The `resourceAttributes` of a SubjectAccessReview regate answers, as the policy reads them:
/// absent fields are empty; the version and selectors, which RBAC does not read, are dropped.
impl From<&ResourceAttributes> for Attributes {
    fn from(attributes: &ResourceAttributes) -> Self {
        let field = |value: &Option<String>| value.clone().unwrap_or_default();
        Attributes {
            verb: field(&attributes.verb),
            group: field(&attributes.group),
            resource: field(&attributes.resource),
            subresource: field(&attributes.subresource),
            namespace: field(&attributes.namespace),
            name: field(&attributes.name),
        }
    }
}

/// The `resourceAttributes` of a SubjectAccessReview regate asks: empty fields are absent.
impl From<&Attributes> for ResourceAttributes {
    fn from(attrs: &Attributes) -> Self {
        let field = |value: &str| (!value.is_empty()).then(|| value.to_string());
        ResourceAttributes {
            namespace: field(&attrs.namespace),
            verb: field(&attrs.verb),
            group: field(&attrs.group),
            resource: field(&attrs.resource),
            subresource: field(&attrs.subresource),
            name: field(&attrs.name),
            ..ResourceAttributes::default()
        }
    }
}

/// The outcome of an RBAC evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed; `by` names the binding and role that allowed it.
    Allow {
        /// e.g. `RoleBinding project-a/system:image-pullers of ClusterRole system:image-puller`.
        by: String,
    },
    /// Not allowed; `reason` says why (no binding, or the API server's own reason).
    Deny {
        /// e.g. `no RoleBinding in project-b or ClusterRoleBinding grants it`.
        reason: String,
    },
}

impl Decision {
    /// True when allowed.
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    /// The binding that allowed it, or why it was denied.
    pub fn reason(&self) -> &str {
        match self {
            Decision::Allow { by } => by,
            Decision::Deny { reason } => reason,
        }
    }

    /// A denial for `reason`.
    pub fn deny(reason: impl Into<String>) -> Decision {
        Decision::Deny {
            reason: reason.into(),
        }
    }
}

/// The role whose binding would grant `attrs`, for the hint in a 403 message.
pub fn role_granting(attrs: &Attributes) -> &'static str {
    match (attrs.full_resource().as_str(), attrs.verb.as_str()) {
        ("imagestreams/layers", "get") => "system:image-puller",
        ("imagestreams/layers", _) => "system:image-pusher",
        ("images", "delete") => "system:image-pruner",
        _ => "registry-viewer",
    }
}

/// The role that grants a request refused `attrs`, as its 403 and the console name it: as
/// [`role_granting`], except that a push (`pushing`: it needs `get` and `update` on the layers)
/// is granted by the pusher role even when its `get` was the check refused.
pub fn role_granting_request(attrs: &Attributes, pushing: bool) -> &'static str {
    if pushing && attrs.subresource == "layers" {
        "system:image-pusher"
    } else {
        role_granting(attrs)
    }
}

/// The `kind` of a binding's `roleRef` naming a ClusterRole.
pub const CLUSTER_ROLE_KIND: &str = "ClusterRole";
/// The `kind` of a binding's `roleRef` naming a Role of the binding's namespace.
pub const ROLE_KIND: &str = "Role";
/// The `kind` of a subject naming a user.
pub const USER_KIND: &str = "User";
/// The `kind` of a subject naming a group.
pub const GROUP_KIND: &str = "Group";
/// The `kind` of a subject naming a service account.
pub const SERVICE_ACCOUNT_KIND: &str = "ServiceAccount";

/// Roles and bindings, indexed so that evaluating a request only visits the cluster bindings and
/// the bindings of the request's namespace.
///
/// A ClusterRole's `aggregationRule` is not expanded (in Kubernetes a controller writes the
/// aggregated rules into `rules`; here `rules` is read as written).
#[derive(Clone, Debug, Default)]
pub struct Policy {
    cluster_roles: HashMap<String, ClusterRole>,
    /// Roles by namespace, then name.
    roles: HashMap<String, HashMap<String, Role>>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    /// RoleBindings by namespace.
    role_bindings: HashMap<String, Vec<RoleBinding>>,
}

impl Policy {
    /// Indexes roles and bindings; namespaced objects are filed under their `metadata.namespace`.
    pub fn new(
        cluster_roles: Vec<ClusterRole>,
        roles: Vec<Role>,
        cluster_role_bindings: Vec<ClusterRoleBinding>,
        role_bindings: Vec<RoleBinding>,
    ) -> Self {
        let mut policy = Policy {
            cluster_role_bindings,
            ..Policy::default()
        };
        for role in cluster_roles {
            let name = role.metadata.name.clone().unwrap_or_default();
            policy.cluster_roles.insert(name, role);
        }
        for role in roles {
            let namespace = role.metadata.namespace.clone().unwrap_or_default();
            let name = role.metadata.name.clone().unwrap_or_default();
            policy
                .roles
                .entry(namespace)
                .or_default()
                .insert(name, role);
        }
        for binding in role_bindings {
            let namespace = binding.metadata.namespace.clone().unwrap_or_default();
            policy
                .role_bindings
                .entry(namespace)
                .or_default()
                .push(binding);
        }
        policy
    }

    /// Whether any binding grants `user` what `attrs` asks, as the Kubernetes RBAC authorizer
    /// decides: ClusterRoleBindings first, then the RoleBindings of `attrs.namespace`.
    pub fn evaluate(&self, user: &UserInfo, attrs: &Attributes) -> Decision {
        // Whether a binding names `user` and binds a role with a rule allowing `attrs`;
        // `namespace` is a RoleBinding's, `None` for a ClusterRoleBinding.
        let grants = |subjects: Option<&[Subject]>, role_ref: &RoleRef, namespace: Option<&str>| {
            binds(subjects, user, namespace.unwrap_or_default())
                && self
                    .rules_of(role_ref, namespace)
                    .iter()
                    .any(|rule| rule_allows(rule, attrs))
        };
        let mut bindings = self.cluster_role_bindings.iter();
        if let Some(binding) = bindings.find(|b| grants(b.subjects.as_deref(), &b.role_ref, None)) {
            let name = binding.metadata.name.as_deref().unwrap_or_default();
            return allowed_by(format!("ClusterRoleBinding {name}"), &binding.role_ref);
        }
        // A cluster-scoped request is granted by ClusterRoleBindings only.
        if attrs.namespace.is_empty() {
            return Decision::Deny {
                reason: "no ClusterRoleBinding grants it".into(),
            };
        }
        let namespace = attrs.namespace.as_str();
        let mut bindings = self.role_bindings.get(namespace).into_iter().flatten();
        match bindings.find(|b| grants(b.subjects.as_deref(), &b.role_ref, Some(namespace))) {
            Some(binding) => {
                let name = binding.metadata.name.as_deref().unwrap_or_default();
                allowed_by(format!("RoleBinding {namespace}/{name}"), &binding.role_ref)
            }
            None => Decision::Deny {
                reason: format!("no RoleBinding in {namespace} or ClusterRoleBinding grants it"),
            },
        }
    }

    /// Whether some binding, anywhere, binds `user` to a role with at least one rule (used to
    /// decide whether anonymous callers get 200 or a challenge on `GET /v2/`).
    pub fn grants_anything_to(&self, user: &UserInfo) -> bool {
        let cluster = self.cluster_role_bindings.iter().any(|b| {
            binds(b.subjects.as_deref(), user, "") && !self.rules_of(&b.role_ref, None).is_empty()
        });
        cluster
            || self.role_bindings.iter().any(|(namespace, bindings)| {
                bindings.iter().any(|b| {
                    binds(b.subjects.as_deref(), user, namespace)
                        && !self.rules_of(&b.role_ref, Some(namespace)).is_empty()
                })
            })
    }

    /// The rules of the role a binding refers to; none when the role does not exist (Kubernetes
    /// treats a dangling reference as granting nothing). `namespace` is the RoleBinding's, or
    /// `None` for a ClusterRoleBinding, which can only refer to a ClusterRole.
    fn rules_of(&self, role_ref: &RoleRef, namespace: Option<&str>) -> &[PolicyRule] {
        let rules = match (role_ref.kind.as_str(), namespace) {
            (CLUSTER_ROLE_KIND, _) => self
                .cluster_roles
                .get(&role_ref.name)
                .and_then(|r| r.rules.as_deref()),
            (ROLE_KIND, Some(namespace)) => self
                .roles
                .get(namespace)
                .and_then(|roles| roles.get(&role_ref.name))
                .and_then(|r| r.rules.as_deref()),
            _ => None,
        };
        rules.unwrap_or_default()
    }
}

/// An allow by `binding` (e.g. `RoleBinding project-a/pullers`), naming the role it binds.
fn allowed_by(binding: String, role_ref: &RoleRef) -> Decision {
    Decision::Allow {
        by: format!("{binding} ({} {})", role_ref.kind, role_ref.name),
    }
}

/// Whether one of `subjects` is `user`; `namespace` is the binding's ("" for a cluster binding),
/// the default namespace of a ServiceAccount subject that names none.
fn binds(subjects: Option<&[Subject]>, user: &UserInfo, namespace: &str) -> bool {
    subjects
        .unwrap_or_default()
        .iter()
        .any(|subject| subject_is(subject, user, namespace))
}

/// The name `subject` of a binding in `namespace` ("" for a cluster binding) goes by, as
/// `regate policy` takes it: a user's or group's name, a service account's user name
/// `system:serviceaccount:NS:NAME` (NS defaulting to the binding's). `None` when it names
/// nobody: a service account without a namespace, or an unknown kind (as in [`subject_is`]).
pub fn subject_name(subject: &Subject, namespace: &str) -> Option<String> {
    match subject.kind.as_str() {
        USER_KIND | GROUP_KIND => Some(subject.name.clone()),
        SERVICE_ACCOUNT_KIND => service_account_namespace(subject, namespace)
            .map(|sa_namespace| crate::identity::service_account_user(sa_namespace, &subject.name)),
        _ => None,
    }
}

/// The namespace of a ServiceAccount `subject` of a binding in `namespace`: its own, else the
/// binding's; `None` for neither (a cluster binding's subject without one).
fn service_account_namespace<'a>(subject: &'a Subject, namespace: &'a str) -> Option<&'a str> {
    let sa_namespace = subject
        .namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        .unwrap_or(namespace);
    (!sa_namespace.is_empty()).then_some(sa_namespace)
}

/// Whether `subject` names `user`, as Kubernetes' `appliesToUser`.
pub fn subject_is(subject: &Subject, user: &UserInfo, namespace: &str) -> bool {
    match subject.kind.as_str() {
        USER_KIND => subject.name == user.name,
        GROUP_KIND => user.groups.contains(&subject.name),
        SERVICE_ACCOUNT_KIND => {
            service_account_namespace(subject, namespace).is_some_and(|sa_namespace| {
                service_account_of(&user.name) == Some((sa_namespace, subject.name.as_str()))
            })
        }
        _ => false,
    }
}

/// Whether one rule grants `attrs`: verb, API group, resource and resource name all match.
fn rule_allows(rule: &PolicyRule, attrs: &Attributes) -> bool {
    verb_matches(&rule.verbs, &attrs.verb)
        && group_matches(rule.api_groups.as_deref().unwrap_or_default(), &attrs.group)
        && resource_matches(
            rule.resources.as_deref().unwrap_or_default(),
            &attrs.resource,
            &attrs.subresource,
        )
        && name_matches(
            rule.resource_names.as_deref().unwrap_or_default(),
            &attrs.name,
        )
}

fn verb_matches(verbs: &[String], verb: &str) -> bool {
    verbs.iter().any(|v| v == "*" || v == verb)
}

/// OpenShift serves its image resources in both the legacy core group `""` and
/// `image.openshift.io`, and its authorizer treats the two as one; so do we.
fn is_image_group(group: &str) -> bool {
    group.is_empty() || group == IMAGE_GROUP
}

fn group_matches(groups: &[String], group: &str) -> bool {
    groups
        .iter()
        .any(|g| g == "*" || g == group || (is_image_group(g) && is_image_group(group)))
}

/// `*`, `resource`, `resource/subresource`, `*/subresource` and `resource/*`.
fn resource_matches(resources: &[String], resource: &str, subresource: &str) -> bool {
    resources.iter().any(|r| {
        if r == "*" {
            return true;
        }
        match r.split_once('/') {
            None => subresource.is_empty() && r == resource,
            Some((rule_resource, rule_sub)) => {
                !subresource.is_empty()
                    && (rule_resource == "*" || rule_resource == resource)
                    && (rule_sub == "*" || rule_sub == subresource)
            }
        }
    })
}

/// An empty list allows every name; a non-empty one only the names it lists (so never a
/// request for all names).
fn name_matches(names: &[String], name: &str) -> bool {
    names.is_empty() || names.iter().any(|n| n == name)
}

#[cfg(test)]
mod tests;

/// A subject some binding grants a request to, and the binding through which: one line of
/// `regate policy who-can`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grantee {
    /// [`USER_KIND`], [`GROUP_KIND`] or [`SERVICE_ACCOUNT_KIND`].
    pub kind: String,
    /// The user or group name; a service account as its user name
    /// `system:serviceaccount:NS:NAME`.
    pub name: String,
    /// The binding and role, e.g. `RoleBinding project-a/system:image-pullers (ClusterRole
    /// system:image-puller)`.
    pub by: String,
}

impl Policy {
    /// Every subject that some binding grants `attrs` to, as Kubernetes' `ResourceAccessReview`
    /// lists them: the subjects of ClusterRoleBindings, then of RoleBindings of
    /// `attrs.namespace`, each once per binding that grants it, in binding order.
    pub fn who_can(&self, attrs: &Attributes) -> Vec<Grantee> {
        let mut grantees = Vec::new();
        let mut collect = |subjects: Option<&[Subject]>, binding: String, namespace: &str| {
            for subject in subjects.unwrap_or_default() {
                let Some(name) = subject_name(subject, namespace) else {
                    continue;
                };
                grantees.push(Grantee {
                    kind: subject.kind.clone(),
                    name,
                    by: binding.clone(),
                });
            }
        };
        for binding in &self.cluster_role_bindings {
            if self.role_allows(&binding.role_ref, None, attrs) {
                let name = binding.metadata.name.as_deref().unwrap_or_default();
                let by = binding_label(&format!("ClusterRoleBinding {name}"), &binding.role_ref);
                collect(binding.subjects.as_deref(), by, "");
            }
        }
        if !attrs.namespace.is_empty() {
            let namespace = attrs.namespace.as_str();
            for binding in self.role_bindings.get(namespace).into_iter().flatten() {
                if self.role_allows(&binding.role_ref, Some(namespace), attrs) {
                    let name = binding.metadata.name.as_deref().unwrap_or_default();
                    let by = binding_label(
                        &format!("RoleBinding {namespace}/{name}"),
                        &binding.role_ref,
                    );
                    collect(binding.subjects.as_deref(), by, namespace);
                }
            }
        }
        grantees
    }

    /// The names of the ClusterRoles, sorted.
    pub fn cluster_role_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.cluster_roles.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The rules of ClusterRole `role`; none when it does not exist.
    pub fn cluster_role_rules(&self, role: &str) -> &[PolicyRule] {
        self.cluster_roles
            .get(role)
            .and_then(|r| r.rules.as_deref())
            .unwrap_or_default()
    }

    /// The RoleBindings of `namespace`.
    pub fn role_bindings_in(&self, namespace: &str) -> &[RoleBinding] {
        self.role_bindings.get(namespace).map_or(&[], Vec::as_slice)
    }

    /// The first permission ClusterRole `role` would give in `namespace` that `user` does not
    /// hold there; `None` when `user` holds them all (or the role does not exist). Kubernetes'
    /// escalation check: nobody may bind a role granting more than they have.
    pub fn first_not_held(
        &self,
        user: &UserInfo,
        role: &str,
        namespace: &str,
    ) -> Option<Attributes> {
        self.first_not_held_of(user, self.cluster_role_rules(role), namespace)
    }

    /// Whether ClusterRole `role` has a rule allowing `attrs` (bound or not): whether binding it
    /// would grant the request.
    pub fn cluster_role_allows(&self, role: &str, attrs: &Attributes) -> bool {
        self.cluster_role_rules(role)
            .iter()
            .any(|rule| rule_allows(rule, attrs))
    }

    /// Whether the role `role_ref` names (from a binding in `namespace`, `None` for a cluster
    /// binding) has a rule allowing `attrs`.
    fn role_allows(&self, role_ref: &RoleRef, namespace: Option<&str>, attrs: &Attributes) -> bool {
        self.rules_of(role_ref, namespace)
            .iter()
            .any(|rule| rule_allows(rule, attrs))
    }
}

/// `BINDING (KIND ROLE)`, as [`Decision::Allow`] names a binding.
fn binding_label(binding: &str, role_ref: &RoleRef) -> String {
    format!("{binding} ({} {})", role_ref.kind, role_ref.name)
}

/// The command that grants `user` the request `attrs` through `role`, as the gateway's 403
/// names it: `regate policy add-role-to-user ROLE USER -n NS`, or for a cluster-scoped request
/// `regate policy add-cluster-role-to-user ROLE USER`.
pub fn grant_command(role: &str, user: &str, attrs: &Attributes) -> String {
    if attrs.namespace.is_empty() {
        policy_command("add-cluster-role-to-user", role, user, None)
    } else {
        policy_command("add-role-to-user", role, user, Some(&attrs.namespace))
    }
}

/// The `regate policy VERB ROLE SUBJECT [-n NAMESPACE]` command (e.g. `add-role-to-user`,
/// `remove-role-from-group`), every word quoted for the shell: the one builder of every
/// `regate policy` command regate shows (403s, `explain`, `can-i`, the console, the
/// authority's refusals), so what a person pastes grants exactly the subject named
/// (docs/behaviour.md §5).
pub fn policy_command(verb: &str, role: &str, subject: &str, namespace: Option<&str>) -> String {
    let words = ["regate", "policy", verb];
    let mut line = crate::shell::CommandLine::new(&words)
        .arg(role)
        .arg(subject);
    if let Some(namespace) = namespace {
        line = line.option("-n", namespace);
    }
    line.to_string()
}
