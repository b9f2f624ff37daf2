//! A registry or refresh token is never worth more than the API token it came from
//! (docs/behaviour.md §10): group changes, deleted service accounts and namespaces, and the API
//! token's own expiry reach the tokens issued from it.

mod common;

use base64::Engine as _;
use common::*;

/// The JSON string `key` of a 200 token reply.
fn field(env: &Env, reply: &Reply, key: &str) -> String {
    env.expect_status(reply, 200, &format!("token reply with {key}"));
    reply.json()[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key}: {reply}"))
        .to_string()
}

/// A registry token (GET) and a refresh token (POST, `access_type=offline`) from `api_token`.
fn tokens(env: &Env, api_token: &str, repo: &str) -> (String, Option<String>) {
    let scope = format!("repository:{repo}:pull,push");
    let reply = env.send(
        "GET",
        &format!("/openshift/token?service=regate&scope={scope}"),
        Auth::Basic(api_token),
    );
    let registry = field(env, &reply, "token");
    let reply = env.post_token_form(&[
        ("grant_type", "password"),
        ("username", "anything"),
        ("password", api_token),
        ("scope", &scope),
        ("access_type", "offline"),
    ]);
    env.expect_status(&reply, 200, "password grant");
    let refresh = reply.json()["refresh_token"].as_str().map(str::to_string);
    (registry, refresh)
}

fn refresh(env: &Env, refresh_token: &str, repo: &str) -> Reply {
    env.post_token_form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("scope", &format!("repository:{repo}:pull")),
    ])
}

/// The `exp - iat` of a JWT, read without checking it.
fn lifetime(jwt: &str) -> u64 {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    let claims: serde_json::Value = serde_json::from_slice(&json).expect("JSON claims");
    claims["exp"].as_u64().expect("exp") - claims["iat"].as_u64().expect("iat")
}

/// carol pulls project-b through her group; once she leaves the group, her old registry token
/// and every token her refresh token mints are refused too, as her API token is.
#[test]
fn leaving_a_group_reaches_registry_and_refresh_tokens() {
    let env = Env::with_projects();
    env.seed("project-b/app", "v1", &Image::unique(512));
    env.regate_ok(&["create", "user", "carol", "--group", "team-b-readers"]);
    env.change(&[
        "policy",
        "add-role-to-group",
        "system:image-puller",
        "team-b-readers",
        "-n",
        "project-b",
    ]);
    let api = env.user_token("carol");
    let (registry, refresh_token) = tokens(&env, &api, "project-b/app");
    for (what, auth) in [
        ("API token", Auth::Basic(&api)),
        ("registry token", Auth::Bearer(&registry)),
    ] {
        let reply = env.get_manifest("project-b/app", "v1", auth);
        env.expect_status(&reply, 200, &format!("carol pulls with her {what}"));
    }

    let manifest = env.dir().join("carol.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: user.openshift.io/v1\nkind: User\nmetadata:\n  name: carol\ngroups: []\n",
    )
    .expect("manifest");
    env.change(&["apply", "-f", manifest.to_str().expect("path")]);

    for (what, auth) in [
        ("API token", Auth::Basic(&api)),
        ("registry token", Auth::Bearer(&registry)),
    ] {
        let reply = env.get_manifest("project-b/app", "v1", auth);
        env.expect_error(
            &reply,
            403,
            "DENIED",
            &format!("carol's {what} after leaving the group"),
        );
    }
    if let Some(refresh_token) = refresh_token {
        let reply = refresh(&env, &refresh_token, "project-b/app");
        let minted = field(&env, &reply, "access_token");
        let pull = env.get_manifest("project-b/app", "v1", Auth::Bearer(&minted));
        env.expect_error(
            &pull,
            403,
            "DENIED",
            "a token minted after carol left the group",
        );
    }
}

/// Deleting a service account, or its namespace (even recreated at once), stops its registry
/// and refresh tokens as it stops its API token: no push starts, no token is minted.
#[test]
fn deleting_a_service_account_or_namespace_stops_its_tokens() {
    let env = Env::with_projects();
    for delete in [
        &["delete", "sa", "builder", "-n", "project-b"][..],
        &["delete", "namespace", "project-a"][..],
    ] {
        let ns = delete[delete.len() - 1];
        let api = env.token("builder", ns);
        let repo = format!("{ns}/app");
        let (registry, refresh_token) = tokens(&env, &api, &repo);
        let before = env.start_upload(&repo, Auth::Bearer(&registry));
        env.expect_upload_started(&before, "a push starts with the registry token");

        env.change(delete);
        if ns == "project-a" {
            // Recreated at once: a namespace of the same name is not the same namespace.
            env.change(&["create", "namespace", "project-a"]);
        }
        let push = env.start_upload(&repo, Auth::Bearer(&registry));
        env.expect_invalid_token(
            &push,
            &format!("the registry token after `{}`", delete.join(" ")),
        );
        if let Some(refresh_token) = refresh_token {
            let reply = refresh(&env, &refresh_token, &repo);
            env.expect_error(
                &reply,
                401,
                "UNAUTHORIZED",
                "minting from a dead refresh token",
            );
        }
    }
}

/// A refresh token ends when its API token does, and so do the tokens of both realms.
#[test]
fn no_token_outlives_its_api_token() {
    let env = Env::with_projects();
    let api = env.token_for("builder", "project-a", "600s");
    let reply = env.post_token_form(&[
        ("grant_type", "password"),
        ("password", &api),
        ("scope", "repository:project-a/app:pull"),
        ("access_type", "offline"),
    ]);
    let access = field(&env, &reply, "access_token");
    assert!(
        lifetime(&access) <= 600,
        "the access token ends with its API token"
    );
    assert!(
        reply.json()["expires_in"]
            .as_u64()
            .is_some_and(|s| s <= 600),
        "{reply}"
    );
    if let Some(refresh_token) = reply.json()["refresh_token"].as_str() {
        assert!(
            lifetime(refresh_token) <= 600,
            "a refresh token from a 600 s API token lives {} s",
            lifetime(refresh_token)
        );
    }
}
