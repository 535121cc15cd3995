//! The engine's BMS-Can monitor following a simulated battery over a real Linux CAN
//! stack: the battery and the GX each own a SocketCAN socket on `vcan0`, in real time;
//! and a site file's batteries put on real interfaces, as `bmsfw simulate` does.
//!
//! Needs `vcan0` and `vcan1` (up) and runs in the virtual machine of `scripts/socketcan-vm-test`
//! (with `--ignored --test-threads=1`); the development machines' kernel has no CAN.

use bmsfw_can::{CanEvent, CanInterface, SocketCanInterface};
use bmsfw_core::gx_frames::{GxKeepAlive, KEEP_ALIVE_PERIOD};
use bmsfw_core::telemetry::{AlarmField, BmsCanMonitor, Communication, DEFAULT_MAX_AGE, FrameKind};
use bmsfw_sim::battery::{
    Alarm, BatteryConfig, BatteryHandle, BatteryModel, CurrentProfile, DriverExit, Epoch,
    GxPresence, IdentityConfig, Level,
};
use bmsfw_sim::registry::BmsRegistry;
use bmsfw_sim::site::SiteDescription;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Runs the GX side for `length`: keep-alives out, every received frame into `monitor`.
async fn gx_listen(
    gx: &SocketCanInterface,
    epoch: Epoch,
    keep_alive: &mut GxKeepAlive,
    monitor: &mut BmsCanMonitor,
    length: Duration,
) {
    let until = Instant::now() + length;
    loop {
        while let Some(frame) = keep_alive.poll_transmit(epoch.now()) {
            gx.send(frame).await.expect("GX keep-alive sent");
        }
        let next = keep_alive
            .poll_timeout()
            .map_or(until, |t| epoch.at(t).min(until));
        match tokio::time::timeout_at(next, gx.recv()).await {
            Ok(Ok(CanEvent::Frame(rx))) => {
                monitor.handle_frame(epoch.timestamp(rx.at), &rx.frame);
            }
            Ok(Ok(other)) => panic!("unexpected event on vcan0: {other:?}"),
            Ok(Err(e)) => panic!("GX recv: {e}"),
            Err(_) if Instant::now() >= until => return,
            Err(_) => {}
        }
    }
}

#[tokio::test]
#[ignore = "needs vcan0: run by scripts/socketcan-vm-test"]
async fn the_monitor_decodes_a_simulated_battery_over_socketcan() {
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
    config.initial_soc = 73.0;
    config.profile = CurrentProfile::Constant { amps: -20.0 };
    let model = BatteryModel::new(config, epoch.now()).expect("battery config");
    let battery_iface: Arc<dyn CanInterface> =
        Arc::new(SocketCanInterface::open("vcan0").expect("battery socket on vcan0"));
    let (battery, task) = BatteryHandle::spawn("vcan battery", model, epoch, battery_iface);

    let gx = SocketCanInterface::open("vcan0").expect("GX socket on vcan0");
    let mut keep_alive = GxKeepAlive::new(epoch.now(), KEEP_ALIVE_PERIOD);
    let mut monitor = BmsCanMonitor::new(gx.name());

    // Every broadcast has a period of at most a second.
    gx_listen(
        &gx,
        epoch,
        &mut keep_alive,
        &mut monitor,
        Duration::from_millis(2500),
    )
    .await;
    let now = epoch.now();
    let state = monitor.battery().expect("battery heard on vcan0");
    assert_eq!(
        state.communication(now, DEFAULT_MAX_AGE),
        Communication::Communicating
    );
    let id = state.identity();
    assert_eq!(id.manufacturer.as_deref(), Some("NORDCELL"));
    assert_eq!(id.bms_name.as_deref(), Some("NC-LFP100"));
    assert_eq!(id.serial.as_deref(), Some("NC10024031"));
    assert_eq!(id.firmware_bytes(), Some([0x01, 0x17]));
    let snap = battery.snapshot();
    let soc = state.state_of_charge().expect("SOC decoded");
    assert!(
        (f64::from(soc.soc.0) - snap.soc).abs() <= 1.0,
        "decoded {} %, battery at {} %",
        soc.soc.0,
        snap.soc
    );
    let measurements = state.measurements().expect("measurements decoded");
    assert_eq!(measurements.current.0, -200, "-20 A in 0.1 A steps");
    assert!((measurements.voltage.volts() - snap.voltage).abs() < 0.05);
    assert_eq!(monitor.rejections().total(), 0);
    assert!(state.active_alarms().is_empty());
    // The battery's kernel filter passes the GX keep-alive to it.
    assert!(
        matches!(snap.gx, GxPresence::Seen(_)),
        "the battery heard the GX keep-alive"
    );

    // An alarm raised on the battery shows up within about one 0x35A period.
    battery.raise(Level::Alarm, Alarm::HighTemperature);
    gx_listen(
        &gx,
        epoch,
        &mut keep_alive,
        &mut monitor,
        Duration::from_millis(1200),
    )
    .await;
    assert_eq!(
        monitor.battery().expect("battery").active_alarms(),
        vec![AlarmField::HighTemperature]
    );

    // Power cut: the frames stop, and past the freshness limit the battery counts as not
    // communicating.
    battery.power_cut();
    gx_listen(
        &gx,
        epoch,
        &mut keep_alive,
        &mut monitor,
        DEFAULT_MAX_AGE + Duration::from_millis(500),
    )
    .await;
    assert_eq!(
        monitor
            .battery()
            .expect("battery")
            .communication(epoch.now(), DEFAULT_MAX_AGE),
        Communication::Stale(FrameKind::REQUIRED.to_vec())
    );

    battery.stop();
    assert_eq!(
        task.await.expect("battery task").expect("battery driver"),
        DriverExit::Stopped
    );
}

/// A site file's batteries put on real interfaces (what `bmsfw simulate` does): one
/// battery on vcan0 and one on vcan1, each on a socket of its own, heard by a GX socket on
/// each interface with the identity the site gives it.
#[tokio::test]
#[ignore = "needs vcan0 and vcan1: run in the VM of scripts/socketcan-vm-test"]
async fn a_site_files_batteries_run_on_real_interfaces() {
    let battery = |name: &str, serial: &str, firmware: u8| {
        format!(
            "[[bus.battery]]\nname = \"{name}\"\nvendor = \"nordcell\"\nmanufacturer = \
             \"NORDCELL\"\nbms_name = \"NC-LFP100\"\nproduct_code = 0x42\nfirmware = [1, \
             {firmware}]\ncapacity_ah = 100\nserial = \"{serial}\"\nsoc = 60\n"
        )
    };
    let text = format!(
        "[[bus]]\nname = \"vcan0\"\nbitrate = 500000\n{}\n[[bus]]\nname = \"vcan1\"\nbitrate = \
         500000\n{}",
        battery("first", "NC-A-0001", 0x17),
        battery("second", "NC-B-0002", 0x18)
    );
    let site = SiteDescription::parse(&text, "bench.toml").expect("site file");
    let mut opened = Vec::new();
    let running = site
        .start_on(&BmsRegistry::new(), |b| {
            opened.push(b.bus.clone());
            SocketCanInterface::open(&b.bus)
                .map(|i| Arc::new(i) as Arc<dyn CanInterface>)
                .map_err(|e| e.to_string())
        })
        .expect("batteries on vcan0 and vcan1");
    assert_eq!(opened, ["vcan0", "vcan1"]);
    assert!(
        running.buses().is_empty(),
        "no simulated bus on real interfaces"
    );
    let epoch = running.epoch();
    for (iface, serial, firmware) in [("vcan0", "NC-A-0001", 0x17), ("vcan1", "NC-B-0002", 0x18)] {
        let gx = SocketCanInterface::open(iface).expect("GX socket");
        let mut keep_alive = GxKeepAlive::new(epoch.now(), KEEP_ALIVE_PERIOD);
        let mut monitor = BmsCanMonitor::new(gx.name());
        gx_listen(
            &gx,
            epoch,
            &mut keep_alive,
            &mut monitor,
            Duration::from_millis(2500),
        )
        .await;
        let state = monitor.battery().expect("battery heard");
        assert_eq!(state.identity().serial.as_deref(), Some(serial), "{iface}");
        assert_eq!(
            state.identity().firmware_bytes(),
            Some([0x01, firmware]),
            "{iface}"
        );
        assert_eq!(
            monitor.rejections().total(),
            0,
            "{iface}: one battery per bus"
        );
    }
    for (name, exit) in running.shutdown().await {
        assert_eq!(exit, Ok(DriverExit::Stopped), "{name}");
    }
}
