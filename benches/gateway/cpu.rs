//! `cpu`: what a gateway hop costs per request. wrk (one thread, 64 connections) GETs the
//! manifest `bench/app:v1` direct from the registry, through plain nginx (the cost of one proxy
//! hop), through nginx with `auth_basic` (a password checked per request), through a bare hyper
//! proxy (`floor.rs`: what the stack regate is built on costs alone), and through regate
//! (Basic `anything:API-TOKEN`: authenticated and authorized on every request, warm caches),
//! once as the bench's gateway and once with the audit log on (a file) and `/metrics` scraped
//! every second. Each proxy's CPU (nginx: master and workers) is read from `/proc/PID/stat`
//! around the measured run only; rounds are interleaved and summed. The run also redraws the
//! chart `docs/benchmarks/cpu-per-request.svg` (`chart.rs`).

use std::process::Command;
use std::time::Duration;

use super::chart::{self, Bar};
use super::floor::Floor;
use super::observe::{Gateway, Scraper};
use super::{Bench, cpu_seconds, nginx_with};

/// Interleaved rounds of the four paths.
const ROUNDS: u32 = 2;
/// The path loaded.
const MANIFEST: &str = "/v2/bench/app/manifests/v1";

/// The table's header.
pub const HEADER: &str = "CPU per authorized manifest GET (wrk -t1 -c64, proxy CPU from \
/proc; latency percentiles from wrk):\n\n\
| path | req/s | ratio to direct | proxy CPU per request | p50 | p99 |\n|---|---|---|---|---|---|";

/// One wrk run: requests/s, requests, latency p50 and p99 (as wrk prints them).
struct Wrk {
    per_second: f64,
    requests: u64,
    p50: String,
    p99: String,
}

fn wrk(url: &str, auth: &str, seconds: u32) -> Wrk {
    let out = Command::new("wrk")
        .args(["-t1", "-c64", "--latency", "-d"])
        .arg(format!("{seconds}s"))
        .args(["-H", &format!("Authorization: {auth}")])
        .args(["-H", "Accept: application/vnd.oci.image.manifest.v1+json"])
        .arg(url)
        .output()
        .expect("run wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("Non-2xx"),
        "wrk {url}: every answer 2xx:\n{text}"
    );
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let requests = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("wrk {url}: no request count in\n{text}"));
    Wrk {
        per_second: field("Requests/sec:").parse().unwrap_or(0.0),
        requests,
        p50: field("50%"),
        p99: field("99%"),
    }
}

/// CPU seconds of `pids` together.
fn cpu_of(pids: &[u32]) -> f64 {
    pids.iter().map(|p| cpu_seconds(*p)).sum()
}

/// The rows of the table under [`HEADER`].
pub fn measure(bench: &Bench, seconds: u32) -> Vec<String> {
    let dir = bench.env.dir();
    let htpasswd = dir.join("htpasswd");
    let hash = Command::new("openssl")
        .args(["passwd", "-apr1", "bench-secret"])
        .output()
        .expect("openssl passwd");
    let hash = String::from_utf8_lossy(&hash.stdout).trim().to_string();
    std::fs::write(&htpasswd, format!("bench:{hash}\n")).expect("write htpasswd");
    let registry = bench.env.registry_addr().to_string();
    let guarded = nginx_with(dir, "nginx-auth", &registry, Some(&htpasswd));
    let basic = |user: &str, secret: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"))
        )
    };
    let api = basic("anything", &bench.env.token("builder", "bench"));
    let audit = dir.join("cpu-audit.log");
    let observed = Gateway::start(bench, &format!("audit:\n  path: {}\n", audit.display()));
    let observed_api = basic("anything", &observed.env.token("builder", "bench"));
    let _scraper = Scraper::start(format!("{}/metrics", observed.env.url()));
    let floor = Floor::start(&registry, &[]);
    let paths: [(&'static str, String, String, Vec<u32>); 6] = [
        (
            "direct to docker-registry",
            bench.env.registry_url(),
            bench.bearer.clone(),
            vec![],
        ),
        (
            "nginx, no auth",
            bench.nginx.url(),
            bench.bearer.clone(),
            bench.nginx.pids(),
        ),
        (
            "nginx with basic auth",
            guarded.url(),
            basic("bench", "bench-secret"),
            guarded.pids(),
        ),
        (
            "hyper floor: a bare hyper proxy, no auth",
            floor.url(),
            bench.bearer.clone(),
            vec![floor.pid()],
        ),
        (
            "regate (Basic API token)",
            bench.env.url(),
            api,
            vec![bench.env.regate_pid()],
        ),
        (
            "regate, audit log on, /metrics scraped",
            observed.env.url(),
            observed_api,
            vec![observed.env.regate_pid()],
        ),
    ];
    // (req/s summed, requests, cpu seconds, last p50, last p99) per path.
    let mut sums: Vec<(f64, u64, f64, String, String)> = vec![Default::default(); paths.len()];
    for round in 0..ROUNDS {
        for (i, (label, base, auth, pids)) in paths.iter().enumerate() {
            let url = format!("{base}{MANIFEST}");
            wrk(&url, auth, 2);
            let before = cpu_of(pids);
            let run = wrk(&url, auth, seconds);
            let cpu = cpu_of(pids) - before;
            eprintln!(
                "cpu round {round}: {label}: {:.0} req/s, {:.0} µs CPU per request",
                run.per_second,
                cpu * 1e6 / run.requests.max(1) as f64
            );
            let sum = &mut sums[i];
            sum.0 += run.per_second / f64::from(ROUNDS);
            sum.1 += run.requests;
            sum.2 += cpu;
            sum.3 = run.p50;
            sum.4 = run.p99;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let direct = sums[0].0;
    let micros = |i: usize| sums[i].2 * 1e6 / sums[i].1.max(1) as f64;
    let mut rows: Vec<String> = paths
        .iter()
        .enumerate()
        .map(|(i, (label, ..))| {
            let cpu = if i == 0 {
                "–".to_string()
            } else {
                format!("{:.0} µs", micros(i))
            };
            format!(
                "| {label} | {:.0} | {:.2} | {cpu} | {} | {} |",
                sums[i].0,
                sums[i].0 / direct,
                sums[i].3,
                sums[i].4
            )
        })
        .collect();
    rows.push(format!(
        "| **regate CPU / plain nginx CPU** | | | **{:.2}** (audit and metrics on: {:.2}; target <= 1.30) | | |",
        micros(4) / micros(1),
        micros(5) / micros(1)
    ));
    rows.push(format!(
        "| hyper floor CPU / plain nginx CPU | | | {:.2} (regate above the floor: {:.0} µs) | | |",
        micros(3) / micros(1),
        micros(4) - micros(3)
    ));
    let bars: Vec<Bar> = (0..paths.len())
        .map(|i| Bar {
            label: SHORT[i],
            per_second: sums[i].0,
            cpu_micros: (i > 0).then(|| micros(i)),
        })
        .collect();
    let svg = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(CHART);
    let drawn = std::fs::create_dir_all(svg.parent().expect("a directory"))
        .map_err(Into::into)
        .and_then(|()| chart::draw(&svg, "Authorized manifest GET, 64 connections", &bars));
    match drawn {
        Ok(()) => eprintln!("chart written to {}", svg.display()),
        Err(error) => eprintln!("chart not written ({}): {error}", svg.display()),
    }
    rows
}

/// Where the chart goes, from the repository's root.
const CHART: &str = "docs/benchmarks/cpu-per-request.svg";

/// The paths' names under their bars.
const SHORT: [&str; 6] = [
    "direct",
    "nginx",
    "nginx+auth",
    "floor",
    "regate",
    "regate+audit",
];
