//! A bit-timed simulated CAN bus.
//!
//! Every frame occupies the bus for its exact length in bits (stuff bits and the
//! intermission included, from [`bmsfw_protocols::bit_timing`]) at the configured bit
//! rate. When the bus goes idle, the frames at the head of the nodes' transmit queues
//! arbitrate by their real arbitration bits: the lowest wins, and an 11-bit frame beats a
//! 29-bit frame with the same base identifier. Every other attached node receives the
//! frame, subject to its acceptance filters, stamped with the instant its last bit
//! (intermission included) left the bus; a sender never receives its own frame.
//!
//! Time is Tokio's: the same code runs in virtual time (`#[tokio::test(start_paused =
//! true)]`, where Tokio jumps the clock forward whenever every task waits) and in real
//! time for the demo. See [`SimBus`] for how the bus clock relates to Tokio's.
//!
//! Faults: frames lost at a receiver ([`DropRule`]), transmissions destroyed by error
//! frames with automatic retransmission and real error counters ([`CorruptRule`]),
//! nodes forced bus-off and recovered, nodes detached as by a power cut.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use bmsfw_can::{CanEvent, CanFrame, CanId};
//! use bmsfw_sim::bus::SimBus;
//!
//! let bus = SimBus::new("can0", 500_000);
//! let battery = bus.attach("battery");
//! let gx = bus.attach("gx");
//! let frame = CanFrame::new(CanId::standard(0x351).unwrap(), &[0; 8]).unwrap();
//! battery.send(frame).await.unwrap();
//! let CanEvent::Frame(rx) = gx.recv().await.unwrap() else { panic!() };
//! assert_eq!(rx.frame, frame);
//! // 111 bits plus 13 stuff bits for these eight zero bytes: 248 us at 500 kbit/s.
//! assert_eq!(rx.at - bus.epoch(), std::time::Duration::from_micros(248));
//! # }
//! ```

mod controller;
mod engine;
mod faults;
mod load;
mod log;
mod node;
mod state;

pub use controller::{BUS_OFF_LIMIT, ERROR_PASSIVE_LIMIT, ERROR_WARNING_LIMIT, ErrorCounters};
pub use faults::{CorruptRule, Delivery, DropRule, FaultRuleError, LossReport, Transmission};
pub use load::{BusLoad, IdLoad};
pub use node::SimNode;
pub use state::{NodeCounters, NodeId, NodeInfo};

use bmsfw_plugin_api::CanId;
use engine::{Lifeline, Shared};
use state::{Limits, NodeSignals, State, TaskState};
use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Default length of a node's transmit queue, in frames (Linux's `txqueuelen` for CAN).
pub const DEFAULT_TX_QUEUE: usize = 10;
/// Default length of a node's receive queue, in events.
pub const DEFAULT_RX_QUEUE: usize = 1024;
/// Default window of the bus-load meter.
pub const DEFAULT_LOAD_WINDOW: Duration = Duration::from_secs(1);

/// Why a bus operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimBusError {
    /// A bit rate of zero.
    #[error("a bus needs a bit rate above zero")]
    ZeroBitrate,
    /// A queue length of zero.
    #[error("{0} queue length must be at least 1")]
    ZeroQueue(&'static str),
    /// The node is not attached (never was, or was detached).
    #[error("node {0:?} is not attached to this bus")]
    NotAttached(NodeId),
    /// The log's interface name could not be parsed back from the log.
    #[error("bus name {name:?} cannot stand in a candump log: {why}")]
    LogName {
        /// The bus name.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// Settings of a [`SimBus`] beyond its name and bit rate.
#[derive(Clone, Debug)]
pub struct SimBusBuilder {
    name: String,
    bitrate: u32,
    tx_queue: usize,
    rx_queue: usize,
    load_window: Duration,
}

impl SimBusBuilder {
    /// Frames a node's transmit queue holds (the frame on the bus included) before
    /// `send` waits. Default [`DEFAULT_TX_QUEUE`].
    pub fn tx_queue(mut self, frames: usize) -> SimBusBuilder {
        self.tx_queue = frames;
        self
    }

    /// Events a node's receive queue holds before further events are lost (counted in
    /// [`NodeCounters::rx_overruns`]). Default [`DEFAULT_RX_QUEUE`].
    pub fn rx_queue(mut self, events: usize) -> SimBusBuilder {
        self.rx_queue = events;
        self
    }

    /// Window of the bus-load meter. Default [`DEFAULT_LOAD_WINDOW`].
    pub fn load_window(mut self, window: Duration) -> SimBusBuilder {
        self.load_window = window;
        self
    }

    /// Builds the bus and starts its task on the current Tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn build(self) -> Result<SimBus, SimBusError> {
        if self.bitrate == 0 {
            return Err(SimBusError::ZeroBitrate);
        }
        if self.tx_queue == 0 {
            return Err(SimBusError::ZeroQueue("transmit"));
        }
        if self.rx_queue == 0 {
            return Err(SimBusError::ZeroQueue("receive"));
        }
        let epoch = Instant::now();
        let state = State {
            limits: Limits {
                bitrate: self.bitrate,
                tx_queue: self.tx_queue,
                rx_queue: self.rx_queue,
            },
            task: TaskState::Running,
            slots: Vec::new(),
            drop_rule: DropRule::never(),
            corrupt_rule: CorruptRule::never(),
            meter: load::LoadMeter::new(epoch, self.bitrate, self.load_window),
            log: None,
            sequence: 0,
        };
        let shared = Arc::new(Shared {
            name: self.name,
            bitrate: self.bitrate,
            epoch,
            state: Mutex::new(state),
            wake: tokio::sync::Notify::new(),
        });
        tokio::spawn(engine::run(shared.clone()));
        Ok(SimBus {
            life: Arc::new(Lifeline(shared.clone())),
            shared,
        })
    }
}

/// A simulated CAN bus. Cloning gives another handle to the same bus; the bus runs
/// while any handle or attached node exists.
///
/// # Clock
///
/// The bus keeps an exact clock of its own: a frame starts when the bus goes idle (or
/// when it is queued on an idle bus) and ends a whole number of bit times later, and
/// receivers see that end as [`bmsfw_can::ReceivedFrame::at`]. A frame is delivered only
/// once the Tokio clock has reached its end. Tokio's timers fire on whole milliseconds,
/// so the Tokio clock may be up to a millisecond ahead of the bus: frames delivered in
/// one such step carry their exact, distinct end times. A reply sent in reaction to a
/// frame, before the Tokio clock moves on, is arbitrated right after that frame as on a
/// real bus, so request/response protocols run at the bus's pace, not the timer's.
#[derive(Clone)]
pub struct SimBus {
    shared: Arc<Shared>,
    life: Arc<Lifeline>,
}

impl std::fmt::Debug for SimBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimBus")
            .field("name", &self.shared.name)
            .field("bitrate", &self.shared.bitrate)
            .finish()
    }
}

impl SimBus {
    /// A bus with default settings, running on the current Tokio runtime.
    ///
    /// # Panics
    ///
    /// When `bitrate` is zero, or outside a Tokio runtime.
    pub fn new(name: impl Into<String>, bitrate: u32) -> SimBus {
        match SimBus::builder(name, bitrate).build() {
            Ok(bus) => bus,
            Err(e) => panic!("SimBus::new: {e}"),
        }
    }

    /// A builder for a bus with other settings.
    pub fn builder(name: impl Into<String>, bitrate: u32) -> SimBusBuilder {
        SimBusBuilder {
            name: name.into(),
            bitrate,
            tx_queue: DEFAULT_TX_QUEUE,
            rx_queue: DEFAULT_RX_QUEUE,
            load_window: DEFAULT_LOAD_WINDOW,
        }
    }

    /// Attaches a new node, error active, with empty queues and no filter.
    pub fn attach(&self, node_name: &str) -> SimNode {
        let signals = Arc::new(NodeSignals::default());
        let id = self.shared.lock().attach(node_name, signals.clone());
        SimNode {
            id,
            name: node_name.to_owned(),
            shared: self.shared.clone(),
            signals,
            _life: self.life.clone(),
        }
    }

    /// The bus's name, which its nodes report as their interface name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Nominal bit rate in bit/s.
    pub fn bitrate(&self) -> u32 {
        self.shared.bitrate
    }

    /// The instant the bus started: its first frame can start no earlier.
    pub fn epoch(&self) -> Instant {
        self.shared.epoch
    }

    /// Sets which frames receivers lose; replaces the previous rule.
    pub fn set_drop_rule(&self, rule: DropRule) {
        self.shared.lock().drop_rule = rule;
    }

    /// Sets which transmissions error frames destroy; replaces the previous rule.
    pub fn set_corrupt_rule(&self, rule: CorruptRule) {
        self.shared.lock().corrupt_rule = rule;
    }

    /// Removes the drop and corruption rules.
    pub fn clear_faults(&self) {
        let mut state = self.shared.lock();
        state.drop_rule = DropRule::never();
        state.corrupt_rule = CorruptRule::never();
    }

    /// Puts a node bus-off, as if its transmit error counter had passed 255: it loses its
    /// transmit queue and neither sends nor receives until [`SimBus::recover`].
    pub fn force_bus_off(&self, node: NodeId) -> Result<(), SimBusError> {
        let mut state = self.shared.lock();
        let capacity = state.limits.rx_queue;
        let n = state.node_mut(node).ok_or(SimBusError::NotAttached(node))?;
        n.errors = ErrorCounters::bus_off();
        n.update_state(capacity);
        Ok(())
    }

    /// Restarts a node's controller (as `ip link set canX type can restart` does): error
    /// counters back to zero, error active.
    pub fn recover(&self, node: NodeId) -> Result<(), SimBusError> {
        let mut state = self.shared.lock();
        let capacity = state.limits.rx_queue;
        let n = state.node_mut(node).ok_or(SimBusError::NotAttached(node))?;
        n.errors = ErrorCounters::default();
        n.ready_at = None;
        n.update_state(capacity);
        Ok(())
    }

    /// Cuts a node's power: its queues are lost, it neither sends nor receives, and its
    /// handle reports `Closed`. A frame of it on the wire is destroyed.
    pub fn detach(&self, node: NodeId) -> Result<(), SimBusError> {
        if self.shared.lock().detach(node) {
            Ok(())
        } else {
            Err(SimBusError::NotAttached(node))
        }
    }

    /// A snapshot of one node, or `None` when it is not attached.
    pub fn node_info(&self, node: NodeId) -> Option<NodeInfo> {
        self.shared.lock().node(node).map(|n| n.info(node))
    }

    /// Snapshots of every attached node, in attachment slot order.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        let state = self.shared.lock();
        state
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let id = NodeId {
                    slot: i as u32,
                    generation: s.generation,
                };
                s.node.as_ref().map(|n| n.info(id))
            })
            .collect()
    }

    /// The bus load over the meter's window ending now.
    pub fn load(&self) -> BusLoad {
        self.load_at(Instant::now())
    }

    /// The bus load over the meter's window ending at `at` (exact for any `at` no
    /// earlier than the last completed transmission minus the window; a window that
    /// would reach back before the bus started is cut at [`SimBus::epoch`]).
    pub fn load_at(&self, at: Instant) -> BusLoad {
        self.shared.lock().meter.reading(at)
    }

    /// Frames, bits and errors per identifier since the bus started.
    pub fn load_per_id(&self) -> Vec<(CanId, IdLoad)> {
        self.shared.lock().meter.per_id()
    }

    /// Logs every frame and error frame the bus carries from now on to `out`, in
    /// candump format under the bus's name, with timestamps `unix_base` plus the time
    /// since [`SimBus::epoch`]. Replaces (and flushes) a previous log. Wrap files in a
    /// `BufWriter`.
    pub fn start_log(
        &self,
        out: impl Write + Send + 'static,
        unix_base: Duration,
    ) -> Result<(), SimBusError> {
        bmsfw_can::candump::valid_interface(&self.shared.name).map_err(|why| {
            SimBusError::LogName {
                name: self.shared.name.clone(),
                why,
            }
        })?;
        let log = log::BusLog::new(
            Box::new(out),
            &self.shared.name,
            self.shared.epoch,
            unix_base,
        );
        let previous = self.shared.lock().log.replace(log);
        if let Some(Err(e)) = previous.map(log::BusLog::finish) {
            tracing::warn!(bus = %self.shared.name, error = %e, "previous bus log failed");
        }
        Ok(())
    }

    /// Stops logging; hands back the flushed writer, or the first write error. `None`
    /// when no log was running.
    pub fn stop_log(&self) -> Option<io::Result<Box<dyn Write + Send>>> {
        let log = self.shared.lock().log.take();
        log.map(log::BusLog::finish)
    }
}
