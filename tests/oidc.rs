//! OIDC issuers as identities, against an issuer on 127.0.0.1 (tests/common/issuer.rs): CI ID
//! tokens as Basic passwords and Bearer tokens, bound like any subject; every way a token can be
//! wrong refused, claims naming reserved groups included; key rotation and retirement; an issuer
//! down or hanging (503, never a failed login; one fetch shared); and a pod's service-account
//! token handed out by `regate credential-provider` and pulled with by containerd and Docker.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// The CI identity of the tests, as GitHub Actions names a workflow on main.
const CI_SUB: &str = "repo:org/app:ref:refs/heads/main";
const CI_USER: &str = "ci:repo:org/app:ref:refs/heads/main";

/// regate trusting `issuer` with `mapping`, with projects and `project-a/app:v1` seeded.
fn trusting(issuer: &Issuer, mapping: &str) -> (Env, Image) {
    let mut config = issuer.config(mapping);
    if AuthorityMode::from_env().is_kubernetes() {
        config.push_str(KUBERNETES_TEST_CONFIG);
    }
    let env = Env::builder()
        .namespaces(PROJECTS)
        .gateway_config(&config)
        .run();
    let image = Image::runnable();
    env.seed("project-a/app", "v1", &image);
    (env, image)
}

/// An issuer, and regate trusting it with the [`CI_USER`] allowed to pull from project-a.
fn ci_puller() -> (Issuer, Env) {
    let issuer = Issuer::start();
    let env = ci_puller_of(&issuer, "");
    (issuer, env)
}

/// regate trusting `issuer` (its config followed by `more`) with the [`CI_USER`] allowed to
/// pull from project-a.
fn ci_puller_of(issuer: &Issuer, more: &str) -> Env {
    let (env, _) = trusting(issuer, &format!("      username_prefix: \"ci:\"\n{more}"));
    env.policy(
        "add-role-to-user",
        "system:image-puller",
        CI_USER,
        "project-a",
    );
    env
}

/// The status of a manifest GET of `project-a/app:v1` with `auth`.
fn pull(env: &Env, auth: Auth) -> u16 {
    env.get_manifest("project-a/app", "v1", auth).status
}

/// The registry token the gateway realm gives `token` to pull `project-a/app`.
fn pull_token(env: &Env, token: &str) -> String {
    let realm = env.send(
        "GET",
        "/openshift/token?scope=repository:project-a/app:pull",
        Auth::Basic(token),
    );
    assert_eq!(realm.status, 200, "{}", realm.text());
    realm.json()["token"].as_str().unwrap().to_string()
}

/// The status of a manifest GET of `project-a/app:v1` with `auth`, until `want` or 5 s.
fn manifest_status(env: &Env, auth: Auth, want: u16) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = env.get_manifest("project-a/app", "v1", auth).status;
        if status == want || Instant::now() > deadline {
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_ci_id_token_is_denied_until_bound_then_pulls_as_basic_or_bearer() {
    let issuer = Issuer::start();
    let (env, _) = trusting(
        &issuer,
        "      username_prefix: \"ci:\"\n      groups_claim: groups\n      groups_prefix: \"ci-group:\"\n",
    );
    let token = issuer.token(CI_SUB);
    let denied = env.get_manifest("project-a/app", "v1", Auth::Basic(&token));
    let err = env.expect_error(&denied, 403, "DENIED", "an unbound CI identity");
    assert!(
        err["message"].as_str().is_some_and(|m| m.contains(CI_USER)),
        "{err}"
    );

    env.policy(
        "add-role-to-user",
        "system:image-puller",
        CI_USER,
        "project-a",
    );
    // Allowed within a second of the binding (the denial cached in kubernetes modes included).
    let bound = Instant::now();
    assert_eq!(manifest_status(&env, Auth::Basic(&token), 200), 200);
    assert!(
        bound.elapsed() < Duration::from_secs(1),
        "{:?}",
        bound.elapsed()
    );
    assert_eq!(pull(&env, Auth::Bearer(&token)), 200);
    // And through the realm, as docker login does.
    let registry_token = pull_token(&env, &token);
    assert_eq!(pull(&env, Auth::Bearer(&registry_token)), 200);
    // Pushing is still not granted, and the hint names the CI identity.
    let push = env.send(
        "POST",
        "/v2/project-a/app/blobs/uploads/",
        Auth::Basic(&token),
    );
    assert_eq!(push.status, 403);

    // Groups from the claim bind too.
    let grouped = issuer.mint(
        "rs-1",
        &serde_json::json!({
            "iss": issuer.url, "aud": OIDC_AUDIENCE, "sub": "repo:org/other:ref:refs/heads/dev",
            "groups": ["release"], "iat": now(), "exp": now() + 600,
        }),
    );
    assert_eq!(pull(&env, Auth::Basic(&grouped)), 403);
    env.policy(
        "add-role-to-group",
        "system:image-puller",
        "ci-group:release",
        "project-a",
    );
    assert_eq!(
        manifest_status(&env, Auth::Basic(&grouped), 200),
        200,
        "RS256 and a group"
    );

    // The CLI knows the mapped identity.
    let can_i = env.regate(&[
        "auth",
        "can-i",
        "get",
        "imagestreams/layers",
        "-n",
        "project-a",
        "--as",
        CI_USER,
    ]);
    assert_eq!(stdout(&can_i).trim(), "yes", "{}", show_output(&can_i));
    let who = env.regate_ok(&[
        "policy",
        "who-can",
        "get",
        "imagestreams/layers",
        "-n",
        "project-a",
    ]);
    assert!(who.contains(CI_USER), "{who}");
    assert!(!env.regate_log().contains(&token), "no ID token in the log");
}

/// A git branch may be named `$(touch${IFS}pwned)`, and its CI identity carries the name. The
/// fix the 403 names (and `explain` prints) is quoted for the shell: pasted into bash it runs
/// nothing and grants the whole subject, and the next pull passes (docs/behaviour.md §5).
#[test]
fn the_fix_for_a_branch_named_like_a_command_runs_nothing_and_grants_the_whole_subject() {
    let issuer = Issuer::start();
    let (env, _) = trusting(&issuer, "      username_prefix: \"ci:\"\n");
    let sub = "repo:org/app:ref:refs/heads/$(touch${IFS}pwned)";
    let user = format!("ci:{sub}");
    let token = issuer.token(sub);
    let denied = env.get_manifest("project-a/app", "v1", Auth::Basic(&token));
    let err = env.expect_error(&denied, 403, "DENIED", "an unbound CI identity");
    assert_eq!(err["detail"]["identity"], user.as_str());
    let message = err["message"].as_str().unwrap_or_default();
    let fix = message
        .split_once("grants it: ")
        .map(|(_, command)| command)
        .unwrap_or_else(|| panic!("no command in {message}"));
    assert_eq!(
        fix,
        "regate policy add-role-to-user system:image-puller \
         'ci:repo:org/app:ref:refs/heads/$(touch${IFS}pwned)' -n project-a"
    );
    let explained = env.regate_ok(&["policy", "explain", "project-a/app", "--as", &user]);
    assert!(
        explained.contains(&format!("to grant it: {fix}")),
        "{explained}"
    );

    let here = tempfile::tempdir().expect("a directory to paste in");
    let pasted = env.paste(fix, here.path());
    assert!(pasted.status.success(), "{}", show_output(&pasted));
    assert!(
        !here.path().join("pwned").exists(),
        "the pasted fix ran a command"
    );
    std::thread::sleep(POLICY_DELAY);
    assert_eq!(
        manifest_status(&env, Auth::Basic(&token), 200),
        200,
        "the pasted fix granted the whole subject"
    );
}

#[test]
fn id_tokens_wrong_in_any_way_are_refused() {
    let (issuer, env) = ci_puller();
    let good = issuer.token(CI_SUB);
    assert_eq!(manifest_status(&env, Auth::Basic(&good), 200), 200);

    let with = |change: &dyn Fn(&mut serde_json::Value)| {
        let mut claims = issuer.claims(CI_SUB, OIDC_AUDIENCE, 600);
        change(&mut claims);
        issuer.mint("es-1", &claims)
    };
    let stranger = Issuer::start();
    let forged_alg = {
        use base64::Engine;
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let claims = issuer.claims(CI_SUB, OIDC_AUDIENCE, 600);
        format!(
            "{}.{}.",
            b64(serde_json::json!({"alg": "none", "kid": "es-1"})),
            b64(claims)
        )
    };
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &issuer.claims(CI_SUB, OIDC_AUDIENCE, 600),
        &jsonwebtoken::EncodingKey::from_secret(b"the issuer's public key, as an HMAC secret"),
    )
    .unwrap();
    let cases = [
        (
            "wrong audience",
            with(&|c| c["aud"] = "someone-else".into()),
            "audience",
        ),
        (
            "expired",
            with(&|c| {
                c["exp"] = (now() - 120).into();
                c["iat"] = (now() - 900).into();
            }),
            "expired",
        ),
        (
            "future nbf",
            with(&|c| c["nbf"] = (now() + 600).into()),
            "not valid yet",
        ),
        (
            "future iat",
            with(&|c| c["iat"] = (now() + 600).into()),
            "future",
        ),
        (
            "no exp",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            "exp",
        ),
        ("alg none", forged_alg, "not accepted"),
        ("HS256", hs256, "not accepted"),
        ("unknown issuer", stranger.token(CI_SUB), ""),
    ];
    for (what, token, reason) in cases {
        for auth in [Auth::Basic(&token), Auth::Bearer(&token)] {
            let reply = env.get_manifest("project-a/app", "v1", auth);
            let err = env.expect_error(&reply, 401, "UNAUTHORIZED", what);
            assert!(
                err["message"].as_str().is_some_and(|m| m.contains(reason)),
                "{what}: {err}"
            );
            assert!(!reply.text().contains(&token));
        }
    }
}

#[test]
fn rotated_keys_are_fetched_and_an_outage_keeps_the_known_ones() {
    let (issuer, env) = ci_puller();
    assert_eq!(
        manifest_status(&env, Auth::Basic(&issuer.token(CI_SUB)), 200),
        200
    );

    // A new key mid-run: its first token fetches the key set again (fetches are at most one
    // per 2 s per issuer).
    issuer.add_key("es-2");
    std::thread::sleep(Duration::from_millis(2100));
    let rotated = issuer.mint("es-2", &issuer.claims(CI_SUB, OIDC_AUDIENCE, 600));
    assert_eq!(pull(&env, Auth::Basic(&rotated)), 200);

    // Made-up kids do not make regate hammer the issuer.
    let fetches = issuer.jwks_fetches();
    for n in 0..20 {
        let mut claims = issuer.claims(CI_SUB, OIDC_AUDIENCE, 600);
        claims["jti"] = n.into();
        let token = issuer.mint_as("es-1", &format!("made-up-{n}"), &claims);
        assert_eq!(pull(&env, Auth::Basic(&token)), 401);
    }
    assert!(
        issuer.jwks_fetches() <= fetches + 2,
        "{} fetches",
        issuer.jwks_fetches() - fetches
    );

    // The issuer goes down: tokens of known keys still verify; a new key cannot be checked,
    // which fails closed as an authority outage does (503), not as a wrong password.
    issuer.set_up(false);
    std::thread::sleep(Duration::from_millis(2100));
    let fresh = issuer.mint("es-1", &issuer.claims(CI_SUB, OIDC_AUDIENCE, 300));
    assert_eq!(pull(&env, Auth::Basic(&fresh)), 200);
    issuer.add_key("es-3");
    let unknown = issuer.mint("es-3", &issuer.claims(CI_SUB, OIDC_AUDIENCE, 300));
    let reply = env.get_manifest("project-a/app", "v1", Auth::Basic(&unknown));
    issuer.expect_unreachable(&env, &reply, "a new key while the issuer is down");
}

/// A key the issuer no longer lists verifies nothing: a token it signed, verified and
/// remembered while the key was listed, is refused once the key set is fetched again, here at
/// once by a token naming a kid the set lacks; the registry token it bought stops with it.
#[test]
fn a_retired_key_ends_the_tokens_it_signed() {
    let (issuer, env) = ci_puller();
    let token = issuer.token(CI_SUB);
    assert_eq!(manifest_status(&env, Auth::Basic(&token), 200), 200);
    let registry_token = pull_token(&env, &token);
    assert_eq!(pull(&env, Auth::Bearer(&registry_token)), 200);

    issuer.remove_key("es-1");
    std::thread::sleep(Duration::from_millis(2100));
    let made_up = issuer.mint_as(
        "rs-1",
        "made-up",
        &issuer.claims(CI_SUB, OIDC_AUDIENCE, 600),
    );
    assert_eq!(pull(&env, Auth::Basic(&made_up)), 401);
    for auth in [Auth::Basic(&token), Auth::Bearer(&registry_token)] {
        let reply = env.get_manifest("project-a/app", "v1", auth);
        env.expect_invalid_token(&reply, "a token of a retired key");
        assert!(reply.text().contains("kid"), "{reply}");
    }
    // The keys still listed verify as before.
    let rs = issuer.mint("rs-1", &issuer.claims(CI_SUB, OIDC_AUDIENCE, 600));
    assert_eq!(pull(&env, Auth::Basic(&rs)), 200);
}

/// Claims never name a `system:` group or user: a groups claim listing
/// `system:serviceaccounts:project-b` (which may pull from project-b) is refused whole, with
/// the value named, and so is a `sub` that is a service account's name outside the
/// `kubernetes` preset.
#[test]
fn claims_naming_reserved_groups_or_users_are_refused() {
    let issuer = Issuer::start();
    let (env, image) = trusting(
        &issuer,
        "      username_prefix: \"ci:\"\n      groups_claim: groups\n",
    );
    env.seed("project-b/app", "v1", &image);
    env.policy(
        "add-role-to-group",
        "system:image-puller",
        "system:serviceaccounts:project-b",
        "project-b",
    );
    let mut claims = issuer.claims(CI_SUB, OIDC_AUDIENCE, 600);
    claims["groups"] = serde_json::json!(["release", "system:serviceaccounts:project-b"]);
    let grouped = issuer.mint("es-1", &claims);
    let posing = issuer.token("system:serviceaccount:project-b:default");
    for (what, token, value) in [
        (
            "a reserved group",
            &grouped,
            "system:serviceaccounts:project-b",
        ),
        (
            "a service account's name",
            &posing,
            "system:serviceaccount:project-b:default",
        ),
    ] {
        for auth in [Auth::Basic(token), Auth::Bearer(token)] {
            let reply = env.get_manifest("project-b/app", "v1", auth);
            env.expect_invalid_token(&reply, what);
            let text = reply.text();
            assert!(
                text.contains(value) && text.contains("system:"),
                "{what}: {text}"
            );
        }
        let realm = env.send(
            "GET",
            "/openshift/token?scope=repository:project-b/app:pull",
            Auth::Basic(token),
        );
        assert_eq!(realm.status, 401, "{what}: {}", realm.text());
    }
}

/// While the issuer cannot be reached, a token whose key regate does not hold cannot be
/// checked: 503 with `Retry-After` naming the issuer, as a Kubernetes outage is, never a failed
/// login, so 30 of them bar nobody; `/readyz` says so without an address, and `/metrics`
/// counts the failed fetches.
#[test]
fn an_unreachable_issuer_is_503_and_bars_no_one() {
    let issuer = Issuer::start();
    issuer.set_up(false);
    let env = ci_puller_of(&issuer, "failed_logins:\n  burst: 5\n  refill: 10m\n");
    let token = issuer.token(CI_SUB);
    for n in 0..30 {
        let reply = match n % 3 {
            0 => env.get_manifest("project-a/app", "v1", Auth::Basic(&token)),
            1 => env.send(
                "GET",
                "/openshift/token?scope=repository:project-a/app:pull",
                Auth::Bearer(&token),
            ),
            _ => env.post_token_form(&[
                ("grant_type", "password"),
                ("username", "ci"),
                ("password", &token),
                ("scope", "repository:project-a/app:pull"),
                ("service", "regate"),
            ]),
        };
        issuer.expect_unreachable(&env, &reply, &format!("request {n}"));
        assert!(!reply.text().contains(&token));
    }
    // Said on /readyz, without taking the replica out of rotation: API tokens still work.
    let ready = env.send("GET", "/readyz", Auth::None);
    let body = ready.text();
    assert_eq!(ready.status, 200, "{body}");
    assert!(body.contains("authority: ok"), "{body}");
    assert!(body.contains("oidc issuer unreachable"), "{body}");
    assert!(
        !body.contains("127.0.0.1") && !body.contains("http"),
        "{body}"
    );
    let metrics = env.send("GET", "/metrics", Auth::None).text();
    assert!(
        metrics.contains("regate_oidc_jwks_fetch_failures_total{"),
        "{metrics}"
    );

    // Back up: the same client pulls at once, and the gateway is ready again.
    issuer.set_up(true);
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(manifest_status(&env, Auth::Basic(&token), 200), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while env
        .send("GET", "/readyz", Auth::None)
        .text()
        .contains("oidc issuer unreachable")
    {
        assert!(
            Instant::now() < deadline,
            "/readyz still names the issuer once it is up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Requests that need the keys of a hanging issuer share one fetch: all are answered within
/// about one fetch timeout (5 s), not one after another, and the issuer saw one key-set request.
#[test]
fn requests_waiting_on_a_hanging_issuer_share_one_fetch() {
    let (issuer, env) = ci_puller();
    assert_eq!(
        manifest_status(&env, Auth::Basic(&issuer.token(CI_SUB)), 200),
        200
    );
    issuer.set_hanging(true);
    std::thread::sleep(Duration::from_millis(2100));
    let fetches = issuer.jwks_fetches();
    let started = Instant::now();
    let replies: Vec<Reply> = std::thread::scope(|s| {
        let waiters: Vec<_> = (0..6)
            .map(|n| {
                let token = issuer.mint_as(
                    "es-1",
                    &format!("rotated-{n}"),
                    &issuer.claims(CI_SUB, OIDC_AUDIENCE, 600),
                );
                let env = &env;
                s.spawn(move || env.get_manifest("project-a/app", "v1", Auth::Basic(&token)))
            })
            .collect();
        waiters.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let took = started.elapsed();
    issuer.set_hanging(false);
    assert_eq!(
        issuer.jwks_fetches() - fetches,
        1,
        "one fetch for all, in {took:?}"
    );
    assert_eq!(issuer.jwks_most_in_flight(), 1);
    // One 5 s timeout, generously; one after another would be 30 s.
    assert!(took < Duration::from_secs(15), "{took:?}");
    for reply in &replies {
        issuer.expect_unreachable(&env, reply, "waiting on a hanging issuer");
    }
}

/// Runs `regate credential-provider ARGS` with `request` on stdin, as the kubelet does (no
/// state directory, no config: the kubelet passes only the provider's `args`).
fn credential_provider(args: &[&str], request: &serde_json::Value) -> std::process::Output {
    let mut cmd = std::process::Command::new(REGATE);
    cmd.arg("credential-provider").args(args);
    with_stdin(cmd, &request.to_string())
}

#[test]
fn a_pods_service_account_token_pulls_through_the_credential_provider() {
    let issuer = Issuer::start();
    let (env, _) = trusting(&issuer, "      preset: kubernetes\n");
    // What the kubelet mints for the pod: the cluster's issuer, regate's audience.
    let mut claims = issuer.claims(
        "system:serviceaccount:project-a:default",
        OIDC_AUDIENCE,
        3600,
    );
    claims["kubernetes.io"] = serde_json::json!({
        "namespace": "project-a",
        "serviceaccount": {"name": "default", "uid": "0b9c7f4e"},
        "pod": {"name": "app-7d4b9", "uid": "5f1e"},
    });
    let sa_token = issuer.mint("rs-1", &claims);
    let host = env.host();
    let request = serde_json::json!({
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "kind": "CredentialProviderRequest",
        "image": format!("{host}/project-a/app:v1"),
        "serviceAccountToken": sa_token,
        "serviceAccountAnnotations": {},
    });
    let out = credential_provider(&["--registry", &host], &request);
    assert!(out.status.success(), "{}", show_output(&out));
    let response: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(response["kind"], "CredentialProviderResponse");
    assert_eq!(response["cacheKeyType"], "Registry");
    let auth = &response["auth"][host.as_str()];
    let (user, password) = (
        auth["username"].as_str().unwrap(),
        auth["password"].as_str().unwrap(),
    );

    // containerd pulls with it: the pod's own identity, no pull secret, no TokenReview.
    let work = tempfile::tempdir().expect("dir");
    let containerd = Containerd::start(work.path());
    let reference = format!("{host}/project-a/app:v1");
    let creds = format!("{user}:{password}");
    let pull = containerd.ctr(&[
        "images",
        "pull",
        "--plain-http",
        "--snapshotter",
        "native",
        "--user",
        &creds,
        &reference,
    ]);
    env.expect_success(&pull, "ctr pull with the credential provider's auth");
    if env.mode().is_kubernetes() {
        // Verified offline: the API server was never asked whose token it is.
        let reviews = env.reviews();
        for kind in ["tokenreviews", "selfsubjectreviews"] {
            assert_eq!(reviews[kind].as_u64().unwrap_or(0), 0, "{kind}: {reviews}");
        }
    }

    // The Docker engine too.
    let docker = env.docker();
    let login = docker.login(&host, user, password);
    env.expect_success(&login, "docker login with the service-account token");
    let tag = format!("{host}/project-a/app:v1");
    docker.track(&tag);
    let pull = docker.pull(&tag);
    env.expect_success(&pull, "docker pull as the pod's service account");

    // Another namespace's image is not this service account's to pull.
    let other = credential_provider(
        &["--registry", &host],
        &serde_json::json!({
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "kind": "CredentialProviderRequest",
            "image": "quay.io/org/app:v1",
            "serviceAccountToken": sa_token,
        }),
    );
    assert!(other.status.success());
    let response: serde_json::Value = serde_json::from_slice(&other.stdout).unwrap();
    assert_eq!(response["auth"], serde_json::json!({}));
    let denied = env.get_manifest("project-b/app", "v1", Auth::Basic(password));
    assert_eq!(denied.status, 403);

    // A wrong apiVersion is one line on stderr and a non-zero exit.
    let mut wrong = request.clone();
    wrong["apiVersion"] = "credentialprovider.kubelet.k8s.io/v1alpha1".into();
    let out = credential_provider(&["--registry", &host], &wrong);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("apiVersion") && !err.contains(&sa_token),
        "{err}"
    );
}
