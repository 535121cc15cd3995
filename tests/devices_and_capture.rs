//! `bmsfw devices --sim` and `bmsfw capture --sim` run as a user runs them, on the demo
//! site in real time.

use bmsfw_can::{CandumpReader, LogEntry};
use std::collections::BTreeMap;
use std::io::BufReader;
use std::process::Command;

fn bmsfw() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bmsfw"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LOG", "warn");
    cmd
}

#[test]
fn devices_lists_the_batteries_of_the_demo_site() {
    let out = bmsfw()
        .args(["devices", "--sim", "config/demo.toml", "--listen-secs", "2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("BUS"), "{stdout}");
    assert_eq!(
        lines.len(),
        6,
        "a header and one row per bus, no notes: {stdout}"
    );
    let sim0 = lines[1];
    for cell in [
        "sim0",
        "VOLTARA",
        "VX-48 Pack BMS",
        "17 0B 04 0F 2C 01",
        "72.",
        "60.0 A",
        "23.0 °C",
        "none",
        "communicating",
    ] {
        assert!(sim0.contains(cell), "{cell:?} missing: {sim0}");
    }
    let sim1 = lines[2];
    for cell in [
        "sim1",
        "NORDCELL",
        "NC-LFP100",
        "42 00 01 17 64 00 02 00",
        "-8.5 A",
        "17.5 °C",
        "communicating",
    ] {
        assert!(sim1.contains(cell), "{cell:?} missing: {sim1}");
    }
    // The Aurora battery runs the simulated Aurora BMS, which broadcasts BMS-Can too.
    let sim2 = lines[3];
    for cell in [
        "sim2",
        "AURORA",
        "PowerCore 10",
        "20 A5 04 0F C8 00",
        "12.0 A",
        "21.0 °C",
        "communicating",
    ] {
        assert!(sim2.contains(cell), "{cell:?} missing: {sim2}");
    }
}

#[test]
fn capture_writes_a_candump_log_of_every_bus() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.log");
    let out = bmsfw()
        .args([
            "capture",
            "--sim",
            "config/demo.toml",
            "--secs",
            "2",
            "--out",
        ])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let reader = CandumpReader::new(BufReader::new(std::fs::File::open(&path).unwrap()));
    let mut per_bus: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut last_time: Option<std::time::Duration> = None;
    for record in reader {
        let record = record.expect("the log reads back");
        let LogEntry::Frame(frame) = record.entry else {
            panic!("an error frame on a fault-free bus")
        };
        // The five buses' lines are in one time order, not only each bus's own.
        let previous = last_time.replace(record.timestamp);
        assert!(
            previous.is_none_or(|p| p <= record.timestamp),
            "time runs backwards at {record}"
        );
        per_bus
            .entry(record.interface)
            .or_default()
            .push(frame.id().raw());
    }
    assert_eq!(
        per_bus.keys().collect::<Vec<_>>(),
        vec!["sim0", "sim1", "sim2", "sim3", "sim4"]
    );
    for (bus, ids) in &per_bus {
        // About 2 s at 23 frames/s (sim1 adds 0x374-0x377).
        assert!(
            (35..=60).contains(&ids.len()),
            "{bus}: {} frames",
            ids.len()
        );
        for required in [0x351, 0x355, 0x356, 0x35A, 0x35E, 0x35F] {
            assert!(ids.contains(&required), "{bus} lacks {required:03X}");
        }
    }
    assert!(per_bus["sim1"].contains(&0x374));
    assert!(!per_bus["sim0"].contains(&0x374));
    let total: usize = per_bus.values().map(Vec::len).sum();
    assert!(stderr.contains(&format!("{total} frames (")), "{stderr}");
}

#[test]
fn a_broken_site_file_is_reported_at_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.toml");
    let demo = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml"),
    )
    .unwrap();
    let broken = demo.replacen("soc = 72.5", "soc = 172.5", 1);
    let line = broken
        .lines()
        .position(|l| l.starts_with("soc = 172.5"))
        .unwrap()
        + 1;
    std::fs::write(&path, broken).unwrap();
    let out = bmsfw()
        .args(["devices", "--listen-secs", "1", "--sim"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "site.toml:{line}:7: battery \"house\": soc: 172.5 is outside 0 to 100 %"
        )),
        "{stderr}"
    );
}

#[test]
fn a_missing_interface_is_named() {
    let out = bmsfw()
        .args(["devices", "--bus", "nosuchcan9", "--listen-secs", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nosuchcan9"), "{stderr}");
}
