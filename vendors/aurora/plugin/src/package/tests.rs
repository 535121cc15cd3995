//! The package reader against packages written field by field from `PROTOCOL.md`.

use super::*;
use crate::testing::{image, package, reader, reader_with};
use bmsfw_plugin_api::abi_stable::sabi_trait::TD_Opaque;
use bmsfw_plugin_api::abi_stable::std_types::{RResult, RSliceMut};
use bmsfw_plugin_api::{LocationKind, PackageSource, PackageSource_TO, SourceError};
use bmsfw_protocols::checksum::sha256;

/// `p` with `bytes` written at `at` and the header CRC made right again.
fn patched(mut p: Vec<u8>, at: usize, bytes: &[u8]) -> Vec<u8> {
    p[at..at + bytes.len()].copy_from_slice(bytes);
    let crc = crc32(&p[..60]);
    p[60..64].copy_from_slice(&crc.to_le_bytes());
    p
}

fn good() -> Vec<u8> {
    package(0xA520, [4, 16], &image(3000))
}

/// The error's code, offset and message.
fn refusal(bytes: Vec<u8>) -> (ErrorCode, u64, String) {
    let e = inspect(&mut reader(bytes)).unwrap_err();
    assert_eq!(e.location.kind, LocationKind::BYTE_OFFSET, "{e}");
    (e.code, e.location.value, e.message.into_string())
}

#[test]
fn a_valid_package_says_what_it_holds() {
    let p = good();
    let info = inspect(&mut reader(p.clone())).unwrap();
    assert_eq!(info.version.display.as_str(), "v4.16");
    assert_eq!(info.version.raw.as_slice(), &[4, 16]);
    assert_eq!(info.image_size, 3064, "the whole file is transferred");
    assert_eq!(info.image_sha256, sha256(&p));
    assert_eq!(info.signature, SignatureStatus::UNSIGNED);
    assert_eq!(info.targets.len(), 1);
    assert_eq!(info.targets[0].manufacturer.as_str(), "AURORA");
    assert_eq!(info.targets[0].product_code.into_option(), Some(0xA520));
    assert!(info.modules.is_empty());
    let h = read_header(&reader(p)).unwrap();
    assert_eq!(h.min_bootloader, [2, 0]);
    assert_eq!(h.image_len, 3000);
}

#[test]
fn each_field_is_checked_and_named_with_its_offset() {
    let invalid = ErrorCode::PACKAGE_INVALID;
    let cases: Vec<(Vec<u8>, ErrorCode, u64, &str)> = vec![
        (
            good()[..40].to_vec(),
            invalid,
            40,
            "inside the 64-byte header",
        ),
        (
            patched(good(), 0, b"AUFX"),
            invalid,
            0,
            "not an Aurora package",
        ),
        (patched(good(), 4, &[2, 0]), invalid, 4, "header version 2"),
        (patched(good(), 6, &[65, 0]), invalid, 6, "header length 65"),
        (
            {
                let mut p = good();
                p[9] ^= 0x01;
                p
            },
            invalid,
            60,
            "header CRC-32",
        ),
        (patched(good(), 14, &[1, 0]), invalid, 14, "flags"),
        (patched(good(), 56, &[0, 0, 0, 1]), invalid, 56, "reserved"),
        (
            patched(good(), 8, &[0x34, 0x12]),
            ErrorCode::PACKAGE_WRONG_PRODUCT,
            8,
            "0x1234",
        ),
        (
            patched(good(), 16, &[0, 0, 0, 0]),
            invalid,
            16,
            "image length 0",
        ),
        (
            patched(good(), 16, &(4 * 1024 * 1024u32 - 63).to_le_bytes()),
            invalid,
            16,
            "outside 1 to 4194240",
        ),
        (good()[..3000].to_vec(), invalid, 3000, "truncated"),
        (
            [good(), vec![0xFF; 5]].concat(),
            invalid,
            3064,
            "5 bytes follow the image",
        ),
        (patched(good(), 20, &[0, 0, 0, 0]), invalid, 20, "CRC-32"),
        (patched(good(), 30, &[0]), invalid, 24, "SHA-256"),
        (
            {
                let mut p = good();
                p[64 + 1234] ^= 0x80;
                p
            },
            invalid,
            20,
            "damaged",
        ),
    ];
    for (bytes, code, offset, words) in cases {
        let (c, o, m) = refusal(bytes);
        assert_eq!((c, o), (code, offset), "{m}");
        assert!(m.contains(words), "{m:?} should mention {words:?}");
    }
}

#[test]
fn the_image_is_streamed_in_bounded_chunks() {
    let p = package(0xA510, [5, 0], &image(200_000));
    let (mut r, largest) = reader_with(p.clone(), 1000);
    let info = inspect(&mut r).unwrap();
    assert_eq!(info.image_sha256, sha256(&p));
    assert!(*largest.lock().unwrap() <= 64 * 1024);
}

#[test]
fn a_failing_source_is_a_package_error() {
    struct Broken;
    impl PackageSource for Broken {
        fn len(&self) -> u64 {
            1000
        }
        fn read_at(&self, _: u64, _: RSliceMut<'_, u8>) -> RResult<usize, SourceError> {
            RResult::RErr(SourceError {
                message: "disk gone".into(),
            })
        }
    }
    let mut r = PackageReader::new(PackageSource_TO::from_value(Broken, TD_Opaque));
    let e = inspect(&mut r).unwrap_err();
    assert_eq!(e.code, ErrorCode::PACKAGE_INVALID);
    assert!(e.message.contains("disk gone"), "{e}");
}

proptest::proptest! {
    #[test]
    fn any_bytes_are_refused_without_panicking(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
        proptest::prop_assert!(inspect(&mut reader(bytes)).is_err());
    }

    /// Every byte of a package is covered by a check: changing any one is refused.
    #[test]
    fn any_changed_byte_is_caught(at in 0usize..564, bit in 0u8..8) {
        let mut p = package(0xA530, [6, 2], &image(500));
        p[at] ^= 1 << bit;
        proptest::prop_assert!(inspect(&mut reader(p)).is_err());
    }
}
