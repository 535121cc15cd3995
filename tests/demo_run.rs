//! `bmsfw demo --run` end to end: the embedded broker, the portal, the GX daemon loading
//! the shipped plugins through its allowlist, the simulated site of config/demo.toml in
//! real time, and an installer driving the portal's HTTP API.

use std::path::Path;
use std::process::Command;

fn plugins_dir() -> std::path::PathBuf {
    bmsfw_test_fixtures::vendor_library("aurora")
        .parent()
        .unwrap()
        .to_path_buf()
}

fn demo(args: &[&str]) -> (bool, String, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_bmsfw"))
        .current_dir(root)
        .arg("demo")
        .arg("--run")
        .args(["--listen", "127.0.0.1:0", "--plugins"])
        .arg(plugins_dir())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_demo_updates_every_battery_of_every_vendor_through_the_portal() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("demo");
    let (ok, stdout, stderr) = demo(&["--dir", folder.to_str().unwrap()]);
    assert!(ok, "demo --run failed:\n{stdout}\n{stderr}");
    // The banner: where the portal is, how to log in, where the samples are.
    assert!(stdout.contains("portal    http://127.0.0.1:"), "{stdout}");
    // The secure path is the default path: TLS, the GX's own credentials, topic rules.
    assert!(stdout.contains("broker    mqtts://127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("(TLS, user "), "{stdout}");
    assert!(stdout.contains("installer / installer-demo"), "{stdout}");
    for sample in [
        "shed-aurora-4.16.bin",
        "taiga-boreal-2.11.hex",
        "reefstack-coral-1.10.crb",
    ] {
        assert!(
            folder.join("firmware").join(sample).is_file(),
            "{sample} missing"
        );
        assert!(stdout.contains(sample), "{sample} not printed:\n{stdout}");
    }
    // The portal's database is in the demo's folder, not beside config/portal.toml.
    assert!(folder.join("portal.sqlite").is_file(), "{stdout}");
    assert!(stdout.contains("database  "), "{stdout}");
    // The plugins were loaded through the allowlist the demo wrote.
    let allowlist = std::fs::read_to_string(folder.join("allowlist.toml")).unwrap();
    for id in [
        "com.aurora-energy.powercore",
        "com.boreal-batteries.taiga",
        "com.coral-cells.reefstack",
    ] {
        assert!(allowlist.contains(id), "{id} not approved");
    }
    let gx_line = stdout
        .lines()
        .find(|l| l.contains("GX c0619ab00000"))
        .unwrap_or_else(|| panic!("no GX line:\n{stdout}"));
    for vendor in ["aurora", "boreal", "coral"] {
        assert!(
            gx_line.contains(vendor),
            "plugin {vendor} not loaded: {gx_line}"
        );
    }
    // Every state was passed and each battery ended on its new version.
    for (battery, before, after) in [
        ("shed", "v4.15", "v4.16"),
        ("taiga", "2.10", "2.11"),
        ("reefstack", "v1.0F", "v1.10"),
    ] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{battery} ")) && l.contains("completed"))
            .unwrap_or_else(|| panic!("no completed row for {battery}:\n{stdout}"));
        assert!(row.contains(before) && row.contains(after), "{row}");
        for state in [
            "Transferring to battery",
            "Installing",
            "Restarting",
            "Verifying",
        ] {
            assert!(
                stdout.contains(&format!("{battery}: {state}")),
                "{battery} never showed {state}:\n{stdout}"
            );
        }
    }
    assert!(stdout.contains("3 of 3 updates completed"), "{stdout}");
}

#[test]
fn the_demo_run_fails_when_a_battery_cannot_be_updated() {
    let dir = tempfile::tempdir().unwrap();
    // The Aurora battery of the demo at 30 % state of charge: the safety gate refuses.
    let site =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml"))
            .unwrap()
            .replace("soc = 81", "soc = 30");
    let path = dir.path().join("site.toml");
    std::fs::write(&path, site).unwrap();
    let (ok, stdout, _) = demo(&["--site", path.to_str().unwrap(), "--timeout", "60"]);
    assert!(!ok, "demo --run succeeded:\n{stdout}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("shed "))
        .unwrap_or_else(|| panic!("no row for shed:\n{stdout}"));
    assert!(row.contains("FAILED: error 723"), "{row}");
    assert!(row.contains("measured 30 %"), "{row}");
    assert!(
        stdout.contains("2 of 3 updates completed, 1 failed"),
        "{stdout}"
    );
    // The GX's state stays for a look after a failure.
    let kept = stdout
        .lines()
        .find_map(|l| l.strip_prefix("the demo's folder is kept for inspection: "))
        .and_then(|rest| rest.split(" (").next())
        .unwrap_or_else(|| panic!("the folder is not kept:\n{stdout}"));
    let kept = Path::new(kept);
    assert!(kept.join("state").is_dir(), "{}", kept.display());
    let history = Command::new(env!("CARGO_BIN_EXE_bmsfw"))
        .args(["history", "--state-dir"])
        .arg(kept.join("state"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&history.stdout);
    // The refused request never became a job; the two updates that ran are there.
    for serial in ["TG10-2407-001", "RS48-240611"] {
        assert!(
            text.contains(serial),
            "{serial} not in the history:\n{text}"
        );
    }
    std::fs::remove_dir_all(kept).unwrap();
}
