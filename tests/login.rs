//! `docker login` with API tokens (docs/behaviour.md §3, §4) and the challenge a client without
//! credentials gets (docs/behaviour.md §5).

mod common;

use common::*;

#[test]
fn docker_login_with_any_user_name_and_a_valid_token_succeeds() {
    let env = Env::with_projects();
    let docker = env.docker();
    for (user, sa) in [
        ("anything", "builder"),
        ("someone-else", "default"),
        ("x", "deployer"),
    ] {
        let token = env.token(sa, "project-a");
        let out = docker.login(&env.host(), user, &token);
        assert!(
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("Login Succeeded"),
            "docker login -u {user} with the token of project-a/{sa}: {}\nregate stderr tail:\n{}",
            show_output(&out),
            env.regate_log_tail(30)
        );
    }
}

#[test]
fn docker_login_with_a_wrong_token_fails() {
    let env = Env::with_projects();
    let docker = env.docker();
    let good = env.token("builder", "project-a");
    let mut tampered = good.clone();
    let last = tampered.pop().expect("non-empty token");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    for (what, password) in [
        ("garbage", "not-a-token"),
        ("a token with a changed signature", tampered.as_str()),
    ] {
        let out = docker.login(&env.host(), "anything", password);
        assert!(
            !out.status.success(),
            "docker login with {what} must fail: {}",
            show_output(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(
            stderr.contains("unauthorized") || stderr.contains("401") || stderr.contains("invalid"),
            "docker login with {what} must fail for lack of authorization, not something else: {}",
            show_output(&out)
        );
    }
    // the failures left nothing behind that stops the right token
    let out = docker.login(&env.host(), "anything", &good);
    assert!(
        out.status.success(),
        "the right token still logs in: {}",
        show_output(&out)
    );
}

/// A client with no credentials gets 401 and a Bearer challenge with an absolute realm and
/// every value double-quoted; the scope names the repository and the actions asked for.
#[test]
fn no_credentials_are_challenged() {
    let env = Env::with_projects();
    let realm = format!("{}/openshift/token", env.url());

    let base = env.raw_request("GET", "/v2/", &[]);
    env.expect_error(&base, 401, "UNAUTHORIZED", "GET /v2/ with no credentials");
    let (scheme, params) = challenge_of(&env, &base);
    assert!(scheme.eq_ignore_ascii_case("bearer"), "scheme {scheme}");
    assert_eq!(
        challenge_param(&params, "realm"),
        Some(realm.as_str()),
        "{base}"
    );
    assert!(
        challenge_param(&params, "service").is_some_and(|s| !s.is_empty()),
        "challenge names a service: {base}"
    );

    let pull = env.raw_request("GET", "/v2/project-a/app/manifests/latest", &[]);
    env.expect_error(&pull, 401, "UNAUTHORIZED", "anonymous GET manifest");
    let (_, params) = challenge_of(&env, &pull);
    assert_eq!(
        challenge_param(&params, "realm"),
        Some(realm.as_str()),
        "{pull}"
    );
    assert_eq!(
        challenge_param(&params, "scope"),
        Some("repository:project-a/app:pull"),
        "{pull}"
    );
    assert_eq!(
        challenge_param(&params, "error"),
        None,
        "no credentials is not an invalid token: {pull}"
    );

    let push = env.raw_request(
        "POST",
        "/v2/project-a/app/blobs/uploads/",
        &[("Content-Length", "0")],
    );
    env.expect_error(&push, 401, "UNAUTHORIZED", "anonymous upload start");
    let (_, params) = challenge_of(&env, &push);
    assert_eq!(
        challenge_param(&params, "scope"),
        Some("repository:project-a/app:pull,push"),
        "{push}"
    );

    // the same through an ordinary client (header as reqwest sees it)
    let reply = env.send("GET", "/v2/project-b/tools/sub/manifests/v1", Auth::None);
    env.expect_error(
        &reply,
        401,
        "UNAUTHORIZED",
        "anonymous GET of a nested name",
    );
    let (_, params) = challenge_of(&env, &reply);
    assert_eq!(
        challenge_param(&params, "scope"),
        Some("repository:project-b/tools/sub:pull")
    );

    // `Bearer anonymous` and an empty Bearer value are the anonymous identity, challenged alike
    for header in ["Bearer anonymous", "Bearer "] {
        let reply = env.raw_request(
            "GET",
            "/v2/project-a/app/manifests/latest",
            &[("Authorization", header)],
        );
        env.expect_error(
            &reply,
            401,
            "UNAUTHORIZED",
            &format!("GET manifest with {header:?}"),
        );
        let (_, params) = challenge_of(&env, &reply);
        assert_eq!(
            challenge_param(&params, "realm"),
            Some(realm.as_str()),
            "{reply}"
        );
    }
}

#[test]
fn challenge_realm_comes_from_the_public_url() {
    let env = Env::builder()
        .namespaces(PROJECTS)
        .public_url("http://registry.example.test:5000")
        .run();
    let reply = env.raw_request("GET", "/v2/project-a/app/tags/list", &[]);
    env.expect_error(&reply, 401, "UNAUTHORIZED", "anonymous tags/list");
    let (_, params) = challenge_of(&env, &reply);
    assert_eq!(
        challenge_param(&params, "realm"),
        Some("http://registry.example.test:5000/openshift/token"),
        "{reply}"
    );
}

fn challenge_of(env: &Env, reply: &Reply) -> (String, Vec<(String, String)>) {
    let header = reply.header("WWW-Authenticate").unwrap_or_else(|| {
        panic!(
            "401 without WWW-Authenticate: {reply}\n{}",
            env.regate_log_tail(20)
        )
    });
    parse_challenge(header).unwrap_or_else(|| {
        panic!("WWW-Authenticate is not a challenge with double-quoted values: {header}")
    })
}
