//! A small WebDriver client over plain HTTP, driving Debian's chromium through
//! chromedriver.
//!
//! Tests act as the user acts. A file is chosen the way a person chooses one: the test
//! clicks the page's own control, the page opens the system file chooser, and the test
//! answers that chooser. chromedriver's HTTP API has no DevTools events, so the session
//! keeps chromium's performance log (DevTools events of the page, `Page.fileChooserOpened`
//! among them) and sends DevTools commands through chromedriver's `goog/cdp/execute`:
//! `Page.setInterceptFileChooserDialog` turns the chooser into an event, and
//! `DOM.setFileInputFiles` answers it on the input the page opened it for. Dragging a file
//! onto the page goes through `Input.dispatchDragEvent` the same way.

use base64::Engine;
use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        for dir in std::env::split_paths(&path).chain([
            PathBuf::from("/usr/bin"),
            PathBuf::from("/usr/lib/chromium"),
        ]) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// A chromedriver process and one headless chromium session, both ended on drop.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

/// A found element.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver and a headless chromium with a fresh profile, its viewport
    /// `width` x `height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        let driver_exe = find_program(&["chromedriver"])
            .expect("chromedriver is not installed (scripts/test-all installs chromium-driver)");
        let chromium = find_program(&["chromium", "chromium-browser"])
            .expect("chromium is not installed (scripts/test-all installs it)");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let driver = Command::new(driver_exe)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={width},{height}"),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"performance": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": args,
                "perfLoggingPrefs": {"enableNetwork": false, "enablePage": true},
            },
        }}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r:#}"))
            .to_owned();
        let mut b = Browser {
            driver,
            base,
            session,
            http,
            _profile: profile,
        };
        // The viewport, not the window, is what a phone has: size the window so the
        // page gets exactly width x height.
        let inner: Value = b
            .script("return [window.innerWidth, window.innerHeight, window.outerWidth, window.outerHeight];", json!([]))
            .await;
        let (iw, ih) = (inner[0].as_u64().unwrap(), inner[1].as_u64().unwrap());
        let (ow, oh) = (inner[2].as_u64().unwrap(), inner[3].as_u64().unwrap());
        if (iw, ih) != (u64::from(width), u64::from(height)) {
            b.cmd(
                "POST",
                "window/rect",
                json!({"width": u64::from(width) + ow.saturating_sub(iw), "height": u64::from(height) + oh.saturating_sub(ih)}),
            )
            .await;
        }
        b
    }

    async fn cmd(&mut self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}/{path}", self.base, self.session);
        let req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url).json(&body),
        };
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        if let Some(err) = v["value"].get("error") {
            panic!(
                "WebDriver {method} {path}: {err}: {}",
                v["value"]["message"]
            );
        }
        v["value"].clone()
    }

    /// Sends the DevTools command `cmd` with `params` to the page.
    pub async fn cdp(&mut self, cmd: &str, params: Value) -> Value {
        self.cmd(
            "POST",
            "goog/cdp/execute",
            json!({"cmd": cmd, "params": params}),
        )
        .await
    }

    /// The DevTools events chromium logged since the last call, as (method, params).
    pub async fn devtools_events(&mut self) -> Vec<(String, Value)> {
        let log = self
            .cmd("POST", "se/log", json!({"type": "performance"}))
            .await;
        log.as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| {
                let message: Value = serde_json::from_str(entry["message"].as_str()?).ok()?;
                let m = &message["message"];
                Some((m["method"].as_str()?.to_owned(), m["params"].clone()))
            })
            .collect()
    }

    /// Clicks the element matching `css` as the user does and answers the system file
    /// chooser the page opens with `file`. Panics when no chooser opens.
    pub async fn choose_file_by_click(&mut self, css: &str, file: &Path) {
        self.arm_file_chooser().await;
        self.click_css(css, Duration::from_secs(10)).await;
        self.answer_file_chooser(file).await;
    }

    /// Focuses the element matching `css` and presses `key` on it (WebDriver key codes:
    /// `"\u{E007}"` is Enter, `" "` is Space), then answers the file chooser the page opens
    /// with `file`.
    pub async fn choose_file_by_key(&mut self, css: &str, key: &str, file: &Path) {
        self.arm_file_chooser().await;
        self.press_key(css, key).await;
        self.answer_file_chooser(file).await;
    }

    /// From now on a file chooser the page opens becomes a DevTools event.
    pub async fn arm_file_chooser(&mut self) {
        self.cdp("Page.enable", json!({})).await;
        self.cdp(
            "Page.setInterceptFileChooserDialog",
            json!({"enabled": true}),
        )
        .await;
        // Forget older events.
        self.devtools_events().await;
    }

    /// Waits for the file chooser the page opened and chooses `file` in it.
    pub async fn answer_file_chooser(&mut self, file: &Path) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let node = loop {
            let opened = self
                .devtools_events()
                .await
                .into_iter()
                .find(|(method, _)| method == "Page.fileChooserOpened");
            if let Some((_, params)) = opened {
                break params["backendNodeId"].clone();
            }
            assert!(Instant::now() < deadline, "the page opened no file chooser");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(node.is_u64(), "the file chooser names no input: {node}");
        self.cdp(
            "DOM.setFileInputFiles",
            json!({"files": [file.to_str().unwrap()], "backendNodeId": node}),
        )
        .await;
    }

    /// Whether a file chooser opened since [`Browser::arm_file_chooser`].
    pub async fn file_chooser_opened(&mut self) -> bool {
        self.devtools_events()
            .await
            .iter()
            .any(|(method, _)| method == "Page.fileChooserOpened")
    }

    /// Drags `file` from the desktop onto the middle of the element matching `css` and
    /// drops it there.
    pub async fn drop_file(&mut self, css: &str, file: &Path) {
        let at = self
            .script(
                "const e = document.querySelector(arguments[0]);
                 e.scrollIntoView({block: 'center'});
                 const r = e.getBoundingClientRect();
                 return [r.left + r.width / 2, r.top + r.height / 2];",
                json!([css]),
            )
            .await;
        let (x, y) = (at[0].as_f64().unwrap(), at[1].as_f64().unwrap());
        let data = json!({"items": [], "files": [file.to_str().unwrap()], "dragOperationsMask": 1});
        for kind in ["dragEnter", "dragOver", "drop"] {
            self.cdp(
                "Input.dispatchDragEvent",
                json!({"type": kind, "x": x, "y": y, "data": data}),
            )
            .await;
        }
    }

    /// Presses `key` on the element matching `css` (it gets the focus first).
    pub async fn press_key(&mut self, css: &str, key: &str) {
        let el = self.wait_for(css, Duration::from_secs(10)).await;
        self.script(
            "document.querySelector(arguments[0]).focus(); return true;",
            json!([css]),
        )
        .await;
        self.cmd(
            "POST",
            "actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                {"type": "keyDown", "value": key},
                {"type": "keyUp", "value": key},
            ]}]}),
        )
        .await;
        let _ = el;
    }

    /// Runs `script` as an asynchronous script: its last argument is the callback that
    /// returns its result.
    pub async fn script_async(&mut self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "execute/async",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// Runs axe-core (installed from npm by `scripts/test-all` into `target/npm`) on the
    /// page as it is now and returns its serious and critical violations, one line each
    /// (rule, impact, the first elements it names). Tap targets are checked at 44 px.
    pub async fn axe(&mut self) -> Vec<String> {
        let source = axe_source();
        self.script(&source, json!([])).await;
        let result = self
            .script_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {
                   resultTypes: ['violations'],
                   rules: { 'target-size': { enabled: true } },
                 }).then((r) => done(r.violations.map((v) => ({
                   id: v.id, impact: v.impact, help: v.help,
                   nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')),
                 })))).catch((e) => done([{ id: 'axe-error', impact: 'critical', help: String(e), nodes: [] }]));",
                json!([]),
            )
            .await;
        result
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .map(|v| {
                format!(
                    "{} ({}): {} at {}",
                    v["id"], v["impact"], v["help"], v["nodes"]
                )
            })
            .collect()
    }

    /// Every visible control of the page smaller than 44 x 44 px, as "selector WxH".
    pub async fn small_tap_targets(&mut self) -> Vec<String> {
        let v = self
            .script(
                "const small = [];
                 for (const e of document.querySelectorAll('button, a[href], input, select, textarea, summary, [role=menuitem], label.option, .acks label')) {
                   if (e.closest('[hidden]') || e.type === 'file' || e.closest('.visually-hidden')) continue;
                   const r = e.getBoundingClientRect();
                   if (r.width === 0 && r.height === 0) continue;
                   // A checkbox inside a label counts as the label it sits in.
                   const t = (e.tagName === 'INPUT' && e.closest('label')) ? e.closest('label').getBoundingClientRect() : r;
                   if (t.width < 44 || t.height < 44) small.push(`${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}.${e.className} ${Math.round(t.width)}x${Math.round(t.height)}`);
                 }
                 return small;",
                json!([]),
            )
            .await;
        serde_json::from_value(v).unwrap_or_default()
    }

    /// Opens `url`.
    pub async fn goto(&mut self, url: &str) {
        self.cmd("POST", "url", json!({"url": url})).await;
    }

    /// Runs `script` in the page and returns its result.
    pub async fn script(&mut self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// The element matching `css`, waiting up to `timeout` for it.
    pub async fn wait_for(&mut self, css: &str, timeout: Duration) -> Element {
        let deadline = Instant::now() + timeout;
        loop {
            let url = format!("{}/session/{}/element", self.base, self.session);
            let v: Value = self
                .http
                .post(url)
                .json(&json!({"using": "css selector", "value": css}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(id) = v["value"][ELEMENT].as_str() {
                return Element(id.to_owned());
            }
            assert!(
                Instant::now() < deadline,
                "no element {css} within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Finds `css` and clicks it, finding it again if the page redrew it in between.
    pub async fn click_css(&mut self, css: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let el = self.wait_for(css, timeout).await;
            // As a person scrolls a control into the middle of the screen before tapping
            // it (the sticky top bar covers the top edge).
            let _ = self
                .http
                .post(format!(
                    "{}/session/{}/execute/sync",
                    self.base, self.session
                ))
                .json(&json!({
                    "script": "arguments[0].scrollIntoView({block: 'center', inline: 'nearest'});",
                    "args": [{ELEMENT: el.0}],
                }))
                .send()
                .await;
            let url = format!(
                "{}/session/{}/element/{}/click",
                self.base, self.session, el.0
            );
            let v: Value = self
                .http
                .post(url)
                .json(&json!({}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            match v["value"].get("error").and_then(Value::as_str) {
                None => return,
                Some("stale element reference") if Instant::now() < deadline => continue,
                Some(e) => panic!("clicking {css}: {e}: {}", v["value"]["message"]),
            }
        }
    }

    /// Types `text` into `el` (for a file input: the file's path).
    pub async fn type_into(&mut self, el: &Element, text: &str) {
        self.cmd(
            "POST",
            &format!("element/{}/value", el.0),
            json!({"text": text}),
        )
        .await;
    }

    /// GETs `what` of the element matching `css`, finding it again if the page redrew it
    /// in between (the portal redraws on every update it receives).
    async fn element_get(&mut self, css: &str, what: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let el = self.wait_for(css, Duration::from_secs(10)).await;
            let url = format!(
                "{}/session/{}/element/{}/{what}",
                self.base, self.session, el.0
            );
            let v: Value = self
                .http
                .get(url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            match v["value"].get("error").and_then(Value::as_str) {
                None => return v["value"].clone(),
                Some("stale element reference") if Instant::now() < deadline => continue,
                Some(e) => panic!("{what} of {css}: {e}: {}", v["value"]["message"]),
            }
        }
    }

    /// The visible text of the element matching `css`.
    pub async fn text(&mut self, css: &str) -> String {
        self.element_get(css, "text")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Whether the element matching `css` is enabled.
    pub async fn enabled(&mut self, css: &str) -> bool {
        self.element_get(css, "enabled")
            .await
            .as_bool()
            .unwrap_or(false)
    }

    /// Whether the element matching `css` is displayed.
    pub async fn displayed(&mut self, css: &str) -> bool {
        self.element_get(css, "displayed")
            .await
            .as_bool()
            .unwrap_or(false)
    }

    /// Saves a screenshot of the viewport as PNG at `path` and returns its size.
    pub async fn screenshot(&mut self, path: &Path) -> (u32, u32) {
        let b64 = self.cmd("GET", "screenshot", Value::Null).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert_eq!(&png[1..4], b"PNG");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, &png).unwrap();
        let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
        let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
        (w, h)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        // Best effort: end chromium cleanly, then chromedriver.
        let _ = std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let _ = reqwest::Client::new()
                        .delete(url)
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                });
            })
            .join()
        });
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// axe-core's script, as `scripts/test-all` installs it.
fn axe_source() -> String {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/npm/node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "axe-core is not installed at {} ({e}): scripts/test-all installs it from npm",
            path.display()
        )
    })
}
