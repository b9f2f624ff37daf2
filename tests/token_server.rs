//! Token-server mode: a real `docker-registry` with `auth: token` (the block `regate keys show`
//! prints) verifies regate's tokens itself; no image data passes through regate. skopeo and the
//! Docker engine talk to that registry directly and fetch their tokens from regate's realm.

mod common;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use common::*;
use regate::token::distribution::{DistributionClaims, ResourceActions};
use regate::token::keys::{SigningKey, Trust};

const SERVICE: &str = TOKEN_SERVICE;
const ISSUER: &str = TOKEN_ISSUER;

/// A registry with `auth: token` whose realm is the Env's regate, which also keeps proxying
/// its own plain registry (both modes in one process).
fn token_env() -> Env {
    Env::builder().namespaces(PROJECTS).token_server().run()
}

/// `docker://REGISTRY/REPO` on the token-auth registry.
fn remote(env: &Env, repo_tag: &str) -> String {
    format!("docker://{}/{repo_tag}", env.token_registry_host())
}

/// A token from regate's token-server realm for `scopes`, as docker asks for one.
fn fetch_token(env: &Env, api_token: Option<&str>, scopes: &[&str]) -> String {
    let mut url = format!("{}/token?service={SERVICE}", env.url());
    for scope in scopes {
        url = add_query(&url, "scope", scope);
    }
    let mut request = env.client().get(&url);
    if let Some(token) = api_token {
        request = request.basic_auth("anything", Some(token));
    }
    let reply = Reply::from_request(request);
    env.expect_status(&reply, 200, "token request");
    let body = reply.json();
    assert_eq!(body["token"], body["access_token"], "{body}");
    body["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {body}"))
        .to_string()
}

/// The claims of a compact JWT (unverified: the registry is what verifies).
fn claims(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).expect("a JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// The JOSE header of a compact JWT.
fn header(jwt: &str) -> serde_json::Value {
    let head = jwt.split('.').next().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .expect("base64url header");
    serde_json::from_slice(&bytes).expect("JSON header")
}

/// The actions a token grants on `repo`.
fn granted(jwt: &str, repo: &str) -> Vec<String> {
    let claims = claims(jwt);
    let mut actions: Vec<String> = claims["access"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["type"] == "repository" && a["name"] == repo)
        .flat_map(|a| a["actions"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    actions.sort();
    actions
}

/// `GET /v2/REPO/manifests/REF` on the token-auth registry with a Bearer token.
fn registry_get(env: &Env, repo: &str, reference: &str, jwt: &str) -> Reply {
    let url = format!(
        "{}/v2/{repo}/manifests/{reference}",
        env.token_registry_url()
    );
    Reply::from_request(
        env.client()
            .get(url)
            .header(
                "Accept",
                "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
            )
            .bearer_auth(jwt),
    )
}

/// Push `image` to the token-auth registry as `repo:tag` with builder credentials.
fn seed_remote(env: &Env, repo_tag: &str, image_dir: &Path) {
    let builder = env.token("builder", "project-a");
    let push = env.skopeo_copy(
        &format!("oci:{}", image_dir.display()),
        &remote(env, repo_tag),
        Some(&builder),
    );
    env.expect_success(&push, "skopeo push by project-a/builder");
}

#[test]
fn skopeo_pushes_and_pulls_and_cross_project_access_follows_policy() {
    let env = token_env();
    let image = oci_layout(&env.dir().join("img"), &unique_bytes(200_000));
    let builder = env.token("builder", "project-a");
    let default = env.token("default", "project-a");
    let stranger = env.token("default", "project-b");

    seed_remote(&env, "project-a/app:v1", &env.dir().join("img"));
    let log = env.token_registry_log();
    assert!(
        access_log_requests(&log)
            .iter()
            .any(|r| r.starts_with("PUT /v2/project-a/app/manifests/v1")),
        "the manifest went straight to the token-auth registry:\n{}",
        tail(&log, 20)
    );

    let pull = env.skopeo_copy(
        &remote(&env, "project-a/app:v1"),
        &env.oci_ref("pulled"),
        Some(&default),
    );
    env.expect_success(&pull, "skopeo pull by project-a/default");
    assert_eq!(
        oci_manifest_digest(&env.dir().join("pulled")),
        image.manifest_digest,
        "the pulled manifest is the pushed one"
    );

    let push = env.skopeo_copy(
        &format!("oci:{}", env.dir().join("img").display()),
        &remote(&env, "project-a/app:v2"),
        Some(&default),
    );
    expect_failure(&push, "skopeo push by project-a/default (a puller)");

    let pull = env.skopeo_copy(
        &remote(&env, "project-a/app:v1"),
        &env.oci_ref("stranger1"),
        Some(&stranger),
    );
    expect_failure(&pull, "cross-project pull before the grant");
    env.grant_pull("system:serviceaccount:project-b:default", "project-a");
    let pull = env.skopeo_copy(
        &remote(&env, "project-a/app:v1"),
        &env.oci_ref("stranger2"),
        Some(&stranger),
    );
    env.expect_success(&pull, "cross-project pull after `policy add-role-to-user`");

    // The same process still gates its own registry in proxy mode, with the same tokens.
    let push = env.skopeo_copy(
        &format!("oci:{}", env.dir().join("img").display()),
        &env.docker_ref("project-a/app:v1"),
        Some(&builder),
    );
    env.expect_success(&push, "push through regate's proxy mode");
    let push = env.skopeo_copy(
        &format!("oci:{}", env.dir().join("img").display()),
        &env.docker_ref("project-a/app:v2"),
        Some(&default),
    );
    expect_failure(&push, "push by a puller through proxy mode");
}

#[test]
fn tokens_carry_what_policy_allows_of_each_scope() {
    let env = token_env();
    let builder = env.token("builder", "project-a");
    let default = env.token("default", "project-a");
    let stranger = env.token("default", "project-b");
    let scopes = [
        "repository:project-a/app:pull",
        "repository:project-a/app:push",
        "repository:project-b/app:pull,push",
    ];

    let jwt = fetch_token(&env, Some(&builder), &scopes);
    let c = claims(&jwt);
    assert_eq!(c["iss"], ISSUER, "{c}");
    assert_eq!(c["aud"], SERVICE, "{c}");
    assert_eq!(c["sub"], "system:serviceaccount:project-a:builder", "{c}");
    for claim in ["exp", "nbf", "iat"] {
        assert!(c[claim].as_u64().is_some(), "{claim} in {c}");
    }
    assert!(c["jti"].as_str().is_some_and(|j| !j.is_empty()), "{c}");
    assert_eq!(granted(&jwt, "project-a/app"), ["pull", "push"], "{c}");
    assert!(
        granted(&jwt, "project-b/app").is_empty(),
        "nothing in another project: {c}"
    );
    let h = header(&jwt);
    assert!(matches!(h["alg"].as_str(), Some("ES256" | "RS256")), "{h}");
    assert!(h["x5c"].as_array().is_some_and(|c| !c.is_empty()), "{h}");

    // A partly denied request is not an error: the token carries the allowed part.
    let jwt = fetch_token(&env, Some(&default), &scopes);
    assert_eq!(granted(&jwt, "project-a/app"), ["pull"]);
    let jwt = fetch_token(&env, Some(&stranger), &scopes);
    assert_eq!(granted(&jwt, "project-b/app"), ["pull"]);
    assert!(granted(&jwt, "project-a/app").is_empty());
    // Anonymous: a token with no access at all, until something is bound.
    let jwt = fetch_token(&env, None, &scopes);
    assert_eq!(claims(&jwt)["access"], serde_json::json!([]));

    // delete and the catalog are cluster rights no project role grants
    let jwt = fetch_token(
        &env,
        Some(&builder),
        &["repository:project-a/app:delete", "registry:catalog:*"],
    );
    assert_eq!(claims(&jwt)["access"], serde_json::json!([]));

    // an invalid repository name is a 400, a bad token a 401
    let url = add_query(
        &format!("{}/token", env.url()),
        "scope",
        "repository:UPPER/app:pull",
    );
    let reply = Reply::from_request(env.client().get(url).basic_auth("x", Some(&builder)));
    env.expect_error(
        &reply,
        400,
        "NAME_INVALID",
        "a scope naming an invalid repository",
    );
    let reply = Reply::from_request(
        env.client()
            .get(format!("{}/token", env.url()))
            .basic_auth("x", Some("not-a-token")),
    );
    env.expect_error(
        &reply,
        401,
        "UNAUTHORIZED",
        "a token request with a bad API token",
    );
}

#[test]
fn oauth2_form_refresh_and_repeated_scopes() {
    let env = token_env();
    seed_remote(&env, "project-a/app:v1", &{
        let dir = env.dir().join("img");
        oci_layout(&dir, &unique_bytes(10_000));
        dir
    });
    let builder = env.token("builder", "project-a");
    let form = [
        ("grant_type", "password"),
        ("username", "anything"),
        ("password", builder.as_str()),
        ("service", SERVICE),
        ("client_id", "containerd"),
        ("access_type", "offline"),
        (
            "scope",
            "repository:project-a/app:pull repository:project-a/app:push",
        ),
    ];
    let reply = Reply::from_request(
        env.client()
            .post(format!("{}/token", env.url()))
            .form(&form),
    );
    env.expect_status(&reply, 200, "OAuth2 password grant");
    let body = reply.json();
    let access = body["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    let refresh = body["refresh_token"].as_str().map(str::to_string);
    assert!(
        body["expires_in"].as_u64().is_some_and(|s| s >= 60),
        "{body}"
    );
    assert!(body["issued_at"].as_str().is_some(), "{body}");
    assert_eq!(granted(&access, "project-a/app"), ["pull", "push"]);
    env.expect_status(
        &registry_get(&env, "project-a/app", "v1", &access),
        200,
        "the registry accepts the password grant's token",
    );

    let refresh = match (env.mode(), refresh) {
        // Reviewing as the caller needs the caller's own token: no refresh tokens there.
        (AuthorityMode::KubernetesSelf, None) => return,
        (_, Some(refresh)) => refresh,
        (mode, None) => panic!("{mode:?}: access_type=offline gives a refresh_token: {body}"),
    };
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("service", SERVICE),
        ("scope", "repository:project-a/app:pull"),
    ];
    let reply = Reply::from_request(
        env.client()
            .post(format!("{}/token", env.url()))
            .form(&form),
    );
    env.expect_status(&reply, 200, "OAuth2 refresh grant");
    let renewed = reply.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    assert_eq!(granted(&renewed, "project-a/app"), ["pull"]);
    env.expect_status(
        &registry_get(&env, "project-a/app", "v1", &renewed),
        200,
        "the registry accepts the refreshed token",
    );

    // GET with offline_token=true, as docker asks
    let url = add_query(
        &add_query(&format!("{}/token", env.url()), "offline_token", "true"),
        "scope",
        "repository:project-a/app:pull",
    );
    let reply = Reply::from_request(env.client().get(url).basic_auth("x", Some(&builder)));
    env.expect_status(&reply, 200, "GET with offline_token=true");
    assert!(reply.json()["refresh_token"].as_str().is_some(), "{reply}");
}

#[test]
fn the_registry_refuses_tokens_of_another_key_audience_or_time() {
    let env = token_env();
    seed_remote(&env, "project-a/app:v1", &{
        let dir = env.dir().join("img");
        oci_layout(&dir, &unique_bytes(10_000));
        dir
    });
    let keys = env.state_dir().join("keys");
    let key = SigningKey::load(&keys).expect("the state's key directory");
    let access = vec![ResourceActions {
        kind: "repository".into(),
        name: "project-a/app".into(),
        actions: vec!["pull".into()],
    }];
    let claims = |service: &str| {
        DistributionClaims::new(
            ISSUER,
            service,
            "system:serviceaccount:project-a:default",
            Duration::from_secs(300),
            access.clone(),
        )
    };

    // control: the same claims, signed with the right key, are accepted (x5c, and kid alone)
    let good = key.sign(Trust::RootCertBundle, &claims(SERVICE)).unwrap();
    env.expect_status(
        &registry_get(&env, "project-a/app", "v1", &good),
        200,
        "a well-formed token",
    );
    let kid_only = sign_with_kid_only(&keys, &key, &claims(SERVICE));
    env.expect_status(
        &registry_get(&env, "project-a/app", "v1", &kid_only),
        200,
        "a token naming its key by libtrust key ID only",
    );

    let other_dir = env.dir().join("other-keys");
    env.regate_ok(&["keys", "init", "--dir", other_dir.to_str().unwrap()]);
    let other = SigningKey::load(&other_dir).unwrap();
    let wrong_key = other.sign(Trust::RootCertBundle, &claims(SERVICE)).unwrap();
    let wrong_audience = key
        .sign(Trust::RootCertBundle, &claims("another-registry"))
        .unwrap();
    let mut old = claims(SERVICE);
    // beyond distribution's 60 s leeway
    old.iat -= 600;
    old.nbf -= 600;
    old.exp = old.iat + 300;
    let expired = key.sign(Trust::RootCertBundle, &old).unwrap();
    let mut wrong_issuer = claims(SERVICE);
    wrong_issuer.iss = "someone-else".into();
    let wrong_issuer = key.sign(Trust::RootCertBundle, &wrong_issuer).unwrap();
    for (jwt, what) in [
        (
            &wrong_key,
            "a token signed by a key the registry does not trust",
        ),
        (&wrong_audience, "a token for another service"),
        (&expired, "an expired token"),
        (&wrong_issuer, "a token of another issuer"),
    ] {
        let reply = registry_get(&env, "project-a/app", "v1", jwt);
        env.expect_status(&reply, 401, what);
    }
    // a token for pull does not let its holder push
    let reply = Reply::from_request(
        env.client()
            .post(format!(
                "{}/v2/project-a/app/blobs/uploads/",
                env.token_registry_url()
            ))
            .bearer_auth(&good),
    );
    env.expect_status(&reply, 401, "an upload with a pull-only token");
}

/// `claims` signed with the directory's key, the header naming the key by `kid` alone (the
/// libtrust key ID distribution 2.x computes for each bundle certificate), no `x5c`.
fn sign_with_kid_only(dir: &Path, key: &SigningKey, claims: &DistributionClaims) -> String {
    let pem = std::fs::read(dir.join("signing-key.pem")).expect("read signing-key.pem");
    let algorithm = key.jwt_algorithm();
    let encoding = match algorithm {
        jsonwebtoken::Algorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(&pem),
        _ => jsonwebtoken::EncodingKey::from_rsa_pem(&pem),
    }
    .expect("load signing-key.pem");
    let mut header = jsonwebtoken::Header::new(algorithm);
    header.kid = Some(key.info().libtrust_id.clone());
    jsonwebtoken::encode(&header, claims, &encoding).expect("sign")
}

#[test]
fn anonymous_pull_only_where_bound() {
    let env = token_env();
    let dir = env.dir().join("img");
    let image = oci_layout(&dir, &unique_bytes(20_000));
    seed_remote(&env, "project-a/app:v1", &dir);
    let builder = env.token("builder", "project-b");
    let push = env.skopeo_copy(
        &format!("oci:{}", dir.display()),
        &remote(&env, "project-b/app:v1"),
        Some(&builder),
    );
    env.expect_success(&push, "skopeo push by project-b/builder");

    let pull = env.skopeo_copy(&remote(&env, "project-a/app:v1"), &env.oci_ref("a1"), None);
    expect_failure(&pull, "anonymous pull before any grant");
    env.policy(
        "add-role-to-group",
        "system:image-puller",
        "system:unauthenticated",
        "project-a",
    );
    let pull = env.skopeo_copy(&remote(&env, "project-a/app:v1"), &env.oci_ref("a2"), None);
    env.expect_success(
        &pull,
        "anonymous pull where system:unauthenticated may pull",
    );
    assert_eq!(
        oci_manifest_digest(&env.dir().join("a2")),
        image.manifest_digest
    );
    let pull = env.skopeo_copy(&remote(&env, "project-b/app:v1"), &env.oci_ref("b1"), None);
    expect_failure(&pull, "anonymous pull in a namespace with no grant");
}

#[test]
fn docker_logs_in_pushes_and_pulls_against_the_token_registry() {
    let env = token_env();
    let docker = env.docker();
    let host = env.token_registry_host();
    let tag = format!("{host}/project-a/app:v1");
    docker.image(&tag);

    let login = docker.login(&host, "anything", "not-a-token");
    expect_failure(&login, "docker login with a bad token");
    let builder = env.token("builder", "project-a");
    let login = docker.login(&host, "anything", &builder);
    env.expect_success(&login, "docker login as project-a/builder");
    let push = docker.run(&["push", &tag]);
    env.expect_success(&push, "docker push by project-a/builder");

    docker.ok(&["rmi", &tag]);
    let default = env.token("default", "project-a");
    let login = docker.login(&host, "anything", &default);
    env.expect_success(&login, "docker login as project-a/default");
    let pull = docker.pull(&tag);
    env.expect_success(&pull, "docker pull by project-a/default");
    assert!(docker.has_image(&tag));

    let other = format!("{host}/project-a/app:v2");
    docker.ok(&["tag", &tag, &other]);
    docker.track(&other);
    let push = docker.run(&["push", &other]);
    expect_failure(&push, "docker push by project-a/default");
}

#[test]
fn rotation_keeps_old_tokens_valid_until_the_next_rotation() {
    let mut env = token_env();
    seed_remote(&env, "project-a/app:v1", &{
        let dir = env.dir().join("img");
        oci_layout(&dir, &unique_bytes(10_000));
        dir
    });
    let default = env.token("default", "project-a");
    let scope = ["repository:project-a/app:pull"];
    let first = fetch_token(&env, Some(&default), &scope);

    let kid = |jwt: &str| header(jwt)["kid"].as_str().unwrap_or_default().to_string();
    env.regate_ok(&["keys", "rotate"]);
    // the running regate picks the new key up by itself
    let second = wait_for(
        Duration::from_secs(5),
        "regate signs with the new key",
        || {
            let jwt = fetch_token(&env, Some(&default), &scope);
            (kid(&jwt) != kid(&first)).then_some(jwt)
        },
    );
    env.restart_token_registry();
    for (jwt, what) in [
        (&first, "a token of the previous key"),
        (&second, "a token of the new key"),
    ] {
        env.expect_status(&registry_get(&env, "project-a/app", "v1", jwt), 200, what);
    }

    env.regate_ok(&["keys", "rotate"]);
    let third = wait_for(
        Duration::from_secs(5),
        "regate signs with the third key",
        || {
            let jwt = fetch_token(&env, Some(&default), &scope);
            (kid(&jwt) != kid(&second)).then_some(jwt)
        },
    );
    env.restart_token_registry();
    env.expect_status(
        &registry_get(&env, "project-a/app", "v1", &first),
        401,
        "a token of a retired key",
    );
    for (jwt, what) in [
        (&second, "a token of the previous key"),
        (&third, "a token of the new key"),
    ] {
        env.expect_status(&registry_get(&env, "project-a/app", "v1", jwt), 200, what);
    }

    // Without a gap: stage, restart the registry, then rotate; no restart after the rotation.
    env.regate_ok(&["keys", "rotate", "--stage"]);
    env.restart_token_registry();
    let still = fetch_token(&env, Some(&default), &scope);
    assert_eq!(
        kid(&still),
        kid(&third),
        "staging does not change the signing key"
    );
    env.regate_ok(&["keys", "rotate"]);
    let fourth = wait_for(
        Duration::from_secs(5),
        "regate signs with the staged key",
        || {
            let jwt = fetch_token(&env, Some(&default), &scope);
            (kid(&jwt) != kid(&third)).then_some(jwt)
        },
    );
    for (jwt, what) in [
        (&third, "a token of the key signing before the rotation"),
        (
            &fourth,
            "a token of the staged key, with no registry restart",
        ),
    ] {
        env.expect_status(&registry_get(&env, "project-a/app", "v1", jwt), 200, what);
    }
}

#[test]
fn an_rs256_key_signs_tokens_the_registry_accepts() {
    let mut env = token_env();
    seed_remote(&env, "project-a/app:v1", &{
        let dir = env.dir().join("img");
        oci_layout(&dir, &unique_bytes(10_000));
        dir
    });
    env.regate_ok(&["keys", "rotate", "--algorithm", "rs256"]);
    env.restart_token_registry();
    let default = env.token("default", "project-a");
    let jwt = wait_for(Duration::from_secs(5), "regate signs with RS256", || {
        let jwt = fetch_token(&env, Some(&default), &["repository:project-a/app:pull"]);
        (header(&jwt)["alg"] == "RS256").then_some(jwt)
    });
    env.expect_status(
        &registry_get(&env, "project-a/app", "v1", &jwt),
        200,
        "an RS256 token",
    );
}

#[test]
fn keys_show_prints_the_block_keys_init_printed() {
    let env = Env::builder().without_regate().run();
    let dir = env.dir().join("keys");
    let args = [
        "--dir",
        dir.to_str().expect("utf-8 path"),
        "--realm",
        "https://regate.example.com/token",
        "--service",
        "registry.example.com",
    ];
    let printed = env.regate_ok(&[&["keys", "init"][..], &args].concat());
    let shown = env.regate_ok(&[&["keys", "show"][..], &args].concat());
    assert_eq!(printed, shown);
    let parsed: serde_yaml::Value = serde_yaml::from_str(&printed).expect("YAML");
    let bundle = parsed["auth"]["token"]["rootcertbundle"]
        .as_str()
        .unwrap_or_default();
    assert!(
        bundle.ends_with("keys/bundle.pem") && Path::new(bundle).is_absolute(),
        "{printed}"
    );
    let again = env.regate(&[&["keys", "init"][..], &args].concat());
    expect_failure(&again, "a second `keys init` on the same directory");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("regate keys rotate"),
        "{}",
        show_output(&again)
    );
}

/// The token-server realm takes no expired credential: not the API token, and not a gateway
/// registry token that carries a push window made from it (the registry would honour what the
/// realm signs without asking regate again).
#[test]
fn the_token_server_realm_takes_no_expired_credential() {
    let env = token_env();
    let api = env.token_for("builder", "project-a", "2s");
    let scope = "repository:project-a/app:pull,push";
    let windowed = Reply::from_request(
        env.client()
            .get(format!("{}/openshift/token?scope={scope}", env.url()))
            .basic_auth("anything", Some(&api)),
    );
    env.expect_status(&windowed, 200, "a gateway token asked for push");
    let windowed = windowed.json()["token"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_secs(3));
    for (what, credential) in [
        ("the expired API token", &api),
        ("its windowed token", &windowed),
    ] {
        for realm in ["/token", "/openshift/token"] {
            let url = add_query(
                &format!("{}{realm}?service={SERVICE}", env.url()),
                "scope",
                scope,
            );
            let reply = Reply::from_request(
                env.client()
                    .get(url)
                    .basic_auth("anything", Some(credential)),
            );
            env.expect_error(&reply, 401, "UNAUTHORIZED", &format!("{what} at {realm}"));
        }
    }
}
