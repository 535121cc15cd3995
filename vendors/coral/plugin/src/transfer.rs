//! The GX's side of the pipelined transfer (`PROTOCOL.md` section 5): which frame to send
//! next, and what the master's acknowledgements mean for it. Sans-IO and free of bytes:
//! the session reads the frames' data from the package.
//!
//! | event | effect |
//! |---|---|
//! | room in the window | the next new frame is sent, in sequence order |
//! | `A0` ACK | `C` and `N` move on; frames below `N` leave the re-send queue |
//! | `A1` NACK | the named frames are re-sent, alone, ahead of new ones |
//! | `A2` ACK answering a request | as `A0`, and the frames from `E` on sent before the request are re-sent |
//! | 100 ms without an answer while frames are unacknowledged | an ACK-REQUEST, again after 200, 400, ... 1600 ms |
//! | 20 s without an answer | the transfer fails |

use crate::frames::Counts;
use crate::protocol::{ACK_SILENCE, ACK_SILENCE_MAX, RESEND_GUARD, TRANSFER_SILENCE_MAX};
use bmsfw_plugin_api::Timestamp;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// What to put on the bus next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// Data frame `seq` (a new frame or a re-send).
    Data(u32),
    /// An ACK-REQUEST.
    AckRequest,
}

/// Why the transfer cannot go on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferError {
    /// No answer for this long.
    Silent(Duration),
    /// The master acknowledged frames the GX never sent, or beyond the file.
    Impossible(String),
}

/// Counters of what the sender did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Data frames sent for the first time.
    pub new_frames: u64,
    /// Data frames sent again.
    pub resent_frames: u64,
    /// ACK-REQUESTs sent.
    pub ack_requests: u64,
}

/// Whether an ACK-REQUEST is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ask {
    /// None due; the next one at this time if the master stays silent.
    At(Timestamp),
    /// One is to be sent now.
    Due,
}

/// The sender of one transfer.
#[derive(Clone, Debug)]
pub struct Sender {
    total: u32,
    window: u32,
    /// `C`: frames the master has written.
    written: u32,
    /// `N`: the master holds every frame below it.
    held: u32,
    /// Every frame below it was sent at least once.
    next_new: u32,
    resend: BTreeSet<u32>,
    /// When frames were last re-sent (pruned below `held`).
    resent_at: BTreeMap<u32, Timestamp>,
    /// The last answer, or the start of the transfer.
    heard: Timestamp,
    ask: Ask,
    /// Interval before the next ACK-REQUEST if this one stays unanswered.
    interval: Duration,
    /// `next_new` when the last ACK-REQUEST went out.
    asked_high: Option<u32>,
    stats: SenderStats,
}

impl Sender {
    /// A transfer of `total` frames with a window of `window` frames, at `now`; the master
    /// has written `written` frames and holds every one below `next` (0 and 0 for a new
    /// transfer).
    pub fn new(total: u32, window: u32, written: u32, next: u32, now: Timestamp) -> Sender {
        let written = written.min(total);
        let next = next.clamp(written, total);
        Sender {
            total,
            window: window.max(1),
            written,
            held: next,
            next_new: next,
            resend: BTreeSet::new(),
            resent_at: BTreeMap::new(),
            heard: now,
            ask: Ask::At(now + ACK_SILENCE),
            interval: ACK_SILENCE,
            asked_high: None,
            stats: SenderStats::default(),
        }
    }

    /// Frames the master has written (acknowledged).
    pub fn written(&self) -> u32 {
        self.written
    }

    /// Frames in the file.
    pub fn total(&self) -> u32 {
        self.total
    }

    /// Whether the master has written every frame.
    pub fn is_complete(&self) -> bool {
        self.written >= self.total
    }

    /// What the sender did so far.
    pub fn stats(&self) -> SenderStats {
        self.stats
    }

    /// Whether frames were sent that the master has not acknowledged.
    fn outstanding(&self) -> bool {
        self.written < self.next_new
    }

    /// The next thing to send at `now`, if any.
    pub fn poll(&mut self, now: Timestamp) -> Option<Outgoing> {
        if self.is_complete() {
            return None;
        }
        if self.ask == Ask::Due {
            self.interval = (self.interval * 2).min(ACK_SILENCE_MAX);
            self.ask = Ask::At(now + self.interval);
            self.asked_high = Some(self.next_new);
            self.stats.ack_requests += 1;
            return Some(Outgoing::AckRequest);
        }
        while let Some(seq) = self.resend.pop_first() {
            if seq < self.held {
                continue;
            }
            self.resent_at.insert(seq, now);
            self.stats.resent_frames += 1;
            return Some(Outgoing::Data(seq));
        }
        let limit = self.total.min(self.written.saturating_add(self.window));
        if self.next_new < limit {
            if !self.outstanding() {
                // Frames go out after a pause: the silence counts from now.
                self.heard = now;
                self.ask = Ask::At(now + ACK_SILENCE);
            }
            let seq = self.next_new;
            self.next_new += 1;
            self.stats.new_frames += 1;
            return Some(Outgoing::Data(seq));
        }
        None
    }

    /// Queues `first..first + count` for re-sending: only frames sent before, not held by
    /// the master, and not re-sent within the guard time.
    fn queue_resend(&mut self, now: Timestamp, first: u32, end: u32) {
        let from = first.max(self.held);
        let to = end.min(self.next_new);
        for seq in from..to {
            let recent = self
                .resent_at
                .get(&seq)
                .is_some_and(|at| now.saturating_duration_since(*at) < RESEND_GUARD);
            if !recent {
                self.resend.insert(seq);
            }
        }
    }

    fn heard_now(&mut self, now: Timestamp) {
        self.heard = now;
        self.interval = ACK_SILENCE;
        if self.ask != Ask::Due {
            self.ask = Ask::At(now + ACK_SILENCE);
        }
    }

    /// An acknowledgement arrived (`asked` when it answers an ACK-REQUEST).
    pub fn on_ack(
        &mut self,
        now: Timestamp,
        counts: Counts,
        asked: bool,
    ) -> Result<(), TransferError> {
        if counts.written > self.total || counts.end > self.total {
            return Err(TransferError::Impossible(format!(
                "the master acknowledges {} frames and holds {} of a {}-frame transfer",
                counts.written, counts.next, self.total
            )));
        }
        self.heard_now(now);
        self.written = self.written.max(counts.written);
        self.held = self.held.max(counts.next).max(self.written);
        // A resumed master may hold frames this sender has not sent yet.
        self.next_new = self.next_new.max(self.held);
        self.resend = self.resend.split_off(&self.held);
        self.resent_at = self.resent_at.split_off(&self.held);
        if asked && let Some(high) = self.asked_high.take() {
            // Frames from E on that went out before the request never arrived.
            self.queue_resend(now, counts.end, high);
        }
        Ok(())
    }

    /// Frames `first..first + count` are missing.
    pub fn on_nack(&mut self, now: Timestamp, first: u32, count: u16) {
        self.heard_now(now);
        self.queue_resend(now, first, first.saturating_add(u32::from(count)));
    }

    /// Time passed: asks for an acknowledgement after a silence; fails after a long one.
    pub fn on_timeout(&mut self, now: Timestamp) -> Result<(), TransferError> {
        if self.is_complete() || !self.outstanding() {
            return Ok(());
        }
        let silent = now.saturating_duration_since(self.heard);
        if silent >= TRANSFER_SILENCE_MAX {
            return Err(TransferError::Silent(silent));
        }
        if let Ask::At(at) = self.ask
            && now >= at
        {
            self.ask = Ask::Due;
        }
        Ok(())
    }

    /// When [`Sender::on_timeout`] must run next, if ever.
    pub fn deadline(&self) -> Option<Timestamp> {
        if self.is_complete() || !self.outstanding() {
            return None;
        }
        let give_up = self.heard + TRANSFER_SILENCE_MAX;
        match self.ask {
            Ask::At(at) => Some(at.min(give_up)),
            Ask::Due => Some(give_up),
        }
    }

    /// Whether there is something to send now.
    pub fn wants_to_send(&self) -> bool {
        !self.is_complete()
            && (self.ask == Ask::Due
                || !self.resend.is_empty()
                || self.next_new < self.total.min(self.written.saturating_add(self.window)))
    }
}

#[cfg(test)]
mod tests;
