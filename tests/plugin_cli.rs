//! `bmsfw plugin check` and `bmsfw plugin list`, run as the built binary on fixture
//! plugin libraries.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bmsfw(args: &[&std::ffi::OsStr], marker: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bmsfw"));
    cmd.args(args).env("RUST_LOG", "warn");
    match marker {
        Some(m) => cmd.env(bmsfw_test_fixtures::MARKER_ENV, m),
        None => cmd.env_remove(bmsfw_test_fixtures::MARKER_ENV),
    };
    cmd.output().expect("the bmsfw binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The value of the `label:` line of `check`'s output.
fn value_of(out: &str, label: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{label}:")))
        .map(|v| v.trim().to_owned())
}

fn install(dir: &Path, name: &str, file: &str) -> PathBuf {
    let to = dir.join(file);
    std::fs::copy(bmsfw_test_fixtures::library(name), &to).unwrap();
    to
}

#[test]
fn check_prints_the_same_sha256_as_sha256sum() {
    let dir = tempfile::tempdir().unwrap();
    let lib = install(dir.path(), "alpha", "libalpha.so");
    let allowlist = dir.path().join("allowlist.toml");
    std::fs::write(&allowlist, "").unwrap();

    let out = bmsfw(
        &[
            "plugin".as_ref(),
            "check".as_ref(),
            lib.as_os_str(),
            "--allowlist".as_ref(),
            allowlist.as_os_str(),
        ],
        None,
    );
    let text = stdout(&out);
    let ours = value_of(&text, "sha256").expect("a sha256 line");

    let sum = Command::new("sha256sum")
        .arg(&lib)
        .output()
        .expect("sha256sum runs");
    let theirs = String::from_utf8_lossy(&sum.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(ours, theirs);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an unlisted library is refused:\n{text}"
    );
    assert!(text.contains("REFUSED by the hash check"), "{text}");
}

#[test]
fn check_opens_an_unapproved_library_only_when_asked_and_its_entry_approves_it() {
    let dir = tempfile::tempdir().unwrap();
    let lib = install(dir.path(), "ctor-marker", "libmarker.so");
    let marker = dir.path().join("marker");
    let allowlist = dir.path().join("allowlist.toml");
    std::fs::write(&allowlist, "").unwrap();
    let base: Vec<&std::ffi::OsStr> = vec![
        "plugin".as_ref(),
        "check".as_ref(),
        lib.as_os_str(),
        "--allowlist".as_ref(),
        allowlist.as_os_str(),
    ];

    let out = bmsfw(&base, Some(&marker));
    let text = stdout(&out);
    assert!(text.contains("not opened"), "{text}");
    assert!(value_of(&text, "vendor id").is_none(), "{text}");
    assert!(!marker.exists(), "check opened an unapproved library");

    let mut open = base.clone();
    open.extend(
        [
            "--open-unapproved",
            "--product",
            "MARKER:0x0C03",
            "--firmware",
            "1.0..1.9",
        ]
        .map(std::ffi::OsStr::new),
    );
    let out = bmsfw(&open, Some(&marker));
    let text = stdout(&out);
    // Opened in a plugin host, whose environment is empty: the constructor ran there
    // without the marker path, and the identity below proves the library was opened.
    assert!(
        !marker.exists(),
        "the plugin host passed the environment on to the library"
    );
    assert_eq!(
        value_of(&text, "vendor id").as_deref(),
        Some("com.example.marker"),
        "{text}"
    );
    assert_eq!(
        value_of(&text, "contract").as_deref(),
        Some("1.1 (this engine: 1.1)")
    );
    assert_eq!(out.status.code(), Some(1), "still not approved");

    // The integrator pastes the printed entry, and records the review and compliance.
    let entry = &text[text.find("[[plugin]]").expect("an entry is printed")..];
    let approved = entry.replace("status = \"pending\"", "status = \"passed\"");
    std::fs::write(&allowlist, approved).unwrap();
    let out = bmsfw(&base, Some(&marker));
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("approved: loads and passes every check"),
        "{text}"
    );
}

#[test]
fn list_shows_every_library_of_the_plugin_directory_with_its_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let alpha = install(&plugins, "alpha", "libalpha.so");
    install(&plugins, "beta", "libbeta.so");
    let hash = |p: &Path| {
        let out = Command::new("sha256sum").arg(p).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    std::fs::write(
        dir.path().join("allowlist.toml"),
        format!(
            r#"[[plugin]]
vendor_id = "com.example.alpha"
file = "libalpha.so"
sha256 = "{}"
versions = "^1.2"
firmware = {{ from = "1.0", to = "1.99" }}
products = [{{ manufacturer = "ALPHA", product_codes = [0x0A01] }}]
review = {{ status = "passed", date = 2025-01-02 }}
compliance = {{ status = "passed", date = 2025-01-03 }}
"#,
            hash(&alpha)
        ),
    )
    .unwrap();
    let config = dir.path().join("gx.toml");
    std::fs::write(
        &config,
        "portal_id = \"abc\"\nstate_dir = \"state\"\n[plugins]\ndir = \"plugins\"\nallowlist = \"allowlist.toml\"\n",
    )
    .unwrap();

    let out = bmsfw(
        &[
            "plugin".as_ref(),
            "list".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
        ],
        None,
    );
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "libalpha.so: loaded com.example.alpha 1.2.0 (contract 1.1), sha256 {}",
            hash(&alpha)
        )),
        "{text}"
    );
    assert!(
        text.contains("libbeta.so: REFUSED by the hash check"),
        "{text}"
    );
    assert!(text.contains("2 libraries: 1 loaded, 1 refused"), "{text}");
    assert_eq!(out.status.code(), Some(1));

    std::fs::remove_file(plugins.join("libbeta.so")).unwrap();
    let out = bmsfw(
        &[
            "plugin".as_ref(),
            "list".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));

    // A configuration error names the file, line and column.
    std::fs::write(
        &config,
        "portal_id = \"abc\"\n[plugins]\ndirectory = \"x\"\n",
    )
    .unwrap();
    let out = bmsfw(
        &[
            "plugin".as_ref(),
            "list".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
        ],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:3:1", config.display())), "{err}");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_file_name_with_a_newline_cannot_forge_a_line_of_list_check_or_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let forged = "bmsfw: loaded com.fake 1.0.0";
    let evil = install(&plugins, "alpha", &format!("evil\n{forged}.so"));
    std::fs::write(dir.path().join("allowlist.toml"), "").unwrap();
    let config = dir.path().join("gx.toml");
    std::fs::write(
        &config,
        "portal_id = \"abc\"\nstate_dir = \"state\"\n[plugins]\ndir = \"plugins\"\nallowlist = \"allowlist.toml\"\n",
    )
    .unwrap();
    // Run from another folder, output piped, the log on.
    let run = |args: &[&std::ffi::OsStr]| {
        Command::new(env!("CARGO_BIN_EXE_bmsfw"))
            .args(args)
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .env_remove(bmsfw_test_fixtures::MARKER_ENV)
            .output()
            .expect("the bmsfw binary runs")
    };
    let list = run(&[
        "plugin".as_ref(),
        "list".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    let check = run(&[
        "plugin".as_ref(),
        "check".as_ref(),
        evil.as_os_str(),
        "--allowlist".as_ref(),
        dir.path().join("allowlist.toml").as_os_str(),
    ]);
    for (what, out) in [("list", &list), ("check", &check)] {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !text.lines().any(|l| l.trim_start().starts_with(forged)),
            "{what} printed a forged line:\n{text}"
        );
        assert!(
            text.contains("evil\\nbmsfw: loaded com.fake 1.0.0.so"),
            "{what}:\n{text}"
        );
        assert_eq!(out.status.code(), Some(1), "{what}:\n{text}");
    }
    let text = stdout(&list);
    assert!(
        text.contains("evil\\nbmsfw: loaded com.fake 1.0.0.so: REFUSED by the hash check"),
        "{text}"
    );
    assert!(text.contains("1 libraries: 0 loaded, 1 refused"), "{text}");
}
