//! The Coral ReefStack master BMS as a sans-IO model: BMS-Can telemetry from the
//! simulator's battery model, the commands of `PROTOCOL.md`, the pipelined transfer's
//! receiver, the staging area, the bundle check, the master's own image and its modules,
//! updated one at a time in modelled time; restarts and power cuts.

use crate::bundle::{CheckedBundle, check};
use crate::protocol::{
    BUSY_INTERVAL, COMMAND_ID, CoralTiming, DATA_BASE, MAX_MODULES, PROTOCOL_REVISION, REPLY_ID,
    SEQUENCE_MASK, STAGING_SIZE, WINDOW, code, master, module,
};
use crate::receiver::{Notice, Receiver, ReceiverStats, Staging};
use bmsfw_plugin_api::{CanFrame, Timestamp};
use bmsfw_sim::battery::{BatteryConfig, BatteryModel, ConfigError, PowerState, Telemetry};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::time::Duration;

/// One module behind the master, as configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleConfig {
    /// Its hardware revision.
    pub hw_revision: u8,
    /// The version it runs at start, `[major, minor, build]`.
    pub firmware: [u8; 3],
}

/// What a ReefStack is, beyond its BMS-Can identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoralConfig {
    /// Product code.
    pub product_code: u16,
    /// The master's firmware at start, `[major, minor, build]`.
    pub firmware: [u8; 3],
    /// The master's hardware revision.
    pub master_hw: u8,
    /// The modules, 1 to 16.
    pub modules: Vec<ModuleConfig>,
    /// How long things take.
    pub timing: CoralTiming,
    /// Seed of the master's randomness (tokens).
    pub seed: u64,
}

impl CoralConfig {
    /// A master of `product_code` running `firmware` (hardware revision 2) with `modules`
    /// modules of hardware revision 1 running v2.03 (build 01), the times of
    /// `PROTOCOL.md`.
    pub fn new(product_code: u16, firmware: [u8; 3], modules: usize) -> CoralConfig {
        CoralConfig {
            product_code,
            firmware,
            master_hw: 2,
            modules: vec![
                ModuleConfig {
                    hw_revision: 1,
                    firmware: [2, 0x03, 0x01],
                };
                modules
            ],
            timing: CoralTiming::default(),
            seed: 0xC0A1_5EED,
        }
    }
}

/// Why a master could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CoralConfigError {
    /// The BMS-Can side is invalid.
    #[error(transparent)]
    Battery(#[from] ConfigError),
    /// A ReefStack has 1 to 16 modules.
    #[error("a ReefStack has 1 to 16 modules, not {0}")]
    Modules(usize),
}

/// A fault a test arms; it fires once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Module `module` (1-based) fails with `error` (`0x30` to `0x33`) after `permille`
    /// thousandths of its update.
    ModuleFails {
        /// The module.
        module: u8,
        /// Its error code.
        error: u8,
        /// How far its update gets, in thousandths.
        permille: u16,
    },
    /// Writing the master's own image fails (error `0x41`).
    MasterFlash,
}

/// Whether the master runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Telemetry and answers.
    Running,
    /// RESTART was accepted: its answer goes out, then the master restarts.
    ShuttingDown,
    /// Restarting, silent until then.
    Restarting(Timestamp),
    /// No power.
    Off,
}

/// One module as the master knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleStatus {
    /// Hardware revision.
    pub hw_revision: u8,
    /// The version it runs.
    pub version: [u8; 3],
    /// Its state in the last update (`protocol::module`).
    pub state: u8,
    /// Its last error.
    pub error: u8,
}

/// The update the master is in (RAM).
#[derive(Clone, Debug)]
enum Update {
    Idle,
    Erasing {
        token: u32,
        len: u64,
        until: Timestamp,
        next_busy: Timestamp,
    },
    Receiving(Receiver),
    Checking {
        until: Timestamp,
        next_busy: Timestamp,
    },
    Ready(CheckedBundle),
    Installing {
        checked: CheckedBundle,
        until: Timestamp,
    },
    Propagating {
        checked: CheckedBundle,
        current: Option<Current>,
        queue: VecDeque<usize>,
    },
    ReadyToRestart(CheckedBundle),
    Failed,
}

/// The module being updated.
#[derive(Clone, Copy, Debug)]
struct Current {
    index: usize,
    until: Timestamp,
    fails: Option<(Timestamp, u8)>,
}

/// What tests look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoralStatus {
    /// Whether the master runs.
    pub stage: Stage,
    /// The master's state (`protocol::master`).
    pub master_state: u8,
    /// The master's last error.
    pub master_error: u8,
    /// The version the master runs.
    pub running_version: [u8; 3],
    /// The modules, module 1 first.
    pub modules: Vec<ModuleStatus>,
    /// The transfer in the staging area: token, frames written, frames in the bundle.
    pub staged: Option<(u32, u32, u32)>,
    /// What the receiver counted since it last started.
    pub receiver: ReceiverStats,
    /// Boots since the model was built.
    pub boots: u32,
}

/// The simulated master, sans-IO: feed it frames with [`handle_frame`](Self::handle_frame),
/// take its frames from [`poll_transmit`](Self::poll_transmit) until `None`, and come back
/// at [`poll_timeout`](Self::poll_timeout).
#[derive(Debug)]
pub struct CoralBms {
    config: CoralConfig,
    battery: BatteryModel,
    stage: Stage,
    running: [u8; 3],
    /// Flash: the staged transfer.
    staging: Option<Staging>,
    /// Flash: the image RESTART activated, booted at the next start.
    pending_boot: Option<[u8; 3]>,
    modules: Vec<ModuleStatus>,
    update: Update,
    master_error: u8,
    outbox: VecDeque<CanFrame>,
    faults: Vec<Fault>,
    rng: Xoshiro256PlusPlus,
    boots: u32,
    receiver_stats: ReceiverStats,
}

/// The two bytes of 0x35F for `version`: `0xMMmm` little-endian.
pub fn broadcast_bytes(version: [u8; 3]) -> [u8; 2] {
    [version[1], version[0]]
}

fn reply(bytes: [u8; 8]) -> CanFrame {
    CanFrame::new(REPLY_ID, &bytes).unwrap_or_else(|| unreachable!("8 bytes make a frame"))
}

fn le24(v: u32) -> [u8; 3] {
    let b = v.to_le_bytes();
    [b[0], b[1], b[2]]
}

fn le16(v: u32) -> [u8; 2] {
    let b = u16::try_from(v).unwrap_or(u16::MAX).to_le_bytes();
    [b[0], b[1]]
}

fn notice_frame(n: Notice) -> CanFrame {
    match n {
        Notice::Ack { asked, counts } => {
            let c = le24(counts.written);
            let d = le16(counts.next - counts.written);
            let g = le16(counts.end - counts.next);
            let kind = if asked { 0xA2 } else { 0xA0 };
            reply([kind, c[0], c[1], c[2], d[0], d[1], g[0], g[1]])
        }
        Notice::Nack { first, count } => {
            let f = le24(first);
            let n = count.to_le_bytes();
            reply([0xA1, f[0], f[1], f[2], n[0], n[1], 0, 0])
        }
    }
}

impl CoralBms {
    /// A powered master at `now`. The battery's 0x35F firmware bytes follow the running
    /// firmware, whatever `battery` says.
    pub fn new(
        config: CoralConfig,
        battery: BatteryConfig,
        now: Timestamp,
    ) -> Result<CoralBms, CoralConfigError> {
        if config.modules.is_empty() || config.modules.len() > MAX_MODULES {
            return Err(CoralConfigError::Modules(config.modules.len()));
        }
        let mut battery = BatteryModel::new(battery, now)?;
        battery.set_firmware_bytes(broadcast_bytes(config.firmware));
        let modules = config
            .modules
            .iter()
            .map(|m| ModuleStatus {
                hw_revision: m.hw_revision,
                version: m.firmware,
                state: module::PENDING,
                error: 0,
            })
            .collect();
        Ok(CoralBms {
            running: config.firmware,
            rng: Xoshiro256PlusPlus::seed_from_u64(config.seed),
            config,
            battery,
            stage: Stage::Running,
            staging: None,
            pending_boot: None,
            modules,
            update: Update::Idle,
            master_error: 0,
            outbox: VecDeque::new(),
            faults: Vec::new(),
            boots: 0,
            receiver_stats: ReceiverStats::default(),
        })
    }

    /// The master's state, its modules and its staging area.
    pub fn status(&self) -> CoralStatus {
        CoralStatus {
            stage: self.stage,
            master_state: self.master_state(),
            master_error: self.master_error,
            running_version: self.running,
            modules: self.modules.clone(),
            staged: self
                .staging
                .as_ref()
                .map(|s| (s.token, s.written, s.frames())),
            receiver: match &self.update {
                Update::Receiving(r) => r.stats(),
                _ => self.receiver_stats,
            },
            boots: self.boots,
        }
    }

    /// The staged bundle's bytes (erased bytes are 0xFF).
    pub fn staged_bytes(&self) -> Option<&[u8]> {
        self.staging.as_ref().map(|s| s.bytes.as_slice())
    }

    /// The BMS-Can battery behind the master.
    pub fn battery(&self) -> &BatteryModel {
        &self.battery
    }

    /// The BMS-Can battery, to change its pack or alarms. Cut and restore power with
    /// [`power_cut`](Self::power_cut) and [`power_restore`](Self::power_restore).
    pub fn battery_mut(&mut self) -> &mut BatteryModel {
        &mut self.battery
    }

    /// Arms a fault; it fires once.
    pub fn inject(&mut self, fault: Fault) {
        self.faults.push(fault);
    }

    fn take_fault(&mut self, f: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let i = self.faults.iter().position(f)?;
        Some(self.faults.remove(i))
    }

    fn master_state(&self) -> u8 {
        match &self.update {
            Update::Idle => master::IDLE,
            Update::Erasing { .. } | Update::Receiving(_) => master::RECEIVING,
            Update::Checking { .. } => master::CHECKING,
            Update::Ready(_) => master::READY,
            Update::Installing { .. } => master::INSTALLING,
            Update::Propagating { .. } => master::UPDATING_MODULES,
            Update::ReadyToRestart(_) => master::READY_TO_RESTART,
            Update::Failed => master::FAILED,
        }
    }

    /// Cuts the power at `now`: silent, RAM lost (frames held, an erase, a check, an
    /// installation, the module being updated keeps its old firmware); flash stays.
    pub fn power_cut(&mut self, now: Timestamp) {
        self.advance(now);
        if self.stage == Stage::Off {
            return;
        }
        self.lose_ram();
        self.battery.set_power(now, PowerState::Off);
        self.stage = Stage::Off;
        tracing::debug!(?now, "coral master: power cut");
    }

    /// Restores the power at `now`: the master boots (silent for its restart time).
    pub fn power_restore(&mut self, now: Timestamp) {
        self.advance(now);
        if self.stage != Stage::Off {
            return;
        }
        self.battery.set_power(now, PowerState::On);
        self.begin_restart(now);
    }

    fn lose_ram(&mut self) {
        if let Update::Receiving(r) = &self.update {
            self.receiver_stats = r.stats();
        }
        if let Update::Propagating {
            current: Some(c), ..
        } = &self.update
        {
            // Interrupted: the module keeps its old firmware.
            self.modules[c.index].state = module::PENDING;
        }
        self.update = Update::Idle;
        self.outbox.clear();
    }

    fn begin_restart(&mut self, now: Timestamp) {
        self.lose_ram();
        self.battery.set_telemetry(now, Telemetry::Silent);
        self.stage = Stage::Restarting(now + self.config.timing.restart);
        tracing::debug!(?now, "coral master: restarting");
    }

    fn finish_restart(&mut self, at: Timestamp) {
        if let Some(version) = self.pending_boot.take() {
            self.running = version;
            // The bundle is installed: the staging area is free again.
            self.staging = None;
        }
        self.battery
            .set_firmware_bytes(broadcast_bytes(self.running));
        self.battery.set_telemetry(at, Telemetry::Sending);
        self.boots += 1;
        self.stage = Stage::Running;
        tracing::debug!(version = ?self.running, "coral master: firmware running");
    }

    /// Feeds a frame received at `now`.
    pub fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        self.advance(now);
        if self.stage != Stage::Running {
            return;
        }
        let id = frame.id();
        if id == COMMAND_ID {
            self.command(now, frame.data());
        } else if id.is_extended() && id.raw() & !SEQUENCE_MASK == DATA_BASE {
            self.data(id.raw() & SEQUENCE_MASK, frame.data());
        } else {
            self.battery.handle_frame(now, frame);
        }
        self.advance(now);
    }

    fn data(&mut self, seq: u32, data: &[u8]) {
        let (Update::Receiving(r), Some(staging)) = (&mut self.update, &self.staging) else {
            return;
        };
        let mut notices = Vec::new();
        r.frame(staging, seq, data, &mut notices);
        self.outbox.extend(notices.into_iter().map(notice_frame));
    }

    fn refuse(&mut self, opcode: u8, code: u8) {
        self.outbox
            .push_back(reply([0xEE, opcode, code, 0, 0, 0, 0, 0]));
    }

    fn command(&mut self, now: Timestamp, b: &[u8]) {
        let Ok(b) = <[u8; 8]>::try_from(b) else {
            let opcode = b.first().copied().unwrap_or(0);
            return self.refuse(opcode, code::UNKNOWN_COMMAND);
        };
        match b[0] {
            0x01 => {
                let p = self.config.product_code.to_le_bytes();
                let v = self.running;
                let n = self.modules.len() as u8;
                self.outbox.push_back(reply([
                    0x81,
                    PROTOCOL_REVISION,
                    p[0],
                    p[1],
                    v[0],
                    v[1],
                    v[2],
                    n,
                ]));
            }
            0x02 => self.modules_answer(),
            0x03 => self.begin(now, u64::from(u32::from_le_bytes([b[1], b[2], b[3], b[4]]))),
            0x04 => self.resume(u32::from_le_bytes([b[1], b[2], b[3], b[4]])),
            0x05 => self.end(now),
            0x06 => self.install(now, u32::from_le_bytes([b[1], b[2], b[3], b[4]])),
            0x07 => self.restart(),
            0x08 => self.abort(),
            0x09 => self.ack_request(),
            other => self.refuse(other, code::UNKNOWN_COMMAND),
        }
    }

    fn modules_answer(&mut self) {
        let v = self.running;
        let state = self.master_state();
        self.outbox.push_back(reply([
            0x82,
            0,
            self.config.master_hw,
            v[0],
            v[1],
            v[2],
            state,
            self.master_error,
        ]));
        for (i, m) in self.modules.iter().enumerate() {
            let v = m.version;
            self.outbox.push_back(reply([
                0x82,
                (i + 1) as u8,
                m.hw_revision,
                v[0],
                v[1],
                v[2],
                m.state,
                m.error,
            ]));
        }
    }

    fn busy_installing(&self) -> bool {
        matches!(
            self.update,
            Update::Installing { .. } | Update::Propagating { .. } | Update::ReadyToRestart(_)
        )
    }

    fn begin(&mut self, now: Timestamp, len: u64) {
        if len == 0 || len > STAGING_SIZE {
            return self.refuse(0x03, code::BAD_LENGTH);
        }
        if self.busy_installing() {
            return self.refuse(0x03, code::BUSY_INSTALLING);
        }
        match (&self.update, &self.staging) {
            (Update::Erasing { len: erasing, .. }, _) if *erasing == len => return,
            (Update::Receiving(r), Some(s))
                if s.bytes.len() as u64 == len && s.written == 0 && r.stats().new == 0 =>
            {
                // A repeated BEGIN before any data: the same token, no second erase.
                let t = s.token.to_le_bytes();
                let w = WINDOW.to_le_bytes();
                self.outbox
                    .push_back(reply([0x83, t[0], t[1], t[2], t[3], w[0], w[1], 0]));
                return;
            }
            _ => {}
        }
        let token = self.rng.next_u32();
        self.staging = None;
        self.master_error = 0;
        for m in &mut self.modules {
            m.state = module::PENDING;
            m.error = 0;
        }
        self.update = Update::Erasing {
            token,
            len,
            until: now + self.config.timing.erase(len),
            next_busy: now + BUSY_INTERVAL,
        };
        self.outbox.push_back(reply([0xB0, 0x03, 0, 0, 0, 0, 0, 0]));
    }

    fn resume(&mut self, token: u32) {
        if self.busy_installing() {
            return self.refuse(0x04, code::OUT_OF_SEQUENCE);
        }
        let Some(staging) = self.staging.as_ref().filter(|s| s.token == token) else {
            self.outbox.push_back(reply([0x84, 1, 0, 0, 0, 0, 0, 0]));
            return;
        };
        if matches!(self.update, Update::Idle | Update::Failed) {
            // After a restart of the master: the transfer goes on with an empty RAM.
            self.update = if staging.is_complete() {
                Update::Idle
            } else {
                Update::Receiving(Receiver::new())
            };
        }
        let counts = match &self.update {
            Update::Receiving(r) => r.counts(staging),
            _ => crate::receiver::Counts {
                written: staging.written,
                next: staging.written,
                end: staging.written,
            },
        };
        let c = le24(counts.written);
        let d = le16(counts.next - counts.written);
        self.outbox
            .push_back(reply([0x84, 0, c[0], c[1], c[2], d[0], d[1], 0]));
    }

    fn end(&mut self, now: Timestamp) {
        match (&self.update, &self.staging) {
            (Update::Checking { .. }, _) => {}
            (Update::Ready(_), _) => self.outbox.push_back(reply([0x85, 0, 0, 0, 0, 0, 0, 0])),
            (Update::Receiving(_) | Update::Idle, Some(s)) if s.is_complete() => {
                let len = s.bytes.len() as u64;
                if let Update::Receiving(r) = &self.update {
                    self.receiver_stats = r.stats();
                }
                self.update = Update::Checking {
                    until: now + self.config.timing.check(len),
                    next_busy: now + BUSY_INTERVAL,
                };
                self.outbox.push_back(reply([0xB0, 0x05, 0, 0, 0, 0, 0, 0]));
            }
            _ => self.refuse(0x05, code::OUT_OF_SEQUENCE),
        }
    }

    fn install(&mut self, now: Timestamp, mask: u32) {
        if self.busy_installing() {
            return self.outbox.push_back(reply([0x86, 0, 0, 0, 0, 0, 0, 0]));
        }
        let Update::Ready(checked) = &self.update else {
            return self.refuse(0x06, code::OUT_OF_SEQUENCE);
        };
        let n = self.modules.len();
        if n < 32 && mask >> n != 0 {
            return self.refuse(0x06, code::NO_SUCH_MODULE);
        }
        let checked = checked.clone();
        for (i, m) in self.modules.iter_mut().enumerate() {
            let selected = mask == 0 || mask & (1 << i) != 0;
            let current = checked
                .module_image(m.hw_revision)
                .is_some_and(|image| image.version == m.version);
            m.state = if !selected || current {
                module::SKIPPED
            } else {
                module::PENDING
            };
            m.error = 0;
        }
        let until = now + self.config.timing.install(checked.master.len as u64);
        self.update = Update::Installing { checked, until };
        self.outbox.push_back(reply([0x86, 0, 0, 0, 0, 0, 0, 0]));
    }

    fn restart(&mut self) {
        let Update::ReadyToRestart(checked) = &self.update else {
            return self.refuse(0x07, code::OUT_OF_SEQUENCE);
        };
        // Activation: the new image boots at the next start, whatever happens now.
        self.pending_boot = Some(checked.version);
        self.outbox.push_back(reply([0x87, 0, 0, 0, 0, 0, 0, 0]));
        self.stage = Stage::ShuttingDown;
    }

    fn abort(&mut self) {
        match &self.update {
            Update::Propagating {
                current: Some(c), ..
            } => self.modules[c.index].state = module::PENDING,
            Update::Receiving(r) => self.receiver_stats = r.stats(),
            _ => {}
        }
        if !matches!(self.update, Update::Idle) {
            self.staging = None;
            self.update = Update::Idle;
        }
        self.outbox.push_back(reply([0x88, 0, 0, 0, 0, 0, 0, 0]));
    }

    fn ack_request(&mut self) {
        match (&mut self.update, &self.staging) {
            (Update::Receiving(r), Some(s)) => {
                let mut notices = Vec::new();
                r.asked(s, &mut notices);
                self.outbox.extend(notices.into_iter().map(notice_frame));
            }
            (Update::Checking { .. } | Update::Ready(_), Some(s)) => {
                let c = le24(s.written);
                self.outbox
                    .push_back(reply([0xA2, c[0], c[1], c[2], 0, 0, 0, 0]));
            }
            _ => self.refuse(0x09, code::OUT_OF_SEQUENCE),
        }
    }

    /// Runs what is due at `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.advance(now);
    }

    /// The next frame to send at `now`: due telemetry first, then replies.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        self.advance(now);
        if let Some(frame) = self.battery.poll_transmit(now) {
            return Some(frame);
        }
        if !matches!(self.stage, Stage::Running | Stage::ShuttingDown) {
            return None;
        }
        match self.outbox.pop_front() {
            Some(frame) => Some(frame),
            None => {
                if self.stage == Stage::ShuttingDown {
                    self.begin_restart(now);
                }
                None
            }
        }
    }

    /// When to come back.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let mut next = self.battery.poll_timeout();
        let mut consider = |t: Option<Timestamp>| {
            next = match (next, t) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        };
        match self.stage {
            Stage::Restarting(until) => consider(Some(until)),
            Stage::Off => {}
            Stage::Running | Stage::ShuttingDown => match &self.update {
                Update::Erasing {
                    until, next_busy, ..
                }
                | Update::Checking { until, next_busy } => consider(Some((*until).min(*next_busy))),
                Update::Receiving(r) => consider(r.deadline()),
                Update::Installing { until, .. } => consider(Some(*until)),
                Update::Propagating { current, .. } => consider(current.map(|c| match c.fails {
                    Some((at, _)) => at.min(c.until),
                    None => c.until,
                })),
                Update::Idle | Update::Ready(_) | Update::ReadyToRestart(_) | Update::Failed => {}
            },
        }
        next
    }

    /// Brings everything up to `now`.
    fn advance(&mut self, now: Timestamp) {
        if let Stage::Restarting(until) = self.stage {
            if now < until {
                return;
            }
            self.finish_restart(until);
        }
        if self.stage != Stage::Running {
            return;
        }
        while self.step(now) {}
    }

    /// One due event; whether anything happened.
    fn step(&mut self, now: Timestamp) -> bool {
        let timing = self.config.timing;
        match &mut self.update {
            Update::Erasing {
                token,
                len,
                until,
                next_busy,
            } => {
                if now >= *until {
                    let (token, len) = (*token, *len);
                    self.staging = Some(Staging::erased(token, len));
                    self.update = Update::Receiving(Receiver::new());
                    let t = token.to_le_bytes();
                    let w = WINDOW.to_le_bytes();
                    self.outbox
                        .push_back(reply([0x83, t[0], t[1], t[2], t[3], w[0], w[1], 0]));
                    return true;
                }
                if now >= *next_busy {
                    let pct = percent(*until, *next_busy, timing.erase(*len));
                    *next_busy = *next_busy + BUSY_INTERVAL;
                    self.outbox
                        .push_back(reply([0xB0, 0x03, pct, 0, 0, 0, 0, 0]));
                    return true;
                }
                false
            }
            Update::Receiving(r) => {
                let Some(staging) = self.staging.as_mut() else {
                    self.update = Update::Idle;
                    return true;
                };
                let mut notices = Vec::new();
                r.advance(staging, now, timing.page_write, &mut notices);
                let any = !notices.is_empty();
                self.outbox.extend(notices.into_iter().map(notice_frame));
                any
            }
            Update::Checking { until, next_busy } => {
                if now >= *until {
                    self.finish_check();
                    return true;
                }
                if now >= *next_busy {
                    let len = self.staging.as_ref().map_or(0, |s| s.bytes.len() as u64);
                    let pct = percent(*until, *next_busy, timing.check(len));
                    *next_busy = *next_busy + BUSY_INTERVAL;
                    self.outbox
                        .push_back(reply([0xB0, 0x05, pct, 0, 0, 0, 0, 0]));
                    return true;
                }
                false
            }
            Update::Installing { checked, until } => {
                if now < *until {
                    return false;
                }
                let at = *until;
                let checked = checked.clone();
                if self.take_fault(|f| *f == Fault::MasterFlash).is_some() {
                    self.master_error = code::MASTER_FLASH;
                    self.update = Update::Failed;
                    return true;
                }
                let queue = self
                    .modules
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| m.state == module::PENDING)
                    .map(|(i, _)| i)
                    .collect();
                self.update = Update::Propagating {
                    checked,
                    current: None,
                    queue,
                };
                self.next_module(at);
                true
            }
            Update::Propagating {
                checked,
                current: Some(c),
                ..
            } => {
                let c = *c;
                if let Some((at, error)) = c.fails
                    && now >= at
                {
                    let m = &mut self.modules[c.index];
                    m.state = module::FAILED;
                    m.error = error;
                    tracing::debug!(module = c.index + 1, error, "coral module failed");
                    // The master stops and keeps its old firmware.
                    self.master_error = code::MODULE_FAILED;
                    self.update = Update::Failed;
                    return true;
                }
                if now >= c.until {
                    let version = checked
                        .module_image(self.modules[c.index].hw_revision)
                        .map_or(self.modules[c.index].version, |i| i.version);
                    let m = &mut self.modules[c.index];
                    m.version = version;
                    m.state = module::DONE;
                    tracing::debug!(module = c.index + 1, ?version, "coral module updated");
                    self.next_module(c.until);
                    return true;
                }
                false
            }
            Update::Propagating { current: None, .. }
            | Update::Idle
            | Update::Ready(_)
            | Update::ReadyToRestart(_)
            | Update::Failed => false,
        }
    }

    /// Starts the next module at `at`, or ends the propagation.
    fn next_module(&mut self, at: Timestamp) {
        let Update::Propagating {
            checked,
            current,
            queue,
        } = &mut self.update
        else {
            return;
        };
        let Some(index) = queue.pop_front() else {
            let checked = checked.clone();
            self.update = Update::ReadyToRestart(checked);
            return;
        };
        let len = checked
            .module_image(self.modules[index].hw_revision)
            .map_or(0, |i| i.len as u64);
        let duration = self.config.timing.module(len);
        let module_no = (index + 1) as u8;
        let fault = self
            .faults
            .iter()
            .position(|f| matches!(f, Fault::ModuleFails { module, .. } if *module == module_no));
        let fails = fault.map(|i| match self.faults.remove(i) {
            Fault::ModuleFails {
                error, permille, ..
            } => (
                at + duration.mul_f64(f64::from(permille.min(1000)) / 1000.0),
                error,
            ),
            Fault::MasterFlash => unreachable!("only module faults match"),
        });
        *current = Some(Current {
            index,
            until: at + duration,
            fails,
        });
        self.modules[index].state = module::UPDATING;
    }

    fn finish_check(&mut self) {
        let module_hws: Vec<u8> = self.modules.iter().map(|m| m.hw_revision).collect();
        let result = match &self.staging {
            Some(s) => check(
                &s.bytes,
                self.config.product_code,
                self.config.master_hw,
                &module_hws,
            ),
            None => Err(crate::bundle::CheckError {
                code: code::LAYOUT,
                detail: 0,
            }),
        };
        match result {
            Ok(checked) => {
                self.update = Update::Ready(checked);
                self.outbox.push_back(reply([0x85, 0, 0, 0, 0, 0, 0, 0]));
            }
            Err(e) => {
                tracing::debug!(%e, "coral master refuses the bundle");
                self.staging = None;
                self.master_error = e.code;
                self.update = Update::Failed;
                self.outbox
                    .push_back(reply([0x85, e.code, e.detail, 0, 0, 0, 0, 0]));
            }
        }
    }
}

/// Percent of an operation of `total` ending at `until`, at `now`.
fn percent(until: Timestamp, now: Timestamp, total: Duration) -> u8 {
    let left = until.saturating_duration_since(now);
    let done = total.saturating_sub(left);
    let pct = done.as_secs_f64() / total.as_secs_f64().max(1e-9) * 100.0;
    pct.clamp(0.0, 100.0) as u8
}
