//! What a model shows the simulator and the tests.

use abi_stable::{StableAbi, std_types::RVec};
use bmsfw_plugin_api::{CanFrame, CanId};

/// The frames a model listens to: those whose identifier, masked, equals `id` masked.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameFilter {
    /// The identifier to compare.
    pub id: CanId,
    /// The bits of the identifier compared (0x7FF: exactly `id`, for a standard one).
    pub mask: u32,
}

impl FrameFilter {
    /// Exactly the frames with identifier `id`.
    pub const fn exact(id: CanId) -> FrameFilter {
        FrameFilter {
            id,
            mask: if id.is_extended() { 0x1FFF_FFFF } else { 0x7FF },
        }
    }

    /// Whether `frame` passes the filter (an extended identifier never passes a standard
    /// filter, nor the reverse).
    pub fn matches(&self, frame: &CanFrame) -> bool {
        let got = frame.id();
        got.is_extended() == self.id.is_extended()
            && got.raw() & self.mask == self.id.raw() & self.mask
    }
}

/// Whether the BMS broadcasts its BMS-Can telemetry.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Telemetry {
    /// Broadcasting on schedule.
    Sending,
    /// Silent: the BMS is restarting, in its bootloader, or off.
    Silent,
}

/// What the simulator's BMS-Can telemetry shows of the model, read after every call.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub struct BmsView {
    /// 0x35F bytes 2-3: the firmware the BMS runs, as its vendor encodes it.
    pub firmware: [u8; 2],
    /// Whether the telemetry is sent.
    pub telemetry: Telemetry,
}

impl BmsView {
    /// A BMS running `firmware` and broadcasting.
    pub const fn running(firmware: [u8; 2]) -> BmsView {
        BmsView {
            firmware,
            telemetry: Telemetry::Sending,
        }
    }

    /// A silent BMS whose telemetry, once back, names `firmware`.
    pub const fn silent(firmware: [u8; 2]) -> BmsView {
        BmsView {
            firmware,
            telemetry: Telemetry::Silent,
        }
    }
}

/// The ground truth of the model's flash, for tests and campaigns: what the BMS would
/// really boot, whatever its telemetry or its protocol says.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct FlashView {
    /// The version bytes of the image the BMS runs (or boots next, when off).
    pub running_version: RVec<u8>,
    /// Whether that image arrived whole and passed the BMS's own checks. A model that
    /// would boot an image it received incompletely or could not verify says `false`:
    /// that is the failure no update may cause.
    pub running_verified: bool,
    /// Images the BMS activated since the model started.
    pub activations: u32,
    /// Times the BMS booted since the model started (power restored, restarts).
    pub boots: u32,
}

impl FlashView {
    /// A flash running a verified image of `running_version`, nothing activated yet.
    pub fn new(running_version: Vec<u8>) -> FlashView {
        FlashView {
            running_version: running_version.into(),
            running_verified: true,
            activations: 0,
            boots: 0,
        }
    }
}
