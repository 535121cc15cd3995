//! End to end with the real Aurora plugin and the simulated Aurora BMS: a successful
//! update, in virtual time.

mod gx_site;

use bmsfw_core::events::EventKind;
use bmsfw_core::job::JobState;
use bmsfw_core::vrm::GxEngine;
use gx_site::*;
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn a_successful_update_goes_through_every_state_with_both_versions_right() {
    let site = Site::new([4, 15]);
    let engine = site.gx();
    wait_for_battery(&engine).await;
    let package = package([4, 16], 96 * 1024, 1);
    let id = upload(&engine, request(&package), &package).await.unwrap();
    let record = wait_end(&engine, id, Duration::from_secs(120)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
    let before = record.version_before().unwrap();
    assert_eq!(
        (before.raw.as_slice(), before.display.as_str()),
        (&[4u8, 15][..], "v4.15")
    );
    let after = record.version_after().unwrap();
    assert_eq!(
        (after.raw.as_slice(), after.display.as_str()),
        (&[4u8, 16][..], "v4.16")
    );
    assert_eq!(record.version_target().unwrap().display, "v4.16");

    let status = site.status();
    assert_eq!(status.running_version, [4, 16]);

    let history = engine.history(SERIAL).await.unwrap();
    assert_eq!(
        states(&history, id),
        vec![
            JobState::Transferring,
            JobState::Installing,
            JobState::Restarting,
            JobState::Verifying,
            JobState::Completed,
        ]
    );
    // The event log has the initiation with the version before, upload milestones, and
    // the completion with both versions, raw and decoded.
    assert!(matches!(
        &history[0].event,
        EventKind::Initiated { version_before: Some(v), .. } if v.display == "v4.15"
    ));
    let uploads: Vec<u8> = history
        .iter()
        .filter_map(|e| match e.event {
            EventKind::Progress {
                state: JobState::Uploading,
                percent,
            } => Some(percent),
            _ => None,
        })
        .collect();
    assert!(
        !uploads.is_empty() && uploads.windows(2).all(|w| w[0] < w[1]),
        "{uploads:?}"
    );
    assert!(history.iter().any(|e| matches!(
        &e.event,
        EventKind::Completed { version_before: Some(b), version_after }
            if b.raw == [4, 15] && version_after.raw == [4, 16] && version_after.display == "v4.16"
    )));
}

/// A request that reaches the GX right after it started (the portal sending its command
/// again to a restarted GX), before the battery's identity broadcasts, waits for them
/// instead of refusing the battery as absent.
#[tokio::test(start_paused = true)]
async fn a_request_right_after_the_start_waits_for_the_battery() {
    let site = Site::new([4, 15]);
    let engine = site.gx();
    let package = package([4, 16], 32 * 1024, 4);
    let asked = tokio::time::Instant::now();
    let id = upload(&engine, request(&package), &package)
        .await
        .unwrap_or_else(|e| panic!("refused: {e:?}"));
    // The battery's serial and product information come once a second.
    assert!(
        asked.elapsed() <= Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    let record = wait_end(&engine, id, Duration::from_secs(120)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
}

/// A battery the GX never hears is still refused (713), once five seconds passed.
#[tokio::test(start_paused = true)]
async fn a_battery_never_heard_is_refused_after_the_wait() {
    let site = Site::new([4, 15]);
    let engine = site.gx();
    wait_for_battery(&engine).await;
    let package = package([4, 16], 32 * 1024, 5);
    let mut req = request(&package);
    req.battery_serial = "NOBODY-0001".into();
    let asked = tokio::time::Instant::now();
    let refusal = engine.request_update(req).await.unwrap_err();
    assert_eq!(refusal.code, 713, "{refusal:?}");
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
}
