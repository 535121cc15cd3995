//! `bmsfw gx` and `bmsfw portal` as separate processes on one mosquitto: the GX daemon of a
//! gx.toml (the Aurora plugin approved by its allowlist, a simulated site behind its "sim"
//! interface) and the portal of a portal.toml, updated through the portal's HTTP API.
//! The link is the secure one: mosquitto with TLS, a password file and bmsfw's ACL file,
//! the GX and the portal provisioned with `bmsfw portal provision`.

mod gx_site;
mod support;

use bmsfw_core::vrm::tls::MqttCredentials;
use std::time::Duration;
use support::PORTAL_ID;
use support::daemon::{Approved, DaemonSetup, Daemons, battery};

const WAIT: Duration = Duration::from_secs(60);
const SERIAL: &str = "AUR10-000777";

fn setup() -> DaemonSetup {
    DaemonSetup {
        plugins: vec![Approved {
            library: gx_site::aurora_library(),
            file: None,
            vendor_id: gx_site::VENDOR_ID.into(),
            firmware: ("2.0".into(), "9.99".into()),
            manufacturer: "AURORA".into(),
            product_codes: vec![0xA520],
        }],
        site: format!(
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
        cans: vec!["sim2".into()],
        gx_extra: String::new(),
        site_socket: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gx_daemon_and_the_portal_update_a_battery_as_separate_processes() {
    let d = Daemons::start(&setup()).await;
    d.until("the battery", WAIT, |s| {
        (battery(s, SERIAL)?["can_update"] == true).then_some(())
    })
    .await;
    d.update(
        SERIAL,
        "powercore10-4.16.bin",
        gx_site::package([4, 16], 32 * 1024, 9),
        false,
    )
    .await
    .unwrap();
    let u = d
        .until("the end of the update", WAIT, |s| {
            let u = &battery(s, SERIAL)?["latest_update"];
            (u["ended"] == true).then(|| u.clone())
        })
        .await;
    assert_eq!(u["state"], "completed", "{u:#}\n{}", d.logs());
    assert_eq!(u["version_before"]["display"], "v4.15");
    assert_eq!(u["version_after"]["display"], "v4.16");
    // The daemon kept its journal and event log in the state directory of gx.toml.
    assert!(d.path("state/events/events.jsonl").is_file());
    // Neither link password appears in either program's log or in the job's diagnostics.
    let diagnostics = d
        .client
        .get(format!(
            "{}/api/installations/{PORTAL_ID}/jobs/{}/diagnostics",
            d.url, u["job"]
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(diagnostics.status(), 200);
    let diagnostics = diagnostics.text().await.unwrap();
    assert!(diagnostics.contains(SERIAL), "{diagnostics}");
    let seen = [
        std::fs::read_to_string(d.path("gx.log")).unwrap(),
        std::fs::read_to_string(d.path("portal.log")).unwrap(),
        diagnostics,
    ];
    for file in ["gx-mqtt.toml", "portal-mqtt.toml"] {
        let password = MqttCredentials::load(&d.path(file)).unwrap().password;
        for text in &seen {
            assert!(!text.contains(password.expose()), "{file}'s password shown");
        }
    }
}
