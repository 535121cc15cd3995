//! The portal's HTTP API end to end: login, upload, Update with the manual's warnings,
//! live progress over server-sent events, a failure and its retry, the event log, the
//! diagnostics download, and the access rules (Monitor only, GX read-only).

mod support;

use bmsfw_core::vrm::VrmPortalMode;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use support::*;

const WAIT: Duration = Duration::from_secs(20);
const CSRF: (&str, &str) = ("X-Requested-With", "bmsfw");

fn battery_path(url: &str) -> String {
    format!("{url}/api/installations/{PORTAL_ID}/batteries/512")
}

async fn login(
    c: &reqwest::Client,
    url: &str,
    (user, password): (&str, &str),
) -> reqwest::Response {
    c.post(format!("{url}/api/login"))
        .header(CSRF.0, CSRF.1)
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn state(c: &reqwest::Client, url: &str) -> Value {
    let r = c.get(format!("{url}/api/state")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

fn battery(state: &Value) -> &Value {
    &state["installations"][0]["batteries"][0]
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Server-sent events of `/api/events`.
struct Events {
    response: reqwest::Response,
    buf: String,
}

impl Events {
    async fn open(c: &reqwest::Client, url: &str) -> Events {
        let response = c
            .get(format!("{url}/api/events"))
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Events {
            response,
            buf: String::new(),
        }
    }

    async fn next(&mut self) -> Value {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = "";
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(e) = line.strip_prefix("event:") {
                        event = e.trim();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.strip_prefix(' ').unwrap_or(d));
                    }
                }
                if event == "state" {
                    return serde_json::from_str(&data).unwrap();
                }
                continue;
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk())
                .await
                .expect("no event in time")
                .unwrap()
                .expect("event stream ended");
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Every latest-update state pushed until the update ends; returns them and the last
    /// battery.
    async fn follow_update(&mut self, commandid: &str) -> (Vec<String>, Value) {
        let mut states: Vec<String> = Vec::new();
        loop {
            let s = self.next().await;
            let b = battery(&s).clone();
            let u = &b["latest_update"];
            if u["commandid"] != commandid {
                continue;
            }
            if let Some(st) = u["state"].as_str()
                && states.last().map(String::as_str) != Some(st)
            {
                states.push(st.to_owned());
            }
            if u["ended"] == true {
                return (states, b);
            }
        }
    }
}

fn in_order(seen: &[String], all: &[&str]) -> bool {
    let mut it = all.iter();
    seen.iter().all(|s| it.any(|a| a == s))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_through_the_portal_http_api_with_a_failure_and_its_retry() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut gx = Gx::start(&broker.addr(), dir.path());
    gx.connected().await;
    let _stage2 = drive_stage_two_failing_once(
        gx.engine.clone(),
        gx.staged.take().unwrap(),
        Duration::from_millis(30),
        vec!["v7.1".into()],
    );
    let portal = PortalServer::start(&broker.addr(), 4096).await;
    let url = &portal.url;
    let c = http();

    // Nothing without a session; nothing that changes anything without the CSRF header.
    let r = c.get(format!("{url}/api/state")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .post(format!("{url}/api/login"))
        .json(&json!({"username": INSTALLER.0, "password": INSTALLER.1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = login(&c, url, (INSTALLER.0, "wrong")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = login(&c, url, INSTALLER).await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["access_label"], "Full control");
    assert!(
        !c.get(format!("{url}/")).send().await.unwrap().headers()["content-security-policy"]
            .is_empty()
    );

    let s = until_state(&c, url, "the battery, updatable", |s| {
        battery(s)["can_update"] == true
    })
    .await;
    let b = battery(&s);
    assert_eq!(b["product_name"], "AX-5");
    assert_eq!(b["serial"], SERIAL);
    assert_eq!(b["firmware_version"], "v4.15");
    assert_eq!(s["installations"][0]["vrm_portal_label"], "Full");

    // Upload the firmware file to the portal.
    let bytes = package(7, 1, 50_000, 11);
    let r = c
        .post(format!("{}/firmware?name=ax5-7.1.bin", battery_path(url)))
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "no CSRF header");
    let r = c
        .post(format!("{}/firmware?name=ax5-7.1.bin", battery_path(url)))
        .header(CSRF.0, CSRF.1)
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let file: Value = r.json().await.unwrap();
    use sha2::Digest;
    let digest: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(file["sha256"], digest);
    assert_eq!(file["size"], 50_000);
    let s = state(&c, url).await;
    assert_eq!(battery(&s)["pending_file"]["name"], "ax5-7.1.bin");

    // Update needs every warning confirmed.
    let r = c
        .post(format!("{}/update", battery_path(url)))
        .header(CSRF.0, CSRF.1)
        .json(&json!({"acknowledgements": ["site_reachable", "backup_capacity"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"].as_str().unwrap().contains("maintenance window"),
        "{e}"
    );

    // A hostile choice of nodes or modules is refused before anything reaches the GX.
    for (targets, reason) in [
        (json!([2, 2]), "names 2 twice"),
        (json!([0]), "names 0"),
        (json!((1..=40).collect::<Vec<u16>>()), "at most 32"),
        (json!([]), "names no node or module"),
    ] {
        let r = c
            .post(format!("{}/update", battery_path(url)))
            .header(CSRF.0, CSRF.1)
            .json(&json!({
                "acknowledgements": ["site_reachable", "backup_capacity", "maintenance_window"],
                "targets": targets,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{targets}");
        let e: Value = r.json().await.unwrap();
        assert!(e["error"].as_str().unwrap().contains(reason), "{e}");
    }
    assert_eq!(
        battery(&state(&c, url).await)["pending_file"]["name"],
        "ax5-7.1.bin"
    );

    let mut events = Events::open(&c, url).await;
    let acks =
        json!({"acknowledgements": ["site_reachable", "backup_capacity", "maintenance_window"]});
    let r = c
        .post(format!("{}/update", battery_path(url)))
        .header(CSRF.0, CSRF.1)
        .json(&acks)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let first: Value = r.json().await.unwrap();
    let first = first["commandid"].as_str().unwrap().to_owned();

    // Live progress: the first attempt fails during the transfer with code 750.
    let (states, b) = events.follow_update(&first).await;
    let u = &b["latest_update"];
    assert_eq!(u["state"], "failed");
    assert_eq!(u["error_code"], 750);
    assert!(u["error"].as_str().unwrap().contains("did not answer"));
    assert!(
        in_order(&states, &["uploading", "transferring", "failed"]),
        "{states:?}"
    );
    // The 50 000 bytes went to the GX with the file's pre-flight check (13 chunks of 4096);
    // the update found them staged there and sent none.
    assert_eq!(
        u["upload"]["chunks_sent"], 0,
        "the file was staged by its check"
    );
    assert_eq!(b["can_update"], true);

    // Retry: the package is still on the GX, nothing is uploaded again.
    let r = c
        .post(format!("{}/retry", battery_path(url)))
        .header(CSRF.0, CSRF.1)
        .json(&acks)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let second: Value = r.json().await.unwrap();
    let second = second["commandid"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    let (states, b) = events.follow_update(&second).await;
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
    assert!(
        in_order(
            &states,
            &[
                "uploading",
                "transferring",
                "installing",
                "restarting",
                "verifying",
                "completed"
            ]
        ),
        "{states:?}"
    );
    assert_eq!(u["upload"]["chunks_sent"], 0, "the GX kept the package");
    assert_eq!(u["version_before"]["display"], "v4.15");
    assert_eq!(u["version_after"]["display"], "v7.1");
    let s = until_state(&c, url, "the new firmware", |s| {
        battery(s)["firmware_version"] == "v7.1"
    })
    .await;
    assert_eq!(battery(&s)["firmware_raw"], "0701");

    // The event log: both attempts, the failure's code, versions before and after.
    let r = c
        .get(format!("{}/events", battery_path(url)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let log: Value = r.json().await.unwrap();
    let events = log["events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "initiated").count(), 2);
    let failed = events.iter().find(|e| e["kind"] == "failed").unwrap();
    assert_eq!(failed["code"], 750);
    let completed = events.iter().find(|e| e["kind"] == "completed").unwrap();
    assert_eq!(completed["version_before"]["display"], "v4.15");
    assert_eq!(completed["version_after"]["display"], "v7.1");

    // The diagnostics bundle of the failed job, as a download.
    let failed_job = failed["job"].as_u64().unwrap();
    let r = c
        .get(format!(
            "{url}/api/installations/{PORTAL_ID}/jobs/{failed_job}/diagnostics"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let disposition = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    let d: Value = r.json().await.unwrap();
    assert_eq!(d["job_state"], "failed");
    assert_eq!(d["error"]["code"], 750);
    assert_eq!(d["error"]["title"], "Battery did not answer");
    assert_eq!(d["battery"]["serial"], SERIAL);
    assert_eq!(d["vrm_installation_id"], PORTAL_ID);

    // Logging out ends the session.
    let r = c
        .post(format!("{url}/api/logout"))
        .header(CSRF.0, CSRF.1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = c.get(format!("{url}/api/state")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_only_users_and_read_only_gx_devices_start_nothing() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let gx = Gx::start(&broker.addr(), dir.path());
    gx.connected().await;
    let portal = PortalServer::start(&broker.addr(), 4096).await;
    let url = &portal.url;

    // Password guessing is slowed down: after five failures the name is locked.
    let g = http();
    for _ in 0..5 {
        assert_eq!(
            login(&g, url, ("mallory", "guess")).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login(&g, url, ("mallory", "guess")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    // A monitor-only user sees the battery and its event log, and can start nothing.
    let m = http();
    assert_eq!(login(&m, url, MONITOR).await.status(), StatusCode::OK);
    let s = until_state(&m, url, "the battery", |s| battery(s)["serial"] == SERIAL).await;
    assert_eq!(s["user"]["access_label"], "Monitor only");
    assert_eq!(battery(&s)["can_update"], false);
    assert!(
        battery(&s)["update_blocked"]
            .as_str()
            .unwrap()
            .contains("Monitor only")
    );
    let bytes = package(7, 2, 9000, 12);
    for (path, body) in [
        ("firmware?name=a.bin", reqwest::Body::from(bytes.clone())),
        (
            "update",
            reqwest::Body::from(
                json!({"acknowledgements": ["site_reachable", "backup_capacity", "maintenance_window"]})
                    .to_string(),
            ),
        ),
        (
            "retry",
            reqwest::Body::from(
                json!({"acknowledgements": ["site_reachable", "backup_capacity", "maintenance_window"]})
                    .to_string(),
            ),
        ),
    ] {
        let r = m
            .post(format!("{}/{path}", battery_path(url)))
            .header(CSRF.0, CSRF.1)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        let e: Value = r.json().await.unwrap();
        assert!(e["error"].as_str().unwrap().contains("Monitor only"), "{e}");
    }
    let r = m
        .get(format!("{}/events", battery_path(url)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(gx.engine_jobs().await.is_empty());

    // With the GX in read-only mode, even Full control cannot start an update.
    gx.access.set(VrmPortalMode::ReadOnly);
    let c = http();
    assert_eq!(login(&c, url, INSTALLER).await.status(), StatusCode::OK);
    let s = until_state(&c, url, "the read-only setting", |s| {
        s["installations"][0]["vrm_portal"] == 1
    })
    .await;
    assert_eq!(battery(&s)["can_update"], false);
    assert!(
        battery(&s)["update_blocked"]
            .as_str()
            .unwrap()
            .contains("Read-only")
    );
    let r = c
        .post(format!("{}/firmware?name=a.bin", battery_path(url)))
        .header(CSRF.0, CSRF.1)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "a file may be prepared");
    let r = c
        .post(format!("{}/update", battery_path(url)))
        .header(CSRF.0, CSRF.1)
        .json(&json!({"acknowledgements": ["site_reachable", "backup_capacity", "maintenance_window"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let e: Value = r.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("not Full"), "{e}");
    assert!(gx.engine_jobs().await.is_empty());
    assert!(gx.staged_files().is_empty());
}
