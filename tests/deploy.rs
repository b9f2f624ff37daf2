//! The Kubernetes manifests under deploy/kubernetes: the kustomization lists every file, every
//! document parses as the `k8s-openapi` type its `apiVersion`/`kind` name with no field the type
//! lacks (a typo fails here, not in a cluster), the objects fit together, the image roles are
//! regate's own defaults, and the ConfigMap's regate.yaml is a configuration `regate serve`
//! accepts.

use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use regate::config::{Authority, Config, ServeArgs};
use serde_json::Value;

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
    let spec = deployment.spec.clone();
    assert!(spec.replicas.unwrap_or(1) >= 2, "two or more replicas");
    let pod = spec.template.spec.expect("pod spec");
    assert_eq!(pod.service_account_name, sa.metadata.name);

    let service: Service = manifest("service.yaml");
    assert_eq!(
        service.spec.and_then(|s| s.selector),
        spec.selector.match_labels,
        "the service selects the deployment's pods"
    );

    // TLS end to end: the Secret mounted where the config reads it, the Ingress re-encrypting
    // to the Service's https port.
    let container = &pod.containers[0];
    let tls_mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == "/etc/regate/tls")
        .expect("the TLS Secret is mounted");
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == tls_mount.name)
        .expect("its volume");
    let secret: Secret = manifest("tls-secret.yaml");
    assert_eq!(
        volume.secret.as_ref().and_then(|s| s.secret_name.clone()),
        secret.metadata.name
    );
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let ingress: Ingress = manifest("ingress.yaml");
    let ingress_spec = ingress.spec.expect("ingress spec");
    assert_eq!(
        ingress_spec.tls.expect("tls")[0].secret_name,
        secret.metadata.name
    );
    let backend = ingress_spec.rules.expect("rules")[0]
        .http
        .as_ref()
        .expect("http")
        .paths[0]
        .backend
        .service
        .clone()
        .expect("service backend");
    assert_eq!(
        Some(&backend.name),
        manifest::<Service>("service.yaml").metadata.name.as_ref()
    );

    // The registry regate fronts, and the config pointing at it.
    let registry: Service = manifest("registry-service.yaml");
    let claim: PersistentVolumeClaim = manifest("registry-pvc.yaml");
    let registry_pod = manifest::<Deployment>("registry-deployment.yaml")
        .spec
        .template
        .spec
        .expect("pod");
    assert!(
        registry_pod.volumes.iter().flatten().any(|v| v
            .persistent_volume_claim
            .as_ref()
            .is_some_and(|c| Some(&c.claim_name) == claim.metadata.name.as_ref())),
        "the registry stores on the claim"
    );
    let map: ConfigMap = manifest("configmap.yaml");
    let config = map.data.expect("data")["regate.yaml"].clone();
    assert!(
        config.contains(&format!(
            "upstream: http://{}.regate-system.svc:5000",
            registry.metadata.name.expect("name")
        )),
        "{config}"
    );
}

/// `kustomization.yaml`, with only the fields used here (an unknown one is an error).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct Kustomization {
    api_version: String,
    kind: String,
    namespace: String,
    resources: Vec<String>,
    images: Vec<KustomizeImage>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct KustomizeImage {
    name: String,
    new_name: String,
    new_tag: String,
}

fn dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// `doc` read as `T` and written back.
fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(
    doc: &Value,
) -> Result<Value, String> {
    let typed: T = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// Every field of `original` is in `typed` (which dropped whatever its type lacks); the paths
/// of those that are not.
fn lost_fields(original: &Value, typed: &Value, path: &str, lost: &mut Vec<String>) {
    match (original, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let here = format!("{path}.{key}");
                match b.get(key) {
                    Some(other) => lost_fields(value, other, &here, lost),
                    // An empty value may be left out when written back.
                    None if value.is_null()
                        || value.as_object().is_some_and(|o| o.is_empty())
                        || value.as_array().is_some_and(|a| a.is_empty()) => {}
                    None => lost.push(here),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                lost_fields(x, y, &format!("{path}[{i}]"), lost);
            }
        }
        _ => {}
    }
}

#[test]
fn every_manifest_is_listed_and_parses_as_its_type_with_no_unknown_field() {
    let text = std::fs::read_to_string(dir().join("kustomization.yaml")).expect("kustomization");
    let kustomization: Kustomization =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("kustomization.yaml: {e}"));
    assert_eq!(kustomization.namespace, "regate-system");
    for image in &kustomization.images {
        assert!(
            image.new_name.contains('/')
                && image
                    .new_name
                    .split('/')
                    .next()
                    .is_some_and(|h| h.contains('.')),
            "image {} is fully qualified: {}",
            image.name,
            image.new_name
        );
    }
    let mut files: Vec<String> = std::fs::read_dir(dir())
        .expect("deploy/kubernetes")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    files.sort();
    let mut listed = kustomization.resources.clone();
    listed.sort();
    assert_eq!(
        files, listed,
        "kustomization.yaml lists exactly the manifests"
    );

    let mut images = Vec::new();
    for file in &kustomization.resources {
        let text = std::fs::read_to_string(dir().join(file)).expect("manifest");
        for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let doc: Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{file} document {i}: {e}"));
            if doc.is_null() {
                continue;
            }
            let api = doc["apiVersion"].as_str().unwrap_or_default().to_string();
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            let typed = match (api.as_str(), kind.as_str()) {
                ("v1", "Namespace") => round_trip::<Namespace>(&doc),
                ("v1", "ServiceAccount") => round_trip::<ServiceAccount>(&doc),
                ("v1", "ConfigMap") => round_trip::<ConfigMap>(&doc),
                ("v1", "Secret") => round_trip::<Secret>(&doc),
                ("v1", "Service") => round_trip::<Service>(&doc),
                ("v1", "PersistentVolumeClaim") => round_trip::<PersistentVolumeClaim>(&doc),
                ("apps/v1", "Deployment") => round_trip::<Deployment>(&doc),
                ("networking.k8s.io/v1", "Ingress") => round_trip::<Ingress>(&doc),
                ("rbac.authorization.k8s.io/v1", "ClusterRole") => round_trip::<ClusterRole>(&doc),
                ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                    round_trip::<ClusterRoleBinding>(&doc)
                }
                other => panic!("{file} document {i}: no type known for {other:?}"),
            }
            .unwrap_or_else(|e| panic!("{file} document {i} ({kind}): {e}"));
            let mut lost = Vec::new();
            lost_fields(&doc, &typed, "", &mut lost);
            assert!(
                lost.is_empty(),
                "{file} document {i} ({kind}): fields {api} {kind} does not have: {lost:?}"
            );
            if kind == "Deployment" {
                for c in doc["spec"]["template"]["spec"]["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    images.push(c["image"].as_str().unwrap_or_default().to_string());
                }
            }
        }
    }
    // Every container image is one the kustomization sets.
    for image in images {
        assert!(
            kustomization.images.iter().any(|i| i.name == image),
            "image {image} is a kustomize parameter"
        );
    }
}

#[test]
fn the_image_roles_are_regates_own_defaults() {
    let text = std::fs::read_to_string(dir().join("image-clusterroles.yaml")).expect("roles");
    let defaults = regate::authority::embedded::cluster_roles();
    let mut names = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let role: ClusterRole = serde::Deserialize::deserialize(doc).expect("ClusterRole");
        let name = role.metadata.name.clone().expect("name");
        let default = defaults
            .iter()
            .find(|d| d.metadata.name.as_ref() == Some(&name))
            .unwrap_or_else(|| panic!("{name} is not one of regate's default roles"));
        assert_eq!(role.rules, default.rules, "{name}: the same rules");
        names.push(name);
    }
    names.sort();
    assert_eq!(
        names,
        [
            "registry-admin",
            "registry-editor",
            "registry-viewer",
            "system:image-builder",
            "system:image-pruner",
            "system:image-puller",
            "system:image-pusher"
        ]
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
    assert_eq!(
        config.audit,
        Some(regate::audit::AuditOutput::Stdout),
        "the audit log goes where the runtime collects it"
    );
}

#[test]
fn the_kubelet_credential_provider_config_runs_regate_with_a_token_of_regates_audience() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/kubelet/credential-provider-config.yaml");
    let text = std::fs::read_to_string(&path).expect("read the example");
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .collect();
    let config = &docs[0];
    assert_eq!(config["apiVersion"], "kubelet.config.k8s.io/v1");
    assert_eq!(config["kind"], "CredentialProviderConfig");
    let provider = &config["providers"][0];
    assert_eq!(
        provider["apiVersion"],
        "credentialprovider.kubelet.k8s.io/v1"
    );
    let args: Vec<&str> = provider["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("a string"))
        .collect();
    assert_eq!(args[0], "credential-provider");
    let registry = args[args
        .iter()
        .position(|a| *a == "--registry")
        .expect("--registry")
        + 1];
    let matched: Vec<&str> = provider["matchImages"]
        .as_sequence()
        .expect("matchImages")
        .iter()
        .map(|a| a.as_str().expect("a string"))
        .collect();
    assert!(
        matched.contains(&registry),
        "the kubelet calls it for the registry it answers"
    );
    let attrs = &provider["tokenAttributes"];
    assert_eq!(attrs["serviceAccountTokenAudience"], "regate");
    assert_eq!(attrs["cacheType"], "Token");
    assert_eq!(attrs["requireServiceAccount"], true);
    // The RBAC that lets kubelets mint that audience.
    let role: ClusterRole = serde_yaml::from_value(docs[1].clone()).expect("a ClusterRole");
    let rule = &role.rules.expect("rules")[0];
    assert_eq!(rule.verbs, ["request-serviceaccounts-token-audience"]);
    assert_eq!(rule.resources.as_deref(), Some(&["regate".to_string()][..]));
    let binding: ClusterRoleBinding = serde_yaml::from_value(docs[2].clone()).expect("a binding");
    assert_eq!(binding.subjects.expect("subjects")[0].name, "system:nodes");
}
