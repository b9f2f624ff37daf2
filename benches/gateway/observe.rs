//! `observe`: what the operator's view costs. Two more gateways in front of the bench's
//! registry, identical but for what an operator switches on: `off` has no audit log and nobody
//! scrapes it; `on` writes the audit log to a file and has `/metrics` scraped every second
//! (Prometheus scrapes every 15 s to 1 min, so this is the heavy end). Metrics are always
//! recorded (atomic counters, no switch), so both pay for recording; `on` adds the scrapes.
//!
//! Each round loads direct, `off` and `on` in turn with authorized manifest GETs (the bench's
//! hyper load, [`super::CONNECTIONS`] connections, after a 2 s warm-up), reading each regate's
//! CPU from `/proc/PID/stat` around the measured part only; the rounds are averaged.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::common::Env;
use super::{Bench, cpu_seconds, load};

/// Interleaved rounds of direct, off, on.
const ROUNDS: u32 = 3;
/// The path loaded.
const MANIFEST: &str = "/v2/bench/app/manifests/v1";

/// The table's header.
pub const HEADER: &str = "Metrics and audit log (manifest GET, 64 connections; `off`: no audit \
log, not scraped; `on`: audit log to a file, /metrics scraped every second; CPU from /proc):\n\n\
| measure | direct | regate off | regate on | on / off |\n|---|---|---|---|---|";

/// One of the two gateways, and the Bearer its realm issued for `bench/app`.
pub(super) struct Gateway {
    pub env: Env,
    bearer: String,
}

impl Gateway {
    /// A gateway in front of the bench's registry, with `config` added to its configuration.
    pub fn start(bench: &Bench, config: &str) -> Gateway {
        let env = Env::builder()
            .namespaces(&["bench"])
            .upstream(&bench.env.registry_url())
            .gateway_config(config)
            .run();
        let api = env.token("builder", "bench");
        let bearer = format!("Bearer {}", super::registry_token(&env, &api));
        Gateway { env, bearer }
    }
}

/// Requests/s, answers and regate CPU seconds for one measured run against `base` (after a
/// 2 s warm-up); `pid` is regate's.
pub(super) fn run(
    bench: &Bench,
    base: &str,
    auth: &str,
    pid: Option<u32>,
    seconds: u32,
) -> (f64, u64, f64) {
    let addr = base.trim_start_matches("http://");
    let get = http::Method::GET;
    bench.runtime.block_on(load(
        get.clone(),
        addr,
        MANIFEST,
        auth,
        Duration::from_secs(2),
    ));
    let before = pid.map_or(0.0, cpu_seconds);
    let r = bench.runtime.block_on(load(
        get,
        addr,
        MANIFEST,
        auth,
        Duration::from_secs(seconds.into()),
    ));
    let cpu = pid.map_or(0.0, cpu_seconds) - before;
    assert_eq!(r.errors, 0, "GET {base}: {} answers were not 200", r.errors);
    (r.per_second, r.ok, cpu)
}

/// Scrapes `url` every second until dropped.
pub(super) struct Scraper {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Scraper {
    pub fn start(url: String) -> Scraper {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let client = super::common::client();
            let mut scrapes = 0;
            while !flag.load(Ordering::Relaxed) {
                let reply = client.get(&url).send().expect("scrape /metrics");
                assert!(
                    reply.status().is_success(),
                    "/metrics answered {}",
                    reply.status()
                );
                let _ = reply.bytes();
                scrapes += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
            scrapes
        });
        Scraper {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Scraper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The rows of the table under [`HEADER`].
pub fn measure(bench: &Bench, seconds: u32) -> Vec<String> {
    let audit = bench.env.dir().join("observe-audit.log");
    let off = Gateway::start(bench, "");
    let on = Gateway::start(bench, &format!("audit:\n  path: {}\n", audit.display()));
    let _scraper = Scraper::start(format!("{}/metrics", on.env.url()));

    let mut sums = [(0.0, 0u64, 0.0); 3];
    for round in 0..ROUNDS {
        let direct = run(
            bench,
            &bench.env.registry_url(),
            &bench.bearer,
            None,
            seconds,
        );
        let quiet = run(
            bench,
            &off.env.url(),
            &off.bearer,
            Some(off.env.regate_pid()),
            seconds,
        );
        let seen = run(
            bench,
            &on.env.url(),
            &on.bearer,
            Some(on.env.regate_pid()),
            seconds,
        );
        eprintln!(
            "observe round {round}: direct {:.0}, off {:.0}, on {:.0} req/s",
            direct.0, quiet.0, seen.0
        );
        for (sum, r) in sums.iter_mut().zip([direct, quiet, seen]) {
            sum.0 += r.0 / f64::from(ROUNDS);
            sum.1 += r.1;
            sum.2 += r.2;
        }
    }
    let [direct, quiet, seen] = sums;
    let micros = |(_, requests, cpu): (f64, u64, f64)| cpu * 1e6 / requests as f64;
    let (cpu_off, cpu_on) = (micros(quiet), micros(seen));

    // Every GET through `on` is one decision, so one line; the file holds them whole.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        let lines = text.lines().count() as u64;
        if lines >= seen.1 || std::time::Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let bytes = std::fs::metadata(&audit).map_or(0, |m| m.len());
    assert!(
        lines >= seen.1,
        "{lines} audit lines for {} requests",
        seen.1
    );
    vec![
        format!(
            "| manifest GET req/s (mean of {ROUNDS} rounds of {seconds} s) | {:.0} | {:.0} ({:.2} of direct) | {:.0} ({:.2} of direct) | {:.2} |",
            direct.0,
            quiet.0,
            quiet.0 / direct.0,
            seen.0,
            seen.0 / direct.0,
            seen.0 / quiet.0
        ),
        format!(
            "| regate CPU per request, µs | | {cpu_off:.0} | {cpu_on:.0} | {:.2} |",
            cpu_on / cpu_off
        ),
        format!(
            "| audit lines written (bytes per line) | | | {lines} ({}) | |",
            bytes / lines.max(1)
        ),
    ]
}
