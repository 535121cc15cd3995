//! The append-only event log on disk: JSON lines, fsynced, rotated.

use crate::events::record::EventRecord;
use crate::journal::durable::{ensure_dir, sync_dir};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Name of the file being appended to.
pub const CURRENT_FILE: &str = "events.jsonl";

/// Longest line written or read, in bytes (newline excluded).
pub const MAX_LINE: usize = 16 * 1024;

/// The name of rotated file `n` (1 = most recent).
pub fn rotated_file(n: u32) -> String {
    format!("events.{n}.jsonl")
}

/// How large the log may grow.
///
/// The current file is rotated once the next line would take it past `max_file_bytes`;
/// `max_rotated_files` rotated files are kept and the oldest is deleted. The log therefore
/// never exceeds `(max_rotated_files + 1) * max_file_bytes` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventLogConfig {
    /// Largest size of one file, in bytes.
    pub max_file_bytes: u64,
    /// Rotated files kept besides the current one (0: the current file is emptied when
    /// full, keeping no history beyond it).
    pub max_rotated_files: u32,
}

impl Default for EventLogConfig {
    /// 256 KiB per file, 4 rotated files: at most 1.25 MiB, thousands of updates.
    fn default() -> EventLogConfig {
        EventLogConfig {
            max_file_bytes: 256 * 1024,
            max_rotated_files: 4,
        }
    }
}

/// Why the event log could not be opened or appended to.
#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    /// File system failure.
    #[error("event log: {op} {}: {source}", path.display())]
    Io {
        /// What the log was doing.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A record longer than [`MAX_LINE`] once serialized.
    #[error("event of {len} bytes exceeds the line limit of {MAX_LINE} bytes")]
    LineTooLong {
        /// Serialized length.
        len: usize,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> EventLogError + 'a {
    move |source| EventLogError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The writer of the event log.
#[derive(Debug)]
pub struct EventLog {
    dir: PathBuf,
    config: EventLogConfig,
    file: File,
    size: u64,
}

impl EventLog {
    /// Opens the log in `dir` (created when missing). A torn last line left by a crash
    /// during an append is cut off, with a warning, so the next line starts clean.
    pub fn open(dir: &Path, config: EventLogConfig) -> Result<EventLog, EventLogError> {
        ensure_dir(dir).map_err(io_err("create", dir))?;
        let path = dir.join(CURRENT_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        let size = cut_torn_tail(&mut file).map_err(io_err("repair", &path))?;
        Ok(EventLog {
            dir: dir.to_path_buf(),
            config,
            file,
            size,
        })
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one record as one line and fsyncs it. On a write failure the partial line
    /// is cut off again, so the file never keeps half a record.
    pub fn append(&mut self, record: &EventRecord) -> Result<(), EventLogError> {
        let mut line = serde_json::to_vec(record).map_err(|e| EventLogError::Io {
            op: "serialize event for",
            path: self.dir.join(CURRENT_FILE),
            source: e.into(),
        })?;
        if line.len() > MAX_LINE {
            return Err(EventLogError::LineTooLong { len: line.len() });
        }
        line.push(b'\n');
        let len = line.len() as u64;
        if self.size > 0 && self.size + len > self.config.max_file_bytes {
            self.rotate()?;
        }
        let path = self.dir.join(CURRENT_FILE);
        if let Err(e) = self
            .file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
        {
            let _ = self.file.set_len(self.size);
            return Err(EventLogError::Io {
                op: "append to",
                path,
                source: e,
            });
        }
        self.size += len;
        Ok(())
    }

    /// Shifts `events.jsonl` to `events.1.jsonl`, older files one number up, and drops the
    /// oldest beyond the limit. A crash part-way leaves every kept file intact under some
    /// name the reader finds.
    fn rotate(&mut self) -> Result<(), EventLogError> {
        let max = self.config.max_rotated_files;
        if max == 0 {
            let path = self.dir.join(CURRENT_FILE);
            self.file.set_len(0).map_err(io_err("truncate", &path))?;
            self.file.sync_all().map_err(io_err("sync", &path))?;
            self.size = 0;
            return Ok(());
        }
        let oldest = self.dir.join(rotated_file(max));
        match fs::remove_file(&oldest) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("delete", &oldest)(e)),
        }
        for n in (1..max).rev() {
            let from = self.dir.join(rotated_file(n));
            if from.exists() {
                let to = self.dir.join(rotated_file(n + 1));
                fs::rename(&from, &to).map_err(io_err("rotate", &from))?;
            }
        }
        let current = self.dir.join(CURRENT_FILE);
        let first = self.dir.join(rotated_file(1));
        fs::rename(&current, &first).map_err(io_err("rotate", &current))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&current)
            .map_err(io_err("open", &current))?;
        sync_dir(&self.dir).map_err(io_err("sync", &self.dir))?;
        self.size = 0;
        Ok(())
    }
}

/// Truncates `file` after its last newline (or to empty) when it does not end with one.
/// Returns the resulting length.
fn cut_torn_tail(file: &mut File) -> io::Result<u64> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    let mut end = len;
    let mut block = vec![0u8; 4096];
    let mut first = true;
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let buf = &mut block[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(buf)?;
        if first && buf.last() == Some(&b'\n') {
            return Ok(len);
        }
        first = false;
        if let Some(pos) = buf.iter().rposition(|b| *b == b'\n') {
            end = start + pos as u64 + 1;
            break;
        }
        end = start;
    }
    tracing::warn!(
        dropped_bytes = len - end,
        "event log ended in a torn line (interrupted write); it was cut off"
    );
    file.set_len(end)?;
    file.sync_all()?;
    Ok(end)
}
