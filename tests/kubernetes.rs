//! The gateway in kubernetes mode against `regate authority serve`: how many reviews its caches
//! make, and how it fails closed when the API cannot answer. These tests pick their authority
//! themselves, whatever `REGATE_TEST_AUTHORITY` says.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;

/// Long allows and a short deny lifetime, so each cache rule shows in a few seconds.
const CACHE_CONFIG: &str = "cache:\n  allow_ttl: 5m\n  deny_ttl: 1s\n";

fn counted(env: &Env, kind: &str) -> u64 {
    env.reviews()[kind]
        .as_u64()
        .unwrap_or_else(|| panic!("no count of {kind}: {}", env.reviews()))
}

fn kubernetes_env() -> Env {
    let env = Env::builder()
        .authority(AuthorityMode::Kubernetes)
        .gateway_config(CACHE_CONFIG)
        .namespaces(PROJECTS)
        .run();
    env.seed("project-a/app", "v1", &Image::unique(1024));
    env
}

#[test]
fn two_hundred_concurrent_first_requests_make_one_review_of_each_kind() {
    let env = kubernetes_env();
    let token = env.token("default", "project-a");
    let (reviews, accesses) = (
        counted(&env, "tokenreviews"),
        counted(&env, "subjectaccessreviews"),
    );
    thread::scope(|scope| {
        let handles: Vec<_> = (0..200)
            .map(|_| scope.spawn(|| env.get_manifest("project-a/app", "v1", Auth::Basic(&token))))
            .collect();
        for handle in handles {
            let reply = handle.join().expect("request thread");
            env.expect_status(&reply, 200, "a concurrent first pull");
        }
    });
    assert_eq!(
        counted(&env, "tokenreviews") - reviews,
        1,
        "one TokenReview for 200 requests"
    );
    assert_eq!(
        counted(&env, "subjectaccessreviews") - accesses,
        1,
        "one SubjectAccessReview for 200 requests"
    );

    // Within the allow TTL a repeat asks nothing.
    let reply = env.get_manifest("project-a/app", "v1", Auth::Basic(&token));
    env.expect_status(&reply, 200, "a repeat");
    assert_eq!(counted(&env, "tokenreviews") - reviews, 1);
    assert_eq!(counted(&env, "subjectaccessreviews") - accesses, 1);
}

#[test]
fn two_tokens_of_one_service_account_share_decisions() {
    let env = kubernetes_env();
    let first = env.token("default", "project-a");
    let second = env.token("default", "project-a");
    assert_ne!(first, second);
    let accesses = counted(&env, "subjectaccessreviews");
    for token in [&first, &second] {
        let reply = env.get_manifest("project-a/app", "v1", Auth::Basic(token));
        env.expect_status(&reply, 200, "a pull by project-a/default");
    }
    assert_eq!(
        counted(&env, "subjectaccessreviews") - accesses,
        1,
        "the second token's pull reused the first one's decision"
    );
}

#[test]
fn a_deny_is_asked_again_after_the_deny_ttl() {
    let env = kubernetes_env();
    let outsider = env.token("default", "project-b");
    let accesses = counted(&env, "subjectaccessreviews");
    let pull = || env.get_manifest("project-a/app", "v1", Auth::Basic(&outsider));
    env.expect_error(
        &pull(),
        403,
        "DENIED",
        "project-b/default pulling project-a/app",
    );
    env.expect_error(&pull(), 403, "DENIED", "again, within the deny TTL");
    assert_eq!(
        counted(&env, "subjectaccessreviews") - accesses,
        1,
        "the deny was cached"
    );
    thread::sleep(Duration::from_millis(1300));
    env.expect_error(&pull(), 403, "DENIED", "after the deny TTL");
    assert_eq!(
        counted(&env, "subjectaccessreviews") - accesses,
        2,
        "asked again after 1 s"
    );
}

#[test]
fn an_authority_stopped_mid_run_fails_closed_then_service_resumes_by_itself() {
    let mut env = kubernetes_env();
    let token = env.token("builder", "project-a");
    let reply = env.get_manifest("project-a/app", "v1", Auth::Basic(&token));
    env.expect_status(&reply, 200, "a pull while the authority runs");

    let addr = env.stop_authority();
    let before = env.registry_requests().len();
    // A decision not cached yet (push), and an identity not cached yet (a new token).
    let reply = env.start_upload("project-a/app", Auth::Basic(&token));
    expect_unavailable(&env, &reply, "a push while the authority is down");
    let fresh = env.token("deployer", "project-a");
    let reply = env.get_manifest("project-a/app", "v1", Auth::Basic(&fresh));
    expect_unavailable(&env, &reply, "a new token while the authority is down");
    assert_eq!(
        env.registry_requests().len(),
        before,
        "nothing was forwarded while the authority was down: {:?}",
        &env.registry_requests()[before..]
    );

    env.start_authority(Some(addr));
    let started = Instant::now();
    let reply = wait_for(Duration::from_secs(20), "service to resume", || {
        let reply = env.start_upload("project-a/app", Auth::Basic(&token));
        (reply.status == 202).then_some(reply)
    });
    env.expect_upload_started(&reply, "a push after the authority came back");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn an_api_that_answers_500_or_hangs_gets_503_and_nothing_is_forwarded() {
    for (what, hang) in [("answers 500", false), ("hangs", true)] {
        let api = Recorder::start(move |_, _| {
            if hang {
                thread::sleep(Duration::from_secs(5));
            }
            let status = Status {
                status: Some("Failure".into()),
                code: Some(500),
                reason: Some("InternalError".into()),
                ..Status::default()
            };
            let body = serde_json::to_vec(&status).expect("encode Status");
            http_response(
                500,
                &[
                    ("Content-Type", "application/json"),
                    ("Connection", "close"),
                ],
                &body,
            )
        });
        let kubeconfig = tempfile::NamedTempFile::new().expect("kubeconfig file");
        std::fs::write(
            kubeconfig.path(),
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
                 contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
                 users:\n- name: fake\n  user:\n    token: not-a-secret\n",
                api.url()
            ),
        )
        .expect("write kubeconfig");
        let env = Env::builder()
            .authority(AuthorityMode::Embedded)
            .gateway_config("authority:\n  timeout: 300ms\n  retries: 1\n")
            .serve_arg("--authority")
            .serve_arg("kubernetes")
            .serve_arg("--kubeconfig")
            .serve_arg(&kubeconfig.path().display().to_string())
            .run();
        env.seed("project-a/app", "v1", &Image::unique(1024));
        let before = env.registry_requests().len();
        let started = Instant::now();
        let reply = env.get_manifest("project-a/app", "v1", Auth::Basic("some-cluster-token"));
        expect_unavailable(&env, &reply, &format!("an API that {what}"));
        assert!(
            started.elapsed() < Duration::from_secs(12),
            "refused within the review deadline, took {:?}",
            started.elapsed()
        );
        assert!(!api.requests().is_empty(), "the API was asked");
        assert_eq!(
            env.registry_requests().len(),
            before,
            "nothing was forwarded"
        );
    }
}

/// 503 UNAVAILABLE with Retry-After.
fn expect_unavailable(env: &Env, reply: &Reply, what: &str) {
    env.expect_error(reply, 503, "UNAVAILABLE", what);
    assert!(
        reply.header("Retry-After").is_some(),
        "{what}: Retry-After: {reply}"
    );
}
