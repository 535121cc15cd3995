//! The whole path, in real time: the portal's HTTP API, mosquitto, the GX (the engine with
//! the real Aurora plugin loaded through the allowlist, and the VRM link), and the
//! simulated Aurora PowerCore BMS on a 500 kbit/s simulated bus.

mod gx_site;
mod support;

use aurora_sim::bms::AuroraConfig;
use bmsfw_core::vrm::{GxEngine, spawn_link};
use bmsfw_sim::bus::SimBus;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use support::{
    CSRF_HEADER, INSTALLER, Mosquitto, PORTAL_ID, PortalServer, http, link_config, until,
};

const WAIT: Duration = Duration::from_secs(60);

fn battery(state: &Value) -> &Value {
    &state["installations"][0]["batteries"][0]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_through_the_portal_the_broker_the_gx_and_an_aurora_battery() {
    // The secure path: mosquitto with TLS, the password file and bmsfw's ACL file; the
    // GX and the portal each with credentials of their own.
    let secure = support::secure::SecureSite::new();
    let broker = secure.mosquitto();
    // The PowerCore's restart is shortened: this test runs in real time.
    let mut bms = AuroraConfig::new(gx_site::PRODUCT, [4, 15]);
    bms.timing.restart = Duration::from_millis(400);
    bms.timing.erase_per_block = Duration::from_millis(20);
    let site = gx_site::Site::with_bms(SimBus::new("can0", 500_000), bms);
    let engine = site.gx();
    gx_site::wait_for_battery(&engine).await;
    let access = engine.vrm_access().clone();
    let engine: Arc<dyn GxEngine> = Arc::new(engine);
    let state_dir = site.dir.path().join("state");
    let link = spawn_link(
        secure.link_config(&broker.addr(), &state_dir),
        Arc::clone(&engine),
        access,
    )
    .unwrap();

    let portal = PortalServer::start_with(secure.portal_config(&broker.addr(), 16 * 1024, 8)).await;
    let url = &portal.url;
    let c = http();
    let r = c
        .post(format!("{url}/api/login"))
        .header(CSRF_HEADER.0, CSRF_HEADER.1)
        .json(&json!({"username": INSTALLER.0, "password": INSTALLER.1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // The device list, built from what the GX publishes about the PowerCore.
    let deadline = tokio::time::Instant::now() + WAIT;
    let s = loop {
        let s = state(&c, url).await;
        if battery(&s)["can_update"] == true {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the battery never became updatable: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let b = battery(&s);
    assert_eq!(b["serial"], gx_site::SERIAL);
    assert_eq!(b["manufacturer"], "AURORA");
    assert_eq!(b["firmware_version"], "v4.15");
    assert_eq!(b["vendor"], gx_site::VENDOR_ID);
    assert_eq!(b["connected"], true);
    let instance = b["instance"].as_u64().unwrap();
    let path = format!("{url}/api/installations/{PORTAL_ID}/batteries/{instance}");

    // Upload the manufacturer's file, confirm, Update.
    let package = gx_site::package([4, 16], 48 * 1024, 3);
    let r = c
        .post(format!("{path}/firmware?name=powercore10-4.16.bin"))
        .header(CSRF_HEADER.0, CSRF_HEADER.1)
        .body(package.clone())
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

    // Follow it to the end.
    let deadline = tokio::time::Instant::now() + WAIT;
    let b = loop {
        let s = state(&c, url).await;
        let b = battery(&s).clone();
        if b["latest_update"]["ended"] == true {
            break b;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the update did not end: {b:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let u = &b["latest_update"];
    assert_eq!(u["state"], "completed", "{u:#}");
    assert_eq!(
        u["states_seen"],
        json!([
            "uploading",
            "transferring",
            "installing",
            "restarting",
            "verifying",
            "completed"
        ])
    );
    assert_eq!(u["version_before"]["display"], "v4.15");
    assert_eq!(u["version_after"]["display"], "v4.16");
    assert_eq!(u["version_after"]["raw"], "0410");
    assert_eq!(site.status().running_version, [4, 16]);
    let deadline = tokio::time::Instant::now() + WAIT;
    while battery(&state(&c, url).await)["firmware_version"] != "v4.16" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new version is not shown"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The event log from the GX.
    let log: Value = c
        .get(format!("{path}/events"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = log["events"].as_array().unwrap();
    assert_eq!(events.first().unwrap()["kind"], "initiated");
    let completed = events.iter().find(|e| e["kind"] == "completed").unwrap();
    assert_eq!(completed["version_before"]["display"], "v4.15");
    assert_eq!(completed["version_after"]["display"], "v4.16");
    link.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_cut_during_the_transfer_leaves_it_undisturbed_and_the_portal_catches_up() {
    let mut broker = Mosquitto::start();
    let mut bms = AuroraConfig::new(gx_site::PRODUCT, [4, 15]);
    bms.timing.restart = Duration::from_millis(400);
    bms.timing.erase_per_block = Duration::from_millis(20);
    let site = gx_site::Site::with_bms(SimBus::new("can0", 500_000), bms);
    let engine = site.gx();
    gx_site::wait_for_battery(&engine).await;
    let access = engine.vrm_access().clone();
    let engine: Arc<dyn GxEngine> = Arc::new(engine);
    let link = spawn_link(
        link_config(&broker.addr(), &site.dir.path().join("state")),
        Arc::clone(&engine),
        access,
    )
    .unwrap();
    let portal = PortalServer::start(&broker.addr(), 16 * 1024).await;
    let url = &portal.url;
    let c = http();
    c.post(format!("{url}/api/login"))
        .header(CSRF_HEADER.0, CSRF_HEADER.1)
        .json(&json!({"username": INSTALLER.0, "password": INSTALLER.1}))
        .send()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let instance = loop {
        let s = state(&c, url).await;
        if battery(&s)["can_update"] == true {
            break battery(&s)["instance"].as_u64().unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not updatable: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let path = format!("{url}/api/installations/{PORTAL_ID}/batteries/{instance}");
    // A larger image: the transfer lasts a few seconds on the 500 kbit/s bus.
    let package = gx_site::package([4, 17], 128 * 1024, 5);
    c.post(format!("{path}/firmware?name=powercore10-4.17.bin"))
        .header(CSRF_HEADER.0, CSRF_HEADER.1)
        .body(package)
        .send()
        .await
        .unwrap();
    let r = c
        .post(format!("{path}/update"))
        .header(CSRF_HEADER.0, CSRF_HEADER.1)
        .json(&json!({"acknowledgements": ["site_reachable", "backup_capacity", "maintenance_window"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Stage 2 starts; then the internet goes.
    let deadline = tokio::time::Instant::now() + WAIT;
    while battery(&state(&c, url).await)["latest_update"]["state"] != "transferring" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stage 2 did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    broker.kill();
    let seen_at_cut = battery(&state(&c, url).await)["latest_update"]["states_seen"].clone();

    // The GX finishes the transfer on its own.
    let job = loop {
        let jobs = engine.jobs().await;
        let j = jobs.last().unwrap().clone();
        if j.state().is_terminal() {
            break j;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the transfer did not end: {j:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        job.state(),
        bmsfw_core::job::JobState::Completed,
        "{job:#?}"
    );
    assert_eq!(site.status().running_version, [4, 17]);
    assert!(
        link.status().outbox_durable > 0,
        "the status made while the link was down waits on disk"
    );
    assert_eq!(
        seen_at_cut,
        json!(["uploading", "transferring"]),
        "the portal had not seen the end before the cut"
    );

    // The internet returns: the portal catches up, in order, and has the whole log.
    broker.restart();
    let deadline = tokio::time::Instant::now() + WAIT;
    let b = loop {
        let b = battery(&state(&c, url).await).clone();
        // The GX's published values show the end first; the queued replies follow.
        if b["latest_update"]["ended"] == true && b["latest_update"]["caught_up"] == true {
            break b;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the portal did not catch up: {b:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let u = &b["latest_update"];
    assert_eq!(u["state"], "completed");
    assert_eq!(
        u["states_seen"],
        json!([
            "uploading",
            "transferring",
            "installing",
            "restarting",
            "verifying",
            "completed"
        ])
    );
    assert_eq!(u["version_after"]["display"], "v4.17");
    let log: Value = c
        .get(format!("{path}/events"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"initiated"));
    assert_eq!(kinds.last(), Some(&"completed"));
    assert_eq!(kinds.iter().filter(|k| **k == "state_changed").count(), 5);
    until("the outbox drained", WAIT, || {
        link.status().outbox_pending == 0
    })
    .await;
}
