//! Cancel in the daemon's engine, with the real Aurora plugin and the simulated BMS, in
//! virtual time: honoured in stage 1 (the bus is free at once), refused once the transfer
//! to the battery has begun (the update completes, the battery runs the complete image).

mod gx_site;

use bmsfw_core::job::JobState;
use bmsfw_core::vrm::{EngineRefusal, GxEngine};
use gx_site::*;
use std::time::Duration;

fn reason() -> EngineRefusal {
    EngineRefusal::new(719, "cancelled from VRM")
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_upload_fails_with_its_code_and_frees_the_bus() {
    let site = Site::new([4, 15]);
    let engine = site.gx();
    wait_for_battery(&engine).await;
    let package = package([4, 16], 96 * 1024, 1);
    let req = request(&package);
    let chunk = req.package.chunk_size() as usize;
    let id = engine.request_update(req.clone()).await.unwrap().job;
    engine
        .accept_chunk(id, 0, package[..chunk].to_vec())
        .await
        .unwrap();
    // While it uploads, another request for the battery is refused...
    let busy = engine.request_update(req.clone()).await.unwrap_err();
    assert!(busy.code == 716 || busy.code == 729, "{busy:?}");

    let record = engine.cancel_update(id, reason()).await.unwrap();
    assert_eq!(record.state(), JobState::Failed);
    assert_eq!(record.failure().unwrap().code, 719);
    // ... and once cancelled, nothing more of it is taken and the battery is free.
    assert_eq!(
        engine
            .accept_chunk(id, 1, package[chunk..2 * chunk].to_vec())
            .await
            .unwrap_err()
            .code,
        714
    );
    assert_eq!(
        engine.cancel_update(id, reason()).await.unwrap_err().code,
        714
    );
    let retry = engine.request_update(req).await.unwrap();
    assert_ne!(retry.job, id);
    assert_eq!(retry.first_missing, Some(1), "the chunk received stays");
    assert_eq!(
        site.status().running_version,
        [4, 15],
        "the battery untouched"
    );
}

#[tokio::test(start_paused = true)]
async fn cancel_is_refused_in_stage_two_and_the_update_completes() {
    let site = Site::new([4, 15]);
    let engine = site.gx();
    wait_for_battery(&engine).await;
    let package = package([4, 16], 96 * 1024, 2);
    let id = upload(&engine, request(&package), &package).await.unwrap();
    let refusal = engine.cancel_update(id, reason()).await.unwrap_err();
    assert_eq!(refusal.code, 716, "{refusal:?}");
    assert!(
        refusal
            .message
            .contains("transfer to the battery has begun"),
        "{refusal:?}"
    );
    let record = wait_end(&engine, id, Duration::from_secs(120)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
    assert_eq!(site.status().running_version, [4, 16]);
}
