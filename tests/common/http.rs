//! HTTP as clients send it: credentials, whole replies, raw requests byte for byte, and challenges
//! and access logs read back.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::*;

/// Credentials a request carries.
#[derive(Clone, Copy, Debug)]
pub enum Auth<'a> {
    None,
    /// `Basic base64(anything:TOKEN)`.
    Basic(&'a str),
    /// `Bearer TOKEN`.
    Bearer(&'a str),
    /// This `Authorization` value, verbatim.
    Header(&'a str),
}

impl Auth<'_> {
    /// The `Authorization` header value, if any.
    pub fn header(&self) -> Option<String> {
        use base64::Engine as _;
        match self {
            Auth::None => None,
            Auth::Basic(t) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("anything:{t}"))
            )),
            Auth::Bearer(t) => Some(format!("Bearer {t}")),
            Auth::Header(h) => Some(h.to_string()),
        }
    }

    pub fn apply(
        &self,
        rb: reqwest::blocking::RequestBuilder,
    ) -> reqwest::blocking::RequestBuilder {
        match self.header() {
            Some(h) => rb.header("Authorization", h),
            None => rb,
        }
    }
}

/// A blocking HTTP client that follows no redirect and gives up after [`HTTP_TIMEOUT`].
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(HTTP_TIMEOUT)
        .build()
        .expect("build HTTP client")
}

/// A whole HTTP response: status, headers in order, body.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// Send a reqwest request and collect the reply; panics on a transport error.
    pub fn from_request(rb: reqwest::blocking::RequestBuilder) -> Reply {
        let desc = format!("{rb:?}");
        match rb.send() {
            Ok(resp) => Reply::from_response(resp),
            Err(e) => panic!("request {desc} failed: {e:#}"),
        }
    }

    pub fn from_response(resp: reqwest::blocking::Response) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = resp.bytes().map(|b| b.to_vec()).unwrap_or_default();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// The first header of this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header of this name.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON, or `Null` if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// What is wrong with this reply as regate's OCI error of `code`, or `None`.
    pub fn oci_error_problem(&self, code: &str) -> Option<String> {
        match self.header("Docker-Distribution-API-Version") {
            Some(v) if v.trim() == "registry/2.0" => {}
            other => {
                return Some(format!(
                    "header Docker-Distribution-API-Version is {other:?}, not registry/2.0"
                ));
            }
        }
        let json: serde_json::Value = match serde_json::from_slice(&self.body) {
            Ok(j) => j,
            Err(e) => return Some(format!("body is not JSON: {e}")),
        };
        let Some(errors) = json.get("errors").and_then(|e| e.as_array()) else {
            return Some("body has no `errors` array".into());
        };
        let Some(first) = errors.first() else {
            return Some("`errors` is empty".into());
        };
        for key in ["code", "message", "detail"] {
            if first.get(key).is_none() {
                return Some(format!("error object has no `{key}`"));
            }
        }
        if first["code"] != code {
            return Some(format!("error code is {}, expected {code}", first["code"]));
        }
        if first["message"].as_str().is_none_or(str::is_empty) {
            return Some("error message is not a non-empty string".into());
        }
        None
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "status {}", self.status)?;
        for (k, v) in &self.headers {
            let v: String = v.chars().take(300).collect();
            writeln!(f, "  {k}: {v}")?;
        }
        let body = self.text();
        let shown: String = body.chars().take(2000).collect();
        write!(f, "  body ({} bytes): {shown}", self.body.len())
    }
}

/// A raw HTTP/1.1 request: `METHOD TARGET`, `Host`, `Connection: close`, the given headers
/// and, for a non-empty body, `Content-Length`.
pub fn build_raw(
    method: &str,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Send `request` to `addr` byte for byte (nothing normalises `..`, `/./` or `%2F`), read
/// until the server closes, and parse the reply (a chunked body is decoded; a HEAD reply has
/// none). A write error is ignored if a reply can still be read.
pub fn raw_http(addr: SocketAddr, request: &[u8]) -> io::Result<Reply> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    let write_err = stream.write_all(request).and_then(|_| stream.flush()).err();
    let mut buf = Vec::new();
    let read_err = read_until_close(&mut stream, &mut buf).err();
    if buf.is_empty() {
        return Err(read_err.or(write_err).unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed with no reply",
            )
        }));
    }
    let is_head = request.starts_with(b"HEAD ");
    parse_reply(&buf, is_head)
}

/// Read one reply with a `Content-Length` from `stream` and leave the connection open, for the
/// next request on it (keep-alive). An error if the server closes first.
pub fn read_reply(stream: &mut TcpStream) -> io::Result<Reply> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut fill = |buf: &mut Vec<u8>| -> io::Result<()> {
        match stream.read(&mut chunk)? {
            0 => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the whole reply",
            )),
            n => {
                buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
        }
    };
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        fill(&mut buf)?;
    };
    let head = parse_reply(&buf[..head_end], true)?;
    let length: usize = match head.header("content-length") {
        Some(value) => value
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad Content-Length"))?,
        None if head.status == 204 || head.status == 304 => 0,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a reply without Content-Length",
            ));
        }
    };
    while buf.len() < head_end + length {
        fill(&mut buf)?;
    }
    Ok(Reply {
        body: buf[head_end..head_end + length].to_vec(),
        ..head
    })
}

pub(crate) fn read_until_close(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

pub(crate) fn parse_reply(buf: &[u8], is_head: bool) -> io::Result<Reply> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("reply has no end of headers"))?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad(&format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &buf[end + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    let body = if is_head || status == 204 || status == 304 {
        Vec::new()
    } else if chunked {
        dechunk(rest).ok_or_else(|| bad("bad chunked body"))?
    } else {
        rest.to_vec()
    };
    Ok(Reply {
        status,
        headers,
        body,
    })
}

pub(crate) fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// The path and query of an upload `Location` (absolute or relative), to send a next request.
pub fn location_target(location: &str) -> String {
    match location
        .strip_prefix("http://")
        .or_else(|| location.strip_prefix("https://"))
    {
        Some(rest) => rest
            .find('/')
            .map(|i| rest[i..].to_string())
            .unwrap_or_else(|| "/".into()),
        None => location.to_string(),
    }
}

/// `url` with `key=value` appended to its query.
pub fn add_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    let value = percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC);
    format!("{url}{sep}{key}={value}")
}

/// The `METHOD URI` of each line of a Combined Log Format access log.
pub fn access_log_requests(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| !l.starts_with("time="))
        .filter_map(|l| {
            let start = l.find("] \"")? + 3;
            let rest = &l[start..];
            let end = rest.find(" HTTP/")?;
            Some(rest[..end].to_string())
        })
        .collect()
}

/// A parsed `WWW-Authenticate` challenge: the scheme and its parameters in order. `None` if
/// a parameter value is not double-quoted (regate must quote every value).
pub fn parse_challenge(header: &str) -> Option<(String, Vec<(String, String)>)> {
    let header = header.trim();
    let (scheme, mut rest) = header.split_once(' ')?;
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if rest.is_empty() {
            return Some((scheme.to_string(), params));
        }
        let (key, after) = rest.split_once('=')?;
        let after = after.strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => value.push(chars.next()?.1),
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        params.push((key.trim().to_string(), value));
        rest = &after[end + 1..];
    }
}

/// The value of parameter `key` of a parsed challenge.
pub fn challenge_param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// What a client trickling a request body got (see [`trickle`]).
#[derive(Debug)]
pub struct Trickled {
    /// The reply, as far as it came.
    pub reply: Reply,
    /// From the request's headers being sent to the reply's first byte.
    pub answered_after: Duration,
    /// Whether the server closed the connection after the reply (end of stream or reset).
    pub closed: bool,
    /// Body bytes sent before the reply came.
    pub sent: usize,
}

impl Trickled {
    /// Asserts that a trickled body was answered `status` about `limit` after its headers (the
    /// deadline, not the client's pace), with the connection closed and `says` in the reply.
    pub fn expect_cut_at(&self, status: u16, limit: Duration, says: &str, what: &str) {
        assert_eq!(self.reply.status, status, "{what}: {}", self.reply);
        assert!(
            self.answered_after >= limit.saturating_sub(Duration::from_millis(200))
                && self.answered_after < limit + Duration::from_millis(1500),
            "{what}: answered after {:?}",
            self.answered_after
        );
        assert!(self.closed, "{what}: the connection is closed");
        assert!(self.sent < 5, "{what}: {} bytes sent", self.sent);
        assert!(self.reply.text().contains(says), "{what}: {}", self.reply);
    }
}

/// Sends `head` (a request line and headers declaring a `Content-Length`, ending with the
/// blank line) to `addr`, then body bytes one every `every` until a reply comes or the
/// declared length is sent; then reads until the server closes the connection, for at most
/// `limit` in all.
pub fn trickle(addr: SocketAddr, head: &str, every: Duration, limit: Duration) -> Trickled {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(str::to_string)
        })
        .and_then(|v| v.trim().parse().ok())
        .expect("a Content-Length in the head");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    stream.set_read_timeout(Some(limit)).expect("read timeout");
    let started = Instant::now();
    stream.write_all(head.as_bytes()).expect("send the head");
    let answered = Arc::new(AtomicBool::new(false));
    let mut reading = stream.try_clone().expect("a second handle");
    let seen = answered.clone();
    let reader = std::thread::spawn(move || {
        let (mut buf, mut first, mut chunk) = (Vec::new(), None, [0u8; 16 * 1024]);
        let closed = loop {
            match reading.read(&mut chunk) {
                Ok(0) => break true,
                Ok(n) => {
                    first.get_or_insert_with(|| {
                        seen.store(true, Ordering::SeqCst);
                        started.elapsed()
                    });
                    buf.extend_from_slice(&chunk[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    break !matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    );
                }
            }
        };
        seen.store(true, Ordering::SeqCst);
        (buf, first, closed)
    });
    let mut sent = 0;
    while sent < length && !answered.load(Ordering::SeqCst) && started.elapsed() < limit {
        if stream.write_all(b"a").is_err() {
            break;
        }
        sent += 1;
        let next = Instant::now() + every;
        while Instant::now() < next && !answered.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let (buf, first, closed) = reader.join().expect("the reader");
    let reply = parse_reply(&buf, false)
        .unwrap_or_else(|e| panic!("no reply after {sent} bytes ({e}): {buf:?}"));
    Trickled {
        reply,
        answered_after: first.unwrap_or(limit),
        closed,
        sent,
    }
}
