//! Refusals a load balancer understands (docs/behaviour.md §10, connections): regate answers
//! 401/403 before reading an upload's body, then reads and throws the body away within bounds.
//! So nginx in front of several replicas gets the answer instead of a reset, marks no replica
//! failed, and a connection whose body was read whole serves its next request; a body past the
//! bound is not read for ever.

mod common;

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// The body of a refused upload sent straight to regate: 1 MiB.
const BODY: usize = 1 << 20;
/// The body of each refused upload through nginx: 4 MiB. Over a network the reset of a 1 MiB
/// body caught nginx still sending; on the loopback most of 1 MiB fits in socket buffers before
/// regate answers, and 4 MiB is what it takes for the reset to catch nginx in every run.
const BEHIND_NGINX: usize = 4 << 20;
/// What regate reads of an unread body at most (`body::Linger::DEFAULT`).
const LINGER_BYTES: u64 = 64 << 20;

/// The head of a `PATCH` of upload data to a made-up session, kept alive: `Content-Length:
/// length`, or chunked for `None`.
fn patch_head(host: &str, auth: Auth, length: Option<u64>) -> Vec<u8> {
    let mut head = format!(
        "PATCH /v2/project-a/x/blobs/uploads/{} HTTP/1.1\r\nHost: {host}\r\n\
         Content-Type: application/octet-stream\r\n",
        uuid_like()
    );
    if let Some(value) = auth.header() {
        head.push_str(&format!("Authorization: {value}\r\n"));
    }
    match length {
        Some(n) => head.push_str(&format!("Content-Length: {n}\r\n")),
        None => head.push_str("Transfer-Encoding: chunked\r\n"),
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// An upload session id's shape.
fn uuid_like() -> String {
    let hex = hex::encode(unique_bytes(16));
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(60)))
        .expect("write timeout");
    stream
}

/// Writes `head` and then `body` in 64 KiB writes on a thread of its own (a client still
/// sending while the answer comes); the bytes of body it wrote and how it ended.
fn send_in_background(
    stream: &TcpStream,
    head: Vec<u8>,
    mut body: impl FnMut(&mut TcpStream) -> io::Result<usize> + Send + 'static,
) -> thread::JoinHandle<(u64, io::Result<()>)> {
    let mut stream = stream.try_clone().expect("clone the stream");
    thread::spawn(move || {
        if let Err(e) = stream.write_all(&head) {
            return (0, Err(e));
        }
        let mut sent = 0u64;
        loop {
            match body(&mut stream) {
                Ok(0) => return (sent, Ok(())),
                Ok(n) => sent += n as u64,
                Err(e) => return (sent, Err(e)),
            }
        }
    })
}

/// A body of `length` bytes of `x`, written 64 KiB at a time.
fn sized(length: u64) -> impl FnMut(&mut TcpStream) -> io::Result<usize> + Send + 'static {
    let chunk = vec![b'x'; 64 << 10];
    let mut left = length;
    move |stream| {
        let n = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
        stream.write_all(&chunk[..n])?;
        left -= n as u64;
        Ok(n)
    }
}

/// A chunked body of `chunks` chunks of 64 KiB (`None`: without end), then its last chunk.
fn chunked(
    chunks: Option<usize>,
) -> impl FnMut(&mut TcpStream) -> io::Result<usize> + Send + 'static {
    let mut chunk = format!("{:x}\r\n", 64 << 10).into_bytes();
    chunk.extend(std::iter::repeat_n(b'x', 64 << 10));
    chunk.extend_from_slice(b"\r\n");
    let mut left = chunks;
    let mut ended = false;
    move |stream| {
        if ended {
            return Ok(0);
        }
        if left == Some(0) {
            stream.write_all(b"0\r\n\r\n")?;
            ended = true;
            return Ok(5);
        }
        stream.write_all(&chunk)?;
        left = left.map(|n| n - 1);
        Ok(64 << 10)
    }
}

/// Whether the server closed `stream` (EOF or reset) within `limit`, reading whatever else
/// comes first.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// A refused upload whose body (sized, then chunked) is within the bound is answered while the
/// client sends, its body read whole, and the connection then serves the next request.
#[test]
fn a_refused_body_within_the_bound_is_read_and_the_connection_kept() {
    let env = Env::with_projects();
    let pull_only = env.token("default", "project-a");
    let mut stream = connect(env.addr());
    let cases: [(Auth, Option<u64>, u16); 3] = [
        (Auth::Basic("not-a-token"), Some(BODY as u64), 401),
        (Auth::Basic(&pull_only), Some(BODY as u64), 403),
        (Auth::Basic(&pull_only), None, 403),
    ];
    for (auth, length, status) in cases {
        let what = format!("a refused PATCH of {length:?} bytes (None: chunked)");
        let head = patch_head(&env.host(), auth, length);
        let writer = match length {
            Some(n) => send_in_background(&stream, head, sized(n)),
            None => send_in_background(&stream, head, chunked(Some(16))),
        };
        let reply = read_reply(&mut stream)
            .unwrap_or_else(|e| panic!("{what}: no answer: {e}\n{}", env.regate_log_tail(20)));
        env.expect_status(&reply, status, &what);
        let (sent, ended) = writer.join().expect("writer thread");
        assert!(
            ended.is_ok(),
            "{what}: the whole body was taken ({sent} bytes sent): {ended:?}"
        );
        // The same connection answers the next request.
        stream
            .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", env.host()).as_bytes())
            .unwrap_or_else(|e| panic!("after {what}: the connection is kept: {e}"));
        let next = read_reply(&mut stream)
            .unwrap_or_else(|e| panic!("after {what}: the connection is kept: {e}"));
        env.expect_status(&next, 200, &format!("GET /healthz after {what}"));
    }
}

/// A body past the bound is not read for ever: one whose `Content-Length` says so is closed on
/// at once, one sent without end is read up to the bound, and one that stops coming is given up
/// after the idle bound. Each is answered first.
#[test]
fn a_refused_body_past_the_bound_is_not_read_for_ever() {
    let env = Env::with_projects();
    let pull_only = env.token("default", "project-a");

    // Content-Length: 1 GiB.
    let mut stream = connect(env.addr());
    let head = patch_head(&env.host(), Auth::Basic(&pull_only), Some(1 << 30));
    let started = Instant::now();
    let writer = send_in_background(&stream, head, sized(1 << 30));
    let reply = read_reply(&mut stream).expect("a 1 GiB body is answered");
    env.expect_status(&reply, 403, "PATCH of 1 GiB");
    assert!(
        closed_within(&mut stream, Duration::from_secs(20)),
        "a body known to pass the bound is closed on"
    );
    let (sent, ended) = writer.join().expect("writer thread");
    assert!(
        ended.is_err() && sent < LINGER_BYTES,
        "the 1 GiB body is cut short ({sent} bytes sent in {:?}): {ended:?}",
        started.elapsed()
    );

    // Chunked, without end: read up to the bound, then closed on.
    let mut stream = connect(env.addr());
    let head = patch_head(&env.host(), Auth::Basic(&pull_only), None);
    let writer = send_in_background(&stream, head, chunked(None));
    let reply = read_reply(&mut stream).expect("an endless body is answered");
    env.expect_status(&reply, 403, "PATCH of an endless chunked body");
    assert!(
        closed_within(&mut stream, Duration::from_secs(30)),
        "an endless body is closed on"
    );
    let (sent, ended) = writer.join().expect("writer thread");
    assert!(ended.is_err(), "the endless body is cut: {ended:?}");
    assert!(
        (LINGER_BYTES - (1 << 20)..LINGER_BYTES + (32 << 20)).contains(&sent),
        "read up to the bound, not beyond: {sent} bytes sent"
    );

    // 10 MiB announced, 1 MiB sent, then nothing: given up after the idle bound (5 s).
    let mut stream = connect(env.addr());
    let mut head = patch_head(&env.host(), Auth::Basic(&pull_only), Some(10 << 20));
    head.extend(std::iter::repeat_n(b'x', BODY));
    stream.write_all(&head).expect("send the first MiB");
    let reply = read_reply(&mut stream).expect("a stalled body is answered");
    env.expect_status(&reply, 403, "PATCH of a stalled body");
    let stalled = Instant::now();
    assert!(
        closed_within(&mut stream, Duration::from_secs(15)),
        "a stalled body is given up"
    );
    let waited = stalled.elapsed();
    assert!(
        (Duration::from_secs(4)..Duration::from_secs(10)).contains(&waited),
        "given up after the idle bound, 5 s: {waited:?}"
    );

    // Meanwhile regate serves others.
    let reply = env.send("GET", "/healthz", Auth::None);
    env.expect_status(&reply, 200, "GET /healthz afterwards");
}

/// nginx as a load balancer in front of three regate replicas on one state, with the upstream
/// defaults (`max_fails=1 fail_timeout=10s`): six refused 4 MiB uploads in a row are six
/// 401/403s and no 502, nginx logs no upstream failure, and every replica then still serves.
/// With nginx's own defaults toward the upstream (HTTP/1.0, a connection per request, the body
/// spooled to a file and sent in pieces), as ingresses proxy (HTTP/1.1, kept connections), and
/// as registries are often proxied (the body streamed, `proxy_request_buffering off`).
#[test]
fn refusals_behind_nginx_mark_no_replica_failed() {
    let mut env = Env::with_projects();
    let more = env.start_replicas(2);
    let replicas = [env.addr(), more[0], more[1]];
    let image = Image::unique(1024);
    env.seed("project-a/app", "v1", &image);
    let pull_only = env.token("default", "project-a");
    let servers: String = replicas
        .iter()
        .map(|addr| format!("    server {addr};\n"))
        .collect();
    let ingress = "      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n";
    let streaming = format!("{ingress}      proxy_request_buffering off;\n");
    let variants = [
        ("nginx-defaults", "", ""),
        ("nginx-ingress", "    keepalive 32;\n", ingress),
        ("nginx-streaming", "    keepalive 32;\n", streaming.as_str()),
    ];
    let mut problems = Vec::new();
    for (name, upstream_extra, location_extra) in variants {
        let nginx = Nginx::start(env.dir(), name, false, &[], |port, root| {
            format!(
                "master_process off;\nevents {{ worker_connections 256; }}\n\
                 http {{\n  log_format upstream '$request_method $status $upstream_addr';\n\
                 access_log {root}/access.log upstream;\n\
                 client_body_temp_path {root}/body;\n  proxy_temp_path {root}/proxy;\n\
                 client_max_body_size 0;\n\
                 upstream regate {{\n{servers}{upstream_extra}  }}\n\
                 server {{\n    listen 127.0.0.1:{port};\n\
                 location / {{\n      proxy_pass http://regate;\n\
                 proxy_set_header Host $http_host;\n{location_extra}    }}\n  }}\n}}\n",
                root = root.display(),
            )
        });
        let body = vec![b'x'; BEHIND_NGINX];
        let statuses: Vec<u16> = (0..6)
            .map(|i| {
                let auth = if i % 2 == 0 {
                    Auth::Basic("not-a-token")
                } else {
                    Auth::Basic(&pull_only)
                };
                let url = format!(
                    "{}/v2/project-a/x/blobs/uploads/{}",
                    nginx.url(),
                    uuid_like()
                );
                Reply::from_request(auth.apply(client().patch(url).body(body.clone()))).status
            })
            .collect();
        if statuses != [401, 403, 401, 403, 401, 403] {
            problems.push(format!("{name}: refusals answered {statuses:?}"));
        }
        let error_log = nginx.error_log();
        for sign in [
            "reset by peer",
            "Broken pipe",
            "temporarily disabled",
            "no live upstreams",
            "prematurely closed",
            "[error]",
        ] {
            if error_log.contains(sign) {
                problems.push(format!("{name}: nginx logged {sign:?}:\n{error_log}"));
            }
        }
        // Every replica still takes requests: round robin hands each of them two.
        let pulls: Vec<u16> = (0..6)
            .map(|_| {
                let url = format!("{}/v2/project-a/app/manifests/v1", nginx.url());
                let get = client().get(url).header("Accept", OCI_MANIFEST);
                Reply::from_request(Auth::Basic(&pull_only).apply(get)).status
            })
            .collect();
        let access = read_lossy(&nginx.root().join("access.log"));
        let served: Vec<&str> = access
            .lines()
            .filter(|l| l.starts_with("GET 200 "))
            .filter_map(|l| l.split(' ').nth(2))
            .collect();
        for replica in replicas {
            if !served.contains(&replica.to_string().as_str()) {
                problems.push(format!(
                    "{name}: replica {replica} served no pull afterwards (pulls {pulls:?}):\n\
                     {access}"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "behind nginx:\n{}\nregate's log:\n{}",
        problems.join("\n"),
        env.regate_log_tail(20)
    );
}
