//! The plugin host's side: the program `bmsfw-plugin-host` (or `bmsfw plugin-host`) runs
//! [`main`], which sandboxes itself, loads the library it was handed and serves the
//! contract over its socket until the engine closes it.
//!
//! The host checks nothing on the engine's behalf: it relays what the plugin returns, and
//! the engine checks every value again. A plugin can take the host down in any way; it
//! cannot take the engine with it.

use super::process::{HostLimits, LIBRARY_FD, PACKAGE_FD, SOCKET_FD};
use super::sandbox;
use super::wire::{self, Input, LoadRefusal, PROTOCOL_VERSION, Request, Response, Stepped};
use crate::plugin::host::FilePackage;
use crate::plugin::loader::{header_minor, init_module, init_module_as};
use crate::plugin::open::open_header_at;
use crate::plugin::refusal::RefusalReason;
use bmsfw_plugin_api::abi_stable::sabi_trait::TD_Opaque;
use bmsfw_plugin_api::abi_stable::std_types::{ROption, RResult, RSlice, RSliceMut, RString, RVec};
use bmsfw_plugin_api::{BoxedSession, PluginModule_Ref};
use plugin_api_1_0 as v1_0;
use std::fs::File;
use std::io::{BufReader, Write};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;

/// Exit status when the host's arguments or set-up fail.
pub const EXIT_SETUP_FAILED: i32 = 70;

/// The host's command line: the limits, and a label for its messages.
fn parse_args(args: &[String]) -> Result<(HostLimits, String), String> {
    let mut limits = HostLimits::default();
    let mut label = String::from("plugin");
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|e| format!("{flag} {value:?}: {e}"))
        };
        match flag.as_str() {
            "--memory-bytes" => limits.memory_bytes = number()?,
            "--cpu-seconds" => limits.cpu_seconds = number()?,
            "--open-files" => limits.open_files = number()?,
            "--label" => label = value.chars().take(128).collect(),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok((limits, label))
}

/// Runs the host; `args` are its arguments after the program (and subcommand) name.
/// Never returns.
pub fn main(args: &[String]) -> ! {
    let (limits, label) = match parse_args(args) {
        Ok(parsed) => parsed,
        Err(why) => {
            eprintln!("bmsfw plugin host: {why}");
            std::process::exit(EXIT_SETUP_FAILED);
        }
    };
    sandbox::close_other_descriptors(PACKAGE_FD);
    if let Err(e) = sandbox::limit(&limits).and_then(|()| sandbox::deny_outside_world()) {
        eprintln!("bmsfw plugin host {label}: cannot apply the sandbox: {e}");
        std::process::exit(EXIT_SETUP_FAILED);
    }
    // SAFETY: the engine handed this descriptor over as the host's socket; nothing else
    // in this process owns it.
    let socket = unsafe { UnixStream::from_raw_fd(SOCKET_FD) };
    let mut host = Host {
        reader: BufReader::new(socket.try_clone().unwrap_or_else(|e| {
            eprintln!("bmsfw plugin host {label}: {e}");
            std::process::exit(EXIT_SETUP_FAILED)
        })),
        writer: socket,
        plugin: None,
    };
    host.send(&Response::Hello {
        protocol: PROTOCOL_VERSION,
    });
    loop {
        let request = match wire::read_message::<Request>(&mut host.reader) {
            Ok(request) => request,
            // The engine closed its end (or sent garbage): nothing more to serve.
            Err(_) => std::process::exit(0),
        };
        let response = host.serve(request);
        host.send(&response);
    }
}

struct Host {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    plugin: Option<Loaded>,
}

/// The loaded library, with the interface of the contract minor it was built against.
enum Loaded {
    /// Contract 1.1 (this engine's).
    Current {
        module: PluginModule_Ref,
        session: Option<BoxedSession>,
    },
    /// Contract 1.0: its session vtable lacks `running_version`, and abi_stable refuses
    /// it under the 1.1 interface.
    V1_0 {
        module: v1_0::PluginModule_Ref,
        session: Option<v1_0::BoxedSession>,
    },
}

/// The same value as another contract minor's type: the data types of 1.0 and 1.1 are
/// field for field the same, so their serialized forms are too.
fn convert<A: serde::Serialize, B: serde::de::DeserializeOwned>(a: A) -> Result<B, String> {
    let bytes = postcard::to_allocvec(&a).map_err(|e| e.to_string())?;
    postcard::from_bytes(&bytes).map_err(|e| format!("contract 1.0 conversion: {e}"))
}

/// No conversion: the library speaks this engine's contract.
fn same<T>(t: T) -> Result<T, String> {
    Ok(t)
}

/// The engine's package behind contract crate `$api`'s package source.
macro_rules! api_source {
    (bmsfw_plugin_api, $package:expr) => {
        crate::plugin::host::HostSource($package)
    };
    (v1_0, $package:expr) => {
        SourceV1_0($package)
    };
}

/// What a session read as the battery's running version: contract 1.0 has no such call.
macro_rules! running_version {
    (bmsfw_plugin_api, $s:expr) => {
        $s.running_version().into_option()
    };
    (v1_0, $s:expr) => {
        None::<v1_0::FirmwareVersion>
    };
}

/// Serves one request with a module and session of contract crate `$api`, converting
/// arguments with `$to` and results with `$from`.
macro_rules! serve_with {
    ($api:ident, $module:expr, $session:expr, $request:expr, $to:ident, $from:ident) => {{
        let module = $module;
        let session: &mut Option<$api::BoxedSession> = $session;
        let served: Result<Response, String> = (|| {
            Ok(match $request {
                Request::Load => Response::Refused("already loaded".into()),
                Request::Identity => {
                    Response::Identity(match (module.identity())().into_result() {
                        Ok(id) => Ok($from(id)?),
                        Err(f) => Err($from(f)?),
                    })
                }
                Request::MatchBattery(battery) => {
                    let battery: $api::BatteryIdentity = $to(battery)?;
                    Response::Matched(match (module.match_battery())(&battery).into_result() {
                        Ok(m) => Ok($from(m)?),
                        Err(f) => Err($from(f)?),
                    })
                }
                Request::DecodeVersion(raw) => {
                    Response::Decoded(
                        match (module.decode_version())(RSlice::from_slice(&raw)).into_result() {
                            Ok(v) => Ok($from(v)?),
                            Err(f) => Err($from(f)?),
                        },
                    )
                }
                Request::InspectPackage => {
                    let package = Host::package()?;
                    let source =
                        $api::PackageSource_TO::from_value(api_source!($api, package), TD_Opaque);
                    Response::Inspected(match (module.inspect_package())(source).into_result() {
                        Ok(info) => Ok($from(info)?),
                        Err(e) => Err($from(e)?),
                    })
                }
                Request::StartSession {
                    battery,
                    options,
                    resume,
                } => {
                    if session.is_some() {
                        return Ok(Response::Refused(
                            "a session already runs in this host".into(),
                        ));
                    }
                    let package = Host::package()?;
                    let source =
                        $api::PackageSource_TO::from_value(api_source!($api, package), TD_Opaque);
                    let battery: $api::BatteryIdentity = $to(battery)?;
                    let options: $api::SessionOptions = $to(options)?;
                    let resume = match resume {
                        Some(bytes) => ROption::RSome(RVec::from(bytes)),
                        None => ROption::RNone,
                    };
                    match (module.start_session())(&battery, source, &options, resume).into_result()
                    {
                        Ok(started) => {
                            *session = Some(started);
                            Response::Started(Ok(()))
                        }
                        Err(f) => Response::Started(Err($from(f)?)),
                    }
                }
                Request::Step(step) => match session {
                    Some(s) => {
                        for input in step.inputs {
                            match input {
                                Input::Frame(at, frame) => s.handle_frame($to(at)?, $to(frame)?),
                                Input::Timeout(at) => s.handle_timeout($to(at)?),
                                Input::TimerCheck(at) => {
                                    let at: $api::Timestamp = $to(at)?;
                                    if let ROption::RSome(due) = s.poll_timeout()
                                        && at >= due
                                    {
                                        s.handle_timeout(at);
                                    }
                                }
                                Input::Abort { now, code, message } => {
                                    s.abort($to(now)?, $api::AbortReason::new(code, message))
                                }
                            }
                        }
                        let now: $api::Timestamp = $to(step.now)?;
                        let mut frames = Vec::new();
                        while frames.len() < step.max_frames as usize {
                            match s.poll_transmit(now) {
                                ROption::RSome(frame) => frames.push($from(frame)?),
                                ROption::RNone => break,
                            }
                        }
                        Response::Stepped(Stepped {
                            frames,
                            timeout: s.poll_timeout().into_option().map($from).transpose()?,
                            status: $from(s.status())?,
                            running_version: running_version!($api, s).map($from).transpose()?,
                        })
                    }
                    None => Response::Refused("no session runs in this host".into()),
                },
                Request::Checkpoint => match session {
                    Some(s) => Response::Checkpoint(s.checkpoint().into_vec()),
                    None => Response::Refused("no session runs in this host".into()),
                },
            })
        })();
        served.unwrap_or_else(Response::Refused)
    }};
}

/// The engine's package behind contract 1.0's package source.
struct SourceV1_0(Arc<FilePackage>);

impl v1_0::PackageSource for SourceV1_0 {
    fn len(&self) -> u64 {
        crate::plugin::host::PackageRead::len(&*self.0)
    }

    fn read_at(
        &self,
        offset: u64,
        mut buf: RSliceMut<'_, u8>,
    ) -> RResult<usize, v1_0::SourceError> {
        match crate::plugin::host::PackageRead::read_at(&*self.0, offset, &mut buf) {
            Ok(n) => RResult::ROk(n),
            Err(e) => RResult::RErr(v1_0::SourceError {
                message: RString::from(format!("reading the package at byte {offset}: {e}")),
            }),
        }
    }
}

impl Host {
    fn send(&mut self, response: &Response) {
        let ok = wire::encode(response).and_then(|bytes| self.writer.write_all(&bytes));
        if ok.is_err() {
            std::process::exit(0);
        }
    }

    fn package() -> Result<Arc<FilePackage>, String> {
        // SAFETY: the engine hands the package over as this descriptor, read-only; the
        // host takes it once per request and never closes it (a duplicate is owned).
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(PACKAGE_FD) };
        let owned = fd
            .try_clone_to_owned()
            .map_err(|e| format!("no package descriptor: {e}"))?;
        FilePackage::from_file(File::from(owned))
            .map(Arc::new)
            .map_err(|e| format!("the package descriptor: {e}"))
    }

    fn serve(&mut self, request: Request) -> Response {
        match (&mut self.plugin, request) {
            (None, Request::Load) => self.load(),
            (None, _) => Response::Refused("no library loaded yet".into()),
            (Some(Loaded::Current { module, session }), request) => {
                serve_with!(bmsfw_plugin_api, *module, session, request, same, same)
            }
            (Some(Loaded::V1_0 { module, session }), request) => {
                serve_with!(v1_0, *module, session, request, convert, convert)
            }
        }
    }

    fn load(&mut self) -> Response {
        let path = format!("/proc/self/fd/{LIBRARY_FD}");
        let loaded = open_header_at(Path::new(&path), "plugin").and_then(|header| {
            if header_minor(header) == Some(0) {
                init_module_as::<v1_0::PluginModule_Ref>(header).map(|module| Loaded::V1_0 {
                    module,
                    session: None,
                })
            } else {
                init_module(header).map(|module| Loaded::Current {
                    module,
                    session: None,
                })
            }
        });
        let loaded = match loaded {
            Ok(loaded) => loaded,
            Err(refusal) => return Response::Loaded(Err(refusal_to_wire(refusal))),
        };
        // From here on the host reaches only the descriptors it was handed.
        if let Err(e) = sandbox::deny_file_opens() {
            return Response::Loaded(Err(LoadRefusal::Staging(format!(
                "cannot apply the sandbox's file filter: {e}"
            ))));
        }
        self.plugin = Some(loaded);
        Response::Loaded(Ok(()))
    }
}

/// A load refusal as the host sends it.
fn refusal_to_wire(reason: RefusalReason) -> LoadRefusal {
    match reason {
        RefusalReason::AbiIncompatible { detail } => LoadRefusal::AbiIncompatible(detail),
        RefusalReason::ContractMismatch { found, .. } => LoadRefusal::ContractMismatch(found),
        RefusalReason::LayoutMismatch { found, detail, .. } => {
            LoadRefusal::LayoutMismatch(found, detail)
        }
        RefusalReason::RootModuleFailed { detail } => LoadRefusal::RootModuleFailed(detail),
        RefusalReason::Staging(e) => LoadRefusal::Staging(e.to_string()),
        other => LoadRefusal::NotAPlugin(other.to_string()),
    }
}
