use super::*;
use crate::bus::{DropRule, LossReport, SimBus};
use bmsfw_can::{CanEvent, CanFilter, CanFrame, CanId, CanInterface, ControllerState};
use std::time::Duration;

fn frame(id: u16, data: &[u8]) -> CanFrame {
    CanFrame::new(CanId::standard(id).unwrap(), data).unwrap()
}

async fn next_frame(iface: &impl CanInterface) -> CanFrame {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), iface.recv())
            .await
            .expect("an event within 5 s")
            .unwrap()
        {
            CanEvent::Frame(f) => return f.frame,
            _ => continue,
        }
    }
}

async fn until(what: &str, check: impl Fn() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what} did not happen within 5 s");
}

/// A bus with a battery node, served in a fresh folder, and a node joined over the
/// socket (the server and folder kept alive by the returned values).
struct Joined {
    _dir: tempfile::TempDir,
    bus: SimBus,
    battery: crate::bus::SimNode,
    server: BridgeServer,
    gx: BridgeInterface,
}

async fn joined() -> Joined {
    let dir = tempfile::tempdir().unwrap();
    let bus = SimBus::new("site0", 500_000);
    let battery = bus.attach("battery");
    let server = BridgeServer::serve(bus.clone(), &dir.path().join("site0.sock"), "gx").unwrap();
    let gx = BridgeInterface::connect(server.path(), "site0")
        .await
        .unwrap();
    until("the node joining", || {
        bus.nodes().iter().any(|n| n.name == "gx")
    })
    .await;
    Joined {
        _dir: dir,
        bus,
        battery,
        server,
        gx,
    }
}

#[tokio::test]
async fn a_node_across_the_socket_talks_with_the_bus_both_ways() {
    let Joined {
        _dir,
        bus: _bus,
        battery,
        server: _server,
        gx,
    } = joined().await;
    assert_eq!(gx.name(), "site0");
    assert_eq!(gx.bitrate(), Some(500_000));
    assert_eq!(gx.controller_state(), ControllerState::ErrorActive);

    // More frames than the credit and the transmit queue: the sender is paced, nothing
    // is lost, the order holds.
    for i in 0..40u8 {
        gx.send(frame(0x7E0, &[i])).await.unwrap();
    }
    for i in 0..40u8 {
        assert_eq!(next_frame(&battery).await, frame(0x7E0, &[i]));
    }
    battery.send(frame(0x7E8, &[0x50, 0x02])).await.unwrap();
    battery.send(frame(0x123, &[9])).await.unwrap();
    assert_eq!(next_frame(&gx).await, frame(0x7E8, &[0x50, 0x02]));
    assert_eq!(next_frame(&gx).await, frame(0x123, &[9]));

    // The node's filters hold on its side of the socket.
    gx.set_filters(&[CanFilter {
        id: CanId::standard(0x7E8).unwrap(),
        mask: 0x7FF,
    }])
    .unwrap();
    battery.send(frame(0x123, &[1])).await.unwrap();
    battery.send(frame(0x7E8, &[2])).await.unwrap();
    assert_eq!(next_frame(&gx).await, frame(0x7E8, &[2]));
}

#[tokio::test]
async fn a_lost_frame_reported_by_the_bus_reaches_the_node_as_an_error_frame() {
    let Joined {
        _dir,
        bus,
        battery,
        server: _server,
        gx,
    } = joined().await;
    bus.set_drop_rule(DropRule::when(|d| d.receiver == "gx").reported(LossReport::Overflow));
    battery.send(frame(0x100, &[1])).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), gx.recv())
        .await
        .unwrap()
        .unwrap();
    let CanEvent::Error(e) = event else {
        panic!("{event:?}");
    };
    assert!(e.frame.reports_a_lost_frame(), "{e:?}");
}

#[tokio::test]
async fn the_node_leaves_the_bus_when_its_process_goes_and_a_new_one_joins() {
    let Joined {
        _dir,
        bus,
        battery,
        server,
        gx,
    } = joined().await;
    drop(gx);
    until("the node leaving", || {
        !bus.nodes().iter().any(|n| n.name == "gx")
    })
    .await;
    // The battery kept running; a restarted daemon joins again.
    let gx = BridgeInterface::connect(server.path(), "site0")
        .await
        .unwrap();
    battery.send(frame(0x351, &[1, 2])).await.unwrap();
    assert_eq!(next_frame(&gx).await, frame(0x351, &[1, 2]));
}

#[tokio::test]
async fn nothing_listening_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("none.sock");
    let Err(e) = BridgeInterface::connect(&path, "site0").await else {
        panic!("connected to nothing");
    };
    let text = e.to_string();
    assert!(
        text.contains("none.sock") && text.contains("site0"),
        "{text}"
    );
}
