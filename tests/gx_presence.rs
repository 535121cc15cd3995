//! The portal knows when a GX is gone: the GX's last will (its connection killed without a
//! goodbye) or its silence makes the portal show it offline, its batteries' values stale
//! and its running update of unknown status, and refuse new updates toward it with 717;
//! when the GX is back, so are updates. Through a real mosquitto and the embedded broker,
//! over the portal's HTTP API.

mod support;

use bmsfw_core::job::{JobEvent, Percent};
use bmsfw_portal::EmbeddedBroker;
use bmsfw_vrm_wire::presence::presence_topic;
use bmsfw_vrm_wire::{BrokerAddr, PortalId, PresenceMessage};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::*;

const WAIT: Duration = Duration::from_secs(30);

fn now_ms() -> u64 {
    bmsfw_portal::presence::now_ms()
}

fn site(state: &Value) -> &Value {
    &state["installations"][0]
}

fn battery(state: &Value) -> &Value {
    &state["installations"][0]["batteries"][0]
}

async fn login(c: &reqwest::Client, url: &str) {
    let r = c
        .post(format!("{url}/api/login"))
        .header(CSRF_HEADER.0, CSRF_HEADER.1)
        .json(&json!({"username": INSTALLER.0, "password": INSTALLER.1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// Polls `/api/state` until `check` holds; fails after [`WAIT`].
async fn state_until(
    c: &reqwest::Client,
    url: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s: Value = c
            .get(format!("{url}/api/state"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if check(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}\n{s:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn upload(c: &reqwest::Client, path: &str, name: &str, bytes: Vec<u8>) {
    let r = c
        .post(format!("{path}/firmware?name={name}"))
        .header(CSRF_HEADER.0, CSRF_HEADER.1)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
}

/// POSTs `/update` or `/retry` with every warning confirmed; the status and the body.
async fn press(c: &reqwest::Client, path: &str, what: &str) -> (StatusCode, Value) {
    let r = c
        .post(format!("{path}/{what}"))
        .header(CSRF_HEADER.0, CSRF_HEADER.1)
        .json(&json!({"acknowledgements": ["site_reachable", "backup_capacity", "maintenance_window"]}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The presence message the broker holds for the test GX, as a client subscribing now
/// gets it.
async fn retained_presence(broker: &BrokerAddr) -> PresenceMessage {
    let topic = presence_topic(&PortalId::new(PORTAL_ID).unwrap());
    let mut raw = RawClient::connect(broker, &[&topic]).await;
    let (_, payload) = raw
        .next(&topic, WAIT)
        .await
        .expect("the broker holds no presence for the GX");
    PresenceMessage::parse(&payload).unwrap()
}

async fn gone_and_back(broker: BrokerAddr) {
    assert_eq!(
        bmsfw_portal::vrm::GX_OFFLINE,
        bmsfw_core::errors::codes::GX_OFFLINE,
        "the portal's code is the catalogue's"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut gx = Gx::start(&broker, dir.path());
    gx.connected().await;
    let mut staged = gx.staged.take().unwrap();
    let portal = PortalServer::start(&broker, 1024).await;
    let url = &portal.url;
    let c = http();
    login(&c, url).await;

    // Online: the battery can be updated, its values are fresh.
    let s = state_until(&c, url, "the GX online and the battery updatable", |s| {
        site(s)["presence"] == "online" && battery(s)["can_update"] == true
    })
    .await;
    assert_eq!(site(&s)["presence_label"], "GX device online");
    assert_eq!(site(&s)["offline_since"], Value::Null);
    assert_eq!(battery(&s)["stale"], false);
    let first = retained_presence(&broker).await;
    assert!(first.online, "the GX announced itself online, retained");

    // An update, held in stage 2 (Transferring) by this test.
    let instance = battery(&s)["instance"].as_u64().unwrap();
    let path = format!("{url}/api/installations/{PORTAL_ID}/batteries/{instance}");
    upload(&c, &path, "ax5-5.2.bin", package(5, 2, 3000, 1)).await;
    let (status, body) = press(&c, &path, "update").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let held = tokio::time::timeout(WAIT, staged.recv())
        .await
        .expect("the package never reached stage 2")
        .unwrap();
    state_until(&c, url, "the update transferring", |s| {
        battery(s)["latest_update"]["state"] == "transferring"
    })
    .await;

    // (a) The GX's connection dies without a goodbye: the broker publishes its will.
    let killed_at = now_ms();
    drop(gx.link.take());
    let s = state_until(&c, url, "the GX offline", |s| {
        site(s)["presence"] == "offline"
    })
    .await;
    let inst = site(&s);
    assert_eq!(inst["offline_cause"], "will", "{inst:#}");
    let since = inst["offline_since"].as_u64().expect("a since-time");
    assert!(
        since >= killed_at && since <= now_ms(),
        "offline since {since}, killed at {killed_at}"
    );
    let label = inst["presence_label"].as_str().unwrap();
    assert!(label.starts_with("GX device offline since "), "{label}");
    let b = battery(&s);
    assert_eq!(b["stale"], true, "{b:#}");
    assert_eq!(b["can_update"], false);
    assert!(
        b["update_blocked"].as_str().unwrap().contains("offline"),
        "{b:#}"
    );
    let u = &b["latest_update"];
    assert_eq!(u["ended"], false, "{u:#}");
    assert_eq!(u["state"], "transferring", "the last state reported");
    assert_eq!(u["status_unknown"], true, "{u:#}");
    assert_eq!(u["status_note"], "Status unknown (GX device offline)");
    let will = retained_presence(&broker).await;
    assert!(
        !will.online,
        "the broker keeps the will for later subscribers"
    );
    assert_eq!(will.session, first.session, "the will of that connection");

    // (b) No update starts toward it: a stable code and a message that says why.
    upload(&c, &path, "ax5-5.3.bin", package(5, 3, 3000, 2)).await;
    let (status, body) = press(&c, &path, "update").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], 717, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("GX device is offline"), "{message}");
    let (status, body) = press(&c, &path, "retry").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], 717, "{body}");
    assert_eq!(gx.engine_jobs().await.len(), 1, "nothing reached the GX");

    // Stage 2 does not need the internet: the update ends on the GX alone.
    let target = held.package.package().version.clone();
    for event in [
        JobEvent::TransferProgress(Percent::new(100).unwrap()),
        JobEvent::InstallStarted,
        JobEvent::RestartStarted,
        JobEvent::VerifyStarted,
        JobEvent::Completed {
            version_after: target.clone(),
        },
    ] {
        gx.engine.apply(held.job, event).unwrap();
    }
    let mut b = battery_view();
    b.firmware = Some(target);
    gx.engine.set_battery(b);

    // (c) The GX connects again: online, the update's end arrives, updates are allowed.
    gx.link = Some(
        bmsfw_core::vrm::spawn_link(
            link_config(&broker, dir.path()),
            Arc::new(gx.engine.clone()),
            gx.access.clone(),
        )
        .unwrap(),
    );
    let s = state_until(
        &c,
        url,
        "the GX back online and the battery updatable",
        |s| {
            site(s)["presence"] == "online"
                && battery(s)["can_update"] == true
                && battery(s)["latest_update"]["caught_up"] == true
                && battery(s)["firmware_version"] == "v5.2"
        },
    )
    .await;
    assert_eq!(site(&s)["offline_since"], Value::Null);
    let b = battery(&s);
    assert_eq!(b["stale"], false);
    assert_eq!(b["latest_update"]["state"], "completed");
    assert_eq!(b["latest_update"]["status_unknown"], false);
    let again = retained_presence(&broker).await;
    assert!(again.online, "the reconnect replaced the will");
    assert_ne!(again.session, first.session, "a new connection");

    let (status, body) = press(&c, &path, "update").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let next = tokio::time::timeout(WAIT, staged.recv())
        .await
        .expect("the new update never reached stage 2")
        .unwrap();
    assert_ne!(next.job, held.job);
}

fn battery_view() -> bmsfw_core::vrm::BatteryView {
    support::battery()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gx_gone_without_a_goodbye_is_offline_until_it_connects_again_over_mosquitto() {
    let broker = Mosquitto::start();
    gone_and_back(broker.addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gx_gone_without_a_goodbye_is_offline_until_it_connects_again_over_the_embedded_broker() {
    let broker = EmbeddedBroker::start("127.0.0.1:0".parse().unwrap()).unwrap();
    gone_and_back(broker.url()).await;
}

/// A GX that publishes its values (and no last will) while `speaking` is set.
fn chatty_gx(raw: Arc<RawClient>, speaking: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let n = format!("N/{PORTAL_ID}");
        let values = [
            ("settings/0/Settings/Network/VrmPortal", json!(2)),
            ("system/0/Batteries", json!([512])),
            ("battery/512/Serial", json!(SERIAL)),
            ("battery/512/ProductName", json!("AX-5")),
            ("battery/512/Soc", json!(80.0)),
            ("battery/512/FirmwareUpdate/Eligible", json!(1)),
        ];
        loop {
            if speaking.load(Ordering::SeqCst) {
                for (path, value) in &values {
                    let payload = serde_json::to_vec(&json!({ "value": value })).unwrap();
                    raw.publish(&format!("{n}/{path}"), payload).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_gx_is_offline_after_the_interval_and_refuses_updates_until_it_speaks() {
    let broker = Mosquitto::start();
    let mut cfg = portal_config(&broker.addr(), 1024, 8);
    cfg.offline_after = Duration::from_secs(2);
    let portal = PortalServer::start_with(cfg).await;
    let url = &portal.url;
    let c = http();
    login(&c, url).await;
    let raw = Arc::new(
        RawClient::connect_as(&broker.addr(), PORTAL_ID, &[&format!("R/{PORTAL_ID}/#")]).await,
    );
    let speaking = Arc::new(AtomicBool::new(true));
    chatty_gx(Arc::clone(&raw), Arc::clone(&speaking));
    state_until(&c, url, "the GX online and the battery updatable", |s| {
        site(s)["presence"] == "online" && battery(s)["can_update"] == true
    })
    .await;

    // It falls silent (its connection stays up: no will).
    speaking.store(false, Ordering::SeqCst);
    let s = state_until(&c, url, "the silent GX offline", |s| {
        site(s)["presence"] == "offline"
    })
    .await;
    let inst = site(&s);
    assert_eq!(inst["offline_cause"], "silence", "{inst:#}");
    assert_eq!(
        inst["offline_since"], inst["last_seen"],
        "offline since the last contact"
    );
    assert_eq!(battery(&s)["stale"], true);
    assert_eq!(battery(&s)["can_update"], false);
    let path = format!("{url}/api/installations/{PORTAL_ID}/batteries/512");
    upload(&c, &path, "ax5-5.2.bin", package(5, 2, 3000, 1)).await;
    let (status, body) = press(&c, &path, "update").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], 717, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("nothing was heard"), "{message}");

    // It speaks again: online.
    speaking.store(true, Ordering::SeqCst);
    let s = state_until(&c, url, "the GX online again", |s| {
        site(s)["presence"] == "online" && battery(s)["can_update"] == true
    })
    .await;
    assert_eq!(battery(&s)["stale"], false);
}
