//! The plugin loader against real plugin libraries (the fixtures of
//! `tests/fixtures/plugins`): identities, refusals, ABI checks, panics.

mod plugins_common;

use bmsfw_core::plugin::{
    BatteryMatch, LoadMethod, PackageRead, PluginLoader, RefusalReason, SessionPhase, SessionStart,
};
use bmsfw_plugin_api::{BatteryIdentity, CanFrame, CanId, ErrorCode, SessionOptions, Timestamp};
use plugins_common::{Approve, install, loader};
use std::sync::Arc;
use std::time::Duration;

fn alpha_battery() -> BatteryIdentity {
    BatteryIdentity::new("ALPHA").with_product_code(0x0A01)
}

/// An SPKG package (the fixtures' format) for `product` with `image`.
fn spkg(product: u16, image: &[u8]) -> Arc<dyn PackageRead> {
    let mut p = b"SPKG".to_vec();
    p.extend_from_slice(&product.to_le_bytes());
    p.extend_from_slice(&[1, 7]);
    p.extend_from_slice(image);
    Arc::new(p)
}

#[test]
fn two_libraries_in_one_process_each_answer_with_their_own_identity() {
    let dir = tempfile::tempdir().unwrap();
    let a = install(dir.path(), "alpha", "libalpha.so");
    let b = install(dir.path(), "beta", "libbeta.so");
    let loader = loader(&[
        Approve::new(&a, "com.example.alpha"),
        Approve::new(&b, "com.example.beta"),
    ]);
    let report = loader.load_dir(dir.path()).unwrap();
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    assert_eq!(report.loaded.len(), 2);
    let alpha = &report.loaded[0].plugin;
    let beta = &report.loaded[1].plugin;
    assert_eq!(alpha.info().vendor_id.as_str(), "com.example.alpha");
    assert_eq!(alpha.info().version, semver::Version::new(1, 2, 0));
    assert_eq!(beta.info().vendor_id.as_str(), "com.example.beta");
    assert_eq!(beta.info().version, semver::Version::new(0, 3, 1));
    assert!(alpha.info().may_send(CanId::standard(0x7E0).unwrap()));
    assert!(beta.info().may_send(CanId::standard(0x640).unwrap()));
    assert!(!beta.info().may_send(CanId::standard(0x7E0).unwrap()));

    // Each call reaches its own library's code.
    assert_eq!(
        alpha.match_battery(&alpha_battery()).unwrap(),
        BatteryMatch::Updatable
    );
    assert_eq!(
        beta.match_battery(&alpha_battery()).unwrap(),
        BatteryMatch::NotMine
    );
    let beta_battery = BatteryIdentity::new("BETA").with_product_code(0x0B02);
    assert_eq!(
        beta.match_battery(&beta_battery).unwrap(),
        BatteryMatch::Updatable
    );
    assert_eq!(
        alpha.match_battery(&beta_battery).unwrap(),
        BatteryMatch::NotMine
    );
    assert_eq!(
        report.loaded[0].entry.vendor_id.as_str(),
        "com.example.alpha"
    );
}

#[test]
fn a_loaded_plugin_decodes_inspects_and_runs_a_session_through_the_engine_trait() {
    let dir = tempfile::tempdir().unwrap();
    let a = install(dir.path(), "alpha", "libalpha.so");
    let loaded = loader(&[Approve::new(&a, "com.example.alpha")])
        .load_file(&a)
        .unwrap();
    let plugin = loaded.plugin;

    let v = plugin.decode_version(&[4, 15]).unwrap();
    assert_eq!(
        (v.display.as_str(), v.comparable.as_slice()),
        ("v4.15", &[4, 15][..])
    );
    assert_eq!(
        plugin.decode_version(&[4]).unwrap_err().code,
        ErrorCode::PROTOCOL_ERROR
    );

    let image: Vec<u8> = (0..20).collect();
    let summary = plugin.inspect_package(spkg(0x0A01, &image)).unwrap();
    assert_eq!(summary.image_size, 20);
    assert_eq!(summary.version.display, "v1.07");
    assert_eq!(
        summary.image_sha256,
        bmsfw_core::plugin::Sha256Digest::of(&image)
    );
    let wrong = plugin.inspect_package(spkg(0x0B02, &image)).unwrap_err();
    assert_eq!(wrong.code, ErrorCode::PACKAGE_WRONG_PRODUCT);
    assert_eq!(
        wrong.place,
        bmsfw_core::plugin::types::PackagePlace::ByteOffset(4)
    );

    // Drive a session as the pipeline will: frames out, a simulated BMS acks each.
    let mut session = plugin
        .start_session(SessionStart {
            battery: alpha_battery(),
            package: spkg(0x0A01, &image),
            options: SessionOptions::default(),
            resume: None,
        })
        .unwrap();
    let rx = CanId::standard(0x7E8).unwrap();
    let mut now = Timestamp::from_micros(1_000);
    let mut received = Vec::new();
    for _ in 0..10 {
        let Some(out) = session.poll_transmit(now) else {
            break;
        };
        assert!(plugin.info().may_send(out.id()));
        let ack = if out.data() == [0xFF] {
            vec![0x06, 0xFF]
        } else {
            received.extend_from_slice(&out.data()[1..]);
            vec![0x06, out.data()[0]]
        };
        now = now + Duration::from_millis(1);
        session.handle_frame(now, &CanFrame::new(rx, &ack).unwrap());
    }
    let report = session.status();
    assert_eq!(report.phase, SessionPhase::Done, "{report:?}");
    assert_eq!((report.bytes_done, report.bytes_total), (20, 20));
    assert_eq!(
        received, image,
        "the image was streamed from the engine's package"
    );
    assert_eq!(session.checkpoint(), 20u64.to_le_bytes());

    // A silent BMS: the session's own deadline fails it with TIMEOUT.
    let mut silent = plugin
        .start_session(SessionStart {
            battery: alpha_battery(),
            package: spkg(0x0A01, &image),
            options: SessionOptions::default(),
            resume: Some(14u64.to_le_bytes().to_vec()),
        })
        .unwrap();
    assert_eq!(
        silent.status().bytes_done,
        14,
        "resumed from the checkpoint"
    );
    assert!(silent.poll_transmit(now).is_some());
    let deadline = silent.poll_timeout().unwrap();
    silent.handle_timeout(deadline);
    let report = silent.status();
    assert_eq!(report.phase, SessionPhase::Failed);
    assert_eq!(report.failure.unwrap().code, ErrorCode::TIMEOUT);
}

#[test]
fn one_flipped_byte_is_refused_as_tampered_without_opening() {
    let dir = tempfile::tempdir().unwrap();
    let a = install(dir.path(), "alpha", "libalpha.so");
    let loader = loader(&[Approve::new(&a, "com.example.alpha")]);
    let mut bytes = std::fs::read(&a).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&a, &bytes).unwrap();

    let refusal = loader.load_file(&a).unwrap_err();
    let RefusalReason::Tampered { expected, found } = &*refusal.reason else {
        panic!("expected a tampered refusal, got {refusal}");
    };
    assert_ne!(expected[0], *found);
    assert_eq!(refusal.reason.check(), "hash");
    assert!(!refusal.reason.was_opened());
    let text = refusal.to_string();
    assert!(text.contains(&expected[0].to_string()) && text.contains(&found.to_string()));
}

#[test]
fn unknown_and_unpassed_libraries_are_refused_before_opening() {
    let dir = tempfile::tempdir().unwrap();
    let a = install(dir.path(), "alpha", "libalpha.so");
    let b = install(dir.path(), "beta", "libbeta.so");
    let unknown = loader(&[]).load_file(&a).unwrap_err();
    assert!(
        matches!(*unknown.reason, RefusalReason::UnknownHash { .. }),
        "{unknown}"
    );

    let pending = Approve {
        review: "pending",
        ..Approve::new(&a, "com.example.alpha")
    };
    let failed = Approve {
        compliance: "failed",
        ..Approve::new(&b, "com.example.beta")
    };
    let report = loader(&[pending, failed]).load_dir(dir.path()).unwrap();
    assert!(report.loaded.is_empty());
    let reasons: Vec<String> = report.refused.iter().map(|r| r.to_string()).collect();
    assert!(
        matches!(
            *report.refused[0].reason,
            RefusalReason::ReviewNotPassed { .. }
        ),
        "{reasons:?}"
    );
    assert!(reasons[0].contains("pending") && reasons[0].contains("2025-03-14"));
    assert!(
        matches!(
            *report.refused[1].reason,
            RefusalReason::ComplianceNotPassed { .. }
        ),
        "{reasons:?}"
    );
    assert!(report.refused.iter().all(|r| !r.reason.was_opened()));
}

#[test]
fn a_different_contract_major_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let f = install(dir.path(), "contract-v2", "libfuture.so");
    let refusal = loader(&[Approve::new(&f, "com.example.future")])
        .load_file(&f)
        .unwrap_err();
    let RefusalReason::ContractMismatch { expected, found } = &*refusal.reason else {
        panic!("expected a contract refusal, got {refusal}");
    };
    assert_eq!(*expected, bmsfw_plugin_api::CONTRACT_VERSION);
    assert_eq!(found, "2.0");
    let text = refusal.to_string();
    assert!(
        text.contains("contract 2.0") && text.contains("contract 1.1"),
        "{text}"
    );
}

#[test]
fn a_root_module_of_another_layout_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let f = install(dir.path(), "layout-mismatch", "liblayout.so");
    let refusal = loader(&[Approve::new(&f, "com.example.layout")])
        .load_file(&f)
        .unwrap_err();
    let RefusalReason::LayoutMismatch { detail, .. } = &*refusal.reason else {
        panic!("expected a layout refusal, got {refusal}");
    };
    let text = refusal.to_string();
    assert!(
        text.contains("(contract 1.0) differs from the engine's (contract 1.1)"),
        "{text}"
    );
    // abi_stable's differences, down to the type `identity` returns.
    assert!(
        detail.contains("Expected: PluginIdentity Found: RString"),
        "{detail}"
    );
    assert!(
        detail.contains("incompatible type size Expected: 40 Found: 16;"),
        "{detail}"
    );
    assert!(
        !detail.contains("Type Layout"),
        "only the differences are kept: {detail}"
    );
    assert_eq!(refusal.reason.check(), "layout");
}

#[test]
fn vendor_id_and_version_must_match_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let a = install(dir.path(), "alpha", "libalpha.so");
    let r = loader(&[Approve::new(&a, "com.example.beta")])
        .load_file(&a)
        .unwrap_err();
    assert!(
        matches!(&*r.reason, RefusalReason::VendorMismatch { expected, found }
            if expected.as_str() == "com.example.beta" && found == "com.example.alpha"),
        "{r}"
    );
    let old_range = Approve {
        versions: ">=1.0.0, <1.2.0",
        ..Approve::new(&a, "com.example.alpha")
    };
    let r = loader(&[old_range]).load_file(&a).unwrap_err();
    assert!(
        r.to_string()
            .contains("plugin version 1.2.0 is outside the approved range >=1.0.0, <1.2.0"),
        "{r}"
    );
}

#[test]
fn duplicates_are_refused_and_the_scan_goes_on_past_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let a1 = install(dir.path(), "alpha", "liba1.so");
    let a2 = install(dir.path(), "alpha", "liba2.so");
    // The same library with one byte appended: another hash, the same vendor.
    let a3 = install(dir.path(), "alpha", "liba3.so");
    let mut bytes = std::fs::read(&a3).unwrap();
    bytes.push(0);
    std::fs::write(&a3, &bytes).unwrap();
    let junk = dir.path().join("libjunk.so");
    std::fs::write(&junk, b"this is not an ELF file").unwrap();
    let b = install(dir.path(), "beta", "libz-beta.so");
    std::fs::write(dir.path().join("README.txt"), b"not a library").unwrap();

    let loader = loader(&[
        Approve::new(&a1, "com.example.alpha"),
        Approve::new(&a3, "com.example.alpha"),
        Approve::new(&junk, "com.example.junk"),
        Approve::new(&b, "com.example.beta"),
    ]);
    let report = loader.load_dir(dir.path()).unwrap();
    let loaded: Vec<_> = report.loaded.iter().map(|l| l.path.clone()).collect();
    assert_eq!(loaded, vec![a1.clone(), b]);
    let refused: Vec<_> = report
        .refused
        .iter()
        .map(|r| (r.path.clone(), r.reason.check()))
        .collect();
    // liba2.so holds approved bytes under another name than their entry's: refused for
    // its name (see plugin_files.rs).
    assert_eq!(
        refused,
        vec![(a2, "name"), (a3, "duplicate"), (junk.clone(), "library")]
    );
    assert!(matches!(
        *report.refused[1].reason,
        RefusalReason::DuplicateVendor { .. }
    ));
    assert!(report.refused[2].to_string().contains("libjunk.so"));
}

#[test]
fn a_private_copy_loads_too_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let copies = tempfile::tempdir().unwrap();
    let a = install(dir.path(), "alpha", "libalpha.so");
    let loaded = loader(&[Approve::new(&a, "com.example.alpha")])
        .with_method(LoadMethod::PrivateCopy {
            dir: copies.path().to_path_buf(),
        })
        .load_file(&a)
        .unwrap();
    assert_eq!(loaded.plugin.info().vendor_id.as_str(), "com.example.alpha");
    assert_eq!(std::fs::read_dir(copies.path()).unwrap().count(), 0);
}

#[test]
fn oversized_files_are_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let a = install(dir.path(), "alpha", "libalpha.so");
    let r = PluginLoader::new(plugins_common::allowlist(&[Approve::new(
        &a,
        "com.example.alpha",
    )]))
    .with_max_library_bytes(1024)
    .load_file(&a)
    .unwrap_err();
    assert!(
        matches!(*r.reason, RefusalReason::TooLarge { limit: 1024, .. }),
        "{r}"
    );
    let missing = loader(&[])
        .load_file(&dir.path().join("libnone.so"))
        .unwrap_err();
    assert_eq!(missing.reason.check(), "file");
    let err = PluginLoader::libraries_in(&dir.path().join("nowhere")).unwrap_err();
    assert!(err.to_string().contains("nowhere"), "{err}");
}

#[test]
fn a_plugin_of_a_newer_minor_contract_with_an_appended_entry_point_loads() {
    let dir = tempfile::tempdir().unwrap();
    let f = install(dir.path(), "contract-minor", "libminor.so");
    let loaded = loader(&[Approve::new(&f, "com.example.minor")])
        .load_file(&f)
        .unwrap_or_else(|r| panic!("a 1.1 plugin must load in a 1.0 engine: {r}"));
    let battery = BatteryIdentity::new("MINOR").with_product_code(0x0F06);
    assert_eq!(
        loaded.plugin.match_battery(&battery).unwrap(),
        BatteryMatch::Updatable
    );
}
