//! The append-only event log on disk: JSON lines, fsynced, rotated.

use crate::events::read::History;
use crate::events::record::{EventKind, EventRecord};
use crate::job::JobId;
use crate::journal::durable::{ensure_dir, sync_dir, write_atomic};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Name of the file being appended to.
pub const CURRENT_FILE: &str = "events.jsonl";

/// Longest line written or read, in bytes (newline excluded).
pub const MAX_LINE: usize = 16 * 1024;

/// The file that keeps the events of firmware changes that rotation would delete.
pub const KEPT_FILE: &str = "events.kept.jsonl";

/// Updates per battery whose events [`KEPT_FILE`] keeps at most (completed ones, and any
/// not yet ended), newest first.
pub const KEPT_PER_BATTERY: usize = 8;

/// The name of rotated file `n` (1 = most recent).
pub fn rotated_file(n: u32) -> String {
    format!("events.{n}.jsonl")
}

/// How large the log may grow.
///
/// The current file is rotated once the next line would take it past `max_file_bytes`;
/// `max_rotated_files` rotated files are kept and the oldest is deleted. Before a file is
/// deleted, the events in it of updates that changed a battery's firmware (completed), or
/// have not ended yet, move to [`KEPT_FILE`]: failed attempts never push a real firmware
/// change out of the history. That file keeps the newest [`KEPT_PER_BATTERY`] such updates
/// of each battery and at most `max_file_bytes` (the oldest updates go first). The log
/// therefore never exceeds `(max_rotated_files + 2) * max_file_bytes` bytes.
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
        crate::crash::point("events.append");
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
        crate::crash::point("events.appended");
        Ok(())
    }

    /// Shifts `events.jsonl` to `events.1.jsonl`, older files one number up, and drops the
    /// oldest beyond the limit. A crash part-way leaves every kept file intact under some
    /// name the reader finds.
    fn rotate(&mut self) -> Result<(), EventLogError> {
        let max = self.config.max_rotated_files;
        if max == 0 {
            let path = self.dir.join(CURRENT_FILE);
            self.keep_firmware_changes(&path)?;
            self.file.set_len(0).map_err(io_err("truncate", &path))?;
            self.file.sync_all().map_err(io_err("sync", &path))?;
            self.size = 0;
            return Ok(());
        }
        let oldest = self.dir.join(rotated_file(max));
        if oldest.exists() {
            self.keep_firmware_changes(&oldest)?;
        }
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

impl EventLog {
    /// Moves the events in `doomed` (about to be deleted) of completed updates, and of
    /// updates not ended yet, into [`KEPT_FILE`], within its bounds. Idempotent: a crash
    /// before `doomed` is deleted only repeats this step, without duplicates.
    fn keep_firmware_changes(&self, doomed: &Path) -> Result<(), EventLogError> {
        let read = |path: &Path| History::read(path).map_err(io_err("read", path));
        let all = read(&self.dir)?;
        let mut completed = HashSet::new();
        let mut failed = HashSet::new();
        for e in &all.events {
            match e.event {
                EventKind::Completed { .. } => {
                    completed.insert(e.job);
                }
                EventKind::Failed { .. } => {
                    failed.insert(e.job);
                }
                _ => {}
            }
        }
        let wanted =
            |job: JobId| job.0 != 0 && (completed.contains(&job) || !failed.contains(&job));
        let kept_path = self.dir.join(KEPT_FILE);
        let mut kept: Vec<EventRecord> = History::read_one(&kept_path)
            .map_err(io_err("read", &kept_path))?
            .events;
        let mut seen: HashSet<String> = kept
            .iter()
            .filter_map(|e| serde_json::to_string(e).ok())
            .collect();
        let from = History::read_one(doomed).map_err(io_err("read", doomed))?;
        for e in from.events {
            if wanted(e.job)
                && let Ok(line) = serde_json::to_string(&e)
                && seen.insert(line)
            {
                kept.push(e);
            }
        }
        // An update kept while running that failed since goes; then the newest updates of
        // each battery, then the byte bound, oldest updates first.
        kept.retain(|e| wanted(e.job));
        let mut by_battery: BTreeMap<&str, BTreeSet<JobId>> = BTreeMap::new();
        for e in &kept {
            by_battery
                .entry(e.battery.serial.as_str())
                .or_default()
                .insert(e.job);
        }
        let mut jobs: BTreeSet<JobId> = by_battery
            .values()
            .flat_map(|jobs| jobs.iter().rev().take(KEPT_PER_BATTERY).copied())
            .collect();
        let encode = |kept: &[EventRecord], jobs: &BTreeSet<JobId>| {
            let mut out = Vec::new();
            for e in kept.iter().filter(|e| jobs.contains(&e.job)) {
                if let Ok(line) = serde_json::to_vec(e) {
                    out.extend_from_slice(&line);
                    out.push(b'\n');
                }
            }
            out
        };
        let mut bytes = encode(&kept, &jobs);
        while bytes.len() as u64 > self.config.max_file_bytes {
            let Some(oldest) = jobs.pop_first() else {
                break;
            };
            tracing::warn!(job = %oldest, "event log: the oldest kept firmware change no longer fits");
            bytes = encode(&kept, &jobs);
        }
        write_atomic(&self.dir, KEPT_FILE, &bytes).map_err(io_err("write", &kept_path))
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
