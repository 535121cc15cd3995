//! A pack updated module by module, as the installer sees it in a phone-sized headless
//! chromium: the portal's progress card lists every module with its state and firmware,
//! and shows the module that failed; the installer then retries that module alone. The
//! GX's stage 2 is played as a pack's plugin reports it. A screenshot is kept under
//! `target/artifacts/`.

mod support;
#[allow(dead_code)]
mod webdriver;

use bmsfw_core::job::{JobEvent, JobFailure, ModuleProgress, ModuleState, Percent, VersionInfo};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use support::*;
use webdriver::Browser;

const WAIT: Duration = Duration::from_secs(20);

fn module(index: u16, state: ModuleState, minor: u8) -> ModuleProgress {
    ModuleProgress {
        index,
        state,
        version: Some(VersionInfo {
            raw: vec![2, minor, 1],
            display: format!("v2.0{minor} (build 01)"),
        }),
    }
}

/// The rows of the page's module table: (module, state label, firmware).
async fn rows(b: &mut Browser) -> Value {
    b.script(
        "const t = document.getElementById('modules-512');
         if (!t) return null;
         return [...t.querySelectorAll('tbody tr')].map((r) =>
           [...r.querySelectorAll('td')].map((c) => c.textContent));",
        json!([]),
    )
    .await
}

async fn until_rows(b: &mut Browser, what: &str, expected: Value) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = rows(b).await;
        if got == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {got}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_progress_card_lists_each_module_and_the_one_that_failed() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut gx = Gx::start(&broker.addr(), dir.path());
    gx.connected().await;
    let mut staged = gx.staged.take().unwrap();
    let portal = PortalServer::start(&broker.addr(), 4096).await;
    let url = portal.url.clone();

    // The installer's browser logs in and shows the device list.
    let mut b = Browser::start(390, 844).await;
    b.goto(&url).await;
    let user = b.wait_for("#username", WAIT).await;
    b.type_into(&user, INSTALLER.0).await;
    let password = b.wait_for("#password", WAIT).await;
    b.type_into(&password, INSTALLER.1).await;
    b.click_css("#login", WAIT).await;
    b.wait_for("#dots-512", WAIT).await;

    // The installer chooses the pack's file from the menu, confirms and presses Update.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), package(6, 0, 8000, 5)).unwrap();
    b.click_css("#dots-512", WAIT).await;
    b.choose_file_by_click("#menu-upload", file.path()).await;
    b.wait_for("#check-512[data-phase=passed]", WAIT).await;
    for ack in ["site_reachable", "backup_capacity", "maintenance_window"] {
        b.click_css(&format!("#ack-{ack}-512"), WAIT).await;
    }
    b.click_css("#update-512", WAIT).await;
    let job = tokio::time::timeout(WAIT, staged.recv())
        .await
        .unwrap()
        .unwrap()
        .job;

    // Stage 2 of a pack of three: module 1 updated, module 2 updating.
    use ModuleState::*;
    for event in [
        JobEvent::ModulesChanged(vec![
            module(1, Pending, 3),
            module(2, Pending, 3),
            module(3, Pending, 3),
        ]),
        JobEvent::TransferProgress(Percent::FULL),
        JobEvent::InstallStarted,
        JobEvent::ModulesChanged(vec![
            module(1, Done, 4),
            module(2, Updating, 3),
            module(3, Pending, 3),
        ]),
    ] {
        gx.engine.apply(job, event).unwrap();
    }
    until_rows(
        &mut b,
        "module 2 updating",
        json!([
            ["Module 1", "Updated", "v2.04 (build 01) bytes 02 04 01"],
            ["Module 2", "Updating", "v2.03 (build 01) bytes 02 03 01"],
            ["Module 3", "Waiting", "v2.03 (build 01) bytes 02 03 01"],
        ]),
    )
    .await;
    assert_eq!(
        b.text("#modules-512 h5").await,
        "Modules: 1 of 3 up to date"
    );

    // Module 2 fails: the card shows it, and the update's failure with its code.
    gx.engine
        .apply(
            job,
            JobEvent::ModulesChanged(vec![
                module(1, Done, 4),
                module(2, Failed, 3),
                module(3, Pending, 3),
            ]),
        )
        .unwrap();
    gx.engine
        .apply(
            job,
            JobEvent::Failed(JobFailure {
                code: 784,
                message: "module 2 of 3 failed: it refused its image".into(),
                at: bmsfw_core::UnixMillis::now(),
                battery_state: None,
            }),
        )
        .unwrap();
    until_rows(
        &mut b,
        "module 2 failed",
        json!([
            ["Module 1", "Updated", "v2.04 (build 01) bytes 02 04 01"],
            ["Module 2", "Failed", "v2.03 (build 01) bytes 02 03 01"],
            ["Module 3", "Waiting", "v2.03 (build 01) bytes 02 03 01"],
        ]),
    )
    .await;
    // The failure in plain words; the code and the GX's message under Details.
    let text = b.text("#result-512").await;
    assert!(text.contains("Battery module update failed"), "{text}");
    b.click_css("#result-details-512 summary", WAIT).await;
    let text = b.text("#result-details-512").await;
    assert!(
        text.contains("Error 784") && text.contains("module 2 of 3"),
        "{text}"
    );
    let overflow = b
        .script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            json!([]),
        )
        .await;
    assert_eq!(overflow, 0, "the module table fits the phone's width");
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("artifacts");
    b.script(
        "document.getElementById('modules-512').scrollIntoView();",
        json!([]),
    )
    .await;
    b.screenshot(&shots.join("portal-modules.png")).await;

    // Retry only the module that failed: the card offers the pack's modules, all ticked.
    for n in [1, 2, 3] {
        let checked = b
            .script(
                "const e = document.getElementById(arguments[0]); return e ? e.checked : null;",
                json!([format!("target-{n}-512")]),
            )
            .await;
        assert_eq!(checked, json!(true), "module {n} is offered, ticked");
    }
    // The choice stays open while the progress card keeps changing.
    b.click_css("#targets-512 summary", WAIT).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        b.displayed("#target-1-512").await,
        "the choice closed by itself"
    );
    b.click_css("#target-1-512", WAIT).await;
    b.click_css("#target-3-512", WAIT).await;
    for ack in ["site_reachable", "backup_capacity", "maintenance_window"] {
        b.click_css(&format!("#ack-{ack}-512"), WAIT).await;
    }
    // Each tick redraws the page; the Details the installer opened stay open.
    let text = b.text("#result-details-512").await;
    assert!(
        text.contains("Error 784") && text.contains("module 2 of 3"),
        "the opened Details closed on a redraw: {text}"
    );
    assert!(b.enabled("#retry-512").await);
    b.click_css("#retry-512", WAIT).await;
    let retry = tokio::time::timeout(WAIT, staged.recv())
        .await
        .expect("the retry reached the GX")
        .unwrap()
        .job;
    assert_ne!(retry, job);
    assert_eq!(
        gx.job(retry).await.targets(),
        &bmsfw_core::vrm::UpdateTargets::Only(vec![2]),
        "the GX updates module 2 alone"
    );
}
