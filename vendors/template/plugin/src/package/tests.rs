//! The parser against packages laid out by hand, damaged one field at a time, and
//! against any bytes at all.

use super::*;
use crate::testing::{image, package, reader, reader_with};
use bmsfw_plugin_api::{LocationKind, PackageError};
use bmsfw_protocols::checksum::sha256;

const PRODUCT: u16 = 0xAC10;

fn inspect_bytes(bytes: Vec<u8>) -> Result<PackageInfo, PackageError> {
    inspect(&mut reader(bytes))
}

/// The error's code and byte offset.
fn refusal(bytes: Vec<u8>) -> (ErrorCode, u64, String) {
    let e = inspect_bytes(bytes).expect_err("the package must be refused");
    assert_eq!(e.location.kind, LocationKind::BYTE_OFFSET, "{e}");
    (e.code, e.location.value, e.message.into_string())
}

/// `p` with the header CRC recomputed, so that a damaged field is reached.
fn resealed(mut p: Vec<u8>) -> Vec<u8> {
    let crc = crc32(&p[..20]);
    p[20..24].copy_from_slice(&crc.to_le_bytes());
    p
}

#[test]
fn a_valid_package_reports_its_product_version_size_and_digest() {
    let bytes = package(PRODUCT, [1, 12], &image(200_000));
    // Read in 1000-byte pieces, as a slow source would hand them out.
    let info = inspect(&mut reader_with(bytes.clone(), 1000)).unwrap();
    assert_eq!(info.version.display.as_str(), "v1.12");
    assert_eq!(info.image_size, bytes.len() as u64);
    assert_eq!(info.image_sha256, sha256(&bytes));
    assert_eq!(info.targets.len(), 1);
    assert_eq!(info.targets[0].manufacturer.as_str(), "ACME");
    assert_eq!(info.targets[0].product_code.into_option(), Some(PRODUCT));
    assert_eq!(info.signature, SignatureStatus::UNSIGNED);
}

#[test]
fn each_damaged_field_is_named_with_its_offset() {
    let good = package(PRODUCT, [1, 12], &image(5000));

    let mut p = good.clone();
    p[0] = b'X';
    let (code, at, msg) = refusal(p);
    assert_eq!((code, at), (ErrorCode::PACKAGE_INVALID, 0));
    assert!(msg.contains("not an Acme package"), "{msg}");

    let mut p = good.clone();
    p[4] = 2;
    assert_eq!(refusal(resealed(p)).1, 4, "header format");

    let mut p = good.clone();
    p[9] ^= 1;
    let (_, at, msg) = refusal(p);
    assert_eq!(at, 20, "a changed byte breaks the header CRC");
    assert!(msg.contains("damaged"), "{msg}");

    let mut p = good.clone();
    p[10] = 1;
    assert_eq!(refusal(resealed(p)).1, 10, "reserved bytes");

    let mut p = good.clone();
    p[6..8].copy_from_slice(&0xA520u16.to_le_bytes());
    let (code, at, _) = refusal(resealed(p));
    assert_eq!((code, at), (ErrorCode::PACKAGE_WRONG_PRODUCT, 6));

    let mut p = good.clone();
    p[12..16].copy_from_slice(&0u32.to_le_bytes());
    assert_eq!(refusal(resealed(p)).1, 12, "an empty image");

    let mut p = good.clone();
    p[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(refusal(resealed(p)).1, 12, "an image above a slot");

    let (_, at, msg) = refusal(good[..3000].to_vec());
    assert_eq!(at, 3000);
    assert!(msg.contains("truncated"), "{msg}");

    let (_, at, msg) = refusal(good[..10].to_vec());
    assert_eq!(at, 10);
    assert!(msg.contains("inside the 24-byte header"), "{msg}");

    let mut p = good.clone();
    p.push(0);
    assert_eq!(refusal(p).1, good.len() as u64, "trailing bytes");

    let mut p = good.clone();
    p[3000] ^= 0x40;
    let (code, at, msg) = refusal(p);
    assert_eq!((code, at), (ErrorCode::PACKAGE_INVALID, 16));
    assert!(msg.contains("CRC-32"), "{msg}");
}

proptest::proptest! {
    #[test]
    fn any_bytes_are_refused_or_read_without_panicking(
        bytes in proptest::collection::vec(0u8..=255, 0..200),
    ) {
        // Random bytes: never a panic, and an error always has a place.
        if let Err(e) = inspect_bytes(bytes) {
            proptest::prop_assert!(e.location.kind == LocationKind::BYTE_OFFSET);
        }
    }

    #[test]
    fn any_one_byte_damage_or_truncation_is_refused(
        at in 0usize..1024, xor in 1u8..=255, cut in 0usize..1024,
    ) {
        let good = package(PRODUCT, [1, 12], &image(1000));
        let mut damaged = good.clone();
        damaged[at] ^= xor;
        proptest::prop_assert!(inspect_bytes(damaged).is_err());
        proptest::prop_assert!(inspect_bytes(good[..cut].to_vec()).is_err());
    }
}
