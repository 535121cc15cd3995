//! The bus-load budget: the share of the bus the transfer may use together with every
//! other frame on it (telemetry, keep-alive, other nodes).
//!
//! The budget counts the exact bits of every frame on the bus (stuff bits and
//! intermission included, [`bmsfw_protocols::bit_timing::frame_bits`]) over a sliding
//! window. Before the driver asks the plugin for a frame it checks that one more frame of
//! the longest possible length still fits under the cap; otherwise it waits until enough
//! old frames have left the window. The plugin is never handed a deadline it cannot keep:
//! a frame, once polled, is sent at once.

use bmsfw_plugin_api::{CanFrame, Timestamp};
use bmsfw_protocols::bit_timing::{self, IdFormat};
use std::collections::VecDeque;
use std::time::Duration;

/// Settings of the budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetConfig {
    /// Largest share of the bus, 1 to 100 percent. Default 80.
    pub percent: u8,
    /// Length of the sliding window. Default [`BudgetConfig::DEFAULT_WINDOW`].
    pub window: Duration,
}

impl BudgetConfig {
    /// The default window: 100 ms, 50 000 bit times at 500 kbit/s. Short enough that the
    /// transfer never takes the bus for long stretches, long enough to span a telemetry
    /// burst.
    pub const DEFAULT_WINDOW: Duration = Duration::from_millis(100);
}

impl Default for BudgetConfig {
    fn default() -> BudgetConfig {
        BudgetConfig {
            percent: 80,
            window: BudgetConfig::DEFAULT_WINDOW,
        }
    }
}

/// The longest frame a plugin can hand out: 29-bit identifier, 8 data bytes, worst-case
/// stuffing (160 bits).
pub const WORST_FRAME_BITS: u32 = bit_timing::worst_case_frame_bits(IdFormat::Extended, 8);

#[derive(Debug, Clone, Copy)]
struct Carried {
    /// End of the frame on the bus, microseconds.
    end: u64,
    bits: u32,
}

/// The sliding-window meter and limiter of one bus.
#[derive(Debug, Clone)]
pub struct BusBudget {
    bitrate: u32,
    window_us: u64,
    limit_bits: u64,
    frames: VecDeque<Carried>,
    bits_in_window: u64,
    /// When the bus is expected to be idle again, from the frames recorded so far.
    wire_free: u64,
}

impl BusBudget {
    /// A budget for a bus at `bitrate` bit/s; `percent` is clamped to 1..=100, and the
    /// window is widened when it would hold fewer than two of the longest frames.
    pub fn new(bitrate: u32, config: BudgetConfig) -> BusBudget {
        let bitrate = bitrate.max(1);
        let percent = u64::from(config.percent.clamp(1, 100));
        let min_window_us =
            u64::from(WORST_FRAME_BITS) * 2 * 1_000_000 * 100 / (u64::from(bitrate) * percent);
        let window_us = u64::try_from(config.window.as_micros())
            .unwrap_or(u64::MAX)
            .max(min_window_us)
            .max(1);
        let limit_bits = u64::from(bitrate) * window_us / 1_000_000 * percent / 100;
        BusBudget {
            bitrate,
            window_us,
            limit_bits,
            frames: VecDeque::new(),
            bits_in_window: 0,
            wire_free: 0,
        }
    }

    /// Bits the window may hold.
    pub fn limit_bits(&self) -> u64 {
        self.limit_bits
    }

    /// The window's length.
    pub fn window(&self) -> Duration {
        Duration::from_micros(self.window_us)
    }

    /// The bus's bit rate.
    pub fn bitrate(&self) -> u32 {
        self.bitrate
    }

    fn prune(&mut self, now: Timestamp) {
        let start = now.as_micros().saturating_sub(self.window_us);
        while let Some(front) = self.frames.front() {
            if front.end > start {
                break;
            }
            self.bits_in_window -= u64::from(front.bits);
            self.frames.pop_front();
        }
    }

    fn insert(&mut self, carried: Carried) {
        let at = self
            .frames
            .iter()
            .rposition(|c| c.end <= carried.end)
            .map_or(0, |i| i + 1);
        self.frames.insert(at, carried);
        self.bits_in_window += u64::from(carried.bits);
        self.wire_free = self.wire_free.max(carried.end);
    }

    /// Records a frame another node sent, which ended on the bus at `end`.
    pub fn record_received(&mut self, end: Timestamp, frame: &CanFrame) {
        let bits = bit_timing::frame_bits(frame);
        self.insert(Carried {
            end: end.as_micros(),
            bits,
        });
    }

    /// Records a frame this node hands to its controller at `now`; it is expected to end
    /// once the bus has carried what is ahead of it. Returns that expected end.
    pub fn record_sent(&mut self, now: Timestamp, frame: &CanFrame) -> Timestamp {
        let bits = bit_timing::frame_bits(frame);
        let duration = bit_timing::bits_duration(u64::from(bits), self.bitrate);
        let start = self.wire_free.max(now.as_micros());
        let end = start.saturating_add(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX));
        self.insert(Carried { end, bits });
        Timestamp::from_micros(end)
    }

    /// Bits in the window ending at `now`.
    pub fn bits_in_window(&mut self, now: Timestamp) -> u64 {
        self.prune(now);
        self.bits_in_window
    }

    /// The load of the window ending at `now`, in percent of the bus.
    pub fn load_percent(&mut self, now: Timestamp) -> f64 {
        let capacity = u64::from(self.bitrate) * self.window_us / 1_000_000;
        self.bits_in_window(now) as f64 * 100.0 / capacity.max(1) as f64
    }

    /// How many frames of `bits` each fit under the cap at `now`, at most `max` (at
    /// least 1); otherwise, when not one fits, the earliest time one will.
    pub fn frames_fitting(
        &mut self,
        now: Timestamp,
        bits: u32,
        max: usize,
    ) -> Result<usize, Timestamp> {
        self.room(now, bits)?;
        let free = self.limit_bits.saturating_sub(self.bits_in_window);
        let n = usize::try_from(free / u64::from(bits.max(1))).unwrap_or(usize::MAX);
        Ok(n.clamp(1, max.max(1)))
    }

    /// `Ok` when a frame of `bits` fits under the cap at `now`; otherwise the earliest
    /// time it will (once enough recorded frames have left the window).
    pub fn room(&mut self, now: Timestamp, bits: u32) -> Result<(), Timestamp> {
        self.prune(now);
        let need = u64::from(bits);
        if self.bits_in_window + need <= self.limit_bits {
            return Ok(());
        }
        let mut remaining = self.bits_in_window;
        for c in &self.frames {
            remaining -= u64::from(c.bits);
            if remaining + need <= self.limit_bits {
                return Err(Timestamp::from_micros(c.end + self.window_us));
            }
        }
        // Unreachable for a window holding at least two of the longest frames; wait a
        // whole window in any case.
        Err(Timestamp::from_micros(now.as_micros() + self.window_us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_plugin_api::CanId;

    fn frame(id: u16, fill: u8) -> CanFrame {
        CanFrame::new(CanId::standard(id).unwrap(), &[fill; 8]).unwrap()
    }

    fn t(us: u64) -> Timestamp {
        Timestamp::from_micros(us)
    }

    #[test]
    fn the_limit_is_the_share_of_the_window() {
        let b = BusBudget::new(500_000, BudgetConfig::default());
        assert_eq!(b.limit_bits(), 40_000);
        assert_eq!(b.window(), Duration::from_millis(100));
        // A window too short for two frames is widened.
        let tiny = BusBudget::new(
            500_000,
            BudgetConfig {
                percent: 10,
                window: Duration::from_micros(10),
            },
        );
        assert!(tiny.limit_bits() >= 2 * u64::from(WORST_FRAME_BITS));
    }

    /// A sender that always asks first never pushes the window over the cap, whatever the
    /// other traffic, and gets close to it.
    #[test]
    fn a_greedy_sender_stays_under_the_cap_including_other_traffic() {
        let mut b = BusBudget::new(500_000, BudgetConfig::default());
        let bit_us = 2; // 500 kbit/s
        let mut now = t(0);
        let mut sent = 0u64;
        let mut next_telemetry = 0u64;
        let mut max_load = 0.0f64;
        while now.as_micros() < 2_000_000 {
            if now.as_micros() >= next_telemetry {
                // A telemetry burst of 8 frames every 100 ms.
                for i in 0..8 {
                    b.record_received(t(now.as_micros() + 250 * (i + 1)), &frame(0x351, 0x55));
                }
                next_telemetry += 100_000;
            }
            match b.room(now, WORST_FRAME_BITS) {
                Ok(()) => {
                    let end = b.record_sent(now, &frame(0x7E0, 0x00));
                    sent += 1;
                    now = t(now.as_micros().max(end.as_micros() - 100 * bit_us));
                }
                Err(at) => {
                    assert!(at > now, "room later than now");
                    now = at;
                }
            }
            max_load = max_load.max(b.load_percent(now));
        }
        assert!(max_load <= 80.0 + 1e-9, "load reached {max_load:.2} %");
        // 2 s at 80 % with 124-bit frames of zeros, less the telemetry: well over 6000.
        assert!(sent > 6000, "only {sent} frames sent");
    }

    #[test]
    fn room_names_the_time_the_oldest_frames_leave_the_window() {
        let mut b = BusBudget::new(
            500_000,
            BudgetConfig {
                percent: 50,
                window: Duration::from_millis(2),
            },
        );
        // 2 ms at 500 kbit/s = 1000 bit times, half of them allowed.
        assert_eq!(b.limit_bits(), 500);
        let f = frame(0x7E0, 0xAA);
        let bits = bit_timing::frame_bits(&f);
        let fit = 500 / u64::from(bits);
        for i in 0..fit {
            b.record_received(t(100 + 200 * i), &f);
        }
        let now = t(100 + 200 * fit);
        let at = b.room(now, bits).unwrap_err();
        assert_eq!(at, t(100 + 2000), "the first frame must leave the window");
        assert!(b.room(t(at.as_micros() - 1), bits).is_err());
        assert!(b.room(at, bits).is_ok());
    }

    #[test]
    fn own_frames_queue_behind_the_wire() {
        let mut b = BusBudget::new(500_000, BudgetConfig::default());
        let f = frame(0x7E0, 0x00);
        let d = bit_timing::frame_duration(&f, 500_000).as_micros() as u64;
        let e1 = b.record_sent(t(1000), &f);
        let e2 = b.record_sent(t(1000), &f);
        assert_eq!(e1, t(1000 + d));
        assert_eq!(e2, t(1000 + 2 * d));
    }
}
