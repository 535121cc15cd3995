//! One battery's last known state, with the time each frame kind was last received.

use super::identity::BatteryIdentity;
use bmsfw_plugin_api::Timestamp;
use bmsfw_protocols::bms_can::{
    AlarmField, AlarmStatus, AmpHours, CellExtremes, ChargeLimits, EnergyCounters, FrameKind,
    Measurements, ModuleCounts, ProductInfo, ProtectionStatus, Requests, Severity, StateOfCharge,
    Telemetry, join_halves,
};
use std::time::Duration;

/// How long a required frame may go unseen before the battery no longer counts as
/// communicating: an inverter stops when 0x351 is missing for 3 s, and batteries send
/// every 100 ms to 1 s, so three periods of the slowest sender.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3);

/// Whether all required frames are fresh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Communication {
    /// Every frame of [`FrameKind::REQUIRED`] is fresh.
    Communicating,
    /// These required frames are stale or were never received.
    Stale(Vec<FrameKind>),
}

/// The state of the battery broadcasting on one bus.
///
/// Fields keep their last accepted value; freshness says how old it is. A rejected
/// frame changes nothing, not even its freshness.
#[derive(Clone, Debug, Default)]
pub struct BatteryState {
    seen: [Option<Timestamp>; FrameKind::COUNT],
    received: [u64; FrameKind::COUNT],
    limits: Option<ChargeLimits>,
    soc: Option<StateOfCharge>,
    measurements: Option<Measurements>,
    protection: Option<ProtectionStatus>,
    alarms: Option<AlarmStatus>,
    requests: Option<Requests>,
    product_info: Option<ProductInfo>,
    modules: Option<ModuleCounts>,
    cell_extremes: Option<CellExtremes>,
    energy: Option<EnergyCounters>,
    installed_capacity: Option<AmpHours>,
    texts: [Option<String>; FrameKind::COUNT],
}

impl BatteryState {
    /// A state with nothing received.
    pub fn new() -> BatteryState {
        BatteryState::default()
    }

    /// Records a decoded frame received at `now`.
    pub fn apply(&mut self, now: Timestamp, telemetry: Telemetry) {
        let kind = telemetry.kind();
        match telemetry {
            Telemetry::Limits(v) => self.limits = Some(v),
            Telemetry::StateOfCharge(v) => self.soc = Some(v),
            Telemetry::Measurements(v) => self.measurements = Some(v),
            Telemetry::Protection(v) => self.protection = Some(v),
            Telemetry::Alarms(v) => self.alarms = Some(v),
            Telemetry::Requests(v) => self.requests = Some(v),
            Telemetry::ProductInfo(v) => self.product_info = Some(v),
            Telemetry::ModuleCounts(v) => self.modules = Some(v),
            Telemetry::CellExtremes(v) => self.cell_extremes = Some(v),
            Telemetry::Energy(v) => self.energy = Some(v),
            Telemetry::InstalledCapacity(v) => self.installed_capacity = Some(v.capacity),
            Telemetry::Text(text) => self.texts[kind.index()] = Some(text.into_text()),
        }
        self.seen[kind.index()] = Some(now);
        self.received[kind.index()] = self.received[kind.index()].saturating_add(1);
    }

    /// When a frame of `kind` was last accepted.
    pub fn last_seen(&self, kind: FrameKind) -> Option<Timestamp> {
        self.seen[kind.index()]
    }

    /// When any frame was last accepted.
    pub fn last_frame_at(&self) -> Option<Timestamp> {
        self.seen.iter().flatten().max().copied()
    }

    /// How many frames of `kind` were accepted.
    pub fn frames_received(&self, kind: FrameKind) -> u64 {
        self.received[kind.index()]
    }

    /// Time since a frame of `kind` was last accepted.
    pub fn age(&self, kind: FrameKind, now: Timestamp) -> Option<Duration> {
        self.last_seen(kind)
            .map(|t| now.saturating_duration_since(t))
    }

    /// Whether a frame of `kind` was accepted within `max_age` before `now`.
    pub fn is_fresh(&self, kind: FrameKind, now: Timestamp, max_age: Duration) -> bool {
        self.age(kind, now).is_some_and(|age| age <= max_age)
    }

    /// Required frames not accepted within `max_age` (never received included), in
    /// identifier order.
    pub fn stale_required(&self, now: Timestamp, max_age: Duration) -> Vec<FrameKind> {
        FrameKind::REQUIRED
            .into_iter()
            .filter(|&k| !self.is_fresh(k, now, max_age))
            .collect()
    }

    /// Whether the battery is communicating: every required frame fresh.
    pub fn communication(&self, now: Timestamp, max_age: Duration) -> Communication {
        let stale = self.stale_required(now, max_age);
        if stale.is_empty() {
            Communication::Communicating
        } else {
            Communication::Stale(stale)
        }
    }

    /// 0x351.
    pub fn limits(&self) -> Option<ChargeLimits> {
        self.limits
    }

    /// 0x355.
    pub fn state_of_charge(&self) -> Option<StateOfCharge> {
        self.soc
    }

    /// 0x356.
    pub fn measurements(&self) -> Option<Measurements> {
        self.measurements
    }

    /// 0x359.
    pub fn protection(&self) -> Option<ProtectionStatus> {
        self.protection
    }

    /// 0x35A.
    pub fn alarms(&self) -> Option<AlarmStatus> {
        self.alarms
    }

    /// Alarms reported active by the last 0x35A (empty when none was received).
    pub fn active_alarms(&self) -> Vec<AlarmField> {
        self.alarms
            .map(|a| a.active(Severity::Alarm))
            .unwrap_or_default()
    }

    /// Warnings reported active by the last 0x35A.
    pub fn active_warnings(&self) -> Vec<AlarmField> {
        self.alarms
            .map(|a| a.active(Severity::Warning))
            .unwrap_or_default()
    }

    /// 0x35C.
    pub fn requests(&self) -> Option<Requests> {
        self.requests
    }

    /// 0x373.
    pub fn cell_extremes(&self) -> Option<CellExtremes> {
        self.cell_extremes
    }

    /// 0x378.
    pub fn energy(&self) -> Option<EnergyCounters> {
        self.energy
    }

    /// The last text of a text frame kind (0x35E, 0x370, 0x371, 0x374-0x377, 0x380,
    /// 0x381, 0x382), as decoded; `None` for other kinds or when never received.
    pub fn text(&self, kind: FrameKind) -> Option<&str> {
        self.texts[kind.index()].as_deref()
    }

    fn whole_text(&self, kind: FrameKind) -> Option<String> {
        self.text(kind).filter(|t| !t.is_empty()).map(str::to_owned)
    }

    /// The identity assembled from the identity frames received so far.
    pub fn identity(&self) -> BatteryIdentity {
        BatteryIdentity {
            manufacturer: self.whole_text(FrameKind::Manufacturer),
            bms_name: join_halves(
                self.text(FrameKind::BmsName1),
                self.text(FrameKind::BmsName2),
            ),
            product_info: self.product_info,
            installed_capacity: self.installed_capacity,
            modules: self.modules,
            serial: join_halves(self.text(FrameKind::Serial1), self.text(FrameKind::Serial2)),
            product_name: self.whole_text(FrameKind::ProductName),
        }
    }
}
