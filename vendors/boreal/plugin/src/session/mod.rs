//! The transfer session: find the bank's nodes, identify them, run the CiA 302-3 program
//! download on each in turn, wait for each restart, and cross-check the versions
//! (`PROTOCOL.md`, "Update sequence"), as a sans-IO state machine over the CANopen pieces
//! of `bmsfw-protocols`.
//!
//! | state | phase shown | what goes on the bus |
//! |---|---|---|
//! | `Discover` | Transferring | nothing: heartbeats 0x701-0x710 are heard for 2.5 s; nodes named by the options that send none are refused here |
//! | `Identify` | Transferring | SDO reads of 0x1018:01, 0x1018:02, 0x100A, 0x2F10:01, 0x2F10:02 per node |
//! | `Program` | Transferring; Installing from the flash check of the last node on | 0x1F51 = 0, 3; 0x1F57; block download to 0x1F50; 0x1F57; 0x1F56; 0x1F51 = 1 |
//! | `Restart` | Transferring; Restarting for the last node | 0x2F10:03 every 500 ms until it reads 0 |
//! | `Confirm` | Transferring; Verifying for the last node | 0x100A: the node's new version |
//! | `Verify` | Verifying | 0x100A of every node, then a 0x35F that shows their lowest |
//!
//! The whole bank is always found and identified, also when the options name nodes: a
//! named node the bank does not have is refused before the first frame, 0x35F is checked
//! against every node, and the nodes not named are reported skipped with their versions
//! (what the engine needs to know whether 0x35F can show the update).
//!
//! Nodes other than the last restart while the session still shows Transferring: the
//! bank's speaker (the node broadcasting BMS-Can) is always updated last, so BMS-Can
//! only goes silent in the Restarting phase. A Boreal bootloader cannot resume an
//! interrupted download (the clear erases the slot): the checkpoint is empty, and a new
//! session skips the nodes that already run the package's version.

mod bank;
mod failure;
mod read;

use crate::device::BankInfo;
use crate::hex::ImageReader;
use crate::package::{ImageInfo, check};
use crate::protocol::{
    BOOT_ACTIVATION_PENDING, BOOT_ROLLED_BACK, BOOT_RUNNING, CANOPEN_VENDOR_ID, CAP_DUAL_SLOT,
    CAP_PROGRAM_DOWNLOAD, CODE_BOOTLOADER_TOO_OLD, CROSS_CHECK_WINDOW, DISCOVERY_WINDOW,
    FIRST_NODE, FLASH_BUSY_LIMIT, FLASH_POLL, HEARTBEAT_BASE, LAST_NODE, MIN_BOOTLOADER,
    NMT_BOOT_UP, OBJ_BOOT_STATE, OBJ_BOOTLOADER_CAPS, OBJ_BOOTLOADER_VERSION, OBJ_PRODUCT_CODE,
    OBJ_SOFTWARE_VERSION, OBJ_VENDOR_ID, PRODUCT_INFO_ID, READ_ATTEMPTS, RESTART_MAX, RESTART_POLL,
    RESTART_POLL_TIMEOUT, SDO_TIMEOUT, channel,
};
use crate::version::Bcd;
use bank::{Node, Selection, summary, versions};
use bmsfw_plugin_api::{
    AbortReason, CanFrame, ErrorCode, Failure, ModuleState, PackageReader, Phase, SessionRequest,
    SessionStatus, Timestamp,
};
use bmsfw_protocols::canopen::{
    DownloadMethod, Finish, NodeId, ObjectAddress, ProgramConfig, ProgramDownload, ProgramEvent,
    ProgramPhase, SdoClientConfig, SoftwareIdCheck,
};
use read::{Read, ReadOutcome};
use std::collections::{BTreeSet, VecDeque};

pub use bank::Identity;

/// The reads that identify a node, in order.
const IDENTITY_READS: [ObjectAddress; 5] = [
    OBJ_VENDOR_ID,
    OBJ_PRODUCT_CODE,
    OBJ_SOFTWARE_VERSION,
    OBJ_BOOTLOADER_VERSION,
    OBJ_BOOTLOADER_CAPS,
];

/// What the restart poll is doing.
enum Poll {
    /// The next boot-state read goes out at this time.
    Waiting(Timestamp),
    /// A boot-state read went out at this time.
    Reading(Timestamp, Read),
}

/// The final cross-check.
struct Verify {
    /// Nodes whose version is still to be read (indices into the nodes).
    pending: VecDeque<usize>,
    read: Option<Read>,
    /// When verifying began: older 0x35F frames do not count.
    since: Timestamp,
    /// Set once every node answered: the lowest version (what 0x35F must show) and the
    /// end of the wait for it.
    expect: Option<(Bcd, Timestamp)>,
}

/// Where the session is.
enum State {
    /// Created; the first call with the time starts it.
    NotStarted,
    /// Listening to heartbeats until then.
    Discover(Timestamp),
    /// Reading `IDENTITY_READS[step]` of node `node`.
    Identify {
        node: usize,
        step: usize,
        read: Read,
    },
    /// The program download of `order[position]`.
    Program {
        position: usize,
        flow: Box<ProgramDownload>,
    },
    /// Waiting for `order[position]` to restart.
    Restart {
        position: usize,
        poll: Poll,
        deadline: Timestamp,
    },
    /// Reading the new version of `order[position]`.
    Confirm { position: usize, read: Read },
    /// Reading every node's version and checking 0x35F.
    Verify(Verify),
    /// Finished.
    Done,
    /// Failed with this failure.
    Failed(Failure),
}

/// A Boreal update session.
pub struct BorealSession {
    package: PackageReader,
    image: ImageReader,
    info: ImageInfo,
    bank: BankInfo,
    selection: Selection,
    nodes: Vec<Node>,
    /// The nodes to update, in order (indices into `nodes`), the speaker last.
    order: Vec<usize>,
    heard: BTreeSet<u8>,
    /// The last 0x35F payload and when it came.
    last_35f: Option<(Timestamp, Vec<u8>)>,
    state: State,
    /// Frames to send before anything else (aborts).
    outbox: VecDeque<CanFrame>,
    /// One sub-block of the image at a time.
    block: Vec<u8>,
}

fn program_config(node: NodeId) -> ProgramConfig {
    let mut sdo = SdoClientConfig::new(channel(node));
    sdo.timeout = SDO_TIMEOUT;
    ProgramConfig {
        program: 1,
        method: DownloadMethod::Block,
        poll_interval: FLASH_POLL,
        busy_limit: FLASH_BUSY_LIMIT,
        software_id: SoftwareIdCheck::Crc32OfImage,
        finish: Finish::Start,
        ..ProgramConfig::new(sdo)
    }
}

/// A little-endian unsigned value of 1 to 4 bytes.
fn unsigned(data: &[u8]) -> Option<u32> {
    (1..=4).contains(&data.len()).then(|| {
        let mut bytes = [0u8; 4];
        bytes[..data.len()].copy_from_slice(data);
        u32::from_le_bytes(bytes)
    })
}

impl BorealSession {
    /// A session for the request's package, checked against the battery's 0x35F.
    pub fn start(request: SessionRequest) -> Result<BorealSession, Failure> {
        let checked = check(&request.package).map_err(|e| {
            Failure::new(e.code, format!("at {}: {}", e.location, e.message.as_str()))
        })?;
        let bank = BankInfo::parse(request.battery.raw_35f())
            .map_err(|e| Failure::new(ErrorCode::PROTOCOL_ERROR, e))?;
        if bank.product_code != checked.info.product_code {
            return Err(Failure::new(
                ErrorCode::PACKAGE_WRONG_PRODUCT,
                format!(
                    "the package is for product 0x{:04X}, the bank is 0x{:04X}",
                    checked.info.product_code, bank.product_code
                ),
            ));
        }
        let selection = Selection::from_options(&request.options)?;
        // `request.resume` is ignored: the bootloader cannot resume a download.
        Ok(BorealSession {
            package: request.package,
            image: checked.image,
            info: checked.info,
            bank,
            selection,
            nodes: Vec::new(),
            order: Vec::new(),
            heard: BTreeSet::new(),
            last_35f: None,
            state: State::NotStarted,
            outbox: VecDeque::new(),
            block: Vec::new(),
        })
    }

    fn ensure_started(&mut self, now: Timestamp) {
        if !matches!(self.state, State::NotStarted) {
            return;
        }
        self.state = State::Discover(now + DISCOVERY_WINDOW);
    }

    /// Starts identifying node `node` (or evaluates the nodes when none is left).
    fn identify(&mut self, now: Timestamp, node: usize) {
        match self.nodes.get(node) {
            Some(n) => {
                let read = Read::start(now, n.id, IDENTITY_READS[0], SDO_TIMEOUT, READ_ATTEMPTS);
                self.state = State::Identify {
                    node,
                    step: 0,
                    read,
                };
            }
            None => self.evaluate(now),
        }
    }

    fn discovered(&mut self, now: Timestamp) {
        self.nodes = self
            .heard
            .iter()
            .filter_map(|&id| NodeId::new(id))
            .map(Node::new)
            .collect();
        if self.nodes.is_empty() {
            return self.fail(
                now,
                Failure::new(
                    ErrorCode::TIMEOUT,
                    format!(
                        "no Boreal node sent a heartbeat (0x{:03X}-0x{:03X}) within {} ms",
                        HEARTBEAT_BASE + u16::from(FIRST_NODE),
                        HEARTBEAT_BASE + u16::from(LAST_NODE),
                        DISCOVERY_WINDOW.as_millis()
                    ),
                ),
            );
        }
        if let Selection::Named(named) = &self.selection
            && let Some(missing) = named.iter().find(|id| !self.heard.contains(&id.get()))
        {
            let heard: Vec<String> = self.heard.iter().map(|id| format!("node {id}")).collect();
            let f = Failure::new(
                ErrorCode::TRANSFER_FAILED,
                format!(
                    "the update names {missing}, which is not in the bank (no heartbeat within \
                     {} ms): the bank's nodes are {}; nothing was sent",
                    DISCOVERY_WINDOW.as_millis(),
                    heard.join(", ")
                ),
            );
            return self.fail(now, f);
        }
        self.identify(now, 0);
    }

    fn identified(&mut self, now: Timestamp, outcome: ReadOutcome) {
        let State::Identify { node, step, .. } = self.state else {
            return;
        };
        let id = self.nodes[node].id;
        let object = IDENTITY_READS[step];
        let data = match outcome {
            ReadOutcome::Value(data) => data,
            ReadOutcome::Refused(code)
                if object == OBJ_BOOTLOADER_VERSION || object == OBJ_BOOTLOADER_CAPS =>
            {
                return self.fail(
                    now,
                    Failure::new(
                        ErrorCode(CODE_BOOTLOADER_TOO_OLD),
                        format!(
                            "{id} does not report its bootloader ({}): its firmware has no CAN \
                             bootloader; update it with the Boreal service tool",
                            code.description()
                        ),
                    ),
                );
            }
            other => {
                let doing = format!("reading {object}");
                return self.fail(now, failure::read(id, &doing, &other));
            }
        };
        let malformed = |what: &str| {
            Failure::new(
                ErrorCode::PROTOCOL_ERROR,
                format!("{id} answered {data:02X?} for {object}: {what}"),
            )
        };
        let identity = &mut self.nodes[node].identity;
        match step {
            0 => {
                let Some(vendor) = unsigned(&data) else {
                    return self.fail(now, malformed("not a vendor-id"));
                };
                if vendor != CANOPEN_VENDOR_ID {
                    if !self.selection.names(id) {
                        // Another maker's CANopen node on the bus: not part of the bank.
                        self.nodes.remove(node);
                        return self.identify(now, node);
                    }
                    return self.fail(
                        now,
                        Failure::new(
                            ErrorCode::PACKAGE_WRONG_PRODUCT,
                            format!(
                                "{id} is not a Boreal BMS (vendor-id 0x{vendor:08X}, Boreal's \
                                 is 0x{CANOPEN_VENDOR_ID:08X})"
                            ),
                        ),
                    );
                }
                identity.vendor = Some(vendor);
            }
            1 => match unsigned(&data) {
                Some(p) => identity.product = Some(p),
                None => return self.fail(now, malformed("not a product code")),
            },
            2 => match Bcd::parse_software_version(&data) {
                Ok(v) => identity.version = Some(v),
                Err(e) => return self.fail(now, malformed(&e)),
            },
            3 => match <[u8; 2]>::try_from(data.as_slice()).ok().and_then(Bcd::new) {
                Some(v) => identity.bootloader = Some(v),
                None => return self.fail(now, malformed("not a BCD version")),
            },
            _ => match data.as_slice() {
                [caps] => identity.caps = Some(*caps),
                _ => return self.fail(now, malformed("not one byte")),
            },
        }
        match IDENTITY_READS.get(step + 1) {
            Some(&next) => {
                let read = Read::start(now, id, next, SDO_TIMEOUT, READ_ATTEMPTS);
                self.state = State::Identify {
                    node,
                    step: step + 1,
                    read,
                };
            }
            None => self.identify(now, node + 1),
        }
    }

    /// Every node answered: checks them against the package and the bank's 0x35F, and
    /// decides what to update.
    fn evaluate(&mut self, now: Timestamp) {
        if self.nodes.is_empty() {
            return self.fail(
                now,
                Failure::new(
                    ErrorCode::TIMEOUT,
                    format!("none of the nodes heard ({:?}) is a Boreal BMS", self.heard),
                ),
            );
        }
        if let Err(f) = self.check_nodes() {
            return self.fail(now, f);
        }
        let target = self.info.version;
        let speaker = self
            .bank
            .nodes
            .map(|(speaker, _)| speaker)
            .unwrap_or(self.nodes[0].id.get());
        let mut order: Vec<usize> = Vec::new();
        for (i, n) in self.nodes.iter_mut().enumerate() {
            let update = match &self.selection {
                // Nodes already current are left alone.
                Selection::Bank => n.identity.version != Some(target),
                // Named nodes are updated even when current; the others are not touched.
                Selection::Named(named) => named.contains(&n.id),
            };
            if update {
                order.push(i);
            } else {
                n.state = ModuleState::SKIPPED;
            }
        }
        // The speaker last: BMS-Can goes silent only in the session's Restarting phase.
        order.sort_by_key(|&i| (self.nodes[i].id.get() == speaker, self.nodes[i].id));
        self.order = order;
        if self.order.is_empty() {
            self.verify(now);
        } else {
            self.program(now, 0);
        }
    }

    fn check_nodes(&self) -> Result<(), Failure> {
        if let Some((speaker, count)) = self.bank.nodes {
            let ids: Vec<u8> = self.nodes.iter().map(|n| n.id.get()).collect();
            if ids.len() != usize::from(count) || !ids.contains(&speaker) {
                return Err(Failure::new(
                    ErrorCode::PROTOCOL_ERROR,
                    format!(
                        "the bank's 0x35F names {count} nodes with node {speaker} speaking; \
                         the Boreal nodes answering are {ids:?}: a node is missing or \
                         misconfigured, check the bank's cabling and node switches"
                    ),
                ));
            }
        }
        let needed = Bcd(MIN_BOOTLOADER).max(self.info.min_bootloader);
        for n in &self.nodes {
            let Identity {
                product: Some(product),
                version: Some(_),
                bootloader: Some(bootloader),
                caps: Some(caps),
                ..
            } = n.identity
            else {
                return Err(Failure::new(
                    ErrorCode::PROTOCOL_ERROR,
                    format!("{} was not fully identified", n.id),
                ));
            };
            if product != u32::from(self.info.product_code) {
                return Err(Failure::new(
                    ErrorCode::PACKAGE_WRONG_PRODUCT,
                    format!(
                        "{} is product 0x{product:04X}; the package is for 0x{:04X}",
                        n.id, self.info.product_code
                    ),
                ));
            }
            let capable = CAP_PROGRAM_DOWNLOAD | CAP_DUAL_SLOT;
            if caps & capable != capable || bootloader < needed {
                return Err(Failure::new(
                    ErrorCode(CODE_BOOTLOADER_TOO_OLD),
                    format!(
                        "{}'s bootloader {bootloader} cannot install this package over CAN (it \
                         needs {needed} or later with program download and two slots); update \
                         it with the Boreal service tool",
                        n.id
                    ),
                ));
            }
        }
        // The 0x35F rule: bytes 2-3 show the lowest version of the bank.
        let lowest = self.lowest_version();
        if Some(self.bank.firmware) != lowest {
            return Err(Failure::new(
                ErrorCode::PROTOCOL_ERROR,
                format!(
                    "0x35F shows firmware {} for the bank but the nodes report {}: the bank's \
                     speaker and its nodes disagree",
                    self.bank.firmware,
                    versions(&self.nodes)
                ),
            ));
        }
        Ok(())
    }

    fn lowest_version(&self) -> Option<Bcd> {
        self.nodes.iter().filter_map(|n| n.identity.version).min()
    }

    fn is_last(&self, position: usize) -> bool {
        position + 1 == self.order.len()
    }

    fn program(&mut self, now: Timestamp, position: usize) {
        let node = self.order[position];
        let n = &mut self.nodes[node];
        n.state = ModuleState::UPDATING;
        n.acknowledged = 0;
        let mut flow = ProgramDownload::new(program_config(n.id), self.info.image_len);
        flow.start(now);
        self.state = State::Program {
            position,
            flow: Box::new(flow),
        };
    }

    fn program_event(&mut self, now: Timestamp, event: ProgramEvent) {
        let State::Program { position, .. } = self.state else {
            return;
        };
        let node = self.order[position];
        match event {
            ProgramEvent::NeedData { offset, len } => {
                self.block.resize(len, 0);
                if let Err(e) = self.image.read(&self.package, offset, &mut self.block) {
                    return self.fail(
                        now,
                        Failure::new(
                            ErrorCode::TRANSFER_FAILED,
                            format!("reading the package at {}: {}", e.location, e.message),
                        ),
                    );
                }
                if let State::Program { flow, .. } = &mut self.state {
                    if let Err(e) = flow.provide_data(now, &self.block) {
                        self.fail(
                            now,
                            Failure::new(
                                ErrorCode::TRANSFER_FAILED,
                                format!("the download refused image data: {e}"),
                            ),
                        );
                    }
                }
            }
            ProgramEvent::Progress { acknowledged, .. } => {
                self.nodes[node].acknowledged = acknowledged;
            }
            ProgramEvent::Phase(_) | ProgramEvent::SoftwareId(_) => {}
            ProgramEvent::Done { .. } => {
                self.nodes[node].acknowledged = u64::from(self.info.image_len);
                self.state = State::Restart {
                    position,
                    poll: Poll::Waiting(now + RESTART_POLL),
                    deadline: now + RESTART_MAX,
                };
            }
            ProgramEvent::Failed(error) => {
                let failure = failure::program(self.nodes[node].id, &error);
                self.fail_node(now, node, failure);
            }
        }
    }

    fn restart_answer(&mut self, now: Timestamp, outcome: ReadOutcome) {
        let State::Restart { position, poll, .. } = &mut self.state else {
            return;
        };
        let position = *position;
        let since = match poll {
            Poll::Reading(since, _) => *since,
            Poll::Waiting(_) => now,
        };
        // Polls start every 500 ms, however long each waited for its answer.
        *poll = Poll::Waiting(since + RESTART_POLL);
        let node = self.order[position];
        let id = self.nodes[node].id;
        let state = match outcome {
            // Silence is expected while the node restarts: poll again.
            ReadOutcome::Silent { .. } => return,
            ReadOutcome::Value(data) if data.len() == 1 => data[0],
            other => {
                let f = failure::read(id, "waiting for its restart", &other);
                return self.fail_node(now, node, f);
            }
        };
        match state {
            BOOT_ACTIVATION_PENDING => {}
            BOOT_RUNNING => {
                let read = Read::start(now, id, OBJ_SOFTWARE_VERSION, SDO_TIMEOUT, READ_ATTEMPTS);
                self.state = State::Confirm { position, read };
            }
            BOOT_ROLLED_BACK => self.fail_node(
                now,
                node,
                Failure::new(
                    ErrorCode::INSTALL_FAILED,
                    format!(
                        "{id}: the new firmware {} did not start; the node went back to its \
                         previous firmware",
                        self.info.version
                    ),
                ),
            ),
            other => self.fail_node(
                now,
                node,
                Failure::new(
                    ErrorCode::PROTOCOL_ERROR,
                    format!("{id} reports an unknown boot state {other}"),
                ),
            ),
        }
    }

    fn confirmed(&mut self, now: Timestamp, outcome: ReadOutcome) {
        let State::Confirm { position, .. } = self.state else {
            return;
        };
        let node = self.order[position];
        let id = self.nodes[node].id;
        let running = match outcome {
            ReadOutcome::Value(text) => match Bcd::parse_software_version(&text) {
                Ok(v) => v,
                Err(e) => {
                    let f = Failure::new(
                        ErrorCode::PROTOCOL_ERROR,
                        format!("{id}'s software version after its restart: {e}"),
                    );
                    return self.fail_node(now, node, f);
                }
            },
            other => {
                let f = failure::read(id, "reading its version after the restart", &other);
                return self.fail_node(now, node, f);
            }
        };
        self.nodes[node].identity.version = Some(running);
        if running != self.info.version {
            let f = Failure::new(
                ErrorCode::VERSION_MISMATCH,
                format!(
                    "{id} runs {running} after its restart; the package is {}",
                    self.info.version
                ),
            );
            return self.fail_node(now, node, f);
        }
        self.nodes[node].state = ModuleState::DONE;
        if self.is_last(position) {
            self.verify(now);
        } else {
            self.program(now, position + 1);
        }
    }

    fn verify(&mut self, now: Timestamp) {
        let mut v = Verify {
            pending: (0..self.nodes.len()).collect(),
            read: None,
            since: now,
            expect: None,
        };
        if let Some(&first) = v.pending.front() {
            let id = self.nodes[first].id;
            v.read = Some(Read::start(
                now,
                id,
                OBJ_SOFTWARE_VERSION,
                SDO_TIMEOUT,
                READ_ATTEMPTS,
            ));
        }
        self.state = State::Verify(v);
    }

    fn verify_answer(&mut self, now: Timestamp, outcome: ReadOutcome) {
        let State::Verify(v) = &mut self.state else {
            return;
        };
        let Some(node) = v.pending.pop_front() else {
            return;
        };
        v.read = None;
        let id = self.nodes[node].id;
        let version = match outcome {
            ReadOutcome::Value(text) => Bcd::parse_software_version(&text).map_err(|e| {
                Failure::new(
                    ErrorCode::PROTOCOL_ERROR,
                    format!("{id}'s software version: {e}"),
                )
            }),
            other => Err(failure::read(id, "reading its version", &other)),
        };
        let version = match version {
            Ok(v) => v,
            Err(f) => return self.fail(now, f),
        };
        self.nodes[node].identity.version = Some(version);
        let State::Verify(v) = &mut self.state else {
            return;
        };
        if let Some(&next) = v.pending.front() {
            let id = self.nodes[next].id;
            v.read = Some(Read::start(
                now,
                id,
                OBJ_SOFTWARE_VERSION,
                SDO_TIMEOUT,
                READ_ATTEMPTS,
            ));
            return;
        }
        let Some(lowest) = self.lowest_version() else {
            return;
        };
        if let State::Verify(v) = &mut self.state {
            v.expect = Some((lowest, now + CROSS_CHECK_WINDOW));
        }
        self.cross_check(now);
    }

    /// Ends the session once a 0x35F heard while verifying agrees with the nodes, or
    /// fails it when none did in time.
    fn cross_check(&mut self, now: Timestamp) {
        let State::Verify(Verify {
            since,
            expect: Some((expect, deadline)),
            ..
        }) = self.state
        else {
            return;
        };
        let shown = self
            .last_35f
            .as_ref()
            .filter(|(at, _)| *at >= since)
            .and_then(|(_, raw)| BankInfo::parse(raw).ok())
            .map(|b| b.firmware);
        match shown {
            Some(shown) if shown == expect => self.state = State::Done,
            _ if now >= deadline => {
                let seen =
                    shown.map_or("no 0x35F frame".to_owned(), |v| format!("0x35F shows {v}"));
                self.fail(
                    now,
                    Failure::new(
                        ErrorCode::VERSION_MISMATCH,
                        format!(
                            "{seen} within {} ms, but the nodes run {}",
                            CROSS_CHECK_WINDOW.as_millis(),
                            versions(&self.nodes)
                        ),
                    ),
                );
            }
            _ => {}
        }
    }

    fn fail_node(&mut self, now: Timestamp, node: usize, failure: Failure) {
        self.nodes[node].state = ModuleState::FAILED;
        let others = summary(&self.nodes, self.nodes[node].id);
        let message = if others.is_empty() {
            failure.message.into_string()
        } else {
            format!("{}; other nodes: {others}", failure.message)
        };
        self.fail(now, Failure::new(failure.code, message));
    }

    fn fail(&mut self, now: Timestamp, failure: Failure) {
        match &mut self.state {
            State::Program { flow, .. } => {
                flow.abort(now);
                while let Some(frame) = flow.poll_transmit(now) {
                    self.outbox.push_back(frame);
                }
            }
            State::Identify { read, .. }
            | State::Confirm { read, .. }
            | State::Restart {
                poll: Poll::Reading(_, read),
                ..
            }
            | State::Verify(Verify {
                read: Some(read), ..
            }) => {
                read.cancel(now);
                while let Some(frame) = read.poll_transmit(now) {
                    self.outbox.push_back(frame);
                }
            }
            _ => {}
        }
        self.state = State::Failed(failure);
    }

    /// Handles everything the active part has to report, until nothing changes.
    fn drive(&mut self, now: Timestamp) {
        loop {
            let progressed = match &mut self.state {
                State::Identify { read, .. } => match read.poll_outcome(now) {
                    Some(o) => {
                        self.identified(now, o);
                        true
                    }
                    None => false,
                },
                State::Program { flow, .. } => match flow.poll_event() {
                    Some(e) => {
                        self.program_event(now, e);
                        true
                    }
                    None => false,
                },
                State::Restart {
                    poll: Poll::Reading(_, read),
                    ..
                } => match read.poll_outcome(now) {
                    Some(o) => {
                        self.restart_answer(now, o);
                        true
                    }
                    None => false,
                },
                State::Confirm { read, .. } => match read.poll_outcome(now) {
                    Some(o) => {
                        self.confirmed(now, o);
                        true
                    }
                    None => false,
                },
                State::Verify(Verify {
                    read: Some(read), ..
                }) => match read.poll_outcome(now) {
                    Some(o) => {
                        self.verify_answer(now, o);
                        true
                    }
                    None => false,
                },
                _ => false,
            };
            if !progressed {
                break;
            }
        }
    }

    /// The session's own timers: the end of discovery, restart polls and limits, the
    /// cross-check's window.
    fn timers(&mut self, now: Timestamp) {
        match &mut self.state {
            State::Discover(until) if now >= *until => self.discovered(now),
            State::Restart {
                position,
                poll: Poll::Waiting(at),
                deadline,
            } => {
                let (position, at, deadline) = (*position, *at, *deadline);
                if now >= deadline {
                    let node = self.order[position];
                    let f = Failure::new(
                        ErrorCode::RESTART_FAILED,
                        format!(
                            "{} did not come back within {} s of its restart",
                            self.nodes[node].id,
                            RESTART_MAX.as_secs()
                        ),
                    );
                    return self.fail_node(now, node, f);
                }
                if now >= at {
                    let id = self.nodes[self.order[position]].id;
                    let read = Read::start(now, id, OBJ_BOOT_STATE, RESTART_POLL_TIMEOUT, 1);
                    if let State::Restart { poll, .. } = &mut self.state {
                        *poll = Poll::Reading(now, read);
                    }
                }
            }
            State::Verify(_) => self.cross_check(now),
            _ => {}
        }
    }

    fn handle_heartbeat(&mut self, now: Timestamp, node: u8, state: u8) {
        match &mut self.state {
            State::Discover(_) => {
                self.heard.insert(node);
            }
            State::Restart {
                position,
                poll: Poll::Waiting(at),
                ..
            } if state == NMT_BOOT_UP && self.nodes[self.order[*position]].id.get() == node => {
                // The node announces its boot: ask at once.
                *at = now;
            }
            _ => {}
        }
    }

    fn phase(&self) -> Phase {
        match &self.state {
            State::NotStarted | State::Discover(_) | State::Identify { .. } => Phase::TRANSFERRING,
            State::Program { position, flow } => {
                let checking = matches!(
                    flow.phase(),
                    ProgramPhase::Flash | ProgramPhase::Verify | ProgramPhase::Start
                );
                if self.is_last(*position) && checking {
                    Phase::INSTALLING
                } else {
                    Phase::TRANSFERRING
                }
            }
            State::Restart { position, .. } if self.is_last(*position) => Phase::RESTARTING,
            State::Confirm { position, .. } if self.is_last(*position) => Phase::VERIFYING,
            State::Restart { .. } | State::Confirm { .. } => Phase::TRANSFERRING,
            State::Verify(_) => Phase::VERIFYING,
            State::Done => Phase::DONE,
            State::Failed(_) => Phase::FAILED,
        }
    }
}

impl bmsfw_plugin_api::Session for BorealSession {
    fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        let raw = frame.id().raw();
        if frame.id() == PRODUCT_INFO_ID {
            self.last_35f = Some((now, frame.data().to_vec()));
            self.cross_check(now);
            return;
        }
        let heartbeats = u32::from(HEARTBEAT_BASE + u16::from(FIRST_NODE))
            ..=u32::from(HEARTBEAT_BASE + u16::from(LAST_NODE));
        if !frame.id().is_extended() && heartbeats.contains(&raw) {
            if let [state] = frame.data() {
                self.handle_heartbeat(now, (raw - u32::from(HEARTBEAT_BASE)) as u8, *state);
                self.timers(now);
            }
            return;
        }
        match &mut self.state {
            State::Identify { read, .. }
            | State::Confirm { read, .. }
            | State::Restart {
                poll: Poll::Reading(_, read),
                ..
            }
            | State::Verify(Verify {
                read: Some(read), ..
            }) => read.handle_frame(now, frame),
            State::Program { flow, .. } => flow.handle_frame(now, frame),
            _ => {}
        }
        self.drive(now);
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        self.ensure_started(now);
        match &mut self.state {
            State::Identify { read, .. }
            | State::Confirm { read, .. }
            | State::Restart {
                poll: Poll::Reading(_, read),
                ..
            }
            | State::Verify(Verify {
                read: Some(read), ..
            }) => read.handle_timeout(now),
            State::Program { flow, .. } => flow.handle_timeout(now),
            _ => {}
        }
        self.drive(now);
        self.timers(now);
        self.drive(now);
    }

    fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        self.ensure_started(now);
        if let Some(frame) = self.outbox.pop_front() {
            return Some(frame);
        }
        let frame = match &mut self.state {
            State::Identify { read, .. }
            | State::Confirm { read, .. }
            | State::Restart {
                poll: Poll::Reading(_, read),
                ..
            }
            | State::Verify(Verify {
                read: Some(read), ..
            }) => read.poll_transmit(now),
            State::Program { flow, .. } => flow.poll_transmit(now),
            _ => None,
        };
        self.drive(now);
        frame.or_else(|| self.outbox.pop_front())
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        let earliest = |a: Option<Timestamp>, b: Option<Timestamp>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match &self.state {
            // Start as soon as the engine looks.
            State::NotStarted => Some(Timestamp::ZERO),
            State::Discover(until) => Some(*until),
            State::Identify { read, .. } | State::Confirm { read, .. } => read.poll_timeout(),
            State::Program { flow, .. } => flow.poll_timeout(),
            State::Restart { poll, deadline, .. } => match poll {
                Poll::Waiting(at) => Some((*at).min(*deadline)),
                Poll::Reading(_, read) => earliest(read.poll_timeout(), Some(*deadline)),
            },
            State::Verify(v) => earliest(
                v.read.as_ref().and_then(Read::poll_timeout),
                v.expect.map(|(_, deadline)| deadline),
            ),
            State::Done | State::Failed(_) => None,
        }
    }

    fn status(&self) -> SessionStatus {
        let image = u64::from(self.info.image_len);
        let total = image * self.order.len() as u64;
        let done: u64 = self
            .order
            .iter()
            .map(|&i| self.nodes[i].acknowledged.min(image))
            .sum();
        let mut status = match &self.state {
            State::Failed(failure) => SessionStatus::failed(failure.clone(), done, total),
            _ => SessionStatus::new(self.phase(), done, total),
        };
        status.modules = self.nodes.iter().map(Node::progress).collect();
        status
    }

    fn abort(&mut self, now: Timestamp, reason: &AbortReason) {
        if matches!(self.state, State::Done | State::Failed(_)) {
            return;
        }
        let failure = Failure::new(
            ErrorCode::ABORTED,
            format!(
                "aborted by the GX ({}: {})",
                reason.code,
                reason.message.as_str()
            ),
        );
        self.fail(now, failure);
    }
}

#[cfg(test)]
mod tests;
