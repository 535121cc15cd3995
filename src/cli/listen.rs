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
    };
    let mut gx = GxKeepAlive::new(timestamp(start, Instant::now()), KEEP_ALIVE_PERIOD);
    loop {
        let mut next = until;
        if keep_alive == KeepAlive::Send {
            while let Some(frame) = gx.poll_transmit(timestamp(start, Instant::now())) {
                if let Err(e) = iface.send(frame).await {
                    report.failure = Some(format!("sending the keep-alive: {e}"));
                    return finish(report, iface.as_ref());
                }
            }
            if let Some(t) = gx.poll_timeout() {
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
