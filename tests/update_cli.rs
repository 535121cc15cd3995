//! `bmsfw update` as a user runs it: the built binary, started from a folder of its own
//! with its output piped, against a simulated site (the shipped Aurora BMS) with the
//! shipped Aurora plugin approved by an allowlist and run in its plugin host. Each
//! outcome has its exit code and prints its catalogue code.

use bmsfw_core::plugin::Sha256Digest;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const VENDOR_ID: &str = "com.aurora-energy.powercore";
const PRODUCT: u16 = 0xA520;
/// A small image: the update runs in real time.
const IMAGE_BYTES: usize = 8 * 1024;

/// A bench: the plugin folder with the Aurora library, its allowlist, a site file.
struct Bench {
    dir: tempfile::TempDir,
}

impl Bench {
    fn new() -> Bench {
        Bench::with_plugin(
            &bmsfw_test_fixtures::vendor_library("aurora"),
            bmsfw_test_fixtures::Approval {
                vendor_id: VENDOR_ID,
                file: "",
                sha256: "",
                versions: "^1.0",
                firmware: ("4.0", "4.254"),
                manufacturer: "AURORA",
                product_codes: &[PRODUCT],
            },
            SITE,
        )
    }

    /// A bench with `library` approved as `approval` says (its file and digest filled
    /// in) and the site `site`.
    fn with_plugin(
        library: &Path,
        approval: bmsfw_test_fixtures::Approval<'_>,
        site: &str,
    ) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let file = library.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(library).unwrap();
        std::fs::create_dir(dir.path().join("plugins")).unwrap();
        std::fs::write(dir.path().join("plugins").join(&file), &bytes).unwrap();
        let sha256 = Sha256Digest::of(&bytes).to_string();
        let allowlist = bmsfw_test_fixtures::Approval {
            file: &file,
            sha256: &sha256,
            ..approval
        }
        .to_toml();
        std::fs::write(dir.path().join("allowlist.toml"), allowlist).unwrap();
        std::fs::write(dir.path().join("site.toml"), site).unwrap();
        Bench { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes an Aurora package installing `version`; returns its path.
    fn package(&self, version: [u8; 2]) -> PathBuf {
        let spec = aurora_sim::package::PackageSpec::new(PRODUCT, version, IMAGE_BYTES, 7);
        let path = self.path(&format!("powercore-{}.{}.bin", version[0], version[1]));
        std::fs::write(&path, aurora_sim::package::build(&spec)).unwrap();
        path
    }

    /// Runs `bmsfw update` on the bench's site with `extra` arguments, from a folder of
    /// its own, output piped.
    fn update(&self, battery: &str, package: &Path, extra: &[&str]) -> Run {
        let cwd = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = vec![
            "update".into(),
            "--package".into(),
            package.display().to_string(),
            "--sim".into(),
            self.path("site.toml").display().to_string(),
            "--battery".into(),
            battery.into(),
            "--plugins".into(),
            self.path("plugins").display().to_string(),
            "--allowlist".into(),
            self.path("allowlist.toml").display().to_string(),
            "--wait".into(),
            "30".into(),
            "--timeout".into(),
            "120".into(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        if !extra.contains(&"--state") {
            // Not a temporary folder of bmsfw's own: kept after a failure, it would
            // outlive the test.
            args.extend(["--state".into(), self.path("state").display().to_string()]);
        }
        run(cwd.path(), &args)
    }
}

/// One battery well charged, one below the 50 % the SoC gate asks for, each on a bus of
/// its own.
const SITE: &str = r#"
[[bus]]
name = "bench0"
bitrate = 500000

[[bus.battery]]
name = "shed"
vendor = "aurora"
manufacturer = "AURORA"
bms_name = "PowerCore 10"
product_code = 0xA520
firmware = [0x04, 0x0F]
capacity_ah = 200
serial = "AUR10-000101"
soc = 81
temperature_c = 21.0

[[bus]]
name = "bench1"
bitrate = 500000

[[bus.battery]]
name = "cellar"
vendor = "aurora"
manufacturer = "AURORA"
bms_name = "PowerCore 10"
product_code = 0xA520
firmware = [0x04, 0x0F]
capacity_ah = 200
serial = "AUR10-000102"
soc = 31
temperature_c = 19.0
"#;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn run(cwd: &Path, args: &[String]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_bmsfw"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

#[test]
fn an_update_completes_with_exit_0_and_its_history_stays_in_the_state_directory() {
    let bench = Bench::new();
    let package = bench.package([4, 16]);
    let state = bench.path("state");
    let log = bench.path("update.log");
    let r = bench.update(
        "shed",
        &package,
        &[
            "--state",
            &state.display().to_string(),
            "--record",
            &log.display().to_string(),
        ],
    );
    assert_eq!(r.code, Some(0), "{r}");
    assert!(r.stdout.contains("completed"), "{r}");
    assert!(r.stdout.contains("runs v4.16 (was v4.15)"), "{r}");
    // Plain progress lines through the six states: stdout is a pipe.
    for (i, label) in [
        "Uploading to GX device",
        "Transferring to battery",
        "Installing",
        "Restarting",
        "Verifying",
        "Completed",
    ]
    .iter()
    .enumerate()
    {
        assert!(
            r.stdout.contains(&format!("[{}/6] {label}", i + 1)),
            "{label}: {r}"
        );
    }
    // The candump log holds the transfer.
    let recorded = std::fs::read_to_string(&log).unwrap();
    assert!(recorded.lines().count() > 100, "{recorded}");
    assert!(recorded.contains(" bench0 "), "{recorded}");

    // `bmsfw history` reads what the update left in --state.
    let cwd = tempfile::tempdir().unwrap();
    let h = run(
        cwd.path(),
        &[
            "history".into(),
            "--state-dir".into(),
            state.display().to_string(),
            "--json".into(),
        ],
    );
    assert_eq!(h.code, Some(0), "{h}");
    let doc: serde_json::Value = serde_json::from_str(&h.stdout).unwrap();
    let jobs = doc["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{doc:#}");
    assert_eq!(jobs[0]["state"], "completed", "{doc:#}");
    assert!(!doc["events"].as_array().unwrap().is_empty(), "{doc:#}");
}

#[test]
fn a_battery_below_the_state_of_charge_gate_is_refused_with_exit_3_and_code_723() {
    let bench = Bench::new();
    let package = bench.package([4, 16]);
    let r = bench.update("cellar", &package, &[]);
    assert_eq!(r.code, Some(3), "{r}");
    assert!(r.stdout.contains("error 723"), "{r}");
    assert!(r.stdout.contains("GATE_STATE_OF_CHARGE"), "{r}");
    assert!(!r.stdout.contains("[2/6]"), "nothing was transferred: {r}");
}

#[test]
fn an_older_version_is_refused_with_731_unless_allow_downgrade() {
    let bench = Bench::new();
    let package = bench.package([4, 14]);
    let state = bench.path("state");
    let state_arg = state.display().to_string();
    let refused = bench.update("shed", &package, &["--state", &state_arg]);
    assert_eq!(refused.code, Some(3), "{refused}");
    assert!(refused.stdout.contains("error 731"), "{refused}");
    assert!(!refused.stdout.contains("[2/6]"), "{refused}");

    let accepted = bench.update(
        "shed",
        &package,
        &["--state", &state_arg, "--allow-downgrade"],
    );
    assert_eq!(accepted.code, Some(0), "{accepted}");
    assert!(
        accepted.stdout.contains("runs v4.14 (was v4.15)"),
        "{accepted}"
    );
}

#[test]
fn bad_input_is_named_with_exit_2() {
    let bench = Bench::new();
    let package = bench.package([4, 16]);

    let r = bench.update("garage", &package, &[]);
    assert_eq!(r.code, Some(2), "{r}");
    assert!(
        r.stderr.contains("no battery named \"garage\"") && r.stderr.contains("shed, cellar"),
        "{r}"
    );

    let missing = bench.path("nothing-here.bin");
    let r = bench.update("shed", &missing, &[]);
    assert_eq!(r.code, Some(2), "{r}");
    assert!(r.stderr.contains("nothing-here.bin"), "{r}");
}

#[test]
fn a_file_the_plugin_refuses_ends_with_exit_4_and_its_code() {
    let bench = Bench::new();
    let path = bench.path("not-a-package.bin");
    std::fs::write(&path, vec![0x5A; 4096]).unwrap();
    let r = bench.update("shed", &path, &[]);
    assert_eq!(r.code, Some(4), "{r}");
    assert!(r.stdout.contains("error 760 PACKAGE_INVALID"), "{r}");
    assert!(!r.stdout.contains("[2/6]"), "{r}");
}

/// The child's output lines as they come, and the whole of it.
struct Live {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: String,
}

impl Live {
    /// Starts `bmsfw` with `args` in a process group of its own, as a shell at a
    /// terminal does, so that a Ctrl-C reaches it and its plugin hosts alike.
    fn start(cwd: &Path, args: &[String]) -> Live {
        use std::io::BufRead;
        use std::os::unix::process::CommandExt;
        let mut child = Command::new(env!("CARGO_BIN_EXE_bmsfw"))
            .args(args)
            .current_dir(cwd)
            .env_remove("RUST_LOG")
            .process_group(0)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Live {
            child,
            lines,
            seen: String::new(),
        }
    }

    /// Waits (bounded) for a line containing `text`.
    fn until(&mut self, text: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                    if line.contains(text) {
                        return;
                    }
                }
                Err(_) => panic!("no line with {text:?}:\n{}", self.seen),
            }
        }
    }

    /// Ctrl-C at the terminal: SIGINT to the whole process group.
    fn ctrl_c(&self) {
        let group = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on the process group of a child this test started.
        assert_eq!(unsafe { libc::kill(-group, libc::SIGINT) }, 0);
    }

    /// Waits (bounded) for the exit; its code and every line.
    fn finish(mut self) -> (Option<i32>, String) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(line) = self.lines.recv_timeout(std::time::Duration::from_secs(5)) {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                }
                return (status.code(), self.seen);
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("bmsfw update did not exit:\n{}", self.seen);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Bench {
    /// The arguments of an update of `shed` with `package`, state in `state`.
    fn args(&self, package: &Path, state: &Path) -> Vec<String> {
        [
            "update",
            "--package",
            &package.display().to_string(),
            "--sim",
            &self.path("site.toml").display().to_string(),
            "--battery",
            "shed",
            "--plugins",
            &self.path("plugins").display().to_string(),
            "--allowlist",
            &self.path("allowlist.toml").display().to_string(),
            "--state",
            &state.display().to_string(),
            "--timeout",
            "120",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    }

    /// A package whose transfer lasts a few seconds.
    fn long_package(&self) -> PathBuf {
        let spec = aurora_sim::package::PackageSpec::new(PRODUCT, [4, 16], 128 * 1024, 11);
        let path = self.path("powercore-4.16-long.bin");
        std::fs::write(&path, aurora_sim::package::build(&spec)).unwrap();
        path
    }
}

#[test]
fn ctrl_c_during_the_transfer_lets_it_finish_and_a_second_one_stops_with_exit_6() {
    let bench = Bench::new();
    let package = bench.long_package();
    let cwd = tempfile::tempdir().unwrap();

    // One Ctrl-C: the engine refuses to cancel a running transfer (716) and its plugin
    // host, spared the terminal's signal, carries it to its end.
    let state = bench.path("state-once");
    let mut once = Live::start(cwd.path(), &bench.args(&package, &state));
    once.until("[2/6] Transferring");
    once.ctrl_c();
    once.until("error 716");
    let (code, out) = once.finish();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("runs v4.16 (was v4.15)"), "{out}");

    // Two: bmsfw stops there, the job journaled in the state directory.
    let state = bench.path("state-twice");
    let mut twice = Live::start(cwd.path(), &bench.args(&package, &state));
    twice.until("[2/6] Transferring");
    twice.ctrl_c();
    twice.until("press Ctrl-C again");
    twice.ctrl_c();
    let (code, out) = twice.finish();
    assert_eq!(code, Some(6), "{out}");
    assert!(
        out.contains("stopped during Transferring to battery"),
        "{out}"
    );
    let h = run(
        cwd.path(),
        &[
            "history".into(),
            "--state-dir".into(),
            state.display().to_string(),
            "--json".into(),
        ],
    );
    let doc: serde_json::Value = serde_json::from_str(&h.stdout).unwrap();
    assert_eq!(doc["jobs"][0]["state"], "transferring", "{doc:#}");
}

#[test]
fn a_battery_that_installs_another_version_fails_verification_with_exit_5() {
    // The fixture plugin "alpha" and the SPKG BMS of a model library, told to come back
    // from its install with v1.05 whatever it was sent.
    let site = format!(
        r#"
[[bus]]
name = "bench0"
bitrate = 500000

[[bus.battery]]
name = "odd"
vendor = "alpha"
model = "{model}"
model_options = {{ request_id = 0x7E0, response_id = 0x7E8, installs = [1, 5] }}
manufacturer = "ALPHA"
bms_name = "Alpha test BMS"
product_code = 0x0A01
firmware = [1, 0]
capacity_ah = 100
serial = "ALPHA-0001"
soc = 80
temperature_c = 20.0
"#,
        model = bmsfw_test_fixtures::model_library("spkg").display()
    );
    let bench = Bench::with_plugin(
        &bmsfw_test_fixtures::library("alpha"),
        bmsfw_test_fixtures::Approval {
            vendor_id: "com.example.alpha",
            file: "",
            sha256: "",
            versions: "^1.0",
            firmware: ("1.0", "1.99"),
            manufacturer: "ALPHA",
            product_codes: &[0x0A01],
        },
        &site,
    );
    // SPKG: magic, product code (LE), major, minor, image.
    let mut package = b"SPKG".to_vec();
    package.extend_from_slice(&0x0A01u16.to_le_bytes());
    package.extend_from_slice(&[1, 1]);
    package.extend((0..2048u32).map(|i| (i * 7) as u8));
    let path = bench.path("alpha-1.1.spkg");
    std::fs::write(&path, package).unwrap();

    let r = bench.update("odd", &path, &[]);
    assert_eq!(r.code, Some(5), "{r}");
    assert!(r.stdout.contains("[2/6] Transferring"), "{r}");
    assert!(r.stdout.contains("failed: update"), "{r}");
    // The battery came back with v1.05: the engine does not confirm v1.01.
    assert!(r.stdout.contains("error 745 VERSION_NOT_CONFIRMED"), "{r}");
    assert!(r.stdout.contains("reports v1.05"), "{r}");
}

#[test]
fn a_battery_no_approved_plugin_claims_is_refused_with_exit_4_and_its_code() {
    let site = r#"
[[bus]]
name = "bench0"
bitrate = 500000

[[bus.battery]]
name = "house"
vendor = "voltara"
manufacturer = "VOLTARA"
bms_name = "VX-48 Pack BMS"
product_code = 0x0B17
firmware = [0x04, 0x0F]
capacity_ah = 300
serial = "VX4800012345"
soc = 72
"#;
    let bench = Bench::with_plugin(
        &bmsfw_test_fixtures::vendor_library("aurora"),
        bmsfw_test_fixtures::Approval {
            vendor_id: VENDOR_ID,
            file: "",
            sha256: "",
            versions: "^1.0",
            firmware: ("4.0", "4.254"),
            manufacturer: "AURORA",
            product_codes: &[PRODUCT],
        },
        site,
    );
    let package = bench.package([4, 16]);
    let r = bench.update("house", &package, &[]);
    assert_eq!(r.code, Some(4), "{r}");
    assert!(r.stderr.contains("VOLTARA"), "{r}");
    assert!(r.stderr.contains("error 7"), "its catalogue code: {r}");
    assert!(!r.stdout.contains("[1/6]"), "{r}");
}

#[test]
fn an_update_not_ended_within_the_timeout_exits_7_and_a_second_run_on_its_state_completes() {
    let bench = Bench::new();
    let package = bench.long_package();
    let state = bench.path("state");
    let mut args = bench.args(&package, &state);
    // Instead of the 120 s of `args`.
    let at = args.iter().position(|a| a == "--timeout").unwrap();
    args[at + 1] = "2".into();
    let cwd = tempfile::tempdir().unwrap();
    let r = run(cwd.path(), &args);
    assert_eq!(r.code, Some(7), "{r}");
    assert!(r.stdout.contains("did not end within --timeout"), "{r}");
    assert!(r.stdout.contains("is journaled in"), "{r}");

    // Run again on the same state: the engine takes up the journaled job at its start
    // (resumed and followed here, or failed with 740 when it cannot resume) and the
    // update completes.
    args[at + 1] = "120".into();
    let again = run(cwd.path(), &args);
    assert_eq!(again.code, Some(0), "{again}");
    assert!(again.stdout.contains("runs v4.16 (was v4.15)"), "{again}");
    let h = run(
        cwd.path(),
        &[
            "history".into(),
            "--state-dir".into(),
            state.display().to_string(),
            "--json".into(),
        ],
    );
    let doc: serde_json::Value = serde_json::from_str(&h.stdout).unwrap();
    let jobs = doc["jobs"].as_array().unwrap();
    assert!(
        jobs.iter()
            .all(|j| j["state"] == "completed" || j["state"] == "failed"),
        "no job left unfinished: {doc:#}\n{again}"
    );
}
