//! A Boreal site for the end-to-end tests and the bench: the simulated bus at 500 kbit/s,
//! a simulated Taiga bank (several CANopen nodes, the lowest speaking BMS-Can), the REAL
//! Boreal plugin library loaded through an allowlist, and a GX engine on a state
//! directory that survives the engine.

#![allow(dead_code)]

use bmsfw_can::{CanEvent, CanInterface};
use bmsfw_core::dotted_version::DottedVersion;
use bmsfw_core::engine::{Engine, EngineConfig};
use bmsfw_core::gates::SiteStatus;
use bmsfw_core::plugin::{
    Allowlist, FilePackage, LoadedPlugin, PackageRead, PluginLoader, SessionPhase, SessionReport,
    SessionStart, Sha256Digest, VendorSession, plugin_battery,
};
use bmsfw_core::staging::UploadAnnouncement;
use bmsfw_core::telemetry::BmsCanMonitor;
use bmsfw_core::vrm::{Acknowledgements, UpdateOptions, UpdateRequest, VrmAccess, VrmPortalMode};
use bmsfw_plugin_api::{BatteryIdentity, CanFrame, SessionOptions, Timestamp};
use bmsfw_sim::battery::{BatteryConfig, Epoch, IdentityConfig};
use bmsfw_sim::bus::{SimBus, SimNode};
use boreal_sim::package::{PackageSpec, build};
use boreal_sim::{BankConfig, BankHandle, BorealBank, NodeStatus};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[path = "../engine_steps/mod.rs"]
mod steps;
#[allow(unused_imports)]
pub use steps::{job, settle, states, upload, wait_end};

/// Waits (virtual time) until the engine hears the bank communicating.
pub async fn wait_for_battery(engine: &Engine) {
    steps::wait_for_serial(engine, SERIAL).await;
}

pub const SERIAL: &str = "TG10-2407-001";
pub const PRODUCT: u16 = 0xB210;
pub const VENDOR_ID: &str = "com.boreal-batteries.taiga";
pub const OLD: [u8; 2] = [0x02, 0x10];
pub const NEW: [u8; 2] = [0x02, 0x15];

/// The Boreal plugin library, built for this test profile.
pub fn boreal_library() -> std::path::PathBuf {
    bmsfw_test_fixtures::vendor_library("boreal")
}

/// The allowlist entry approving the Boreal library for the Taiga family, firmware 2.0
/// to 9.99.
pub fn allowlist() -> Allowlist {
    let library = boreal_library();
    let sha256 = Sha256Digest::of(&std::fs::read(&library).unwrap()).to_string();
    let file = library.file_name().unwrap().to_string_lossy();
    let text = bmsfw_test_fixtures::Approval {
        vendor_id: VENDOR_ID,
        file: &file,
        sha256: &sha256,
        versions: "^1.0",
        firmware: ("2.0", "9.99"),
        manufacturer: "BOREAL",
        product_codes: &[0xB205, 0xB210],
    }
    .to_toml();
    Allowlist::parse(Path::new("allowlist.toml"), &text).unwrap()
}

/// The Boreal plugin, loaded through the allowlist.
pub fn plugin() -> LoadedPlugin {
    PluginLoader::new(allowlist())
        .load_file(&boreal_library())
        .unwrap_or_else(|r| panic!("{r}"))
}

/// A Taiga 10 package: `version`, an image of `image_len` bytes drawn from `seed`.
pub fn package(version: [u8; 2], image_len: usize, seed: u64) -> Vec<u8> {
    build(&PackageSpec::new(PRODUCT, version, image_len, seed)).0
}

/// The request for `package` (chunks of 16 KiB), every acknowledgement given.
pub fn request(package: &[u8]) -> UpdateRequest {
    UpdateRequest {
        battery_serial: SERIAL.into(),
        package: UploadAnnouncement::new(
            "taiga10-2.15.hex".into(),
            package.len() as u64,
            16 * 1024,
            Sha256Digest::of(package),
        )
        .unwrap(),
        acknowledgements: Acknowledgements::all(),
        options: UpdateOptions::default(),
    }
}

/// The bank's BMS-Can identity.
pub fn battery_config() -> BatteryConfig {
    let mut battery = BatteryConfig::new(IdentityConfig {
        manufacturer: "BOREAL".into(),
        bms_name: "Taiga 10".into(),
        product_code: PRODUCT,
        firmware: OLD,
        capacity_ah: 400,
        product_info_tail: None,
        serial: Some(SERIAL.into()),
        product_name: None,
    });
    battery.initial_soc = 68.0;
    battery
}

/// A bank whose nodes `(id, firmware)` run on `iface`.
pub fn spawn_bank(
    nodes: &[(u8, [u8; 2])],
    epoch: Epoch,
    iface: Arc<dyn CanInterface>,
) -> BankHandle {
    let mut config = BankConfig::new(PRODUCT, OLD, 0);
    config.nodes = nodes
        .iter()
        .map(|&(id, firmware)| boreal_sim::NodeConfig {
            id,
            firmware,
            bootloader: [0x01, 0x30],
            caps: boreal_sim::protocol::CAPS_CURRENT,
        })
        .collect();
    let model = BorealBank::new(config, battery_config(), epoch.now()).unwrap();
    let (bank, task) = BankHandle::spawn("taiga", model, epoch, iface);
    tokio::spawn(async move {
        let _ = task.await;
    });
    bank
}

/// Everything of a site but the GX.
pub struct Site {
    pub bus: SimBus,
    pub bank: BankHandle,
    pub epoch: Epoch,
    pub dir: tempfile::TempDir,
    pub vrm: VrmAccess,
    pub grid: SiteStatus,
}

impl Site {
    /// A bank of nodes `(id, firmware)` on a 500 kbit/s bus.
    pub fn new(nodes: &[(u8, [u8; 2])]) -> Site {
        let bus = SimBus::new("can0", 500_000);
        let epoch = Epoch::new(bus.epoch());
        let bank = spawn_bank(nodes, epoch, Arc::new(bus.attach("taiga")));
        Site {
            bus,
            bank,
            epoch,
            dir: tempfile::tempdir().unwrap(),
            vrm: VrmAccess::new(VrmPortalMode::Full),
            grid: SiteStatus::default(),
        }
    }

    /// A GX with the engine started on the site's state directory.
    pub fn gx(&self) -> Engine {
        let config = EngineConfig::in_dir(
            self.dir.path().join("state"),
            DottedVersion::from(vec![3, 70]),
        );
        Engine::builder(config)
            .plugin(plugin())
            .bus(Arc::new(self.bus.attach("gx")) as Arc<dyn CanInterface>)
            .vrm_access(self.vrm.clone())
            .site_status(self.grid.clone())
            .start()
            .unwrap()
    }

    pub fn nodes(&self) -> Vec<NodeStatus> {
        self.bank.status()
    }

    /// The GX's own node on the bus, listening to everything.
    pub fn listener(&self) -> SimNode {
        self.bus.attach("listener")
    }
}

/// Listens to the bus for `time` and returns the bank as plugins see it.
pub async fn listen(node: &SimNode, epoch: Epoch, time: Duration) -> BatteryIdentity {
    let mut monitor = BmsCanMonitor::new("can0");
    let until = tokio::time::Instant::now() + time;
    loop {
        tokio::select! {
            event = node.recv() => {
                if let Ok(CanEvent::Frame(rx)) = event {
                    monitor.handle_frame(epoch.timestamp(rx.at), &rx.frame);
                }
            }
            _ = tokio::time::sleep_until(until) => break,
        }
    }
    plugin_battery(&monitor.battery().expect("the bank broadcasts").identity())
}

/// A session of the loaded plugin for `battery`, with `package` and `options`.
pub fn start_session(
    plugin: &LoadedPlugin,
    battery: &BatteryIdentity,
    dir: &Path,
    package: &[u8],
    options: SessionOptions,
) -> Box<dyn VendorSession> {
    let path = dir.join("taiga10.hex");
    std::fs::write(&path, package).unwrap();
    let package: Arc<dyn PackageRead> = Arc::new(FilePackage::open(&path).unwrap());
    plugin
        .plugin
        .start_session(SessionStart {
            battery: battery.clone(),
            package,
            options,
            resume: None,
        })
        .unwrap_or_else(|f| panic!("{f}"))
}

/// Drives `session` on `node` until it ends, sending only what the plugin declared, with
/// no engine around it (no gates, budget or watchdogs): the session's phases and its last
/// report.
pub async fn drive(
    plugin: &LoadedPlugin,
    node: &SimNode,
    epoch: Epoch,
    session: &mut dyn VendorSession,
) -> (Vec<SessionPhase>, SessionReport) {
    let info = plugin.plugin.info().clone();
    let mut phases: Vec<SessionPhase> = Vec::new();
    let start = epoch.now();
    loop {
        assert!(
            epoch.now().saturating_duration_since(start) < Duration::from_secs(600),
            "the session did not end"
        );
        while let Some(frame) = session.poll_transmit(epoch.now()) {
            assert!(info.may_send(frame.id()), "{frame} is not declared");
            node.send(frame).await.unwrap();
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
            event = node.recv() => {
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
            } => {
                session.handle_timeout(epoch.now());
            }
        }
    }
}

/// Every frame `node` hears for `time`, with its time.
pub async fn record(node: &SimNode, epoch: Epoch, time: Duration) -> Vec<(Timestamp, CanFrame)> {
    let mut out = Vec::new();
    let until = tokio::time::Instant::now() + time;
    loop {
        tokio::select! {
            event = node.recv() => {
                if let Ok(CanEvent::Frame(rx)) = event {
                    out.push((epoch.timestamp(rx.at), rx.frame));
                }
            }
            _ = tokio::time::sleep_until(until) => return out,
        }
    }
}
