//! `bmsfw simulate` as a user runs it, from a folder of its own with its output piped.
//!
//! The development and CI machines' kernel has no CAN, so what runs here is what a user
//! meets before any frame: an interface that does not exist and a site file that is
//! wrong, each refused with a message naming what and where, and no battery started.
//! The batteries on a real interface run in the SocketCAN virtual machine
//! (`core/tests/vcan_site.rs`).

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A one-bus site whose bus is the interface `iface`.
fn site(iface: &str) -> String {
    format!(
        r#"
[[bus]]
name = "{iface}"
bitrate = 500000

[[bus.battery]]
name = "bench"
vendor = "nordcell"
manufacturer = "NORDCELL"
bms_name = "NC-LFP100"
product_code = 0x42
firmware = [1, 23]
capacity_ah = 100
soc = 60
"#
    )
}

fn simulate(site: &Path) -> Output {
    let cwd = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_bmsfw"))
        .args(["simulate", "--site"])
        .arg(site)
        .args(["--secs", "2"])
        .current_dir(cwd.path())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn an_interface_that_does_not_exist_is_named_and_nothing_starts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bench.toml");
    std::fs::write(&file, site("nocan7")).unwrap();
    let out = simulate(&file);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("nocan7"), "{all}");
    assert!(all.contains("bench.toml"), "{all}");
    // No battery line: nothing started.
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("battery bench"),
        "{all}"
    );
}

#[test]
fn a_wrong_site_file_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bench.toml");
    std::fs::write(
        &file,
        site("can0").replace("bitrate = 500000", "bitrate = 499999"),
    )
    .unwrap();
    let out = simulate(&file);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("bench.toml:4:"), "{all}");
    assert!(all.contains("bitrate") || all.contains("bit rate"), "{all}");

    let missing = dir.path().join("missing.toml");
    let out = simulate(&missing);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("missing.toml"), "{all}");
}

/// With `--serve DIR` the site's bus runs in the command itself and is offered on a
/// socket in DIR (relative to the folder it runs in); a node in another process (here
/// the test, as a GX daemon would with `--site-socket`) joins it and hears the battery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_site_is_heard_from_another_process() {
    use bmsfw_can::{CanEvent, CanInterface};
    use std::time::{Duration, Instant};

    let cwd = tempfile::tempdir().unwrap();
    std::fs::write(cwd.path().join("bench.toml"), site("sim9")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_bmsfw"))
        .args(["simulate", "--site", "bench.toml", "--serve", "sockets"])
        .args(["--secs", "6"])
        .current_dir(cwd.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let socket = cwd.path().join("sockets/sim9.sock");
    let start = Instant::now();
    while !socket.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no socket at {}",
            socket.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gx = bmsfw_sim::bridge::BridgeInterface::connect(&socket, "sim9")
        .await
        .unwrap();
    assert_eq!(gx.bitrate(), Some(500_000));
    // The battery's BMS-Can broadcasts reach the node: its state of charge (0x355).
    let heard = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let CanEvent::Frame(f) = gx.recv().await.unwrap()
                && f.frame.id().raw() == 0x355
            {
                return f.frame;
            }
        }
    })
    .await
    .expect("0x355 within 5 s");
    assert_eq!(heard.data()[..2], 60u16.to_le_bytes());
    drop(gx);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("bus sim9 at sockets/sim9.sock"), "{all}");
    assert!(
        all.contains("battery bench (vendor nordcell) on sim9"),
        "{all}"
    );
}
