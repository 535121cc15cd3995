//! Settling the jobs a GX restart interrupted.

use crate::errors::codes;
use crate::events::EventKind;
use crate::job::{BatteryIdentity, JobEvent, JobFailure, JobId, JobState};
use crate::journal::{Journal, JournalError};
use crate::unix_time::UnixMillis;

/// What happens to an interrupted job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryAction {
    /// Uploading: keep waiting for chunks; the link asks for the first missing one.
    ContinueUpload,
    /// Transferring with a plugin checkpoint: the plugin resumes from it.
    ResumeTransfer {
        /// The plugin's opaque checkpoint.
        checkpoint: Vec<u8>,
    },
    /// Anything else: failed with code 740 (GX restarted mid-job).
    Failed {
        /// The state the restart interrupted.
        interrupted: JobState,
    },
}

/// One interrupted job and its fate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredJob {
    /// The job.
    pub id: JobId,
    /// Its battery.
    pub battery: BatteryIdentity,
    /// What recovery decided.
    pub action: RecoveryAction,
    /// What the event log records about it.
    pub log: Vec<EventKind>,
}

impl Journal {
    /// Turns every job that had not ended into a resumable job or a clean failure with code
    /// 740, committed before this returns; no job stays stuck. Uploading jobs continue to
    /// wait for chunks; Transferring jobs with a non-empty plugin checkpoint resume; all
    /// others (Transferring without checkpoint, Installing, Restarting, Verifying) fail.
    ///
    /// A job whose failure cannot be committed is left as it was and its error returned
    /// alongside the others, so one bad file never blocks the start.
    pub fn recover(&mut self, now: UnixMillis) -> (Vec<RecoveredJob>, Vec<JournalError>) {
        let interrupted: Vec<_> = self
            .records()
            .filter(|r| !r.state().is_terminal())
            .map(|r| {
                (
                    r.id(),
                    r.state(),
                    r.checkpoint().to_vec(),
                    r.battery().clone(),
                )
            })
            .collect();
        let mut recovered = Vec::new();
        let mut errors = Vec::new();
        for (id, state, checkpoint, battery) in interrupted {
            let (action, log) = match state {
                JobState::Uploading => (
                    RecoveryAction::ContinueUpload,
                    vec![EventKind::Resumed {
                        state,
                        detail: "waiting for the first missing chunk".into(),
                    }],
                ),
                JobState::Transferring if !checkpoint.is_empty() => (
                    RecoveryAction::ResumeTransfer { checkpoint },
                    vec![EventKind::Resumed {
                        state,
                        detail: "transfer resumes from the plugin's checkpoint".into(),
                    }],
                ),
                _ => {
                    let failure = JobFailure {
                        code: codes::GX_RESTARTED,
                        message: format!(
                            "the GX device restarted while the update was {}; the battery keeps \
                             the firmware it had or applies its complete new image",
                            state.label()
                        ),
                        at: now,
                        battery_state: None,
                    };
                    let applied =
                        self.update(id, |record| record.apply(JobEvent::Failed(failure), now));
                    match applied {
                        Ok(Ok(log)) => (RecoveryAction::Failed { interrupted: state }, log),
                        Ok(Err(invalid)) => {
                            // The table lets every running state fail; unreachable for a
                            // loaded record, reported rather than trusted.
                            tracing::error!(%invalid, job = %id, "recovery could not fail job");
                            continue;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, job = %id, "recovery could not commit failure");
                            errors.push(e);
                            continue;
                        }
                    }
                }
            };
            tracing::info!(job = %id, ?action, "recovered interrupted job");
            recovered.push(RecoveredJob {
                id,
                battery,
                action,
                log,
            });
        }
        (recovered, errors)
    }
}
