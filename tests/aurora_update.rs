//! The real aurora plugin library, loaded through the allowlist, updating the simulated
//! Aurora BMS on the simulated bus in virtual time, through the engine's plugin trait.
//!
//! The sessions are driven by a thin test harness (`aurora/harness.rs`), not by the
//! engine's stage-2 driver: these tests prove the plugin and the simulated BMS agree on
//! `vendors/aurora/PROTOCOL.md`, end to end.

mod aurora;

use aurora::harness::{PRODUCT, World, drive};
use aurora_sim::flash::SlotId;
use aurora_sim::package::{self, Corruption, PackageSpec, verify};
use aurora_sim::{AuroraConfig, Fault, Stage};
use bmsfw_core::plugin::{BatteryMatch, PackageRead, SessionPhase};
use bmsfw_plugin_api::{ErrorCode, Timestamp};
use bmsfw_sim::bus::DropRule;
use std::sync::Arc;
use std::time::Duration;

use SessionPhase::{Done, Failed, Installing, Restarting, Transferring, Verifying};

fn new_package(image_len: usize) -> Vec<u8> {
    package::build(&PackageSpec::new(PRODUCT, [4, 16], image_len, 4242))
}

/// The version the plugin decodes from the last 0x35F heard.
fn last_35f(world: &World, telemetry: &[(Timestamp, bmsfw_plugin_api::CanFrame)]) -> String {
    let f = telemetry
        .iter()
        .rev()
        .find(|(_, f)| f.id().raw() == 0x35F)
        .map(|(_, f)| *f)
        .expect("a 0x35F was heard");
    world
        .plugin
        .plugin
        .decode_version(&f.data()[2..4])
        .unwrap()
        .display
}

/// The battery runs a complete, verified package, and its version is one of `allowed`.
fn runs_complete_firmware(world: &World, allowed: &[[u8; 2]]) -> [u8; 2] {
    let status = world.bms.status();
    assert_eq!(status.stage, Stage::Running, "{status:?}");
    let active = world.bms.slot_package(status.active_slot);
    let header = verify(&active).expect("the active slot holds a complete package");
    assert_eq!(header.version, status.running_version);
    assert!(allowed.contains(&status.running_version), "{status:?}");
    status.running_version
}

#[tokio::test(start_paused = true)]
async fn a_successful_update_reports_every_phase_and_the_new_version() {
    let world = World::standard();
    let plugin = world.plugin.plugin.clone();
    assert_eq!(
        plugin.info().vendor_id.as_str(),
        "com.aurora-energy.powercore"
    );

    let (battery, heard) = world.listen(Duration::from_secs(2)).await;
    assert_eq!(
        plugin.match_battery(&battery).unwrap(),
        BatteryMatch::Updatable
    );
    let before = plugin.decode_version(&battery.raw_35f()[2..4]).unwrap();
    assert_eq!(before.display, "v4.15");
    assert_eq!(last_35f(&world, &heard), "v4.15");

    let pkg = new_package(256 * 1024);
    let path = world.stage("powercore-4.16.bin", &pkg);
    let file: Arc<dyn PackageRead> =
        Arc::new(bmsfw_core::plugin::FilePackage::open(&path).unwrap());
    let summary = plugin.inspect_package(file).unwrap();
    assert_eq!(summary.version.display, "v4.16");
    assert_eq!(summary.image_size, pkg.len() as u64);

    let mut session = world.start(&battery, &path);
    let run = drive(&world, session.as_mut(), |_, _| {}).await;
    assert_eq!(run.last.phase, Done, "{:?}", run.last.failure);
    assert_eq!(
        run.phase_names(),
        vec![Transferring, Installing, Restarting, Verifying, Done]
    );
    let progress: Vec<u64> = run.progress.iter().map(|(_, b)| *b).collect();
    assert!(
        progress.windows(2).all(|w| w[0] < w[1]),
        "progress only grows"
    );
    assert_eq!(progress.first(), Some(&0));
    assert_eq!(progress.last(), Some(&(pkg.len() as u64)));
    assert!(progress.len() > 60, "about one step per 4 KiB block");

    // The battery runs the new package from its other slot, and says so in 0x35F.
    assert_eq!(runs_complete_firmware(&world, &[[4, 16]]), [4, 16]);
    assert_eq!(world.bms.status().active_slot, SlotId::B);
    assert_eq!(world.bms.slot_package(SlotId::B), pkg);
    let (after, heard) = world.listen(Duration::from_secs(2)).await;
    assert_eq!(last_35f(&world, &heard), "v4.16");
    let after = plugin.decode_version(&after.raw_35f()[2..4]).unwrap();
    assert_eq!(after.comparable, summary.version.comparable);

    // Telemetry flowed through the transfer (0x356 every 200 ms) and paused for the
    // restart only.
    let transfer = run.entered(Transferring).unwrap();
    let installing = run.entered(Installing).unwrap();
    let measurements = run.times_of(0x356, transfer, installing);
    let worst = measurements
        .windows(2)
        .map(|w| w[1].saturating_duration_since(w[0]))
        .max()
        .unwrap();
    assert!(
        worst < Duration::from_millis(202),
        "telemetry stalled {worst:?}"
    );
    let restarting = run.entered(Restarting).unwrap();
    let verifying = run.entered(Verifying).unwrap();
    let gap = restarting + Duration::from_millis(10);
    assert!(
        run.times_of(0x351, gap, restarting + Duration::from_millis(2900))
            .is_empty()
    );
    assert!(verifying.saturating_duration_since(restarting) >= Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn a_corrupted_image_fails_verification_and_a_good_file_succeeds_at_once() {
    let world = World::standard();
    let (battery, _) = world.listen(Duration::from_secs(2)).await;
    let good = new_package(64 * 1024);
    let path = world.stage("powercore-4.16.bin", &good);
    let file: Arc<dyn PackageRead> =
        Arc::new(bmsfw_core::plugin::FilePackage::open(&path).unwrap());
    world.plugin.plugin.inspect_package(file).unwrap();
    // The staged copy is damaged after its inspection: one image byte flips on disk.
    world.stage(
        "powercore-4.16.bin",
        &package::corrupt(&good, Corruption::ImageByte { offset: 40_000 }),
    );

    let mut session = world.start(&battery, &path);
    let run = drive(&world, session.as_mut(), |_, _| {}).await;
    let failure = run.last.failure.clone().unwrap();
    assert_eq!(failure.code, ErrorCode::VERIFICATION_FAILED, "{failure}");
    assert!(failure.message.contains("Verification failed"), "{failure}");
    assert_eq!(run.phase_names(), vec![Transferring, Installing, Failed]);
    assert_eq!(runs_complete_firmware(&world, &[[4, 15]]), [4, 15]);
    assert_eq!(world.bms.status().boots, 0, "the battery never restarted");

    // An immediate retry with a good copy succeeds.
    world.stage("powercore-4.16.bin", &good);
    let mut session = world.start(&battery, &path);
    let run = drive(&world, session.as_mut(), |_, _| {}).await;
    assert_eq!(run.last.phase, Done, "{:?}", run.last.failure);
    assert_eq!(runs_complete_firmware(&world, &[[4, 16]]), [4, 16]);
}

#[tokio::test(start_paused = true)]
async fn a_flash_fault_in_the_bms_fails_verification_and_the_retry_succeeds() {
    let world = World::standard();
    let (battery, _) = world.listen(Duration::from_secs(2)).await;
    let path = world.stage("powercore-4.16.bin", &new_package(64 * 1024));
    world.bms.inject(Fault::FlipBitOnWrite { offset: 30_000 });
    let mut session = world.start(&battery, &path);
    let run = drive(&world, session.as_mut(), |_, _| {}).await;
    assert_eq!(
        run.last.failure.as_ref().map(|f| f.code),
        Some(ErrorCode::VERIFICATION_FAILED)
    );
    assert_eq!(runs_complete_firmware(&world, &[[4, 15]]), [4, 15]);
    let mut session = world.start(&battery, &path);
    let run = drive(&world, session.as_mut(), |_, _| {}).await;
    assert_eq!(run.last.phase, Done, "{:?}", run.last.failure);
    assert_eq!(runs_complete_firmware(&world, &[[4, 16]]), [4, 16]);
}

#[tokio::test(start_paused = true)]
async fn a_power_cut_during_the_transfer_keeps_the_old_firmware() {
    let world = World::standard();
    let (battery, _) = world.listen(Duration::from_secs(2)).await;
    let pkg = new_package(128 * 1024);
    let path = world.stage("powercore-4.16.bin", &pkg);
    let mut session = world.start(&battery, &path);
    let bms = world.bms.clone();
    let mut cut_at = None;
    let run = drive(&world, session.as_mut(), |report, now| {
        if cut_at.is_none() && report.bytes_done * 10 >= report.bytes_total * 3 {
            assert_eq!(report.phase, Transferring);
            aurora_power(&bms, false);
            cut_at = Some(now);
        }
        if cut_at.is_some_and(|t| now.saturating_duration_since(t) >= Duration::from_secs(2)) {
            aurora_power(&bms, true);
        }
    })
    .await;
    assert!(cut_at.is_some());
    let failure = run.last.failure.clone().unwrap();
    assert!(
        [ErrorCode::TIMEOUT, ErrorCode::REJECTED_BY_BMS].contains(&failure.code),
        "{failure}"
    );
    aurora_power(&world.bms, true);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(runs_complete_firmware(&world, &[[4, 15]]), [4, 15]);
    // The battery takes the update again from the start.
    let mut session = world.start(&battery, &path);
    let run = drive(&world, session.as_mut(), |_, _| {}).await;
    assert_eq!(run.last.phase, Done, "{:?}", run.last.failure);
    assert_eq!(runs_complete_firmware(&world, &[[4, 16]]), [4, 16]);
}

/// Cuts (`false`) or restores (`true`) the BMS's power, through the controls every
/// simulated battery has.
fn aurora_power(bms: &aurora_sim::AuroraHandle, on: bool) {
    use bmsfw_sim::battery::BatteryControl;
    if on {
        bms.power_restore();
    } else {
        bms.power_cut();
    }
}

#[tokio::test(start_paused = true)]
async fn power_cuts_while_installing_leave_old_or_new_complete_firmware() {
    // Cut at three moments: as the installation begins (before the check), once the boot
    // record is written (before the check's answer), and while the battery restarts.
    for moment in 0..3 {
        let world = World::standard();
        let (battery, _) = world.listen(Duration::from_secs(2)).await;
        let path = world.stage("powercore-4.16.bin", &new_package(256 * 1024));
        let mut session = world.start(&battery, &path);
        let bms = world.bms.clone();
        let mut cut = false;
        let mut cut_at = None;
        let mut installing_since = None;
        let run = drive(&world, session.as_mut(), |report, now| {
            if report.phase == Installing && installing_since.is_none() {
                installing_since = Some(now);
            }
            // The power comes back a second after the cut.
            if cut_at.is_some_and(|t| now.saturating_duration_since(t) >= Duration::from_secs(1)) {
                aurora_power(&bms, true);
                cut_at = None;
            }
            if installing_since.is_none() || cut {
                return;
            }
            let activated =
                bms.status().boot_state == aurora_sim::flash::BootState::ActivationPending;
            let due = match moment {
                0 => report.phase == Installing,
                1 => report.phase == Installing && activated,
                _ => report.phase == Restarting,
            };
            if due {
                aurora_power(&bms, false);
                cut = true;
                cut_at = Some(now);
            }
        })
        .await;
        assert!(cut, "moment {moment} was reached");
        aurora_power(&world.bms, true);
        tokio::time::sleep(Duration::from_secs(8)).await;
        let version = runs_complete_firmware(&world, &[[4, 15], [4, 16]]);
        match moment {
            0 => assert_eq!(version, [4, 15], "cut before the check: old firmware"),
            _ => assert_eq!(version, [4, 16], "cut after the boot record: new firmware"),
        }
        if moment == 0 {
            // The battery went silent before it activated the image and lost the
            // download: the session fails with a code (no answer, or the old version
            // found running once it is back).
            assert_eq!(run.last.phase, Failed);
            let failure = run.last.failure.clone().unwrap();
            assert!(
                [ErrorCode::TIMEOUT, ErrorCode::INSTALL_FAILED].contains(&failure.code),
                "{failure}"
            );
        } else {
            // The boot record was written before the cut: after the power comes back the
            // battery runs the new firmware, and the session finds it restarted and
            // verifies it.
            assert_eq!(
                run.last.phase, Done,
                "moment {moment}: {:?}",
                run.last.failure
            );
            assert!(run.phase_names().contains(&Restarting), "moment {moment}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn one_percent_frame_loss_still_completes() {
    let world = World::standard();
    let (battery, _) = world.listen(Duration::from_secs(2)).await;
    let pkg = new_package(64 * 1024);
    let path = world.stage("powercore-4.16.bin", &pkg);
    world
        .bus
        .set_drop_rule(DropRule::probability(0.01, 7).unwrap());
    let mut session = world.start(&battery, &path);
    let run = drive(&world, session.as_mut(), |_, _| {}).await;
    assert_eq!(run.last.phase, Done, "{:?}", run.last.failure);
    // Lost frames cost whole blocks: the session repeated (shorter) blocks, sending at
    // least 5 % more frames than the package's 7 bytes per frame need.
    assert!(
        run.sent as usize > pkg.len() / 7 * 21 / 20,
        "{} frames",
        run.sent
    );
    world.bus.clear_faults();
    assert_eq!(runs_complete_firmware(&world, &[[4, 16]]), [4, 16]);
    assert_eq!(world.bms.slot_package(world.bms.status().active_slot), pkg);
}

#[tokio::test(start_paused = true)]
async fn an_old_bootloader_is_refused_before_anything_is_erased() {
    let mut config = AuroraConfig::new(PRODUCT, [4, 15]);
    config.bootloader = [1, 4];
    let world = World::new(config);
    let (battery, _) = world.listen(Duration::from_secs(2)).await;
    let path = world.stage("powercore-4.16.bin", &new_package(8 * 1024));
    let mut session = world.start(&battery, &path);
    let run = drive(&world, session.as_mut(), |_, _| {}).await;
    let failure = run.last.failure.clone().unwrap();
    assert_eq!(failure.code, ErrorCode(901), "{failure}");
    assert!(failure.message.contains("v1.4"), "{failure}");
    assert_eq!(run.phase_names(), vec![Transferring, Failed]);
    assert_eq!(world.bms.status().inactive_len, 0, "nothing was written");
}

#[tokio::test(start_paused = true)]
async fn a_firmware_that_does_not_start_is_rolled_back_and_reported() {
    let world = World::standard();
    let (battery, _) = world.listen(Duration::from_secs(2)).await;
    let path = world.stage("powercore-4.16.bin", &new_package(16 * 1024));
    world.bms.inject(Fault::FailNextBoot);
    let mut session = world.start(&battery, &path);
    let run = drive(&world, session.as_mut(), |_, _| {}).await;
    let failure = run.last.failure.clone().unwrap();
    assert_eq!(failure.code, ErrorCode::INSTALL_FAILED, "{failure}");
    assert_eq!(
        run.phase_names(),
        vec![Transferring, Installing, Restarting, Verifying, Failed]
    );
    assert_eq!(runs_complete_firmware(&world, &[[4, 15]]), [4, 15]);
}
