//! Faults during an Aurora update: a corrupted image, the battery's power cut during the
//! transfer and during the installation, and a lossy bus.

mod gx_site;

use aurora_sim::Fault;
use aurora_sim::flash::BootState;
use aurora_sim::package::{Corruption, corrupt, verify};
use bmsfw_core::errors;
use bmsfw_core::job::JobState;
use bmsfw_core::vrm::GxEngine;
use bmsfw_sim::battery::BatteryControl;
use bmsfw_sim::bus::DropRule;
use gx_site::*;
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn a_corrupted_image_fails_verification_keeps_the_old_firmware_and_a_retry_succeeds() {
    let site = Site::new([4, 15]);
    let engine = site.gx();
    wait_for_battery(&engine).await;
    let good = package([4, 16], 64 * 1024, 11);

    // A damaged file: the plugin's own check refuses it in stage 1, before the battery.
    let damaged = corrupt(&good, Corruption::ImageByte { offset: 1000 });
    let refusal = upload(&engine, request(&damaged), &damaged)
        .await
        .unwrap_err();
    assert_eq!(refusal.code, 760, "{refusal}");
    assert_eq!(
        site.status().session,
        bmsfw_protocols::uds::Session::Default
    );

    // A good file whose image is damaged on its way into the battery's flash: the BMS's
    // check refuses it, "Verification failed".
    site.bms.inject(Fault::FlipBitOnWrite { offset: 40_000 });
    let id = upload(&engine, request(&good), &good).await.unwrap();
    let record = wait_end(&engine, id, Duration::from_secs(120)).await;
    assert_eq!(record.state(), JobState::Failed);
    let failure = record.failure().unwrap();
    assert_eq!(failure.code, 780, "{failure:?}");
    let info = errors::lookup(failure.code).unwrap();
    assert_eq!(info.title, "Verification failed");
    let bundle = engine.diagnostics(id).await.unwrap();
    let error = bundle.error.unwrap();
    assert_eq!(error.title, "Verification failed");
    assert_eq!(
        error.resolution[0],
        "If using uploaded firmware file, obtain a new copy from the manufacturer"
    );
    // The battery runs its old firmware and never restarted.
    let status = site.status();
    assert_eq!(status.running_version, [4, 15]);
    assert_eq!(status.boots, 0);

    // An immediate retry: the package is still on the GX (no upload), the update completes.
    let status = engine.request_update(request(&good)).await.unwrap();
    assert_eq!(status.first_missing, None, "no chunk to upload again");
    engine.finish_upload(status.job).await.unwrap();
    let record = wait_end(&engine, status.job, Duration::from_secs(120)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
    assert_eq!(site.status().running_version, [4, 16]);
}

/// After a power cut and its restoration, the battery runs a complete firmware: the old
/// one or the new one, never a part of it.
fn runs_a_complete_firmware(site: &Site) -> [u8; 2] {
    let status = site.status();
    let active = site.bms.slot_package(status.active_slot);
    let header = verify(&active).expect("the active slot holds a complete, verified package");
    assert_eq!(header.version, status.running_version);
    status.running_version
}

#[tokio::test(start_paused = true)]
async fn a_power_cut_during_the_transfer_fails_the_job_and_leaves_the_old_firmware() {
    let site = Site::new([4, 15]);
    let engine = site.gx();
    wait_for_battery(&engine).await;
    let pkg = package([4, 16], 96 * 1024, 12);
    let id = upload(&engine, request(&pkg), &pkg).await.unwrap();
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if job(&engine, id).await.percent().get() >= 40 {
            break;
        }
    }
    site.bms.power_cut();
    let record = wait_end(&engine, id, Duration::from_secs(60)).await;
    assert_eq!(record.state(), JobState::Failed);
    let code = record.failure().unwrap().code;
    assert!(
        [724, 750].contains(&code),
        "silence (724) or no answer (750), got {:?}",
        record.failure()
    );
    site.bms.power_restore();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(runs_a_complete_firmware(&site), [4, 15]);
}

/// When, during the installation, the power is cut.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// While the BMS checks the received image.
    DuringCheck,
    /// Once the image is verified and activated, before the reset.
    AfterActivation,
}

async fn power_cut_during_installation(cut: Cut) -> ([u8; 2], bmsfw_core::job::JobRecord) {
    let site = Site::new([4, 15]);
    let engine = site.gx();
    wait_for_battery(&engine).await;
    let pkg = package([4, 16], 128 * 1024, 13);
    let id = upload(&engine, request(&pkg), &pkg).await.unwrap();
    wait_state(&engine, id, JobState::Installing, Duration::from_secs(60)).await;
    match cut {
        Cut::DuringCheck => tokio::time::sleep(Duration::from_millis(20)).await,
        Cut::AfterActivation => loop {
            if site.status().boot_state == BootState::ActivationPending {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        },
    }
    assert_eq!(job(&engine, id).await.state(), JobState::Installing);
    site.bms.power_cut();
    let record = wait_end(&engine, id, Duration::from_secs(60)).await;
    site.bms.power_restore();
    tokio::time::sleep(Duration::from_secs(8)).await;
    (runs_a_complete_firmware(&site), record)
}

#[tokio::test(start_paused = true)]
async fn a_power_cut_during_the_check_fails_the_job_and_keeps_the_old_firmware() {
    let (version, record) = power_cut_during_installation(Cut::DuringCheck).await;
    assert_eq!(version, [4, 15]);
    assert_eq!(record.state(), JobState::Failed);
    // The battery went silent outside a restart: the communicating gate stopped it.
    assert_eq!(
        record.failure().unwrap().code,
        724,
        "{:?}",
        record.failure()
    );
}

#[tokio::test(start_paused = true)]
async fn a_power_cut_after_activation_fails_the_job_and_boots_the_new_firmware() {
    let (version, record) = power_cut_during_installation(Cut::AfterActivation).await;
    // The boot record was written: at power-up the new, complete firmware runs.
    assert_eq!(version, [4, 16]);
    assert_eq!(record.state(), JobState::Failed);
    assert_eq!(
        record.failure().unwrap().code,
        724,
        "{:?}",
        record.failure()
    );
}

#[tokio::test(start_paused = true)]
async fn an_update_completes_with_one_percent_of_frames_lost() {
    let site = Site::new([4, 15]);
    site.bus
        .set_drop_rule(DropRule::probability(0.01, 0xB0B).unwrap());
    let engine = site.gx();
    wait_for_battery(&engine).await;
    let pkg = package([4, 16], 64 * 1024, 14);
    let id = upload(&engine, request(&pkg), &pkg).await.unwrap();
    let record = wait_end(&engine, id, Duration::from_secs(300)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
    assert_eq!(site.status().running_version, [4, 16]);
    let dropped: u64 = site.bus.nodes().iter().map(|n| n.counters.dropped).sum();
    assert!(dropped > 50, "the bus lost frames: {dropped}");
}
