//! The SocketCAN backend: a Linux CAN network interface (`can0`, `vcan0`) as a
//! [`CanInterface`].
//!
//! One raw `AF_CAN` socket carries classic data frames both ways and the controller's
//! error frames inbound; the interface's netlink attributes give the configured bit rate
//! and the controller state where the driver reports them.
//!
//! Behaviour worth knowing:
//! - **Remote and CAN FD frames are refused.** The socket is a classic (not FD) raw
//!   socket, so the kernel never hands it FD frames, and every kernel filter installed
//!   here requires the remote-request flag to be clear, so remote frames never reach the
//!   engine either. Frames the engine sends are data frames by construction.
//! - **Error frames** (every class of `linux/can/error.h`) arrive as
//!   [`CanEvent::Error`] with the decoded causes in words. When one announces a new fault
//!   confinement state (warning, passive, bus-off, back to active, restarted) a
//!   [`CanEvent::State`] follows it.
//! - **Receive timestamps** are the Tokio [`Instant`] at which the frame was read from
//!   the socket, not the end of frame on the wire: read promptly for them to mean much.
//! - **The receive buffer** of a raw socket holds only a few hundred frames by default
//!   and the kernel drops what does not fit, without telling the sender. [`open`] asks
//!   for [`RECEIVE_BUFFER_BYTES`] (forced past `net.core.rmem_max` when the process has
//!   `CAP_NET_ADMIN`, as the GX daemon does), and a node that sends a lot must keep a
//!   task reading at the same time.
//! - **Transmit pacing**: when the driver's transmit queue is full the kernel answers
//!   `ENOBUFS` instead of blocking; [`CanInterface::send`] then retries every
//!   [`TX_RETRY_INTERVAL`] and gives up with an error after [`TX_QUEUE_FULL_LIMIT`] (a
//!   queue that stays full means no other node acknowledges).
//! - **Bit rate and state**: [`CanInterface::bitrate`] and
//!   [`CanInterface::controller_state`] ask the kernel over netlink on every call (one
//!   short round trip, no caching). A virtual `vcan` interface has no bit timing, so its
//!   bit rate is `None`; it has no controller either, so its state is `Stopped` while the
//!   link is down and otherwise the state last announced by an error frame (error-active
//!   until one says otherwise). [`set_bitrate`] configures a controller's bit rate over
//!   netlink, and [`SocketCanInterface::error_counters`] reads its transmit and receive
//!   error counters, where the driver reports them.
//!
//! [`open`]: SocketCanInterface::open

mod error_frames;
mod frames;

pub use frames::MAX_KERNEL_FILTERS;

use crate::interface::{
    BusError, CanError, CanEvent, CanFilter, CanInterface, ControllerState, ReceivedFrame,
};
use ::socketcan::{CanAddr, CanSocket, Socket, SocketOptions, id::ERR_MASK_ALL, nl::CanState};
use async_trait::async_trait;
use bmsfw_plugin_api::CanFrame;
use frames::{Inbound, accept_all_data_frames, filter_to_kernel, inbound_from_kernel};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;
use tracing::{debug, trace, warn};

/// Receive buffer size requested for every socket, in bytes: room for a few thousand
/// frames, so a burst of telemetry while the engine is busy sending is not lost.
pub const RECEIVE_BUFFER_BYTES: usize = 1 << 20;

/// How long [`CanInterface::send`] waits between attempts while the driver's transmit
/// queue is full.
pub const TX_RETRY_INTERVAL: Duration = Duration::from_millis(1);

/// How long [`CanInterface::send`] keeps retrying a full transmit queue before it
/// reports the frame as not sent.
pub const TX_QUEUE_FULL_LIMIT: Duration = Duration::from_secs(1);

/// The transmit and receive error counters of a CAN controller (`IFLA_CAN_BERR_COUNTER`),
/// as its driver reports them: 0 to 127 error-active, 128 to 255 error-passive, and a
/// transmit count past 255 is bus-off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorCounters {
    /// The transmit error counter (TEC).
    pub tx: u16,
    /// The receive error counter (REC).
    pub rx: u16,
}

/// Sets the nominal bit rate of the CAN controller behind interface `name` over netlink
/// and brings the link up: the link is brought down first, as the kernel accepts bit
/// timing only on a stopped controller, and the driver derives the timing (sample point
/// included) from its own constants.
///
/// Needs `CAP_NET_ADMIN`. Fails, naming the interface, when it does not exist or its
/// driver refuses the bit rate. Sockets open on the interface see the link go down and
/// up: each reports the stop once (a receive gives [`CanEvent::State`] `Stopped`, or a
/// send fails with "the interface is down"), then carries frames again.
pub fn set_bitrate(name: &str, bitrate: u32) -> Result<(), CanError> {
    let io_error = |source: io::Error| CanError::Io {
        interface: name.to_owned(),
        source,
    };
    let nl_error =
        |what: &str, e: ::socketcan::Error| io_error(io::Error::other(format!("{what}: {e}")));
    let addr = CanAddr::from_iface(name).map_err(|e| io_error(explain_lookup_error(e)))?;
    let link = ::socketcan::CanInterface::open_iface(addr.ifindex());
    link.bring_down()
        .map_err(|e| nl_error("bringing the link down", e))?;
    link.set_bitrate(bitrate, None)
        .map_err(|e| nl_error(&format!("setting the bit rate to {bitrate} bit/s"), e))?;
    link.bring_up()
        .map_err(|e| nl_error("bringing the link up", e))?;
    debug!(interface = name, bitrate, "CAN bit rate set");
    Ok(())
}

/// Sets the bit rate of the CAN interface `name` to `bitrate` unless it already runs at
/// it, as the daemon does at start for a `[[can]]` with a `bitrate`. Returns whether it
/// changed the rate (the link went down and up, see [`set_bitrate`]).
pub fn ensure_bitrate(name: &str, bitrate: u32) -> Result<bool, CanError> {
    if SocketCanInterface::open(name)?.bitrate() == Some(bitrate) {
        return Ok(false);
    }
    set_bitrate(name, bitrate)?;
    Ok(true)
}

/// Whether the socket is still bound to its interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Binding {
    /// Bound; frames flow while the link is up.
    Bound,
    /// The interface was removed: the kernel unbound the socket for good.
    Detached,
}

/// What the receive path keeps between calls.
#[derive(Debug)]
struct ReceiveState {
    /// Events decoded but not yet handed out (a state change following its error frame).
    pending: VecDeque<CanEvent>,
    /// The fault confinement state last announced by an error frame.
    announced: ControllerState,
    binding: Binding,
}

/// A Linux SocketCAN network interface, such as `can0` on a GX device or `vcan0` in
/// tests.
///
/// Every instance owns its own raw socket, so two instances on the same interface in one
/// process see each other's frames (the kernel loops sent frames back to the other
/// sockets of the host) but never their own.
pub struct SocketCanInterface {
    name: String,
    /// The raw socket, non-blocking, registered with Tokio's reactor. (The socketcan
    /// crate's own Tokio socket waits for plain readability only; a socket whose link went
    /// down or vanished reports that as a pending error, which it would never wake for.)
    socket: AsyncFd<CanSocket>,
    link: ::socketcan::CanInterface,
    receive: Mutex<ReceiveState>,
    /// How many times a send found the transmit queue full (`ENOBUFS`) and waited.
    queue_full: AtomicU64,
}

impl fmt::Debug for SocketCanInterface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketCanInterface")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SocketCanInterface {
    /// Opens a raw CAN socket on the interface called `name`, accepting every data frame
    /// and every error frame.
    ///
    /// Must be called from within a Tokio runtime with I/O enabled (the socket registers
    /// with its reactor). Fails with a message naming the interface when it does not
    /// exist, is not a CAN interface, or the kernel has no SocketCAN support.
    pub fn open(name: &str) -> Result<SocketCanInterface, CanError> {
        let io_error = |source: io::Error| CanError::Io {
            interface: name.to_owned(),
            source,
        };
        let addr = CanAddr::from_iface(name).map_err(|e| io_error(explain_lookup_error(e)))?;
        let socket = CanSocket::open_addr(&addr).map_err(|e| io_error(explain_open_error(e)))?;
        socket
            .set_filters(&[accept_all_data_frames()])
            .map_err(io_error)?;
        socket.set_error_filter(ERR_MASK_ALL).map_err(io_error)?;
        enlarge_receive_buffer(&socket, name);
        socket.set_nonblocking(true).map_err(io_error)?;
        // SAFETY: the socket owns its descriptor and keeps returning that same descriptor
        // from `as_raw_fd` until it is dropped, which happens only with the `AsyncFd`.
        let socket =
            unsafe { AsyncFd::register(socket) }.map_err(|e| io_error(e.into_parts().1))?;
        let link = ::socketcan::CanInterface::open_iface(addr.ifindex());
        debug!(
            interface = name,
            ifindex = addr.ifindex(),
            "SocketCAN interface opened"
        );
        Ok(SocketCanInterface {
            name: name.to_owned(),
            socket,
            link,
            receive: Mutex::new(ReceiveState {
                pending: VecDeque::new(),
                announced: ControllerState::ErrorActive,
                binding: Binding::Bound,
            }),
            queue_full: AtomicU64::new(0),
        })
    }

    /// The controller's transmit and receive error counters, read from its driver over
    /// netlink on every call; `None` for interfaces without a controller (`vcan`), drivers
    /// that do not report them, and when netlink does not answer.
    pub fn error_counters(&self) -> Option<ErrorCounters> {
        match self.link.berr_counter() {
            Ok(counters) => counters.map(|c| ErrorCounters {
                tx: c.txerr,
                rx: c.rxerr,
            }),
            Err(e) => {
                debug!(interface = %self.name, error = %e, "netlink query for the error counters failed");
                None
            }
        }
    }

    /// How many times, since the interface was opened, a send found the driver's transmit
    /// queue full (`ENOBUFS`) and waited [`TX_RETRY_INTERVAL`] before trying again.
    pub fn transmit_queue_full_count(&self) -> u64 {
        self.queue_full.load(Ordering::Relaxed)
    }

    fn receive_state(&self) -> MutexGuard<'_, ReceiveState> {
        self.receive.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn io_error(&self, source: io::Error) -> CanError {
        CanError::Io {
            interface: self.name.clone(),
            source,
        }
    }

    fn closed(&self) -> CanError {
        CanError::Closed {
            interface: self.name.clone(),
        }
    }

    fn check_bound(&self) -> Result<(), CanError> {
        match self.receive_state().binding {
            Binding::Bound => Ok(()),
            Binding::Detached => Err(self.closed()),
        }
    }

    /// Marks the socket as unbound after the kernel removed the interface.
    fn detach(&self) -> CanError {
        self.receive_state().binding = Binding::Detached;
        warn!(interface = %self.name, "CAN interface removed");
        self.closed()
    }

    /// Maps a failed write.
    fn send_error(&self, source: io::Error) -> CanError {
        match source.raw_os_error() {
            Some(libc::ENODEV | libc::ENXIO) => self.detach(),
            Some(libc::ENETDOWN) if self.controller_state() == ControllerState::BusOff => {
                CanError::BusOff {
                    interface: self.name.clone(),
                }
            }
            Some(libc::ENETDOWN) => self.io_error(io::Error::new(
                io::ErrorKind::NetworkDown,
                "the interface is down (ip link set up ...)",
            )),
            _ => self.io_error(source),
        }
    }

    /// Turns one frame read from the socket into the event it stands for, if any.
    fn event_from_kernel(&self, frame: ::socketcan::CanFrame, at: Instant) -> Option<CanEvent> {
        match inbound_from_kernel(frame) {
            Inbound::Data(frame) => Some(CanEvent::Frame(ReceivedFrame { frame, at })),
            Inbound::Remote => {
                // The kernel filters keep remote frames out; one can only slip through
                // while filters are being replaced.
                trace!(interface = %self.name, "remote frame refused");
                None
            }
            Inbound::Error(decoded) => {
                debug!(interface = %self.name, error = %decoded.description, "CAN error frame");
                let mut receive = self.receive_state();
                if let Some(state) = decoded.state {
                    if state != receive.announced {
                        receive.announced = state;
                        receive.pending.push_back(CanEvent::State(state));
                    }
                }
                Some(CanEvent::Error(BusError {
                    description: decoded.description,
                    frame: decoded.raw,
                    at,
                }))
            }
        }
    }
}

#[async_trait]
impl CanInterface for SocketCanInterface {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, frame: CanFrame) -> Result<(), CanError> {
        self.send_batch(std::slice::from_ref(&frame))
            .await
            .map_err(|(_, e)| e)
    }

    /// One `sendmmsg` for as many frames as the transmit queue takes, then the same
    /// pacing as [`CanInterface::send`] for the frame it refused.
    async fn send_batch(&self, frames: &[CanFrame]) -> Result<(), (usize, CanError)> {
        self.check_bound().map_err(|e| (0, e))?;
        let kernel: Vec<libc::can_frame> = frames.iter().map(frames::raw_frame).collect();
        let mut done = 0;
        let mut waited = Duration::ZERO;
        while done < kernel.len() {
            let written = self
                .socket
                .async_io(Interest::WRITABLE, |socket| {
                    frames::send_many(socket.as_raw_fd(), &kernel[done..])
                })
                .await;
            match written {
                Ok(n) => {
                    done += n;
                    waited = Duration::ZERO;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    if waited >= TX_QUEUE_FULL_LIMIT {
                        let frame = frames[done];
                        return Err((
                            done,
                            self.io_error(io::Error::new(
                                io::ErrorKind::TimedOut,
                                format!(
                                    "transmit queue full for {} ms, frame {frame} not sent \
                                     (is another node on the bus acknowledging?)",
                                    waited.as_millis()
                                ),
                            )),
                        ));
                    }
                    self.queue_full.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(TX_RETRY_INTERVAL).await;
                    waited += TX_RETRY_INTERVAL;
                }
                Err(e) => return Err((done, self.send_error(e))),
            }
        }
        Ok(())
    }

    async fn recv(&self) -> Result<CanEvent, CanError> {
        loop {
            {
                let mut receive = self.receive_state();
                if let Some(event) = receive.pending.pop_front() {
                    return Ok(event);
                }
                if receive.binding == Binding::Detached {
                    return Err(self.closed());
                }
            }
            // Error readiness too: a pending socket error (link down, interface gone)
            // sets no readable flag.
            let read = self
                .socket
                .async_io(Interest::READABLE | Interest::ERROR, |socket| {
                    socket.read_frame()
                })
                .await;
            match read {
                Ok(frame) => {
                    let at = Instant::now();
                    if let Some(event) = self.event_from_kernel(frame, at) {
                        return Ok(event);
                    }
                }
                Err(e) => match e.raw_os_error() {
                    // The link went down: the controller is reset, so error frames from
                    // before no longer describe it.
                    Some(libc::ENETDOWN) => {
                        debug!(interface = %self.name, "CAN interface went down");
                        self.receive_state().announced = ControllerState::ErrorActive;
                        return Ok(CanEvent::State(ControllerState::Stopped));
                    }
                    Some(libc::ENODEV) => return Err(self.detach()),
                    _ => return Err(self.io_error(e)),
                },
            }
        }
    }

    fn set_filters(&self, filters: &[CanFilter]) -> Result<(), CanError> {
        if filters.len() > MAX_KERNEL_FILTERS {
            return Err(self.io_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} acceptance filters given, the kernel takes at most {MAX_KERNEL_FILTERS}",
                    filters.len()
                ),
            )));
        }
        let kernel: Vec<::socketcan::CanFilter> = if filters.is_empty() {
            vec![accept_all_data_frames()]
        } else {
            filters.iter().map(filter_to_kernel).collect()
        };
        self.socket
            .get_ref()
            .set_filters(&kernel)
            .map_err(|e| self.io_error(e))
    }

    /// The nominal bit rate the driver is configured for, read over netlink; `None` for
    /// interfaces without bit timing (`vcan`) and when netlink does not answer.
    fn bitrate(&self) -> Option<u32> {
        match self.link.details() {
            Ok(details) => details
                .can
                .bit_timing
                .map(|timing| timing.bitrate)
                .filter(|&bitrate| bitrate != 0),
            Err(e) => {
                debug!(interface = %self.name, error = %e, "netlink query for the bit rate failed");
                None
            }
        }
    }

    /// `Stopped` while the link is down or after the interface was removed; otherwise the
    /// driver's state over netlink where it reports one, else the state last announced
    /// by an error frame.
    fn controller_state(&self) -> ControllerState {
        let (binding, announced) = {
            let receive = self.receive_state();
            (receive.binding, receive.announced)
        };
        if binding == Binding::Detached {
            return ControllerState::Stopped;
        }
        match self.link.details() {
            Ok(details) if !details.is_up => ControllerState::Stopped,
            Ok(details) => details.can.state.map_or(announced, state_from_netlink),
            Err(e) => {
                debug!(interface = %self.name, error = %e, "netlink query for the state failed");
                announced
            }
        }
    }
}

/// The engine's name for a state the driver reports over netlink (`IFLA_CAN_STATE`).
fn state_from_netlink(state: CanState) -> ControllerState {
    match state {
        CanState::ErrorActive => ControllerState::ErrorActive,
        CanState::ErrorWarning => ControllerState::ErrorWarning,
        CanState::ErrorPassive => ControllerState::ErrorPassive,
        CanState::BusOff => ControllerState::BusOff,
        CanState::Stopped | CanState::Sleeping => ControllerState::Stopped,
    }
}

/// Explains why an interface name could not be resolved.
fn explain_lookup_error(error: io::Error) -> io::Error {
    match error.raw_os_error() {
        Some(libc::ENODEV) => io::Error::new(
            io::ErrorKind::NotFound,
            "no such network interface (is the CAN driver loaded and the link created?)",
        ),
        _ => error,
    }
}

/// Explains why a raw CAN socket could not be opened on an existing interface.
fn explain_open_error(error: io::Error) -> io::Error {
    match error.raw_os_error() {
        Some(libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT) => io::Error::new(
            io::ErrorKind::Unsupported,
            "the running kernel has no SocketCAN support (modules can and can-raw)",
        ),
        Some(libc::ENODEV) => io::Error::new(io::ErrorKind::InvalidInput, "not a CAN interface"),
        _ => error,
    }
}

/// Asks for [`RECEIVE_BUFFER_BYTES`] of receive buffer: forced past the system limit when
/// privileged, else as much as the limit allows. Failure only costs headroom.
fn enlarge_receive_buffer(socket: &CanSocket, name: &str) {
    let bytes = libc::c_int::try_from(RECEIVE_BUFFER_BYTES).unwrap_or(libc::c_int::MAX);
    let forced = socket.set_socket_option_int(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, bytes);
    if forced.is_err() {
        if let Err(e) = socket.set_socket_option_int(libc::SOL_SOCKET, libc::SO_RCVBUF, bytes) {
            warn!(interface = name, error = %e, "could not enlarge the CAN receive buffer");
        }
    }
    if let Ok(actual) = socket.get_socket_option_int(libc::SOL_SOCKET, libc::SO_RCVBUF) {
        debug!(interface = name, bytes = actual, "CAN receive buffer");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opening_a_missing_interface_names_it_and_says_why() {
        let error = SocketCanInterface::open("nosuchcan7").expect_err("no such interface");
        let CanError::Io { interface, source } = &error else {
            panic!("expected an I/O error, got {error:?}");
        };
        assert_eq!(interface, "nosuchcan7");
        assert_eq!(source.kind(), io::ErrorKind::NotFound);
        let text = error.to_string();
        assert!(text.contains("nosuchcan7"), "{text}");
        assert!(text.contains("no such network interface"), "{text}");
    }

    #[tokio::test]
    async fn opening_a_network_interface_that_is_not_can_is_refused() {
        // The loopback interface exists everywhere; depending on the kernel the refusal
        // is "not a CAN interface" or "no SocketCAN support", never a socket.
        let error = SocketCanInterface::open("lo").expect_err("lo is not a CAN interface");
        let text = error.to_string();
        assert!(text.starts_with("CAN interface lo: "), "{text}");
        assert!(
            text.contains("not a CAN interface") || text.contains("no SocketCAN support"),
            "{text}"
        );
    }

    #[test]
    fn netlink_states_map_to_engine_states() {
        assert_eq!(
            state_from_netlink(CanState::ErrorActive),
            ControllerState::ErrorActive
        );
        assert_eq!(
            state_from_netlink(CanState::ErrorWarning),
            ControllerState::ErrorWarning
        );
        assert_eq!(
            state_from_netlink(CanState::ErrorPassive),
            ControllerState::ErrorPassive
        );
        assert_eq!(
            state_from_netlink(CanState::BusOff),
            ControllerState::BusOff
        );
        assert_eq!(
            state_from_netlink(CanState::Stopped),
            ControllerState::Stopped
        );
        assert_eq!(
            state_from_netlink(CanState::Sleeping),
            ControllerState::Stopped
        );
    }
}
