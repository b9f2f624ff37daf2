//! `cargo bench`: the gateway against its baselines, measured in one run on this machine.
//!
//! One regate plays both of its roles in the run. In proxy mode it gates a plain
//! `docker-registry` (embedded authority, warm decision cache, a registry token as Bearer); in
//! token-server mode it is the realm of a second `docker-registry` configured with `auth: token`
//! (the block `regate keys show` prints), which checks regate's ES256 tokens itself. nginx, a
//! plain reverse proxy to the first registry, is the baseline a gateway has to beat.
//!
//! The measures, each named as `BENCH_ONLY` selects it (by default all run):
//!
//! - `head`: authorized manifest HEAD requests/s at [`CONNECTIONS`] keep-alive connections,
//!   direct, through nginx and through regate.
//! - `pull`: 256 MiB and 1 GiB blob pull throughput with curl (best of 3), direct, through
//!   nginx and through regate, and regate's CPU seconds per pull; then regate's peak RSS during
//!   a 1 GiB push through it.
//! - `token`: token issuance: tokens/s of the token-server realm (`GET /token` for
//!   `repository:project-a/app:pull` and `:push` with a builder's API token as Basic: API-token
//!   check, RBAC intersection of the scopes through the warm decision cache, ES256 signature),
//!   against the gateway's own `/openshift/token` realm (an HS256 identity token) in the same
//!   run. Non-200 answers are counted as errors and reported.
//! - `tokenpull`: 1 GiB blob pull (best of 3) in token-server mode (curl straight to the
//!   token-auth registry, Bearer from regate's `/token`), against the same blob through regate
//!   in proxy mode and direct to the plain registry, in interleaved rounds.
//!
//! - `tls`: a second regate and an nginx serving TLS (the same certificate) in front of the
//!   same registry: manifest GET requests/s (h2load, 64 in flight) and the 1 GiB blob pull
//!   (curl, best of 3) over HTTP/1.1 and HTTP/2, with each proxy's CPU per request and per GiB,
//!   against direct (plain HTTP) in the same run.
//!
//! - `observe`: what the operator's view costs: manifest GET requests/s and regate's CPU per
//!   request with the audit log on (a file) and `/metrics` scraped every second, against the
//!   same gateway with neither, and direct, in interleaved rounds of one run
//!   (`benches/gateway/observe.rs`).
//!
//! - `cpu`: CPU per authorized manifest GET (wrk, 64 connections) of regate against plain nginx,
//!   nginx with `auth_basic` and a bare hyper proxy (the floor of regate's stack), each proxy's
//!   processes read from `/proc`, with latency percentiles (`benches/gateway/cpu.rs`).
//! - `instructions`: instructions per authorized manifest GET, counted by valgrind's callgrind,
//!   of plain nginx, the hyper floor and regate (`benches/gateway/instructions.rs`; needs
//!   `valgrind`).
//! - `oidc`: regate's CPU per manifest GET with an OIDC ID token (offline verification, warm)
//!   against an API token, same gateway, interleaved rounds (`benches/gateway/oidc.rs`).
//!
//! The load generator for the request rates is in this file (a hyper client: wrk cannot do
//! HEAD, it waits for a body that never comes). Targets are ratios to the direct baseline;
//! nothing here asserts on time. Needs `nginx`, `curl` and `h2load` (Debian packages
//! `nginx-light`, `curl`, `nghttp2-client`). `BENCH_SECONDS` sets the length of each
//! request-rate run (default 10).

#[path = "gateway/chart.rs"]
mod chart;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "gateway/cpu.rs"]
mod cpu;
#[path = "gateway/floor.rs"]
mod floor;
#[path = "gateway/instructions.rs"]
mod instructions;
#[path = "gateway/observe.rs"]
mod observe;
#[path = "gateway/oidc.rs"]
mod oidc;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Auth, Env, Image, Nginx, TOKEN_SERVICE as SERVICE};

/// Size of the blobs pulled and pushed.
const BLOB_BYTES: u64 = 1 << 30;
/// Connections of the request-rate loads.
const CONNECTIONS: u32 = 64;
/// What `BENCH_ONLY` may name.
const MEASURES: [&str; 9] = [
    "head",
    "pull",
    "token",
    "tokenpull",
    "tls",
    "observe",
    "oidc",
    "cpu",
    "instructions",
];
/// The scopes of the token-issuance load, as `docker push` asks for them.
const TOKEN_SCOPES: &str =
    "scope=repository:project-a/app:pull&scope=repository:project-a/app:push";

fn main() {
    // Started again as the `cpu` measure's floor proxy (`gateway/floor.rs`).
    floor::serve_if_asked();
    // `cargo bench` passes `--bench`; any other run (e.g. `cargo test --benches`) only checks
    // that the harness builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    for tool in ["nginx", "curl", "h2load", "wrk", "openssl"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            eprintln!(
                "benchmark needs {tool}: apt-get install nginx-light curl nghttp2-client wrk openssl"
            );
            std::process::exit(1);
        }
    }
    let seconds: u32 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if !only.is_empty() && !MEASURES.contains(&only.as_str()) {
        eprintln!("BENCH_ONLY={only}: expected one of {}", MEASURES.join(", "));
        std::process::exit(2);
    }
    let runs = |measure: &str| only.is_empty() || only == measure;

    let bench = Bench::start();
    let mut proxy_rows = Vec::new();
    let mut token_rows = Vec::new();
    if runs("head") {
        proxy_rows.push(measure_head(&bench, seconds));
    }
    let pull_blob =
        (runs("pull") || runs("tokenpull") || runs("tls")).then(|| seed_pull_blob(&bench));
    if let Some(blob) = pull_blob.as_ref().filter(|_| runs("pull")) {
        let small = seed_blob(&bench, "pull-256.bin", 256 << 20);
        proxy_rows.extend(measure_pull(&bench, &small, "256 MiB"));
        proxy_rows.extend(measure_pull(&bench, blob, "1 GiB"));
    }
    if runs("pull") {
        proxy_rows.push(measure_push_rss(&bench));
    }
    if runs("token") {
        token_rows.extend(measure_token_issuance(&bench, seconds));
    }
    if let Some(blob) = pull_blob.as_ref().filter(|_| runs("tokenpull")) {
        token_rows.extend(measure_token_pull(&bench, blob));
    }
    let mut tls_rows = Vec::new();
    if let Some(blob) = pull_blob.as_ref().filter(|_| runs("tls")) {
        // `measure_head` seeds the manifest; a run without it seeds it here.
        if !runs("head") {
            bench.env.seed("bench/app", "v1", &Image::unique(4096));
        }
        tls_rows.extend(measure_tls(&bench, blob, seconds));
    }

    if (runs("observe") || runs("oidc")) && !runs("head") && !runs("tls") {
        bench.env.seed("bench/app", "v1", &Image::unique(4096));
    }
    let observe_rows = if runs("observe") {
        observe::measure(&bench, seconds)
    } else {
        Vec::new()
    };
    let cpu_rows = if runs("cpu") {
        if !runs("head") && !runs("tls") && !runs("observe") && !runs("oidc") {
            bench.env.seed("bench/app", "v1", &Image::unique(4096));
        }
        cpu::measure(&bench, seconds)
    } else {
        Vec::new()
    };
    let instruction_rows = if runs("instructions") {
        if !runs("head") && !runs("tls") && !runs("observe") && !runs("oidc") && !runs("cpu") {
            bench.env.seed("bench/app", "v1", &Image::unique(4096));
        }
        instructions::measure(&bench)
    } else {
        Vec::new()
    };
    let oidc_rows = if runs("oidc") {
        oidc::measure(&bench, seconds)
    } else {
        Vec::new()
    };

    let mut report = String::new();
    if !proxy_rows.is_empty() {
        report.push_str(
            "| measure | direct | nginx | regate | regate / direct | target |\n\
             |---|---|---|---|---|---|\n",
        );
        report.extend(proxy_rows.iter().map(|r| format!("{r}\n")));
    }
    if !token_rows.is_empty() {
        report.push_str("\nToken-server mode:\n\n| measure | value(s) | ratio |\n|---|---|---|\n");
        report.extend(token_rows.iter().map(|r| format!("{r}\n")));
    }
    if !tls_rows.is_empty() {
        report.push_str(
            "\nOver TLS (nginx and regate serving HTTPS with the same certificate; direct is plain HTTP \
             to the registry; ratios to direct):\n\n\
             | measure | direct | nginx HTTP/1.1 | regate HTTP/1.1 | nginx HTTP/2 | regate HTTP/2 |\n\
             |---|---|---|---|---|---|\n",
        );
        report.extend(tls_rows.iter().map(|r| format!("{r}\n")));
    }
    for (header, rows) in [
        (cpu::HEADER, &cpu_rows),
        (instructions::HEADER, &instruction_rows),
        (observe::HEADER, &observe_rows),
        (oidc::HEADER, &oidc_rows),
    ] {
        if !rows.is_empty() {
            report.push_str(&format!("\n{header}\n"));
            report.extend(rows.iter().map(|r| format!("{r}\n")));
        }
    }
    println!("\n{report}");
    if only.is_empty() {
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-gateway.md");
        let _ = fs::write(&out, &report);
        eprintln!("table written to {}", out.display());
    }
}

/// What the measures run against: a plain registry, nginx in front of it, and one regate that
/// gates that registry (proxy mode) and is the token server of a second, `auth: token` registry.
struct Bench {
    env: Env,
    nginx: Nginx,
    /// `Bearer TOKEN` of `bench/builder` for proxy mode: an identity token from
    /// `/openshift/token`.
    bearer: String,
    /// The API token of `project-a/builder`, for the token-server realm.
    builder: String,
    runtime: tokio::runtime::Runtime,
}

impl Bench {
    /// Start everything as `tests/token_server.rs` does: keys first, then regate, then the
    /// token-auth registry with the `auth:` block `regate keys show` prints for that regate
    /// (the fixture's `token_server()`).
    fn start() -> Bench {
        let env = Env::builder()
            .namespaces(&["bench", "project-a"])
            .token_server()
            .run();

        let nginx = nginx(env.dir(), &env.registry_addr().to_string());
        let bearer = format!(
            "Bearer {}",
            registry_token(&env, &env.token("builder", "bench"))
        );
        let builder = env.token("builder", "project-a");
        // The load generator gets one core's worth; regate and the registries share the rest.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        Bench {
            env,
            nginx,
            bearer,
            builder,
            runtime,
        }
    }

    /// The three ways to the plain registry.
    fn targets(&self) -> [(&'static str, String); 3] {
        [
            ("direct", self.env.registry_url()),
            ("nginx", self.nginx.url()),
            ("regate", self.env.url()),
        ]
    }

    /// A token from the token-server realm for the builder of `project-a`, for `scope`.
    fn server_token(&self, scope: &str) -> String {
        let url = format!("{}/token?service={SERVICE}&scope={scope}", self.env.url());
        let reply = common::Reply::from_request(
            Auth::Basic(&self.builder).apply(self.env.client().get(&url)),
        );
        self.env.expect_status(&reply, 200, "token request");
        reply.json()["token"]
            .as_str()
            .expect("the realm answers a token")
            .to_string()
    }

    /// `load` on the bench's runtime: a 2 s warm-up (pools, decision cache), then `seconds`.
    fn load(&self, method: http::Method, base: &str, path: &str, auth: &str, seconds: u32) -> Load {
        let addr = base.trim_start_matches("http://");
        let warm = Duration::from_secs(2);
        self.runtime
            .block_on(load(method.clone(), addr, path, auth, warm));
        self.runtime.block_on(load(
            method,
            addr,
            path,
            auth,
            Duration::from_secs(seconds.into()),
        ))
    }
}

/// `head`: manifest HEAD requests/s, direct, through nginx and through regate.
fn measure_head(bench: &Bench, seconds: u32) -> String {
    bench.env.seed("bench/app", "v1", &Image::unique(4096));
    let mut rps = Vec::new();
    for (label, base) in bench.targets() {
        let path = "/v2/bench/app/manifests/v1";
        let r = bench.load(http::Method::HEAD, &base, path, &bench.bearer, seconds);
        assert_eq!(
            r.errors, 0,
            "HEAD {label}: {} answers were not 200",
            r.errors
        );
        eprintln!("HEAD {label}: {:.0} req/s", r.per_second);
        rps.push(r.per_second);
    }
    format!(
        "| manifest HEAD req/s, {CONNECTIONS} connections, {seconds} s | {:.0} | {:.0} | {:.0} | {:.2} | >= 0.80 |",
        rps[0],
        rps[1],
        rps[2],
        rps[2] / rps[0]
    )
}

/// A blob the pull measures fetch, in the plain registry as `bench/big`.
struct Blob {
    file: PathBuf,
    digest: String,
}

fn seed_pull_blob(bench: &Bench) -> Blob {
    seed_blob(bench, "pull.bin", BLOB_BYTES)
}

/// A blob of `bytes` in the plain registry as `bench/big`, from the file `name`.
fn seed_blob(bench: &Bench, name: &str, bytes: u64) -> Blob {
    let file = sized_file(bench.env.dir(), name, bytes, bytes);
    let digest = common::digest_file(&file);
    put_blob(&bench.env.registry_url(), None, "bench/big", &file, &digest);
    Blob { file, digest }
}

/// `pull`: 1 GiB blob pull MiB/s (best of 3), direct, through nginx and through regate, and
/// regate's CPU per GiB pulled through it.
fn measure_pull(bench: &Bench, blob: &Blob, size: &str) -> Vec<String> {
    let pid = bench.env.regate_pid();
    let targets = bench.targets();
    // Three rounds of direct, nginx, regate in turn, so a slow spell of this shared machine
    // falls on all three alike; the best of each path's three.
    let mut mbps = [0.0_f64; 3];
    let mut regate_cpu = 0.0;
    for round in 0..3 {
        for (i, (label, base)) in targets.iter().enumerate() {
            let url = format!("{base}/v2/bench/big/blobs/{}", blob.digest);
            let before = cpu_seconds(pid);
            let rate = curl_pull(&url, &bench.bearer);
            if *label == "regate" {
                regate_cpu += (cpu_seconds(pid) - before) / 3.0;
            }
            eprintln!("pull {size} round {round} {label}: {rate:.0} MiB/s");
            mbps[i] = mbps[i].max(rate);
        }
    }
    vec![
        format!(
            "| {size} blob pull, MiB/s (best of 3, interleaved) | {:.0} | {:.0} | {:.0} | {:.2} | >= 0.90 |",
            mbps[0],
            mbps[1],
            mbps[2],
            mbps[2] / mbps[0]
        ),
        format!("| regate CPU seconds per {size} pulled | | | {regate_cpu:.2} | | |"),
    ]
}

/// regate's peak RSS during a 1 GiB push through it (peak reset first, so the push alone
/// counts).
fn measure_push_rss(bench: &Bench) -> String {
    let pid = bench.env.regate_pid();
    let file = big_file(bench.env.dir(), "push.bin", 1);
    let digest = common::digest_file(&file);
    let _ = fs::write(format!("/proc/{pid}/clear_refs"), "5");
    let started = Instant::now();
    put_blob(
        &bench.env.url(),
        Some(&bench.bearer),
        "bench/pushed",
        &file,
        &digest,
    );
    let push_secs = started.elapsed().as_secs_f64();
    let rss_mib = common::peak_rss_kib(pid) as f64 / 1024.0;
    format!(
        "| regate peak RSS during a 1 GiB push ({push_secs:.1} s), MiB | | | {rss_mib:.1} | | <= 64 |"
    )
}

/// `token`: tokens/s of the token-server realm against the gateway realm, same scopes, same
/// API token, same connections.
fn measure_token_issuance(bench: &Bench, seconds: u32) -> Vec<String> {
    let basic = Auth::Basic(&bench.builder)
        .header()
        .expect("a Basic header");
    let realms = [
        ("/token", format!("/token?service={SERVICE}&{TOKEN_SCOPES}")),
        (
            "/openshift/token",
            format!("/openshift/token?{TOKEN_SCOPES}"),
        ),
    ];
    // The load would measure a cheaper path if the token-server realm granted nothing.
    let reply = bench
        .env
        .send("GET", &realms[0].1, Auth::Basic(&bench.builder));
    bench.env.expect_status(&reply, 200, "token request");
    assert_eq!(
        reply.json()["scope"],
        "repository:project-a/app:pull,push",
        "the builder's token grants both scopes"
    );
    let mut loads = Vec::new();
    for (label, path) in &realms {
        let r = bench.load(http::Method::GET, &bench.env.url(), path, &basic, seconds);
        eprintln!("tokens {label}: {:.0}/s, {} errors", r.per_second, r.errors);
        loads.push(r);
    }
    let (server, gateway) = (&loads[0], &loads[1]);
    vec![
        format!(
            "| tokens/s, token-server realm `/token` (ES256, pull+push scopes through RBAC), {CONNECTIONS} connections, {seconds} s | {:.0} ({} errors) | {:.2} of `/openshift/token` |",
            server.per_second,
            server.errors,
            server.per_second / gateway.per_second
        ),
        format!(
            "| tokens/s, gateway realm `/openshift/token` (HS256 identity token), same load | {:.0} ({} errors) | 1.00 |",
            gateway.per_second, gateway.errors
        ),
    ]
}

/// `tokenpull`: the 1 GiB blob pulled straight from the token-auth registry with a token from
/// regate's realm, through regate in proxy mode, and direct from the plain registry; three
/// interleaved rounds, best of each, and regate's CPU per GiB in both modes.
fn measure_token_pull(bench: &Bench, blob: &Blob) -> Vec<String> {
    let push = format!(
        "Bearer {}",
        bench.server_token("repository:project-a/big:pull,push")
    );
    put_blob(
        &bench.env.token_registry_url(),
        Some(&push),
        "project-a/big",
        &blob.file,
        &blob.digest,
    );
    let pull = format!(
        "Bearer {}",
        bench.server_token("repository:project-a/big:pull")
    );
    let digest = &blob.digest;
    let ways = [
        (
            "direct",
            format!("{}/v2/bench/big/blobs/{digest}", bench.env.registry_url()),
            &bench.bearer,
        ),
        (
            "proxy mode",
            format!("{}/v2/bench/big/blobs/{digest}", bench.env.url()),
            &bench.bearer,
        ),
        (
            "token-server mode",
            format!(
                "{}/v2/project-a/big/blobs/{digest}",
                bench.env.token_registry_url()
            ),
            &pull,
        ),
    ];
    let pid = bench.env.regate_pid();
    let mut best = [0.0_f64; 3];
    let mut regate_cpu = [0.0_f64; 3];
    for round in 1..=3 {
        for (i, (label, url, auth)) in ways.iter().enumerate() {
            let before = cpu_seconds(pid);
            let mbps = curl_pull(url, auth);
            regate_cpu[i] += (cpu_seconds(pid) - before) / 3.0;
            eprintln!("token pull round {round}, {label}: {mbps:.0} MiB/s");
            best[i] = best[i].max(mbps);
        }
    }
    vec![
        format!(
            "| 1 GiB blob pull, MiB/s (best of 3), direct / proxy mode / token-server mode | {:.0} / {:.0} / {:.0} | 1.00 / {:.2} / {:.2} |",
            best[0],
            best[1],
            best[2],
            best[1] / best[0],
            best[2] / best[0]
        ),
        format!(
            "| regate CPU seconds per 1 GiB pulled, proxy mode / token-server mode | {:.2} / {:.2} | |",
            regate_cpu[1], regate_cpu[2]
        ),
    ]
}

/// A registry token for `api_token` from regate's token endpoint.
fn registry_token(env: &Env, api_token: &str) -> String {
    let reply = env.send(
        "GET",
        "/openshift/token?scope=repository:bench/app:pull",
        Auth::Basic(api_token),
    );
    reply.json()["token"]
        .as_str()
        .expect("token endpoint answers a token")
        .to_string()
}

/// What a load run did: 200 answers per second, how many, and how many answers were not 200.
struct Load {
    per_second: f64,
    ok: u64,
    errors: u64,
}

/// `method path` with `Authorization: auth` on [`CONNECTIONS`] keep-alive connections to
/// `addr` for `length`, each body read to the end.
async fn load(method: http::Method, addr: &str, path: &str, auth: &str, length: Duration) -> Load {
    use http_body_util::{BodyExt, Empty};
    let deadline = tokio::time::Instant::now() + length;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (method, addr, path, auth) = (
            method.clone(),
            addr.to_string(),
            path.to_string(),
            auth.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let io = hyper_util::rt::TokioIo::new(stream);
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .expect("handshake");
            tokio::spawn(conn);
            let (mut ok, mut errors) = (0u64, 0u64);
            while tokio::time::Instant::now() < deadline {
                let req = http::Request::builder()
                    .method(method.clone())
                    .uri(&path)
                    .header("host", &addr)
                    .header("authorization", &auth)
                    .header("accept", "application/vnd.oci.image.manifest.v1+json")
                    .body(Empty::<bytes::Bytes>::new())
                    .expect("request");
                sender.ready().await.expect("connection ready");
                let response = sender.send_request(req).await.expect("response");
                let status = response.status();
                response.into_body().collect().await.expect("body");
                if status == 200 {
                    ok += 1;
                } else {
                    errors += 1;
                }
            }
            (ok, errors)
        }));
    }
    let (mut ok, mut errors) = (0, 0);
    for task in tasks {
        let (o, e) = task.await.expect("load task");
        ok += o;
        errors += e;
    }
    Load {
        per_second: ok as f64 / started.elapsed().as_secs_f64(),
        ok,
        errors,
    }
}

/// A file of [`BLOB_BYTES`] pseudo-random bytes (cheap to make, not compressible).
fn big_file(dir: &Path, name: &str, seed: u64) -> PathBuf {
    sized_file(dir, name, seed, BLOB_BYTES)
}

/// A file of `bytes` (whole MiB) pseudo-random bytes.
fn sized_file(dir: &Path, name: &str, seed: u64, bytes: u64) -> PathBuf {
    let path = dir.join(name);
    let mut file = std::io::BufWriter::new(File::create(&path).expect("create blob file"));
    let mut x = 0x9E37_79B9_7F4A_7C15_u64 ^ seed;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..(bytes >> 20) {
        for chunk in block.chunks_mut(8) {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        file.write_all(&block).expect("write blob file");
    }
    file.flush().expect("flush blob file");
    path
}

/// Uploads `file` as a blob of `repo` in one streamed PUT (POST, then PUT ?digest=).
fn put_blob(base: &str, auth: Option<&str>, repo: &str, file: &Path, digest: &str) {
    let mut start = Command::new("curl");
    start.args(["-sS", "-o", "/dev/null", "-D", "-", "-X", "POST"]);
    if let Some(a) = auth {
        start.args(["-H", &format!("Authorization: {a}")]);
    }
    let out = start
        .arg(format!("{base}/v2/{repo}/blobs/uploads/"))
        .output()
        .expect("run curl");
    let headers = String::from_utf8_lossy(&out.stdout);
    let location = headers
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("location"))
        })
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| panic!("upload start gave no Location:\n{headers}"));
    let url = common::add_query(&common::absolute(base, &location), "digest", digest);
    let mut put = Command::new("curl");
    put.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T"])
        .arg(file)
        .args(["-H", "Content-Type: application/octet-stream"]);
    if let Some(a) = auth {
        put.args(["-H", &format!("Authorization: {a}")]);
    }
    let out = put.arg(&url).output().expect("run curl");
    let code = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code, "201", "blob PUT to {base} answered {code}");
}

/// User plus system CPU seconds process `pid` has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11..13]
        .iter()
        .filter_map(|f| f.parse::<f64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / per_second
}

/// MiB/s of one GET of `url`, body discarded.
fn curl_pull(url: &str, auth: &str) -> f64 {
    curl_pull_with(url, auth, &[])
}

/// [`curl_pull`] with `extra` curl flags (a CA, an HTTP version).
fn curl_pull_with(url: &str, auth: &str, extra: &[&str]) -> f64 {
    let out = Command::new("curl")
        .args(extra)
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{speed_download}",
        ])
        .args(["-H", &format!("Authorization: {auth}")])
        .arg(url)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let (code, speed) = text.split_once(' ').unwrap_or(("", "0"));
    assert_eq!(code, "200", "pull of {url} answered {code}");
    speed.trim().parse::<f64>().unwrap_or(0.0) / (1024.0 * 1024.0)
}

/// A plain nginx reverse proxy to the registry, streaming both ways: the baseline a gateway
/// has to beat.
fn nginx(dir: &Path, upstream: &str) -> Nginx {
    nginx_with(dir, "nginx", upstream, None)
}

/// [`nginx`] in `dir/name`; with `htpasswd`, every request needs Basic credentials from it
/// (`auth_basic`), the baseline of a gateway that checks a password per request.
fn nginx_with(dir: &Path, name: &str, upstream: &str, htpasswd: Option<&Path>) -> Nginx {
    nginx_proxy(dir, name, upstream, htpasswd, None, &[])
}

/// [`nginx`] in `dir/name` as one process (no master), started by `launcher` (e.g. valgrind
/// and its arguments).
fn nginx_under(dir: &Path, name: &str, upstream: &str, launcher: &[String]) -> Nginx {
    nginx_proxy(dir, name, upstream, None, None, launcher)
}

/// [`nginx`] in `dir/name` serving HTTPS (HTTP/1.1 and h2) with `cert` and `key`.
fn nginx_tls(dir: &Path, name: &str, upstream: &str, cert: &Path, key: &Path) -> Nginx {
    nginx_proxy(dir, name, upstream, None, Some((cert, key)), &[])
}

fn nginx_proxy(
    dir: &Path,
    name: &str,
    upstream: &str,
    htpasswd: Option<&Path>,
    tls: Option<(&Path, &Path)>,
    launcher: &[String],
) -> Nginx {
    let auth = htpasswd.map_or(String::new(), |file| {
        format!(
            "auth_basic \"registry\";\n      auth_basic_user_file {};\n      ",
            file.display()
        )
    });
    Nginx::start(dir, name, tls.is_some(), launcher, |port, root| {
        let listen = match tls {
            None => format!("listen 127.0.0.1:{port};"),
            Some((cert, key)) => format!(
                "listen 127.0.0.1:{port} ssl http2;\n    ssl_certificate {};\n    ssl_certificate_key {};",
                cert.display(),
                key.display()
            ),
        };
        format!(
            "{processes}\nevents {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {root};\n  proxy_temp_path {root};\n\
             upstream registry {{ server {upstream}; keepalive 64; }}\n\
             server {{\n    {listen}\n    client_max_body_size 0;\n\
             location / {{\n      {auth}proxy_pass http://registry;\n      proxy_http_version 1.1;\n\
             proxy_set_header Connection \"\";\n      proxy_set_header Host $http_host;\n\
             proxy_buffering off;\n      proxy_request_buffering off;\n    }}\n  }}\n}}\n",
            root = root.display(),
            processes = if launcher.is_empty() {
                "worker_processes auto;"
            } else {
                "master_process off;"
            },
        )
    })
}

/// `tls`: a second regate and an nginx serving TLS (one certificate from a CA made here) in
/// front of the same registry: manifest GET requests/s with h2load over HTTP/1.1 and HTTP/2,
/// and the 1 GiB blob pull with curl over each, with each proxy's CPU, against direct (plain
/// HTTP to the registry) in the same run.
fn measure_tls(bench: &Bench, blob: &Blob, seconds: u32) -> Vec<String> {
    let ca = common::TestCa::new(&bench.env.dir().join("tls-ca"), "bench-ca");
    let cert = ca.server("gateway", &["127.0.0.1", "localhost"]);
    let tls = Env::builder()
        .namespaces(&["bench"])
        .upstream(&bench.env.registry_url())
        .serve_arg("--tls-cert")
        .serve_arg(cert.cert_file.to_str().expect("utf-8 path"))
        .serve_arg("--tls-key")
        .serve_arg(cert.key_file.to_str().expect("utf-8 path"))
        .run();
    let ca_file = ca.ca_file.to_str().expect("utf-8 path").to_string();
    let api = tls.token("builder", "bench");
    let token_url = format!(
        "{}/openshift/token?service=regate&scope=repository:bench/app:pull&scope=repository:bench/big:pull",
        tls.url()
    );
    let out = Command::new("curl")
        .args([
            "-sS",
            "--cacert",
            &ca_file,
            "-u",
            &format!("anything:{api}"),
            &token_url,
        ])
        .output()
        .expect("run curl");
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("token JSON");
    let tls_bearer = format!("Bearer {}", body["token"].as_str().expect("token"));

    let nginx = nginx_tls(
        bench.env.dir(),
        "nginx-tls",
        &bench.env.registry_addr().to_string(),
        &cert.cert_file,
        &cert.key_file,
    );
    // The two proxies, in the order of the table's columns within each protocol.
    let proxies = [
        (nginx.url(), bench.bearer.as_str(), nginx.pids()),
        (tls.url(), tls_bearer.as_str(), vec![tls.regate_pid()]),
    ];
    // `run(base, auth, protocol)` for each protocol and proxy: (rate, the proxies' CPU seconds).
    let each = |protocols: [&str; 2], run: &dyn Fn(&str, &str, &str) -> f64| {
        let mut runs = Vec::new();
        for protocol in protocols {
            for (base, auth, pids) in &proxies {
                let before: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
                let rate = run(base, auth, protocol);
                let cpu = pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>() - before;
                eprintln!("{base} {protocol}: {rate:.0}, {cpu:.2} CPU-s");
                runs.push((rate, cpu));
            }
        }
        runs
    };
    // Two rows: the rates with their ratio to `direct`, then the CPU as `cpu` shows it.
    let rows = |rates: &str,
                cpu_label: &str,
                direct: f64,
                runs: &[(f64, f64)],
                cpu: &dyn Fn(f64, f64) -> String| {
        let rate_cells: Vec<String> = runs
            .iter()
            .map(|(rate, _)| format!("{rate:.0} ({:.2})", rate / direct))
            .collect();
        let cpu_cells: Vec<String> = runs
            .iter()
            .map(|(rate, seconds)| cpu(*rate, *seconds))
            .collect();
        vec![
            format!("| {rates} | {direct:.0} | {} |", rate_cells.join(" | ")),
            format!("| {cpu_label} | | {} |", cpu_cells.join(" | ")),
        ]
    };

    // Manifest GETs: requests/s and the proxy's CPU per request (warm-up included in both the
    // CPU and the count, at the measured rate).
    let manifest = "/v2/bench/app/manifests/v1";
    let direct = h2load(
        &format!("{}{manifest}", bench.env.registry_url()),
        &bench.bearer,
        "h1",
        seconds,
    );
    let gets = each(["h1", "h2"], &|base, auth, protocol| {
        h2load(&format!("{base}{manifest}"), auth, protocol, seconds)
    });

    // The 1 GiB blob, best of 3, and the proxy's CPU per pull.
    let blob_path = format!("/v2/bench/big/blobs/{}", blob.digest);
    let best = |url: &str, auth: &str, extra: &[&str]| {
        (0..3)
            .map(|_| curl_pull_with(url, auth, extra))
            .fold(0.0_f64, f64::max)
    };
    let direct_pull = best(
        &format!("{}{blob_path}", bench.env.registry_url()),
        &bench.bearer,
        &[],
    );
    let pulls = each(["--http1.1", "--http2"], &|base, auth, protocol| {
        best(
            &format!("{base}{blob_path}"),
            auth,
            &["--cacert", &ca_file, protocol],
        )
    });
    let per_get = |rate: f64, cpu: f64| {
        format!(
            "{:.0}",
            cpu * 1e6 / (rate * f64::from(seconds + 2)).max(1.0)
        )
    };
    let per_pull = |_: f64, cpu: f64| format!("{:.2}", cpu / 3.0);
    let mut table = rows(
        &format!("manifest GET req/s, 64 concurrent, {seconds} s"),
        "proxy CPU per manifest GET, µs",
        direct,
        &gets,
        &per_get,
    );
    table.extend(rows(
        "1 GiB blob pull, MiB/s (best of 3)",
        "proxy CPU seconds per 1 GiB pulled",
        direct_pull,
        &pulls,
        &per_pull,
    ));
    table
}

/// Requests/s of `h2load` GETting `url` for `seconds` (after a 2 s warm-up) with 64 requests
/// in flight: 64 HTTP/1.1 connections (`h1`), or 8 HTTP/2 connections of 8 streams (`h2`).
fn h2load(url: &str, auth: &str, protocol: &str, seconds: u32) -> f64 {
    let mut cmd = Command::new("h2load");
    cmd.args(["-D", &seconds.to_string(), "--warm-up-time", "2"])
        .args(["-H", &format!("authorization: {auth}")])
        .args(["-H", "accept: application/vnd.oci.image.manifest.v1+json"]);
    match protocol {
        "h1" => cmd.args(["--h1", "-c", "64", "-m", "1", "-t", "1"]),
        _ => cmd.args(["-c", "8", "-m", "8", "-t", "1"]),
    };
    let out = cmd
        .arg(url)
        .output()
        .expect("run h2load (apt-get install nghttp2-client)");
    let text = String::from_utf8_lossy(&out.stdout);
    let status_ok = text
        .lines()
        .find(|l| l.starts_with("status codes:"))
        .is_some_and(|l| l.contains(" 0 3xx, 0 4xx, 0 5xx"));
    assert!(status_ok, "h2load {url}: every answer 2xx:\n{text}");
    text.lines()
        .find(|l| l.starts_with("finished in"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|r| r.trim_end_matches(" req/s").trim().parse().ok())
        .unwrap_or_else(|| panic!("h2load {url}: no rate in\n{text}"))
}
