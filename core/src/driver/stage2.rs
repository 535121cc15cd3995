//! The stage-2 driver: one plugin session, enforced.
//!
//! [`Stage2`] is sans-IO, like the session it drives: the bus task hands it the frames the
//! plugin receives, the time, the gates' verdicts and every 0x35F the battery broadcasts,
//! and asks it for frames to send and for its next deadline. It
//!
//! - feeds the session only frames on the identifiers the plugin declared it receives;
//! - never sends a frame outside the plugin's declared transmit identifiers: the first
//!   such frame stops the session (code 741);
//! - asks the plugin for a frame only when one more frame of the longest length it may
//!   send (8 bytes, on the longest identifier format it declared) fits in the bus-load
//!   budget, which counts every frame on the bus, telemetry included;
//! - runs the per-phase [`Watchdog`] (743, or 742 when the budget held the plugin back for
//!   most of the stall);
//! - aborts the session through the plugin when a gate turns red, and fails with that
//!   gate's code;
//! - when the installer accepts only a newer version and 0x35F could not tell (it shows
//!   no build, the package has one: [`NewerCheck::AgainstRunning`]), stops the session
//!   with 731 unless the version the plugin reads from the battery is older than the
//!   package's, or when the plugin has not said by the time the transfer moves;
//! - after the plugin reports the update done, confirms it from what is true (below).
//!
//! # Confirmation
//!
//! An update of the whole battery is confirmed by BMS-Can itself: a 0x35F received after
//! the restart, decoded by the plugin, showing the package's version (as far as 0x35F
//! shows: a plugin whose packages carry a build that 0x35F does not carry has checked the
//! build over its own protocol before it reported the update done).
//!
//! An update of some nodes or modules only ([`UpdateTargets::Only`]) is confirmed first by
//! the plugin's own report: every node or module chosen must be reported done, with its
//! version. 0x35F speaks for the whole battery (a bank's shows its lowest node), so it
//! can show the change only when every node or module the plugin reports runs the
//! package's version or a newer one; then it must, as for a whole battery. Otherwise a
//! 0x35F received after the restart, whatever it shows, confirms that the battery speaks
//! BMS-Can again, and the job keeps what it shows as the battery's version after.
//!
//! # States
//!
//! | state | left by | to |
//! |---|---|---|
//! | Running | session Done | Confirming |
//! | Running | session Failed | Finished (plugin's code) |
//! | Running | red gate, watchdog, identifier violation | Aborting |
//! | Aborting | session final and nothing left to send, or the grace period over | Finished (the abort's code) |
//! | Running | session Done, a chosen node or module not reported done | Finished (745) |
//! | Confirming | 0x35F with the target version (or any, when it cannot show it) | Finished (Completed) |
//! | Confirming | confirmation window over, or red gate | Finished (745 or the gate's code) |

use super::budget::{BusBudget, WAKE_BATCH, WORST_FRAME_BITS};
use super::watchdog::{Watchdog, WatchdogLimits, Watched};
use crate::errors::codes;
use crate::gates::{GateReport, Silence};
use crate::job::Percent;
use crate::plugin::{
    DecodedVersion, ModuleStatus, ModuleUpdateState, SessionPhase, VendorPlugin, VendorSession,
    VersionOrder,
};
use crate::vrm::UpdateTargets;
use bmsfw_plugin_api::{CanFrame, Timestamp};
use bmsfw_protocols::bit_timing::{IdFormat, worst_case_frame_bits};
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Settings of a driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage2Config {
    /// The bus-load budget in percent (scales the transfer watchdog).
    pub budget_percent: u8,
    /// How long the engine waits, once the plugin reports the update done, for 0x35F to
    /// show the package's version. Default 15 s (identity frames come every few seconds).
    pub confirm_window: Duration,
    /// How long an aborted session may still send (to tell the BMS to drop the update).
    /// Default 500 ms.
    pub abort_grace: Duration,
}

impl Default for Stage2Config {
    fn default() -> Stage2Config {
        Stage2Config {
            budget_percent: 80,
            confirm_window: Duration::from_secs(15),
            abort_grace: Duration::from_millis(500),
        }
    }
}

/// A step of the update after the transfer, in the installer's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// The BMS applies the image.
    Installing,
    /// The battery restarts.
    Restarting,
    /// The new version is being confirmed.
    Verifying,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageOutcome {
    /// The plugin completed the update and 0x35F reports the package's version.
    Completed {
        /// The version 0x35F reports, decoded by the plugin.
        version_after: DecodedVersion,
    },
    /// The update failed.
    Failed {
        /// The catalogue code.
        code: u32,
        /// The complete message.
        message: String,
    },
}

/// What the driver reports to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverEvent {
    /// The plugin reports more acknowledged bytes.
    Progress {
        /// Bytes acknowledged.
        done: u64,
        /// Bytes in total.
        total: u64,
    },
    /// The update moved on to `Step`.
    Step(Step),
    /// The plugin's resume checkpoint after a progress step (journaled by the engine).
    Checkpoint(Vec<u8>),
    /// The modules behind the BMS changed (state or version): the plugin's whole list.
    Modules(Vec<ModuleStatus>),
    /// The session ended; nothing follows.
    Finished(StageOutcome),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Running,
    Aborting {
        code: u32,
        message: String,
        until: Timestamp,
    },
    Confirming {
        deadline: Timestamp,
        seen: Option<DecodedVersion>,
        expect: Expect,
    },
    Finished,
}

/// Whether the driver must still find out that the package is newer than what the battery
/// runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NewerCheck {
    /// Decided already (by the gates, or the installer allows any version).
    NotNeeded,
    /// 0x35F shows the installed version less precisely than the package's (no build):
    /// the version the plugin reads from the battery must be older, and be reported before
    /// the session reports any byte acknowledged or leaves Transferring.
    AgainstRunning,
}

/// What a 0x35F after the update must show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The package's version (as far as 0x35F shows).
    Target,
    /// Anything the plugin decodes: it speaks for nodes or modules not updated.
    AnyVersion,
}

/// The driver of one session. See the [module](self) documentation.
pub struct Stage2 {
    session: Box<dyn VendorSession>,
    plugin: Arc<dyn VendorPlugin>,
    target: DecodedVersion,
    targets: UpdateTargets,
    newer: NewerCheck,
    config: Stage2Config,
    state: State,
    watchdog: Watchdog,
    step: Option<Step>,
    progress: (u64, u64),
    percent: Percent,
    /// The modules as last reported.
    modules: Vec<ModuleStatus>,
    left_transfer_at: Option<Timestamp>,
    restart_since: Option<Timestamp>,
    /// The budget holds the plugin back until the second time; the first is since when
    /// other nodes' frames do (`None` while its own frames fill the window).
    blocked: Option<(Option<Timestamp>, Timestamp)>,
    /// The buffer the session's frames are fetched into (kept to spare an allocation
    /// per round).
    batch: Vec<CanFrame>,
    /// The longest frame the plugin may have sent, in bits: 8 bytes on the longest
    /// identifier format it declared (any other frame is dropped, never sent).
    longest_frame: u32,
    /// The session's own deadline as it last told it, while nothing has been handed to
    /// the session since (`None`: not known). A timer check before that deadline would
    /// change nothing, and costs a hosted session a round trip.
    session_deadline: Option<Option<Timestamp>>,
    /// Time the budget held the plugin back since the watchdog last restarted.
    budget_wait: Duration,
    violations: u64,
    sent: u64,
    events: VecDeque<DriverEvent>,
}

impl fmt::Debug for Stage2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stage2")
            .field("vendor", &self.plugin.info().vendor_id)
            .field("state", &self.state)
            .field("step", &self.step)
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

impl Stage2 {
    /// Drives `session` of `plugin`, which installs `target` (an image of `image_size`
    /// bytes) into the battery's `targets`, on a bus at `bitrate`, from `now`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        session: Box<dyn VendorSession>,
        plugin: Arc<dyn VendorPlugin>,
        target: DecodedVersion,
        targets: UpdateTargets,
        image_size: u64,
        bitrate: u32,
        config: Stage2Config,
        now: Timestamp,
    ) -> Stage2 {
        let limits = WatchdogLimits::new(
            &plugin.info().timeouts,
            image_size,
            bitrate,
            config.budget_percent,
            config.confirm_window,
        );
        let longest_frame = if plugin.info().sends.iter().any(|r| r.first().is_extended()) {
            WORST_FRAME_BITS
        } else {
            worst_case_frame_bits(IdFormat::Standard, 8)
        };
        let mut driver = Stage2 {
            session,
            plugin,
            target,
            targets,
            newer: NewerCheck::NotNeeded,
            config,
            state: State::Running,
            watchdog: Watchdog::new(limits, now),
            step: None,
            progress: (0, image_size),
            percent: Percent::ZERO,
            modules: Vec::new(),
            left_transfer_at: None,
            restart_since: None,
            blocked: None,
            batch: Vec::new(),
            longest_frame,
            session_deadline: None,
            budget_wait: Duration::ZERO,
            violations: 0,
            sent: 0,
            events: VecDeque::new(),
        };
        driver.sync(now);
        driver
    }

    /// The driver with `check` of the package against the battery's own version.
    pub fn with_newer_check(mut self, check: NewerCheck) -> Stage2 {
        self.newer = check;
        self
    }

    /// The watchdog's limits.
    pub fn limits(&self) -> &WatchdogLimits {
        self.watchdog.limits()
    }

    /// Whether the session has ended (its [`DriverEvent::Finished`] was queued).
    pub fn is_finished(&self) -> bool {
        self.state == State::Finished
    }

    /// The furthest step reached after the transfer.
    pub fn step(&self) -> Option<Step> {
        self.step
    }

    /// Bytes acknowledged and in total.
    pub fn progress(&self) -> (u64, u64) {
        self.progress
    }

    /// Frames the plugin tried to send outside its declared identifiers (never sent).
    pub fn violations(&self) -> u64 {
        self.violations
    }

    /// Frames of the plugin sent.
    pub fn frames_sent(&self) -> u64 {
        self.sent
    }

    /// Whether the battery's silence is expected (its restart, within the plugin's
    /// declared limit), for the communicating gate.
    pub fn silence(&self) -> Silence {
        match self.restart_since {
            Some(since) => Silence::Restarting {
                since,
                until: since + self.plugin.info().timeouts.restart_silence_max(),
            },
            None => Silence::NotExpected,
        }
    }

    /// The next event for the engine.
    pub fn poll_event(&mut self) -> Option<DriverEvent> {
        self.events.pop_front()
    }

    fn session_runs(&self) -> bool {
        matches!(self.state, State::Running | State::Aborting { .. })
    }

    /// A frame the plugin receives arrived (the caller passes every frame from other
    /// nodes; the driver keeps those on the plugin's declared receive identifiers).
    pub fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        if self.session_runs() && self.plugin.info().wants(frame.id()) {
            // What the frame changes is read at the next round (`poll_transmits` or a
            // timer): a hosted session carries the frame over with that round trip.
            self.session_deadline = None;
            self.session.handle_frame(now, frame);
        }
    }

    /// The battery broadcast 0x35F with firmware bytes `firmware` (bytes 2-3) at `now`.
    pub fn observe_firmware(&mut self, now: Timestamp, firmware: [u8; 2]) {
        let State::Confirming { expect, .. } = self.state else {
            return;
        };
        let after = self.restart_since.or(self.left_transfer_at);
        if after.is_some_and(|t| now < t) {
            return;
        }
        let decoded = match self.plugin.decode_version(&firmware) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, ?firmware, "plugin could not decode 0x35F");
                return;
            }
        };
        if self.target.shown_by(&decoded) {
            tracing::info!(version = %decoded.display, "BMS-Can confirms the new firmware");
            self.finish(StageOutcome::Completed {
                version_after: decoded.most_precise(&self.target),
            });
        } else if expect == Expect::AnyVersion {
            tracing::info!(
                version = %decoded.display,
                targets = %self.targets,
                "BMS-Can is back; it speaks for nodes or modules not updated, whose versions \
                 it cannot show beside the new one"
            );
            self.finish(StageOutcome::Completed {
                version_after: decoded,
            });
        } else if let State::Confirming { seen, .. } = &mut self.state {
            *seen = Some(decoded);
        }
    }

    /// The gates were evaluated at `now`: a red gate stops the update.
    pub fn handle_gates(&mut self, now: Timestamp, report: &GateReport) {
        let Some(red) = report.first_failure() else {
            return;
        };
        let (code, message) = (red.code(), report.refusal_message());
        match self.state {
            State::Running => self.abort(now, code, message),
            State::Confirming { .. } => self.finish(StageOutcome::Failed { code, message }),
            State::Aborting { .. } | State::Finished => {}
        }
    }

    /// Stops the session: the plugin is told (it may still send, within the identifiers
    /// and the grace period, to make the BMS drop the update) and the session ends with
    /// `code`.
    pub fn abort(&mut self, now: Timestamp, code: u32, message: String) {
        if self.state != State::Running {
            return;
        }
        tracing::warn!(code, %message, "aborting the session");
        self.session_deadline = None;
        self.session.abort(now, code, &message);
        self.state = State::Aborting {
            code,
            message,
            until: now + self.config.abort_grace,
        };
        self.sync(now);
    }

    /// The next frame to send at `now`, if the budget allows one and the plugin has one.
    pub fn poll_transmit(&mut self, now: Timestamp, budget: &mut BusBudget) -> Option<CanFrame> {
        let mut out = Vec::with_capacity(1);
        self.poll_transmits(now, budget, 1, &mut out);
        out.pop()
    }

    /// The frames to send at `now`, at most `max`, as far as the budget allows (each
    /// counted as the longest frame the plugin may send) and the plugin has them,
    /// appended to `out`. The session is asked once for the whole batch (one round trip
    /// for a hosted plugin).
    ///
    /// Returns whether the session handed over every frame it was asked for: then more
    /// may be ready at once, as far as the budget allows (frames shorter than the
    /// longest leave room), and the caller may ask again. Otherwise the session has
    /// nothing more for now, or the budget holds it back until the time
    /// [`Stage2::poll_timeout`] includes.
    pub fn poll_transmits(
        &mut self,
        now: Timestamp,
        budget: &mut BusBudget,
        max: usize,
        out: &mut Vec<CanFrame>,
    ) -> bool {
        if !self.session_runs() {
            return false;
        }
        let fit = if max == 0 {
            0
        } else {
            let starved = self.blocked.and_then(|(since, _)| since);
            let (fit, blocked) = match budget.frames_fitting(now, self.longest_frame, max) {
                Ok(fit) => (fit, None),
                Err(_) => {
                    // Wake when a whole batch fits, not for each frame that leaves the
                    // window: one round trip per batch.
                    let until = budget.time_for(now, self.longest_frame, WAKE_BATCH);
                    // Waiting counts against the watchdog's verdict only while other
                    // nodes' frames hold the plugin back; its own frames filling the
                    // window is the budget's pacing.
                    let held = budget
                        .others_hold_back(now, self.longest_frame)
                        .then(|| starved.unwrap_or(now));
                    (0, Some((held, until)))
                }
            };
            // A wait that other nodes' frames caused ends once they no longer hold the
            // plugin back: the frames fit, or only its own frames fill the window.
            if let Some(since) = starved
                && blocked.is_none_or(|(held, _)| held.is_none())
            {
                self.budget_wait += now.saturating_duration_since(since);
            }
            self.blocked = blocked;
            fit
        };
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear();
        self.session_deadline = None;
        self.session.poll_transmit_batch(now, fit, &mut batch);
        if self.check_newer(now) {
            // The plugin read the battery's version in this very round and the package is
            // not newer: the frames it made next (the update's first steps) never go out.
            batch.clear();
            self.batch = batch;
            return false;
        }
        let mut filled = fit > 0 && batch.len() == fit;
        // With room for none, the round only reads what the session received.
        let mut exhausted = fit > 0 && batch.len() < fit;
        for frame in batch.drain(..) {
            if self.plugin.info().may_send(frame.id()) {
                budget.record_sent(now, &frame);
                self.sent += 1;
                out.push(frame);
                continue;
            }
            self.violations += 1;
            tracing::error!(%frame, "plugin frame outside its declared identifiers dropped");
            if self.state == State::Running {
                let declared: Vec<String> = self
                    .plugin
                    .info()
                    .sends
                    .iter()
                    .map(|r| r.to_string())
                    .collect();
                let message = format!(
                    "the plugin {} tried to send {frame} on identifier {}, outside its declared \
                     identifiers {}; the frame was not sent and the update stopped",
                    self.plugin.info().vendor_id,
                    frame.id(),
                    declared.join(", ")
                );
                self.abort(now, codes::PLUGIN_CAN_ID_VIOLATION, message);
            }
            // The rest of the batch was made before the session heard of the abort.
            exhausted = false;
            filled = false;
            break;
        }
        self.batch = batch;
        if exhausted
            && let State::Aborting { code, message, .. } = &self.state
            && self.session.status().phase.is_final()
        {
            let (code, message) = (*code, message.clone());
            self.finish(StageOutcome::Failed { code, message });
        }
        self.sync(now);
        filled && self.session_runs()
    }

    /// The next time [`Stage2::handle_timeout`] must be called.
    pub fn poll_timeout(&mut self) -> Option<Timestamp> {
        let mut next: Option<Timestamp> = None;
        let mut take = |t: Option<Timestamp>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        match &self.state {
            State::Running => {
                let due = self.session.poll_timeout();
                self.session_deadline = Some(due);
                take(due);
                take(Some(self.watchdog.deadline()));
            }
            State::Aborting { until, .. } => {
                let due = self.session.poll_timeout();
                self.session_deadline = Some(due);
                take(due);
                take(Some(*until));
            }
            State::Confirming { deadline, .. } => take(Some(*deadline)),
            State::Finished => return None,
        }
        take(self.blocked.map(|(_, until)| until));
        next
    }

    /// Time passed: the session's own deadline, the watchdog, the abort grace and the
    /// confirmation window.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        // Known not to be due (told since the session last received anything): nothing to
        // check.
        let not_due = match self.session_deadline {
            Some(None) => true,
            Some(Some(due)) => now < due,
            None => false,
        };
        if self.session_runs() && !not_due {
            self.session_deadline = None;
            self.session.handle_timeout_if_due(now);
        }
        if self.state != State::Running || self.watchdog.expired(now) {
            // Before the watchdog bites, what the session received counts.
            self.sync(now);
        }
        match &self.state {
            State::Running if self.watchdog.expired(now) => {
                let elapsed = self.watchdog.elapsed(now);
                let starved = self.budget_wait
                    + self
                        .blocked
                        .and_then(|(since, _)| since)
                        .map_or(Duration::ZERO, |since| now.saturating_duration_since(since));
                let (code, cause) = if starved * 2 > elapsed {
                    (
                        codes::BUS_BUDGET_EXCEEDED,
                        format!(
                            "other traffic kept the bus above its load budget for {:.1} s of it",
                            starved.as_secs_f64()
                        ),
                    )
                } else {
                    (
                        codes::WATCHDOG_EXPIRED,
                        "the plugin made no progress".to_owned(),
                    )
                };
                let message = format!(
                    "no progress while {:?} for {:.1} s (limit {:.1} s): {cause}",
                    self.watchdog.phase(),
                    elapsed.as_secs_f64(),
                    self.watchdog
                        .limits()
                        .limit(self.watchdog.phase())
                        .as_secs_f64()
                );
                self.abort(now, code, message);
            }
            State::Aborting {
                code,
                message,
                until,
            } if now >= *until => {
                let (code, message) = (*code, message.clone());
                self.finish(StageOutcome::Failed { code, message });
            }
            State::Confirming { deadline, seen, .. } if now >= *deadline => {
                let message = match seen {
                    Some(v) => format!(
                        "after the update the battery's 0x35F reports {} [{}], the package \
                         installs {} [{}]",
                        v.display,
                        hex::encode_upper(&v.raw),
                        self.target.display,
                        hex::encode_upper(&self.target.raw)
                    ),
                    None => format!(
                        "the battery sent no 0x35F within {:.0} s after the update to confirm {}",
                        self.config.confirm_window.as_secs_f64(),
                        self.target.display
                    ),
                };
                self.finish(StageOutcome::Failed {
                    code: codes::VERSION_NOT_CONFIRMED,
                    message,
                });
            }
            _ => {}
        }
    }

    fn finish(&mut self, outcome: StageOutcome) {
        if self.state == State::Finished {
            return;
        }
        tracing::info!(?outcome, "session finished");
        self.state = State::Finished;
        self.events.push_back(DriverEvent::Finished(outcome));
    }

    fn enter_step(&mut self, step: Step, now: Timestamp) {
        if self.left_transfer_at.is_none() {
            self.left_transfer_at = Some(now);
        }
        if step == Step::Restarting && self.restart_since.is_none() {
            self.restart_since = Some(now);
        }
        if self.step.is_some_and(|s| s >= step) {
            return;
        }
        // A plugin may pass a step in less time than one look (Installing done before the
        // engine saw it): every step up to this one is still reported, in order, so the
        // job and the installer see each of them passed.
        for passed in [Step::Installing, Step::Restarting, Step::Verifying] {
            if passed < step && self.step.is_none_or(|s| s < passed) {
                self.events.push_back(DriverEvent::Step(passed));
            }
        }
        self.step = Some(step);
        self.events.push_back(DriverEvent::Step(step));
    }

    /// The modules behind the BMS as the plugin last reported them.
    pub fn modules(&self) -> &[ModuleStatus] {
        &self.modules
    }

    /// Once the plugin reports the update done: for an update of chosen nodes or modules,
    /// whether the plugin reports each of them done with the version it read, and what
    /// 0x35F can show afterwards (see the module documentation).
    fn chosen_confirmed(&self) -> Result<Expect, String> {
        let UpdateTargets::Only(ids) = &self.targets else {
            return Ok(Expect::Target);
        };
        for id in ids {
            let Some(m) = self.modules.iter().find(|m| m.index == *id) else {
                return Err(format!(
                    "the plugin reported the update done but not node/module {id}, which the \
                     installer chose; it reported {}",
                    module_list(&self.modules)
                ));
            };
            // The plugin read the version it runs now (a pack's module runs the version of
            // its own image, not necessarily the package's).
            if m.state != ModuleUpdateState::Done || m.version.is_none() {
                return Err(format!(
                    "the plugin reported the update done but node/module {id}, which the \
                     installer chose, {}; it reported {}",
                    format!("{:?}", m.state).to_lowercase(),
                    module_list(&self.modules)
                ));
            }
        }
        // 0x35F speaks for the whole battery: it can show the new version only when no
        // node or module runs an older (or unknown) one.
        let all_current = self.modules.iter().all(|m| {
            m.version
                .as_ref()
                .is_some_and(|v| !matches!(v.order_against(&self.target), VersionOrder::Older))
        });
        tracing::info!(
            targets = %self.targets,
            modules = %module_list(&self.modules),
            all_current,
            "the plugin confirms every chosen node or module"
        );
        Ok(if all_current {
            Expect::Target
        } else {
            Expect::AnyVersion
        })
    }

    /// [`NewerCheck::AgainstRunning`]: whether the plugin's reading of the battery shows
    /// the package newer; stops the session if not (true when it was stopped).
    fn check_newer(&mut self, now: Timestamp) -> bool {
        if self.newer != NewerCheck::AgainstRunning || self.state != State::Running {
            return false;
        }
        let message = match self.session.running_version() {
            Some(running) => match self.target.order_against(&running) {
                VersionOrder::Newer => {
                    tracing::info!(
                        running = %running.display,
                        target = %self.target.display,
                        "the battery's own version shows the package newer"
                    );
                    self.newer = NewerCheck::NotNeeded;
                    return false;
                }
                _ => format!(
                    "version choice: the battery runs {} [{}] (read by its plugin; 0x35F does \
                     not show it whole), the package is {} [{}]: not newer. To install it \
                     anyway, allow a reinstall or downgrade",
                    running.display,
                    hex::encode_upper(&running.raw),
                    self.target.display,
                    hex::encode_upper(&self.target.raw)
                ),
            },
            None => {
                let report = self.session.status();
                if report.bytes_done == 0 && report.phase == SessionPhase::Transferring {
                    return false;
                }
                format!(
                    "version choice: the plugin {} did not report the version the battery \
                     runs before the transfer began, and 0x35F does not show it whole: \
                     whether {} is newer is unknown. To install it anyway, allow a \
                     reinstall or downgrade",
                    self.plugin.info().vendor_id,
                    self.target.display
                )
            }
        };
        self.abort(now, codes::GATE_VERSION_NOT_NEWER, message);
        true
    }

    /// Reads the session's status and turns its changes into events.
    fn sync(&mut self, now: Timestamp) {
        if !self.session_runs() || self.check_newer(now) {
            return;
        }
        let report = self.session.status();
        // Before the phase: a failed module is reported before the session's failure.
        if report.modules != self.modules {
            self.modules = report.modules.clone();
            self.events
                .push_back(DriverEvent::Modules(report.modules.clone()));
        }
        let bytes = (report.bytes_done, report.bytes_total);
        if bytes != self.progress {
            self.progress = bytes;
            self.events.push_back(DriverEvent::Progress {
                done: bytes.0,
                total: bytes.1,
            });
            if self.watchdog.progress(bytes.0, now) {
                self.budget_wait = Duration::ZERO;
            }
            let percent = Percent::of(bytes.0, bytes.1);
            if bytes.1 > 0 && percent != self.percent && report.phase == SessionPhase::Transferring
            {
                self.percent = percent;
                self.session_deadline = None;
                let checkpoint = self.session.checkpoint();
                if !checkpoint.is_empty() {
                    self.events.push_back(DriverEvent::Checkpoint(checkpoint));
                }
            }
        }
        match report.phase {
            SessionPhase::Transferring => {}
            SessionPhase::Installing => {
                self.enter_step(Step::Installing, now);
                self.watchdog.enter(Watched::Installing, now);
            }
            SessionPhase::Restarting => {
                self.enter_step(Step::Restarting, now);
                self.watchdog.enter(Watched::Restarting, now);
            }
            SessionPhase::Verifying => {
                self.enter_step(Step::Verifying, now);
                self.watchdog.enter(Watched::Verifying, now);
            }
            SessionPhase::Done => match &self.state {
                State::Running => {
                    self.enter_step(Step::Verifying, now);
                    let expect = match self.chosen_confirmed() {
                        Ok(expect) => expect,
                        Err(message) => {
                            return self.finish(StageOutcome::Failed {
                                code: codes::VERSION_NOT_CONFIRMED,
                                message,
                            });
                        }
                    };
                    self.watchdog.enter(Watched::Confirming, now);
                    self.state = State::Confirming {
                        deadline: now + self.config.confirm_window,
                        seen: None,
                        expect,
                    };
                }
                State::Aborting { code, message, .. } => {
                    let (code, message) = (*code, message.clone());
                    self.finish(StageOutcome::Failed {
                        code,
                        message: format!(
                            "{message} (the plugin had already completed its update steps)"
                        ),
                    });
                }
                _ => {}
            },
            SessionPhase::Failed => {
                let outcome = match &self.state {
                    // The session ends failed as asked; it may still have frames to send,
                    // which poll_transmit hands out before finishing.
                    State::Aborting { .. } => return,
                    _ => {
                        let failure = report.failure.unwrap_or_else(|| {
                            crate::plugin::PluginFailure::contract("failed without a failure")
                        });
                        StageOutcome::Failed {
                            code: failure.code.get(),
                            message: failure.message,
                        }
                    }
                };
                self.finish(outcome);
            }
        }
    }
}

/// `1 skipped (2.10), 2 done (2.15)`.
fn module_list(modules: &[ModuleStatus]) -> String {
    if modules.is_empty() {
        return "no nodes or modules".to_owned();
    }
    modules
        .iter()
        .map(|m| {
            let version = m
                .version
                .as_ref()
                .map_or(String::new(), |v| format!(" ({})", v.display));
            format!("{} {:?}{version}", m.index, m.state).to_lowercase()
        })
        .collect::<Vec<_>>()
        .join(", ")
}
