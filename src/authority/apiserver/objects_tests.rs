//! The objects the console reads and the RoleBindings it writes, through the router in-process
//! and through a real `kube` client over TCP: Kubernetes' answers, errors and authorization, and
//! the fixture (users with their bindings and tokens) that `rbac_tests.rs` shares for the
//! writes' escalation rules, visibility, concurrency and refusals.

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams};

use super::*;
use crate::authority::embedded::{IMAGE_PULLER, IMAGE_PUSHER, cluster_role_ref, parse_manifests};
use crate::policy::RBAC_GROUP;

/// Roles the tests bind: reading what the console shows, everything, binding `admin` without
/// holding it; and two Roles of project-a, one within what a registry-admin holds, one not.
const ROLES: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: console-reader}
rules:
- {apiGroups: [""], resources: [namespaces], verbs: [get, list]}
- {apiGroups: [""], resources: [serviceaccounts], verbs: [list]}
- apiGroups: [rbac.authorization.k8s.io]
  resources: [clusterroles, clusterrolebindings, roles]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: everything}
rules:
- {apiGroups: ["*"], resources: ["*"], verbs: ["*"]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: admin-binder}
rules:
- {apiGroups: [rbac.authorization.k8s.io], resources: [clusterroles], verbs: [bind], resourceNames: [admin]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: layer-reader, namespace: project-a}
rules:
- {apiGroups: ["", image.openshift.io], resources: [imagestreams/layers], verbs: [get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: image-deleter, namespace: project-a}
rules:
- {apiGroups: [image.openshift.io], resources: [images], verbs: [delete]}
"#;

/// The fixture, plus namespace `project-b` and users with tokens: `alice` registry-admin of
/// project-a, `carol` admin of project-a who may read what the console shows everywhere,
/// `root` who may do anything.
struct Console {
    fx: Fixture,
    alice: SecretString,
    carol: SecretString,
    root: SecretString,
}

fn console() -> Console {
    let fx = Fixture::default();
    let store = &fx.store;
    store.create_namespace("project-b").expect("namespace");
    let documents = parse_manifests("roles.yaml", ROLES).expect("manifests");
    store.apply(documents, None).expect("apply");
    for name in ["carol", "root"] {
        store.create_user(name, &[]).expect("user");
    }
    let user = |name: &str| [SubjectRef::User(name.to_string())];
    store
        .add_role("project-a", "registry-admin", &user("alice"))
        .expect("bind");
    store
        .add_role("project-a", "admin", &user("carol"))
        .expect("bind");
    store
        .add_cluster_role("console-reader", &user("carol"))
        .expect("bind");
    store
        .add_cluster_role("everything", &user("root"))
        .expect("bind");
    let token = |name: &str| {
        secret(
            store
                .create_user_token(name, Duration::from_secs(600))
                .expect("token")
                .token,
        )
    };
    let (alice, carol, root) = (token("alice"), token("carol"), token("root"));
    fx.reload();
    Console {
        fx,
        alice,
        carol,
        root,
    }
}

fn user_subject(name: &str) -> Subject {
    Subject {
        api_group: Some(RBAC_GROUP.to_string()),
        kind: "User".to_string(),
        name: name.to_string(),
        namespace: None,
    }
}

/// RoleBinding `name` of ClusterRole `role` to user `who`, as a client sends it.
fn binding(name: &str, role: &str, who: &str) -> RoleBinding {
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        role_ref: cluster_role_ref(role),
        subjects: Some(vec![user_subject(who)]),
    }
}

fn role_bindings_path(ns: &str) -> String {
    format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings")
}

fn role_binding_path(ns: &str, name: &str) -> String {
    format!("{}/{name}", role_bindings_path(ns))
}

/// The JSON of `value`, as a request body.
fn json<T: Serialize>(value: &T) -> Body {
    Body::from(serde_json::to_vec(value).expect("serialise"))
}

/// The 200 answer, parsed.
async fn ok<T: DeserializeOwned>(response: Response) -> T {
    let status = response.status();
    let body = body_of(response).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("an object")
}

impl Console {
    /// The names of project-a's RoleBindings as `token`'s holder lists them.
    async fn binding_names(&self, token: &SecretString, ns: &str) -> Vec<String> {
        let response = self
            .fx
            .send("GET", &role_bindings_path(ns), Some(token), Body::empty())
            .await;
        let list: k8s_openapi::List<RoleBinding> = ok(response).await;
        list.items
            .into_iter()
            .filter_map(|b| b.metadata.name)
            .collect()
    }

    /// `POST`s `body` to `ns`'s RoleBindings as `token`'s holder.
    async fn create(&self, token: &SecretString, ns: &str, body: Body) -> Response {
        self.fx
            .send("POST", &role_bindings_path(ns), Some(token), body)
            .await
    }
}

/// The server on a local port, with clients for it.
struct Served {
    url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn served(server: Arc<ApiServer>) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = client_url(listener.local_addr().expect("address"), "http");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        listener,
        server,
        None,
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));
    Served { url, stop, task }
}

impl Served {
    /// A kube client sending `token`.
    fn client(&self, token: &SecretString) -> kube::Client {
        let mut config = kube::Config::new(self.url.parse().expect("url"));
        config.auth_info.token = Some(token.clone());
        kube::Client::try_from(config).expect("client")
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("join");
    }
}

/// The `Status` of a kube client's failed call.
fn api_error<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> (u16, String, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.reason, status.message),
        other => panic!("not a Status: {other:?}"),
    }
}

// --- a real kube client ---

#[tokio::test]
async fn a_kube_client_lists_creates_replaces_and_deletes_role_bindings() {
    let cx = console();
    let served = served(cx.fx.server.clone()).await;
    let client = served.client(&cx.carol);
    let api = Api::<RoleBinding>::namespaced(client.clone(), "project-a");
    let pp = PostParams::default();

    let listed = api.list(&ListParams::default()).await.expect("list");
    let names: Vec<_> = listed
        .iter()
        .filter_map(|b| b.metadata.name.clone())
        .collect();
    assert_eq!(
        names,
        [
            "admin",
            "registry-admin",
            "system:image-builders",
            "system:image-pullers"
        ]
    );
    assert!(listed.metadata.resource_version.is_some());
    assert!(listed.iter().all(|b| b.metadata.resource_version.is_some()));

    let created = api
        .create(&pp, &binding("pullers", IMAGE_PULLER, "bob"))
        .await
        .expect("create");
    assert!(created.metadata.uid.is_some());
    let got = api.get("pullers").await.expect("get");
    assert_eq!(
        got, created,
        "what is answered is what is stored, to the version"
    );

    let mut change = got.clone();
    change
        .subjects
        .get_or_insert_with(Vec::new)
        .push(user_subject("carol"));
    let replaced = api.replace("pullers", &pp, &change).await.expect("replace");
    assert_eq!(replaced.subjects.as_ref().map(Vec::len), Some(2));
    assert_eq!(replaced.metadata.uid, created.metadata.uid);
    assert_ne!(
        replaced.metadata.resource_version,
        got.metadata.resource_version
    );

    // `change` still carries the version read before the replace.
    let (code, reason, message) = api_error(api.replace("pullers", &pp, &change).await);
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert!(
        message.contains("the object has been modified; please apply your changes"),
        "{message}"
    );
    let mut blind = change.clone();
    blind.metadata.resource_version = None;
    blind.subjects = Some(vec![user_subject("dave")]);
    let replaced = api
        .replace("pullers", &pp, &blind)
        .await
        .expect("unconditional");
    assert_eq!(replaced.subjects, blind.subjects);

    let deleted = api
        .delete("pullers", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(deleted.is_right(), "a Status: {deleted:?}");
    let (code, reason, _) = api_error(api.get("pullers").await);
    assert_eq!((code, reason.as_str()), (404, "NotFound"));
    let (code, _, _) = api_error(api.delete("pullers", &DeleteParams::default()).await);
    assert_eq!(code, 404);

    let namespaces = Api::<Namespace>::all(client.clone());
    let listed = namespaces.list(&ListParams::default()).await.expect("list");
    let names: Vec<_> = listed
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    assert_eq!(names, ["project-a", "project-b", CLIENT_NAMESPACE]);
    let phase = |n: &Namespace| n.status.as_ref().and_then(|s| s.phase.clone());
    assert!(listed.iter().all(|n| phase(n).as_deref() == Some("Active")));
    let one = namespaces.get("project-b").await.expect("get");
    assert_eq!(one.metadata.name.as_deref(), Some("project-b"));
    assert!(one.metadata.uid.is_some());

    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), "project-a")
        .list(&ListParams::default())
        .await
        .expect("list");
    let names: Vec<_> = accounts
        .iter()
        .filter_map(|a| a.metadata.name.clone())
        .collect();
    assert_eq!(names, ["builder", "default", "deployer"]);

    let roles = Api::<ClusterRole>::all(client)
        .list(&ListParams::default())
        .await
        .expect("list");
    let names: Vec<_> = roles
        .iter()
        .filter_map(|r| r.metadata.name.clone())
        .collect();
    assert!(names.iter().any(|n| n == "admin") && names.iter().any(|n| n == IMAGE_PULLER));

    // Without the rights, the client gets Kubernetes' 403.
    let denied = Api::<RoleBinding>::namespaced(served.client(&cx.fx.default), "project-a");
    let (code, reason, _) = api_error(denied.list(&ListParams::default()).await);
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    served.stop().await;
}

#[tokio::test]
async fn lists_and_items_name_their_kind_and_version() {
    let cx = console();
    let response = cx
        .fx
        .send(
            "GET",
            &role_bindings_path("project-a"),
            Some(&cx.carol),
            Body::empty(),
        )
        .await;
    let list: serde_json::Value = ok(response).await;
    assert_eq!(list["kind"], "RoleBindingList");
    assert_eq!(list["apiVersion"], "rbac.authorization.k8s.io/v1");
    assert!(list["metadata"]["resourceVersion"].is_string());
    let items = list["items"].as_array().expect("items");
    assert!(!items.is_empty());
    for item in items {
        assert_eq!(item["kind"], "RoleBinding");
        assert_eq!(item["apiVersion"], "rbac.authorization.k8s.io/v1");
    }
    let response = cx
        .fx
        .send("GET", NAMESPACES_PATH, Some(&cx.carol), Body::empty())
        .await;
    let list: serde_json::Value = ok(response).await;
    assert_eq!(list["kind"], "NamespaceList");
    assert_eq!(list["items"][0]["kind"], "Namespace");
    assert_eq!(list["items"][0]["apiVersion"], "v1");

    // Lists in a namespace that does not exist are empty, as in Kubernetes.
    assert!(cx.binding_names(&cx.root, "nowhere").await.is_empty());
}

// --- authorization, in Kubernetes' words ---

#[tokio::test]
async fn forbidden_and_missing_answers_speak_kubernetes() {
    let cx = console();
    let fx = &cx.fx;
    let who = "system:serviceaccount:project-a:default";
    let cases = [
        (
            role_bindings_path("project-a"),
            format!(
                "rolebindings.rbac.authorization.k8s.io is forbidden: User \"{who}\" cannot list \
                 resource \"rolebindings\" in API group \"rbac.authorization.k8s.io\" in the \
                 namespace \"project-a\""
            ),
        ),
        (
            format!("{NAMESPACES_PATH}/project-a"),
            format!(
                "namespaces \"project-a\" is forbidden: User \"{who}\" cannot get resource \
                 \"namespaces\" in API group \"\" in the namespace \"project-a\""
            ),
        ),
        (
            NAMESPACES_PATH.to_string(),
            format!(
                "namespaces is forbidden: User \"{who}\" cannot list resource \"namespaces\" in \
                 API group \"\" at the cluster scope"
            ),
        ),
        (
            format!("{CLUSTER_ROLES_PATH}/admin"),
            format!(
                "clusterroles.rbac.authorization.k8s.io \"admin\" is forbidden: User \"{who}\" \
                 cannot get resource \"clusterroles\" in API group \"rbac.authorization.k8s.io\" \
                 at the cluster scope"
            ),
        ),
    ];
    for (path, message) in cases {
        let response = fx
            .send("GET", &path, Some(&fx.default), Body::empty())
            .await;
        let status = failure(response, StatusCode::FORBIDDEN, "Forbidden").await;
        assert_eq!(status.message.as_deref(), Some(message.as_str()), "{path}");
    }
    let response = fx
        .send(
            "GET",
            &role_bindings_path("project-a"),
            Some(&fx.default),
            Body::empty(),
        )
        .await;
    let status = failure(response, StatusCode::FORBIDDEN, "Forbidden").await;
    let details = status.details.expect("details");
    assert_eq!(details.kind.as_deref(), Some("rolebindings"));
    assert_eq!(details.group.as_deref(), Some(RBAC_GROUP));

    let response = fx
        .send("GET", &role_bindings_path("project-a"), None, Body::empty())
        .await;
    failure(response, StatusCode::UNAUTHORIZED, "Unauthorized").await;

    let response = fx
        .send(
            "GET",
            &role_binding_path("project-a", "x"),
            Some(&cx.carol),
            Body::empty(),
        )
        .await;
    let status = failure(response, StatusCode::NOT_FOUND, "NotFound").await;
    assert_eq!(
        status.message.as_deref(),
        Some("rolebindings.rbac.authorization.k8s.io \"x\" not found")
    );
    let details = status.details.expect("details");
    assert_eq!(details.name.as_deref(), Some("x"));
    assert_eq!(details.kind.as_deref(), Some("rolebindings"));
    let response = fx
        .send(
            "GET",
            &format!("{NAMESPACES_PATH}/nowhere"),
            Some(&cx.root),
            Body::empty(),
        )
        .await;
    let status = failure(response, StatusCode::NOT_FOUND, "NotFound").await;
    assert_eq!(
        status.message.as_deref(),
        Some("namespaces \"nowhere\" not found")
    );

    let response = fx
        .send(
            "PATCH",
            &role_binding_path("project-a", "x"),
            Some(&cx.root),
            Body::empty(),
        )
        .await;
    assert_eq!(
        response.headers().get(header::ALLOW),
        Some(&HeaderValue::from_static("GET, HEAD, PUT, DELETE"))
    );
    failure(response, StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed").await;
}

#[path = "rbac_tests.rs"]
mod rbac_tests;
