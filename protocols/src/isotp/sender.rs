//! The sending half of ISO-TP: segmentation and flow-control handling.

use super::config::{IsoTpConfig, Padding, Timeouts};
use super::pdu::{CONSECUTIVE_FRAME_MAX, FIRST_FRAME_12BIT_MAX, FlowStatus, Pdu, SINGLE_FRAME_MAX};
use super::{BlockLeft, Event, IsoTpError, SendError, Timer};
use bmsfw_plugin_api::{CanFrame, CanId, Timestamp};
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::Duration;

/// Sends one message at a time on `tx_id`, reading flow control from `rx_id`.
#[derive(Debug)]
pub struct Sender {
    tx_id: CanId,
    rx_id: CanId,
    padding: Padding,
    timeouts: Timeouts,
    max_wait_frames: u8,
    state: State,
    /// The latest time any call was handed: tells a frame that is due from one that is
    /// still waiting for its separation time.
    last_now: Timestamp,
    events: VecDeque<Event>,
}

#[derive(Debug)]
enum State {
    Idle,
    /// A single frame is ready since `due`.
    Single {
        payload: Bytes,
        due: Timestamp,
    },
    /// A segmented message is under way.
    Segmented(Segmented),
}

#[derive(Debug)]
struct Segmented {
    payload: Bytes,
    /// Bytes of `payload` handed out so far.
    offset: usize,
    next_sequence: u8,
    step: Step,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    /// The first frame is ready since `due`.
    FirstFrame { due: Timestamp },
    /// Waiting for flow control until `deadline`; `waits` wait frames seen in a row.
    AwaitFlowControl { deadline: Timestamp, waits: u8 },
    /// Sending consecutive frames; the next may go at `ready_at`.
    Consecutive {
        block_left: BlockLeft,
        separation: Duration,
        ready_at: Timestamp,
    },
}

impl Sender {
    /// A sender with the identifiers, padding, timers and wait limit of `config`.
    pub fn new(config: &IsoTpConfig) -> Sender {
        Sender {
            tx_id: config.tx_id,
            rx_id: config.rx_id,
            padding: config.padding,
            timeouts: config.timeouts,
            max_wait_frames: config.max_wait_frames,
            state: State::Idle,
            last_now: Timestamp::ZERO,
            events: VecDeque::new(),
        }
    }

    /// Starts sending `payload`. A `Vec<u8>` or `Bytes` is taken without copying.
    pub fn send(&mut self, now: Timestamp, payload: impl Into<Bytes>) -> Result<(), SendError> {
        self.touch(now);
        if !self.is_idle() {
            return Err(SendError::Busy);
        }
        let payload = payload.into();
        if payload.is_empty() {
            return Err(SendError::Empty);
        }
        if u32::try_from(payload.len()).is_err() {
            return Err(SendError::TooLong(payload.len()));
        }
        self.state = if payload.len() <= SINGLE_FRAME_MAX {
            State::Single { payload, due: now }
        } else {
            State::Segmented(Segmented {
                payload,
                offset: 0,
                next_sequence: 1,
                step: Step::FirstFrame { due: now },
            })
        };
        Ok(())
    }

    /// Whether no message is under way, so [`send`](Self::send) will accept one.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    /// Drops the message under way, if any, without an event.
    pub fn abort(&mut self) {
        self.state = State::Idle;
    }

    /// Feeds a received frame. Only flow-control frames on `rx_id` matter to a sender;
    /// anything else, and flow control arriving when none is awaited, is ignored.
    pub fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        self.touch(now);
        if frame.id() != self.rx_id {
            return;
        }
        let Ok(Pdu::FlowControl {
            status,
            block_size,
            st_min,
        }) = Pdu::parse(frame.data())
        else {
            return;
        };
        let State::Segmented(seg) = &mut self.state else {
            return;
        };
        let Step::AwaitFlowControl { waits, .. } = seg.step else {
            return;
        };
        match status {
            FlowStatus::ContinueToSend => {
                seg.step = Step::Consecutive {
                    block_left: BlockLeft::from_block_size(block_size),
                    separation: st_min.duration(),
                    ready_at: now,
                };
            }
            FlowStatus::Wait => {
                if waits >= self.max_wait_frames {
                    self.fail(IsoTpError::TooManyWaits {
                        max: self.max_wait_frames,
                    });
                } else {
                    seg.step = Step::AwaitFlowControl {
                        deadline: now + self.timeouts.n_bs,
                        waits: waits + 1,
                    };
                }
            }
            FlowStatus::Overflow => self.fail(IsoTpError::Overflow),
            FlowStatus::Reserved(fs) => self.fail(IsoTpError::InvalidFlowStatus(fs)),
        }
    }

    /// Fires the timers that have expired by `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.touch(now);
        if let Some(timer) = self.expired(now) {
            self.fail(IsoTpError::Timeout(timer));
        }
    }

    /// The next frame to put on the bus, if one may go at `now`.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        self.touch(now);
        if let Some(timer) = self.expired(now) {
            self.fail(IsoTpError::Timeout(timer));
            return None;
        }
        let (tx_id, padding, n_bs) = (self.tx_id, self.padding, self.timeouts.n_bs);
        match &mut self.state {
            State::Idle => None,
            State::Single { payload, .. } => {
                let frame = Pdu::Single { data: payload }.to_frame(tx_id, padding);
                self.finish();
                frame
            }
            State::Segmented(seg) => match seg.step {
                Step::AwaitFlowControl { .. } => None,
                Step::FirstFrame { .. } => {
                    let total_len = seg.payload.len() as u32;
                    let take = if total_len <= FIRST_FRAME_12BIT_MAX {
                        6
                    } else {
                        2
                    };
                    let frame = Pdu::First {
                        total_len,
                        data: &seg.payload[..take],
                    }
                    .to_frame(tx_id, padding);
                    seg.offset = take;
                    seg.step = Step::AwaitFlowControl {
                        deadline: now + n_bs,
                        waits: 0,
                    };
                    frame
                }
                Step::Consecutive {
                    mut block_left,
                    separation,
                    ready_at,
                } => {
                    if now < ready_at {
                        return None;
                    }
                    let end = (seg.offset + CONSECUTIVE_FRAME_MAX).min(seg.payload.len());
                    let frame = Pdu::Consecutive {
                        sequence: seg.next_sequence,
                        data: &seg.payload[seg.offset..end],
                    }
                    .to_frame(tx_id, padding);
                    seg.offset = end;
                    seg.next_sequence = (seg.next_sequence + 1) & 0x0F;
                    if seg.offset == seg.payload.len() {
                        self.finish();
                    } else if block_left.take_one() {
                        seg.step = Step::AwaitFlowControl {
                            deadline: now + n_bs,
                            waits: 0,
                        };
                    } else {
                        seg.step = Step::Consecutive {
                            block_left,
                            separation,
                            ready_at: now + separation,
                        };
                    }
                    frame
                }
            },
        }
    }

    /// The next instant the sender needs the caller: a flow-control deadline, the end of a
    /// separation time, or the N_As deadline of a frame that is already due.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match &self.state {
            State::Idle => None,
            State::Single { due, .. } => Some(*due + self.timeouts.n_as),
            State::Segmented(seg) => match seg.step {
                Step::FirstFrame { due } => Some(due + self.timeouts.n_as),
                Step::AwaitFlowControl { deadline, .. } => Some(deadline),
                Step::Consecutive { ready_at, .. } => {
                    if ready_at > self.last_now {
                        Some(ready_at)
                    } else {
                        Some(ready_at + self.timeouts.n_as)
                    }
                }
            },
        }
    }

    /// The next event: [`Event::Sent`] or [`Event::SendFailed`].
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Bytes of the current message handed out so far, and its length; `None` when idle.
    pub fn progress(&self) -> Option<(usize, usize)> {
        match &self.state {
            State::Idle => None,
            State::Single { payload, .. } => Some((0, payload.len())),
            State::Segmented(seg) => Some((seg.offset, seg.payload.len())),
        }
    }

    fn touch(&mut self, now: Timestamp) {
        self.last_now = self.last_now.max(now);
    }

    fn expired(&self, now: Timestamp) -> Option<Timer> {
        let n_as = self.timeouts.n_as;
        match &self.state {
            State::Idle => None,
            State::Single { due, .. } => (now >= *due + n_as).then_some(Timer::NAs),
            State::Segmented(seg) => match seg.step {
                Step::FirstFrame { due } => (now >= due + n_as).then_some(Timer::NAs),
                Step::AwaitFlowControl { deadline, .. } => (now >= deadline).then_some(Timer::NBs),
                Step::Consecutive { ready_at, .. } => {
                    (now >= ready_at + n_as).then_some(Timer::NAs)
                }
            },
        }
    }

    fn finish(&mut self) {
        self.state = State::Idle;
        self.events.push_back(Event::Sent);
    }

    fn fail(&mut self, error: IsoTpError) {
        tracing::debug!(tx_id = %self.tx_id, %error, "ISO-TP send aborted");
        self.state = State::Idle;
        self.events.push_back(Event::SendFailed(error));
    }
}
