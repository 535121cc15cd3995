//! A Coral site for the end-to-end tests: the simulated bus at 500 kbit/s, the simulated
//! ReefStack master with its modules, the REAL Coral plugin library loaded through an
//! allowlist, a GX engine on a state directory that survives the engine (so a test can
//! restart the GX), and a spy on the bus that counts every frame.

#![allow(dead_code)]

use bmsfw_can::{CanEvent, CanFrame, CanInterface};
use bmsfw_core::dotted_version::DottedVersion;
use bmsfw_core::engine::{Engine, EngineConfig};
use bmsfw_core::events::{EventKind, EventRecord};
use bmsfw_core::gates::SiteStatus;
use bmsfw_core::job::{JobId, JobRecord, JobState};
use bmsfw_core::plugin::{Allowlist, LoadedPlugin, PluginLoader, Sha256Digest};
use bmsfw_core::staging::UploadAnnouncement;
use bmsfw_core::vrm::{
    Acknowledgements, EngineRefusal, GxEngine, Presence, UpdateOptions, UpdateRequest, VrmAccess,
    VrmPortalMode,
};
use bmsfw_sim::battery::{BatteryConfig, Epoch, IdentityConfig};
use bmsfw_sim::bus::{NodeId, SimBus};
use coral_sim::bundle::{BundleSpec, build};
use coral_sim::{CoralBms, CoralConfig, CoralHandle, CoralStatus};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

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
    let bytes = std::fs::read(&library).unwrap();
    let text = format!(
        r#"
[[plugin]]
vendor_id = "{VENDOR_ID}"
file = "{file}"
sha256 = "{hash}"
versions = "^1.0"
firmware = {{ from = "1.4", to = "9.255" }}

[[plugin.products]]
manufacturer = "CORAL"
product_codes = [0xC0A1, 0xC0A2]

[plugin.review]
status = "passed"
date = 2025-10-01
by = "integration review"

[plugin.compliance]
status = "passed"
date = 2025-10-03
"#,
        file = library.file_name().unwrap().to_string_lossy(),
        hash = Sha256Digest::of(&bytes),
    );
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

/// Waits (virtual time) until the engine hears the battery communicating.
pub async fn wait_for_battery(engine: &Engine) {
    for _ in 0..200 {
        let batteries = engine.batteries().await;
        if batteries
            .iter()
            .any(|b| b.identity.serial == SERIAL && b.presence == Presence::Communicating)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the engine never heard the battery");
}

/// Requests the update and uploads `bundle`; returns the job once stage 2 started.
pub async fn upload(
    engine: &Engine,
    request: UpdateRequest,
    bundle: &[u8],
) -> Result<JobId, EngineRefusal> {
    let chunk = request.package.chunk_size() as usize;
    let job = engine.request_update(request).await?.job;
    for (i, bytes) in bundle.chunks(chunk).enumerate() {
        engine.accept_chunk(job, i as u32, bytes.to_vec()).await?;
    }
    engine.finish_upload(job).await.map(|_| job)
}

/// Job `job` now.
pub async fn job(engine: &Engine, job: JobId) -> JobRecord {
    engine
        .jobs()
        .await
        .into_iter()
        .find(|r| r.id() == job)
        .unwrap_or_else(|| panic!("no job {job}"))
}

/// The job's record once it has ended.
pub async fn wait_end(engine: &Engine, id: JobId, limit: Duration) -> JobRecord {
    let until = Instant::now() + limit;
    loop {
        let r = job(engine, id).await;
        if r.state().is_terminal() {
            return r;
        }
        assert!(
            Instant::now() < until,
            "job {id} did not end in time: {r:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The states job `id` went through, from the event log.
pub fn states(history: &[EventRecord], id: JobId) -> Vec<JobState> {
    history
        .iter()
        .filter(|e| e.job == id)
        .filter_map(|e| match e.event {
            EventKind::StateChanged { to, .. } => Some(to),
            _ => None,
        })
        .collect()
}

/// Lets a dropped engine's tasks and journal writes finish.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}
