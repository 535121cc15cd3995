//! `bmsfw plugin conformance`, run as the built binary: every shipped vendor plugin
//! passes with its sample package, and fixture plugins that misbehave fail, each with
//! the check it breaks named in the table.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn conformance(library: &Path, extra: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bmsfw"))
        .args(["plugin", "conformance"])
        .arg(library)
        .args(extra)
        .env("RUST_LOG", "error")
        .output()
        .expect("the bmsfw binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The table's rows as (check, scenario, result, detail).
fn rows(out: &str) -> Vec<(String, String, String, String)> {
    let mut lines = out.lines().skip_while(|l| !l.starts_with("check "));
    let header = lines.next().expect("a table header");
    let scenario_at = header.find("scenario").unwrap();
    let result_at = header.find("result").unwrap();
    let detail_at = header.find("detail").unwrap();
    lines
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let cut = |a: usize, b: usize| {
                l.chars()
                    .skip(a)
                    .take(b.saturating_sub(a))
                    .collect::<String>()
                    .trim()
                    .to_owned()
            };
            (
                cut(0, scenario_at),
                cut(scenario_at, result_at),
                cut(result_at, detail_at),
                cut(detail_at, usize::MAX),
            )
        })
        .collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Asserts the run passed: exit 0, no FAIL row, and every session scenario ran.
fn assert_conforms(vendor: &str, sample: &[u8], file: &str) {
    let dir = tempfile::tempdir().unwrap();
    let package = write(dir.path(), file, sample);
    let lib = bmsfw_test_fixtures::vendor_library(vendor);
    let out = conformance(&lib, &["--package".as_ref(), package.as_os_str()]);
    let text = stdout(&out);
    println!("{text}");
    let table = rows(&text);
    let failed: Vec<_> = table.iter().filter(|r| r.2 == "FAIL").collect();
    assert!(failed.is_empty(), "{vendor}: {failed:#?}\n{text}");
    assert_eq!(out.status.code(), Some(0), "{vendor}:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for scenario in [
        "silence",
        "garbage frames",
        "truncated frames",
        "duplicated replies",
        "reordered replies",
        "fuzzed replies",
        "abort at start",
        "abort after the first frame",
        "abort while waiting for an answer",
    ] {
        for check in ["no-panic", "declared-ids", "bus-budget", "terminal-state"] {
            assert!(
                table
                    .iter()
                    .any(|r| r.0 == check && r.1 == scenario && r.2 == "PASS"),
                "{vendor}: {check} / {scenario} did not pass:\n{text}"
            );
        }
    }
    for scenario in ["truncated packages", "random packages"] {
        assert!(
            table
                .iter()
                .any(|r| r.0 == "bad-packages" && r.1 == scenario && r.2 == "PASS"),
            "{vendor}: {scenario}:\n{text}"
        );
    }
}

#[test]
fn aurora_conforms() {
    use aurora_sim::package::{PackageSpec, build};
    assert_conforms("aurora", &build(&PackageSpec::new(0xA520, [4, 16], 20_000, 7)), "aurora.bin");
}

#[test]
fn boreal_conforms() {
    use boreal_sim::package::{PackageSpec, build};
    let (hex, _) = build(&PackageSpec::new(0xB210, [0x02, 0x15], 20_000, 7));
    assert_conforms("boreal", &hex, "boreal.hex");
}

#[test]
fn coral_conforms() {
    use coral_sim::bundle::{BundleSpec, build};
    let bundle = build(
        &BundleSpec::new(0xC0A1, [1, 0x10, 0xFF], 2, 20_000, 7).with_modules([2, 4, 1], &[1, 3], 8_000),
    );
    assert_conforms("coral", &bundle, "coral.crb");
}
