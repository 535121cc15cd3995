//! A simulated battery driven on the simulated bus, in virtual time.

use bmsfw_can::{CanEvent, CanFrame, CanId, CanInterface};
use bmsfw_sim::battery::{
    Alarm, BatteryConfig, BatteryHandle, BatteryModel, DriverExit, Epoch, GxPresence,
    IdentityConfig, Level, PowerState,
};
use bmsfw_sim::bus::SimBus;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

fn config() -> BatteryConfig {
    BatteryConfig::new(IdentityConfig {
        manufacturer: "VOLTARA".into(),
        bms_name: "VX-48".into(),
        product_code: 7,
        firmware: [1, 2],
        capacity_ah: 100,
        product_info_tail: None,
        serial: None,
        product_name: None,
    })
}

/// Every frame `node` receives until `until`, with its reception time.
async fn collect(node: &dyn CanInterface, until: Instant) -> Vec<(Instant, CanFrame)> {
    let mut out = Vec::new();
    while let Ok(Ok(event)) = tokio::time::timeout_at(until, node.recv()).await {
        if let CanEvent::Frame(rx) = event {
            out.push((rx.at, rx.frame));
        }
    }
    out
}

#[tokio::test(start_paused = true)]
async fn a_battery_broadcasts_its_set_on_the_bus_at_its_periods() {
    let bus = SimBus::new("sim0", 500_000);
    let gx = bus.attach("gx");
    let epoch = Epoch::starting_now();
    let model = BatteryModel::new(config(), epoch.now()).unwrap();
    let (handle, task) = BatteryHandle::spawn("b", model, epoch, Arc::new(bus.attach("battery")));

    let frames = collect(&gx, epoch.instant() + Duration::from_secs(10)).await;
    let mut per_id: BTreeMap<u32, Vec<Instant>> = BTreeMap::new();
    for (at, f) in &frames {
        per_id.entry(f.id().raw()).or_default().push(*at);
    }
    let ids: Vec<u32> = per_id.keys().copied().collect();
    assert_eq!(
        ids,
        vec![
            0x351, 0x355, 0x356, 0x359, 0x35A, 0x35C, 0x35E, 0x35F, 0x370, 0x372, 0x373, 0x378,
            0x379
        ]
    );
    for (id, times) in &per_id {
        let period = match id {
            0x356 => 200,
            0x351 | 0x35A => 500,
            _ => 1000,
        };
        let expected = 10_000 / period;
        assert!(
            (expected - 1..=expected).contains(&(times.len() as u64)),
            "{id:03X}: {} frames",
            times.len()
        );
        for w in times.windows(2) {
            // Timers fire on whole milliseconds: the grid is kept within one.
            let gap = (w[1] - w[0]).as_micros() as i64;
            assert!(
                (gap - period as i64 * 1000).abs() <= 1000,
                "{id:03X}: gap {gap} us"
            );
        }
    }
    // 19 frames/s: under 0.5 % of the bus, as can-facts estimates for BMS-Can.
    let load = bus.load();
    assert!(load.percent > 0.3 && load.percent < 0.5, "{load:?}");
    assert_eq!(load.frames, frames.len() as u64);

    handle.stop();
    assert_eq!(task.await.unwrap().unwrap(), DriverExit::Stopped);
}

#[tokio::test(start_paused = true)]
async fn control_changes_reach_the_bus() {
    let bus = SimBus::new("sim0", 500_000);
    let gx = bus.attach("gx");
    let epoch = Epoch::starting_now();
    let model = BatteryModel::new(config(), epoch.now()).unwrap();
    let (handle, task) = BatteryHandle::spawn("b", model, epoch, Arc::new(bus.attach("battery")));

    tokio::time::sleep(Duration::from_secs(1)).await;
    handle.raise(Level::Alarm, Alarm::HighVoltage);
    handle.set_firmware_bytes([9, 9]);
    let frames = collect(&gx, Instant::now() + Duration::from_secs(1)).await;
    let alarm = frames
        .iter()
        .rev()
        .find(|(_, f)| f.id().raw() == 0x35A)
        .unwrap()
        .1;
    assert_eq!(alarm.data()[0], 0b1010_0110);
    let info = frames
        .iter()
        .rev()
        .find(|(_, f)| f.id().raw() == 0x35F)
        .unwrap()
        .1;
    assert_eq!(&info.data()[2..4], &[9, 9]);

    // Power cut: silence for as long as it lasts.
    handle.power_cut();
    let cut_at = Instant::now();
    let frames = collect(&gx, cut_at + Duration::from_secs(5)).await;
    assert!(
        frames
            .iter()
            .all(|(at, _)| *at <= cut_at + Duration::from_millis(1)),
        "frames after the power cut: {frames:?}"
    );
    assert_eq!(handle.snapshot().power, PowerState::Off);
    // Restored: the driver is woken and the battery talks again within a second.
    handle.power_restore();
    let back = Instant::now();
    let frames = collect(&gx, back + Duration::from_secs(1)).await;
    assert!(frames.len() >= 13, "{} frames after restore", frames.len());

    // The battery hears the GX's keep-alive.
    let ka = CanFrame::new(CanId::standard(0x305).unwrap(), &[0; 8]).unwrap();
    gx.send(ka).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(matches!(handle.snapshot().gx, GxPresence::Seen(_)));

    handle.stop();
    assert_eq!(task.await.unwrap().unwrap(), DriverExit::Stopped);
}

#[tokio::test(start_paused = true)]
async fn the_driver_ends_when_its_node_is_detached() {
    let bus = SimBus::new("sim0", 500_000);
    let node = bus.attach("battery");
    let id = node.id();
    let epoch = Epoch::starting_now();
    let model = BatteryModel::new(config(), epoch.now()).unwrap();
    let (handle, task) = BatteryHandle::spawn("b", model, epoch, Arc::new(node));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    bus.detach(id).unwrap();
    assert_eq!(task.await.unwrap().unwrap(), DriverExit::Detached);
    // Running a stopped handle again returns at once.
    handle.stop();
    let other = bus.attach("other");
    assert_eq!(handle.run(&other).await.unwrap(), DriverExit::Stopped);
}
