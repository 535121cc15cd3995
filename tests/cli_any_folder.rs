//! The commands as a user runs them: the built binary, started from a folder outside the
//! project, with its output piped. `demo` needs none of the project's files, `plugin
//! check` and `plugin list` find their allowlist or say what they need, log lines carry
//! no colour codes, and `demo --record` writes a candump log the project's reader reads
//! back in time order.

use bmsfw_can::{CandumpReader, LogEntry};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `bmsfw args`, run in `cwd`, its output piped, killed after `limit`.
fn bmsfw_in(cwd: &Path, args: &[&std::ffi::OsStr], limit: Duration) -> Output {
    run_in(cwd, args, None, limit)
}

/// `bmsfw args`, run in `cwd`, its output piped; sent SIGINT (Ctrl-C) after `interrupt`
/// when given, killed after `limit`.
fn run_in(
    cwd: &Path,
    args: &[&std::ffi::OsStr],
    interrupt: Option<Duration>,
    limit: Duration,
) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bmsfw"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the bmsfw binary starts");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let stderr = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let started = Instant::now();
    let deadline = started + limit;
    let mut interrupt = interrupt.map(|after| started + after);
    let status = loop {
        if interrupt.is_some_and(|at| Instant::now() >= at) {
            interrupt = None;
            // SAFETY: kill(2) on the pid of a child not yet reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bmsfw {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const SHORT: Duration = Duration::from_secs(60);

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

/// A folder outside the project holding a copy of fixture library `alpha`.
fn folder_with_library() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("libalpha.so");
    std::fs::copy(bmsfw_test_fixtures::library("alpha"), &lib).unwrap();
    (dir, lib)
}

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    text(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn value_of(out: &str, label: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{label}:")))
        .map(|v| v.trim().to_owned())
}

#[test]
fn plugin_check_without_an_allowlist_hashes_the_library_and_says_what_it_needs() {
    let (dir, lib) = folder_with_library();
    let out = bmsfw_in(
        dir.path(),
        &[os("plugin"), os("check"), lib.as_os_str()],
        SHORT,
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert_eq!(
        value_of(&stdout, "sha256"),
        Some(sha256sum(&lib)),
        "{stdout}"
    );
    assert_eq!(value_of(&stdout, "allowlist").as_deref(), Some("none"));
    assert!(stdout.contains("an ELF shared library"), "{stdout}");
    assert!(
        stderr.contains("--allowlist FILE") && stderr.contains("--config GX_TOML"),
        "{stderr}"
    );
    assert!(!stderr.contains("config/allowlist.toml"), "{stderr}");

    // With --open-unapproved it is described too.
    let out = bmsfw_in(
        dir.path(),
        &[
            os("plugin"),
            os("check"),
            lib.as_os_str(),
            os("--open-unapproved"),
        ],
        SHORT,
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert_eq!(
        value_of(&stdout, "vendor id").as_deref(),
        Some("com.example.alpha"),
        "{stdout}"
    );
}

#[test]
fn plugin_check_names_an_unreadable_allowlist_with_the_os_error_once() {
    let (dir, lib) = folder_with_library();
    let out = bmsfw_in(
        dir.path(),
        &[
            os("plugin"),
            os("check"),
            lib.as_os_str(),
            os("--allowlist"),
            os("missing.toml"),
        ],
        SHORT,
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert_eq!(
        value_of(&stdout, "sha256"),
        Some(sha256sum(&lib)),
        "{stdout}"
    );
    let all = format!("{stdout}{stderr}");
    assert_eq!(all.matches("No such file or directory").count(), 1, "{all}");
    assert!(stderr.contains("missing.toml"), "{stderr}");
}

/// A GX configuration in `dir`, its paths relative to it, an empty allowlist, and the
/// library in its plugin directory.
fn gx_folder(dir: &Path, lib: &Path) -> PathBuf {
    let conf = dir.join("conf");
    std::fs::create_dir_all(conf.join("plugins")).unwrap();
    std::fs::copy(lib, conf.join("plugins").join("libalpha.so")).unwrap();
    std::fs::write(conf.join("allowlist.toml"), "").unwrap();
    let gx = conf.join("gx.toml");
    std::fs::write(
        &gx,
        "portal_id = \"abc\"\nstate_dir = \"state\"\n[plugins]\ndir = \"plugins\"\n\
         allowlist = \"allowlist.toml\"\n",
    )
    .unwrap();
    gx
}

#[test]
fn plugin_check_takes_the_allowlist_of_the_gx_configuration() {
    let (dir, lib) = folder_with_library();
    let gx = gx_folder(dir.path(), &lib);
    let out = bmsfw_in(
        dir.path(),
        &[
            os("plugin"),
            os("check"),
            lib.as_os_str(),
            os("--config"),
            gx.as_os_str(),
        ],
        SHORT,
    );
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "refused by the empty allowlist:\n{stdout}"
    );
    let allowlist = value_of(&stdout, "allowlist").unwrap();
    assert!(
        allowlist.contains("conf/allowlist.toml") && allowlist.contains("GX configuration"),
        "{stdout}"
    );
    assert!(stdout.contains("REFUSED by the hash check"), "{stdout}");
}

#[test]
fn plugin_list_outside_the_project_asks_for_its_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let out = bmsfw_in(dir.path(), &[os("plugin"), os("list")], SHORT);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--config GX_TOML"), "{stderr}");
}

#[test]
fn log_lines_to_a_pipe_are_plain() {
    let (dir, lib) = folder_with_library();
    let gx = gx_folder(dir.path(), &lib);
    let out = bmsfw_in(
        dir.path(),
        &[os("plugin"), os("list"), os("--config"), gx.as_os_str()],
        SHORT,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // The refusal is logged at warn level: there is a log line to look at.
    let line = stderr
        .lines()
        .find(|l| l.contains("plugin refused"))
        .unwrap_or_else(|| panic!("no log line:\n{stderr}"));
    assert!(line.contains(" WARN "), "{line}");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a pipe: {stderr:?}"
    );
}

#[test]
fn the_demo_runs_outside_the_project_and_records_its_buses() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = bmsfw_test_fixtures::vendor_library("aurora")
        .parent()
        .unwrap()
        .to_path_buf();
    let log = dir.path().join("update.log");
    let out = bmsfw_in(
        dir.path(),
        &[
            os("demo"),
            os("--run"),
            os("--listen"),
            os("127.0.0.1:0"),
            os("--timeout"),
            os("300"),
            os("--dir"),
            os("demo"),
            os("--plugins"),
            plugins.as_os_str(),
            os("--record"),
            os("update.log"),
        ],
        Duration::from_secs(420),
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("the built-in demo site"), "{stdout}");
    assert!(stdout.contains("3 of 3 updates completed"), "{stdout}");

    let records: Vec<_> = CandumpReader::new(BufReader::new(std::fs::File::open(&log).unwrap()))
        .map(|r| r.unwrap_or_else(|e| panic!("the recorded log reads back: {e}")))
        .collect();
    let recorded = format!("recorded {} lines", records.len());
    assert!(stdout.contains(&recorded), "{recorded}:\n{stdout}");
    assert!(
        records.windows(2).all(|w| w[0].timestamp <= w[1].timestamp),
        "the buses' lines are in one time order"
    );
    let mut buses: Vec<&str> = records.iter().map(|r| r.interface.as_str()).collect();
    buses.sort();
    buses.dedup();
    assert_eq!(buses, ["sim0", "sim1", "sim2", "sim3", "sim4"]);
    // The updates are in it: the Aurora plugin's requests on 0x7E2 and the BMS's
    // answers on 0x7EA, beside the batteries' BMS-Can broadcasts.
    let count = |id: u32| {
        records
            .iter()
            .filter(|r| matches!(r.entry, LogEntry::Frame(f) if f.id().raw() == id))
            .count()
    };
    assert!(count(0x7E2) > 100, "{} requests", count(0x7E2));
    assert!(count(0x7EA) > 10, "{} answers", count(0x7EA));
    assert!(count(0x351) > 10);
}

#[test]
fn gx_records_the_simulated_buses_until_stopped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
    std::fs::write(dir.path().join("allowlist.toml"), "").unwrap();
    std::fs::write(
        dir.path().join("gx.toml"),
        "portal_id = \"abc\"\nstate_dir = \"state\"\n[plugins]\ndir = \"plugins\"\n\
         allowlist = \"allowlist.toml\"\n[site]\nsource = \"config\"\n\
         [[can]]\nname = \"sim0\"\nbackend = \"sim\"\n",
    )
    .unwrap();
    let site = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    let out = run_in(
        dir.path(),
        &[
            os("gx"),
            os("--config"),
            os("gx.toml"),
            os("--sim"),
            site.as_os_str(),
            os("--gx-firmware"),
            os("3.70"),
            // Nothing listens there: the link keeps retrying, the buses run.
            os("--broker"),
            os("mqtt://127.0.0.1:9"),
            os("--record"),
            os("gx.log"),
        ],
        Some(Duration::from_secs(4)),
        SHORT,
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let records: Vec<_> = CandumpReader::new(BufReader::new(
        std::fs::File::open(dir.path().join("gx.log")).unwrap(),
    ))
    .map(|r| r.unwrap_or_else(|e| panic!("the recorded log reads back: {e}")))
    .collect();
    assert!(
        stdout.contains(&format!("recorded {} lines", records.len())),
        "{stdout}"
    );
    assert!(records.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    // Every bus of the site is recorded, also those the GX does not use; each
    // battery broadcasts 0x351 about every second.
    for bus in ["sim0", "sim1", "sim2", "sim3", "sim4"] {
        let n = records
            .iter()
            .filter(|r| {
                r.interface == bus && matches!(r.entry, LogEntry::Frame(f) if f.id().raw() == 0x351)
            })
            .count();
        assert!(n >= 2, "{bus}: {n} frames 351");
    }
}
