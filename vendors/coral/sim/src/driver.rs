//! Runs a [`CoralBms`] on any [`CanInterface`], with a handle tests and the demo use to
//! change the battery, cut its power and inject faults while it runs.

use crate::bms::{CoralBms, CoralStatus, Fault};
use crate::protocol::{COMMAND_ID, DATA_BASE, SEQUENCE_MASK};
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
    model: Mutex<CoralBms>,
    wake: Notify,
    run: watch::Sender<RunState>,
    epoch: Epoch,
}

/// A running (or ready to run) simulated ReefStack master. Clones share the master.
///
/// Every control takes effect at the current Tokio time and wakes the driver.
#[derive(Clone)]
pub struct CoralHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for CoralHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoralHandle")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

/// The filters of the master: the GX's keep-alive, commands, data frames.
fn filters() -> Vec<CanFilter> {
    let mut f: Vec<CanFilter> = CanId::standard(0x305)
        .map(|id| CanFilter { id, mask: 0x7FF })
        .into_iter()
        .collect();
    f.push(CanFilter {
        id: COMMAND_ID,
        mask: 0x1FFF_FFFF,
    });
    if let Some(id) = CanId::extended(DATA_BASE) {
        f.push(CanFilter {
            id,
            mask: 0x1FFF_FFFF & !SEQUENCE_MASK,
        });
    }
    f
}

impl CoralHandle {
    /// A handle for `model`, whose timestamps count from `epoch`.
    pub fn new(name: impl Into<String>, model: CoralBms, epoch: Epoch) -> CoralHandle {
        CoralHandle {
            shared: Arc::new(Shared {
                name: name.into(),
                model: Mutex::new(model),
                wake: Notify::new(),
                run: watch::Sender::new(RunState::Run),
                epoch,
            }),
        }
    }

    /// Builds the handle and runs the master on `iface` in a new task.
    pub fn spawn(
        name: impl Into<String>,
        model: CoralBms,
        epoch: Epoch,
        iface: Arc<dyn CanInterface>,
    ) -> (CoralHandle, JoinHandle<Result<DriverExit, CanError>>) {
        let handle = CoralHandle::new(name, model, epoch);
        let runner = handle.clone();
        let task = tokio::spawn(async move { runner.run(iface.as_ref()).await });
        (handle, task)
    }

    /// The epoch of the master's timestamps.
    pub fn epoch(&self) -> Epoch {
        self.shared.epoch
    }

    fn model(&self) -> MutexGuard<'_, CoralBms> {
        self.shared
            .model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn change<T>(&self, f: impl FnOnce(&mut CoralBms, Timestamp) -> T) -> T {
        let now = self.shared.epoch.now();
        let out = f(&mut self.model(), now);
        self.shared.wake.notify_one();
        out
    }

    /// Runs the master on `iface` until [`stop`](Self::stop) is called or the interface
    /// is closed.
    pub async fn run(&self, iface: &dyn CanInterface) -> Result<DriverExit, CanError> {
        let mut run = self.shared.run.subscribe();
        if *run.borrow_and_update() == RunState::Stop {
            return Ok(DriverExit::Stopped);
        }
        iface.set_filters(&filters())?;
        tracing::debug!(bms = %self.shared.name, bus = iface.name(), "coral master running");
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
                        tracing::debug!(bms = %self.shared.name, %frame, "bus-off: frame lost");
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
            let now = epoch.now();
            self.model().handle_timeout(now);
        }
    }

    async fn receive(&self, iface: &dyn CanInterface) -> Result<DriverExit, CanError> {
        let epoch = self.shared.epoch;
        loop {
            match iface.recv().await {
                Ok(CanEvent::Frame(rx)) => {
                    self.model().handle_frame(epoch.timestamp(rx.at), &rx.frame);
                    self.shared.wake.notify_one();
                }
                Ok(CanEvent::Error(_) | CanEvent::State(_)) => {}
                Err(CanError::Closed { .. }) => return Ok(DriverExit::Detached),
                Err(CanError::BusOff { .. }) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Stops the driver (the master stays as it is).
    pub fn stop(&self) {
        self.shared.run.send_replace(RunState::Stop);
    }

    /// The master's state, its modules and its staging area.
    pub fn status(&self) -> CoralStatus {
        self.change(|m, now| {
            m.handle_timeout(now);
            m.status()
        })
    }

    /// A copy of the staged bundle.
    pub fn staged_bytes(&self) -> Option<Vec<u8>> {
        self.model().staged_bytes().map(<[u8]>::to_vec)
    }

    /// Arms a fault; it fires once.
    pub fn inject(&self, fault: Fault) {
        self.change(|m, _| m.inject(fault));
    }

    /// Runs `f` on the battery behind the master at the current time.
    pub fn with_battery<T>(&self, f: impl FnOnce(&mut BatteryModel, Timestamp) -> T) -> T {
        self.change(|m, now| f(m.battery_mut(), now))
    }
}

impl BatteryControl for CoralHandle {
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
        CoralHandle::stop(self)
    }
}
