//! The GX restarting mid-job: the engine is dropped (its tasks stop at once, as in a power
//! cut) and a new one is built on the same state directory.

mod engine_common;

use bmsfw_core::events::EventKind;
use bmsfw_core::job::JobState;
use bmsfw_core::vrm::GxEngine;
use engine_common::*;
use std::time::Duration;

/// Lets the dropped engine's tasks (and a journal write in flight) finish.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

#[tokio::test(start_paused = true)]
async fn an_upload_continues_from_the_first_missing_chunk_after_a_restart() {
    let site = Site::new([1, 2]);
    site.bms.lock().unwrap().installs = [1, 5];
    let package = spkg(1, 5, 5000, 9);
    let req = request(&package, 1000);
    let engine = site.engine();
    wait_for_battery(&engine).await;
    let job = engine.request_update(req).await.unwrap().job;
    for (i, chunk) in package.chunks(1000).take(3).enumerate() {
        engine
            .accept_chunk(job, i as u32, chunk.to_vec())
            .await
            .unwrap();
    }
    drop(engine);
    settle().await;

    let engine = site.engine();
    let report = engine.startup_report();
    assert_eq!(report.recovered.len(), 1, "{report:?}");
    let status = engine.resume_upload(job).await.unwrap();
    assert_eq!(status.first_missing, Some(3));
    assert_eq!(status.received_bytes, 3000);
    for (i, chunk) in package.chunks(1000).enumerate().skip(3) {
        engine
            .accept_chunk(job, i as u32, chunk.to_vec())
            .await
            .unwrap();
    }
    wait_for_battery(&engine).await;
    engine.finish_upload(job).await.unwrap();
    let record = wait_end(&engine, job, Duration::from_secs(60)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
    let history = engine.history(SERIAL).await.unwrap();
    assert!(
        history.iter().any(|e| matches!(
            &e.event,
            EventKind::Resumed {
                state: JobState::Uploading,
                ..
            }
        )),
        "{history:#?}"
    );
    assert!(matches!(history[0].event, EventKind::Initiated { .. }));
}

#[tokio::test(start_paused = true)]
async fn a_transfer_resumes_from_the_journaled_checkpoint_after_a_restart() {
    let site = Site::new([1, 2]);
    site.bms.lock().unwrap().installs = [1, 5];
    let package = spkg(1, 5, 40_000, 4);
    let engine = site.engine();
    wait_for_battery(&engine).await;
    let job = upload(&engine, request(&package, 4096), &package)
        .await
        .unwrap();
    // Wait until a checkpoint is journaled.
    let checkpoint = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let record = engine
            .jobs()
            .await
            .into_iter()
            .find(|r| r.id() == job)
            .unwrap();
        assert_eq!(record.state(), JobState::Transferring);
        if !record.checkpoint().is_empty() {
            break u64::from_le_bytes(record.checkpoint().try_into().unwrap());
        }
    };
    drop(engine);
    settle().await;
    let frames_before = site.bms.lock().unwrap().frames.len();

    let engine = site.engine();
    let record = wait_end(&engine, job, Duration::from_secs(120)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
    let history = engine.history(SERIAL).await.unwrap();
    assert!(history.iter().any(|e| matches!(
        &e.event,
        EventKind::Resumed {
            state: JobState::Transferring,
            ..
        }
    )));
    // The resumed session started at the journaled checkpoint, not at the beginning. The
    // journaled checkpoint may be older than the last frame the BMS took before the cut.
    let bms = site.bms.lock().unwrap();
    let first_after = bms.frames[frames_before..]
        .iter()
        .find(|f| f.data().len() > 1)
        .unwrap();
    let at = 8 + usize::try_from(checkpoint).unwrap();
    assert!(checkpoint > 0);
    assert_eq!(&first_after.data()[1..], &package[at..at + 7]);
}

#[tokio::test(start_paused = true)]
async fn a_restart_while_verifying_fails_the_job_with_740_and_keeps_the_package() {
    let site = Site::new([1, 2]);
    // The BMS installs but the battery keeps reporting the old version: the engine waits
    // in Verifying for 0x35F.
    site.bms.lock().unwrap().installs = [1, 2];
    let package = spkg(1, 5, 700, 2);
    let engine = site.engine();
    wait_for_battery(&engine).await;
    let job = upload(&engine, request(&package, 4096), &package)
        .await
        .unwrap();
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let record = engine
            .jobs()
            .await
            .into_iter()
            .find(|r| r.id() == job)
            .unwrap();
        if record.state() == JobState::Verifying {
            break;
        }
        assert!(!record.state().is_terminal(), "{record:#?}");
    }
    drop(engine);
    settle().await;

    let engine = site.engine();
    let record = engine
        .jobs()
        .await
        .into_iter()
        .find(|r| r.id() == job)
        .unwrap();
    assert_eq!(record.state(), JobState::Failed);
    assert_eq!(record.failure().unwrap().code, 740);
    // An immediate retry needs no upload: the package is still on the GX.
    site.bms.lock().unwrap().installs = [1, 5];
    wait_for_battery(&engine).await;
    let status = engine
        .request_update(request(&package, 4096))
        .await
        .unwrap();
    assert_eq!(status.first_missing, None);
    engine.finish_upload(status.job).await.unwrap();
    let record = wait_end(&engine, status.job, Duration::from_secs(60)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
    // The event log holds both jobs.
    let history = engine.history(SERIAL).await.unwrap();
    let jobs: std::collections::BTreeSet<_> = history.iter().map(|e| e.job).collect();
    assert_eq!(jobs.len(), 2);
}
