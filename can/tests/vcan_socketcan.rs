//! The SocketCAN backend on a real Linux CAN stack.
//!
//! These tests need the `vcan` interfaces `vcan0` and `vcan1` (up) and root (netlink link
//! changes, a forced receive buffer). The machines the project is developed on have no
//! CAN in their kernel, so `scripts/socketcan-vm-test` boots a stock Debian kernel in a
//! small virtual machine and runs them there with `--ignored --test-threads=1`. They
//! share the interfaces, so they must not run in parallel.

use bmsfw_can::{
    CanError, CanEvent, CanFilter, CanFrame, CanId, CanInterface, ControllerState, ReceivedFrame,
    SocketCanInterface,
};
use socketcan::{
    CanErrorFrame, CanFdFrame, CanRemoteFrame, EmbeddedFrame, Socket, StandardId, nl::Mtu,
};
use std::time::Duration;
use tokio::time::{Instant, timeout};

const WAIT: Duration = Duration::from_secs(5);

fn std_id(raw: u16) -> CanId {
    CanId::standard(raw).expect("standard identifier in range")
}

fn ext_id(raw: u32) -> CanId {
    CanId::extended(raw).expect("extended identifier in range")
}

fn frame(id: CanId, data: &[u8]) -> CanFrame {
    CanFrame::new(id, data).expect("at most 8 bytes")
}

fn open(name: &str) -> SocketCanInterface {
    SocketCanInterface::open(name).unwrap_or_else(|e| panic!("opening {name}: {e}"))
}

async fn next_event(iface: &SocketCanInterface) -> CanEvent {
    timeout(WAIT, iface.recv())
        .await
        .unwrap_or_else(|_| panic!("nothing arrived on {} within {WAIT:?}", iface.name()))
        .unwrap_or_else(|e| panic!("recv on {}: {e}", iface.name()))
}

async fn next_frame(iface: &SocketCanInterface) -> ReceivedFrame {
    match next_event(iface).await {
        CanEvent::Frame(received) => received,
        other => panic!("expected a data frame on {}, got {other:?}", iface.name()),
    }
}

/// Every length from 0 to 8, standard and extended, low and high identifiers.
fn assorted_frames() -> Vec<CanFrame> {
    let mut frames = Vec::new();
    for len in 0..=8u8 {
        let data: Vec<u8> = (0..len).map(|i| 0xA0 + i).collect();
        frames.push(frame(std_id(0x100 + u16::from(len)), &data));
        frames.push(frame(std_id(0x7FF - u16::from(len)), &data));
        frames.push(frame(ext_id(0x18FF_5000 + u32::from(len)), &data));
        frames.push(frame(ext_id(0x1FFF_FFFF - u32::from(len)), &data));
        frames.push(frame(ext_id(u32::from(len)), &data));
    }
    frames
}

#[tokio::test]
#[ignore = "needs vcan0: run by scripts/socketcan-vm-test"]
async fn frames_of_every_length_and_format_cross_both_ways() {
    let a = open("vcan0");
    let b = open("vcan0");
    let frames = assorted_frames();
    for (sender, receiver) in [(&a, &b), (&b, &a)] {
        let before = Instant::now();
        for f in &frames {
            sender.send(*f).await.expect("send");
        }
        let mut last = before;
        for f in &frames {
            let received = next_frame(receiver).await;
            assert_eq!(received.frame, *f);
            assert_eq!(received.frame.id().is_extended(), f.id().is_extended());
            assert!(received.at >= last, "receive times go backwards");
            last = received.at;
        }
        assert!(last <= Instant::now());
    }
    // Neither socket hears its own frames: the next thing each sees is the other's.
    let marker = frame(std_id(0x555), &[1]);
    b.send(marker).await.expect("send");
    assert_eq!(next_frame(&a).await.frame, marker);
    a.send(marker).await.expect("send");
    assert_eq!(next_frame(&b).await.frame, marker);
}

fn numbered(n: u32) -> CanFrame {
    let id = if n % 3 == 0 {
        ext_id(0x0CFF_0000 | (n & 0xFFFF))
    } else {
        std_id((n % 0x7FF) as u16)
    };
    let len = (n % 9) as usize;
    let bytes = n.to_le_bytes();
    let data: Vec<u8> = (0..len).map(|i| bytes[i % 4] ^ (i as u8)).collect();
    frame(id, &data)
}

#[tokio::test]
#[ignore = "needs vcan0: run by scripts/socketcan-vm-test"]
async fn thousands_of_frames_arrive_in_order_while_the_reader_keeps_up() {
    const COUNT: u32 = 5000;
    let sender = open("vcan0");
    let receiver = open("vcan0");
    let send_all = async {
        for n in 0..COUNT {
            sender.send(numbered(n)).await.expect("send");
            if n % 64 == 0 {
                // Let the reader run, as a busy engine task would.
                tokio::task::yield_now().await;
            }
        }
    };
    let receive_all = async {
        let mut received = Vec::with_capacity(COUNT as usize);
        while received.len() < COUNT as usize {
            received.push(next_frame(&receiver).await.frame);
        }
        received
    };
    let ((), received) = tokio::join!(send_all, receive_all);
    for (n, got) in received.iter().enumerate() {
        assert_eq!(*got, numbered(n as u32), "frame {n}");
    }
}

#[tokio::test]
#[ignore = "needs vcan0: run by scripts/socketcan-vm-test"]
async fn a_burst_sent_before_anyone_reads_is_kept_by_the_receive_buffer() {
    // The default receive buffer holds about 270 frames; the backend asks for room for
    // a few thousand (forced, as root), so a burst arriving while the engine is busy
    // elsewhere survives.
    const COUNT: u32 = 1500;
    let sender = open("vcan0");
    let receiver = open("vcan0");
    for n in 0..COUNT {
        sender.send(numbered(n)).await.expect("send");
    }
    let mut received = Vec::new();
    while let Ok(event) = timeout(Duration::from_secs(1), receiver.recv()).await {
        match event.expect("recv") {
            CanEvent::Frame(f) => received.push(f.frame),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(received.len(), COUNT as usize, "frames lost from the burst");
    for (n, got) in received.iter().enumerate() {
        assert_eq!(*got, numbered(n as u32), "frame {n}");
    }
}

#[tokio::test]
#[ignore = "needs vcan0: run by scripts/socketcan-vm-test"]
async fn filters_pass_only_accepted_identifiers_and_keep_formats_apart() {
    let sender = open("vcan0");
    let receiver = open("vcan0");
    receiver
        .set_filters(&[
            // Exactly standard 0x351.
            CanFilter {
                id: std_id(0x351),
                mask: 0x7FF,
            },
            // Standard 0x370..=0x37F.
            CanFilter {
                id: std_id(0x370),
                mask: 0x7F0,
            },
            // Exactly extended 0x18FF50E5.
            CanFilter {
                id: ext_id(0x18FF_50E5),
                mask: 0x1FFF_FFFF,
            },
        ])
        .expect("set filters");

    let offered = [
        (frame(std_id(0x351), &[1]), true),
        (frame(ext_id(0x351), &[2]), false),
        (frame(std_id(0x350), &[3]), false),
        (frame(std_id(0x37A), &[4]), true),
        (frame(ext_id(0x37A), &[5]), false),
        (frame(std_id(0x380), &[6]), false),
        (frame(ext_id(0x18FF_50E5), &[7]), true),
        (frame(std_id(0x0E5), &[8]), false),
        (frame(ext_id(0x18FF_50E4), &[9]), false),
        (frame(std_id(0x36F), &[10]), false),
    ];
    for (f, _) in &offered {
        sender.send(*f).await.expect("send");
    }
    let sentinel = frame(std_id(0x351), &[0xEE]);
    sender.send(sentinel).await.expect("send");

    let expected: Vec<CanFrame> = offered
        .iter()
        .filter(|(_, accepted)| *accepted)
        .map(|(f, _)| *f)
        .chain([sentinel])
        .collect();
    let mut received = Vec::new();
    for _ in 0..expected.len() {
        received.push(next_frame(&receiver).await.frame);
    }
    assert_eq!(received, expected);

    // An empty list accepts everything again.
    receiver.set_filters(&[]).expect("clear filters");
    for (f, _) in &offered {
        sender.send(*f).await.expect("send");
    }
    for (f, _) in &offered {
        assert_eq!(next_frame(&receiver).await.frame, *f);
    }

    let too_many = vec![
        CanFilter {
            id: std_id(1),
            mask: 0x7FF
        };
        513
    ];
    let error = receiver
        .set_filters(&too_many)
        .expect_err("over the kernel's limit");
    assert!(error.to_string().contains("at most 512"), "{error}");
}

#[tokio::test]
#[ignore = "needs vcan0: run by scripts/socketcan-vm-test"]
async fn remote_and_fd_frames_are_refused() {
    // vcan1 carries CAN FD frames only with the FD MTU, which needs the link down.
    let link = socketcan::CanInterface::open("vcan1").expect("netlink vcan1");
    link.bring_down().expect("down");
    link.set_mtu(Mtu::Fd).expect("FD MTU");
    link.bring_up().expect("up");

    let receiver = open("vcan1");
    let raw = socketcan::CanSocket::open("vcan1").expect("raw classic socket");
    let raw_fd = socketcan::CanFdSocket::open("vcan1").expect("raw FD socket");
    let id = StandardId::new(0x123).expect("in range");

    let remote = CanRemoteFrame::new_remote(id, 4).expect("remote frame");
    raw.write_frame(&remote).expect("write remote frame");
    let fd = CanFdFrame::new(id, &[0x5A; 12]).expect("FD frame");
    raw_fd.write_frame(&fd).expect("write FD frame");
    let data = socketcan::CanDataFrame::new(id, &[1, 2, 3]).expect("data frame");
    raw.write_frame(&data).expect("write data frame");

    assert_eq!(
        next_frame(&receiver).await.frame,
        frame(std_id(0x123), &[1, 2, 3])
    );

    drop(receiver);
    link.bring_down().expect("down");
    link.set_mtu(Mtu::Standard).expect("classic MTU");
    link.bring_up().expect("up");
}

/// Class bits and data bytes of `linux/can/error.h`.
const CAN_ERR_CRTL: u32 = 0x0000_0004;
const CAN_ERR_BUSOFF: u32 = 0x0000_0040;
const CAN_ERR_CNT: u32 = 0x0000_0200;
const CAN_ERR_CRTL_TX_PASSIVE: u8 = 0x20;
const CAN_ERR_CRTL_ACTIVE: u8 = 0x40;

#[tokio::test]
#[ignore = "needs vcan0: run by scripts/socketcan-vm-test"]
async fn error_frames_arrive_decoded_and_move_the_controller_state() {
    let iface = open("vcan0");
    // Error frames are not subject to the identifier filters.
    iface
        .set_filters(&[CanFilter {
            id: std_id(0x7FF),
            mask: 0x7FF,
        }])
        .expect("set filters");
    assert_eq!(iface.controller_state(), ControllerState::ErrorActive);

    // A controller driver reports trouble as error frames; on vcan a raw socket can
    // inject the same bytes.
    let raw = socketcan::CanSocket::open("vcan0").expect("raw socket");
    let passive = CanErrorFrame::new_error(
        CAN_ERR_CRTL | CAN_ERR_CNT,
        &[0, CAN_ERR_CRTL_TX_PASSIVE, 0, 0, 0, 0, 130, 2],
    )
    .expect("error frame");
    raw.write_frame(&passive).expect("write error frame");

    let CanEvent::Error(error) = next_event(&iface).await else {
        panic!("expected the error first");
    };
    assert!(
        error.description.contains("tx passive"),
        "{}",
        error.description
    );
    assert!(
        error.description.contains("tx=130"),
        "{}",
        error.description
    );
    assert_eq!(
        next_event(&iface).await,
        CanEvent::State(ControllerState::ErrorPassive)
    );
    assert_eq!(iface.controller_state(), ControllerState::ErrorPassive);

    // The same report again changes nothing: an error, no state event.
    raw.write_frame(&passive).expect("write error frame");
    assert!(matches!(next_event(&iface).await, CanEvent::Error(_)));

    let bus_off = CanErrorFrame::new_error(CAN_ERR_BUSOFF, &[]).expect("error frame");
    raw.write_frame(&bus_off).expect("write error frame");
    let CanEvent::Error(error) = next_event(&iface).await else {
        panic!("expected the bus-off error");
    };
    assert_eq!(error.description, "bus off");
    assert_eq!(
        next_event(&iface).await,
        CanEvent::State(ControllerState::BusOff)
    );
    assert_eq!(iface.controller_state(), ControllerState::BusOff);

    let active =
        CanErrorFrame::new_error(CAN_ERR_CRTL, &[0, CAN_ERR_CRTL_ACTIVE]).expect("error frame");
    raw.write_frame(&active).expect("write error frame");
    assert!(matches!(next_event(&iface).await, CanEvent::Error(_)));
    assert_eq!(
        next_event(&iface).await,
        CanEvent::State(ControllerState::ErrorActive)
    );
    assert_eq!(iface.controller_state(), ControllerState::ErrorActive);
}

#[tokio::test]
#[ignore = "needs vcan0: run by scripts/socketcan-vm-test"]
async fn vcan_has_no_bit_rate_and_reports_its_link_state() {
    let vcan0 = open("vcan0");
    assert_eq!(vcan0.name(), "vcan0");
    assert_eq!(vcan0.bitrate(), None);
    assert_eq!(vcan0.controller_state(), ControllerState::ErrorActive);

    let receiver = open("vcan1");
    let sender = open("vcan1");
    let link = socketcan::CanInterface::open("vcan1").expect("netlink vcan1");
    link.bring_down().expect("down");
    assert_eq!(
        next_event(&receiver).await,
        CanEvent::State(ControllerState::Stopped)
    );
    assert_eq!(receiver.controller_state(), ControllerState::Stopped);
    let error = sender
        .send(frame(std_id(0x10), &[1]))
        .await
        .expect_err("sending on a down link");
    assert!(error.to_string().contains("down"), "{error}");

    link.bring_up().expect("up");
    assert_eq!(receiver.controller_state(), ControllerState::ErrorActive);
    let after = frame(std_id(0x11), &[2]);
    sender
        .send(after)
        .await
        .expect("send after the link came back");
    assert_eq!(next_frame(&receiver).await.frame, after);
}

#[tokio::test]
#[ignore = "needs vcan0: run by scripts/socketcan-vm-test"]
async fn a_removed_interface_closes_the_backend() {
    let link = socketcan::CanInterface::create_vcan("vcangone", None).expect("create vcan");
    link.bring_up().expect("up");
    let iface = open("vcangone");
    link.delete().map_err(|(_, e)| e).expect("delete vcan");

    assert!(matches!(
        timeout(WAIT, iface.recv()).await.expect("recv returns"),
        Err(CanError::Closed { .. })
    ));
    assert!(matches!(
        iface.send(frame(std_id(1), &[])).await,
        Err(CanError::Closed { .. })
    ));
    assert_eq!(iface.controller_state(), ControllerState::Stopped);
}

#[tokio::test]
#[ignore = "needs vcan0: run by scripts/socketcan-vm-test"]
async fn opening_what_is_not_a_can_interface_says_so() {
    let missing = SocketCanInterface::open("can9").expect_err("no can9 here");
    assert_eq!(
        missing.to_string(),
        "CAN interface can9: no such network interface \
         (is the CAN driver loaded and the link created?)"
    );
    let loopback = SocketCanInterface::open("lo").expect_err("lo is not CAN");
    assert_eq!(
        loopback.to_string(),
        "CAN interface lo: not a CAN interface"
    );
}
