//! One object read from one node (an SDO upload), repeated when the node stays silent.

use crate::protocol::channel;
use bmsfw_plugin_api::{CanFrame, Timestamp};
use bmsfw_protocols::canopen::{
    AbortCode, NodeId, ObjectAddress, SdoClient, SdoClientConfig, SdoError, SdoEvent,
};
use std::time::Duration;

/// Longest value read: the software version text and the identity fields are short.
const MAX_VALUE: usize = 64;

/// How a read ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOutcome {
    /// The object's value.
    Value(Vec<u8>),
    /// No answer after every attempt.
    Silent {
        /// Attempts made.
        attempts: u8,
    },
    /// The node refused the read.
    Refused(AbortCode),
    /// The node broke the protocol.
    Broken(SdoError),
}

/// A read of `object` from `node`.
#[derive(Debug)]
pub struct Read {
    object: ObjectAddress,
    client: Box<SdoClient>,
    attempts: u8,
    max_attempts: u8,
    /// An outcome decided outside the client (it refused to start).
    ended: Option<ReadOutcome>,
}

impl Read {
    /// Starts reading `object` of `node`, waiting `timeout` for each of `attempts`.
    pub fn start(
        now: Timestamp,
        node: NodeId,
        object: ObjectAddress,
        timeout: Duration,
        attempts: u8,
    ) -> Read {
        let mut config = SdoClientConfig::new(channel(node));
        config.timeout = timeout;
        let mut read = Read {
            object,
            client: Box::new(SdoClient::new(config)),
            attempts: 0,
            max_attempts: attempts.max(1),
            ended: None,
        };
        read.attempt(now);
        read
    }

    fn attempt(&mut self, now: Timestamp) {
        self.attempts += 1;
        // The client is idle here (a new read, or one whose transfer just failed), so
        // it does not refuse; if it did, the read ends as broken instead of hanging.
        if self.client.upload(now, self.object, MAX_VALUE).is_err() {
            self.ended = Some(ReadOutcome::Broken(SdoError::Cancelled(
                AbortCode::GeneralError,
            )));
        }
    }

    /// A frame arrived (frames of other nodes are ignored).
    pub fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        self.client.handle_frame(now, frame);
    }

    /// The deadline passed.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.client.handle_timeout(now);
    }

    /// The next frame to send.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        self.client.poll_transmit(now)
    }

    /// The next deadline.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.client.poll_timeout()
    }

    /// Gives up the read, telling the node.
    pub fn cancel(&mut self, now: Timestamp) {
        self.client.abort(now, AbortCode::GeneralError);
        while self.client.poll_event().is_some() {}
    }

    /// The outcome once the read ended; a timeout with attempts left starts the next.
    pub fn poll_outcome(&mut self, now: Timestamp) -> Option<ReadOutcome> {
        if let Some(outcome) = self.ended.take() {
            return Some(outcome);
        }
        match self.client.poll_event()? {
            SdoEvent::Uploaded { data, .. } => Some(ReadOutcome::Value(data)),
            SdoEvent::Failed {
                error: SdoError::Timeout { .. },
                ..
            } if self.attempts < self.max_attempts => {
                self.attempt(now);
                None
            }
            SdoEvent::Failed {
                error: SdoError::Timeout { .. },
                ..
            } => Some(ReadOutcome::Silent {
                attempts: self.attempts,
            }),
            SdoEvent::Failed {
                error: SdoError::ServerAbort(code),
                ..
            } => Some(ReadOutcome::Refused(code)),
            SdoEvent::Failed { error, .. } => Some(ReadOutcome::Broken(error)),
            SdoEvent::NeedData { .. } | SdoEvent::Progress { .. } | SdoEvent::Downloaded { .. } => {
                None
            }
        }
    }
}
