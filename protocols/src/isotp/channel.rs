//! A sender and a receiver sharing one identifier pair.

use super::config::IsoTpConfig;
use super::{Event, Receiver, SendError, Sender};
use bmsfw_plugin_api::{CanFrame, Timestamp};
use bytes::Bytes;
use std::collections::VecDeque;

/// A full-duplex ISO-TP endpoint: sends on `tx_id` and receives on `rx_id`, one message at a
/// time in each direction.
///
/// Received flow-control frames go to the sender, everything else to the receiver. The
/// receiver's flow control is handed out before the sender's data so a peer is never kept
/// waiting behind a long message.
#[derive(Debug)]
pub struct IsoTpChannel {
    config: IsoTpConfig,
    sender: Sender,
    receiver: Receiver,
    events: VecDeque<Event>,
}

impl IsoTpChannel {
    /// An idle channel with these settings.
    pub fn new(config: IsoTpConfig) -> IsoTpChannel {
        IsoTpChannel {
            sender: Sender::new(&config),
            receiver: Receiver::new(&config),
            config,
            events: VecDeque::new(),
        }
    }

    /// The channel's settings.
    pub fn config(&self) -> &IsoTpConfig {
        &self.config
    }

    /// Starts sending `payload`; see [`Sender::send`].
    pub fn send(&mut self, now: Timestamp, payload: impl Into<Bytes>) -> Result<(), SendError> {
        self.sender.send(now, payload)
    }

    /// Whether the sending side can take a new message.
    pub fn can_send(&self) -> bool {
        self.sender.is_idle()
    }

    /// Whether a segmented message is being received.
    pub fn is_receiving(&self) -> bool {
        self.receiver.is_receiving()
    }

    /// Drops the message being sent, if any, without an event.
    pub fn abort_send(&mut self) {
        self.sender.abort();
    }

    /// Feeds a received frame; frames on identifiers other than `rx_id` are ignored.
    pub fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        if frame.id() != self.config.rx_id {
            return;
        }
        let is_flow_control = frame.data().first().is_some_and(|b| b >> 4 == 3);
        if is_flow_control {
            self.sender.handle_frame(now, frame);
        } else {
            self.receiver.handle_frame(now, frame);
        }
        self.collect();
    }

    /// Fires expired timers of both halves.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.receiver.handle_timeout(now);
        self.sender.handle_timeout(now);
        self.collect();
    }

    /// The next frame to put on the bus: the receiver's flow control first, then data.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        let frame = self
            .receiver
            .poll_transmit(now)
            .or_else(|| self.sender.poll_transmit(now));
        self.collect();
        frame
    }

    /// The earlier of both halves' next instants.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match (self.sender.poll_timeout(), self.receiver.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next event of either half, in the order they happened.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn collect(&mut self) {
        while let Some(e) = self.receiver.poll_event() {
            self.events.push_back(e);
        }
        while let Some(e) = self.sender.poll_event() {
            self.events.push_back(e);
        }
    }
}
