//! The Kubernetes manifests under deploy/kubernetes parse as the objects they claim to be, and
//! the ConfigMap's regate.yaml is a configuration `regate serve` accepts.

use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use regate::config::{Authority, Config, ServeArgs};

fn manifest<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/kubernetes")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn manifests_are_the_objects_they_claim() {
    let sa: ServiceAccount = manifest("serviceaccount.yaml");
    let binding: ClusterRoleBinding = manifest("clusterrolebinding.yaml");
    assert_eq!(binding.role_ref.name, "system:auth-delegator");
    let subject = &binding.subjects.as_ref().expect("subjects")[0];
    assert_eq!(Some(&subject.name), sa.metadata.name.as_ref());
    assert_eq!(subject.namespace, sa.metadata.namespace);

    let role: ClusterRole = manifest("clusterrole-pull-secrets.yaml");
    let binding: ClusterRoleBinding = manifest("clusterrolebinding-pull-secrets.yaml");
    assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
    assert_eq!(
        binding.subjects.as_ref().expect("subjects")[0].name,
        subject.name
    );
    let rules: Vec<(Vec<String>, Vec<String>)> = role
        .rules
        .unwrap_or_default()
        .into_iter()
        .map(|r| (r.resources.unwrap_or_default(), r.verbs))
        .collect();
    assert_eq!(
        rules,
        [
            (vec!["serviceaccounts".to_string()], vec!["get".to_string()]),
            (vec!["secrets".to_string()], vec!["list".to_string()]),
        ],
        "read access to pull secrets only"
    );

    let deployment: Deployment = manifest("deployment.yaml");
    let spec = deployment.spec;
    assert!(spec.replicas.unwrap_or(1) >= 2, "two or more replicas");
    let pod = spec.template.spec.expect("pod spec");
    assert_eq!(pod.service_account_name, sa.metadata.name);

    let service: Service = manifest("service.yaml");
    assert_eq!(
        service.spec.and_then(|s| s.selector),
        spec.selector.match_labels,
        "the service selects the deployment's pods"
    );
}

#[test]
fn the_configmap_is_a_valid_kubernetes_mode_config() {
    let map: ConfigMap = manifest("configmap.yaml");
    let yaml = map
        .data
        .and_then(|d| d.get("regate.yaml").cloned())
        .expect("regate.yaml in the ConfigMap");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("regate.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let config = Config::load(&ServeArgs {
        config: Some(path),
        ..ServeArgs::default()
    })
    .expect("regate serve accepts the ConfigMap's config");
    assert!(matches!(config.authority, Authority::Kubernetes(_)));
    assert!(
        config.token_key_file.is_some(),
        "replicas share a token key"
    );
}
