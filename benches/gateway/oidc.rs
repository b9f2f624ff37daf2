//! `oidc`: what offline OIDC verification costs over an API token. One more gateway trusts an
//! issuer on 127.0.0.1 (tests/common/issuer.rs); the same manifest GET load runs with Basic
//! `anything:API-TOKEN` (the embedded authority's token cache) and with Basic
//! `anything:ID-TOKEN` (ES256, verified once, then remembered by its SHA-256 until it
//! expires), in interleaved rounds, reading regate's CPU from `/proc` around the measured part.

use super::Bench;
use super::common::{Env, Issuer};
use super::observe::run;

/// Interleaved rounds of API token, ID token.
const ROUNDS: u32 = 3;

/// The table's header.
pub const HEADER: &str = "OIDC ID token against API token (manifest GET, 64 connections, warm \
caches, Basic credentials; CPU from /proc):\n\n\
| measure | API token | ID token (ES256) | difference |\n|---|---|---|---|";

/// The rows of the table under [`HEADER`].
pub fn measure(bench: &Bench, seconds: u32) -> Vec<String> {
    let issuer = Issuer::start();
    let env = Env::builder()
        .namespaces(&["bench"])
        .upstream(&bench.env.registry_url())
        .gateway_config(&issuer.config("      username_prefix: \"ci:\"\n"))
        .run();
    env.policy(
        "add-role-to-user",
        "system:image-puller",
        "ci:bench-job",
        "bench",
    );
    let basic = |token: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("anything:{token}"))
        )
    };
    let api = basic(&env.token("builder", "bench"));
    let id = basic(&issuer.token("bench-job"));
    let pid = Some(env.regate_pid());
    let mut sums = [(0.0, 0u64, 0.0); 2];
    for round in 0..ROUNDS {
        let by_api = run(bench, &env.url(), &api, pid, seconds);
        let by_id = run(bench, &env.url(), &id, pid, seconds);
        eprintln!(
            "oidc round {round}: API token {:.0}, ID token {:.0} req/s",
            by_api.0, by_id.0
        );
        for (sum, r) in sums.iter_mut().zip([by_api, by_id]) {
            sum.0 += r.0 / f64::from(ROUNDS);
            sum.1 += r.1;
            sum.2 += r.2;
        }
    }
    let micros = |(_, requests, cpu): (f64, u64, f64)| cpu * 1e6 / requests as f64;
    let (api_us, id_us) = (micros(sums[0]), micros(sums[1]));
    vec![
        format!(
            "| manifest GET req/s (mean of {ROUNDS} rounds of {seconds} s) | {:.0} | {:.0} | {:.2}x |",
            sums[0].0,
            sums[1].0,
            sums[1].0 / sums[0].0
        ),
        format!(
            "| regate CPU per request, µs | {api_us:.0} | {id_us:.0} | {:+.1} µs (target <= +20) |",
            id_us - api_us
        ),
    ]
}
