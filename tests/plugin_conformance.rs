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
    assert_eq!(
        out.status.code(),
        Some(0),
        "{vendor}:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
                    .any(|r| r.0 == check && r.1.starts_with(scenario) && r.2 == "PASS"),
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
    assert_conforms(
        "aurora",
        &build(&PackageSpec::new(0xA520, [4, 16], 20_000, 7)),
        "aurora.bin",
    );
}

#[test]
fn boreal_conforms() {
    use boreal_sim::package::{PackageSpec, build};
    let (hex, _) = build(&PackageSpec::new(0xB210, [0x02, 0x15], 20_000, 7));
    assert_conforms("boreal", &hex, "boreal.hex");
}

#[test]
fn the_vendor_template_conforms() {
    use template_sim::package::{PackageSpec, build};
    assert_conforms(
        "template",
        &build(&PackageSpec::new(0xAC10, [1, 12], 20_000, 7)),
        "acme.acfw",
    );
}

#[test]
fn coral_conforms() {
    use coral_sim::bundle::{BundleSpec, build};
    let bundle = build(
        &BundleSpec::new(0xC0A1, [1, 0x10, 0xFF], 2, 20_000, 7).with_modules(
            [2, 4, 1],
            &[1, 3],
            8_000,
        ),
    );
    assert_conforms("coral", &bundle, "coral.crb");
}

/// A sealed SPKG package for a conformance fixture: header, image, SHA-256 of both.
fn sealed_package(product_code: u16) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut p = b"SPKG".to_vec();
    p.extend(product_code.to_le_bytes());
    p.extend([1, 2]);
    p.extend((0..700u32).map(|i| (i * 7 + 3) as u8));
    let seal = Sha256::digest(&p);
    p.extend(seal);
    p
}

/// Runs fixture `name` with its sample package and asserts the run fails with exactly
/// the checks `expected` failing; returns the output.
fn assert_fails_only(name: &str, product_code: u16, expected: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let package = write(dir.path(), "sample.spkg", &sealed_package(product_code));
    let lib = bmsfw_test_fixtures::library(name);
    let out = conformance(&lib, &["--package".as_ref(), package.as_os_str()]);
    let text = stdout(&out);
    println!("{text}");
    assert_eq!(out.status.code(), Some(1), "{name}:\n{text}");
    let table = rows(&text);
    let mut failed: Vec<&str> = table
        .iter()
        .filter(|r| r.2 == "FAIL")
        .map(|r| r.0.as_str())
        .collect();
    failed.sort_unstable();
    failed.dedup();
    assert_eq!(failed, expected, "{name}: the failed checks\n{text}");
    assert!(
        text.contains("DOES NOT CONFORM"),
        "{name}: the summary says so\n{text}"
    );
    assert!(
        table
            .iter()
            .any(|r| r.0 == "setup" && r.1 == "session start" && r.2 == "PASS"),
        "{name}: the sessions ran\n{text}"
    );
    text
}

fn failed_rows<'a>(
    table: &'a [(String, String, String, String)],
    check: &str,
) -> Vec<&'a (String, String, String, String)> {
    table
        .iter()
        .filter(|r| r.0 == check && r.2 == "FAIL")
        .collect()
}

#[test]
fn a_plugin_that_panics_on_a_garbage_frame_fails_no_panic() {
    let text = assert_fails_only("garbage-panic", 0x0F01, &["no-panic"]);
    let table = rows(&text);
    let failed = failed_rows(&table, "no-panic");
    assert!(
        failed.iter().any(|r| r.1 == "garbage frames"),
        "garbage frames named:\n{text}"
    );
    assert!(
        failed.iter().all(|r| r.3.contains("panic")),
        "the detail says it panicked:\n{text}"
    );
    // Silence sends it nothing to choke on.
    assert!(
        table
            .iter()
            .any(|r| r.0 == "no-panic" && r.1 == "silence" && r.2 == "PASS")
    );
}

#[test]
fn a_plugin_that_sends_outside_its_identifiers_fails_declared_ids() {
    let text = assert_fails_only("stray-nak", 0x0F02, &["declared-ids"]);
    let table = rows(&text);
    let failed = failed_rows(&table, "declared-ids");
    assert!(failed.iter().any(|r| r.1 == "garbage frames"), "{text}");
    assert!(
        failed
            .iter()
            .all(|r| r.3.contains("7DF") && r.3.contains("7A1")),
        "the detail names the identifier and the declared ones:\n{text}"
    );
}

#[test]
fn a_plugin_that_floods_the_bus_fails_bus_budget() {
    let text = assert_fails_only("retry-flood", 0x0F03, &["bus-budget"]);
    let table = rows(&text);
    let failed = failed_rows(&table, "bus-budget");
    assert!(failed.iter().any(|r| r.1 == "silence"), "{text}");
    assert!(
        failed.iter().all(|r| r.3.contains("the budget is 80 %")),
        "{text}"
    );
    // What could not be judged once the run stopped is skipped, not passed.
    assert!(
        table
            .iter()
            .any(|r| r.0 == "terminal-state" && r.1 == "silence" && r.2 == "SKIP"),
        "{text}"
    );
}

#[test]
fn a_plugin_that_never_ends_after_silence_fails_terminal_state() {
    let text = assert_fails_only("no-timeout", 0x0F04, &["terminal-state"]);
    let table = rows(&text);
    let failed = failed_rows(&table, "terminal-state");
    assert!(failed.iter().any(|r| r.1 == "silence"), "{text}");
    assert!(
        failed
            .iter()
            .all(|r| r.3.contains("watchdog") && r.3.contains("declared timeouts")),
        "{text}"
    );
    // An abort still ends it.
    assert!(
        table
            .iter()
            .any(|r| r.0 == "terminal-state" && r.1 == "abort at start" && r.2 == "PASS"),
        "{text}"
    );
}

#[test]
fn a_plugin_that_accepts_bad_packages_fails_bad_packages() {
    let text = assert_fails_only("lax-package", 0x0F05, &["bad-packages"]);
    let table = rows(&text);
    let failed = failed_rows(&table, "bad-packages");
    let scenarios: Vec<&str> = failed.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(
        scenarios,
        ["random packages", "truncated packages"],
        "{text}"
    );
    assert!(
        failed.iter().all(|r| r.3.starts_with("accepted ")),
        "{text}"
    );
}

#[test]
fn without_a_package_the_session_checks_are_skipped_not_passed() {
    let lib = bmsfw_test_fixtures::library("no-timeout");
    let out = conformance(&lib, &[]);
    let text = stdout(&out);
    // The hang needs a session to show: without a package nothing fails...
    assert_eq!(out.status.code(), Some(0), "{text}");
    let table = rows(&text);
    for check in ["no-panic", "declared-ids", "bus-budget", "terminal-state"] {
        let row = table
            .iter()
            .find(|r| r.0 == check && r.1 == "silence")
            .unwrap_or_else(|| panic!("a {check} row for silence:\n{text}"));
        assert_eq!(row.2, "SKIP", "{text}");
        assert!(row.3.contains("--package"), "{text}");
    }
    assert!(
        table
            .iter()
            .any(|r| r.0 == "bad-packages" && r.1 == "random packages" && r.2 == "PASS"),
        "{text}"
    );
    // ...and the summary does not claim full conformance.
    assert!(text.contains("skipped checks did not run"), "{text}");
    assert!(!text.contains("checks: 0 skipped"), "{text}");
}

#[test]
fn a_library_that_is_not_a_plugin_fails_the_load_check_with_its_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let lib = write(dir.path(), "libnot.so", b"\x7fELF but not really");
    let out = conformance(&lib, &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    use sha2::{Digest, Sha256};
    let sha = hex_lower(&Sha256::digest(b"\x7fELF but not really"));
    assert!(text.contains(&sha), "the SHA-256 is printed:\n{text}");
    let table = rows(&text);
    assert!(
        table.iter().any(|r| r.0 == "load" && r.2 == "FAIL"),
        "{text}"
    );
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
