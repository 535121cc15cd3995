//! The GX restarting in every state of an Aurora update: the engine is dropped at once
//! (its tasks stop as in a power cut of the GX) and a new one is built on the same state
//! directory and bus. Every job ends resumed or cleanly failed (740), never stuck; the
//! event log keeps everything; the battery runs a complete firmware; and the installer
//! can retry at once with the package the GX kept.

mod gx_site;

use aurora_sim::package::verify;
use bmsfw_core::events::EventKind;
use bmsfw_core::job::JobState;
use bmsfw_core::vrm::GxEngine;
use gx_site::*;
use std::time::Duration;

async fn restart_in(state: JobState) {
    let site = Site::new([4, 15]);
    let engine = site.gx();
    wait_for_battery(&engine).await;
    let pkg = package([4, 16], 64 * 1024, 21);
    let req = request(&pkg);
    let chunk = req.package.chunk_size() as usize;
    let id = engine.request_update(req.clone()).await.unwrap().job;
    if state == JobState::Uploading {
        // Two of four chunks arrive before the restart.
        for (i, bytes) in pkg.chunks(chunk).enumerate().take(2) {
            engine
                .accept_chunk(id, i as u32, bytes.to_vec())
                .await
                .unwrap();
        }
    } else {
        for (i, bytes) in pkg.chunks(chunk).enumerate() {
            engine
                .accept_chunk(id, i as u32, bytes.to_vec())
                .await
                .unwrap();
        }
        engine.finish_upload(id).await.unwrap();
        wait_state(&engine, id, state, Duration::from_secs(60)).await;
        if state == JobState::Transferring {
            // Well into the transfer.
            while job(&engine, id).await.percent().get() < 20 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    let before = engine.history(SERIAL).await.unwrap();
    drop(engine);
    settle().await;

    let engine = site.gx();
    let record = job(&engine, id).await;
    if state == JobState::Uploading {
        // The upload continues from the first missing chunk.
        assert_eq!(record.state(), JobState::Uploading);
        let status = engine.resume_upload(id).await.unwrap();
        assert_eq!(status.first_missing, Some(2));
        for (i, bytes) in pkg.chunks(chunk).enumerate().skip(2) {
            engine
                .accept_chunk(id, i as u32, bytes.to_vec())
                .await
                .unwrap();
        }
        wait_for_battery(&engine).await;
        engine.finish_upload(id).await.unwrap();
        let record = wait_end(&engine, id, Duration::from_secs(120)).await;
        assert_eq!(record.state(), JobState::Completed, "{record:#?}");
    } else {
        // Aurora's bootloader cannot resume: the job failed cleanly at start-up.
        assert_eq!(record.state(), JobState::Failed, "{record:#?}");
        let failure = record.failure().unwrap();
        assert_eq!(failure.code, 740);
        assert!(
            failure.message.contains(state.label()),
            "{}",
            failure.message
        );
    }

    // The event log kept every line written before the restart, then the recovery.
    let after = engine.history(SERIAL).await.unwrap();
    assert_eq!(&after[..before.len()], &before[..]);
    assert!(matches!(after[0].event, EventKind::Initiated { .. }));
    let recovery = &after[before.len()];
    match state {
        JobState::Uploading => assert!(matches!(
            recovery.event,
            EventKind::Resumed {
                state: JobState::Uploading,
                ..
            }
        )),
        _ => assert!(
            matches!(recovery.event, EventKind::StateChanged { from, to: JobState::Failed } if from == state),
            "{recovery:?}"
        ),
    }

    // The battery runs a complete firmware, old or new.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let status = site.status();
    let active = site.bms.slot_package(status.active_slot);
    assert_eq!(verify(&active).unwrap().version, status.running_version);
    match state {
        // The download was dropped, nothing was activated.
        JobState::Transferring | JobState::Installing => {
            assert_eq!(status.running_version, [4, 15])
        }
        // The reset had been sent: the new firmware booted.
        JobState::Restarting | JobState::Verifying => assert_eq!(status.running_version, [4, 16]),
        _ => {}
    }

    // An immediate retry needs no upload and completes (from the old firmware; a battery
    // that already runs the new one takes the reinstall only by choice).
    if status.running_version == [4, 15] && state != JobState::Uploading {
        wait_for_battery(&engine).await;
        let retry = engine.request_update(request(&pkg)).await.unwrap();
        assert_eq!(retry.first_missing, None);
        engine.finish_upload(retry.job).await.unwrap();
        let record = wait_end(&engine, retry.job, Duration::from_secs(120)).await;
        assert_eq!(record.state(), JobState::Completed, "{record:#?}");
    }
    assert_ne!(status.running_version, [0, 0]);
}

#[tokio::test(start_paused = true)]
async fn a_restart_while_uploading_resumes_the_upload() {
    restart_in(JobState::Uploading).await;
}

#[tokio::test(start_paused = true)]
async fn a_restart_while_transferring_fails_cleanly_and_the_retry_succeeds() {
    restart_in(JobState::Transferring).await;
}

#[tokio::test(start_paused = true)]
async fn a_restart_while_installing_fails_cleanly() {
    restart_in(JobState::Installing).await;
}

#[tokio::test(start_paused = true)]
async fn a_restart_while_the_battery_restarts_fails_cleanly() {
    restart_in(JobState::Restarting).await;
}

#[tokio::test(start_paused = true)]
async fn a_restart_while_verifying_fails_cleanly() {
    restart_in(JobState::Verifying).await;
}
