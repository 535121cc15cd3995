//! The BMS-Can monitor of one bus: decodes every frame into the bus's battery state.
//!
//! # One broadcast identity per bus
//!
//! BMS-Can has no addresses: one BMS per bus broadcasts 0x351..0x382, and every frame
//! with those identifiers is taken as coming from it. A pack of several modules behind
//! one BMS is one battery here (0x372 counts its modules). When a bus carries several
//! BMSs (for example several CANopen nodes of one vendor), their BMS-Can frames cannot
//! be told apart on this layer; the vendor's own protocol distinguishes them. The
//! monitor therefore keeps exactly one [`BatteryState`] per bus and watches the
//! identity frames (manufacturer, 0x35F, BMS name, serial, product name): a firmware
//! update changes them once, while two BMSs interleaving change them on almost every
//! frame. [`BmsCanMonitor::broadcasters`] reports the latter as
//! [`Broadcasters::Conflicting`] so that the engine can refuse to treat the mixed state
//! as one battery's.

use super::state::BatteryState;
use bmsfw_plugin_api::{CanFrame, Timestamp};
use bmsfw_protocols::bms_can::{DecodeError, FrameKind, RejectReason, Telemetry};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// Identity changes within [`BmsCanMonitor::broadcasters`]'s window from which the bus
/// is taken to carry more than one BMS.
pub const CONFLICT_CHANGES: usize = 4;

const IDENTITY_KINDS: [FrameKind; 7] = [
    FrameKind::Manufacturer,
    FrameKind::ProductInfo,
    FrameKind::BmsName1,
    FrameKind::BmsName2,
    FrameKind::Serial1,
    FrameKind::Serial2,
    FrameKind::ProductName,
];

/// What the monitor did with a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameOutcome {
    /// Decoded and applied to the battery state.
    Applied(FrameKind),
    /// A BMS-Can frame that failed to decode; counted and ignored.
    Rejected(DecodeError),
    /// Not a BMS-Can broadcast frame (another protocol, or an extended identifier).
    NotBmsCan,
}

/// Rejected frames, counted per frame kind and reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RejectCounts {
    counts: BTreeMap<(FrameKind, RejectReason), u64>,
}

impl RejectCounts {
    fn record(&mut self, kind: FrameKind, error: &DecodeError) {
        let n = self.counts.entry((kind, error.reason())).or_default();
        *n = n.saturating_add(1);
    }

    /// Frames of `kind` rejected for `reason`.
    pub fn get(&self, kind: FrameKind, reason: RejectReason) -> u64 {
        self.counts.get(&(kind, reason)).copied().unwrap_or(0)
    }

    /// Frames rejected for `reason`, all kinds together.
    pub fn by_reason(&self, reason: RejectReason) -> u64 {
        self.counts
            .iter()
            .filter(|((_, r), _)| *r == reason)
            .map(|(_, n)| n)
            .sum()
    }

    /// Every rejected frame.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// The non-zero counts, by kind then reason.
    pub fn iter(&self) -> impl Iterator<Item = (FrameKind, RejectReason, u64)> + '_ {
        self.counts.iter().map(|(&(k, r), &n)| (k, r, n))
    }
}

/// An identity frame whose content differed from the previous one of its kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdentityChange {
    /// When the differing frame arrived.
    pub at: Timestamp,
    /// Its kind.
    pub kind: FrameKind,
}

/// How many BMSs seem to broadcast BMS-Can on the bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Broadcasters {
    /// No sign of more than one: the identity is stable (or changed only rarely).
    Single,
    /// The identity keeps changing: several BMSs interleave their frames.
    Conflicting {
        /// Identity changes within the window.
        changes: usize,
        /// The latest change.
        last: IdentityChange,
    },
}

/// Tracks the battery broadcasting BMS-Can on one bus (sans-IO: it is handed frames and
/// their reception time, and never reads a clock).
#[derive(Clone, Debug)]
pub struct BmsCanMonitor {
    bus: String,
    battery: Option<BatteryState>,
    rejects: RejectCounts,
    other_frames: u64,
    last_identity: BTreeMap<FrameKind, Vec<u8>>,
    recent_changes: VecDeque<IdentityChange>,
    identity_changes: u64,
}

impl BmsCanMonitor {
    /// Oldest identity changes kept for [`BmsCanMonitor::broadcasters`].
    const RECENT_CHANGES: usize = 64;

    /// A monitor for the bus named `bus` (`can0`, `sim0`...), having seen nothing.
    pub fn new(bus: impl Into<String>) -> BmsCanMonitor {
        BmsCanMonitor {
            bus: bus.into(),
            battery: None,
            rejects: RejectCounts::default(),
            other_frames: 0,
            last_identity: BTreeMap::new(),
            recent_changes: VecDeque::new(),
            identity_changes: 0,
        }
    }

    /// The bus's name.
    pub fn bus(&self) -> &str {
        &self.bus
    }

    /// Handles one frame received at `now`.
    pub fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) -> FrameOutcome {
        let Some(kind) = FrameKind::from_id(frame.id()) else {
            self.other_frames = self.other_frames.saturating_add(1);
            return FrameOutcome::NotBmsCan;
        };
        match Telemetry::decode(kind, frame.data()) {
            Ok(telemetry) => {
                if IDENTITY_KINDS.contains(&kind) {
                    self.watch_identity(now, kind, frame.data());
                }
                self.battery
                    .get_or_insert_with(BatteryState::new)
                    .apply(now, telemetry);
                FrameOutcome::Applied(kind)
            }
            Err(error) => {
                tracing::debug!(bus = %self.bus, %frame, %error, "BMS-Can frame rejected");
                self.rejects.record(kind, &error);
                FrameOutcome::Rejected(error)
            }
        }
    }

    fn watch_identity(&mut self, now: Timestamp, kind: FrameKind, data: &[u8]) {
        match self.last_identity.get_mut(&kind) {
            Some(previous) if previous.as_slice() == data => {}
            Some(previous) => {
                tracing::info!(bus = %self.bus, %kind, old = ?previous, new = ?data, "battery identity changed");
                previous.clear();
                previous.extend_from_slice(data);
                self.identity_changes = self.identity_changes.saturating_add(1);
                if self.recent_changes.len() == Self::RECENT_CHANGES {
                    self.recent_changes.pop_front();
                }
                self.recent_changes
                    .push_back(IdentityChange { at: now, kind });
            }
            None => {
                self.last_identity.insert(kind, data.to_vec());
            }
        }
    }

    /// The battery state, or `None` until a BMS-Can frame has been accepted.
    pub fn battery(&self) -> Option<&BatteryState> {
        self.battery.as_ref()
    }

    /// Rejected frames by kind and reason.
    pub fn rejections(&self) -> &RejectCounts {
        &self.rejects
    }

    /// Frames that were not BMS-Can broadcasts.
    pub fn other_frames(&self) -> u64 {
        self.other_frames
    }

    /// Identity frames whose content changed, since the monitor started.
    pub fn identity_changes(&self) -> u64 {
        self.identity_changes
    }

    /// Whether the identity changed [`CONFLICT_CHANGES`] times or more within `window`
    /// before `now`.
    pub fn broadcasters(&self, now: Timestamp, window: Duration) -> Broadcasters {
        let recent: Vec<&IdentityChange> = self
            .recent_changes
            .iter()
            .filter(|c| now.saturating_duration_since(c.at) <= window)
            .collect();
        match recent.last() {
            Some(&&last) if recent.len() >= CONFLICT_CHANGES => Broadcasters::Conflicting {
                changes: recent.len(),
                last,
            },
            _ => Broadcasters::Single,
        }
    }
}
