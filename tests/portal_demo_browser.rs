//! The installer's whole path on the demo site, in headless chromium, acting as a person
//! acts: `bmsfw demo` (the embedded broker, the portal, a GX daemon with the three shipped
//! vendor plugins, the simulated site of config/demo.toml in real time) and a browser that
//! logs in, opens a battery's menu, chooses a file in the system file chooser, reads the
//! GX's pre-flight verdict, confirms the warnings, presses Update and follows every step.
//!
//! At phone size (390x844): refusals of a text file, another vendor's file and a damaged
//! file in plain words with "Choose another file" and no Retry; a newer file shown as
//! current → new; the same version only with an explicit tick; every step of an update of
//! each vendor's battery with percentages that never go back; the node selector of a bank;
//! the event log and diagnostics pages; the monitor-only user. At desktop size (1366x768):
//! a file dropped on a battery, and the menu driven from the keyboard. axe-core runs on
//! every screen at phone size. Screenshots of each step are kept under
//! `target/artifacts/demo/`.

#[allow(dead_code)]
mod webdriver;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use webdriver::Browser;

const WAIT: Duration = Duration::from_secs(30);
const INSTALLER: (&str, &str) = ("installer", "installer-demo");
const MONITOR: (&str, &str) = ("monitor", "monitor-demo");

fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("artifacts/demo")
}

/// `bmsfw demo` in its own folder, stopped when dropped.
struct Demo {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Demo {
    fn start() -> Demo {
        let plugins = bmsfw_test_fixtures::vendor_library("aurora")
            .parent()
            .unwrap()
            .to_path_buf();
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("demo");
        let mut child = Command::new(env!("CARGO_BIN_EXE_bmsfw"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["demo", "--listen", "127.0.0.1:0", "--plugins"])
            .arg(&plugins)
            .arg("--dir")
            .arg(&folder)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting bmsfw demo");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("the demo ended before printing its portal")
                .unwrap();
            if let Some(rest) = line.trim().strip_prefix("portal") {
                break rest.trim().to_owned();
            }
        };
        // Keep reading, so the demo never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Demo { child, url, dir }
    }

    fn sample(&self, name: &str) -> PathBuf {
        self.dir.path().join("demo/firmware").join(name)
    }

    /// A file of the test's own in the demo's folder.
    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The page's screens, each checked by axe-core and photographed.
struct Screens {
    violations: Vec<String>,
    small: Vec<String>,
    dir: PathBuf,
}

impl Screens {
    async fn check(&mut self, b: &mut Browser, name: &str) {
        b.screenshot(&self.dir.join(format!("{name}.png"))).await;
        for v in b.axe().await {
            self.violations.push(format!("{name}: {v}"));
        }
        for s in b.small_tap_targets().await {
            self.small.push(format!("{name}: {s}"));
        }
    }
}

async fn log_in(b: &mut Browser, url: &str, who: (&str, &str)) {
    b.goto(url).await;
    until(
        b,
        "the login form",
        "!document.getElementById('login-view').hidden",
    )
    .await;
    let user = b.wait_for("#username", WAIT).await;
    b.type_into(&user, who.0).await;
    let password = b.wait_for("#password", WAIT).await;
    b.type_into(&password, who.1).await;
    b.click_css("#login", WAIT).await;
    b.wait_for("article.device", WAIT).await;
}

/// The device instance of the battery with serial number `serial`, once it is listed.
async fn instance_of(b: &mut Browser, serial: &str) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = b
            .script(
                "const a = [...document.querySelectorAll('article.device')]
                   .find((e) => e.textContent.includes('Serial ' + arguments[0]));
                 return a ? Number(a.dataset.instance) : null;",
                json!([serial]),
            )
            .await;
        if let Some(n) = v.as_u64() {
            return n;
        }
        assert!(Instant::now() < deadline, "battery {serial} is not listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the page's JavaScript expression `expr` is truthy; returns its value.
async fn until(b: &mut Browser, what: &str, expr: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = b.script(&format!("return {expr};"), json!([])).await;
        if !(v.is_null() || v == json!(false) || v == json!("")) {
            return v;
        }
        assert!(Instant::now() < deadline, "the page never showed {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens the menu of battery `n` and chooses `file` through the system file chooser.
async fn choose(b: &mut Browser, n: u64, file: &Path) {
    expect_new_check(b, n).await;
    b.click_css(&format!("#dots-{n}"), WAIT).await;
    b.choose_file_by_click("#menu-upload", file).await;
}

/// Before a file is chosen for battery `n`: the next verdict [`verdict`] reads is the new
/// file's, once the page has shown it at work on it ("Sending…", "Checking…"), never the
/// verdict on the file before, still on the page while the browser hands the new one over.
/// A mutation observer sees that state however briefly it shows.
async fn expect_new_check(b: &mut Browser, n: u64) {
    b.script(
        &format!(
            "const seen = (window.__newCheck = window.__newCheck || {{}});
             seen[{n}] = false;
             const busy = (e) => e && e.id === 'check-{n}' && e.classList.contains('busy');
             const watch = new MutationObserver((records) => {{
               for (const r of records) for (const a of r.addedNodes) {{
                 if (busy(a) || (a.querySelector && busy(a.querySelector('#check-{n}')))) {{
                   seen[{n}] = true; watch.disconnect(); return;
                 }}
               }}
             }});
             watch.observe(document.body, {{ childList: true, subtree: true }});"
        ),
        json!([]),
    )
    .await;
}

/// Waits for the pre-flight verdict of battery `n`: `passed` or `refused`.
async fn verdict(b: &mut Browser, n: u64) -> String {
    let v = until(
        b,
        "the pre-flight verdict",
        &format!(
            "(() => {{ const e = document.getElementById('check-{n}');
               if (window.__newCheck && window.__newCheck[{n}] === false) return null;
               return e && ['passed', 'refused', 'unavailable'].includes(e.dataset.phase) ? e.dataset.phase : null; }})()"
        ),
    )
    .await;
    v.as_str().unwrap().to_owned()
}

/// A refusal in plain words: the catalogue's title, "Choose another file", no Retry and no
/// Update; the code under Details.
async fn assert_refused(b: &mut Browser, n: u64, title: &str, code: u32) {
    assert_eq!(verdict(b, n).await, "refused");
    let text = b.text(&format!("#check-{n} .error-title")).await;
    assert_eq!(text, title);
    assert!(
        !b.text(&format!("#check-{n} .error-action"))
            .await
            .is_empty(),
        "no first action is shown"
    );
    assert_eq!(b.text(&format!("#choose-{n}")).await, "Choose another file");
    let others = b
        .script(
            &format!(
                "return [!!document.getElementById('retry-{n}'), !!document.getElementById('update-{n}')];"
            ),
            json!([]),
        )
        .await;
    assert_eq!(others, json!([false, false]), "Retry or Update is offered");
    b.click_css(&format!("#check-details-{n} summary"), WAIT)
        .await;
    let details = b.text(&format!("#check-details-{n}")).await;
    assert!(details.contains(&format!("Error {code}")), "{details}");
}

/// Presses Update after confirming the warnings, and follows the update of battery `n`
/// to Completed: every step marked passed, no percentage going back within a step.
async fn update_and_follow(b: &mut Browser, screens: &mut Screens, n: u64, name: &str) {
    for ack in ["site_reachable", "backup_capacity", "maintenance_window"] {
        b.click_css(&format!("#ack-{ack}-{n}"), WAIT).await;
    }
    assert!(b.enabled(&format!("#update-{n}")).await);
    screens.check(b, &format!("{name}-confirm")).await;
    b.script(
        "const n = arguments[0];
         window.bmsfwSeen = [];
         window.bmsfwPct = {};
         const record = () => {
           const chip = document.getElementById('state-' + n);
           const s = chip ? chip.dataset.state : null;
           if (s && window.bmsfwSeen[window.bmsfwSeen.length - 1] !== s) window.bmsfwSeen.push(s);
           const bar = document.querySelector('#steps-' + n + ' li.current [role=progressbar]');
           if (s && bar) (window.bmsfwPct[s] = window.bmsfwPct[s] || []).push(Number(bar.getAttribute('aria-valuenow')));
         };
         window.bmsfwObserver = new MutationObserver(record);
         window.bmsfwObserver.observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
         return true;",
        json!([n]),
    )
    .await;
    b.click_css(&format!("#update-{n}"), WAIT).await;
    let mut progress_shot = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let state = b
            .script(
                &format!("const c = document.getElementById('state-{n}'); return c ? c.dataset.state : null;"),
                json!([]),
            )
            .await;
        if state == "transferring" && !progress_shot {
            progress_shot = true;
            screens.check(b, &format!("{name}-progress")).await;
        }
        if state == "completed" {
            break;
        }
        assert_ne!(
            state,
            "failed",
            "the update of {name} failed: {}",
            b.text(&format!("#result-{n}")).await
        );
        assert!(
            Instant::now() < deadline,
            "the update of {name} did not complete"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen: Vec<String> =
        serde_json::from_value(b.script("return window.bmsfwSeen;", json!([])).await).unwrap();
    let order = [
        "uploading",
        "transferring",
        "installing",
        "restarting",
        "verifying",
        "completed",
    ];
    let mut at = 0;
    for s in &seen {
        let i = order
            .iter()
            .position(|o| o == s)
            .unwrap_or_else(|| panic!("{name}: state {s}"));
        assert!(i >= at, "{name}: states out of order: {seen:?}");
        at = i;
    }
    let steps = b
        .script(
            &format!(
                "return [...document.querySelectorAll('#steps-{n} li')].map(li => li.className);"
            ),
            json!([]),
        )
        .await;
    assert_eq!(
        steps,
        json!(["done", "done", "done", "done", "done", "done"]),
        "{name}: {seen:?}"
    );
    let pct: serde_json::Map<String, Value> =
        serde_json::from_value(b.script("return window.bmsfwPct;", json!([])).await).unwrap();
    for (state, values) in &pct {
        let values: Vec<u64> = serde_json::from_value(values.clone()).unwrap();
        assert!(
            values.windows(2).all(|w| w[0] <= w[1]),
            "{name}: the percentage of {state} went back: {values:?}"
        );
    }
    println!("{name}: states shown {seen:?}, percentages {pct:?}");
    b.script("window.bmsfwObserver.disconnect(); return true;", json!([]))
        .await;
    screens.check(b, &format!("{name}-completed")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_installer_path_on_the_demo_site_at_phone_and_desktop_size() {
    let demo = Demo::start();
    let url = demo.url.clone();
    let mut screens = Screens {
        violations: Vec::new(),
        small: Vec::new(),
        dir: artifacts(),
    };

    // ---- phone ---------------------------------------------------------------------
    let mut b = Browser::start(390, 844).await;
    b.goto(&url).await;
    b.wait_for("#username", WAIT).await;
    screens.check(&mut b, "01-login").await;
    log_in(&mut b, &url, INSTALLER).await;
    let shed = instance_of(&mut b, "AUR10-000123").await;
    let taiga = instance_of(&mut b, "TG10-2407-001").await;
    let reef = instance_of(&mut b, "RS48-240611").await;
    until(
        &mut b,
        "the Aurora battery updatable",
        &format!(
            "!document.getElementById('dots-{shed}').closest('article').querySelector('.chip.bad')"
        ),
    )
    .await;
    screens.check(&mut b, "02-devices").await;

    b.click_css(&format!("#dots-{shed}"), WAIT).await;
    assert_eq!(b.text("#menu-upload").await, "Upload firmware file");
    screens.check(&mut b, "03-menu").await;
    b.press_key("#menu-upload", "\u{E00C}").await; // Escape closes it

    // A text file, another vendor's file and a damaged file: refused in plain words.
    let text = demo.file(
        "notes.txt",
        b"These are my notes about the battery, not firmware.\n",
    );
    choose(&mut b, shed, &text).await;
    assert_refused(&mut b, shed, "Firmware file invalid", 760).await;
    screens.check(&mut b, "04-refused-text").await;

    expect_new_check(&mut b, shed).await;
    b.arm_file_chooser().await;
    b.click_css(&format!("#choose-{shed}"), WAIT).await;
    b.answer_file_chooser(&demo.sample("reefstack-coral-1.10.crb"))
        .await;
    assert_refused(&mut b, shed, "Firmware file for another product", 761).await;
    let details = b.text(&format!("#check-details-{shed}")).await;
    assert!(
        details.contains("CORAL"),
        "the details name whose file it is: {details}"
    );
    screens.check(&mut b, "05-refused-other-vendor").await;

    let mut damaged = std::fs::read(demo.sample("shed-aurora-4.16.bin")).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xFF;
    let damaged = demo.file("shed-aurora-4.16-damaged.bin", &damaged);
    expect_new_check(&mut b, shed).await;
    b.arm_file_chooser().await;
    b.click_css(&format!("#choose-{shed}"), WAIT).await;
    b.answer_file_chooser(&damaged).await;
    assert_eq!(verdict(&mut b, shed).await, "refused");
    let title = b.text(&format!("#check-{shed} .error-title")).await;
    assert!(
        [
            "Firmware file invalid",
            "Verification failed",
            "Firmware signature invalid"
        ]
        .contains(&title.as_str()),
        "{title}"
    );
    screens.check(&mut b, "06-refused-damaged").await;

    // The right file: the battery, its version and the file's, and which is newer.
    expect_new_check(&mut b, shed).await;
    b.arm_file_chooser().await;
    b.click_css(&format!("#choose-{shed}"), WAIT).await;
    b.answer_file_chooser(&demo.sample("shed-aurora-4.16.bin"))
        .await;
    assert_eq!(verdict(&mut b, shed).await, "passed");
    assert_eq!(
        b.text(&format!("#check-{shed} .check-title")).await,
        "AURORA PowerCore 10: v4.15 → v4.16 (newer)"
    );
    assert!(
        !b.enabled(&format!("#update-{shed}")).await,
        "Update before the warnings"
    );
    let single = b
        .script(
            &format!("return !!document.getElementById('targets-{shed}');"),
            json!([]),
        )
        .await;
    assert_eq!(
        single,
        json!(false),
        "a single battery offers no node choice"
    );
    update_and_follow(&mut b, &mut screens, shed, "07-aurora").await;
    let after = b.text(&format!("#result-{shed}")).await;
    assert!(
        after.contains("v4.15") && after.contains("v4.16"),
        "{after}"
    );

    // The same version again needs the explicit tick.
    until(
        &mut b,
        "the new firmware in the device list",
        &format!("document.getElementById('firmware-{shed}').textContent.startsWith('v4.16')"),
    )
    .await;
    choose(&mut b, shed, &demo.sample("shed-aurora-4.16.bin")).await;
    assert_eq!(verdict(&mut b, shed).await, "passed");
    assert_eq!(
        b.text(&format!("#check-{shed} .check-title")).await,
        "AURORA PowerCore 10: v4.16 → v4.16 (the same version)"
    );
    for ack in ["site_reachable", "backup_capacity", "maintenance_window"] {
        b.click_css(&format!("#ack-{ack}-{shed}"), WAIT).await;
    }
    assert!(
        !b.enabled(&format!("#update-{shed}")).await,
        "a reinstall without the tick"
    );
    b.click_css(&format!("#reinstall-{shed}"), WAIT).await;
    assert!(b.enabled(&format!("#update-{shed}")).await);
    screens.check(&mut b, "08-same-version").await;
    b.click_css(&format!("#remove-{shed}"), WAIT).await;
    until(
        &mut b,
        "the file removed",
        &format!("!document.getElementById('file-{shed}')"),
    )
    .await;

    // The event log and the diagnostics, as pages.
    b.click_css(&format!("#events-{shed}"), WAIT).await;
    let kinds = until(
        &mut b,
        "the event log",
        "(() => { const l = [...document.querySelectorAll('#event-list li')].map((li) => li.dataset.kind); return l.length ? l : null; })()",
    )
    .await;
    let kinds: Vec<String> = serde_json::from_value(kinds).unwrap();
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("completed"),
        "{kinds:?}"
    );
    assert!(
        !kinds.iter().any(|k| k == "progress"),
        "progress is coalesced: {kinds:?}"
    );
    let completed = b.text("#event-list li[data-kind=completed]").await;
    assert!(completed.contains("v4.15 → v4.16"), "{completed}");
    screens.check(&mut b, "09-event-log").await;
    b.click_css("#page-close", WAIT).await;
    b.click_css(&format!("#diagnostics-{shed}"), WAIT).await;
    b.wait_for("#diagnostics-copy", WAIT).await;
    let body = b.text("#page-body").await;
    for expected in ["AUR10-000123", "VRM installation ID", "v4.16"] {
        assert!(
            body.contains(expected),
            "{expected} missing from the diagnostics:\n{body}"
        );
    }
    let text = b
        .script(
            "return document.getElementById('diagnostics-text').value;",
            json!([]),
        )
        .await;
    assert!(
        text.as_str()
            .unwrap()
            .contains("Serial number: AUR10-000123"),
        "{text}"
    );
    let overflow = b
        .script(
            "const p = document.getElementById('page'); return p.scrollWidth - p.clientWidth;",
            json!([]),
        )
        .await;
    assert_eq!(
        overflow, 0,
        "the diagnostics page scrolls sideways on a phone"
    );
    screens.check(&mut b, "10-diagnostics").await;
    b.click_css("#page-close", WAIT).await;

    // The Boreal bank: its nodes can be chosen; the update goes through every step.
    choose(&mut b, taiga, &demo.sample("taiga-boreal-2.11.hex")).await;
    assert_eq!(verdict(&mut b, taiga).await, "passed");
    assert_eq!(
        b.text(&format!("#check-{taiga} .check-title")).await,
        "BOREAL Taiga 10: 2.10 → 2.11 (newer)"
    );
    b.click_css(&format!("#targets-{taiga} summary"), WAIT)
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        b.displayed(&format!("#target-2-{taiga}")).await,
        "the choice closed by itself"
    );
    screens.check(&mut b, "11-boreal-nodes").await;
    update_and_follow(&mut b, &mut screens, taiga, "12-boreal").await;

    // The Coral pack.
    choose(&mut b, reef, &demo.sample("reefstack-coral-1.10.crb")).await;
    assert_eq!(verdict(&mut b, reef).await, "passed");
    let check = b.text(&format!("#check-{reef}")).await;
    assert!(check.contains("Signature verified"), "{check}");
    update_and_follow(&mut b, &mut screens, reef, "13-coral").await;

    // The monitor-only user sees everything and can start nothing.
    b.click_css("#logout", WAIT).await;
    b.wait_for("#username", WAIT).await;
    log_in(&mut b, &url, MONITOR).await;
    assert_eq!(b.text("#user-access").await, "Monitor only");
    b.click_css(&format!("#dots-{shed}"), WAIT).await;
    assert!(
        b.text("#menu-upload-blocked")
            .await
            .contains("Monitor only")
    );
    b.arm_file_chooser().await;
    b.click_css("#menu-upload", WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !b.file_chooser_opened().await,
        "a monitor could choose a file"
    );
    screens.check(&mut b, "14-monitor").await;
    drop(b);

    // ---- desktop ---------------------------------------------------------------------
    let mut d = Browser::start(1366, 768).await;
    log_in(&mut d, &url, INSTALLER).await;
    // Keyboard: the menu opens on Enter with its first item focused; Enter on it opens
    // the system file chooser.
    d.press_key(&format!("#dots-{reef}"), "\u{E007}").await;
    let focused = d
        .script("return document.activeElement.id;", json!([]))
        .await;
    assert_eq!(focused, "menu-upload");
    d.arm_file_chooser().await;
    d.press_key("#menu-upload", "\u{E007}").await;
    d.answer_file_chooser(&demo.sample("reefstack-coral-1.10.crb"))
        .await;
    assert_eq!(verdict(&mut d, reef).await, "passed");
    d.screenshot(&screens.dir.join("15-desktop-keyboard.png"))
        .await;
    d.click_css(&format!("#remove-{reef}"), WAIT).await;
    // Space works as well.
    d.press_key(&format!("#dots-{taiga}"), " ").await;
    d.arm_file_chooser().await;
    d.press_key("#menu-upload", " ").await;
    d.answer_file_chooser(&demo.sample("taiga-boreal-2.11.hex"))
        .await;
    verdict(&mut d, taiga).await;
    d.click_css(&format!("#remove-{taiga}"), WAIT).await;
    // Drag and drop: a file dropped on a battery is checked for it.
    d.drop_file(
        &format!("#battery-{shed}"),
        &demo.sample("shed-aurora-4.16.bin"),
    )
    .await;
    assert_eq!(verdict(&mut d, shed).await, "passed");
    d.screenshot(&screens.dir.join("16-desktop-dropped.png"))
        .await;

    println!("screenshots: {}", screens.dir.display());
    println!(
        "axe-core: {} serious or critical violations",
        screens.violations.len()
    );
    for v in &screens.violations {
        println!("  {v}");
    }
    for s in &screens.small {
        println!("  tap target below 44 px: {s}");
    }
    assert!(
        screens.violations.is_empty(),
        "axe-core found serious or critical violations"
    );
    assert!(screens.small.is_empty(), "tap targets below 44 px");
}
