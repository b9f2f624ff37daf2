//! An adversarial pass at the HTTP layer: request smuggling (`Content-Length` against
//! `Transfer-Encoding`), pipelining after a refusal, proxy-style request targets (absolute form,
//! `CONNECT`), HTTP/2 cleartext (prior knowledge and `Upgrade: h2c`), and regate's token kinds
//! used as one another. Every test checks the safe outcome *and* that nothing unauthorized
//! reached the registry (its access log, or a recording upstream that sees headers).

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// How long a connection may stay silent before an exchange is taken as over (a server that
/// keeps an idle keep-alive connection open is not an error here).
const QUIET: Duration = Duration::from_secs(3);
/// The longest one raw exchange may take.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(30);

/// Write `bytes` on one fresh connection and collect everything that comes back until the
/// server closes, resets, or stays silent for [`QUIET`].
fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(QUIET)).expect("read timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .expect("write timeout");
    // A server may refuse and close before reading everything; what it answered still counts.
    let _ = stream.write_all(bytes).and_then(|_| stream.flush());
    let deadline = Instant::now() + EXCHANGE_LIMIT;
    let mut out = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // silence (WouldBlock/TimedOut) or a reset: the exchange is over
            Err(_) => break,
        }
    }
    out
}

/// One HTTP/1.1 request head (no `Connection: close` unless given), then `body` verbatim.
/// Header lines are written exactly as given, so they may be malformed on purpose.
fn request(method: &str, target: &str, host: &str, lines: &[String], body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
    for line in lines {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn line(name: &str, value: &str) -> String {
    format!("{name}: {value}")
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

/// A chunked body at the start of `data`: the decoded bytes and how many bytes it took.
fn dechunk(data: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let eol = find(&data[at..], b"\r\n")? + at;
        let size_text = std::str::from_utf8(&data[at..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        at = eol + 2;
        if size == 0 {
            // trailers, if any, end with an empty line
            let end = find(&data[at..], b"\r\n")? + at;
            if end == at {
                return Some((out, at + 2));
            }
            let end = find(&data[at..], b"\r\n\r\n")? + at;
            return Some((out, end + 4));
        }
        out.extend_from_slice(data.get(at..at + size)?);
        at += size + 2;
    }
}

/// Every HTTP/1.x response in `data`, in order (bodies framed by `Content-Length` or chunked;
/// a response framed by neither takes the rest).
fn replies(mut data: &[u8]) -> Vec<Reply> {
    let mut out = Vec::new();
    while data.starts_with(b"HTTP/") {
        let Some(end) = find(data, b"\r\n\r\n") else {
            break;
        };
        let head = String::from_utf8_lossy(&data[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let Some(status) = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
        else {
            break;
        };
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let rest = &data[end + 4..];
        let (body, used) = if (100..200).contains(&status) || status == 204 || status == 304 {
            (Vec::new(), 0)
        } else if get("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            dechunk(rest).unwrap_or_else(|| (rest.to_vec(), rest.len()))
        } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            let n = len.min(rest.len());
            (rest[..n].to_vec(), n)
        } else {
            (rest.to_vec(), rest.len())
        };
        out.push(Reply {
            status,
            headers,
            body,
        });
        data = &rest[used..];
    }
    out
}

/// Raw bytes for an assertion message.
fn show(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let shown: String = text.chars().take(3000).collect();
    format!("{} bytes: {shown:?}", bytes.len())
}

/// Wait until the registry has logged everything it received before now: a request made
/// straight to it (never through regate) is logged after the ones before it.
fn registry_settled(env: &Env) {
    let marker = format!(
        "/v2/adversarial/marker/manifests/m{}",
        sha256_hex(&unique_bytes(8))
    );
    let _ = env.registry_head(&marker);
    wait_for(Duration::from_secs(10), "the registry's access log", || {
        env.registry_requests()
            .iter()
            .any(|r| r.contains(&marker))
            .then_some(())
    });
}

/// Once the registry's log is settled, exactly `n` pulls of project-a/app's manifests reached it.
fn assert_manifest_pulls(env: &Env, n: usize, what: &str) {
    registry_settled(env);
    let pulls = env
        .registry_requests()
        .iter()
        .filter(|r| r.starts_with("GET /v2/project-a/app/manifests/"))
        .count();
    assert_eq!(pulls, n, "{what}: {:?}", env.registry_requests());
}

/// The claims of a JWT, or `Null` if `token` is not one.
fn jwt_claims(token: &str) -> serde_json::Value {
    token
        .split('.')
        .nth(1)
        .and_then(|p| B64URL.decode(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// The request the smuggling tests hide in a body: a pull of project-a, no credentials.
fn hidden_pull(host: &str) -> Vec<u8> {
    request(
        "GET",
        "/v2/project-a/app/manifests/v1",
        host,
        &[line("Accept", OCI_MANIFEST)],
        b"",
    )
}

/// The two classic smuggling bodies around `hidden`:
/// - "CL.TE": `0\r\n\r\n` + hidden, `Content-Length` covering all of it (a chunked reader
///   sees the hidden request as the next one on the connection);
/// - "TE.CL": hidden as one chunk, `Content-Length` covering only the chunk-size line (a
///   length reader sees the hidden request as the next one).
///
/// Each is `(name, body, content_length)`.
fn smuggling_bodies(hidden: &[u8]) -> Vec<(&'static str, Vec<u8>, usize)> {
    let mut cl_te = b"0\r\n\r\n".to_vec();
    cl_te.extend_from_slice(hidden);
    let cl_te_len = cl_te.len();
    let size_line = format!("{:x}\r\n", hidden.len());
    let mut te_cl = size_line.clone().into_bytes();
    te_cl.extend_from_slice(hidden);
    te_cl.extend_from_slice(b"\r\n0\r\n\r\n");
    vec![
        ("CL.TE", cl_te, cl_te_len),
        ("TE.CL", te_cl, size_line.len()),
    ]
}

// ---------------------------------------------------------------------------------------------
// 1. Request smuggling
// ---------------------------------------------------------------------------------------------

/// `Content-Length` and `Transfer-Encoding: chunked` together, in both orders and both classic
/// body shapes, on an upload start, an upload PATCH, `POST /v2/` and a GET with a body: refused
/// (400) or handled as one request, so the pull of project-a hidden in the body (no credentials;
/// the caller, project-b's builder, may not read project-a either) is never answered and never
/// reaches the registry.
#[test]
fn content_length_with_chunked_never_smuggles_a_request() {
    let env = Env::with_projects();
    let image = Image::unique(512);
    env.seed("project-a/app", "v1", &image);
    env.seed("project-b/app", "v1", &Image::unique(512));
    let builder = env.token("builder", "project-b");
    let auth = Auth::Basic(&builder).header().expect("header");
    let host = env.host();
    let hidden = hidden_pull(&host);

    let mut targets: Vec<(&str, String)> = vec![
        ("POST", "/v2/project-b/app/blobs/uploads/".into()),
        ("POST", "/v2/".into()),
        ("GET", "/v2/project-b/app/manifests/v1".into()),
    ];
    let mut outcomes = Vec::new();
    for (shape, body, content_length) in smuggling_bodies(&hidden) {
        for te_first in [false, true] {
            // a fresh upload for each PATCH
            let started = env.start_upload("project-b/app", Auth::Basic(&builder));
            let location = env.expect_upload_started(&started, "upload start for the PATCH");
            targets.push(("PATCH", location_target(&location)));
            for (method, target) in &targets {
                let cl = line("Content-Length", &content_length.to_string());
                let te = line("Transfer-Encoding", "chunked");
                let mut lines = vec![line("Authorization", &auth)];
                if method == &"PATCH" {
                    lines.push(line("Content-Type", "application/octet-stream"));
                }
                if te_first {
                    lines.extend([te.clone(), cl.clone()]);
                } else {
                    lines.extend([cl.clone(), te.clone()]);
                }
                let raw = request(method, target, &host, &lines, &body);
                let got = exchange(env.addr(), &raw);
                let answers = replies(&got);
                let what = format!(
                    "{method} {target} ({shape}, {} first)",
                    if te_first { "TE" } else { "CL" }
                );
                outcomes.push(format!(
                    "{what}: {:?}",
                    answers.iter().map(|r| r.status).collect::<Vec<_>>()
                ));
                assert!(
                    answers.len() <= 1,
                    "{what}: the request hidden in the body was answered as a second request: {}",
                    show(&got)
                );
                assert!(
                    !contains(&got, &image.manifest),
                    "{what}: project-a's manifest came back: {}",
                    show(&got)
                );
            }
            targets.pop();
        }
    }
    eprintln!("CL+TE outcomes:\n  {}", outcomes.join("\n  "));
    registry_settled(&env);
    env.assert_registry_never_saw("a smuggled pull of project-a reached the registry", |r| {
        r.starts_with("GET /v2/project-a/") || r.starts_with("HEAD /v2/project-a/")
    });
}

/// The same smuggling bodies through regate to a recording upstream: every request it receives
/// is framed one way only (never both `Content-Length` and `Transfer-Encoding`), it never
/// receives the hidden pull, and a CL.TE body arrives without the hidden request in it.
#[test]
fn upstream_framing_is_unambiguous_after_content_length_with_chunked() {
    let recorder = Recorder::start(|req, _| {
        if req.method == "POST" {
            http_response(
                202,
                &[
                    ("Location", "/v2/project-b/app/blobs/uploads/u1?_state=x"),
                    ("Docker-Upload-UUID", "u1"),
                ],
                b"",
            )
        } else {
            http_response(202, &[("Docker-Upload-UUID", "u1")], b"")
        }
    });
    let env = Env::builder()
        .namespaces(PROJECTS)
        .upstream(&recorder.url())
        .run();
    let builder = env.token("builder", "project-b");
    let auth = Auth::Basic(&builder).header().expect("header");
    let host = env.host();
    let hidden = hidden_pull(&host);
    for (shape, body, content_length) in smuggling_bodies(&hidden) {
        for (method, target) in [
            ("POST", "/v2/project-b/app/blobs/uploads/"),
            ("PATCH", "/v2/project-b/app/blobs/uploads/u1?_state=x"),
        ] {
            let lines = vec![
                line("Authorization", &auth),
                line("Content-Type", "application/octet-stream"),
                line("Content-Length", &content_length.to_string()),
                line("Transfer-Encoding", "chunked"),
            ];
            let got = exchange(env.addr(), &request(method, target, &host, &lines, &body));
            let answers = replies(&got);
            assert!(
                answers.len() <= 1,
                "{method} {target} ({shape}): a second request was answered: {}",
                show(&got)
            );
            if shape == "CL.TE" {
                let sent = recorder
                    .requests()
                    .into_iter()
                    .rfind(|r| r.method == method);
                if let Some(sent) = sent {
                    assert!(
                        !contains(&sent.body, b"HTTP/1.1"),
                        "{method} {target} ({shape}): the hidden request was forwarded as body: {:?}",
                        String::from_utf8_lossy(&sent.body)
                    );
                }
            }
        }
    }
    for req in recorder.requests() {
        assert!(
            !(req.header("content-length").is_some() && req.header("transfer-encoding").is_some()),
            "the upstream got both Content-Length and Transfer-Encoding: {req:?}"
        );
        assert!(
            !req.target.contains("project-a"),
            "the hidden pull reached the upstream: {req:?}"
        );
    }
}

/// Two different `Content-Length` values (two lines, or a list) and unreadable ones: 400 and
/// nothing forwarded, not even the outer upload start.
#[test]
fn conflicting_content_lengths_are_400_and_never_forwarded() {
    let env = Env::with_projects();
    let image = Image::unique(512);
    env.seed("project-a/app", "v1", &image);
    let builder = env.token("builder", "project-b");
    let auth = Auth::Basic(&builder).header().expect("header");
    let host = env.host();
    let hidden = hidden_pull(&host);
    let n = hidden.len().to_string();
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "two lines, 0 then N",
            vec![line("Content-Length", "0"), line("Content-Length", &n)],
        ),
        (
            "two lines, N then 0",
            vec![line("Content-Length", &n), line("Content-Length", "0")],
        ),
        (
            "a list 0, N",
            vec![line("Content-Length", &format!("0, {n}"))],
        ),
        (
            "a signed length",
            vec![line("Content-Length", &format!("+{n}"))],
        ),
        ("a negative length", vec![line("Content-Length", "-1")]),
        ("a hex length", vec![line("Content-Length", "0x10")]),
    ];
    let mut outcomes = Vec::new();
    for (i, (what, lengths)) in cases.iter().enumerate() {
        // a repository of its own per case, to tell what reached the registry
        let target = format!("/v2/project-b/cl{i}/blobs/uploads/");
        let mut lines = vec![line("Authorization", &auth)];
        lines.extend(lengths.iter().cloned());
        let got = exchange(
            env.addr(),
            &request("POST", &target, &host, &lines, &hidden),
        );
        let answers = replies(&got);
        outcomes.push(format!(
            "{what}: {:?}",
            answers.iter().map(|r| r.status).collect::<Vec<_>>()
        ));
        assert!(
            answers.len() == 1 && answers[0].status == 400,
            "{what}: expected exactly one 400, got {}",
            show(&got)
        );
        assert!(!contains(&got, &image.manifest), "{what}: {}", show(&got));
    }
    eprintln!(
        "conflicting Content-Length outcomes:\n  {}",
        outcomes.join("\n  ")
    );
    registry_settled(&env);
    env.assert_registry_never_saw(
        "a request with conflicting lengths reached the registry",
        |r| r.contains("/v2/project-b/cl") || r.starts_with("GET /v2/project-a/"),
    );
}

/// Obfuscated or non-final `chunked`: refused (400/501), or handled as one request with nothing
/// hidden answered; a refused request never reaches the registry.
#[test]
fn obfuscated_transfer_encodings_are_refused_or_safe() {
    let env = Env::with_projects();
    let image = Image::unique(512);
    env.seed("project-a/app", "v1", &image);
    let builder = env.token("builder", "project-b");
    let auth = Auth::Basic(&builder).header().expect("header");
    let host = env.host();
    let hidden = hidden_pull(&host);
    let (_, body, content_length) = smuggling_bodies(&hidden).remove(0);
    let cl = line("Content-Length", &content_length.to_string());
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "chunked, identity",
            vec![cl.clone(), line("Transfer-Encoding", "chunked, identity")],
        ),
        (
            "space before the colon",
            vec![cl.clone(), "Transfer-Encoding : chunked".into()],
        ),
        (
            "xchunked",
            vec![cl.clone(), line("Transfer-Encoding", "xchunked")],
        ),
        (
            "chunkedx",
            vec![cl.clone(), line("Transfer-Encoding", "chunkedx")],
        ),
        (
            "chunked then identity on two lines",
            vec![
                cl.clone(),
                line("Transfer-Encoding", "chunked"),
                line("Transfer-Encoding", "identity"),
            ],
        ),
        (
            "identity",
            vec![cl.clone(), line("Transfer-Encoding", "identity")],
        ),
        (
            "vertical tab",
            vec![cl.clone(), "Transfer-Encoding:\x0bchunked".into()],
        ),
        (
            "quoted",
            vec![cl.clone(), line("Transfer-Encoding", "\"chunked\"")],
        ),
        (
            "folded",
            vec![cl.clone(), "Transfer-Encoding:".into(), " chunked".into()],
        ),
        (
            "leading space on the name line",
            vec![cl.clone(), " Transfer-Encoding: chunked".into()],
        ),
        (
            "no Content-Length, chunked, identity",
            vec![line("Transfer-Encoding", "chunked, identity")],
        ),
    ];
    let mut outcomes = Vec::new();
    for (i, (what, framing)) in cases.iter().enumerate() {
        let target = format!("/v2/project-b/te{i}/blobs/uploads/");
        let mut lines = vec![line("Authorization", &auth)];
        lines.extend(framing.iter().cloned());
        let got = exchange(env.addr(), &request("POST", &target, &host, &lines, &body));
        let answers = replies(&got);
        let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
        outcomes.push(format!("{what}: {statuses:?}"));
        assert!(
            answers.len() <= 1,
            "{what}: the hidden request was answered as a second request: {}",
            show(&got)
        );
        assert!(!contains(&got, &image.manifest), "{what}: {}", show(&got));
    }
    // HTTP/1.0 has no chunked coding at all
    let raw = format!(
        "POST /v2/project-b/te-http10/blobs/uploads/ HTTP/1.0\r\nHost: {host}\r\nAuthorization: {auth}\r\nContent-Length: {content_length}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(&body);
    let got = exchange(env.addr(), &raw);
    let answers = replies(&got);
    outcomes.push(format!(
        "HTTP/1.0 with chunked: {:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    ));
    assert!(
        answers.len() <= 1 && !contains(&got, &image.manifest),
        "HTTP/1.0 with chunked: {}",
        show(&got)
    );
    eprintln!(
        "obfuscated Transfer-Encoding outcomes:\n  {}",
        outcomes.join("\n  ")
    );

    registry_settled(&env);
    env.assert_registry_never_saw("a smuggled pull of project-a reached the registry", |r| {
        r.starts_with("GET /v2/project-a/") || r.starts_with("HEAD /v2/project-a/")
    });
    // what was refused never reached the registry
    let refused: Vec<String> = outcomes
        .iter()
        .zip(0..)
        .filter(|(o, _)| o.ends_with("[400]") || o.ends_with("[501]") || o.ends_with("[]"))
        .map(|(_, i)| format!("/v2/project-b/te{i}/"))
        .collect();
    env.assert_registry_never_saw("a refused request reached the registry", |r| {
        refused.iter().any(|p| r.contains(p.as_str()))
    });
}

/// A request pipelined behind a refused (or allowed) one is judged on its own credentials
/// (none here): never with those of the request before it on the connection.
#[test]
fn pipelined_request_is_never_judged_with_the_previous_ones_credentials() {
    let env = Env::with_projects();
    let image = Image::unique(512);
    env.seed("project-a/app", "v1", &image);
    env.seed("project-b/app", "v1", &Image::unique(512));
    let reader = env.token("default", "project-a");
    let reader_auth = Auth::Basic(&reader).header().expect("header");
    let builder = env.token("builder", "project-a");
    let builder_auth = Auth::Basic(&builder).header().expect("header");
    let host = env.host();
    let second = request(
        "GET",
        "/v2/project-a/app/manifests/v1",
        &host,
        &[line("Accept", OCI_MANIFEST), line("Connection", "close")],
        b"",
    );
    let pull = |target: &str, extra: &[String]| {
        let mut lines = vec![
            line("Authorization", &reader_auth),
            line("Accept", OCI_MANIFEST),
        ];
        lines.extend(extra.iter().cloned());
        request("GET", target, &host, &lines, b"")
    };
    let form = b"mount=sha256:0000000000000000000000000000000000000000000000000000000000000000&from=project-b/app";
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "conflicting Content-Length (refused by the HTTP parser)",
            pull(
                "/v2/project-a/app/manifests/v1",
                &[line("Content-Length", "0"), line("Content-Length", "7")],
            ),
            400,
        ),
        (
            "403 for project-b",
            pull("/v2/project-b/app/manifests/v1", &[]),
            403,
        ),
        (
            "400 NAME_INVALID",
            pull("/v2/project-a/../project-a/app/manifests/v1", &[]),
            400,
        ),
        (
            "400 form body on an upload start",
            request(
                "POST",
                "/v2/project-a/formcase/blobs/uploads/",
                &host,
                &[
                    line("Authorization", &builder_auth),
                    line("Content-Type", "application/x-www-form-urlencoded"),
                    line("Content-Length", &form.len().to_string()),
                ],
                form,
            ),
            400,
        ),
        (
            "200 allowed pull",
            pull("/v2/project-a/app/manifests/v1", &[]),
            200,
        ),
    ];
    for (what, first, status) in cases {
        let mut raw = first;
        raw.extend_from_slice(&second);
        let got = exchange(env.addr(), &raw);
        let answers = replies(&got);
        eprintln!(
            "pipelined after {what}: {:?}",
            answers.iter().map(|r| r.status).collect::<Vec<_>>()
        );
        let first = answers
            .first()
            .unwrap_or_else(|| panic!("{what}: no answer at all: {}", show(&got)));
        assert_eq!(first.status, status, "{what}: first answer: {first}");
        match answers.get(1) {
            // the connection closed after the refusal: the second was never processed
            None => assert!(
                status == 400,
                "{what}: the pipelined request was not answered: {}",
                show(&got)
            ),
            Some(second) => {
                env.expect_error(
                    &second.clone(),
                    401,
                    "UNAUTHORIZED",
                    &format!("pipelined after {what}"),
                );
                assert_ne!(second.body, image.manifest, "{what}");
            }
        }
        assert!(answers.len() <= 2, "{what}: {}", show(&got));
    }
    assert_manifest_pulls(&env, 1, "only the allowed pull reached the registry");
    env.assert_registry_never_saw("a refused request reached the registry", |r| {
        r.starts_with("GET /v2/project-b/") || r.contains("/v2/project-a/formcase/")
    });
}

// ---------------------------------------------------------------------------------------------
// 2, 3. Proxy-style request targets
// ---------------------------------------------------------------------------------------------

/// An absolute-form target (`GET http://evil.example/v2/… HTTP/1.1`) is for proxies: 400 with an
/// OCI error body, whatever the credentials, and no header or body names evil.example.
#[test]
fn absolute_form_target_is_400() {
    let env = Env::with_projects();
    let image = Image::unique(512);
    env.seed("project-b/app", "v1", &image);
    let reader = env.token("default", "project-b");
    let reader_auth = Auth::Basic(&reader).header().expect("header");
    let builder = env.token("builder", "project-b");
    let builder_auth = Auth::Basic(&builder).header().expect("header");
    let own = format!("http://{}/v2/project-b/app/manifests/v1", env.host());
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        (
            "GET",
            "http://evil.example/v2/project-b/app/manifests/v1",
            vec![],
        ),
        (
            "GET",
            "http://evil.example/v2/project-b/app/manifests/v1",
            vec![("Authorization", &reader_auth), ("Accept", OCI_MANIFEST)],
        ),
        ("GET", "http://evil.example/v2/", vec![]),
        (
            "HEAD",
            "http://evil.example/v2/project-b/app/manifests/v1",
            vec![],
        ),
        (
            "POST",
            "http://evil.example/v2/project-b/abs/blobs/uploads/",
            vec![("Authorization", &builder_auth), ("Content-Length", "0")],
        ),
        (
            "GET",
            "https://evil.example/openshift/token?service=regate&scope=repository:project-b/app:pull",
            vec![("Authorization", &reader_auth)],
        ),
        (
            "GET",
            &own,
            vec![("Authorization", &reader_auth), ("Accept", OCI_MANIFEST)],
        ),
    ];
    let mut failures = Vec::new();
    for (method, target, headers) in &cases {
        let reply = env.raw_request(method, target, headers);
        let what = format!("{method} {target}");
        eprintln!("{what}: {reply}");
        let named_evil = reply
            .headers
            .iter()
            .any(|(_, v)| v.to_ascii_lowercase().contains("evil.example"))
            || reply.text().contains("evil.example");
        if named_evil {
            failures.push(format!("{what}: the answer names evil.example: {reply}"));
        }
        if reply.status != 400 {
            failures.push(format!("{what}: expected 400, got {reply}"));
        } else if *method != "HEAD"
            && let Some(problem) = reply.oci_error_problem(
                reply.json()["errors"][0]["code"]
                    .as_str()
                    .unwrap_or_default(),
            )
        {
            failures.push(format!(
                "{what}: 400 is not an OCI error ({problem}): {reply}"
            ));
        }
        if reply.body == image.manifest {
            failures.push(format!("{what}: the manifest came back (forwarded)"));
        }
    }
    registry_settled(&env);
    let forwarded: Vec<String> = env
        .registry_requests()
        .into_iter()
        .filter(|r| {
            r.starts_with("GET /v2/project-b/")
                || r.starts_with("HEAD /v2/project-b/")
                || r.contains("/v2/project-b/abs/")
                || r.contains("evil.example")
        })
        .collect();
    if !forwarded.is_empty() {
        failures.push(format!("the registry received: {forwarded:?}"));
    }
    assert!(
        failures.is_empty(),
        "absolute-form targets:\n{}\nregate stderr tail:\n{}",
        failures.join("\n"),
        env.regate_log_tail(20)
    );
}

/// `CONNECT` is 405 or 400, never a tunnel: bytes sent after it (a pull of project-a, no
/// credentials) are never relayed to the registry, not even when the CONNECT names the
/// registry's own address.
#[test]
fn connect_is_refused_and_never_tunnels() {
    let env = Env::with_projects();
    let image = Image::unique(512);
    env.seed("project-a/app", "v1", &image);
    let reader = env.token("default", "project-a");
    let reader_auth = Auth::Basic(&reader).header().expect("header");
    let registry = env.registry_addr().to_string();
    let through = request(
        "GET",
        "/v2/project-a/app/manifests/v1",
        &registry,
        &[line("Accept", OCI_MANIFEST), line("Connection", "close")],
        b"",
    );
    let cases: Vec<(String, Vec<String>)> = vec![
        ("evil.example:443".into(), vec![]),
        (registry.clone(), vec![]),
        (registry.clone(), vec![line("Authorization", &reader_auth)]),
        (env.host(), vec![]),
    ];
    let mut failures = Vec::new();
    for (authority, extra) in cases {
        let mut raw = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        for l in &extra {
            raw.push_str(l);
            raw.push_str("\r\n");
        }
        raw.push_str("\r\n");
        let mut raw = raw.into_bytes();
        raw.extend_from_slice(&through);
        let got = exchange(env.addr(), &raw);
        let answers = replies(&got);
        let what = format!(
            "CONNECT {authority}{}",
            if extra.is_empty() {
                ""
            } else {
                " with credentials"
            }
        );
        eprintln!(
            "{what}: {:?}\n  {}",
            answers.iter().map(|r| r.status).collect::<Vec<_>>(),
            show(&got)
        );
        match answers.first() {
            Some(first) if matches!(first.status, 400 | 405) => {}
            Some(first) => failures.push(format!("{what}: expected 405 or 400, got {first}")),
            None => failures.push(format!("{what}: no answer: {}", show(&got))),
        }
        assert!(
            !answers
                .iter()
                .any(|r| (200..300).contains(&r.status) || r.status == 101),
            "{what}: a tunnel or an authorized answer: {}",
            show(&got)
        );
        assert!(!contains(&got, &image.manifest), "{what}: {}", show(&got));
    }
    registry_settled(&env);
    env.assert_registry_never_saw("a CONNECT tunnel reached the registry", |r| {
        r.starts_with("GET /v2/project-a/") || r.starts_with("CONNECT")
    });
    assert!(failures.is_empty(), "CONNECT:\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// 4. HTTP/2 cleartext
// ---------------------------------------------------------------------------------------------

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix, `flags` in the bits above it (RFC 7541 §5.1).
fn hpack_int(n: u32, flags: u8, value: usize, out: &mut Vec<u8>) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// An HPACK string literal, not Huffman-coded.
fn hpack_string(text: &str, out: &mut Vec<u8>) {
    hpack_int(7, 0, text.len(), out);
    out.extend_from_slice(text.as_bytes());
}

/// HPACK "literal header field without indexing" with its name from the static table.
fn hpack_indexed_name(index: usize, value: &str) -> Vec<u8> {
    let mut out = Vec::new();
    hpack_int(4, 0, index, &mut out);
    hpack_string(value, &mut out);
    out
}

/// HPACK literal without indexing, new name.
fn hpack_new_name(name: &str, value: &str) -> Vec<u8> {
    let mut out = vec![0];
    hpack_string(name, &mut out);
    hpack_string(value, &mut out);
    out
}

/// The HTTP/2 prior-knowledge preface, SETTINGS, and a GET of project-a's manifest with no
/// credentials (and one with a token that may not read project-a): no authorized answer, nothing
/// reaches the registry, and regate keeps serving HTTP/1.1.
#[test]
fn h2c_prior_knowledge_gets_no_authorized_answer() {
    let env = Env::with_projects();
    let image = Image::unique(512);
    env.seed("project-a/app", "v1", &image);
    let other = env.token("default", "project-b");
    let other_auth = Auth::Basic(&other).header().expect("header");
    for (what, auth) in [
        ("no credentials", None),
        ("project-b's token", Some(&other_auth)),
    ] {
        let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
        block.extend(hpack_indexed_name(4, "/v2/project-a/app/manifests/v1"));
        block.extend(hpack_indexed_name(1, &env.host()));
        block.extend(hpack_new_name("accept", OCI_MANIFEST));
        if let Some(auth) = auth {
            block.extend(hpack_new_name("authorization", auth));
        }
        let mut raw = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        raw.extend(h2_frame(0x4, 0, 0, b"")); // SETTINGS
        raw.extend(h2_frame(0x1, 0x5, 1, &block)); // HEADERS, END_STREAM | END_HEADERS
        let got = exchange(env.addr(), &raw);
        eprintln!("h2c prior knowledge, {what}: {}", show(&got));
        assert!(
            !contains(&got, &image.manifest),
            "h2c prior knowledge, {what}: the manifest came back: {}",
            show(&got)
        );
        if got.starts_with(b"HTTP/") {
            for reply in replies(&got) {
                assert!(
                    !(200..300).contains(&reply.status) && reply.status != 101,
                    "h2c prior knowledge, {what}: {reply}"
                );
            }
        } else if !got.is_empty() {
            // HTTP/2 frames: no HEADERS frame may carry `:status 200` (HPACK static index 8)
            let mut at = 0;
            while at + 9 <= got.len() {
                let len = (usize::from(got[at]) << 16)
                    | (usize::from(got[at + 1]) << 8)
                    | usize::from(got[at + 2]);
                let kind = got[at + 3];
                let payload = got.get(at + 9..at + 9 + len).unwrap_or_default();
                assert!(
                    !(kind == 0x1 && payload.first() == Some(&0x88)),
                    "h2c prior knowledge, {what}: an HTTP/2 200: {}",
                    show(&got)
                );
                at += 9 + len;
            }
        }
    }
    let reply = env.send("GET", "/v2/", Auth::Basic(&other));
    env.expect_status(&reply, 200, "regate still serves after the h2c preface");
    registry_settled(&env);
    env.assert_registry_never_saw("an h2c request reached the registry", |r| {
        r.starts_with("GET /v2/project-a/") || r.starts_with("PRI")
    });
}

/// A pull with `Upgrade: h2c`, `Connection: Upgrade, HTTP2-Settings` and `HTTP2-Settings`
/// by a caller who may read the repository: answered 200 over HTTP/1.1 (no 101), the
/// connection stays HTTP/1.1 for the next request, and an unauthenticated one is a 401, not a
/// 101.
#[test]
fn h2c_upgrade_is_answered_over_http11() {
    let env = Env::with_projects();
    let image = Image::unique(512);
    env.seed("project-a/app", "v1", &image);
    let reader = env.token("default", "project-a");
    let auth = Auth::Basic(&reader).header().expect("header");
    let host = env.host();
    let upgrade = |with_auth: bool| {
        let mut lines = vec![
            line("Accept", OCI_MANIFEST),
            line("Connection", "Upgrade, HTTP2-Settings"),
            line("Upgrade", "h2c"),
            line("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        ];
        if with_auth {
            lines.push(line("Authorization", &auth));
        }
        request("GET", "/v2/project-a/app/manifests/v1", &host, &lines, b"")
    };
    let mut raw = upgrade(true);
    raw.extend(request(
        "GET",
        "/v2/",
        &host,
        &[line("Authorization", &auth), line("Connection", "close")],
        b"",
    ));
    let got = exchange(env.addr(), &raw);
    let answers = replies(&got);
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "Upgrade: h2c on an allowed pull: an HTTP/1.1 200 first: {}",
        show(&got)
    );
    assert!(
        !answers.iter().any(|r| r.status == 101),
        "no 101 Switching Protocols: {}",
        show(&got)
    );
    assert_eq!(
        answers.len(),
        2,
        "the next request is answered over HTTP/1.1: {}",
        show(&got)
    );
    assert_eq!(
        answers[0].body, image.manifest,
        "the manifest: {}",
        answers[0]
    );
    assert_eq!(answers[1].status, 200, "GET /v2/ after it: {}", answers[1]);

    let got = exchange(env.addr(), &upgrade(false));
    let answers = replies(&got);
    assert!(
        answers.first().is_some_and(|r| r.status == 401),
        "Upgrade: h2c without credentials: a 401: {}",
        show(&got)
    );
    assert!(!answers.iter().any(|r| r.status == 101), "{}", show(&got));
    assert_manifest_pulls(&env, 1, "only the allowed pull reached the registry");
}

/// The same upgrade through regate to a recording upstream: the registry never receives
/// `Upgrade`, `HTTP2-Settings` or a `Connection` naming them.
#[test]
fn h2c_upgrade_headers_never_reach_the_registry() {
    let body = Image::unique(256).manifest;
    let recorder =
        Recorder::start(move |_, _| http_response(200, &[("Content-Type", OCI_MANIFEST)], &body));
    let env = Env::builder()
        .namespaces(PROJECTS)
        .upstream(&recorder.url())
        .run();
    let reader = env.token("default", "project-a");
    let auth = Auth::Basic(&reader).header().expect("header");
    let raw = request(
        "GET",
        "/v2/project-a/app/manifests/v1",
        &env.host(),
        &[
            line("Authorization", &auth),
            line("Accept", OCI_MANIFEST),
            line("Connection", "Upgrade, HTTP2-Settings"),
            line("Upgrade", "h2c"),
            line("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        ],
        b"",
    );
    let got = exchange(env.addr(), &raw);
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "an HTTP/1.1 200 through the recording upstream: {}",
        show(&got)
    );
    let sent = recorder.requests();
    let pull = sent
        .iter()
        .find(|r| r.target.starts_with("/v2/project-a/app/manifests/v1"))
        .unwrap_or_else(|| panic!("the pull reached the upstream: {sent:?}"));
    for name in ["upgrade", "http2-settings"] {
        assert!(
            pull.header(name).is_none(),
            "the upstream got {name}: {pull:?}"
        );
    }
    assert!(
        !pull
            .header("connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade")),
        "the upstream got Connection: upgrade: {pull:?}"
    );
    assert!(pull.header("authorization").is_none(), "{pull:?}");
}

// ---------------------------------------------------------------------------------------------
// 5. Token kinds used as one another
// ---------------------------------------------------------------------------------------------

/// A token-endpoint answer that must not be worth more than `source` (a registry or refresh
/// token of `sub`, expiring at `source_exp`): a 401, or a token of the same identity whose
/// refresh token (if any) does not outlive `source`.
fn at_most_the_same(env: &Env, reply: &Reply, sub: &str, source_exp: u64, what: &str) {
    if reply.status == 401 {
        env.expect_error(reply, 401, "UNAUTHORIZED", what);
        return;
    }
    assert_eq!(
        reply.status, 200,
        "{what}: 401, or at most the same identity: {reply}"
    );
    let json = reply.json();
    for key in ["token", "access_token"] {
        if let Some(t) = json[key].as_str() {
            let claims = jwt_claims(t);
            assert_eq!(
                claims["sub"].as_str(),
                Some(sub),
                "{what}: {key} of another identity: {claims}"
            );
        }
    }
    if let Some(refresh) = json["refresh_token"].as_str() {
        let exp = jwt_claims(refresh)["exp"].as_u64().unwrap_or(u64::MAX);
        assert!(
            exp <= source_exp,
            "{what}: a refresh token (exp {exp}) outliving the token it came from (exp {source_exp})"
        );
    }
    eprintln!("{what}: 200 with the same identity: {reply}");
}

#[test]
fn token_kinds_cannot_stand_in_for_one_another() {
    let env = Env::with_projects();
    let image = Image::unique(512);
    env.seed("project-a/app", "v1", &image);
    let api = env.token("default", "project-a");
    let sub = "system:serviceaccount:project-a:default";
    let realm = "/openshift/token";
    let reply = env.send(
        "GET",
        &format!("{realm}?service=regate&offline_token=true&scope=repository:project-a/app:pull"),
        Auth::Basic(&api),
    );
    env.expect_status(&reply, 200, "token with offline_token=true");
    let json = reply.json();
    let registry = json["token"].as_str().expect("a token").to_string();
    let refresh = json["refresh_token"].as_str().map(str::to_string);
    // When the gateway reviews as the caller (kubernetes-self), the registry token may be the
    // caller's API token itself and a refresh token may be withheld.
    let self_review = env.mode() == AuthorityMode::KubernetesSelf;
    let refresh = match (refresh, self_review) {
        (Some(r), _) => Some(r),
        (None, true) => None,
        (None, false) => panic!("offline_token=true gives a refresh_token: {json}"),
    };
    let registry_exp = jwt_claims(&registry)["exp"]
        .as_u64()
        .expect("registry token exp");

    // the registry token does what it is for
    let reply = env.get_manifest("project-a/app", "v1", Auth::Bearer(&registry));
    env.expect_status(&reply, 200, "pull with the registry token");

    let form = |fields: &[(&str, &str)]| {
        Reply::from_request(
            env.client()
                .post(format!("{}{realm}", env.url()))
                .form(fields),
        )
    };

    if let Some(refresh) = &refresh {
        // a refresh token is no credential for /v2/
        for (what, auth) in [
            ("Bearer", Auth::Bearer(refresh)),
            ("Basic", Auth::Basic(refresh)),
        ] {
            let reply = env.send("GET", "/v2/", auth);
            env.expect_invalid_token(
                &reply,
                &format!("GET /v2/ with the refresh token as {what}"),
            );
            let reply = env.get_manifest("project-a/app", "v1", auth);
            env.expect_invalid_token(&reply, &format!("pull with the refresh token as {what}"));
        }
        let reply = env.start_upload("project-a/refreshed", Auth::Bearer(refresh));
        env.expect_invalid_token(&reply, "upload start with the refresh token");

        // a refresh token is no API token: it mints nothing worth more
        let refresh_exp = jwt_claims(refresh)["exp"].as_u64().expect("refresh exp");
        let reply = form(&[
            ("grant_type", "password"),
            ("username", "anything"),
            ("password", refresh),
            ("access_type", "offline"),
            ("service", "regate"),
        ]);
        at_most_the_same(
            &env,
            &reply,
            sub,
            refresh_exp,
            "grant_type=password with the refresh token",
        );
        let reply = env.send(
            "GET",
            &format!("{realm}?service=regate&offline_token=true"),
            Auth::Basic(refresh),
        );
        at_most_the_same(
            &env,
            &reply,
            sub,
            refresh_exp,
            "GET the token endpoint with the refresh token",
        );

        // the refresh token does what it is for
        let reply = form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("service", "regate"),
        ]);
        env.expect_status(
            &reply,
            200,
            "grant_type=refresh_token with the refresh token",
        );
        let access = reply.json()["access_token"]
            .as_str()
            .expect("access_token")
            .to_string();
        let reply = env.get_manifest("project-a/app", "v1", Auth::Bearer(&access));
        env.expect_status(&reply, 200, "pull with the refreshed access token");
    }

    // a registry token is no refresh token
    let reply = form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &registry),
        ("service", "regate"),
    ]);
    env.expect_error(
        &reply,
        401,
        "UNAUTHORIZED",
        "the registry token as refresh_token",
    );

    // an API token is no refresh token
    let reply = form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &api),
        ("service", "regate"),
    ]);
    env.expect_error(
        &reply,
        401,
        "UNAUTHORIZED",
        "the API token as refresh_token",
    );

    // a registry token as an API token mints nothing worth more
    let reply = form(&[
        ("grant_type", "password"),
        ("username", "anything"),
        ("password", &registry),
        ("access_type", "offline"),
        ("service", "regate"),
    ]);
    at_most_the_same(
        &env,
        &reply,
        sub,
        registry_exp,
        "grant_type=password with the registry token",
    );
    let reply = env.send(
        "GET",
        &format!("{realm}?service=regate&offline_token=true"),
        Auth::Basic(&registry),
    );
    at_most_the_same(
        &env,
        &reply,
        sub,
        registry_exp,
        "GET the token endpoint with the registry token",
    );

    let allowed = if refresh.is_some() { 2 } else { 1 };
    assert_manifest_pulls(
        &env,
        allowed,
        "only the pulls with a registry or access token reached the registry",
    );
    env.assert_registry_never_saw("an upload start with a refresh token", |r| {
        r.contains("/v2/project-a/refreshed/")
    });
}
