//! The Kubernetes manifests under deploy/kubernetes and deploy/kubelet: each kustomization lists
//! every file of its directory, every document parses as the `k8s-openapi` type its
//! `apiVersion`/`kind` name with no field the type lacks (a typo fails here, not in a cluster),
//! the objects fit together (the registry admits only regate, the metrics port stays off the
//! Ingress, the audience the kubelet mints is one regate accepts), the image roles are regate's
//! own defaults, the ConfigMap's regate.yaml is a configuration `regate serve` accepts, and
//! `kubectl kustomize` renders both directories.

use std::path::Path;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use regate::config::{Authority, Config, ServeArgs};
use serde_json::Value;

/// The one document of deploy/kubernetes/`name`.
fn manifest<T: serde::de::DeserializeOwned>(name: &str) -> T {
    manifest_in("deploy/kubernetes", name)
}

/// The one document of `dir`/`name` (`dir` relative to the crate).
fn manifest_in<T: serde::de::DeserializeOwned>(dir: &str, name: &str) -> T {
    documents_in(dir, name)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{dir}/{name}: no document"))
}

/// Every document of `dir`/`name`.
fn documents_in<T: serde::de::DeserializeOwned>(dir: &str, name: &str) -> Vec<T> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| T::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

/// regate's ConfigMap, loaded as `regate serve` loads it.
fn configmap_config() -> Config {
    let map: ConfigMap = manifest("configmap.yaml");
    let yaml = map
        .data
        .and_then(|d| d.get("regate.yaml").cloned())
        .expect("regate.yaml in the ConfigMap");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("regate.yaml");
    std::fs::write(&path, yaml).expect("write config");
    Config::load(&ServeArgs {
        config: Some(path),
        ..ServeArgs::default()
    })
    .expect("regate serve accepts the ConfigMap's config")
}

/// regate's Deployment's container.
fn regate_container() -> Container {
    let deployment: Deployment = manifest("deployment.yaml");
    deployment
        .spec
        .template
        .spec
        .expect("pod spec")
        .containers
        .into_iter()
        .find(|c| c.name == "regate")
        .expect("container regate")
}

/// The container port `port` names (a number, or a port name of `container`).
fn container_port(container: &Container, port: &IntOrString) -> i32 {
    match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => {
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_ref() == Some(name))
                .unwrap_or_else(|| panic!("container {} has no port {name}", container.name))
                .container_port
        }
    }
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
    let tls_secret = volume.secret.as_ref().and_then(|s| s.secret_name.clone());
    assert_eq!(tls_secret.as_deref(), Some("regate-tls"));
    let ingress: Ingress = manifest("ingress.yaml");
    let ingress_spec = ingress.spec.expect("ingress spec");
    assert_eq!(ingress_spec.tls.expect("tls")[0].secret_name, tls_secret);
    // cert-manager, when used, writes that Secret.
    let certificate: serde_yaml::Value =
        manifest_in("deploy/kubernetes/cert-manager", "certificate.yaml");
    assert_eq!(certificate["apiVersion"], "cert-manager.io/v1");
    assert_eq!(certificate["kind"], "Certificate");
    assert_eq!(
        certificate["spec"]["secretName"].as_str(),
        tls_secret.as_deref()
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
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    config_map_generator: Vec<Generator>,
    #[serde(default)]
    images: Vec<KustomizeImage>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct Generator {
    name: String,
    files: Vec<String>,
}

/// The kustomization of `dir` (relative to the crate).
fn kustomization(dir: &str) -> Kustomization {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(dir)
        .join("kustomization.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The kustomize directories: each kustomization names every YAML file beside it.
const KUSTOMIZATIONS: [&str; 3] = [
    "deploy/kubernetes",
    "deploy/kubernetes/cert-manager",
    "deploy/kubelet",
];

#[test]
fn every_kustomization_lists_every_yaml_file_of_its_directory() {
    for dir in KUSTOMIZATIONS {
        let k = kustomization(dir);
        let mut files: Vec<String> =
            std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
                .unwrap_or_else(|e| panic!("{dir}: {e}"))
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| {
                    (n.ends_with(".yaml") || n.ends_with(".yml")) && n != "kustomization.yaml"
                })
                .collect();
        files.sort();
        let mut listed: Vec<String> = k
            .resources
            .iter()
            .chain(k.config_map_generator.iter().flat_map(|g| &g.files))
            .cloned()
            .collect();
        listed.sort();
        assert_eq!(
            files, listed,
            "{dir}/kustomization.yaml lists exactly its files"
        );
    }
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
fn every_manifest_parses_as_its_type_with_no_unknown_field() {
    let base = kustomization("deploy/kubernetes");
    assert_eq!(base.namespace.as_deref(), Some("regate-system"));
    let kubelet = kustomization("deploy/kubelet");
    assert_eq!(kubelet.namespace, base.namespace);
    for image in base.images.iter().chain(&kubelet.images) {
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
    for (dir, k) in [("deploy/kubernetes", &base), ("deploy/kubelet", &kubelet)] {
        let images = typed_documents(dir, &k.resources);
        // Every container image is one the kustomization sets.
        for image in images {
            assert!(
                k.images.iter().any(|i| i.name == image),
                "{dir}: image {image} is a kustomize parameter"
            );
        }
    }
}

/// Checks that every document of `files` in `dir` is the type it names, with no field the
/// type lacks, and that no Secret ships empty; the images of its containers.
fn typed_documents(dir: &str, files: &[String]) -> Vec<String> {
    let mut images = Vec::new();
    for file in files {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join(file);
        let text = std::fs::read_to_string(&path).expect("manifest");
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
                ("apps/v1", "DaemonSet") => round_trip::<DaemonSet>(&doc),
                ("policy/v1", "PodDisruptionBudget") => round_trip::<PodDisruptionBudget>(&doc),
                ("networking.k8s.io/v1", "Ingress") => round_trip::<Ingress>(&doc),
                ("networking.k8s.io/v1", "NetworkPolicy") => round_trip::<NetworkPolicy>(&doc),
                ("rbac.authorization.k8s.io/v1", "ClusterRole") => round_trip::<ClusterRole>(&doc),
                ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                    round_trip::<ClusterRoleBinding>(&doc)
                }
                other => panic!("{dir}/{file} document {i}: no type known for {other:?}"),
            }
            .unwrap_or_else(|e| panic!("{dir}/{file} document {i} ({kind}): {e}"));
            let mut lost = Vec::new();
            lost_fields(&doc, &typed, "", &mut lost);
            assert!(
                lost.is_empty(),
                "{dir}/{file} document {i} ({kind}): fields {api} {kind} does not have: {lost:?}"
            );
            assert!(kind != "Secret", "{dir}/{file}: a Secret shipped in git");
            let pod = &doc["spec"]["template"]["spec"];
            for c in ["initContainers", "containers"]
                .iter()
                .flat_map(|key| pod[key].as_array().into_iter().flatten())
            {
                images.push(c["image"].as_str().unwrap_or_default().to_string());
            }
        }
    }
    images
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
    let config = configmap_config();
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
    // Behind the Ingress the client is the forwarded one: the controller's pods are trusted.
    assert!(
        config
            .trusted_proxies
            .contains(&"10.244.1.7".parse().expect("an address")),
        "trusted_proxies covers the ingress controller's pods"
    );
    assert!(
        !config
            .trusted_proxies
            .contains(&"203.0.113.9".parse().expect("an address")),
        "and no outside client"
    );
}

/// The kubelet's provider config: exactly one document, the `CredentialProviderConfig`.
fn credential_provider_config() -> serde_yaml::Value {
    let docs: Vec<serde_yaml::Value> =
        documents_in("deploy/kubelet", "credential-provider-config.yaml");
    assert_eq!(
        docs.len(),
        1,
        "the kubelet reads one document; RBAC lives elsewhere"
    );
    docs.into_iter().next().expect("one document")
}

/// The audience of the tokens the kubelet mints for regate.
fn minted_audience() -> String {
    credential_provider_config()["providers"][0]["tokenAttributes"]["serviceAccountTokenAudience"]
        .as_str()
        .expect("serviceAccountTokenAudience")
        .to_string()
}

#[test]
fn the_kubelet_credential_provider_config_runs_regate_with_a_token_of_regates_audience() {
    let config = credential_provider_config();
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

    // The RBAC that lets kubelets mint that audience, applied with deploy/kubernetes.
    let rbac: Vec<serde_yaml::Value> =
        documents_in("deploy/kubernetes", "kubelet-audience-rbac.yaml");
    let role: ClusterRole = serde_yaml::from_value(rbac[0].clone()).expect("a ClusterRole");
    let rule = &role.rules.expect("rules")[0];
    assert_eq!(rule.verbs, ["request-serviceaccounts-token-audience"]);
    assert_eq!(rule.resources.as_deref(), Some(&[minted_audience()][..]));
    let binding: ClusterRoleBinding =
        serde_yaml::from_value(rbac[1].clone()).expect("a ClusterRoleBinding");
    assert_eq!(binding.role_ref.name, role.metadata.name.expect("name"));
    assert_eq!(binding.subjects.expect("subjects")[0].name, "system:nodes");
}

#[test]
fn the_gateway_accepts_the_audience_the_kubelet_mints_and_the_api_servers() {
    let Authority::Kubernetes(settings) = configmap_config().authority else {
        panic!("kubernetes authority");
    };
    assert!(
        settings.audiences.contains(&minted_audience()),
        "authority.audiences {:?} lacks {:?}: the kubelet's tokens would be refused",
        settings.audiences,
        minted_audience()
    );
    // Empty means the API server's own; listing `regate` alone would refuse every other token.
    assert!(
        settings.audiences.iter().any(|a| *a != minted_audience()),
        "ordinary tokens (the API server's audience) are still accepted: {:?}",
        settings.audiences
    );
}

#[test]
fn the_kubelet_installer_copies_regate_into_the_kubelets_directories() {
    let ds: DaemonSet = manifest_in("deploy/kubelet", "daemonset.yaml");
    let pod = ds.spec.template.spec.expect("pod spec");
    let host_paths: Vec<String> = pod
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| Some(v.host_path.as_ref()?.path.clone()))
        .collect();
    assert!(
        host_paths
            .iter()
            .any(|p| p == "/usr/libexec/kubernetes/kubelet-plugins/credential-provider/exec"),
        "{host_paths:?}"
    );
    let image = pod
        .volumes
        .iter()
        .flatten()
        .find_map(|v| v.image.as_ref()?.reference.clone())
        .expect("regate's image as a volume");
    let base = kustomization("deploy/kubernetes");
    let regate = base
        .images
        .iter()
        .find(|i| i.name == "regate")
        .expect("regate's image");
    assert_eq!(
        image,
        format!("{}:{}", regate.new_name, regate.new_tag),
        "the same image as the gateway's"
    );
    // The binary under the provider's name, from where deploy/image/build.sh puts it.
    let script = pod.init_containers.expect("init containers")[0]
        .command
        .clone()
        .expect("command")
        .join(" ");
    let name = credential_provider_config()["providers"][0]["name"]
        .as_str()
        .expect("name")
        .to_string();
    assert!(
        script.contains("/usr/local/bin/regate") && script.contains(&format!("/{name}\"")),
        "{script}"
    );
}

#[test]
fn only_regate_reaches_the_registry() {
    let policy: NetworkPolicy = manifest("networkpolicy-registry.yaml");
    let spec = policy.spec.expect("spec");
    let registry: Deployment = manifest("registry-deployment.yaml");
    assert_eq!(
        spec.pod_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone()),
        registry.spec.selector.match_labels,
        "the policy selects the registry's pods"
    );
    assert_eq!(
        spec.policy_types.as_deref(),
        Some(&["Ingress".to_string()][..])
    );
    let regate: Deployment = manifest("deployment.yaml");
    let regate_labels = regate.spec.template.metadata.and_then(|m| m.labels);
    let rules = spec.ingress.expect("ingress rules");
    assert!(!rules.is_empty());
    for rule in rules {
        let peers = rule
            .from
            .expect("every rule names its peers (none: everyone)");
        assert!(!peers.is_empty(), "an empty from admits everyone");
        for peer in peers {
            assert!(
                peer.namespace_selector.is_none() && peer.ip_block.is_none(),
                "regate's namespace only, no addresses"
            );
            assert_eq!(
                peer.pod_selector.and_then(|s| s.match_labels),
                regate_labels,
                "only regate's pods"
            );
        }
    }
}

#[test]
fn regate_survives_a_drain_and_spreads_over_nodes() {
    let deployment: Deployment = manifest("deployment.yaml");
    let labels = deployment.spec.selector.match_labels.clone();
    let pdb: PodDisruptionBudget = manifest("pdb.yaml");
    let pdb = pdb.spec.expect("spec");
    assert_eq!(pdb.selector.and_then(|s| s.match_labels), labels);
    assert_eq!(pdb.min_available, Some(IntOrString::Int(1)));
    assert!(deployment.spec.replicas.unwrap_or(1) > 1);
    let pod = deployment.spec.template.spec.expect("pod");
    let spread = pod
        .topology_spread_constraints
        .iter()
        .flatten()
        .find(|c| c.topology_key == "kubernetes.io/hostname")
        .expect("spread by node");
    assert_eq!(
        spread.label_selector.clone().and_then(|s| s.match_labels),
        labels
    );
    assert_eq!(spread.max_skew, 1);
}

#[test]
fn metrics_are_served_on_their_own_port_and_never_through_the_ingress() {
    let metrics = configmap_config()
        .metrics_listen
        .expect("metrics.listen")
        .port();
    let container = regate_container();
    let api = container_port(&container, &IntOrString::String("https".into()));
    assert_ne!(i32::from(metrics), api);
    assert!(
        container
            .ports
            .iter()
            .flatten()
            .any(|p| p.container_port == i32::from(metrics)),
        "the container names its metrics port"
    );

    // The Ingress's Service forwards only to the API port.
    let ingress: Ingress = manifest("ingress.yaml");
    let backend = ingress.spec.expect("spec").rules.expect("rules")[0]
        .http
        .as_ref()
        .expect("http")
        .paths[0]
        .backend
        .service
        .clone()
        .expect("service backend");
    let service: Service = manifest("service.yaml");
    assert_eq!(Some(&backend.name), service.metadata.name.as_ref());
    let ports = service.spec.expect("spec").ports.expect("ports");
    for port in &ports {
        let target = port
            .target_port
            .clone()
            .unwrap_or(IntOrString::Int(port.port));
        assert_ne!(
            container_port(&container, &target),
            i32::from(metrics),
            "service {} exposes the metrics port",
            backend.name
        );
    }
    let backend_port = backend.port.expect("port");
    assert!(ports.iter().any(
        |p| (backend_port.name.is_some() && p.name == backend_port.name)
            || backend_port.number == Some(p.port)
    ));

    // The metrics port is open to the monitoring namespace only.
    let policy: NetworkPolicy = manifest("networkpolicy-regate.yaml");
    let rules = policy.spec.expect("spec").ingress.expect("rules");
    for rule in rules {
        let to_metrics = rule.ports.iter().flatten().any(|p| {
            p.port
                .as_ref()
                .is_some_and(|p| container_port(&container, p) == i32::from(metrics))
        });
        if to_metrics {
            let peers = rule.from.expect("peers");
            assert!(!peers.is_empty());
            assert!(peers.iter().all(|p| p.namespace_selector.is_some()));
        }
    }
}

#[test]
fn the_registry_is_probed_and_writes_only_its_volumes() {
    let registry: Deployment = manifest("registry-deployment.yaml");
    let pod = registry.spec.template.spec.expect("pod");
    let c = &pod.containers[0];
    assert!(c.liveness_probe.is_some() && c.readiness_probe.is_some());
    assert_eq!(
        c.security_context
            .as_ref()
            .and_then(|s| s.read_only_root_filesystem),
        Some(true)
    );
    assert!(
        c.volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path == "/var/lib/registry" && m.read_only != Some(true)),
        "the data volume is writable"
    );
}

#[test]
fn the_token_key_and_certificate_are_required_not_shipped() {
    let deployment: Deployment = manifest("deployment.yaml");
    let pod = deployment.spec.template.spec.expect("pod");
    for name in ["regate-tls", "regate-token-key"] {
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find_map(|v| {
                v.secret
                    .as_ref()
                    .filter(|s| s.secret_name.as_deref() == Some(name))
            })
            .unwrap_or_else(|| panic!("Secret {name} is mounted"));
        assert_ne!(
            volume.optional,
            Some(true),
            "without {name} the pod does not start"
        );
    }
}

/// `kubectl kustomize DIR`'s output, or `None` (said) without kubectl.
fn kustomize(dir: &str) -> Option<String> {
    let output = match std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("skipped: kubectl is not installed, {dir} not rendered");
            return None;
        }
        Err(e) => panic!("kubectl: {e}"),
    };
    assert!(
        output.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8(output.stdout).expect("UTF-8"))
}

#[test]
fn kubectl_kustomize_renders_both_directories() {
    if let Some(rendered) = kustomize("deploy/kubernetes") {
        for kind in [
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Deployment",
            "Ingress",
        ] {
            assert!(rendered.contains(&format!("kind: {kind}\n")), "{kind}");
        }
        assert!(!rendered.contains("kind: Secret\n"), "no Secret shipped");
    }
    if let Some(rendered) = kustomize("deploy/kubelet") {
        assert!(rendered.contains("kind: DaemonSet\n"));
        // The config rides in a ConfigMap whose name kustomize suffixes; the DaemonSet follows.
        let name = rendered
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("name: regate-credential-provider-")
                    .filter(|suffix| !suffix.starts_with("installer"))
            })
            .expect("the generated ConfigMap");
        assert!(
            rendered
                .matches(&format!("regate-credential-provider-{name}"))
                .count()
                >= 2
        );
    }
}
