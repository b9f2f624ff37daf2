//! The token endpoint `/openshift/token` (docs/behaviour.md §4) and the registry tokens it issues.

mod common;

use common::*;

const SCOPE: &str = "repository:project-a/app:pull";

/// The reply is 200 JSON with a non-empty `key` string; returns it.
fn string_field(env: &Env, reply: &Reply, key: &str) -> String {
    env.expect_status(reply, 200, &format!("token reply with {key}"));
    match reply.json()[key].as_str() {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => panic!("token reply has no non-empty string `{key}`: {reply}"),
    }
}

/// The registry token `GET /openshift/token?service=regate&scope=SCOPE` issues to `api_token`.
fn registry_token(env: &Env, api_token: &str, scope: &str) -> String {
    let reply = env.send(
        "GET",
        &format!("/openshift/token?service=regate&scope={scope}"),
        Auth::Basic(api_token),
    );
    string_field(env, &reply, "token")
}

#[test]
fn get_with_basic_gives_a_registry_token() {
    let env = Env::with_projects();
    let default = env.token("default", "project-a");
    let reply = env.send(
        "GET",
        &format!("/openshift/token?service=regate&scope={SCOPE}&account=whoever&client_id=test"),
        Auth::Basic(&default),
    );
    let token = string_field(&env, &reply, "token");
    let access = string_field(&env, &reply, "access_token");
    assert_eq!(
        token, access,
        "token and access_token are the same: {reply}"
    );
    let json = reply.json();
    assert!(
        json["expires_in"].as_u64().is_some_and(|s| s > 0),
        "expires_in is a positive number of seconds: {reply}"
    );
    let issued = string_field(&env, &reply, "issued_at");
    assert!(
        issued.len() >= 20 && issued.as_bytes()[4] == b'-' && issued.contains('T'),
        "issued_at is an RFC 3339 time: {issued}"
    );
    assert!(
        json.get("refresh_token").is_none(),
        "no refresh_token unless asked: {reply}"
    );
    assert!(
        reply
            .header("Content-Type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{reply}"
    );
    if reviews_as_caller(&env) {
        assert_eq!(
            token, default,
            "reviewing as the caller, the token endpoint hands the caller's own token back"
        );
    } else {
        assert_ne!(token, default, "a registry token, not the API token echoed");
    }
}

/// In `review: self` mode every request must carry a token the cluster knows: the token
/// endpoint hands the caller's API token back (as OpenShift's registry does) and issues no
/// refresh tokens, so docker keeps the password instead.
fn reviews_as_caller(env: &Env) -> bool {
    env.mode() == AuthorityMode::KubernetesSelf
}

#[test]
fn repeated_and_space_separated_scopes_are_accepted() {
    let env = Env::with_projects();
    let default = env.token("default", "project-a");
    for query in [
        "scope=repository:project-a/app:pull&scope=repository:project-b/app:pull",
        "scope=repository:project-a/app:pull%20repository:project-a/other:pull,push",
        "",
    ] {
        let reply = env.send(
            "GET",
            &format!("/openshift/token?service=regate&{query}"),
            Auth::Basic(&default),
        );
        string_field(&env, &reply, "token");
    }
}

#[test]
fn anonymous_get_gets_a_token() {
    let env = Env::with_projects();
    let reply = env.send(
        "GET",
        &format!("/openshift/token?scope={SCOPE}"),
        Auth::None,
    );
    string_field(&env, &reply, "token");
}

#[test]
fn offline_token_adds_a_refresh_token() {
    let env = Env::with_projects();
    let default = env.token("default", "project-a");
    let reply = env.send(
        "GET",
        &format!("/openshift/token?service=regate&scope={SCOPE}&offline_token=true"),
        Auth::Basic(&default),
    );
    string_field(&env, &reply, "token");
    if reviews_as_caller(&env) {
        assert!(reply.json().get("refresh_token").is_none(), "{reply}");
    } else {
        string_field(&env, &reply, "refresh_token");
    }
}

#[test]
fn oauth2_post_password_and_refresh_token_grants() {
    let env = Env::with_projects();
    let builder = env.token("builder", "project-a");
    let reply = env.post_token_form(&[
        ("grant_type", "password"),
        ("username", "anything"),
        ("password", &builder),
        ("service", "regate"),
        ("scope", "repository:project-a/app:pull,push"),
        ("client_id", "containerd"),
        ("access_type", "offline"),
    ]);
    let access = string_field(&env, &reply, "access_token");
    assert!(
        reply.json()["expires_in"].as_u64().is_some_and(|s| s > 0),
        "{reply}"
    );
    string_field(&env, &reply, "issued_at");
    assert!(
        reply.json().get("scope").is_some(),
        "the POST answer carries scope: {reply}"
    );
    let ok = env.send("GET", "/v2/", Auth::Bearer(&access));
    env.expect_status(&ok, 200, "GET /v2/ with the password grant's access_token");
    if reviews_as_caller(&env) {
        assert!(reply.json().get("refresh_token").is_none(), "{reply}");
        return;
    }
    let refresh = string_field(&env, &reply, "refresh_token");

    let reply = env.post_token_form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &refresh),
        ("service", "regate"),
        ("scope", "repository:project-a/app:pull,push"),
        ("client_id", "containerd"),
    ]);
    let renewed = string_field(&env, &reply, "access_token");
    if let Err(reply) = env.push(
        Auth::Bearer(&renewed),
        "project-a/app",
        "v1",
        &Image::unique(1024),
    ) {
        panic!("push by project-a/builder with the refreshed access token: {reply}");
    }

    let reply = env.post_token_form(&[
        ("grant_type", "password"),
        ("username", "anything"),
        ("password", "not-a-token"),
    ]);
    env.expect_error(
        &reply,
        401,
        "UNAUTHORIZED",
        "POST password grant with a bad token",
    );
    let reply = env.post_token_form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", "not-a-token"),
    ]);
    env.expect_error(
        &reply,
        401,
        "UNAUTHORIZED",
        "POST refresh grant with a bad token",
    );
}

#[test]
fn registry_token_works_as_bearer_and_every_request_is_still_authorized() {
    let env = Env::with_projects();
    let image = Image::unique(2048);
    let builder = env.token("builder", "project-a");
    let builder_rt = registry_token(&env, &builder, "repository:project-a/app:pull,push");
    env.expect_status(
        &env.send("GET", "/v2/", Auth::Bearer(&builder_rt)),
        200,
        "GET /v2/ with a registry token",
    );
    if let Err(reply) = env.push(Auth::Bearer(&builder_rt), "project-a/app", "v1", &image) {
        panic!(
            "push with the builder's registry token: {reply}\n{}",
            env.regate_log_tail(20)
        );
    }

    let default = env.token("default", "project-a");
    let default_rt = registry_token(&env, &default, "repository:project-a/app:pull,push");
    let reply = env.get_manifest("project-a/app", "v1", Auth::Bearer(&default_rt));
    env.expect_status(&reply, 200, "pull with the default SA's registry token");
    assert_eq!(reply.body, image.manifest);
    // the token's scope asked for push, but the identity may not push
    let reply = env.start_upload("project-a/app", Auth::Bearer(&default_rt));
    env.expect_error(
        &reply,
        403,
        "DENIED",
        "push with the default SA's registry token",
    );
    // nor read another project
    env.seed("project-b/app", "v1", &image);
    let reply = env.get_manifest("project-b/app", "v1", Auth::Bearer(&default_rt));
    env.expect_error(
        &reply,
        403,
        "DENIED",
        "project-b pull with project-a's registry token",
    );
}

#[test]
fn invalid_token_is_401_json() {
    let env = Env::with_projects();
    let reply = env.send(
        "GET",
        "/openshift/token?service=regate",
        Auth::Basic("not-a-token"),
    );
    env.expect_error(
        &reply,
        401,
        "UNAUTHORIZED",
        "token endpoint with an invalid API token",
    );
    let reply = env.send("GET", "/v2/", Auth::Bearer("not-a-token"));
    env.expect_invalid_token(&reply, "GET /v2/ with an invalid Bearer token");
}

#[test]
fn scope_naming_an_invalid_repository_is_400() {
    let env = Env::with_projects();
    let default = env.token("default", "project-a");
    for scope in [
        "repository:Project-A/App:pull",
        "repository:onecomponent:pull",
        "repository:project-a//app:pull",
        "repository:project-a/../project-b/app:pull",
    ] {
        let reply = env.send(
            "GET",
            &format!(
                "/openshift/token?service=regate&scope={}",
                percent_encoding::utf8_percent_encode(scope, percent_encoding::NON_ALPHANUMERIC)
            ),
            Auth::Basic(&default),
        );
        env.expect_error(
            &reply,
            400,
            "NAME_INVALID",
            &format!("token request for {scope}"),
        );
    }
}
