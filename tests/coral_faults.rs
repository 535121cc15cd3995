//! A Coral transfer through the engine on a bus that fails: a lossy bus, where lost frames
//! are sent again alone, and a bus interrupted for a second and a half, after which the
//! transfer goes on from where the master stands instead of starting over.

mod coral_site;

use bmsfw_core::job::JobState;
use bmsfw_sim::bus::DropRule;
use coral_site::*;
use std::time::Duration;
use tokio::time::Instant;

/// Data frames the spy saw from index `from` on.
fn data_after(site: &Site, from: usize) -> Vec<u32> {
    site.spied.lock().unwrap()[from..]
        .iter()
        .filter_map(|(f, _)| data_sequence(f))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn on_a_lossy_bus_only_the_lost_frames_are_sent_again() {
    let site = Site::new(1);
    let engine = site.gx();
    wait_for_battery(&engine).await;
    // One frame in fifty is lost at the master, in either direction for the protocol.
    site.bus.set_drop_rule(DropRule::when(|d| {
        d.frame.id().is_extended() && d.receiver != "spy" && d.sequence % 50 == 7
    }));
    let bundle = bundle(128 * 1024, 8 * 1024, 5);
    let frames = bundle.len().div_ceil(8);
    let id = upload(&engine, request(&bundle), &bundle).await.unwrap();
    let record = wait_end(&engine, id, Duration::from_secs(300)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
    assert_eq!(site.status().running_version, NEW);
    let sent = data_after(&site, 0);
    let again = sent.len() - frames;
    assert!(again > 0, "frames were lost, so some were sent again");
    // Each loss costs about one frame, not a block or the whole transfer.
    assert!(
        again < frames / 25,
        "{again} frames sent again for {frames}"
    );
}

#[tokio::test(start_paused = true)]
async fn after_a_bus_interruption_the_transfer_goes_on_from_where_the_master_stands() {
    let site = Site::new(1);
    let engine = site.gx();
    wait_for_battery(&engine).await;
    let bundle = bundle(192 * 1024, 8 * 1024, 6);
    let frames = bundle.len().div_ceil(8) as u32;
    let id = upload(&engine, request(&bundle), &bundle).await.unwrap();
    loop {
        let r = job(&engine, id).await;
        assert_eq!(r.state(), JobState::Transferring, "{r:#?}");
        if r.percent().get() >= 25 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Nothing crosses the bus for 1.5 s.
    let (_, written_before, _) = site.status().staged.unwrap();
    let until = Instant::now() + Duration::from_millis(1500);
    site.bus
        .set_drop_rule(DropRule::when(move |d| d.at < until));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    site.bus.clear_faults();
    let seen_after = site.frames_seen();

    let record = wait_end(&engine, id, Duration::from_secs(300)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
    let after = data_after(&site, seen_after);
    let lowest = *after.iter().min().unwrap();
    assert!(
        lowest >= written_before,
        "frame {lowest} sent again; the master had acknowledged {written_before}"
    );
    let commands: Vec<u8> = site.spied.lock().unwrap()[seen_after..]
        .iter()
        .filter(|(f, _)| f.id().is_extended() && f.id().raw() == COMMAND_ID)
        .map(|(f, _)| f.data()[0])
        .collect();
    assert!(!commands.contains(&0x03), "no new BEGIN: {commands:?}");
    assert!(
        (data_after(&site, 0).len() as u32) < frames + frames / 10,
        "the transfer did not start over"
    );
}
