//! The update session (`PROTOCOL.md` section 6) as a sans-IO state machine.
//!
//! | state | phase shown | on the bus |
//! |---|---|---|
//! | `Hello`, `Modules` | Transferring | HELLO, MODULES: product, firmware, each module's hardware revision |
//! | `Begin` or `Resume` | Transferring | BEGIN (erase) or RESUME (the checkpoint's token) |
//! | `Sending` | Transferring | data frames, ACK-REQUESTs |
//! | `End`, `Install`, `Installing` | Installing | END (the master checks the bundle), INSTALL, MODULES every 500 ms |
//! | `Restart`, `Restarting` | Restarting | RESTART, then HELLO every 500 ms until the master answers |
//! | `Verifying` | Verifying | MODULES: every version |
//!
//! The session resumes a transfer when the engine hands it a checkpoint of the same
//! bundle: it asks the master where the transfer stands and sends only what the master
//! lacks.

mod exchange;
mod report;

use crate::bundle::{Bundle, read_bundle};
use crate::checkpoint::Checkpoint;
use crate::frames::{self, Command, ModuleEntry, Reply};
use crate::protocol::{
    CODE_NOT_UPDATABLE, FRAME_PAYLOAD, INSTALL_POLL, MAX_MISSED_POLLS, MAX_MODULES, MAX_WINDOW,
    PROTOCOL_REVISION, RESTART_POLL, RESTART_SILENCE_MAX, code, data_id, master, op,
};
use crate::transfer::{Outgoing, Sender, SenderStats, TransferError};
use crate::version::Version24;
use bmsfw_plugin_api::{
    AbortReason, CanFrame, ErrorCode, Failure, FirmwareVersion, ModuleProgress, ModuleState,
    PackageReader, Phase, SessionRequest, SessionStatus, Timestamp,
};
use exchange::{Exchange, Expiry};
use std::collections::VecDeque;

/// Bytes of the package held at a time for data frames.
const BLOCK: u64 = 4096;
/// RESTARTs sent again when the master answers that it still waits for one.
const MAX_RESTART_REPEATS: u8 = 3;

/// What the session learned from HELLO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Hello {
    firmware: Version24,
    modules: u8,
}

/// A MODULES answer being collected.
#[derive(Clone, Debug)]
struct Collect {
    exchange: Exchange,
    entries: Vec<Option<ModuleEntry>>,
}

impl Collect {
    fn new(modules: u8) -> Collect {
        Collect {
            exchange: Exchange::new(Command::Modules),
            entries: vec![None; usize::from(modules) + 1],
        }
    }

    /// Adds an entry; the whole answer once every entry is in.
    fn add(&mut self, entry: ModuleEntry) -> Result<Option<Vec<ModuleEntry>>, Failure> {
        let Some(slot) = self.entries.get_mut(usize::from(entry.index)) else {
            return Err(Failure::new(
                ErrorCode::PROTOCOL_ERROR,
                format!(
                    "the master reports module {} but said it has {}",
                    entry.index,
                    self.entries.len() - 1
                ),
            ));
        };
        *slot = Some(entry);
        if self.entries.iter().all(Option::is_some) {
            let all = self.entries.iter().flatten().copied().collect();
            self.entries.iter_mut().for_each(|e| *e = None);
            return Ok(Some(all));
        }
        Ok(None)
    }
}

/// The polls while the master installs.
#[derive(Clone, Debug)]
struct Polling {
    collect: Option<Collect>,
    next_poll: Timestamp,
    missed: u8,
}

/// The polls while the master restarts.
#[derive(Clone, Debug)]
struct Restarting {
    hello: Option<Exchange>,
    next_poll: Timestamp,
    deadline: Timestamp,
}

/// Where the session is.
enum State {
    NotStarted,
    Hello(Exchange),
    Modules(Collect),
    Begin(Exchange),
    Resume(Exchange, Checkpoint),
    Sending(Box<Sender>),
    End(Exchange),
    Install(Exchange),
    Installing(Polling),
    Restart(Exchange),
    Restarting(Restarting),
    Verifying(Collect),
    Done,
    Failed(Failure),
}

/// A Coral update session.
pub struct CoralSession {
    package: PackageReader,
    bundle: Bundle,
    frames_total: u32,
    /// INSTALL's module mask (0: all).
    mask: u32,
    /// The modules the engine asked for (empty: all).
    selected: Vec<u16>,
    resume: Option<Checkpoint>,
    state: State,
    /// Commands to send before anything else.
    outbox: VecDeque<CanFrame>,
    hello: Option<Hello>,
    /// The latest MODULES answer, the master first.
    entries: Vec<ModuleEntry>,
    token: Option<u32>,
    written: u32,
    /// Whether the module states of `entries` belong to this update (after INSTALL).
    installing: bool,
    /// RESTARTs sent again because the master had not restarted.
    restarts_repeated: u8,
    block_at: u64,
    block: Vec<u8>,
    sent: SenderStats,
}

impl CoralSession {
    /// A session for the request's bundle, checked against the battery.
    pub fn start(request: SessionRequest) -> Result<CoralSession, Failure> {
        let bundle = read_bundle(&request.package).map_err(|e| {
            Failure::new(e.code, format!("at {}: {}", e.location, e.message.as_str()))
        })?;
        if let Some(code) = request.battery.product_code.into_option()
            && code != bundle.product_code
        {
            return Err(Failure::new(
                ErrorCode::PACKAGE_WRONG_PRODUCT,
                format!(
                    "the bundle is for product 0x{:04X}, the battery is 0x{code:04X}",
                    bundle.product_code
                ),
            ));
        }
        let mut selected: Vec<u16> = request.options.modules.iter().copied().collect();
        selected.sort_unstable();
        selected.dedup();
        let mut mask = 0u32;
        for &m in &selected {
            if m == 0 || m > u16::from(MAX_MODULES) {
                return Err(Failure::new(
                    ErrorCode::TRANSFER_FAILED,
                    format!(
                        "module {m} cannot be selected: a ReefStack numbers its modules 1 to 16"
                    ),
                ));
            }
            mask |= 1 << (m - 1);
        }
        // A checkpoint of another bundle, or a malformed one, is no use: start afresh.
        let resume = request
            .resume
            .as_deref()
            .and_then(|b| Checkpoint::parse(b).ok())
            .filter(|c| {
                c.manifest_sha256 == bundle.manifest_sha256 && u64::from(c.len) == bundle.len
            });
        let frames_total = u32::try_from(bundle.len.div_ceil(FRAME_PAYLOAD)).map_err(|_| {
            Failure::new(
                ErrorCode::PACKAGE_INVALID,
                "the bundle is too large to transfer",
            )
        })?;
        Ok(CoralSession {
            package: request.package,
            bundle,
            frames_total,
            mask,
            selected,
            resume,
            state: State::NotStarted,
            outbox: VecDeque::new(),
            hello: None,
            entries: Vec::new(),
            token: None,
            written: 0,
            installing: false,
            restarts_repeated: 0,
            block_at: u64::MAX,
            block: Vec::new(),
            sent: SenderStats::default(),
        })
    }

    /// What the transfer sent so far (new frames, re-sent frames, ACK-REQUESTs).
    pub fn transfer_stats(&self) -> SenderStats {
        match &self.state {
            State::Sending(s) => s.stats(),
            _ => self.sent,
        }
    }

    fn fail(&mut self, failure: Failure) {
        if matches!(self.state, State::Sending(_) | State::End(_)) {
            // The master drops the transfer; a later update starts afresh.
            self.outbox.push_back(Command::Abort.frame());
        }
        if let State::Sending(s) = &self.state {
            self.sent = s.stats();
        }
        self.state = State::Failed(failure);
    }

    fn ensure_started(&mut self) {
        if matches!(self.state, State::NotStarted) {
            self.state = State::Hello(Exchange::new(Command::Hello));
        }
    }

    fn bytes_done(&self) -> u64 {
        match self.state {
            State::NotStarted
            | State::Hello(_)
            | State::Modules(_)
            | State::Begin(_)
            | State::Resume(..)
            | State::Sending(_)
            | State::Failed(_) => (u64::from(self.written) * FRAME_PAYLOAD).min(self.bundle.len),
            _ => self.bundle.len,
        }
    }

    fn phase(&self) -> Phase {
        match &self.state {
            State::NotStarted
            | State::Hello(_)
            | State::Modules(_)
            | State::Begin(_)
            | State::Resume(..)
            | State::Sending(_) => Phase::TRANSFERRING,
            State::End(_) | State::Install(_) | State::Installing(_) => Phase::INSTALLING,
            State::Restart(_) | State::Restarting(_) => Phase::RESTARTING,
            State::Verifying(_) => Phase::VERIFYING,
            State::Done => Phase::DONE,
            State::Failed(_) => Phase::FAILED,
        }
    }

    fn is_selected(&self, module: u8) -> bool {
        self.selected.is_empty() || self.selected.contains(&u16::from(module))
    }

    /// Per-module progress from the latest MODULES answer.
    fn modules(&self) -> Vec<ModuleProgress> {
        self.entries
            .iter()
            .skip(1)
            .map(|e| {
                let state = if !self.is_selected(e.index) {
                    ModuleState::SKIPPED
                } else if self.installing {
                    ModuleState(e.state)
                } else {
                    ModuleState::PENDING
                };
                ModuleProgress {
                    index: u16::from(e.index),
                    state,
                    version: Some(e.version.firmware_version()).into(),
                }
            })
            .collect()
    }

    // ----- replies -----

    fn reply(&mut self, now: Timestamp, reply: Reply) {
        if let Reply::Refused { opcode, code } = reply {
            return self.refused(opcode, code);
        }
        if let Reply::Busy { opcode, .. } = reply {
            if let Some(e) = self.exchange_mut()
                && e.command().opcode() == opcode
            {
                e.busy(now);
            }
            return;
        }
        let state = std::mem::replace(&mut self.state, State::NotStarted);
        self.state = match (state, reply) {
            (
                State::Hello(_),
                Reply::Hello {
                    revision,
                    product_code,
                    firmware,
                    modules,
                },
            ) => match self.hello_answered(revision, product_code, firmware, modules) {
                Ok(()) => State::Modules(Collect::new(modules)),
                Err(f) => State::Failed(f),
            },
            (State::Modules(mut c), Reply::Module(entry)) => match c.add(entry) {
                Ok(Some(all)) => match self.preflight(all) {
                    Ok(()) => self.open_transfer(),
                    Err(f) => State::Failed(f),
                },
                Ok(None) => State::Modules(c),
                Err(f) => State::Failed(f),
            },
            (State::Begin(_), Reply::Begin { token, window }) => {
                self.token = Some(token);
                self.written = 0;
                State::Sending(Box::new(Sender::new(
                    self.frames_total,
                    u32::from(window).min(MAX_WINDOW),
                    0,
                    0,
                    now,
                )))
            }
            (State::Resume(_, c), Reply::Resumed(counts)) => {
                if counts.written > self.frames_total || counts.next > self.frames_total {
                    State::Failed(Failure::new(
                        ErrorCode::PROTOCOL_ERROR,
                        format!(
                            "the master resumes at frame {} of a {}-frame transfer",
                            counts.next, self.frames_total
                        ),
                    ))
                } else {
                    self.token = Some(c.token);
                    self.written = counts.written;
                    let sender =
                        Sender::new(self.frames_total, 1024, counts.written, counts.next, now);
                    self.after_sending_step(Box::new(sender))
                }
            }
            (State::Resume(..), Reply::UnknownToken) => {
                // The master holds another transfer, or none: start afresh.
                self.resume = None;
                State::Begin(Exchange::new(Command::Begin {
                    len: self.bundle.len as u32,
                }))
            }
            (State::Sending(mut s), Reply::Ack { asked, counts }) => {
                match s.on_ack(now, counts, asked) {
                    Ok(()) => {
                        self.written = s.written();
                        self.after_sending_step(s)
                    }
                    Err(e) => State::Failed(transfer_failure(e, self.written)),
                }
            }
            (State::Sending(mut s), Reply::Nack { first, count }) => {
                s.on_nack(now, first, count);
                State::Sending(s)
            }
            (State::End(_), Reply::End { result, detail }) => match result {
                0 => State::Install(Exchange::new(Command::Install { mask: self.mask })),
                _ => State::Failed(report::check_refused(
                    &self.bundle,
                    &self.entries,
                    result,
                    detail,
                )),
            },
            (State::Install(_), Reply::Install) => {
                self.installing = true;
                State::Installing(Polling {
                    collect: None,
                    next_poll: now,
                    missed: 0,
                })
            }
            (State::Installing(mut p), Reply::Module(entry)) => {
                let done = match p.collect.as_mut().map(|c| c.add(entry)) {
                    Some(Ok(Some(all))) => Some(all),
                    Some(Ok(None)) | None => None,
                    Some(Err(f)) => return self.fail(f),
                };
                match done {
                    Some(all) => {
                        p.collect = None;
                        p.missed = 0;
                        self.installing_answered(now, p, all)
                    }
                    None => State::Installing(p),
                }
            }
            (State::Restart(_), Reply::Restart) => self.restarting(now),
            (
                State::Restarting(r),
                Reply::Hello {
                    firmware, modules, ..
                },
            ) => {
                if r.hello.is_some() {
                    self.hello = Some(Hello { firmware, modules });
                    // Restarted, or never got the RESTART: MODULES tells which.
                    State::Verifying(Collect::new(modules))
                } else {
                    State::Restarting(r)
                }
            }
            (State::Verifying(mut c), Reply::Module(entry)) => match c.add(entry) {
                Ok(Some(all)) => self.verify(all),
                Ok(None) => State::Verifying(c),
                Err(f) => State::Failed(f),
            },
            // Late or repeated answers of earlier commands, acknowledgements after the
            // transfer ended: nothing to do.
            (state, _) => state,
        };
    }

    fn exchange_mut(&mut self) -> Option<&mut Exchange> {
        match &mut self.state {
            State::Hello(e)
            | State::Begin(e)
            | State::Resume(e, _)
            | State::End(e)
            | State::Install(e)
            | State::Restart(e) => Some(e),
            State::Modules(c) | State::Verifying(c) => Some(&mut c.exchange),
            State::Installing(p) => p.collect.as_mut().map(|c| &mut c.exchange),
            State::Restarting(r) => r.hello.as_mut(),
            State::NotStarted | State::Sending(_) | State::Done | State::Failed(_) => None,
        }
    }

    fn refused(&mut self, opcode: u8, code: u8) {
        let waiting = self.exchange_mut().map(|e| e.command().opcode());
        if waiting != Some(opcode) && opcode != op::ACK_REQUEST {
            return;
        }
        if opcode == op::RESUME && code == code::OUT_OF_SEQUENCE {
            return self.fail(Failure::new(
                ErrorCode::REJECTED_BY_BMS,
                "the pack is already installing the transferred bundle; the transfer cannot \
                 be resumed: wait until it is done and check its version",
            ));
        }
        self.fail(report::refusal(opcode, code));
    }

    fn hello_answered(
        &mut self,
        revision: u8,
        product_code: u16,
        firmware: Version24,
        modules: u8,
    ) -> Result<(), Failure> {
        if revision != PROTOCOL_REVISION {
            return Err(Failure::new(
                ErrorCode(CODE_NOT_UPDATABLE),
                format!(
                    "the master speaks protocol revision {revision}; this plugin speaks \
                     revision {PROTOCOL_REVISION}: update the master with the Coral service tool"
                ),
            ));
        }
        if product_code != self.bundle.product_code {
            return Err(Failure::new(
                ErrorCode::PACKAGE_WRONG_PRODUCT,
                format!(
                    "the master reports product 0x{product_code:04X}; the bundle is for 0x{:04X}",
                    self.bundle.product_code
                ),
            ));
        }
        if modules == 0 || modules > MAX_MODULES {
            return Err(Failure::new(
                ErrorCode::PROTOCOL_ERROR,
                format!("the master reports {modules} modules; a ReefStack has 1 to 16"),
            ));
        }
        self.hello = Some(Hello { firmware, modules });
        Ok(())
    }

    /// Before anything is erased: every module's hardware revision has an image, the
    /// master's image is for the master, the selection names existing modules.
    fn preflight(&mut self, entries: Vec<ModuleEntry>) -> Result<(), Failure> {
        let n = entries.len() - 1;
        let master_hw = entries[0].hw_revision;
        let image = self.bundle.master();
        if image.hw_revision != master_hw {
            return Err(Failure::new(
                ErrorCode::PACKAGE_WRONG_PRODUCT,
                format!(
                    "the bundle's master image is for hardware revision {}; this master is \
                     revision {master_hw}",
                    image.hw_revision
                ),
            ));
        }
        if let Some(&m) = self.selected.iter().find(|&&m| usize::from(m) > n) {
            return Err(Failure::new(
                ErrorCode::TRANSFER_FAILED,
                format!(
                    "the update names module {m}, which the pack does not have: its modules \
                     are 1 to {n}; nothing was erased"
                ),
            ));
        }
        for e in entries.iter().skip(1) {
            // The master's check refuses a bundle without an image for any of its modules,
            // selected or not: find out before anything is erased.
            if self.bundle.module_image(e.hw_revision).is_none() {
                return Err(Failure::new(
                    ErrorCode::PACKAGE_WRONG_PRODUCT,
                    format!(
                        "module {} is hardware revision {}, for which the bundle has no image",
                        e.index, e.hw_revision
                    ),
                ));
            }
        }
        self.entries = entries;
        Ok(())
    }

    fn open_transfer(&mut self) -> State {
        match self.resume {
            Some(c) => State::Resume(Exchange::new(Command::Resume { token: c.token }), c),
            None => State::Begin(Exchange::new(Command::Begin {
                len: self.bundle.len as u32,
            })),
        }
    }

    fn after_sending_step(&mut self, sender: Box<Sender>) -> State {
        if sender.is_complete() {
            self.sent = sender.stats();
            self.written = sender.written();
            State::End(Exchange::new(Command::End))
        } else {
            State::Sending(sender)
        }
    }

    fn installing_answered(
        &mut self,
        now: Timestamp,
        mut p: Polling,
        all: Vec<ModuleEntry>,
    ) -> State {
        self.entries = all;
        let m = self.entries[0];
        match m.state {
            master::INSTALLING | master::UPDATING_MODULES | master::READY => {
                p.next_poll = p.next_poll.max(now);
                State::Installing(p)
            }
            master::READY_TO_RESTART => State::Restart(Exchange::new(Command::Restart)),
            master::FAILED => State::Failed(report::install_failed(&self.bundle, &self.entries)),
            other => State::Failed(Failure::new(
                ErrorCode::INSTALL_FAILED,
                format!(
                    "the master left the installation (state 0x{other:02X}: it restarted?) {}; \
                     retry the update",
                    report::module_summary(&self.bundle, &self.entries)
                ),
            )),
        }
    }

    fn restarting(&mut self, now: Timestamp) -> State {
        State::Restarting(Restarting {
            hello: None,
            next_poll: now + RESTART_POLL,
            deadline: now + RESTART_SILENCE_MAX,
        })
    }

    fn verify(&mut self, all: Vec<ModuleEntry>) -> State {
        self.entries = all;
        if self.entries[0].state == master::READY_TO_RESTART {
            // The RESTART never arrived: ask again, a few times.
            self.restarts_repeated += 1;
            return if self.restarts_repeated <= MAX_RESTART_REPEATS {
                State::Restart(Exchange::new(Command::Restart))
            } else {
                State::Failed(Failure::new(
                    ErrorCode::RESTART_FAILED,
                    "the master accepted the new firmware but does not restart into it",
                ))
            };
        }
        match report::verify(&self.bundle, &self.entries, |i| self.is_selected(i)) {
            Ok(()) => State::Done,
            Err(f) => State::Failed(f),
        }
    }

    // ----- time -----

    fn timers(&mut self, now: Timestamp) {
        let expired = match &mut self.state {
            State::Sending(s) => {
                if let Err(e) = s.on_timeout(now) {
                    let written = self.written;
                    return self.fail(transfer_failure(e, written));
                }
                None
            }
            State::Installing(p) => {
                if let Some(c) = &mut p.collect {
                    match c.exchange.expired(now) {
                        Expiry::GaveUp => {
                            p.collect = None;
                            p.missed += 1;
                            p.next_poll = now;
                            if p.missed >= MAX_MISSED_POLLS {
                                let missed = p.missed;
                                return self.fail(Failure::new(
                                    ErrorCode::TIMEOUT,
                                    format!(
                                        "the master stopped answering while it installed the \
                                         update ({missed} polls in a row unanswered)"
                                    ),
                                ));
                            }
                            None
                        }
                        Expiry::Retry | Expiry::Waiting => None,
                    }
                } else {
                    if now >= p.next_poll {
                        p.collect = Some(Collect {
                            exchange: Exchange::once(Command::Modules),
                            entries: vec![None; self.entries.len().max(1)],
                        });
                        p.next_poll = now + INSTALL_POLL;
                    }
                    None
                }
            }
            State::Restarting(r) => {
                if let Some(e) = &mut r.hello
                    && e.expired(now) == Expiry::GaveUp
                {
                    r.hello = None;
                }
                if now >= r.deadline {
                    return self.fail(Failure::new(
                        ErrorCode::RESTART_FAILED,
                        format!(
                            "the master did not answer within {} s of its restart",
                            RESTART_SILENCE_MAX.as_secs()
                        ),
                    ));
                }
                if r.hello.is_none() && now >= r.next_poll {
                    r.hello = Some(Exchange::once(Command::Hello));
                    r.next_poll = now + RESTART_POLL;
                }
                None
            }
            State::Restart(e) => match e.expired(now) {
                // No answer: the master may have restarted at once; poll it.
                Expiry::GaveUp => {
                    self.state = self.restarting(now);
                    return;
                }
                _ => None,
            },
            _ => match self.exchange_mut().map(|e| (e.command(), e.expired(now))) {
                Some((command, Expiry::GaveUp)) => Some(command),
                _ => None,
            },
        };
        if let Some(command) = expired {
            self.fail(Failure::new(
                ErrorCode::TIMEOUT,
                format!(
                    "the master did not answer {} ({} attempts)",
                    command.name(),
                    crate::protocol::ATTEMPTS
                ),
            ));
        }
    }

    // ----- data -----

    /// The data frame `seq`, read from the package.
    fn data_frame(&mut self, seq: u32) -> Result<CanFrame, Failure> {
        let offset = u64::from(seq) * FRAME_PAYLOAD;
        let len = (self.bundle.len - offset).min(FRAME_PAYLOAD) as usize;
        let block_at = offset - offset % BLOCK;
        if block_at != self.block_at {
            let n = (self.bundle.len - block_at).min(BLOCK) as usize;
            self.block.resize(n, 0);
            if let Err(e) = self.package.read_exact_at(block_at, &mut self.block) {
                self.block_at = u64::MAX;
                return Err(Failure::new(
                    ErrorCode::TRANSFER_FAILED,
                    format!("reading the bundle at byte {block_at} failed: {e}"),
                ));
            }
            self.block_at = block_at;
        }
        let at = (offset - block_at) as usize;
        let id = data_id(seq).ok_or_else(|| {
            Failure::new(
                ErrorCode::PACKAGE_INVALID,
                "frame beyond the sequence numbers",
            )
        })?;
        CanFrame::new(id, &self.block[at..at + len]).ok_or_else(|| {
            Failure::new(
                ErrorCode::TRANSFER_FAILED,
                "a data frame longer than 8 bytes",
            )
        })
    }

    /// The checkpoint while the transfer runs.
    fn current_checkpoint(&self) -> Option<Checkpoint> {
        match (&self.state, self.token) {
            (State::Sending(s), Some(token)) => Some(Checkpoint {
                token,
                manifest_sha256: self.bundle.manifest_sha256,
                len: self.bundle.len as u32,
                written: s.written(),
            }),
            _ => None,
        }
    }
}

fn transfer_failure(e: TransferError, written: u32) -> Failure {
    match e {
        TransferError::Silent(d) => Failure::new(
            ErrorCode::TIMEOUT,
            format!(
                "the master stopped acknowledging at byte {} for {:.0} s",
                u64::from(written) * FRAME_PAYLOAD,
                d.as_secs_f64()
            ),
        ),
        TransferError::Impossible(why) => Failure::new(ErrorCode::PROTOCOL_ERROR, why),
    }
}

impl bmsfw_plugin_api::Session for CoralSession {
    fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        let Some(parsed) = frames::parse(frame) else {
            return;
        };
        if matches!(self.state, State::Done | State::Failed(_)) {
            return;
        }
        match parsed {
            Ok(reply) => self.reply(now, reply),
            Err(e) => self.fail(Failure::new(ErrorCode::PROTOCOL_ERROR, e.to_string())),
        }
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        self.ensure_started();
        self.timers(now);
    }

    fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        self.ensure_started();
        if let Some(frame) = self.outbox.pop_front() {
            return Some(frame);
        }
        if let State::Sending(s) = &mut self.state {
            return match s.poll(now)? {
                Outgoing::AckRequest => Some(Command::AckRequest.frame()),
                Outgoing::Data(seq) => match self.data_frame(seq) {
                    Ok(frame) => Some(frame),
                    Err(f) => {
                        self.fail(f);
                        self.outbox.pop_front()
                    }
                },
            };
        }
        self.exchange_mut()?.poll(now)
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        match &self.state {
            State::NotStarted => Some(Timestamp::ZERO),
            State::Sending(s) => s.deadline(),
            State::Installing(p) => match &p.collect {
                Some(c) => c.exchange.deadline(),
                None => Some(p.next_poll),
            },
            State::Restarting(r) => {
                let own = match &r.hello {
                    Some(e) => e.deadline(),
                    None => Some(r.next_poll),
                };
                own.map(|t| t.min(r.deadline)).or(Some(r.deadline))
            }
            State::Hello(e)
            | State::Begin(e)
            | State::Resume(e, _)
            | State::End(e)
            | State::Install(e)
            | State::Restart(e) => e.deadline(),
            State::Modules(c) | State::Verifying(c) => c.exchange.deadline(),
            State::Done | State::Failed(_) => None,
        }
    }

    fn status(&self) -> SessionStatus {
        let mut status = match &self.state {
            State::Failed(f) => {
                SessionStatus::failed(f.clone(), self.bytes_done(), self.bundle.len)
            }
            _ => SessionStatus::new(self.phase(), self.bytes_done(), self.bundle.len),
        };
        status.modules = self.modules().into();
        status
    }

    fn abort(&mut self, _now: Timestamp, reason: &AbortReason) {
        if matches!(self.state, State::Done | State::Failed(_)) {
            return;
        }
        // ABORT whatever the state: it drops a transfer and stops a module update.
        if !matches!(self.state, State::Sending(_) | State::End(_)) {
            self.outbox.push_back(Command::Abort.frame());
        }
        self.fail(Failure::new(
            ErrorCode::ABORTED,
            format!(
                "aborted by the GX ({}: {})",
                reason.code,
                reason.message.as_str()
            ),
        ));
    }

    fn checkpoint(&self) -> Vec<u8> {
        self.current_checkpoint()
            .map(|c| c.to_bytes())
            .unwrap_or_default()
    }

    /// The master's firmware with its build, from HELLO: known before anything is erased.
    fn running_version(&self) -> Option<FirmwareVersion> {
        self.hello.map(|h| h.firmware.firmware_version())
    }
}

#[cfg(test)]
mod tests;
