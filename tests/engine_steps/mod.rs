//! Steps every end-to-end site drives a GX engine through: wait for the battery, request
//! and upload, follow the job, read its states from the event log. Included by each
//! vendor's site module.

#![allow(dead_code)]

use bmsfw_core::engine::Engine;
use bmsfw_core::events::{EventKind, EventRecord};
use bmsfw_core::job::{JobId, JobRecord, JobState};
use bmsfw_core::vrm::{EngineRefusal, GxEngine, Presence, UpdateRequest};
use std::time::Duration;
use tokio::time::Instant;

/// Waits (virtual time) until the engine hears the battery with `serial` communicating.
pub async fn wait_for_serial(engine: &Engine, serial: &str) {
    for _ in 0..200 {
        let batteries = engine.batteries().await;
        if batteries
            .iter()
            .any(|b| b.identity.serial == serial && b.presence == Presence::Communicating)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the engine never heard battery {serial}");
}

/// Requests the update and uploads `package`; returns the job once stage 2 started.
pub async fn upload(
    engine: &Engine,
    request: UpdateRequest,
    package: &[u8],
) -> Result<JobId, EngineRefusal> {
    let chunk = request.package.chunk_size() as usize;
    let job = engine.request_update(request).await?.job;
    for (i, bytes) in package.chunks(chunk).enumerate() {
        engine.accept_chunk(job, i as u32, bytes.to_vec()).await?;
    }
    engine.finish_upload(job).await.map(|_| job)
}

/// Job `job` now.
pub async fn job(engine: &Engine, job: JobId) -> JobRecord {
    engine
        .jobs()
        .await
        .into_iter()
        .find(|r| r.id() == job)
        .unwrap_or_else(|| panic!("no job {job}"))
}

/// The job's record once it has ended.
pub async fn wait_end(engine: &Engine, id: JobId, limit: Duration) -> JobRecord {
    let until = Instant::now() + limit;
    loop {
        let r = job(engine, id).await;
        if r.state().is_terminal() {
            return r;
        }
        assert!(
            Instant::now() < until,
            "job {id} did not end in time: {r:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The states job `id` went through, from the event log.
pub fn states(history: &[EventRecord], id: JobId) -> Vec<JobState> {
    history
        .iter()
        .filter(|e| e.job == id)
        .filter_map(|e| match e.event {
            EventKind::StateChanged { to, .. } => Some(to),
            _ => None,
        })
        .collect()
}

/// Lets a dropped engine's tasks and journal writes finish.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}
