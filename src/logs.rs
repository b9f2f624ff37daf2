//! The log of serving commands: `tracing` lines (text or JSON) on stderr, written by a thread
//! of their own in batches (`batch.rs`), so a request never waits on a write to stderr nor
//! wakes a thread per line. Every line is written whole and none is dropped: a writer that
//! falls far behind makes the logger wait. [`flush`] writes out what is queued before the
//! process exits.
//!
//! The access line, written once per request, can skip `tracing`'s formatting when the log is
//! plain text ([`plain_text`], [`write_text`]): the same line, made with one `write!`.
//!
//! User names, subjects, paths and messages come from clients, tokens and the state directory,
//! so no control character reaches a text line raw (docs/behaviour.md §10): [`write_escaped`]
//! is the one escaping, applied to every field of every text event ([`EscapedFields`]: the
//! fields as `tracing` formats them, whatever their type or call site) and to the access
//! line's direct path ([`quoted`]). JSON lines are escaped by serde.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use tracing_subscriber::util::SubscriberInitExt as _;

use crate::batch::{Batch, CloseOnDrop};

/// How long the writer thread, woken by a line, waits for more before writing them: a log
/// line is out within this.
const GATHER: std::time::Duration = std::time::Duration::from_millis(20);

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `tracing`'s text lines (coloured on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

/// Set when lines are uncoloured text on the writer thread's queue: [`write_text`] may be used.
static PLAIN_TEXT: AtomicBool = AtomicBool::new(false);

/// Lines queued before a logging request waits for the writer.
const QUEUED_LINES: usize = 64 * 1024;

/// The lines waiting for the writer thread.
type Lines = Arc<Batch<Vec<u8>>>;

/// The queue and the writer thread, once started.
static WRITER: OnceLock<(Lines, Mutex<Option<JoinHandle<()>>>)> = OnceLock::new();

/// Starts the writer thread and installs the subscriber (`RUST_LOG`, default `info`).
pub fn init(format: Format) {
    let queue = Arc::new(Batch::new(QUEUED_LINES));
    let writer = {
        let queue = queue.clone();
        std::thread::Builder::new()
            .name("regate-log".into())
            .spawn(move || write_batches(&queue))
    };
    let Ok(writer) = writer else {
        // No thread to be had: log straight to stderr.
        let _ = subscriber(format, std::io::stderr, std::io::stderr().is_terminal()).try_init();
        return;
    };
    WRITER.get_or_init(|| (queue.clone(), Mutex::new(Some(writer))));
    let installed = subscriber(format, Queued(queue), std::io::stderr().is_terminal())
        .try_init()
        .is_ok();
    let plain = format == Format::Text && !std::io::stderr().is_terminal();
    PLAIN_TEXT.store(installed && plain, Ordering::Release);
}

/// Whether [`write_text`] writes lines as the installed subscriber would.
pub fn plain_text() -> bool {
    PLAIN_TEXT.load(Ordering::Acquire)
}

/// Queues an info line of `target` in the text format — `TIME  INFO TARGET: ` and then what
/// `fields` writes — without going through `tracing`. For a hot line only, and only when
/// [`plain_text`] and `tracing::enabled!` say so (the caller checks both, so `RUST_LOG` still
/// decides).
pub fn write_text(target: &str, fields: impl FnOnce(&mut String)) {
    use std::fmt::Write as _;
    let Some((queue, _)) = WRITER.get() else {
        return;
    };
    let mut line = String::with_capacity(256);
    let now = humantime::format_rfc3339_micros(std::time::SystemTime::now());
    let _ = write!(line, "{now}  INFO {target}: ");
    fields(&mut line);
    line.push('\n');
    queue.push(line.into_bytes());
}

/// Appends `text` as `{:?}` writes it (quoted, escaped), as `tracing` writes a string field,
/// through [`write_escaped`] as every text field is; skipping the per-character escaping when
/// printable ASCII needs none.
pub fn quoted(line: &mut String, text: &str) {
    if text
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        line.push('"');
        line.push_str(text);
        line.push('"');
    } else {
        use std::fmt::Write as _;
        let _ = write!(Escaping(line), "{text:?}");
    }
}

/// Whether `c` may not be written raw to a text line: a C0 control (newline, CR, tab, ESC, …),
/// DEL, a C1 control, or the Unicode line or paragraph separator.
fn must_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Writes `text` with each control character escaped, as Rust's `{:?}` writes it (`\n`,
/// `\r`, `\t`, else `\u{1b}`), so a value from a client can neither end the line nor drive
/// a terminal. The text log's one escaping; writes `text` as it is when nothing needs it.
pub fn write_escaped(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    let mut rest = text;
    while let Some(at) = rest.find(must_escape) {
        out.write_str(&rest[..at])?;
        let c = rest[at..].chars().next().unwrap_or_default();
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c => write!(out, "\\u{{{:x}}}", u32::from(c))?,
        }
        rest = &rest[at + c.len_utf8()..];
    }
    out.write_str(rest)
}

/// A writer that passes everything through [`write_escaped`].
struct Escaping<W>(W);

impl<W: fmt::Write> fmt::Write for Escaping<W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        write_escaped(&mut self.0, text)
    }
}

/// The text log's field formatter: `tracing-subscriber`'s own layout (the message, then
/// `name=value`), every byte of it through [`write_escaped`]. Escaping here rather than where
/// values are logged covers every event and span field of every call site, `%display` and
/// `?debug` values, errors and the message alike (`tracing` itself leaves newlines raw), and
/// any added later. Field names lose their italics on a terminal: escape codes are what is
/// escaped.
#[derive(Debug, Default)]
pub struct EscapedFields(tracing_subscriber::fmt::format::DefaultFields);

impl<'writer> tracing_subscriber::fmt::FormatFields<'writer> for EscapedFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: tracing_subscriber::fmt::format::Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut escaping = Escaping(&mut writer);
        let plain = tracing_subscriber::fmt::format::Writer::new(&mut escaping);
        self.0.format_fields(plain, fields)
    }
}

/// The fmt subscriber writing through `writer` (`RUST_LOG`, default `info`); text lines
/// coloured when `ansi`.
fn subscriber<W>(
    format: Format,
    writer: W,
    ansi: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        Format::Text => Box::new(
            logs.with_ansi(ansi)
                .fmt_fields(EscapedFields::default())
                .finish(),
        ),
        Format::Json => Box::new(
            logs.json()
                .flatten_event(true)
                .with_current_span(true)
                .finish(),
        ),
    }
}

/// Writes out every queued line and stops the writer (before the process exits).
pub fn flush() {
    if let Some((queue, writer)) = WRITER.get() {
        queue.close();
        if let Some(writer) = writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = writer.join();
        }
    }
}

/// The writer thread: each batch in one buffered write to stderr.
fn write_batches(queue: &Batch<Vec<u8>>) {
    let _closed = CloseOnDrop(queue);
    let mut lines = Vec::new();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
    while queue.take(GATHER, &mut lines) {
        for line in lines.drain(..) {
            // Nowhere to report a failing stderr; the lines are gone either way.
            let _ = out.write_all(&line);
        }
        let _ = out.flush();
    }
}

/// A `MakeWriter` that queues each event's line for the writer thread.
struct Queued(Arc<Batch<Vec<u8>>>);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Queued {
    type Writer = QueuedLine<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        QueuedLine(&self.0)
    }
}

/// One event's line: the fmt layer formats it whole and writes it in one `write_all`.
struct QueuedLine<'a>(&'a Batch<Vec<u8>>);

impl Write for QueuedLine<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
