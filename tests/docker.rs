//! The Docker engine through regate: push by a builder, pull by the project's default
//! service account, and a pull refused to another project's service account.

mod common;

use common::*;

#[test]
fn builder_pushes_and_default_pulls_with_the_docker_engine() {
    let env = Env::with_projects();
    let docker = env.docker();
    let tag = format!("{}/project-a/app:v1", env.host());
    docker.image(&tag);

    let builder = env.token("builder", "project-a");
    let login = docker.login(&env.host(), "anything", &builder);
    assert!(
        login.status.success(),
        "login as builder: {}",
        show_output(&login)
    );
    let push = docker.run(&["push", &tag]);
    assert!(
        push.status.success(),
        "docker push by project-a/builder: {}\nregate stderr tail:\n{}",
        show_output(&push),
        env.regate_log_tail(30)
    );
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
    assert!(
        login.status.success(),
        "login as default: {}",
        show_output(&login)
    );
    let pull = docker.pull(&tag);
    assert!(
        pull.status.success(),
        "docker pull by project-a/default: {}\nregate stderr tail:\n{}",
        show_output(&pull),
        env.regate_log_tail(30)
    );
    assert!(docker.has_image(&tag), "the engine has the pulled image");

    // the default service account may pull but not push
    let other = format!("{}/project-a/app:v2", env.host());
    docker.ok(&["tag", &tag, &other]);
    docker.track(&other);
    let push = docker.run(&["push", &other]);
    assert!(
        !push.status.success(),
        "docker push by project-a/default must fail: {}",
        show_output(&push)
    );
    assert!(
        String::from_utf8_lossy(&push.stderr)
            .to_lowercase()
            .contains("denied"),
        "docker says the push was denied: {}",
        show_output(&push)
    );
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
    assert!(
        !pull.status.success(),
        "anonymous docker pull must fail: {}",
        show_output(&pull)
    );
    let stderr = String::from_utf8_lossy(&pull.stderr).to_lowercase();
    assert!(
        stderr.contains("unauthorized") || stderr.contains("docker login"),
        "docker asks for a login: {}",
        show_output(&pull)
    );

    let stranger = env.token("default", "project-b");
    let login = docker.login(&env.host(), "anything", &stranger);
    assert!(
        login.status.success(),
        "project-b/default may log in: {}",
        show_output(&login)
    );
    let pull = docker.pull(&tag);
    assert!(
        !pull.status.success(),
        "docker pull of project-a/app by project-b/default must fail: {}",
        show_output(&pull)
    );
    assert!(
        String::from_utf8_lossy(&pull.stderr)
            .to_lowercase()
            .contains("denied"),
        "docker reports a denial: {}",
        show_output(&pull)
    );
    assert!(!docker.has_image(&tag), "nothing was pulled");

    // the owner's default service account pulls the same reference
    let own = env.token("default", "project-a");
    let login = docker.login(&env.host(), "anything", &own);
    assert!(login.status.success(), "{}", show_output(&login));
    let pull = docker.pull(&tag);
    assert!(
        pull.status.success(),
        "docker pull by project-a/default: {}\nregate stderr tail:\n{}",
        show_output(&pull),
        env.regate_log_tail(30)
    );
}
