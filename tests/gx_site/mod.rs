//! An Aurora site for the end-to-end tests: the simulated bus at 500 kbit/s, the simulated
//! Aurora PowerCore BMS (telemetry, UDS bootloader, two slots), the REAL Aurora plugin
//! library loaded through an allowlist, and a GX engine on a state directory that
//! survives the engine (so a test can restart the GX).

#![allow(dead_code)]

use aurora_sim::bms::{AuroraBms, AuroraConfig};
use aurora_sim::package::{PackageSpec, build};
use aurora_sim::{AuroraHandle, AuroraStatus};
use bmsfw_can::CanInterface;
use bmsfw_core::dotted_version::DottedVersion;
use bmsfw_core::engine::{Engine, EngineConfig};
use bmsfw_core::gates::SiteStatus;
use bmsfw_core::job::{JobId, JobState};
use bmsfw_core::plugin::{Allowlist, LoadedPlugin, PluginLoader, Sha256Digest};
use bmsfw_core::staging::UploadAnnouncement;
use bmsfw_core::vrm::{Acknowledgements, UpdateOptions, UpdateRequest, VrmAccess, VrmPortalMode};
use bmsfw_sim::battery::{BatteryConfig, Epoch, IdentityConfig};
use bmsfw_sim::bus::{NodeId, SimBus};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[path = "../engine_steps/mod.rs"]
mod steps;
#[allow(unused_imports)]
pub use steps::{job, settle, states, upload, wait_end};

/// Waits (virtual time) until the engine hears the battery communicating.
pub async fn wait_for_battery(engine: &Engine) {
    steps::wait_for_serial(engine, SERIAL).await;
}

pub const SERIAL: &str = "AUR10-240117";
pub const PRODUCT: u16 = 0xA520;
pub const VENDOR_ID: &str = "com.aurora-energy.powercore";

/// The Aurora plugin library, built for this test profile.
pub fn aurora_library() -> std::path::PathBuf {
    bmsfw_test_fixtures::vendor_library("aurora")
}

/// The allowlist entry approving the Aurora library for the PowerCore 10, firmware
/// `from` to `to`.
pub fn allowlist(from: &str, to: &str) -> Allowlist {
    let library = aurora_library();
    let sha256 = Sha256Digest::of(&std::fs::read(&library).unwrap()).to_string();
    let file = library.file_name().unwrap().to_string_lossy();
    let text = bmsfw_test_fixtures::Approval {
        vendor_id: VENDOR_ID,
        file: &file,
        sha256: &sha256,
        versions: "^1.0",
        firmware: (from, to),
        manufacturer: "AURORA",
        product_codes: &[0xA510, 0xA520, 0xA530],
    }
    .to_toml();
    Allowlist::parse(Path::new("allowlist.toml"), &text).unwrap()
}

/// A package for the PowerCore 10: `version`, `image_len` bytes drawn from `seed`.
pub fn package(version: [u8; 2], image_len: usize, seed: u64) -> Vec<u8> {
    build(&PackageSpec::new(PRODUCT, version, image_len, seed))
}

/// The request for `package` (chunks of 16 KiB), every acknowledgement given.
pub fn request(package: &[u8]) -> UpdateRequest {
    UpdateRequest {
        battery_serial: SERIAL.into(),
        package: UploadAnnouncement::new(
            "powercore10.bin".into(),
            package.len() as u64,
            16 * 1024,
            Sha256Digest::of(package),
        )
        .unwrap(),
        acknowledgements: Acknowledgements::all(),
        options: UpdateOptions::default(),
    }
}

/// Everything of a site but the GX.
pub struct Site {
    pub bus: SimBus,
    pub bms: AuroraHandle,
    pub dir: tempfile::TempDir,
    pub allowlist: Allowlist,
    pub vrm: VrmAccess,
    pub grid: SiteStatus,
    pub gx_firmware: DottedVersion,
    _bms_task: tokio::task::JoinHandle<()>,
}

impl Site {
    /// A PowerCore 10 at 66 % SOC running `firmware`, on a 500 kbit/s bus.
    pub fn new(firmware: [u8; 2]) -> Site {
        Site::on(SimBus::new("can0", 500_000), firmware)
    }

    /// The same on `bus`.
    pub fn on(bus: SimBus, firmware: [u8; 2]) -> Site {
        Site::with_bms(bus, AuroraConfig::new(PRODUCT, firmware))
    }

    /// A PowerCore 10 at 66 % SOC on `bus`, its BMS built from `bms` (firmware, timing).
    pub fn with_bms(bus: SimBus, bms: AuroraConfig) -> Site {
        let firmware = bms.firmware;
        let epoch = Epoch::starting_now();
        let mut battery = BatteryConfig::new(IdentityConfig {
            manufacturer: "AURORA".into(),
            bms_name: "PowerCore 10".into(),
            product_code: PRODUCT,
            firmware,
            capacity_ah: 200,
            product_info_tail: None,
            serial: Some(SERIAL.into()),
            product_name: None,
        });
        battery.initial_soc = 66.0;
        let model = AuroraBms::new(bms, battery, epoch.now()).unwrap();
        let (bms, task) =
            AuroraHandle::spawn("powercore", model, epoch, Arc::new(bus.attach("bms")));
        Site {
            bus,
            bms,
            dir: tempfile::tempdir().unwrap(),
            allowlist: allowlist("2.0", "9.99"),
            vrm: VrmAccess::new(VrmPortalMode::Full),
            grid: SiteStatus::default(),
            gx_firmware: DottedVersion::from(vec![3, 70]),
            _bms_task: tokio::spawn(async move {
                let _ = task.await;
            }),
        }
    }

    /// The Aurora plugin, loaded through the site's allowlist.
    pub fn plugin(&self) -> LoadedPlugin {
        PluginLoader::new(self.allowlist.clone())
            .load_file(&aurora_library())
            .unwrap_or_else(|r| panic!("{r}"))
    }

    /// The engine's settings on the site's state directory.
    pub fn config(&self) -> EngineConfig {
        EngineConfig::in_dir(self.dir.path().join("state"), self.gx_firmware.clone())
    }

    /// A GX with the engine started on the site's state directory; returns the id of its
    /// node on the bus too.
    pub fn gx_with(&self, config: EngineConfig) -> (Engine, NodeId) {
        let node = self.bus.attach("gx");
        let id = node.id();
        let engine = Engine::builder(config)
            .plugin(self.plugin())
            .bus(Arc::new(node) as Arc<dyn CanInterface>)
            .vrm_access(self.vrm.clone())
            .site_status(self.grid.clone())
            .start()
            .unwrap();
        (engine, id)
    }

    /// A GX with the default settings.
    pub fn gx(&self) -> Engine {
        self.gx_with(self.config()).0
    }

    pub fn status(&self) -> AuroraStatus {
        self.bms.status()
    }
}

/// Waits until `job` is in `state` (polled every millisecond of virtual time).
pub async fn wait_state(engine: &Engine, id: JobId, state: JobState, limit: Duration) {
    let until = tokio::time::Instant::now() + limit;
    loop {
        let r = job(engine, id).await;
        if r.state() == state {
            return;
        }
        assert!(
            !r.state().is_terminal() && tokio::time::Instant::now() < until,
            "job {id} never reached {state:?}: {r:#?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
