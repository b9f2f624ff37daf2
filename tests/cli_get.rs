//! `regate get` as a whole process against a real state directory: each kind's table (exact,
//! with the time-dependent cells masked), `-A`, `-o wide|name|yaml|json`, exit codes and
//! messages, and secret data kept out of tables.

mod common;

use std::fs;
use std::process::Output;

use common::*;

/// `project-a` and `project-b`, user alice in group devs and pulling in project-a, registry-admin
/// bound cluster-wide to group admins, a hand-written Role and Secret; no server.
fn env() -> Env {
    let env = Env::builder().namespaces(PROJECTS).cli_only().run();
    env.regate_ok(&["create", "user", "alice", "--group", "devs"]);
    env.regate_ok(&[
        "policy",
        "add-role-to-user",
        "system:image-puller",
        "alice",
        "-n",
        "project-a",
    ]);
    env.regate_ok(&[
        "policy",
        "add-cluster-role-to-group",
        "registry-admin",
        "admins",
    ]);
    let ns = env.state_dir().join("namespaces/project-a");
    write(
        &ns.join("roles/reader.yaml"),
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: reader\n  \
         namespace: project-a\n  creationTimestamp: \"2026-01-02T03:04:05Z\"\nrules:\n- apiGroups: \
         [\"\"]\n  resources: [\"secrets\"]\n  verbs: [\"get\"]\n",
    );
    write(
        &ns.join("secrets/pull.yaml"),
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: pull\n  namespace: project-a\n\
             type: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {SECRET_DATA}\n"
        ),
    );
    env
}

/// base64 of `{"auths":{}}`, the hand-written secret's only value.
const SECRET_DATA: &str = "eyJhdXRocyI6e319";

fn write(path: &std::path::Path, text: &str) {
    let dir = path.parent().expect("a parent directory");
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Runs `regate get ARGS`, checks the exit code and returns the output.
fn get(env: &Env, args: &[&str], code: i32) -> Output {
    let args: Vec<&str> = std::iter::once("get").chain(args.iter().copied()).collect();
    env.regate_exit(&args, code)
}

/// The table `regate get ARGS` prints (exit code 0, nothing on stderr), with the cells of the
/// columns `masked` (headers) replaced by `*`: ages, creation times and uids change per run.
fn table(env: &Env, args: &[&str], masked: &[&str]) -> String {
    let out = get(env, args, 0);
    assert_eq!(stderr(&out), "", "get {args:?}");
    mask(&stdout(&out), masked)
}

/// Replaces the cells under each of the `columns` headers by `*`, keeping the alignment.
fn mask(table: &str, columns: &[&str]) -> String {
    let header = table.lines().next().unwrap_or_default();
    let mut lines: Vec<String> = table.lines().map(String::from).collect();
    for column in columns {
        let start = header
            .find(column)
            .unwrap_or_else(|| panic!("no {column} column in {table}"));
        let after = start + column.len();
        let end = header[after..].find(|c: char| c != ' ').map(|i| after + i);
        for line in lines.iter_mut().skip(1) {
            let stop = end.unwrap_or(line.len()).min(line.len());
            if start < stop {
                let width = stop - start;
                let cell = if end.is_some() {
                    format!("{:<width$}", "*")
                } else {
                    "*".to_string()
                };
                line.replace_range(start..stop, &cell);
            }
        }
    }
    lines
        .iter()
        .map(|l| format!("{}\n", l.trim_end()))
        .collect()
}

#[test]
fn each_kind_has_its_table() {
    let env = env();
    assert_eq!(
        table(&env, &["namespaces"], &["AGE"]),
        "\
NAME        STATUS   AGE
project-a   Active   *
project-b   Active   *
"
    );
    assert_eq!(
        table(&env, &["sa", "-n", "project-a"], &["AGE"]),
        "\
NAME       SECRETS   AGE
builder    0         *
default    0         *
deployer   0         *
"
    );
    assert_eq!(
        table(&env, &["roles", "-n", "project-a"], &[]),
        "\
NAME     CREATED AT
reader   2026-01-02T03:04:05Z
"
    );
    assert_eq!(
        table(&env, &["rolebindings", "-n", "project-a"], &["AGE"]),
        "\
NAME                    ROLE                               AGE
system:image-builders   ClusterRole/system:image-builder   *
system:image-puller     ClusterRole/system:image-puller    *
system:image-pullers    ClusterRole/system:image-puller    *
"
    );
    let cluster_roles = table(&env, &["clusterroles"], &["CREATED AT"]);
    assert!(
        cluster_roles
            .starts_with("NAME                    CREATED AT\nadmin                   *\n"),
        "{cluster_roles}"
    );
    assert!(
        cluster_roles.contains("\nsystem:image-puller     *\n"),
        "{cluster_roles}"
    );
    assert_eq!(
        table(&env, &["clusterrolebindings"], &["AGE"]),
        "\
NAME             ROLE                         AGE
registry-admin   ClusterRole/registry-admin   *
"
    );
    assert_eq!(
        table(&env, &["secrets", "-n", "project-a"], &[]),
        "\
NAME   TYPE                             DATA   AGE
pull   kubernetes.io/dockerconfigjson   1      <unknown>
"
    );
    assert_eq!(
        table(&env, &["users"], &["UID"]),
        "\
NAME    UID                                    FULL NAME   IDENTITIES
alice   *
"
    );
}

#[test]
fn all_namespaces_and_wide() {
    let env = env();
    assert_eq!(
        table(&env, &["serviceaccounts", "-A"], &["AGE"]),
        "\
NAMESPACE   NAME       SECRETS   AGE
project-a   builder    0         *
project-a   default    0         *
project-a   deployer   0         *
project-b   builder    0         *
project-b   default    0         *
project-b   deployer   0         *
"
    );
    assert_eq!(
        table(&env, &["rolebindings", "-A", "-o", "wide"], &["AGE"]),
        "\
NAMESPACE   NAME                    ROLE                               AGE   USERS   GROUPS                             SERVICEACCOUNTS
project-a   system:image-builders   ClusterRole/system:image-builder   *                                                project-a/builder
project-a   system:image-puller     ClusterRole/system:image-puller    *     alice
project-a   system:image-pullers    ClusterRole/system:image-puller    *             system:serviceaccounts:project-a
project-b   system:image-builders   ClusterRole/system:image-builder   *                                                project-b/builder
project-b   system:image-pullers    ClusterRole/system:image-puller    *             system:serviceaccounts:project-b
"
    );
    assert_eq!(
        table(&env, &["clusterrolebinding", "-o", "wide"], &["AGE"]),
        "\
NAME             ROLE                         AGE   USERS   GROUPS   SERVICEACCOUNTS
registry-admin   ClusterRole/registry-admin   *             admins
"
    );
    assert_eq!(
        table(&env, &["users", "-o", "wide"], &["UID"]),
        "\
NAME    UID                                    FULL NAME   IDENTITIES   GROUPS
alice   *                                                               devs
"
    );
}

#[test]
fn names_yaml_and_json() {
    let env = env();
    assert_eq!(
        stdout(&get(&env, &["rb", "-n", "project-b", "-o", "name"], 1)),
        "",
        "rb is no kubectl short name"
    );
    assert_eq!(
        stdout(&get(
            &env,
            &["rolebindings", "-n", "project-b", "-o", "name"],
            0
        )),
        "rolebinding.rbac.authorization.k8s.io/system:image-builders\n\
         rolebinding.rbac.authorization.k8s.io/system:image-pullers\n"
    );
    assert_eq!(
        stdout(&get(&env, &["ns", "-o", "name"], 0)),
        "namespace/project-a\nnamespace/project-b\n"
    );

    let one: serde_json::Value = serde_yaml::from_str(&stdout(&get(
        &env,
        &[
            "rolebinding",
            "system:image-puller",
            "-n",
            "project-a",
            "-o",
            "yaml",
        ],
        0,
    )))
    .expect("YAML");
    assert_eq!(one["apiVersion"], "rbac.authorization.k8s.io/v1");
    assert_eq!(one["kind"], "RoleBinding");
    assert_eq!(one["metadata"]["namespace"], "project-a");
    assert_eq!(one["subjects"][0]["name"], "alice");

    let list: serde_json::Value =
        serde_json::from_str(&stdout(&get(&env, &["secrets", "-A", "-o", "json"], 0)))
            .expect("JSON");
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"][0]["kind"], "Secret");
    assert_eq!(list["items"][0]["apiVersion"], "v1");
    assert_eq!(list["items"][0]["data"][".dockerconfigjson"], SECRET_DATA);

    let users: serde_json::Value = serde_yaml::from_str(&stdout(&get(
        &env,
        &["users.user.openshift.io", "-o", "yaml"],
        0,
    )))
    .expect("YAML");
    assert_eq!(users["items"][0]["apiVersion"], "user.openshift.io/v1");
    assert_eq!(users["items"][0]["groups"][0], "devs");
}

#[test]
fn secret_data_stays_out_of_tables_and_names() {
    let env = env();
    for format in [&[][..], &["-o", "wide"], &["-o", "name"]] {
        let args: Vec<&str> = ["secret", "pull", "-n", "project-a"]
            .into_iter()
            .chain(format.iter().copied())
            .collect();
        let out = stdout(&get(&env, &args, 0));
        assert!(!out.contains(SECRET_DATA), "{args:?}: {out}");
        assert!(!out.contains("auths"), "{args:?}: {out}");
    }
}

#[test]
fn nothing_found_is_no_error() {
    let env = env();
    let out = get(&env, &["roles", "-n", "project-b"], 0);
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out), "No resources found in project-b namespace.\n");
}

#[test]
fn mistakes_exit_1_and_name_the_close_matches() {
    let env = env();
    for (args, message) in [
        (
            &["rolebindigs", "-n", "project-a"][..],
            "error: the server doesn't have a resource type \"rolebindigs\"; did you mean \
             rolebindings",
        ),
        (
            &["rolebinding", "system:image-pullr", "-n", "project-a"],
            "error: rolebindings.rbac.authorization.k8s.io \
             \"system:image-pullr\" not found in namespace \"project-a\"; did you mean \
             system:image-puller, system:image-pullers or system:image-builders?\n",
        ),
        (
            &["sa", "-n", "projet-b"],
            "error: namespaces \"projet-b\" not found; did you \
             mean project-b or project-a?\n",
        ),
        (
            &["sa"],
            "error: namespaces \"default\" not found: without -n",
        ),
        (
            &["user", "alica"],
            "error: users.user.openshift.io \"alica\" not found; \
             did you mean alice?\n",
        ),
    ] {
        let out = get(&env, args, 1);
        assert_eq!(stdout(&out), "", "{args:?}");
        assert!(
            stderr(&out).starts_with(message),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}
