//! The page when a GX is gone, in a real browser at phone size: the site says "GX device
//! offline since <time>", the battery's values are marked as the last known ones, the
//! running update's status is unknown and Update cannot be pressed; when the GX connects
//! again all of it goes away. Screenshots are kept under `target/artifacts/`.

mod support;
#[allow(dead_code)]
mod webdriver;

use reqwest::StatusCode;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use webdriver::Browser;

const WAIT: Duration = Duration::from_secs(20);

fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("artifacts")
}

/// Waits until `script` (a JavaScript expression's `return`) gives `expected`.
async fn until_page(b: &mut Browser, what: &str, script: &str, expected: serde_json::Value) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = b.script(script, json!([])).await;
        if got == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed {what}: {got}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_a_gx_that_is_gone_and_back() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut gx = Gx::start(&broker.addr(), dir.path());
    gx.connected().await;
    let mut staged = gx.staged.take().unwrap();
    let portal = PortalServer::start(&broker.addr(), 1024).await;
    let url = &portal.url;
    let shots = artifacts();

    // An update started through the API, held in stage 2.
    let c = http();
    c.post(format!("{url}/api/login"))
        .header(CSRF_HEADER.0, CSRF_HEADER.1)
        .json(&json!({"username": INSTALLER.0, "password": INSTALLER.1}))
        .send()
        .await
        .unwrap();
    let path = format!("{url}/api/installations/{PORTAL_ID}/batteries/512");
    let deadline = Instant::now() + WAIT;
    loop {
        let s: serde_json::Value = c
            .get(format!("{url}/api/state"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if s["installations"][0]["batteries"][0]["can_update"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "the battery is not updatable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = c
        .post(format!("{path}/firmware?name=ax5-8.0.bin"))
        .header(CSRF_HEADER.0, CSRF_HEADER.1)
        .body(package(8, 0, 3000, 3))
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
    assert_eq!(r.status(), StatusCode::OK);
    let held = tokio::time::timeout(WAIT, staged.recv())
        .await
        .expect("the package never reached stage 2")
        .unwrap();

    let mut b = Browser::start(390, 844).await;
    b.goto(url).await;
    let user = b.wait_for("#username", WAIT).await;
    b.type_into(&user, INSTALLER.0).await;
    let password = b.wait_for("#password", WAIT).await;
    b.type_into(&password, INSTALLER.1).await;
    b.click_css("#login", WAIT).await;
    until_page(
        &mut b,
        "the update transferring",
        "const e = document.getElementById('state-512'); return e ? e.textContent : null;",
        json!("Transferring to battery"),
    )
    .await;
    let offline_banner = format!("return !!document.getElementById('offline-{PORTAL_ID}');");
    assert_eq!(b.script(&offline_banner, json!([])).await, false);

    // The GX's connection dies without a goodbye.
    drop(gx.link.take());
    until_page(&mut b, "the offline banner", &offline_banner, json!(true)).await;
    let banner = b.text(&format!("#offline-{PORTAL_ID}")).await;
    assert!(banner.starts_with("GX device offline since "), "{banner}");
    until_page(
        &mut b,
        "the update's status unknown",
        "return document.getElementById('state-512').textContent;",
        json!("Status unknown (GX device offline)"),
    )
    .await;
    assert!(b.text("#stale-512").await.starts_with("Last known values"));
    assert!(
        b.text("#status-unknown-512")
            .await
            .contains("Transferring to battery")
    );
    let overflow = b
        .script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            json!([]),
        )
        .await;
    assert_eq!(overflow, 0, "the page scrolls sideways at 390 px");
    // The menu says why no update can start.
    b.click_css("#dots-512", WAIT).await;
    let note = b.text("#menu-upload-blocked").await;
    assert!(note.contains("GX device offline since"), "{note}");
    b.screenshot(&shots.join("portal-offline.png")).await;
    b.script("document.body.click(); return true;", json!([]))
        .await;

    // Stage 2 ends on the GX alone; the GX connects again.
    let target = held.package.package().version.clone();
    for event in [
        bmsfw_core::job::JobEvent::InstallStarted,
        bmsfw_core::job::JobEvent::RestartStarted,
        bmsfw_core::job::JobEvent::VerifyStarted,
        bmsfw_core::job::JobEvent::Completed {
            version_after: target,
        },
    ] {
        gx.engine.apply(held.job, event).unwrap();
    }
    gx.link = Some(
        bmsfw_core::vrm::spawn_link(
            link_config(&broker.addr(), dir.path()),
            Arc::new(gx.engine.clone()),
            gx.access.clone(),
        )
        .unwrap(),
    );
    until_page(
        &mut b,
        "the update completed",
        "return document.getElementById('state-512').textContent;",
        json!("Completed"),
    )
    .await;
    until_page(&mut b, "no offline banner", &offline_banner, json!(false)).await;
    assert_eq!(
        b.script("return !!document.getElementById('stale-512');", json!([]))
            .await,
        false
    );
    b.screenshot(&shots.join("portal-back-online.png")).await;
}
