//! The vendor template's plugin library, built as a vendor builds it, loaded through the
//! allowlist exactly as on a GX, updating the template's simulated BMS on the simulated
//! bus in virtual time. A vendor who copies `vendors/template` copies this test with it:
//! it proves the plugin and the simulated BMS agree on `vendors/template/PROTOCOL.md`.
//!
//! The session is driven by a thin loop standing in for the engine's stage-2 driver: it
//! enforces the plugin's declared identifiers and nothing else (no gates, no budget).

use bmsfw_can::CanEvent;
use bmsfw_core::plugin::{
    Allowlist, BatteryMatch, FilePackage, LoadedPlugin, PackageRead, PluginLoader, SessionPhase,
    SessionReport, SessionStart, Sha256Digest, VendorSession, plugin_battery,
};
use bmsfw_core::telemetry::BmsCanMonitor;
use bmsfw_plugin_api::{BatteryIdentity, ErrorCode, SessionOptions};
use bmsfw_sim::battery::{BatteryConfig, Epoch, IdentityConfig};
use bmsfw_sim::bus::{SimBus, SimNode};
use bmsfw_sim::flash::SlotId;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use template_sim::package::{PackageSpec, build, verify};
use template_sim::{Fault, Stage, TemplateBms, TemplateConfig, TemplateHandle};

use SessionPhase::{Done, Failed, Installing, Restarting, Transferring, Verifying};

const PRODUCT: u16 = 0xAC10;

/// The template library copied into a plugin directory, approved by an allowlist entry
/// written from its SHA-256 (the entry `bmsfw plugin check` prints), and loaded.
fn load_template(dir: &Path) -> LoadedPlugin {
    let library = dir.join("libbmsfw_vendor_template.so");
    std::fs::copy(bmsfw_test_fixtures::vendor_library("template"), &library).unwrap();
    let sha256 = Sha256Digest::of(&std::fs::read(&library).unwrap()).to_string();
    let toml = bmsfw_test_fixtures::Approval {
        vendor_id: "com.example.acme",
        file: "libbmsfw_vendor_template.so",
        sha256: &sha256,
        versions: ">=1.0.0, <2.0.0",
        firmware: ("1.0", "1.99"),
        manufacturer: "ACME",
        product_codes: &[0xAC05, 0xAC10],
    }
    .to_toml();
    let allowlist = Allowlist::parse(Path::new("template-allowlist.toml"), &toml).unwrap();
    PluginLoader::new(allowlist).load_file(&library).unwrap()
}

struct World {
    bms: TemplateHandle,
    gx: SimNode,
    epoch: Epoch,
    plugin: LoadedPlugin,
    dir: tempfile::TempDir,
    _bus: SimBus,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let plugin = load_template(dir.path());
        let bus = SimBus::new("can0", 500_000);
        let epoch = Epoch::new(bus.epoch());
        let battery = BatteryConfig::new(IdentityConfig {
            manufacturer: "ACME".into(),
            bms_name: "Acme 10".into(),
            product_code: PRODUCT,
            firmware: [1, 11],
            capacity_ah: 100,
            product_info_tail: None,
            serial: Some("ACME10-0042".into()),
            product_name: None,
        });
        let model =
            TemplateBms::new(TemplateConfig::new(PRODUCT, [1, 11]), battery, epoch.now()).unwrap();
        let (bms, _task) = TemplateHandle::spawn("acme", model, epoch, Arc::new(bus.attach("bms")));
        let gx = bus.attach("gx");
        World {
            bms,
            gx,
            epoch,
            plugin,
            dir,
            _bus: bus,
        }
    }

    /// Listens to the telemetry for `time`; the battery as plugins see it.
    async fn listen(&self, time: Duration) -> BatteryIdentity {
        let mut monitor = BmsCanMonitor::new("can0");
        let until = tokio::time::Instant::now() + time;
        loop {
            tokio::select! {
                event = self.gx.recv() => {
                    if let Ok(CanEvent::Frame(rx)) = event {
                        monitor.handle_frame(self.epoch.timestamp(rx.at), &rx.frame);
                    }
                }
                _ = tokio::time::sleep_until(until) => break,
            }
        }
        plugin_battery(
            &monitor
                .battery()
                .expect("the battery broadcasts")
                .identity(),
        )
    }

    fn stage(&self, bytes: &[u8]) -> Arc<dyn PackageRead> {
        let path = self.dir.path().join("acme-1.12.acfw");
        std::fs::write(&path, bytes).unwrap();
        Arc::new(FilePackage::open(&path).unwrap())
    }
}

/// Drives `session` until it ends; the phases it went through and its last report.
async fn drive(
    world: &World,
    session: &mut dyn VendorSession,
) -> (Vec<SessionPhase>, SessionReport) {
    let info = world.plugin.plugin.info().clone();
    let epoch = world.epoch;
    let start = epoch.now();
    let mut phases = Vec::new();
    loop {
        assert!(
            epoch.now().saturating_duration_since(start) < Duration::from_secs(600),
            "the session did not end within 10 minutes of virtual time"
        );
        while let Some(frame) = session.poll_transmit(epoch.now()) {
            assert!(
                info.may_send(frame.id()),
                "{frame} is outside the declared identifiers"
            );
            world.gx.send(frame).await.unwrap();
        }
        let report = session.status();
        if phases.last() != Some(&report.phase) {
            phases.push(report.phase);
        }
        if report.phase.is_final() {
            return (phases, report);
        }
        let deadline = session.poll_timeout();
        tokio::select! {
            event = world.gx.recv() => {
                if let Ok(CanEvent::Frame(rx)) = event {
                    if info.wants(rx.frame.id()) {
                        session.handle_frame(epoch.timestamp(rx.at), &rx.frame);
                    }
                }
            }
            _ = async {
                match deadline {
                    Some(t) => tokio::time::sleep_until(epoch.at(t)).await,
                    None => std::future::pending().await,
                }
            } => session.handle_timeout(epoch.now()),
        }
    }
}

fn start(
    world: &World,
    battery: &BatteryIdentity,
    package: Arc<dyn PackageRead>,
) -> Box<dyn VendorSession> {
    world
        .plugin
        .plugin
        .start_session(SessionStart {
            battery: battery.clone(),
            package,
            options: SessionOptions::default(),
            resume: None,
        })
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_template_plugin_updates_the_simulated_acme_bms() {
    let world = World::new();
    let plugin = world.plugin.plugin.clone();
    assert_eq!(plugin.info().vendor_id.as_str(), "com.example.acme");

    let battery = world.listen(Duration::from_secs(2)).await;
    assert_eq!(
        plugin.match_battery(&battery).unwrap(),
        BatteryMatch::Updatable
    );
    let before = plugin.decode_version(&battery.raw_35f()[2..4]).unwrap();
    assert_eq!(before.display, "v1.11");

    let pkg = build(&PackageSpec::new(PRODUCT, [1, 12], 100 * 1024, 42));
    let file = world.stage(&pkg);
    let summary = plugin.inspect_package(file.clone()).unwrap();
    assert_eq!(summary.version.display, "v1.12");
    assert_eq!(summary.image_size, pkg.len() as u64);

    let mut session = start(&world, &battery, file);
    let (phases, last) = drive(&world, session.as_mut()).await;
    assert_eq!(last.phase, Done, "{last:?}");
    assert_eq!(
        phases,
        [Transferring, Installing, Restarting, Verifying, Done]
    );
    assert_eq!(last.bytes_done, pkg.len() as u64);

    let status = world.bms.status();
    assert_eq!(status.stage, Stage::Running);
    assert_eq!(status.running_version, [1, 12]);
    assert_eq!(status.active_slot, SlotId::B);
    assert_eq!(
        world.bms.slot_package(SlotId::B),
        pkg,
        "the package, byte for byte"
    );
    // The battery broadcasts its new version, as the GX and the portal will show it.
    let after = world.listen(Duration::from_secs(2)).await;
    let shown = plugin.decode_version(&after.raw_35f()[2..4]).unwrap();
    assert_eq!(shown.display, "v1.12");
}

#[tokio::test(start_paused = true)]
async fn a_firmware_that_does_not_start_fails_by_name_and_the_old_one_runs() {
    let world = World::new();
    let battery = world.listen(Duration::from_secs(2)).await;
    world.bms.inject(Fault::FailNextBoot);
    let pkg = build(&PackageSpec::new(PRODUCT, [1, 12], 20 * 1024, 7));
    let mut session = start(&world, &battery, world.stage(&pkg));
    let (phases, last) = drive(&world, session.as_mut()).await;
    assert_eq!(phases.last(), Some(&Failed));
    assert_eq!(
        last.failure.as_ref().map(|f| f.code),
        Some(ErrorCode::VERSION_MISMATCH)
    );
    let status = world.bms.status();
    assert_eq!(
        (status.running_version, status.active_slot),
        ([1, 11], SlotId::A)
    );
    let active = world.bms.slot_package(SlotId::A);
    assert_eq!(
        verify(&active).unwrap().version,
        [1, 11],
        "a complete old firmware"
    );
}
