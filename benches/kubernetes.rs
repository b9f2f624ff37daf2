//! `cargo bench --bench kubernetes`: the gateway in kubernetes mode against `regate authority
//! serve` answering every review after 5 ms (`--inject-latency`), a cluster API's latency.
//!
//! 10,000 manifest and blob GETs by 50 identities (service-account API tokens, Basic) over 20
//! repositories, 32 at a time: how many TokenReviews and SubjectAccessReviews the gateway made
//! (target: at most one per distinct identity, and per distinct identity, repository and verb).
//! Then, with every decision cached, the latency regate adds: p50/p99 of sequential manifest GETs
//! through regate minus the same GETs direct to the registry (target: p50 under 100 µs).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{AuthorityMode, Env, Image};
use http_body_util::{BodyExt, Empty};

const IDENTITIES: usize = 50;
const REPOSITORIES: usize = 20;
const REQUESTS: usize = 10_000;
const CONCURRENCY: usize = 32;
const LATENCY_SAMPLES: usize = 2_000;

/// One GET of the workload: who, which repository, manifest or blob.
#[derive(Clone)]
struct Get {
    identity: usize,
    repository: usize,
    blob: bool,
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let env = Env::builder()
        .authority(AuthorityMode::Kubernetes)
        .authority_arg("--inject-latency")
        .authority_arg("5ms")
        .gateway_config("cache:\n  allow_ttl: 5m\n  deny_ttl: 30s\n")
        .namespaces(&["bench"])
        .run();
    for i in 0..IDENTITIES {
        env.regate_ok(&[
            "create",
            "serviceaccount",
            &format!("id-{i}"),
            "-n",
            "bench",
        ]);
    }
    let tokens: Vec<String> = (0..IDENTITIES)
        .map(|i| env.token(&format!("id-{i}"), "bench"))
        .collect();
    let images: Vec<Image> = (0..REPOSITORIES)
        .map(|r| {
            let image = Image::unique(4096);
            env.seed(&format!("bench/r{r}"), "v1", &image);
            image
        })
        .collect();
    std::thread::sleep(common::POLICY_DELAY);

    // The workload, the same every run (xorshift from a fixed seed).
    let mut x = 0x2545_F491_4F6C_DD1D_u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let workload: Vec<Get> = (0..REQUESTS)
        .map(|_| Get {
            identity: (next() % IDENTITIES as u64) as usize,
            repository: (next() % REPOSITORIES as u64) as usize,
            blob: next() % 2 == 0,
        })
        .collect();
    let identities: HashSet<usize> = workload.iter().map(|g| g.identity).collect();
    let triples: HashSet<(usize, usize)> = workload
        .iter()
        .map(|g| (g.identity, g.repository))
        .collect();

    let path_of = |g: &Get| {
        let image = &images[g.repository];
        if g.blob {
            format!("/v2/bench/r{}/blobs/{}", g.repository, image.layer_digest)
        } else {
            format!("/v2/bench/r{}/manifests/v1", g.repository)
        }
    };
    let auth_of = |g: &Get| {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("bench:{}", tokens[g.identity]));
        format!("Basic {basic}")
    };
    let requests: Vec<(String, String)> =
        workload.iter().map(|g| (path_of(g), auth_of(g))).collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let reviews_before = env.reviews();
    let started = Instant::now();
    runtime.block_on(run_workload(&env.host(), Arc::new(requests.clone())));
    let workload_secs = started.elapsed().as_secs_f64();
    let reviews_after = env.reviews();
    let made = |kind: &str| {
        reviews_after[kind].as_u64().unwrap_or(0) - reviews_before[kind].as_u64().unwrap_or(0)
    };
    let token_reviews = made("tokenreviews");
    let access_reviews = made("subjectaccessreviews");

    // Warm: every decision of these requests is cached now.
    let manifests: Vec<(String, String)> = requests
        .iter()
        .filter(|(path, _)| path.contains("/manifests/"))
        .take(LATENCY_SAMPLES)
        .cloned()
        .collect();
    let direct: Vec<(String, String)> = manifests
        .iter()
        .map(|(p, _)| (p.clone(), String::new()))
        .collect();
    let through = runtime.block_on(latencies(&env.host(), &manifests));
    let plain = runtime.block_on(latencies(&env.registry_addr().to_string(), &direct));
    let pct = |v: &[Duration], p: f64| v[((v.len() as f64 - 1.0) * p) as usize];
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let added = |p: f64| micros(pct(&through, p)) - micros(pct(&plain, p));

    let table = format!(
        "| measure | value | target |\n|---|---|---|\n\
         | GETs (manifest and blob), identities, repositories | {REQUESTS}, {}, {REPOSITORIES} | |\n\
         | workload time at {CONCURRENCY} concurrent, authority answering after 5 ms | {workload_secs:.1} s | |\n\
         | TokenReviews made / distinct identities | {token_reviews} / {} | <= 1 per identity |\n\
         | SubjectAccessReviews made / distinct (identity, repository, verb) | {access_reviews} / {} | <= 1 per triple |\n\
         | manifest GET p50: direct / through regate / added | {:.0} µs / {:.0} µs / {:.0} µs | added < 100 µs |\n\
         | manifest GET p99: direct / through regate / added | {:.0} µs / {:.0} µs / {:.0} µs | |\n",
        identities.len(),
        identities.len(),
        triples.len(),
        micros(pct(&plain, 0.5)),
        micros(pct(&through, 0.5)),
        added(0.5),
        micros(pct(&plain, 0.99)),
        micros(pct(&through, 0.99)),
        added(0.99),
    );
    println!("\n{table}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-kubernetes.md");
    let _ = std::fs::write(&out, &table);
    eprintln!("table written to {}", out.display());
}

/// An HTTP/1.1 connection to `addr` (`host:port`).
async fn connect(addr: &str) -> hyper::client::conn::http1::SendRequest<Empty<bytes::Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    sender
}

/// GET `path` (with `auth` unless empty), read the whole body, panic unless 200.
async fn get(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<bytes::Bytes>>,
    addr: &str,
    path: &str,
    auth: &str,
) {
    let mut req = http::Request::get(path)
        .header("host", addr)
        .header("accept", "application/vnd.oci.image.manifest.v1+json");
    if !auth.is_empty() {
        req = req.header("authorization", auth);
    }
    sender.ready().await.expect("connection ready");
    let response = sender
        .send_request(req.body(Empty::new()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let body = response.into_body().collect().await.expect("body");
    assert_eq!(status, 200, "GET {addr}{path}: {:?}", body.to_bytes());
}

/// All `requests`, [`CONCURRENCY`] connections taking them in turn.
async fn run_workload(addr: &str, requests: Arc<Vec<(String, String)>>) {
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (addr, requests, next) = (addr.to_string(), requests.clone(), next.clone());
            tokio::spawn(async move {
                let mut sender = connect(&addr).await;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((path, auth)) = requests.get(i) else {
                        break;
                    };
                    get(&mut sender, &addr, path, auth).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("workload task");
    }
}

/// Sorted latencies of `requests` sent one after another on one connection.
async fn latencies(addr: &str, requests: &[(String, String)]) -> Vec<Duration> {
    let mut sender = connect(addr).await;
    let mut out = Vec::with_capacity(requests.len());
    for (path, auth) in requests {
        let started = Instant::now();
        get(&mut sender, addr, path, auth).await;
        out.push(started.elapsed());
    }
    out.sort();
    out
}
