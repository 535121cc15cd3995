//! Durable file replacement and bounded reads, shared by the journal and the staging area.
//!
//! A replacement is five steps: create `<name>.tmp`, write the bytes, fsync it, rename it
//! over `<name>`, fsync the directory. A crash after any step leaves either the old file or
//! the new one under `<name>`, plus at most a stray temp file that readers ignore and
//! recovery removes. [`AtomicWrite`] exposes the steps one by one so tests can stop after
//! each, as a power cut would.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Suffix of temp files; a file with it never holds committed data.
pub const TEMP_SUFFIX: &str = ".tmp";

/// The temp name used while replacing `name`.
pub fn temp_name(name: &str) -> String {
    format!("{name}{TEMP_SUFFIX}")
}

/// One step of an atomic replacement, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WriteStep {
    /// Create (truncate) the temp file.
    CreateTemp,
    /// Write all bytes into the temp file.
    WriteData,
    /// fsync the temp file.
    SyncTemp,
    /// Rename the temp file over the target.
    Rename,
    /// fsync the directory so the rename itself is durable.
    SyncDir,
}

impl WriteStep {
    /// Every step, in order.
    pub const ALL: [WriteStep; 5] = [
        WriteStep::CreateTemp,
        WriteStep::WriteData,
        WriteStep::SyncTemp,
        WriteStep::Rename,
        WriteStep::SyncDir,
    ];

    fn next(self) -> Option<WriteStep> {
        let i = WriteStep::ALL.iter().position(|s| *s == self)?;
        WriteStep::ALL.get(i + 1).copied()
    }
}

/// An atomic replacement of `dir/name` by `bytes`, run step by step.
#[derive(Debug)]
pub struct AtomicWrite<'a> {
    dir: PathBuf,
    name: String,
    bytes: &'a [u8],
    next: Option<WriteStep>,
    file: Option<File>,
}

impl<'a> AtomicWrite<'a> {
    /// Prepares the replacement; nothing touches the disk until [`AtomicWrite::step`].
    pub fn new(dir: &Path, name: &str, bytes: &'a [u8]) -> AtomicWrite<'a> {
        AtomicWrite {
            dir: dir.to_path_buf(),
            name: name.to_owned(),
            bytes,
            next: Some(WriteStep::CreateTemp),
            file: None,
        }
    }

    /// The step [`AtomicWrite::step`] runs next, or `None` when done.
    pub fn next_step(&self) -> Option<WriteStep> {
        self.next
    }

    fn temp_path(&self) -> PathBuf {
        self.dir.join(temp_name(&self.name))
    }

    /// Runs the next step. Does nothing once all steps ran.
    pub fn step(&mut self) -> io::Result<()> {
        let Some(step) = self.next else {
            return Ok(());
        };
        match step {
            WriteStep::CreateTemp => {
                self.file = Some(
                    OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .open(self.temp_path())?,
                );
            }
            WriteStep::WriteData => {
                let bytes = self.bytes;
                self.open_file()?.write_all(bytes)?
            }
            WriteStep::SyncTemp => {
                self.open_file()?.sync_all()?;
                self.file = None;
            }
            WriteStep::Rename => fs::rename(self.temp_path(), self.dir.join(&self.name))?,
            WriteStep::SyncDir => sync_dir(&self.dir)?,
        }
        self.next = step.next();
        Ok(())
    }

    fn open_file(&mut self) -> io::Result<&mut File> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("atomic write: temp file is not open"))
    }

    /// Runs every remaining step. On failure the temp file is removed (best effort) and the
    /// target keeps its previous content.
    pub fn run(mut self) -> io::Result<()> {
        while self.next.is_some() {
            if let Err(e) = self.step() {
                if self.next.is_some_and(|s| s <= WriteStep::Rename) {
                    self.file = None;
                    let _ = fs::remove_file(self.temp_path());
                }
                return Err(e);
            }
        }
        Ok(())
    }
}

/// Replaces `dir/name` by `bytes` atomically and durably.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    AtomicWrite::new(dir, name, bytes).run()
}

/// fsyncs a directory, making renames and new entries in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(test)]
    dir_syncs::count();
    File::open(dir)?.sync_all()
}

/// Directory syncs of the current thread, so tests can see a sync that leaves no other
/// trace.
#[cfg(test)]
pub(crate) mod dir_syncs {
    use std::cell::Cell;

    thread_local! {
        static SYNCS: Cell<u64> = const { Cell::new(0) };
    }

    pub(super) fn count() {
        SYNCS.with(|n| n.set(n.get() + 1));
    }

    /// Syncs since the last call, on this thread.
    pub(crate) fn take() -> u64 {
        SYNCS.with(|n| n.replace(0))
    }
}

/// Creates `dir` (and missing parents) and makes its entry durable by syncing its parent.
/// Does nothing when it exists.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => Ok(()),
    }
}

/// A file larger than a reader's bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    /// The bound, in bytes.
    pub limit: u64,
}

/// Reads a whole file of at most `limit` bytes; `Ok(Err(TooLarge))` when it is longer (only
/// `limit + 1` bytes are read to find out).
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<Result<Vec<u8>, TooLarge>> {
    let file = File::open(path)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Ok(Err(TooLarge { limit }));
    }
    Ok(Ok(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_step_leaves_old_or_new_content() {
        for stop_after in 0..=WriteStep::ALL.len() {
            let dir = tempfile::tempdir().unwrap();
            write_atomic(dir.path(), "f", b"old").unwrap();
            let mut w = AtomicWrite::new(dir.path(), "f", b"new");
            for _ in 0..stop_after {
                w.step().unwrap();
            }
            drop(w);
            let content = fs::read(dir.path().join("f")).unwrap();
            let expected: &[u8] = if stop_after > 3 { b"new" } else { b"old" };
            assert_eq!(content, expected, "stopped after {stop_after} steps");
        }
    }

    #[test]
    fn failed_write_keeps_target_and_removes_temp() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "f", b"old").unwrap();
        // A directory in place of the target makes the rename fail.
        fs::create_dir(dir.path().join("g")).unwrap();
        fs::write(dir.path().join("g/x"), b"").unwrap();
        assert!(write_atomic(dir.path(), "g", b"new").is_err());
        assert!(!dir.path().join("g.tmp").exists());
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"old");
    }

    #[test]
    fn bounded_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, b"12345").unwrap();
        assert_eq!(read_bounded(&p, 5).unwrap().unwrap(), b"12345");
        assert_eq!(read_bounded(&p, 4).unwrap(), Err(TooLarge { limit: 4 }));
    }
}
