//! A simulated site for the engine's tests: a simulated bus, a BMS-Can battery of the
//! fixture vendor "alpha", the BMS side of the alpha plugin's SPKG transfer protocol, and
//! the real alpha plugin library loaded through an allowlist.
//!
//! The SPKG protocol (tests/fixtures/plugins/common/simple_plugin.rs): data frames
//! `[seq, up to 7 bytes]` on 0x7E0, each acknowledged with `[0x06, seq]` on 0x7E8; `[0xFF]`
//! installs (`[0x06, 0xFF]` when done); `[0x18]` aborts.

#![allow(dead_code)]

use bmsfw_can::{CanEvent, CanFilter, CanFrame, CanId, CanInterface};
use bmsfw_core::dotted_version::DottedVersion;
use bmsfw_core::engine::{Engine, EngineConfig};
use bmsfw_core::job::{JobId, JobRecord};
use bmsfw_core::plugin::{Allowlist, LoadedPlugin, PluginLoader, Sha256Digest};
use bmsfw_core::staging::UploadAnnouncement;
use bmsfw_core::vrm::{
    Acknowledgements, EngineRefusal, GxEngine, UpdateOptions, UpdateRequest, VrmAccess,
    VrmPortalMode,
};
use bmsfw_sim::battery::{BatteryConfig, BatteryHandle, BatteryModel, Epoch, IdentityConfig};
use bmsfw_sim::bus::SimBus;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

pub const SERIAL: &str = "ALPHA0001";
pub const PRODUCT: u16 = 0x0A01;

/// A fixture vendor: its battery's identity, its CAN identifiers, its library.
#[derive(Debug, Clone, Copy)]
pub struct Vendor {
    pub fixture: &'static str,
    pub vendor_id: &'static str,
    pub manufacturer: &'static str,
    pub product: u16,
    /// The plugin sends on `tx`, the BMS answers on `rx`.
    pub tx: u16,
    pub rx: u16,
}

pub const ALPHA: Vendor = Vendor {
    fixture: "alpha",
    vendor_id: "com.example.alpha",
    manufacturer: "ALPHA",
    product: 0x0A01,
    tx: 0x7E0,
    rx: 0x7E8,
};

pub const MISBEHAVE: Vendor = Vendor {
    fixture: "misbehave",
    vendor_id: "com.example.misbehave",
    manufacturer: "MISBEHAV",
    product: 0x0E0B,
    tx: 0x7E2,
    rx: 0x7EA,
};

pub const ROGUE: Vendor = Vendor {
    fixture: "rogue",
    vendor_id: "com.example.rogue",
    manufacturer: "ROGUE",
    product: 0x0E01,
    tx: 0x7E1,
    rx: 0x7E9,
};

/// An SPKG package for the alpha battery: version `major.minor`, `image_len` bytes.
pub fn spkg(major: u8, minor: u8, image_len: usize, seed: u8) -> Vec<u8> {
    spkg_for(PRODUCT, major, minor, image_len, seed)
}

/// An SPKG package for `product`.
pub fn spkg_for(product: u16, major: u8, minor: u8, image_len: usize, seed: u8) -> Vec<u8> {
    let mut out = b"SPKG".to_vec();
    out.extend_from_slice(&product.to_le_bytes());
    out.extend_from_slice(&[major, minor]);
    out.extend((0..image_len).map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed)));
    out
}

/// What the alpha BMS does.
#[derive(Debug, Default)]
pub struct BmsControl {
    /// Image bytes received in the current transfer.
    pub received: Vec<u8>,
    /// The version the next install applies.
    pub installs: [u8; 2],
    /// Stop answering after this many data frames (a hung BMS).
    pub hang_after: Option<usize>,
    /// Frames received on 0x7E0, in order.
    pub frames: Vec<CanFrame>,
    /// Aborts received.
    pub aborts: usize,
}

/// Runs the BMS side of SPKG for `vendor` on `node`; on install, the battery reports
/// `installs`.
pub fn spawn_bms(
    vendor: Vendor,
    node: Arc<dyn CanInterface>,
    battery: BatteryHandle,
    control: Arc<Mutex<BmsControl>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let rx = CanId::standard(vendor.tx).unwrap();
        let tx = CanId::standard(vendor.rx).unwrap();
        node.set_filters(&[CanFilter {
            id: rx,
            mask: 0x7FF,
        }])
        .unwrap();
        while let Ok(event) = node.recv().await {
            let CanEvent::Frame(f) = event else { continue };
            let reply = {
                let mut c = control.lock().unwrap();
                c.frames.push(f.frame);
                let data = f.frame.data();
                match data {
                    [0xFF] => {
                        battery.set_firmware_bytes(c.installs);
                        Some(vec![0x06, 0xFF])
                    }
                    [0x18] => {
                        c.aborts += 1;
                        c.received.clear();
                        None
                    }
                    [seq, payload @ ..] => {
                        let data_frames = c.frames.iter().filter(|f| f.data().len() > 1).count();
                        if c.hang_after.is_some_and(|n| data_frames > n) {
                            None
                        } else {
                            c.received.extend_from_slice(payload);
                            Some(vec![0x06, *seq])
                        }
                    }
                    [] => None,
                }
            };
            if let Some(reply) = reply {
                let _ = node.send(CanFrame::new(tx, &reply).unwrap()).await;
            }
        }
    })
}

/// A site: bus, battery, BMS, plugin, state directory.
pub struct Site {
    pub vendor: Vendor,
    pub bus: SimBus,
    pub battery: BatteryHandle,
    pub bms: Arc<Mutex<BmsControl>>,
    pub dir: tempfile::TempDir,
    pub allowlist: Allowlist,
    pub vrm: VrmAccess,
    pub tasks: Vec<JoinHandle<()>>,
}

/// The allowlist approving `vendor`'s library for its product, firmware 1.0 to
/// `firmware_to`.
pub fn allowlist(vendor: Vendor, firmware_to: &str) -> Allowlist {
    let library = bmsfw_test_fixtures::library(vendor.fixture);
    let bytes = std::fs::read(&library).unwrap();
    let text = format!(
        r#"
[[plugin]]
vendor_id = "{vendor_id}"
file = "{file}"
sha256 = "{hash}"
versions = "*"
firmware = {{ from = "1.0", to = "{firmware_to}" }}

[[plugin.products]]
manufacturer = "{manufacturer}"
product_codes = [{product}]

[plugin.review]
status = "passed"
date = 2025-03-14

[plugin.compliance]
status = "passed"
date = 2025-03-20
"#,
        vendor_id = vendor.vendor_id,
        manufacturer = vendor.manufacturer,
        product = vendor.product,
        file = library.file_name().unwrap().to_string_lossy(),
        hash = Sha256Digest::of(&bytes),
    );
    Allowlist::parse(Path::new("allowlist.toml"), &text).unwrap()
}

impl Site {
    /// An alpha site whose battery runs firmware `firmware` at 80 % SOC.
    pub fn new(firmware: [u8; 2]) -> Site {
        Site::build(ALPHA, SimBus::new("can0", 500_000), firmware)
    }

    /// A site of `vendor` on `bus`.
    pub fn build(vendor: Vendor, bus: SimBus, firmware: [u8; 2]) -> Site {
        Site::build_as(vendor, bus, firmware, SERIAL)
    }

    /// A site of `vendor` on `bus` whose battery has serial number `serial`.
    pub fn build_as(vendor: Vendor, bus: SimBus, firmware: [u8; 2], serial: &str) -> Site {
        let epoch = Epoch::starting_now();
        let config = BatteryConfig::new(IdentityConfig {
            manufacturer: vendor.manufacturer.into(),
            bms_name: format!("{}-LFP", vendor.manufacturer),
            product_code: vendor.product,
            firmware,
            capacity_ah: 100,
            product_info_tail: None,
            serial: Some(serial.into()),
            product_name: None,
        });
        let model = BatteryModel::new(config, epoch.now()).unwrap();
        let (battery, battery_task) =
            BatteryHandle::spawn("alpha", model, epoch, Arc::new(bus.attach("battery")));
        let bms = Arc::new(Mutex::new(BmsControl::default()));
        let bms_task = spawn_bms(
            vendor,
            Arc::new(bus.attach("bms")),
            battery.clone(),
            bms.clone(),
        );
        Site {
            allowlist: allowlist(vendor, "1.99"),
            vendor,
            bus,
            battery,
            bms,
            dir: tempfile::tempdir().unwrap(),
            vrm: VrmAccess::new(VrmPortalMode::Full),
            tasks: vec![
                tokio::spawn(async move {
                    let _ = battery_task.await;
                }),
                bms_task,
            ],
        }
    }

    /// Loads fixture `name` through this site's allowlist, its hosts run with `settings`.
    pub fn load_hosted(
        &self,
        name: &str,
        settings: bmsfw_core::plugin::HostSettings,
    ) -> LoadedPlugin {
        PluginLoader::new(self.allowlist.clone())
            .with_isolation(bmsfw_core::plugin::Isolation::Hosted(Arc::new(settings)))
            .load_file(&bmsfw_test_fixtures::library(name))
            .unwrap_or_else(|r| panic!("{r}"))
    }

    /// Loads fixture `name` through this site's allowlist.
    pub fn load(&self, name: &str) -> LoadedPlugin {
        PluginLoader::new(self.allowlist.clone())
            .load_file(&bmsfw_test_fixtures::library(name))
            .unwrap_or_else(|r| panic!("{r}"))
    }

    pub fn config(&self) -> EngineConfig {
        EngineConfig::in_dir(
            self.dir.path().join("state"),
            DottedVersion::from(vec![3, 70]),
        )
    }

    /// A GX engine on this site's bus with the vendor's plugin.
    pub fn engine(&self) -> Engine {
        self.engine_with(self.config())
    }

    pub fn engine_with(&self, config: EngineConfig) -> Engine {
        Engine::builder(config)
            .plugin(self.load(self.vendor.fixture))
            .bus(Arc::new(self.bus.attach("gx")))
            .vrm_access(self.vrm.clone())
            .start()
            .unwrap()
    }
}

/// The request for `package`, every acknowledgement given.
pub fn request(package: &[u8], chunk: u32) -> UpdateRequest {
    request_for(SERIAL, package, chunk)
}

/// The request for `package` to the battery with serial number `serial`.
pub fn request_for(serial: &str, package: &[u8], chunk: u32) -> UpdateRequest {
    UpdateRequest {
        battery_serial: serial.into(),
        package: UploadAnnouncement::new(
            "fw.spkg".into(),
            package.len() as u64,
            chunk,
            Sha256Digest::of(package),
        )
        .unwrap(),
        acknowledgements: Acknowledgements::all(),
        options: UpdateOptions::default(),
    }
}

/// Waits (virtual time) until the engine hears the battery.
pub async fn wait_for_battery(engine: &Engine) {
    wait_for_serial(engine, SERIAL).await
}

/// Waits until the engine hears the battery with serial number `serial`.
pub async fn wait_for_serial(engine: &Engine, serial: &str) {
    for _ in 0..100 {
        if engine.batteries().await.iter().any(|b| {
            b.identity.serial == serial && b.presence == bmsfw_core::vrm::Presence::Communicating
        }) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the engine never heard the battery");
}

/// Requests the update and uploads `package` in chunks; returns the job after stage 1.
pub async fn upload(
    engine: &Engine,
    request: UpdateRequest,
    package: &[u8],
) -> Result<JobId, EngineRefusal> {
    let chunk = request.package.chunk_size() as usize;
    let status = engine.request_update(request).await?;
    let job = status.job;
    for (i, bytes) in package.chunks(chunk).enumerate() {
        engine.accept_chunk(job, i as u32, bytes.to_vec()).await?;
    }
    engine.finish_upload(job).await.map(|_| job)
}

/// The job's record once it has ended (within `limit` of virtual time).
pub async fn wait_end(engine: &Engine, job: JobId, limit: Duration) -> JobRecord {
    let mut updates = engine.subscribe();
    let until = tokio::time::Instant::now() + limit;
    loop {
        if let Some(r) = engine.jobs().await.into_iter().find(|r| r.id() == job)
            && r.state().is_terminal()
        {
            return r;
        }
        match tokio::time::timeout_at(until, updates.recv()).await {
            Ok(_) => {}
            Err(_) => {
                let r = engine.jobs().await.into_iter().find(|r| r.id() == job);
                panic!("job {job} did not end in time: {r:#?}");
            }
        }
    }
}
