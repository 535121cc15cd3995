//! Foresight of other nodes' broadcasts: a battery sends each BMS-Can frame (0x351 to
//! 0x382) at its own fixed period, so the budget can tell when the next one comes instead
//! of keeping room for it in every window.
//!
//! A broadcast is foreseen once it has arrived three times at one period (two intervals
//! that agree within the tolerance), from [`MIN_PERIOD_US`] to [`MAX_PERIOD_US`]. Its
//! next arrivals are expected at its last arrival plus whole periods, each within the
//! tolerance either side. It stops being foreseen the moment it is later than its
//! tolerance, or arrives out of step: from then on it counts among the frames that may
//! come at any time, as every frame did before it was foreseen, until it keeps its period
//! again. Only BMS-Can broadcasts are foreseen, never a node's answers (they come when the
//! GX's frames ask for them) nor the GX's keep-alive.

use bmsfw_plugin_api::CanFrame;
use bmsfw_protocols::bit_timing::{self, IdFormat};
use bmsfw_protocols::bms_can::FrameKind;

/// Shortest period foreseen: faster frames are left to the reserve for any frame.
pub(crate) const MIN_PERIOD_US: u64 = 20_000;

/// Longest period foreseen: the longest BMS-Can period (1 s) with room for a late frame.
pub(crate) const MAX_PERIOD_US: u64 = 1_500_000;

/// The least tolerance either side of an expected arrival: a frame's end moves with the
/// frames ahead of it on the bus (a transfer frame in progress, the battery's own queue)
/// and with the sender's timer.
pub(crate) const MIN_TOLERANCE_US: u64 = 2_000;

/// How far either side of its expected time a frame of `period_us` may arrive: 1/64 of
/// its period, at least [`MIN_TOLERANCE_US`].
pub(crate) const fn tolerance(period_us: u64) -> u64 {
    let share = period_us / 64;
    if share > MIN_TOLERANCE_US {
        share
    } else {
        MIN_TOLERANCE_US
    }
}

/// What the budget knows of one broadcast.
#[derive(Debug, Clone, Copy, Default)]
struct Broadcast {
    /// End of its last arrival, microseconds.
    last: u64,
    /// The interval between its last two arrivals (0 until it arrived twice).
    period: u64,
    /// Arrivals in a row at that period: 0 never heard, 1 heard once.
    run: u8,
    /// The longest it may be: worst-case stuffing of the longest payload it carried.
    bits: u32,
}

/// Every BMS-Can broadcast other nodes sent, and which of them are foreseen.
#[derive(Debug, Clone)]
pub(crate) struct Broadcasts {
    kinds: [Broadcast; FrameKind::COUNT],
}

impl Default for Broadcasts {
    fn default() -> Broadcasts {
        Broadcasts {
            kinds: [Broadcast::default(); FrameKind::COUNT],
        }
    }
}

/// A set of broadcasts, one bit per [`FrameKind::ALL`] position.
pub(crate) type KindSet = u32;

impl Broadcasts {
    /// The position of `frame`'s kind among [`FrameKind::ALL`], when it is a BMS-Can
    /// broadcast.
    pub(crate) fn kind_of(frame: &CanFrame) -> Option<u8> {
        let kind = FrameKind::from_id(frame.id())?;
        let at = FrameKind::ALL.iter().position(|k| *k == kind)?;
        u8::try_from(at).ok()
    }

    /// Records a broadcast of kind `kind` (a position from [`Broadcasts::kind_of`]) that
    /// ended at `end`.
    pub(crate) fn record(&mut self, kind: u8, end: u64, frame: &CanFrame) {
        let Some(b) = self.kinds.get_mut(usize::from(kind)) else {
            return;
        };
        let len = u8::try_from(frame.len()).unwrap_or(u8::MAX);
        b.bits = b
            .bits
            .max(bit_timing::worst_case_frame_bits(IdFormat::Standard, len));
        let interval = end.saturating_sub(b.last);
        if b.run == 0 || !(MIN_PERIOD_US..=MAX_PERIOD_US).contains(&interval) {
            b.run = 1;
            b.period = 0;
        } else if b.run >= 2 && interval.abs_diff(b.period) <= tolerance(b.period) {
            b.run = b.run.saturating_add(1);
            b.period = interval;
        } else {
            b.run = 2;
            b.period = interval;
        }
        b.last = end;
    }

    /// The broadcasts foreseen at `now`: heard three times at one period, and not later
    /// than their tolerance.
    pub(crate) fn foreseen(&self, now: u64) -> KindSet {
        let mut set = 0;
        for (i, b) in self.kinds.iter().enumerate() {
            if b.run >= 3 && now <= b.last + b.period + tolerance(b.period) {
                set |= 1 << i;
            }
        }
        set
    }

    /// The most bits the broadcasts in `set` (foreseen at `now`) may bring that end by
    /// `by`: every expected arrival whose tolerance reaches back to `by` or earlier.
    pub(crate) fn arriving(&self, set: KindSet, by: u64) -> u64 {
        let mut bits = 0;
        for (i, b) in self.kinds.iter().enumerate() {
            if set & (1 << i) == 0 {
                continue;
            }
            let first = b.last + b.period;
            let reach = by + tolerance(b.period);
            if reach >= first {
                bits += ((reach - first) / b.period + 1) * u64::from(b.bits);
            }
        }
        bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_plugin_api::CanId;

    fn broadcast(id: u16, len: usize) -> CanFrame {
        CanFrame::new(CanId::standard(id).unwrap(), &[0u8; 8][..len]).unwrap()
    }

    fn kind(frame: &CanFrame) -> u8 {
        Broadcasts::kind_of(frame).unwrap()
    }

    /// Only BMS-Can broadcasts have a kind: not an answer, not the GX's keep-alive.
    #[test]
    fn only_broadcasts_are_kinds() {
        assert_eq!(Broadcasts::kind_of(&broadcast(0x351, 8)), Some(0));
        assert_eq!(Broadcasts::kind_of(&broadcast(0x382, 8)), Some(20));
        for id in [0x305, 0x307, 0x7E8, 0x581, 0x701, 0x350, 0x383] {
            assert_eq!(Broadcasts::kind_of(&broadcast(id, 8)), None, "{id:#x}");
        }
        let extended = CanFrame::new(CanId::extended(0x351).unwrap(), &[0; 8]).unwrap();
        assert_eq!(Broadcasts::kind_of(&extended), None);
    }

    #[test]
    fn the_tolerance_is_a_64th_of_the_period_at_least_2_ms() {
        assert_eq!(tolerance(20_000), 2_000);
        assert_eq!(tolerance(128_000), 2_000);
        assert_eq!(tolerance(128_064), 2_001);
        assert_eq!(tolerance(1_000_000), 15_625);
    }

    /// A broadcast is foreseen from its third arrival at one period, until it is later
    /// than its tolerance.
    #[test]
    fn a_broadcast_is_foreseen_after_three_arrivals_at_one_period() {
        let f = broadcast(0x356, 8);
        let k = kind(&f);
        let mut b = Broadcasts::default();
        b.record(k, 1_000_000, &f);
        assert_eq!(b.foreseen(1_000_001), 0, "heard once");
        b.record(k, 1_200_000, &f);
        assert_eq!(b.foreseen(1_200_001), 0, "heard twice");
        // Within the tolerance (3 125 us for 200 ms) of the period.
        b.record(k, 1_403_125, &f);
        let bit = 1 << k;
        assert_eq!(b.foreseen(1_403_126), bit);
        // Expected at 1 606 250 (the last interval), late by at most 3 173 us.
        assert_eq!(b.foreseen(1_606_250 + 3_173), bit);
        assert_eq!(b.foreseen(1_606_250 + 3_174), 0, "later than its tolerance");
    }

    /// An arrival out of step starts the count again; a period out of range is never
    /// foreseen.
    #[test]
    fn an_arrival_out_of_step_starts_again() {
        let f = broadcast(0x351, 8);
        let k = kind(&f);
        let mut b = Broadcasts::default();
        for end in [0, 500_000, 1_000_000] {
            b.record(k, end, &f);
        }
        assert_eq!(b.foreseen(1_000_000), 1 << k);
        // 7 813 us early: past the tolerance (7 812 us).
        b.record(k, 1_492_187, &f);
        assert_eq!(b.foreseen(1_492_187), 0);
        b.record(k, 1_992_187, &f);
        assert_eq!(b.foreseen(1_992_187), 0, "one interval at the new period");
        b.record(k, 2_492_187, &f);
        assert_eq!(b.foreseen(2_492_187), 1 << k, "two intervals agree again");
        // Too fast and too slow.
        let mut fast = Broadcasts::default();
        let mut slow = Broadcasts::default();
        for n in 0..6 {
            fast.record(k, n * (MIN_PERIOD_US - 1), &f);
            slow.record(k, n * (MAX_PERIOD_US + 1), &f);
        }
        assert_eq!(fast.foreseen(5 * (MIN_PERIOD_US - 1)), 0);
        assert_eq!(slow.foreseen(5 * (MAX_PERIOD_US + 1)), 0);
        let mut edge = Broadcasts::default();
        for n in 0..3 {
            edge.record(k, n * MIN_PERIOD_US, &f);
        }
        assert_eq!(edge.foreseen(2 * MIN_PERIOD_US), 1 << k);
    }

    /// A foreseen broadcast counts, at its longest, once for every expected arrival whose
    /// tolerance reaches back to the time asked about.
    #[test]
    fn arrivals_are_counted_from_their_earliest_possible_end() {
        let f = broadcast(0x356, 8);
        let short = broadcast(0x356, 2);
        let k = kind(&f);
        let mut b = Broadcasts::default();
        b.record(k, 0, &short);
        b.record(k, 200_000, &f);
        b.record(k, 400_000, &short);
        let set = b.foreseen(400_000);
        let bits = u64::from(bit_timing::worst_case_frame_bits(IdFormat::Standard, 8));
        // Next expected at 600 000, from 596 875 (a tolerance of 3 125 us).
        assert_eq!(b.arriving(set, 596_874), 0);
        assert_eq!(b.arriving(set, 596_875), bits);
        assert_eq!(b.arriving(set, 796_874), bits);
        assert_eq!(b.arriving(set, 796_875), 2 * bits);
        assert_eq!(b.arriving(0, 900_000), 0, "nothing outside the set");
    }
}
