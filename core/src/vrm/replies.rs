//! The replies the link sends about a job.

use crate::job::{JobRecord, JobState};
use crate::vrm::engine::UploadStatus;
use crate::vrm::values::wire_version;
use bmsfw_vrm_wire::{Feedback, Status};

/// The status a job's state is reported with.
pub fn status_of(state: JobState) -> Status {
    match state {
        JobState::Uploading => Status::WaitingForChunks,
        JobState::Transferring
        | JobState::Installing
        | JobState::Restarting
        | JobState::Verifying => Status::Running,
        JobState::Completed => Status::Finished,
        JobState::Failed => Status::Error,
    }
}

/// The reply that reports where `job` stands: its state and percent, its versions, and for
/// a failed job the code and message.
pub fn job_feedback(job: &JobRecord) -> Feedback {
    let mut fb = match job.failure() {
        Some(f) => Feedback::error(f.code, f.message.clone()),
        None => Feedback::new(status_of(job.state())),
    };
    fb.job = Some(job.id().0);
    fb.state = Some(job.state());
    fb.percent = Some(job.percent().get());
    fb.version_before = job.version_before().map(wire_version);
    fb.version_target = job.version_target().map(wire_version);
    fb.version_after = job.version_after().map(wire_version);
    fb
}

/// The reply that asks for chunks from `status.first_missing` on.
pub fn waiting_for_chunks(status: &UploadStatus) -> Feedback {
    Feedback {
        job: Some(status.job.0),
        state: Some(bmsfw_vrm_wire::JobState::Uploading),
        percent: Some(status.percent.get()),
        first_missing: status.first_missing,
        received_bytes: Some(status.received_bytes),
        ..Feedback::new(Status::WaitingForChunks)
    }
}
