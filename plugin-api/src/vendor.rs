//! The Rust API vendors implement: plain traits, no FFI.

use crate::battery::{BatteryIdentity, DeviceMatch};
use crate::error::Failure;
use crate::frame::CanFrame;
use crate::identity::PluginIdentity;
use crate::package::{PackageError, PackageInfo, PackageReader};
use crate::session::{AbortReason, SessionOptions, SessionStatus};
use crate::time::Timestamp;
use crate::version::FirmwareVersion;

/// A vendor plugin. Implement it and call [`export_plugin!`](crate::export_plugin) once.
///
/// The engine creates one instance per loaded library (with [`Plugin::new`], on first
/// use) and calls it from any thread, hence `Send + Sync` and `&self`. A panic in any
/// method is caught and reported to the engine as
/// [`ErrorCode::PLUGIN_FAULT`](crate::ErrorCode::PLUGIN_FAULT); build the library with
/// `panic = "unwind"` (the default), since with `panic = "abort"` a panic ends the GX
/// daemon.
pub trait Plugin: Send + Sync + Sized + 'static {
    /// The transfer session type.
    type Session: Session;

    /// Creates the plugin instance.
    fn new() -> Self;

    /// The plugin's identity. Called once at load; the engine keeps the answer.
    fn identity(&self) -> PluginIdentity;

    /// Whether `battery` is the plugin's and whether its firmware can be updated over CAN.
    /// Answer [`DeviceMatch::not_mine`] for other vendors' batteries.
    fn match_battery(&self, battery: &BatteryIdentity) -> DeviceMatch;

    /// Decodes raw version bytes (0x35F bytes, a package header, a BMS reply).
    fn decode_version(&self, raw: &[u8]) -> Result<FirmwareVersion, Failure>;

    /// Reads the package and reports what it contains, or why it is invalid (with the
    /// byte offset or line of the problem).
    fn inspect_package(&self, package: &mut PackageReader) -> Result<PackageInfo, PackageError>;

    /// Starts a transfer session. The engine has already inspected the package with
    /// [`Plugin::inspect_package`] and checked the battery with [`Plugin::match_battery`].
    fn start_session(&self, request: SessionRequest) -> Result<Self::Session, Failure>;
}

/// Everything a new session gets.
#[derive(Debug)]
pub struct SessionRequest {
    /// The battery to update.
    pub battery: BatteryIdentity,
    /// The package, streamed from the engine's staging area.
    pub package: PackageReader,
    /// The engine's options.
    pub options: SessionOptions,
    /// A checkpoint of an earlier session (from [`Session::checkpoint`]) to resume from,
    /// after a GX restart.
    pub resume: Option<Vec<u8>>,
}

/// A transfer session: a sans-IO state machine.
///
/// It never blocks, sleeps, reads a clock or touches a socket. The engine calls
/// [`Session::handle_frame`] for every frame with an identifier the plugin receives,
/// drains [`Session::poll_transmit`] after every call, and calls
/// [`Session::handle_timeout`] once the time of [`Session::poll_timeout`] has come.
/// Once a method panics the session is dead: the engine sees `FAILED` with
/// `PLUGIN_FAULT` from then on, and no method of it is called again.
pub trait Session: Send + 'static {
    /// A frame arrived.
    fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame);

    /// The deadline of [`Session::poll_timeout`] passed.
    fn handle_timeout(&mut self, now: Timestamp);

    /// The next frame to send.
    fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame>;

    /// The next deadline.
    fn poll_timeout(&self) -> Option<Timestamp>;

    /// Phase, progress and outcome.
    fn status(&self) -> SessionStatus;

    /// Abandon the update (tell the BMS if the protocol can) and end `FAILED` with
    /// [`ErrorCode::ABORTED`](crate::ErrorCode::ABORTED). The frames queued to tell the
    /// BMS are the only ones a final session still hands out.
    fn abort(&mut self, now: Timestamp, reason: &AbortReason);

    /// Opaque bytes a later session can resume from; empty (the default) when the BMS
    /// cannot resume an interrupted transfer.
    fn checkpoint(&self) -> Vec<u8> {
        Vec::new()
    }

    /// The firmware the BMS runs as the session read it over the vendor's protocol, as
    /// precisely as the protocol tells; `None` (the default) before it is read or when the
    /// protocol does not say. Report it as soon as it is read, before anything is erased
    /// or written: when 0x35F shows the version less precisely than the package (no
    /// build), the engine decides from it whether the package is newer, and stops the
    /// session if it is not (the installer's "newer only" choice). Since contract 1.1.
    fn running_version(&self) -> Option<FirmwareVersion> {
        None
    }
}
