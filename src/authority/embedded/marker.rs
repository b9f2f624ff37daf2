//! Watching the change marker: the CLI appends a byte to `<state>/.changes` as it lets go of the
//! writers' lock, and the server looks before every authentication and decision whether the
//! marker was written since it last caught up, so a change is in force on the next request
//! (docs/behaviour.md §10).
//!
//! A look is a non-blocking read of an inotify watch on the state directory: one cheap system
//! call, no path walked, and the kernel queues the event before the writer's `write` returns.
//! Where inotify cannot be had (the watch limit reached, a file system without it), the
//! marker's `stat` is compared with the last one instead, as before.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Bytes read from the watch at a time: room for several events (one is at most 16 bytes and a
/// 255-byte name).
const EVENTS: usize = 4096;

/// How a [`Marker`] notices writes.
enum Watch {
    /// An inotify descriptor (non-blocking) watching the state directory, and a buffer to read
    /// its events into (kept, so a look does not clear one).
    Inotify(OwnedFd, Box<[u8; EVENTS]>),
    /// The marker's last stamp.
    Stat(Option<crate::fs::Stamp>),
}

/// The change marker of one state directory, and a count of the writes noticed so far.
pub(super) struct Marker {
    /// `<state>/.changes`.
    path: PathBuf,
    /// The watch and how many changes it has noticed (monotonic).
    state: Mutex<(Watch, u64)>,
}

impl Marker {
    /// Starts watching the marker at `path` (before the snapshot is loaded, so no write between
    /// the two is missed).
    pub(super) fn watch(path: PathBuf) -> Marker {
        let watch = match path.parent().and_then(inotify) {
            Some(fd) => Watch::Inotify(fd, Box::new([0; EVENTS])),
            None => Watch::Stat(crate::fs::stamp(&path)),
        };
        Marker {
            path,
            state: Mutex::new((watch, 0)),
        }
    }

    /// How many changes to the marker have been noticed, this look included. A caller that
    /// has caught up with a count has nothing to do until it grows.
    pub(super) fn changes(&self) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (watch, count) = &mut *state;
        let changed = match watch {
            Watch::Inotify(fd, buffer) => match drain(fd, buffer, self.name()) {
                Some(changed) => changed,
                None => {
                    // The watch is gone (the directory removed or moved): stat from now on.
                    *watch = Watch::Stat(crate::fs::stamp(&self.path));
                    true
                }
            },
            Watch::Stat(seen) => {
                let now = crate::fs::stamp(&self.path);
                let changed = now != *seen;
                *seen = now;
                changed
            }
        };
        if changed {
            *count += 1;
        }
        *count
    }

    /// The marker's file name, as inotify events name it.
    fn name(&self) -> &[u8] {
        use std::os::unix::ffi::OsStrExt;
        self.path
            .file_name()
            .map(|n| n.as_bytes())
            .unwrap_or_default()
    }
}

/// A non-blocking inotify descriptor watching `dir` for writes to, and replacement or removal
/// of, its entries; `None` when the kernel will not give one.
fn inotify(dir: &Path) -> Option<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: plain system calls on a descriptor this function owns; `path` is NUL-terminated.
    unsafe {
        let fd = libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let mask = libc::IN_MODIFY
            | libc::IN_ATTRIB
            | libc::IN_CLOSE_WRITE
            | libc::IN_CREATE
            | libc::IN_DELETE
            | libc::IN_MOVED_FROM
            | libc::IN_MOVED_TO
            | libc::IN_DELETE_SELF
            | libc::IN_MOVE_SELF
            | libc::IN_ONLYDIR;
        (libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) >= 0).then_some(fd)
    }
}

/// Reads every queued event: `Some(true)` when one concerns the file named `marker` (or events
/// were lost), `Some(false)` when none does, `None` when the watch no longer works.
fn drain(fd: &OwnedFd, buffer: &mut [u8; EVENTS], marker: &[u8]) -> Option<bool> {
    const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
    let mut changed = false;
    loop {
        // SAFETY: reads into a buffer of the length given.
        let read = unsafe { libc::read(fd.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len()) };
        if read < 0 {
            let error = std::io::Error::last_os_error();
            return match error.kind() {
                std::io::ErrorKind::WouldBlock => Some(changed),
                std::io::ErrorKind::Interrupted => continue,
                _ => None,
            };
        }
        let events = &buffer[..read.unsigned_abs()];
        let mut at = 0;
        while at + HEADER <= events.len() {
            // SAFETY: the kernel writes whole events; the header is read unaligned.
            let event: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(events[at..].as_ptr().cast()) };
            let name_len = event.len as usize;
            let name = events
                .get(at + HEADER..at + HEADER + name_len)
                .unwrap_or_default();
            let name = name.split(|b| *b == 0).next().unwrap_or_default();
            if event.mask & (libc::IN_IGNORED | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0 {
                return None;
            }
            if event.mask & libc::IN_Q_OVERFLOW != 0 || name == marker {
                changed = true;
            }
            at += HEADER + name_len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_to_the_marker_are_counted_and_other_files_are_not() {
        let dir = tempfile::tempdir().expect("dir");
        let marker = Marker::watch(dir.path().join(".changes"));
        assert!(matches!(marker.state.lock().unwrap().0, Watch::Inotify(..)));
        assert_eq!(marker.changes(), 0);
        std::fs::write(dir.path().join("other"), "x").expect("write");
        assert_eq!(marker.changes(), 0, "another file is not the marker");
        std::fs::write(dir.path().join(".changes"), ".").expect("write");
        assert_eq!(
            marker.changes(),
            1,
            "seen by the first look after the write"
        );
        assert_eq!(marker.changes(), 1, "and only once");
        std::fs::remove_file(dir.path().join(".changes")).expect("remove");
        assert_eq!(marker.changes(), 2, "removal is a change");
    }

    #[test]
    fn a_removed_directory_falls_back_to_stat() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().to_path_buf();
        let marker = Marker::watch(path.join(".changes"));
        drop(dir);
        assert_eq!(marker.changes(), 1);
        assert!(matches!(marker.state.lock().unwrap().0, Watch::Stat(None)));
        std::fs::create_dir(&path).expect("dir again");
        std::fs::write(path.join(".changes"), ".").expect("write");
        assert_eq!(marker.changes(), 2, "stat sees the new marker");
        std::fs::remove_dir_all(&path).expect("clean up");
    }
}
