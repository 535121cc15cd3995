//! The engine's one interface to a plugin, and its in-process implementation.
//!
//! The pipeline talks to plugins only through [`VendorPlugin`] and [`VendorSession`].
//! Today [`InProcessPlugin`] stands behind them, calling the library loaded into the
//! daemon; a crash-isolated host process (a child that loads the library and relays the
//! calls) can later implement the same traits without touching the pipeline.

use super::types::{
    BatteryMatch, DecodedVersion, PackageRejection, PackageSummary, PluginFailure, PluginInfo,
    SessionReport,
};
use bmsfw_plugin_api::{
    AbortReason, BatteryIdentity, BoxedPackageSource, BoxedSession, CanFrame, PackageSource,
    PackageSource_TO, PluginModule_Ref, SessionOptions, SourceError, Timestamp,
    abi_stable::{
        sabi_trait::TD_Opaque,
        std_types::{ROption, RResult, RSlice, RSliceMut, RString, RVec},
    },
};
use std::fmt;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;

/// Largest checkpoint the engine journals, in bytes.
pub const MAX_CHECKPOINT_LEN: usize = 64 * 1024;

/// A package the engine lends to a plugin: random access, read in place.
pub trait PackageRead: Send + Sync + 'static {
    /// Size in bytes.
    fn len(&self) -> u64;
    /// Whether the package holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads up to `buf.len()` bytes at `offset`; 0 at or past the end.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// The open file behind the package, when there is one: a plugin host receives it
    /// as a read-only descriptor (other packages are copied into a sealed memfd).
    fn descriptor(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }
}

impl PackageRead for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.as_slice().len());
        let n = buf.len().min(self.as_slice().len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
}

/// A package file on disk (the staging area), read with positioned reads.
#[derive(Debug)]
pub struct FilePackage {
    file: std::fs::File,
    len: u64,
}

impl FilePackage {
    /// Opens `path`; its size is taken once, at open.
    pub fn open(path: &Path) -> io::Result<FilePackage> {
        let file = std::fs::File::open(path)?;
        FilePackage::from_file(file)
    }

    /// A package read from an open file (the plugin host's package descriptor); its size
    /// is taken once, now.
    pub fn from_file(file: std::fs::File) -> io::Result<FilePackage> {
        let len = file.metadata()?.len();
        Ok(FilePackage { file, len })
    }

    /// The open file.
    pub fn file(&self) -> &std::fs::File {
        &self.file
    }
}

impl PackageRead for FilePackage {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        if offset >= self.len {
            return Ok(0);
        }
        let max = usize::try_from(self.len - offset).unwrap_or(usize::MAX);
        let n = buf.len().min(max);
        self.file.read_at(&mut buf[..n], offset)
    }
    fn descriptor(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        Some(self.file.as_fd())
    }
}

/// Everything a session starts from.
pub struct SessionStart {
    /// The battery to update.
    pub battery: BatteryIdentity,
    /// The staged package.
    pub package: Arc<dyn PackageRead>,
    /// The engine's options.
    pub options: SessionOptions,
    /// A journaled checkpoint to resume from.
    pub resume: Option<Vec<u8>>,
}

/// A loaded vendor plugin, as the engine uses it.
pub trait VendorPlugin: Send + Sync {
    /// The plugin's identity, checked at load.
    fn info(&self) -> &PluginInfo;
    /// Whether `battery` is the plugin's, and updatable.
    fn match_battery(&self, battery: &BatteryIdentity) -> Result<BatteryMatch, PluginFailure>;
    /// Decodes raw version bytes.
    fn decode_version(&self, raw: &[u8]) -> Result<DecodedVersion, PluginFailure>;
    /// Inspects a package.
    fn inspect_package(
        &self,
        package: Arc<dyn PackageRead>,
    ) -> Result<PackageSummary, PackageRejection>;
    /// Starts a transfer session.
    fn start_session(&self, start: SessionStart) -> Result<Box<dyn VendorSession>, PluginFailure>;
    /// The process ids of the plugin's long-lived host processes, for measuring what they
    /// cost; empty for a plugin in this process.
    fn host_pids(&self) -> Vec<u32> {
        Vec::new()
    }
}

/// A running transfer session (sans-IO), as the engine drives it.
pub trait VendorSession: Send {
    /// A frame the plugin receives arrived.
    fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame);
    /// The deadline passed.
    fn handle_timeout(&mut self, now: Timestamp);
    /// Calls [`VendorSession::handle_timeout`] when the session's own deadline is at or
    /// before `now`. A hosted session defers the check to its next round trip.
    fn handle_timeout_if_due(&mut self, now: Timestamp) {
        if self.poll_timeout().is_some_and(|due| now >= due) {
            self.handle_timeout(now);
        }
    }
    /// The next frame to send.
    fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame>;
    /// Up to `max` frames to send now, appended to `out` in order; fewer than `max` means
    /// the session has nothing more for now. A hosted session fetches them in one round
    /// trip.
    fn poll_transmit_batch(&mut self, now: Timestamp, max: usize, out: &mut Vec<CanFrame>) {
        for _ in 0..max {
            match self.poll_transmit(now) {
                Some(frame) => out.push(frame),
                None => break,
            }
        }
    }
    /// The next deadline.
    fn poll_timeout(&mut self) -> Option<Timestamp>;
    /// Phase, progress, outcome.
    fn status(&mut self) -> SessionReport;
    /// Stops the session.
    fn abort(&mut self, now: Timestamp, code: u32, message: &str);
    /// Bytes to journal for a resume; empty when the BMS cannot resume.
    fn checkpoint(&mut self) -> Vec<u8>;
    /// The firmware the BMS runs as the session read it over the vendor's protocol (as
    /// precisely as it tells), once read; `None` before, or from a plugin that does not
    /// say (contract 1.0).
    fn running_version(&mut self) -> Option<DecodedVersion>;
}

/// The engine's package behind the plugin-api [`PackageSource`] trait object.
pub(crate) struct HostSource<P: PackageRead + ?Sized = dyn PackageRead>(pub(crate) Arc<P>);

impl<P: PackageRead + ?Sized> PackageSource for HostSource<P> {
    fn len(&self) -> u64 {
        self.0.len()
    }

    fn read_at(&self, offset: u64, mut buf: RSliceMut<'_, u8>) -> RResult<usize, SourceError> {
        // This runs inside an `extern "C"` call from the plugin: nothing may unwind.
        let read = catch_unwind(AssertUnwindSafe(|| self.0.read_at(offset, &mut buf)));
        match read {
            Ok(Ok(n)) => RResult::ROk(n),
            Ok(Err(e)) => RResult::RErr(SourceError {
                message: RString::from(format!("reading the package at byte {offset}: {e}")),
            }),
            Err(_) => RResult::RErr(SourceError {
                message: RString::from("the engine's package reader failed"),
            }),
        }
    }
}

pub(crate) fn boxed_source(package: Arc<dyn PackageRead>) -> BoxedPackageSource {
    PackageSource_TO::from_value(HostSource(package), TD_Opaque)
}

/// A plugin library loaded into this process.
pub struct InProcessPlugin {
    module: PluginModule_Ref,
    info: PluginInfo,
}

impl fmt::Debug for InProcessPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessPlugin")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Why a plugin's identity could not be taken.
#[derive(Debug)]
pub(crate) enum IdentityError {
    /// The entry point failed (PLUGIN_FAULT for a panic).
    Failed(PluginFailure),
    /// The identity breaks the contract.
    Invalid(String),
}

impl InProcessPlugin {
    /// Asks the module for its identity and checks it.
    pub(crate) fn new(module: PluginModule_Ref) -> Result<InProcessPlugin, IdentityError> {
        let identity = (module.identity())()
            .into_result()
            .map_err(|f| IdentityError::Failed(PluginFailure::from_abi(f)))?;
        let info = PluginInfo::from_abi(identity).map_err(IdentityError::Invalid)?;
        Ok(InProcessPlugin { module, info })
    }
}

impl VendorPlugin for InProcessPlugin {
    fn info(&self) -> &PluginInfo {
        &self.info
    }

    fn match_battery(&self, battery: &BatteryIdentity) -> Result<BatteryMatch, PluginFailure> {
        (self.module.match_battery())(battery)
            .into_result()
            .map_err(PluginFailure::from_abi)
            .and_then(BatteryMatch::from_abi)
    }

    fn decode_version(&self, raw: &[u8]) -> Result<DecodedVersion, PluginFailure> {
        (self.module.decode_version())(RSlice::from_slice(raw))
            .into_result()
            .map_err(PluginFailure::from_abi)
            .and_then(DecodedVersion::from_abi)
    }

    fn inspect_package(
        &self,
        package: Arc<dyn PackageRead>,
    ) -> Result<PackageSummary, PackageRejection> {
        let len = package.len();
        let info = (self.module.inspect_package())(boxed_source(package))
            .into_result()
            .map_err(PackageRejection::from_abi)?;
        Ok(PackageSummary::from_abi(info, len)?)
    }

    fn start_session(&self, start: SessionStart) -> Result<Box<dyn VendorSession>, PluginFailure> {
        let resume = match start.resume {
            Some(bytes) => ROption::RSome(RVec::from(bytes)),
            None => ROption::RNone,
        };
        let session = (self.module.start_session())(
            &start.battery,
            boxed_source(start.package),
            &start.options,
            resume,
        )
        .into_result()
        .map_err(PluginFailure::from_abi)?;
        Ok(Box::new(InProcessSession {
            state: SessionState::Running(session),
            guard: ReportGuard::default(),
        }))
    }
}

/// Where an in-process session is.
enum SessionState {
    /// Calls go to the plugin.
    Running(BoxedSession),
    /// The plugin broke the contract (or panicked): the session object was dropped and
    /// the session stays failed.
    Faulted(PluginFailure),
}

/// The contract's rules on a session's reports, kept across calls: a final phase may not
/// change, and a failed session stays failed with what it reported last.
#[derive(Debug, Default)]
pub(crate) struct ReportGuard {
    last_progress: (u64, u64),
    /// The first final report; a final phase may not change afterwards.
    final_report: Option<SessionReport>,
}

impl ReportGuard {
    /// Checks a status as the plugin returned it.
    pub(crate) fn check(
        &mut self,
        status: bmsfw_plugin_api::SessionStatus,
    ) -> Result<SessionReport, PluginFailure> {
        let report =
            SessionReport::from_abi(status).and_then(|report| match &self.final_report {
                Some(first) if *first != report => Err(PluginFailure::contract(format_args!(
                    "the session changed its final status from {:?} to {:?}",
                    first.phase, report.phase
                ))),
                _ => Ok(report),
            })?;
        self.last_progress = (report.bytes_done, report.bytes_total);
        if report.phase.is_final() && self.final_report.is_none() {
            self.final_report = Some(report.clone());
        }
        Ok(report)
    }

    /// A failed report with the last progress.
    pub(crate) fn failed(&self, failure: PluginFailure) -> SessionReport {
        SessionReport::failed(failure, self.last_progress.0, self.last_progress.1)
    }

    /// Checks a checkpoint's length.
    pub(crate) fn checkpoint(bytes: &[u8]) -> Result<(), PluginFailure> {
        if bytes.len() > MAX_CHECKPOINT_LEN {
            return Err(PluginFailure::contract(format_args!(
                "checkpoint of {} bytes, at most {MAX_CHECKPOINT_LEN} are allowed",
                bytes.len()
            )));
        }
        Ok(())
    }
}

/// A session of an [`InProcessPlugin`]. Checks every status against the contract and
/// stays failed with `PLUGIN_FAULT` once the plugin breaks it.
pub struct InProcessSession {
    state: SessionState,
    guard: ReportGuard,
}

impl fmt::Debug for InProcessSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessSession")
            .field("faulted", &matches!(self.state, SessionState::Faulted(_)))
            .field("guard", &self.guard)
            .finish_non_exhaustive()
    }
}

impl InProcessSession {
    fn fault(&mut self, failure: PluginFailure) {
        tracing::warn!(%failure, "plugin session faulted");
        self.state = SessionState::Faulted(failure);
    }

    fn running(&mut self) -> Option<&mut BoxedSession> {
        match &mut self.state {
            SessionState::Running(s) => Some(s),
            SessionState::Faulted(_) => None,
        }
    }
}

impl VendorSession for InProcessSession {
    fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        if let Some(s) = self.running() {
            s.handle_frame(now, *frame);
        }
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        if let Some(s) = self.running() {
            s.handle_timeout(now);
        }
    }

    fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        self.running()?.poll_transmit(now).into_option()
    }

    fn poll_timeout(&mut self) -> Option<Timestamp> {
        self.running()?.poll_timeout().into_option()
    }

    fn status(&mut self) -> SessionReport {
        let s = match &mut self.state {
            SessionState::Running(s) => s,
            SessionState::Faulted(f) => return self.guard.failed(f.clone()),
        };
        match self.guard.check(s.status()) {
            Ok(report) => report,
            Err(failure) => {
                self.fault(failure.clone());
                self.guard.failed(failure)
            }
        }
    }

    fn abort(&mut self, now: Timestamp, code: u32, message: &str) {
        if let Some(s) = self.running() {
            s.abort(now, AbortReason::new(code, message));
        }
    }

    fn running_version(&mut self) -> Option<DecodedVersion> {
        let v = self.running()?.running_version().into_option()?;
        match DecodedVersion::from_abi(v) {
            Ok(v) => Some(v),
            Err(failure) => {
                self.fault(failure);
                None
            }
        }
    }

    fn checkpoint(&mut self) -> Vec<u8> {
        let Some(s) = self.running() else {
            return Vec::new();
        };
        let bytes = s.checkpoint();
        if let Err(failure) = ReportGuard::checkpoint(&bytes) {
            self.fault(failure);
            return Vec::new();
        }
        bytes.into_vec()
    }
}
