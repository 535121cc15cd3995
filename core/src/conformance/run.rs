//! One session scenario, run in virtual time: the plugin's session against a hostile
//! peer on a simulated wire.
//!
//! The runner is sans-IO like the session it drives. It calls the session as the
//! engine's driver does (every received frame, the session's deadlines, a drain of
//! `poll_transmit` after every call), puts each frame the plugin hands out on the wire
//! for its exact bit time at the bus's bit rate, one after the other, hands it to the
//! peer, and delivers the peer's answers at their times. It watches:
//!
//! - every status: `PLUGIN_FAULT` (a panic or a broken contract) is recorded;
//! - every frame's identifier against the plugin's declared send ranges; the first
//!   violation aborts the session as the engine would (code 741);
//! - the plugin's own load over a sliding window, as it hands frames out (no pacing);
//! - the engine's per-phase [`Watchdog`] with the limits derived from the plugin's
//!   declared timeouts, and after an abort the engine's grace period.

use super::peer::{Peer, PeerBehaviour};
use super::recording::Script;
use super::replay::{ReplayPeer, ReplayProgress};
use crate::driver::{BudgetConfig, BusBudget, Watchdog, WatchdogLimits, Watched};
use crate::errors::codes;
use crate::plugin::{SessionPhase, SessionReport, VendorPlugin, VendorSession};
use bmsfw_plugin_api::{CanFrame, ErrorCode, Timestamp};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// When a scenario aborts the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AbortAt {
    /// Right after the session started, before it was asked for a frame.
    Start,
    /// Once its first frame has left the wire.
    FirstFrame,
    /// Halfway between its first frame and the deadline it then asked for: while it
    /// waits for an answer.
    Waiting,
    /// As soon as it reports this phase.
    Phase(SessionPhase),
}

impl AbortAt {
    /// The scenario's words.
    pub fn describe(self) -> String {
        match self {
            AbortAt::Start => "abort at start".into(),
            AbortAt::FirstFrame => "abort after the first frame".into(),
            AbortAt::Waiting => "abort while waiting for an answer".into(),
            AbortAt::Phase(p) => format!("abort in {p:?}"),
        }
    }
}

/// What answers the session in place of the vendor's BMS.
#[derive(Debug, Clone)]
pub enum Responder {
    /// A hostile peer that knows nothing of the vendor's protocol.
    Hostile(PeerBehaviour),
    /// The BMS of a recorded update, replayed.
    Replay(Arc<Script>),
}

impl Responder {
    /// The scenario's words for what answers.
    pub fn describe(&self) -> &'static str {
        match self {
            Responder::Hostile(b) => b.scenario(),
            Responder::Replay(_) => "the replayed update",
        }
    }
}

/// The peer of one run.
#[derive(Debug)]
enum ActivePeer {
    Hostile(Peer),
    Replay(ReplayPeer),
}

/// Limits of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunLimits {
    /// The bus's bit rate.
    pub bitrate: u32,
    /// The budget the plugin's own frames are measured against.
    pub budget: BudgetConfig,
    /// How long an aborted session may take to end Failed (the engine's grace period).
    pub abort_grace: Duration,
    /// The longest virtual time a scenario runs.
    pub horizon: Duration,
    /// Most frames taken from one drain of `poll_transmit`.
    pub max_frames_per_drain: usize,
    /// Most steps (calls into the session) a scenario makes.
    pub max_steps: u64,
}

impl Default for RunLimits {
    fn default() -> RunLimits {
        RunLimits {
            bitrate: 500_000,
            budget: BudgetConfig {
                percent: 80,
                window: Duration::from_secs(1),
            },
            abort_grace: crate::driver::Stage2Config::default().abort_grace,
            horizon: Duration::from_secs(3600),
            max_frames_per_drain: 10_000,
            max_steps: 1_000_000,
        }
    }
}

/// How a scenario's session ended, or did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The session reached a final phase on its own (or after an abort, in time).
    Final {
        /// Virtual time from the start.
        after: Duration,
        /// The final report.
        report: SessionReport,
    },
    /// The engine's watchdog would have stopped it.
    WatchdogExpired {
        /// The phase.
        phase: Watched,
        /// The time without progress.
        elapsed: Duration,
        /// The limit from the declared timeouts.
        limit: Duration,
    },
    /// Still running when the abort's grace period was over.
    AbortIgnored {
        /// The phase it reported.
        phase: SessionPhase,
    },
    /// Ended after an abort, but not Failed with `ABORTED`.
    AbortMisreported {
        /// The final report.
        report: SessionReport,
    },
    /// The run was stopped before the session ended.
    Stopped {
        /// Why.
        why: String,
    },
}

/// What one scenario observed.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The first `PLUGIN_FAULT`: a panic or a broken contract.
    pub fault: Option<String>,
    /// Frames handed out on undeclared identifiers (none was put on the wire).
    pub id_violations: Vec<CanFrame>,
    /// Frames put on the wire.
    pub frames_sent: u64,
    /// The highest share of the bus the plugin's own frames took in one window, percent.
    pub peak_load_percent: f64,
    /// The first window above the budget.
    pub budget_exceeded: Option<BudgetExcess>,
    /// A drain that never ended (more than the limit of frames at once).
    pub flood: Option<usize>,
    /// Phases the session reported, in order of first appearance.
    pub phases: Vec<SessionPhase>,
    /// Whether the abort was made (the scenario's phase may never come).
    pub aborted: bool,
    /// How far the replay went, when the replay peer answered.
    pub replay: Option<ReplayProgress>,
    /// How it ended.
    pub ending: Ending,
}

/// The first window in which the plugin's frames took more than the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetExcess {
    /// The window's end, from the start of the run.
    pub at: Duration,
    /// Bits of the plugin's frames in the window.
    pub bits: u64,
    /// Bits the budget allows in a window.
    pub limit: u64,
}

/// What a scenario needs to start sessions.
pub trait SessionFactory {
    /// A new session of the plugin with the sample package.
    fn start(&self) -> Result<Box<dyn VendorSession>, crate::plugin::PluginFailure>;
    /// The size of the package's image (scales the transfer watchdog).
    fn image_size(&self) -> u64;
}

/// The virtual clock's start: one second, so that no deadline is at zero.
const T0: Timestamp = Timestamp::from_micros(1_000_000);

struct Runner<'a> {
    plugin: &'a dyn VendorPlugin,
    session: Box<dyn VendorSession>,
    peer: ActivePeer,
    limits: RunLimits,
    meter: BusBudget,
    watchdog: Watchdog,
    /// Deliveries due: (time, sequence) -> frame.
    inbox: BTreeMap<(Timestamp, u64), CanFrame>,
    seq: u64,
    now: Timestamp,
    first_frame_end: Option<Timestamp>,
    /// The session's deadline right after its first frame.
    first_deadline: Option<Timestamp>,
    abort: Option<AbortAt>,
    aborted_at: Option<Timestamp>,
    steps: u64,
    /// The phase the session reported last.
    phase: SessionPhase,
    /// Until when the replay holds the plugin's next frame back.
    held_until: Option<Timestamp>,
    /// The session's phase and bytes done as last read, and when they last moved.
    progress: Progress,
    obs: Observation,
}

/// How far the session has come, and when it last moved forward.
#[derive(Clone, Copy)]
struct Progress {
    mark: Option<(SessionPhase, u64)>,
    moved_at: Option<Timestamp>,
}

impl Progress {
    /// Takes a status report read at `now`.
    fn read(&mut self, now: Timestamp, phase: SessionPhase, bytes_done: u64) {
        let mark = Some((phase, bytes_done));
        if self.mark.is_some() && self.mark != mark {
            self.moved_at = Some(now);
        }
        self.mark = mark;
    }

    /// Whether the session moved forward (bytes done, or its phase) in the `window`
    /// before `now`. The first report is where it starts, not a move.
    fn moved_within(&self, window: Duration, now: Timestamp) -> bool {
        self.moved_at.is_some_and(|t| t + window >= now)
    }
}

/// Runs one scenario: `responder` answers the session of `factory`, aborted at `abort`
/// when given.
pub fn run_scenario(
    plugin: &dyn VendorPlugin,
    factory: &dyn SessionFactory,
    responder: &Responder,
    abort: Option<AbortAt>,
    seed: u64,
    limits: RunLimits,
) -> Result<Observation, crate::plugin::PluginFailure> {
    let session = factory.start()?;
    let info = plugin.info();
    let watchdog_limits = WatchdogLimits::new(
        &info.timeouts,
        factory.image_size(),
        limits.bitrate,
        limits.budget.percent,
        crate::driver::Stage2Config::default().confirm_window,
    );
    let mut runner = Runner {
        plugin,
        session,
        peer: match responder {
            Responder::Hostile(behaviour) => {
                ActivePeer::Hostile(Peer::new(*behaviour, seed, &info.sends, &info.receives, T0))
            }
            Responder::Replay(script) => {
                ActivePeer::Replay(ReplayPeer::new(script.clone(), T0, limits.bitrate))
            }
        },
        limits,
        meter: BusBudget::new(limits.bitrate, limits.budget),
        watchdog: Watchdog::new(watchdog_limits, T0),
        inbox: BTreeMap::new(),
        seq: 0,
        now: T0,
        first_frame_end: None,
        first_deadline: None,
        abort,
        aborted_at: None,
        steps: 0,
        phase: SessionPhase::Transferring,
        held_until: None,
        progress: Progress {
            mark: None,
            moved_at: None,
        },
        obs: Observation {
            fault: None,
            id_violations: Vec::new(),
            frames_sent: 0,
            peak_load_percent: 0.0,
            budget_exceeded: None,
            flood: None,
            phases: Vec::new(),
            aborted: false,
            replay: None,
            ending: Ending::Stopped {
                why: "not run".into(),
            },
        },
    };
    runner.obs.ending = runner.run();
    if let ActivePeer::Replay(peer) = &runner.peer {
        runner.obs.replay = Some(peer.progress().clone());
    }
    Ok(runner.obs)
}

impl Runner<'_> {
    fn elapsed(&self) -> Duration {
        self.now.saturating_duration_since(T0)
    }

    fn run(&mut self) -> Ending {
        if self.abort == Some(AbortAt::Start) {
            self.do_abort("the conformance run aborts at the start");
        }
        loop {
            if let Some(end) = self.settle() {
                return end;
            }
            let Some(next) = self.next_time() else {
                return Ending::Stopped {
                    why: "nothing left to wait for".into(),
                };
            };
            if next.saturating_duration_since(T0) > self.limits.horizon {
                return Ending::Stopped {
                    why: format!(
                        "still {:?} after {:.0} s of virtual time",
                        self.watchdog.phase(),
                        self.limits.horizon.as_secs_f64()
                    ),
                };
            }
            self.now = self.now.max(next);
            if let Some(end) = self.step() {
                return end;
            }
        }
    }

    /// Tells the session to stop, as the engine does when a gate turns red.
    fn do_abort(&mut self, message: &str) {
        if self.aborted_at.is_some() {
            return;
        }
        self.session
            .abort(self.now, codes::WATCHDOG_EXPIRED, message);
        self.aborted_at = Some(self.now);
        self.obs.aborted = true;
    }

    /// Takes every frame the session has to send now and puts it on the wire.
    fn drain(&mut self) {
        let info = self.plugin.info();
        let mut n = 0usize;
        loop {
            // The replay asks the plugin for its next frame no sooner than the recorded
            // one went out: the recording's pace (the engine's budget on the bench) is
            // kept, and with it what the plugin's timers see.
            if let ActivePeer::Replay(peer) = &self.peer {
                match peer.hold_until().filter(|t| *t > self.now) {
                    Some(until) => {
                        self.held_until = Some(until);
                        return;
                    }
                    None => self.held_until = None,
                }
            }
            let Some(frame) = self.session.poll_transmit(self.now) else {
                return;
            };
            n += 1;
            if n > self.limits.max_frames_per_drain {
                self.obs.flood = Some(self.limits.max_frames_per_drain);
                return;
            }
            if !info.may_send(frame.id()) {
                self.obs.id_violations.push(frame);
                self.do_abort(&format!(
                    "the plugin tried to send {frame} outside its declared identifiers"
                ));
                continue;
            }
            let end = self.meter.record_sent(self.now, &frame);
            self.obs.frames_sent += 1;
            let used = self.meter.bits_in_window(end);
            let capacity = u64::from(self.meter.bitrate()) * self.meter.window().as_micros() as u64
                / 1_000_000;
            let pct = used as f64 * 100.0 / capacity.max(1) as f64;
            self.obs.peak_load_percent = self.obs.peak_load_percent.max(pct);
            // Streaming an image as fast as it is handed out is the engine's to pace;
            // traffic above the budget while nothing moves forward is a flood.
            if used > self.meter.limit_bits()
                && self.obs.budget_exceeded.is_none()
                && !self.progress.moved_within(self.meter.window(), self.now)
            {
                self.obs.budget_exceeded = Some(BudgetExcess {
                    at: end.saturating_duration_since(T0),
                    bits: used,
                    limit: self.meter.limit_bits(),
                });
            }
            if self.first_frame_end.is_none() {
                self.first_frame_end = Some(end);
            }
            match &mut self.peer {
                ActivePeer::Hostile(peer) => {
                    peer.heard_plugin();
                    for (at, reply) in peer.answer(end, &frame) {
                        self.seq += 1;
                        self.inbox.insert((at, self.seq), reply);
                    }
                }
                ActivePeer::Replay(peer) => peer.heard(end, &frame, self.phase),
            }
        }
    }

    /// Drains the session and reads its status; `Some` when the run is over.
    fn settle(&mut self) -> Option<Ending> {
        self.steps += 1;
        if self.steps > self.limits.max_steps {
            return Some(Ending::Stopped {
                why: format!(
                    "the session was called {} times in {:.1} s of virtual time without \
                     ending (a deadline that never moves forward?)",
                    self.limits.max_steps,
                    self.elapsed().as_secs_f64()
                ),
            });
        }
        self.drain();
        if self.first_frame_end.is_some() && self.first_deadline.is_none() {
            self.first_deadline = Some(
                self.session
                    .poll_timeout()
                    .unwrap_or(self.now + self.plugin.info().timeouts.transfer_response()),
            );
        }
        if let Some(n) = self.obs.flood {
            return Some(Ending::Stopped {
                why: format!("the plugin handed out more than {n} frames at once"),
            });
        }
        if let Some(excess) = self.obs.budget_exceeded {
            return Some(Ending::Stopped {
                why: format!(
                    "the run stopped at {:.3} s, when the plugin's own traffic exceeded the \
                     bus budget",
                    excess.at.as_secs_f64()
                ),
            });
        }
        let report = self.session.status();
        self.progress
            .read(self.now, report.phase, report.bytes_done);
        self.phase = report.phase;
        if !self.obs.phases.contains(&report.phase) {
            self.obs.phases.push(report.phase);
        }
        if self.obs.fault.is_none()
            && let Some(f) = report.failure.as_ref().filter(|f| super::is_fault(f.code))
        {
            self.obs.fault = Some(format!("{}: {}", f.code.get(), f.message));
        }
        if report.phase.is_final() {
            // What an ending session still has to send (an abort to the BMS) goes out.
            self.drain();
            if self.aborted_at.is_some()
                && !(report.phase == SessionPhase::Failed
                    && report
                        .failure
                        .as_ref()
                        .is_some_and(|f| f.code == ErrorCode::ABORTED))
            {
                return Some(Ending::AbortMisreported { report });
            }
            return Some(Ending::Final {
                after: self.elapsed(),
                report,
            });
        }
        if let Some(AbortAt::Phase(p)) = self.abort
            && p == report.phase
            && self.aborted_at.is_none()
        {
            self.do_abort(&format!("the conformance run aborts in {p:?}"));
            return self.settle();
        }
        let watched = match report.phase {
            SessionPhase::Installing => Some(Watched::Installing),
            SessionPhase::Restarting => Some(Watched::Restarting),
            SessionPhase::Verifying => Some(Watched::Verifying),
            _ => None,
        };
        if let Some(w) = watched {
            self.watchdog.enter(w, self.now);
        }
        self.watchdog.progress(report.bytes_done, self.now);
        None
    }

    /// The abort scenario's own deadline.
    fn abort_due(&self) -> Option<Timestamp> {
        if self.aborted_at.is_some() {
            return None;
        }
        let first = self.first_frame_end?;
        match self.abort? {
            AbortAt::FirstFrame => Some(first),
            AbortAt::Waiting => {
                let deadline = self.first_deadline?.max(first);
                Some(first + deadline.saturating_duration_since(first) / 2)
            }
            AbortAt::Start | AbortAt::Phase(_) => None,
        }
    }

    /// The next time anything happens.
    fn next_time(&mut self) -> Option<Timestamp> {
        let candidates = [
            self.session.poll_timeout(),
            self.inbox.keys().next().map(|(t, _)| *t),
            match &self.peer {
                ActivePeer::Hostile(peer) => peer.next_noise(),
                ActivePeer::Replay(peer) => peer.next_due(),
            },
            match self.aborted_at {
                Some(at) => Some(at + self.limits.abort_grace),
                None => Some(self.watchdog.deadline()),
            },
            self.abort_due(),
            self.held_until,
        ];
        candidates.into_iter().flatten().min()
    }

    /// Handles what is due at `now`; `Some` when the run is over.
    fn step(&mut self) -> Option<Ending> {
        let now = self.now;
        if self.abort_due().is_some_and(|t| t <= now) {
            self.do_abort("the conformance run aborts the session");
            return None;
        }
        if self.held_until.is_some_and(|t| t <= now) {
            // The recorded frame's time has come.
            if let Some(end) = self.settle() {
                return Some(end);
            }
        }
        while let Some(entry) = self.inbox.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let frame = entry.remove();
            if self.plugin.info().wants(frame.id()) {
                self.session.handle_frame(now, &frame);
                if let Some(end) = self.settle() {
                    return Some(end);
                }
            }
        }
        let unsolicited = match &mut self.peer {
            ActivePeer::Hostile(peer) => peer.take_noise(now),
            ActivePeer::Replay(peer) => peer.take_due(now),
        };
        for frame in unsolicited {
            if self.plugin.info().wants(frame.id()) {
                self.session.handle_frame(now, &frame);
                if let Some(end) = self.settle() {
                    return Some(end);
                }
            }
        }
        if self.session.poll_timeout().is_some_and(|t| t <= now) {
            self.session.handle_timeout(now);
            if let Some(end) = self.settle() {
                return Some(end);
            }
        }
        match self.aborted_at {
            Some(at) if now >= at + self.limits.abort_grace => {
                let report = self.session.status();
                Some(Ending::AbortIgnored {
                    phase: report.phase,
                })
            }
            None if self.watchdog.expired(now) => Some(Ending::WatchdogExpired {
                phase: self.watchdog.phase(),
                elapsed: self.watchdog.elapsed(now),
                limit: self.watchdog.limits().limit(self.watchdog.phase()),
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod budget_tests {
    //! The bus-budget rule: traffic above the budget fails only while the session does not
    //! move forward.

    use super::*;
    use crate::plugin::{
        BatteryMatch, DecodedVersion, PackageRead, PackageRejection, PackageSummary, PluginFailure,
        PluginInfo, SessionStart,
    };
    use bmsfw_plugin_api::{BatteryIdentity, CanId, CanIdRange, PluginIdentity};

    const FRAMES: u64 = 64 * 200;

    /// Hands out 64 eight-byte frames every millisecond, far more than the bus carries,
    /// until it has handed out [`FRAMES`]. With `moves`, each frame counts 8 bytes done.
    struct Streamer {
        sent: u64,
        next: Timestamp,
        moves: bool,
        aborted: bool,
    }

    impl VendorSession for Streamer {
        fn handle_frame(&mut self, _: Timestamp, _: &CanFrame) {}
        fn handle_timeout(&mut self, _: Timestamp) {}
        fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
            if self.aborted || self.sent >= FRAMES || now < self.next {
                return None;
            }
            self.sent += 1;
            if self.sent % 64 == 0 {
                self.next = now + Duration::from_millis(1);
            }
            CanFrame::new(CanId::standard(0x7E0)?, &[0xA5; 8])
        }
        fn poll_timeout(&mut self) -> Option<Timestamp> {
            (!self.aborted && self.sent < FRAMES).then_some(self.next)
        }
        fn status(&mut self) -> SessionReport {
            let total = FRAMES * 8;
            if self.aborted {
                return SessionReport::failed(
                    PluginFailure {
                        code: ErrorCode::ABORTED,
                        message: "aborted".into(),
                    },
                    0,
                    total,
                );
            }
            SessionReport {
                phase: if self.sent >= FRAMES {
                    SessionPhase::Done
                } else {
                    SessionPhase::Transferring
                },
                bytes_done: if self.moves { self.sent * 8 } else { 0 },
                bytes_total: total,
                modules: Vec::new(),
                failure: None,
            }
        }
        fn abort(&mut self, _: Timestamp, _: u32, _: &str) {
            self.aborted = true;
        }
        fn checkpoint(&mut self) -> Vec<u8> {
            Vec::new()
        }
        fn running_version(&mut self) -> Option<DecodedVersion> {
            None
        }
    }

    struct Plugin(PluginInfo);

    fn not_used() -> PluginFailure {
        PluginFailure::contract("not used by the runner")
    }

    impl VendorPlugin for Plugin {
        fn info(&self) -> &PluginInfo {
            &self.0
        }
        fn match_battery(&self, _: &BatteryIdentity) -> Result<BatteryMatch, PluginFailure> {
            Err(not_used())
        }
        fn decode_version(&self, _: &[u8]) -> Result<DecodedVersion, PluginFailure> {
            Err(not_used())
        }
        fn inspect_package(
            &self,
            _: Arc<dyn PackageRead>,
        ) -> Result<PackageSummary, PackageRejection> {
            Err(PackageRejection::from(not_used()))
        }
        fn start_session(&self, _: SessionStart) -> Result<Box<dyn VendorSession>, PluginFailure> {
            Err(not_used())
        }
    }

    struct Factory {
        moves: bool,
    }

    impl SessionFactory for Factory {
        fn start(&self) -> Result<Box<dyn VendorSession>, PluginFailure> {
            Ok(Box::new(Streamer {
                sent: 0,
                next: Timestamp::from_micros(0),
                moves: self.moves,
                aborted: false,
            }))
        }
        fn image_size(&self) -> u64 {
            FRAMES * 8
        }
    }

    fn run(moves: bool) -> Observation {
        let id = |raw| CanId::standard(raw).unwrap();
        let info = PluginInfo::from_abi(
            PluginIdentity::new("com.example.stream", "Streamer", "1.0.0")
                .sends(CanIdRange::single(id(0x7E0)))
                .receives(CanIdRange::single(id(0x7E8)))
                .file_type("bin"),
        )
        .unwrap();
        run_scenario(
            &Plugin(info),
            &Factory { moves },
            &Responder::Hostile(PeerBehaviour::Silence),
            None,
            1,
            RunLimits::default(),
        )
        .unwrap()
    }

    #[test]
    fn streaming_that_moves_forward_is_the_engines_to_pace() {
        let obs = run(true);
        assert!(obs.peak_load_percent > 100.0, "{}", obs.peak_load_percent);
        assert!(obs.budget_exceeded.is_none());
        assert!(
            matches!(obs.ending, Ending::Final { ref report, .. } if report.phase == SessionPhase::Done),
            "{:?}",
            obs.ending
        );
    }

    #[test]
    fn the_same_traffic_moving_nothing_forward_exceeds_the_budget() {
        let obs = run(false);
        let excess = obs.budget_exceeded.expect("a flood without progress");
        assert!(excess.bits > excess.limit);
        assert!(
            matches!(obs.ending, Ending::Stopped { .. }),
            "{:?}",
            obs.ending
        );
    }
}
