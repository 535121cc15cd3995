//! One command and the wait for its answer: sent when due, repeated after a silence, up to
//! a number of attempts; a busy frame from the master extends the wait.

use crate::frames::Command;
use crate::protocol::{ANSWER_TIMEOUT, ATTEMPTS, BUSY_TIMEOUT};
use bmsfw_plugin_api::{CanFrame, Timestamp};

/// What a look at the clock found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Expiry {
    /// Still waiting (or nothing sent yet).
    Waiting,
    /// The answer is late: the command goes out again.
    Retry,
    /// The answer is late and no attempt is left.
    GaveUp,
}

/// Whether the command is to be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Send {
    /// At the next chance.
    Due,
    /// Sent; the answer is expected by this time.
    Waiting(Timestamp),
}

/// A command waiting for its answer.
#[derive(Clone, Debug)]
pub(super) struct Exchange {
    command: Command,
    attempts: u8,
    max_attempts: u8,
    send: Send,
}

impl Exchange {
    /// `command`, up to the protocol's number of attempts.
    pub(super) fn new(command: Command) -> Exchange {
        Exchange::with_attempts(command, ATTEMPTS)
    }

    /// `command`, sent once.
    pub(super) fn once(command: Command) -> Exchange {
        Exchange::with_attempts(command, 1)
    }

    fn with_attempts(command: Command, max_attempts: u8) -> Exchange {
        Exchange {
            command,
            attempts: 0,
            max_attempts: max_attempts.max(1),
            send: Send::Due,
        }
    }

    /// The command.
    pub(super) fn command(&self) -> Command {
        self.command
    }

    /// The command's frame when it is due.
    pub(super) fn poll(&mut self, now: Timestamp) -> Option<CanFrame> {
        if self.send != Send::Due {
            return None;
        }
        self.attempts += 1;
        self.send = Send::Waiting(now + ANSWER_TIMEOUT);
        Some(self.command.frame())
    }

    /// The master says it is still working on the command.
    pub(super) fn busy(&mut self, now: Timestamp) {
        if let Send::Waiting(_) = self.send {
            self.send = Send::Waiting(now + BUSY_TIMEOUT);
        }
    }

    /// Whether the answer is late at `now`.
    pub(super) fn expired(&mut self, now: Timestamp) -> Expiry {
        match self.send {
            Send::Waiting(at) if now >= at => {
                if self.attempts < self.max_attempts {
                    self.send = Send::Due;
                    Expiry::Retry
                } else {
                    Expiry::GaveUp
                }
            }
            _ => Expiry::Waiting,
        }
    }

    /// When the answer is due, once sent.
    pub(super) fn deadline(&self) -> Option<Timestamp> {
        match self.send {
            Send::Waiting(at) => Some(at),
            Send::Due => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_micros(ms * 1000)
    }

    #[test]
    fn a_command_is_repeated_until_its_attempts_run_out() {
        let mut e = Exchange::new(Command::Hello);
        assert_eq!(e.deadline(), None);
        assert_eq!(e.poll(t(0)).unwrap().data()[0], 0x01);
        assert_eq!(e.poll(t(0)), None);
        assert_eq!(e.expired(t(199)), Expiry::Waiting);
        assert_eq!(e.expired(t(200)), Expiry::Retry);
        assert!(e.poll(t(200)).is_some());
        // A busy frame gives the master a whole second.
        e.busy(t(300));
        assert_eq!(e.deadline(), Some(t(1300)));
        assert_eq!(e.expired(t(1300)), Expiry::Retry);
        assert!(e.poll(t(1300)).is_some());
        assert_eq!(e.expired(t(1500)), Expiry::GaveUp);
        let mut once = Exchange::once(Command::Modules);
        once.poll(t(0));
        assert_eq!(once.expired(t(200)), Expiry::GaveUp);
    }
}
