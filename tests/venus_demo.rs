//! `bmsfw demo --run --grid-loss-after`: the demo's simulated Venus OS reports a grid loss
//! while the updates run, and the daemon, reading the site's state from it, stops them
//! with 728 (no backup-power event); the run fails and says so.

use std::path::Path;
use std::process::Command;

#[test]
fn a_grid_loss_in_the_demo_stops_the_updates_with_728() {
    let plugins = bmsfw_test_fixtures::vendor_library("aurora")
        .parent()
        .unwrap()
        .to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bmsfw"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .args(["demo", "--run", "--listen", "127.0.0.1:0", "--plugins"])
        .arg(&plugins)
        .arg("--dir")
        .arg(dir.path().join("demo"))
        .args(["--grid-loss-after", "8", "--timeout", "120"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    // The GX read its site state from the simulated Venus OS.
    assert!(
        stdout.contains("site state live from Venus OS at 127.0.0.1:"),
        "{stdout}"
    );
    assert!(stdout.contains("the grid is lost"), "{stdout}");
    // At least one update stopped (or was refused) by the backup-power gate.
    assert!(
        stdout.contains("error 728") && stdout.contains("measured grid lost"),
        "{stdout}\n{stderr}"
    );
}
