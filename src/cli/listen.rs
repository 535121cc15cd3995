//! Listening to one bus as a GX does: keep-alives out, BMS-Can telemetry in.

use bmsfw_can::{CanError, CanEvent, CanInterface, ControllerState};
use bmsfw_core::gx_frames::{GxKeepAlive, KEEP_ALIVE_PERIOD};
use bmsfw_core::telemetry::BmsCanMonitor;
use bmsfw_plugin_api::Timestamp;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Whether the listener sends the GX keep-alive pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepAlive {
    /// 0x305 and 0x307 once per second, as a GX does (some batteries only talk to a GX).
    Send,
    /// Listen only.
    Silent,
}

/// What was heard on one bus.
pub struct BusReport {
    /// The interface name.
    pub bus: String,
    /// The monitor, fed with every frame.
    pub monitor: BmsCanMonitor,
    /// Bus errors reported by the controller.
    pub bus_errors: u64,
    /// The controller state at the end.
    pub state: ControllerState,
    /// The nominal bit rate, when the interface can tell.
    pub bitrate: Option<u32>,
    /// Why listening ended early, if it did.
    pub failure: Option<String>,
    /// Why the keep-alive stopped, if it did (listening went on).
    pub keep_alive_failure: Option<String>,
}

/// Microseconds since `start`, the time base of the monitors.
pub fn timestamp(start: Instant, at: Instant) -> Timestamp {
    let micros = at.saturating_duration_since(start).as_micros();
    Timestamp::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
}

/// Listens on `iface` from `start` until `until`.
pub async fn listen(
    iface: Arc<dyn CanInterface>,
    start: Instant,
    until: Instant,
    keep_alive: KeepAlive,
) -> BusReport {
    let mut report = BusReport {
        bus: iface.name().to_owned(),
        monitor: BmsCanMonitor::new(iface.name()),
        bus_errors: 0,
        state: iface.controller_state(),
        bitrate: iface.bitrate(),
        failure: None,
        keep_alive_failure: None,
    };
    let mut keep_alive = keep_alive;
    let mut gx = GxKeepAlive::new(timestamp(start, Instant::now()), KEEP_ALIVE_PERIOD);
    loop {
        let mut next = until;
        if keep_alive == KeepAlive::Send {
            while let Some(frame) = gx.poll_transmit(timestamp(start, Instant::now())) {
                match iface.send(frame).await {
                    Ok(()) => {}
                    Err(CanError::Closed { .. }) => {
                        report.failure = Some("the interface was closed".into());
                        return finish(report, iface.as_ref());
                    }
                    Err(e) => {
                        // No other node acknowledges, or the controller is bus-off:
                        // keep listening without the keep-alive.
                        report.keep_alive_failure = Some(e.to_string());
                        keep_alive = KeepAlive::Silent;
                        break;
                    }
                }
            }
            if let Some(t) = gx.poll_timeout().filter(|_| keep_alive == KeepAlive::Send) {
                next = next.min(start + Duration::from_micros(t.as_micros()));
            }
        }
        match tokio::time::timeout_at(next, iface.recv()).await {
            Ok(Ok(CanEvent::Frame(rx))) => {
                report
                    .monitor
                    .handle_frame(timestamp(start, rx.at), &rx.frame);
            }
            Ok(Ok(CanEvent::Error(e))) => {
                report.bus_errors += 1;
                tracing::debug!(bus = %report.bus, error = %e.description, "bus error");
            }
            Ok(Ok(CanEvent::State(s))) => report.state = s,
            Ok(Err(CanError::Closed { .. })) => {
                report.failure = Some("the interface was closed".into());
                return finish(report, iface.as_ref());
            }
            Ok(Err(e)) => {
                report.failure = Some(e.to_string());
                return finish(report, iface.as_ref());
            }
            Err(_) if Instant::now() >= until => return finish(report, iface.as_ref()),
            Err(_) => {}
        }
    }
}

fn finish(mut report: BusReport, iface: &dyn CanInterface) -> BusReport {
    report.state = iface.controller_state();
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_core::telemetry::Communication;
    use bmsfw_sim::battery::{
        BatteryConfig, BatteryHandle, BatteryModel, Epoch, GxPresence, IdentityConfig,
    };
    use bmsfw_sim::bus::SimBus;

    fn battery(bus: &SimBus) -> BatteryHandle {
        let epoch = Epoch::starting_now();
        let config = BatteryConfig::new(IdentityConfig {
            manufacturer: "VOLTARA".into(),
            bms_name: "VX".into(),
            product_code: 1,
            firmware: [1, 0],
            capacity_ah: 100,
            product_info_tail: None,
            serial: None,
            product_name: None,
        });
        let model = BatteryModel::new(config, epoch.now()).unwrap();
        BatteryHandle::spawn("b", model, epoch, Arc::new(bus.attach("battery"))).0
    }

    #[tokio::test(start_paused = true)]
    async fn a_gx_listener_hears_the_battery_and_is_heard() {
        let bus = SimBus::new("sim0", 500_000);
        let battery = battery(&bus);
        let start = Instant::now();
        let gx = Arc::new(bus.attach("gx"));
        let report = listen(gx, start, start + Duration::from_secs(3), KeepAlive::Send).await;
        assert_eq!(report.bus, "sim0");
        assert_eq!(report.bitrate, Some(500_000));
        assert_eq!(report.state, ControllerState::ErrorActive);
        assert_eq!((report.failure, report.keep_alive_failure), (None, None));
        let state = report.monitor.battery().expect("battery heard");
        assert_eq!(
            state.communication(timestamp(start, Instant::now()), Duration::from_secs(3)),
            Communication::Communicating
        );
        assert!(matches!(battery.snapshot().gx, GxPresence::Seen(_)));
        assert!(Instant::now() >= start + Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_listener_sends_nothing() {
        let bus = SimBus::new("sim0", 500_000);
        let battery = battery(&bus);
        let start = Instant::now();
        let report = listen(
            Arc::new(bus.attach("gx")),
            start,
            start + Duration::from_secs(2),
            KeepAlive::Silent,
        )
        .await;
        assert!(report.monitor.battery().is_some());
        assert_eq!(battery.snapshot().gx, GxPresence::Unknown);
    }

    #[tokio::test(start_paused = true)]
    async fn a_bus_off_listener_stops_the_keep_alive_but_not_listening() {
        let bus = SimBus::new("sim0", 500_000);
        let _battery = battery(&bus);
        let gx = Arc::new(bus.attach("gx"));
        bus.force_bus_off(gx.id()).unwrap();
        let start = Instant::now();
        let report = listen(gx, start, start + Duration::from_secs(2), KeepAlive::Send).await;
        assert!(report.keep_alive_failure.unwrap().contains("bus-off"));
        assert_eq!(report.failure, None);
        assert_eq!(report.state, ControllerState::BusOff);
        assert!(
            Instant::now() >= start + Duration::from_secs(2),
            "listened to the end"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_detached_listener_stops_early_and_says_why() {
        let bus = SimBus::new("sim0", 500_000);
        let gx = Arc::new(bus.attach("gx"));
        let id = gx.id();
        let start = Instant::now();
        let task = tokio::spawn(listen(
            gx,
            start,
            start + Duration::from_secs(60),
            KeepAlive::Send,
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
        bus.detach(id).unwrap();
        let report = task.await.unwrap();
        assert_eq!(report.failure.as_deref(), Some("the interface was closed"));
        assert!(Instant::now() < start + Duration::from_secs(60));
    }
}
