//! The file-system primitives every file regate keeps shares: the state directory, the key
//! directory, pull-secret files and the token key.
//!
//! - [`write_atomic`]: a reader (or a crash) sees the old file or the new one, never a part;
//!   the mode is set before the first byte is written, so a secret is never readable by others.
//! - [`create_atomic`]: the same, but only if the file does not exist yet (a race between two
//!   creators has one winner, whose file everyone then reads).
//! - [`lock_exclusive`] and [`lock_shared`]: advisory locks on a lock file, per open file, so
//!   threads of one process exclude each other as processes do.
//! - [`stamp`]: what changes whenever a file is replaced, for pollers (one `stat`).
//!
//! Errors are `io::Error`s; callers add which file and what to do about it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Prefix of temporary files: hidden, so loaders and fingerprints skip them.
const TEMP_PREFIX: &str = ".tmp-";

/// (mtime seconds, mtime nanoseconds, size, inode, device) of a file. An atomic replacement
/// makes a new inode, so every write changes it; a Kubernetes Secret mount's `..data` swap
/// changes the target's inode and device.
pub type Stamp = (i64, i64, u64, u64, u64);

/// The stamp of `path` (following symlinks); `None` when it cannot be read.
pub fn stamp(path: &Path) -> Option<Stamp> {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.mtime(), m.mtime_nsec(), m.size(), m.ino(), m.dev()))
}

/// The directory `path` is in (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// A temporary file beside `path` with `mode` and `bytes`, synced.
fn temp_with(path: &Path, bytes: &[u8], mode: u32) -> io::Result<tempfile::NamedTempFile> {
    // The temporary file's own name means nothing to whoever reads the error: name the
    // directory it could not be made in.
    let dir = parent(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(|e| {
            let kind = e.kind();
            io::Error::new(
                kind,
                format!(
                    "cannot create a file in {}: {}",
                    dir.display(),
                    io::Error::from(kind)
                ),
            )
        })?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    Ok(tmp)
}

/// Replaces `path` with `bytes`, mode `mode`, atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    temp_with(path, bytes, mode)?
        .persist(path)
        .map_err(|e| e.error)?;
    sync_dir(parent(path))
}

/// Creates `path` with `bytes`, mode `mode`, atomically, unless it exists; `Ok(false)` when
/// it did (then its content stands, even if another process wrote it a moment ago).
pub fn create_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<bool> {
    match temp_with(path, bytes, mode)?.persist_noclobber(path) {
        Ok(_) => sync_dir(parent(path)).map(|()| true),
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e.error),
    }
}

/// Makes a rename or removal in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all())
}

/// Takes an exclusive lock of `path` (created 0600 if missing), held until the file is dropped.
pub fn lock_exclusive(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)?;
    file.lock()?;
    Ok(file)
}

/// Takes a shared lock of `path` if it exists (`None` otherwise: no writer has run), held until
/// the file is dropped.
pub fn lock_shared(path: &Path) -> io::Result<Option<File>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    file.lock_shared()?;
    Ok(Some(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_set_the_mode_and_replace_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_atomic(&path, b"one", 0o600).unwrap();
        let before = stamp(&path).unwrap();
        write_atomic(&path, b"two!", 0o644).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two!");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_ne!(stamp(&path).unwrap(), before, "a new inode");
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
    }

    #[test]
    fn create_atomic_keeps_the_first_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        assert!(create_atomic(&path, b"first", 0o600).unwrap());
        assert!(!create_atomic(&path, b"second", 0o600).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
    }

    #[test]
    fn shared_lock_of_a_missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(lock_shared(&dir.path().join("none")).unwrap().is_none());
        let path = dir.path().join(".lock");
        let held = lock_exclusive(&path).unwrap();
        drop(held);
        assert!(lock_shared(&path).unwrap().is_some());
    }
}
