use super::*;
use bmsfw_plugin_api::{
    FirmwareVersion, ModuleProgress, PackageError, PackageInfo, PluginIdentity, SessionStatus,
    TargetProduct,
    abi_stable::std_types::{ROption, RString, RVec},
};

fn identity() -> PluginIdentity {
    PluginIdentity::new("com.example.alpha", "Alpha", "1.2.0")
        .sends(CanIdRange::single(CanId::standard(0x7E0).unwrap()))
        .receives(CanIdRange::single(CanId::standard(0x7E8).unwrap()))
        .file_type("bin")
}

#[test]
fn a_good_identity_is_kept_whole() {
    let info = PluginInfo::from_abi(identity()).unwrap();
    assert_eq!(info.vendor_id.as_str(), "com.example.alpha");
    assert_eq!(info.version, semver::Version::new(1, 2, 0));
    assert!(info.may_send(CanId::standard(0x7E0).unwrap()));
    assert!(!info.may_send(CanId::standard(0x7E8).unwrap()));
    assert!(info.wants(CanId::standard(0x7E8).unwrap()));
    assert_eq!(info.file_types, vec!["bin".to_owned()]);
}

#[test]
fn identities_that_break_the_contract_are_refused_with_the_reason() {
    let cases: Vec<(PluginIdentity, &str)> = vec![
        (
            PluginIdentity::new("Com.Example", "A", "1.0.0"),
            "lowercase",
        ),
        (
            PluginIdentity::new("com.example", "A", "1.0"),
            "semantic version",
        ),
        (PluginIdentity::new("com.example", "", "1.0.0"), "the name"),
        (
            PluginIdentity::new("com.example", "x".repeat(MAX_NAME_LEN + 1), "1.0.0"),
            "the name",
        ),
        (
            PluginIdentity::new("com.example", "A", "1.0.0").file_type(".BIN"),
            "lowercase extension",
        ),
        (
            PluginIdentity::new("com.example", "A", "1.0.0").timeouts(DeclaredTimeouts {
                restart_silence_max_ms: 0,
                ..DeclaredTimeouts::default()
            }),
            "restart_silence_max_ms",
        ),
        (
            (0..=MAX_LIST_LEN).fold(PluginIdentity::new("com.example", "A", "1.0.0"), |id, _| {
                id.sends(CanIdRange::single(CanId::standard(1).unwrap()))
            }),
            "sends has 257 entries",
        ),
    ];
    for (id, words) in cases {
        let e = PluginInfo::from_abi(id).unwrap_err();
        assert!(e.contains(words), "{e:?} should mention {words:?}");
    }
}

#[test]
fn failures_keep_plugin_codes_and_fault_on_others() {
    let f = PluginFailure::from_abi(api::Failure::new(ErrorCode::TIMEOUT, "no answer"));
    assert_eq!(f.code, ErrorCode::TIMEOUT);
    let f = PluginFailure::from_abi(api::Failure::new(ErrorCode(950), "vendor thing"));
    assert_eq!(f.code, ErrorCode(950));
    let f = PluginFailure::from_abi(api::Failure::new(ErrorCode(721), "pretending a gate"));
    assert_eq!(f.code, ErrorCode::PLUGIN_FAULT);
    assert!(f.message.contains("721"), "{f}");
}

#[test]
fn messages_are_bounded_and_cleaned() {
    let long = "é".repeat(MAX_MESSAGE_LEN);
    let b = bounded(&long);
    assert!(b.len() <= MAX_MESSAGE_LEN + '…'.len_utf8());
    assert!(b.ends_with('…'));
    assert_eq!(bounded("a\u{1b}[2Jb\nc"), "a?[2Jb\nc");
}

#[test]
fn unknown_enumeration_values_are_faults() {
    let m = api::DeviceMatch {
        kind: MatchKind(7),
        reason: RString::new(),
    };
    assert_eq!(
        BatteryMatch::from_abi(m).unwrap_err().code,
        ErrorCode::PLUGIN_FAULT
    );
    assert_eq!(
        BatteryMatch::from_abi(api::DeviceMatch::mine_not_updatable("old bootloader")).unwrap(),
        BatteryMatch::MineNotUpdatable {
            reason: "old bootloader".into()
        }
    );
    let e = PackageRejection::from_abi(PackageError {
        location: api::Location {
            kind: LocationKind(9),
            value: 1,
        },
        ..PackageError::new(ErrorCode::PACKAGE_INVALID, "x")
    });
    assert_eq!(e.code, ErrorCode::PLUGIN_FAULT);
    let e = PackageRejection::from_abi(PackageError::at_line(
        ErrorCode::PACKAGE_INVALID,
        12,
        "bad record",
    ));
    assert_eq!(e.place, PackagePlace::Line(12));
    assert_eq!(e.to_string(), "760 PACKAGE_INVALID at line 12: bad record");
}

fn version() -> FirmwareVersion {
    FirmwareVersion::new(&[1, 2], "v1.02", &[1, 2])
}

fn package_info() -> PackageInfo {
    PackageInfo {
        targets: RVec::from(vec![TargetProduct::new("ALPHA", Some(0x0A01))]),
        version: version(),
        image_size: 100,
        image_sha256: [7; 32],
        signature: SignatureStatus::VALID,
        modules: RVec::new(),
    }
}

#[test]
fn package_reports_are_checked_against_the_package() {
    let s = PackageSummary::from_abi(package_info(), 108).unwrap();
    assert_eq!(s.signature, Signature::Valid);
    assert_eq!(s.targets[0].product_code, Some(0x0A01));
    assert_eq!(s.image_sha256, Sha256Digest([7; 32]));
    let e = PackageSummary::from_abi(package_info(), 99).unwrap_err();
    assert!(e.message.contains("larger than the 99-byte package"), "{e}");
    let bad = PackageInfo {
        signature: SignatureStatus(3),
        ..package_info()
    };
    assert_eq!(
        PackageSummary::from_abi(bad, 108).unwrap_err().code,
        ErrorCode::PLUGIN_FAULT
    );
    let bad = PackageInfo {
        version: FirmwareVersion::new(&[], "v", &[]),
        ..package_info()
    };
    assert!(PackageSummary::from_abi(bad, 108).is_err());
}

#[test]
fn session_statuses_must_be_coherent() {
    let ok = SessionReport::from_abi(SessionStatus::new(Phase::TRANSFERRING, 5, 10)).unwrap();
    assert_eq!(ok.phase, SessionPhase::Transferring);
    let failed = SessionReport::from_abi(SessionStatus::failed(
        api::Failure::new(ErrorCode::REJECTED_BY_BMS, "NRC 0x72"),
        5,
        10,
    ))
    .unwrap();
    assert_eq!(failed.failure.unwrap().code, ErrorCode::REJECTED_BY_BMS);

    let broken = [
        SessionStatus::new(Phase(0), 0, 0),
        SessionStatus::new(Phase::TRANSFERRING, 11, 10),
        SessionStatus::new(Phase::FAILED, 0, 10),
        SessionStatus {
            outcome: ROption::RSome(api::Failure::new(ErrorCode::TIMEOUT, "x")),
            ..SessionStatus::new(Phase::DONE, 10, 10)
        },
        SessionStatus {
            modules: RVec::from(vec![ModuleProgress {
                index: 0,
                state: ModuleState(42),
                version: ROption::RNone,
            }]),
            ..SessionStatus::new(Phase::TRANSFERRING, 0, 10)
        },
    ];
    for status in broken {
        let e = SessionReport::from_abi(status.clone()).unwrap_err();
        assert_eq!(e.code, ErrorCode::PLUGIN_FAULT, "{status:?}");
    }
}

#[test]
fn versions_compare_over_the_numbers_both_carry() {
    let v = |parts: &[u32]| DecodedVersion {
        raw: Vec::new(),
        display: format!("{parts:?}"),
        comparable: parts.to_vec(),
    };
    let broadcast = v(&[1, 0x10]);
    let build_2 = v(&[1, 0x10, 2]);
    let build_3 = v(&[1, 0x10, 3]);
    assert_eq!(build_3.order_against(&build_2), VersionOrder::Newer);
    assert_eq!(build_2.order_against(&build_3), VersionOrder::Older);
    assert_eq!(build_2.order_against(&build_2.clone()), VersionOrder::Same);
    // 0x35F shows no build: the same as far as it shows, in either direction.
    assert_eq!(
        build_2.order_against(&broadcast),
        VersionOrder::SameAsFarAsShown
    );
    assert_eq!(
        broadcast.order_against(&build_2),
        VersionOrder::SameAsFarAsShown
    );
    assert_eq!(
        v(&[1, 0x11, 0]).order_against(&broadcast),
        VersionOrder::Newer
    );
    assert_eq!(
        v(&[1, 0x0F, 9]).order_against(&broadcast),
        VersionOrder::Older
    );
    assert!(build_2.shown_by(&broadcast));
    assert!(!v(&[1, 0x11, 0]).shown_by(&broadcast));
    assert_eq!(broadcast.most_precise(&build_2), build_2);
    assert_eq!(build_2.most_precise(&broadcast), build_2);
    assert_eq!(build_2.most_precise(&build_3), build_2);
}
