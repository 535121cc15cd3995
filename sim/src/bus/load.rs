//! The bus-load meter: exact bits carried, stuff bits included, as `canbusload -e`
//! counts them.

use bmsfw_plugin_api::CanId;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

/// What one identifier has cost the bus.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IdLoad {
    /// Frames carried without error.
    pub frames: u64,
    /// Bits of those frames, stuff bits and intermission included.
    pub bits: u64,
    /// Transmissions destroyed by an error frame.
    pub errors: u64,
}

/// A reading of the bus-load meter.
#[derive(Clone, Debug, PartialEq)]
pub struct BusLoad {
    /// End of the sliding window.
    pub at: Instant,
    /// Length of the sliding window.
    pub window: Duration,
    /// Time the bus was busy inside the window (frames and error frames).
    pub busy: Duration,
    /// Bit times the bus was busy inside the window (a frame that straddles the window's
    /// start counts with the part inside).
    pub window_bits: f64,
    /// Bus load inside the window, 0 to 100 %.
    pub percent: f64,
    /// Bits carried since the bus started, error frames included.
    pub total_bits: u64,
    /// Frames carried without error since the bus started.
    pub frames: u64,
    /// Transmissions destroyed by an error frame since the bus started.
    pub error_frames: u64,
}

/// One transmission the meter remembers while it is inside the window, in nanoseconds
/// since the bus's epoch.
#[derive(Clone, Copy, Debug)]
struct Busy {
    start: u64,
    end: u64,
}

/// Sliding-window load meter. Transmissions are recorded in order of time.
#[derive(Debug)]
pub(crate) struct LoadMeter {
    epoch: Instant,
    bitrate: u32,
    window: Duration,
    recent: VecDeque<Busy>,
    total_bits: u64,
    frames: u64,
    error_frames: u64,
    per_id: BTreeMap<CanId, IdLoad>,
}

/// Whether a recorded transmission was carried or destroyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Carried,
    Destroyed,
}

impl LoadMeter {
    pub(crate) fn new(epoch: Instant, bitrate: u32, window: Duration) -> LoadMeter {
        LoadMeter {
            epoch,
            bitrate,
            window,
            recent: VecDeque::new(),
            total_bits: 0,
            frames: 0,
            error_frames: 0,
            per_id: BTreeMap::new(),
        }
    }

    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn window_nanos(&self) -> u64 {
        u64::try_from(self.window.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Records a transmission of `id` that kept the bus busy from `start` to `end` for
    /// `bits` bit times.
    pub(crate) fn record(
        &mut self,
        id: CanId,
        start: Instant,
        end: Instant,
        bits: u32,
        outcome: Outcome,
    ) {
        let (start, end) = (self.nanos(start), self.nanos(end));
        self.recent.push_back(Busy { start, end });
        let horizon = end.saturating_sub(self.window_nanos());
        while self.recent.front().is_some_and(|b| b.end <= horizon) {
            self.recent.pop_front();
        }
        self.total_bits += u64::from(bits);
        let entry = self.per_id.entry(id).or_default();
        match outcome {
            Outcome::Carried => {
                self.frames += 1;
                entry.frames += 1;
                entry.bits += u64::from(bits);
            }
            Outcome::Destroyed => {
                self.error_frames += 1;
                entry.errors += 1;
            }
        }
    }

    /// The load over the window that ends at `at`. Readings are exact for any `at` no
    /// earlier than the end of the last recorded transmission minus the window.
    pub(crate) fn reading(&self, at: Instant) -> BusLoad {
        let end = self.nanos(at);
        let start = end.saturating_sub(self.window_nanos());
        let busy: u64 = self
            .recent
            .iter()
            .map(|b| b.end.min(end).saturating_sub(b.start.max(start)))
            .sum();
        let window_len = end - start;
        let window_bits = busy as f64 * f64::from(self.bitrate) / 1e9;
        BusLoad {
            at,
            window: self.window,
            busy: Duration::from_nanos(busy),
            window_bits,
            percent: if window_len == 0 {
                0.0
            } else {
                busy as f64 * 100.0 / window_len as f64
            },
            total_bits: self.total_bits,
            frames: self.frames,
            error_frames: self.error_frames,
        }
    }

    /// Per-identifier counts since the bus started, in identifier order.
    pub(crate) fn per_id(&self) -> Vec<(CanId, IdLoad)> {
        self.per_id.iter().map(|(id, l)| (*id, *l)).collect()
    }
}
