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
    /// `elapsed` is the time since the last restart, exactly: the driver compares it with
    /// the time the budget held the plugin back to tell a stall (743) from an overloaded
    /// bus (742).
    #[test]
    fn elapsed_counts_from_the_last_restart() {
        let d = DeclaredTimeouts::default();
        let limits = WatchdogLimits::new(&d, 4096, 500_000, 80, Duration::from_secs(1));
        let mut w = Watchdog::new(limits, t(100));
        assert_eq!(w.elapsed(t(100)), Duration::ZERO);
        assert_eq!(w.elapsed(t(1_600)), Duration::from_millis(1_500));
        assert_eq!(w.elapsed(t(50)), Duration::ZERO, "never negative");
        w.progress(10, t(1_000));
        assert_eq!(w.elapsed(t(1_600)), Duration::from_millis(600));
        w.enter(Watched::Verifying, t(2_000));
        assert_eq!(w.phase(), Watched::Verifying);
        assert_eq!(w.elapsed(t(2_250)), Duration::from_millis(250));
        // Entering the watched phase again does not restart it.
        w.enter(Watched::Verifying, t(2_200));
        assert_eq!(w.elapsed(t(2_250)), Duration::from_millis(250));
        assert_eq!(w.deadline(), t(2_000) + limits.verify);
    }

    /// Each phase has its own limit, from the plugin's declared timeouts.
    #[test]
    fn each_phase_has_its_own_limit() {
        let d = DeclaredTimeouts::default();
        let limits = WatchdogLimits::new(&d, 4096, 500_000, 80, Duration::from_secs(7));
        assert_eq!(limits.limit(Watched::Transferring), limits.transfer_stall);
        assert_eq!(limits.limit(Watched::Installing), d.install_max());
        assert_eq!(
            limits.limit(Watched::Restarting),
            d.restart_silence_max() + d.transfer_response()
        );
        assert_eq!(limits.limit(Watched::Verifying), d.verify_response() * 4);
        assert_eq!(limits.limit(Watched::Confirming), Duration::from_secs(7));
        let mut w = Watchdog::new(limits, t(0));
        assert_eq!(w.limits(), &limits);
        for phase in [
            Watched::Installing,
            Watched::Restarting,
            Watched::Verifying,
            Watched::Confirming,
        ] {
            w.enter(phase, t(10));
            assert_eq!(w.deadline(), t(10) + limits.limit(phase), "{phase:?}");
            assert!(!w.expired(t(10) + (limits.limit(phase) - Duration::from_micros(1))));
            assert!(w.expired(t(10) + limits.limit(phase)));
            w.enter(Watched::Transferring, t(0));
        }
    }

    /// The step is a sixteenth of the image, at least 4 KiB and at most 64 KiB; the bus
    /// time of 7 payload bytes per 135-bit frame at the budget.
    #[test]
    fn the_transfer_step_is_clamped_and_the_wire_time_exact() {
        // 1400 bytes = 200 frames x 135 bits = 27 000 bits; at 50 % of 500 kbit/s: 108 ms.
        assert_eq!(wire_time(1_400, 500_000, 50), Duration::from_millis(108));
        assert_eq!(
            wire_time(1_401, 500_000, 50),
            Duration::from_micros(108_540)
        );
        assert_eq!(wire_time(1_400, 500_000, 0), Duration::from_millis(5_400));
        let d = DeclaredTimeouts::default();
        let limits = |size| WatchdogLimits::new(&d, size, 500_000, 80, Duration::ZERO);
        let base = d.transfer_response() * 4;
        let with_step = |step| base + wire_time(step, 500_000, 80) * 2;
        assert_eq!(limits(1_000).transfer_stall, with_step(4 * 1024));
        assert_eq!(limits(16 * 8 * 1024).transfer_stall, with_step(8 * 1024));
        assert_eq!(limits(64 << 20).transfer_stall, with_step(64 * 1024));
    }
    /// The driver tells a stall from an overloaded bus by the share of the stall the
    /// budget held the plugin back: a session that waited for the bus a short while and
    /// then stalls with the bus free fails with 743, not 742.
    mod stall {
        use crate::driver::{BudgetConfig, BusBudget, DriverEvent, Stage2, Stage2Config};
        use crate::driver::{StageOutcome, Watched};
        use crate::errors::codes;
        use crate::plugin::{
            BatteryMatch, DecodedVersion, PackageRead, PackageRejection, PackageSummary,
            PluginFailure, PluginInfo, SessionPhase, SessionReport, SessionStart, VendorPlugin,
            VendorSession,
        };
        use crate::vrm::UpdateTargets;
        use bmsfw_plugin_api::{BatteryIdentity, CanFrame, CanId, CanIdRange, PluginIdentity};
        use bmsfw_plugin_api::{ErrorCode, Timestamp};
        use std::sync::Arc;
        use std::time::Duration;

        /// Always has a frame to send; never gets one acknowledged.
        struct Stuck {
            aborted: bool,
        }

        impl VendorSession for Stuck {
            fn handle_frame(&mut self, _: Timestamp, _: &CanFrame) {}
            fn handle_timeout(&mut self, _: Timestamp) {}
            fn poll_transmit(&mut self, _: Timestamp) -> Option<CanFrame> {
                (!self.aborted)
                    .then(|| CanFrame::new(CanId::standard(0x7E0).unwrap(), &[0x36; 8]).unwrap())
            }
            fn poll_timeout(&mut self) -> Option<Timestamp> {
                None
            }
            fn status(&mut self) -> SessionReport {
                if self.aborted {
                    let failure = PluginFailure {
                        code: ErrorCode::ABORTED,
                        message: "aborted".into(),
                    };
                    return SessionReport::failed(failure, 0, 4096);
                }
                SessionReport {
                    phase: SessionPhase::Transferring,
                    bytes_done: 0,
                    bytes_total: 4096,
                    modules: Vec::new(),
                    failure: None,
                }
            }
            fn abort(&mut self, _: Timestamp, _: u32, _: &str) {
                self.aborted = true;
            }
            fn checkpoint(&mut self) -> Vec<u8> {
                Vec::new()
            }
            fn running_version(&mut self) -> Option<DecodedVersion> {
                None
            }
        }

        struct Plugin(PluginInfo);

        impl VendorPlugin for Plugin {
            fn info(&self) -> &PluginInfo {
                &self.0
            }
            fn match_battery(&self, _: &BatteryIdentity) -> Result<BatteryMatch, PluginFailure> {
                Err(PluginFailure::contract("not used"))
            }
            fn decode_version(&self, _: &[u8]) -> Result<DecodedVersion, PluginFailure> {
                Err(PluginFailure::contract("not used"))
            }
            fn inspect_package(
                &self,
                _: Arc<dyn PackageRead>,
            ) -> Result<PackageSummary, PackageRejection> {
                Err(PackageRejection::from(PluginFailure::contract("not used")))
            }
            fn start_session(
                &self,
                _: SessionStart,
            ) -> Result<Box<dyn VendorSession>, PluginFailure> {
                Err(PluginFailure::contract("not used"))
            }
        }

        fn ms(n: u64) -> Timestamp {
            Timestamp::from_micros(n * 1000)
        }

        /// Runs a stuck session on a bus that another node fills completely for the first
        /// `busy_ms`; returns the code and message it fails with.
        fn stall_after(busy_ms: u64) -> (u32, String) {
            stall_with(|step| if step < busy_ms { 4 } else { 0 })
        }

        /// Runs a stuck session while another node sends `foreign(ms)` frames of about 125
        /// bits in millisecond `ms` (four fill the bus); returns the code and message it
        /// fails with.
        fn stall_with(foreign: impl Fn(u64) -> u64) -> (u32, String) {
            let id = |raw| CanId::standard(raw).unwrap();
            let info = PluginInfo::from_abi(
                PluginIdentity::new("com.example.stuck", "Stuck", "1.0.0")
                    .sends(CanIdRange::single(id(0x7E0)))
                    .receives(CanIdRange::single(id(0x7E8)))
                    .file_type("bin"),
            )
            .unwrap();
            let target = DecodedVersion {
                raw: vec![1, 5],
                display: "v1.05".into(),
                comparable: vec![1, 5],
            };
            let mut driver = Stage2::new(
                Box::new(Stuck { aborted: false }),
                Arc::new(Plugin(info)),
                target,
                UpdateTargets::All,
                4096,
                500_000,
                Stage2Config::default(),
                ms(0),
            );
            let mut budget = BusBudget::new(500_000, BudgetConfig::default());
            let noise = CanFrame::new(id(0x100), &[0x55; 8]).unwrap();
            let mut out = Vec::new();
            // Bounded: the watchdog's limit is under 5 s, the abort grace 0.5 s.
            for step in 0..10_000 {
                let now = ms(step);
                let frames = foreign(step).min(4);
                for k in 0..frames {
                    budget.record_received(now + Duration::from_micros(250 * k), &noise);
                }
                driver.poll_transmits(now, &mut budget, 8, &mut out);
                driver.handle_timeout(now);
                while let Some(event) = driver.poll_event() {
                    if let DriverEvent::Finished(StageOutcome::Failed { code, message }) = event {
                        return (code, message);
                    }
                }
            }
            panic!("the watchdog never expired");
        }

        #[test]
        fn a_stall_after_a_budget_wait_is_a_stall() {
            let (code, message) = stall_after(200);
            assert_eq!(code, codes::WATCHDOG_EXPIRED, "{message}");
            assert!(message.contains("the plugin made no progress"), "{message}");
            assert!(message.contains(&format!("{:?}", Watched::Transferring)));
        }

        #[test]
        fn a_stall_mostly_spent_waiting_for_the_bus_is_an_overload() {
            let (code, message) = stall_after(4_000);
            assert_eq!(code, codes::BUS_BUDGET_EXCEEDED, "{message}");
            assert!(message.contains("load budget"), "{message}");
        }

        /// Other traffic that still holds the bus when the watchdog bites: the wait under
        /// way counts, and the stall is an overload.
        #[test]
        fn a_stall_while_other_traffic_still_holds_the_bus_is_an_overload() {
            let (code, message) = stall_with(|_| 4);
            assert_eq!(code, codes::BUS_BUDGET_EXCEEDED, "{message}");
            assert!(message.contains("load budget"), "{message}");
        }

        /// A session sending at the cap while other nodes send now and then (telemetry):
        /// the moments their frames held it back are short, and a session that makes no
        /// progress is a stall, not an overload.
        #[test]
        fn a_stall_among_occasional_foreign_frames_is_a_stall() {
            let (code, message) = stall_with(|step| u64::from(step % 7 == 0));
            assert_eq!(code, codes::WATCHDOG_EXPIRED, "{message}");
            assert!(message.contains("the plugin made no progress"), "{message}");
        }
    }
}
