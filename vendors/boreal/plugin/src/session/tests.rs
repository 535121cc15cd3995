//! The session against a scripted bank (SDO servers of `bmsfw-protocols` over object
//! dictionaries answering as `PROTOCOL.md` says), frame by frame, in virtual time. No
//! bus: the end-to-end tests run the built library against the simulated bank.

use super::*;
use crate::protocol::{APP_START, DESCRIPTOR_OFFSET, flash_codes};
use crate::testing::{hex_file, image, reader};
use bmsfw_plugin_api::abi_stable::std_types::{ROption, RVec};
use bmsfw_plugin_api::{BatteryIdentity, CanId, Session, SessionOptions};
use bmsfw_protocols::canopen::{
    AbortCode, FlashStatus, FlashStatusCode, ObjectDictionary, SdoChannel, SdoServer,
    SdoServerConfig, objects,
};
use bmsfw_protocols::checksum::crc32;
use std::time::Duration;

const FRAME: Duration = Duration::from_micros(240);
const PRODUCT: u16 = 0xB210;
const OLD: [u8; 2] = [0x02, 0x10];
const NEW: [u8; 2] = [0x02, 0x15];

fn bcd_text(v: [u8; 2]) -> Vec<u8> {
    Bcd(v).to_string().into_bytes()
}

/// What a scripted node does after its start command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AfterStart {
    /// Boots the new firmware after 2 s.
    Boots,
    /// The new firmware does not start: the old one runs after 4 s.
    RollsBack,
    /// Never answers again.
    StaysSilent,
}

/// The object dictionary of a scripted node.
#[derive(Debug)]
struct Dict {
    vendor: u32,
    product: u32,
    version: [u8; 2],
    bootloader: [u8; 2],
    caps: u8,
    boot_state: u8,
    slot: Vec<u8>,
    cleared: bool,
    busy_until: Timestamp,
    flash_code: FlashStatusCode,
    /// A 0x1F51 value written, applied at the end of the write.
    control: Option<u8>,
    /// Commands applied, in order.
    controls: Vec<u8>,
    /// The image checked and waiting for the restart.
    pending: Option<[u8; 2]>,
    restart_requested: bool,
    after_start: AfterStart,
    /// Refuse the image after the download with this flash code.
    refuse_with: Option<u8>,
}

impl Dict {
    fn new(version: [u8; 2]) -> Dict {
        Dict {
            vendor: CANOPEN_VENDOR_ID,
            product: u32::from(PRODUCT),
            version,
            bootloader: [0x01, 0x30],
            caps: 0x07,
            boot_state: BOOT_RUNNING,
            slot: Vec::new(),
            cleared: false,
            busy_until: Timestamp::ZERO,
            flash_code: FlashStatusCode::Ok,
            control: None,
            controls: Vec::new(),
            pending: None,
            restart_requested: false,
            after_start: AfterStart::Boots,
            refuse_with: None,
        }
    }

    /// The BMS's own check of the received image: descriptor version, CRC trailer.
    fn check(&self) -> Result<[u8; 2], u8> {
        let d = DESCRIPTOR_OFFSET as usize;
        if self.slot.len() < d + 16 || self.slot[d..d + 4] != *b"BRLF" {
            return Err(flash_codes::FORMAT);
        }
        let body = self.slot.len() - 4;
        if crc32(&self.slot[..body]).to_le_bytes() != self.slot[body..] {
            return Err(flash_codes::CRC);
        }
        Ok([self.slot[d + 8], self.slot[d + 9]])
    }
}

impl ObjectDictionary for Dict {
    fn read(&mut self, now: Timestamp, o: ObjectAddress) -> Result<Vec<u8>, AbortCode> {
        Ok(match (o.index, o.sub_index) {
            (0x1018, 1) => self.vendor.to_le_bytes().to_vec(),
            (0x1018, 2) => self.product.to_le_bytes().to_vec(),
            (0x100A, 0) => bcd_text(self.version),
            (0x2F10, 1) => self.bootloader.to_vec(),
            (0x2F10, 2) => vec![self.caps],
            (0x2F10, 3) => vec![self.boot_state],
            (objects::FLASH_STATUS, 1) => FlashStatus::new(now < self.busy_until, self.flash_code)
                .raw()
                .to_le_bytes()
                .to_vec(),
            (objects::PROGRAM_SOFTWARE_ID, 1) => crc32(&self.slot).to_le_bytes().to_vec(),
            _ => return Err(AbortCode::ObjectDoesNotExist),
        })
    }
    fn begin_write(
        &mut self,
        _: Timestamp,
        o: ObjectAddress,
        _: Option<u32>,
    ) -> Result<(), AbortCode> {
        match (o.index, o.sub_index) {
            (objects::PROGRAM_CONTROL, 1) => Ok(()),
            (objects::PROGRAM_DATA, 1) if self.cleared => {
                self.slot.clear();
                Ok(())
            }
            (objects::PROGRAM_DATA, 1) => Err(AbortCode::DeviceState),
            _ => Err(AbortCode::ObjectDoesNotExist),
        }
    }
    fn write(
        &mut self,
        _: Timestamp,
        o: ObjectAddress,
        _: u64,
        data: &[u8],
    ) -> Result<Duration, AbortCode> {
        if o.index == objects::PROGRAM_CONTROL {
            self.control = data.first().copied();
        } else {
            self.slot.extend_from_slice(data);
        }
        Ok(Duration::from_micros(400))
    }
    fn end_write(
        &mut self,
        now: Timestamp,
        o: ObjectAddress,
        _: u64,
    ) -> Result<Duration, AbortCode> {
        if o.index == objects::PROGRAM_DATA {
            self.cleared = false;
            self.busy_until = now + Duration::from_millis(60);
            self.flash_code = match self.refuse_with.or(self.check().err()) {
                Some(code) => FlashStatusCode::from_value(code),
                None => FlashStatusCode::Ok,
            };
            return Ok(Duration::ZERO);
        }
        let command = self.control.take().ok_or(AbortCode::InvalidValue)?;
        self.controls.push(command);
        match command {
            0 => {}
            3 => {
                self.cleared = true;
                self.slot.clear();
                self.boot_state = BOOT_RUNNING;
                self.busy_until = now + Duration::from_millis(300);
                self.flash_code = FlashStatusCode::NoValidProgram;
            }
            1 if self.flash_code == FlashStatusCode::Ok && !self.slot.is_empty() => {
                self.pending = Some(self.check().map_err(|_| AbortCode::DeviceState)?);
                self.boot_state = BOOT_ACTIVATION_PENDING;
                self.restart_requested = true;
            }
            _ => return Err(AbortCode::DeviceState),
        }
        Ok(Duration::ZERO)
    }
    fn abort_write(&mut self, _: Timestamp, _: ObjectAddress, _: AbortCode) {}
}

/// A scripted node: its SDO server, heartbeats and restarts.
struct TestNode {
    id: NodeId,
    server: SdoServer<Dict>,
    down_until: Option<Timestamp>,
    silent_forever: bool,
    next_heartbeat: Timestamp,
    boot_up: bool,
}

impl TestNode {
    fn new(id: u8, version: [u8; 2]) -> TestNode {
        let id = NodeId::new(id).unwrap();
        TestNode {
            id,
            server: SdoServer::new(
                SdoChannel::for_node(id),
                SdoServerConfig::default(),
                Dict::new(version),
            ),
            down_until: None,
            silent_forever: false,
            next_heartbeat: Timestamp::ZERO + Duration::from_millis(u64::from(id.get()) * 37),
            boot_up: false,
        }
    }

    fn dict(&mut self) -> &mut Dict {
        self.server.dictionary_mut()
    }

    fn up(&self) -> bool {
        self.down_until.is_none() && !self.silent_forever
    }

    fn advance(&mut self, now: Timestamp) {
        if let Some(until) = self.down_until {
            if now >= until {
                self.down_until = None;
                self.boot_up = true;
                self.next_heartbeat = now + HEARTBEAT_PERIOD_TEST;
            }
        }
        if self.up() {
            self.server.handle_timeout(now);
        }
    }

    fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        self.advance(now);
        if !self.up() {
            return None;
        }
        let heartbeat = CanId::standard(0x700 + u16::from(self.id.get())).unwrap();
        if std::mem::take(&mut self.boot_up) {
            return CanFrame::new(heartbeat, &[0x00]);
        }
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + HEARTBEAT_PERIOD_TEST;
            return CanFrame::new(heartbeat, &[0x05]);
        }
        let frame = self.server.poll_transmit(now);
        if frame.is_none() && std::mem::take(&mut self.dict().restart_requested) {
            self.restart(now);
        }
        frame
    }

    fn restart(&mut self, now: Timestamp) {
        let pending = self.dict().pending.take();
        let after = self.dict().after_start;
        let d = self.dict();
        match (after, pending) {
            (AfterStart::Boots, Some(v)) => {
                d.version = v;
                d.boot_state = BOOT_RUNNING;
                self.down_until = Some(now + Duration::from_millis(2000));
            }
            (AfterStart::RollsBack, _) | (AfterStart::Boots, None) => {
                d.boot_state = BOOT_ROLLED_BACK;
                self.down_until = Some(now + Duration::from_millis(4000));
            }
            (AfterStart::StaysSilent, _) => self.silent_forever = true,
        }
        // The RAM goes: a transfer under way is lost.
        let dict = std::mem::replace(self.server.dictionary_mut(), Dict::new(OLD));
        self.server = SdoServer::new(
            SdoChannel::for_node(self.id),
            SdoServerConfig::default(),
            dict,
        );
    }

    fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        self.advance(now);
        if self.up() {
            self.server.handle_frame(now, frame);
        }
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        if self.silent_forever {
            return None;
        }
        if let Some(until) = self.down_until {
            return Some(until);
        }
        [self.server.poll_timeout(), Some(self.next_heartbeat)]
            .into_iter()
            .flatten()
            .min()
    }
}

const HEARTBEAT_PERIOD_TEST: Duration = Duration::from_millis(1000);

/// A bank of scripted nodes; the lowest id speaks 0x35F every second.
struct Bank {
    nodes: Vec<TestNode>,
    next_35f: Timestamp,
    /// Frames the session sent, with the time.
    sent: Vec<(Timestamp, CanFrame)>,
    /// Phases the session showed, in order, without repeats.
    phases: Vec<Phase>,
    /// Per-module states seen, in order, without repeats.
    modules: Vec<Vec<(u16, ModuleState)>>,
    bytes: Vec<(u64, u64)>,
    /// Tells 0x35F the speaker's lowest version is this instead of the truth.
    lie_35f: Option<[u8; 2]>,
}

impl Bank {
    fn new(versions: &[(u8, [u8; 2])]) -> Bank {
        Bank {
            nodes: versions
                .iter()
                .map(|&(id, v)| TestNode::new(id, v))
                .collect(),
            next_35f: Timestamp::ZERO,
            sent: Vec::new(),
            phases: Vec::new(),
            modules: Vec::new(),
            bytes: Vec::new(),
            lie_35f: None,
        }
    }

    fn node(&mut self, id: u8) -> &mut TestNode {
        self.nodes.iter_mut().find(|n| n.id.get() == id).unwrap()
    }

    fn speaker(&self) -> &TestNode {
        self.nodes.iter().min_by_key(|n| n.id).unwrap()
    }

    fn product_info(&self) -> Vec<u8> {
        let lowest = self
            .nodes
            .iter()
            .map(|n| n.server.dictionary().version)
            .min()
            .unwrap();
        let shown = self.lie_35f.unwrap_or(lowest);
        let mut p = PRODUCT.to_le_bytes().to_vec();
        p.extend_from_slice(&shown);
        p.extend_from_slice(&400u16.to_le_bytes());
        p.push(self.speaker().id.get());
        p.push(self.nodes.len() as u8);
        p
    }

    fn battery(&self) -> BatteryIdentity {
        BatteryIdentity::new("BOREAL").with_raw_35f(&self.product_info())
    }

    fn record(&mut self, session: &BorealSession) {
        let s = session.status();
        if self.phases.last() != Some(&s.phase) {
            self.phases.push(s.phase);
        }
        let modules: Vec<(u16, ModuleState)> =
            s.modules.iter().map(|m| (m.index, m.state)).collect();
        if self.modules.last() != Some(&modules) {
            self.modules.push(modules);
        }
        let b = (s.bytes_done, s.bytes_total);
        if self.bytes.last() != Some(&b) {
            self.bytes.push(b);
        }
    }

    /// Runs until the session ends (or `limit` of virtual time), calling `hook` after
    /// each step.
    fn run(
        &mut self,
        session: &mut BorealSession,
        limit: Duration,
        mut hook: impl FnMut(&mut Bank, &mut BorealSession, Timestamp),
    ) -> Timestamp {
        let mut now = Timestamp::ZERO;
        let end = now + limit;
        loop {
            let mut moved = false;
            while let Some(frame) = session.poll_transmit(now) {
                moved = true;
                now = now + FRAME;
                self.sent.push((now, frame));
                for n in &mut self.nodes {
                    n.handle_frame(now, &frame);
                }
                self.record(session);
            }
            for i in 0..self.nodes.len() {
                while let Some(frame) = self.nodes[i].poll_transmit(now) {
                    moved = true;
                    now = now + FRAME;
                    session.handle_frame(now, &frame);
                    self.record(session);
                }
            }
            if now >= self.next_35f {
                self.next_35f = now + Duration::from_millis(1000);
                if self.speaker().up() {
                    now = now + FRAME;
                    let frame = CanFrame::new(PRODUCT_INFO_ID, &self.product_info()).unwrap();
                    session.handle_frame(now, &frame);
                    self.record(session);
                }
            }
            hook(self, session, now);
            self.record(session);
            if session.status().phase.is_final() || now >= end {
                // What a final session still has to say (an abort) goes out.
                while let Some(frame) = session.poll_transmit(now) {
                    now = now + FRAME;
                    self.sent.push((now, frame));
                }
                return now;
            }
            if moved {
                continue;
            }
            let next = [session.poll_timeout(), Some(self.next_35f)]
                .into_iter()
                .chain(self.nodes.iter().map(TestNode::poll_timeout))
                .flatten()
                .min()
                .unwrap_or(end);
            now = now.max(next);
            session.handle_timeout(now);
            for n in &mut self.nodes {
                n.advance(now);
            }
            self.record(session);
        }
    }

    /// The nodes the session wrote 0x1F51 (program control) to, in order, with values.
    fn controls(&self) -> Vec<(u8, u8)> {
        self.sent
            .iter()
            .filter(|(_, f)| {
                (0x601..=0x610).contains(&f.id().raw())
                    && f.data()[0] == 0x2F
                    && f.data()[1..3] == [0x51, 0x1F]
            })
            .map(|(_, f)| ((f.id().raw() - 0x600) as u8, f.data()[4]))
            .collect()
    }
}

fn request(bank: &Bank, package: Vec<u8>, options: SessionOptions) -> SessionRequest {
    SessionRequest {
        battery: bank.battery(),
        package: reader(package),
        options,
        resume: None,
    }
}

fn package(len: usize) -> Vec<u8> {
    hex_file(&image(PRODUCT, NEW, len))
}

fn named(ids: &[u16]) -> SessionOptions {
    SessionOptions {
        node_id: ROption::RNone,
        modules: RVec::from(ids.to_vec()),
    }
}

fn failure(session: &BorealSession) -> Failure {
    session.status().outcome.into_option().expect("failed")
}

fn no_hook(_: &mut Bank, _: &mut BorealSession, _: Timestamp) {}

#[test]
fn two_nodes_are_updated_one_after_the_other_the_speaker_last() {
    let mut bank = Bank::new(&[(1, OLD), (2, OLD)]);
    let len = 30_000;
    let mut session =
        BorealSession::start(request(&bank, package(len), SessionOptions::default())).unwrap();
    bank.run(&mut session, Duration::from_secs(120), no_hook);
    let status = session.status();
    assert_eq!(status.phase, Phase::DONE, "{:?}", status.outcome);
    for id in [1, 2] {
        assert_eq!(bank.node(id).dict().version, NEW);
    }
    // Node 2 first, node 1 (the speaker) last; each stopped, cleared, then started.
    assert_eq!(
        bank.controls(),
        vec![(2, 0), (2, 3), (2, 1), (1, 0), (1, 3), (1, 1)]
    );
    assert_eq!(
        bank.phases,
        vec![
            Phase::TRANSFERRING,
            Phase::INSTALLING,
            Phase::RESTARTING,
            Phase::VERIFYING,
            Phase::DONE
        ]
    );
    let states: Vec<Vec<(u16, ModuleState)>> = bank
        .modules
        .iter()
        .filter(|m| !m.is_empty())
        .cloned()
        .collect();
    use ModuleState as M;
    assert_eq!(
        states,
        vec![
            vec![(1, M::PENDING), (2, M::PENDING)],
            vec![(1, M::PENDING), (2, M::UPDATING)],
            vec![(1, M::UPDATING), (2, M::DONE)],
            vec![(1, M::DONE), (2, M::DONE)],
        ]
    );
    // Bytes grow over both nodes' images, never back.
    assert!(
        bank.bytes.windows(2).all(|w| w[0].0 <= w[1].0),
        "{:?}",
        bank.bytes
    );
    assert_eq!(bank.bytes.last(), Some(&(2 * len as u64, 2 * len as u64)));
    let v = status.modules[0].version.clone().into_option().unwrap();
    assert_eq!(v.display.as_str(), "2.15");
}

#[test]
fn one_named_node_is_updated_alone() {
    let mut bank = Bank::new(&[(1, NEW), (2, NEW), (3, OLD)]);
    let mut session = BorealSession::start(request(&bank, package(9_000), named(&[3]))).unwrap();
    bank.run(&mut session, Duration::from_secs(60), no_hook);
    assert_eq!(
        session.status().phase,
        Phase::DONE,
        "{:?}",
        session.status().outcome
    );
    assert_eq!(bank.controls(), vec![(3, 0), (3, 3), (3, 1)]);
    let modules: Vec<(u16, ModuleState)> = session
        .status()
        .modules
        .iter()
        .map(|m| (m.index, m.state))
        .collect();
    // The whole bank is found and identified; the nodes not named are left alone.
    assert_eq!(
        modules,
        vec![
            (1, ModuleState::SKIPPED),
            (2, ModuleState::SKIPPED),
            (3, ModuleState::DONE)
        ]
    );
    // Nothing is sent before the heartbeats were heard for the whole window.
    assert!(bank.sent[0].0 >= Timestamp::ZERO + Duration::from_millis(2500));
}

#[test]
fn a_node_above_the_lowest_is_updated_alone_and_0x35f_keeps_the_lowest() {
    // Node 2 is not the speaker, and the bank's 0x35F keeps showing node 1's 2.10.
    let mut bank = Bank::new(&[(1, OLD), (2, OLD)]);
    let mut session = BorealSession::start(request(&bank, package(9_000), named(&[2]))).unwrap();
    bank.run(&mut session, Duration::from_secs(60), no_hook);
    let status = session.status();
    assert_eq!(status.phase, Phase::DONE, "{:?}", status.outcome);
    assert_eq!(bank.controls(), vec![(2, 0), (2, 3), (2, 1)]);
    assert_eq!(bank.node(1).dict().version, OLD);
    assert_eq!(bank.node(2).dict().version, NEW);
    assert_eq!(bank.product_info()[2..4], OLD);
    let versions: Vec<(u16, ModuleState, String)> = status
        .modules
        .iter()
        .map(|m| {
            let v = m.version.clone().into_option().unwrap();
            (m.index, m.state, v.display.into_string())
        })
        .collect();
    assert_eq!(
        versions,
        vec![
            (1, ModuleState::SKIPPED, "2.10".to_owned()),
            (2, ModuleState::DONE, "2.15".to_owned())
        ]
    );
    // No SDO download of any kind reached node 1: only reads (0x40) went to 0x601.
    assert!(
        bank.sent
            .iter()
            .filter(|(_, f)| f.id().raw() == 0x601)
            .all(|(_, f)| f.data()[0] == 0x40),
        "{:?}",
        bank.sent
    );
}

#[test]
fn a_named_node_the_bank_does_not_have_is_refused_before_any_frame() {
    let mut bank = Bank::new(&[(1, OLD), (2, OLD)]);
    let mut session = BorealSession::start(request(&bank, package(9_000), named(&[5]))).unwrap();
    bank.run(&mut session, Duration::from_secs(60), no_hook);
    let f = failure(&session);
    assert_eq!(f.code, ErrorCode::TRANSFER_FAILED);
    assert!(
        f.message.contains("names node 5, which is not in the bank")
            && f.message.contains("the bank's nodes are node 1, node 2"),
        "{f}"
    );
    assert!(bank.sent.is_empty(), "{:?}", bank.sent);
}

#[test]
fn nodes_already_current_are_skipped_and_a_foreign_node_is_left_alone() {
    let mut bank = Bank::new(&[(1, OLD), (2, NEW), (5, OLD)]);
    // Node 5 is another maker's CANopen device.
    bank.node(5).dict().vendor = 0x0000_0123;
    let speaker_count = {
        let mut p = bank.product_info();
        p[7] = 2;
        p
    };
    let mut request = request(&bank, package(9_000), SessionOptions::default());
    request.battery = BatteryIdentity::new("BOREAL").with_raw_35f(&speaker_count);
    let mut session = BorealSession::start(request).unwrap();
    bank.run(&mut session, Duration::from_secs(60), |bank, _, _| {
        // The foreign node is not part of the bank's 0x35F.
        bank.lie_35f = Some(
            bank.nodes[..2]
                .iter()
                .map(|n| n.server.dictionary().version)
                .min()
                .unwrap(),
        );
    });
    assert_eq!(
        session.status().phase,
        Phase::DONE,
        "{:?}",
        session.status().outcome
    );
    assert_eq!(bank.controls(), vec![(1, 0), (1, 3), (1, 1)]);
    let m: Vec<(u16, ModuleState)> = session
        .status()
        .modules
        .iter()
        .map(|m| (m.index, m.state))
        .collect();
    assert_eq!(m, vec![(1, ModuleState::DONE), (2, ModuleState::SKIPPED)]);
    assert_eq!(bank.node(5).dict().version, OLD);
}

#[test]
fn an_old_bootloader_stops_the_update_before_anything_is_cleared() {
    let mut bank = Bank::new(&[(1, OLD), (2, OLD)]);
    bank.node(2).dict().bootloader = [0x01, 0x10];
    let mut session =
        BorealSession::start(request(&bank, package(9_000), SessionOptions::default())).unwrap();
    bank.run(&mut session, Duration::from_secs(60), no_hook);
    let f = failure(&session);
    assert_eq!(f.code, ErrorCode(901));
    assert!(
        f.message.contains("node 2") && f.message.contains("1.10"),
        "{f}"
    );
    assert!(bank.controls().is_empty(), "{:?}", bank.controls());
    // A node whose bootloader cannot take two slots, the same.
    let mut bank = Bank::new(&[(1, OLD)]);
    bank.node(1).dict().caps = CAP_PROGRAM_DOWNLOAD;
    let mut session =
        BorealSession::start(request(&bank, package(9_000), SessionOptions::default())).unwrap();
    bank.run(&mut session, Duration::from_secs(60), no_hook);
    assert_eq!(failure(&session).code, ErrorCode(901));
}

#[test]
fn a_35f_that_disagrees_with_the_nodes_is_refused_before_anything_is_cleared() {
    let mut bank = Bank::new(&[(1, OLD), (2, OLD)]);
    bank.lie_35f = Some([0x02, 0x05]);
    let mut session =
        BorealSession::start(request(&bank, package(9_000), SessionOptions::default())).unwrap();
    bank.run(&mut session, Duration::from_secs(60), no_hook);
    let f = failure(&session);
    assert_eq!(f.code, ErrorCode::PROTOCOL_ERROR);
    assert!(
        f.message.contains("2.05") && f.message.contains("node 1: 2.10"),
        "{f}"
    );
    assert!(bank.controls().is_empty());
    // A bank that says it has three nodes when two answer.
    let mut bank = Bank::new(&[(1, OLD), (2, OLD)]);
    let mut p = bank.product_info();
    p[7] = 3;
    let mut r = request(&bank, package(9_000), SessionOptions::default());
    r.battery = BatteryIdentity::new("BOREAL").with_raw_35f(&p);
    let mut session = BorealSession::start(r).unwrap();
    bank.run(&mut session, Duration::from_secs(60), no_hook);
    let f = failure(&session);
    assert!(f.message.contains("3 nodes"), "{f}");
}

#[test]
fn a_refused_image_names_the_node_and_the_others_state() {
    let mut bank = Bank::new(&[(1, OLD), (2, OLD), (3, OLD)]);
    bank.node(3).dict().refuse_with = Some(flash_codes::CRC);
    let mut session =
        BorealSession::start(request(&bank, package(9_000), SessionOptions::default())).unwrap();
    bank.run(&mut session, Duration::from_secs(60), no_hook);
    let f = failure(&session);
    assert_eq!(f.code, ErrorCode::VERIFICATION_FAILED);
    assert!(f.message.starts_with("Verification failed: node 3"), "{f}");
    assert!(
        f.message
            .contains("node 1 pending (2.10), node 2 done (2.15)"),
        "{f}"
    );
    let m: Vec<(u16, ModuleState)> = session
        .status()
        .modules
        .iter()
        .map(|m| (m.index, m.state))
        .collect();
    assert_eq!(
        m,
        vec![
            (1, ModuleState::PENDING),
            (2, ModuleState::DONE),
            (3, ModuleState::FAILED)
        ]
    );
    // Node 3 was never started, and node 1 never touched.
    assert_eq!(
        bank.controls(),
        vec![(2, 0), (2, 3), (2, 1), (3, 0), (3, 3)]
    );
    assert_eq!(bank.node(3).dict().version, OLD);
}

#[test]
fn a_rollback_and_a_node_that_never_returns_fail_with_their_codes() {
    let mut bank = Bank::new(&[(1, OLD)]);
    bank.node(1).dict().after_start = AfterStart::RollsBack;
    let mut session =
        BorealSession::start(request(&bank, package(5_000), SessionOptions::default())).unwrap();
    bank.run(&mut session, Duration::from_secs(60), no_hook);
    let f = failure(&session);
    assert_eq!(f.code, ErrorCode::INSTALL_FAILED, "{f}");
    assert!(f.message.contains("did not start"), "{f}");

    let mut bank = Bank::new(&[(1, OLD)]);
    bank.node(1).dict().after_start = AfterStart::StaysSilent;
    let mut session =
        BorealSession::start(request(&bank, package(5_000), SessionOptions::default())).unwrap();
    let end = bank.run(&mut session, Duration::from_secs(60), no_hook);
    let f = failure(&session);
    assert_eq!(f.code, ErrorCode::RESTART_FAILED, "{f}");
    assert!(end < Timestamp::ZERO + Duration::from_secs(30));
    assert_eq!(bank.phases.last(), Some(&Phase::FAILED));
    assert!(bank.phases.contains(&Phase::RESTARTING));
}

#[test]
fn an_abort_mid_transfer_tells_the_node_and_ends_aborted() {
    let mut bank = Bank::new(&[(1, OLD)]);
    let mut session =
        BorealSession::start(request(&bank, package(60_000), SessionOptions::default())).unwrap();
    let mut aborted_at = None;
    bank.run(&mut session, Duration::from_secs(60), |_, session, now| {
        let s = session.status();
        if aborted_at.is_none() && s.bytes_done > 20_000 {
            session.abort(now, &AbortReason::new(724, "SOC below 50 %"));
            aborted_at = Some(now);
        }
    });
    let f = failure(&session);
    assert_eq!(f.code, ErrorCode::ABORTED);
    assert!(f.message.contains("724"), "{f}");
    // The abort went to node 1's SDO server: command 0x80.
    let at = aborted_at.unwrap();
    assert!(
        bank.sent
            .iter()
            .any(|(t, f)| *t >= at && f.id().raw() == 0x601 && f.data()[0] == 0x80)
    );
    assert_eq!(bank.node(1).dict().version, OLD);
}

#[test]
fn a_bad_package_or_a_foreign_bank_is_refused_when_the_session_starts() {
    let bank = Bank::new(&[(1, OLD)]);
    let mut file = package(5_000);
    file.truncate(file.len() - 12);
    let e = BorealSession::start(request(&bank, file, SessionOptions::default()))
        .err()
        .unwrap();
    assert_eq!(e.code, ErrorCode::PACKAGE_INVALID);
    assert!(e.message.starts_with("at line"), "{e}");
    let other = hex_file(&image(0xB205, NEW, 5_000));
    let e = BorealSession::start(request(&bank, other, SessionOptions::default()))
        .err()
        .unwrap();
    assert_eq!(e.code, ErrorCode::PACKAGE_WRONG_PRODUCT);
    let e = BorealSession::start(request(&bank, package(5_000), named(&[20])))
        .err()
        .unwrap();
    assert!(e.message.contains("node 20"), "{e}");
    // The image's first byte is where the protocol says.
    assert_eq!(APP_START, 0x0801_0000);
}
