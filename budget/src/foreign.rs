//! Other nodes' frames: what they sent lately, and how many bits of theirs may arrive
//! before a given time.
//!
//! Two parts make the reserve a planning keeps for them: the broadcasts foreseen
//! ([`Broadcasts`]), counted at the times they are expected, and every other frame (a
//! node's answers, broadcasts not foreseen, the GX's keep-alive), counted as the most
//! that ever arrived within a stretch that long over the last two seconds.

use crate::foresight::{Broadcasts, KindSet};
use std::collections::VecDeque;

/// How long other nodes' traffic is remembered for the reserve: twice the longest period
/// of a BMS-Can broadcast (1 s), so that a frame of that period is still remembered when
/// it comes again, early or late. With one period, a campaign found windows over the cap
/// whenever a once-a-second frame had just left the memory.
pub(crate) const FOREIGN_MEMORY_US: u64 = 2_000_000;

/// Most foreign frames remembered (a bound on memory and time whatever the other nodes
/// send; a 500 kbit/s BMS-Can bus with telemetry carries a few dozen a second).
const FOREIGN_HISTORY_CAP: usize = 512;

/// Inserts `item` into `frames`, kept in the order of their ends, after every frame that
/// ends no later.
pub(crate) fn insert_by_end<T>(frames: &mut VecDeque<T>, item: T, end: impl Fn(&T) -> u64) {
    let at = frames
        .iter()
        .rposition(|c| end(c) <= end(&item))
        .map_or(0, |i| i + 1);
    frames.insert(at, item);
}

/// A frame another node sent (or one this node sends unplanned).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heard {
    /// End of the frame on the bus, microseconds.
    pub(crate) end: u64,
    pub(crate) bits: u32,
    /// Its broadcast kind, a position in `FrameKind::ALL`, when it is one.
    pub(crate) kind: Option<u8>,
}

/// The kind given to this node's own frames sent whatever the budget says (the GX's
/// keep-alive): bit 63 of a [`KindSet`], beyond every broadcast's.
pub(crate) const OWN_UNPLANNED: u8 = 63;

/// This node's next frames sent whatever the budget says: when they are due and how many
/// bits they take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OwnUnplanned {
    pub(crate) due: u64,
    pub(crate) bits: u64,
}

impl Heard {
    /// Whether it belongs to `set`.
    fn is_in(&self, set: KindSet) -> bool {
        self.kind.is_some_and(|k| set & (1 << k) != 0)
    }
}

/// Other nodes' frames over the last [`FOREIGN_MEMORY_US`], to tell how many foreign bits
/// may arrive within a given time (the most seen in any stretch that long).
#[derive(Debug, Clone, Default)]
pub(crate) struct ForeignHistory {
    pub(crate) frames: VecDeque<Heard>,
}

impl ForeignHistory {
    pub(crate) fn record(&mut self, heard: Heard) {
        if self.frames.len() == FOREIGN_HISTORY_CAP {
            self.frames.pop_front();
        }
        insert_by_end(&mut self.frames, heard, |c| c.end);
    }

    pub(crate) fn forget_before(&mut self, now: u64) {
        let from = now.saturating_sub(FOREIGN_MEMORY_US);
        while self.frames.front().is_some_and(|c| c.end <= from) {
            self.frames.pop_front();
        }
    }

    /// The most foreign bits that ended within any stretch of `span_us`, leaving out the
    /// broadcasts in `foreseen`.
    pub(crate) fn most_within(&self, span_us: u64, foreseen: KindSet) -> u64 {
        let counted = || self.frames.iter().filter(|c| !c.is_in(foreseen));
        // The frames that left the stretch ending at the current one, in order (an
        // iterator, so that no counter can stop moving).
        let mut leaving = counted().peekable();
        let mut most = 0;
        let mut sum = 0u64;
        for c in counted() {
            sum += u64::from(c.bits);
            while let Some(old) =
                leaving.next_if(|old| old.end + span_us <= c.end && !std::ptr::eq(*old, c))
            {
                sum -= u64::from(old.bits);
            }
            most = most.max(sum);
        }
        most
    }
}

/// The most other nodes' bits within a stretch, for one planning: stretches rounded up to
/// the next millisecond up to 64 ms, to the next power of two beyond (the most within a
/// longer stretch is never less), each worked out once, whatever moment is asked about.
pub(crate) struct Stretches<'a> {
    history: &'a ForeignHistory,
    /// Broadcasts foreseen, and this node's unplanned frames when their time is known:
    /// counted where they are expected, left out of the most within a stretch.
    leave_out: KindSet,
    pub(crate) known: [Option<u64>; 72],
    /// The most in any window, once worked out.
    whole_window: Option<u64>,
}

impl<'a> Stretches<'a> {
    /// The stretches of `history`, leaving out the frames in `leave_out`.
    pub(crate) fn new(history: &'a ForeignHistory, leave_out: KindSet) -> Stretches<'a> {
        Stretches {
            history,
            leave_out,
            known: [None; 72],
            whole_window: None,
        }
    }

    fn most_within(&mut self, span_us: u64) -> u64 {
        let (bucket, span) = if span_us <= 64_000 {
            let ms = span_us.div_ceil(1_000).max(1);
            (ms as usize - 1, ms * 1_000)
        } else {
            let power = (64 - (span_us - 1).leading_zeros()).clamp(17, 24);
            (64 + (power as usize - 17), 1u64 << power)
        };
        let (history, leave_out) = (self.history, self.leave_out);
        *self.known[bucket].get_or_insert_with(|| history.most_within(span, leave_out))
    }
}

/// The other nodes' bits that may arrive within a stretch after `now`, for one moment of
/// a planning: the broadcasts foreseen and this node's unplanned frames where they are
/// expected, every other frame as the most seen within a stretch that long.
pub(crate) struct ForeignMemo<'a, 's> {
    stretches: &'s mut Stretches<'a>,
    broadcasts: &'a Broadcasts,
    own: Option<OwnUnplanned>,
    now: u64,
}

/// What a planning leaves out of the most within a stretch at `now`: the broadcasts
/// foreseen then, and this node's unplanned frames when `own` tells their time.
pub(crate) fn left_out(broadcasts: &Broadcasts, own: Option<OwnUnplanned>, now: u64) -> KindSet {
    let own_set = if own.is_some() { 1 << OWN_UNPLANNED } else { 0 };
    broadcasts.foreseen(now) | own_set
}

impl<'a, 's> ForeignMemo<'a, 's> {
    pub(crate) fn new(
        stretches: &'s mut Stretches<'a>,
        broadcasts: &'a Broadcasts,
        own: Option<OwnUnplanned>,
        now: u64,
    ) -> ForeignMemo<'a, 's> {
        ForeignMemo {
            stretches,
            broadcasts,
            own,
            now,
        }
    }

    /// The most other nodes' bits that may end within `span_us` after `now`: the
    /// broadcasts foreseen as expected by then, this node's unplanned frames when due by
    /// then, and as many other bits as ever ended within a stretch that long.
    pub(crate) fn most_within(&mut self, span_us: u64) -> u64 {
        let by = self.now + span_us;
        let others = self.stretches.most_within(span_us);
        let own = self
            .own
            .filter(|own| own.due <= by)
            .map_or(0, |own| own.bits);
        others + self.broadcasts.arriving(self.stretches.leave_out, by) + own
    }

    /// The most other nodes' bits ever seen within a stretch of `window_us` (the
    /// budget's window: one planning asks about one), broadcasts included: what any later
    /// window may hold of theirs.
    pub(crate) fn most_in_any_window(&mut self, window_us: u64) -> u64 {
        let history = self.stretches.history;
        *self
            .stretches
            .whole_window
            .get_or_insert_with(|| history.most_within(window_us, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_plugin_api::{CanFrame, CanId};

    fn heard(end: u64, bits: u32) -> Heard {
        Heard {
            end,
            bits,
            kind: None,
        }
    }

    /// Other nodes' frames are remembered in the order they ended, for two seconds.
    #[test]
    fn the_foreign_history_keeps_two_seconds_in_order() {
        let mut history = ForeignHistory::default();
        for (end, bits) in [(100, 1), (300, 2), (200, 3), (300, 4), (50, 5)] {
            history.record(heard(end, bits));
        }
        let held: Vec<(u64, u32)> = history.frames.iter().map(|c| (c.end, c.bits)).collect();
        assert_eq!(held, [(50, 5), (100, 1), (200, 3), (300, 2), (300, 4)]);
        history.forget_before(2_000_100);
        let held: Vec<u64> = history.frames.iter().map(|c| c.end).collect();
        assert_eq!(
            held,
            [200, 300, 300],
            "a frame that ended 2 s ago is forgotten"
        );
        history.forget_before(2_000_299);
        assert_eq!(history.frames.len(), 2);
    }

    /// The history holds at most its cap, the oldest frames going first.
    #[test]
    fn the_foreign_history_is_bounded() {
        let mut history = ForeignHistory::default();
        for end in 0..(FOREIGN_HISTORY_CAP as u64 + 3) {
            history.record(heard(end, 1));
        }
        assert_eq!(history.frames.len(), FOREIGN_HISTORY_CAP);
        assert_eq!(history.frames.front().map(|c| c.end), Some(3));
    }

    /// The most other nodes' bits within a stretch counts every frame that ended less
    /// than the stretch before the last one it holds, and no other.
    #[test]
    fn the_most_foreign_bits_within_a_stretch_are_counted_exactly() {
        let mut history = ForeignHistory::default();
        for (end, bits) in [(0, 100), (500, 10), (1_000, 1), (5_000, 1_000)] {
            history.record(heard(end, bits));
        }
        assert_eq!(history.most_within(1, 0), 1_000);
        assert_eq!(history.most_within(1_000, 0), 1_000);
        assert_eq!(history.most_within(1_001, 0), 1_000);
        assert_eq!(history.most_within(4_001, 0), 1_001);
        assert_eq!(history.most_within(4_500, 0), 1_001);
        assert_eq!(history.most_within(4_501, 0), 1_011);
        assert_eq!(history.most_within(5_000, 0), 1_011);
        assert_eq!(history.most_within(5_001, 0), 1_111);
        let mut burst = ForeignHistory::default();
        for end in [0, 500, 1_000] {
            burst.record(heard(end, 100));
        }
        assert_eq!(burst.most_within(1, 0), 100);
        assert_eq!(burst.most_within(500, 0), 100);
        assert_eq!(burst.most_within(501, 0), 200);
        assert_eq!(burst.most_within(1_000, 0), 200);
        assert_eq!(burst.most_within(1_001, 0), 300);
        assert_eq!(ForeignHistory::default().most_within(1_000, 0), 0);
        // A stretch of no length still holds the frame that ends it.
        assert_eq!(history.most_within(0, 0), 1_000);
    }

    /// Broadcasts foreseen are left out of the most within a stretch; every other frame,
    /// and a broadcast not foreseen, stays in.
    #[test]
    fn foreseen_broadcasts_are_left_out_of_the_most_within_a_stretch() {
        let mut history = ForeignHistory::default();
        for (end, bits, kind) in [
            (0, 100, Some(2)),
            (100, 10, None),
            (200, 1_000, Some(0)),
            (300, 1, Some(2)),
        ] {
            history.record(Heard { end, bits, kind });
        }
        assert_eq!(history.most_within(1_000, 0), 1_111);
        assert_eq!(history.most_within(1_000, 1 << 2), 1_010);
        assert_eq!(history.most_within(1_000, 1), 111);
        assert_eq!(
            history.most_within(150, 1),
            110,
            "the frames ending at 0 and 100"
        );
        assert_eq!(history.most_within(1_000, 0b101), 10);
    }

    /// This node's unplanned frames count at the time they are due when it is known,
    /// and as any other frame when it is not.
    #[test]
    fn own_unplanned_frames_count_when_due() {
        let mut history = ForeignHistory::default();
        history.record(Heard {
            end: 0,
            bits: 250,
            kind: Some(OWN_UNPLANNED),
        });
        history.record(heard(500, 100));
        let broadcasts = Broadcasts::default();
        let own = OwnUnplanned {
            due: 50_000,
            bits: 250,
        };
        let mut known_stretches =
            Stretches::new(&history, left_out(&broadcasts, Some(own), 10_000));
        let mut known = ForeignMemo::new(&mut known_stretches, &broadcasts, Some(own), 10_000);
        assert_eq!(known.most_within(39_999), 100);
        assert_eq!(known.most_within(40_000), 350);
        let mut unknown_stretches = Stretches::new(&history, left_out(&broadcasts, None, 10_000));
        let mut unknown = ForeignMemo::new(&mut unknown_stretches, &broadcasts, None, 10_000);
        assert_eq!(unknown.most_within(1), 350);
        assert_eq!(unknown.most_within(50_000), 350);
    }

    /// A planning rounds each stretch up, to the next millisecond up to 64 ms and to the
    /// next power of two microseconds beyond, and counts the most within that.
    #[test]
    fn a_planning_rounds_stretches_up() {
        // A 100-bit frame ending every millisecond for 300 ms: a stretch of n ms holds n.
        let mut history = ForeignHistory::default();
        for k in 0..300 {
            history.record(heard(1_000 * k, 100));
        }
        let broadcasts = Broadcasts::default();
        let now = 7_000;
        let mut memo_stretches = Stretches::new(&history, left_out(&broadcasts, None, now));
        let mut memo = ForeignMemo::new(&mut memo_stretches, &broadcasts, None, now);
        for (span, frames) in [
            (0, 1),
            (1, 1),
            (1_000, 1),
            (1_001, 2),
            (1_500, 2),
            (63_999, 64),
            (64_000, 64),
            (64_001, 132),
            (131_072, 132),
            (131_073, 263),
            (1_000_000, 300),
        ] {
            assert_eq!(memo.most_within(span), 100 * frames, "{span} us");
        }
        // Each is worked out once: the answer for a rounded stretch stays.
        assert_eq!(memo_stretches.known[1], Some(200));
        assert_eq!(memo_stretches.known[63], Some(6_400));
        assert_eq!(memo_stretches.known[64], Some(13_200));
        assert_eq!(memo_stretches.known[65], Some(26_300));
    }

    /// A broadcast foreseen counts where it is expected, and not in the most within a
    /// stretch; the most in any window counts it as any frame.
    #[test]
    fn a_planning_counts_a_foreseen_broadcast_where_it_is_expected() {
        let frame = CanFrame::new(CanId::standard(0x356).unwrap(), &[0; 8]).unwrap();
        let kind = Broadcasts::default().classify(&frame);
        let bits = bmsfw_protocols::bit_timing::frame_bits(&frame);
        let mut broadcasts = Broadcasts::default();
        let mut history = ForeignHistory::default();
        for end in [0, 200_000, 400_000] {
            broadcasts.record(kind.unwrap(), end, &frame);
            history.record(Heard { end, bits, kind });
        }
        // An answer of 50 bits, once.
        history.record(heard(450_000, 50));
        let worst = u64::from(bmsfw_protocols::bit_timing::worst_case_frame_bits(
            bmsfw_protocols::bit_timing::IdFormat::Standard,
            8,
        ));
        let mut memo_stretches = Stretches::new(&history, left_out(&broadcasts, None, 500_000));
        let mut memo = ForeignMemo::new(&mut memo_stretches, &broadcasts, None, 500_000);
        // Expected at 600 000, from 598 000.
        assert_eq!(memo.most_within(97_999), 50);
        assert_eq!(memo.most_within(98_000), 50 + worst);
        assert_eq!(memo.most_in_any_window(100_000), u64::from(bits) + 50);
        let mut longer_stretches = Stretches::new(&history, left_out(&broadcasts, None, 500_000));
        let mut longer = ForeignMemo::new(&mut longer_stretches, &broadcasts, None, 500_000);
        assert_eq!(longer.most_in_any_window(250_000), 2 * u64::from(bits));
        // Once it is late past its tolerance it counts as any frame again.
        let mut late_stretches = Stretches::new(&history, left_out(&broadcasts, None, 602_001));
        let mut late = ForeignMemo::new(&mut late_stretches, &broadcasts, None, 602_001);
        assert_eq!(late.most_within(1_999), u64::from(bits));
    }
}
