//! Holding regate down (docs/behaviour.md §10): idle and slow connections are closed after
//! their deadlines and shed first when connections run short, and failed logins are rate
//! limited per client address and per user name without touching other clients.
//! Every socket here goes to 127.0.0.x, and every loop is bounded.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Short deadlines, so the test can watch them pass.
const DEADLINES: &str = "connections:\n  header_timeout: 2s\n  idle_timeout: 2s\n";

fn config(extra: &str) -> String {
    let base = if AuthorityMode::from_env().is_kubernetes() {
        KUBERNETES_TEST_CONFIG
    } else {
        ""
    };
    format!("{base}{extra}")
}

/// `n` sockets that hold a connection without a request in flight: a third send nothing, a
/// third half a header, a third one whole request and then nothing (keep-alive).
fn idle_sockets(addr: SocketAddr, host: &str, n: usize) -> Vec<TcpStream> {
    let mut sockets = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(s) => s,
            // Refused or reset because regate is full: that is shedding at work.
            Err(_) => continue,
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        match i % 3 {
            0 => {}
            1 => {
                let _ = s
                    .write_all(format!("GET /v2/ HTTP/1.1\r\nHost: {host}\r\nX-Slow: ").as_bytes());
            }
            _ => {
                let _ = s
                    .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf);
            }
        }
        sockets.push(s);
    }
    sockets
}

/// `GET /healthz` on a fresh connection, with `limit` to connect and answer.
fn healthz_within(addr: SocketAddr, host: &str, limit: Duration) -> Result<Reply, String> {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, limit).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(limit)).ok();
    s.write_all(
        format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .map_err(|e| format!("read after {:?}: {e}", started.elapsed()))?;
    let text = String::from_utf8_lossy(&buf);
    if !text.starts_with("HTTP/1.1 200") {
        return Err(format!("answer: {text}"));
    }
    Ok(Reply {
        status: 200,
        headers: Vec::new(),
        body: buf,
    })
}

/// Whether regate has closed `s` (EOF or reset), waiting up to `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).ok();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            // A 408 or the rest of an earlier answer may come first; then the close.
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Lets this test process hold a thousand sockets.
fn raise_own_open_file_limit() {
    // SAFETY: plain calls on a struct owned here.
    unsafe {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 {
            rl.rlim_cur = rl.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
}

#[test]
fn a_thousand_idle_sockets_neither_stop_a_client_nor_stay_open() {
    raise_own_open_file_limit();
    let env = Env::builder()
        .namespaces(&["project-a"])
        .gateway_config(&config(DEADLINES))
        .run();
    let mut sockets = idle_sockets(env.addr(), &env.host(), 1000);
    assert!(
        sockets.len() >= 900,
        "regate accepted the sockets: {}",
        sockets.len()
    );
    if let Err(e) = healthz_within(env.addr(), &env.host(), Duration::from_secs(1)) {
        panic!(
            "a client behind 1,000 idle sockets is served within 1 s: {e}\n{}",
            env.regate_log_tail(20)
        );
    }
    let token = env.token("default", "project-a");
    let reply = env.send("GET", "/v2/", Auth::Basic(&token));
    env.expect_status(&reply, 200, "a logged-in client behind the idle sockets");
    // Deadline 2 s; each socket is given until 10 s after the start to be closed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let open: Vec<usize> = sockets
        .iter_mut()
        .enumerate()
        .filter_map(|(i, s)| {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(50));
            (!closed_within(s, left)).then_some(i)
        })
        .collect();
    assert!(
        open.is_empty(),
        "idle sockets still open after their deadline: {open:?}"
    );
}

/// A running regate with an open-file limit of 64 (soft and hard), as an attacker would meet it.
fn regate_with_open_file_limit(env: &Env, limit: u64) -> (Child, SocketAddr) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_regate"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--upstream"])
        .arg(env.registry_url())
        .env("REGATE_STATE", env.state_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe; it only lowers this child's own limit.
    unsafe {
        cmd.pre_exec(move || {
            let rl = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn regate");
    let mut out = child.stdout.take().expect("stdout");
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while out.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&line).to_string();
    let addr = line
        .strip_prefix("listening on http://")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("regate printed {line:?}"));
    (child, addr)
}

/// With 64 file descriptors, 80 idle sockets would make `accept` fail for everyone: idle ones
/// are shed instead, and `/healthz` answers.
#[test]
fn idle_sockets_are_shed_when_descriptors_run_short() {
    let env = Env::builder()
        .namespaces(&["project-a"])
        .without_regate()
        .run();
    env.regate_ok(&["create", "namespace", "project-b"]);
    let (mut child, addr) = regate_with_open_file_limit(&env, 64);
    let host = addr.to_string();
    let mut sockets = idle_sockets(addr, &host, 80);
    let result = healthz_within(addr, &host, Duration::from_secs(1));
    let shed = sockets
        .iter_mut()
        .take(20)
        .filter_map(|s| closed_within(s, Duration::from_millis(200)).then_some(()))
        .count();
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        panic!("/healthz behind 80 idle sockets with 64 descriptors: {e}");
    }
    assert!(shed > 0, "the oldest idle sockets were shed");
}

/// A client bound to `ip` (any 127.0.0.x), so tests can be several clients.
fn client_from(ip: &str) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .local_address(ip.parse::<IpAddr>().expect("ip"))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

fn get_v2(env: &Env, client: &reqwest::blocking::Client, auth: Auth, xff: Option<&str>) -> Reply {
    let mut rb = auth.apply(client.get(format!("{}/v2/", env.url())));
    if let Some(xff) = xff {
        rb = rb.header("X-Forwarded-For", xff);
    }
    Reply::from_request(rb)
}

/// 500 wrong logins from one address in a burst: after the burst, 429 TOOMANYREQUESTS with
/// Retry-After, even for a right token (a guess made while barred cannot succeed); another
/// address is served as if nothing happened; the address is let in again after Retry-After.
#[test]
fn failed_logins_are_limited_per_address() {
    let env = Env::builder()
        .namespaces(&["project-a"])
        .gateway_config(&config("failed_logins:\n  burst: 10\n  refill: 1s\n"))
        .run();
    let token = env.token("default", "project-a");
    let attacker = client_from("127.0.0.2");
    let mut statuses = std::collections::BTreeMap::new();
    let mut retry_after = None;
    for i in 0..500 {
        let reply = get_v2(&env, &attacker, Auth::Basic(&format!("wrong-{i}")), None);
        *statuses.entry(reply.status).or_insert(0) += 1;
        if reply.status == 429 {
            env.expect_error(&reply, 429, "TOOMANYREQUESTS", "a barred address");
            retry_after = reply
                .header("Retry-After")
                .and_then(|v| v.parse::<u64>().ok());
        }
    }
    assert!(
        statuses.get(&401).is_some_and(|&n| (10..=20).contains(&n)),
        "{statuses:?}"
    );
    assert!(
        statuses.get(&429).is_some_and(|&n| n >= 480),
        "{statuses:?}"
    );
    let wait = retry_after.expect("429 carries Retry-After in seconds");
    assert!((1..=60).contains(&wait), "Retry-After {wait}");

    let barred = get_v2(&env, &attacker, Auth::Basic(&token), None);
    env.expect_error(
        &barred,
        429,
        "TOOMANYREQUESTS",
        "a right token from the barred address",
    );
    // Another address is served, even presenting the user name the attacker used.
    let other = get_v2(&env, &client_from("127.0.0.3"), Auth::Basic(&token), None);
    env.expect_status(&other, 200, "another address is unaffected");
    let anonymous = get_v2(&env, &client_from("127.0.0.4"), Auth::None, None);
    env.expect_status(
        &anonymous,
        401,
        "an anonymous client elsewhere gets the usual challenge",
    );

    std::thread::sleep(Duration::from_secs(wait + 1));
    let again = get_v2(&env, &attacker, Auth::Basic(&token), None);
    env.expect_status(&again, 200, "the address after Retry-After");
}

/// Wrong logins presenting one user name from many addresses bar that name; X-Forwarded-For
/// names the client only when a trusted proxy sent it.
#[test]
fn failed_logins_are_limited_per_user_name_and_forwarded_address() {
    let env = Env::builder()
        .namespaces(&["project-a"])
        .gateway_config(&config(
            "failed_logins:\n  burst: 5\n  refill: 60s\ntrusted_proxies: [127.0.0.1]\n",
        ))
        .run();
    use base64::Engine as _;
    let basic = |user: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:wrong"))
        )
    };
    let ci = basic("ci-bot");
    let mut last = 0;
    for i in 0..8 {
        let reply = get_v2(
            &env,
            &client_from(&format!("127.0.1.{}", i + 1)),
            Auth::Header(&ci),
            None,
        );
        last = reply.status;
    }
    assert_eq!(
        last, 429,
        "failures naming ci-bot are 429 after 5 from 8 addresses"
    );
    // The name is not barred for a right token: anyone may type any user name.
    let token = env.regate_ok(&["create", "token", "default", "-n", "project-a"]);
    let right = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("ci-bot:{token}"))
    );
    let ok = get_v2(&env, &client_from("127.0.1.60"), Auth::Header(&right), None);
    env.expect_status(&ok, 200, "a right token presenting the name ci-bot");
    let other_name = get_v2(
        &env,
        &client_from("127.0.1.50"),
        Auth::Header(&basic("someone")),
        None,
    );
    env.expect_status(&other_name, 401, "another name from a fresh address");

    // Through the trusted proxy (127.0.0.1), each forwarded client has its own allowance.
    let proxy = client_from("127.0.0.1");
    for i in 0..8 {
        let xff = format!("198.51.100.{i}");
        let reply = get_v2(&env, &proxy, Auth::Bearer("wrong"), Some(&xff));
        env.expect_status(&reply, 401, &format!("forwarded client {xff}"));
    }
    // From an untrusted peer the header is ignored: the peer itself is counted.
    let untrusted = client_from("127.0.2.1");
    let statuses: Vec<u16> = (0..8)
        .map(|i| {
            get_v2(
                &env,
                &untrusted,
                Auth::Bearer("wrong"),
                Some(&format!("203.0.113.{i}")),
            )
            .status
        })
        .collect();
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
}

/// A body regate reads itself (here the token endpoint's OAuth2 form) has the request's
/// deadline and a cap (docs/behaviour.md §10): one trickled a byte a second is answered 408
/// at `request_timeout` and its connection closed; one declared too large is answered 413 at
/// once, unread.
#[test]
fn a_token_form_that_trickles_or_is_too_large_is_refused_within_the_deadline() {
    let limit = Duration::from_secs(2);
    let env = Env::builder()
        .namespaces(&["project-a"])
        .gateway_config(&config("connections:\n  request_timeout: 2s\n"))
        .run();
    let head = |length: usize| {
        format!(
            "POST /openshift/token HTTP/1.1\r\nHost: {}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\n\r\n",
            env.host()
        )
    };
    let every = Duration::from_secs(1);
    let slow = trickle(env.addr(), &head(100), every, Duration::from_secs(15));
    slow.expect_cut_at(408, limit, "connections.request_timeout", "a trickled form");

    let large = trickle(env.addr(), &head(10 << 20), every, Duration::from_secs(15));
    large.expect_cut_at(413, Duration::ZERO, "", "a form past the cap");
    env.expect_error(&large.reply, 413, "SIZE_INVALID", "a form past the cap");
}

/// Clients trickling anonymous token forms take no place among `max_in_flight`: the form is read
/// before the request is admitted, and one address has at most `max_in_flight_per_client` such
/// requests (more are 503 at once). Meanwhile a client with a valid token still gets its
/// registry token and its manifest, and the probes answer.
#[test]
fn trickling_anonymous_forms_hold_no_place_others_need() {
    let env = Env::builder()
        .namespaces(&["project-a"])
        .gateway_config(&config(
            "connections:\n  request_timeout: 6s\n  max_in_flight: 2\n  \
             max_in_flight_per_client: 4\n",
        ))
        .run();
    push_image(
        &env.registry_url(),
        Auth::None,
        "project-a/app",
        "v1",
        &Image::unique(256),
    )
    .unwrap_or_else(|r| panic!("push to the registry: {}", r.status));
    let puller = env.token("default", "project-a");
    let head = format!(
        "POST /openshift/token HTTP/1.1\r\nHost: {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n",
        env.host()
    );
    let addr = env.addr();
    let slow: Vec<_> = (0..8)
        .map(|_| {
            let head = head.clone();
            std::thread::spawn(move || {
                trickle(addr, &head, Duration::from_secs(1), Duration::from_secs(20))
            })
        })
        .collect();
    // Every trickler has sent its headers and is being read (or was turned away).
    std::thread::sleep(Duration::from_millis(1500));

    let started = Instant::now();
    let token = env.send(
        "GET",
        "/openshift/token?scope=repository:project-a/app:pull",
        Auth::Basic(&puller),
    );
    assert_eq!(token.status, 200, "the token: {token}");
    assert_eq!(
        env.get_manifest("project-a/app", "v1", Auth::Basic(&puller))
            .status,
        200,
        "the manifest"
    );
    assert_eq!(env.send("GET", "/healthz", Auth::None).status, 200);
    let ready = env.send("GET", "/readyz", Auth::None);
    assert_eq!(ready.status, 200, "{ready}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered while the forms still trickle: {:?}",
        started.elapsed()
    );

    let mut statuses: Vec<u16> = slow
        .into_iter()
        .map(|t| t.join().expect("trickler").reply.status)
        .collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [408, 408, 408, 408, 503, 503, 503, 503],
        "four read until the deadline, four turned away at once"
    );
    let metrics = env.send("GET", "/metrics", Auth::None).text();
    assert!(
        metrics.contains("regate_client_limited_requests_total 4"),
        "{metrics}"
    );
}
