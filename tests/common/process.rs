//! Child processes: starting the registry and regate, killing them with the test, bounded runs,
//! their output and memory.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::*;

pub(crate) struct Registry {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) log: PathBuf,
}

impl Registry {
    /// Start `docker-registry` on a free loopback port (picked by binding port 0 and letting
    /// go; retried if another process takes it first) and wait until `GET /v2/` answers (200,
    /// or 401 when `extra` configures auth; 400 to plain HTTP when it configures TLS). Its files
    /// are named after `name`.
    pub(crate) fn start(dir: &Path, name: &str, extra: &str) -> Registry {
        Registry::start_with_env(dir, name, extra, &[])
    }

    /// [`Registry::start`] with environment variables `vars` (`SSL_CERT_FILE` for a registry
    /// that is itself a client over HTTPS, as a pull-through cache is).
    pub(crate) fn start_with_env(
        dir: &Path,
        name: &str,
        extra: &str,
        vars: &[(&str, &str)],
    ) -> Registry {
        let root = dir.join(format!("{name}-data"));
        fs::create_dir_all(&root).expect("create registry root");
        let mut last_log = String::new();
        for attempt in 0..5 {
            let port = free_port();
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let config = dir.join(format!("{name}.yml"));
            fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  cache:\n    blobdescriptor: inmemory\nhttp:\n  addr: {addr}\n  secret: regate-test-secret\n{extra}",
                    root.display()
                ),
            )
            .expect("write registry config");
            let log = dir.join(format!("{name}-{attempt}.log"));
            let out = File::create(&log).expect("create registry log");
            let err = out.try_clone().expect("clone registry log");
            let mut cmd = Command::new("docker-registry");
            cmd.arg("serve")
                .arg(&config)
                .envs(vars.iter().copied())
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err);
            die_with_parent(&mut cmd);
            let mut child = cmd
                .spawn()
                .expect("spawn docker-registry (is Debian's docker-registry installed? .ci/run installs it)");
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                let probe = build_raw("GET", "/v2/", &addr.to_string(), &[], b"");
                // A registry serving TLS answers plain HTTP with 400: it is up.
                let tls = extra.contains("tls:");
                if raw_http(addr, &probe).is_ok_and(|reply| {
                    matches!(reply.status, 200 | 401) || (tls && reply.status == 400)
                }) {
                    return Registry { child, addr, log };
                }
                if Instant::now() > deadline {
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
            kill(&mut child);
            last_log = read_lossy(&log);
        }
        panic!(
            "docker-registry did not come up after 5 attempts; last log:\n{}",
            tail(&last_log, 30)
        );
    }
}

pub(crate) struct Regate {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) stderr: PathBuf,
    pub(crate) stdout: PathBuf,
    /// It said `listening on https://…`.
    pub(crate) https: bool,
}

impl Regate {
    /// Spawn `regate ARGS` and wait (bounded) for its `listening on http(s)://ADDR` line.
    pub(crate) fn start(dir: &Path, args: &[String]) -> Regate {
        Regate::start_with(dir, args, &[])
    }

    /// [`Regate::start`] with `envs` set in its environment.
    pub(crate) fn start_with(dir: &Path, args: &[String], envs: &[(String, String)]) -> Regate {
        let n = SERIAL.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let stderr = dir.join(format!("regate-{n}.stderr"));
        let stdout = dir.join(format!("regate-{n}.stdout"));
        let mut cmd = Command::new(REGATE);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr).expect("create regate stderr file"));
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        cmd.envs(envs.iter().map(|(k, v)| (k, v)));
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().expect("spawn regate serve");
        let pipe = child.stdout.take().expect("regate stdout");
        let (tx, rx) = mpsc::channel::<String>();
        let copy = stdout.clone();
        thread::spawn(move || {
            let mut file = File::create(copy).ok();
            let mut tx = Some(tx);
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(f) = file.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                if let Some(rest) = line.trim().strip_prefix("listening on ")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(rest.trim().to_string());
                }
            }
        });
        let got = rx.recv_timeout(STARTUP);
        let https = got.as_deref().is_ok_and(|url| url.starts_with("https://"));
        let got = got.map(|url| {
            url.trim_start_matches("https://")
                .trim_start_matches("http://")
                .to_string()
        });
        let addr = match got.as_deref().map(str::parse::<SocketAddr>) {
            Ok(Ok(addr)) => addr,
            other => {
                kill(&mut child);
                let why = match other {
                    Ok(Err(e)) => format!("its listening line has no address: {e}"),
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        format!("no `listening on http://ADDR` line on stdout within {STARTUP:?}")
                    }
                    _ => "it exited before printing `listening on http://ADDR`".to_string(),
                };
                panic!(
                    "regate {} failed to start: {why}\nstdout:\n{}\nstderr tail:\n{}",
                    args.join(" "),
                    tail(&read_lossy(&stdout), 10),
                    tail(&read_lossy(&stderr), 40)
                );
            }
        };
        Regate {
            child,
            addr,
            stderr,
            stdout,
            https,
        }
    }
}

pub(crate) static SERIAL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Ask the kernel to SIGKILL the child if the thread that spawned it (the test) dies.
pub(crate) fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

pub(crate) fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Writes a `.dockerconfigjson` to `path`: for each (key, password), Basic `user:password`; and
/// an empty `credHelpers`, a top-level key edits must keep.
pub fn write_docker_config(path: &Path, user: &str, entries: &[(&str, &str)]) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let auths: serde_json::Map<String, serde_json::Value> = entries
        .iter()
        .map(|(key, password)| {
            let auth = b64.encode(format!("{user}:{password}"));
            (key.to_string(), serde_json::json!({ "auth": auth }))
        })
        .collect();
    let json = serde_json::json!({ "auths": auths, "credHelpers": {} });
    fs::write(path, serde_json::to_vec_pretty(&json).expect("json")).expect("write docker config");
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Run a command with stdin closed, killing it after `limit`.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let mut out_pipe = child.stdout.take().expect("stdout");
    let mut err_pipe = child.stderr.take().expect("stderr");
    let out_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

/// Panic with the command's output unless it failed.
pub fn expect_failure(out: &Output, what: &str) {
    assert!(
        !out.status.success(),
        "{what} must fail: {}",
        show_output(out)
    );
}

/// A command's standard output, as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command's standard error, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A command's exit status, stdout and stderr, for assertion messages.
pub fn show_output(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub(crate) fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Peak resident set size (`VmHWM`) of a process, in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// Poll `check` every 50 ms until it returns `Some`, or panic after `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `cmd` with `input` on its stdin and collects its output.
pub fn with_stdin(mut cmd: Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("output")
}
