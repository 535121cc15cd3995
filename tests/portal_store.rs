//! The portal's store through the HTTP API, as an installer sees it: a restart of the
//! portal after an update, during an upload and during the transfer loses nothing, and the
//! event log and the diagnostics of a failure stay available while the GX is offline.
//!
//! Each test runs mosquitto, a GX (the stage-1 engine and the VRM link, with a scripted
//! stage 2) and the portal with its database in a folder of the test. A restart stops the
//! portal as a killed process stops (it no longer listens, its MQTT connection drops
//! without a goodbye) and starts a new one on the same address, database and MQTT client
//! id. The HTTP client keeps no connection open between requests, as a browser's
//! connections break when the server goes.

mod support;

use bmsfw_core::diagnostics::{DiagnosticsBundle, SiteInfo};
use bmsfw_core::events::EventRecord;
use bmsfw_core::job::{JobId, JobRecord, StateDir};
use bmsfw_core::staging::StagingConfig;
use bmsfw_core::vrm::{
    BatteryView, ChunkReceipt, EngineRefusal, EngineUpdate, GxEngine, LinkConnection, LinkHandle,
    StagedReceipt, UpdateRequest, UploadStatus, VrmAccess, VrmPortalMode, spawn_link,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::sync::{broadcast, mpsc};

/// A GX whose software predates the pre-flight check (it refuses `preflight`): the file
/// travels to it when the installer presses Update.
struct OlderGx(StageOneEngine);

#[async_trait::async_trait]
impl GxEngine for OlderGx {
    async fn batteries(&self) -> Vec<BatteryView> {
        self.0.batteries().await
    }
    async fn jobs(&self) -> Vec<JobRecord> {
        self.0.jobs().await
    }
    async fn request_update(&self, request: UpdateRequest) -> Result<UploadStatus, EngineRefusal> {
        self.0.request_update(request).await
    }
    async fn resume_upload(&self, job: JobId) -> Result<UploadStatus, EngineRefusal> {
        self.0.resume_upload(job).await
    }
    async fn accept_chunk(
        &self,
        job: JobId,
        index: u32,
        bytes: Vec<u8>,
    ) -> Result<ChunkReceipt, EngineRefusal> {
        self.0.accept_chunk(job, index, bytes).await
    }
    async fn finish_upload(&self, job: JobId) -> Result<StagedReceipt, EngineRefusal> {
        self.0.finish_upload(job).await
    }
    fn subscribe(&self) -> broadcast::Receiver<EngineUpdate> {
        self.0.subscribe()
    }
    async fn history(&self, serial: &str) -> Result<Vec<EventRecord>, EngineRefusal> {
        self.0.history(serial).await
    }
    async fn diagnostics(&self, job: JobId) -> Result<DiagnosticsBundle, EngineRefusal> {
        self.0.diagnostics(job).await
    }
}

/// An [`OlderGx`] with the test battery, its link connected.
async fn older_gx(
    broker: &bmsfw_vrm_wire::BrokerAddr,
    state: &Path,
) -> (
    StageOneEngine,
    mpsc::UnboundedReceiver<StagedJob>,
    LinkHandle,
) {
    let dir = StateDir::new(state);
    let staging = StagingConfig {
        free_space_margin: 1024 * 1024,
        ..StagingConfig::new(dir.staging())
    };
    let (engine, staged) = StageOneEngine::open(
        &dir,
        staging,
        Box::new(HeaderInspector),
        SiteInfo {
            vrm_installation_id: PORTAL_ID.into(),
            gx_firmware_version: "v3.60".into(),
        },
    )
    .unwrap();
    engine.set_battery(support::battery());
    let link = spawn_link(
        link_config(broker, state),
        Arc::new(OlderGx(engine.clone())),
        VrmAccess::new(VrmPortalMode::Full),
    )
    .unwrap();
    let mut watch = link.watch();
    tokio::time::timeout(
        WAIT,
        watch.wait_for(|s| s.connection == LinkConnection::Connected),
    )
    .await
    .expect("the GX link did not connect")
    .unwrap();
    (engine, staged, link)
}

const WAIT: Duration = Duration::from_secs(60);
const CSRF: (&str, &str) = ("X-Requested-With", "bmsfw");

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn battery_path(url: &str) -> String {
    format!("{url}/api/installations/{PORTAL_ID}/batteries/512")
}

async fn login(c: &reqwest::Client, url: &str) {
    let r = c
        .post(format!("{url}/api/login"))
        .header(CSRF.0, CSRF.1)
        .json(&json!({"username": INSTALLER.0, "password": INSTALLER.1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

async fn get(c: &reqwest::Client, url: &str) -> (StatusCode, Value) {
    let r = c.get(url).send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn state(c: &reqwest::Client, url: &str) -> Value {
    let (status, s) = get(c, &format!("{url}/api/state")).await;
    assert_eq!(status, StatusCode::OK, "{s}");
    s
}

fn battery(state: &Value) -> &Value {
    &state["installations"][0]["batteries"][0]
}

async fn history(c: &reqwest::Client, url: &str) -> Vec<Value> {
    let (status, h) = get(c, &format!("{}/updates", battery_path(url))).await;
    assert_eq!(status, StatusCode::OK, "{h}");
    h["updates"].as_array().unwrap().clone()
}

async fn until_state(
    c: &reqwest::Client,
    url: &str,
    what: &str,
    f: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = state(c, url).await;
        if f(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn until_archived(c: &reqwest::Client, url: &str, commandid: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let h = history(c, url).await;
        if h.iter()
            .any(|u| u["commandid"] == commandid && u["archived"] == true)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the portal did not store the event log of {commandid}: {h:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Uploads `bytes` and presses Update; returns the command id.
async fn upload_and_update(c: &reqwest::Client, url: &str, name: &str, bytes: Vec<u8>) -> String {
    let r = c
        .post(format!("{}/firmware?name={name}", battery_path(url)))
        .header(CSRF.0, CSRF.1)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    // Update waits for the file's pre-flight check on the GX.
    let r = c
        .post(format!("{}/update", battery_path(url)))
        .timeout(Duration::from_secs(90))
        .header(CSRF.0, CSRF.1)
        .json(&json!({"acknowledgements": ["site_reachable", "backup_capacity", "maintenance_window"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let v: Value = r.json().await.unwrap();
    v["commandid"].as_str().unwrap().to_owned()
}

/// The kinds of the event log's events, and the log.
async fn event_log(c: &reqwest::Client, url: &str) -> (Vec<String>, Value) {
    let (status, log) = get(c, &format!("{}/events", battery_path(url))).await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let kinds = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    (kinds, log)
}

const EVERY_STATE: [&str; 6] = [
    "uploading",
    "transferring",
    "installing",
    "restarting",
    "verifying",
    "completed",
];

async fn start_portal(cfg: &bmsfw_portal::VrmConfig, db: &Path) -> PortalServer {
    PortalServer::open(cfg.clone(), db, None).await
}

async fn restart(portal: PortalServer, cfg: &bmsfw_portal::VrmConfig, db: &Path) -> PortalServer {
    let addr = portal.addr();
    portal.stop().await;
    PortalServer::open(cfg.clone(), db, Some(addr)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_restarted_after_an_update_keeps_the_session_the_update_and_its_event_log() {
    let broker = Mosquitto::start();
    let gx_dir = tempfile::tempdir().unwrap();
    let mut gx = Gx::start(&broker.addr(), gx_dir.path());
    gx.connected().await;
    let _stage2 = drive_stage_two(
        gx.engine.clone(),
        gx.staged.take().unwrap(),
        Duration::from_millis(20),
    );
    let db_dir = tempfile::tempdir().unwrap();
    let db = db_dir.path().join("portal.sqlite");
    let cfg = portal_config(&broker.addr(), 4096, 8);
    let portal = start_portal(&cfg, &db).await;
    let url = portal.url.clone();
    let c = client();
    login(&c, &url).await;
    until_state(&c, &url, "the battery, updatable", |s| {
        battery(s)["can_update"] == true
    })
    .await;
    let id = upload_and_update(&c, &url, "ax5-7.1.bin", package(7, 1, 30_000, 5)).await;
    until_state(&c, &url, "the update's end", |s| {
        battery(s)["latest_update"]["caught_up"] == true
    })
    .await;
    // The portal stores the event log of an ended update by itself.
    until_archived(&c, &url, &id).await;

    // The portal restarts, and the GX goes offline: what follows comes from the store.
    gx.link.take().unwrap().shutdown().await.unwrap();
    let portal = restart(portal, &cfg, &db).await;
    assert_eq!(portal.url, url);

    // The session cookie still works; the battery and its update are shown as last known.
    let s = until_state(&c, &url, "the GX offline", |s| {
        s["installations"][0]["presence"] == "offline"
    })
    .await;
    let b = battery(&s);
    assert_eq!(b["serial"], SERIAL);
    let u = &b["latest_update"];
    assert_eq!(u["commandid"], id.as_str(), "{u:#}");
    assert_eq!(u["state"], "completed");
    assert_eq!(u["states_seen"], json!(EVERY_STATE));
    assert_eq!(u["version_after"]["display"], "v7.1");
    assert_eq!(b["can_update"], false, "no update toward an offline GX");

    // The history lists it.
    let h = history(&c, &url).await;
    assert_eq!(h.len(), 1);
    assert_eq!(h[0]["commandid"], id.as_str());
    assert_eq!(h[0]["state"], "completed");
    assert_eq!(h[0]["ended"], true);
    assert_eq!(h[0]["file_name"], "ax5-7.1.bin");

    // Its event log, as the portal received it.
    let (kinds, log) = event_log(&c, &url).await;
    assert_eq!(log["source"], "portal", "{log:#}");
    assert!(log["stored_at"].as_u64().is_some());
    assert!(log["note"].as_str().unwrap().contains("does not answer"));
    assert_eq!(kinds.first().map(String::as_str), Some("initiated"));
    assert_eq!(kinds.last().map(String::as_str), Some("completed"));
    let completed = &log["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(completed["version_before"]["display"], "v4.15");
    assert_eq!(completed["version_after"]["display"], "v7.1");

    // A logout after the restart ends the session, for this portal and the next.
    let r = c
        .post(format!("{url}/api/logout"))
        .header(CSRF.0, CSRF.1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let portal = restart(portal, &cfg, &db).await;
    let r = c.get(format!("{url}/api/state")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    portal.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_restarted_during_the_upload_resumes_it_and_the_update_completes() {
    let broker = Mosquitto::start();
    let gx_dir = tempfile::tempdir().unwrap();
    // The file goes to the GX at Update (no pre-flight upload before).
    let (engine, staged, _link) = older_gx(&broker.addr(), gx_dir.path()).await;
    let _stage2 = drive_stage_two(engine.clone(), staged, Duration::from_millis(20));
    let db_dir = tempfile::tempdir().unwrap();
    let db = db_dir.path().join("portal.sqlite");
    // Small chunks, two at a time: the upload lasts long enough to be cut.
    let chunk = 1024;
    let cfg = portal_config(&broker.addr(), chunk, 2);
    let portal = start_portal(&cfg, &db).await;
    let url = portal.url.clone();
    let c = client();
    login(&c, &url).await;
    until_state(&c, &url, "the battery, updatable", |s| {
        battery(s)["can_update"] == true
    })
    .await;
    let size = 300_000;
    let chunks = u64::try_from(size).unwrap().div_ceil(u64::from(chunk));
    let id = upload_and_update(&c, &url, "ax5-7.2.bin", package(7, 2, size, 9)).await;
    let s = until_state(&c, &url, "part of the upload", |s| {
        battery(s)["latest_update"]["upload"]["chunks_acked"]
            .as_u64()
            .is_some_and(|n| n >= 60)
    })
    .await;
    let acked_before = battery(&s)["latest_update"]["upload"]["chunks_acked"]
        .as_u64()
        .unwrap();

    let portal = restart(portal, &cfg, &db).await;
    let s = state(&c, &url).await;
    let u = &battery(&s)["latest_update"];
    assert_eq!(u["commandid"], id.as_str(), "the update is back: {u:#}");
    assert!(
        u["upload"]["chunks_acked"].as_u64().unwrap() < chunks,
        "the restart cut the upload: {u:#}"
    );

    let s = until_state(&c, &url, "the update's end", |s| {
        battery(s)["latest_update"]["caught_up"] == true
    })
    .await;
    let u = &battery(&s)["latest_update"];
    assert_eq!(u["state"], "completed", "{u:#}");
    assert_eq!(u["states_seen"], json!(EVERY_STATE));
    assert_eq!(u["version_after"]["display"], "v7.2");
    // It went on from the GX's first missing chunk, not from the start.
    let resumes = u["upload"]["resumes"].as_array().unwrap();
    let first_missing = resumes.first().and_then(Value::as_u64).expect("a resume");
    assert!(
        first_missing >= acked_before,
        "resumed at {first_missing}, {acked_before} were acknowledged before: {u:#}"
    );
    let sent = u["upload"]["chunks_sent"].as_u64().unwrap();
    assert!(
        sent < chunks + 10,
        "{sent} chunk messages for {chunks} chunks: the upload started over"
    );
    let job = u["job"].as_u64().unwrap();
    assert!(
        engine
            .jobs()
            .await
            .iter()
            .any(|j| j.id().0 == job && j.state() == bmsfw_core::job::JobState::Completed)
    );
    portal.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_restarted_while_it_sends_a_file_for_its_check_keeps_the_file_for_update() {
    let broker = Mosquitto::start();
    let gx_dir = tempfile::tempdir().unwrap();
    let mut gx = Gx::start(&broker.addr(), gx_dir.path());
    gx.connected().await;
    let _stage2 = drive_stage_two(
        gx.engine.clone(),
        gx.staged.take().unwrap(),
        Duration::from_millis(20),
    );
    let db_dir = tempfile::tempdir().unwrap();
    let db = db_dir.path().join("portal.sqlite");
    let cfg = portal_config(&broker.addr(), 1024, 1);
    let portal = start_portal(&cfg, &db).await;
    let url = portal.url.clone();
    let c = client();
    login(&c, &url).await;
    until_state(&c, &url, "the battery, updatable", |s| {
        battery(s)["can_update"] == true
    })
    .await;
    let bytes = package(7, 5, 300_000, 21);
    let r = c
        .post(format!("{}/firmware?name=ax5-7.5.bin", battery_path(&url)))
        .header(CSRF.0, CSRF.1)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let file: Value = r.json().await.unwrap();

    // The portal restarts while the file may still be on its way to the GX's check.
    let portal = restart(portal, &cfg, &db).await;
    let s = state(&c, &url).await;
    let pending = &battery(&s)["pending_file"];
    assert_eq!(pending["name"], "ax5-7.5.bin", "{pending:#}");
    assert_eq!(pending["sha256"], file["sha256"]);
    assert_eq!(pending["size"], 300_000);
    // Update is possible again once the GX has spoken to the new portal.
    until_state(&c, &url, "the battery, updatable", |s| {
        battery(s)["can_update"] == true
    })
    .await;

    let r = c
        .post(format!("{}/update", battery_path(&url)))
        .timeout(Duration::from_secs(90))
        .header(CSRF.0, CSRF.1)
        .json(&json!({"acknowledgements": ["site_reachable", "backup_capacity", "maintenance_window"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let s = until_state(&c, &url, "the update's end", |s| {
        battery(s)["latest_update"]["caught_up"] == true
    })
    .await;
    let u = &battery(&s)["latest_update"];
    assert_eq!(u["state"], "completed", "{u:#}");
    assert_eq!(u["version_after"]["display"], "v7.5");
    portal.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_restarted_during_the_transfer_shows_the_update_and_follows_it_to_the_end() {
    let broker = Mosquitto::start();
    let gx_dir = tempfile::tempdir().unwrap();
    let mut gx = Gx::start(&broker.addr(), gx_dir.path());
    gx.connected().await;
    // A slow stage 2: the transfer lasts about 2 s.
    let _stage2 = drive_stage_two(
        gx.engine.clone(),
        gx.staged.take().unwrap(),
        Duration::from_millis(200),
    );
    let db_dir = tempfile::tempdir().unwrap();
    let db = db_dir.path().join("portal.sqlite");
    let cfg = portal_config(&broker.addr(), 4096, 8);
    let portal = start_portal(&cfg, &db).await;
    let url = portal.url.clone();
    let c = client();
    login(&c, &url).await;
    until_state(&c, &url, "the battery, updatable", |s| {
        battery(s)["can_update"] == true
    })
    .await;
    let id = upload_and_update(&c, &url, "ax5-7.3.bin", package(7, 3, 40_000, 13)).await;
    until_state(&c, &url, "the transfer", |s| {
        battery(s)["latest_update"]["state"] == "transferring"
    })
    .await;

    // Down for a while: the GX goes on and its replies wait at the broker.
    let addr = portal.addr();
    portal.stop().await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let portal = PortalServer::open(cfg.clone(), &db, Some(addr)).await;

    let s = state(&c, &url).await;
    let u = &battery(&s)["latest_update"];
    assert_eq!(u["commandid"], id.as_str(), "shown at once: {u:#}");
    let s = until_state(&c, &url, "the update's end", |s| {
        battery(s)["latest_update"]["caught_up"] == true
    })
    .await;
    let u = &battery(&s)["latest_update"];
    assert_eq!(u["commandid"], id.as_str());
    assert_eq!(u["state"], "completed", "{u:#}");
    assert_eq!(u["states_seen"], json!(EVERY_STATE));
    assert_eq!(u["version_before"]["display"], "v4.15");
    assert_eq!(u["version_after"]["display"], "v7.3");
    let h = history(&c, &url).await;
    assert_eq!(h[0]["commandid"], id.as_str());
    assert_eq!(h[0]["state"], "completed");
    portal.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_gx_offline_the_event_log_and_diagnostics_of_a_failure_come_from_the_store() {
    let broker = Mosquitto::start();
    let gx_dir = tempfile::tempdir().unwrap();
    let mut gx = Gx::start(&broker.addr(), gx_dir.path());
    gx.connected().await;
    let _stage2 = drive_stage_two_failing_once(
        gx.engine.clone(),
        gx.staged.take().unwrap(),
        Duration::from_millis(30),
        vec!["v7.4".into()],
    );
    let db_dir = tempfile::tempdir().unwrap();
    let db = db_dir.path().join("portal.sqlite");
    let cfg = portal_config(&broker.addr(), 4096, 8);
    let portal = start_portal(&cfg, &db).await;
    let url = portal.url.clone();
    let c = client();
    login(&c, &url).await;
    until_state(&c, &url, "the battery, updatable", |s| {
        battery(s)["can_update"] == true
    })
    .await;
    let id = upload_and_update(&c, &url, "ax5-7.4.bin", package(7, 4, 20_000, 17)).await;
    let s = until_state(&c, &url, "the failure", |s| {
        battery(s)["latest_update"]["caught_up"] == true
    })
    .await;
    let u = &battery(&s)["latest_update"];
    assert_eq!(u["state"], "failed", "{u:#}");
    assert_eq!(u["error_code"], 750);
    let job = u["job"].as_u64().unwrap();
    // The portal takes the diagnostics when the update fails, and stores the event log.
    until_archived(&c, &url, &id).await;

    // The GX goes offline (its link stops; the broker publishes its last will).
    gx.link.take().unwrap().shutdown().await.unwrap();
    until_state(&c, &url, "the GX offline", |s| {
        s["installations"][0]["presence"] == "offline"
    })
    .await;

    let portal = check_served_from_the_store(&c, &url, job, portal).await;
    // The same after a restart of the portal, the GX still offline.
    let portal = restart(portal, &cfg, &db).await;
    until_state(&c, &url, "the GX offline", |s| {
        s["installations"][0]["presence"] == "offline"
    })
    .await;
    let portal = check_served_from_the_store(&c, &url, job, portal).await;
    portal.stop().await;
}

async fn check_served_from_the_store(
    c: &reqwest::Client,
    url: &str,
    job: u64,
    portal: PortalServer,
) -> PortalServer {
    let started = std::time::Instant::now();
    let (kinds, log) = event_log(c, url).await;
    assert_eq!(log["source"], "portal", "{log:#}");
    assert_eq!(log["serial"], SERIAL);
    assert_eq!(kinds.first().map(String::as_str), Some("initiated"));
    let failed = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "failed")
        .unwrap_or_else(|| panic!("no failure in {log:#}"));
    assert_eq!(failed["code"], 750);
    assert_eq!(failed["job"], job);

    let r = c
        .get(format!(
            "{url}/api/installations/{PORTAL_ID}/jobs/{job}/diagnostics"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-bmsfw-source"], "portal");
    assert_eq!(r.headers()["x-bmsfw-stored-reason"], "failure");
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let d: Value = r.json().await.unwrap();
    assert_eq!(d["job_state"], "failed");
    assert_eq!(d["error"]["code"], 750);
    assert_eq!(d["battery"]["serial"], SERIAL);
    assert_eq!(d["vrm_installation_id"], PORTAL_ID);
    // Known offline: the portal does not wait for the GX.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered in {:?}",
        started.elapsed()
    );

    // Diagnostics never stored: a plain refusal, the GX being offline.
    let (status, e) = get(
        c,
        &format!(
            "{url}/api/installations/{PORTAL_ID}/jobs/{}/diagnostics",
            job + 1000
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["code"], 717);
    assert!(e["error"].as_str().unwrap().contains("offline"), "{e}");
    portal
}
