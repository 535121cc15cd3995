//! The transfer session: a sans-IO state machine that moves one package into one battery.
// `#[sabi_trait]` (abi_stable 0.11) places trait impls inside a generated module.
#![allow(non_local_definitions)]

use crate::error::{ErrorCode, Failure};
use crate::frame::CanFrame;
use crate::time::Timestamp;
use crate::version::FirmwareVersion;
use abi_stable::{
    StableAbi, sabi_trait,
    std_types::{RBox, ROption, RString, RVec},
};
use std::fmt;

/// The phase of a session, as shown to the installer.
#[repr(transparent)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Phase(pub u8);

impl Phase {
    /// Moving the image to the BMS ("Transferring to battery", with a percentage).
    pub const TRANSFERRING: Phase = Phase(1);
    /// The BMS checks and applies the image.
    pub const INSTALLING: Phase = Phase(2);
    /// The battery restarts into the new firmware; it may be silent on the bus.
    pub const RESTARTING: Phase = Phase(3);
    /// Confirming the battery runs the package's version.
    pub const VERIFYING: Phase = Phase(4);
    /// The update completed. Final.
    pub const DONE: Phase = Phase(5);
    /// The update failed; `SessionStatus::outcome` says why. Final.
    pub const FAILED: Phase = Phase(6);

    /// Whether the phase is final (`DONE` or `FAILED`).
    pub const fn is_final(self) -> bool {
        matches!(self, Phase::DONE | Phase::FAILED)
    }

    /// The phase's name for a known phase.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self {
            Phase::TRANSFERRING => "Transferring",
            Phase::INSTALLING => "Installing",
            Phase::RESTARTING => "Restarting",
            Phase::VERIFYING => "Verifying",
            Phase::DONE => "Done",
            Phase::FAILED => "Failed",
            _ => return None,
        })
    }
}

impl fmt::Debug for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "Phase({})", self.0),
        }
    }
}

/// Where one module behind the BMS is in its update.
#[repr(transparent)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModuleState(pub u8);

impl ModuleState {
    /// Not started yet.
    pub const PENDING: ModuleState = ModuleState(0);
    /// Receiving its image.
    pub const UPDATING: ModuleState = ModuleState(1);
    /// Updated and running the new version.
    pub const DONE: ModuleState = ModuleState(2);
    /// Its update failed.
    pub const FAILED: ModuleState = ModuleState(3);
    /// Left alone (already current, or not selected in the options).
    pub const SKIPPED: ModuleState = ModuleState(4);

    /// The state's name for a known state.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self {
            ModuleState::PENDING => "Pending",
            ModuleState::UPDATING => "Updating",
            ModuleState::DONE => "Done",
            ModuleState::FAILED => "Failed",
            ModuleState::SKIPPED => "Skipped",
            _ => return None,
        })
    }
}

impl fmt::Debug for ModuleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "ModuleState({})", self.0),
        }
    }
}

/// Progress of one module behind the BMS.
#[repr(C)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct ModuleProgress {
    /// The module's index behind the BMS.
    pub index: u16,
    /// Where it is.
    pub state: ModuleState,
    /// The version it runs, when known.
    pub version: ROption<FirmwareVersion>,
}

/// A session's answer to "where are you?".
#[repr(C)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct SessionStatus {
    /// The current phase.
    pub phase: Phase,
    /// Image bytes the BMS has acknowledged.
    pub bytes_done: u64,
    /// Image bytes to transfer in total.
    pub bytes_total: u64,
    /// Per-module progress; empty when the BMS updates as one.
    pub modules: RVec<ModuleProgress>,
    /// Why the session failed; `RNone` unless `phase` is `FAILED`.
    pub outcome: ROption<Failure>,
}

impl SessionStatus {
    /// A status in `phase` with `bytes_done` of `bytes_total`, no modules, no outcome.
    pub fn new(phase: Phase, bytes_done: u64, bytes_total: u64) -> SessionStatus {
        SessionStatus {
            phase,
            bytes_done,
            bytes_total,
            modules: RVec::new(),
            outcome: ROption::RNone,
        }
    }

    /// A failed status with `failure` as its outcome.
    pub fn failed(failure: Failure, bytes_done: u64, bytes_total: u64) -> SessionStatus {
        SessionStatus {
            outcome: ROption::RSome(failure),
            ..SessionStatus::new(Phase::FAILED, bytes_done, bytes_total)
        }
    }

    /// The failure code when the session failed.
    pub fn failure_code(&self) -> Option<ErrorCode> {
        self.outcome.as_ref().map(|f| f.code).into_option()
    }
}

/// How the engine wants the session to run.
#[repr(C)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(StableAbi, Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionOptions {
    /// The BMS's node id on the bus, when the vendor's protocol addresses nodes and the
    /// engine knows it.
    pub node_id: ROption<u8>,
    /// Which modules behind the BMS to update; empty means every module the package has.
    pub modules: RVec<u16>,
}

/// Why the engine aborts a session.
#[repr(C)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct AbortReason {
    /// The engine's code (a safety gate, a watchdog, the installer's cancel).
    pub code: u32,
    /// The engine's explanation.
    pub message: RString,
}

impl AbortReason {
    /// A reason with the engine's `code` and `message`.
    pub fn new(code: u32, message: impl Into<String>) -> AbortReason {
        AbortReason {
            code,
            message: RString::from(message.into()),
        }
    }
}

/// A transfer session as it crosses the library boundary.
///
/// Sans-IO, like quinn-proto or rustls: it owns no socket, thread, timer or file. The
/// engine hands it every received frame it asked for and the current time, sends the
/// frames it polls, and calls `handle_timeout` at the deadline of `poll_timeout`.
/// Vendors implement [`crate::Session`] instead; the export macro wraps it in this
/// object and guards every call against panics.
#[sabi_trait]
pub trait TransferSession: Send {
    /// A frame arrived from the bus (only identifiers the plugin declared it receives).
    fn handle_frame(&mut self, now: Timestamp, frame: CanFrame);

    /// The deadline of `poll_timeout` has passed.
    fn handle_timeout(&mut self, now: Timestamp);

    /// The next frame to send, if any. Called until it returns `RNone`.
    fn poll_transmit(&mut self, now: Timestamp) -> ROption<CanFrame>;

    /// When `handle_timeout` should next be called, if ever.
    fn poll_timeout(&mut self) -> ROption<Timestamp>;

    /// The phase, progress and outcome.
    fn status(&mut self) -> SessionStatus;

    /// Stop: the session tells the BMS to abandon the update if its protocol can, and
    /// ends `FAILED` with [`ErrorCode::ABORTED`]. The frames it queues to tell the BMS
    /// are the only ones a final session still hands out: the engine polls for them
    /// until `poll_transmit` returns `RNone` or its grace period (500 ms) ends.
    fn abort(&mut self, now: Timestamp, reason: AbortReason);

    /// Opaque bytes from which a new session can resume after a GX restart (the engine
    /// journals them); empty when the BMS cannot resume.
    #[sabi(last_prefix_field)]
    fn checkpoint(&mut self) -> RVec<u8>;

    /// The firmware the BMS runs, as the session read it over the vendor's protocol and as
    /// precisely as that protocol tells (a build that 0x35F does not carry, say); `RNone`
    /// before the session has read it, or when the protocol does not say. The engine uses
    /// it to decide "newer" when 0x35F alone cannot. Since contract 1.1; a plugin built
    /// against 1.0 answers `RNone`.
    fn running_version(&mut self) -> ROption<FirmwareVersion> {
        ROption::RNone
    }
}

/// A session as the plugin hands it to the engine: an owned, boxed trait object.
pub type BoxedSession = TransferSession_TO<'static, RBox<()>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_phases_are_done_and_failed() {
        assert!(Phase::DONE.is_final());
        assert!(Phase::FAILED.is_final());
        assert!(!Phase::RESTARTING.is_final());
        assert_eq!(format!("{:?}", Phase(42)), "Phase(42)");
        let s = SessionStatus::failed(Failure::new(ErrorCode::TIMEOUT, "silent"), 3, 10);
        assert_eq!(s.failure_code(), Some(ErrorCode::TIMEOUT));
        assert_eq!(
            SessionStatus::new(Phase::TRANSFERRING, 0, 1).failure_code(),
            None
        );
    }
}
