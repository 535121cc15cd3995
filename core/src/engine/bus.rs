//! One bus: its interface, its BMS-Can monitor, the GX keep-alive, the bus-load budget
//! and at most one stage-2 driver, run by one task.
//!
//! The task reads nothing itself: a reader task forwards the interface's events. Under
//! the bus's lock (never held across an await) the task feeds every frame to the monitor,
//! the budget and the driver, evaluates the gates on every telemetry change and on a
//! timer, collects the frames to send, and queues the driver's job changes for the job
//! writer; then it sends the frames and sleeps until the next event or deadline.

use super::Shared;
use super::battery;
use super::jobs::{JobChange, JobRequest};
use crate::driver::{BusBudget, DriverEvent, Stage2, StageOutcome, Step};
use crate::errors::codes;
use crate::gates::{self, GateInputs, GateReport, Moment, Silence, SiteSnapshot, VersionInputs};
use crate::gx_frames::{GxKeepAlive, keep_alive_pair_bits};
use crate::job::{JobEvent, JobFailure, JobId, Percent};
use crate::plugin::DecodedVersion;
use crate::plugin::allowlist::FirmwareRange;
use crate::telemetry::{BmsCanMonitor, FrameKind, FrameOutcome};
use crate::unix_time::UnixMillis;
use crate::vrm::{Acknowledgements, BatteryView, EngineUpdate, VersionPolicy};
use bmsfw_can::{CanError, CanEvent, CanInterface};
use bmsfw_plugin_api::{CanFrame, Timestamp};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::{Notify, mpsc};

/// What a job's gates compare, fixed when its stage 2 starts.
#[derive(Debug, Clone)]
pub(crate) struct JobGates {
    pub acknowledgements: Acknowledgements,
    pub policy: VersionPolicy,
    /// The firmware before the update (frozen: 0x35F changes once the update applies).
    pub installed: Option<DecodedVersion>,
    pub target: Option<DecodedVersion>,
    pub approved: FirmwareRange,
}

impl JobGates {
    pub(crate) fn new(
        request: &JobRequest,
        installed: Option<DecodedVersion>,
        target: Option<DecodedVersion>,
        approved: FirmwareRange,
    ) -> JobGates {
        JobGates {
            acknowledgements: request.acknowledgements.clone(),
            policy: request.options.version_policy,
            installed,
            target,
            approved,
        }
    }
}

/// The running stage 2 of a bus.
pub(crate) struct Active {
    pub job: JobId,
    pub stage2: Stage2,
    pub gates: JobGates,
    /// The last transfer percentage sent to the job, and when.
    percent: Percent,
    percent_at: Option<Timestamp>,
    /// A checkpoint not yet journaled (held back with the progress).
    checkpoint: Option<Vec<u8>>,
}

impl Active {
    pub(crate) fn new(job: JobId, stage2: Stage2, gates: JobGates) -> Active {
        Active {
            job,
            stage2,
            gates,
            percent: Percent::ZERO,
            percent_at: None,
            checkpoint: None,
        }
    }
}

/// Everything of one bus that the task changes, behind the bus's lock.
pub(crate) struct BusCore {
    pub monitor: BmsCanMonitor,
    pub budget: BusBudget,
    pub active: Option<Active>,
    keepalive: GxKeepAlive,
    /// The latest time handed to the driver: sessions never see time go back.
    clock: Timestamp,
    gates_dirty: bool,
    next_gate_check: Timestamp,
    next_publish: Timestamp,
    last_view: Option<BatteryView>,
    /// Set once the interface failed for good.
    pub failed: Option<String>,
}

/// One bus of the engine.
pub(crate) struct Bus {
    pub index: usize,
    pub name: String,
    pub iface: Arc<dyn CanInterface>,
    pub bitrate: u32,
    pub core: Mutex<BusCore>,
    pub wake: Notify,
}

impl Bus {
    pub(crate) fn new(
        index: usize,
        iface: Arc<dyn CanInterface>,
        shared_config: &super::EngineConfig,
        now: Timestamp,
    ) -> Bus {
        let name = iface.name().to_owned();
        let bitrate = iface.bitrate().unwrap_or(crate::config::BMS_CAN_BITRATE);
        Bus {
            index,
            core: Mutex::new(BusCore {
                monitor: BmsCanMonitor::new(name.clone()),
                budget: BusBudget::new(bitrate, shared_config.budget),
                active: None,
                keepalive: GxKeepAlive::new(now, shared_config.keep_alive_period),
                clock: now,
                gates_dirty: false,
                next_gate_check: now,
                next_publish: now,
                last_view: None,
                failed: None,
            }),
            name,
            iface,
            bitrate,
            wake: Notify::new(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, BusCore> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One evaluation of a job's gates.
pub(crate) struct GateCall<'a> {
    pub moment: Moment,
    pub now: Timestamp,
    pub gates: &'a JobGates,
    /// Another job running on the bus.
    pub other_update: Option<JobId>,
    pub silence: Silence,
}

/// The gates of a job on `bus`.
pub(crate) fn evaluate_gates(
    shared: &Shared,
    bus: &Bus,
    core: &BusCore,
    call: GateCall<'_>,
) -> GateReport {
    let GateCall {
        moment,
        now,
        gates,
        other_update,
        silence,
    } = call;
    let site = SiteSnapshot::read(&shared.vrm, &shared.site, &shared.config.gx_firmware);
    let inputs = GateInputs {
        moment,
        now,
        site: &site,
        bitrate: bus.iface.bitrate(),
        controller: bus.iface.controller_state(),
        battery: core.monitor.battery(),
        silence,
        other_update,
        acknowledgements: &gates.acknowledgements,
        versions: VersionInputs {
            policy: gates.policy,
            installed: gates.installed.as_ref(),
            target: gates.target.as_ref(),
            approved: Some(&gates.approved),
        },
    };
    gates::evaluate(
        &inputs,
        &shared.config.gates,
        shared.config.telemetry_max_age,
    )
}

impl BusCore {
    /// `t`, or the latest time already handed out when `t` is earlier.
    fn tick(&mut self, t: Timestamp) -> Timestamp {
        self.clock = self.clock.max(t);
        self.clock
    }

    fn handle_frame(&mut self, shared: &Shared, at: Timestamp, frame: &CanFrame) {
        let outcome = self.monitor.handle_frame(at, frame);
        self.budget.record_received(at, frame);
        let now = self.tick(at);
        // Another node's 0x305/0x307 (Venus OS's own BMS-Can driver): ours pause meanwhile.
        if self.keepalive.observe(now, frame) {
            tracing::info!(id = %frame.id(), "another node sends the GX keep-alive: ours pauses");
        }
        if let Some(active) = &mut self.active {
            active.stage2.handle_frame(now, frame);
            if let FrameOutcome::Applied(kind) = outcome {
                if kind == FrameKind::ProductInfo
                    && let Some(bytes) = self
                        .monitor
                        .battery()
                        .and_then(|b| b.identity().firmware_bytes())
                {
                    active.stage2.observe_firmware(now, bytes);
                }
                if matches!(
                    kind,
                    FrameKind::Limits
                        | FrameKind::StateOfCharge
                        | FrameKind::Measurements
                        | FrameKind::Alarms
                        | FrameKind::Protection
                ) {
                    self.gates_dirty = true;
                }
            }
        }
        let _ = shared;
    }

    fn handle_event(&mut self, shared: &Shared, bus: &Bus, event: Result<CanEvent, CanError>) {
        match event {
            Ok(CanEvent::Frame(rx)) => {
                let at = shared.timestamp(rx.at);
                self.handle_frame(shared, at, &rx.frame);
            }
            Ok(CanEvent::State(state)) => {
                tracing::info!(bus = %bus.name, ?state, "CAN controller state changed");
                self.gates_dirty = true;
            }
            Ok(CanEvent::Error(e)) => {
                tracing::debug!(bus = %bus.name, error = %e.description, "bus error");
                // The destroyed frame is sent again: this node's queued frames end later.
                // A frame lost to a receive overflow still took the wire.
                if e.frame.destroys_a_transmission() {
                    self.budget.record_bus_error(shared.timestamp(e.at));
                } else if e.frame.reports_a_lost_frame() {
                    self.budget.record_lost_frame(shared.timestamp(e.at));
                }
            }
            Err(CanError::BusOff { .. }) => self.gates_dirty = true,
            Err(e) => self.interface_failed(shared, &e.to_string()),
        }
    }

    /// The interface is gone: the running update fails with 746.
    pub(crate) fn interface_failed(&mut self, shared: &Shared, why: &str) {
        if self.failed.is_none() {
            tracing::error!(why, "CAN interface failed");
            self.failed = Some(why.to_owned());
        }
        let now = shared.now();
        if let Some(active) = &mut self.active {
            active.stage2.abort(
                now,
                codes::CAN_INTERFACE_FAILED,
                format!("the GX's CAN interface failed: {why}"),
            );
            active
                .stage2
                .handle_timeout(now + shared.config.stage2.abort_grace);
        }
    }

    /// Timers: the gates, the driver's deadlines, the battery view.
    fn handle_timeout(&mut self, shared: &Shared, bus: &Bus, now: Timestamp) {
        let now = self.tick(now);
        if let Some(active) = &mut self.active {
            active.stage2.handle_timeout(now);
        }
        if self.active.is_some() && (self.gates_dirty || now >= self.next_gate_check) {
            self.gates_dirty = false;
            self.next_gate_check = now + shared.config.gate_interval;
            let report = {
                let active = self
                    .active
                    .as_ref()
                    .map(|a| (a.gates.clone(), a.stage2.silence()));
                let (gates, silence) = active.unwrap_or_else(|| unreachable!());
                evaluate_gates(
                    shared,
                    bus,
                    self,
                    GateCall {
                        moment: Moment::DuringTransfer,
                        now,
                        gates: &gates,
                        other_update: None,
                        silence,
                    },
                )
            };
            if let Some(red) = report.first_failure() {
                tracing::warn!(bus = %bus.name, verdict = %red, "gate red during the update");
            }
            if let Some(active) = &mut self.active {
                active.stage2.handle_gates(now, &report);
            }
        }
        if now >= self.next_publish {
            self.next_publish = now + shared.config.battery_publish_interval;
            self.publish_view(shared, bus, now);
        }
    }

    fn publish_view(&mut self, shared: &Shared, bus: &Bus, now: Timestamp) {
        let Some(state) = self.monitor.battery() else {
            return;
        };
        let view = battery::view(
            bus.index,
            &bus.name,
            state,
            &shared.plugins,
            shared.plugins_unavailable.as_deref(),
            now,
            shared.config.telemetry_max_age,
        );
        if self.last_view.as_ref() != Some(&view) {
            self.last_view = Some(view.clone());
            let _ = shared.updates.send(EngineUpdate::Battery(Box::new(view)));
        }
    }

    /// The frames to send now: the keep-alive pair when due, then the driver's frames as
    /// far as the budget allows (at most `max` frames per round). The driver is asked
    /// again while it fills what it is asked for (its frames shorter than the longest
    /// leave room in the budget), until the budget holds it back, its session has
    /// nothing more, or `max` is reached.
    ///
    /// Returns whether more frames may be ready at once (`max` was reached); otherwise
    /// the next frame waits for an event or for [`BusCore::poll_timeout`], which then
    /// includes the time the budget makes room again.
    fn poll_transmits(&mut self, now: Timestamp, out: &mut Vec<CanFrame>, max: usize) -> bool {
        let now = self.tick(now);
        while let Some(frame) = self.keepalive.poll_transmit(now) {
            self.budget.record_sent_unplanned(now, &frame);
            out.push(frame);
        }
        // The next pair goes out at its timer whatever the budget says: planning counts
        // it there rather than in every window.
        self.budget
            .expect_unplanned(self.keepalive.poll_timeout(), keep_alive_pair_bits());
        let Some(active) = &mut self.active else {
            return false;
        };
        loop {
            let room = max.saturating_sub(out.len());
            if room == 0 {
                return true;
            }
            if !active
                .stage2
                .poll_transmits(now, &mut self.budget, room, out)
            {
                return false;
            }
        }
    }

    /// Turns the driver's events into job changes; ends the stage when it finished.
    ///
    /// Progress and checkpoints are journaled at most once per
    /// [`super::EngineConfig::progress_interval`] (and the last ones before the transfer
    /// ends), so a long transfer costs a few dozen journal writes, not one per percent.
    fn drain_events(&mut self, shared: &Shared, now: Timestamp) {
        let Some(active) = &mut self.active else {
            return;
        };
        let job = active.job;
        let mut finished = false;
        let interval = shared.config.progress_interval;
        while let Some(event) = active.stage2.poll_event() {
            let change = match event {
                DriverEvent::Progress { done, total } => {
                    // No total yet (a bank before it found its nodes) is no progress, and
                    // the percentage of the transfer never goes down.
                    if total == 0 {
                        continue;
                    }
                    let percent = Percent::of(done, total);
                    if active.stage2.step().is_some() || percent <= active.percent {
                        continue;
                    }
                    if active.percent_at.is_some_and(|t| now < t + interval)
                        && percent != Percent::FULL
                    {
                        continue;
                    }
                    active.percent = percent;
                    active.percent_at = Some(now);
                    if let Some(bytes) = active.checkpoint.take() {
                        shared.jobs.queue(job, JobChange::Checkpoint(bytes));
                    }
                    JobChange::Event(JobEvent::TransferProgress(percent))
                }
                DriverEvent::Checkpoint(bytes) => {
                    active.checkpoint = Some(bytes);
                    continue;
                }
                DriverEvent::Modules(modules) => JobChange::Event(JobEvent::ModulesChanged(
                    modules.iter().map(battery::module_progress).collect(),
                )),
                DriverEvent::Step(step) => {
                    // The transfer's last progress goes out before the job moves on.
                    let (done, total) = active.stage2.progress();
                    let percent = Percent::of(done, total);
                    if total > 0 && percent > active.percent {
                        active.percent = percent;
                        shared
                            .jobs
                            .queue(job, JobChange::Event(JobEvent::TransferProgress(percent)));
                    }
                    JobChange::Event(match step {
                        Step::Installing => JobEvent::InstallStarted,
                        Step::Restarting => JobEvent::RestartStarted,
                        Step::Verifying => JobEvent::VerifyStarted,
                    })
                }
                DriverEvent::Finished(outcome) => {
                    finished = true;
                    JobChange::Event(match outcome {
                        StageOutcome::Completed { version_after } => JobEvent::Completed {
                            version_after: battery::version_info(&version_after),
                        },
                        StageOutcome::Failed { code, message } => JobEvent::Failed(JobFailure {
                            code,
                            message,
                            at: UnixMillis::now(),
                            battery_state: self.monitor.battery().map(battery::snapshot),
                        }),
                    })
                }
            };
            shared.jobs.queue(job, change);
        }
        if finished {
            tracing::info!(%job, "stage 2 ended");
            self.active = None;
        }
    }

    fn poll_timeout(&mut self) -> Option<Timestamp> {
        let mut next = self.keepalive.poll_timeout();
        let mut take = |t: Option<Timestamp>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: Timestamp| n.min(t)));
            }
        };
        take(Some(self.next_publish));
        if let Some(active) = &mut self.active {
            take(active.stage2.poll_timeout());
            take(Some(self.next_gate_check));
        }
        next
    }
}

/// Frames handed to the interface per round before the task looks at the bus again.
const SEND_BATCH: usize = crate::driver::budget::MAX_ROUND_FRAMES;

/// Runs bus `index` until its interface closes.
///
/// One round per wakeup: every event the reader forwarded so far, the timers, then as
/// many frames as the budget and the driver allow (one round trip for a hosted plugin,
/// two when its frames were shorter than the longest), sent after the lock is released.
/// The task then sleeps until the next event or deadline; it goes round again at once
/// only when it stopped at [`SEND_BATCH`] frames with more ready.
pub(crate) async fn run(shared: Arc<Shared>, index: usize) {
    let bus = &shared.buses[index];
    let (tx, mut rx) = mpsc::channel::<Result<CanEvent, CanError>>(4096);
    let iface = bus.iface.clone();
    let reader = tokio::spawn(async move {
        loop {
            let event = iface.recv().await;
            let closed = matches!(event, Err(CanError::Closed { .. } | CanError::Io { .. }));
            if tx.send(event).await.is_err() || closed {
                break;
            }
        }
    });
    let _reader = AbortOnDrop(reader);
    let mut events: Vec<Result<CanEvent, CanError>> = Vec::new();
    let mut out = Vec::with_capacity(SEND_BATCH + 2);
    loop {
        // Everything the reader forwarded, taken before the lock.
        while let Ok(event) = rx.try_recv() {
            events.push(event);
        }
        let (now, deadline, more) = {
            let mut core = bus.lock();
            let now = shared.now();
            for event in events.drain(..) {
                core.handle_event(&shared, bus, event);
            }
            core.handle_timeout(&shared, bus, now);
            let more = core.failed.is_none() && core.poll_transmits(now, &mut out, SEND_BATCH);
            core.drain_events(&shared, now);
            if core.failed.is_some() && core.active.is_none() {
                return;
            }
            (now, core.poll_timeout(), more)
        };
        // The round's frames in one hand-over to the interface (one system call on
        // SocketCAN); a frame lost to bus-off is skipped, any other error ends the bus.
        let mut sent = 0;
        while sent < out.len() {
            match bus.iface.send_batch(&out[sent..]).await {
                Ok(()) => break,
                Err((i, CanError::BusOff { .. })) => {
                    tracing::debug!(bus = %bus.name, frame = %out[sent + i], "bus-off: frame lost");
                    sent += i + 1;
                }
                Err((_, e)) => {
                    bus.lock().interface_failed(&shared, &e.to_string());
                    break;
                }
            }
        }
        out.clear();
        if more {
            // The round stopped at SEND_BATCH frames: more are ready at once.
            tokio::task::yield_now().await;
            continue;
        }
        let sleep = async {
            match deadline {
                Some(t) => {
                    // Every deadline up to the round's `now` was handled above; one that
                    // stays in the past (a session that does not move its own) must not
                    // spin the task. One that passed while the frames went out is due at
                    // once.
                    let at = if t <= now {
                        tokio::time::Instant::now() + std::time::Duration::from_millis(1)
                    } else {
                        shared.instant(t)
                    };
                    tokio::time::sleep_until(at).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = rx.recv() => match event {
                Some(event) => events.push(event),
                None => {
                    bus.lock().interface_failed(&shared, "the interface's reader stopped");
                }
            },
            _ = bus.wake.notified() => {}
            _ = sleep => {}
        }
    }
}

/// Aborts a task when dropped.
pub(crate) struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
