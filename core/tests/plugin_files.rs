//! What the loader accepts as a library file, before any dynamic loader sees it: regular
//! files only (FIFOs, device nodes, sockets and directories never opened for reading),
//! no symbolic links, the size checked before reading, well-formed ELF headers, approved
//! bytes only under their approved name, and file names that cannot forge a line.

mod plugins_common;

use bmsfw_core::plugin::{PluginLoader, RefusalReason, validate_elf};
use plugins_common::{Approve, install, loader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Runs `f` on its own thread and fails the test if it takes longer than `limit` (a
/// blocking open of a FIFO would hang forever).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("did not return within {limit:?}"))
}

fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
}

#[test]
fn a_fifo_is_refused_without_ever_being_opened_for_reading() {
    let dir = tempfile::tempdir().unwrap();
    let a = install(dir.path(), "alpha", "libalpha.so");
    let fifo = dir.path().join("libfifo.so");
    mkfifo(&fifo);

    // A writer blocks in open() until a reader opens the FIFO (the kernel counts every
    // reader's open, however brief): while it stays blocked, nobody opened it to read.
    let writer_opened = Arc::new(AtomicBool::new(false));
    let writer = {
        let fifo = fifo.clone();
        let opened = writer_opened.clone();
        std::thread::spawn(move || {
            let f = std::fs::OpenOptions::new().write(true).open(&fifo);
            opened.store(true, Ordering::SeqCst);
            f.is_ok()
        })
    };
    std::thread::sleep(Duration::from_millis(100));

    let loader = loader(&[Approve::new(&a, "com.example.alpha")]);
    let scan_dir = dir.path().to_path_buf();
    let report = within(Duration::from_secs(30), move || {
        loader.load_dir(&scan_dir).unwrap()
    });
    assert_eq!(report.loaded.len(), 1, "{:?}", report.refused);
    assert_eq!(report.refused.len(), 1);
    let r = &report.refused[0];
    assert_eq!(r.path, fifo);
    assert!(
        matches!(
            *r.reason,
            RefusalReason::NotAFile {
                kind: "a named pipe (FIFO)"
            }
        ),
        "{r}"
    );
    assert_eq!(r.reason.check(), "file");
    assert!(r.sha256.is_none());
    assert!(
        r.to_string().ends_with(
            "libfifo.so: refused by the file check: a named pipe (FIFO), not a regular file"
        ),
        "{r}"
    );
    // read_file alone too.
    let alone = plugins_common::loader(&[]).read_file(&fifo).unwrap_err();
    assert_eq!(alone.reason.check(), "file");

    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !writer_opened.load(Ordering::SeqCst),
        "the loader opened the FIFO for reading"
    );
    // The probe works: a reader's open releases the writer.
    let _reader = rustix::fs::open(
        &fifo,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    assert!(writer.join().unwrap());
    assert!(writer_opened.load(Ordering::SeqCst));
}

#[test]
fn devices_sockets_and_directories_are_refused_as_not_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = install(dir.path(), "alpha", "libalpha.so");
    std::fs::create_dir(dir.path().join("libdir.so")).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(dir.path().join("libsock.so")).unwrap();
    // A device node needs CAP_MKNOD; /dev/null is refused the same way below.
    let device = dir.path().join("libnull.so");
    let made_device = rustix::fs::mknodat(
        rustix::fs::CWD,
        &device,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .is_ok();

    let report = within(Duration::from_secs(30), {
        let loader = loader(&[Approve::new(&a, "com.example.alpha")]);
        let dir = dir.path().to_path_buf();
        move || loader.load_dir(&dir).unwrap()
    });
    assert_eq!(report.loaded.len(), 1, "{:?}", report.refused);
    let kinds: Vec<(String, &str)> = report
        .refused
        .iter()
        .map(|r| match *r.reason {
            RefusalReason::NotAFile { kind } => (
                r.path.file_name().unwrap().to_string_lossy().into_owned(),
                kind,
            ),
            ref other => panic!("{other}"),
        })
        .collect();
    let mut expected = vec![
        ("libdir.so".to_owned(), "a directory"),
        ("libsock.so".to_owned(), "a socket"),
    ];
    if made_device {
        expected.insert(1, ("libnull.so".to_owned(), "a character device node"));
    } else {
        eprintln!("no CAP_MKNOD: the device node case is checked on /dev/null only");
    }
    assert_eq!(kinds, expected);

    let r = loader(&[]).read_file(Path::new("/dev/null")).unwrap_err();
    assert!(
        matches!(
            *r.reason,
            RefusalReason::NotAFile {
                kind: "a character device node"
            }
        ),
        "{r}"
    );
}

#[test]
fn symbolic_links_are_refused_naming_their_target_and_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::create_dir_all(&plugins).unwrap();
    // The approved bytes, but reached through a link of the approved name.
    let real = install(&elsewhere, "alpha", "libalpha.so");
    std::os::unix::fs::symlink("../elsewhere/libalpha.so", plugins.join("libalpha.so")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", plugins.join("libzero.so")).unwrap();
    std::os::unix::fs::symlink("nowhere.so", plugins.join("libdangling.so")).unwrap();
    let fifo = elsewhere.join("fifo");
    mkfifo(&fifo);
    std::os::unix::fs::symlink(&fifo, plugins.join("libpipe.so")).unwrap();

    let loader = loader(&[Approve::new(&real, "com.example.alpha")]);
    let report = within(Duration::from_secs(30), {
        let plugins = plugins.clone();
        move || {
            let report = loader.load_dir(&plugins).unwrap();
            (report.loaded.len(), report.refused)
        }
    });
    assert_eq!(report.0, 0);
    let refused: Vec<(String, Option<PathBuf>)> = report
        .1
        .iter()
        .map(|r| match &*r.reason {
            RefusalReason::SymbolicLink { target } => (
                r.path.file_name().unwrap().to_string_lossy().into_owned(),
                target.clone(),
            ),
            other => panic!("{other}"),
        })
        .collect();
    assert_eq!(
        refused,
        vec![
            (
                "libalpha.so".into(),
                Some(PathBuf::from("../elsewhere/libalpha.so"))
            ),
            ("libdangling.so".into(), Some(PathBuf::from("nowhere.so"))),
            ("libpipe.so".into(), Some(fifo.clone())),
            ("libzero.so".into(), Some(PathBuf::from("/dev/zero"))),
        ]
    );
    let first = report.1[0].to_string();
    assert!(
        first.ends_with(
            "libalpha.so: refused by the file check: a symbolic link to \
             ../elsewhere/libalpha.so, not a library file: the loader does not follow links"
        ),
        "{first}"
    );
    assert!(report.1[0].reason.remedy().contains("instead of a link"));

    // The plugin directory itself may be reached through a link (the configuration's
    // choice); only the entries inside it must be files.
    let linked_dir = dir.path().join("linked-plugins");
    std::os::unix::fs::symlink(&elsewhere, &linked_dir).unwrap();
    std::fs::remove_file(&fifo).unwrap();
    let loader = plugins_common::loader(&[Approve::new(&real, "com.example.alpha")]);
    let report = loader.load_dir(&linked_dir).unwrap();
    assert_eq!(report.loaded.len(), 1, "{:?}", report.refused);
}

/// Bytes this thread has read through read(2) and friends so far.
fn bytes_read_by_this_thread() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/thread-self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("rchar:"))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn a_sparse_4_gib_file_is_refused_by_its_size_without_being_read() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("libhuge.so");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    let loader = loader(&[]);
    let started = std::time::Instant::now();
    let before = bytes_read_by_this_thread();
    let r = loader.load_file(&big).unwrap_err();
    let after = bytes_read_by_this_thread();
    assert!(
        matches!(
            *r.reason,
            RefusalReason::TooLarge {
                size: 4_294_967_296,
                limit: 67_108_864
            }
        ),
        "{r}"
    );
    assert_eq!(r.reason.check(), "size");
    assert!(started.elapsed() < Duration::from_secs(5));
    match (before, after) {
        (Some(before), Some(after)) => assert!(
            after - before < 64 * 1024,
            "{} bytes were read",
            after - before
        ),
        _ => eprintln!("no /proc/thread-self/io: the bytes read are not measured"),
    }
    // The scan refuses it the same way.
    let report = loader.load_dir(dir.path()).unwrap();
    assert_eq!(report.refused[0].reason.check(), "size");
}

#[test]
fn truncated_copies_of_a_shipped_plugin_are_refused_before_any_loader_sees_them() {
    let aurora = bmsfw_test_fixtures::vendor_library("aurora");
    let full = std::fs::read(&aurora).unwrap();
    validate_elf(&full).unwrap();
    let name = aurora.file_name().unwrap().to_string_lossy().into_owned();
    let mut seen = 0;
    for len in [4096usize, 65_536, 450_000, full.len() - 1] {
        if len >= full.len() {
            continue;
        }
        seen += 1;
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join(&name);
        std::fs::write(&copy, &full[..len]).unwrap();
        // Approve exactly the truncated bytes: the allowlist passes them, the ELF check
        // must not.
        let loader = loader(&[Approve::new(&copy, "com.aurora-energy.powercore")]);
        let report = loader.load_dir(dir.path()).unwrap();
        assert!(report.loaded.is_empty());
        let r = &report.refused[0];
        let RefusalReason::MalformedLibrary { detail } = &*r.reason else {
            panic!("{len}: {r}");
        };
        assert!(
            detail.contains(&format!("ends past the end of the {len}-byte file")),
            "{len}: {detail}"
        );
        assert!(!r.reason.was_opened());
        assert_eq!(r.reason.check(), "library");
        assert!(r.reason.remedy().contains("damaged, truncated"));
        eprintln!("{len} bytes: {r}");
        // Loading the file alone refuses it the same way.
        let alone = loader.load_file(&copy).unwrap_err();
        assert!(
            matches!(*alone.reason, RefusalReason::MalformedLibrary { .. }),
            "{alone}"
        );
    }
    assert!(seen >= 2, "the aurora library is only {} bytes", full.len());
}

#[test]
fn approved_bytes_load_only_under_their_approved_file_name() {
    let dir = tempfile::tempdir().unwrap();
    // "liba-copy.so" sorts before "libalpha.so", "libz-copy.so" after it.
    let a = install(dir.path(), "alpha", "libalpha.so");
    let early = install(dir.path(), "alpha", "liba-copy.so");
    let late = install(dir.path(), "alpha", "libz-copy.so");
    let loader = loader(&[Approve::new(&a, "com.example.alpha")]);
    let report = loader.load_dir(dir.path()).unwrap();
    let loaded: Vec<_> = report.loaded.iter().map(|l| l.path.clone()).collect();
    assert_eq!(loaded, vec![a.clone()]);
    let refused: Vec<_> = report
        .refused
        .iter()
        .map(|r| (r.path.clone(), r.reason.check()))
        .collect();
    assert_eq!(refused, vec![(early.clone(), "name"), (late, "name")]);
    for r in &report.refused {
        assert!(
            matches!(&*r.reason, RefusalReason::WrongFileName { expected } if expected == "libalpha.so"),
            "{r}"
        );
        assert!(!r.reason.was_opened());
        assert!(
            r.to_string().contains(
                "refused by the name check: these bytes are approved only under the file name \
                 libalpha.so, not under this one"
            ),
            "{r}"
        );
    }
    // One file alone, too.
    let r = loader.load_file(&early).unwrap_err();
    assert_eq!(r.reason.check(), "name", "{r}");
    assert!(loader.load_file(&a).is_ok());
}

#[test]
fn a_file_name_with_a_newline_cannot_forge_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let evil = install(dir.path(), "alpha", "evil\nbmsfw: loaded com.fake 1.0.0.so");
    let report = loader(&[]).load_dir(dir.path()).unwrap();
    let r = &report.refused[0];
    assert_eq!(r.path, evil);
    let text = r.to_string();
    assert!(!text.contains('\n'), "{text}");
    assert!(
        text.contains("evil\\nbmsfw: loaded com.fake 1.0.0.so: refused by the hash check"),
        "{text}"
    );
    // A duplicate names the first file escaped as well.
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "beta", "a\u{202e}os.evil.so");
    install(dir.path(), "beta", "b.so");
    let report = loader(&[]).load_dir(dir.path()).unwrap();
    let dup = report.refused[1].to_string();
    assert!(dup.contains("identical to "), "{dup}");
    assert!(dup.contains("a\\u{202e}os.evil.so"), "{dup}");
    assert!(!dup.contains('\u{202e}'), "{dup}");
}

#[test]
fn a_plugin_loader_still_loads_what_it_approves() {
    let dir = tempfile::tempdir().unwrap();
    let a = install(dir.path(), "alpha", "libalpha.so");
    let loaded = PluginLoader::new(plugins_common::allowlist(&[Approve::new(
        &a,
        "com.example.alpha",
    )]))
    .load_file(&a)
    .unwrap();
    assert_eq!(loaded.plugin.info().vendor_id.as_str(), "com.example.alpha");
}
