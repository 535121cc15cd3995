//! The state of a simulated bus and its nodes, and the two steps the bus task takes for
//! every transmission: arbitration when the bus goes idle, and the outcome at the end of
//! the frame. Everything here runs under the bus's lock and never waits.

use super::controller::ErrorCounters;
use super::faults::{CorruptRule, Delivery, DropRule, LossReport, Transmission};
use super::load::{LoadMeter, Outcome};
use super::log::BusLog;
use bmsfw_can::candump::ErrorFrame;
use bmsfw_can::{BusError, CanEvent, CanFilter, ControllerState, ReceivedFrame};
use bmsfw_plugin_api::CanFrame;
use bmsfw_protocols::bit_timing::{self, FrameBits, SUSPEND_TRANSMISSION_BITS};
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Identifies one attachment of a node to a bus. A node detached and attached again
/// gets a new id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({}.{})", self.slot, self.generation)
    }
}

/// Wake-ups of one node's tasks, shared with its [`super::SimNode`] handle.
#[derive(Debug, Default)]
pub(crate) struct NodeSignals {
    /// An event arrived in the receive queue (one permit, passed on while events remain).
    pub(crate) rx_ready: Notify,
    /// The transmit queue has room again, or the node left the bus.
    pub(crate) tx_space: Notify,
}

/// A frame waiting in a transmit queue, with its bit timing worked out once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Queued {
    pub(crate) frame: CanFrame,
    /// Bits of the frame on the bus, stuff bits and intermission included.
    pub(crate) bits: u32,
    /// Bits the bus is busy when the transmission is destroyed by an error frame.
    pub(crate) error_bits: u32,
    /// When the node handed it to its controller (Tokio clock): it never starts before.
    pub(crate) queued_at: Instant,
}

impl Queued {
    pub(crate) fn new(frame: CanFrame) -> Queued {
        let bits = FrameBits::of(&frame);
        Queued {
            frame,
            bits: bits.total_bits(),
            error_bits: bits.bits_with_crc_error(),
            queued_at: Instant::now(),
        }
    }
}

/// Counters of one node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NodeCounters {
    /// Frames this node sent that the bus carried.
    pub sent: u64,
    /// Frames this node received (after filters and drop faults).
    pub received: u64,
    /// Frames a drop fault took away from this node.
    pub dropped: u64,
    /// Events lost because this node's receive queue was full.
    pub rx_overruns: u64,
    /// Transmissions of this node destroyed by an error frame.
    pub tx_errors: u64,
}

/// A snapshot of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's id on this bus.
    pub id: NodeId,
    /// The node's name.
    pub name: String,
    /// Fault confinement state.
    pub state: ControllerState,
    /// Error counters.
    pub errors: ErrorCounters,
    /// Frames waiting in the transmit queue (the one on the bus included).
    pub queued: usize,
    /// Events waiting in the receive queue.
    pub pending_events: usize,
    /// Counters since the node was attached.
    pub counters: NodeCounters,
}

pub(crate) struct NodeState {
    pub(crate) name: String,
    pub(crate) signals: Arc<NodeSignals>,
    pub(crate) tx: VecDeque<Queued>,
    pub(crate) rx: VecDeque<CanEvent>,
    pub(crate) filters: Vec<CanFilter>,
    pub(crate) errors: ErrorCounters,
    pub(crate) state: ControllerState,
    /// Earliest start of this node's next transmission (suspend transmission of an
    /// error-passive transmitter).
    pub(crate) ready_at: Option<Instant>,
    /// Failed attempts of the frame at the head of the transmit queue.
    pub(crate) retransmissions: u32,
    pub(crate) counters: NodeCounters,
    pub(crate) attachment: Attachment,
}

/// Whether a node's handle still exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Attachment {
    /// The handle exists: the node sends and receives.
    Open,
    /// The handle was dropped: the node sends what it had queued, receives nothing, and
    /// leaves the bus once its queue is empty (as a closed socket's frames still go out).
    Closing,
}

impl NodeState {
    fn accepts(&self, frame: &CanFrame) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| f.accepts(frame.id()))
    }

    /// Queues an event for the reader; a full queue loses it, as a controller's receive
    /// FIFO does.
    fn push_event(&mut self, event: CanEvent, capacity: usize) {
        if self.rx.len() >= capacity {
            self.counters.rx_overruns += 1;
            if self.counters.rx_overruns == 1 {
                tracing::warn!(node = %self.name, "receive queue full: events are being lost");
            }
            return;
        }
        self.rx.push_back(event);
        if self.rx.len() == 1 {
            self.signals.rx_ready.notify_one();
        }
    }

    /// Moves to the state the error counters call for, telling the reader. A node that
    /// goes bus-off loses its transmit queue.
    pub(crate) fn update_state(&mut self, capacity: usize) {
        let new = self.errors.state();
        if new == self.state {
            return;
        }
        tracing::debug!(node = %self.name, from = ?self.state, to = ?new, "controller state");
        self.state = new;
        self.push_event(CanEvent::State(new), capacity);
        if new == ControllerState::BusOff {
            self.tx.clear();
            self.retransmissions = 0;
            self.signals.tx_space.notify_waiters();
        }
    }

    pub(crate) fn info(&self, id: NodeId) -> NodeInfo {
        NodeInfo {
            id,
            name: self.name.clone(),
            state: self.state,
            errors: self.errors,
            queued: self.tx.len(),
            pending_events: self.rx.len(),
            counters: self.counters,
        }
    }
}

pub(crate) struct Slot {
    pub(crate) generation: u32,
    pub(crate) node: Option<NodeState>,
}

/// Limits of a bus, fixed when it is built.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) bitrate: u32,
    pub(crate) tx_queue: usize,
    pub(crate) rx_queue: usize,
}

/// Whether the bus task is waiting for a frame to be queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TaskState {
    Running,
    WaitingForFrames,
    ShuttingDown,
}

pub(crate) struct State {
    pub(crate) limits: Limits,
    pub(crate) task: TaskState,
    pub(crate) slots: Vec<Slot>,
    pub(crate) drop_rule: DropRule,
    pub(crate) corrupt_rule: CorruptRule,
    pub(crate) meter: LoadMeter,
    pub(crate) log: Option<BusLog>,
    /// Transmission attempts so far.
    pub(crate) sequence: u64,
}

/// A transmission chosen by arbitration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Transmit {
    pub(crate) sender: NodeId,
    pub(crate) queued: Queued,
    pub(crate) start: Instant,
    pub(crate) end: Instant,
    pub(crate) fate: Fate,
}

/// What happens to a transmission, decided when it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    Carried,
    Corrupted,
}

impl State {
    pub(crate) fn node(&self, id: NodeId) -> Option<&NodeState> {
        let slot = self.slots.get(id.slot as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.node.as_ref()
    }

    pub(crate) fn node_mut(&mut self, id: NodeId) -> Option<&mut NodeState> {
        let slot = self.slots.get_mut(id.slot as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.node.as_mut()
    }

    pub(crate) fn attach(&mut self, name: &str, signals: Arc<NodeSignals>) -> NodeId {
        let node = NodeState {
            name: name.to_owned(),
            signals,
            tx: VecDeque::with_capacity(self.limits.tx_queue),
            rx: VecDeque::new(),
            filters: Vec::new(),
            errors: ErrorCounters::default(),
            state: ControllerState::ErrorActive,
            ready_at: None,
            retransmissions: 0,
            counters: NodeCounters::default(),
            attachment: Attachment::Open,
        };
        let free = self.slots.iter().position(|s| s.node.is_none());
        let slot = match free {
            Some(i) => {
                let s = &mut self.slots[i];
                s.generation = s.generation.wrapping_add(1);
                s.node = Some(node);
                i
            }
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    node: Some(node),
                });
                self.slots.len() - 1
            }
        };
        NodeId {
            slot: u32::try_from(slot).unwrap_or(u32::MAX),
            generation: self.slots[slot].generation,
        }
    }

    /// Removes a node: its queues are lost and its handle's waiters are woken to find it
    /// gone. Returns whether it was attached.
    pub(crate) fn detach(&mut self, id: NodeId) -> bool {
        let Some(slot) = self.slots.get_mut(id.slot as usize) else {
            return false;
        };
        if slot.generation != id.generation {
            return false;
        }
        match slot.node.take() {
            Some(node) => {
                node.signals.tx_space.notify_waiters();
                node.signals.rx_ready.notify_one();
                true
            }
            None => false,
        }
    }

    /// The handle of a node was dropped: the node leaves the bus once its transmit queue
    /// is empty.
    pub(crate) fn release(&mut self, id: NodeId) {
        if let Some(node) = self.node_mut(id) {
            node.attachment = Attachment::Closing;
            node.rx.clear();
        }
        self.reap(id);
    }

    /// Removes a closing node whose queue has drained (or that went bus-off).
    fn reap(&mut self, id: NodeId) {
        if self
            .node(id)
            .is_some_and(|n| n.attachment == Attachment::Closing && n.tx.is_empty())
        {
            self.detach(id);
        }
    }

    /// Whether any node has a frame it may send.
    pub(crate) fn has_pending(&self) -> bool {
        self.slots.iter().any(|s| {
            s.node
                .as_ref()
                .is_some_and(|n| !n.tx.is_empty() && n.state != ControllerState::BusOff)
        })
    }

    /// Arbitration on a bus that is idle from `free_at`: the node whose frame has the
    /// lowest arbitration field wins; nodes still in suspend transmission, and frames
    /// handed over after `free_at`, start later when nobody else sends (a controller
    /// never starts a frame before it has it). Ties (the same identifier queued by two nodes, a bit error
    /// on a real bus) go to the node attached first.
    pub(crate) fn arbitrate(&mut self, free_at: Instant) -> Option<Transmit> {
        let mut start: Option<Instant> = None;
        for node in self.slots.iter().filter_map(|s| s.node.as_ref()) {
            if node.tx.is_empty() || node.state == ControllerState::BusOff {
                continue;
            }
            let ready = node.ready_at.map_or(free_at, |r| r.max(free_at));
            let ready = node.tx.front().map_or(ready, |q| ready.max(q.queued_at));
            start = Some(start.map_or(ready, |s: Instant| s.min(ready)));
        }
        let start = start?;
        let mut best: Option<(u32, usize)> = None;
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(node) = slot.node.as_ref() else {
                continue;
            };
            let Some(head) = node.tx.front() else {
                continue;
            };
            if node.state == ControllerState::BusOff
                || node.ready_at.is_some_and(|r| r > start)
                || head.queued_at > start
            {
                continue;
            }
            let key = bit_timing::arbitration_key(head.frame.id());
            if best.is_none_or(|(k, _)| key < k) {
                best = Some((key, i));
            }
        }
        let (_, index) = best?;
        let slot = &self.slots[index];
        let sender = NodeId {
            slot: index as u32,
            generation: slot.generation,
        };
        let node = slot.node.as_ref()?;
        let queued = *node.tx.front()?;
        let sequence = self.sequence;
        self.sequence += 1;
        let corrupted = self.corrupt_rule.fires(&Transmission {
            frame: &queued.frame,
            sender: &node.name,
            retransmission: node.retransmissions,
            sequence,
            at: start,
        });
        let (fate, bits) = if corrupted {
            (Fate::Corrupted, queued.error_bits)
        } else {
            (Fate::Carried, queued.bits)
        };
        Some(Transmit {
            sender,
            queued,
            start,
            end: start + bit_timing::bits_duration(u64::from(bits), self.limits.bitrate),
            fate,
        })
    }

    /// The end of a transmission: the frame reaches the receivers, or an error frame
    /// destroys it for everybody. A transmission whose sender left the bus while it was
    /// on the wire is destroyed too (the other nodes see a form error), without a
    /// retransmission.
    pub(crate) fn complete(&mut self, tx: &Transmit) {
        let capacity = self.limits.rx_queue;
        let sender_present = self
            .node(tx.sender)
            .is_some_and(|n| n.state != ControllerState::BusOff);
        let fate = if sender_present {
            tx.fate
        } else {
            Fate::Corrupted
        };
        let frame = tx.queued.frame;
        match fate {
            Fate::Carried => {
                self.meter.record(
                    frame.id(),
                    tx.start,
                    tx.end,
                    tx.queued.bits,
                    Outcome::Carried,
                );
                if let Some(log) = self.log.as_mut() {
                    log.frame(tx.end, &frame);
                }
                let tx_capacity = self.limits.tx_queue;
                let bitrate = self.limits.bitrate;
                let sender_slot = tx.sender.slot as usize;
                // The sender's name, borrowed out of its slot for the drop rule's
                // context while the receivers' slots are borrowed mutably.
                let mut sender_name = String::new();
                if let Some(sender) = self.node_mut(tx.sender) {
                    let was_full = sender.tx.len() >= tx_capacity;
                    sender.tx.pop_front();
                    sender.retransmissions = 0;
                    sender.counters.sent += 1;
                    sender.errors.transmit_ok();
                    sender.ready_at = suspend_after(sender.state, tx.end, bitrate);
                    sender.update_state(capacity);
                    if was_full {
                        sender.signals.tx_space.notify_waiters();
                    }
                    std::mem::swap(&mut sender_name, &mut sender.name);
                }
                let sequence = self.sequence - 1;
                let check_drops = !self.drop_rule.is_never();
                for (i, slot) in self.slots.iter_mut().enumerate() {
                    if i == sender_slot {
                        continue;
                    }
                    let Some(node) = slot.node.as_mut() else {
                        continue;
                    };
                    if node.state == ControllerState::BusOff
                        || node.attachment == Attachment::Closing
                    {
                        continue;
                    }
                    node.errors.receive_ok();
                    node.update_state(capacity);
                    if !node.accepts(&frame) {
                        continue;
                    }
                    if check_drops
                        && self.drop_rule.fires(&Delivery {
                            frame: &frame,
                            sender: &sender_name,
                            receiver: &node.name,
                            sequence,
                            at: tx.end,
                        })
                    {
                        node.counters.dropped += 1;
                        if self.drop_rule.report() == LossReport::Overflow {
                            node.push_event(
                                CanEvent::Error(BusError {
                                    description: format!(
                                        "receive overflow: lost {frame} from {sender_name}"
                                    ),
                                    frame: ErrorFrame::RX_OVERFLOW,
                                    at: tx.end,
                                }),
                                capacity,
                            );
                        }
                        continue;
                    }
                    node.counters.received += 1;
                    node.push_event(
                        CanEvent::Frame(ReceivedFrame { frame, at: tx.end }),
                        capacity,
                    );
                }
                if let Some(sender) = self.node_mut(tx.sender) {
                    std::mem::swap(&mut sender_name, &mut sender.name);
                }
                self.reap(tx.sender);
            }
            Fate::Corrupted => {
                let bits = if tx.fate == Fate::Corrupted {
                    tx.queued.error_bits
                } else {
                    tx.queued.bits
                };
                self.meter
                    .record(frame.id(), tx.start, tx.end, bits, Outcome::Destroyed);
                if let Some(log) = self.log.as_mut() {
                    log.error_frame(tx.end);
                }
                let bitrate = self.limits.bitrate;
                for (i, slot) in self.slots.iter_mut().enumerate() {
                    let Some(node) = slot.node.as_mut() else {
                        continue;
                    };
                    if node.state == ControllerState::BusOff {
                        continue;
                    }
                    let is_sender =
                        i == tx.sender.slot as usize && slot.generation == tx.sender.generation;
                    if !is_sender && node.attachment == Attachment::Closing {
                        continue;
                    }
                    let description = if is_sender {
                        node.errors.transmit_error();
                        node.counters.tx_errors += 1;
                        node.retransmissions += 1;
                        node.ready_at = suspend_after(node.errors.state(), tx.end, bitrate);
                        format!("transmit error: error frame destroyed {frame}, retransmitting")
                    } else {
                        node.errors.receive_error();
                        format!("receive error: error frame destroyed {frame}")
                    };
                    node.push_event(
                        CanEvent::Error(BusError {
                            description,
                            frame: ErrorFrame::CRC_ERROR,
                            at: tx.end,
                        }),
                        capacity,
                    );
                    node.update_state(capacity);
                }
                self.reap(tx.sender);
            }
        }
    }
}

/// When an error-passive transmitter may start its next frame after one that ended at
/// `end`.
fn suspend_after(state: ControllerState, end: Instant, bitrate: u32) -> Option<Instant> {
    (state == ControllerState::ErrorPassive)
        .then(|| end + bit_timing::bits_duration(u64::from(SUSPEND_TRANSMISSION_BITS), bitrate))
}
