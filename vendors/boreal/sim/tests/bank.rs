//! The simulated bank against the CiA 302-3 program download of `bmsfw-protocols`, frame
//! by frame in virtual time (no bus), and on a simulated site.

use bmsfw_can::CanEvent;
use bmsfw_plugin_api::{CanFrame, CanId, Timestamp};
use bmsfw_protocols::canopen::{
    AbortCode, NodeId, ObjectAddress, ProgramConfig, ProgramDownload, ProgramError, ProgramEvent,
    SdoChannel, SdoClient, SdoClientConfig, SdoError, SdoEvent, SoftwareIdCheck, StartOutcome,
};
use bmsfw_sim::battery::{BatteryConfig, IdentityConfig};
use bmsfw_sim::registry::BmsRegistry;
use bmsfw_sim::site::SiteDescription;
use boreal_sim::flash::{BootState, SlotId};
use boreal_sim::node::NodeStage;
use boreal_sim::package::{PackageSpec, build};
use boreal_sim::protocol::{BOOT_ROLLED_BACK, flash_codes};
use boreal_sim::{BankConfig, BankHandle, BorealBank, Fault};
use std::sync::Arc;
use std::time::Duration;

const FRAME: Duration = Duration::from_micros(240);
const PRODUCT: u16 = 0xB210;
const OLD: [u8; 2] = [0x02, 0x10];
const NEW: [u8; 2] = [0x02, 0x15];

fn battery() -> BatteryConfig {
    BatteryConfig::new(IdentityConfig {
        manufacturer: "BOREAL".into(),
        bms_name: "Taiga 10".into(),
        product_code: PRODUCT,
        firmware: OLD,
        capacity_ah: 400,
        product_info_tail: None,
        serial: Some("TG10-2407-001".into()),
        product_name: None,
    })
}

/// A bank and everything it sent, in virtual time.
struct Rig {
    bank: BorealBank,
    now: Timestamp,
    heard: Vec<(Timestamp, CanFrame)>,
}

impl Rig {
    fn new(config: BankConfig) -> Rig {
        Rig {
            bank: BorealBank::new(config, battery(), Timestamp::ZERO).unwrap(),
            now: Timestamp::ZERO,
            heard: Vec::new(),
        }
    }

    fn bank(nodes: u8) -> Rig {
        Rig::new(BankConfig::new(PRODUCT, OLD, nodes))
    }

    /// Lets the bank run until `until`, hearing what it sends.
    fn idle(&mut self, until: Timestamp) {
        while self.now < until {
            self.drain();
            let next = self.bank.poll_timeout().unwrap_or(until).min(until);
            self.now = self.now.max(next);
            self.bank.handle_timeout(self.now);
        }
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(frame) = self.bank.poll_transmit(self.now) {
            self.now = self.now + FRAME;
            self.heard.push((self.now, frame));
        }
    }

    /// Runs a program download of `image` on node `node` to its end, showing every
    /// event to `on_event` first.
    fn program(
        &mut self,
        node: u8,
        image: &[u8],
        mut on_event: impl FnMut(&mut BorealBank, Timestamp, &ProgramEvent),
    ) -> ProgramEvent {
        let id = NodeId::new(node).unwrap();
        let mut sdo = SdoClientConfig::new(SdoChannel::for_node(id));
        sdo.timeout = Duration::from_millis(1000);
        let config = ProgramConfig {
            software_id: SoftwareIdCheck::Crc32OfImage,
            ..ProgramConfig::new(sdo)
        };
        let mut flow = ProgramDownload::new(config, image.len() as u32);
        flow.start(self.now);
        loop {
            let mut moved = false;
            while let Some(frame) = flow.poll_transmit(self.now) {
                moved = true;
                self.now = self.now + FRAME;
                self.bank.handle_frame(self.now, &frame);
            }
            while let Some(frame) = self.bank.poll_transmit(self.now) {
                moved = true;
                self.now = self.now + FRAME;
                self.heard.push((self.now, frame));
                flow.handle_frame(self.now, &frame);
            }
            while let Some(event) = flow.poll_event() {
                moved = true;
                on_event(&mut self.bank, self.now, &event);
                match event {
                    ProgramEvent::NeedData { offset, len } => {
                        let o = offset as usize;
                        flow.provide_data(self.now, &image[o..o + len]).unwrap();
                    }
                    ProgramEvent::Done { .. } | ProgramEvent::Failed(_) => return event,
                    _ => {}
                }
            }
            if moved {
                continue;
            }
            let next = [flow.poll_timeout(), self.bank.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .expect("something is pending");
            self.now = self.now.max(next);
            flow.handle_timeout(self.now);
            self.bank.handle_timeout(self.now);
        }
    }

    /// Reads `object` of node `node` (one attempt).
    fn read(&mut self, node: u8, object: ObjectAddress) -> Result<Vec<u8>, SdoError> {
        let id = NodeId::new(node).unwrap();
        let mut client = SdoClient::new(SdoClientConfig::new(SdoChannel::for_node(id)));
        client.upload(self.now, object, 64).unwrap();
        self.transfer(client)
    }

    /// Writes `value` to `object` of node `node` (one attempt).
    fn write(
        &mut self,
        node: u8,
        object: ObjectAddress,
        value: &[u8],
    ) -> Result<Vec<u8>, SdoError> {
        let id = NodeId::new(node).unwrap();
        let mut client = SdoClient::new(SdoClientConfig::new(SdoChannel::for_node(id)));
        client.download_value(self.now, object, value).unwrap();
        self.transfer(client)
    }

    /// Runs `client`'s transfer to its end: the value read (empty for a write).
    fn transfer(&mut self, mut client: SdoClient) -> Result<Vec<u8>, SdoError> {
        loop {
            while let Some(frame) = client.poll_transmit(self.now) {
                self.now = self.now + FRAME;
                self.bank.handle_frame(self.now, &frame);
            }
            while let Some(frame) = self.bank.poll_transmit(self.now) {
                self.now = self.now + FRAME;
                self.heard.push((self.now, frame));
                client.handle_frame(self.now, &frame);
            }
            match client.poll_event() {
                Some(SdoEvent::Uploaded { data, .. }) => return Ok(data),
                Some(SdoEvent::Downloaded { .. }) => return Ok(Vec::new()),
                Some(SdoEvent::Failed { error, .. }) => return Err(error),
                _ => {}
            }
            let next = [client.poll_timeout(), self.bank.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .unwrap();
            self.now = self.now.max(next);
            client.handle_timeout(self.now);
            self.bank.handle_timeout(self.now);
        }
    }

    /// Frames heard on `id` since `since`.
    fn heard_on(&self, id: u16, since: Timestamp) -> Vec<(Timestamp, CanFrame)> {
        self.heard
            .iter()
            .filter(|(t, f)| *t >= since && f.id() == CanId::standard(id).unwrap())
            .cloned()
            .collect()
    }

    fn last_35f(&self) -> Vec<u8> {
        self.heard_on(0x35F, Timestamp::ZERO)
            .last()
            .map(|(_, f)| f.data().to_vec())
            .expect("a 0x35F was heard")
    }
}

fn package(version: [u8; 2], len: usize) -> Vec<u8> {
    build(&PackageSpec::new(PRODUCT, version, len, 77)).1
}

const VERSION: ObjectAddress = ObjectAddress::new(0x100A, 0);
const BOOT_STATE: ObjectAddress = ObjectAddress::new(0x2F10, 3);

#[test]
fn the_speaker_broadcasts_for_the_bank_and_every_node_beats() {
    let mut config = BankConfig::new(PRODUCT, OLD, 3);
    config.node_mut(2).unwrap().firmware = [0x02, 0x05];
    let mut rig = Rig::new(config);
    rig.idle(Timestamp::ZERO + Duration::from_secs(3));
    // 0x35F: product, the lowest version, capacity, speaker 1, three nodes.
    assert_eq!(
        rig.last_35f(),
        vec![0x10, 0xB2, 0x02, 0x05, 0x90, 0x01, 1, 3]
    );
    for node in 1..=3u16 {
        let beats = rig.heard_on(0x700 + node, Timestamp::ZERO);
        assert!((2..=3).contains(&beats.len()), "node {node}: {beats:?}");
        assert!(beats.iter().all(|(_, f)| f.data() == [0x05]));
    }
    // Only one BMS-Can speaker: one 0x356 every 200 ms, not one per node.
    let measurements = rig.heard_on(0x356, Timestamp::ZERO + Duration::from_secs(1));
    assert!(
        (9..=11).contains(&measurements.len()),
        "{}",
        measurements.len()
    );
    assert_eq!(rig.read(2, VERSION).unwrap(), b"2.05");
    assert_eq!(rig.read(3, VERSION).unwrap(), b"2.10");
    assert_eq!(
        rig.read(3, ObjectAddress::new(0x1018, 1)).unwrap(),
        0x00B0_4EA1u32.to_le_bytes()
    );
    assert_eq!(
        rig.read(1, ObjectAddress::new(0x2F10, 1)).unwrap(),
        [0x01, 0x30]
    );
    assert_eq!(
        rig.read(1, ObjectAddress::new(0x5000, 0)),
        Err(SdoError::ServerAbort(AbortCode::ObjectDoesNotExist))
    );
}

#[test]
fn a_node_is_updated_while_the_speaker_keeps_talking_and_the_speaker_last() {
    let mut rig = Rig::bank(2);
    rig.idle(Timestamp::ZERO + Duration::from_millis(1500));
    let image = package(NEW, 40_000);
    let outcome = rig.program(2, &image, |_, _, _| {});
    let started = rig.now;
    assert!(
        matches!(outcome, ProgramEvent::Done { software_id, start: StartOutcome::Acknowledged } if software_id == bmsfw_protocols::checksum::crc32(&image)),
        "{outcome:?}"
    );
    // Node 2 restarts: silent for 2 s, then its boot-up message; node 1 and BMS-Can go on.
    rig.idle(started + Duration::from_millis(3500));
    let beats = rig.heard_on(0x702, started);
    let (first_at, first) = beats.first().unwrap();
    assert_eq!(first.data(), [0x00], "boot-up first");
    let silence = first_at.saturating_duration_since(started);
    assert!(
        silence >= Duration::from_millis(2000) && silence < Duration::from_millis(2100),
        "{silence:?}"
    );
    assert!(rig.heard_on(0x701, started).len() >= 3);
    let telemetry = rig.heard_on(0x356, started);
    assert!(
        telemetry.len() >= 15,
        "the speaker kept talking: {}",
        telemetry.len()
    );
    // 0x372 counted node 2 offline while it restarted.
    let offline = rig
        .heard_on(0x372, started)
        .iter()
        .any(|(_, f)| f.data()[0..2] == [1, 0] && f.data()[6..8] == [1, 0]);
    assert!(offline, "modules offline during the restart");
    let status = rig.bank.status();
    assert_eq!(status[1].running_version, NEW);
    assert_eq!(status[1].active_slot, SlotId::B);
    assert_eq!(status[0].running_version, OLD);
    // The bank still reads as its oldest node.
    assert_eq!(rig.last_35f()[2..4], OLD);
    assert_eq!(rig.read(2, VERSION).unwrap(), b"2.15");

    let outcome = rig.program(1, &image, |_, _, _| {});
    assert!(matches!(outcome, ProgramEvent::Done { .. }), "{outcome:?}");
    let started = rig.now;
    rig.idle(started + Duration::from_millis(4000));
    // The speaker's restart silences BMS-Can for 2 s.
    let after: Vec<Timestamp> = rig
        .heard_on(0x356, started)
        .iter()
        .map(|(t, _)| *t)
        .collect();
    let gap = after[0].saturating_duration_since(started);
    assert!(gap >= Duration::from_millis(2000), "{gap:?}");
    assert_eq!(rig.last_35f()[2..4], NEW);
    assert!(
        rig.bank
            .status()
            .iter()
            .all(|n| n.running_version == NEW && n.stage == NodeStage::Running)
    );
}

#[test]
fn a_damaged_image_is_refused_and_start_is_refused_after_it() {
    let mut rig = Rig::bank(1);
    assert!(rig.bank.inject(1, Fault::FlipBitOnWrite { offset: 12_345 }));
    let outcome = rig.program(1, &package(NEW, 30_000), |_, _, _| {});
    let ProgramEvent::Failed(ProgramError::Flash { status, .. }) = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(status.code().value(), flash_codes::CRC);
    assert_eq!(rig.bank.status()[0].running_version, OLD);
    // Told to start anyway, the node refuses: it never activates an image that failed.
    assert_eq!(
        rig.write(1, ObjectAddress::new(0x1F51, 1), &[1]),
        Err(SdoError::ServerAbort(AbortCode::DeviceState))
    );
    assert_eq!(rig.bank.status()[0].boot_state, BootState::Running);
    // Another product's image and one needing a newer bootloader.
    for (spec, code) in [
        (
            PackageSpec::new(0xB205, NEW, 3_000, 1),
            flash_codes::WRONG_PRODUCT,
        ),
        (
            PackageSpec {
                min_bootloader: [0x01, 0x40],
                ..PackageSpec::new(PRODUCT, NEW, 3_000, 1)
            },
            flash_codes::BOOTLOADER_TOO_OLD,
        ),
    ] {
        let outcome = rig.program(1, &build(&spec).1, |_, _, _| {});
        let ProgramEvent::Failed(ProgramError::Flash { status, .. }) = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(status.code().value(), code);
    }
    assert_eq!(rig.bank.status()[0].running_version, OLD);
    assert_eq!(rig.bank.status()[0].boots, 0);
}

#[test]
fn a_firmware_that_does_not_start_is_rolled_back() {
    let mut rig = Rig::bank(1);
    rig.bank.inject(1, Fault::FailNextBoot);
    let outcome = rig.program(1, &package(NEW, 20_000), |_, _, _| {});
    assert!(matches!(outcome, ProgramEvent::Done { .. }), "{outcome:?}");
    let started = rig.now;
    rig.idle(started + Duration::from_millis(5000));
    let beats = rig.heard_on(0x701, started);
    let silence = beats[0].0.saturating_duration_since(started);
    assert!(
        silence >= Duration::from_millis(4000),
        "restart and rollback: {silence:?}"
    );
    let status = &rig.bank.status()[0];
    assert_eq!(status.running_version, OLD);
    assert_eq!(status.boot_state, BootState::RolledBack);
    assert_eq!(rig.read(1, BOOT_STATE).unwrap(), [BOOT_ROLLED_BACK]);
    assert_eq!(rig.read(1, VERSION).unwrap(), b"2.10");
}

#[test]
fn a_power_cut_leaves_the_old_or_the_new_complete_firmware() {
    // Cut mid-download: the old firmware boots, the partial image never runs.
    let mut rig = Rig::bank(1);
    let image = package(NEW, 50_000);
    let mut cut = false;
    let outcome = rig.program(1, &image, |bank, now, event| {
        if let ProgramEvent::Progress { acknowledged, .. } = event {
            if *acknowledged > 20_000 && !cut {
                cut = true;
                bank.power_cut(now);
                bank.power_restore(now + Duration::from_millis(10));
            }
        }
    });
    assert!(matches!(outcome, ProgramEvent::Failed(_)), "{outcome:?}");
    rig.idle(rig.now + Duration::from_millis(3000));
    let status = &rig.bank.status()[0];
    assert_eq!(status.running_version, OLD);
    assert_eq!(status.stage, NodeStage::Running);
    assert_eq!(rig.read(1, VERSION).unwrap(), b"2.10");

    // Cut right after the start command was answered: the boot record was written.
    let mut rig = Rig::bank(1);
    let outcome = rig.program(1, &image, |_, _, _| {});
    assert!(matches!(outcome, ProgramEvent::Done { .. }));
    let now = rig.now;
    rig.bank.power_cut(now);
    rig.idle(now + Duration::from_millis(500));
    rig.bank.power_restore(rig.now);
    rig.idle(rig.now + Duration::from_millis(2500));
    assert_eq!(rig.bank.status()[0].running_version, NEW);
    assert_eq!(rig.read(1, VERSION).unwrap(), b"2.15");
}

#[tokio::test(start_paused = true)]
async fn a_site_battery_of_vendor_boreal_runs_a_bank_of_its_modules() {
    let site = SiteDescription::parse(
        r#"
[[bus]]
name = "sim0"
bitrate = 500000

[[bus.battery]]
name = "cabin"
vendor = "boreal"
manufacturer = "BOREAL"
bms_name = "Taiga 10"
product_code = 0xB210
firmware = [0x02, 0x10]
capacity_ah = 400
modules = 2
soc = 70
"#,
        "<test>",
    )
    .unwrap();
    let mut registry = BmsRegistry::new();
    boreal_sim::register(&mut registry);
    let running = site.start_with(&registry).unwrap();
    let cabin = running.battery("cabin").unwrap();
    let handle: Arc<BankHandle> = cabin.vendor_controls().expect("boreal controls");
    assert_eq!(handle.status().len(), 2);
    assert_eq!(handle.lowest_version(), OLD);
    cabin.control().set_soc(55.0);
    assert_eq!(cabin.control().snapshot().soc, 55.0);
    // Node 2 answers an SDO read of 0x100A on 0x602/0x582.
    let gx = running.bus("sim0").unwrap().attach("gx");
    let read = CanFrame::new(
        CanId::standard(0x602).unwrap(),
        &[0x40, 0x0A, 0x10, 0x00, 0, 0, 0, 0],
    )
    .unwrap();
    gx.send(read).await.unwrap();
    let answer = loop {
        if let CanEvent::Frame(rx) = gx.recv().await.unwrap() {
            if rx.frame.id().raw() == 0x582 {
                break rx.frame;
            }
        }
    };
    // Expedited upload of 4 bytes: "2.10".
    assert_eq!(
        answer.data(),
        &[0x43, 0x0A, 0x10, 0x00, b'2', b'.', b'1', b'0']
    );
}
