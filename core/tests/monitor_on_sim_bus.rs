//! The engine's monitor listening on the simulated bus to a simulated battery, while a
//! GX keep-alive emitter talks to it, all in virtual time.

use bmsfw_can::{CanEvent, CanInterface};
use bmsfw_core::gx_frames::{GxKeepAlive, KEEP_ALIVE_PERIOD};
use bmsfw_core::telemetry::{AlarmField, BmsCanMonitor, Communication, DEFAULT_MAX_AGE, FrameKind};
use bmsfw_sim::battery::{
    Alarm, BatteryConfig, BatteryHandle, BatteryModel, CurrentProfile, Epoch, GxPresence,
    IdentityConfig, Level,
};
use bmsfw_sim::bus::{SimBus, SimNode};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Runs a GX node for `length`: keep-alives out, every received frame into `monitor`.
async fn gx_listen(gx: &SimNode, epoch: Epoch, monitor: &mut BmsCanMonitor, length: Duration) {
    let until = Instant::now() + length;
    let mut keep_alive = GxKeepAlive::new(epoch.now(), KEEP_ALIVE_PERIOD);
    loop {
        while let Some(frame) = keep_alive.poll_transmit(epoch.now()) {
            gx.send(frame).await.unwrap();
        }
        let next = keep_alive
            .poll_timeout()
            .map_or(until, |t| epoch.at(t).min(until));
        match tokio::time::timeout_at(next, gx.recv()).await {
            Ok(Ok(CanEvent::Frame(rx))) => {
                monitor.handle_frame(epoch.timestamp(rx.at), &rx.frame);
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("{e}"),
            Err(_) if Instant::now() >= until => return,
            Err(_) => {}
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_monitor_follows_a_simulated_battery_on_the_simulated_bus() {
    let bus = SimBus::new("sim0", 500_000);
    let gx = bus.attach("gx");
    let epoch = Epoch::starting_now();
    let mut config = BatteryConfig::new(IdentityConfig {
        manufacturer: "NORDCELL".into(),
        bms_name: "NC-LFP100".into(),
        product_code: 0x42,
        firmware: [0x01, 0x17],
        capacity_ah: 100,
        product_info_tail: None,
        serial: Some("NC10024031".into()),
        product_name: None,
    });
    config.initial_soc = 58.0;
    config.profile = CurrentProfile::Constant { amps: -50.0 };
    let model = BatteryModel::new(config, epoch.now()).unwrap();
    let (battery, task) =
        BatteryHandle::spawn("garage", model, epoch, Arc::new(bus.attach("battery")));
    let mut monitor = BmsCanMonitor::new(gx.name());

    // Twelve virtual minutes: 50 A out of 100 Ah is 10 % SOC.
    gx_listen(&gx, epoch, &mut monitor, Duration::from_secs(720)).await;
    let now = epoch.now();
    let state = monitor.battery().expect("battery heard");
    assert_eq!(
        state.communication(now, DEFAULT_MAX_AGE),
        Communication::Communicating
    );
    let id = state.identity();
    assert_eq!(id.manufacturer.as_deref(), Some("NORDCELL"));
    assert_eq!(id.bms_name.as_deref(), Some("NC-LFP100"));
    assert_eq!(id.serial.as_deref(), Some("NC10024031"));
    assert_eq!(id.firmware_bytes(), Some([0x01, 0x17]));
    let soc = state.state_of_charge().unwrap();
    assert_eq!(soc.soc.0, 48);
    let hi_res = soc.soc_high_res.unwrap().0;
    assert!((4795..=4805).contains(&hi_res), "{hi_res}");
    assert_eq!(state.measurements().unwrap().current.0, -500);
    // The decoded voltage is the model's, within the 0.01 V step (and the time since).
    let snap = battery.snapshot();
    assert!((state.measurements().unwrap().voltage.volts() - snap.voltage).abs() < 0.02);
    assert_eq!(monitor.rejections().total(), 0);
    assert!(
        matches!(snap.gx, GxPresence::Seen(_)),
        "the battery heard the GX"
    );

    // An alarm raised by the test shows up within one 0x35A period.
    battery.raise(Level::Alarm, Alarm::HighTemperature);
    gx_listen(&gx, epoch, &mut monitor, Duration::from_millis(600)).await;
    assert_eq!(
        monitor.battery().unwrap().active_alarms(),
        vec![AlarmField::HighTemperature]
    );

    // Power cut: after 3 s without the required frames the battery is no longer
    // communicating.
    battery.power_cut();
    gx_listen(&gx, epoch, &mut monitor, Duration::from_millis(3100)).await;
    let state = monitor.battery().unwrap();
    assert_eq!(
        state.communication(epoch.now(), DEFAULT_MAX_AGE),
        Communication::Stale(FrameKind::REQUIRED.to_vec())
    );

    battery.stop();
    task.await.unwrap().unwrap();
}
