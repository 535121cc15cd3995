use super::*;
use crate::testing::{
    Image, bundle, bundle_signed, image_bytes, reader, reader_with, resigned, sample_bundle,
};
use bmsfw_plugin_api::LocationKind;

fn err(bytes: Vec<u8>) -> PackageError {
    inspect(&mut reader(bytes)).unwrap_err()
}

fn at(e: &PackageError) -> u64 {
    assert_eq!(e.location.kind, LocationKind::BYTE_OFFSET, "{e}");
    e.location.value
}

/// Where the images start in the sample bundle: 8 + (8 + 3 x 48) + 64.
const SAMPLE_IMAGES_AT: u64 = 8 + 152 + 64;

#[test]
fn a_signed_bundle_is_read_as_documented() {
    let file = sample_bundle(3000, 1000);
    assert_eq!(file.len() as u64, SAMPLE_IMAGES_AT + 5000);
    let (mut r, largest) = reader_with(file.clone(), 4096);
    let info = inspect(&mut r).unwrap();
    assert!(*largest.lock().unwrap() <= 64 * 1024);
    assert_eq!(info.targets.len(), 1);
    assert_eq!(info.targets[0].manufacturer.as_str(), "CORAL");
    assert_eq!(info.targets[0].product_code.into_option(), Some(0xC0A1));
    // The full version, build included, as the manifest carries it (0x35F shows only
    // v1.10, as `10 01`).
    assert_eq!(info.version.display.as_str(), "v1.10 (build FF)");
    assert_eq!(info.version.raw.as_slice(), &[0x01, 0x10, 0xFF]);
    assert_eq!(info.version.comparable.as_slice(), &[1, 0x10, 0xFF]);
    assert_eq!(info.image_size, file.len() as u64);
    assert_eq!(info.image_sha256, sha256(&file));
    assert_eq!(info.signature, SignatureStatus::VALID);
    let modules: Vec<(u16, &str, &str, u64)> = info
        .modules
        .iter()
        .map(|m| (m.index, m.kind.as_str(), m.version.display.as_str(), m.size))
        .collect();
    assert_eq!(
        modules,
        vec![
            (0, "master, hardware revision 2", "v1.10 (build FF)", 3000),
            (1, "module, hardware revision 1", "v2.04 (build 01)", 1000),
            (2, "module, hardware revision 3", "v2.04 (build 07)", 1000),
        ]
    );
    let b = read_bundle(&reader(file.clone())).unwrap();
    assert_eq!(b.images[1].offset, SAMPLE_IMAGES_AT + 3000);
    assert_eq!(b.module_image(3).unwrap().entry, 2);
    assert!(b.module_image(2).is_none());
    assert_eq!(b.manifest_sha256, sha256(&file[8..160]));
    assert!(b.key_name.contains("TEST"));
}

/// Each read crosses the plugin boundary: a large image is read 64 KiB at a time, not in
/// smaller pieces (nor larger ones).
#[test]
fn images_are_read_in_whole_64_kib_chunks() {
    let (mut r, largest) = reader_with(sample_bundle(100_000, 10), usize::MAX);
    inspect(&mut r).unwrap();
    assert_eq!(*largest.lock().unwrap(), 64 * 1024);
}

#[test]
fn a_bad_signature_or_unknown_key_is_refused_at_its_offset() {
    let mut file = sample_bundle(100, 100);
    file[160 + 10] ^= 0x01;
    let e = err(file);
    assert_eq!(e.code, ErrorCode::SIGNATURE_INVALID);
    assert_eq!(at(&e), 160);
    assert!(e.message.contains("TEST key"), "{e}");

    // Signed by a key that is not Coral's, under Coral's key id.
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let images = [Image {
        target: 0,
        hw: 2,
        version: [1, 0x10, 0xFF],
        bytes: image_bytes(50, 1),
    }];
    let e = err(bundle_signed(
        0xC0A1,
        [1, 0x10, 0xFF],
        &images,
        0x01,
        &stranger,
    ));
    assert_eq!(e.code, ErrorCode::SIGNATURE_INVALID);

    // A key id the plugin does not know.
    let e = err(bundle_signed(
        0xC0A1,
        [1, 0x10, 0xFF],
        &images,
        0x02,
        &stranger,
    ));
    assert_eq!(e.code, ErrorCode::SIGNATURE_INVALID);
    assert_eq!(at(&e), 5);
    assert!(e.message.contains("0x02"), "{e}");

    // A manifest changed after signing (the version bumped).
    let mut file = sample_bundle(100, 100);
    file[8 + 4] = 0x00;
    let e = err(file);
    assert_eq!(e.code, ErrorCode::SIGNATURE_INVALID);
}

#[test]
fn an_image_swapped_for_another_is_refused_naming_it() {
    let file = sample_bundle(100, 100);
    // Swap the two module images (same length): the manifest and signature still verify.
    let mut swapped = file.clone();
    let a = SAMPLE_IMAGES_AT as usize + 100;
    let (first, second) = (file[a..a + 100].to_vec(), file[a + 100..a + 200].to_vec());
    swapped[a..a + 100].copy_from_slice(&second);
    swapped[a + 100..a + 200].copy_from_slice(&first);
    let e = err(swapped);
    assert_eq!(e.code, ErrorCode::SIGNATURE_INVALID);
    assert_eq!(at(&e), a as u64);
    assert!(e.message.contains("image 1"), "{e}");
    assert!(e.message.contains("hardware revision 1"), "{e}");
    assert!(
        e.message.contains(&format!("bytes {a} to {}", a + 99)),
        "{e}"
    );
}

#[test]
fn truncated_and_padded_files_name_where_they_end() {
    let file = sample_bundle(100, 100);
    let e = err(file[..file.len() - 1].to_vec());
    assert_eq!(e.code, ErrorCode::PACKAGE_INVALID);
    assert_eq!(at(&e), file.len() as u64 - 1);
    assert!(e.message.contains("truncated"), "{e}");
    let e = err(file[..100].to_vec());
    assert_eq!(at(&e), 100);
    assert!(
        e.message.contains("inside the manifest (bytes 8 to 159)"),
        "{e}"
    );
    let e = err(file[..200].to_vec());
    assert!(e.message.contains("signature"), "{e}");
    let e = err(file[..3].to_vec());
    assert!(e.message.contains("header"), "{e}");
    let mut padded = file.clone();
    padded.push(0xFF);
    let e = err(padded);
    assert_eq!(e.code, ErrorCode::PACKAGE_INVALID);
    assert_eq!(at(&e), file.len() as u64);
}

#[test]
fn header_fields_are_checked() {
    let file = sample_bundle(100, 100);
    let mut f = file.clone();
    f[0] = b'X';
    assert_eq!(at(&err(f)), 0);
    let mut f = file.clone();
    f[4] = 2;
    assert_eq!(at(&err(f)), 4);
    for bad in [0u16, 8, 8 + 47, 8 + 48 * 18] {
        let mut f = file.clone();
        f[6..8].copy_from_slice(&bad.to_le_bytes());
        let e = err(f);
        assert_eq!(at(&e), 6, "{bad}: {e}");
    }
}

/// Manifests Coral signed but got wrong: each names its field.
#[test]
fn signed_but_inconsistent_manifests_are_refused() {
    let master = |v: [u8; 3]| Image {
        target: 0,
        hw: 2,
        version: v,
        bytes: image_bytes(10, 1),
    };
    let module = |hw: u8| Image {
        target: 1,
        hw,
        version: [2, 0, 0],
        bytes: image_bytes(10, hw),
    };
    let cases: Vec<(Vec<u8>, ErrorCode, u64, &str)> = vec![
        (
            bundle(0x1234, [1, 0x10, 0], &[master([1, 0x10, 0])]),
            ErrorCode::PACKAGE_WRONG_PRODUCT,
            8,
            "0x1234",
        ),
        (
            bundle(0xC0A1, [1, 0x10, 0], &[master([1, 0x11, 0])]),
            ErrorCode::PACKAGE_INVALID,
            8 + 8 + 2,
            "the bundle says",
        ),
        (
            bundle(0xC0A1, [1, 0x10, 0], &[module(1)]),
            ErrorCode::PACKAGE_INVALID,
            16,
            "entry 0",
        ),
        (
            bundle(
                0xC0A1,
                [1, 0x10, 0],
                &[master([1, 0x10, 0]), master([1, 0x10, 0])],
            ),
            ErrorCode::PACKAGE_INVALID,
            16 + 48,
            "entry 0",
        ),
        (
            bundle(
                0xC0A1,
                [1, 0x10, 0],
                &[master([1, 0x10, 0]), module(3), module(3)],
            ),
            ErrorCode::PACKAGE_INVALID,
            16 + 96 + 1,
            "must increase",
        ),
        (
            bundle(0xC0A1, [1, 0x10, 0], &[master([1, 0x10, 0]), module(0)]),
            ErrorCode::PACKAGE_INVALID,
            16 + 48 + 1,
            "revision 0",
        ),
        (
            bundle(
                0xC0A1,
                [1, 0x10, 0],
                &[Image {
                    target: 5,
                    hw: 2,
                    version: [1, 0x10, 0],
                    bytes: vec![1],
                }],
            ),
            ErrorCode::PACKAGE_INVALID,
            16,
            "target 5",
        ),
        (
            bundle(
                0xC0A1,
                [1, 0x10, 0],
                &[
                    master([1, 0x10, 0]),
                    Image {
                        target: 1,
                        hw: 1,
                        version: [2, 0, 0],
                        bytes: vec![0; 512 * 1024 + 1],
                    },
                ],
            ),
            ErrorCode::PACKAGE_INVALID,
            16 + 48 + 8,
            "524289 bytes",
        ),
    ];
    for (file, code, offset, words) in cases {
        let e = err(file);
        assert_eq!((e.code, at(&e)), (code, offset), "{e}");
        assert!(e.message.contains(words), "{words:?} in {e}");
    }
}

#[test]
fn an_empty_image_is_refused() {
    let e = err(bundle(
        0xC0A1,
        [1, 0x10, 0],
        &[Image {
            target: 0,
            hw: 2,
            version: [1, 0x10, 0],
            bytes: Vec::new(),
        }],
    ));
    assert_eq!(at(&e), 16 + 8);
}

/// Where entry `entry`'s field `field` lies in the file: after the 8-byte header and the
/// manifest's own 8 bytes.
fn entry_field(entry: usize, field: usize) -> usize {
    16 + ENTRY_LEN * entry + field
}

/// A bundle of the most images one holds: the master and a module image for each of 16
/// hardware revisions, each image `len` bytes.
fn most_images(len: usize) -> Vec<u8> {
    let version = [1, 0x10, 0];
    let images: Vec<Image> = (0..MAX_IMAGES)
        .map(|i| Image {
            target: u8::from(i > 0),
            hw: i.max(1),
            version,
            bytes: image_bytes(len, i),
        })
        .collect();
    bundle(0xC0A1, version, &images)
}

#[test]
fn a_bundle_of_the_most_images_is_read() {
    let file = most_images(10);
    let b = read_bundle(&reader(file.clone())).unwrap();
    assert_eq!(b.images.len(), 17);
    assert_eq!(b.module_image(16).unwrap().entry, 16);
    assert_eq!(inspect(&mut reader(file)).unwrap().modules.len(), 17);
}

#[test]
fn an_image_count_that_disagrees_with_the_manifest_length_is_refused() {
    let file = sample_bundle(10, 10);
    for count in [0u8, 2, 4] {
        let e = err(resigned(file.clone(), 8 + 5, &[count]));
        assert_eq!((e.code, at(&e)), (ErrorCode::PACKAGE_INVALID, 8 + 5), "{e}");
        assert!(
            e.message
                .contains(&format!("counts {count} images but is 152 bytes")),
            "{e}"
        );
    }
}

/// Reserved bytes Coral signed as other than 0 are refused where the reserved field
/// starts: a future format would use them.
#[test]
fn signed_reserved_bytes_that_are_not_zero_are_refused() {
    let file = sample_bundle(10, 10);
    let e = err(resigned(file.clone(), 8 + 7, &[1]));
    assert_eq!((e.code, at(&e)), (ErrorCode::PACKAGE_INVALID, 8 + 6), "{e}");
    assert!(e.message.contains("reserved manifest bytes 6-7"), "{e}");
    for entry in [0, 2] {
        for field in [5, 7, 12, 15] {
            let e = err(resigned(file.clone(), entry_field(entry, field), &[0x80]));
            assert_eq!(
                (e.code, at(&e)),
                (ErrorCode::PACKAGE_INVALID, entry_field(entry, 5) as u64),
                "{e}"
            );
            assert!(
                e.message
                    .contains(&format!("image {entry}: reserved bytes must be 0")),
                "{e}"
            );
        }
    }
}

/// Lengths as the signed manifest gives them (the images themselves are not in the file):
/// at its limit an image passes the length check and the file is then too short; one byte
/// more is refused at the length field.
#[test]
fn each_image_is_bounded_to_the_byte() {
    let file = sample_bundle(10, 10);
    for (entry, limit) in [
        (0, MAX_MASTER_IMAGE),
        (1, MAX_MODULE_IMAGE),
        (2, MAX_MODULE_IMAGE),
    ] {
        let len_at = entry_field(entry, 8);
        let e = err(resigned(
            file.clone(),
            len_at,
            &(limit as u32).to_le_bytes(),
        ));
        assert_eq!(at(&e), file.len() as u64, "{e}");
        assert!(e.message.contains("truncated"), "{e}");
        let e = err(resigned(
            file.clone(),
            len_at,
            &(limit as u32 + 1).to_le_bytes(),
        ));
        assert_eq!(
            (e.code, at(&e)),
            (ErrorCode::PACKAGE_INVALID, len_at as u64),
            "{e}"
        );
        assert!(
            e.message.contains(&format!(
                "image {entry} is {} bytes; images of its kind are 1 to {limit} bytes",
                limit + 1
            )),
            "{e}"
        );
    }
}

/// A bundle whose images end exactly at the 8 MiB a transfer can address passes the
/// bundle length check (the file is then too short); one byte more is refused.
#[test]
fn a_bundle_is_bounded_to_the_byte() {
    let mut file = most_images(1);
    let images_at = (HEADER_LEN + SIGNATURE_LEN) as usize + MANIFEST_HEAD + 17 * ENTRY_LEN;
    let mut lens = vec![MAX_MASTER_IMAGE];
    let mut left = MAX_BUNDLE_LEN - images_at as u64 - MAX_MASTER_IMAGE;
    for entry in 1..17 {
        let len = (left - (16 - entry) as u64).min(MAX_MODULE_IMAGE);
        lens.push(len);
        left -= len;
    }
    assert_eq!(left, 0);
    for (entry, len) in lens.iter().enumerate() {
        let len_at = entry_field(entry, 8);
        file[len_at..len_at + 4].copy_from_slice(&(*len as u32).to_le_bytes());
    }
    let end = entry_field(16, 8);
    let last = lens[16] as u32;
    let e = err(resigned(file.clone(), end, &last.to_le_bytes()));
    assert_eq!(at(&e), file.len() as u64, "{e}");
    assert!(e.message.contains("truncated"), "{e}");
    let e = err(resigned(file.clone(), end, &(last + 1).to_le_bytes()));
    assert_eq!(
        (e.code, at(&e)),
        (ErrorCode::PACKAGE_INVALID, file.len() as u64),
        "{e}"
    );
    assert!(
        e.message
            .contains("the images end at byte 8388609: a bundle is at most 8388608 bytes"),
        "{e}"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Arbitrary bytes never panic the reader and are never accepted.
    #[test]
    fn arbitrary_bytes_are_refused_without_panic(
        bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
    ) {
        proptest::prop_assert!(inspect(&mut reader(bytes)).is_err());
    }

    /// A signed bundle with any one byte changed, anywhere, is refused: the signature
    /// covers the header and the manifest, the manifest every image.
    #[test]
    fn every_changed_byte_of_a_signed_bundle_is_refused(
        index in 0usize..(SAMPLE_IMAGES_AT as usize + 60),
        flip in 1u8..=255,
    ) {
        let mut file = sample_bundle(20, 20);
        file[index] ^= flip;
        let e = inspect(&mut reader(file)).unwrap_err();
        proptest::prop_assert!(
            e.code == ErrorCode::SIGNATURE_INVALID || e.code == ErrorCode::PACKAGE_INVALID,
            "{}", e
        );
    }

    /// Truncated anywhere, a bundle is refused with the place it ends.
    #[test]
    fn every_truncation_is_refused(cut in 0usize..(SAMPLE_IMAGES_AT as usize + 60)) {
        let file = sample_bundle(20, 20);
        let e = inspect(&mut reader(file[..cut].to_vec())).unwrap_err();
        proptest::prop_assert_eq!(e.code, ErrorCode::PACKAGE_INVALID);
    }
}
