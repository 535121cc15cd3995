//! When each frame of a simulated battery is due.
//!
//! Periods: 0x356 (measurements) every 200 ms, 0x351 (limits) and 0x35A (alarms) every
//! 500 ms, everything else once per second, which is inside the 100 ms to 1 s range
//! batteries use and about 23 frames/s in total. Phases: the frames' first
//! transmissions are spread evenly over the first second, so that they do not all queue
//! for the bus at the same instant; a per-battery phase shifts the whole pattern.

use bmsfw_plugin_api::Timestamp;
use bmsfw_protocols::bms_can::FrameKind;
use std::time::Duration;

/// The default period of a frame.
pub const fn default_period(frame: FrameKind) -> Duration {
    match frame {
        FrameKind::Measurements => Duration::from_millis(200),
        FrameKind::Limits | FrameKind::Alarms => Duration::from_millis(500),
        _ => Duration::from_secs(1),
    }
}

/// One frame's place in the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The frame.
    pub frame: FrameKind,
    /// Its period.
    pub period: Duration,
    /// Its offset from the start of each period.
    pub offset: Duration,
    /// When it is next due.
    pub next_due: Timestamp,
}

/// The frames a battery sends and when each is next due.
#[derive(Clone, Debug)]
pub struct Schedule {
    slots: Vec<Slot>,
}

impl Schedule {
    /// Schedules `frames` (in identifier order) with their default periods, starting at
    /// `start`, shifted by `phase`.
    pub fn new(frames: &[FrameKind], start: Timestamp, phase: Duration) -> Schedule {
        let n = frames.len().max(1) as u64;
        let slots = frames
            .iter()
            .enumerate()
            .map(|(i, &frame)| {
                let period = default_period(frame);
                let spread = Duration::from_micros(i as u64 * 1_000_000 / n) + phase;
                let offset =
                    Duration::from_micros((spread.as_micros() % period.as_micros().max(1)) as u64);
                Slot {
                    frame,
                    period,
                    offset,
                    next_due: start + offset,
                }
            })
            .collect();
        Schedule { slots }
    }

    /// The slots.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// The earliest due time.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.slots.iter().map(|s| s.next_due).min()
    }

    /// Takes the earliest frame due at `now` (lowest identifier first on a tie) and
    /// schedules its next transmission; a frame that fell behind by several periods is
    /// sent once, not once per missed period.
    pub fn pop_due(&mut self, now: Timestamp) -> Option<FrameKind> {
        let slot = self
            .slots
            .iter_mut()
            .filter(|s| s.next_due <= now)
            .min_by_key(|s| (s.next_due, s.frame))?;
        let period = slot.period.max(Duration::from_micros(1));
        slot.next_due = slot.next_due + period;
        if slot.next_due <= now {
            let behind = now.saturating_duration_since(slot.next_due).as_micros();
            let periods = behind / period.as_micros() + 1;
            let skip = u64::try_from(periods * period.as_micros()).unwrap_or(u64::MAX);
            slot.next_due = slot.next_due + Duration::from_micros(skip);
        }
        Some(slot.frame)
    }

    /// Restarts every frame from `start` with its offset (after a power cycle).
    pub fn restart(&mut self, start: Timestamp) {
        for slot in &mut self.slots {
            slot.next_due = start + slot.offset;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const ALL17: [FrameKind; 17] = [
        FrameKind::Limits,
        FrameKind::StateOfCharge,
        FrameKind::Measurements,
        FrameKind::Protection,
        FrameKind::Alarms,
        FrameKind::Requests,
        FrameKind::Manufacturer,
        FrameKind::ProductInfo,
        FrameKind::BmsName1,
        FrameKind::BmsName2,
        FrameKind::ModuleCounts,
        FrameKind::CellExtremes,
        FrameKind::Energy,
        FrameKind::InstalledCapacity,
        FrameKind::Serial1,
        FrameKind::Serial2,
        FrameKind::ProductName,
    ];

    fn run(schedule: &mut Schedule, until: Timestamp) -> Vec<(Timestamp, FrameKind)> {
        let mut out = Vec::new();
        while let Some(t) = schedule.next_due() {
            if t > until {
                break;
            }
            while let Some(f) = schedule.pop_due(t) {
                out.push((t, f));
            }
        }
        out
    }

    #[test]
    fn every_frame_keeps_its_period_and_none_share_an_instant() {
        let mut s = Schedule::new(&ALL17, Timestamp::ZERO, Duration::ZERO);
        let sent = run(&mut s, Timestamp::from_micros(10_000_000 - 1));
        let mut per_frame: BTreeMap<FrameKind, Vec<Timestamp>> = BTreeMap::new();
        for &(t, f) in &sent {
            per_frame.entry(f).or_default().push(t);
        }
        for (f, times) in &per_frame {
            let period = default_period(*f).as_micros() as u64;
            assert_eq!(times.len() as u64, 10_000_000 / period, "{f:?}");
            for w in times.windows(2) {
                assert_eq!(w[1].as_micros() - w[0].as_micros(), period, "{f:?}");
            }
            assert!(
                (100_000..=1_000_000).contains(&period),
                "{f:?} period {period}"
            );
        }
        assert_eq!(per_frame.len(), 17);
        // About 23 frames per second, at 23 distinct instants each second.
        assert_eq!(sent.len(), 230);
        let mut instants: Vec<_> = sent.iter().map(|&(t, _)| t).collect();
        instants.dedup();
        assert_eq!(instants.len(), sent.len(), "two frames share an instant");
        // The first second holds the first transmission of every frame.
        let first: std::collections::BTreeSet<_> = sent
            .iter()
            .filter(|(t, _)| t.as_micros() < 1_000_000)
            .map(|&(_, f)| f)
            .collect();
        assert_eq!(first.len(), 17);
    }

    #[test]
    fn a_late_caller_gets_each_frame_once() {
        let mut s = Schedule::new(
            &[FrameKind::Measurements, FrameKind::Limits],
            Timestamp::ZERO,
            Duration::ZERO,
        );
        let late = Timestamp::from_micros(5_000_000);
        let mut got = Vec::new();
        while let Some(f) = s.pop_due(late) {
            got.push(f);
        }
        assert_eq!(
            got,
            vec![FrameKind::Limits, FrameKind::Measurements],
            "lowest id first"
        );
        assert!(s.next_due().unwrap() > late);
        // The phase is kept: measurements stay on their 200 ms grid (offset 0).
        assert_eq!(s.slots()[0].next_due.as_micros() % 200_000, 0);
    }

    #[test]
    fn phase_shifts_and_restart_reapplies_offsets() {
        let s0 = Schedule::new(&ALL17, Timestamp::ZERO, Duration::ZERO);
        let s1 = Schedule::new(&ALL17, Timestamp::ZERO, Duration::from_millis(29));
        for (a, b) in s0.slots().iter().zip(s1.slots()) {
            assert_ne!(a.offset, b.offset);
        }
        let mut s = s1.clone();
        let _ = run(&mut s, Timestamp::from_micros(3_000_000));
        s.restart(Timestamp::from_micros(7_000_000));
        for (slot, orig) in s.slots().iter().zip(s1.slots()) {
            assert_eq!(
                slot.next_due.as_micros(),
                7_000_000 + orig.offset.as_micros() as u64
            );
        }
    }
}
