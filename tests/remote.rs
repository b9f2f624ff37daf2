//! Remote (pull-through) namespaces: pulls under `mirror/` are authorized by regate as usual and
//! fetched from another registry under a path prefix, with regate's own credentials for it. The
//! remote here is secured with token auth whose realm is a second regate in token-server mode
//! on another port (delegated authentication: the realm is not the registry's host).

mod common;

use std::path::Path;

use common::*;

/// The remote side: a registry with `auth: token` whose realm is its own regate, holding
/// `library/app:v1`; and the API token of a service account there that may pull it.
struct RemoteSide {
    env: Env,
    image: Image,
    token: String,
}

fn remote_side() -> RemoteSide {
    let env = Env::builder().namespaces(&["library"]).token_server().run();
    let dir = env.dir().join("img");
    let image = oci_layout(&dir, &unique_bytes(50_000));
    let builder = env.token("builder", "library");
    let push = env.skopeo_copy(
        &format!("oci:{}", dir.display()),
        &format!("docker://{}/library/app:v1", env.token_registry_host()),
        Some(&builder),
    );
    env.expect_success(&push, "seeding the remote registry");
    let token = env.token("default", "library");
    RemoteSide { env, image, token }
}

/// A `.dockerconfigjson` with `entries` (key, password) for anything.
fn docker_config(path: &Path, entries: &[(&str, &str)]) {
    write_docker_config(path, "anything", entries);
}

/// The gateway under test: namespace `mirror` mirrors the remote's `library/`; `entries` go
/// into its global pull secret.
fn gateway(remote: &RemoteSide, entries: &[(&str, &str)]) -> Env {
    let mut config = format!(
        "remotes:\n  - namespace: mirror\n    url: {}\n    prefix: library\n",
        remote.env.token_registry_url()
    );
    if AuthorityMode::from_env().is_kubernetes() {
        config.push_str(KUBERNETES_TEST_CONFIG);
    }
    let secrets = remote
        .env
        .dir()
        .join(format!("gateway-secret-{}.json", free_port()));
    docker_config(&secrets, entries);
    let mut env = Env::builder()
        .namespaces(&["mirror", "project-a"])
        .gateway_config(&config)
        .serve_arg("--pull-secret")
        .serve_arg(secrets.to_str().expect("utf-8 path"))
        .without_regate()
        .run();
    env.start_regate();
    env
}

#[test]
fn pulls_through_a_remote_namespace_work_only_with_the_realms_and_the_registrys_entries() {
    let remote = remote_side();
    let realm_host = remote.env.host();
    let registry_host = remote.env.token_registry_host();
    // The registry's own entry holds a credential the realm does not take (as a registry
    // password would be): the realm must be asked with the realm's entry.
    let registry_password = "a-registry-password";

    // Both entries: the pull works, with the remote's bytes.
    let env = gateway(
        &remote,
        &[
            (&realm_host, &remote.token),
            (&registry_host, registry_password),
        ],
    );
    let puller = env.token("default", "mirror");
    let pull = env.skopeo_copy(
        &env.docker_ref("mirror/app:v1"),
        &env.oci_ref("pulled"),
        Some(&puller),
    );
    env.expect_success(&pull, "pull through the remote namespace");
    assert_eq!(
        oci_manifest_digest(&env.dir().join("pulled")),
        remote.image.manifest_digest
    );
    // regate's own authorization still applies: another project's account may not pull.
    let stranger = env.token("default", "project-a");
    let reply = env.get_manifest("mirror/app", "v1", Auth::Basic(&stranger));
    env.expect_error(&reply, 403, "DENIED", "a pull by another project's account");
    // pushes to a remote namespace are refused
    let builder = env.token("builder", "mirror");
    let reply = env.start_upload("mirror/app", Auth::Basic(&builder));
    env.expect_error(&reply, 405, "UNSUPPORTED", "a push to a remote namespace");
    assert!(
        reply.header("Allow").is_some_and(|a| a.contains("GET")),
        "{reply}"
    );
    drop(env);

    // Only the registry's entry: the realm refuses it.
    let env = gateway(&remote, &[(&registry_host, registry_password)]);
    let puller = env.token("default", "mirror");
    let reply = env.get_manifest("mirror/app", "v1", Auth::Basic(&puller));
    let err = env.expect_error(&reply, 502, "UNAVAILABLE", "only the registry's entry");
    let message = err["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("credentials rejected") && message.contains(&registry_host),
        "{message}"
    );
    assert!(!message.contains(registry_password), "{message}");
    drop(env);

    // Only the realm's entry, or none: nothing is picked for the image's registry, so the realm
    // is asked anonymously and its token grants nothing.
    for entries in [vec![(realm_host.as_str(), remote.token.as_str())], vec![]] {
        let env = gateway(&remote, &entries);
        let puller = env.token("default", "mirror");
        let reply = env.get_manifest("mirror/app", "v1", Auth::Basic(&puller));
        let err = env.expect_error(&reply, 502, "UNAVAILABLE", "no entry for the registry");
        assert!(
            err["message"]
                .as_str()
                .is_some_and(|m| m.contains(&registry_host)),
            "{err}"
        );
    }
}

#[test]
fn a_namespace_docker_registry_secret_is_used_for_its_remote() {
    let remote = remote_side();
    let env = gateway(&remote, &[]);
    if env.mode() == AuthorityMode::KubernetesSelf {
        // Reviewing as the caller, regate has no identity of its own to read Secrets with.
        return;
    }
    let puller = env.token("default", "mirror");
    let reply = env.get_manifest("mirror/app", "v1", Auth::Basic(&puller));
    env.expect_error(
        &reply,
        502,
        "UNAVAILABLE",
        "before the namespace has a secret",
    );
    for (n, host) in [remote.env.host(), remote.env.token_registry_host()]
        .iter()
        .enumerate()
    {
        let name = format!("remote-{n}");
        let server = format!("--docker-server={host}");
        let out = env.regate_with_stdin(
            &[
                "create",
                "secret",
                "docker-registry",
                &name,
                "-n",
                "mirror",
                "--docker-username",
                "anything",
                &server,
                "--docker-password-stdin",
            ],
            &remote.token,
        );
        env.expect_success(&out, "regate create secret docker-registry");
    }
    wait_for(
        std::time::Duration::from_secs(5),
        "the secret is in force",
        || {
            let reply = env.get_manifest("mirror/app", "v1", Auth::Basic(&puller));
            (reply.status == 200).then_some(())
        },
    );
}
