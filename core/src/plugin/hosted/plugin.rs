//! A plugin served by host processes: one long-lived host answers the identity calls,
//! and every package inspection and every session gets a host of its own.

use super::process::{HostFault, HostLimits, HostProcess, HostProgram};
use super::session::HostedSession;
use super::wire::{LoadRefusal, Request, Response};
use crate::errors::codes;
use crate::plugin::LoadMethod;
use crate::plugin::host::{PackageRead, SessionStart, VendorPlugin, VendorSession};
use crate::plugin::open::library_descriptor;
use crate::plugin::refusal::RefusalReason;
use crate::plugin::types::{
    BatteryMatch, DecodedVersion, PackageRejection, PackageSummary, PluginFailure, PluginInfo,
    bounded,
};
use bmsfw_plugin_api::{BatteryIdentity, CONTRACT_VERSION, ErrorCode};
use rustix::fd::{AsFd, OwnedFd};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The deadline of each kind of call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Starting a host and loading the library (its constructors and identity).
    pub load: Duration,
    /// `match_battery` and `decode_version`.
    pub identity: Duration,
    /// `inspect_package`, which may read the whole package.
    pub package: Duration,
    /// `start_session`.
    pub start: Duration,
    /// Every session round trip and checkpoint.
    pub session: Duration,
}

impl Default for Deadlines {
    fn default() -> Deadlines {
        Deadlines {
            load: Duration::from_secs(5),
            identity: Duration::from_millis(100),
            package: Duration::from_secs(30),
            start: Duration::from_secs(5),
            session: Duration::from_millis(250),
        }
    }
}

/// How plugin hosts are started and supervised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSettings {
    /// The host executable; `None`: [`HostProgram::locate`] at the first start.
    pub program: Option<HostProgram>,
    /// Each host's resource limits.
    pub limits: HostLimits,
    /// Each call's deadline.
    pub deadlines: Deadlines,
    /// Host failures in a row after which the plugin is suspended (quarantined) until
    /// the daemon restarts.
    pub quarantine_after: u32,
    /// The wait before the first restart after a failure; it doubles with every failure
    /// in a row, up to `backoff_max`.
    pub backoff_first: Duration,
    /// The longest wait before a restart.
    pub backoff_max: Duration,
}

impl Default for HostSettings {
    fn default() -> HostSettings {
        HostSettings {
            program: None,
            limits: HostLimits::default(),
            deadlines: Deadlines::default(),
            quarantine_after: 3,
            backoff_first: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
        }
    }
}

impl HostSettings {
    /// Settings for reviewing a plugin (`bmsfw plugin conformance`, `plugin check`):
    /// every start gets a fresh host at once, and nothing is suspended, so each scenario
    /// reports its own failure.
    pub fn for_review() -> HostSettings {
        HostSettings {
            quarantine_after: u32::MAX,
            backoff_first: Duration::ZERO,
            backoff_max: Duration::ZERO,
            ..HostSettings::default()
        }
    }
}

/// A plugin's record of host failures.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// Failures in a row, per kind ([`Health::SESSION`], [`Health::CALLS`]).
    in_row: [u32; 2],
    /// No host starts before this.
    retry_at: Option<Instant>,
    /// Why the plugin is suspended.
    quarantined: Option<String>,
}

impl Health {
    /// Sessions: a session that ends as its plugin reports is a success.
    pub(crate) const SESSION: usize = 0;
    /// Identity calls and package inspections.
    pub(crate) const CALLS: usize = 1;

    pub(crate) fn record_fault(&mut self, kind: usize, why: &str, settings: &HostSettings) {
        self.in_row[kind] = self.in_row[kind].saturating_add(1);
        let n = self.in_row[kind];
        let backoff = settings
            .backoff_first
            .saturating_mul(1u32 << (n - 1).min(16))
            .min(settings.backoff_max);
        self.retry_at = Some(Instant::now() + backoff);
        if n >= settings.quarantine_after && self.quarantined.is_none() {
            let reason = format!("{n} host failures in a row, the last: {why}");
            tracing::error!(%reason, "plugin quarantined");
            self.quarantined = Some(reason);
        }
    }

    pub(crate) fn record_success(&mut self, kind: usize) {
        self.in_row[kind] = 0;
    }
}

/// What a hosted plugin's hosts share.
pub(crate) struct HostedShared {
    /// `vendor id version`, for messages.
    pub label: String,
    pub info: PluginInfo,
    pub settings: Arc<HostSettings>,
    program: HostProgram,
    /// The library's bytes, sealed.
    library: OwnedFd,
    health: Mutex<Health>,
}

impl HostedShared {
    pub(crate) fn health(&self) -> MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The job's failure for a host fault: code 747, naming the plugin, the call and the
    /// cause.
    pub(crate) fn host_failure(&self, fault: &HostFault) -> PluginFailure {
        PluginFailure {
            code: ErrorCode(codes::PLUGIN_HOST_FAILED),
            message: bounded(&format!(
                "the plugin {} was stopped: its host {} during {} ({}); nothing more was \
                 sent on its behalf",
                self.label,
                fault.cause,
                fault.call,
                fault.cause.kind()
            )),
        }
    }

    /// Records a host fault of `kind` in the plugin's health; returns the job's failure.
    pub(crate) fn fault(&self, kind: usize, fault: &HostFault) -> PluginFailure {
        let failure = self.host_failure(fault);
        self.health()
            .record_fault(kind, &failure.message, &self.settings);
        failure
    }

    /// Why no host may start now, if so.
    fn gate(&self) -> Result<(), PluginFailure> {
        let health = self.health();
        if let Some(reason) = &health.quarantined {
            return Err(PluginFailure {
                code: ErrorCode(codes::PLUGIN_QUARANTINED),
                message: bounded(&format!(
                    "the plugin {} is suspended until the GX device restarts: {reason}",
                    self.label
                )),
            });
        }
        if let Some(at) = health.retry_at {
            let now = Instant::now();
            if now < at {
                return Err(PluginFailure {
                    code: ErrorCode(codes::PLUGIN_HOST_FAILED),
                    message: format!(
                        "the plugin {} failed moments ago; it is started again in {} ms",
                        self.label,
                        (at - now).as_millis()
                    ),
                });
            }
        }
        Ok(())
    }

    /// A new host, loaded and checked to be this plugin; `package` handed over when given.
    /// `role` (`identity`, `inspect`, `session`) names the host in its command line and
    /// in the log.
    fn start_host(
        &self,
        role: &str,
        package: Option<&dyn PackageRead>,
        kind: usize,
    ) -> Result<HostProcess, PluginFailure> {
        self.gate()?;
        let copy;
        let package_fd = match package {
            None => None,
            Some(p) => match p.descriptor() {
                Some(fd) => Some(fd),
                None => {
                    copy = package_memfd(p).map_err(|e| PluginFailure {
                        code: ErrorCode(codes::PLUGIN_HOST_FAILED),
                        message: format!("cannot hand the package to the plugin host: {e}"),
                    })?;
                    Some(copy.as_fd())
                }
            },
        };
        let started = start_loaded(
            &self.program,
            &self.settings,
            &self.library,
            package_fd,
            &format!("{role} {}", self.label),
        );
        let fail = |fault: HostFault| self.fault(kind, &fault);
        match started {
            Ok((host, identity)) => match PluginInfo::from_abi(identity) {
                Ok(info) if info == self.info => Ok(host),
                Ok(info) => Err(fail(HostFault {
                    call: "identity",
                    cause: super::process::HostFaultCause::Protocol(format!(
                        "the library now reports {} {}, it loaded as {} {}",
                        info.vendor_id, info.version, self.info.vendor_id, self.info.version
                    )),
                })),
                Err(why) => Err(fail(HostFault {
                    call: "identity",
                    cause: super::process::HostFaultCause::Protocol(why),
                })),
            },
            Err(Started::Fault(fault)) => Err(fail(fault)),
            Err(Started::Refused(r)) => Err(fail(HostFault {
                call: "load",
                cause: super::process::HostFaultCause::Protocol(format!(
                    "the library no longer loads: {r:?}"
                )),
            })),
        }
    }
}

/// A package without a file behind it, copied into a sealed memfd.
fn package_memfd(package: &dyn PackageRead) -> std::io::Result<OwnedFd> {
    let mut bytes = vec![0u8; usize::try_from(package.len()).unwrap_or(usize::MAX)];
    let mut at = 0;
    while at < bytes.len() {
        let n = package.read_at(at as u64, &mut bytes[at..])?;
        if n == 0 {
            bytes.truncate(at);
            break;
        }
        at += n;
    }
    library_descriptor(&bytes, "package", &LoadMethod::SealedMemfd)
}

/// Why a host could not be started and loaded.
enum Started {
    Fault(HostFault),
    Refused(LoadRefusal),
}

/// Starts a host for `library` and loads it.
fn start_loaded(
    program: &HostProgram,
    settings: &HostSettings,
    library: &OwnedFd,
    package: Option<rustix::fd::BorrowedFd<'_>>,
    label: &str,
) -> Result<(HostProcess, bmsfw_plugin_api::PluginIdentity), Started> {
    let deadline = settings.deadlines.load;
    let mut host = HostProcess::spawn(
        program,
        &settings.limits,
        library.as_fd(),
        package,
        label,
        deadline,
    )
    .map_err(|cause| {
        Started::Fault(HostFault {
            call: "start",
            cause,
        })
    })?;
    let wrong = |host: &mut HostProcess, call: &'static str, other: &Response| {
        let cause = host.fail(super::process::HostFaultCause::Protocol(format!(
            "answered {call} with {}",
            super::process::response_name(other)
        )));
        Started::Fault(HostFault { call, cause })
    };
    match host.call("load", &Request::Load, deadline) {
        Ok(Response::Loaded(Ok(()))) => {}
        Ok(Response::Loaded(Err(refusal))) => return Err(Started::Refused(refusal)),
        Ok(other) => return Err(wrong(&mut host, "load", &other)),
        Err(fault) => return Err(Started::Fault(fault)),
    }
    match host.call("identity", &Request::Identity, settings.deadlines.identity) {
        Ok(Response::Identity(Ok(identity))) => Ok((host, identity)),
        Ok(Response::Identity(Err(failure))) => {
            Err(Started::Refused(LoadRefusal::IdentityFailed(failure)))
        }
        Ok(other) => Err(wrong(&mut host, "identity", &other)),
        Err(fault) => Err(Started::Fault(fault)),
    }
}

/// A plugin library run in plugin host processes, behind the engine's [`VendorPlugin`].
pub struct HostedPlugin {
    shared: Arc<HostedShared>,
    /// The long-lived host of the identity calls; started again after a failure.
    monitor: Mutex<Option<HostProcess>>,
}

impl fmt::Debug for HostedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostedPlugin")
            .field("plugin", &self.shared.label)
            .finish_non_exhaustive()
    }
}

impl HostedPlugin {
    /// Loads `bytes` (already hashed and approved, or reviewed) in a new host: the host
    /// opens them, the contract, layout and identity checks run there, and the identity
    /// is checked again here.
    pub fn load(
        bytes: &[u8],
        file_name: &str,
        method: &LoadMethod,
        settings: Arc<HostSettings>,
    ) -> Result<HostedPlugin, RefusalReason> {
        let host_failed = |fault: HostFault| RefusalReason::HostFailed(fault);
        let program = match &settings.program {
            Some(p) => p.clone(),
            None => HostProgram::locate().map_err(|why| {
                host_failed(HostFault {
                    call: "start",
                    cause: super::process::HostFaultCause::Start(why),
                })
            })?,
        };
        let library =
            library_descriptor(bytes, file_name, method).map_err(RefusalReason::Staging)?;
        let (host, identity) = match start_loaded(
            &program,
            &settings,
            &library,
            None,
            &format!("identity {file_name}"),
        ) {
            Ok(started) => started,
            Err(Started::Fault(fault)) => return Err(host_failed(fault)),
            Err(Started::Refused(refusal)) => return Err(refusal_from_wire(refusal)),
        };
        let info = PluginInfo::from_abi(identity).map_err(RefusalReason::IdentityInvalid)?;
        Ok(HostedPlugin {
            shared: Arc::new(HostedShared {
                label: format!("{} {}", info.vendor_id, info.version),
                info,
                settings,
                program,
                library,
                health: Mutex::new(Health::default()),
            }),
            monitor: Mutex::new(Some(host)),
        })
    }

    /// Why the plugin is suspended, once it is.
    pub fn quarantined(&self) -> Option<String> {
        self.shared.health().quarantined.clone()
    }

    /// The identity host's process id while it runs.
    pub fn monitor_pid(&self) -> Option<u32> {
        self.monitor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(HostProcess::pid)
    }

    /// One identity call on the long-lived host (started again when it is gone).
    fn identity_call(
        &self,
        call: &'static str,
        request: &Request,
    ) -> Result<Response, PluginFailure> {
        let mut monitor = self.monitor.lock().unwrap_or_else(PoisonError::into_inner);
        if self.shared.health().quarantined.is_some() {
            // A suspended plugin runs nothing: its host goes, every call fails with 749.
            *monitor = None;
            self.shared.gate()?;
        }
        if monitor.as_ref().is_none_or(HostProcess::is_dead) {
            *monitor = None;
            *monitor = Some(self.shared.start_host("identity", None, Health::CALLS)?);
        }
        let host = monitor.as_mut().unwrap_or_else(|| unreachable!());
        match host.call(call, request, self.shared.settings.deadlines.identity) {
            Ok(answer) => Ok(answer),
            Err(fault) => {
                *monitor = None;
                Err(self.shared.fault(Health::CALLS, &fault))
            }
        }
    }

    fn wrong_answer(&self, call: &'static str, answer: &Response) -> PluginFailure {
        *self.monitor.lock().unwrap_or_else(PoisonError::into_inner) = None;
        let fault = HostFault {
            call,
            cause: super::process::HostFaultCause::Protocol(format!(
                "answered {call} with {}",
                super::process::response_name(answer)
            )),
        };
        self.shared.fault(Health::CALLS, &fault)
    }
}

impl VendorPlugin for HostedPlugin {
    fn info(&self) -> &PluginInfo {
        &self.shared.info
    }

    fn host_pids(&self) -> Vec<u32> {
        self.monitor_pid().into_iter().collect()
    }

    fn match_battery(&self, battery: &BatteryIdentity) -> Result<BatteryMatch, PluginFailure> {
        match self.identity_call("match_battery", &Request::MatchBattery(battery.clone()))? {
            Response::Matched(result) => {
                self.shared.health().record_success(Health::CALLS);
                result
                    .map_err(PluginFailure::from_abi)
                    .and_then(BatteryMatch::from_abi)
            }
            other => Err(self.wrong_answer("match_battery", &other)),
        }
    }

    fn decode_version(&self, raw: &[u8]) -> Result<DecodedVersion, PluginFailure> {
        match self.identity_call("decode_version", &Request::DecodeVersion(raw.to_vec()))? {
            Response::Decoded(result) => {
                self.shared.health().record_success(Health::CALLS);
                result
                    .map_err(PluginFailure::from_abi)
                    .and_then(DecodedVersion::from_abi)
            }
            other => Err(self.wrong_answer("decode_version", &other)),
        }
    }

    fn inspect_package(
        &self,
        package: Arc<dyn PackageRead>,
    ) -> Result<PackageSummary, PackageRejection> {
        let len = package.len();
        let mut host = self
            .shared
            .start_host("inspect", Some(&*package), Health::CALLS)?;
        let deadline = self.shared.settings.deadlines.package;
        match host.call("inspect_package", &Request::InspectPackage, deadline) {
            Ok(Response::Inspected(result)) => {
                self.shared.health().record_success(Health::CALLS);
                let info = result.map_err(PackageRejection::from_abi)?;
                Ok(PackageSummary::from_abi(info, len)?)
            }
            Ok(other) => {
                let cause = host.fail(super::process::HostFaultCause::Protocol(format!(
                    "answered inspect_package with {}",
                    super::process::response_name(&other)
                )));
                let fault = HostFault {
                    call: "inspect_package",
                    cause,
                };
                Err(self.shared.fault(Health::CALLS, &fault).into())
            }
            Err(fault) => Err(self.shared.fault(Health::CALLS, &fault).into()),
        }
    }

    fn start_session(&self, start: SessionStart) -> Result<Box<dyn VendorSession>, PluginFailure> {
        let mut host = self
            .shared
            .start_host("session", Some(&*start.package), Health::SESSION)?;
        let request = Request::StartSession {
            battery: start.battery,
            options: start.options,
            resume: start.resume,
        };
        let deadline = self.shared.settings.deadlines.start;
        match host.call("start_session", &request, deadline) {
            Ok(Response::Started(Ok(()))) => {
                Ok(Box::new(HostedSession::new(self.shared.clone(), host)))
            }
            Ok(Response::Started(Err(failure))) => Err(PluginFailure::from_abi(failure)),
            Ok(other) => {
                let cause = host.fail(super::process::HostFaultCause::Protocol(format!(
                    "answered start_session with {}",
                    super::process::response_name(&other)
                )));
                Err(self.shared.fault(
                    Health::SESSION,
                    &HostFault {
                        call: "start_session",
                        cause,
                    },
                ))
            }
            Err(fault) => Err(self.shared.fault(Health::SESSION, &fault)),
        }
    }
}

/// A host's load refusal as the loader reports it.
fn refusal_from_wire(refusal: LoadRefusal) -> RefusalReason {
    let flat = |s: String| bounded(&s.split_whitespace().collect::<Vec<_>>().join(" "));
    match refusal {
        LoadRefusal::NotAPlugin(detail) => RefusalReason::NotAPlugin {
            detail: flat(detail),
        },
        LoadRefusal::AbiIncompatible(detail) => RefusalReason::AbiIncompatible {
            detail: flat(detail),
        },
        LoadRefusal::ContractMismatch(found) => RefusalReason::ContractMismatch {
            expected: CONTRACT_VERSION,
            found: flat(found),
        },
        LoadRefusal::LayoutMismatch(found, detail) => RefusalReason::LayoutMismatch {
            expected: CONTRACT_VERSION,
            found: flat(found),
            detail: flat(detail),
        },
        LoadRefusal::RootModuleFailed(detail) => RefusalReason::RootModuleFailed {
            detail: flat(detail),
        },
        LoadRefusal::IdentityFailed(f) => RefusalReason::IdentityFailed(PluginFailure::from_abi(f)),
        LoadRefusal::Staging(why) => RefusalReason::Staging(std::io::Error::other(flat(why))),
    }
}
