//! The SocketCAN backend on real controller drivers: two SJA1000 controllers (emulated
//! Kvaser PCI cards, the kernel's `kvaser_pci` and `sja1000` drivers) on one CAN bus,
//! `can0` and `can1`.
//!
//! Needs those interfaces and root (netlink link changes). `scripts/socketcan-vm-test`
//! gives its virtual machine the two cards on one emulated bus and runs these tests there
//! with `--ignored --test-threads=1`: they reconfigure the shared interfaces, so they must
//! not run in parallel. Each test sets the bit rate it needs first.

use bmsfw_can::socketcan::{TX_QUEUE_FULL_LIMIT, ensure_bitrate, set_bitrate};
use bmsfw_can::{
    CanEvent, CanFrame, CanId, CanInterface, ControllerState, ErrorCounters, SocketCanInterface,
};
use std::time::Duration;
use tokio::time::{Instant, timeout};

const WAIT: Duration = Duration::from_secs(10);
/// The BMS-Can bit rate.
const BITRATE: u32 = 500_000;

fn open(name: &str) -> SocketCanInterface {
    SocketCanInterface::open(name).unwrap_or_else(|e| panic!("opening {name}: {e}"))
}

/// Both controllers at `bitrate`, up.
fn controllers_at(bitrate: u32) {
    for name in ["can0", "can1"] {
        set_bitrate(name, bitrate).unwrap_or_else(|e| panic!("{e}"));
    }
}

fn frame(n: u32) -> CanFrame {
    let id = if n % 2 == 0 {
        CanId::standard((n % 0x7FF) as u16).expect("standard id")
    } else {
        CanId::extended(0x1C00_0000 | (n & 0xF_FFFF)).expect("extended id")
    };
    let len = (n % 9) as usize;
    let bytes = n.to_le_bytes();
    let data: Vec<u8> = (0..len).map(|i| bytes[i % 4] ^ (i as u8)).collect();
    CanFrame::new(id, &data).expect("at most 8 bytes")
}

async fn next_frame(iface: &SocketCanInterface) -> CanFrame {
    match timeout(WAIT, iface.recv()).await {
        Ok(Ok(CanEvent::Frame(received))) => received.frame,
        Ok(Ok(other)) => panic!("expected a data frame on {}, got {other:?}", iface.name()),
        Ok(Err(e)) => panic!("recv on {}: {e}", iface.name()),
        Err(_) => panic!("nothing arrived on {} within {WAIT:?}", iface.name()),
    }
}

/// Sends `count` frames from `sender` as fast as it takes them, reading them on
/// `receiver` at the same time, and checks they arrive whole and in order.
async fn cross(sender: &SocketCanInterface, receiver: &SocketCanInterface, count: u32) {
    let frames: Vec<CanFrame> = (0..count).map(frame).collect();
    let send_all = async {
        for batch in frames.chunks(64) {
            sender
                .send_batch(batch)
                .await
                .unwrap_or_else(|(sent, e)| panic!("{sent} sent, then: {e}"));
            // Let the reader run, as the engine's bus task does between rounds: the
            // emulated controllers take frames far faster than a real bus.
            tokio::task::yield_now().await;
        }
    };
    let receive_all = async {
        let mut received = Vec::with_capacity(frames.len());
        while received.len() < frames.len() {
            received.push(next_frame(receiver).await);
        }
        received
    };
    let ((), received) = tokio::join!(send_all, receive_all);
    for (n, (got, sent)) in received.iter().zip(&frames).enumerate() {
        assert_eq!(got, sent, "frame {n}");
    }
}

#[tokio::test]
#[ignore = "needs the SJA1000 controllers can0 and can1: run by scripts/socketcan-vm-test"]
async fn the_bit_rate_is_set_and_read_back_through_netlink() {
    controllers_at(BITRATE);
    let can0 = open("can0");
    let can1 = open("can1");
    assert_eq!(can0.bitrate(), Some(BITRATE));
    assert_eq!(can1.bitrate(), Some(BITRATE));

    // Read on every call: a change made while the interface is open shows at once.
    set_bitrate("can0", 250_000).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(can0.bitrate(), Some(250_000));
    set_bitrate("can0", BITRATE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(can0.bitrate(), Some(BITRATE));
    drop(can0);

    // Frames of both formats cross the driver both ways.
    let can0 = open("can0");
    cross(&can0, &can1, 200).await;
    cross(&can1, &can0, 200).await;

    // The daemon's start: the rate it already has leaves the link alone (an open socket
    // sees no stop), another is set.
    assert!(!ensure_bitrate("can0", BITRATE).unwrap_or_else(|e| panic!("{e}")));
    cross(&can0, &can1, 20).await;
    assert!(ensure_bitrate("can1", 250_000).unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(can1.bitrate(), Some(250_000));
    assert!(ensure_bitrate("can1", BITRATE).unwrap_or_else(|e| panic!("{e}")));
    drop(can1);
    let can1 = open("can1");
    cross(&can0, &can1, 20).await;

    let error = set_bitrate("can7", BITRATE).expect_err("no can7");
    assert!(
        error.to_string().contains("no such network interface"),
        "{error}"
    );
    controllers_at(BITRATE);
}

#[tokio::test]
#[ignore = "needs the SJA1000 controllers can0 and can1: run by scripts/socketcan-vm-test"]
async fn error_counters_and_the_controller_state_come_from_the_driver() {
    controllers_at(BITRATE);
    let can0 = open("can0");
    let can1 = open("can1");
    cross(&can0, &can1, 50).await;

    // The driver reports its counters (a vcan interface has none) and its state.
    assert_eq!(can0.error_counters(), Some(ErrorCounters { tx: 0, rx: 0 }));
    assert_eq!(can1.error_counters(), Some(ErrorCounters { tx: 0, rx: 0 }));
    assert_eq!(open("vcan0").error_counters(), None);
    assert_eq!(can0.controller_state(), ControllerState::ErrorActive);
    let details = socketcan::CanInterface::open("can0")
        .expect("netlink can0")
        .details()
        .expect("details of can0");
    assert_eq!(
        details.can.state,
        Some(socketcan::nl::CanState::ErrorActive),
        "the driver itself reports the state"
    );

    // A stopped controller: the driver says so, and its counters are still readable.
    let link = socketcan::CanInterface::open("can1").expect("netlink can1");
    link.bring_down().expect("down");
    assert_eq!(can1.controller_state(), ControllerState::Stopped);
    let details = link.details().expect("details of can1");
    assert_eq!(details.can.state, Some(socketcan::nl::CanState::Stopped));
    assert_eq!(can1.error_counters(), Some(ErrorCounters { tx: 0, rx: 0 }));
    link.bring_up().expect("up");
    assert_eq!(can1.controller_state(), ControllerState::ErrorActive);
    // The socket reports the stop once, then carries frames again.
    assert_eq!(
        timeout(WAIT, can1.recv())
            .await
            .expect("an event")
            .expect("recv"),
        CanEvent::State(ControllerState::Stopped)
    );
    cross(&can0, &can1, 10).await;
}

/// The queueing discipline in front of a driver, replaced over rtnetlink (busybox has no
/// `tc` that can).
mod qdisc {
    use std::ffi::CString;
    use std::io;
    use std::mem::size_of;

    const RTM_NEWQDISC: u16 = 36;
    const RTM_DELQDISC: u16 = 37;
    const NLMSG_ERROR: u16 = 2;
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_ACK: u16 = 0x4;
    const NLM_F_REPLACE: u16 = 0x100;
    const NLM_F_CREATE: u16 = 0x400;
    const TCA_KIND: u16 = 1;
    const TCA_OPTIONS: u16 = 2;
    const TC_H_ROOT: u32 = 0xFFFF_FFFF;

    fn attribute(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
        let len = 4 + data.len();
        out.extend_from_slice(&(len as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(4), 0);
    }

    /// Sends one request and waits for the kernel's answer.
    fn request(kind: u16, flags: u16, interface: &str, attributes: &[u8]) -> io::Result<()> {
        let name = CString::new(interface).expect("no NUL in an interface name");
        // SAFETY: a valid NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(io::Error::last_os_error());
        }
        let mut message = Vec::new();
        message.extend_from_slice(&0u32.to_ne_bytes()); // length, filled in below
        message.extend_from_slice(&kind.to_ne_bytes());
        message.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        message.extend_from_slice(&1u32.to_ne_bytes()); // sequence
        message.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel
        // struct tcmsg: family, padding, interface, handle (the kernel picks), parent.
        message.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        message.extend_from_slice(&(index as i32).to_ne_bytes());
        message.extend_from_slice(&0u32.to_ne_bytes());
        message.extend_from_slice(&TC_H_ROOT.to_ne_bytes());
        message.extend_from_slice(&0u32.to_ne_bytes());
        message.extend_from_slice(attributes);
        let len = message.len() as u32;
        message[..4].copy_from_slice(&len.to_ne_bytes());

        // SAFETY: plain socket calls on a descriptor owned here and closed below; the
        // buffers outlive the calls that use them.
        unsafe {
            let fd = libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut kernel: libc::sockaddr_nl = std::mem::zeroed();
            kernel.nl_family = libc::AF_NETLINK as u16;
            let sent = libc::sendto(
                fd,
                message.as_ptr().cast(),
                message.len(),
                0,
                (&raw const kernel).cast(),
                size_of::<libc::sockaddr_nl>() as u32,
            );
            let mut answer = [0u8; 1024];
            let received = if sent < 0 {
                -1
            } else {
                libc::recv(fd, answer.as_mut_ptr().cast(), answer.len(), 0)
            };
            let error = io::Error::last_os_error();
            libc::close(fd);
            if received < 20 {
                return Err(error);
            }
            let kind = u16::from_ne_bytes([answer[4], answer[5]]);
            let code = i32::from_ne_bytes([answer[16], answer[17], answer[18], answer[19]]);
            match (kind, code) {
                (NLMSG_ERROR, 0) => Ok(()),
                (NLMSG_ERROR, code) => Err(io::Error::from_raw_os_error(-code)),
                (other, _) => Err(io::Error::other(format!("netlink answered type {other}"))),
            }
        }
    }

    /// Makes the root queue of `interface` a packet FIFO of `limit` frames (`pfifo`). A
    /// FIFO of 0 frames takes nothing: every frame the driver cannot take at once is
    /// refused with ENOBUFS, as by a queue that is full.
    pub fn fifo(interface: &str, limit: u32) -> io::Result<()> {
        let mut attributes = Vec::new();
        attribute(&mut attributes, TCA_KIND, b"pfifo\0");
        attribute(&mut attributes, TCA_OPTIONS, &limit.to_ne_bytes());
        request(
            RTM_NEWQDISC,
            NLM_F_CREATE | NLM_F_REPLACE,
            interface,
            &attributes,
        )
    }

    /// Gives `interface` back its default queue.
    pub fn default(interface: &str) -> io::Result<()> {
        request(RTM_DELQDISC, 0, interface, &[])
    }

    /// Gives the interface back its default queue when dropped, a failed test included.
    pub struct Restore(pub &'static str);

    impl Drop for Restore {
        fn drop(&mut self) {
            if let Err(e) = default(self.0) {
                eprintln!("could not give {} its default queue back: {e}", self.0);
            }
        }
    }
}

#[tokio::test]
#[ignore = "needs the SJA1000 controllers can0 and can1: run by scripts/socketcan-vm-test"]
async fn a_full_transmit_queue_is_retried_until_it_takes_the_frames_then_given_up() {
    controllers_at(BITRATE);
    let sender = open("can0");
    let receiver = open("can1");
    // The emulated controller transmits within the driver's register write, so the
    // driver's queue never stays stopped and a queue in front of it never fills by
    // itself. A queue of no frames refuses every frame the same way a full one does.
    let restore = qdisc::Restore("can0");
    qdisc::fifo("can0", 0).expect("a queue of 0 frames on can0");
    let raw =
        <socketcan::CanSocket as socketcan::Socket>::open("can0").expect("raw socket on can0");
    let probe = <socketcan::CanDataFrame as socketcan::EmbeddedFrame>::new(
        socketcan::StandardId::new(0x123).expect("in range"),
        &[1],
    )
    .expect("data frame");
    let refused = socketcan::Socket::write_frame(&raw, &probe).expect_err("the queue is full");
    assert_eq!(refused.raw_os_error(), Some(libc::ENOBUFS), "{refused}");

    // The queue opens 100 ms into the send: every frame of the batch goes, in order.
    let frames: Vec<CanFrame> = (0..100).map(frame).collect();
    let opener = tokio::spawn(async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        qdisc::fifo("can0", 10).expect("a queue of 10 frames on can0");
    });
    let started = Instant::now();
    sender
        .send_batch(&frames)
        .await
        .unwrap_or_else(|(sent, e)| panic!("{sent} sent, then: {e}"));
    let waited = started.elapsed();
    opener.await.expect("queue opened");
    for (n, sent) in frames.iter().enumerate() {
        assert_eq!(next_frame(&receiver).await, *sent, "frame {n}");
    }
    let waits = sender.transmit_queue_full_count();
    assert!(
        waits >= 10 && waited >= Duration::from_millis(90),
        "the send waited {waited:?} in {waits} retries: the full queue was not retried"
    );

    // A queue that stays full: the frame is given up after the limit, with a reason.
    qdisc::fifo("can0", 0).expect("a queue of 0 frames on can0");
    let started = Instant::now();
    let error = sender
        .send(frame(7))
        .await
        .expect_err("a queue that stays full");
    let waited = started.elapsed();
    drop(restore);
    assert!(waited >= TX_QUEUE_FULL_LIMIT, "given up after {waited:?}");
    assert!(error.to_string().contains("transmit queue full"), "{error}");
    assert!(
        timeout(Duration::from_millis(300), receiver.recv())
            .await
            .is_err(),
        "the given-up frame was not sent"
    );

    // The default queue carries frames again.
    cross(&sender, &receiver, 100).await;
}
