//! A [`Policy`]'s roles and bindings read back as the objects they were built from (what
//! `regate authority serve` lists), and Kubernetes' escalation check over any role's rules.
//!
//! The objects are the ones loaded, unchanged, so what is served is what the authorizer
//! evaluates: no second reading of the state directory that could disagree with it.

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role};

use super::{Attributes, Policy};
use crate::identity::UserInfo;

impl Policy {
    /// Every ClusterRole, sorted by name.
    pub fn cluster_roles(&self) -> Vec<&ClusterRole> {
        let mut roles: Vec<(&String, &ClusterRole)> = self.cluster_roles.iter().collect();
        roles.sort_unstable_by(|a, b| a.0.cmp(b.0));
        roles.into_iter().map(|(_, role)| role).collect()
    }

    /// ClusterRole `name`, if it exists.
    pub fn cluster_role(&self, name: &str) -> Option<&ClusterRole> {
        self.cluster_roles.get(name)
    }

    /// Every ClusterRoleBinding, sorted by name (as loaded).
    pub fn cluster_role_bindings(&self) -> &[ClusterRoleBinding] {
        &self.cluster_role_bindings
    }

    /// The Roles of `namespace`, sorted by name.
    pub fn roles_in(&self, namespace: &str) -> Vec<&Role> {
        let mut roles: Vec<(&String, &Role)> =
            self.roles.get(namespace).into_iter().flatten().collect();
        roles.sort_unstable_by(|a, b| a.0.cmp(b.0));
        roles.into_iter().map(|(_, role)| role).collect()
    }

    /// Role `name` of `namespace`, if it exists.
    pub fn role(&self, namespace: &str, name: &str) -> Option<&Role> {
        self.roles.get(namespace)?.get(name)
    }

    /// The first permission `rules` (a ClusterRole's or a Role's) would give in `namespace`
    /// that `user` does not hold there; `None` when `user` holds them all. Each rule is checked
    /// one verb, group, resource and name at a time, so a wildcard in a rule is held only
    /// through the same wildcard, as Kubernetes' `ConfirmNoEscalation` requires.
    pub fn first_not_held_of(
        &self,
        user: &UserInfo,
        rules: &[PolicyRule],
        namespace: &str,
    ) -> Option<Attributes> {
        let or_all = |list: Option<&Vec<String>>| -> Vec<String> {
            match list {
                Some(list) if !list.is_empty() => list.clone(),
                _ => vec![String::new()],
            }
        };
        for rule in rules {
            let Some(resources) = rule.resources.as_ref().filter(|r| !r.is_empty()) else {
                // Non-resource URLs mean nothing to a registry.
                continue;
            };
            for group in or_all(rule.api_groups.as_ref()) {
                for resource in resources {
                    let (resource, subresource) =
                        resource.split_once('/').unwrap_or((resource, ""));
                    for verb in &rule.verbs {
                        for name in or_all(rule.resource_names.as_ref()) {
                            let attrs = Attributes {
                                verb: verb.clone(),
                                group: group.clone(),
                                resource: resource.to_string(),
                                subresource: subresource.to_string(),
                                namespace: namespace.to_string(),
                                name,
                            };
                            if !self.evaluate(user, &attrs).allowed() {
                                return Some(attrs);
                            }
                        }
                    }
                }
            }
        }
        None
    }
}
