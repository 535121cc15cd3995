//! A refused library is never opened. The `ctor-marker` fixture's ELF constructor writes
//! a marker file the moment the dynamic loader maps it; refusals must leave no marker,
//! and (the control that proves the test can fail) an approved load must leave one.
//!
//! One test in its own process: the fixture reads the marker path from the environment.

mod plugins_common;

use bmsfw_core::plugin::RefusalReason;
use plugins_common::{Approve, install, loader};

#[test]
fn refused_libraries_never_run_their_constructors_and_approved_ones_do() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("constructor-ran");
    // SAFETY: this process runs this one test; no other thread reads the environment.
    unsafe { std::env::set_var(bmsfw_test_fixtures::MARKER_ENV, &marker) };
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let lib = install(&plugins, "ctor-marker", "libmarker.so");

    // Unknown hash.
    let r = loader(&[]).load_file(&lib).unwrap_err();
    assert!(
        matches!(*r.reason, RefusalReason::UnknownHash { .. }),
        "{r}"
    );
    assert!(!marker.exists(), "an unknown library was opened");

    // Known hash, review pending; and compliance failed.
    for (review, compliance) in [("pending", "passed"), ("passed", "failed")] {
        let entry = Approve {
            review,
            compliance,
            ..Approve::new(&lib, "com.example.marker")
        };
        let report = loader(&[entry]).load_dir(&plugins).unwrap();
        assert_eq!(report.refused.len(), 1);
        assert!(
            !marker.exists(),
            "a library with review {review}, compliance {compliance} was opened"
        );
    }

    // Tampered: approved bytes, then one byte changed.
    let approved = loader(&[Approve::new(&lib, "com.example.marker")]);
    let original = std::fs::read(&lib).unwrap();
    let mut changed = original.clone();
    let last = changed.len() - 1;
    changed[last] ^= 0xFF;
    std::fs::write(&lib, &changed).unwrap();
    let r = approved.load_file(&lib).unwrap_err();
    assert!(matches!(*r.reason, RefusalReason::Tampered { .. }), "{r}");
    assert!(!marker.exists(), "a tampered library was opened");

    // The approved bytes load in a plugin host, whose environment is cleared: the
    // constructor runs there without the marker path.
    std::fs::write(&lib, &original).unwrap();
    let loaded = approved.load_file(&lib).unwrap();
    assert_eq!(
        loaded.plugin.info().vendor_id.as_str(),
        "com.example.marker"
    );
    assert!(
        !marker.exists(),
        "the plugin host passed the engine's environment to the plugin"
    );

    // Control: loaded into this process (asked for by name), the constructor runs.
    let loaded = loader(&[Approve::new(&lib, "com.example.marker")])
        .in_process()
        .load_file(&lib)
        .unwrap();
    assert_eq!(
        loaded.plugin.info().vendor_id.as_str(),
        "com.example.marker"
    );
    assert!(
        marker.exists(),
        "the constructor of an approved library did not run"
    );
}
