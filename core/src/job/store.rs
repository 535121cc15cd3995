//! Jobs with their journal and event log: the one place that changes a job.

use crate::events::{EventKind, EventLog, EventLogConfig, EventLogError, EventRecord};
use crate::job::{
    BatteryIdentity, CheckpointError, InvalidTransition, JobEvent, JobId, JobRecord, JobState,
    VersionInfo,
};
use crate::journal::{Journal, JournalError, LoadReport, RecoveredJob};
use crate::staging::{Sha256Digest, UploadAnnouncement};
use crate::unix_time::UnixMillis;
use crate::vrm::UpdateTargets;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The GX's state directory and its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Default state directory on a GX device (`/data` survives firmware updates).
    pub const DEFAULT: &'static str = "/data/bmsfw";

    /// The state directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into() }
    }
    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The job journal (`journal/`).
    pub fn journal(&self) -> PathBuf {
        self.root.join("journal")
    }
    /// The event log (`events/`).
    pub fn events(&self) -> PathBuf {
        self.root.join("events")
    }
    /// The staging area (`staging/`).
    pub fn staging(&self) -> PathBuf {
        self.root.join("staging")
    }
}

/// A job change that did not happen, or happened without its event-log line.
#[derive(Debug, thiserror::Error)]
pub enum JobStoreError {
    /// The journal failed; the job is unchanged.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The journal committed the change but the event log could not record it.
    #[error("job change committed, but the event log failed: {0}")]
    EventLog(#[from] EventLogError),
    /// The event is not allowed in the job's state; the job is unchanged.
    #[error(transparent)]
    Transition(#[from] InvalidTransition),
    /// The checkpoint was refused; the job is unchanged.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// No such job.
    #[error("no job {0}")]
    UnknownJob(JobId),
}

/// What start-up found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartupReport {
    /// Leftovers of interrupted writes and unreadable records.
    pub journal: LoadReport,
    /// Interrupted jobs and what became of them.
    pub recovered: Vec<RecoveredJob>,
    /// Failures to commit a recovery (the job stays as it was) or to log one.
    pub recovery_errors: Vec<String>,
}

/// The jobs of one GX: every change goes through the transition table, is committed to the
/// journal, then recorded in the event log.
#[derive(Debug)]
pub struct JobStore {
    journal: Journal,
    events: EventLog,
    keep_ended: usize,
}

impl JobStore {
    /// Failed jobs, and apart from them completed jobs, kept in the journal by default;
    /// each battery's latest completed job stays regardless (see [`Journal::prune_ended`];
    /// older ones live on in the event log).
    pub const DEFAULT_KEEP_ENDED: usize = 32;

    /// Opens the journal and the event log of `state` and recovers interrupted jobs (see
    /// [`Journal::recover`]), logging what recovery did. Fails only when a directory cannot
    /// be created or listed; damaged files and failed recovery steps are reported in the
    /// [`StartupReport`].
    pub fn open(
        state: &StateDir,
        events: EventLogConfig,
        now: UnixMillis,
    ) -> Result<(JobStore, StartupReport), JobStoreError> {
        let (mut journal, load) = Journal::open(&state.journal())?;
        let mut events = EventLog::open(&state.events(), events)?;
        let (recovered, errors) = journal.recover(now);
        let mut recovery_errors: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        for job in &recovered {
            for event in &job.log {
                let record = EventRecord {
                    at: now,
                    job: job.id,
                    battery: job.battery.clone(),
                    event: event.clone(),
                };
                // The journal holds the outcome; a full or failing log must not stop the
                // start-up.
                if let Err(e) = events.append(&record) {
                    tracing::error!(error = %e, job = %job.id, "could not log recovery");
                    recovery_errors.push(e.to_string());
                }
            }
        }
        let report = StartupReport {
            journal: load,
            recovered,
            recovery_errors,
        };
        Ok((
            JobStore {
                journal,
                events,
                keep_ended: Self::DEFAULT_KEEP_ENDED,
            },
            report,
        ))
    }

    /// Changes how many ended jobs the journal keeps.
    pub fn set_keep_ended(&mut self, keep: usize) {
        self.keep_ended = keep;
    }

    /// Starts a job for `battery` with the announced package: Uploading at 0 %. Logs the
    /// initiation and prunes old ended jobs from the journal.
    pub fn create(
        &mut self,
        battery: BatteryIdentity,
        package: UploadAnnouncement,
        version_before: Option<VersionInfo>,
        now: UnixMillis,
    ) -> Result<JobId, JobStoreError> {
        self.create_for(battery, package, version_before, UpdateTargets::All, now)
    }

    /// [`JobStore::create`] for the nodes or modules `targets` of the battery (the event
    /// log's initiation names them).
    pub fn create_for(
        &mut self,
        battery: BatteryIdentity,
        package: UploadAnnouncement,
        version_before: Option<VersionInfo>,
        targets: UpdateTargets,
        now: UnixMillis,
    ) -> Result<JobId, JobStoreError> {
        let event = EventKind::Initiated {
            file_name: package.file_name().to_owned(),
            size: package.size(),
            sha256: package.sha256(),
            version_before: version_before.clone(),
            targets: targets.ids().to_vec(),
        };
        crate::crash::point("journal.commit");
        let id = self
            .journal
            .create_for(battery.clone(), package, version_before, targets, now)?
            .id();
        crate::crash::point("journal.committed");
        self.events.append(&EventRecord {
            at: now,
            job: id,
            battery,
            event,
        })?;
        self.journal.prune_ended(self.keep_ended)?;
        Ok(id)
    }

    /// Applies `event` to job `id` (see [`JobRecord::apply`]), commits, logs.
    pub fn apply(
        &mut self,
        id: JobId,
        event: JobEvent,
        now: UnixMillis,
    ) -> Result<&JobRecord, JobStoreError> {
        if self.journal.get(id).is_none() {
            return Err(JobStoreError::UnknownJob(id));
        }
        crate::crash::point("journal.commit");
        let log = self.journal.update(id, |r| r.apply(event, now))??;
        crate::crash::point("journal.committed");
        let record = self.journal.get(id).ok_or(JobStoreError::UnknownJob(id))?;
        for event in log {
            self.events.append(&EventRecord {
                at: now,
                job: id,
                battery: record.battery().clone(),
                event,
            })?;
        }
        Ok(record)
    }

    /// Commits the plugin's resume checkpoint for job `id`.
    pub fn set_checkpoint(
        &mut self,
        id: JobId,
        checkpoint: Vec<u8>,
        now: UnixMillis,
    ) -> Result<(), JobStoreError> {
        if self.journal.get(id).is_none() {
            return Err(JobStoreError::UnknownJob(id));
        }
        Ok(self
            .journal
            .update(id, |r| r.set_checkpoint(checkpoint, now))??)
    }

    /// Records in the event log a command that was refused before it created a job
    /// (`job` 0 on the line).
    pub fn log_refusal(
        &mut self,
        battery: BatteryIdentity,
        event: EventKind,
        now: UnixMillis,
    ) -> Result<(), JobStoreError> {
        self.events.append(&EventRecord {
            at: now,
            job: JobId(0),
            battery,
            event,
        })?;
        Ok(())
    }

    /// Job `id`.
    pub fn get(&self, id: JobId) -> Option<&JobRecord> {
        self.journal.get(id)
    }

    /// Every job in the journal.
    pub fn jobs(&self) -> impl Iterator<Item = &JobRecord> {
        self.journal.records()
    }

    /// The running job of the battery with serial `serial`, if any.
    pub fn active_for(&self, serial: &str) -> Option<&JobRecord> {
        self.jobs()
            .find(|r| !r.state().is_terminal() && r.battery().matches(serial))
    }

    /// Packages jobs can still use: those of running jobs (resume) and of failed jobs (an
    /// immediate retry needs no new upload). Feed it to
    /// [`crate::staging::StagingArea::collect_garbage`].
    pub fn packages_in_use(&self) -> HashSet<Sha256Digest> {
        self.jobs()
            .filter(|r| r.state() != JobState::Completed)
            .map(|r| r.package().sha256())
            .collect()
    }
}
