//! The audit log: one JSON line per authorization decision, per token issued and per binding
//! changed in the web console, so "who pulled project-b/app yesterday, who was refused, and who
//! granted it?" has an answer (format in docs/behaviour.md).
//!
//! The gateway collects what a request decided in its [`Event`]s; when the request's response
//! headers are known, [`lines`] turns them into JSON lines carrying the request (time, id,
//! client, identity, status) and [`AuditLog::write`] hands them, all lines of one request
//! together, to a writer thread. The thread writes them whole to stdout or to a file (see
//! `audit/writer.rs`), rotating the file by size and reopening it on SIGHUP, and flushes
//! whenever nothing more is queued. Lines never carry a credential: the identity is the name
//! the authority gave, never the Basic user name a client typed.

mod writer;

use std::path::PathBuf;
use std::sync::{Arc, mpsc};
use std::time::SystemTime;

use serde::Serialize;

use crate::batch::Batch;
use crate::policy::{Attributes, Decision};

/// Requests whose lines may wait for the writer; beyond it a request waits (back-pressure
/// rather than lines lost).
const QUEUE: usize = 16 * 1024;

/// Where audit lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditOutput {
    /// Standard output (`audit.path: "-"`), for a container runtime's log collector.
    Stdout,
    /// A file, rotated by size.
    File {
        /// `audit.path`.
        path: PathBuf,
        /// Rotate before the file would grow past this many bytes (`audit.max_size`).
        max_size: u64,
        /// Rotated files kept: `PATH.1` (newest) to `PATH.N` (`audit.max_files`).
        max_files: u32,
    },
}

/// Why the audit log cannot be opened.
#[derive(Debug, thiserror::Error)]
#[error(
    "audit.path {path}: {source}; make its directory writable by regate, or set audit.path: \"-\" for stdout"
)]
pub struct OpenError {
    path: String,
    #[source]
    source: std::io::Error,
}

enum Message {
    /// Whole lines, each ending in `\n`.
    Lines(Vec<u8>),
    /// Open the file again (after an outside tool moved it away).
    Reopen,
    /// Answer once everything before it is written.
    Flush(mpsc::Sender<()>),
}

/// The audit log: a queue to its writer thread, which lives as long as the process.
pub struct AuditLog {
    queue: Arc<Batch<Message>>,
}

impl AuditLog {
    /// Opens `output` (a file is created mode 0600 now, so a bad path fails at start-up) and
    /// starts its writer thread.
    pub fn open(output: &AuditOutput) -> Result<AuditLog, OpenError> {
        let sink = writer::Sink::open(output).map_err(|source| OpenError {
            path: match output {
                AuditOutput::Stdout => "-".into(),
                AuditOutput::File { path, .. } => path.display().to_string(),
            },
            source,
        })?;
        let queue = Arc::new(Batch::new(QUEUE));
        let taken = queue.clone();
        std::thread::Builder::new()
            .name("regate-audit".into())
            .spawn(move || writer::run(&taken, sink))
            .map_err(|source| OpenError {
                path: "(writer thread)".into(),
                source,
            })?;
        Ok(AuditLog { queue })
    }

    /// Queues whole lines (from [`lines`]); they are written in the order queued.
    pub fn write(&self, lines: Vec<u8>) {
        if !lines.is_empty() {
            // Discarded only if the writer thread is gone (it panicked); nothing to do then.
            self.queue.push(Message::Lines(lines));
        }
    }

    /// Reopens the file (SIGHUP, after logrotate moved it); nothing for stdout.
    pub fn reopen(&self) {
        self.queue.push(Message::Reopen);
    }

    /// Waits until every line queued so far is written and flushed (at shutdown).
    pub fn flush(&self) {
        let (done, wait) = mpsc::channel();
        self.queue.push(Message::Flush(done));
        // An error means the writer is gone (and the message with it): nothing to wait for.
        let _ = wait.recv();
    }
}

/// Something a request did that the audit log records.
#[derive(Clone, Debug)]
pub enum Event {
    /// An authorization decision (through the decision cache).
    Decision {
        /// When it was made.
        time: SystemTime,
        /// What was asked.
        attrs: Attributes,
        /// The answer; `None` when the authority could not answer (fail closed).
        decision: Option<Decision>,
        /// True when the cache answered.
        cache_hit: bool,
    },
    /// A token issued by a token endpoint.
    Token {
        /// When.
        time: SystemTime,
        /// `gateway` or `token_server`.
        realm: &'static str,
        /// The scope the token grants (token-server realm) or was asked for (gateway realm).
        scope: Option<String>,
        /// Its lifetime in seconds.
        expires_in: u64,
        /// Whether a refresh token was issued with it.
        refresh_token: bool,
    },
    /// A namespace's bindings changed (or a change refused by the store) from the web console.
    Binding {
        /// When.
        time: SystemTime,
        /// The `regate policy` command the change is, e.g. `regate policy add-role-to-user
        /// system:image-puller alice -n project-b`.
        command: String,
        /// The namespace of the bindings.
        namespace: String,
        /// Whether it was made; `None` when it was, else why not.
        refused: Option<String>,
    },
}

/// The request the events of one [`lines`] call belong to.
pub struct RequestRecord<'a> {
    /// `X-Request-Id`.
    pub request_id: &'a str,
    /// The client's address (the forwarded one when the peer is a trusted proxy).
    pub client: Option<std::net::IpAddr>,
    /// The request method.
    pub method: &'a str,
    /// The request path, never the query.
    pub path: &'a str,
    /// The identity's user name; `None` when none was settled.
    pub user: Option<&'a str>,
    /// The identity's groups.
    pub groups: &'a [String],
    /// The response status.
    pub status: u16,
}

/// One audit line, fields in the documented order.
#[derive(Serialize)]
struct Line<'a> {
    time: String,
    event: &'static str,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<std::net::IpAddr>,
    method: &'a str,
    path: &'a str,
    user: Option<&'a str>,
    groups: &'a [String],
    #[serde(flatten)]
    what: What<'a>,
    status: u16,
}

#[derive(Serialize)]
#[serde(untagged)]
enum What<'a> {
    Decision {
        verb: &'a str,
        resource: String,
        namespace: &'a str,
        name: &'a str,
        allowed: bool,
        reason: &'a str,
        cache_hit: bool,
    },
    Token {
        realm: &'static str,
        scope: Option<&'a str>,
        expires_in: u64,
        refresh_token: bool,
    },
    Binding {
        command: &'a str,
        namespace: &'a str,
        done: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        refused: Option<&'a str>,
    },
}

/// The reason recorded when the authority could not answer.
pub const FAIL_CLOSED: &str = "the authority could not answer (fail closed)";

/// The JSON lines of `events`, each ending in `\n`.
pub fn lines(request: &RequestRecord<'_>, events: &[Event]) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 * events.len());
    for event in events {
        let (time, event, what) = match event {
            Event::Decision {
                time,
                attrs,
                decision,
                cache_hit,
            } => (
                time,
                "decision",
                What::Decision {
                    verb: &attrs.verb,
                    resource: attrs.full_resource(),
                    namespace: &attrs.namespace,
                    name: &attrs.name,
                    allowed: decision.as_ref().is_some_and(Decision::allowed),
                    reason: decision.as_ref().map_or(FAIL_CLOSED, Decision::reason),
                    cache_hit: *cache_hit,
                },
            ),
            Event::Token {
                time,
                realm,
                scope,
                expires_in,
                refresh_token,
            } => (
                time,
                "token",
                What::Token {
                    realm,
                    scope: scope.as_deref(),
                    expires_in: *expires_in,
                    refresh_token: *refresh_token,
                },
            ),
            Event::Binding {
                time,
                command,
                namespace,
                refused,
            } => (
                time,
                "binding",
                What::Binding {
                    command,
                    namespace,
                    done: refused.is_none(),
                    refused: refused.as_deref(),
                },
            ),
        };
        let line = Line {
            time: humantime::format_rfc3339_micros(*time).to_string(),
            event,
            request_id: request.request_id,
            client: request.client,
            method: request.method,
            path: request.path,
            user: request.user,
            groups: request.groups,
            what,
            status: request.status,
        };
        // Serializing strings, numbers and addresses cannot fail; were it to, no part is kept.
        let start = out.len();
        match serde_json::to_writer(&mut out, &line) {
            Ok(()) => out.push(b'\n'),
            Err(_) => out.truncate(start),
        }
    }
    out
}

#[cfg(test)]
mod tests;
