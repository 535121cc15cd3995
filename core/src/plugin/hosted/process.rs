//! One plugin host process, seen from the engine: started with exactly the descriptors it
//! needs, called with a deadline, and killed and classified when it fails.

use super::wire::{self, PROTOCOL_VERSION, Request, Response};
use rustix::event::{PollFd, PollFlags, poll};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The host's descriptor of the library's bytes (a sealed memfd, read-only).
pub const LIBRARY_FD: RawFd = 3;
/// The host's end of the socketpair.
pub const SOCKET_FD: RawFd = 4;
/// The host's descriptor of the package, read-only, when it serves one.
pub const PACKAGE_FD: RawFd = 5;

/// Bytes of the host's standard error the engine keeps (the last ones).
const STDERR_TAIL: usize = 4096;

/// Where descriptors are parked before the child moves them to their fixed numbers.
const PARK_FDS_FROM: RawFd = 64;

/// How to start a plugin host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostProgram {
    /// The executable.
    pub program: PathBuf,
    /// Arguments before the host's own.
    pub args: Vec<OsString>,
}

impl HostProgram {
    /// The environment variable naming the host executable.
    pub const ENV: &'static str = "BMSFW_PLUGIN_HOST";
    /// The host executable's file name.
    pub const FILE_NAME: &'static str = "bmsfw-plugin-host";

    /// The host to use: [`HostProgram::ENV`] when set; else `bmsfw-plugin-host` beside
    /// the running executable (or one folder up, where test binaries live); else the
    /// running executable itself when it is `bmsfw` (`bmsfw plugin-host`).
    pub fn locate() -> Result<HostProgram, String> {
        if let Some(path) = std::env::var_os(Self::ENV) {
            return Ok(HostProgram {
                program: PathBuf::from(path),
                args: Vec::new(),
            });
        }
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find the running executable: {e}"))?;
        let mut tried = Vec::new();
        for dir in exe.ancestors().skip(1).take(2) {
            let candidate = dir.join(Self::FILE_NAME);
            if candidate.is_file() {
                return Ok(HostProgram {
                    program: candidate,
                    args: Vec::new(),
                });
            }
            tried.push(candidate.display().to_string());
        }
        if exe.file_stem().is_some_and(|s| s == "bmsfw") {
            return Ok(HostProgram {
                program: exe,
                args: vec![OsString::from("plugin-host")],
            });
        }
        Err(format!(
            "no plugin host executable: set {} or install {} (looked for {})",
            Self::ENV,
            Self::FILE_NAME,
            tried.join(", ")
        ))
    }
}

/// The resource limits of a host process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostLimits {
    /// Address space, in bytes (`RLIMIT_AS`).
    pub memory_bytes: u64,
    /// CPU time, in seconds (`RLIMIT_CPU`); the host is killed past it.
    pub cpu_seconds: u64,
    /// Open descriptors (`RLIMIT_NOFILE`).
    pub open_files: u64,
}

impl Default for HostLimits {
    fn default() -> HostLimits {
        HostLimits {
            memory_bytes: 256 * 1024 * 1024,
            cpu_seconds: 120,
            open_files: 32,
        }
    }
}

impl HostLimits {
    /// The limits as the host's command-line arguments.
    fn args(&self) -> [String; 6] {
        [
            "--memory-bytes".into(),
            self.memory_bytes.to_string(),
            "--cpu-seconds".into(),
            self.cpu_seconds.to_string(),
            "--open-files".into(),
            self.open_files.to_string(),
        ]
    }
}

/// Why a host failed a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostFaultCause {
    /// No answer within the call's deadline; the host was killed.
    Deadline(Duration),
    /// Killed by a signal (a crash).
    Signal(i32),
    /// Ran out of its memory limit.
    MemoryLimit,
    /// Used up its CPU time limit.
    CpuLimit,
    /// Made a system call the sandbox forbids (network, files, fork, exec, ptrace).
    ForbiddenCall,
    /// Exited by itself.
    Exited(i32),
    /// Sent something outside the protocol, or closed its connection.
    Protocol(String),
    /// Could not be started.
    Start(String),
}

impl fmt::Display for HostFaultCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostFaultCause::Deadline(d) => {
                write!(f, "gave no answer within its {} ms deadline", d.as_millis())
            }
            HostFaultCause::Signal(s) => write!(f, "crashed: killed by {}", signal_name(*s)),
            HostFaultCause::MemoryLimit => f.write_str("ran out of its memory limit"),
            HostFaultCause::CpuLimit => f.write_str("used up its CPU time limit"),
            HostFaultCause::ForbiddenCall => f.write_str(
                "made a system call the sandbox forbids (network, files, fork, exec or ptrace) \
                 and was killed (SIGSYS)",
            ),
            HostFaultCause::Exited(code) => write!(f, "exited with status {code}"),
            HostFaultCause::Protocol(why) => write!(f, "broke the host protocol: {why}"),
            HostFaultCause::Start(why) => write!(f, "could not be started: {why}"),
        }
    }
}

impl HostFaultCause {
    /// A short machine name: `deadline`, `signal`, `memory`, `cpu`, `forbidden-call`,
    /// `exit`, `protocol`, `start`.
    pub fn kind(&self) -> &'static str {
        match self {
            HostFaultCause::Deadline(_) => "deadline",
            HostFaultCause::Signal(_) => "signal",
            HostFaultCause::MemoryLimit => "memory",
            HostFaultCause::CpuLimit => "cpu",
            HostFaultCause::ForbiddenCall => "forbidden-call",
            HostFaultCause::Exited(_) => "exit",
            HostFaultCause::Protocol(_) => "protocol",
            HostFaultCause::Start(_) => "start",
        }
    }
}

/// A failed call: which call, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the plugin host {cause} during {call}")]
pub struct HostFault {
    /// The contract call (`poll_transmit`, `inspect_package`, ...).
    pub call: &'static str,
    /// Why.
    pub cause: HostFaultCause,
}

/// The usual name of signal `n`.
pub fn signal_name(n: i32) -> String {
    let name = match n {
        libc::SIGSEGV => "SIGSEGV (invalid memory access)",
        libc::SIGBUS => "SIGBUS (bus error)",
        libc::SIGABRT => "SIGABRT (abort)",
        libc::SIGILL => "SIGILL (illegal instruction)",
        libc::SIGFPE => "SIGFPE (arithmetic fault)",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSYS => "SIGSYS (forbidden system call)",
        libc::SIGXCPU => "SIGXCPU (CPU time limit)",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGPIPE => "SIGPIPE",
        _ => return format!("signal {n}"),
    };
    name.to_owned()
}

/// The last bytes a host wrote to its standard error.
#[derive(Debug, Default)]
struct StderrTail {
    bytes: Vec<u8>,
    /// The pipe reached its end: the host and everything it started are gone.
    closed: bool,
}

impl StderrTail {
    fn push(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
        if self.bytes.len() > STDERR_TAIL {
            let cut = self.bytes.len() - STDERR_TAIL;
            self.bytes.drain(..cut);
        }
    }
}

/// A running host process.
pub(crate) struct HostProcess {
    child: Child,
    socket: OwnedFd,
    stderr: Arc<Mutex<StderrTail>>,
    /// Set once the host failed: every later call fails the same way.
    dead: Option<HostFaultCause>,
    label: String,
}

impl fmt::Debug for HostProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostProcess")
            .field("pid", &self.child.id())
            .field("label", &self.label)
            .field("dead", &self.dead)
            .finish()
    }
}

fn park(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(fd, PARK_FDS_FROM)?)
}

impl HostProcess {
    /// Starts a host for `library`, with `package` when it serves one, and waits (within
    /// `deadline`) for its hello.
    pub(crate) fn spawn(
        program: &HostProgram,
        limits: &HostLimits,
        library: BorrowedFd<'_>,
        package: Option<BorrowedFd<'_>>,
        label: &str,
        deadline: Duration,
    ) -> Result<HostProcess, HostFaultCause> {
        let start = |e: io::Error| HostFaultCause::Start(e.to_string());
        let (ours, theirs) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| start(e.into()))?;
        // Parked above the fixed numbers, so that moving one never overwrites another.
        let parked_library = park(library).map_err(start)?;
        let parked_socket = park(theirs.as_fd()).map_err(start)?;
        let parked_package = package.map(park).transpose().map_err(start)?;
        let mut moves: Vec<(RawFd, RawFd)> = vec![
            (parked_library.as_raw_fd(), LIBRARY_FD),
            (parked_socket.as_raw_fd(), SOCKET_FD),
        ];
        if let Some(p) = &parked_package {
            moves.push((p.as_raw_fd(), PACKAGE_FD));
        }
        let mut command = Command::new(&program.program);
        command
            .args(&program.args)
            .args(limits.args())
            .arg("--label")
            .arg(label)
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: between fork and exec the closure calls only dup2, which is
        // async-signal-safe, on descriptors that stay open in the parent until `spawn`
        // returns; it allocates nothing.
        unsafe {
            command.pre_exec(move || {
                for &(from, to) in &moves {
                    if libc::dup2(from, to) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .map_err(|e| HostFaultCause::Start(format!("{}: {e}", program.program.display())))?;
        drop((parked_library, parked_socket, parked_package, theirs));
        let stderr = Arc::new(Mutex::new(StderrTail::default()));
        if let Some(mut pipe) = child.stderr.take() {
            let tail = stderr.clone();
            let spawned = std::thread::Builder::new()
                .name("plugin-host-stderr".into())
                .spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = pipe.read(&mut buf) {
                        tail.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(&buf[..n]);
                    }
                    tail.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
                });
            if let Err(e) = spawned {
                let _ = child.kill();
                let _ = child.wait();
                return Err(start(e));
            }
        }
        rustix::io::ioctl_fionbio(&ours, true).map_err(|e| start(e.into()))?;
        let mut host = HostProcess {
            child,
            socket: ours,
            stderr,
            dead: None,
            label: label.to_owned(),
        };
        match host.receive("start", Instant::now() + deadline, deadline) {
            Ok(Response::Hello { protocol }) if protocol == PROTOCOL_VERSION => Ok(host),
            Ok(Response::Hello { protocol }) => Err(host.fail(HostFaultCause::Protocol(format!(
                "the host speaks protocol {protocol}, this engine {PROTOCOL_VERSION}"
            )))),
            Ok(other) => Err(host.fail(HostFaultCause::Protocol(format!(
                "its first message was {}, not a hello",
                response_name(&other)
            )))),
            Err(fault) => Err(fault.cause),
        }
    }

    /// The host's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the host failed.
    pub(crate) fn is_dead(&self) -> bool {
        self.dead.is_some()
    }

    /// Sends `request` and waits up to `deadline` for the answer.
    pub(crate) fn call(
        &mut self,
        call: &'static str,
        request: &Request,
        deadline: Duration,
    ) -> Result<Response, HostFault> {
        if let Some(cause) = &self.dead {
            return Err(HostFault {
                call,
                cause: cause.clone(),
            });
        }
        let until = Instant::now() + deadline;
        let bytes = wire::encode(request).map_err(|e| HostFault {
            call,
            cause: HostFaultCause::Protocol(format!("the engine's request: {e}")),
        })?;
        self.send(call, &bytes, until, deadline)?;
        self.receive(call, until, deadline)
    }

    fn send(
        &mut self,
        call: &'static str,
        mut bytes: &[u8],
        until: Instant,
        deadline: Duration,
    ) -> Result<(), HostFault> {
        while !bytes.is_empty() {
            match rustix::io::write(&self.socket, bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(rustix::io::Errno::AGAIN) => {
                    self.wait_for(call, PollFlags::OUT, until, deadline)?
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(self.died(call, format!("writing to the host: {e}"))),
            }
        }
        Ok(())
    }

    fn receive(
        &mut self,
        call: &'static str,
        until: Instant,
        deadline: Duration,
    ) -> Result<Response, HostFault> {
        let mut header = [0u8; 4];
        self.read_exact(call, &mut header, until, deadline)?;
        let len = wire::announced_len(header).map_err(|why| HostFault {
            call,
            cause: self.fail(HostFaultCause::Protocol(why)),
        })?;
        let mut body = vec![0u8; len];
        self.read_exact(call, &mut body, until, deadline)?;
        wire::decode::<Response>(&body).map_err(|why| HostFault {
            call,
            cause: self.fail(HostFaultCause::Protocol(why)),
        })
    }

    fn read_exact(
        &mut self,
        call: &'static str,
        mut buf: &mut [u8],
        until: Instant,
        deadline: Duration,
    ) -> Result<(), HostFault> {
        while !buf.is_empty() {
            match rustix::io::read(&self.socket, &mut *buf) {
                Ok(0) => return Err(self.died(call, "closed its connection".into())),
                Ok(n) => buf = &mut buf[n..],
                Err(rustix::io::Errno::AGAIN) => {
                    self.wait_for(call, PollFlags::IN, until, deadline)?
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(self.died(call, format!("reading from the host: {e}"))),
            }
        }
        Ok(())
    }

    /// Waits until the socket is ready for `flags`, or fails the call at `until`.
    ///
    /// A host normally answers in microseconds. Past the first millisecond the wait moves
    /// off the async runtime's worker (`block_in_place`), so a slow or hung plugin never
    /// holds up the tasks of other buses, the VRM link or telemetry.
    fn wait_for(
        &mut self,
        call: &'static str,
        flags: PollFlags,
        until: Instant,
        deadline: Duration,
    ) -> Result<(), HostFault> {
        let quick = Duration::from_millis(1);
        let now = Instant::now();
        if now >= until {
            return Err(HostFault {
                call,
                cause: self.fail(HostFaultCause::Deadline(deadline)),
            });
        }
        if poll_once(&self.socket, flags, (until - now).min(quick)) {
            return Ok(());
        }
        let socket = &self.socket;
        let rest = || loop {
            let now = Instant::now();
            if now >= until {
                return false;
            }
            if poll_once(socket, flags, until - now) {
                return true;
            }
        };
        let ready = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(rest)
            }
            _ => rest(),
        };
        if ready {
            Ok(())
        } else {
            Err(HostFault {
                call,
                cause: self.fail(HostFaultCause::Deadline(deadline)),
            })
        }
    }

    /// The host closed its end or the socket broke: reaps it and says why it went.
    fn died(&mut self, call: &'static str, what: String) -> HostFault {
        let status = self.reap(Duration::from_millis(500));
        let cause = match status {
            Some(status) => self.classify(status),
            None => HostFaultCause::Protocol(what),
        };
        HostFault {
            call,
            cause: self.fail(cause),
        }
    }

    /// Marks the host failed with `cause` (the first cause stays), and kills it.
    pub(crate) fn fail(&mut self, cause: HostFaultCause) -> HostFaultCause {
        if self.dead.is_none() {
            tracing::warn!(
                host = %self.label,
                pid = self.child.id(),
                %cause,
                stderr = %self.stderr_text(),
                "plugin host failed"
            );
            self.dead = Some(cause);
        }
        self.kill();
        self.dead.clone().unwrap_or(HostFaultCause::Exited(0))
    }

    fn kill(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    /// Waits up to `limit` for the host to end by itself.
    fn reap(&mut self, limit: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(2)),
                _ => return None,
            }
        }
    }

    fn classify(&self, status: ExitStatus) -> HostFaultCause {
        match (status.signal(), status.code()) {
            (Some(libc::SIGXCPU), _) => HostFaultCause::CpuLimit,
            (Some(libc::SIGSYS), _) => HostFaultCause::ForbiddenCall,
            (Some(libc::SIGABRT), _) if self.out_of_memory() => HostFaultCause::MemoryLimit,
            (Some(signal), _) => HostFaultCause::Signal(signal),
            (None, Some(code)) => HostFaultCause::Exited(code),
            (None, None) => HostFaultCause::Exited(-1),
        }
    }

    /// Whether the host's last words were Rust's allocation failure message.
    fn out_of_memory(&self) -> bool {
        // The pipe may still hold the message: wait (bounded) for the reader to reach
        // its end.
        let until = Instant::now() + Duration::from_secs(1);
        loop {
            let closed = self
                .stderr
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .closed;
            if self.stderr_text().contains("memory allocation of") {
                return true;
            }
            if closed || Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The host's last standard-error bytes, as text with control characters escaped.
    pub(crate) fn stderr_text(&self) -> String {
        let tail = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&tail.bytes)
            .escape_debug()
            .to_string()
    }
}

fn poll_once(socket: &OwnedFd, flags: PollFlags, wait: Duration) -> bool {
    let mut fds = [PollFd::new(socket, flags)];
    let timeout = rustix::time::Timespec {
        tv_sec: wait.as_secs() as _,
        tv_nsec: wait.subsec_nanos() as _,
    };
    match poll(&mut fds, Some(&timeout)) {
        // Readable also when the peer hung up: the read says which.
        Ok(n) => n > 0,
        Err(_) => false,
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A response's variant name, for protocol errors.
pub(crate) fn response_name(r: &Response) -> &'static str {
    match r {
        Response::Hello { .. } => "Hello",
        Response::Loaded(_) => "Loaded",
        Response::Identity(_) => "Identity",
        Response::Matched(_) => "Matched",
        Response::Decoded(_) => "Decoded",
        Response::Inspected(_) => "Inspected",
        Response::Started(_) => "Started",
        Response::Stepped(_) => "Stepped",
        Response::Checkpoint(_) => "Checkpoint",
        Response::Refused(_) => "Refused",
    }
}
