//! regate as deployed: three `regate serve` replicas sharing nothing but `token.key_file` and the
//! authority, behind nginx round robin with no session affinity (docs/architecture.md,
//! "Replicas"). Whatever one replica grants, every other honours.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;

const REPLICAS: usize = 3;
const CI_SUB: &str = "repo:org/app:ref:refs/heads/main";
const CI_USER: &str = "ci:repo:org/app:ref:refs/heads/main";

/// Three replicas behind nginx, trusting an OIDC issuer, with project-a and project-b, and
/// [`CI_USER`] allowed to push to project-a.
struct Cluster {
    env: Env,
    lb: Balancer,
    issuer: Issuer,
}

impl Cluster {
    fn start() -> Cluster {
        let issuer = Issuer::start();
        let mut env = Env::builder().namespaces(PROJECTS).without_regate().run();
        let mut config = issuer.config("      username_prefix: \"ci:\"\n");
        let key = env.dir().join("token.key");
        config.push_str(&format!("token:\n  key_file: {}\n", key.display()));
        if env.mode().is_kubernetes() {
            config.push_str(KUBERNETES_TEST_CONFIG);
        }
        env.set_gateway_config(&config);
        // The CI identity of the issuer's tokens pushes to project-a.
        env.regate_ok(&[
            "policy",
            "add-role-to-user",
            "system:image-pusher",
            CI_USER,
            "-n",
            "project-a",
        ]);
        let replicas = env.start_replicas(REPLICAS);
        let lb = Balancer::start(env.dir(), &replicas, env.registry_addr(), "1m");
        Cluster { env, lb, issuer }
    }

    /// A request through the balancer.
    fn send(&self, method: &str, path: &str, auth: Auth) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        Reply::from_request(
            auth.apply(client().request(method, format!("{}{path}", self.lb.url()))),
        )
    }

    /// A registry token from the gateway realm through the balancer, for `scope`.
    fn registry_token(&self, credential: &str, scope: &str) -> Reply {
        self.send(
            "GET",
            &format!("/openshift/token?service=regate&scope={scope}"),
            Auth::Basic(credential),
        )
    }

    /// The registry token of a 200 from the realm.
    fn token_of(&self, reply: &Reply, what: &str) -> String {
        assert_eq!(reply.status, 200, "{what}: {reply}");
        reply.json()["token"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no token in {reply}"))
            .to_string()
    }

    /// Waits until every replica has logged a request whose path holds `path_part` (bounded:
    /// access lines are written in batches); panics with what each logged otherwise.
    fn expect_every_replica_served(&self, path_part: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let served: Vec<usize> = (0..REPLICAS)
                .map(|i| self.env.replica_log(i).matches(path_part).count())
                .collect();
            if served.iter().all(|n| *n > 0) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: requests each replica logged: {served:?}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// A `docker://` reference through the balancer.
    fn reference(&self, repo_tag: &str) -> String {
        format!("docker://{}/{repo_tag}", self.lb.addr())
    }
}

/// A push and a pull with skopeo go through, and every replica takes part.
#[test]
fn skopeo_pushes_and_pulls_through_three_replicas() {
    let cluster = Cluster::start();
    let token = cluster.env.token("builder", "project-a");
    let dir = tempfile::tempdir().expect("dir");
    let image = oci_layout(dir.path(), &unique_bytes(256 * 1024));
    let pushed = cluster.env.skopeo_copy(
        &format!("oci:{}:latest", dir.path().display()),
        &cluster.reference("project-a/app:v1"),
        Some(&token),
    );
    cluster
        .env
        .expect_success(&pushed, "skopeo push through the balancer");
    let back = tempfile::tempdir().expect("dir");
    let pulled = cluster.env.skopeo_copy(
        &cluster.reference("project-a/app:v1"),
        &format!("oci:{}:latest", back.path().display()),
        Some(&token),
    );
    cluster
        .env
        .expect_success(&pulled, "skopeo pull through the balancer");
    assert_eq!(oci_manifest_digest(back.path()), image.manifest_digest);
    cluster.expect_every_replica_served("/v2/project-a/app/", "every replica serves part of it");
}

/// One upload session, its steps landing on three replicas in turn, ends in the blob.
#[test]
fn one_upload_spread_over_three_replicas() {
    let cluster = Cluster::start();
    let token = cluster.env.token("builder", "project-a");
    let start = cluster.send(
        "POST",
        "/v2/project-a/spread/blobs/uploads/",
        Auth::Basic(&token),
    );
    assert_eq!(start.status, 202, "{start}");
    let mut location = start.header("Location").expect("Location").to_string();
    let upload_id = location
        .split('?')
        .next()
        .and_then(|path| path.rsplit('/').next())
        .expect("an upload id")
        .to_string();
    let data = unique_bytes(3 * 64 * 1024);
    let mut offset = 0;
    for chunk in data.chunks(64 * 1024) {
        let end = offset + chunk.len() - 1;
        let patch = Reply::from_request(
            Auth::Basic(&token)
                .apply(client().patch(absolute(&cluster.lb.url(), &location)))
                .header("Content-Type", "application/octet-stream")
                .header("Content-Range", format!("{offset}-{end}"))
                .body(chunk.to_vec()),
        );
        assert_eq!(patch.status, 202, "PATCH {offset}-{end}: {patch}");
        location = patch.header("Location").expect("Location").to_string();
        offset = end + 1;
    }
    let put = Reply::from_request(Auth::Basic(&token).apply(client().put(add_query(
        &absolute(&cluster.lb.url(), &location),
        "digest",
        &digest(&data),
    ))));
    assert_eq!(put.status, 201, "{put}");
    let blob = cluster.send(
        "GET",
        &format!("/v2/project-a/spread/blobs/{}", digest(&data)),
        Auth::Basic(&token),
    );
    assert_eq!(blob.status, 200);
    assert_eq!(blob.body, data);
    cluster.expect_every_replica_served(&upload_id, "each replica takes a step of the upload");
}

/// Two 4 MiB layers (distinct), a config and a manifest in the registry, at `repo:v1`.
fn seed_two_layers(env: &Env, repo: &str) {
    let base = env.registry_url();
    let layers: Vec<Vec<u8>> = (0..2).map(|_| unique_bytes(4 * 1024 * 1024)).collect();
    for layer in &layers {
        push_blob(&base, Auth::None, repo, layer).expect("seed a layer");
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| digest(l)).collect::<Vec<_>>()},
    }))
    .expect("config");
    push_blob(&base, Auth::None, repo, &config).expect("seed the config");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digest(&config), "size": config.len()},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": OCI_LAYER, "digest": digest(l), "size": l.len(),
        })).collect::<Vec<_>>(),
    }))
    .expect("manifest");
    let put = Reply::from_request(
        client()
            .put(format!("{base}/v2/{repo}/manifests/v1"))
            .header("Content-Type", OCI_MANIFEST)
            .body(manifest),
    );
    assert_eq!(put.status, 201, "seed the manifest: {put}");
}

/// A credential that verifies for about `secs` more seconds, and what it is.
type Credential = (&'static str, String);

/// A `skopeo copy` from a slow source outlives each kind of credential: an API token, a
/// service-account token (a TokenReview in kubernetes modes) and an OIDC ID token. With
/// `review: self` the API server judges every step by the caller's own token, so there the push
/// ends with it.
#[test]
fn a_skopeo_push_outlives_its_credential_on_every_replica() {
    let cluster = Cluster::start();
    let env = &cluster.env;
    env.change(&["create", "user", "alice"]);
    env.policy(
        "add-role-to-user",
        "system:image-pusher",
        "alice",
        "project-a",
    );
    const LIFE: i64 = 3;
    let life = format!("{LIFE}s");
    // An ID token minted ten minutes ago: the 30 s leeway after `exp` leaves it LIFE seconds.
    let id_token = cluster.issuer.token_until(CI_SUB, now() + LIFE - 30);
    let credentials: Vec<Credential> = vec![
        (
            "API token",
            env.regate_ok(&["create", "token", "--user", "alice", "--duration", &life]),
        ),
        (
            "service-account token",
            env.token_for("builder", "project-a", &life),
        ),
        ("ID token", id_token),
    ];
    for i in 0..credentials.len() {
        seed_two_layers(env, &format!("src/slow-{i}"));
    }
    let started = Instant::now();
    // The three copies at once, each skopeo a child process of its own thread.
    let copies: Vec<_> = thread::scope(|scope| {
        let running: Vec<_> = credentials
            .iter()
            .enumerate()
            .map(|(i, (what, credential))| {
                let from = format!("docker://{}/src/slow-{i}:v1", cluster.lb.slow_source());
                let to = cluster.reference(&format!("project-a/outlived-{i}:v1"));
                scope.spawn(move || (*what, env.skopeo_copy(&from, &to, Some(credential))))
            })
            .collect();
        running
            .into_iter()
            .map(|copy| copy.join().expect("copy thread"))
            .collect()
    });
    let took = started.elapsed();
    for (what, out) in copies {
        assert!(
            took > Duration::from_secs(LIFE as u64 + 1),
            "{what}: the copies took {took:?}, not longer than the credentials' {LIFE} s"
        );
        if env.mode() == AuthorityMode::KubernetesSelf {
            expect_failure(
                &out,
                &format!("{what}: review: self ends the push with the token"),
            );
        } else {
            env.expect_success(&out, &format!("{what}: a push outliving its credential"));
        }
    }
    // The credentials have expired by now, through every replica.
    for (what, credential) in &credentials {
        for _ in 0..REPLICAS {
            let base = cluster.send("GET", "/v2/", Auth::Basic(credential));
            assert_eq!(base.status, 401, "{what} after its expiry: {base}");
        }
    }
}

/// Inside a push window only its own credential's registry token is taken, for the steps of a
/// push to its repository: no older credential of the same identity, no registry token without
/// a window, no pull, no delete, no catalog, no other repository, no token from the realm; and
/// removing the binding stops it at once.
#[test]
fn a_push_window_takes_its_own_credential_for_its_push_and_nothing_else() {
    let cluster = Cluster::start();
    let env = &cluster.env;
    let scope = "repository:project-a/pushed:pull,push";
    let mint = |exp: i64| cluster.issuer.token_until(CI_SUB, exp);
    let t = now();
    // Valid for 3 s more (30 s leeway): its registry token carries a window on `pushed`.
    let current = mint(t + 3 - 30);
    let windowed = cluster.token_of(&cluster.registry_token(&current, scope), "a push token");
    // Another credential of the same identity, valid now too: its token asks to pull only.
    let older = mint(t + 3 - 30);
    let pull_only = cluster.token_of(
        &cluster.registry_token(&older, "repository:project-a/pushed:pull"),
        "a pull token",
    );
    // An API token's registry token, asked without push: no window either.
    let api = env.token_for("builder", "project-a", "3s");
    let api_pull_only = cluster.token_of(
        &cluster.registry_token(&api, "repository:project-a/pushed:pull"),
        "an API token's pull token",
    );
    // One that expired an hour ago.
    let stale = mint(t - 3600);
    while now() <= t + 4 {
        thread::sleep(Duration::from_millis(200));
    }

    let upload = "/v2/project-a/pushed/blobs/uploads/";
    let self_review = env.mode() == AuthorityMode::KubernetesSelf;
    for _ in 0..REPLICAS {
        let start = cluster.send("POST", upload, Auth::Bearer(&windowed));
        let want = if self_review { 401 } else { 202 };
        assert_eq!(
            start.status, want,
            "an upload start inside the window: {start}"
        );
    }
    if self_review {
        // The gateway realm hands back the caller's own token there: no window to carry.
        return;
    }
    let image = Image::unique(4096);
    push_image(
        &cluster.lb.url(),
        Auth::Bearer(&windowed),
        "project-a/pushed",
        "v1",
        &image,
    )
    .unwrap_or_else(|r| panic!("a push inside the window: {r}"));

    // Wrong credentials, on every replica.
    let stale_start = cluster.send("POST", upload, Auth::Basic(&stale));
    assert_eq!(
        stale_start.status, 401,
        "an ID token expired an hour ago: {stale_start}"
    );
    for (what, auth) in [
        ("the expired ID token itself", Auth::Basic(&current)),
        (
            "an older ID token of the same identity",
            Auth::Basic(&older),
        ),
        (
            "that token's registry token without push",
            Auth::Bearer(&pull_only),
        ),
        (
            "an expired API token's registry token",
            Auth::Bearer(&api_pull_only),
        ),
        ("an ID token expired an hour ago", Auth::Basic(&stale)),
    ] {
        for _ in 0..REPLICAS {
            let start = cluster.send("POST", upload, auth);
            assert_eq!(start.status, 401, "{what}: {start}");
        }
    }
    // A blob PUT into a session the window's token started, with the wrong credentials.
    let session = cluster.send("POST", upload, Auth::Bearer(&windowed));
    let location = absolute(
        &cluster.lb.url(),
        session.header("Location").expect("Location"),
    );
    let data = unique_bytes(1024);
    for (what, auth) in [
        ("an older ID token", Auth::Basic(&older)),
        (
            "an expired API token's registry token",
            Auth::Bearer(&api_pull_only),
        ),
    ] {
        let put = Reply::from_request(
            auth.apply(client().put(add_query(&location, "digest", &digest(&data))))
                .body(data.clone()),
        );
        assert_eq!(put.status, 401, "{what}: a blob PUT: {put}");
    }
    // The realm takes no expired credential, in either form.
    for (what, credential) in [("the window's", &current), ("an old", &stale)] {
        let realm = cluster.registry_token(credential, scope);
        assert_eq!(
            realm.status, 401,
            "{what} expired ID token at the realm: {realm}"
        );
    }
    // The window's own token: nothing but the push steps of its repository.
    let manifest = "/v2/project-a/pushed/manifests/v1";
    let blob = format!("/v2/project-a/pushed/blobs/{}", image.layer_digest);
    for (what, method, path) in [
        ("a manifest pull", "GET", manifest),
        ("a blob pull", "GET", blob.as_str()),
        ("the tag list", "GET", "/v2/project-a/pushed/tags/list"),
        ("a manifest delete", "DELETE", manifest),
        ("the catalog", "GET", "/v2/_catalog"),
        (
            "another repository",
            "POST",
            "/v2/project-a/other/blobs/uploads/",
        ),
        (
            "another namespace",
            "POST",
            "/v2/project-b/pushed/blobs/uploads/",
        ),
    ] {
        let reply = cluster.send(method, path, Auth::Bearer(&windowed));
        assert_eq!(reply.status, 401, "{what} with the window's token: {reply}");
    }
    let head = Reply::from_request(
        Auth::Bearer(&windowed)
            .apply(client().head(format!("{}{manifest}", cluster.lb.url())))
            .header("Accept", OCI_MANIFEST),
    );
    assert_eq!(head.status, 200, "a manifest HEAD is a step of the push");

    // Every step is still authorized: unbinding stops the push on every replica at once.
    env.policy(
        "remove-role-from-user",
        "system:image-pusher",
        CI_USER,
        "project-a",
    );
    for _ in 0..REPLICAS {
        let after = cluster.send("POST", upload, Auth::Bearer(&windowed));
        assert_eq!(after.status, 403, "after unbinding: {after}");
    }
}

/// Where the authority can tell that the subject is gone (the embedded store), a push window
/// ends with it.
#[test]
fn deleting_the_service_account_ends_its_push_window() {
    if AuthorityMode::from_env().is_kubernetes() {
        // An API server reviews unexpired tokens only: docs/behaviour.md §3 says what it sees.
        return;
    }
    let cluster = Cluster::start();
    let env = &cluster.env;
    env.change(&["create", "serviceaccount", "pusher", "-n", "project-a"]);
    env.policy(
        "add-role-to-user",
        "system:image-pusher",
        "system:serviceaccount:project-a:pusher",
        "project-a",
    );
    let api = env.token_for("pusher", "project-a", "2s");
    let windowed = cluster.token_of(
        &cluster.registry_token(&api, "repository:project-a/gone:pull,push"),
        "a push token",
    );
    thread::sleep(Duration::from_secs(3));
    let upload = "/v2/project-a/gone/blobs/uploads/";
    let before = cluster.send("POST", upload, Auth::Bearer(&windowed));
    assert_eq!(before.status, 202, "inside the window: {before}");
    env.change(&["delete", "serviceaccount", "pusher", "-n", "project-a"]);
    for _ in 0..REPLICAS {
        let after = cluster.send("POST", upload, Auth::Bearer(&windowed));
        assert_eq!(after.status, 401, "after the account's deletion: {after}");
    }
}

/// A replica killed in the middle of a pull loop: the balancer moves on, and every pull after
/// it succeeds (only one in flight on the killed replica may fail).
#[test]
fn a_replica_killed_during_a_pull_loop() {
    let mut cluster = Cluster::start();
    let token = cluster.env.token("builder", "project-a");
    let image = Image::unique(512 * 1024);
    cluster.env.seed("project-a/app", "v1", &image);
    let blob = format!("/v2/project-a/app/blobs/{}", image.layer_digest);
    let mut failed = Vec::new();
    for round in 0..60 {
        if round == 20 {
            cluster.env.kill_replica(1);
        }
        let reply = cluster.send("GET", &blob, Auth::Basic(&token));
        let manifest = Reply::from_request(
            Auth::Basic(&token)
                .apply(client().get(format!(
                    "{}/v2/project-a/app/manifests/v1",
                    cluster.lb.url()
                )))
                .header("Accept", OCI_MANIFEST),
        );
        if reply.status != 200 || reply.body != image.layer || manifest.status != 200 {
            failed.push((round, reply.status, manifest.status));
        }
    }
    assert!(
        failed.len() <= 1 && failed.iter().all(|(round, ..)| *round == 20),
        "pulls that failed around the kill: {failed:?}\n{}",
        tail(&cluster.lb.error_log(), 20)
    );
}
