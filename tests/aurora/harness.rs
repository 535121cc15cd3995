//! A THIN TEST HARNESS standing in for the engine's stage-2 driver: it loads the built
//! aurora library through the allowlist and drives one session of it over a simulated
//! bus node in virtual time. It enforces the plugin's declared identifiers and nothing
//! else: no safety gates, no bus-load budget, no watchdogs, no journal. Those belong to
//! the engine's driver, which replaces this loop in its own end-to-end tests.
//!
//! Shared by the end-to-end tests and the `aurora_transfer` example, which each use a part.
#![allow(dead_code)]

use aurora_sim::{AuroraBms, AuroraConfig, AuroraHandle};
use bmsfw_can::CanEvent;
use bmsfw_core::plugin::{
    Allowlist, FilePackage, LoadedPlugin, PackageRead, PluginLoader, SessionPhase, SessionReport,
    SessionStart, Sha256Digest, VendorSession, plugin_battery,
};
use bmsfw_core::telemetry::BmsCanMonitor;
use bmsfw_plugin_api::{BatteryIdentity, CanFrame, SessionOptions, Timestamp};
use bmsfw_sim::battery::{BatteryConfig, Epoch, IdentityConfig};
use bmsfw_sim::bus::{SimBus, SimNode};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

/// The product of the simulated battery.
pub const PRODUCT: u16 = 0xA520;

/// The aurora library copied into a plugin directory, approved by an allowlist written
/// from its SHA-256, and loaded.
pub fn load_aurora(dir: &Path) -> LoadedPlugin {
    let library = dir.join("libbmsfw_vendor_aurora.so");
    std::fs::copy(bmsfw_test_fixtures::vendor_library("aurora"), &library).unwrap();
    let sha256 = Sha256Digest::of(&std::fs::read(&library).unwrap()).to_string();
    let toml = bmsfw_test_fixtures::Approval {
        vendor_id: "com.aurora-energy.powercore",
        file: "libbmsfw_vendor_aurora.so",
        sha256: &sha256,
        versions: ">=1.0.0, <2.0.0",
        firmware: ("2.0", "9.99"),
        manufacturer: "AURORA",
        product_codes: &[0xA510, 0xA520, 0xA530],
    }
    .to_toml();
    let allowlist = Allowlist::parse(Path::new("aurora-allowlist.toml"), &toml).unwrap();
    PluginLoader::new(allowlist).load_file(&library).unwrap()
}

/// A BMS-Can battery of product [`PRODUCT`] running `firmware`.
pub fn battery_config(firmware: [u8; 2]) -> BatteryConfig {
    BatteryConfig::new(IdentityConfig {
        manufacturer: "AURORA".into(),
        bms_name: "PowerCore 10".into(),
        product_code: PRODUCT,
        firmware,
        capacity_ah: 200,
        product_info_tail: None,
        serial: Some("AUR10-000123".into()),
        product_name: None,
    })
}

/// One simulated bus with an aurora BMS and the GX's node; a staging directory.
pub struct World {
    pub bus: SimBus,
    pub bms: AuroraHandle,
    pub gx: SimNode,
    pub epoch: Epoch,
    pub plugin: LoadedPlugin,
    pub dir: TempDir,
}

impl World {
    /// The world with an aurora BMS built from `config`, on a paused Tokio runtime.
    pub fn new(config: AuroraConfig) -> World {
        let dir = tempfile::tempdir().unwrap();
        let plugin = load_aurora(dir.path());
        let bus = SimBus::new("can0", 500_000);
        let epoch = Epoch::new(bus.epoch());
        let model = AuroraBms::new(config, battery_config([4, 15]), epoch.now()).unwrap();
        let (bms, _task) =
            AuroraHandle::spawn("powercore", model, epoch, Arc::new(bus.attach("powercore")));
        let gx = bus.attach("gx");
        World {
            bus,
            bms,
            gx,
            epoch,
            plugin,
            dir,
        }
    }

    /// The default BMS: product [`PRODUCT`], firmware v4.15, bootloader v2.3.
    pub fn standard() -> World {
        World::new(AuroraConfig::new(PRODUCT, [4, 15]))
    }

    /// Writes `bytes` as a staged package file.
    pub fn stage(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Listens to the telemetry for `time` and returns the battery as plugins see it.
    pub async fn listen(&self, time: Duration) -> (BatteryIdentity, Vec<(Timestamp, CanFrame)>) {
        let mut monitor = BmsCanMonitor::new("can0");
        let mut frames = Vec::new();
        let until = tokio::time::Instant::now() + time;
        loop {
            tokio::select! {
                event = self.gx.recv() => {
                    if let Ok(CanEvent::Frame(rx)) = event {
                        let at = self.epoch.timestamp(rx.at);
                        monitor.handle_frame(at, &rx.frame);
                        frames.push((at, rx.frame));
                    }
                }
                _ = tokio::time::sleep_until(until) => break,
            }
        }
        let identity = monitor
            .battery()
            .expect("the battery broadcasts")
            .identity();
        (plugin_battery(&identity), frames)
    }

    /// Starts a session of the loaded plugin for `battery` with the package at `path`.
    pub fn start(&self, battery: &BatteryIdentity, path: &Path) -> Box<dyn VendorSession> {
        let package: Arc<dyn PackageRead> = Arc::new(FilePackage::open(path).unwrap());
        self.plugin
            .plugin
            .start_session(SessionStart {
                battery: battery.clone(),
                package,
                options: SessionOptions::default(),
                resume: None,
            })
            .unwrap()
    }
}

/// What a driven session did.
pub struct Run {
    /// Its last report.
    pub last: SessionReport,
    /// Each phase it entered, with the time.
    pub phases: Vec<(Timestamp, SessionPhase)>,
    /// The bytes done it reported, each change once, with the time.
    pub progress: Vec<(Timestamp, u64)>,
    /// Every BMS-Can frame (identifiers below 0x400) the GX heard, with its time.
    pub telemetry: Vec<(Timestamp, CanFrame)>,
    /// Frames the session sent.
    pub sent: u64,
}

impl Run {
    /// The phases in order, without times.
    pub fn phase_names(&self) -> Vec<SessionPhase> {
        self.phases.iter().map(|(_, p)| *p).collect()
    }

    /// When the session entered `phase`.
    pub fn entered(&self, phase: SessionPhase) -> Option<Timestamp> {
        self.phases
            .iter()
            .find(|(_, p)| *p == phase)
            .map(|(t, _)| *t)
    }

    /// Times of the telemetry frames with identifier `id` in `[from, to)`.
    pub fn times_of(&self, id: u32, from: Timestamp, to: Timestamp) -> Vec<Timestamp> {
        self.telemetry
            .iter()
            .filter(|(t, f)| f.id().raw() == id && *t >= from && *t < to)
            .map(|(t, _)| *t)
            .collect()
    }
}

/// Drives `session` on the GX's node until it ends; `hook` sees every report (with the
/// time) and may act on the world (cut power, inject faults).
pub async fn drive(
    world: &World,
    session: &mut dyn VendorSession,
    mut hook: impl FnMut(&SessionReport, Timestamp),
) -> Run {
    let info = world.plugin.plugin.info().clone();
    let epoch = world.epoch;
    let start = epoch.now();
    let mut run = Run {
        last: session.status(),
        phases: Vec::new(),
        progress: Vec::new(),
        telemetry: Vec::new(),
        sent: 0,
    };
    loop {
        let now = epoch.now();
        assert!(
            now.saturating_duration_since(start) < Duration::from_secs(3600),
            "the session did not end within an hour of virtual time"
        );
        while let Some(frame) = session.poll_transmit(epoch.now()) {
            assert!(
                info.may_send(frame.id()),
                "the plugin sent {frame} outside its declared identifiers"
            );
            world.gx.send(frame).await.unwrap();
            run.sent += 1;
        }
        let report = session.status();
        let now = epoch.now();
        if run.phases.last().map(|(_, p)| *p) != Some(report.phase) {
            run.phases.push((now, report.phase));
        }
        if run.progress.last().map(|(_, b)| *b) != Some(report.bytes_done) {
            run.progress.push((now, report.bytes_done));
        }
        hook(&report, now);
        let finished = report.phase.is_final();
        run.last = report;
        if finished {
            return run;
        }
        let deadline = session.poll_timeout();
        tokio::select! {
            event = world.gx.recv() => {
                if let Ok(CanEvent::Frame(rx)) = event {
                    let at = epoch.timestamp(rx.at);
                    if rx.frame.id().raw() < 0x400 {
                        run.telemetry.push((at, rx.frame));
                    }
                    if info.wants(rx.frame.id()) {
                        session.handle_frame(at, &rx.frame);
                    }
                }
            }
            _ = sleep_until(epoch, deadline) => {
                session.handle_timeout(epoch.now());
            }
        }
    }
}

async fn sleep_until(epoch: Epoch, deadline: Option<Timestamp>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(epoch.at(t)).await,
        None => std::future::pending().await,
    }
}
