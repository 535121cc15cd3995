//! The master's side of the pipelined transfer (`PROTOCOL.md` section 5): frames held in
//! RAM, pages written to the staging area in order, acknowledgements and gap reports.
//!
//! The staging area ([`Staging`]) is flash: its bytes, the token, the length and the
//! count of written frames survive a restart of the master and a power cut. What the
//! [`Receiver`] holds is RAM.

use crate::protocol::{ACK_EVERY, MAX_REPORTED_GAPS, PAGE_FRAMES, WINDOW};
use bmsfw_plugin_api::Timestamp;
use std::collections::BTreeMap;
use std::time::Duration;

/// Payload bytes of a data frame.
const PAYLOAD: u64 = 8;

/// The staging area with the transfer it holds (flash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Staging {
    /// The transfer's token.
    pub token: u32,
    /// The bundle's bytes (erased bytes are 0xFF).
    pub bytes: Vec<u8>,
    /// Frames written: frames `0..written` are in `bytes`.
    pub written: u32,
}

impl Staging {
    /// An erased staging area for a bundle of `len` bytes.
    pub fn erased(token: u32, len: u64) -> Staging {
        Staging {
            token,
            bytes: vec![0xFF; usize::try_from(len).unwrap_or(0)],
            written: 0,
        }
    }

    /// Frames of the bundle.
    pub fn frames(&self) -> u32 {
        u32::try_from((self.bytes.len() as u64).div_ceil(PAYLOAD)).unwrap_or(u32::MAX)
    }

    /// Whether every frame is written.
    pub fn is_complete(&self) -> bool {
        self.written >= self.frames()
    }

    /// The length frame `seq` must have.
    fn frame_len(&self, seq: u32) -> usize {
        let start = u64::from(seq) * PAYLOAD;
        (self.bytes.len() as u64).saturating_sub(start).min(PAYLOAD) as usize
    }
}

/// The master's counts (`PROTOCOL.md` section 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    /// Frames written.
    pub written: u32,
    /// The first frame missing.
    pub next: u32,
    /// One past the highest frame held.
    pub end: u32,
}

/// What the receiver wants to tell the GX.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// An acknowledgement (`asked` when it answers a request).
    Ack {
        /// Whether it answers an ACK-REQUEST.
        asked: bool,
        /// The counts.
        counts: Counts,
    },
    /// Frames `first..first + count` are missing.
    Nack {
        /// The first.
        first: u32,
        /// How many.
        count: u16,
    },
}

/// What became of a data frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// Held.
    New,
    /// Already written or held.
    Duplicate,
    /// Beyond the window, beyond the file, or of the wrong length: dropped.
    Dropped,
}

/// Counters of the receiver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Frames held the first time.
    pub new: u64,
    /// Frames received again.
    pub duplicates: u64,
    /// Frames dropped.
    pub dropped: u64,
    /// NACKs sent.
    pub nacks: u64,
}

/// The RAM side of a transfer.
#[derive(Clone, Debug, Default)]
pub struct Receiver {
    held: BTreeMap<u32, [u8; 8]>,
    highest_end: u32,
    /// A page write in progress ends at this time.
    writing: Option<Timestamp>,
    stats: ReceiverStats,
}

impl Receiver {
    /// A receiver with nothing in RAM.
    pub fn new() -> Receiver {
        Receiver::default()
    }

    /// What it counted.
    pub fn stats(&self) -> ReceiverStats {
        self.stats
    }

    /// The counts for `staging`.
    pub fn counts(&self, staging: &Staging) -> Counts {
        let mut next = staging.written;
        while self.held.contains_key(&next) {
            next += 1;
        }
        let next = next.min(staging.frames());
        Counts {
            written: staging.written,
            next,
            end: self.highest_end.max(next),
        }
    }

    /// The gaps between `next` and `end`, at most [`MAX_REPORTED_GAPS`].
    fn gaps(&self, staging: &Staging) -> Vec<Notice> {
        let c = self.counts(staging);
        let mut out = Vec::new();
        let mut seq = c.next;
        while seq < c.end && out.len() < MAX_REPORTED_GAPS {
            if self.held.contains_key(&seq) {
                seq += 1;
                continue;
            }
            let first = seq;
            while seq < c.end && !self.held.contains_key(&seq) {
                seq += 1;
            }
            out.push(Notice::Nack {
                first,
                count: u16::try_from(seq - first).unwrap_or(u16::MAX),
            });
        }
        out
    }

    /// Data frame `seq` with `data` arrived.
    pub fn frame(
        &mut self,
        staging: &Staging,
        seq: u32,
        data: &[u8],
        out: &mut Vec<Notice>,
    ) -> Received {
        let frames = staging.frames();
        if seq >= frames
            || seq >= staging.written.saturating_add(u32::from(WINDOW))
            || data.len() != staging.frame_len(seq)
        {
            self.stats.dropped += 1;
            return Received::Dropped;
        }
        if seq < staging.written || self.held.contains_key(&seq) {
            self.stats.duplicates += 1;
            return Received::Duplicate;
        }
        let end = self.counts(staging).end;
        if seq > end {
            self.stats.nacks += 1;
            out.push(Notice::Nack {
                first: end,
                count: u16::try_from(seq - end).unwrap_or(u16::MAX),
            });
        }
        let mut bytes = [0u8; 8];
        bytes[..data.len()].copy_from_slice(data);
        self.held.insert(seq, bytes);
        self.highest_end = self.highest_end.max(seq + 1);
        self.stats.new += 1;
        Received::New
    }

    /// An ACK-REQUEST arrived: the counts, then the gaps.
    pub fn asked(&mut self, staging: &Staging, out: &mut Vec<Notice>) {
        out.push(Notice::Ack {
            asked: true,
            counts: self.counts(staging),
        });
        let gaps = self.gaps(staging);
        self.stats.nacks += gaps.len() as u64;
        out.extend(gaps);
    }

    /// Whether the next page is complete in RAM.
    fn page_ready(&self, staging: &Staging) -> bool {
        let end = (staging.written + PAGE_FRAMES).min(staging.frames());
        staging.written < end && (staging.written..end).all(|s| self.held.contains_key(&s))
    }

    /// Runs the page writer up to `now`: finishes a write that is due, starts the next one;
    /// acknowledges every [`ACK_EVERY`] frames and at the end.
    pub fn advance(
        &mut self,
        staging: &mut Staging,
        now: Timestamp,
        page_write: Duration,
        out: &mut Vec<Notice>,
    ) {
        loop {
            match self.writing {
                Some(done) if now >= done => {
                    let before = staging.written;
                    let end = (before + PAGE_FRAMES).min(staging.frames());
                    for seq in before..end {
                        if let Some(frame) = self.held.remove(&seq) {
                            let at = (u64::from(seq) * PAYLOAD) as usize;
                            let len = staging.frame_len(seq);
                            staging.bytes[at..at + len].copy_from_slice(&frame[..len]);
                        }
                    }
                    staging.written = end;
                    self.writing = None;
                    if before / ACK_EVERY != end / ACK_EVERY || staging.is_complete() {
                        out.push(Notice::Ack {
                            asked: false,
                            counts: self.counts(staging),
                        });
                    }
                    // The next page may start where this one ended.
                    if self.page_ready(staging) {
                        self.writing = Some(done + page_write);
                    }
                }
                Some(_) => return,
                None if self.page_ready(staging) => self.writing = Some(now + page_write),
                None => return,
            }
        }
    }

    /// When the page write in progress ends.
    pub fn deadline(&self) -> Option<Timestamp> {
        self.writing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(us: u64) -> Timestamp {
        Timestamp::from_micros(us)
    }

    fn feed(
        r: &mut Receiver,
        s: &mut Staging,
        seqs: impl IntoIterator<Item = u32>,
        now: Timestamp,
    ) -> Vec<Notice> {
        let mut out = Vec::new();
        for seq in seqs {
            let data = [seq as u8; 8];
            let len = s.frame_len(seq).max(1);
            r.frame(s, seq, &data[..len.min(8)], &mut out);
        }
        r.advance(s, now, Duration::from_millis(1), &mut out);
        out
    }

    #[test]
    fn pages_are_written_in_order_and_acknowledged_every_kib() {
        let mut s = Staging::erased(7, 2000); // 250 frames
        let mut r = Receiver::new();
        assert!(feed(&mut r, &mut s, 0..200, t(0)).is_empty());
        // One page a millisecond.
        let mut out = Vec::new();
        r.advance(&mut s, t(3_000), Duration::from_millis(1), &mut out);
        assert_eq!(s.written, 96);
        r.advance(&mut s, t(4_000), Duration::from_millis(1), &mut out);
        assert_eq!(s.written, 128);
        assert_eq!(
            out,
            vec![Notice::Ack {
                asked: false,
                counts: Counts {
                    written: 128,
                    next: 200,
                    end: 200
                }
            }]
        );
        // The last page is short; the end of the file is acknowledged.
        let out = feed(&mut r, &mut s, 200..250, t(10_000));
        assert!(s.is_complete());
        assert_eq!(
            out,
            vec![Notice::Ack {
                asked: false,
                counts: Counts {
                    written: 250,
                    next: 250,
                    end: 250
                }
            }]
        );
        assert_eq!(&s.bytes[8 * 249..8 * 250], &[249u8; 8]);
        assert_eq!(r.stats().new, 250);
    }

    #[test]
    fn a_gap_is_reported_once_and_asked_acknowledgements_list_every_gap() {
        let mut s = Staging::erased(7, 8000);
        let mut r = Receiver::new();
        let out = feed(&mut r, &mut s, (0..10).chain(12..20), t(0));
        assert_eq!(
            out,
            vec![Notice::Nack {
                first: 10,
                count: 2
            }]
        );
        // Frames after the gap open no new gap.
        assert!(feed(&mut r, &mut s, 20..25, t(0)).is_empty());
        let out = feed(&mut r, &mut s, [30], t(0));
        assert_eq!(
            out,
            vec![Notice::Nack {
                first: 25,
                count: 5
            }]
        );
        let mut out = Vec::new();
        r.asked(&s, &mut out);
        assert_eq!(
            out,
            vec![
                Notice::Ack {
                    asked: true,
                    counts: Counts {
                        written: 0,
                        next: 10,
                        end: 31
                    }
                },
                Notice::Nack {
                    first: 10,
                    count: 2
                },
                Notice::Nack {
                    first: 25,
                    count: 5
                },
            ]
        );
        // Repeats and frames beyond the window or of the wrong length.
        let mut out = Vec::new();
        assert_eq!(r.frame(&s, 3, &[0; 8], &mut out), Received::Duplicate);
        assert_eq!(r.frame(&s, 1024, &[0; 8], &mut out), Received::Dropped);
        assert_eq!(r.frame(&s, 40, &[0; 7], &mut out), Received::Dropped);
        assert_eq!(
            r.frame(&s, 1000, &[0; 8], &mut out),
            Received::Dropped,
            "beyond the file"
        );
        assert_eq!(r.stats().duplicates, 1);
        assert_eq!(r.stats().dropped, 3);
    }
}
