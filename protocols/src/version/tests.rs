//! Tests of every byte position of every version format.

use super::*;
use proptest::prelude::*;

/// Byte values walked through each position: single bits low and high, mixed nibbles, all ones.
const WALK: [u8; 8] = [0x01, 0x02, 0x10, 0x20, 0x5A, 0x80, 0xA5, 0xFF];
/// The same for BCD, where only digits 0-9 are valid nibbles.
const WALK_BCD: [u8; 7] = [0x01, 0x02, 0x09, 0x10, 0x42, 0x90, 0x99];

/// For each byte position of a format: which key part it lands in and with what weight.
/// Written out by hand from the format's definition, independent of the decoder's shifts.
fn placement(format: VersionFormat) -> Vec<(usize, u32)> {
    match format {
        VersionFormat::Number | VersionFormat::Hex => {
            vec![(0, 1 << 24), (0, 1 << 16), (0, 1 << 8), (0, 1)]
        }
        VersionFormat::Pair => vec![(0, 256), (0, 1), (1, 256), (1, 1)],
        VersionFormat::Triplet => vec![(0, 1), (1, 1), (2, 256), (2, 1)],
        VersionFormat::Quad => vec![(0, 1), (1, 1), (2, 1), (3, 1)],
        VersionFormat::MajorMinorDecimal | VersionFormat::MajorMinorHex => vec![(0, 1), (1, 1)],
        VersionFormat::Triplet24 | VersionFormat::MajorMinorHex24 => {
            vec![(0, 1), (1, 1), (2, 1)]
        }
        VersionFormat::Bcd => vec![(0, 1), (1, 1), (2, 1), (3, 1)],
        VersionFormat::Plain => vec![],
    }
}

fn part_count(format: VersionFormat) -> usize {
    placement(format)
        .iter()
        .map(|&(part, _)| part + 1)
        .max()
        .unwrap_or(0)
}

fn bcd_value(b: u8) -> u32 {
    u32::from(b >> 4) * 10 + u32::from(b & 0x0F)
}

#[test]
fn a_firmware_version_keeps_the_bytes_shows_the_prefix_and_compares_by_number() {
    let v = VersionFormat::MajorMinorDecimal
        .firmware_version(&[0x04, 0x0F], "v", "a version")
        .unwrap();
    assert_eq!(v.raw.as_slice(), &[0x04, 0x0F]);
    assert_eq!(v.display.as_str(), "v4.15");
    assert_eq!(v.comparable.as_slice(), &[4, 15]);
    let older = VersionFormat::MajorMinorDecimal
        .firmware_version(&[4, 9], "v", "a version")
        .unwrap();
    assert!(older.compare(&v).is_lt());
    let e = VersionFormat::MajorMinorDecimal
        .firmware_version(&[4], "v", "an Acme version is 2 bytes")
        .unwrap_err();
    assert_eq!(e.code, bmsfw_plugin_api::ErrorCode::PROTOCOL_ERROR);
    assert!(e.message.starts_with("an Acme version is 2 bytes: "), "{e}");
}

#[test]
fn a_single_byte_walked_through_every_position_lands_in_the_right_part() {
    for format in VersionFormat::ALL {
        let places = placement(format);
        let walk: &[u8] = if format == VersionFormat::Bcd {
            &WALK_BCD
        } else {
            &WALK
        };
        for (pos, &(part, weight)) in places.iter().enumerate() {
            for &value in walk {
                let mut bytes = vec![0u8; places.len()];
                bytes[pos] = value;
                let v = format.decode(&bytes).unwrap();
                let mut expected = vec![0u32; part_count(format)];
                expected[part] = if format == VersionFormat::Bcd {
                    bcd_value(value)
                } else {
                    u32::from(value) * weight
                };
                assert_eq!(
                    v.key().parts(),
                    &expected[..],
                    "{format:?}: byte 0x{value:02X} at position {pos} of {bytes:02X?}"
                );
            }
        }
    }
}

#[test]
fn displays_of_0x5a_at_every_position() {
    let cases: [(VersionFormat, [&str; 4]); 5] = [
        (
            VersionFormat::Number,
            ["1509949440", "5898240", "23040", "90"],
        ),
        (
            VersionFormat::Hex,
            ["0x5a000000", "0x005a0000", "0x00005a00", "0x0000005a"],
        ),
        (VersionFormat::Pair, ["23040.0", "90.0", "0.23040", "0.90"]),
        (
            VersionFormat::Triplet,
            ["90.0.0", "0.90.0", "0.0.23040", "0.0.90"],
        ),
        (
            VersionFormat::Quad,
            ["90.0.0.0", "0.90.0.0", "0.0.90.0", "0.0.0.90"],
        ),
    ];
    for (format, displays) in cases {
        for (pos, want) in displays.iter().enumerate() {
            let mut bytes = [0u8; 4];
            bytes[pos] = 0x5A;
            assert_eq!(
                format.decode(&bytes).unwrap().display(),
                *want,
                "{format:?} pos {pos}"
            );
        }
    }
    let short: [(VersionFormat, &[&str]); 4] = [
        (VersionFormat::MajorMinorDecimal, &["90.0", "0.90"]),
        (VersionFormat::MajorMinorHex, &["90.00", "0.5A"]),
        (VersionFormat::Triplet24, &["90.0.0", "0.90.0", "0.0.90"]),
        (VersionFormat::MajorMinorHex24, &["90.00", "0.5A", "0.00"]),
    ];
    for (format, displays) in short {
        for (pos, want) in displays.iter().enumerate() {
            let mut bytes = vec![0u8; displays.len()];
            bytes[pos] = 0x5A;
            assert_eq!(
                format.decode(&bytes).unwrap().display(),
                *want,
                "{format:?} pos {pos}"
            );
        }
    }
    for (pos, want) in ["42.0.0.0", "0.42.0.0", "0.0.42.0", "0.0.0.42"]
        .iter()
        .enumerate()
    {
        let mut bytes = [0u8; 4];
        bytes[pos] = 0x42;
        assert_eq!(VersionFormat::Bcd.decode(&bytes).unwrap().display(), *want);
    }
}

#[test]
fn variable_width_integers_walk_every_position_of_every_width() {
    for width in 1..=4usize {
        for pos in 0..width {
            for &value in &WALK {
                let mut bytes = vec![0u8; width];
                bytes[pos] = value;
                let shift = 8 * (width - 1 - pos);
                let want = u32::from(value) << shift;
                let n = VersionFormat::Number.decode(&bytes).unwrap();
                assert_eq!(n.key().parts(), &[want]);
                assert_eq!(n.display(), want.to_string());
                let h = VersionFormat::Hex.decode(&bytes).unwrap();
                assert_eq!(h.display(), format!("0x{want:08x}"));
            }
        }
    }
}

#[test]
fn examples_from_the_field() {
    let d = |f: VersionFormat, b: &[u8]| f.decode(b).unwrap().display().to_owned();
    assert_eq!(d(VersionFormat::MajorMinorDecimal, &[0x04, 0x0F]), "4.15");
    assert_eq!(d(VersionFormat::MajorMinorHex, &[0x04, 0x0F]), "4.0F");
    assert_eq!(d(VersionFormat::MajorMinorDecimal, &[0x01, 0x17]), "1.23");
    assert_eq!(d(VersionFormat::MajorMinorHex, &[0x01, 0x17]), "1.17");
    assert_eq!(d(VersionFormat::MajorMinorHex, &[0x6E, 0x01]), "110.01");
    assert_eq!(d(VersionFormat::Bcd, &[0x02, 0x15]), "2.15");
    assert_eq!(d(VersionFormat::Bcd, &[0x02, 0x05]), "2.5");
    assert_eq!(d(VersionFormat::Triplet24, &[0x01, 0x10, 0xFF]), "1.16.255");
    assert_eq!(
        d(VersionFormat::MajorMinorHex24, &[0x01, 0x10, 0xFF]),
        "1.10"
    );
    assert_eq!(d(VersionFormat::Pair, &[0x00, 0x01, 0x02, 0x03]), "1.515");
    assert_eq!(
        d(VersionFormat::Triplet, &[0x01, 0x02, 0x03, 0x04]),
        "1.2.772"
    );
    assert_eq!(d(VersionFormat::Quad, &[0x01, 0x02, 0x03, 0x04]), "1.2.3.4");
    assert_eq!(d(VersionFormat::Hex, &[0x01, 0x02]), "0x00000102");
    let plain = VersionFormat::Plain.decode(b"V1.02b\0\0").unwrap();
    assert_eq!(plain.display(), "V1.02b");
    assert_eq!(plain.key().parts(), &[1, 2]);
}

#[test]
fn both_minor_renderings_order_the_same() {
    let older = [0x04, 0x0E];
    let newer = [0x04, 0x0F];
    for f in [
        VersionFormat::MajorMinorDecimal,
        VersionFormat::MajorMinorHex,
    ] {
        assert!(f.decode(&older).unwrap().key() < f.decode(&newer).unwrap().key());
    }
    let a = VersionFormat::Plain.decode(b"1.9").unwrap();
    let b = VersionFormat::Plain.decode(b"1.10").unwrap();
    assert!(
        a.key() < b.key(),
        "text versions compare numerically, not as strings"
    );
}

#[test]
fn undecodable_bytes_are_rejected_with_their_position() {
    assert_eq!(
        VersionFormat::Bcd.decode(&[0x02, 0x1A]),
        Err(VersionError::NotBcd {
            offset: 1,
            byte: 0x1A
        })
    );
    assert_eq!(
        VersionFormat::Bcd.decode(&[0xA0]),
        Err(VersionError::NotBcd {
            offset: 0,
            byte: 0xA0
        })
    );
    assert!(matches!(
        VersionFormat::Pair.decode(&[1, 2, 3]),
        Err(VersionError::WrongLength { actual: 3, .. })
    ));
    assert!(matches!(
        VersionFormat::Number.decode(&[]),
        Err(VersionError::WrongLength { actual: 0, .. })
    ));
    assert!(matches!(
        VersionFormat::Number.decode(&[0; 5]),
        Err(VersionError::WrongLength { actual: 5, .. })
    ));
    assert_eq!(
        VersionFormat::Plain.decode(b"V1\x01"),
        Err(VersionError::NotText {
            offset: 2,
            byte: 0x01
        })
    );
    assert!(matches!(
        VersionFormat::Plain.decode(b"beta"),
        Err(VersionError::NoNumber { .. })
    ));
    assert_eq!(
        VersionFormat::Plain.decode(b"v99999999999"),
        Err(VersionError::NumberTooLarge { offset: 1 })
    );
    assert!(matches!(
        VersionFormat::Plain.decode(b"\0\0"),
        Err(VersionError::WrongLength { .. })
    ));
}

#[test]
fn encoders_refuse_parts_that_do_not_fit() {
    assert_eq!(
        VersionFormat::Quad.encode(&[1, 256, 0, 0]),
        Err(VersionError::PartOutOfRange {
            index: 1,
            value: 256,
            max: 255
        })
    );
    assert!(matches!(
        VersionFormat::Triplet.encode(&[1, 2]),
        Err(VersionError::WrongPartCount { actual: 2, .. })
    ));
    assert!(matches!(
        VersionFormat::Bcd.encode(&[100]),
        Err(VersionError::PartOutOfRange { value: 100, .. })
    ));
    assert_eq!(
        VersionFormat::Bcd.encode(&[2, 15]).unwrap(),
        vec![0x02, 0x15]
    );
    assert_eq!(
        VersionFormat::Triplet.encode(&[1, 2, 772]).unwrap(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(
        VersionFormat::Triplet24.encode(&[1, 16, 255]).unwrap(),
        vec![0x01, 0x10, 0xFF]
    );
}

/// Parts that every format can encode: the ranges of its fields.
fn valid_parts(format: VersionFormat) -> BoxedStrategy<Vec<u32>> {
    let b = || 0u32..=0xFF;
    let w = || 0u32..=0xFFFF;
    match format {
        VersionFormat::Plain => prop::collection::vec(any::<u32>(), 1..6).boxed(),
        VersionFormat::Number | VersionFormat::Hex => any::<u32>().prop_map(|v| vec![v]).boxed(),
        VersionFormat::Pair => (w(), w()).prop_map(|(a, b)| vec![a, b]).boxed(),
        VersionFormat::Triplet => (b(), b(), w()).prop_map(|(a, b, c)| vec![a, b, c]).boxed(),
        VersionFormat::Quad => prop::collection::vec(b(), 4).boxed(),
        VersionFormat::Bcd => prop::collection::vec(0u32..=99, 1..=4).boxed(),
        VersionFormat::MajorMinorDecimal | VersionFormat::MajorMinorHex => {
            prop::collection::vec(b(), 2).boxed()
        }
        VersionFormat::Triplet24 | VersionFormat::MajorMinorHex24 => {
            prop::collection::vec(b(), 3).boxed()
        }
    }
}

fn any_format() -> impl Strategy<Value = VersionFormat> {
    prop::sample::select(VersionFormat::ALL.to_vec())
}

proptest! {
    #[test]
    fn decoding_never_panics(format in any_format(), bytes in prop::collection::vec(any::<u8>(), 0..12)) {
        let _ = format.decode(&bytes);
    }

    #[test]
    fn decode_of_encode_gives_back_the_parts(
        (format, parts) in any_format().prop_flat_map(|f| (Just(f), valid_parts(f)))
    ) {
        let bytes = format.encode(&parts).unwrap();
        let decoded = format.decode(&bytes).unwrap();
        prop_assert_eq!(decoded.key().parts(), &parts[..]);
    }

    #[test]
    fn reencoding_a_decoded_version_renders_it_identically(
        format in any_format(), bytes in prop::collection::vec(any::<u8>(), 1..=4)
    ) {
        prop_assume!(format != VersionFormat::Plain);
        if let Ok(v) = format.decode(&bytes) {
            let again = format.decode(&format.encode(v.key().parts()).unwrap()).unwrap();
            prop_assert_eq!(again, v);
        }
    }

    #[test]
    fn bcd_accepts_exactly_the_bytes_made_of_decimal_digits(bytes in prop::collection::vec(any::<u8>(), 1..=4)) {
        let first_bad = bytes.iter().position(|&b| b >> 4 > 9 || b & 0x0F > 9);
        match (VersionFormat::Bcd.decode(&bytes), first_bad) {
            (Ok(v), None) => {
                let want: Vec<u32> = bytes.iter().map(|&b| bcd_value(b)).collect();
                prop_assert_eq!(v.key().parts(), &want[..]);
            }
            (Err(VersionError::NotBcd { offset, byte }), Some(bad)) => {
                prop_assert_eq!(offset, bad);
                prop_assert_eq!(byte, bytes[bad]);
            }
            (other, bad) => prop_assert!(false, "{:?} with first bad byte {:?}", other, bad),
        }
    }

    #[test]
    fn number_keys_order_like_the_integers(a in any::<u32>(), b in any::<u32>()) {
        let ka = VersionFormat::Number.decode(&a.to_be_bytes()).unwrap();
        let kb = VersionFormat::Number.decode(&b.to_be_bytes()).unwrap();
        prop_assert_eq!(ka.key().cmp(kb.key()), a.cmp(&b));
    }
}
