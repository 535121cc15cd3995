//! `bmsfw gx` and `bmsfw portal` as separate processes on one mosquitto: the GX daemon of a
//! gx.toml (the Aurora plugin approved by its allowlist, a simulated site behind its "sim"
//! interface) and the portal of a portal.toml, updated through the portal's HTTP API.
//! The link is the secure one: mosquitto with TLS, a password file and bmsfw's ACL file,
//! the GX and the portal provisioned with `bmsfw portal provision`.

mod gx_site;
mod support;

use bmsfw_core::plugin::Sha256Digest;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::{CSRF_HEADER, PORTAL_ID, free_port, http};

const WAIT: Duration = Duration::from_secs(60);
const SERIAL: &str = "AUR10-000777";

/// A child process killed when the test ends.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bmsfw(args: &[&str], log: &Path) -> Process {
    let out = std::fs::File::create(log).unwrap();
    Process(
        Command::new(env!("CARGO_BIN_EXE_bmsfw"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn write_configs(dir: &Path, broker_port: u16, http_port: u16, site: &support::secure::SecureSite) {
    let ca = site.ca_file().display().to_string();
    let gx_credentials = dir.join("gx-mqtt.toml").display().to_string();
    let portal_credentials = dir.join("portal-mqtt.toml").display().to_string();
    let password_file = site.password_file.display().to_string();
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let library = gx_site::aurora_library();
    let copy = plugins.join(library.file_name().unwrap());
    std::fs::copy(&library, &copy).unwrap();
    let hash = Sha256Digest::of(&std::fs::read(&copy).unwrap());
    std::fs::write(
        dir.join("allowlist.toml"),
        format!(
            r#"
[[plugin]]
vendor_id = "{vendor}"
file = "{file}"
sha256 = "{hash}"
versions = "^1.0"
firmware = {{ from = "2.0", to = "9.99" }}

[[plugin.products]]
manufacturer = "AURORA"
product_codes = [0xA520]

[plugin.review]
status = "passed"
date = 2025-09-01

[plugin.compliance]
status = "passed"
date = 2025-09-03
"#,
            vendor = gx_site::VENDOR_ID,
            file = copy.file_name().unwrap().to_string_lossy(),
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("gx.toml"),
        format!(
            r#"
portal_id = "{PORTAL_ID}"
state_dir = "state"

[plugins]
dir = "plugins"
allowlist = "allowlist.toml"
load_method = "private-copy"

[[can]]
name = "sim2"
backend = "sim"

[staging]
dir = "staging"
min_free_bytes = 1048576

[mqtt]
broker = "mqtts://localhost:{broker_port}"
ca = "{ca}"
credentials = "{gx_credentials}"
vrm_portal = "full"
keepalive_seconds = 60
"#
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("site.toml"),
        format!(
            r#"
[[bus]]
name = "sim2"
bitrate = 500000

[[bus.battery]]
name = "shed"
vendor = "aurora"
manufacturer = "AURORA"
bms_name = "PowerCore 10"
product_code = 0xA520
firmware = [0x04, 0x0F]
capacity_ah = 200
serial = "{SERIAL}"
soc = 81
temperature_c = 21.0
"#
        ),
    )
    .unwrap();
    let hash = bmsfw_portal::auth::hash_password("installer-demo").unwrap();
    std::fs::write(
        dir.join("portal.toml"),
        format!(
            r#"
listen = "127.0.0.1:{http_port}"
broker = "mqtts://localhost:{broker_port}"

[mqtt]
ca = "{ca}"
credentials = "{portal_credentials}"
password_file = "{password_file}"

[[installations]]
portal_id = "{PORTAL_ID}"
name = "Shed"

[[users]]
name = "installer"
password_hash = "{hash}"
access = "full-control"
installations = ["*"]
"#
        ),
    )
    .unwrap();
    // The portal's command-signing key (where the portal looks for it: beside its
    // database), and the GX trusting it.
    support::write_portal_key(&dir.join("portal-signing.key"));
    let mut gx_toml = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("gx.toml"))
        .unwrap();
    std::io::Write::write_all(
        &mut gx_toml,
        format!(
            "\n[command_signing]\nportal_keys = [\"{}\"]\n",
            support::portal_signer().public_key()
        )
        .as_bytes(),
    )
    .unwrap();
}

async fn state(c: &reqwest::Client, url: &str) -> Option<Value> {
    let r = c.get(format!("{url}/api/state")).send().await.ok()?;
    r.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gx_daemon_and_the_portal_update_a_battery_as_separate_processes() {
    let secure = support::secure::SecureSite::new();
    let dir = tempfile::tempdir().unwrap();
    let http_port = free_port();
    let broker_port = free_port();
    write_configs(dir.path(), broker_port, http_port, &secure);
    let p = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    // Provisioning, as an operator does it: the GX and the portal itself.
    for (id, out) in [
        (PORTAL_ID, "gx-mqtt.toml"),
        ("vrm.portal", "portal-mqtt.toml"),
    ] {
        let done = Command::new(env!("CARGO_BIN_EXE_bmsfw"))
            .args(["portal", "--config", &p("portal.toml"), "provision", id])
            .args(["--out", &p(out)])
            .output()
            .unwrap();
        assert!(
            done.status.success(),
            "{}",
            String::from_utf8_lossy(&done.stderr)
        );
        // The password goes into the file, never onto the terminal.
        let password = bmsfw_core::vrm::tls::MqttCredentials::load(Path::new(&p(out)))
            .unwrap()
            .password;
        let shown = String::from_utf8_lossy(&done.stdout).into_owned()
            + &String::from_utf8_lossy(&done.stderr);
        assert!(!shown.contains(password.expose()), "{shown}");
    }
    // mosquitto reads the password file at start.
    let _broker = secure.mosquitto_on(broker_port);
    let _gx = bmsfw(
        &[
            "gx",
            "--config",
            &p("gx.toml"),
            "--sim",
            &p("site.toml"),
            "--gx-firmware",
            "3.70",
        ],
        &dir.path().join("gx.log"),
    );
    let _portal = bmsfw(
        &["portal", "--config", &p("portal.toml")],
        &dir.path().join("portal.log"),
    );
    let logs = || {
        format!(
            "gx.log:\n{}\nportal.log:\n{}",
            std::fs::read_to_string(dir.path().join("gx.log")).unwrap_or_default(),
            std::fs::read_to_string(dir.path().join("portal.log")).unwrap_or_default()
        )
    };

    let url = format!("http://127.0.0.1:{http_port}");
    let c = http();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = c
            .post(format!("{url}/api/login"))
            .header(CSRF_HEADER.0, CSRF_HEADER.1)
            .json(&json!({"username": "installer", "password": "installer-demo"}))
            .send()
            .await;
        if r.is_ok_and(|r| r.status() == StatusCode::OK) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the portal did not start\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let instance = loop {
        if let Some(s) = state(&c, &url).await
            && let Some(b) = s["installations"][0]["batteries"]
                .as_array()
                .and_then(|a| a.iter().find(|b| b["serial"] == SERIAL))
            && b["can_update"] == true
        {
            break b["instance"].as_u64().unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the battery did not appear\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let path = format!("{url}/api/installations/{PORTAL_ID}/batteries/{instance}");
    let r = c
        .post(format!("{path}/firmware?name=powercore10-4.16.bin"))
        .header(CSRF_HEADER.0, CSRF_HEADER.1)
        .body(gx_site::package([4, 16], 32 * 1024, 9))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .post(format!("{path}/update"))
        .header(CSRF_HEADER.0, CSRF_HEADER.1)
        .json(&json!({"acknowledgements": ["site_reachable", "backup_capacity", "maintenance_window"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let u = loop {
        let s = state(&c, &url).await.unwrap();
        let b = s["installations"][0]["batteries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["serial"] == SERIAL)
            .unwrap()
            .clone();
        if b["latest_update"]["ended"] == true {
            break b["latest_update"].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the update did not end: {b:#}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(u["state"], "completed", "{u:#}\n{}", logs());
    assert_eq!(u["version_before"]["display"], "v4.15");
    assert_eq!(u["version_after"]["display"], "v4.16");
    // The daemon kept its journal and event log in the state directory of gx.toml.
    assert!(dir.path().join("state/events/events.jsonl").is_file());
}
