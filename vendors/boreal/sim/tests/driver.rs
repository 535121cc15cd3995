//! The bank's driver on a simulated bus, in virtual time: what the nodes see when the
//! bus delivers late.

use async_trait::async_trait;
use bmsfw_can::{CanError, CanEvent, CanFilter, CanInterface, ControllerState};
use bmsfw_plugin_api::CanFrame;
use bmsfw_protocols::canopen::frame::ServerResponse;
use bmsfw_protocols::canopen::{
    NodeId, ProgramConfig, ProgramDownload, ProgramEvent, SdoChannel, SdoClientConfig,
    SoftwareIdCheck,
};
use bmsfw_sim::battery::{BatteryConfig, Epoch, IdentityConfig};
use bmsfw_sim::bus::{SimBus, SimNode};
use boreal_sim::package::{PackageSpec, build};
use boreal_sim::{BankConfig, BankHandle, BorealBank};
use std::sync::Arc;
use std::time::Duration;

const PRODUCT: u16 = 0xB210;

fn battery() -> BatteryConfig {
    BatteryConfig::new(IdentityConfig {
        manufacturer: "BOREAL".into(),
        bms_name: "Taiga 10".into(),
        product_code: PRODUCT,
        firmware: [0x02, 0x10],
        capacity_ah: 400,
        product_info_tail: None,
        serial: None,
        product_name: None,
    })
}

/// A node whose frames come stamped `lag` before the Tokio clock, as from a bus task
/// that fell behind on a loaded machine and delivers its backlog late.
struct LateBus {
    node: SimNode,
    lag: Duration,
}

#[async_trait]
impl CanInterface for LateBus {
    fn name(&self) -> &str {
        self.node.name()
    }
    async fn send(&self, frame: CanFrame) -> Result<(), CanError> {
        self.node.send(frame).await
    }
    async fn recv(&self) -> Result<CanEvent, CanError> {
        match self.node.recv().await? {
            CanEvent::Frame(mut rx) => {
                rx.at -= self.lag;
                Ok(CanEvent::Frame(rx))
            }
            other => Ok(other),
        }
    }
    fn set_filters(&self, filters: &[CanFilter]) -> Result<(), CanError> {
        self.node.set_filters(filters)
    }
    fn bitrate(&self) -> Option<u32> {
        self.node.bitrate()
    }
    fn controller_state(&self) -> ControllerState {
        self.node.controller_state()
    }
}

/// Runs a program download of `image` to node 1 from `gx`; returns its outcome and
/// the ackseq of every block acknowledgement.
async fn program(gx: &SimNode, epoch: Epoch, image: &[u8]) -> (ProgramEvent, Vec<u8>) {
    let channel = SdoChannel::for_node(NodeId::new(1).unwrap());
    let config = ProgramConfig {
        software_id: SoftwareIdCheck::Crc32OfImage,
        ..ProgramConfig::new(SdoClientConfig::new(channel))
    };
    let mut flow = ProgramDownload::new(config, image.len() as u32);
    flow.start(epoch.now());
    let mut acks = Vec::new();
    loop {
        let now = epoch.now();
        while let Some(frame) = flow.poll_transmit(now) {
            gx.send(frame).await.unwrap();
        }
        let mut moved = false;
        while let Some(event) = flow.poll_event() {
            moved = true;
            match event {
                ProgramEvent::NeedData { offset, len } => {
                    let o = offset as usize;
                    flow.provide_data(now, &image[o..o + len]).unwrap();
                }
                ProgramEvent::Done { .. } | ProgramEvent::Failed(_) => return (event, acks),
                _ => {}
            }
        }
        if moved {
            continue;
        }
        let deadline = flow.poll_timeout().map(|t| epoch.at(t));
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = gx.recv() => {
                if let CanEvent::Frame(rx) = event.unwrap() {
                    if rx.frame.id() == channel.response {
                        if let Ok(ServerResponse::BlockAck { ackseq, .. }) =
                            ServerResponse::parse(rx.frame.data())
                        {
                            acks.push(ackseq);
                        }
                    }
                    flow.handle_frame(epoch.timestamp(rx.at), &rx.frame);
                }
            }
            () = sleep => flow.handle_timeout(epoch.now()),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_bus_that_delivers_late_does_not_make_a_node_acknowledge_a_sub_block_early() {
    let bus = SimBus::new("sim3", 500_000);
    // Past the lag, so that the late stamps stay after the epoch.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let epoch = Epoch::starting_now();
    let bank = BorealBank::new(
        BankConfig::new(PRODUCT, [0x02, 0x10], 1),
        battery(),
        epoch.now(),
    )
    .unwrap();
    let late = LateBus {
        node: bus.attach("taiga"),
        lag: Duration::from_millis(150),
    };
    let (handle, task) = BankHandle::spawn("taiga", bank, epoch, Arc::new(late));
    let gx = bus.attach("gx");
    let image = build(&PackageSpec::new(PRODUCT, [0x02, 0x15], 10_000, 77)).1;
    let (outcome, acks) = program(&gx, epoch, &image).await;
    assert!(
        matches!(outcome, ProgramEvent::Done { .. }),
        "{outcome:?} after {} acknowledgements, the first {:?}",
        acks.len(),
        &acks[..acks.len().min(16)]
    );
    // The node heard every segment within a frame time of the one before: none may look
    // lost, so every sub-block is acknowledged whole, once.
    let segments = image.len().div_ceil(7);
    let full = segments / 127;
    let expected: Vec<u8> = std::iter::repeat_n(127, full)
        .chain((segments % 127 != 0).then_some((segments % 127) as u8))
        .collect();
    assert!(full >= 10, "{} bytes", image.len());
    assert_eq!(acks, expected);
    handle.stop();
    task.await.unwrap().unwrap();
}
