//! Runs a [`BatteryModel`] on any [`CanInterface`], with a handle tests use to change
//! the battery while it runs.

use super::alarms::{Alarm, Level};
use super::config::{ConfigError, CurrentProfile};
use super::model::{BatteryModel, BatterySnapshot, ModuleState, PowerState};
use bmsfw_can::{CanError, CanEvent, CanFilter, CanId, CanInterface};
use bmsfw_plugin_api::Timestamp;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Maps tokio time (virtual on a paused runtime) to the [`Timestamp`]s sans-IO models
/// take: microseconds since the epoch instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Epoch(Instant);

impl Epoch {
    /// An epoch at `at`.
    pub fn new(at: Instant) -> Epoch {
        Epoch(at)
    }

    /// An epoch at the current tokio time.
    pub fn starting_now() -> Epoch {
        Epoch(Instant::now())
    }

    /// The epoch's instant.
    pub fn instant(&self) -> Instant {
        self.0
    }

    /// `at` as a timestamp (zero for instants before the epoch).
    pub fn timestamp(&self, at: Instant) -> Timestamp {
        let micros = at.saturating_duration_since(self.0).as_micros();
        Timestamp::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// The current tokio time as a timestamp.
    pub fn now(&self) -> Timestamp {
        self.timestamp(Instant::now())
    }

    /// The instant of timestamp `t`.
    pub fn at(&self, t: Timestamp) -> Instant {
        self.0 + Duration::from_micros(t.as_micros())
    }
}

/// Why a battery driver returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverExit {
    /// [`BatteryHandle::stop`] was called.
    Stopped,
    /// The interface was closed or detached from its bus.
    Detached,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunState {
    Run,
    Stop,
}

struct Shared {
    name: String,
    model: Mutex<BatteryModel>,
    wake: Notify,
    run: watch::Sender<RunState>,
    epoch: Epoch,
}

/// A running (or ready to run) simulated battery. Clones share the battery.
///
/// Every control method takes effect at the current tokio time: the physics is advanced
/// to now first, then the change applies, and the driver is woken so that a change of
/// schedule (power restored) is honoured at once.
#[derive(Clone)]
pub struct BatteryHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for BatteryHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatteryHandle")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl BatteryHandle {
    /// A handle for `model`, whose timestamps count from `epoch`.
    pub fn new(name: impl Into<String>, model: BatteryModel, epoch: Epoch) -> BatteryHandle {
        BatteryHandle {
            shared: Arc::new(Shared {
                name: name.into(),
                model: Mutex::new(model),
                wake: Notify::new(),
                run: watch::Sender::new(RunState::Run),
                epoch,
            }),
        }
    }

    /// Builds the handle and runs the battery on `iface` in a new task.
    pub fn spawn(
        name: impl Into<String>,
        model: BatteryModel,
        epoch: Epoch,
        iface: Arc<dyn CanInterface>,
    ) -> (BatteryHandle, JoinHandle<Result<DriverExit, CanError>>) {
        let handle = BatteryHandle::new(name, model, epoch);
        let runner = handle.clone();
        let task = tokio::spawn(async move { runner.run(iface.as_ref()).await });
        (handle, task)
    }

    /// The battery's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The epoch of the battery's timestamps.
    pub fn epoch(&self) -> Epoch {
        self.shared.epoch
    }

    fn model(&self) -> MutexGuard<'_, BatteryModel> {
        self.shared
            .model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn change<T>(&self, f: impl FnOnce(&mut BatteryModel, Timestamp) -> T) -> T {
        let now = self.shared.epoch.now();
        let out = f(&mut self.model(), now);
        self.shared.wake.notify_one();
        out
    }

    /// Runs the battery on `iface` until [`stop`](BatteryHandle::stop) is called or the
    /// interface is closed. Frames the controller cannot send (bus-off) are lost, as on
    /// real hardware; the schedule goes on.
    pub async fn run(&self, iface: &dyn CanInterface) -> Result<DriverExit, CanError> {
        let mut run = self.shared.run.subscribe();
        if *run.borrow_and_update() == RunState::Stop {
            return Ok(DriverExit::Stopped);
        }
        // A battery only listens for the GX's keep-alive.
        if let Some(id) = CanId::standard(0x305) {
            iface.set_filters(&[CanFilter { id, mask: 0x7FF }])?;
        }
        tracing::debug!(battery = %self.shared.name, bus = iface.name(), "battery running");
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
                        tracing::debug!(battery = %self.shared.name, %frame, "bus-off: frame lost");
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
        }
    }

    async fn receive(&self, iface: &dyn CanInterface) -> Result<DriverExit, CanError> {
        let epoch = self.shared.epoch;
        loop {
            match iface.recv().await {
                Ok(CanEvent::Frame(rx)) => {
                    self.model().handle_frame(epoch.timestamp(rx.at), &rx.frame);
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

    /// Stops the driver (the battery stays as it is; [`run`](BatteryHandle::run) returns
    /// [`DriverExit::Stopped`] from now on).
    pub fn stop(&self) {
        self.shared.run.send_replace(RunState::Stop);
    }

    /// What the battery measures and reports now.
    pub fn snapshot(&self) -> BatterySnapshot {
        self.change(|m, now| {
            m.advance(now);
            m.snapshot()
        })
    }

    /// Sets the state of charge, percent.
    pub fn set_soc(&self, soc: f64) {
        self.change(|m, now| m.set_soc(now, soc));
    }

    /// Sets the pack temperature, degC.
    pub fn set_temperature(&self, celsius: f64) {
        self.change(|m, now| m.set_temperature(now, celsius));
    }

    /// Replaces the current profile.
    pub fn set_profile(&self, profile: CurrentProfile) {
        self.change(|m, now| m.set_profile(now, profile));
    }

    /// Raises an alarm or warning.
    pub fn raise(&self, level: Level, alarm: Alarm) {
        self.change(|m, now| m.raise(now, level, alarm));
    }

    /// Clears an alarm or warning.
    pub fn clear(&self, level: Level, alarm: Alarm) {
        self.change(|m, now| m.clear(now, level, alarm));
    }

    /// Clears every alarm and warning.
    pub fn clear_all_alarms(&self) {
        self.change(|m, now| m.clear_all_alarms(now));
    }

    /// Replaces the firmware bytes of 0x35F.
    pub fn set_firmware_bytes(&self, firmware: [u8; 2]) {
        self.change(|m, _| m.set_firmware_bytes(firmware));
    }

    /// Replaces every byte of 0x35F.
    pub fn set_product_info(&self, bytes: &[u8]) -> Result<(), ConfigError> {
        self.change(|m, _| m.set_product_info(bytes))
    }

    /// Takes a module offline or brings it back.
    pub fn set_module(&self, index: u16, state: ModuleState) -> Result<(), ConfigError> {
        self.change(|m, now| m.set_module(now, index, state))
    }

    /// Cuts power: the battery stops broadcasting and carries no current.
    pub fn power_cut(&self) {
        self.change(|m, now| m.set_power(now, PowerState::Off));
    }

    /// Restores power: the BMS boots and broadcasts again.
    pub fn power_restore(&self) {
        self.change(|m, now| m.set_power(now, PowerState::On));
    }

    /// Runs `f` on the model at the current time (for changes without a method here).
    pub fn with_model<T>(&self, f: impl FnOnce(&mut BatteryModel, Timestamp) -> T) -> T {
        self.change(f)
    }
}
