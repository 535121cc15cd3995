use super::*;
use crate::checksum::{crc32, sha256};
use proptest::prelude::*;

fn reader(bytes: Vec<u8>, max_read: usize) -> PackageReader {
    memory_reader(bytes, max_read)
}

fn offset(e: &PackageError) -> u64 {
    e.location.value
}

#[test]
fn a_header_is_read_whole_and_a_shorter_file_is_refused_where_it_ends() {
    let h: [u8; 4] = read_header(&reader(vec![1, 2, 3, 4, 5], 2)).unwrap();
    assert_eq!(h, [1, 2, 3, 4]);
    let e = read_header::<24>(&reader(vec![0; 10], 64)).unwrap_err();
    assert_eq!(e.code, ErrorCode::PACKAGE_INVALID);
    assert_eq!(offset(&e), 10);
    assert!(e.message.contains("inside the 24-byte header"), "{e}");
}

#[test]
fn the_file_must_be_exactly_the_header_and_the_image() {
    assert!(check_image_extent(124, 24, 100, 1000, 12).is_ok());
    for (image_len, at) in [(0, 12), (1001, 12)] {
        let e = check_image_extent(124, 24, image_len, 1000, 12).unwrap_err();
        assert_eq!(
            (e.code, offset(&e)),
            (ErrorCode::PACKAGE_INVALID, at),
            "{e}"
        );
    }
    let e = check_image_extent(120, 24, 100, 1000, 12).unwrap_err();
    assert_eq!(offset(&e), 120);
    assert!(e.message.contains("truncated"), "{e}");
    let e = check_image_extent(130, 24, 100, 1000, 12).unwrap_err();
    assert_eq!(offset(&e), 124);
    assert!(e.message.starts_with("6 bytes follow the image"), "{e}");
}

#[test]
fn a_refused_package_keeps_its_code_and_names_its_place() {
    let e = PackageError::at_offset(ErrorCode::PACKAGE_WRONG_PRODUCT, 6, "not ours");
    let f = refused(&e);
    assert_eq!(f.code, ErrorCode::PACKAGE_WRONG_PRODUCT);
    assert_eq!(f.message.as_str(), "at byte 6: not ours");
}

#[test]
fn only_another_reported_product_is_refused() {
    assert!(check_product(None, 0xA510).is_ok());
    assert!(check_product(Some(0xA510), 0xA510).is_ok());
    let f = check_product(Some(0xA520), 0xA510).unwrap_err();
    assert_eq!(f.code, ErrorCode::PACKAGE_WRONG_PRODUCT);
    assert!(
        f.message.contains("0xA510") && f.message.contains("0xA520"),
        "{f}"
    );
}

proptest! {
    #[test]
    fn digests_match_the_one_shot_ones_whatever_the_read_sizes(
        header_len in 0usize..80,
        image in proptest::collection::vec(any::<u8>(), 0..(3 * CHUNK / 2)),
        chunk in 1usize..100_000,
    ) {
        let mut file = vec![0x5A; header_len];
        file.extend_from_slice(&image);
        let d = digest_image(&reader(file.clone(), chunk), header_len as u64, image.len() as u64)
            .unwrap();
        prop_assert_eq!(d.image_crc32, crc32(&image));
        prop_assert_eq!(d.image_sha256, sha256(&image));
        prop_assert_eq!(d.file_sha256, sha256(&file));
    }
}
