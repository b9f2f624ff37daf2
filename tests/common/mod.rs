//! Whole-process test fixture: a real `docker-registry` and a real `regate serve` in a temp
//! dir, the `regate` CLI against the same state, and the clients the tests drive them with
//! (reqwest, raw HTTP over a `TcpStream`, skopeo, the Docker engine), and nginx in front.
//!
//! Each test builds its own [`Env`], so tests run in parallel without sharing a port, a state
//! dir, a credential file or an image tag. Every process is killed when the `Env` drops (also
//! on panic, when the tails of regate's and the registry's logs are printed), and with
//! `PR_SET_PDEATHSIG` if the test binary itself dies.

// Each test file uses a part of the fixture.
#![allow(dead_code)]

use std::time::Duration;

mod balancer;
mod browser;
mod containerd;
mod docker;
mod env;
mod http;
mod issuer;
mod nginx;
mod oci;
mod process;
mod recorder;
mod tls;

// Each test file uses some of these; the rest are unused there.
#[allow(unused_imports)]
pub use balancer::*;
#[allow(unused_imports)]
pub use browser::*;
#[allow(unused_imports)]
pub use containerd::*;
#[allow(unused_imports)]
pub use docker::*;
#[allow(unused_imports)]
pub use env::*;
#[allow(unused_imports)]
pub use http::*;
#[allow(unused_imports)]
pub use issuer::*;
#[allow(unused_imports)]
pub use nginx::*;
#[allow(unused_imports)]
pub use oci::*;
#[allow(unused_imports)]
pub use process::*;
#[allow(unused_imports)]
pub use recorder::*;
#[allow(unused_imports)]
pub use tls::*;

/// The binary under test, built once by cargo for every test file.
pub const REGATE: &str = env!("CARGO_BIN_EXE_regate");
/// How long a process may take to come up.
pub const STARTUP: Duration = Duration::from_secs(30);
/// How long a CLI change may take to be in force (docs/behaviour.md promises 1 s).
pub const POLICY_DELAY: Duration = Duration::from_millis(1200);
/// Timeout of one HTTP exchange made by a test.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(120);
/// The two namespaces of the README walkthrough.
pub const PROJECTS: &[&str] = &["project-a", "project-b"];

/// Which authority the gateway under test asks. `REGATE_TEST_AUTHORITY` picks it for the
/// whole suite: `embedded` (the default: regate's own state directory), `kubernetes` (TokenReview
/// and SubjectAccessReview against `regate authority serve`) or `kubernetes-self`
/// (SelfSubjectReview and SelfSubjectAccessReview made with the caller's token).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthorityMode {
    Embedded,
    Kubernetes,
    KubernetesSelf,
}

impl AuthorityMode {
    /// The mode `REGATE_TEST_AUTHORITY` names.
    pub fn from_env() -> AuthorityMode {
        match std::env::var("REGATE_TEST_AUTHORITY").as_deref() {
            Err(_) | Ok("") | Ok("embedded") => AuthorityMode::Embedded,
            Ok("kubernetes") => AuthorityMode::Kubernetes,
            Ok("kubernetes-self") => AuthorityMode::KubernetesSelf,
            Ok(other) => panic!(
                "REGATE_TEST_AUTHORITY={other:?}: use embedded, kubernetes or kubernetes-self"
            ),
        }
    }

    /// Whether the gateway asks a Kubernetes API (`regate authority serve`).
    pub fn is_kubernetes(self) -> bool {
        self != AuthorityMode::Embedded
    }
}

/// The gateway's config in kubernetes modes: short cache lifetimes, so a CLI change on the
/// authority's state is in force within [`POLICY_DELAY`] as in embedded mode (with the default
/// lifetimes a revocation takes up to 5 minutes, as with the Kubernetes webhook authorizer).
/// The `service` (the registry's `auth.token.service`) of token-server mode in tests.
pub const TOKEN_SERVICE: &str = "test-registry";
/// The `issuer` of token-server mode in tests (not the defaults, so a block or a token that
/// ignored the config would fail).
pub const TOKEN_ISSUER: &str = "regate-test";

pub const KUBERNETES_TEST_CONFIG: &str =
    "cache:\n  allow_ttl: 300ms\n  deny_ttl: 300ms\nauthority:\n  token_cache_ttl: 300ms\n";
