//! Runs a [`BorealBank`] on any [`CanInterface`], with a handle tests and the demo use to
//! change the bank, cut its power and inject faults while it runs.
//!
//! The bank's nodes share the one interface the site gives the battery: their frames
//! leave through it in the order the model hands them out (telemetry first), which the
//! bus then arbitrates against every other node's.
//!
//! The model runs on one clock, the Tokio clock when the driver hands it a frame or
//! fires its timers, and every frame already received is handed over before a timer
//! fires. A frame's own timestamp is the bus's clock, which falls behind the Tokio clock
//! when the machine is loaded (the bus task delivers a backlog late). A model fed both
//! measured silence from a frame's bus time to the Tokio clock: a node's 100 ms
//! sub-block timer acknowledged a sub-block after its first segment while the next
//! ones were on their way, and again after each of those.

use crate::bank::{BorealBank, NodeStatus};
use crate::dictionary::Fault;
use crate::flash::SlotId;
use crate::protocol::MAX_NODE;
use bmsfw_can::{CanError, CanEvent, CanFilter, CanId, CanInterface};
use bmsfw_plugin_api::Timestamp;
use bmsfw_sim::battery::{
    Alarm, BatteryControl, BatteryModel, BatterySnapshot, CurrentProfile, DriverExit, Epoch, Level,
};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunState {
    Run,
    Stop,
}

struct Shared {
    name: String,
    model: Mutex<BorealBank>,
    wake: Notify,
    run: watch::Sender<RunState>,
    epoch: Epoch,
}

/// What became of a received event.
enum Received {
    /// Given to the model (or nothing to do).
    Handled,
    /// The controller is bus-off: wait before listening again.
    BusOff,
    /// The driver ends with this.
    Exit(Result<DriverExit, CanError>),
}

/// A running (or ready to run) simulated bank. Clones share the bank.
#[derive(Clone)]
pub struct BankHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for BankHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BankHandle")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl BankHandle {
    /// A handle for `model`, whose timestamps count from `epoch`.
    pub fn new(name: impl Into<String>, model: BorealBank, epoch: Epoch) -> BankHandle {
        BankHandle {
            shared: Arc::new(Shared {
                name: name.into(),
                model: Mutex::new(model),
                wake: Notify::new(),
                run: watch::Sender::new(RunState::Run),
                epoch,
            }),
        }
    }

    /// Builds the handle and runs the bank on `iface` in a new task.
    pub fn spawn(
        name: impl Into<String>,
        model: BorealBank,
        epoch: Epoch,
        iface: Arc<dyn CanInterface>,
    ) -> (BankHandle, JoinHandle<Result<DriverExit, CanError>>) {
        let handle = BankHandle::new(name, model, epoch);
        let runner = handle.clone();
        let task = tokio::spawn(async move { runner.run(iface.as_ref()).await });
        (handle, task)
    }

    /// The epoch of the bank's timestamps.
    pub fn epoch(&self) -> Epoch {
        self.shared.epoch
    }

    fn model(&self) -> MutexGuard<'_, BorealBank> {
        self.shared
            .model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn change<T>(&self, f: impl FnOnce(&mut BorealBank, Timestamp) -> T) -> T {
        let now = self.shared.epoch.now();
        let out = f(&mut self.model(), now);
        self.shared.wake.notify_one();
        out
    }

    /// Runs the bank on `iface` until [`stop`](Self::stop) is called or the interface is
    /// closed. It listens to the GX's keep-alive (0x305) and to SDO requests to its
    /// nodes (0x600 + node-id).
    pub async fn run(&self, iface: &dyn CanInterface) -> Result<DriverExit, CanError> {
        let mut run = self.shared.run.subscribe();
        if *run.borrow_and_update() == RunState::Stop {
            return Ok(DriverExit::Stopped);
        }
        let ids: Vec<u16> = self
            .model()
            .nodes()
            .iter()
            .map(|n| 0x600 + u16::from(n.id().get()))
            .collect();
        let filters: Vec<CanFilter> = std::iter::once(0x305)
            .chain(ids)
            .filter_map(CanId::standard)
            .map(|id| CanFilter { id, mask: 0x7FF })
            .collect();
        iface.set_filters(&filters)?;
        tracing::debug!(bank = %self.shared.name, bus = iface.name(), "boreal bank running");
        tokio::select! {
            exit = self.transmit(iface) => exit,
            exit = self.receive(iface) => exit,
            _ = run.wait_for(|s| *s == RunState::Stop) => Ok(DriverExit::Stopped),
        }
    }

    async fn transmit(&self, iface: &dyn CanInterface) -> Result<DriverExit, CanError> {
        let epoch = self.shared.epoch;
        loop {
            loop {
                let frame = self.model().poll_transmit(epoch.now());
                let Some(frame) = frame else { break };
                match iface.send(frame).await {
                    Ok(()) => {}
                    Err(CanError::Closed { .. }) => return Ok(DriverExit::Detached),
                    Err(CanError::BusOff { .. }) => {
                        tracing::debug!(bank = %self.shared.name, %frame, "bus-off: frame lost");
                    }
                    Err(e) => return Err(e),
                }
            }
            let deadline = self.model().poll_timeout();
            let woken = self.shared.wake.notified();
            match deadline {
                Some(t) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(epoch.at(t)) => {}
                        _ = woken => {}
                    }
                }
                None => woken.await,
            }
            // Frames that came while the task waited (or was not scheduled) go first: a
            // timer must not fire over a segment that is already here.
            if let Received::Exit(exit) = self.drain(iface).await {
                return exit;
            }
            self.model().handle_timeout(epoch.now());
        }
    }

    /// Hands the model every event already received, without waiting.
    async fn drain(&self, iface: &dyn CanInterface) -> Received {
        loop {
            let event = tokio::select! {
                biased;
                event = iface.recv() => event,
                () = std::future::ready(()) => return Received::Handled,
            };
            match self.take(event) {
                Received::Handled => {}
                other => return other,
            }
        }
    }

    /// Hands one received event to the model, at the current time.
    fn take(&self, event: Result<CanEvent, CanError>) -> Received {
        match event {
            Ok(CanEvent::Frame(rx)) => {
                let now = self.shared.epoch.now();
                self.model().handle_frame(now, &rx.frame);
                // An answer may be due at once.
                self.shared.wake.notify_one();
                Received::Handled
            }
            Ok(CanEvent::Error(_) | CanEvent::State(_)) => Received::Handled,
            Err(CanError::Closed { .. }) => Received::Exit(Ok(DriverExit::Detached)),
            Err(CanError::BusOff { .. }) => Received::BusOff,
            Err(e) => Received::Exit(Err(e)),
        }
    }

    async fn receive(&self, iface: &dyn CanInterface) -> Result<DriverExit, CanError> {
        loop {
            match self.take(iface.recv().await) {
                Received::Handled => {}
                Received::BusOff => tokio::time::sleep(Duration::from_millis(100)).await,
                Received::Exit(exit) => return exit,
            }
        }
    }

    /// Stops the driver (the bank stays as it is).
    pub fn stop(&self) {
        self.shared.run.send_replace(RunState::Stop);
    }

    /// Where every node is, at the current time.
    pub fn status(&self) -> Vec<NodeStatus> {
        self.change(|m, now| {
            m.handle_timeout(now);
            m.status()
        })
    }

    /// Node `id` at the current time.
    ///
    /// # Panics
    ///
    /// When the bank has no node `id`: a test's own mistake.
    pub fn node(&self, id: u8) -> NodeStatus {
        assert!((1..=MAX_NODE).contains(&id), "node-ids are 1 to {MAX_NODE}");
        self.status()
            .into_iter()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("the bank has no node {id}"))
    }

    /// The lowest version any node runs.
    pub fn lowest_version(&self) -> [u8; 2] {
        self.model().lowest_version()
    }

    /// A copy of `slot` of node `id` (empty when there is no such node).
    pub fn slot_image(&self, id: u8, slot: SlotId) -> Vec<u8> {
        self.model()
            .node(id)
            .map(|n| n.dictionary().flash().slot(slot).data().to_vec())
            .unwrap_or_default()
    }

    /// Arms a fault in node `id`; it fires once. Returns whether the node exists.
    pub fn inject(&self, id: u8, fault: Fault) -> bool {
        self.change(|m, _| m.inject(id, fault))
    }

    /// Runs `f` on the bank's BMS-Can battery at the current time.
    pub fn with_battery<T>(&self, f: impl FnOnce(&mut BatteryModel, Timestamp) -> T) -> T {
        self.change(|m, now| f(m.battery_mut(), now))
    }
}

impl BatteryControl for BankHandle {
    fn name(&self) -> &str {
        &self.shared.name
    }
    fn snapshot(&self) -> BatterySnapshot {
        self.with_battery(|b, now| {
            b.advance(now);
            b.snapshot()
        })
    }
    fn set_soc(&self, soc: f64) {
        self.with_battery(|b, now| b.set_soc(now, soc));
    }
    fn set_temperature(&self, celsius: f64) {
        self.with_battery(|b, now| b.set_temperature(now, celsius));
    }
    fn set_profile(&self, profile: CurrentProfile) {
        self.with_battery(|b, now| b.set_profile(now, profile));
    }
    fn raise(&self, level: Level, alarm: Alarm) {
        self.with_battery(|b, now| b.raise(now, level, alarm));
    }
    fn clear(&self, level: Level, alarm: Alarm) {
        self.with_battery(|b, now| b.clear(now, level, alarm));
    }
    fn clear_all_alarms(&self) {
        self.with_battery(|b, now| b.clear_all_alarms(now));
    }
    fn power_cut(&self) {
        self.change(|m, now| m.power_cut(now));
    }
    fn power_restore(&self) {
        self.change(|m, now| m.power_restore(now));
    }
    fn stop(&self) {
        BankHandle::stop(self)
    }
}
