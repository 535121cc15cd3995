//! `bmsfw plugin list`, `plugin check` and `plugin conformance` on plugins that crash,
//! hang, eat memory or are truncated copies of a shipped plugin: each is reported as
//! refused, or as a FAIL with its cause, and the command exits normally, never by a
//! signal. The binary runs from another folder, its output piped, as a person's shell
//! runs it.

use bmsfw_test_fixtures::{Approval, library, misbehave_package, vendor_library};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn bmsfw(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bmsfw"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("the bmsfw binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The command ended by itself (an exit status), not by a signal.
fn exited(o: &Output) -> i32 {
    o.status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {:?}\n{}", o.status, text(o)))
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Copies `bytes` into `dir/file` and returns its approval.
fn approve(dir: &Path, file: &str, bytes: &[u8], vendor_id: &str, manufacturer: &str) -> String {
    std::fs::write(dir.join(file), bytes).unwrap();
    Approval {
        vendor_id,
        file,
        sha256: &sha256(bytes),
        versions: "*",
        firmware: ("1.0", "9.99"),
        manufacturer,
        product_codes: &[0x0A01],
    }
    .to_toml()
}

fn read(p: PathBuf) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[test]
fn list_reports_crashing_hanging_and_truncated_plugins_as_refused() {
    let site = tempfile::tempdir().unwrap();
    let plugins = site.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let mut allowlist = String::new();
    allowlist += &approve(
        &plugins,
        "libalpha.so",
        &read(library("alpha")),
        "com.example.alpha",
        "ALPHA",
    );
    allowlist += &approve(
        &plugins,
        "libcrash.so",
        &read(library("crash-identity")),
        "com.example.crash-identity",
        "CRASH-ID",
    );
    allowlist += &approve(
        &plugins,
        "libhang.so",
        &read(library("hang-identity")),
        "com.example.hang-identity",
        "HANG-ID",
    );
    let aurora = read(vendor_library("aurora"));
    for size in [4096usize, 65_536, 450_000] {
        allowlist += &approve(
            &plugins,
            &format!("libaurora-{size}.so"),
            &aurora[..size.min(aurora.len() - 1)],
            "com.aurora-energy.powercore",
            "AURORA",
        );
    }
    std::fs::write(site.path().join("allowlist.toml"), allowlist).unwrap();
    std::fs::write(
        site.path().join("gx.toml"),
        "portal_id = \"abc\"\nstate_dir = \"state\"\n[plugins]\ndir = \"plugins\"\n\
         allowlist = \"allowlist.toml\"\n[plugins.host]\nload_deadline_ms = 1500\n",
    )
    .unwrap();

    // From another folder, by the configuration's path.
    let elsewhere = tempfile::tempdir().unwrap();
    let config = site.path().join("gx.toml");
    let out = bmsfw(
        elsewhere.path(),
        &["plugin", "list", "--config", config.to_str().unwrap()],
    );
    let all = text(&out);
    assert_eq!(exited(&out), 1, "{all}");
    let line = |file: &str| {
        all.lines()
            .find(|l| l.contains(file))
            .unwrap_or_else(|| panic!("no line for {file}:\n{all}"))
            .to_owned()
    };
    assert!(
        line("libalpha.so").contains("loaded com.example.alpha"),
        "{all}"
    );
    let crash = line("libcrash.so");
    assert!(crash.contains("REFUSED by the host check"), "{crash}");
    assert!(crash.contains("SIGSEGV"), "{crash}");
    let hang = line("libhang.so");
    assert!(hang.contains("REFUSED by the host check"), "{hang}");
    assert!(hang.contains("100 ms deadline during identity"), "{hang}");
    for size in [4096, 65_536, 450_000] {
        let l = line(&format!("libaurora-{size}.so"));
        assert!(l.contains("REFUSED"), "{l}");
        assert!(
            l.contains("past the end") || l.contains("outside"),
            "a truncated copy names what lies outside the file: {l}"
        );
    }
    assert!(all.contains("6 libraries: 1 loaded, 5 refused"), "{all}");
}

#[test]
fn check_reports_a_crashing_library_and_exits_normally() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = read(library("crash-identity"));
    let allowlist = approve(
        dir.path(),
        "libcrash.so",
        &bytes,
        "com.example.crash-identity",
        "CRASH-ID",
    );
    std::fs::write(dir.path().join("allowlist.toml"), allowlist).unwrap();
    let out = bmsfw(
        dir.path(),
        &[
            "plugin",
            "check",
            "libcrash.so",
            "--allowlist",
            "allowlist.toml",
        ],
    );
    let all = text(&out);
    assert_eq!(exited(&out), 1, "{all}");
    assert!(all.contains("SIGSEGV"), "{all}");
    assert!(all.contains(&sha256(&bytes)), "{all}");
}

#[test]
fn conformance_fails_each_misbehaving_session_with_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let lib = library("misbehave");
    for (act, place, cause) in [
        ("segfault", "poll_transmit", "SIGSEGV"),
        ("hang", "status", "250 ms deadline"),
        ("alloc", "handle_frame", "memory limit"),
        ("exit", "abort", "exited with status 3"),
    ] {
        let package = dir.path().join(format!("{act}-{place}.spkg"));
        std::fs::write(&package, misbehave_package(act, place, 1, 1, 600)).unwrap();
        let out = bmsfw(
            dir.path(),
            &[
                "plugin",
                "conformance",
                lib.to_str().unwrap(),
                "--package",
                package.to_str().unwrap(),
            ],
        );
        let all = text(&out);
        assert_eq!(exited(&out), 1, "{act} in {place}:\n{all}");
        let failed = all
            .lines()
            .find(|l| l.starts_with("no-panic") && l.contains("FAIL"))
            .unwrap_or_else(|| panic!("{act} in {place}: no failed no-panic row:\n{all}"));
        assert!(failed.contains("747"), "{failed}");
        assert!(failed.contains(cause), "{act} in {place}: {failed}");
        assert!(all.contains("DOES NOT CONFORM"), "{all}");
    }
}
