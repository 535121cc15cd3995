//! The installer's path in a real browser at phone size: headless chromium at 390x844
//! logs in, opens the battery's menu, uploads a firmware file, confirms the manual's
//! warnings, presses Update and watches every state through Completed. Screenshots are
//! kept under `target/artifacts/`.

mod support;
#[allow(dead_code)]
mod webdriver;

use serde_json::json;
use std::path::PathBuf;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installer_updates_a_battery_from_a_phone_sized_browser() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut gx = Gx::start(&broker.addr(), dir.path());
    gx.connected().await;
    // Each phase lasts long enough for the page to show it.
    let _stage2 = drive_stage_two(
        gx.engine.clone(),
        gx.staged.take().unwrap(),
        Duration::from_millis(150),
    );
    let portal = PortalServer::start(&broker.addr(), 4096).await;
    let firmware = dir.path().join("ax5-8.0.bin");
    std::fs::write(&firmware, package(8, 0, 60_000, 21)).unwrap();
    let shots = artifacts();

    let mut b = Browser::start(390, 844).await;
    b.goto(&portal.url).await;

    // Log in.
    let user = b.wait_for("#username", WAIT).await;
    b.type_into(&user, INSTALLER.0).await;
    let password = b.wait_for("#password", WAIT).await;
    b.type_into(&password, INSTALLER.1).await;
    let (w, h) = b.screenshot(&shots.join("portal-1-login.png")).await;
    assert_eq!((w, h), (390, 844), "the viewport is phone sized");
    b.click_css("#login", WAIT).await;

    // The device list shows the battery; nothing overflows the phone's width.
    b.wait_for("#dots-512", WAIT).await;
    b.wait_for("#firmware-512", WAIT).await;
    let overflow = b
        .script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            json!([]),
        )
        .await;
    assert_eq!(overflow, 0, "the page scrolls sideways at 390 px");
    assert_eq!(b.text("#user-access").await, "Full control");
    b.screenshot(&shots.join("portal-2-devices.png")).await;

    // The three dots open the menu with "Upload firmware file".
    b.click_css("#dots-512", WAIT).await;
    assert!(b.displayed("#menu-upload").await);
    assert_eq!(b.text("#menu-upload").await, "Upload firmware file");
    let disabled = b
        .script(
            "return document.getElementById('menu-upload').classList.contains('disabled');",
            json!([]),
        )
        .await;
    assert_eq!(disabled, false);
    b.screenshot(&shots.join("portal-3-menu.png")).await;

    // Choose the file: the menu item opens the system file chooser, which the test
    // answers as the installer would.
    b.choose_file_by_click("#menu-upload", &firmware).await;
    b.wait_for("#file-512", WAIT).await;
    assert!(b.text("#file-512").await.contains("ax5-8.0.bin"));
    assert!(!b.displayed("#menu").await, "the menu closed");
    // The GX checks the file at once: for this battery, newer than it runs.
    let deadline = Instant::now() + WAIT;
    loop {
        let phase = b
            .script(
                "const e = document.getElementById('check-512'); return e ? e.dataset.phase : null;",
                json!([]),
            )
            .await;
        if phase == "passed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pre-flight check did not pass: {phase}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        b.text("#check-512 .check-title").await,
        "Aurora Cells AX-5: v4.15 → v8.0 (newer)"
    );

    // Update stays disabled until every warning is confirmed.
    assert!(!b.enabled("#update-512").await);
    for ack in ["site_reachable", "backup_capacity"] {
        b.click_css(&format!("#ack-{ack}-512"), WAIT).await;
    }
    assert!(
        !b.enabled("#update-512").await,
        "two of three warnings confirmed"
    );
    b.click_css("#ack-maintenance_window-512", WAIT).await;
    assert!(b.enabled("#update-512").await);
    b.screenshot(&shots.join("portal-4-confirm.png")).await;
    // The page records every state it shows, however briefly: a poll from the test
    // could miss a short phase on a loaded machine.
    b.script(
        "window.bmsfwSeen = [];
         const record = () => {
           const e = document.getElementById('state-512');
           const s = e ? e.textContent : null;
           if (s && window.bmsfwSeen[window.bmsfwSeen.length - 1] !== s) window.bmsfwSeen.push(s);
         };
         new MutationObserver(record).observe(document.body,
           { subtree: true, childList: true, characterData: true });
         return true;",
        json!([]),
    )
    .await;
    b.click_css("#update-512", WAIT).await;

    // Watch the state through Completed.
    let mut mid_shot = false;
    let deadline = Instant::now() + WAIT;
    let mut seen: Vec<String> = loop {
        let seen: Vec<String> =
            serde_json::from_value(b.script("return window.bmsfwSeen;", json!([])).await).unwrap();
        if !mid_shot && seen.last().map(String::as_str) == Some("Transferring to battery") {
            mid_shot = true;
            b.screenshot(&shots.join("portal-5-progress.png")).await;
        }
        if seen.last().map(String::as_str) == Some("Completed") {
            break seen;
        }
        assert!(
            Instant::now() < deadline,
            "the page did not reach Completed: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    // Before the GX answers, the page says the update was requested.
    if seen.first().map(String::as_str) == Some("Requested") {
        seen.remove(0);
    }
    // The file reached the GX during its check, so Uploading may pass in a moment; every
    // state after it lasts long enough to be seen, and all come in order.
    if seen.first().map(String::as_str) == Some("Uploading to GX device") {
        seen.remove(0);
    }
    assert_eq!(
        seen,
        [
            "Transferring to battery",
            "Installing",
            "Restarting",
            "Verifying",
            "Completed"
        ],
        "every state, in order"
    );
    let steps = b
        .script(
            "return [...document.querySelectorAll('#steps-512 li')].map(li => li.className);",
            json!([]),
        )
        .await;
    assert_eq!(
        steps,
        json!(["done", "done", "done", "done", "done", "done"])
    );
    let text = b.text("#result-512").await;
    assert!(text.contains("v4.15") && text.contains("v8.0"), "{text}");
    // The device list shows the new firmware.
    let deadline = Instant::now() + WAIT;
    loop {
        if b.text("#firmware-512").await.starts_with("v8.0") {
            break;
        }
        assert!(Instant::now() < deadline, "the new firmware is not shown");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = shots.join("portal-6-completed.png");
    b.screenshot(&done).await;

    // The event log opens as a page.
    b.click_css("#events-512", WAIT).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let kinds = b
            .script(
                "return [...document.querySelectorAll('#event-list li')].map(li => li.dataset.kind || '');",
                json!([]),
            )
            .await;
        let kinds: Vec<String> = serde_json::from_value(kinds).unwrap();
        if kinds.first().map(String::as_str) == Some("completed") {
            assert_eq!(kinds.last().map(String::as_str), Some("initiated"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the event log did not load: {kinds:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.screenshot(&shots.join("portal-7-event-log.png")).await;
    println!("screenshots: {}", shots.display());
    println!("final screenshot: {}", done.display());
}
