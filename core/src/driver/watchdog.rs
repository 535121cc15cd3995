//! Per-phase watchdogs: how long each phase of a session may go without progress.
//!
//! The limits come from the plugin's declared timeouts and are scaled to the image size
//! and the bus: while Transferring the watchdog allows the plugin's answer time plus twice
//! the time the bus needs, at the budget, for one step of the image (a sixteenth of it,
//! between 4 KiB and 64 KiB: the block sizes bootloaders use), and it restarts whenever
//! the acknowledged byte count passes its previous best. A transfer that goes back (a
//! protocol that restarts a block) is not progress, so every transfer ends.
//!
//! | phase | limit | restarted by |
//! |---|---|---|
//! | Transferring | `4 x transfer_response + 2 x wire_time(step)` | more bytes acknowledged |
//! | Installing | `install_max` | - |
//! | Restarting | `restart_silence_max + transfer_response` | - |
//! | Verifying (plugin) | `4 x verify_response` | - |
//! | Confirming (engine, 0x35F) | the driver's confirmation window | - |

use bmsfw_plugin_api::{DeclaredTimeouts, Timestamp};
use bmsfw_protocols::bit_timing::{self, IdFormat};
use std::time::Duration;

/// The phases a watchdog watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Watched {
    /// The image moves to the BMS.
    Transferring,
    /// The BMS applies it.
    Installing,
    /// The battery restarts.
    Restarting,
    /// The plugin confirms the new version.
    Verifying,
    /// The engine waits for the new version in 0x35F.
    Confirming,
}

/// The limits of one session's phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchdogLimits {
    /// Longest stretch without new acknowledged bytes while Transferring.
    pub transfer_stall: Duration,
    /// Longest Installing phase.
    pub install: Duration,
    /// Longest Restarting phase.
    pub restart: Duration,
    /// Longest Verifying phase.
    pub verify: Duration,
    /// Longest wait for the new version in 0x35F.
    pub confirm: Duration,
}

/// The time the bus needs to carry `bytes` of payload in 8-byte frames of 7 payload bytes
/// each (ISO-TP consecutive frames), stuffed at the worst case, within `percent` of a bus
/// at `bitrate`.
pub fn wire_time(bytes: u64, bitrate: u32, percent: u8) -> Duration {
    let frames = bytes.div_ceil(7);
    let bits = frames * u64::from(bit_timing::worst_case_frame_bits(IdFormat::Standard, 8));
    let effective = u64::from(bitrate.max(1)) * u64::from(percent.clamp(1, 100)) / 100;
    Duration::from_micros(bits.saturating_mul(1_000_000) / effective.max(1))
}

impl WatchdogLimits {
    /// Limits for a session of a plugin declaring `timeouts`, moving `image_size` bytes
    /// over a bus at `bitrate` within `budget_percent` of it; `confirm` is the engine's
    /// own wait for 0x35F.
    pub fn new(
        timeouts: &DeclaredTimeouts,
        image_size: u64,
        bitrate: u32,
        budget_percent: u8,
        confirm: Duration,
    ) -> WatchdogLimits {
        let step = (image_size / 16).clamp(4 * 1024, 64 * 1024);
        WatchdogLimits {
            transfer_stall: timeouts.transfer_response() * 4
                + wire_time(step, bitrate, budget_percent) * 2,
            install: timeouts.install_max(),
            restart: timeouts.restart_silence_max() + timeouts.transfer_response(),
            verify: timeouts.verify_response() * 4,
            confirm,
        }
    }

    /// The limit of `phase`.
    pub fn limit(&self, phase: Watched) -> Duration {
        match phase {
            Watched::Transferring => self.transfer_stall,
            Watched::Installing => self.install,
            Watched::Restarting => self.restart,
            Watched::Verifying => self.verify,
            Watched::Confirming => self.confirm,
        }
    }
}

/// The watchdog of one session.
#[derive(Debug, Clone)]
pub struct Watchdog {
    limits: WatchdogLimits,
    phase: Watched,
    since: Timestamp,
    best_bytes: u64,
}

impl Watchdog {
    /// A watchdog starting in Transferring at `now`.
    pub fn new(limits: WatchdogLimits, now: Timestamp) -> Watchdog {
        Watchdog {
            limits,
            phase: Watched::Transferring,
            since: now,
            best_bytes: 0,
        }
    }

    /// The limits.
    pub fn limits(&self) -> &WatchdogLimits {
        &self.limits
    }

    /// The watched phase.
    pub fn phase(&self) -> Watched {
        self.phase
    }

    /// Starts watching `phase` at `now` (nothing changes when it is already watched).
    pub fn enter(&mut self, phase: Watched, now: Timestamp) {
        if phase != self.phase {
            self.phase = phase;
            self.since = now;
        }
    }

    /// Reports `bytes` acknowledged at `now`; restarts the Transferring limit when they
    /// pass the previous best. Returns whether that was progress.
    pub fn progress(&mut self, bytes: u64, now: Timestamp) -> bool {
        if bytes > self.best_bytes {
            self.best_bytes = bytes;
            if self.phase == Watched::Transferring {
                self.since = now;
            }
            true
        } else {
            false
        }
    }

    /// When the current phase expires.
    pub fn deadline(&self) -> Timestamp {
        self.since + self.limits.limit(self.phase)
    }

    /// The time since the last restart of the watchdog.
    pub fn elapsed(&self, now: Timestamp) -> Duration {
        now.saturating_duration_since(self.since)
    }

    /// Whether the current phase has expired at `now`.
    pub fn expired(&self, now: Timestamp) -> bool {
        now >= self.deadline()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_micros(ms * 1000)
    }

    #[test]
    fn limits_scale_with_image_size_and_bit_rate() {
        let d = DeclaredTimeouts::default();
        let small = WatchdogLimits::new(&d, 16 * 1024, 500_000, 80, Duration::from_secs(10));
        let large = WatchdogLimits::new(&d, 4 << 20, 500_000, 80, Duration::from_secs(10));
        let slow = WatchdogLimits::new(&d, 4 << 20, 250_000, 80, Duration::from_secs(10));
        assert!(small.transfer_stall < large.transfer_stall);
        assert!(large.transfer_stall < slow.transfer_stall);
        // 64 KiB at 80 % of 500 kbit/s, 135 bits per 7 bytes: 3.16 s, twice, plus 4 s.
        let expected = Duration::from_secs(4) + wire_time(64 * 1024, 500_000, 80) * 2;
        assert_eq!(large.transfer_stall, expected);
        let w = wire_time(64 * 1024, 500_000, 80).as_secs_f64();
        assert!((w - 3.16).abs() < 0.01, "{w}");
        assert_eq!(large.install, Duration::from_secs(300));
        assert_eq!(large.restart, Duration::from_secs(31));
    }

    #[test]
    fn progress_restarts_only_the_transfer_and_only_forward() {
        let d = DeclaredTimeouts {
            transfer_response_ms: 100,
            ..DeclaredTimeouts::default()
        };
        let limits = WatchdogLimits::new(&d, 4096, 500_000, 80, Duration::from_secs(1));
        let mut w = Watchdog::new(limits, t(0));
        let first = w.deadline();
        assert!(w.progress(100, t(50)));
        assert_eq!(w.deadline(), first + Duration::from_millis(50));
        assert!(!w.progress(100, t(90)), "the same count is no progress");
        assert!(!w.progress(50, t(95)), "going back is no progress");
        assert_eq!(w.deadline(), first + Duration::from_millis(50));
        assert!(!w.expired(t(50) + (limits.transfer_stall - Duration::from_micros(1))));
        assert!(w.expired(t(50) + limits.transfer_stall));
        w.enter(Watched::Installing, t(60));
        assert_eq!(w.deadline(), t(60) + limits.install);
        w.progress(4096, t(70));
        assert_eq!(
            w.deadline(),
            t(60) + limits.install,
            "bytes do not restart Installing"
        );
    }
}
