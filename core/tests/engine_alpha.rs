//! The GX engine end to end with the alpha fixture plugin on the simulated bus, in
//! virtual time: stage 1 through the ingest API, gates, the stage-2 driver, the job
//! states and the event log.

mod engine_common;

use bmsfw_can::{CanEvent, CanFilter, CanFrame, CanId};
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
        // Every step up to Verifying is reported, in order, even one the plugin passed
        // without the engine seeing it (the installer sees all six steps passed).
        vec![
            JobState::Transferring,
            JobState::Installing,
            JobState::Restarting,
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
    // The battery reports the alarm in 0x35A and its protection flag in 0x359: whichever
    // the GX heard first stopped the transfer, and the record names it.
    let state = failure.battery_state.as_ref().expect("battery state kept");
    assert!(
        state
            .active_alarms
            .iter()
            .any(|a| a == "high temperature" || a == "high temperature protection"),
        "{state:?}"
    );
    assert_eq!(
        abort_frames_heard(&site).await,
        1,
        "the plugin told the BMS to drop the update"
    );
    let bms = site.bms.lock().unwrap();
    assert!(bms.received.is_empty());
    assert!(
        bms.frames.iter().all(|f| f.data() != [0xFF]),
        "never installed"
    );
    drop(bms);
    assert_eq!(site.battery.snapshot().product_info[2..4], [1, 2]);
}

/// The abort frames the BMS heard, once the bus has carried what the session sent
/// before its job ended (a few milliseconds at most; waits at most 100 ms).
async fn abort_frames_heard(site: &Site) -> usize {
    for _ in 0..100 {
        if site.bms.lock().unwrap().aborts > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    site.bms.lock().unwrap().aborts
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
    assert_eq!(abort_frames_heard(&site).await, 1);
    assert_eq!(site.battery.snapshot().product_info[2..4], [1, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_battery_that_keeps_its_old_version_fails_the_confirmation_with_745() {
    let site = Site::new([1, 2]);
    // The BMS acknowledges the install but the battery goes on reporting v1.02.
    site.bms.lock().unwrap().installs = [1, 2];
    let engine = site.engine();
    wait_for_battery(&engine).await;
    let package = spkg(1, 5, 500, 5);
    let job = upload(&engine, request(&package, 4096), &package)
        .await
        .unwrap();
    let record = wait_end(&engine, job, Duration::from_secs(60)).await;
    let failure = record.failure().expect("failed");
    assert_eq!(failure.code, 745, "{failure:?}");
    assert!(
        failure
            .message
            .contains("reports v1.02 [0102], the package installs v1.05 [0105]"),
        "{}",
        failure.message
    );
    let bundle = engine.diagnostics(job).await.unwrap();
    assert_eq!(bundle.error.as_ref().unwrap().code, 745);
    assert_eq!(bundle.current_firmware.as_ref().unwrap().display, "v1.02");
    assert_eq!(bundle.target_firmware.as_ref().unwrap().display, "v1.05");
    assert_eq!(bundle.battery.serial, SERIAL);
    assert_eq!(bundle.gx_firmware_version, "3.70");
    let state = bundle.battery_state_at_failure.as_ref().unwrap();
    assert_eq!(state.soc_percent, Some(80.0));
    assert!(state.temperature_c.is_some() && state.voltage_v.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_request_is_refused_by_its_gate_and_changes_nothing() {
    let site = Site::new([1, 2]);
    let engine = site.engine();
    wait_for_battery(&engine).await;
    let package = spkg(1, 5, 500, 5);
    site.battery.set_soc(42.0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let refusal = engine
        .request_update(request(&package, 4096))
        .await
        .unwrap_err();
    assert_eq!(refusal.code, 723, "{refusal}");
    assert!(refusal.message.contains("measured 42 %"), "{refusal}");
    assert!(refusal.message.contains("limit at least 50 %"), "{refusal}");
    assert!(engine.jobs().await.is_empty());
    site.battery.set_soc(80.0);
    site.vrm.set(bmsfw_core::vrm::VrmPortalMode::ReadOnly);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let refusal = engine
        .request_update(request(&package, 4096))
        .await
        .unwrap_err();
    assert_eq!(refusal.code, 720, "{refusal}");
    // An unknown battery and a package for another product.
    let mut other = request(&package, 4096);
    other.battery_serial = "NOPE".into();
    assert_eq!(engine.request_update(other).await.unwrap_err().code, 713);
    site.vrm.set(bmsfw_core::vrm::VrmPortalMode::Full);
    let wrong = spkg_for(0x0A02, 1, 5, 500, 5);
    let refusal = upload(&engine, request(&wrong, 4096), &wrong)
        .await
        .unwrap_err();
    assert_eq!(refusal.code, 761, "{refusal}");
}

#[tokio::test(start_paused = true)]
async fn the_transfer_keeps_the_bus_under_its_load_budget() {
    let bus = SimBus::builder("can0", 500_000)
        .load_window(Duration::from_millis(100))
        .build()
        .unwrap();
    let site = Site::build(ALPHA, bus, [1, 2]);
    site.bms.lock().unwrap().installs = [1, 5];
    let mut config = site.config();
    config.budget.percent = 15;
    config.stage2.budget_percent = 15;
    let engine = site.engine_with(config);
    wait_for_battery(&engine).await;
    let package = spkg(1, 5, 30_000, 5);
    let job = upload(&engine, request(&package, 4096), &package)
        .await
        .unwrap();
    let mut peak: f64 = 0.0;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        peak = peak.max(site.bus.load().percent);
        let record = engine
            .jobs()
            .await
            .into_iter()
            .find(|r| r.id() == job)
            .unwrap();
        if record.state().is_terminal() {
            assert_eq!(record.state(), JobState::Completed);
            break;
        }
    }
    // The meter's 100 ms window and the budget's 100 ms window are not aligned, and the
    // budget counts a frame when it is handed to the controller: a few frames of slack.
    assert!(peak <= 17.0, "peak load {peak:.1} %");
    assert!(
        peak >= 10.0,
        "the transfer used the budget: peak {peak:.1} %"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hung_bms_fails_the_job_with_the_plugins_timeout() {
    let site = Site::new([1, 2]);
    site.bms.lock().unwrap().hang_after = Some(100);
    let engine = site.engine();
    wait_for_battery(&engine).await;
    let package = spkg(1, 5, 5000, 5);
    let job = upload(&engine, request(&package, 4096), &package)
        .await
        .unwrap();
    let record = wait_end(&engine, job, Duration::from_secs(30)).await;
    let failure = record.failure().unwrap();
    assert_eq!(failure.code, 750, "{failure:?}");
    assert_eq!(failure.message, "the BMS did not acknowledge");
}

#[tokio::test(start_paused = true)]
async fn other_traffic_above_the_budget_starves_the_transfer_into_742() {
    let site = Site::new([1, 2]);
    site.bms.lock().unwrap().installs = [1, 5];
    let engine = site.engine();
    wait_for_battery(&engine).await;
    let package = spkg(1, 5, 20_000, 5);
    let job = upload(&engine, request(&package, 4096), &package)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Another device fills every idle bit time of the bus (its frames lose arbitration to
    // everyone else's, so the BMS still answers whatever it is sent).
    let noise = site.bus.attach("noise");
    let flood = tokio::spawn(async move {
        let frame = CanFrame::new(CanId::standard(0x7F0).unwrap(), &[0x55; 8]).unwrap();
        while noise.send(frame).await.is_ok() {}
    });
    let record = wait_end(&engine, job, Duration::from_secs(30)).await;
    flood.abort();
    let failure = record.failure().unwrap();
    assert_eq!(failure.code, 742, "{failure:?}");
    assert!(
        failure.message.contains("load budget"),
        "{}",
        failure.message
    );
    assert!(site.bus.load().percent > 80.0);
}
