//! A plugin that panics: every panic reaches the engine as PLUGIN_FAULT and the process
//! lives on (the test process itself would abort if a panic crossed the boundary).

mod plugins_common;

use bmsfw_core::plugin::{BatteryMatch, PackageRead, RefusalReason, SessionPhase, SessionStart};
use bmsfw_plugin_api::{BatteryIdentity, CanFrame, CanId, ErrorCode, SessionOptions, Timestamp};
use plugins_common::{Approve, install, loader};
use std::sync::Arc;

fn package() -> Arc<dyn PackageRead> {
    let mut p = b"SPKG".to_vec();
    p.extend_from_slice(&0x0E05u16.to_le_bytes());
    p.extend_from_slice(&[2, 0]);
    p.extend_from_slice(&[0xAA; 32]);
    Arc::new(p)
}

fn start(modules: Vec<u16>) -> SessionStart {
    SessionStart {
        battery: BatteryIdentity::new("PANICKY").with_product_code(0x0E05),
        package: package(),
        options: SessionOptions {
            modules: modules.into(),
            ..SessionOptions::default()
        },
        resume: None,
    }
}

#[test]
fn a_panicking_identity_refuses_the_library_with_plugin_fault() {
    let dir = tempfile::tempdir().unwrap();
    let p = install(dir.path(), "panic-identity", "libpanic-identity.so");
    let a = install(dir.path(), "alpha", "libzz-alpha.so");
    let report = loader(&[
        Approve::new(&p, "com.example.panic-identity"),
        Approve::new(&a, "com.example.alpha"),
    ])
    .load_dir(dir.path())
    .unwrap();
    let RefusalReason::IdentityFailed(failure) = &*report.refused[0].reason else {
        panic!("expected an identity refusal, got {}", report.refused[0]);
    };
    assert_eq!(failure.code, ErrorCode::PLUGIN_FAULT);
    assert!(
        failure.message.contains("identity always panics"),
        "{failure}"
    );
    // The scan went on: the next library loaded in the same process.
    assert_eq!(report.loaded.len(), 1);
    assert_eq!(
        report.loaded[0].plugin.info().vendor_id.as_str(),
        "com.example.alpha"
    );
}

#[test]
fn panics_in_entry_points_and_sessions_reach_the_engine_as_plugin_faults() {
    let dir = tempfile::tempdir().unwrap();
    let p = install(dir.path(), "panicking", "libpanicking.so");
    let plugin = loader(&[Approve::new(&p, "com.example.panicking")])
        .load_file(&p)
        .unwrap()
        .plugin;

    let e = plugin
        .match_battery(&BatteryIdentity::new("PANIC"))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PLUGIN_FAULT);
    assert!(e.message.contains("match_battery"), "{e}");

    let e = plugin.decode_version(&[0xDE, 0xAD]).unwrap_err();
    assert_eq!(e.code, ErrorCode::PLUGIN_FAULT);

    let e = plugin
        .inspect_package(Arc::new(b"PANIC and more".to_vec()))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PLUGIN_FAULT);
    assert!(e.message.contains("inspect_package"), "{e}");

    let e = plugin
        .start_session(start(vec![666]))
        .err()
        .expect("start_session must fail");
    assert_eq!(e.code, ErrorCode::PLUGIN_FAULT);

    // After all those panics the plugin still answers normal calls.
    let battery = BatteryIdentity::new("PANICKY").with_product_code(0x0E05);
    assert_eq!(
        plugin.match_battery(&battery).unwrap(),
        BatteryMatch::Updatable
    );
    assert_eq!(plugin.inspect_package(package()).unwrap().image_size, 32);

    // A session method that panics: failed with PLUGIN_FAULT, for good.
    let rx = CanId::standard(0x7EB).unwrap();
    let now = Timestamp::from_micros(10);
    let mut s = plugin.start_session(start(vec![])).unwrap();
    assert!(s.poll_transmit(now).is_some());
    s.handle_frame(now, &CanFrame::new(rx, &[0xDE, 0xAD]).unwrap());
    for _ in 0..2 {
        let report = s.status();
        assert_eq!(report.phase, SessionPhase::Failed);
        let failure = report.failure.unwrap();
        assert_eq!(failure.code, ErrorCode::PLUGIN_FAULT);
        assert!(failure.message.contains("handle_frame"), "{failure}");
        assert!(s.poll_transmit(now).is_none());
        assert!(s.poll_timeout().is_none());
        assert!(s.checkpoint().is_empty());
    }

    // A panic in poll_transmit, armed by a frame.
    let mut s = plugin.start_session(start(vec![])).unwrap();
    s.handle_frame(now, &CanFrame::new(rx, &[0xBE, 0xEF]).unwrap());
    assert!(s.poll_transmit(now).is_none());
    let failure = s.status().failure.unwrap();
    assert_eq!(failure.code, ErrorCode::PLUGIN_FAULT);
    assert!(failure.message.contains("poll_transmit"), "{failure}");
}
