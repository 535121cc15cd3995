//! Foresight of other nodes' broadcasts: a battery sends each BMS-Can frame (0x351 to
//! 0x382) at its own fixed period, and a CANopen node its heartbeat, so the budget can
//! tell when the next one comes instead of keeping room for it in every window.
//!
//! A broadcast is foreseen once it has arrived three times at one period (two intervals
//! that agree within 1/64 of the period, at least 2 ms), from [`MIN_PERIOD_US`] to
//! [`MAX_PERIOD_US`]. Its next arrivals are expected at its last arrival plus whole
//! periods, each within its tolerance either side: twice the largest deviation from its
//! period it has shown, at least 2 ms, at most 1/64 of the period. It stops being
//! foreseen the moment it is later than its tolerance, or arrives out of step: from then
//! on it counts among the frames that may come at any time, as every frame did before it
//! was foreseen, until it keeps its period
//! again. Only BMS-Can broadcasts and heartbeats (one byte, a CiA 301 state, on 0x700 +
//! node-id, of the first [`HEARTBEAT_SLOTS`] nodes heard) are foreseen, never a node's
//! answers: they come when the GX's frames ask for them.

use bmsfw_plugin_api::CanFrame;
use bmsfw_protocols::bit_timing::{self, IdFormat};
use bmsfw_protocols::bms_can::FrameKind;
use bmsfw_protocols::canopen::heartbeat::{self, NmtState};

/// How many nodes' heartbeats are foreseen: the first heard keep their place.
pub(crate) const HEARTBEAT_SLOTS: usize = 16;

/// Broadcasts tracked: every BMS-Can kind, then the heartbeats.
const TRACKED: usize = 37;
const _: () = assert!(TRACKED == FrameKind::COUNT + HEARTBEAT_SLOTS);

/// Shortest period foreseen: faster frames are left to the reserve for any frame.
pub(crate) const MIN_PERIOD_US: u64 = 20_000;

/// Longest period foreseen: the longest BMS-Can period (1 s) with room for a late frame.
pub(crate) const MAX_PERIOD_US: u64 = 1_500_000;

/// The least tolerance either side of an expected arrival: a frame's end moves with the
/// frames ahead of it on the bus (a transfer frame in progress, the battery's own queue)
/// and with the sender's timer.
pub(crate) const MIN_TOLERANCE_US: u64 = 2_000;

/// The widest a frame of `period_us` may stray from its period and stay in step: 1/64 of
/// its period, at least [`MIN_TOLERANCE_US`].
pub(crate) fn widest(period_us: u64) -> u64 {
    (period_us / 64).max(MIN_TOLERANCE_US)
}

impl Broadcast {
    /// How far either side of its expected time it may arrive: twice its largest
    /// deviation, at least [`MIN_TOLERANCE_US`], at most [`widest`] for its period.
    fn tolerance(&self) -> u64 {
        self.jitter
            .saturating_mul(2)
            .clamp(MIN_TOLERANCE_US, widest(self.period))
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
    /// The largest deviation of an interval from the one before, in this run.
    jitter: u64,
    /// The longest it may be: worst-case stuffing of the longest payload it carried.
    bits: u32,
}

/// Every BMS-Can broadcast other nodes sent, and which of them are foreseen.
#[derive(Debug, Clone)]
pub(crate) struct Broadcasts {
    kinds: [Broadcast; TRACKED],
    /// The node-id whose heartbeat each slot holds (0: free).
    heartbeat_nodes: [u8; HEARTBEAT_SLOTS],
}

impl Default for Broadcasts {
    fn default() -> Broadcasts {
        Broadcasts {
            kinds: [Broadcast::default(); TRACKED],
            heartbeat_nodes: [0; HEARTBEAT_SLOTS],
        }
    }
}

/// A set of broadcasts, one bit per kind (position): the BMS-Can kinds in
/// [`FrameKind::ALL`] order, then the heartbeat slots.
pub(crate) type KindSet = u64;

impl Broadcasts {
    /// The kind of `frame` when it is a broadcast that may be foreseen: its position among
    /// [`FrameKind::ALL`], or its node's heartbeat slot after those (a node heard for the
    /// first time takes a free slot).
    pub(crate) fn classify(&mut self, frame: &CanFrame) -> Option<u8> {
        let at = match FrameKind::from_id(frame.id()) {
            Some(kind) => FrameKind::ALL.iter().position(|k| *k == kind)?,
            None => {
                let (node, state) = heartbeat::heartbeat(frame)?;
                if state == NmtState::BootUp {
                    return None;
                }
                let slot = match self.heartbeat_nodes.iter().position(|n| *n == node.get()) {
                    Some(slot) => slot,
                    None => {
                        let free = self.heartbeat_nodes.iter().position(|n| *n == 0)?;
                        self.heartbeat_nodes[free] = node.get();
                        free
                    }
                };
                FrameKind::COUNT + slot
            }
        };
        u8::try_from(at).ok()
    }

    /// Records a broadcast of kind `kind` (from [`Broadcasts::classify`]) that ended at
    /// `end`.
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
        } else if b.run >= 2 && interval.abs_diff(b.period) <= widest(b.period) {
            b.run = b.run.saturating_add(1);
            b.jitter = b.jitter.max(interval.abs_diff(b.period));
            b.period = interval;
        } else {
            b.run = 2;
            b.jitter = 0;
            b.period = interval;
        }
        b.last = end;
    }

    /// The broadcasts foreseen at `now`: heard three times at one period, and not later
    /// than their tolerance.
    pub(crate) fn foreseen(&self, now: u64) -> KindSet {
        let mut set = 0;
        for (i, b) in self.kinds.iter().enumerate() {
            if b.run >= 3 && now <= b.last + b.period + b.tolerance() {
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
            let reach = by + b.tolerance();
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
        Broadcasts::default().classify(frame).unwrap()
    }

    /// Only BMS-Can broadcasts and heartbeats have a kind: not an answer, not the GX's
    /// keep-alive, not a boot-up message.
    #[test]
    fn only_broadcasts_are_kinds() {
        let mut b = Broadcasts::default();
        assert_eq!(b.classify(&broadcast(0x351, 8)), Some(0));
        assert_eq!(b.classify(&broadcast(0x382, 8)), Some(20));
        for id in [0x305, 0x307, 0x7E8, 0x581, 0x701, 0x350, 0x383] {
            assert_eq!(b.classify(&broadcast(id, 8)), None, "{id:#x}");
        }
        let extended = CanFrame::new(CanId::extended(0x351).unwrap(), &[0; 8]).unwrap();
        assert_eq!(b.classify(&extended), None);
        let heartbeat =
            |id: u16, state: u8| CanFrame::new(CanId::standard(id).unwrap(), &[state]).unwrap();
        assert_eq!(b.classify(&heartbeat(0x701, 0x00)), None, "boot-up");
        assert_eq!(b.classify(&heartbeat(0x705, 0x05)), Some(21));
        assert_eq!(b.classify(&heartbeat(0x701, 0x7F)), Some(22));
        assert_eq!(
            b.classify(&heartbeat(0x705, 0x04)),
            Some(21),
            "its node's slot"
        );
        // The first 16 nodes keep their slots; a 17th is not foreseen.
        for node in 10..24 {
            assert!(b.classify(&heartbeat(0x700 + node, 0x05)).is_some());
        }
        assert_eq!(b.classify(&heartbeat(0x730, 0x05)), None);
        assert_eq!(b.classify(&heartbeat(0x701, 0x05)), Some(22));
    }

    #[test]
    fn a_frame_strays_at_most_a_64th_of_its_period_at_least_2_ms() {
        assert_eq!(widest(20_000), 2_000);
        assert_eq!(widest(128_000), 2_000);
        assert_eq!(widest(128_064), 2_001);
        assert_eq!(widest(1_000_000), 15_625);
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
        // Heard twice at the period it would have had from time zero: still twice.
        let mut from_zero = Broadcasts::default();
        from_zero.record(k, 200_000, &f);
        from_zero.record(k, 400_000, &f);
        assert_eq!(from_zero.foreseen(400_001), 0);
        // Within 3 125 us (1/64 of 200 ms) of the period.
        b.record(k, 1_403_125, &f);
        let bit = 1 << k;
        assert_eq!(b.foreseen(1_403_126), bit);
        // Expected at 1 606 250 (the last interval), late by at most twice its deviation
        // but 1/64 of its period: 3 173 us.
        assert_eq!(b.foreseen(1_606_250 + 3_173), bit);
        assert_eq!(b.foreseen(1_606_250 + 3_174), 0, "later than its tolerance");
    }

    /// A node's heartbeat is foreseen as a BMS-Can broadcast is, in its node's slot.
    #[test]
    fn a_heartbeat_is_foreseen_in_its_slot() {
        let beat = CanFrame::new(CanId::standard(0x705).unwrap(), &[0x05]).unwrap();
        let mut b = Broadcasts::default();
        let k = b.classify(&beat).unwrap();
        for end in [0, 100_000, 200_000] {
            b.record(k, end, &beat);
        }
        let set = b.foreseen(200_000);
        assert_eq!(set, 1 << 21);
        let bits = u64::from(bit_timing::worst_case_frame_bits(IdFormat::Standard, 1));
        assert_eq!(b.arriving(set, 297_999), 0);
        assert_eq!(b.arriving(set, 298_000), bits);
    }

    /// The tolerance is twice the largest deviation a broadcast has shown, at least 2 ms.
    #[test]
    fn the_tolerance_follows_the_largest_deviation() {
        let f = broadcast(0x356, 8);
        let k = kind(&f);
        let late_by = |ends: &[u64]| {
            let mut b = Broadcasts::default();
            for end in ends {
                b.record(k, *end, &f);
            }
            let last = ends[ends.len() - 1];
            let expected = last + (last - ends[ends.len() - 2]);
            (0..10_000)
                .take_while(|late| b.foreseen(expected + late) != 0)
                .count() as u64
                - 1
        };
        assert_eq!(late_by(&[0, 200_000, 400_000]), 2_000, "no deviation: 2 ms");
        assert_eq!(late_by(&[0, 200_000, 400_500]), 2_000, "500 us: 2 ms");
        assert_eq!(late_by(&[0, 200_000, 401_200]), 2_400, "1 200 us");
        assert_eq!(
            late_by(&[0, 200_000, 401_200, 602_400, 802_400]),
            2_400,
            "the largest of the run"
        );
        assert_eq!(
            late_by(&[0, 200_000, 402_000]),
            3_156,
            "at most 1/64 of 202 ms"
        );
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
        // 7 813 us early: past the widest it may stray (7 812 us).
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
        // Next expected at 600 000, from 598 000 (a tolerance of 2 ms).
        assert_eq!(b.arriving(set, 597_999), 0);
        assert_eq!(b.arriving(set, 598_000), bits);
        assert_eq!(b.arriving(set, 797_999), bits);
        assert_eq!(b.arriving(set, 798_000), 2 * bits);
        assert_eq!(b.arriving(0, 900_000), 0, "nothing outside the set");
    }
}
