//! A Coral site for the end-to-end tests: the simulated bus at 500 kbit/s, the simulated
//! ReefStack master with its modules, the REAL Coral plugin library loaded through an
//! allowlist, a GX engine on a state directory that survives the engine (so a test can
//! restart the GX), and a spy on the bus that counts every frame.

#![allow(dead_code)]

use bmsfw_can::{CanEvent, CanFrame, CanInterface};
use bmsfw_core::dotted_version::DottedVersion;
use bmsfw_core::engine::{Engine, EngineConfig};
use bmsfw_core::gates::SiteStatus;
use bmsfw_core::plugin::{Allowlist, LoadedPlugin, PluginLoader, Sha256Digest};
use bmsfw_core::staging::UploadAnnouncement;
use bmsfw_core::vrm::{Acknowledgements, UpdateOptions, UpdateRequest, VrmAccess, VrmPortalMode};
use bmsfw_sim::battery::{BatteryConfig, Epoch, IdentityConfig};
use bmsfw_sim::bus::{NodeId, SimBus};
use coral_sim::bundle::{BundleSpec, build};
use coral_sim::{CoralBms, CoralConfig, CoralHandle, CoralStatus};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

#[path = "../engine_steps/mod.rs"]
mod steps;
#[allow(unused_imports)]
pub use steps::{job, settle, states, upload, wait_end};

/// Waits (virtual time) until the engine hears the battery communicating.
pub async fn wait_for_battery(engine: &Engine) {
    steps::wait_for_serial(engine, SERIAL).await;
}

pub const SERIAL: &str = "RS48-240611";
pub const PRODUCT: u16 = 0xC0A1;
pub const VENDOR_ID: &str = "com.coral-cells.reefstack";
/// The master's firmware before the update: v1.0F (build 03).
pub const OLD: [u8; 3] = [1, 0x0F, 0x03];
/// The bundle's version: v1.10 (build FF).
pub const NEW: [u8; 3] = [1, 0x10, 0xFF];
/// The modules' firmware before the update.
pub const MODULE_OLD: [u8; 3] = [2, 0x03, 0x01];
/// The bundle's module image version.
pub const MODULE_NEW: [u8; 3] = [2, 0x04, 0x01];

/// The command identifier of the protocol.
pub const COMMAND_ID: u32 = 0x1B00_C0A1;

/// Whether `id` is one of the GX's Coral frames (a command or a data frame).
pub fn is_coral_gx_frame(id: u32) -> bool {
    id == COMMAND_ID || id >> 20 == 0x1C0
}

/// The sequence number of a data frame.
pub fn data_sequence(frame: &CanFrame) -> Option<u32> {
    let id = frame.id();
    (id.is_extended() && id.raw() >> 20 == 0x1C0).then_some(id.raw() & 0xF_FFFF)
}

/// The Coral plugin library, built for this test profile.
pub fn coral_library() -> std::path::PathBuf {
    bmsfw_test_fixtures::vendor_library("coral")
}

/// The allowlist entry approving the Coral library for the ReefStack family, master
/// firmware v1.04 to v9.FF.
pub fn allowlist() -> Allowlist {
    let library = coral_library();
    let sha256 = Sha256Digest::of(&std::fs::read(&library).unwrap()).to_string();
    let file = library.file_name().unwrap().to_string_lossy();
    let text = bmsfw_test_fixtures::Approval {
        vendor_id: VENDOR_ID,
        file: &file,
        sha256: &sha256,
        versions: "^1.0",
        firmware: ("1.4", "9.255"),
        manufacturer: "CORAL",
        product_codes: &[0xC0A1, 0xC0A2],
    }
    .to_toml();
    Allowlist::parse(Path::new("allowlist.toml"), &text).unwrap()
}

/// A bundle for the ReefStack 48 of v1.10 (build FF): a master image of `master_len`
/// bytes for hardware revision 2 and module images of `module_len` bytes for revisions 1
/// and 3, drawn from `seed`.
pub fn bundle(master_len: usize, module_len: usize, seed: u64) -> Vec<u8> {
    build(
        &BundleSpec::new(PRODUCT, NEW, 2, master_len, seed).with_modules(
            MODULE_NEW,
            &[1, 3],
            module_len,
        ),
    )
}

/// The request for `bundle` (chunks of 16 KiB), every acknowledgement given.
pub fn request(bundle: &[u8]) -> UpdateRequest {
    UpdateRequest {
        battery_serial: SERIAL.into(),
        package: UploadAnnouncement::new(
            "reefstack48-1.10.crb".into(),
            bundle.len() as u64,
            16 * 1024,
            Sha256Digest::of(bundle),
        )
        .unwrap(),
        acknowledgements: Acknowledgements::all(),
        options: UpdateOptions::default(),
    }
}

/// Every frame on the bus, with the end of its last bit.
pub type Spied = Arc<Mutex<Vec<(CanFrame, Instant)>>>;

/// Everything of a site but the GX.
pub struct Site {
    pub bus: SimBus,
    pub bms: CoralHandle,
    pub dir: tempfile::TempDir,
    pub allowlist: Allowlist,
    pub vrm: VrmAccess,
    pub grid: SiteStatus,
    pub gx_firmware: DottedVersion,
    pub spied: Spied,
    _tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The BMS-Can side of a ReefStack 48 of `modules` modules.
pub fn battery_config(modules: u16) -> BatteryConfig {
    let mut battery = BatteryConfig::new(IdentityConfig {
        manufacturer: "CORAL".into(),
        bms_name: "ReefStack 48".into(),
        product_code: PRODUCT,
        firmware: [OLD[1], OLD[0]],
        capacity_ah: 100 * modules,
        product_info_tail: None,
        serial: Some(SERIAL.into()),
        product_name: None,
    });
    battery.modules = modules;
    battery.initial_soc = 68.0;
    battery
}

impl Site {
    /// A ReefStack 48 at 68 % SOC with `modules` modules, on a 500 kbit/s bus.
    pub fn new(modules: usize) -> Site {
        Site::with(SimBus::new("can0", 500_000), |_| {}, modules)
    }

    /// The same on `bus`, its master's configuration adjusted by `configure`.
    pub fn with(bus: SimBus, configure: impl FnOnce(&mut CoralConfig), modules: usize) -> Site {
        let epoch = Epoch::starting_now();
        let mut config = CoralConfig::new(PRODUCT, OLD, modules);
        for m in &mut config.modules {
            m.firmware = MODULE_OLD;
        }
        configure(&mut config);
        let model = CoralBms::new(config, battery_config(modules as u16), epoch.now()).unwrap();
        let (bms, task) =
            CoralHandle::spawn("reefstack", model, epoch, Arc::new(bus.attach("bms")));
        let spy = bus.attach("spy");
        let spied: Spied = Arc::default();
        let seen = spied.clone();
        let spy_task = tokio::spawn(async move {
            while let Ok(event) = spy.recv().await {
                if let CanEvent::Frame(rx) = event {
                    seen.lock().unwrap().push((rx.frame, rx.at));
                }
            }
        });
        Site {
            bus,
            bms,
            dir: tempfile::tempdir().unwrap(),
            allowlist: allowlist(),
            vrm: VrmAccess::new(VrmPortalMode::Full),
            grid: SiteStatus::default(),
            gx_firmware: DottedVersion::from(vec![3, 70]),
            spied,
            _tasks: vec![
                tokio::spawn(async move {
                    let _ = task.await;
                }),
                spy_task,
            ],
        }
    }

    /// The Coral plugin, loaded through the site's allowlist.
    pub fn plugin(&self) -> LoadedPlugin {
        PluginLoader::new(self.allowlist.clone())
            .load_file(&coral_library())
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

    /// The master's state.
    pub fn status(&self) -> CoralStatus {
        self.bms.status()
    }

    /// The frames the GX sent on the protocol's identifiers so far.
    pub fn coral_frames_from_gx(&self) -> Vec<CanFrame> {
        self.spied
            .lock()
            .unwrap()
            .iter()
            .filter(|(f, _)| f.id().is_extended() && is_coral_gx_frame(f.id().raw()))
            .map(|(f, _)| *f)
            .collect()
    }

    /// How many frames the spy has seen.
    pub fn frames_seen(&self) -> usize {
        self.spied.lock().unwrap().len()
    }
}
