//! One update job as the journal keeps it.

use crate::events::EventKind;
use crate::job::event::{JobEvent, JobFailure};
use crate::job::identity::{BatteryIdentity, VersionInfo};
use crate::job::modules::{MAX_MODULES, ModuleProgress};
use crate::job::percent::Percent;
use crate::job::state::JobState;
use crate::job::transition::{InvalidTransition, transition};
use crate::staging::UploadAnnouncement;
use crate::unix_time::UnixMillis;
use crate::vrm::UpdateTargets;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Largest plugin resume checkpoint kept, in bytes.
pub const MAX_CHECKPOINT: usize = 64 * 1024;

/// Longest failure message kept, in bytes (longer ones are cut at a character boundary).
pub const MAX_MESSAGE: usize = 2048;

/// Progress is logged each time it crosses a multiple of this many percent.
pub const MILESTONE_STEP: u8 = 10;

/// A job's number, unique on this GX for its lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A plugin checkpoint larger than [`MAX_CHECKPOINT`], or offered outside Transferring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Too many bytes.
    #[error("checkpoint of {len} bytes exceeds {MAX_CHECKPOINT} bytes")]
    TooLarge {
        /// Offered length.
        len: usize,
    },
    /// Checkpoints belong to the transfer only.
    #[error("a job in state {0:?} takes no checkpoint")]
    NotTransferring(JobState),
}

/// Everything the journal keeps about one job.
///
/// Fields change only through [`JobRecord::apply`] (driven by the transition table) and
/// [`JobRecord::set_checkpoint`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    id: JobId,
    battery: BatteryIdentity,
    package: UploadAnnouncement,
    state: JobState,
    percent: Percent,
    version_before: Option<VersionInfo>,
    version_target: Option<VersionInfo>,
    version_after: Option<VersionInfo>,
    failure: Option<JobFailure>,
    created_at: UnixMillis,
    updated_at: UnixMillis,
    #[serde(with = "hex")]
    checkpoint: Vec<u8>,
    /// The modules behind the BMS, for packs that update them one by one (empty for
    /// batteries that update as one; absent in records written before modules were kept).
    #[serde(default)]
    modules: Vec<ModuleProgress>,
    /// The nodes or modules the installer chose (absent: every one, as in records
    /// written before the choice existed).
    #[serde(default, skip_serializing_if = "is_all")]
    targets: UpdateTargets,
}

fn is_all(targets: &UpdateTargets) -> bool {
    *targets == UpdateTargets::All
}

impl JobRecord {
    /// A new job, Uploading at 0 %.
    pub fn new(
        id: JobId,
        battery: BatteryIdentity,
        package: UploadAnnouncement,
        version_before: Option<VersionInfo>,
        now: UnixMillis,
    ) -> JobRecord {
        JobRecord {
            id,
            battery,
            package,
            state: JobState::Uploading,
            percent: Percent::ZERO,
            version_before,
            version_target: None,
            version_after: None,
            failure: None,
            created_at: now,
            updated_at: now,
            checkpoint: Vec::new(),
            modules: Vec::new(),
            targets: UpdateTargets::All,
        }
    }

    /// The job with `targets` chosen by the installer (before it is first committed).
    pub fn with_targets(mut self, targets: UpdateTargets) -> JobRecord {
        self.targets = targets;
        self
    }

    /// The job's number.
    pub fn id(&self) -> JobId {
        self.id
    }
    /// The battery it updates.
    pub fn battery(&self) -> &BatteryIdentity {
        &self.battery
    }
    /// The package it installs.
    pub fn package(&self) -> &UploadAnnouncement {
        &self.package
    }
    /// Current state.
    pub fn state(&self) -> JobState {
        self.state
    }
    /// Progress of the current state (Uploading, Transferring); the last value otherwise.
    pub fn percent(&self) -> Percent {
        self.percent
    }
    /// Firmware before the update, as read when the job was created.
    pub fn version_before(&self) -> Option<&VersionInfo> {
        self.version_before.as_ref()
    }
    /// Firmware in the package, known once stage 2 starts.
    pub fn version_target(&self) -> Option<&VersionInfo> {
        self.version_target.as_ref()
    }
    /// Firmware the battery reports after a completed update.
    pub fn version_after(&self) -> Option<&VersionInfo> {
        self.version_after.as_ref()
    }
    /// Why the job failed.
    pub fn failure(&self) -> Option<&JobFailure> {
        self.failure.as_ref()
    }
    /// When the update was initiated.
    pub fn created_at(&self) -> UnixMillis {
        self.created_at
    }
    /// When the record last changed.
    pub fn updated_at(&self) -> UnixMillis {
        self.updated_at
    }
    /// The modules behind the BMS as last reported, in the plugin's order (empty when the
    /// battery updates as one).
    pub fn modules(&self) -> &[ModuleProgress] {
        &self.modules
    }
    /// The nodes or modules the update installs: every one, or those the installer chose.
    /// Journaled with the job, so a transfer resumed after a GX restart keeps the choice.
    pub fn targets(&self) -> &UpdateTargets {
        &self.targets
    }
    /// The plugin's opaque resume checkpoint (empty when it gave none).
    pub fn checkpoint(&self) -> &[u8] {
        &self.checkpoint
    }

    /// Stores the plugin's resume checkpoint (only while Transferring).
    pub fn set_checkpoint(
        &mut self,
        checkpoint: Vec<u8>,
        now: UnixMillis,
    ) -> Result<(), CheckpointError> {
        if self.state != JobState::Transferring {
            return Err(CheckpointError::NotTransferring(self.state));
        }
        if checkpoint.len() > MAX_CHECKPOINT {
            return Err(CheckpointError::TooLarge {
                len: checkpoint.len(),
            });
        }
        self.checkpoint = checkpoint;
        self.updated_at = now;
        Ok(())
    }

    /// Whether the record is internally consistent (bounds that serde alone does not check);
    /// the journal quarantines records that are not.
    pub fn validate(&self) -> Result<(), String> {
        if self.checkpoint.len() > MAX_CHECKPOINT {
            return Err(format!("checkpoint of {} bytes", self.checkpoint.len()));
        }
        if self.modules.len() > MAX_MODULES {
            return Err(format!("{} modules", self.modules.len()));
        }
        match (self.state, &self.failure) {
            (JobState::Failed, None) => Err("failed without a failure".into()),
            (s, Some(_)) if s != JobState::Failed => Err(format!("{s:?} with a failure")),
            _ => Ok(()),
        }
    }

    /// Applies `event` through the transition table and returns what the event log records
    /// about it: the state change, crossed progress milestones (every
    /// [`MILESTONE_STEP`] %), the target version, each module whose state changed, the
    /// completion or the failure. A refused event changes nothing.
    pub fn apply(
        &mut self,
        event: JobEvent,
        now: UnixMillis,
    ) -> Result<Vec<EventKind>, InvalidTransition> {
        let from = self.state;
        let to = transition(from, event.kind())?;
        let mut log = Vec::new();
        if from != to {
            log.push(EventKind::StateChanged { from, to });
        }
        if from == JobState::Transferring && to != from {
            self.checkpoint.clear();
        }
        match event {
            JobEvent::UploadProgress(p) | JobEvent::TransferProgress(p) => {
                let step = MILESTONE_STEP;
                if p.get() / step > self.percent.get() / step {
                    log.push(EventKind::Progress {
                        state: to,
                        percent: p.get() / step * step,
                    });
                }
                self.percent = p;
            }
            JobEvent::TransferStarted { target } => {
                self.percent = Percent::ZERO;
                log.push(EventKind::TargetVersion {
                    version: target.clone(),
                });
                self.version_target = Some(target);
            }
            JobEvent::InstallStarted | JobEvent::RestartStarted | JobEvent::VerifyStarted => {}
            JobEvent::ModulesChanged(mut modules) => {
                modules.truncate(MAX_MODULES);
                // One log line per module whose state changed (or that is new).
                for m in &modules {
                    let before = self.modules.iter().find(|o| o.index == m.index);
                    if before.is_none_or(|o| o.state != m.state) {
                        log.push(EventKind::Module {
                            index: m.index,
                            state: m.state,
                            version: m.version.clone(),
                        });
                    }
                }
                self.modules = modules;
            }
            JobEvent::Completed { version_after } => {
                log.push(EventKind::Completed {
                    version_before: self.version_before.clone(),
                    version_after: version_after.clone(),
                });
                self.version_after = Some(version_after);
            }
            JobEvent::Failed(mut failure) => {
                truncate_at_char(&mut failure.message, MAX_MESSAGE);
                log.push(EventKind::Failed {
                    code: failure.code,
                    name: crate::errors::name_of(failure.code).to_owned(),
                    message: failure.message.clone(),
                });
                self.failure = Some(failure);
            }
        }
        self.state = to;
        self.updated_at = now;
        Ok(log)
    }
}

fn truncate_at_char(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::staging::Sha256Digest;

    pub(crate) fn sample(id: u64) -> JobRecord {
        JobRecord::new(
            JobId(id),
            BatteryIdentity {
                manufacturer: "Aurora".into(),
                model: "AX-5".into(),
                serial: "SN1".into(),
            },
            UploadAnnouncement::new("fw.bin".into(), 1000, 100, Sha256Digest([3; 32])).unwrap(),
            Some(VersionInfo {
                raw: vec![1, 2],
                display: "v1.02".into(),
            }),
            UnixMillis(1000),
        )
    }

    fn pct(p: u8) -> JobEvent {
        JobEvent::UploadProgress(Percent::new(p).unwrap())
    }

    #[test]
    fn milestones_are_logged_once_per_crossed_step() {
        let mut job = sample(1);
        assert_eq!(job.apply(pct(5), UnixMillis(1)).unwrap(), vec![]);
        assert_eq!(
            job.apply(pct(37), UnixMillis(2)).unwrap(),
            vec![EventKind::Progress {
                state: JobState::Uploading,
                percent: 30
            }]
        );
        assert_eq!(job.apply(pct(39), UnixMillis(3)).unwrap(), vec![]);
        assert_eq!(job.percent().get(), 39);
        assert_eq!(job.updated_at(), UnixMillis(3));
    }

    #[test]
    fn a_full_run_records_versions_and_clears_the_checkpoint() {
        let mut job = sample(1);
        let target = VersionInfo {
            raw: vec![2, 0],
            display: "v2.00".into(),
        };
        assert!(job.set_checkpoint(vec![1], UnixMillis(2)).is_err());
        let log = job
            .apply(
                JobEvent::TransferStarted {
                    target: target.clone(),
                },
                UnixMillis(2),
            )
            .unwrap();
        assert_eq!(
            log,
            vec![
                EventKind::StateChanged {
                    from: JobState::Uploading,
                    to: JobState::Transferring
                },
                EventKind::TargetVersion {
                    version: target.clone()
                }
            ]
        );
        job.set_checkpoint(vec![9; 4], UnixMillis(3)).unwrap();
        assert_eq!(
            job.set_checkpoint(vec![0; MAX_CHECKPOINT + 1], UnixMillis(3)),
            Err(CheckpointError::TooLarge {
                len: MAX_CHECKPOINT + 1
            })
        );
        assert_eq!(job.checkpoint(), &[9; 4]);
        job.apply(JobEvent::InstallStarted, UnixMillis(4)).unwrap();
        assert!(job.checkpoint().is_empty());
        job.apply(JobEvent::VerifyStarted, UnixMillis(5)).unwrap();
        let log = job
            .apply(
                JobEvent::Completed {
                    version_after: target.clone(),
                },
                UnixMillis(6),
            )
            .unwrap();
        assert!(log.contains(&EventKind::Completed {
            version_before: job.version_before().cloned(),
            version_after: target.clone()
        }));
        assert_eq!(job.state(), JobState::Completed);
        assert_eq!(job.version_after(), Some(&target));
        assert!(job.validate().is_ok());
    }

    #[test]
    fn module_changes_are_kept_and_logged_once_per_state_change() {
        use crate::job::modules::ModuleState as M;
        let mut job = sample(1);
        let target = VersionInfo {
            raw: vec![0x10, 0x01],
            display: "v1.10".into(),
        };
        job.apply(JobEvent::TransferStarted { target }, UnixMillis(2))
            .unwrap();
        let module = |index, state, v: u8| ModuleProgress {
            index,
            state,
            version: Some(VersionInfo {
                raw: vec![2, v, 1],
                display: format!("v2.0{v} (build 01)"),
            }),
        };
        let log = job
            .apply(
                JobEvent::ModulesChanged(vec![module(1, M::Pending, 3), module(2, M::Pending, 3)]),
                UnixMillis(3),
            )
            .unwrap();
        assert_eq!(log.len(), 2, "both modules are new: {log:?}");
        job.apply(JobEvent::InstallStarted, UnixMillis(4)).unwrap();
        let log = job
            .apply(
                JobEvent::ModulesChanged(vec![module(1, M::Done, 4), module(2, M::Updating, 3)]),
                UnixMillis(5),
            )
            .unwrap();
        assert_eq!(
            log,
            vec![
                EventKind::Module {
                    index: 1,
                    state: M::Done,
                    version: module(1, M::Done, 4).version
                },
                EventKind::Module {
                    index: 2,
                    state: M::Updating,
                    version: module(2, M::Updating, 3).version
                },
            ]
        );
        assert_eq!(job.state(), JobState::Installing, "modules change no state");
        // The same states again: nothing to log, the record keeps the new versions.
        let log = job
            .apply(
                JobEvent::ModulesChanged(vec![module(1, M::Done, 4), module(2, M::Updating, 4)]),
                UnixMillis(6),
            )
            .unwrap();
        assert!(log.is_empty());
        assert_eq!(job.modules()[1].version.as_ref().unwrap().raw, [2, 4, 1]);
        // A plugin reporting too many is cut, and the record stays valid.
        let many = (1..=200).map(|i| module(i, M::Pending, 3)).collect();
        job.apply(JobEvent::ModulesChanged(many), UnixMillis(7))
            .unwrap();
        assert_eq!(job.modules().len(), MAX_MODULES);
        assert!(job.validate().is_ok());
        // Records written before modules were kept still read.
        let mut json = serde_json::to_value(sample(2)).unwrap();
        json.as_object_mut().unwrap().remove("modules");
        let old: JobRecord = serde_json::from_value(json).unwrap();
        assert!(old.modules().is_empty());
    }

    #[test]
    fn refused_events_change_nothing() {
        let mut job = sample(1);
        let before = job.clone();
        assert!(job.apply(JobEvent::InstallStarted, UnixMillis(9)).is_err());
        assert_eq!(job, before);
    }

    #[test]
    fn failure_keeps_code_and_bounded_message() {
        let mut job = sample(1);
        let log = job
            .apply(
                JobEvent::Failed(JobFailure {
                    code: 705,
                    message: "é".repeat(MAX_MESSAGE),
                    at: UnixMillis(5),
                    battery_state: None,
                }),
                UnixMillis(5),
            )
            .unwrap();
        let failure = job.failure().unwrap();
        assert_eq!(failure.code, 705);
        assert!(failure.message.len() <= MAX_MESSAGE);
        assert!(
            matches!(&log[1], EventKind::Failed { code: 705, name, .. } if name == "UPLOAD_CORRUPTED")
        );
        assert!(job.validate().is_ok());
    }
}
