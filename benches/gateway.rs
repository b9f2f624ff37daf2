//! `cargo bench`: the gateway against its baselines, measured in one run on this machine.
//!
//! Three ways to the same `docker-registry`: direct, through a plain nginx reverse proxy, and
//! through regate (embedded authority, warm decision cache, registry token as Bearer). Reported:
//! authorized manifest HEAD requests/s at 64 keep-alive connections (a hyper load generator in
//! this file: wrk cannot do HEAD, it waits for a body that never comes), 1 GiB blob pull
//! throughput (curl), and regate's peak RSS during a 1 GiB push. Targets are ratios to the
//! direct baseline; nothing here asserts on time. Needs `nginx` and `curl` (Debian packages
//! `nginx-light`, `curl`). `BENCH_SECONDS` sets the length of each HEAD run (default 10);
//! `BENCH_ONLY=head` or `pull` runs only that measure.

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
    for tool in ["nginx", "curl"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            eprintln!("benchmark needs {tool}: apt-get install nginx-light curl");
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut rps = Vec::new();
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    for (label, base) in targets.iter().filter(|_| only != "pull") {
        let addr = base.trim_start_matches("http://").to_string();
        let path = "/v2/bench/app/manifests/v1";
        // Warm the pools and the decision cache, then measure.
        runtime.block_on(head_load(&addr, path, &auth, Duration::from_secs(2)));
        let r = runtime.block_on(head_load(
            &addr,
            path,
            &auth,
            Duration::from_secs(seconds.into()),
        ));
        eprintln!("HEAD {label}: {r:.0} req/s");
        rps.push(r);
    }

    if only == "head" {
        println!(
            "| manifest HEAD req/s | {:.0} | {:.0} | {:.0} | {:.2} |",
            rps[0],
            rps[1],
            rps[2],
            rps[2] / rps[0]
        );
        return;
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
    let pid = env.regate_pid();
    let mut regate_cpu = 0.0;
    for (label, base) in &targets {
        let url = format!("{base}/v2/bench/big/blobs/{pull_digest}");
        let before = cpu_seconds(pid);
        let best = (0..3)
            .map(|_| curl_pull(&url, &auth))
            .fold(0.0_f64, f64::max);
        if *label == "regate" {
            regate_cpu = (cpu_seconds(pid) - before) / 3.0;
        }
        eprintln!("pull {label}: {best:.0} MiB/s");
        mbps.push(best);
    }
    if only == "pull" {
        return;
    }

    // 3. regate's peak RSS during a 1 GiB push (peak reset first, so the push alone counts).
    let push_file = big_file(env.dir(), "push.bin", 1);
    let push_digest = common::digest_file(&push_file);
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
         | 1 GiB blob pull, MiB/s (best of 3) | {:.0} | {:.0} | {:.0} | {:.2} | >= 0.90 |\n\
         | regate CPU seconds per 1 GiB pulled | | | {:.2} | | |\n\
         | regate peak RSS during a 1 GiB push ({:.1} s), MiB | | | {:.1} | | <= 64 |\n",
        rps[0],
        rps[1],
        rps[2],
        rps[2] / rps[0],
        mbps[0],
        mbps[1],
        mbps[2],
        mbps[2] / mbps[0],
        regate_cpu,
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

/// Requests/s of manifest HEADs on [`CONNECTIONS`] keep-alive connections for `length`.
/// Every answer must be 200, else the run panics.
async fn head_load(addr: &str, path: &str, auth: &str, length: Duration) -> f64 {
    use http_body_util::Empty;
    let deadline = tokio::time::Instant::now() + length;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (addr, path, auth) = (addr.to_string(), path.to_string(), auth.to_string());
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
            let mut done = 0u64;
            while tokio::time::Instant::now() < deadline {
                let req = http::Request::head(&path)
                    .header("host", &addr)
                    .header("authorization", &auth)
                    .header("accept", "application/vnd.oci.image.manifest.v1+json")
                    .body(Empty::<bytes::Bytes>::new())
                    .expect("request");
                sender.ready().await.expect("connection ready");
                let response = sender.send_request(req).await.expect("response");
                assert_eq!(response.status(), 200, "HEAD {addr}{path}");
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("load task");
    }
    total as f64 / started.elapsed().as_secs_f64()
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
        // SIGTERM, not SIGKILL: the master then stops its workers instead of orphaning them.
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
