//! The log of serving commands: `tracing` lines (text or JSON) on stderr, written by a thread
//! of their own in batches (`batch.rs`), so a request never waits on a write to stderr nor
//! wakes a thread per line. Every line is written whole and none is dropped: a writer that
//! falls far behind makes the logger wait. [`flush`] writes out what is queued before the
//! process exits.
//!
//! The access line, written once per request, can skip `tracing`'s formatting when the log is
//! plain text ([`plain_text`], [`write_text`]): the same line, made with one `write!`.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

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
        let _ = subscriber(format, std::io::stderr);
        return;
    };
    WRITER.get_or_init(|| (queue.clone(), Mutex::new(Some(writer))));
    let installed = subscriber(format, Queued(queue)).is_ok();
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

/// Appends `text` as `{:?}` writes it (quoted, escaped), skipping the per-character escaping
/// when printable ASCII needs none.
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
        let _ = write!(line, "{text:?}");
    }
}

/// Installs the fmt subscriber writing through `writer`.
fn subscriber<W>(format: Format, writer: W) -> Result<(), impl std::fmt::Display>
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        Format::Text => logs.with_ansi(std::io::stderr().is_terminal()).try_init(),
        Format::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
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
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn quoted_writes_what_debug_writes(text in any::<String>(), ascii in "[ -~]{0,40}") {
            for text in [text, ascii] {
                let mut line = String::new();
                super::quoted(&mut line, &text);
                prop_assert_eq!(line, format!("{text:?}"));
            }
        }
    }
}
