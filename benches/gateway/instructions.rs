//! `instructions`: instructions per authorized manifest GET, counted by valgrind's callgrind
//! in plain nginx (one process), the hyper floor (`floor.rs`) and regate (warm caches), each
//! sent the same request (Basic `anything:API-TOKEN`, which only regate checks). Unlike timings on a shared 2-core machine the counts
//! repeat for one binary, so they compare builds and show where a proxy's CPU goes. Each proxy
//! runs under `valgrind --tool=callgrind --instr-atstart=no`; 200 GETs warm it up uncounted,
//! then counting is switched on (`callgrind_control -i on`) for 2,000 GETs on a kept-alive
//! connection, one at a time. valgrind has no SHA instructions, so the SHA-256 regate hashes
//! tokens with runs in software there: that part is shown on its own. So is the embedded
//! authority's reloader, which walks the state directory every 250 ms whatever the load: under
//! valgrind's fiftyfold slowdown its walks would be charged to requests fifty times over. The
//! callgrind files are kept in `target/bench-instructions/` for `callgrind_annotate`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::floor::Floor;
use super::{Bench, common, nginx_under};
use common::Auth;

/// The table's header.
pub const HEADER: &str = "Instructions per authorized manifest GET (callgrind; 2,000 keep-alive \
GETs after 200 uncounted):\n\n\
| path | instructions per request | SHA-256 in software (valgrind) | the state reloader (by the clock) | \
per request, without those two | ratio to nginx |\n\
|---|---|---|---|---|---|";

/// GETs before counting starts.
const WARM_UP: usize = 200;
/// GETs counted.
const COUNTED: usize = 2000;
/// The path loaded.
const MANIFEST: &str = "/v2/bench/app/manifests/v1";

/// The rows of the table under [`HEADER`]; none when valgrind is not installed.
pub fn measure(bench: &Bench) -> Vec<String> {
    let installed = Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        eprintln!("instructions: valgrind is not installed (apt-get install valgrind); skipped");
        return Vec::new();
    }
    // Kept after the run, for `callgrind_annotate` (the bench's own directory is temporary).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-instructions");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create target/bench-instructions");
    let launcher = |name: &str| -> Vec<String> {
        vec![
            "valgrind".into(),
            "--tool=callgrind".into(),
            "--instr-atstart=no".into(),
            format!("--callgrind-out-file={}", dir.join(name).display()),
        ]
    };
    let registry = bench.env.registry_addr().to_string();
    // Every proxy gets the same request: nginx and the floor ignore the credential, but they
    // read and forward it as regate reads it.
    let token = bench.env.token("builder", "bench");
    let api = Auth::Basic(&token);

    let nginx = nginx_under(&dir, "nginx-callgrind", &registry, &launcher("nginx.cg"));
    let nginx_count = count(&nginx.url(), nginx.pids()[0], api, &dir.join("nginx.cg"));
    drop(nginx);

    let floor = Floor::start(&registry, &launcher("floor.cg"));
    let floor_count = count(&floor.url(), floor.pid(), api, &dir.join("floor.cg"));
    drop(floor);

    let regate_count = counted_regate(
        bench,
        &launcher("regate.cg"),
        &dir.join("regate.cg"),
        api,
        None,
    );
    let audit = dir.join("audit.log");
    let config = dir.join("audit.yaml");
    std::fs::write(&config, format!("audit:\n  path: {}\n", audit.display()))
        .expect("write the audit config");
    let audited_count = counted_regate(
        bench,
        &launcher("regate-audit.cg"),
        &dir.join("regate-audit.cg"),
        api,
        Some(&config),
    );

    let per_request = |n: u64| n as f64 / COUNTED as f64;
    let nginx_per = per_request(nginx_count.total - nginx_count.sha256 - nginx_count.reloader);
    [
        ("nginx, no auth", nginx_count),
        ("hyper floor: a bare hyper proxy, no auth", floor_count),
        ("regate (Basic API token)", regate_count),
        ("regate, audit log on", audited_count),
    ]
    .into_iter()
    .map(|(label, counted)| {
        let net = per_request(counted.total - counted.sha256 - counted.reloader);
        format!(
            "| {label} | {:.1}k | {:.1}k | {:.1}k | {:.1}k | {:.2} |",
            per_request(counted.total) / 1000.0,
            per_request(counted.sha256) / 1000.0,
            per_request(counted.reloader) / 1000.0,
            net / 1000.0,
            net / nginx_per,
        )
    })
    .collect()
}

/// The count of a `regate serve` (with `config`, if given) started by `launcher`, which writes
/// its callgrind files to `out` (and its log beside them).
fn counted_regate(
    bench: &Bench,
    launcher: &[String],
    out: &Path,
    auth: Auth<'_>,
    config: Option<&Path>,
) -> Counted {
    let (mut regate, url) = start_regate(bench, launcher, &out.with_extension("log"), config);
    let counted = count(&url, regate.id(), auth, out);
    let _ = regate.kill();
    let _ = regate.wait();
    counted
}

/// A `regate serve` of the bench's state and registry (with `config`, if given), started by
/// `launcher` and logging to `log`, and its URL.
fn start_regate(
    bench: &Bench,
    launcher: &[String],
    log: &Path,
    config: Option<&Path>,
) -> (Child, String) {
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(log).expect("create the log");
    let child = Command::new(&launcher[0])
        .args(&launcher[1..])
        .arg(common::REGATE)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--upstream", &bench.env.registry_url()])
        .arg("--state")
        .arg(bench.env.state_dir())
        .args(
            config
                .map(|c| ["--config".as_ref(), c.as_os_str()])
                .into_iter()
                .flatten(),
        )
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start regate under valgrind");
    let client = common::client();
    common::wait_for(Duration::from_secs(60), "regate under valgrind", || {
        client.get(format!("{url}/healthz")).send().ok()
    });
    (child, url)
}

/// Instructions counted in one proxy: all, and the parts left out of the comparison.
struct Counted {
    total: u64,
    sha256: u64,
    reloader: u64,
}

/// Warms the proxy at `url` (process `pid`, writing callgrind data to `out`) up, counts
/// [`COUNTED`] GETs, and reads the count back.
fn count(url: &str, pid: u32, auth: Auth<'_>, out: &Path) -> Counted {
    let client = common::client();
    let run = |n: usize| {
        for _ in 0..n {
            let reply = auth
                .apply(client.get(format!("{url}{MANIFEST}")))
                .header("Accept", "application/vnd.oci.image.manifest.v1+json")
                .send()
                .and_then(|r| r.error_for_status());
            // Read whole, so the connection is kept for the next GET.
            let body = reply.and_then(|r| r.bytes());
            assert!(body.is_ok(), "GET {url}{MANIFEST}: {body:?}");
        }
    };
    run(WARM_UP);
    control(pid, &["-i", "on"]);
    run(COUNTED);
    control(pid, &["-i", "off"]);
    control(pid, &["-d"]);
    let dump = PathBuf::from(format!("{}.1", out.display()));
    common::wait_for(Duration::from_secs(30), "the callgrind dump", || {
        std::fs::metadata(&dump)
            .ok()
            .filter(|m| m.len() > 0)
            .map(|_| ())
    });
    std::thread::sleep(Duration::from_millis(500));
    totals(&dump)
}

/// `callgrind_control ARGS PID`.
fn control(pid: u32, args: &[&str]) {
    let status = Command::new("callgrind_control")
        .args(args)
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .status()
        .expect("callgrind_control");
    assert!(status.success(), "callgrind_control {args:?} {pid}");
}

/// The program's total, and what SHA-256 and the state reloader took (inclusive), from a
/// callgrind dump.
fn totals(dump: &Path) -> Counted {
    let out = Command::new("callgrind_annotate")
        .args(["--inclusive=yes", "--threshold=100"])
        .arg(dump)
        .output()
        .expect("callgrind_annotate");
    let text = String::from_utf8_lossy(&out.stdout);
    let number = |line: &str| -> u64 {
        line.split_whitespace()
            .next()
            .map(|n| n.replace(',', ""))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let total = text
        .lines()
        .find(|l| l.contains("PROGRAM TOTALS"))
        .map(number)
        .unwrap_or_else(|| panic!("no total in {}:\n{text}", dump.display()));
    let inclusive = |function: &str| {
        text.lines()
            .find(|l| l.contains(&format!(":{function} ")))
            .map(number)
            .unwrap_or(0)
    };
    Counted {
        total,
        sha256: inclusive("sha2::sha256::compress256"),
        reloader: inclusive("regate::authority::embedded::Embedded::poll"),
    }
}
