//! The GX engine end to end with the alpha fixture plugin on the simulated bus, in
//! virtual time: stage 1 through the ingest API, gates, the stage-2 driver, the job
//! states and the event log.

mod engine_common;

use bmsfw_can::{CanEvent, CanFilter, CanId};
use bmsfw_core::events::EventKind;
use bmsfw_core::job::JobState;
use bmsfw_core::vrm::GxEngine;
use bmsfw_sim::battery::{Alarm, Level};
use bmsfw_sim::bus::SimBus;
use engine_common::*;
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn a_successful_update_records_every_state_and_both_versions() {
    let site = Site::new([1, 2]);
    site.bms.lock().unwrap().installs = [1, 5];
    let engine = site.engine();
    wait_for_battery(&engine).await;
    let package = spkg(1, 5, 3000, 7);
    let job = upload(&engine, request(&package, 1024), &package)
        .await
        .unwrap();
    let record = wait_end(&engine, job, Duration::from_secs(60)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
    assert_eq!(record.version_before().unwrap().raw, vec![1, 2]);
    assert_eq!(record.version_before().unwrap().display, "v1.02");
    assert_eq!(record.version_target().unwrap().display, "v1.05");
    assert_eq!(record.version_after().unwrap().raw, vec![1, 5]);
    assert_eq!(site.bms.lock().unwrap().received, package[8..].to_vec());

    let history = engine.history(SERIAL).await.unwrap();
    let states: Vec<JobState> = history
        .iter()
        .filter_map(|e| match e.event {
            EventKind::StateChanged { to, .. } => Some(to),
            _ => None,
        })
        .collect();
    assert_eq!(
        states,
        vec![
            JobState::Transferring,
            JobState::Installing,
            JobState::Verifying,
            JobState::Completed
        ]
    );
    assert!(matches!(history[0].event, EventKind::Initiated { .. }));
    // The keep-alive flowed during the update.
    let keep_alive = site
        .bus
        .load_per_id()
        .into_iter()
        .find(|(id, _)| id.raw() == 0x305)
        .map(|(_, l)| l.frames)
        .unwrap_or(0);
    assert!(keep_alive >= 2, "{keep_alive} keep-alive frames");
}

#[tokio::test(start_paused = true)]
async fn an_alarm_raised_mid_transfer_aborts_with_the_gate_code_and_keeps_the_old_firmware() {
    let site = Site::new([1, 2]);
    site.bms.lock().unwrap().installs = [1, 5];
    let engine = site.engine();
    wait_for_battery(&engine).await;
    let package = spkg(1, 5, 60_000, 1);
    let job = upload(&engine, request(&package, 4096), &package)
        .await
        .unwrap();
    // Let part of the image through, then raise a high-temperature alarm.
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if site.bms.lock().unwrap().received.len() > 10_000 {
            break;
        }
    }
    site.battery.raise(Level::Alarm, Alarm::HighTemperature);
    let record = wait_end(&engine, job, Duration::from_secs(30)).await;
    assert_eq!(record.state(), JobState::Failed);
    let failure = record.failure().unwrap();
    assert_eq!(failure.code, 726, "{failure:?}");
    assert!(
        failure.message.contains("high temperature"),
        "{}",
        failure.message
    );
    let state = failure.battery_state.as_ref().expect("battery state kept");
    assert!(
        state.active_alarms.iter().any(|a| a == "high temperature"),
        "{state:?}"
    );
    let bms = site.bms.lock().unwrap();
    assert_eq!(bms.aborts, 1, "the plugin told the BMS to drop the update");
    assert!(bms.received.is_empty());
    assert!(
        bms.frames.iter().all(|f| f.data() != [0xFF]),
        "never installed"
    );
    drop(bms);
    assert_eq!(site.battery.snapshot().product_info[2..4], [1, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_plugin_sending_outside_its_identifiers_is_stopped_with_741() {
    let site = Site::build(ROGUE, SimBus::new("can0", 500_000), [1, 2]);
    site.bms.lock().unwrap().installs = [1, 5];
    // A spy on the battery's charge-limit identifier.
    let spy = site.bus.attach("spy");
    spy.set_filters(&[CanFilter {
        id: CanId::standard(0x351).unwrap(),
        mask: 0x7FF,
    }])
    .unwrap();
    let engine = site.engine();
    wait_for_battery(&engine).await;
    let package = spkg_for(ROGUE.product, 1, 5, 2000, 3);
    let job = upload(&engine, request(&package, 1024), &package)
        .await
        .unwrap();
    let record = wait_end(&engine, job, Duration::from_secs(30)).await;
    assert_eq!(record.state(), JobState::Failed);
    let failure = record.failure().unwrap();
    assert_eq!(failure.code, 741, "{failure:?}");
    assert!(failure.message.contains("351"), "{}", failure.message);
    // Every 0x351 on the bus came from the battery: the forged limits never went out.
    let mut seen = 0;
    while let Some(event) = spy.try_recv().unwrap() {
        if let CanEvent::Frame(f) = event {
            seen += 1;
            assert_ne!(f.frame.data(), [0x90, 0x01, 0, 0, 0, 0, 0x90, 0x01]);
        }
    }
    assert!(seen > 0, "the battery's own 0x351 frames were seen");
    // The session was told to stop: its abort frame reached the BMS.
    assert_eq!(site.bms.lock().unwrap().aborts, 1);
    assert_eq!(site.battery.snapshot().product_info[2..4], [1, 2]);
}
