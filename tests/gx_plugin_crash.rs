//! A vendor plugin's host killed by SIGSEGV in the middle of a transfer, in the real
//! daemon: `bmsfw demo` (the embedded broker, the portal, the GX daemon loading the
//! shipped plugins through its allowlist, the simulated site of config/demo.toml in real
//! time), driven through the portal's HTTP API as an installer drives it.
//!
//! The Aurora update fails with 747 naming the signal; the Coral update on another bus,
//! with another plugin, completes; the portal keeps receiving status and every battery
//! stays connected; the daemon lives on; and the next Aurora update, in a fresh host,
//! completes.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CSRF: (&str, &str) = ("X-Requested-With", "bmsfw");
const AURORA: &str = "AUR10-000123";
const CORAL: &str = "RS48-240611";

/// The demo process; killed when dropped.
struct Demo {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_demo() -> Demo {
    let dir = tempfile::tempdir().unwrap();
    let plugins = bmsfw_test_fixtures::vendor_library("aurora")
        .parent()
        .unwrap()
        .to_path_buf();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bmsfw"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["demo", "--listen", "127.0.0.1:0", "--plugins"])
        .arg(plugins)
        .arg("--dir")
        .arg(dir.path().join("demo"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.trim().strip_prefix("portal    ") {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the demo printed no portal address");
    Demo { child, url, dir }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn state(c: &reqwest::Client, url: &str) -> Value {
    c.get(format!("{url}/api/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn battery<'a>(s: &'a Value, serial: &str) -> Option<&'a Value> {
    s["installations"][0]["batteries"]
        .as_array()?
        .iter()
        .find(|b| b["serial"] == serial)
}

/// Polls the portal's state until `check` finds what it wants (bounded).
async fn until<T>(
    c: &reqwest::Client,
    url: &str,
    what: &str,
    limit: Duration,
    check: impl Fn(&Value) -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let s = state(c, url).await;
        if let Some(found) = check(&s) {
            return found;
        }
        assert!(Instant::now() < deadline, "{what} did not happen: {s:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn update(c: &reqwest::Client, url: &str, s: &Value, serial: &str, file: &Path) {
    let b = battery(s, serial).unwrap();
    let portal_id = s["installations"][0]["portal_id"].as_str().unwrap();
    let path = format!(
        "{url}/api/installations/{portal_id}/batteries/{}",
        b["instance"]
    );
    let name = file.file_name().unwrap().to_str().unwrap();
    let r = c
        .post(format!("{path}/firmware?name={name}"))
        .header(CSRF.0, CSRF.1)
        .body(std::fs::read(file).unwrap())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = c
        .post(format!("{path}/update"))
        .header(CSRF.0, CSRF.1)
        .json(&json!({"acknowledgements": ["site_reachable", "backup_capacity", "maintenance_window"]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

/// The plugin host serving a session of `vendor` among the demo's children (the engine
/// names each host's role in its command line).
fn session_host(demo_pid: u32, vendor: &str) -> Option<i32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(demo_pid) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("plugin-host") && cmdline.contains(&format!("--label session {vendor}"))
        {
            return Some(pid);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_host_crashing_mid_transfer_costs_its_own_job_only() {
    let mut demo = start_demo();
    let url = demo.url.clone();
    let firmware = demo.dir.path().join("demo").join("firmware");
    let c = client();
    let r = c
        .post(format!("{url}/api/login"))
        .header(CSRF.0, CSRF.1)
        .json(&json!({"username": "installer", "password": "installer-demo"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let s = until(
        &c,
        &url,
        "both batteries updatable",
        Duration::from_secs(90),
        |s| {
            let ready = [AURORA, CORAL]
                .iter()
                .all(|serial| battery(s, serial).is_some_and(|b| b["can_update"] == true));
            ready.then(|| s.clone())
        },
    )
    .await;
    update(
        &c,
        &url,
        &s,
        CORAL,
        &firmware.join("reefstack-coral-1.10.crb"),
    )
    .await;
    update(&c, &url, &s, AURORA, &firmware.join("shed-aurora-4.16.bin")).await;

    // Mid-transfer, the Aurora plugin's session host dies of a segmentation fault.
    until(
        &c,
        &url,
        "the Aurora transfer",
        Duration::from_secs(60),
        |s| {
            let u = &battery(s, AURORA)?["latest_update"];
            (u["state"] == "transferring" && u["percent"].as_u64().unwrap_or(0) >= 5).then_some(())
        },
    )
    .await;
    let host = session_host(demo.child.id(), "com.aurora-energy.powercore")
        .expect("the Aurora session host runs");
    // The host's Rust runtime takes the first SIGSEGV that does not come from a guard
    // page for its stack-overflow check and restores the default action: the next one
    // ends the process, as a real invalid access does.
    for _ in 0..20 {
        // SAFETY: kill(2) on a process id read from /proc a moment ago, a child of the
        // demo that the demo has not reaped (it is still listed).
        if unsafe { libc::kill(host, libc::SIGSEGV) } != 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let aurora = until(
        &c,
        &url,
        "the Aurora job's end",
        Duration::from_secs(60),
        |s| {
            let u = &battery(s, AURORA)?["latest_update"];
            (u["ended"] == true).then(|| u.clone())
        },
    )
    .await;
    assert_eq!(aurora["state"], "failed", "{aurora:#}");
    assert_eq!(aurora["error_code"], 747, "{aurora:#}");
    let error = aurora["error"].as_str().unwrap_or_default();
    assert!(error.contains("SIGSEGV"), "{error}");
    assert!(error.contains("com.aurora-energy.powercore"), "{error}");

    // The other bus's update, another plugin, completes; everything stays connected.
    let coral = until(
        &c,
        &url,
        "the Coral job's end",
        Duration::from_secs(120),
        |s| {
            let u = &battery(s, CORAL)?["latest_update"];
            (u["ended"] == true).then(|| u.clone())
        },
    )
    .await;
    assert_eq!(coral["state"], "completed", "{coral:#}");
    // Monitoring goes on: every battery is (or, the pack just back from its own restart,
    // soon is again) connected.
    let s = until(
        &c,
        &url,
        "every battery connected",
        Duration::from_secs(30),
        |s| {
            s["installations"][0]["batteries"]
                .as_array()?
                .iter()
                .all(|b| b["connected"] == true)
                .then(|| s.clone())
        },
    )
    .await;
    assert!(
        demo.child.try_wait().unwrap().is_none(),
        "the daemon died with its plugin"
    );

    // The next Aurora update runs in a fresh host and completes.
    update(&c, &url, &s, AURORA, &firmware.join("shed-aurora-4.16.bin")).await;
    let again = until(
        &c,
        &url,
        "the second Aurora job",
        Duration::from_secs(90),
        |s| {
            let u = &battery(s, AURORA)?["latest_update"];
            (u["ended"] == true && u["error_code"] != 747).then(|| u.clone())
        },
    )
    .await;
    assert_eq!(again["state"], "completed", "{again:#}");
    assert!(demo.child.try_wait().unwrap().is_none());
}
