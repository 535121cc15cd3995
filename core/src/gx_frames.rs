//! The frames a GX device sends on BMS-Can, and the sans-IO emitter that paces them.
//!
//! A GX announces itself to the battery with two frames: 0x305, a keep-alive of eight
//! zero bytes, and 0x307, an identification carrying `'V','I','C'` in bytes 4-6 (the
//! other bytes zero). Batteries tolerate a missing keep-alive for minutes, so the period
//! is not critical; [`GxKeepAlive`] sends the pair once per second by default
//! ([`KEEP_ALIVE_PERIOD`]), matching the slowest battery broadcast period, so that the
//! GX adds two frames per second (well under 0.1 % of a 500 kbit/s bus).
//!
//! # Another GX on the bus
//!
//! On a GX device, Venus OS's own BMS-Can driver may already serve the same interface and
//! send its own 0x305/0x307. The battery needs one keep-alive, not two: whenever a frame
//! with either identifier arrives that this node did not send (a CAN interface never
//! hands a node its own frames back), [`GxKeepAlive::observe`] pauses the pair for
//! [`FOREIGN_HOLD_PERIODS`] periods from that frame. While the other node keeps sending,
//! ours stays silent; once it has been silent that long, ours resumes. Monitoring the
//! batteries sends nothing else: outside an update the daemon only listens.

use bmsfw_plugin_api::{CanFrame, Timestamp};
use bmsfw_protocols::bms_can::{GxIdentification, KeepAlive, is_gx_frame};
use std::time::Duration;

pub use bmsfw_protocols::bms_can::{IDENTIFICATION_ID, KEEP_ALIVE_ID};

/// Default period of the keep-alive pair.
pub const KEEP_ALIVE_PERIOD: Duration = Duration::from_secs(1);
/// How many of our periods another node's keep-alive silences ours: three, so that a
/// node sending at our rate or up to three times slower holds ours off, and ours resumes
/// within three periods of its last frame.
pub const FOREIGN_HOLD_PERIODS: u32 = 3;

/// 0x305 with eight zero bytes.
pub fn keep_alive_frame() -> CanFrame {
    KeepAlive.encode()
}

/// 0x307 with `'VIC'` in bytes 4-6.
pub fn identification_frame() -> CanFrame {
    GxIdentification.encode()
}

/// The bits the keep-alive pair takes on the bus (both frames, stuff bits included).
pub fn keep_alive_pair_bits() -> u32 {
    bmsfw_protocols::bit_timing::frame_bits(&keep_alive_frame())
        + bmsfw_protocols::bit_timing::frame_bits(&identification_frame())
}

/// Where the emitter is in its cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the next cycle, due at the given time.
    Idle(Timestamp),
    /// The cycle due at the given time has started: 0x307 goes next.
    Identification(Timestamp),
}

/// Paces the GX's keep-alive pair: 0x305 then 0x307 once per period.
///
/// Sans-IO: call [`poll_transmit`](GxKeepAlive::poll_transmit) until it returns `None`,
/// then wait until [`poll_timeout`](GxKeepAlive::poll_timeout). A late caller gets one
/// pair, never a burst of the cycles it missed.
#[derive(Clone, Debug)]
pub struct GxKeepAlive {
    period: Duration,
    phase: Phase,
    /// Another node sent 0x305 or 0x307: ours is silent until then.
    foreign_until: Option<Timestamp>,
}

impl GxKeepAlive {
    /// An emitter whose first pair is due at `now`; `period` is clamped to at least
    /// 1 ms.
    pub fn new(now: Timestamp, period: Duration) -> GxKeepAlive {
        GxKeepAlive {
            period: period.max(Duration::from_millis(1)),
            phase: Phase::Idle(now),
            foreign_until: None,
        }
    }

    /// Looks at a frame received at `now`: another node's 0x305 or 0x307 pauses ours for
    /// [`FOREIGN_HOLD_PERIODS`] periods. Returns `true` when ours was sending until now
    /// (the pause begins).
    pub fn observe(&mut self, now: Timestamp, frame: &CanFrame) -> bool {
        // By identifier alone: whatever another node puts in its pair, it is a GX's.
        if !is_gx_frame(frame) {
            return false;
        }
        let began = !self.following(now);
        self.foreign_until = Some(now + self.period * FOREIGN_HOLD_PERIODS);
        // A pair half sent stays half sent: the other node's pair stands in for it.
        if let Phase::Identification(due) = self.phase {
            self.phase = Phase::Idle(due + self.period);
        }
        began
    }

    /// Whether another node's keep-alive holds ours off at `now`.
    pub fn following(&self, now: Timestamp) -> bool {
        self.foreign_until.is_some_and(|until| now < until)
    }

    /// The period between pairs.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The next frame to send at `now`, if one is due.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        if self.following(now) {
            return None;
        }
        match self.phase {
            Phase::Idle(due) if now >= due => {
                self.phase = Phase::Identification(due);
                Some(keep_alive_frame())
            }
            Phase::Idle(_) => None,
            Phase::Identification(due) => {
                let mut next = due + self.period;
                if next <= now {
                    next = now + self.period;
                }
                self.phase = Phase::Idle(next);
                Some(identification_frame())
            }
        }
    }

    /// When [`poll_transmit`](GxKeepAlive::poll_transmit) next has a frame.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let due = match self.phase {
            Phase::Idle(due) | Phase::Identification(due) => due,
        };
        Some(match self.foreign_until {
            Some(until) => due.max(until),
            None => due,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_plugin_api::CanId;

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_micros(ms * 1000)
    }

    #[test]
    fn frames_are_built_as_a_gx_sends_them() {
        assert_eq!(keep_alive_frame().to_string(), "305#0000000000000000");
        assert_eq!(identification_frame().to_string(), "307#0000000056494300");
        assert_eq!(&identification_frame().data()[4..7], b"VIC");
    }

    #[test]
    fn one_pair_per_period() {
        let mut gx = GxKeepAlive::new(at(0), KEEP_ALIVE_PERIOD);
        let mut sent = Vec::new();
        let mut now = at(0);
        while now <= at(3500) {
            while let Some(f) = gx.poll_transmit(now) {
                sent.push((now.as_micros() / 1000, f.id().raw()));
            }
            now = gx.poll_timeout().unwrap();
        }
        assert_eq!(
            sent,
            vec![
                (0, 0x305),
                (0, 0x307),
                (1000, 0x305),
                (1000, 0x307),
                (2000, 0x305),
                (2000, 0x307),
                (3000, 0x305),
                (3000, 0x307),
            ]
        );
    }

    #[test]
    fn nothing_before_due_and_no_burst_after_a_stall() {
        let mut gx = GxKeepAlive::new(at(100), Duration::from_millis(500));
        assert_eq!(gx.poll_transmit(at(99)), None);
        assert_eq!(gx.poll_timeout(), Some(at(100)));
        assert_eq!(gx.poll_transmit(at(100)), Some(keep_alive_frame()));
        assert_eq!(gx.poll_timeout(), Some(at(100)));
        assert_eq!(gx.poll_transmit(at(100)), Some(identification_frame()));
        assert_eq!(gx.poll_transmit(at(100)), None);
        assert_eq!(gx.poll_timeout(), Some(at(600)));
        // The caller sleeps 5 s: one pair, then the schedule restarts from then.
        assert!(gx.poll_transmit(at(5600)).is_some());
        assert!(gx.poll_transmit(at(5600)).is_some());
        assert_eq!(gx.poll_transmit(at(5600)), None);
        assert_eq!(gx.poll_timeout(), Some(at(6100)));
    }

    /// Runs `gx` from 0 to `end_ms`, another node sending its pair at each time of
    /// `foreign`; returns when ours sent 0x305.
    fn run_with(gx: &mut GxKeepAlive, foreign: &[u64], end_ms: u64) -> Vec<u64> {
        let mut sent = Vec::new();
        let mut now = at(0);
        let mut foreign = foreign.iter().copied().peekable();
        while now <= at(end_ms) {
            while let Some(f) = gx.poll_transmit(now) {
                if f.id().raw() == u32::from(KEEP_ALIVE_ID) {
                    sent.push(now.as_micros() / 1000);
                }
            }
            let next_foreign = foreign.peek().map(|&ms| at(ms));
            let next = match (gx.poll_timeout(), next_foreign) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap(),
            };
            if Some(next) == next_foreign {
                foreign.next();
                gx.observe(next, &keep_alive_frame());
                gx.observe(next, &identification_frame());
            }
            now = next;
        }
        sent
    }

    #[test]
    fn another_nodes_keep_alive_silences_ours_until_it_stops() {
        let mut gx = GxKeepAlive::new(at(0), KEEP_ALIVE_PERIOD);
        // The other node sends every second from 2.5 s to 9.5 s.
        let foreign: Vec<u64> = (0..8).map(|i| 2500 + i * 1000).collect();
        let sent = run_with(&mut gx, &foreign, 16_000);
        // Ours: 0, 1, 2 s; silent while the other sends; resumes 3 s after its last
        // frame (9.5 s), then once per second again.
        assert_eq!(
            sent,
            vec![0, 1000, 2000, 12_500, 13_500, 14_500, 15_500],
            "{sent:?}"
        );
    }

    #[test]
    fn other_frames_do_not_pause_it_and_a_pause_is_reported_once() {
        let mut gx = GxKeepAlive::new(at(0), KEEP_ALIVE_PERIOD);
        let soc = CanFrame::new(CanId::standard(0x355).unwrap(), &[80, 0, 100, 0]).unwrap();
        assert!(!gx.observe(at(0), &soc));
        assert!(!gx.following(at(0)));
        assert!(gx.observe(at(10), &keep_alive_frame()));
        assert!(!gx.observe(at(20), &identification_frame()));
        assert!(gx.following(at(3019)));
        assert_eq!(gx.poll_transmit(at(3019)), None);
        assert_eq!(gx.poll_timeout(), Some(at(3020)));
        assert!(!gx.following(at(3020)));
        assert_eq!(gx.poll_transmit(at(3020)), Some(keep_alive_frame()));
        // An extended frame with the same number is not a keep-alive.
        let extended = CanFrame::new(CanId::extended(0x305).unwrap(), &[0; 8]).unwrap();
        assert!(!gx.observe(at(4000), &extended));
    }
}
