//! Whole updates through the kernel's real CAN driver path: the GX engine with the real
//! vendor plugin (in its plugin host) on `can0`, the simulated battery on `can1`, two
//! SJA1000 controllers (emulated Kvaser PCI cards) on one bus, in real time. The engine
//! reads the bus's bit rate from the driver, over netlink.
//!
//! Runs in the virtual machine of `scripts/socketcan-vm-test` (with `--ignored
//! --test-threads=1`), which provides the controllers, root, the plugin host
//! (`BMSFW_PLUGIN_HOST`) and the vendor plugin libraries (in the folder named by
//! `BMSFW_VM_PLUGINS`).

#[path = "../../tests/engine_steps/mod.rs"]
mod steps;

use aurora_sim::bms::{AuroraBms, AuroraConfig};
use aurora_sim::package::{PackageSpec, build as aurora_package};
use bmsfw_can::socketcan::set_bitrate;
use bmsfw_can::{CanInterface, SocketCanInterface};
use bmsfw_core::dotted_version::DottedVersion;
use bmsfw_core::engine::{Engine, EngineConfig};
use bmsfw_core::job::JobState;
use bmsfw_core::plugin::{
    Allowlist, HostSettings, Isolation, LoadedPlugin, PluginLoader, Sha256Digest,
};
use bmsfw_core::staging::UploadAnnouncement;
use bmsfw_core::vrm::{
    Acknowledgements, BatteryView, GxEngine, Presence, UpdateOptions, UpdateRequest, VrmAccess,
    VrmPortalMode,
};
use bmsfw_sim::battery::{BatteryConfig, Epoch, IdentityConfig};
use coral_sim::bundle::{BundleSpec, build as coral_bundle};
use coral_sim::{CoralBms, CoralConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The GX's controller and the battery's.
const GX_BUS: &str = "can0";
const BATTERY_BUS: &str = "can1";

/// Both controllers at `bitrate`, up.
fn controllers_at(bitrate: u32) {
    for name in [GX_BUS, BATTERY_BUS] {
        set_bitrate(name, bitrate).unwrap_or_else(|e| panic!("{e}"));
    }
}

fn interface(name: &str) -> Arc<dyn CanInterface> {
    Arc::new(SocketCanInterface::open(name).unwrap_or_else(|e| panic!("opening {name}: {e}")))
}

/// A vendor plugin: its library, the allowlist approving it, the battery it is for.
struct Vendor {
    file: &'static str,
    vendor_id: &'static str,
    manufacturer: &'static str,
    products: &'static [u16],
    firmware: (&'static str, &'static str),
}

const AURORA: Vendor = Vendor {
    file: "libbmsfw_vendor_aurora.so",
    vendor_id: "com.aurora-energy.powercore",
    manufacturer: "AURORA",
    products: &[0xA520],
    firmware: ("2.0", "9.99"),
};

const CORAL: Vendor = Vendor {
    file: "libbmsfw_vendor_coral.so",
    vendor_id: "com.coral-cells.reefstack",
    manufacturer: "CORAL",
    products: &[0xC0A1],
    firmware: ("1.4", "9.255"),
};

impl Vendor {
    fn library(&self) -> PathBuf {
        let dir = std::env::var_os("BMSFW_VM_PLUGINS")
            .expect("BMSFW_VM_PLUGINS names the folder of the vendor plugin libraries");
        Path::new(&dir).join(self.file)
    }

    /// The plugin, approved by an allowlist written from its digest, in its plugin host.
    ///
    /// The host's call deadlines are ten times the daemon's: the virtual machine emulates
    /// its processor in software, far slower than a GX, and one emulated core runs the
    /// engine, the plugin host and the simulated battery together. What these tests check
    /// is the CAN path, not the plugin's timing (the engine's own tests do).
    fn plugin(&self) -> LoadedPlugin {
        let library = self.library();
        let bytes = std::fs::read(&library)
            .unwrap_or_else(|e| panic!("reading {}: {e}", library.display()));
        let sha256 = Sha256Digest::of(&bytes).to_string();
        let text = bmsfw_test_fixtures::Approval {
            vendor_id: self.vendor_id,
            file: self.file,
            sha256: &sha256,
            versions: "^1.0",
            firmware: self.firmware,
            manufacturer: self.manufacturer,
            product_codes: self.products,
        }
        .to_toml();
        let allowlist = Allowlist::parse(Path::new("allowlist.toml"), &text).unwrap();
        let mut settings = HostSettings::default();
        let deadlines = &mut settings.deadlines;
        deadlines.identity *= 10;
        deadlines.session *= 10;
        PluginLoader::new(allowlist)
            .with_isolation(Isolation::Hosted(Arc::new(settings)))
            .load_file(&library)
            .unwrap_or_else(|r| panic!("{r}"))
    }
}

/// The BMS-Can identity of a battery.
fn battery_config(
    manufacturer: &str,
    name: &str,
    product: u16,
    firmware: [u8; 2],
    serial: &str,
) -> BatteryConfig {
    let mut config = BatteryConfig::new(IdentityConfig {
        manufacturer: manufacturer.into(),
        bms_name: name.into(),
        product_code: product,
        firmware,
        capacity_ah: 200,
        product_info_tail: None,
        serial: Some(serial.into()),
        product_name: None,
    });
    config.initial_soc = 70.0;
    config
}

/// The GX: the engine on `can0` with `vendor`'s plugin, its state in `dir`.
fn gx(vendor: &Vendor, dir: &Path) -> Engine {
    let config = EngineConfig::in_dir(dir.join("state"), DottedVersion::from(vec![3, 70]));
    Engine::builder(config)
        .plugin(vendor.plugin())
        .bus(interface(GX_BUS))
        .vrm_access(VrmAccess::new(VrmPortalMode::Full))
        .start()
        .unwrap_or_else(|e| panic!("starting the engine: {e}"))
}

/// The battery `serial` as the engine sees it, once it communicates.
async fn wait_for_battery(engine: &Engine, serial: &str) -> BatteryView {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(b) = engine
            .batteries()
            .await
            .into_iter()
            .find(|b| b.identity.serial == serial && b.presence == Presence::Communicating)
        {
            return b;
        }
        assert!(
            Instant::now() < until,
            "the engine never heard battery {serial}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The request for `package` to battery `serial`, every acknowledgement given.
fn request(serial: &str, file: &str, package: &[u8]) -> UpdateRequest {
    UpdateRequest {
        battery_serial: serial.into(),
        package: UploadAnnouncement::new(
            file.into(),
            package.len() as u64,
            16 * 1024,
            Sha256Digest::of(package),
        )
        .unwrap(),
        acknowledgements: Acknowledgements::all(),
        options: UpdateOptions::default(),
    }
}

/// Waits until the engine's view of battery `serial` shows firmware `display` (read from
/// its 0x35F over `can0`).
async fn wait_for_firmware(engine: &Engine, serial: &str, display: &str) {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let view = wait_for_battery(engine, serial).await;
        if view.firmware.as_ref().is_some_and(|f| f.display == display) {
            return;
        }
        assert!(
            Instant::now() < until,
            "0x35F never showed {display}: {:?}",
            view.firmware
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const UPDATE_STATES: [JobState; 5] = [
    JobState::Transferring,
    JobState::Installing,
    JobState::Restarting,
    JobState::Verifying,
    JobState::Completed,
];

const AURORA_SERIAL: &str = "AUR10-240117";

/// An Aurora PowerCore 10 running v4.15 on `can1`.
fn aurora_battery() -> (aurora_sim::AuroraHandle, tokio::task::JoinHandle<()>) {
    let epoch = Epoch::starting_now();
    let model = AuroraBms::new(
        AuroraConfig::new(0xA520, [4, 15]),
        battery_config("AURORA", "PowerCore 10", 0xA520, [4, 15], AURORA_SERIAL),
        epoch.now(),
    )
    .unwrap();
    let (bms, task) =
        aurora_sim::AuroraHandle::spawn("powercore", model, epoch, interface(BATTERY_BUS));
    (
        bms,
        tokio::spawn(async move {
            let _ = task.await;
        }),
    )
}

#[tokio::test]
#[ignore = "needs the SJA1000 controllers can0 and can1: run by scripts/socketcan-vm-test"]
async fn a_250_kbit_bus_read_from_the_driver_is_refused_by_gate_722() {
    // The battery is heard (the controllers agree with each other), but not at the
    // BMS-Can bit rate.
    controllers_at(250_000);
    let (_bms, task) = aurora_battery();
    let dir = tempfile::tempdir().unwrap();
    let engine = gx(&AURORA, dir.path());
    wait_for_battery(&engine, AURORA_SERIAL).await;
    let package = aurora_package(&PackageSpec::new(0xA520, [4, 16], 4096, 7));
    let refusal = engine
        .request_update(request(AURORA_SERIAL, "powercore10.bin", &package))
        .await
        .expect_err("a 250 kbit/s bus is refused");
    assert_eq!(refusal.code, 722, "{refusal}");
    assert!(
        refusal.message.contains("measured 250000 bit/s"),
        "{refusal}"
    );
    assert!(refusal.message.contains("limit 500000 bit/s"), "{refusal}");
    engine.shutdown().await;
    task.abort();

    // The same site at 500 kbit/s passes the gate: the refusal came from the bit rate.
    controllers_at(500_000);
    let (_bms, task) = aurora_battery();
    let dir = tempfile::tempdir().unwrap();
    let engine = gx(&AURORA, dir.path());
    wait_for_battery(&engine, AURORA_SERIAL).await;
    engine
        .request_update(request(AURORA_SERIAL, "powercore10.bin", &package))
        .await
        .unwrap_or_else(|r| panic!("refused at 500 kbit/s: {r}"));
    engine.shutdown().await;
    task.abort();
}

#[tokio::test]
#[ignore = "needs the SJA1000 controllers can0 and can1: run by scripts/socketcan-vm-test"]
async fn an_aurora_update_completes_through_the_sja1000_driver() {
    controllers_at(500_000);
    let (bms, task) = aurora_battery();
    let dir = tempfile::tempdir().unwrap();
    let engine = gx(&AURORA, dir.path());
    let before = wait_for_battery(&engine, AURORA_SERIAL).await;
    assert_eq!(before.bus, GX_BUS);
    assert_eq!(before.firmware.unwrap().display, "v4.15");

    let package = aurora_package(&PackageSpec::new(0xA520, [4, 16], 24 * 1024, 11));
    let id = steps::upload(
        &engine,
        request(AURORA_SERIAL, "powercore10.bin", &package),
        &package,
    )
    .await
    .unwrap_or_else(|r| panic!("{r}"));
    let record = steps::wait_end(&engine, id, Duration::from_secs(180)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
    assert_eq!(record.version_after().unwrap().display, "v4.16");
    let history = engine.history(AURORA_SERIAL).await.unwrap();
    assert_eq!(steps::states(&history, id), UPDATE_STATES);

    // The battery runs the new image, and its 0x35F says so on the GX's bus.
    let status = bms.status();
    assert_eq!(status.running_version, [4, 16]);
    assert_eq!(bms.slot_package(status.active_slot), package);
    wait_for_firmware(&engine, AURORA_SERIAL, "v4.16").await;
    engine.shutdown().await;
    task.abort();
}

const CORAL_SERIAL: &str = "RS48-240611";

#[tokio::test]
#[ignore = "needs the SJA1000 controllers can0 and can1: run by scripts/socketcan-vm-test"]
async fn a_coral_update_on_29_bit_identifiers_completes_through_the_sja1000_driver() {
    const OLD: [u8; 3] = [1, 0x0F, 0x03];
    const NEW: [u8; 3] = [1, 0x10, 0xFF];
    const MODULE_OLD: [u8; 3] = [2, 0x03, 0x01];
    const MODULE_NEW: [u8; 3] = [2, 0x04, 0x01];
    const MODULES: usize = 2;
    controllers_at(500_000);
    let epoch = Epoch::starting_now();
    let mut config = CoralConfig::new(0xC0A1, OLD, MODULES);
    for m in &mut config.modules {
        m.firmware = MODULE_OLD;
    }
    let mut battery = battery_config(
        "CORAL",
        "ReefStack 48",
        0xC0A1,
        [OLD[1], OLD[0]],
        CORAL_SERIAL,
    );
    battery.modules = MODULES as u16;
    let model = CoralBms::new(config, battery, epoch.now()).unwrap();
    let (bms, task) =
        coral_sim::CoralHandle::spawn("reefstack", model, epoch, interface(BATTERY_BUS));
    let dir = tempfile::tempdir().unwrap();
    let engine = gx(&CORAL, dir.path());
    wait_for_battery(&engine, CORAL_SERIAL).await;

    let bundle = coral_bundle(&BundleSpec::new(0xC0A1, NEW, 2, 16 * 1024, 5).with_modules(
        MODULE_NEW,
        &[1, 3],
        4096,
    ));
    let id = steps::upload(
        &engine,
        request(CORAL_SERIAL, "reefstack48-1.10.crb", &bundle),
        &bundle,
    )
    .await
    .unwrap_or_else(|r| panic!("{r}"));
    let record = steps::wait_end(&engine, id, Duration::from_secs(240)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
    assert_eq!(record.version_after().unwrap().raw, NEW);
    let history = engine.history(CORAL_SERIAL).await.unwrap();
    assert_eq!(steps::states(&history, id), UPDATE_STATES);

    let status = bms.status();
    assert_eq!(status.running_version, NEW);
    assert!(
        status.modules.iter().all(|m| m.version == MODULE_NEW),
        "{:?}",
        status.modules
    );
    // 0x35F shows the master's major and minor.
    wait_for_firmware(&engine, CORAL_SERIAL, "v1.10").await;
    engine.shutdown().await;
    task.abort();
}
