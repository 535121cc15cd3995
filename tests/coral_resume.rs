//! The GX restarting in the middle of a Coral transfer: the engine is dropped at once (its
//! tasks stop as in a power cut of the GX) and a new one is built on the same state
//! directory and bus. The job resumes from the plugin's journaled checkpoint, and the
//! frames on the bus show that nothing the master had acknowledged is sent again.

mod coral_site;

use bmsfw_core::events::EventKind;
use bmsfw_core::job::JobState;
use bmsfw_core::vrm::GxEngine;
use coral_site::*;
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn a_gx_restart_mid_transfer_resumes_without_sending_acknowledged_data_again() {
    let site = Site::new(2);
    let engine = site.gx();
    wait_for_battery(&engine).await;
    let bundle = bundle(256 * 1024, 16 * 1024, 3);
    let frames = bundle.len().div_ceil(8) as u32;
    let id = upload(&engine, request(&bundle), &bundle).await.unwrap();

    // Well into the transfer, with a checkpoint in the journal.
    loop {
        let r = job(&engine, id).await;
        assert_eq!(r.state(), JobState::Transferring, "{r:#?}");
        if r.percent().get() >= 40 && !r.checkpoint().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = engine.history(SERIAL).await.unwrap();
    drop(engine);
    settle().await;

    // What the master has written (acknowledged) when the new GX starts.
    let (token, acknowledged, total) = site.status().staged.expect("a staged transfer");
    assert_eq!(total, frames);
    assert!(acknowledged > frames * 2 / 5, "{acknowledged} of {frames}");
    let data_before: Vec<u32> = site
        .coral_frames_from_gx()
        .iter()
        .filter_map(data_sequence)
        .collect();
    let seen_before = site.frames_seen();

    let engine = site.gx();
    let record = wait_end(&engine, id, Duration::from_secs(300)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
    assert_eq!(site.status().running_version, NEW);

    // Counted on the bus: the resumed GX sent no data frame below what the master had
    // acknowledged, and every later frame once (the bus loses nothing here).
    let after: Vec<u32> = site.spied.lock().unwrap()[seen_before..]
        .iter()
        .filter_map(|(f, _)| data_sequence(f))
        .collect();
    let lowest = *after.iter().min().expect("the resumed GX sent data");
    assert!(
        lowest >= acknowledged,
        "frame {lowest} sent again after the restart; the master had acknowledged {acknowledged}"
    );
    assert_eq!(after.len() as u32, frames - lowest);
    assert!(
        data_before.len() as u32 + (after.len() as u32) < frames + frames / 10,
        "{} frames before, {} after, {frames} in the bundle: the transfer did not start over",
        data_before.len(),
        after.len()
    );
    // The same transfer went on: no BEGIN (no erase) after the restart, a RESUME instead.
    let commands: Vec<u8> = site.spied.lock().unwrap()[seen_before..]
        .iter()
        .filter(|(f, _)| f.id().is_extended() && f.id().raw() == COMMAND_ID)
        .map(|(f, _)| f.data()[0])
        .collect();
    assert_eq!(
        &commands[..3],
        &[0x01, 0x02, 0x04],
        "HELLO, MODULES, RESUME"
    );
    assert!(!commands.contains(&0x03));
    assert_ne!(site.status().staged.map(|s| s.0), Some(token), "installed");

    // The event log kept everything and tells the resume.
    let history = engine.history(SERIAL).await.unwrap();
    assert_eq!(&history[..before.len()], &before[..]);
    assert!(history[before.len()..].iter().any(|e| matches!(
        e.event,
        EventKind::Resumed {
            state: JobState::Transferring,
            ..
        }
    )));
}
