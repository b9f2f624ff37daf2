//! `cargo bench`: the gateway against its baselines, measured in one run on this machine.
//!
//! Three ways to the same `docker-registry`: direct, through a plain nginx reverse proxy, and
//! through regate (embedded authority, warm decision cache, registry token as Bearer). Reported:
//! authorized manifest HEAD requests/s at 64 connections (wrk), 1 GiB blob pull throughput
//! (curl), and regate's peak RSS during a 1 GiB push. Targets are ratios to the direct baseline;
//! nothing here asserts on time. Needs `wrk`, `nginx` and `curl` (Debian packages `wrk`,
//! `nginx-light`, `curl`). `BENCH_SECONDS` sets the length of each HEAD run (default 10).

#[path = "../tests/common/mod.rs"]
mod common;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Auth, Env, Image};

/// Size of the blobs pulled and pushed.
const BLOB_BYTES: u64 = 1 << 30;
/// Connections of the HEAD load.
const CONNECTIONS: u32 = 64;

fn main() {
    // `cargo bench` passes `--bench`; any other run (e.g. `cargo test --benches`) only checks
    // that the harness builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    for tool in ["wrk", "nginx", "curl"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            eprintln!("benchmark needs {tool}: apt-get install wrk nginx-light curl");
            std::process::exit(1);
        }
    }
    let seconds: u32 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);

    let env = Env::builder().namespaces(&["bench"]).run();
    let nginx = Nginx::start(env.dir(), &env.registry_addr().to_string());
    let api_token = env.token("builder", "bench");
    let bearer = registry_token(&env, &api_token);
    let auth = format!("Bearer {bearer}");

    let image = Image::unique(4096);
    env.seed("bench/app", "v1", &image);
    let targets = [
        ("direct", env.registry_url()),
        ("nginx", nginx.url()),
        ("regate", env.url()),
    ];

    // 1. Manifest HEAD requests/s at 64 connections.
    let script = env.dir().join("head.lua");
    fs::write(&script, "wrk.method = \"HEAD\"\n").expect("write wrk script");
    let mut rps = Vec::new();
    for (label, base) in &targets {
        let url = format!("{base}/v2/bench/app/manifests/v1");
        // Warm the pool and the decision cache, then measure.
        wrk(&script, &url, &auth, 2);
        let r = wrk(&script, &url, &auth, seconds);
        eprintln!("HEAD {label}: {r:.0} req/s");
        rps.push(r);
    }

    // 2. 1 GiB blob pull.
    let pull_file = big_file(env.dir(), "pull.bin", 0);
    let pull_digest = common::digest_file(&pull_file);
    put_blob(
        &env.registry_url(),
        None,
        "bench/big",
        &pull_file,
        &pull_digest,
    );
    let mut mbps = Vec::new();
    for (label, base) in &targets {
        let url = format!("{base}/v2/bench/big/blobs/{pull_digest}");
        let best = (0..2)
            .map(|_| curl_pull(&url, &auth))
            .fold(0.0_f64, f64::max);
        eprintln!("pull {label}: {best:.0} MiB/s");
        mbps.push(best);
    }

    // 3. regate's peak RSS during a 1 GiB push (peak reset first, so the push alone counts).
    let push_file = big_file(env.dir(), "push.bin", 1);
    let push_digest = common::digest_file(&push_file);
    let pid = env.regate_pid();
    let _ = fs::write(format!("/proc/{pid}/clear_refs"), "5");
    let started = Instant::now();
    put_blob(
        &env.url(),
        Some(&auth),
        "bench/pushed",
        &push_file,
        &push_digest,
    );
    let push_secs = started.elapsed().as_secs_f64();
    let rss_mib = common::peak_rss_kib(pid) as f64 / 1024.0;

    let table = format!(
        "| measure | direct | nginx | regate | regate / direct | target |\n\
         |---|---|---|---|---|---|\n\
         | manifest HEAD req/s, {CONNECTIONS} connections, {seconds} s | {:.0} | {:.0} | {:.0} | {:.2} | >= 0.80 |\n\
         | 1 GiB blob pull, MiB/s (best of 2) | {:.0} | {:.0} | {:.0} | {:.2} | >= 0.90 |\n\
         | regate peak RSS during a 1 GiB push ({:.1} s), MiB | | | {:.1} | | <= 64 |\n",
        rps[0],
        rps[1],
        rps[2],
        rps[2] / rps[0],
        mbps[0],
        mbps[1],
        mbps[2],
        mbps[2] / mbps[0],
        push_secs,
        rss_mib,
    );
    println!("\n{table}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-gateway.md");
    let _ = fs::write(&out, &table);
    eprintln!("table written to {}", out.display());
    drop(nginx);
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

/// Requests/s that wrk reports for `url`.
fn wrk(script: &Path, url: &str, auth: &str, seconds: u32) -> f64 {
    let out = Command::new("wrk")
        .args(["-t2", &format!("-c{CONNECTIONS}"), &format!("-d{seconds}s")])
        .arg("-s")
        .arg(script)
        .args(["-H", &format!("Authorization: {auth}")])
        .args(["-H", "Accept: application/vnd.oci.image.manifest.v1+json"])
        .arg(url)
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("Non-2xx"),
        "wrk saw error responses from {url}:\n{text}"
    );
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"))
}

/// A file of [`BLOB_BYTES`] pseudo-random bytes (cheap to make, not compressible).
fn big_file(dir: &Path, name: &str, seed: u64) -> PathBuf {
    let path = dir.join(name);
    let mut file = std::io::BufWriter::new(File::create(&path).expect("create blob file"));
    let mut x = 0x9E37_79B9_7F4A_7C15_u64 ^ seed;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..(BLOB_BYTES >> 20) {
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

/// MiB/s of one GET of `url`, body discarded.
fn curl_pull(url: &str, auth: &str) -> f64 {
    let out = Command::new("curl")
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
struct Nginx {
    child: Child,
    port: u16,
}

impl Nginx {
    fn start(dir: &Path, upstream: &str) -> Nginx {
        let port = common::free_port();
        let root = dir.join("nginx");
        fs::create_dir_all(&root).expect("create nginx dir");
        let conf = root.join("nginx.conf");
        fs::write(
            &conf,
            format!(
                "daemon off;\nworker_processes auto;\npid {root}/nginx.pid;\nerror_log {root}/error.log;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {root};\n  proxy_temp_path {root};\n\
                 upstream registry {{ server {upstream}; keepalive 64; }}\n\
                 server {{\n    listen 127.0.0.1:{port};\n    client_max_body_size 0;\n\
                 location / {{\n      proxy_pass http://registry;\n      proxy_http_version 1.1;\n\
                 proxy_set_header Connection \"\";\n      proxy_set_header Host $http_host;\n\
                 proxy_buffering off;\n      proxy_request_buffering off;\n    }}\n  }}\n}}\n",
                root = root.display(),
            ),
        )
        .expect("write nginx.conf");
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let nginx = Nginx { child, port };
        common::wait_for(Duration::from_secs(10), "nginx to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        nginx
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
