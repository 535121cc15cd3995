//! `bmsfw devices`: the BMS-Can batteries seen on each bus.

use super::listen::{BusReport, KeepAlive, listen, timestamp};
use super::source::Source;
use bmsfw_can::ControllerState;
use bmsfw_core::telemetry::{
    AlarmField, BatteryState, Broadcasters, Communication, DEFAULT_MAX_AGE,
};
use bmsfw_plugin_api::Timestamp;
use indicatif::{ProgressBar, ProgressStyle};
use std::fmt::Write as _;
use std::time::Duration;
use tokio::time::Instant;

/// The bit rate remote updates need.
const UPDATE_BITRATE: u32 = 500_000;

/// Lists the batteries broadcasting BMS-Can on each bus.
#[derive(clap::Args, Debug)]
pub struct DevicesArgs {
    #[command(flatten)]
    source: Source,
    /// How long to listen before printing, in seconds
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=3600))]
    listen_secs: u64,
    /// Listen only: do not send the GX keep-alive (0x305/0x307)
    #[arg(long)]
    passive: bool,
}

/// Runs the command; prints the table on stdout.
pub async fn run(args: DevicesArgs) -> anyhow::Result<()> {
    let opened = args.source.open("gx")?;
    let start = Instant::now();
    let until = start + Duration::from_secs(args.listen_secs);
    let keep_alive = if args.passive {
        KeepAlive::Silent
    } else {
        KeepAlive::Send
    };
    let tasks: Vec<_> = opened
        .interfaces
        .iter()
        .map(|iface| tokio::spawn(listen(iface.clone(), start, until, keep_alive)))
        .collect();
    let bar = ProgressBar::new(args.listen_secs).with_style(
        ProgressStyle::with_template("listening {bar:30} {pos}/{len} s")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    while Instant::now() < until {
        tokio::time::sleep_until((Instant::now() + Duration::from_secs(1)).min(until)).await;
        bar.set_position(start.elapsed().as_secs().min(args.listen_secs));
    }
    bar.finish_and_clear();
    let mut reports = Vec::new();
    for task in tasks {
        reports.push(task.await?);
    }
    let now = timestamp(start, Instant::now());
    out!("{}", render(&reports, now));
    opened.close().await;
    Ok(())
}

fn alarms(list: &[AlarmField]) -> String {
    if list.is_empty() {
        "none".into()
    } else {
        list.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
    }
}

fn or_dash<T>(v: Option<T>, f: impl FnOnce(T) -> String) -> String {
    v.map_or_else(|| "-".into(), f)
}

fn battery_row(bus: &BusReport, b: &BatteryState, now: Timestamp) -> Vec<String> {
    let id = b.identity();
    let soc = b.state_of_charge().map(|s| match s.soc_high_res {
        Some(hr) => hr.to_string(),
        None => s.soc.to_string(),
    });
    let m = b.measurements();
    let status = match (
        bus.monitor.broadcasters(now, Duration::from_secs(10)),
        b.communication(now, DEFAULT_MAX_AGE),
    ) {
        (Broadcasters::Conflicting { changes, .. }, _) => {
            format!("{changes} identity changes: several BMSs?")
        }
        (Broadcasters::Single, Communication::Communicating) => "communicating".into(),
        (Broadcasters::Single, Communication::Stale(kinds)) => format!(
            "stale {}",
            kinds
                .iter()
                .map(|k| format!("0x{:03X}", k.raw_id()))
                .collect::<Vec<_>>()
                .join(",")
        ),
    };
    vec![
        bus.bus.clone(),
        id.manufacturer.unwrap_or_else(|| "-".into()),
        id.bms_name.unwrap_or_else(|| "-".into()),
        or_dash(id.product_info.as_ref().map(|p| p.raw().to_vec()), |raw| {
            raw.iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(" ")
        }),
        soc.unwrap_or_else(|| "-".into()),
        or_dash(m, |m| m.voltage.to_string()),
        or_dash(m, |m| m.current.to_string()),
        or_dash(m, |m| m.temperature.to_string()),
        alarms(&b.active_alarms()),
        alarms(&b.active_warnings()),
        or_dash(b.last_frame_at(), |t| {
            format!(
                "{:.1} s ago",
                now.saturating_duration_since(t).as_secs_f64()
            )
        }),
        status,
    ]
}

/// The table of batteries, one row per bus, followed by notes on anything unusual.
pub fn render(reports: &[BusReport], now: Timestamp) -> String {
    let header: Vec<String> = [
        "BUS",
        "MANUFACTURER",
        "BMS NAME",
        "0x35F BYTES",
        "SOC",
        "VOLTAGE",
        "CURRENT",
        "TEMP",
        "ALARMS",
        "WARNINGS",
        "LAST FRAME",
        "STATUS",
    ]
    .map(String::from)
    .to_vec();
    let mut rows = vec![header];
    for r in reports {
        rows.push(match r.monitor.battery() {
            Some(b) => battery_row(r, b, now),
            None => {
                let mut row = vec!["-".to_owned(); 12];
                row[0] = r.bus.clone();
                row[11] = "no BMS-Can battery heard".into();
                row
            }
        });
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, &w)| format!("{cell}{}", " ".repeat(w - cell.chars().count())))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    for r in reports {
        for note in notes(r) {
            let _ = writeln!(out, "{}: {note}", r.bus);
        }
    }
    out
}

fn notes(r: &BusReport) -> Vec<String> {
    let mut notes = Vec::new();
    match r.bitrate {
        Some(rate) if rate != UPDATE_BITRATE => notes.push(format!(
            "bit rate {rate} bit/s; remote updates need {UPDATE_BITRATE}"
        )),
        _ => {}
    }
    if !matches!(r.state, ControllerState::ErrorActive) {
        notes.push(format!("controller {:?}", r.state));
    }
    if r.bus_errors > 0 {
        notes.push(format!("{} bus errors", r.bus_errors));
    }
    for (kind, reason, n) in r.monitor.rejections().iter() {
        notes.push(format!("{n} frames {kind} rejected ({reason})"));
    }
    if let Some(f) = &r.keep_alive_failure {
        notes.push(format!("keep-alive stopped: {f}"));
    }
    if let Some(f) = &r.failure {
        notes.push(format!("listening stopped early: {f}"));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_core::telemetry::BmsCanMonitor;
    use bmsfw_plugin_api::{CanFrame, CanId};

    fn frame(id: u16, data: &[u8]) -> CanFrame {
        CanFrame::new(CanId::standard(id).unwrap(), data).unwrap()
    }

    fn ms(ms: u64) -> Timestamp {
        Timestamp::from_micros(ms * 1000)
    }

    fn report(bus: &str, frames: &[CanFrame]) -> BusReport {
        let mut monitor = BmsCanMonitor::new(bus);
        for f in frames {
            monitor.handle_frame(ms(1000), f);
        }
        BusReport {
            bus: bus.into(),
            monitor,
            bus_errors: 0,
            state: ControllerState::ErrorActive,
            bitrate: Some(500_000),
            failure: None,
            keep_alive_failure: None,
        }
    }

    #[test]
    fn one_row_per_bus_with_decoded_values_and_notes() {
        let mut alarms = [0xAA; 8];
        alarms[0] = 0b1010_0110;
        let heard = report(
            "can0",
            &[
                frame(0x351, &[0x38, 0x02, 0xF4, 0x01, 0xE8, 0x03, 0xE0, 0x01]),
                frame(0x355, &[72, 0, 100, 0, 0x51, 0x1C]),
                frame(0x356, &[0xB9, 0x14, 0x83, 0xFF, 0xE6, 0x00]),
                frame(0x35A, &alarms),
                frame(0x35E, b"VOLTARA\0"),
                frame(0x35F, &[0x17, 0x0B, 0x04, 0x0F, 0x2C, 0x01]),
                frame(0x370, b"VX-48 Pa"),
                frame(0x371, b"ck BMS\0\0"),
                frame(0x356, &[1, 2]),
            ],
        );
        let mut silent = report("can1", &[]);
        silent.bitrate = Some(250_000);
        silent.bus_errors = 3;
        silent.keep_alive_failure = Some("CAN interface can1 is bus-off".into());
        let table = render(&[heard, silent], ms(1500));
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with("BUS   MANUFACTURER  BMS NAME"),
            "{table}"
        );
        let row = lines[1];
        for cell in [
            "can0",
            "VOLTARA",
            "VX-48 Pack BMS",
            "17 0B 04 0F 2C 01",
            "72.49 %",
            "53.05 V",
            "-12.5 A",
            "23.0 °C",
            "high voltage",
            "none",
            "0.5 s ago",
            "communicating",
        ] {
            assert!(row.contains(cell), "{cell:?} missing from {row:?}");
        }
        assert!(lines[2].starts_with("can1") && lines[2].ends_with("no BMS-Can battery heard"));
        assert!(
            table.contains("can0: 1 frames 0x356 measurements rejected (too short)"),
            "{table}"
        );
        assert!(table.contains("can1: bit rate 250000 bit/s; remote updates need 500000"));
        assert!(table.contains("can1: 3 bus errors"));
        assert!(table.contains("can1: keep-alive stopped: CAN interface can1 is bus-off"));
        // Columns line up: every row has the STATUS column at the same character.
        let status_col = lines[0].find("STATUS").unwrap();
        assert_eq!(lines[1].chars().count() - "communicating".len(), status_col);
    }

    #[test]
    fn stale_frames_are_named() {
        let r = report("can0", &[frame(0x356, &[0xB9, 0x14, 0, 0, 0, 0])]);
        let table = render(&[r], ms(5000));
        assert!(
            table
                .lines()
                .nth(1)
                .unwrap()
                .ends_with("stale 0x351,0x355,0x356,0x35A"),
            "{table}"
        );
    }
}
