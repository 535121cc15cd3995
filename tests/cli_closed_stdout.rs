//! Every printing command of the built binary, run from another folder with its standard
//! output closed by its reader (`bmsfw history ... | head -1`): no panic, the usual exit
//! status.

use bmsfw_core::UnixMillis;
use bmsfw_core::events::EventLogConfig;
use bmsfw_core::job::{BatteryIdentity, JobEvent, JobFailure, JobStore, StateDir};
use bmsfw_core::staging::{Sha256Digest, UploadAnnouncement};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `bmsfw args`, run in `cwd`.
fn bmsfw(cwd: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bmsfw"));
    cmd.args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    cmd
}

/// Runs `cmd` with a standard output whose reader is already gone: every write to it
/// fails with a broken pipe, whatever the timing.
fn with_closed_stdout(mut cmd: Command) -> Output {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) returns; each is owned once.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(reader);
    cmd.stdout(writer).stderr(Stdio::piped());
    cmd.output().expect("the bmsfw binary runs")
}

fn assert_quiet(what: &str, normal: &Output, closed: &Output) {
    let stderr = String::from_utf8_lossy(&closed.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{what}: {stderr}"
    );
    assert_eq!(
        closed.status.code(),
        normal.status.code(),
        "{what}: the exit status changed: {stderr}"
    );
}

/// Runs `args` normally (it must print something, or the test proves nothing) and with a
/// closed standard output.
fn check(cwd: &Path, what: &str, args: &[&str], stdin: Option<&str>) {
    let run = |closed: bool| {
        let mut cmd = bmsfw(cwd, args);
        if let Some(input) = stdin {
            let file = cwd.join("stdin.txt");
            std::fs::write(&file, input).unwrap();
            cmd.stdin(std::fs::File::open(&file).unwrap());
        }
        if closed {
            with_closed_stdout(cmd)
        } else {
            cmd.output().unwrap()
        }
    };
    let normal = run(false);
    assert!(
        !normal.stdout.is_empty(),
        "{what} printed nothing: {}",
        String::from_utf8_lossy(&normal.stderr)
    );
    let closed = run(true);
    assert_quiet(what, &normal, &closed);
}

/// A state directory with `jobs` jobs of one battery, every other one failed.
fn populate(root: &Path, jobs: u64) {
    let (mut store, _) = JobStore::open(
        &StateDir::new(root),
        EventLogConfig::default(),
        UnixMillis(0),
    )
    .unwrap();
    for n in 0..jobs {
        let t = 1_768_896_900_000 + n * 1000;
        let ann = UploadAnnouncement::new(
            format!("fw-{n}.bin"),
            4096,
            1024,
            Sha256Digest([n as u8; 32]),
        )
        .unwrap();
        let battery = BatteryIdentity {
            manufacturer: "Aurora".into(),
            model: "AX-5".into(),
            serial: "SN-A".into(),
        };
        let id = store.create(battery, ann, None, UnixMillis(t)).unwrap();
        let failure = JobFailure {
            code: 718,
            message: "the firmware file did not reach the GX device in time".into(),
            at: UnixMillis(t + 1),
            battery_state: None,
        };
        store
            .apply(id, JobEvent::Failed(failure), UnixMillis(t + 1))
            .unwrap();
    }
}

#[test]
fn history_piped_into_head_prints_one_line_and_exits_quietly() {
    let cwd = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    // Far more than a pipe holds, so the binary is still writing when head has gone.
    populate(state.path(), 400);
    let state = state.path().to_str().unwrap();
    let normal = bmsfw(cwd.path(), &["history", "--state-dir", state, "--json"])
        .output()
        .unwrap();
    assert!(normal.stdout.len() > 256 * 1024, "{}", normal.stdout.len());
    for extra in [&[][..], &["--json"][..]] {
        let script = format!(
            "\"$0\" history --state-dir \"$1\" {} | head -1; echo \"status ${{PIPESTATUS[0]}}\" >&2",
            extra.join(" ")
        );
        let out = Command::new("bash")
            .args(["-c", &script, env!("CARGO_BIN_EXE_bmsfw"), state])
            .current_dir(cwd.path())
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stdout.lines().count(), 1, "{extra:?}: {stdout}");
        assert!(!stderr.contains("panicked"), "{extra:?}: {stderr}");
        assert!(stderr.contains("status 0"), "{extra:?}: {stderr}");
    }
}

#[test]
fn every_printing_command_handles_a_closed_stdout() {
    let cwd = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    populate(state.path(), 3);
    let state = state.path().to_str().unwrap();
    check(
        cwd.path(),
        "history",
        &["history", "--state-dir", state],
        None,
    );
    check(
        cwd.path(),
        "history --json",
        &["history", "--state-dir", state, "--json"],
        None,
    );

    let lib = cwd.path().join("libalpha.so");
    std::fs::copy(bmsfw_test_fixtures::library("alpha"), &lib).unwrap();
    std::fs::write(cwd.path().join("allowlist.toml"), "").unwrap();
    std::fs::create_dir(cwd.path().join("plugins")).unwrap();
    std::fs::copy(&lib, cwd.path().join("plugins/libalpha.so")).unwrap();
    std::fs::write(
        cwd.path().join("gx.toml"),
        "portal_id = \"abc\"\nstate_dir = \"state\"\n[plugins]\ndir = \"plugins\"\nallowlist = \"allowlist.toml\"\n",
    )
    .unwrap();
    check(
        cwd.path(),
        "plugin check",
        &[
            "plugin",
            "check",
            "libalpha.so",
            "--allowlist",
            "allowlist.toml",
        ],
        None,
    );
    check(
        cwd.path(),
        "plugin list",
        &["plugin", "list", "--config", "gx.toml"],
        None,
    );
    check(
        cwd.path(),
        "plugin conformance",
        &["plugin", "conformance", "not-a-library.so"],
        None,
    );
    let demo = repo("config/demo.toml");
    check(
        cwd.path(),
        "devices",
        &[
            "devices",
            "--sim",
            demo.to_str().unwrap(),
            "--listen-secs",
            "1",
        ],
        None,
    );
    check(
        cwd.path(),
        "portal hash-password",
        &["portal", "hash-password"],
        Some("correct horse battery staple\n"),
    );
}
