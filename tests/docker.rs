//! The Docker engine through regate: push by a builder, pull by the project's default
//! service account, and a pull refused to another project's service account.

mod common;

use std::process::Output;

use common::*;

#[test]
fn builder_pushes_and_default_pulls_with_the_docker_engine() {
    let env = Env::with_projects();
    let docker = env.docker();
    let tag = format!("{}/project-a/app:v1", env.host());
    docker.image(&tag);

    let builder = env.token("builder", "project-a");
    let login = docker.login(&env.host(), "anything", &builder);
    env.expect_success(&login, "login as builder");
    let push = docker.run(&["push", &tag]);
    env.expect_success(&push, "docker push by project-a/builder");
    assert!(
        env.registry_requests()
            .iter()
            .any(|r| r.starts_with("PUT /v2/project-a/app/manifests/v1")),
        "the manifest reached the registry: {:?}",
        env.registry_requests()
    );

    docker.ok(&["rmi", &tag]);
    assert!(
        !docker.has_image(&tag),
        "local image removed before the pull"
    );
    let default = env.token("default", "project-a");
    let login = docker.login(&env.host(), "anything", &default);
    env.expect_success(&login, "login as default");
    let pull = docker.pull(&tag);
    env.expect_success(&pull, "docker pull by project-a/default");
    assert!(docker.has_image(&tag), "the engine has the pulled image");

    // the default service account may pull but not push
    let other = format!("{}/project-a/app:v2", env.host());
    docker.ok(&["tag", &tag, &other]);
    docker.track(&other);
    let push = docker.run(&["push", &other]);
    expect_denied(&push, "docker push by project-a/default");
}

#[test]
fn docker_pull_is_refused_to_a_service_account_of_another_project() {
    let env = Env::with_projects();
    let image = Image::runnable();
    env.seed("project-a/app", "v1", &image);
    let docker = env.docker();
    let tag = format!("{}/project-a/app:v1", env.host());

    // not logged in: the engine follows the challenge, gets an anonymous token, and is refused
    let pull = docker.pull(&tag);
    expect_failure(&pull, "anonymous docker pull");
    let stderr = String::from_utf8_lossy(&pull.stderr).to_lowercase();
    assert!(
        stderr.contains("unauthorized") || stderr.contains("docker login"),
        "docker asks for a login: {}",
        show_output(&pull)
    );

    let stranger = env.token("default", "project-b");
    let login = docker.login(&env.host(), "anything", &stranger);
    env.expect_success(&login, "project-b/default may log in");
    let pull = docker.pull(&tag);
    expect_denied(&pull, "docker pull of project-a/app by project-b/default");
    assert!(!docker.has_image(&tag), "nothing was pulled");

    // the owner's default service account pulls the same reference
    let own = env.token("default", "project-a");
    let login = docker.login(&env.host(), "anything", &own);
    env.expect_success(&login, "login as project-a/default");
    let pull = docker.pull(&tag);
    env.expect_success(&pull, "docker pull by project-a/default");
}

/// Panic with docker's output unless the command failed and docker reports a denial.
fn expect_denied(out: &Output, what: &str) {
    expect_failure(out, what);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .to_lowercase()
            .contains("denied"),
        "{what}: docker reports a denial: {}",
        show_output(out)
    );
}
