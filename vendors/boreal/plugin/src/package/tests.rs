//! Packages laid out by hand from `PROTOCOL.md`.

use super::*;
use crate::protocol::FILL;
use crate::testing::{hex_file, hex_text, image, reader, reader_with, records, seal};
use bmsfw_plugin_api::Location;
use bmsfw_protocols::checksum::{crc32, sha256};
use ihex::Record;

const PRODUCT: u16 = 0xB210;

fn refused(file: Vec<u8>) -> PackageError {
    inspect(&mut reader(file)).unwrap_err()
}

/// The line of the record that writes image offset `at`, in a file of 32-byte records
/// starting at 0x08010000 (one upper-address record first).
fn line_of(at: usize) -> u64 {
    (at / 32 + 2) as u64
}

#[test]
fn a_package_says_what_it_holds() {
    let img = image(PRODUCT, [0x02, 0x15], 100_000);
    let file = hex_file(&img);
    let (mut package, largest) = reader_with(file, usize::MAX);
    let info = inspect(&mut package).unwrap();
    assert_eq!(info.version.display.as_str(), "2.15");
    assert_eq!(info.version.raw.as_slice(), &[0x02, 0x15]);
    assert_eq!(info.image_size, 100_000);
    assert_eq!(info.image_sha256, sha256(&img));
    assert_eq!(info.signature, SignatureStatus::UNSIGNED);
    assert_eq!(info.targets.len(), 1);
    assert_eq!(info.targets[0].manufacturer.as_str(), "BOREAL");
    assert_eq!(info.targets[0].product_code.into_option(), Some(PRODUCT));
    assert!(info.modules.is_empty());
    assert!(*largest.lock().unwrap() <= 64 * 1024, "read in chunks");
    let checked = check(&reader(hex_file(&img))).unwrap();
    assert_eq!(checked.crc32, crc32(&img));
    assert_eq!(checked.info.min_bootloader, Bcd([0x01, 0x20]));
}

#[test]
fn gaps_inside_the_image_are_erased_flash() {
    let mut img = image(PRODUCT, [0x02, 0x15], 20_000);
    let gap = 8_192..12_288;
    img[gap.clone()].fill(FILL);
    seal(&mut img);
    let file = hex_text(&records(&img, 32, &[gap])).into_bytes();
    let info = inspect(&mut reader(file)).unwrap();
    assert_eq!(info.image_sha256, sha256(&img));
    assert_eq!(info.image_size, 20_000);
}

#[test]
fn a_damaged_image_fails_its_crc_trailer_at_the_trailers_line() {
    let mut img = image(PRODUCT, [0x02, 0x15], 10_000);
    img[5_000] ^= 0x40;
    let e = refused(hex_file(&img));
    assert_eq!(e.code, ErrorCode::PACKAGE_INVALID);
    assert_eq!(e.location, Location::line(line_of(9_996)), "{e}");
    assert!(
        e.message.contains("CRC-32") && e.message.contains("damaged"),
        "{e}"
    );
}

#[test]
fn descriptor_fields_are_checked_at_the_descriptors_line() {
    let d = DESCRIPTOR_OFFSET as usize;
    let line = line_of(d);
    let cases: Vec<(usize, &[u8], ErrorCode, &str)> = vec![
        (d, b"XXXX", ErrorCode::PACKAGE_INVALID, "BRLF"),
        (d + 4, &[2], ErrorCode::PACKAGE_INVALID, "version 2"),
        (d + 5, &[1], ErrorCode::PACKAGE_INVALID, "flags"),
        (
            d + 6,
            &[0x99, 0x00],
            ErrorCode::PACKAGE_WRONG_PRODUCT,
            "0x0099",
        ),
        (d + 8, &[0x02, 0x1F], ErrorCode::PACKAGE_INVALID, "not BCD"),
        (
            d + 10,
            &[0xA1, 0x20],
            ErrorCode::PACKAGE_INVALID,
            "bootloader",
        ),
        (
            d + 12,
            &[0x10, 0, 0, 0],
            ErrorCode::PACKAGE_INVALID,
            "image length 16",
        ),
    ];
    for (at, bytes, code, words) in cases {
        let mut img = image(PRODUCT, [0x02, 0x15], 4_000);
        img[at..at + bytes.len()].copy_from_slice(bytes);
        seal(&mut img);
        let e = refused(hex_file(&img));
        assert_eq!(e.code, code, "{e}");
        assert_eq!(e.location, Location::line(line), "{e}");
        assert!(e.message.contains(words), "{words}: {e}");
    }
}

#[test]
fn the_extent_must_match_the_descriptor() {
    // The descriptor announces 4 000 bytes, the records write 4 032.
    let mut img = image(PRODUCT, [0x02, 0x15], 4_032);
    let d = DESCRIPTOR_OFFSET as usize;
    img[d + 12..d + 16].copy_from_slice(&4_000u32.to_le_bytes());
    seal(&mut img);
    let e = refused(hex_file(&img));
    assert_eq!(e.location, Location::line(line_of(4_031)), "{e}");
    assert!(e.message.contains("0x08010FC0"), "{e}");
    // The image does not start at 0x08010000.
    let img = image(PRODUCT, [0x02, 0x15], 4_000);
    let file = hex_text(&records(&img, 32, std::slice::from_ref(&(0..64)))).into_bytes();
    let e = refused(file);
    assert_eq!(e.location, Location::line(2), "{e}");
    assert!(e.message.contains("must begin at 0x08010000"), "{e}");
    // The descriptor in a gap.
    let file = hex_text(&records(&img, 32, std::slice::from_ref(&(d..d + 32)))).into_bytes();
    let e = refused(file);
    assert_eq!(e.location, Location::NONE, "{e}");
    assert!(e.message.contains("no image descriptor"), "{e}");
    // The trailer in a gap.
    let file = hex_text(&records(&img, 1, std::slice::from_ref(&(3_997..3_998)))).into_bytes();
    let e = refused(file);
    assert!(e.message.contains("trailer"), "{e}");
    // No data at all.
    let e = refused(b":00000001FF\n".to_vec());
    assert!(e.message.contains("no data records"), "{e}");
}

#[test]
fn an_entry_point_outside_the_image_is_refused_at_its_line() {
    let img = image(PRODUCT, [0x02, 0x15], 4_000);
    let mut recs = records(&img, 32, &[]);
    let eof = recs.len() - 1;
    recs.insert(eof, Record::StartLinearAddress(0x0800_0101));
    let e = refused(hex_text(&recs).into_bytes());
    assert_eq!(e.location, Location::line(eof as u64 + 1), "{e}");
    assert!(e.message.contains("entry point"), "{e}");
    recs[eof] = Record::StartLinearAddress(APP_START + 0x101);
    assert!(inspect(&mut reader(hex_text(&recs).into_bytes())).is_ok());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    #[test]
    fn any_bytes_are_refused_or_read_without_panicking(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..3_000)) {
        if let Err(e) = inspect(&mut reader(bytes)) {
            proptest::prop_assert!(e.code.is_plugin_code());
        }
    }

    #[test]
    fn a_valid_file_with_one_byte_changed_is_refused_at_a_line_or_still_checks(
        at in 0usize..20_000, byte in proptest::num::u8::ANY,
    ) {
        let img = image(PRODUCT, [0x02, 0x15], 5_000);
        let mut file = hex_file(&img);
        let at = at % file.len();
        file[at] = byte;
        match inspect(&mut reader(file)) {
            // A digit's case, or a change that keeps every checksum and the trailer right.
            Ok(info) => proptest::prop_assert_eq!(info.image_size, 5_000),
            Err(e) => proptest::prop_assert!(
                e.location.kind == bmsfw_plugin_api::LocationKind::LINE
                    || e.message.contains("descriptor"),
                "{}", e
            ),
        }
    }
}
