//! The audit writer thread: takes whole lines off the queue in batches (`batch.rs`), writes
//! them to stdout or a file and flushes after each batch, so a quiet gateway's lines reach the
//! disk within about 5 ms and a busy one's go out in large writes.
//!
//! A file is rotated before a write would take it past `max_size`: `PATH.N-1` becomes `PATH.N`
//! (the oldest is dropped), …, `PATH` becomes `PATH.1`, and a new `PATH` is opened. Lines of
//! one request are written together, so a rotation never splits them. On `Reopen` (SIGHUP) the
//! file is opened again by name, for tools such as logrotate that move it away themselves.
//!
//! A write that fails is counted (`regate_audit_write_errors_total`) and logged once until a
//! write succeeds again; the file is reopened before the next write.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{AuditOutput, Message};
use crate::batch::{Batch, CloseOnDrop};

/// How long the writer thread, woken by a request's lines, waits for more before writing
/// them: an audit line is on disk within this (and a flush).
const GATHER: std::time::Duration = std::time::Duration::from_millis(5);

/// Bytes buffered before a write reaches the file.
const BUFFER: usize = 256 * 1024;

/// Where the writer thread writes.
pub(super) enum Sink {
    Stdout(BufWriter<io::Stdout>),
    File(Rotating),
}

impl Sink {
    /// Opens `output`; a file is created (mode 0600) or appended to.
    pub(super) fn open(output: &AuditOutput) -> io::Result<Sink> {
        Ok(match output {
            AuditOutput::Stdout => Sink::Stdout(BufWriter::with_capacity(BUFFER, io::stdout())),
            AuditOutput::File {
                path,
                max_size,
                max_files,
            } => Sink::File(Rotating::open(path.clone(), *max_size, *max_files)?),
        })
    }

    fn write(&mut self, lines: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout(out) => out.write_all(lines),
            Sink::File(file) => file.write(lines),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout(out) => out.flush(),
            Sink::File(file) => file.flush(),
        }
    }

    fn reopen(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout(_) => Ok(()),
            Sink::File(file) => file.reopen(),
        }
    }
}

/// The thread's loop, until the queue is closed.
pub(super) fn run(queue: &Batch<Message>, mut sink: Sink) {
    let _closed = CloseOnDrop(queue);
    let mut failing = false;
    let mut messages = Vec::new();
    while queue.take(GATHER, &mut messages) {
        let mut waiting = Vec::new();
        // Everything taken goes out before one flush.
        for m in messages.drain(..) {
            match m {
                Message::Lines(lines) => {
                    let result = sink.write(&lines);
                    let count = lines.iter().filter(|b| **b == b'\n').count() as u64;
                    note(&mut failing, result, count);
                }
                Message::Reopen => match sink.reopen() {
                    Ok(()) => tracing::info!("audit log reopened"),
                    Err(error) => tracing::error!(%error, "audit log: cannot reopen its file"),
                },
                Message::Flush(done) => waiting.push(done),
            }
        }
        let flushed = sink.flush();
        note(&mut failing, flushed, 0);
        for done in waiting {
            let _ = done.send(());
        }
    }
}

/// Counts `lines` written or lost, and logs a failure once until writing works again.
fn note(failing: &mut bool, result: io::Result<()>, lines: u64) {
    let metrics = crate::metrics::get();
    match result {
        Ok(()) => {
            metrics.audit_lines.inc_by(lines);
            if *failing && lines > 0 {
                tracing::info!("audit log: writing again");
                *failing = false;
            }
        }
        Err(error) => {
            metrics.audit_write_errors.inc_by(lines);
            if !*failing {
                tracing::error!(%error, lines, "audit log: lines could not be written");
                *failing = true;
            }
        }
    }
}

/// A file rotated by size.
pub(super) struct Rotating {
    path: PathBuf,
    max_size: u64,
    max_files: u32,
    /// `None` after a failed open: opened again before the next write.
    file: Option<BufWriter<File>>,
    /// Bytes in the file, counting what is buffered.
    size: u64,
}

impl Rotating {
    fn open(path: PathBuf, max_size: u64, max_files: u32) -> io::Result<Rotating> {
        let (file, size) = open_append(&path)?;
        Ok(Rotating {
            path,
            max_size,
            max_files,
            file: Some(file),
            size,
        })
    }

    fn write(&mut self, lines: &[u8]) -> io::Result<()> {
        if self.size > 0
            && self.size + lines.len() as u64 > self.max_size
            && let Err(error) = self.rotate()
        {
            // Better a file past its size than lines lost; try again after another max_size.
            tracing::warn!(%error, path = %self.path.display(), "audit log: cannot rotate; writing on");
            self.size = 0;
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                let (file, size) = open_append(&self.path)?;
                self.size = size;
                self.file.insert(file)
            }
        };
        match file.write_all(lines) {
            Ok(()) => {
                self.size += lines.len() as u64;
                Ok(())
            }
            Err(error) => {
                // What was buffered is lost with the handle; start afresh on the next write.
                self.file = None;
                Err(error)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(file) => file.flush().inspect_err(|_| self.file = None),
            None => Ok(()),
        }
    }

    /// `PATH` → `PATH.1` → … → `PATH.max_files` (dropped), then a new `PATH`.
    fn rotate(&mut self) -> io::Result<()> {
        if let Some(mut file) = self.file.take() {
            file.flush()?;
        }
        let numbered = |n: u32| {
            let mut name = self.path.as_os_str().to_owned();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        for n in (1..self.max_files).rev() {
            rename_if_there(&numbered(n), &numbered(n + 1))?;
        }
        rename_if_there(&self.path, &numbered(1))?;
        let (file, size) = open_append(&self.path)?;
        self.file = Some(file);
        self.size = size;
        Ok(())
    }

    fn reopen(&mut self) -> io::Result<()> {
        if let Some(mut file) = self.file.take() {
            file.flush()?;
        }
        let (file, size) = open_append(&self.path)?;
        self.file = Some(file);
        self.size = size;
        Ok(())
    }
}

/// `path` opened for appending (created mode 0600: it names who did what), and its size.
fn open_append(path: &Path) -> io::Result<(BufWriter<File>, u64)> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    let size = file.metadata()?.len();
    Ok((BufWriter::with_capacity(BUFFER, file), size))
}

fn rename_if_there(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
