//! The job journal: one durable record per job, surviving a GX restart at any moment.
//!
//! Each record is `job-<id>.json`, replaced atomically ([`durable`]: temp file, fsync,
//! rename, fsync directory); `sequence` holds the last id handed out so ids are never
//! reused. Opening never fails because of file contents: temp files are removed, records
//! that cannot be read are renamed to `job-<id>.json.corrupt` and reported, everything else
//! loads. [`Journal::recover`] then settles every interrupted job.

pub mod durable;
pub mod recover;

pub use recover::{RecoveredJob, RecoveryAction};

use crate::job::{BatteryIdentity, JobId, JobRecord, JobState, VersionInfo};
use crate::staging::UploadAnnouncement;
use crate::unix_time::UnixMillis;
use crate::vrm::UpdateTargets;
use durable::{TEMP_SUFFIX, read_bounded, sync_dir, write_atomic};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Largest record file read back.
pub const MAX_RECORD_FILE: u64 = 1024 * 1024;
/// Format version of record files.
pub const RECORD_FORMAT: u32 = 1;
const SEQUENCE_FILE: &str = "sequence";
const CORRUPT_SUFFIX: &str = ".corrupt";

/// A journal operation that failed on the file system.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// File system failure.
    #[error("journal: {op} {}: {source}", path.display())]
    Io {
        /// What the journal was doing.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// No record with this id.
    #[error("journal has no job {0}")]
    UnknownJob(JobId),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A record file that did not load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// The file as found.
    pub path: PathBuf,
    /// What was wrong.
    pub reason: String,
    /// Where it was moved (`None` when read-only or the rename failed).
    pub quarantined_to: Option<PathBuf>,
}

/// What opening the journal found besides good records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Temp files of interrupted writes (removed unless read-only).
    pub temp_files: Vec<PathBuf>,
    /// Records that did not load.
    pub bad_records: Vec<BadRecord>,
}

#[derive(Serialize)]
struct RecordFileOut<'a> {
    format: u32,
    record: &'a JobRecord,
}

#[derive(Deserialize)]
struct RecordFileIn {
    format: u32,
    record: JobRecord,
}

fn encode_record(record: &JobRecord) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&RecordFileOut {
        format: RECORD_FORMAT,
        record,
    })
}

fn record_name(id: JobId) -> String {
    format!("job-{id}.json")
}

/// The id in a record file name (`job-<id>.json`, maybe with the corrupt suffix).
fn id_of(name: &str) -> Option<JobId> {
    let base = name.strip_suffix(CORRUPT_SUFFIX).unwrap_or(name);
    let digits = base.strip_prefix("job-")?.strip_suffix(".json")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(JobId)
}

fn parse_record(bytes: &[u8], expected: JobId) -> Result<JobRecord, String> {
    let file: RecordFileIn = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if file.format != RECORD_FORMAT {
        return Err(format!("unknown record format {}", file.format));
    }
    if file.record.id() != expected {
        return Err(format!(
            "file of job {expected} holds job {}",
            file.record.id()
        ));
    }
    file.record.validate()?;
    Ok(file.record)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenMode {
    /// Remove temp files, quarantine bad records.
    Repair,
    /// Touch nothing.
    ReadOnly,
}

/// The journal of one GX.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    records: BTreeMap<JobId, JobRecord>,
    last_id: u64,
}

impl Journal {
    /// Opens the journal in `dir` (created when missing), cleaning up after a crash. Fails
    /// only when the directory itself cannot be created or listed.
    pub fn open(dir: &Path) -> Result<(Journal, LoadReport), JournalError> {
        durable::ensure_dir(dir).map_err(io_err("create", dir))?;
        Journal::load(dir, OpenMode::Repair)
    }

    /// Reads the journal in `dir` without changing anything (for inspection tools). A
    /// missing directory reads as empty.
    pub fn read_only(dir: &Path) -> Result<(Journal, LoadReport), JournalError> {
        if !dir.exists() {
            return Ok((
                Journal {
                    dir: dir.to_path_buf(),
                    records: BTreeMap::new(),
                    last_id: 0,
                },
                LoadReport::default(),
            ));
        }
        Journal::load(dir, OpenMode::ReadOnly)
    }

    fn load(dir: &Path, mode: OpenMode) -> Result<(Journal, LoadReport), JournalError> {
        let mut report = LoadReport::default();
        let mut records = BTreeMap::new();
        let mut last_id = 0u64;
        let mut names: Vec<(String, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
            let entry = entry.map_err(io_err("list", dir))?;
            if let Some(name) = entry.file_name().to_str() {
                names.push((name.to_owned(), entry.path()));
            }
        }
        names.sort();
        for (name, path) in names {
            if name.ends_with(TEMP_SUFFIX) {
                tracing::warn!(path = %path.display(), "journal: temp file of an interrupted write");
                if mode == OpenMode::Repair
                    && let Err(e) = fs::remove_file(&path)
                {
                    tracing::warn!(path = %path.display(), error = %e, "journal: could not remove temp file");
                }
                report.temp_files.push(path);
                continue;
            }
            if name == SEQUENCE_FILE {
                match read_bounded(&path, 64) {
                    Ok(Ok(bytes)) => match std::str::from_utf8(&bytes)
                        .ok()
                        .and_then(|s| s.trim().parse::<u64>().ok())
                    {
                        Some(n) => last_id = last_id.max(n),
                        None => tracing::warn!(
                            "journal: sequence file unreadable; ids continue after the records"
                        ),
                    },
                    _ => tracing::warn!(
                        "journal: sequence file unreadable; ids continue after the records"
                    ),
                }
                continue;
            }
            let Some(id) = id_of(&name) else {
                tracing::debug!(path = %path.display(), "journal: ignoring foreign file");
                continue;
            };
            last_id = last_id.max(id.0);
            if name.ends_with(CORRUPT_SUFFIX) {
                continue;
            }
            let parsed = match read_bounded(&path, MAX_RECORD_FILE) {
                Ok(Ok(bytes)) => parse_record(&bytes, id),
                Ok(Err(too_large)) => Err(format!("larger than {} bytes", too_large.limit)),
                Err(e) => Err(format!("unreadable: {e}")),
            };
            match parsed {
                Ok(record) => {
                    records.insert(id, record);
                }
                Err(reason) => {
                    tracing::warn!(path = %path.display(), %reason, "journal: record does not load; quarantined");
                    let quarantined_to = match mode {
                        OpenMode::ReadOnly => None,
                        OpenMode::Repair => {
                            let to = path.with_file_name(format!("{name}{CORRUPT_SUFFIX}"));
                            match fs::rename(&path, &to) {
                                Ok(()) => Some(to),
                                Err(e) => {
                                    tracing::warn!(path = %path.display(), error = %e, "journal: could not quarantine");
                                    None
                                }
                            }
                        }
                    };
                    report.bad_records.push(BadRecord {
                        path,
                        reason,
                        quarantined_to,
                    });
                }
            }
        }
        if mode == OpenMode::Repair && !report.bad_records.is_empty() {
            let _ = sync_dir(dir);
        }
        Ok((
            Journal {
                dir: dir.to_path_buf(),
                records,
                last_id,
            },
            report,
        ))
    }

    /// The journal's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The record of job `id`.
    pub fn get(&self, id: JobId) -> Option<&JobRecord> {
        self.records.get(&id)
    }

    /// Every record, by id.
    pub fn records(&self) -> impl Iterator<Item = &JobRecord> {
        self.records.values()
    }

    /// Creates and commits a new job, Uploading at 0 %. Its id is committed to the sequence
    /// file first, so no later job reuses it even if this one is never written.
    pub fn create(
        &mut self,
        battery: BatteryIdentity,
        package: UploadAnnouncement,
        version_before: Option<VersionInfo>,
        now: UnixMillis,
    ) -> Result<&JobRecord, JournalError> {
        self.create_for(battery, package, version_before, UpdateTargets::All, now)
    }

    /// [`Journal::create`] for the nodes or modules `targets` of the battery.
    pub fn create_for(
        &mut self,
        battery: BatteryIdentity,
        package: UploadAnnouncement,
        version_before: Option<VersionInfo>,
        targets: UpdateTargets,
        now: UnixMillis,
    ) -> Result<&JobRecord, JournalError> {
        let id = JobId(self.last_id + 1);
        write_atomic(&self.dir, SEQUENCE_FILE, id.0.to_string().as_bytes())
            .map_err(io_err("write", &self.dir.join(SEQUENCE_FILE)))?;
        self.last_id = id.0;
        let record =
            JobRecord::new(id, battery, package, version_before, now).with_targets(targets);
        self.commit(record)?;
        self.get(id).ok_or(JournalError::UnknownJob(id))
    }

    /// Durably stores `record`, replacing the previous version of the same job.
    pub fn commit(&mut self, record: JobRecord) -> Result<(), JournalError> {
        let id = record.id();
        let bytes = encode_record(&record).map_err(|e| io_err("serialize", &self.dir)(e.into()))?;
        let name = record_name(id);
        write_atomic(&self.dir, &name, &bytes).map_err(io_err("write", &self.dir.join(&name)))?;
        self.last_id = self.last_id.max(id.0);
        self.records.insert(id, record);
        Ok(())
    }

    /// Applies `change` to a copy of job `id`'s record and commits it; the journal keeps
    /// the old record when `change` or the commit fails.
    pub fn update<T, E>(
        &mut self,
        id: JobId,
        change: impl FnOnce(&mut JobRecord) -> Result<T, E>,
    ) -> Result<Result<T, E>, JournalError> {
        let mut record = self.get(id).ok_or(JournalError::UnknownJob(id))?.clone();
        match change(&mut record) {
            Ok(out) => {
                self.commit(record)?;
                Ok(Ok(out))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    /// Deletes job `id`'s record.
    pub fn remove(&mut self, id: JobId) -> Result<(), JournalError> {
        let path = self.dir.join(record_name(id));
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("delete", &path)(e)),
        }
        sync_dir(&self.dir).map_err(io_err("sync", &self.dir))?;
        self.records.remove(&id);
        Ok(())
    }

    /// Deletes old ended jobs; returns their ids. Their history stays in the event log.
    ///
    /// Failed and completed jobs are counted apart, so a flood of failed attempts never
    /// pushes out the record of a real firmware change: the newest `keep` failed jobs and
    /// the newest `keep` completed jobs (by last change) stay, and so does the latest
    /// completed job of every battery, however old. At most `2 * keep` ended jobs plus one
    /// per battery remain.
    pub fn prune_ended(&mut self, keep: usize) -> Result<Vec<JobId>, JournalError> {
        let mut failed: Vec<(UnixMillis, JobId)> = Vec::new();
        let mut completed: Vec<(UnixMillis, JobId)> = Vec::new();
        // The latest completed job of each battery: (last change, id) by serial number.
        let mut latest: std::collections::HashMap<&str, (UnixMillis, JobId)> =
            std::collections::HashMap::new();
        for r in self.records.values() {
            let key = (r.updated_at(), r.id());
            match r.state() {
                JobState::Failed => failed.push(key),
                JobState::Completed => {
                    completed.push(key);
                    let best = latest.entry(r.battery().serial.as_str()).or_insert(key);
                    *best = (*best).max(key);
                }
                _ => {}
            }
        }
        let protected: HashSet<JobId> = latest.values().map(|(_, id)| *id).collect();
        let mut doomed = Vec::new();
        for mut list in [failed, completed] {
            list.sort();
            let excess = list.len().saturating_sub(keep);
            doomed.extend(
                list.into_iter()
                    .take(excess)
                    .map(|(_, id)| id)
                    .filter(|id| !protected.contains(id)),
            );
        }
        doomed.sort();
        let mut removed = Vec::new();
        for id in doomed {
            self.remove(id)?;
            removed.push(id);
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests;
