//! The bound on stage 1: an upload not finished within [`UploadDeadlines::bound`] of its
//! request fails with 718 and frees its bus.
//!
//! Sans-IO: the link feeds it every job record it sees and the wall-clock time, and asks
//! when to wake ([`UploadDeadlines::next_deadline`]) and which jobs are overdue
//! ([`UploadDeadlines::overdue`]). The bound counts from the job's creation as the journal
//! keeps it, so a GX restart does not start the clock again, and it holds whether the
//! portal stopped sending, lost its connection or restarted and forgot the upload.

use crate::job::{JobId, JobRecord, JobState};
use crate::unix_time::UnixMillis;
use std::collections::BTreeMap;
use std::time::Duration;

/// The uploads in progress and when each must have ended.
#[derive(Debug, Clone)]
pub struct UploadDeadlines {
    bound: Duration,
    /// Each uploading job and its deadline (ms since the epoch).
    due: BTreeMap<JobId, u64>,
}

impl UploadDeadlines {
    /// Deadlines `bound` after each job's creation.
    pub fn new(bound: Duration) -> UploadDeadlines {
        UploadDeadlines {
            bound,
            due: BTreeMap::new(),
        }
    }

    /// The bound.
    pub fn bound(&self) -> Duration {
        self.bound
    }

    /// Takes the job as it is now: an uploading job is followed, any other forgotten.
    pub fn note(&mut self, job: &JobRecord) {
        if job.state() == JobState::Uploading {
            let bound = u64::try_from(self.bound.as_millis()).unwrap_or(u64::MAX);
            self.due
                .insert(job.id(), job.created_at().0.saturating_add(bound));
        } else {
            self.due.remove(&job.id());
        }
    }

    /// Stops following `job` (it ended, or the engine no longer knows it).
    pub fn forget(&mut self, job: JobId) {
        self.due.remove(&job);
    }

    /// The earliest deadline of the uploads followed.
    pub fn next_deadline(&self) -> Option<UnixMillis> {
        self.due.values().min().copied().map(UnixMillis)
    }

    /// The jobs whose deadline has passed at `now`, in id order.
    pub fn overdue(&self, now: UnixMillis) -> Vec<JobId> {
        self.due
            .iter()
            .filter(|(_, due)| **due <= now.0)
            .map(|(job, _)| *job)
            .collect()
    }

    /// How long from `now` until `deadline` (zero once it has passed).
    pub fn until(now: UnixMillis, deadline: UnixMillis) -> Duration {
        Duration::from_millis(deadline.0.saturating_sub(now.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{BatteryIdentity, JobEvent, JobFailure};
    use crate::staging::{Sha256Digest, UploadAnnouncement};

    fn job(id: u64, created: u64) -> JobRecord {
        JobRecord::new(
            JobId(id),
            BatteryIdentity {
                manufacturer: "m".into(),
                model: "x".into(),
                serial: "s".into(),
            },
            UploadAnnouncement::new("a.bin".into(), 10, 4, Sha256Digest([0; 32])).unwrap(),
            None,
            UnixMillis(created),
        )
    }

    #[test]
    fn an_upload_is_overdue_its_bound_after_creation_and_forgotten_once_it_ends() {
        let mut d = UploadDeadlines::new(Duration::from_secs(10));
        assert_eq!(d.next_deadline(), None);
        d.note(&job(1, 1_000));
        d.note(&job(2, 500));
        assert_eq!(d.next_deadline(), Some(UnixMillis(10_500)));
        assert!(d.overdue(UnixMillis(10_499)).is_empty());
        assert_eq!(d.overdue(UnixMillis(10_500)), vec![JobId(2)]);
        assert_eq!(d.overdue(UnixMillis(99_999)), vec![JobId(1), JobId(2)]);
        // Noting it again (a restart, a progress event) keeps the creation time.
        d.note(&job(2, 500));
        assert_eq!(d.next_deadline(), Some(UnixMillis(10_500)));
        let mut failed = job(2, 500);
        failed
            .apply(
                JobEvent::Failed(JobFailure {
                    code: 718,
                    message: "late".into(),
                    at: UnixMillis(10_500),
                    battery_state: None,
                }),
                UnixMillis(10_500),
            )
            .unwrap();
        d.note(&failed);
        assert_eq!(d.overdue(UnixMillis(99_999)), vec![JobId(1)]);
        d.forget(JobId(1));
        assert_eq!(d.next_deadline(), None);
        assert_eq!(
            UploadDeadlines::until(UnixMillis(5), UnixMillis(3)),
            Duration::ZERO
        );
        assert_eq!(
            UploadDeadlines::until(UnixMillis(3), UnixMillis(5)),
            Duration::from_millis(2)
        );
    }

    #[test]
    fn a_huge_bound_saturates() {
        let mut d = UploadDeadlines::new(Duration::MAX);
        d.note(&job(1, u64::MAX - 1));
        assert_eq!(d.next_deadline(), Some(UnixMillis(u64::MAX)));
        assert!(d.overdue(UnixMillis(u64::MAX - 1)).is_empty());
    }
}
