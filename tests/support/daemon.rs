//! The real programs on the secure link: `bmsfw gx` (its gx.toml, an allowlist of the
//! plugins a test approves, a simulated site behind its "sim" interfaces) and
//! `bmsfw portal` (its portal.toml) as separate processes on a mosquitto with TLS, a
//! password file and bmsfw's ACL file, provisioned with `bmsfw portal provision` as an
//! operator does it. Tests drive them through the portal's HTTP API.

use super::secure::{SecureMosquitto, SecureSite};
use super::{CSRF_HEADER, PORTAL_ID, free_port, http};
use bmsfw_core::plugin::Sha256Digest;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long the programs may take to come up.
const START: Duration = Duration::from_secs(90);

/// A plugin library the daemon's allowlist approves.
pub struct Approved {
    /// The built library (copied into the daemon's plugin folder).
    pub library: PathBuf,
    /// The file name in the plugin folder (default: the library's own).
    pub file: Option<String>,
    pub vendor_id: String,
    pub firmware: (String, String),
    pub manufacturer: String,
    pub product_codes: Vec<u16>,
}

/// What the daemon runs.
pub struct DaemonSetup {
    /// The approved plugins.
    pub plugins: Vec<Approved>,
    /// The site file's text (`[[bus]]` and `[[bus.battery]]` tables).
    pub site: String,
    /// The `[[can]]` interfaces of gx.toml, each with backend "sim".
    pub cans: Vec<String>,
    /// Extra gx.toml text placed after `[plugins]` (a `[plugins.host]` table, say).
    pub gx_extra: String,
    /// Where the site's buses are served (`bmsfw gx --site-socket`) by a site that
    /// outlives the daemon; `None`: the daemon runs the site file itself (`--sim`).
    pub site_socket: Option<PathBuf>,
}

/// A child process killed when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bmsfw(args: &[&str], log: &Path) -> Process {
    bmsfw_with(args, log, None)
}

/// `bmsfw ARGS`, logging to `log`, with `FAILPOINTS` set to `failpoints` when given.
fn bmsfw_with(args: &[&str], log: &Path, failpoints: Option<&str>) -> Process {
    let out = std::fs::File::create(log).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_bmsfw"));
    if let Some(points) = failpoints {
        command.env("FAILPOINTS", points);
    }
    Process(
        command
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// The GX daemon and the portal, running.
pub struct Daemons {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub client: reqwest::Client,
    /// The GX daemon's process (replaced when it restarts).
    gx: Mutex<Process>,
    pub portal: Process,
    /// The arguments `bmsfw gx` runs with.
    gx_args: Vec<String>,
    /// GX processes started so far (each logs to its own file).
    gx_runs: AtomicUsize,
    _broker: SecureMosquitto,
    _secure: SecureSite,
}

fn write_configs(dir: &Path, setup: &DaemonSetup, broker: u16, http_port: u16, site: &SecureSite) {
    let ca = site.ca_file.display().to_string();
    let gx_credentials = dir.join("gx-mqtt.toml").display().to_string();
    let portal_credentials = dir.join("portal-mqtt.toml").display().to_string();
    let password_file = site.password_file.display().to_string();
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let mut allowlist = String::new();
    for p in &setup.plugins {
        let file = p.file.clone().unwrap_or_else(|| {
            p.library
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        });
        let copy = plugins.join(&file);
        std::fs::copy(&p.library, &copy).unwrap();
        let sha256 = Sha256Digest::of(&std::fs::read(&copy).unwrap()).to_string();
        allowlist += &bmsfw_test_fixtures::Approval {
            vendor_id: &p.vendor_id,
            file: &file,
            sha256: &sha256,
            versions: "*",
            firmware: (&p.firmware.0, &p.firmware.1),
            manufacturer: &p.manufacturer,
            product_codes: &p.product_codes,
        }
        .to_toml();
        allowlist += "\n";
    }
    std::fs::write(dir.join("allowlist.toml"), allowlist).unwrap();
    let cans: String = setup
        .cans
        .iter()
        .map(|c| format!("[[can]]\nname = \"{c}\"\nbackend = \"sim\"\n\n"))
        .collect();
    let gx_extra = &setup.gx_extra;
    let portal_key = super::portal_signer().public_key();
    std::fs::write(
        dir.join("gx.toml"),
        format!(
            r#"
portal_id = "{PORTAL_ID}"
state_dir = "state"

[plugins]
dir = "plugins"
allowlist = "allowlist.toml"
load_method = "private-copy"

{gx_extra}

{cans}
[staging]
dir = "staging"
min_free_bytes = 1048576

[mqtt]
broker = "mqtts://localhost:{broker}"
ca = "{ca}"
credentials = "{gx_credentials}"
vrm_portal = "full"
keepalive_seconds = 60

[command_signing]
portal_keys = ["{portal_key}"]
"#
        ),
    )
    .unwrap();
    std::fs::write(dir.join("site.toml"), &setup.site).unwrap();
    let hash = bmsfw_portal::auth::hash_password("installer-demo").unwrap();
    std::fs::write(
        dir.join("portal.toml"),
        format!(
            r#"
listen = "127.0.0.1:{http_port}"
broker = "mqtts://localhost:{broker}"

[mqtt]
ca = "{ca}"
credentials = "{portal_credentials}"
password_file = "{password_file}"

[[installations]]
portal_id = "{PORTAL_ID}"
name = "Shed"

[[users]]
name = "installer"
password_hash = "{hash}"
access = "full-control"
installations = ["*"]
"#
        ),
    )
    .unwrap();
    // The portal's command-signing key, where the portal looks for it: beside its
    // database.
    super::write_portal_key(&dir.join("portal-signing.key"));
}

impl Daemons {
    /// Writes the configurations, provisions the GX and the portal with
    /// `bmsfw portal provision`, starts mosquitto, `bmsfw gx` and `bmsfw portal`, and
    /// logs the installer in.
    pub async fn start(setup: &DaemonSetup) -> Daemons {
        Daemons::start_with(setup, None).await
    }

    /// As [`Daemons::start`], the GX daemon with `FAILPOINTS` set to `failpoints`.
    pub async fn start_with(setup: &DaemonSetup, failpoints: Option<&str>) -> Daemons {
        let secure = SecureSite::new();
        let dir = tempfile::tempdir().unwrap();
        let http_port = free_port();
        let broker_port = free_port();
        write_configs(dir.path(), setup, broker_port, http_port, &secure);
        let p = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
        provision(&p);
        // mosquitto reads the password file at start.
        let broker = secure.mosquitto_on(broker_port);
        let mut gx_args: Vec<String> = vec!["gx".into(), "--config".into(), p("gx.toml")];
        match &setup.site_socket {
            Some(sockets) => {
                gx_args.extend(["--site-socket".into(), sockets.display().to_string()]);
            }
            None => gx_args.extend(["--sim".into(), p("site.toml")]),
        }
        gx_args.extend(["--gx-firmware".into(), "3.70".into()]);
        let args: Vec<&str> = gx_args.iter().map(String::as_str).collect();
        let gx = bmsfw_with(&args, &dir.path().join("gx.log"), failpoints);
        let portal = bmsfw(
            &["portal", "--config", &p("portal.toml")],
            &dir.path().join("portal.log"),
        );
        let daemons = Daemons {
            url: format!("http://127.0.0.1:{http_port}"),
            client: http(),
            dir,
            gx: Mutex::new(gx),
            portal,
            gx_args,
            gx_runs: AtomicUsize::new(1),
            _broker: broker,
            _secure: secure,
        };
        let deadline = tokio::time::Instant::now() + START;
        loop {
            let r = daemons
                .client
                .post(format!("{}/api/login", daemons.url))
                .header(CSRF_HEADER.0, CSRF_HEADER.1)
                .json(&json!({"username": "installer", "password": "installer-demo"}))
                .send()
                .await;
            if r.is_ok_and(|r| r.status() == StatusCode::OK) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the portal did not start\n{}",
                daemons.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        daemons
    }

    /// The GX daemon's process id.
    pub fn gx_pid(&self) -> u32 {
        self.gx.lock().unwrap().0.id()
    }

    /// Whether the GX daemon's process has ended.
    pub fn gx_exited(&self) -> bool {
        self.gx.lock().unwrap().0.try_wait().unwrap().is_some()
    }

    /// Starts the GX daemon again on the same configuration and state, without crash
    /// points; its log goes to `gx-N.log`.
    pub fn restart_gx(&self) {
        self.restart_gx_with(None);
    }

    /// Kills the GX daemon if it still runs, and starts it again on the same
    /// configuration and state, with `FAILPOINTS` set to `failpoints` when given.
    pub fn restart_gx_with(&self, failpoints: Option<&str>) {
        let mut gx = self.gx.lock().unwrap();
        let _ = gx.0.kill();
        let _ = gx.0.wait();
        let run = self.gx_runs.fetch_add(1, Ordering::SeqCst) + 1;
        let log = self.path(&format!("gx-{run}.log"));
        let args: Vec<&str> = self.gx_args.iter().map(String::as_str).collect();
        *gx = bmsfw_with(&args, &log, failpoints);
    }

    /// The log of the GX daemon running now.
    pub fn gx_log(&self) -> String {
        let file = match self.gx_runs.load(Ordering::SeqCst) {
            1 => "gx.log".to_owned(),
            n => format!("gx-{n}.log"),
        };
        std::fs::read_to_string(self.path(&file)).unwrap_or_default()
    }

    /// A file of the daemons' folder.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Both programs' logs, for failure messages.
    pub fn logs(&self) -> String {
        let tail = |f: &str| {
            let text = std::fs::read_to_string(self.path(f)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(60)..].join("\n")
        };
        let mut logs = format!("gx.log (end):\n{}\n", tail("gx.log"));
        let runs = self.gx_runs.load(Ordering::SeqCst);
        for run in runs.saturating_sub(2).max(2)..=runs {
            let file = format!("gx-{run}.log");
            logs += &format!("{file} (end):\n{}\n", tail(&file));
        }
        logs + &format!("portal.log (end):\n{}", tail("portal.log"))
    }

    /// The portal's `/api/state`.
    pub async fn state(&self) -> Value {
        let r = self
            .client
            .get(format!("{}/api/state", self.url))
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }

    /// Polls the portal's state until `check` finds what it wants, at most `limit`.
    pub async fn until<T>(
        &self,
        what: &str,
        limit: Duration,
        check: impl Fn(&Value) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let s = self.state().await;
            if let Some(found) = check(&s) {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what} did not happen: {s:#}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Uploads `package` as `name` for the battery `serial` and asks for its update, as
    /// the installer's browser does (every warning confirmed; `reinstall`: the same or an
    /// older version too). Returns the portal's answer to the upload or the update when
    /// it refused.
    pub async fn update(
        &self,
        serial: &str,
        name: &str,
        package: Vec<u8>,
        reinstall: bool,
    ) -> Result<(), String> {
        let s = self.state().await;
        let b = battery(&s, serial).unwrap_or_else(|| panic!("no battery {serial}: {s:#}"));
        let path = format!(
            "{}/api/installations/{PORTAL_ID}/batteries/{}",
            self.url, b["instance"]
        );
        let r = self
            .client
            .post(format!("{path}/firmware?name={name}"))
            .header(CSRF_HEADER.0, CSRF_HEADER.1)
            .body(package)
            .send()
            .await
            .unwrap();
        if !r.status().is_success() {
            return Err(r.text().await.unwrap());
        }
        let policy = if reinstall {
            "allow_reinstall_or_downgrade"
        } else {
            "newer_only"
        };
        let r = self
            .client
            .post(format!("{path}/update"))
            .header(CSRF_HEADER.0, CSRF_HEADER.1)
            .json(&json!({
                "acknowledgements": ["site_reachable", "backup_capacity", "maintenance_window"],
                "version_policy": policy,
            }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("the update request: {e}\n{}", self.logs()));
        if !r.status().is_success() {
            return Err(r.text().await.unwrap());
        }
        Ok(())
    }
}

/// Provisions the GX and the portal with `bmsfw portal provision`, as an operator does;
/// `p` gives a file's path in the daemons' folder.
fn provision(p: &dyn Fn(&str) -> String) {
    for (id, out) in [
        (PORTAL_ID, "gx-mqtt.toml"),
        ("vrm.portal", "portal-mqtt.toml"),
    ] {
        let done = Command::new(env!("CARGO_BIN_EXE_bmsfw"))
            .args(["portal", "--config", &p("portal.toml"), "provision", id])
            .args(["--out", &p(out)])
            .output()
            .unwrap();
        assert!(
            done.status.success(),
            "{}",
            String::from_utf8_lossy(&done.stderr)
        );
        // The password goes into the file, never onto the terminal.
        let password = bmsfw_core::vrm::tls::MqttCredentials::load(Path::new(&p(out)))
            .unwrap()
            .password;
        let shown = String::from_utf8_lossy(&done.stdout).into_owned()
            + &String::from_utf8_lossy(&done.stderr);
        assert!(!shown.contains(password.expose()), "{shown}");
    }
}

/// The battery `serial` of the first installation in a portal state.
pub fn battery<'a>(s: &'a Value, serial: &str) -> Option<&'a Value> {
    s["installations"][0]["batteries"]
        .as_array()?
        .iter()
        .find(|b| b["serial"] == serial)
}
