//! Who may pull and push what (docs/behaviour.md §2, §7), and policy changes taking effect
//! without a restart.

mod common;

use common::*;

/// Panic unless the reply is 403 DENIED and its message names `role`, the role that grants it.
fn expect_denied_naming(env: &Env, reply: &Reply, role: &str, what: &str) {
    let err = env.expect_error(reply, 403, "DENIED", what);
    let message = err["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(role),
        "the message names {role}: {message}"
    );
}

#[test]
fn builder_pushes_default_pulls_but_may_not_push() {
    let env = Env::with_projects();
    let builder = env.token("builder", "project-a");
    let default = env.token("default", "project-a");
    let image = oci_layout(&env.dir().join("img"), &unique_bytes(50_000));

    let push = env.skopeo_copy(
        &env.oci_ref("img"),
        &env.docker_ref("project-a/app:v1"),
        Some(&builder),
    );
    env.expect_success(&push, "skopeo push by project-a/builder");

    let pull = env.skopeo_copy(
        &env.docker_ref("project-a/app:v1"),
        &env.oci_ref("pulled"),
        Some(&default),
    );
    env.expect_success(&pull, "skopeo pull by project-a/default");
    let pulled = env.dir().join("pulled");
    assert_eq!(oci_manifest_digest(&pulled), image.manifest_digest);
    assert_eq!(
        digest_file(&oci_blob(&pulled, &image.layer_digest)),
        image.layer_digest
    );

    let denied = env.skopeo_copy(
        &env.oci_ref("img"),
        &env.docker_ref("project-a/app:v2"),
        Some(&default),
    );
    expect_failure(&denied, "skopeo push by project-a/default");
    env.assert_registry_never_saw("the denied push never reached the registry", |r| {
        r.contains("/manifests/v2")
    });

    // the denial as HTTP: 403 DENIED, naming who asked for what and how to grant it
    let reply = env.start_upload("project-a/app", Auth::Basic(&default));
    let err = env.expect_error(&reply, 403, "DENIED", "upload start by project-a/default");
    let message = err["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("system:image-pusher") || message.contains("add-role-to-user"),
        "the message names the role or command that grants push: {message}"
    );
    let detail = err["detail"].to_string();
    for part in [
        "system:serviceaccount:project-a:default",
        "update",
        "project-a",
        "app",
    ] {
        assert!(detail.contains(part), "detail names {part}: {detail}");
    }
    assert!(
        reply.header("WWW-Authenticate").is_none(),
        "a 403 carries no challenge: {reply}"
    );

    // a manifest PUT is denied alike
    let reply = Reply::from_request(
        env.request(
            "PUT",
            "/v2/project-a/app/manifests/v3",
            Auth::Basic(&default),
        )
        .header("Content-Type", OCI_MANIFEST)
        .body(image.manifest.clone()),
    );
    env.expect_error(&reply, 403, "DENIED", "manifest PUT by project-a/default");
}

#[test]
fn cross_project_pull_follows_role_grants_without_restart() {
    let env = Env::with_projects();
    let image = Image::unique(4096);
    let builder_b = env.token("builder", "project-b");
    if let Err(reply) = env.push(Auth::Basic(&builder_b), "project-b/app", "v1", &image) {
        panic!(
            "push by project-b/builder: {reply}\n{}",
            env.regate_log_tail(30)
        );
    }
    let default_a = env.token("default", "project-a");
    let pid = env.regate_pid();

    let reply = env.get_manifest("project-b/app", "v1", Auth::Basic(&default_a));
    expect_denied_naming(
        &env,
        &reply,
        "system:image-puller",
        "project-a/default pulling project-b/app",
    );

    env.grant_pull("system:serviceaccount:project-a:default", "project-b");
    let reply = env.get_manifest("project-b/app", "v1", Auth::Basic(&default_a));
    env.expect_status(&reply, 200, "after add-role-to-user");
    assert_eq!(reply.body, image.manifest);
    let pull = env.skopeo_copy(
        &env.docker_ref("project-b/app:v1"),
        &env.oci_ref("pulled"),
        Some(&default_a),
    );
    env.expect_success(&pull, "skopeo pull after the grant");

    env.policy(
        "remove-role-from-user",
        "system:image-puller",
        "system:serviceaccount:project-a:default",
        "project-b",
    );
    let reply = env.get_manifest("project-b/app", "v1", Auth::Basic(&default_a));
    env.expect_error(&reply, 403, "DENIED", "after remove-role-from-user");

    env.policy(
        "add-role-to-group",
        "system:image-puller",
        "system:serviceaccounts:project-a",
        "project-b",
    );
    let reply = env.get_manifest("project-b/app", "v1", Auth::Basic(&default_a));
    env.expect_status(
        &reply,
        200,
        "after add-role-to-group system:serviceaccounts:project-a",
    );
    let deployer_a = env.token("deployer", "project-a");
    let reply = env.get_manifest("project-b/app", "v1", Auth::Basic(&deployer_a));
    env.expect_status(&reply, 200, "another SA of project-a, through the group");
    // the group grants pull, not push
    let reply = env.start_upload("project-b/app", Auth::Basic(&default_a));
    env.expect_error(
        &reply,
        403,
        "DENIED",
        "push by project-a/default after a pull grant",
    );

    env.policy(
        "remove-role-from-group",
        "system:image-puller",
        "system:serviceaccounts:project-a",
        "project-b",
    );
    let reply = env.get_manifest("project-b/app", "v1", Auth::Basic(&default_a));
    env.expect_error(&reply, 403, "DENIED", "after remove-role-from-group");

    assert_eq!(env.regate_pid(), pid, "no restart");
}

#[test]
fn add_role_with_short_service_account_flag() {
    let env = Env::with_projects();
    let image = Image::unique(1024);
    env.seed("project-b/app", "v1", &image);
    env.regate_ok(&["create", "serviceaccount", "robot", "-n", "project-b"]);
    env.change(&["create", "serviceaccount", "robot", "-n", "project-a"]);
    let robot_a = env.token("robot", "project-a");
    env.expect_error(
        &env.get_manifest("project-b/app", "v1", Auth::Basic(&robot_a)),
        403,
        "DENIED",
        "project-a/robot before any grant",
    );
    // -z names a service account of -n's namespace: project-b/robot, not project-a/robot
    env.change(&[
        "policy",
        "add-role-to-user",
        "system:image-pusher",
        "-z",
        "robot",
        "-n",
        "project-b",
    ]);
    let robot_b = env.token("robot", "project-b");
    if let Err(reply) = env.push(
        Auth::Basic(&robot_b),
        "project-b/pushed",
        "v1",
        &Image::unique(512),
    ) {
        panic!("push by project-b/robot after -z grant of system:image-pusher: {reply}");
    }
    env.expect_error(
        &env.get_manifest("project-b/app", "v1", Auth::Basic(&robot_a)),
        403,
        "DENIED",
        "project-a/robot is not the -z robot",
    );
}

#[test]
fn user_gets_access_by_role_and_by_group() {
    let env = Env::with_projects();
    let image = Image::unique(1024);
    env.seed("project-a/app", "v1", &image);
    env.regate_ok(&["create", "user", "alice"]);
    env.change(&["create", "user", "bob", "--group", "devs"]);
    let alice = env.user_token("alice");
    let bob = env.user_token("bob");
    env.expect_error(
        &env.get_manifest("project-a/app", "v1", Auth::Basic(&alice)),
        403,
        "DENIED",
        "alice before any grant",
    );
    env.grant_pull("alice", "project-a");
    env.policy(
        "add-role-to-group",
        "system:image-pusher",
        "devs",
        "project-a",
    );
    env.expect_status(
        &env.get_manifest("project-a/app", "v1", Auth::Basic(&alice)),
        200,
        "alice as image-puller",
    );
    env.expect_error(
        &env.start_upload("project-a/app", Auth::Basic(&alice)),
        403,
        "DENIED",
        "alice may not push",
    );
    if let Err(reply) = env.push(
        Auth::Basic(&bob),
        "project-a/bobs",
        "v1",
        &Image::unique(512),
    ) {
        panic!("bob, in group devs bound to system:image-pusher, pushes: {reply}");
    }
}

#[test]
fn anonymous_pull_is_challenged_then_allowed_for_system_unauthenticated() {
    let env = Env::with_projects();
    let image = Image::unique(4096);
    env.seed("project-a/app", "v1", &image);

    let reply = env.get_manifest("project-a/app", "v1", Auth::None);
    env.expect_error(
        &reply,
        401,
        "UNAUTHORIZED",
        "anonymous pull before the grant",
    );
    assert!(reply.header("WWW-Authenticate").is_some(), "{reply}");
    let pull = env.skopeo_copy(
        &env.docker_ref("project-a/app:v1"),
        &env.oci_ref("anon1"),
        None,
    );
    expect_failure(&pull, "anonymous skopeo pull");

    env.policy(
        "add-role-to-group",
        "system:image-puller",
        "system:unauthenticated",
        "project-a",
    );
    let reply = env.get_manifest("project-a/app", "v1", Auth::None);
    env.expect_status(&reply, 200, "anonymous pull after the grant");
    assert_eq!(reply.body, image.manifest);
    let reply = env.get_manifest("project-a/app", "v1", Auth::Bearer("anonymous"));
    env.expect_status(&reply, 200, "`Bearer anonymous` after the grant");
    let pull = env.skopeo_copy(
        &env.docker_ref("project-a/app:v1"),
        &env.oci_ref("anon2"),
        None,
    );
    env.expect_success(&pull, "anonymous skopeo pull after the grant");
    assert_eq!(
        oci_manifest_digest(&env.dir().join("anon2")),
        image.manifest_digest
    );

    // pull only, and only in that namespace
    let reply = env.start_upload("project-a/app", Auth::None);
    env.expect_error(
        &reply,
        401,
        "UNAUTHORIZED",
        "anonymous push after a pull grant",
    );
    env.seed("project-b/app", "v1", &image);
    let reply = env.get_manifest("project-b/app", "v1", Auth::None);
    env.expect_error(&reply, 401, "UNAUTHORIZED", "anonymous pull in project-b");
}

#[test]
fn chunked_patch_upload_without_content_length() {
    let env = Env::with_projects();
    let builder = env.token("builder", "project-a");
    let auth = Auth::Basic(&builder).header().expect("header");
    let data = unique_bytes(300_000);

    let start = env.raw_request(
        "POST",
        "/v2/project-a/chunky/blobs/uploads/",
        &[("Authorization", &auth), ("Content-Length", "0")],
    );
    let location = env.expect_upload_started(&start, "upload start");

    let mut req = format!(
        "PATCH {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: {auth}\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
        location_target(&location),
        env.host()
    )
    .into_bytes();
    for chunk in data.chunks(64 * 1024 + 7) {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let patch = env.raw(&req).expect("PATCH reply");
    env.expect_status(&patch, 202, "chunked PATCH with no Content-Length");
    assert_eq!(
        patch.header("Range"),
        Some(format!("0-{}", data.len() - 1).as_str()),
        "the registry got every byte: {patch}"
    );
    let location = patch.header("Location").unwrap_or(&location).to_string();

    let target = add_query(&location_target(&location), "digest", &digest(&data));
    let put = env.raw_request(
        "PUT",
        &target,
        &[("Authorization", &auth), ("Content-Length", "0")],
    );
    env.expect_status(&put, 201, "upload completion");
    assert_eq!(
        put.header("Docker-Content-Digest"),
        Some(digest(&data).as_str())
    );

    let back = env.send(
        "GET",
        &format!("/v2/project-a/chunky/blobs/{}", digest(&data)),
        Auth::Basic(&builder),
    );
    env.expect_status(&back, 200, "GET of the uploaded blob");
    assert!(
        back.body == data,
        "the blob came back intact ({} bytes)",
        back.body.len()
    );
}

#[test]
fn cross_repository_mount_is_done_when_the_source_is_readable() {
    let env = Env::with_projects();
    let builder = env.token("builder", "project-a");
    let blob = unique_bytes(10_000);
    let d = digest(&blob);
    if let Err(reply) = push_blob(&env.url(), Auth::Basic(&builder), "project-a/src", &blob) {
        panic!("blob upload by project-a/builder: {reply}");
    }
    let reply = env.send(
        "POST",
        &format!("/v2/project-a/dst/blobs/uploads/?mount={d}&from=project-a/src"),
        Auth::Basic(&builder),
    );
    env.expect_status(&reply, 201, "mount from a readable source");
    assert_eq!(
        reply.header("Docker-Content-Digest"),
        Some(d.as_str()),
        "{reply}"
    );
    let direct = env.registry_head(&format!("/v2/project-a/dst/blobs/{d}"));
    assert_eq!(
        direct.status, 200,
        "the registry holds the mounted blob in project-a/dst: {direct}"
    );
}

#[test]
fn cross_repository_mount_from_an_unreadable_source_is_a_plain_upload() {
    let env = Env::with_projects();
    let builder_a = env.token("builder", "project-a");
    let builder_b = env.token("builder", "project-b");
    let secret = unique_bytes(10_000);
    let d = digest(&secret);
    if let Err(reply) = push_blob(
        &env.url(),
        Auth::Basic(&builder_b),
        "project-b/secret",
        &secret,
    ) {
        panic!("blob upload by project-b/builder: {reply}");
    }

    let reply = env.send(
        "POST",
        &format!("/v2/project-a/dst/blobs/uploads/?mount={d}&from=project-b/secret"),
        Auth::Basic(&builder_a),
    );
    let location = env.expect_upload_started(
        &reply,
        "mount from an unreadable source falls back to an upload start",
    );

    let direct = env.registry_head(&format!("/v2/project-a/dst/blobs/{d}"));
    assert_eq!(
        direct.status, 404,
        "the registry must not have mounted project-b's blob into project-a/dst: {direct}"
    );
    env.assert_registry_never_saw("the mount was never asked of the registry", |r| {
        r.contains("from=project-b")
    });
    let reply = env.send(
        "GET",
        &format!("/v2/project-a/dst/blobs/{d}"),
        Auth::Basic(&builder_a),
    );
    env.expect_status(
        &reply,
        404,
        "project-a/builder cannot read the blob without uploading it",
    );

    // the upload that was started instead works with the caller's own bytes
    let url = add_query(&absolute(&env.url(), &location), "digest", &d);
    let put = Reply::from_request(
        Auth::Basic(&builder_a)
            .apply(client().put(url))
            .body(secret.clone()),
    );
    env.expect_status(&put, 201, "completing the fallback upload");
}

#[test]
fn catalog_is_filtered_per_caller() {
    let env = Env::with_projects();
    let image = Image::unique(512);
    for repo in ["project-a/app", "project-b/app", "project-b/tools/x"] {
        env.seed(repo, "v1", &image);
    }
    let catalog = |token: &str| -> Vec<String> {
        let reply = env.send("GET", "/v2/_catalog", Auth::Basic(token));
        env.expect_status(&reply, 200, "GET /v2/_catalog");
        let mut repos: Vec<String> = reply.json()["repositories"]
            .as_array()
            .unwrap_or_else(|| panic!("catalog has a repositories array: {reply}"))
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        repos.sort();
        repos
    };
    let default_a = env.token("default", "project-a");
    let default_b = env.token("default", "project-b");
    assert_eq!(catalog(&default_a), ["project-a/app"]);
    assert_eq!(catalog(&default_b), ["project-b/app", "project-b/tools/x"]);

    env.grant_pull("system:serviceaccount:project-a:default", "project-b");
    assert_eq!(
        catalog(&default_a),
        ["project-a/app", "project-b/app", "project-b/tools/x"]
    );

    // cluster `list imagestreams` sees everything
    env.regate_ok(&["create", "user", "admin-user"]);
    env.change(&[
        "policy",
        "add-cluster-role-to-user",
        "registry-viewer",
        "admin-user",
    ]);
    let admin = env.user_token("admin-user");
    assert_eq!(
        catalog(&admin),
        ["project-a/app", "project-b/app", "project-b/tools/x"]
    );
}

#[test]
fn manifest_delete_needs_cluster_delete_on_images() {
    let env = Env::with_projects();
    let builder = env.token("builder", "project-a");
    let image = Image::unique(2048);
    if let Err(reply) = env.push(Auth::Basic(&builder), "project-a/app", "v1", &image) {
        panic!("push by project-a/builder: {reply}");
    }
    let manifest_path = format!("/v2/project-a/app/manifests/{}", image.manifest_digest);
    let on_registry = |path: &str| env.registry_head(path).status;

    let reply = env.send("DELETE", &manifest_path, Auth::Basic(&builder));
    expect_denied_naming(
        &env,
        &reply,
        "system:image-pruner",
        "manifest DELETE by project-a/builder",
    );
    assert_eq!(
        on_registry(&manifest_path),
        200,
        "the manifest is still there"
    );
    let blob_path = format!("/v2/project-a/app/blobs/{}", image.layer_digest);
    env.expect_error(
        &env.send("DELETE", &blob_path, Auth::Basic(&builder)),
        403,
        "DENIED",
        "blob DELETE by project-a/builder",
    );

    env.change(&[
        "policy",
        "add-cluster-role-to-user",
        "system:image-pruner",
        "system:serviceaccount:project-a:builder",
    ]);
    let reply = env.send("DELETE", &manifest_path, Auth::Basic(&builder));
    env.expect_status(&reply, 202, "manifest DELETE after system:image-pruner");
    assert_eq!(on_registry(&manifest_path), 404, "the manifest is gone");
    let reply = env.send("DELETE", &blob_path, Auth::Basic(&builder));
    env.expect_status(&reply, 202, "blob DELETE after system:image-pruner");

    // the pruner right is cluster-wide but still nothing for another identity
    let default = env.token("default", "project-a");
    env.expect_error(
        &env.send(
            "DELETE",
            &format!("/v2/project-a/app/blobs/{}", image.config_digest),
            Auth::Basic(&default),
        ),
        403,
        "DENIED",
        "blob DELETE by project-a/default",
    );
}
