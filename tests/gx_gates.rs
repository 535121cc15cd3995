//! Every safety gate refusing an Aurora update with its own code, on the real plugin and
//! the simulated BMS, and gates turning red in the middle of a transfer.

mod gx_site;

use bmsfw_core::dotted_version::DottedVersion;
use bmsfw_core::gates::GridStatus;
use bmsfw_core::job::JobState;
use bmsfw_core::vrm::{Acknowledgement, EngineRefusal, GxEngine, VersionPolicy, VrmPortalMode};
use bmsfw_protocols::uds::Session;
use bmsfw_sim::battery::{Alarm, BatteryControl, Level};
use bmsfw_sim::bus::SimBus;
use gx_site::*;
use std::time::Duration;

/// Where a gate refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// The request was refused; no job exists.
    Request,
    /// Stage 1 ended but stage 2 did not start; the job failed with the gate's code.
    BeforeTransfer,
}

/// Runs an update of a small v4.16 package on a site prepared by `prepare` (before the
/// GX starts) and `disturb` (once the GX hears the battery); returns the refusal.
async fn refusal(
    prepare: impl FnOnce(&mut Site),
    disturb: impl AsyncFnOnce(&Site, &bmsfw_core::engine::Engine, bmsfw_sim::bus::NodeId),
    version: [u8; 2],
    policy: VersionPolicy,
    bus: SimBus,
) -> (EngineRefusal, At, Site) {
    let mut site = Site::on(bus, [4, 15]);
    prepare(&mut site);
    let (engine, gx_node) = site.gx_with(site.config());
    wait_for_battery(&engine).await;
    disturb(&site, &engine, gx_node).await;
    let package = package(version, 4096, 3);
    let mut req = request(&package);
    req.options.version_policy = policy;
    let refusal = upload(&engine, req, &package)
        .await
        .expect_err("the gate refuses");
    let jobs = engine.jobs().await;
    let at = match jobs
        .iter()
        .rev()
        .find(|j| j.package().sha256() == bmsfw_core::plugin::Sha256Digest::of(&package))
    {
        None => At::Request,
        Some(job) => {
            assert_eq!(job.state(), JobState::Failed, "{job:#?}");
            assert_eq!(job.failure().unwrap().code, refusal.code);
            At::BeforeTransfer
        }
    };
    // Nothing was written to the battery.
    assert_eq!(site.status().running_version, [4, 15]);
    assert_eq!(site.status().session, Session::Default);
    (refusal, at, site)
}

fn default_bus() -> SimBus {
    SimBus::new("can0", 500_000)
}

async fn nothing(_: &Site, _: &bmsfw_core::engine::Engine, _: bmsfw_sim::bus::NodeId) {}

fn check(r: &EngineRefusal, code: u32, at: At, expected_at: At, words: &[&str]) {
    assert_eq!(r.code, code, "{r}");
    assert_eq!(at, expected_at, "{r}");
    for w in words {
        assert!(r.message.contains(w), "{r} should mention {w:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn each_gate_refuses_the_update_with_its_code() {
    let newer = [4, 16];
    let any = VersionPolicy::NewerOnly;

    let (r, at, _) = refusal(
        |_| {},
        async |s, _, _| s.vrm.set(VrmPortalMode::ReadOnly),
        newer,
        any,
        default_bus(),
    )
    .await;
    check(
        &r,
        720,
        at,
        At::Request,
        &["VRM access mode", "measured read-only", "limit full"],
    );

    let (r, at, _) = refusal(
        |s| s.gx_firmware = DottedVersion::from(vec![3, 50]),
        nothing,
        newer,
        any,
        default_bus(),
    )
    .await;
    check(
        &r,
        721,
        at,
        At::Request,
        &["measured v3.50", "limit v3.60 or later"],
    );

    let (r, at, _) = refusal(|_| {}, nothing, newer, any, SimBus::new("can0", 250_000)).await;
    check(
        &r,
        722,
        at,
        At::Request,
        &["measured 250000 bit/s", "limit 500000 bit/s"],
    );

    let (r, at, _) = refusal(
        |_| {},
        async |s, _, _| {
            s.bms.set_soc(45.0);
            tokio::time::sleep(Duration::from_secs(2)).await;
        },
        newer,
        any,
        default_bus(),
    )
    .await;
    check(
        &r,
        723,
        at,
        At::Request,
        &["measured 45 %", "at least 50 %"],
    );

    let (r, at, _) = refusal(
        |_| {},
        async |s, _, _| {
            s.bms.power_cut();
            tokio::time::sleep(Duration::from_secs(4)).await;
        },
        newer,
        any,
        default_bus(),
    )
    .await;
    check(&r, 724, at, At::Request, &["stale or missing: 0x351"]);

    let (r, at, _) = refusal(
        |_| {},
        async |s, _, gx| {
            s.bus.force_bus_off(gx).unwrap();
        },
        newer,
        any,
        default_bus(),
    )
    .await;
    check(&r, 725, at, At::Request, &["measured bus-off"]);

    let (r, at, _) = refusal(
        |_| {},
        async |s, _, _| {
            s.bms.raise(Level::Alarm, Alarm::HighTemperature);
            tokio::time::sleep(Duration::from_secs(2)).await;
        },
        newer,
        any,
        default_bus(),
    )
    .await;
    check(&r, 726, at, At::Request, &["high temperature alarm"]);

    let (r, at, _) = refusal(
        |_| {},
        async |s, _, _| {
            s.bms.set_temperature(44.0);
            tokio::time::sleep(Duration::from_secs(2)).await;
        },
        newer,
        any,
        default_bus(),
    )
    .await;
    check(
        &r,
        727,
        at,
        At::Request,
        &["measured 44.0 °C", "5 °C to 40 °C"],
    );

    let (r, at, _) = refusal(
        |_| {},
        async |s, _, _| s.grid.set_grid(GridStatus::Lost),
        newer,
        any,
        default_bus(),
    )
    .await;
    check(&r, 728, at, At::Request, &["grid lost"]);

    let (r, at, _) = refusal(
        |_| {},
        async |_, engine, _| {
            // Another update of the battery is still uploading on the bus.
            let other = package([4, 17], 4096, 9);
            engine.request_update(request(&other)).await.unwrap();
        },
        newer,
        any,
        default_bus(),
    )
    .await;
    check(
        &r,
        729,
        at,
        At::Request,
        &["is updating a battery on this bus"],
    );

    // The installer did not confirm the maintenance window.
    let site = Site::new([4, 15]);
    let engine = site.gx();
    wait_for_battery(&engine).await;
    let pkg = package([4, 16], 4096, 3);
    let mut req = request(&pkg);
    req.acknowledgements
        .0
        .remove(&Acknowledgement::MaintenanceWindow);
    let r = engine.request_update(req).await.unwrap_err();
    check(
        &r,
        730,
        At::Request,
        At::Request,
        &["missing: maintenance window"],
    );
    assert!(engine.jobs().await.is_empty());

    // The same version again, without the installer's explicit choice.
    let (r, at, site) = refusal(|_| {}, nothing, [4, 15], any, default_bus()).await;
    check(
        &r,
        731,
        at,
        At::BeforeTransfer,
        &["measured v4.15 [040F]", "newer than v4.15 [040F]"],
    );
    drop(site);

    // A version outside the allowlist's range.
    let (r, at, _) = refusal(
        |s| s.allowlist = allowlist("2.0", "4.15"),
        nothing,
        newer,
        any,
        default_bus(),
    )
    .await;
    check(
        &r,
        732,
        at,
        At::BeforeTransfer,
        &["measured v4.16 [0410]", "v2.0 to v4.15 (allowlist)"],
    );

    // An installed version outside it.
    let (r, at, _) = refusal(
        |s| s.allowlist = allowlist("5.0", "9.99"),
        nothing,
        newer,
        any,
        default_bus(),
    )
    .await;
    check(
        &r,
        733,
        at,
        At::Request,
        &["measured v4.15 [040F]", "v5.0 to v9.99"],
    );
}

#[tokio::test(start_paused = true)]
async fn a_reinstall_runs_when_the_installer_chooses_it() {
    let site = Site::new([4, 15]);
    let engine = site.gx();
    wait_for_battery(&engine).await;
    let pkg = package([4, 15], 8192, 4);
    let mut req = request(&pkg);
    req.options.version_policy = VersionPolicy::AllowReinstallOrDowngrade;
    let id = upload(&engine, req, &pkg).await.unwrap();
    let record = wait_end(&engine, id, Duration::from_secs(60)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
    assert_eq!(record.version_after().unwrap().display, "v4.15");
    // The reinstalled package now runs from the other slot.
    assert_ne!(site.status().active_slot, aurora_sim::flash::SlotId::A);
}

/// A gate turns red while the image is on its way: the engine aborts the session through
/// the plugin, the job fails with the gate's code, the battery keeps its old firmware.
async fn red_mid_transfer(turn_red: impl FnOnce(&Site), code: u32, words: &str) {
    let site = Site::new([4, 15]);
    let engine = site.gx();
    wait_for_battery(&engine).await;
    let pkg = package([4, 16], 128 * 1024, 5);
    let id = upload(&engine, request(&pkg), &pkg).await.unwrap();
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if job(&engine, id).await.percent().get() >= 30 {
            break;
        }
    }
    turn_red(&site);
    let record = wait_end(&engine, id, Duration::from_secs(30)).await;
    assert_eq!(record.state(), JobState::Failed);
    let failure = record.failure().unwrap();
    assert_eq!(failure.code, code, "{failure:?}");
    assert!(failure.message.contains(words), "{}", failure.message);
    assert!(failure.battery_state.is_some());
    // The BMS dropped the download: old firmware, default session, nothing activated.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = site.status();
    assert_eq!(status.running_version, [4, 15]);
    assert_eq!(status.session, Session::Default);
    assert_eq!(status.boots, 0, "the battery never restarted");
    // And it goes on broadcasting, its old version included.
    let battery = engine.batteries().await.pop().unwrap();
    assert_eq!(battery.firmware.unwrap().display, "v4.15");
}

#[tokio::test(start_paused = true)]
async fn the_soc_dropping_mid_transfer_aborts_with_723() {
    red_mid_transfer(|s| s.bms.set_soc(44.0), 723, "measured 44 %").await;
}

#[tokio::test(start_paused = true)]
async fn an_alarm_mid_transfer_aborts_with_726() {
    red_mid_transfer(
        |s| s.bms.raise(Level::Alarm, Alarm::CellImbalance),
        726,
        "cell imbalance alarm",
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_grid_loss_mid_transfer_aborts_with_728() {
    red_mid_transfer(|s| s.grid.set_grid(GridStatus::Lost), 728, "grid lost").await;
}
