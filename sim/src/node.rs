//! Runs any sans-IO node model (a battery, a vendor's BMS) on a [`CanInterface`].
//!
//! A model says which frames it listens to, takes frames and the time, and hands back
//! frames to send and its next deadline ([`NodeModel`]). A [`NodeDriver`] owns the model
//! behind a lock, feeds it from the interface in tokio time (virtual on a paused
//! runtime), and lets tests and the demo change the model while it runs: every change is
//! made at the current time and wakes the driver, so a new schedule applies at once.
//!
//! The model runs on one clock, the tokio clock when the driver hands it a frame or
//! fires its timers, and every frame already received is handed over before a timer
//! fires. A frame's own timestamp is the bus's clock, which falls behind the tokio clock
//! when the machine is loaded (the bus task delivers a backlog late). A model fed both
//! measured silence from a frame's bus time to the tokio clock: a CANopen node's 100 ms
//! sub-block timer acknowledged a sub-block after its first segment while the next
//! ones were on their way, and again after each of those.

use bmsfw_can::{CanError, CanEvent, CanFilter, CanInterface};
use bmsfw_plugin_api::{CanFrame, Timestamp};
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

/// Why a driver returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverExit {
    /// [`NodeDriver::stop`] was called.
    Stopped,
    /// The interface was closed or detached from its bus.
    Detached,
}

/// A simulated CAN node as a sans-IO state machine.
pub trait NodeModel: Send + 'static {
    /// The frames the node listens to (set as the interface's filters when it starts).
    fn filters(&self) -> Vec<CanFilter>;
    /// A frame seen on the bus at `now`.
    fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame);
    /// The deadline of [`poll_timeout`](Self::poll_timeout) has passed.
    fn handle_timeout(&mut self, _now: Timestamp) {}
    /// The next frame to send, if one is due at `now`.
    fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame>;
    /// When the node next needs the time, if ever.
    fn poll_timeout(&self) -> Option<Timestamp>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunState {
    Run,
    Stop,
}

struct Shared<M> {
    name: String,
    model: Mutex<M>,
    wake: Notify,
    run: watch::Sender<RunState>,
    epoch: Epoch,
}

/// A model and the means to run it on an interface. Clones share the model.
pub struct NodeDriver<M> {
    shared: Arc<Shared<M>>,
}

impl<M> Clone for NodeDriver<M> {
    fn clone(&self) -> Self {
        NodeDriver {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<M: NodeModel> NodeDriver<M> {
    /// A driver for `model`, whose timestamps count from `epoch`.
    pub fn new(name: impl Into<String>, model: M, epoch: Epoch) -> NodeDriver<M> {
        NodeDriver {
            shared: Arc::new(Shared {
                name: name.into(),
                model: Mutex::new(model),
                wake: Notify::new(),
                run: watch::Sender::new(RunState::Run),
                epoch,
            }),
        }
    }

    /// Runs a clone of this driver on `iface` in a new task.
    pub fn spawn(&self, iface: Arc<dyn CanInterface>) -> JoinHandle<Result<DriverExit, CanError>> {
        let runner = self.clone();
        tokio::spawn(async move { runner.run(iface.as_ref()).await })
    }

    /// The node's name, for logs.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The epoch of the model's timestamps.
    pub fn epoch(&self) -> Epoch {
        self.shared.epoch
    }

    /// The model, locked. Hold it briefly: the driver waits for it.
    pub fn model(&self) -> MutexGuard<'_, M> {
        self.shared
            .model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the model at the current time, then wakes the driver so a changed
    /// schedule applies at once.
    pub fn change<T>(&self, f: impl FnOnce(&mut M, Timestamp) -> T) -> T {
        let now = self.shared.epoch.now();
        let out = f(&mut self.model(), now);
        self.shared.wake.notify_one();
        out
    }

    /// Runs the model on `iface` until [`stop`](Self::stop) is called or the interface
    /// is closed.
    pub async fn run(&self, iface: &dyn CanInterface) -> Result<DriverExit, CanError> {
        let mut run = self.shared.run.subscribe();
        if *run.borrow_and_update() == RunState::Stop {
            return Ok(DriverExit::Stopped);
        }
        let filters = self.model().filters();
        iface.set_filters(&filters)?;
        tracing::debug!(node = %self.shared.name, bus = iface.name(), "simulated node running");
        tokio::select! {
            exit = self.transmit(iface) => exit,
            exit = self.receive(iface) => exit,
            _ = run.wait_for(|s| *s == RunState::Stop) => Ok(DriverExit::Stopped),
        }
    }

    /// Stops the driver; the model stays as it is.
    pub fn stop(&self) {
        self.shared.run.send_replace(RunState::Stop);
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
                        tracing::debug!(node = %self.shared.name, %frame, "bus-off: frame lost");
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
            // timer must not fire over a frame that is already here.
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
