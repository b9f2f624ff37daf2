//! `regate apply` and `regate delete` as whole processes against a real state directory: every
//! kind, idempotence, stdin, malformed input, dry runs, close-match errors, 100 concurrent
//! writers, and the round trip `get -o yaml` → `delete` → `apply` restoring identical state.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;

use common::*;
use k8s_openapi::api::rbac::v1::RoleBinding;

/// No server: these commands only change the state directory.
/// One document of every kind regate keeps.
const ALL_KINDS: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: team
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: ci
  namespace: team
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: layer-reader
rules:
- apiGroups: ["", "image.openshift.io"]
  resources: ["imagestreams/layers"]
  verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: local-reader
  namespace: team
rules:
- apiGroups: [""]
  resources: ["imagestreams/layers"]
  verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: ci-reads
  namespace: team
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: layer-reader
subjects:
- kind: ServiceAccount
  name: ci
  namespace: team
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: devs-read
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: layer-reader
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: Group
  name: developers
---
apiVersion: v1
kind: Secret
metadata:
  name: upstream-pull
  namespace: team
type: kubernetes.io/dockerconfigjson
stringData:
  .dockerconfigjson: '{"auths":{"quay.io":{"auth":"dXNlcjpwYXNz"}}}'
---
{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "legacy", "namespace": "team"},
 "type": "kubernetes.io/dockercfg",
 "data": {".dockercfg": "eyJxdWF5LmlvIjp7ImF1dGgiOiJkWE5sY2pwd1lYTnoifX0="}}
"#;

/// The lines `apply` prints for [`ALL_KINDS`], each ending in `action`.
fn all_kinds_report(action: &str) -> String {
    [
        "namespace/team",
        "serviceaccount/ci",
        "clusterrole.rbac.authorization.k8s.io/layer-reader",
        "role.rbac.authorization.k8s.io/local-reader",
        "rolebinding.rbac.authorization.k8s.io/ci-reads",
        "clusterrolebinding.rbac.authorization.k8s.io/devs-read",
        "secret/upstream-pull",
        "secret/legacy",
    ]
    .map(|r| format!("{r} {action}"))
    .join("\n")
}

fn write(env: &Env, name: &str, text: &str) -> PathBuf {
    let path = env.dir().join(name);
    fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// Every visible file under the state directory and its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.insert(path.clone(), fs::read(&path).unwrap_or_default());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

/// Every object file under the state directory, parsed, by path relative to it.
fn objects(dir: &Path) -> BTreeMap<PathBuf, serde_yaml::Value> {
    files(dir)
        .into_iter()
        .filter(|(path, _)| path.extension().is_some_and(|e| e == "yaml"))
        .map(|(path, bytes)| {
            let value = serde_yaml::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{} parses: {e}", path.display()));
            let relative = path.strip_prefix(dir).unwrap_or(&path).to_path_buf();
            (relative, value)
        })
        .collect()
}

#[test]
fn apply_of_every_kind_creates_then_is_unchanged() {
    let env = Env::cli_only();
    let file = write(&env, "all.yaml", ALL_KINDS);
    let out = env.regate_ok(&["apply", "-f", arg(&file)]);
    assert_eq!(out, all_kinds_report("created"));
    let state = env.state_dir();
    // The namespace got the service accounts and bindings `create namespace` gives.
    for default in [
        "namespaces/team/serviceaccounts/default.yaml",
        "namespaces/team/serviceaccounts/builder.yaml",
        "namespaces/team/rolebindings/system:image-pullers.yaml",
    ] {
        assert!(state.join(default).is_file(), "{default} exists");
    }
    let secret = state.join("namespaces/team/secrets/upstream-pull.yaml");
    let mode = fs::metadata(&secret).expect("secret file").permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600,
        "secrets are readable by the owner only"
    );
    // A token of the applied service account, then a second apply: nothing changes, and the
    // token (bound to the uid) stays valid.
    env.regate_ok(&["create", "token", "ci", "-n", "team"]);
    let before = files(state);
    let out = env.regate_ok(&["apply", "-f", arg(&file)]);
    assert_eq!(out, all_kinds_report("unchanged"));
    assert_eq!(files(state), before, "a second apply changes no file");

    // A changed document is configured, keeping its uid.
    let uid = |v: &serde_yaml::Value| v["metadata"]["uid"].as_str().map(str::to_string);
    let sa = Path::new("namespaces/team/serviceaccounts/ci.yaml");
    let old_uid = uid(&objects(state)[sa]);
    let changed = ALL_KINDS.replace(
        "  name: ci\n  namespace: team\n---",
        "  name: ci\n  namespace: team\n  labels: {tier: build}\n---",
    );
    let file = write(&env, "changed.yaml", &changed);
    let out = env.regate_ok(&["apply", "-f", arg(&file)]);
    assert!(
        out.contains("serviceaccount/ci configured") && out.contains("namespace/team unchanged"),
        "{out}"
    );
    assert_eq!(uid(&objects(state)[sa]), old_uid, "an update keeps the uid");
}

#[test]
fn apply_reads_stdin_and_directories() {
    let env = Env::cli_only();
    let out = env.regate_with_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: from-stdin\n",
    );
    assert!(out.status.success(), "{}", show_output(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "namespace/from-stdin created"
    );

    let dir = env.dir().join("manifests");
    fs::create_dir(&dir).expect("mkdir");
    fs::write(dir.join("2.json"), r#"{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"b","namespace":"from-stdin"}}"#).expect("write");
    fs::write(
        dir.join("1.yml"),
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\n",
    )
    .expect("write");
    fs::write(dir.join("notes.txt"), "not a manifest").expect("write");
    let out = env.regate_ok(&["apply", "-f", arg(&dir), "-n", "from-stdin"]);
    assert_eq!(out, "serviceaccount/a created\nserviceaccount/b created");
}

#[test]
fn a_malformed_document_names_file_document_line_and_field_and_writes_nothing() {
    let env = Env::cli_only();
    env.regate_ok(&["create", "namespace", "team"]);
    let before = files(env.state_dir());
    let text = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: fine\n  namespace: team\n---\n# the second\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: [not, a, name]\n  namespace: team\n";
    let file = write(&env, "bad.yaml", text);
    let out = env.regate(&["apply", "-f", arg(&file)]);
    expect_failure(&out, "apply of a malformed document");
    let err = stderr(&out);
    let expected = format!("{}: document 2, line 11: metadata.name: ", file.display());
    assert!(err.contains(&expected), "{expected:?} in {err}");
    assert_eq!(files(env.state_dir()), before, "nothing was written");

    // A bad Secret, and an unknown kind, say which field and what would be right.
    let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: team}\ntype: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: '{\"registries\": {}}'\n";
    let out = env.regate(&["apply", "-f", arg(&write(&env, "s.yaml", secret))]);
    expect_failure(&out, "a dockerconfigjson without auths");
    assert!(
        stderr(&out).contains("document 1, line 6: data..dockerconfigjson has no \"auths\""),
        "{}",
        stderr(&out)
    );
    let out = env.regate(&[
        "apply",
        "-f",
        arg(&write(
            &env,
            "k.yaml",
            "apiVersion: v1\nkind: Namespce\nmetadata: {name: x}\n",
        )),
    ]);
    expect_failure(&out, "an unknown kind");
    assert!(
        stderr(&out).contains(
            "document 1, line 2: kind: \"Namespce\" is not kept by regate; did you mean Namespace?"
        ),
        "{}",
        stderr(&out)
    );
    assert_eq!(files(env.state_dir()), before, "nothing was written");
}

#[test]
fn dry_runs_write_nothing() {
    let env = Env::cli_only();
    env.regate_ok(&["create", "namespace", "team"]);
    env.regate_ok(&["create", "user", "alice"]);
    let before = files(env.state_dir());
    let file = write(&env, "all.yaml", ALL_KINDS);
    let out = env.regate_ok(&["apply", "-f", arg(&file), "--dry-run"]);
    assert!(out.contains("serviceaccount/ci created (dry run)"), "{out}");
    assert!(out.contains("namespace/team unchanged (dry run)"), "{out}");
    let out = env.regate_ok(&["delete", "ns", "team", "--dry-run"]);
    assert_eq!(out, "namespace \"team\" deleted (dry run)");
    let out = env.regate_ok(&["delete", "user", "alice", "--dry-run"]);
    assert_eq!(out, "user.user.openshift.io \"alice\" deleted (dry run)");
    let yaml = env.regate_ok(&["apply", "-f", arg(&file), "--dry-run", "-o", "yaml"]);
    assert!(
        yaml.contains("kind: Secret") && yaml.contains("\n---\n") && !yaml.contains("created"),
        "{yaml}"
    );
    assert_eq!(
        files(env.state_dir()),
        before,
        "state unchanged byte for byte"
    );
}

#[test]
fn delete_by_file_and_by_kind_and_name() {
    let env = Env::cli_only();
    let file = write(&env, "all.yaml", ALL_KINDS);
    env.regate_ok(&["apply", "-f", arg(&file)]);

    let out = env.regate(&["delete", "rolebindng", "ci-reads", "-n", "team"]);
    expect_failure(&out, "an unknown kind");
    assert!(
        stderr(&out).contains("unknown kind \"rolebindng\"; did you mean rolebinding"),
        "{}",
        stderr(&out)
    );
    let out = env.regate(&["delete", "rolebinding", "ci-read", "-n", "team"]);
    expect_failure(&out, "an unknown rolebinding");
    assert!(
        stderr(&out).contains(
            "rolebinding \"ci-read\" not found in namespace \"team\"; did you mean ci-reads?"
        ),
        "{}",
        stderr(&out)
    );
    let out = env.regate(&["delete", "secret", "legacy", "-n", "teem"]);
    expect_failure(&out, "an unknown namespace");
    assert!(
        stderr(&out).contains("namespace \"teem\" not found; did you mean team?"),
        "{}",
        stderr(&out)
    );

    let out = env.regate_ok(&["delete", "secrets/legacy", "-n", "team"]);
    assert_eq!(out, "secret \"legacy\" deleted");
    assert!(
        !env.state_dir()
            .join("namespaces/team/secrets/legacy.yaml")
            .exists()
    );
    let out = env.regate_ok(&["delete", "clusterrolebinding", "devs-read"]);
    assert_eq!(
        out,
        "clusterrolebinding.rbac.authorization.k8s.io \"devs-read\" deleted"
    );

    // The rest by file: the namespace takes what is in it along.
    let rest = ALL_KINDS
        .split("---\n")
        .filter(|d| !d.contains("legacy") && !d.contains("devs-read"))
        .collect::<Vec<_>>()
        .join("---\n");
    let out = env.regate_ok(&["delete", "-f", arg(&write(&env, "rest.yaml", &rest))]);
    assert!(out.starts_with("namespace \"team\" deleted\n"), "{out}");
    assert!(!env.state_dir().join("namespaces/team").exists());
    assert!(
        !env.state_dir()
            .join("cluster/clusterroles/layer-reader.yaml")
            .exists()
    );
}

#[test]
fn a_hundred_concurrent_writers_lose_nothing() {
    let env = Env::cli_only();
    env.regate_ok(&["create", "namespace", "team"]);
    thread::scope(|scope| {
        for i in 0..100 {
            let env = &env;
            scope.spawn(move || {
                env.regate_ok(&[
                    "policy",
                    "add-role-to-user",
                    "system:image-puller",
                    &format!("user-{i}"),
                    "-n",
                    "team",
                ]);
            });
        }
    });
    let path = env
        .state_dir()
        .join("namespaces/team/rolebindings/system:image-puller.yaml");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let binding: RoleBinding = serde_yaml::from_str(&text).expect("the binding parses");
    let mut names: Vec<String> = binding
        .subjects
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.name)
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(
        names.len(),
        100,
        "every writer's subject is there: {names:?}"
    );
}

#[test]
fn get_yaml_then_delete_then_apply_restores_identical_state() {
    let env = Env::cli_only();
    env.regate_ok(&["apply", "-f", arg(&write(&env, "all.yaml", ALL_KINDS))]);
    env.regate_ok(&["create", "namespace", "project-a"]);
    env.regate_ok(&["create", "serviceaccount", "robot", "-n", "project-a"]);
    env.regate_ok(&["create", "user", "alice", "--group", "developers"]);
    env.regate_ok(&[
        "policy",
        "add-role-to-user",
        "system:image-pusher",
        "alice",
        "-n",
        "project-a",
    ]);
    env.regate_ok(&[
        "policy",
        "add-cluster-role-to-group",
        "registry-viewer",
        "developers",
    ]);
    let before = objects(env.state_dir());

    let kinds = [
        "namespaces",
        "serviceaccounts",
        "roles",
        "rolebindings",
        "clusterroles",
        "clusterrolebindings",
        "secrets",
        "users",
    ];
    let mut dump = String::new();
    for kind in kinds {
        dump.push_str(&env.regate_ok(&["get", kind, "-A", "-o", "yaml"]));
        dump.push_str("\n---\n");
    }
    let dump = write(&env, "dump.yaml", &dump);

    // Delete everything, in a few commands.
    env.regate_ok(&["delete", "namespace", "team", "project-a"]);
    for (kind, dir) in [
        ("clusterrolebinding", "cluster/clusterrolebindings"),
        ("user", "cluster/users"),
        // Last: every command but apply recreates missing bootstrap ClusterRoles.
        ("clusterrole", "cluster/clusterroles"),
    ] {
        let names: Vec<String> = fs::read_dir(env.state_dir().join(dir))
            .expect("list")
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".yaml")
                    .map(str::to_string)
            })
            .collect();
        let mut args = vec!["delete", kind];
        args.extend(names.iter().map(String::as_str));
        env.regate_ok(&args);
    }
    assert!(
        objects(env.state_dir()).is_empty(),
        "everything deleted: {:?}",
        objects(env.state_dir()).keys()
    );

    env.regate_ok(&["apply", "-f", arg(&dump)]);
    let after = objects(env.state_dir());
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "the same objects"
    );
    for (path, object) in &before {
        assert_eq!(
            &after[path],
            object,
            "{} restored as it was",
            path.display()
        );
    }
    // And re-applying the dump now changes nothing.
    let out = env.regate_ok(&["apply", "-f", arg(&dump)]);
    assert!(out.lines().all(|l| l.ends_with(" unchanged")), "{out}");
}

#[test]
fn creates_and_policy_changes_take_dry_run_and_creates_print_yaml() {
    let env = Env::cli_only();
    env.regate_ok(&["create", "namespace", "team"]);
    let before = files(env.state_dir());
    let dry_runs: [(&[&str], &str); 5] = [
        (
            &["create", "namespace", "other", "--dry-run"],
            "namespace/other created (dry run)",
        ),
        (
            &["create", "sa", "ci", "-n", "team", "--dry-run"],
            "serviceaccount/ci created (dry run)",
        ),
        (
            &["create", "user", "alice", "--dry-run"],
            "user.user.openshift.io/alice created (dry run)",
        ),
        (
            &[
                "policy",
                "add-role-to-user",
                "system:image-puller",
                "alice",
                "-n",
                "team",
                "--dry-run",
            ],
            "clusterrole.rbac.authorization.k8s.io/system:image-puller added: \"alice\" (dry run)",
        ),
        (
            &[
                "policy",
                "add-cluster-role-to-group",
                "registry-viewer",
                "devs",
                "--dry-run",
            ],
            "clusterrole.rbac.authorization.k8s.io/registry-viewer added: \"devs\" (dry run)",
        ),
    ];
    for (args, expected) in dry_runs {
        assert_eq!(env.regate_ok(args), expected, "regate {}", args.join(" "));
    }
    let out = env.regate_ok(&["create", "token", "builder", "-n", "team", "--dry-run"]);
    assert_eq!(
        out,
        "token for system:serviceaccount:team:builder created (dry run)"
    );
    let out = env.regate_ok(&["create", "namespace", "other", "--dry-run", "-o", "yaml"]);
    assert!(
        out.starts_with("apiVersion: v1\nkind: Namespace\n"),
        "{out}"
    );
    assert!(out.contains("name: system:image-builders"), "{out}");
    assert_eq!(files(env.state_dir()), before, "no dry run wrote anything");

    // -o yaml prints what is stored, which apply takes back unchanged.
    let yaml = env.regate_ok(&["create", "sa", "ci", "-n", "team", "-o", "yaml"]);
    let stored = fs::read_to_string(
        env.state_dir()
            .join("namespaces/team/serviceaccounts/ci.yaml"),
    )
    .expect("stored");
    assert_eq!(format!("{yaml}\n"), stored);
    let out = env.regate_ok(&["apply", "-f", arg(&write(&env, "ci.yaml", &yaml))]);
    assert_eq!(out, "serviceaccount/ci unchanged");

    // Unknown names in the existing commands name the close matches.
    let out = env.regate(&[
        "policy",
        "add-role-to-user",
        "system:image-pullr",
        "alice",
        "-n",
        "team",
    ]);
    expect_failure(&out, "an unknown role");
    assert!(
        stderr(&out).contains(
            "clusterrole \"system:image-pullr\" not found; did you mean system:image-puller"
        ),
        "{}",
        stderr(&out)
    );
    let out = env.regate(&["create", "sa", "x", "-n", "tam"]);
    expect_failure(&out, "an unknown namespace");
    assert!(
        stderr(&out).contains("namespace \"tam\" not found; did you mean team?"),
        "{}",
        stderr(&out)
    );
    let out = env.regate(&["create", "token", "bulder", "-n", "team"]);
    expect_failure(&out, "an unknown service account");
    assert!(
        stderr(&out).contains("did you mean builder?"),
        "{}",
        stderr(&out)
    );
}
