//! `regate create secret docker-registry|generic` and `regate secrets link|unlink` as whole
//! processes against a real state directory: the stored Secret (the JSON kubectl writes, mode
//! 0600), the password from stdin, types regate does not keep, dry runs, idempotent links, and
//! errors naming what is missing with close matches.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};

/// No server: these commands only change the state directory. Namespace `team` exists.
fn env() -> Env {
    let env = Env::cli_only();
    env.regate_ok(&["create", "namespace", "team"]);
    env
}

fn secret_file(env: &Env, name: &str) -> PathBuf {
    env.state_dir()
        .join(format!("namespaces/team/secrets/{name}.yaml"))
}

fn stored_secret(env: &Env, name: &str) -> Secret {
    let path = secret_file(env, name);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).expect("a Secret")
}

/// The text under `key` of the stored Secret `name`.
fn secret_data(env: &Env, name: &str, key: &str) -> String {
    let secret = stored_secret(env, name);
    let data = secret.data.expect("data");
    String::from_utf8(data[key].0.clone()).expect("UTF-8")
}

fn stored_sa(env: &Env, name: &str) -> ServiceAccount {
    let path = env
        .state_dir()
        .join(format!("namespaces/team/serviceaccounts/{name}.yaml"));
    serde_yaml::from_str(&fs::read_to_string(path).expect("read sa")).expect("a ServiceAccount")
}

fn pull_secrets(sa: &ServiceAccount) -> Vec<String> {
    sa.image_pull_secrets
        .iter()
        .flatten()
        .map(|r| r.name.clone())
        .collect()
}

fn mount_secrets(sa: &ServiceAccount) -> Vec<String> {
    sa.secrets
        .iter()
        .flatten()
        .filter_map(|r| r.name.clone())
        .collect()
}

fn write(env: &Env, name: &str, text: &str) -> PathBuf {
    let path = env.dir().join(name);
    fs::write(&path, text).expect("write file");
    path
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[test]
fn docker_registry_stores_the_config_kubectl_writes() {
    let env = env();
    let out = env.regate_ok(&[
        "create",
        "secret",
        "docker-registry",
        "upstream-pull",
        "-n",
        "team",
        "--docker-server=registry.example.com:5000",
        "--docker-username=robot",
        "--docker-password=s3cret",
        "--docker-email=robot@example.com",
    ]);
    assert_eq!(out, "secret/upstream-pull created");
    let secret = stored_secret(&env, "upstream-pull");
    assert_eq!(
        secret.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );
    assert!(secret.metadata.uid.is_some(), "stamped with a uid");
    assert_eq!(
        secret_data(&env, "upstream-pull", ".dockerconfigjson"),
        // base64("robot:s3cret")
        r#"{"auths":{"registry.example.com:5000":{"username":"robot","password":"s3cret","email":"robot@example.com","auth":"cm9ib3Q6czNjcmV0"}}}"#
    );
    assert_eq!(
        mode(&secret_file(&env, "upstream-pull")),
        0o600,
        "secrets are readable by the owner only"
    );
    // It is listed, and creating it again is refused.
    let listed = env.regate_ok(&["get", "secrets", "-n", "team", "-o", "name"]);
    assert!(listed.contains("upstream-pull"), "{listed}");
    let again = env.regate_exit(
        &[
            "create",
            "secret",
            "docker-registry",
            "upstream-pull",
            "-n",
            "team",
            "--docker-server=r",
            "--docker-username=u",
            "--docker-password=p",
        ],
        1,
    );
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn docker_registry_reads_the_password_from_stdin() {
    let env = env();
    let out = env.regate_with_stdin(
        &[
            "create",
            "secret",
            "docker-registry",
            "from-stdin",
            "-n",
            "team",
            "--docker-server=registry.example.com",
            "--docker-username=robot",
            "--docker-password-stdin",
        ],
        "pw from stdin\n",
    );
    assert!(out.status.success(), "{}", show_output(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "secret/from-stdin created"
    );
    // base64("robot:pw from stdin"); no email key when none is given.
    assert_eq!(
        secret_data(&env, "from-stdin", ".dockerconfigjson"),
        r#"{"auths":{"registry.example.com":{"username":"robot","password":"pw from stdin","auth":"cm9ib3Q6cHcgZnJvbSBzdGRpbg=="}}}"#
    );

    // An empty stdin is an error, and so is giving both password flags.
    let out = env.regate_with_stdin(
        &[
            "create",
            "secret",
            "docker-registry",
            "empty",
            "-n",
            "team",
            "--docker-username=robot",
            "--docker-password-stdin",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1), "{}", show_output(&out));
    assert!(
        stderr(&out).contains("--docker-password-stdin"),
        "{}",
        stderr(&out)
    );
    assert!(!secret_file(&env, "empty").exists());
    env.regate_exit(
        &[
            "create",
            "secret",
            "docker-registry",
            "both",
            "-n",
            "team",
            "--docker-username=robot",
            "--docker-password=a",
            "--docker-password-stdin",
        ],
        2,
    );
}

#[test]
fn docker_registry_dry_run_and_yaml_write_nothing() {
    let env = env();
    let args = [
        "create",
        "secret",
        "docker-registry",
        "dry",
        "-n",
        "team",
        "--docker-server=r.example.com",
        "--docker-username=u",
        "--docker-password=p",
        "--dry-run",
    ];
    assert_eq!(env.regate_ok(&args), "secret/dry created (dry run)");
    let mut yaml_args = args.to_vec();
    yaml_args.extend(["-o", "yaml"]);
    let yaml = env.regate_ok(&yaml_args);
    let secret: Secret = serde_yaml::from_str(&yaml).expect("-o yaml is a Secret");
    assert_eq!(secret.metadata.name.as_deref(), Some("dry"));
    assert!(
        !env.state_dir().join("namespaces/team/secrets").exists(),
        "a dry run writes nothing"
    );
    // The YAML applies as is.
    let file = write(&env, "dry.yaml", &yaml);
    assert_eq!(
        env.regate_ok(&["apply", "-f", arg(&file)]),
        "secret/dry created"
    );

    // An unknown namespace is named, with a close match.
    let out = env.regate_exit(
        &[
            "create",
            "secret",
            "docker-registry",
            "s",
            "-n",
            "teem",
            "--docker-username=u",
            "--docker-password=p",
        ],
        1,
    );
    assert!(
        stderr(&out).contains("namespace \"teem\" not found; did you mean team?"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn generic_keeps_the_two_docker_config_types() {
    let env = env();
    let config = r#"{"auths":{"r.example.com":{"auth":"dTpw"}}}"#;
    let json = write(&env, "config.json", config);
    let out = env.regate_ok(&[
        "create",
        "secret",
        "generic",
        "from-json",
        "-n",
        "team",
        &format!("--from-file=.dockerconfigjson={}", arg(&json)),
        "--type=kubernetes.io/dockerconfigjson",
    ]);
    assert_eq!(out, "secret/from-json created");
    assert_eq!(
        secret_data(&env, "from-json", ".dockerconfigjson"),
        config,
        "the file's bytes, unchanged"
    );
    assert_eq!(mode(&secret_file(&env, "from-json")), 0o600);

    // --from-file=PATH takes the file name as the key.
    let legacy = r#"{"r.example.com":{"auth":"dTpw","email":"e"}}"#;
    let dockercfg = write(&env, ".dockercfg", legacy);
    let out = env.regate_ok(&[
        "create",
        "secret",
        "generic",
        "legacy",
        "-n",
        "team",
        &format!("--from-file={}", arg(&dockercfg)),
        "--type=kubernetes.io/dockercfg",
    ]);
    assert_eq!(out, "secret/legacy created");
    let secret = stored_secret(&env, "legacy");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/dockercfg"));
    assert_eq!(secret_data(&env, "legacy", ".dockercfg"), legacy);
}

#[test]
fn generic_refuses_other_types_keys_and_bad_json() {
    let env = env();
    let json = write(&env, "config.json", r#"{"auths":{}}"#);
    let keyed = format!("--from-file=.dockerconfigjson={}", arg(&json));
    let base = ["create", "secret", "generic", "s", "-n", "team"];
    let refused = |extra: &[&str], wanted: &str| {
        let mut args = base.to_vec();
        args.extend(extra);
        let out = env.regate_exit(&args, 1);
        assert!(
            stderr(&out).contains(wanted),
            "`{}` must say {wanted:?}: {}",
            args.join(" "),
            stderr(&out)
        );
    };
    // No type (kubectl's Opaque) and other types: the message names the types regate keeps.
    refused(&[&keyed], "--type is missing");
    refused(
        &[&keyed],
        "kubernetes.io/dockerconfigjson (key .dockerconfigjson)",
    );
    refused(
        &[&keyed, "--type=Opaque"],
        "--type=Opaque is not kept by regate",
    );
    refused(
        &[&keyed, "--type=dockerconfigjson"],
        "did you mean kubernetes.io/dockerconfigjson?",
    );
    refused(
        &[&keyed, "--type=kubernetes.io/basic-auth"],
        "kubernetes.io/dockercfg (key .dockercfg)",
    );
    // The file must be under the type's key.
    refused(
        &[
            &format!("--from-file={}", arg(&json)),
            "--type=kubernetes.io/dockerconfigjson",
        ],
        "--from-file=.dockerconfigjson=",
    );
    // The content is checked as `apply` checks it.
    let bad = write(&env, "bad.json", r#"{"registries":{}}"#);
    refused(
        &[
            &format!("--from-file=.dockerconfigjson={}", arg(&bad)),
            "--type=kubernetes.io/dockerconfigjson",
        ],
        "has no \"auths\" object",
    );
    let missing = env.dir().join("missing.json");
    refused(
        &[
            &format!("--from-file=.dockerconfigjson={}", arg(&missing)),
            "--type=kubernetes.io/dockerconfigjson",
        ],
        "cannot read",
    );
    assert!(
        !env.state_dir().join("namespaces/team/secrets").exists(),
        "nothing refused was written"
    );
}

fn create_pull_secret(env: &Env, name: &str) {
    env.regate_ok(&[
        "create",
        "secret",
        "docker-registry",
        name,
        "-n",
        "team",
        "--docker-server=r.example.com",
        "--docker-username=u",
        "--docker-password=p",
    ]);
}

#[test]
fn link_adds_to_pull_and_mount_lists_idempotently_in_order() {
    let env = env();
    create_pull_secret(&env, "one");
    create_pull_secret(&env, "two");
    env.regate_ok(&["create", "serviceaccount", "ci", "-n", "team"]);
    let uid = stored_sa(&env, "ci").metadata.uid;

    let out = env.regate_ok(&["secrets", "link", "ci", "two", "--for=pull", "-n", "team"]);
    assert_eq!(out, "serviceaccount/ci configured");
    let out = env.regate_ok(&[
        "secrets",
        "link",
        "ci",
        "one",
        "secret/two",
        "--for=pull",
        "-n",
        "team",
    ]);
    assert_eq!(out, "serviceaccount/ci configured");
    let sa = stored_sa(&env, "ci");
    assert_eq!(
        pull_secrets(&sa),
        ["two", "one"],
        "kept in order, no duplicates"
    );
    assert!(mount_secrets(&sa).is_empty(), "--for=pull does not mount");
    assert_eq!(
        sa.metadata.uid, uid,
        "linking keeps the uid (and its tokens)"
    );

    // Again: nothing changes.
    let before = fs::read_to_string(
        env.state_dir()
            .join("namespaces/team/serviceaccounts/ci.yaml"),
    )
    .expect("read");
    let out = env.regate_ok(&[
        "secrets",
        "link",
        "ci",
        "one",
        "two",
        "--for=pull",
        "-n",
        "team",
    ]);
    assert_eq!(out, "serviceaccount/ci unchanged");
    let after = fs::read_to_string(
        env.state_dir()
            .join("namespaces/team/serviceaccounts/ci.yaml"),
    )
    .expect("read");
    assert_eq!(before, after);

    // The default is mount, as oc; pull,mount both.
    env.regate_ok(&["secrets", "link", "ci", "one", "-n", "team"]);
    assert_eq!(mount_secrets(&stored_sa(&env, "ci")), ["one"]);
    env.regate_ok(&[
        "secrets",
        "link",
        "default",
        "one",
        "--for=pull,mount",
        "-n",
        "team",
    ]);
    let sa = stored_sa(&env, "default");
    assert_eq!(pull_secrets(&sa), ["one"]);
    assert_eq!(mount_secrets(&sa), ["one"]);

    // `get sa -o yaml` shows the stored lists.
    let yaml = env.regate_ok(&["get", "sa", "ci", "-n", "team", "-o", "yaml"]);
    assert!(
        yaml.contains("imagePullSecrets:\n- name: two\n- name: one"),
        "{yaml}"
    );
}

#[test]
fn link_dry_run_and_yaml_change_nothing() {
    let env = env();
    create_pull_secret(&env, "one");
    let out = env.regate_ok(&[
        "secrets",
        "link",
        "default",
        "one",
        "--for=pull",
        "-n",
        "team",
        "--dry-run",
    ]);
    assert_eq!(out, "serviceaccount/default configured (dry run)");
    let yaml = env.regate_ok(&[
        "secrets",
        "link",
        "default",
        "one",
        "--for=pull",
        "-n",
        "team",
        "--dry-run",
        "-o",
        "yaml",
    ]);
    let shown: ServiceAccount = serde_yaml::from_str(&yaml).expect("-o yaml is a ServiceAccount");
    assert_eq!(pull_secrets(&shown), ["one"], "shows the result");
    assert!(
        pull_secrets(&stored_sa(&env, "default")).is_empty(),
        "a dry run writes nothing"
    );
}

#[test]
fn link_names_missing_secrets_and_service_accounts() {
    let env = env();
    create_pull_secret(&env, "upstream-pull");
    let out = env.regate_exit(
        &[
            "secrets",
            "link",
            "default",
            "upstream-pul",
            "--for=pull",
            "-n",
            "team",
        ],
        1,
    );
    let err = stderr(&out);
    assert!(
        err.contains(
            "secret \"upstream-pul\" not found in namespace \"team\"; did you mean upstream-pull?"
        ),
        "{err}"
    );
    assert!(
        err.contains("regate create secret docker-registry"),
        "{err}"
    );

    let out = env.regate_exit(
        &["secrets", "link", "defualt", "upstream-pull", "-n", "team"],
        1,
    );
    let err = stderr(&out);
    assert!(
        err.contains("serviceaccount \"defualt\" not found")
            && err.contains("did you mean default?"),
        "{err}"
    );
    let out = env.regate_exit(
        &["secrets", "link", "default", "upstream-pull", "-n", "nope"],
        1,
    );
    assert!(
        stderr(&out).contains("namespace \"nope\" not found"),
        "{}",
        stderr(&out)
    );
    // One missing Secret among several: nothing is linked.
    env.regate_exit(
        &[
            "secrets",
            "link",
            "default",
            "upstream-pull",
            "nope",
            "--for=pull",
            "-n",
            "team",
        ],
        1,
    );
    assert!(pull_secrets(&stored_sa(&env, "default")).is_empty());
    // A wrong --for is a usage error.
    env.regate_exit(
        &[
            "secrets",
            "link",
            "default",
            "upstream-pull",
            "--for=push",
            "-n",
            "team",
        ],
        2,
    );
}

#[test]
fn unlink_removes_from_both_lists() {
    let env = env();
    create_pull_secret(&env, "one");
    create_pull_secret(&env, "two");
    env.regate_ok(&[
        "secrets",
        "link",
        "default",
        "one",
        "two",
        "--for=pull,mount",
        "-n",
        "team",
    ]);

    let out = env.regate_exit(&["secrets", "unlink", "default", "on", "-n", "team"], 1);
    assert!(
        stderr(&out).contains("secret \"on\" is not linked to serviceaccount \"default\"")
            && stderr(&out).contains("did you mean one?"),
        "{}",
        stderr(&out)
    );
    let out = env.regate_ok(&[
        "secrets",
        "unlink",
        "default",
        "one",
        "-n",
        "team",
        "--dry-run",
    ]);
    assert_eq!(out, "serviceaccount/default configured (dry run)");
    assert_eq!(pull_secrets(&stored_sa(&env, "default")), ["one", "two"]);

    // A deleted Secret can still be unlinked.
    env.regate_ok(&["delete", "secret", "one", "-n", "team"]);
    let out = env.regate_ok(&["secrets", "unlink", "default", "one", "-n", "team"]);
    assert_eq!(out, "serviceaccount/default configured");
    let sa = stored_sa(&env, "default");
    assert_eq!(pull_secrets(&sa), ["two"]);
    assert_eq!(mount_secrets(&sa), ["two"]);

    env.regate_ok(&["secrets", "unlink", "default", "two", "-n", "team"]);
    let sa = stored_sa(&env, "default");
    assert!(
        sa.image_pull_secrets.is_none() && sa.secrets.is_none(),
        "{sa:?}"
    );
}
