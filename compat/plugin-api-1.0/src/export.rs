//! The glue `export_plugin!` generates: every entry point guarded against panics.
//!
//! Since Rust 1.81 a panic that reaches an `extern "C"` function aborts the process, and
//! abi_stable's generated trait-object functions abort on unwinding too. So each entry
//! point calls the vendor's code inside `catch_unwind` and turns a panic into a
//! [`Failure`] with [`ErrorCode::PLUGIN_FAULT`] before anything crosses the boundary.

use crate::battery::{BatteryIdentity, DeviceMatch};
use crate::contract::CONTRACT_VERSION;
use crate::error::{ErrorCode, Failure};
use crate::frame::CanFrame;
use crate::identity::PluginIdentity;
use crate::module::{PluginModule, PluginModule_Ref};
use crate::package::{BoxedPackageSource, PackageError, PackageInfo, PackageReader};
use crate::session::{
    AbortReason, BoxedSession, SessionOptions, SessionStatus, TransferSession, TransferSession_TO,
};
use crate::time::Timestamp;
use crate::vendor::{Plugin, Session, SessionRequest};
use crate::version::FirmwareVersion;
use abi_stable::{
    prefix_type::PrefixTypeTrait,
    sabi_trait::TD_Opaque,
    std_types::{ROption, RResult, RSlice, RVec},
};
use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The exported symbol abi_stable looks up in a library: its `LibHeader` static.
/// `export_plugin!` spells it out as a literal (attributes take no constants); a test
/// checks it equals `abi_stable::library::ROOT_MODULE_LOADER_NAME`.
#[doc(hidden)]
#[macro_export]
macro_rules! __root_module_symbol {
    () => {
        "_1as_0lib_1header_0root_bmodule_bloader"
    };
}

/// Exports a [`Plugin`] as the library's root module.
///
/// Call it once, at the crate root of a `crate-type = ["cdylib"]` crate:
///
/// ```text
/// bmsfw_plugin_api::export_plugin!(MyPlugin);
/// ```
///
/// The crate documentation has a complete example.
///
/// It creates the plugin instance on first use, builds the [`PluginModule`] table and
/// the abi_stable library header the engine reads, and wraps every entry point and every
/// session method in `catch_unwind`: a panic reaches the engine as
/// [`ErrorCode::PLUGIN_FAULT`] and a session that panicked stays `FAILED` with that code.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        const _: () = {
            impl $crate::__private::PluginInstance for $plugin {
                fn instance() -> &'static Self {
                    static INSTANCE: ::std::sync::OnceLock<$plugin> = ::std::sync::OnceLock::new();
                    INSTANCE.get_or_init(<$plugin as $crate::Plugin>::new)
                }
            }

            extern "C" fn __bmsfw_load_root_module()
            -> $crate::abi_stable::library::RootModuleResult {
                $crate::abi_stable::library::__call_root_module_loader(
                    $crate::__private::root_module::<$plugin>,
                )
            }

            #[unsafe(export_name = $crate::__root_module_symbol!())]
            static __BMSFW_LIB_HEADER: $crate::abi_stable::library::LibHeader = unsafe {
                $crate::abi_stable::library::LibHeader::from_constructor::<
                    $crate::PluginModule_Ref,
                >(
                    __bmsfw_load_root_module,
                    $crate::abi_stable::library::CheckTypeLayout::Yes,
                )
            };
        };
    };
}

/// Access to the one instance of a plugin; implemented by `export_plugin!`.
#[doc(hidden)]
pub trait PluginInstance: Plugin {
    /// The instance, created on first use.
    fn instance() -> &'static Self;
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// The failure a caught panic becomes.
fn fault(entry_point: &str, payload: &(dyn Any + Send)) -> Failure {
    Failure::new(
        ErrorCode::PLUGIN_FAULT,
        format!(
            "plugin panicked in {entry_point}: {}",
            panic_message(payload)
        ),
    )
}

/// Runs `f`, turning a panic into a [`ErrorCode::PLUGIN_FAULT`] failure.
#[doc(hidden)]
pub fn guard<T>(entry_point: &str, f: impl FnOnce() -> T) -> Result<T, Failure> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| fault(entry_point, p.as_ref()))
}

/// The root module of plugin `P`.
#[doc(hidden)]
pub fn root_module<P: PluginInstance>() -> PluginModule_Ref {
    PluginModule {
        identity: identity::<P>,
        match_battery: match_battery::<P>,
        decode_version: decode_version::<P>,
        inspect_package: inspect_package::<P>,
        start_session: start_session::<P>,
    }
    .leak_into_prefix()
}

/// The guarded `identity` entry point of plugin `P`.
#[doc(hidden)]
pub extern "C" fn identity<P: PluginInstance>() -> RResult<PluginIdentity, Failure> {
    guard("identity", || {
        let mut id = P::instance().identity();
        id.contract = CONTRACT_VERSION;
        id
    })
    .into()
}

/// The guarded `match_battery` entry point of plugin `P`.
#[doc(hidden)]
pub extern "C" fn match_battery<P: PluginInstance>(
    battery: &BatteryIdentity,
) -> RResult<DeviceMatch, Failure> {
    guard("match_battery", || P::instance().match_battery(battery)).into()
}

/// The guarded `decode_version` entry point of plugin `P`.
#[doc(hidden)]
pub extern "C" fn decode_version<P: PluginInstance>(
    raw: RSlice<'_, u8>,
) -> RResult<FirmwareVersion, Failure> {
    guard("decode_version", || {
        P::instance().decode_version(raw.as_slice())
    })
    .and_then(|r| r)
    .into()
}

/// The guarded `inspect_package` entry point of plugin `P`.
#[doc(hidden)]
pub extern "C" fn inspect_package<P: PluginInstance>(
    package: BoxedPackageSource,
) -> RResult<PackageInfo, PackageError> {
    let mut reader = PackageReader::new(package);
    match guard("inspect_package", || {
        P::instance().inspect_package(&mut reader)
    }) {
        Ok(result) => result.into(),
        Err(f) => RResult::RErr(PackageError::new(f.code, f.message.into_string())),
    }
}

/// The guarded `start_session` entry point of plugin `P`.
#[doc(hidden)]
pub extern "C" fn start_session<P: PluginInstance>(
    battery: &BatteryIdentity,
    package: BoxedPackageSource,
    options: &SessionOptions,
    resume: ROption<RVec<u8>>,
) -> RResult<BoxedSession, Failure> {
    let request = SessionRequest {
        battery: battery.clone(),
        package: PackageReader::new(package),
        options: options.clone(),
        resume: resume.into_option().map(RVec::into_vec),
    };
    guard("start_session", || P::instance().start_session(request))
        .and_then(|r| r)
        .map(|session| TransferSession_TO::from_value(SessionGuard::new(session), TD_Opaque))
        .into()
}

/// Where a guarded session is.
enum GuardState<S> {
    /// The vendor's session, healthy.
    Running(S),
    /// A method panicked: the session was dropped and only this failure remains.
    Faulted(Failure),
}

/// A vendor [`Session`] behind the [`TransferSession`] boundary: every call runs inside
/// `catch_unwind`, and the first panic makes the session `FAILED` with `PLUGIN_FAULT`
/// for good.
#[doc(hidden)]
pub struct SessionGuard<S: Session> {
    state: GuardState<S>,
    /// Progress of the last status the session answered, kept for the fault report.
    last_progress: (u64, u64),
}

impl<S: Session> SessionGuard<S> {
    /// Guards `session`.
    pub fn new(session: S) -> SessionGuard<S> {
        SessionGuard {
            state: GuardState::Running(session),
            last_progress: (0, 0),
        }
    }

    /// Runs `f` on the healthy session. Fails with the stored fault once faulted, and
    /// when `f` panics (which faults the session and drops it).
    fn call<T>(&mut self, method: &str, f: impl FnOnce(&mut S) -> T) -> Result<T, Failure> {
        let session = match &mut self.state {
            GuardState::Running(session) => session,
            GuardState::Faulted(failure) => return Err(failure.clone()),
        };
        guard(method, || f(session)).inspect_err(|failure| {
            let broken = std::mem::replace(&mut self.state, GuardState::Faulted(failure.clone()));
            // The session's state is unknown after a panic; its drop may panic too.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(broken)));
        })
    }
}

impl<S: Session> TransferSession for SessionGuard<S> {
    fn handle_frame(&mut self, now: Timestamp, frame: CanFrame) {
        let _ = self.call("Session::handle_frame", |s| s.handle_frame(now, &frame));
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        let _ = self.call("Session::handle_timeout", |s| s.handle_timeout(now));
    }

    fn poll_transmit(&mut self, now: Timestamp) -> ROption<CanFrame> {
        self.call("Session::poll_transmit", |s| s.poll_transmit(now))
            .ok()
            .flatten()
            .into()
    }

    fn poll_timeout(&mut self) -> ROption<Timestamp> {
        self.call("Session::poll_timeout", |s| s.poll_timeout())
            .ok()
            .flatten()
            .into()
    }

    fn status(&mut self) -> SessionStatus {
        match self.call("Session::status", |s| s.status()) {
            Ok(status) => {
                self.last_progress = (status.bytes_done, status.bytes_total);
                status
            }
            Err(failure) => {
                SessionStatus::failed(failure, self.last_progress.0, self.last_progress.1)
            }
        }
    }

    fn abort(&mut self, now: Timestamp, reason: AbortReason) {
        let _ = self.call("Session::abort", |s| s.abort(now, &reason));
    }

    fn checkpoint(&mut self) -> RVec<u8> {
        self.call("Session::checkpoint", |s| s.checkpoint())
            .map(RVec::from)
            .unwrap_or_default()
    }
}

impl<S: Session> Drop for SessionGuard<S> {
    fn drop(&mut self) {
        let state = std::mem::replace(
            &mut self.state,
            GuardState::Faulted(Failure::new(ErrorCode::PLUGIN_FAULT, "dropped")),
        );
        // A panicking destructor must not unwind into the engine.
        let _ = catch_unwind(AssertUnwindSafe(move || drop(state)));
    }
}

#[cfg(test)]
mod tests;
