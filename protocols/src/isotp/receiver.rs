//! The receiving half of ISO-TP: reassembly and flow control.

use super::config::{IsoTpConfig, Padding, Timeouts};
use super::pdu::{FlowStatus, Pdu};
use super::{BlockLeft, Event, IsoTpError, StMin, Timer};
use bmsfw_plugin_api::{CanFrame, CanId, Timestamp};
use std::collections::VecDeque;

/// Memory reserved up front for a segmented message; larger messages grow as they arrive,
/// so a first frame announcing a huge length cannot make the receiver allocate it.
const INITIAL_RESERVE: usize = 64 * 1024;

/// Reassembles messages arriving on `rx_id` and sends flow control on `tx_id`.
#[derive(Debug)]
pub struct Receiver {
    tx_id: CanId,
    rx_id: CanId,
    padding: Padding,
    timeouts: Timeouts,
    block_size: u8,
    st_min: StMin,
    max_message_len: u32,
    state: State,
    events: VecDeque<Event>,
}

#[derive(Debug)]
enum State {
    Idle,
    /// A flow control is ready since `due`; `then` is what follows once it is sent.
    SendFlowControl {
        status: FlowStatus,
        due: Timestamp,
        then: AfterFlowControl,
    },
    /// Waiting for the next consecutive frame until `deadline`.
    AwaitConsecutive {
        message: Reassembly,
        deadline: Timestamp,
    },
}

#[derive(Debug)]
enum AfterFlowControl {
    /// Continue reassembling.
    Receive(Reassembly),
    /// The message was refused; nothing follows.
    Idle,
}

#[derive(Debug)]
struct Reassembly {
    data: Vec<u8>,
    total_len: usize,
    next_sequence: u8,
    block_left: BlockLeft,
}

impl Receiver {
    /// A receiver with the identifiers, padding, timers, block size, STmin and length
    /// limit of `config`.
    pub fn new(config: &IsoTpConfig) -> Receiver {
        Receiver {
            tx_id: config.tx_id,
            rx_id: config.rx_id,
            padding: config.padding,
            timeouts: config.timeouts,
            block_size: config.block_size,
            st_min: config.st_min,
            max_message_len: config.max_message_len,
            state: State::Idle,
            events: VecDeque::new(),
        }
    }

    /// Whether a segmented message is being reassembled.
    pub fn is_receiving(&self) -> bool {
        matches!(
            self.state,
            State::AwaitConsecutive { .. }
                | State::SendFlowControl {
                    then: AfterFlowControl::Receive(_),
                    ..
                }
        )
    }

    /// Feeds a received frame. Frames on other identifiers, flow control, and frames that
    /// are not valid ISO-TP are ignored, as are consecutive frames when no message is
    /// being reassembled.
    pub fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        if frame.id() != self.rx_id {
            return;
        }
        let pdu = match Pdu::parse(frame.data()) {
            Ok(pdu) => pdu,
            Err(error) => {
                tracing::trace!(rx_id = %self.rx_id, %error, "ignoring invalid ISO-TP frame");
                return;
            }
        };
        match pdu {
            Pdu::Single { data } => {
                self.interrupt();
                self.events.push_back(Event::Received(data.to_vec()));
            }
            Pdu::First { total_len, data } => {
                self.interrupt();
                if total_len > self.max_message_len {
                    self.events
                        .push_back(Event::ReceiveFailed(IsoTpError::MessageTooLarge {
                            len: total_len,
                            max: self.max_message_len,
                        }));
                    self.state = State::SendFlowControl {
                        status: FlowStatus::Overflow,
                        due: now,
                        then: AfterFlowControl::Idle,
                    };
                    return;
                }
                let total_len = total_len as usize;
                let mut buf = Vec::with_capacity(total_len.min(INITIAL_RESERVE));
                buf.extend_from_slice(data);
                self.state = State::SendFlowControl {
                    status: FlowStatus::ContinueToSend,
                    due: now,
                    then: AfterFlowControl::Receive(Reassembly {
                        data: buf,
                        total_len,
                        next_sequence: 1,
                        block_left: BlockLeft::from_block_size(self.block_size),
                    }),
                };
            }
            Pdu::Consecutive { sequence, data } => self.consecutive(now, sequence, data),
            Pdu::FlowControl { .. } => {}
        }
    }

    fn consecutive(&mut self, now: Timestamp, sequence: u8, data: &[u8]) {
        let State::AwaitConsecutive { message, .. } = &mut self.state else {
            return;
        };
        if sequence != message.next_sequence {
            let expected = message.next_sequence;
            self.fail(IsoTpError::WrongSequenceNumber {
                expected,
                got: sequence,
            });
            return;
        }
        let take = (message.total_len - message.data.len()).min(data.len());
        message.data.extend_from_slice(&data[..take]);
        message.next_sequence = (message.next_sequence + 1) & 0x0F;
        if message.data.len() == message.total_len {
            let State::AwaitConsecutive { message, .. } =
                std::mem::replace(&mut self.state, State::Idle)
            else {
                return;
            };
            self.events.push_back(Event::Received(message.data));
            return;
        }
        if message.block_left.take_one() {
            let State::AwaitConsecutive { mut message, .. } =
                std::mem::replace(&mut self.state, State::Idle)
            else {
                return;
            };
            message.block_left = BlockLeft::from_block_size(self.block_size);
            self.state = State::SendFlowControl {
                status: FlowStatus::ContinueToSend,
                due: now,
                then: AfterFlowControl::Receive(message),
            };
        } else if let State::AwaitConsecutive { deadline, .. } = &mut self.state {
            *deadline = now + self.timeouts.n_cr;
        }
    }

    /// Fires the timers that have expired by `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if let Some(timer) = self.expired(now) {
            self.fail(IsoTpError::Timeout(timer));
        }
    }

    /// The flow-control frame to put on the bus, if one is due.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        if let Some(timer) = self.expired(now) {
            self.fail(IsoTpError::Timeout(timer));
            return None;
        }
        let State::SendFlowControl { status, .. } = self.state else {
            return None;
        };
        let frame = Pdu::FlowControl {
            status,
            block_size: self.block_size,
            st_min: self.st_min,
        }
        .to_frame(self.tx_id, self.padding);
        let State::SendFlowControl { then, .. } = std::mem::replace(&mut self.state, State::Idle)
        else {
            return None;
        };
        if let AfterFlowControl::Receive(message) = then {
            self.state = State::AwaitConsecutive {
                message,
                deadline: now + self.timeouts.n_cr,
            };
        }
        frame
    }

    /// The next deadline: N_Ar of a pending flow control, or N_Cr.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match &self.state {
            State::Idle => None,
            State::SendFlowControl { due, .. } => Some(*due + self.timeouts.n_ar),
            State::AwaitConsecutive { deadline, .. } => Some(*deadline),
        }
    }

    /// The next event: [`Event::Received`] or [`Event::ReceiveFailed`].
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn expired(&self, now: Timestamp) -> Option<Timer> {
        match &self.state {
            State::Idle => None,
            State::SendFlowControl { due, .. } => {
                (now >= *due + self.timeouts.n_ar).then_some(Timer::NAr)
            }
            State::AwaitConsecutive { deadline, .. } => (now >= *deadline).then_some(Timer::NCr),
        }
    }

    /// A new message starts: the one under way, if any, is lost.
    fn interrupt(&mut self) {
        if self.is_receiving() {
            self.fail(IsoTpError::Interrupted);
        } else {
            self.state = State::Idle;
        }
    }

    fn fail(&mut self, error: IsoTpError) {
        tracing::debug!(rx_id = %self.rx_id, %error, "ISO-TP reception aborted");
        self.state = State::Idle;
        self.events.push_back(Event::ReceiveFailed(error));
    }
}
