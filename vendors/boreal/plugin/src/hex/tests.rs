//! The two passes over HEX files written record by record.

use super::*;
use crate::protocol::FILL;
use crate::testing::{hex_text, image, reader, reader_with, records, shared_reader};
use bmsfw_plugin_api::Location;
use ihex::Record;
use std::sync::{Arc, Mutex};

const PRODUCT: u16 = 0xB210;

fn text_of(lines: &[&str]) -> Vec<u8> {
    let mut s = lines.join("\n");
    s.push('\n');
    s.into_bytes()
}

fn scan_error(bytes: Vec<u8>) -> PackageError {
    scan(&reader(bytes)).unwrap_err()
}

fn data(address: u32, value: Vec<u8>) -> [Record; 2] {
    [
        Record::ExtendedLinearAddress((address >> 16) as u16),
        Record::Data {
            offset: address as u16,
            value,
        },
    ]
}

/// The whole image, read back through the runs in `chunk`-byte reads.
fn read_back(map: &HexMap, package: &PackageReader, len: usize, chunk: usize) -> Vec<u8> {
    let mut r = ImageReader::new(map, APP_START, len as u32);
    let mut out = vec![0u8; len];
    for (i, part) in out.chunks_mut(chunk).enumerate() {
        r.read(package, (i * chunk) as u64, part).unwrap();
    }
    out
}

#[test]
fn a_linker_file_is_one_run_and_reads_back_whole() {
    let img = image(PRODUCT, [0x02, 0x15], 200_000);
    let file = hex_text(&records(&img, 32, &[])).into_bytes();
    for chunk in [1usize, 5, 64 * 1024] {
        let (package, _) = reader_with(file.clone(), chunk);
        let map = scan(&package).unwrap();
        // 200 000 bytes cross three 64 KiB boundaries, but the upper-address records
        // between consecutive data records do not break the run.
        assert_eq!(map.runs.len(), 1, "{:?}", map.runs);
        assert_eq!(map.runs[0].start, APP_START);
        assert_eq!(map.runs[0].end, APP_START + 200_000);
        assert_eq!(map.extent().unwrap().0, (APP_START, 2));
        assert!(map.descriptor.is_some());
        assert_eq!(map.lines, (200_000 / 32 + 1 + 4) as u64);
        for read in [889, 4096, 64 * 1024] {
            assert_eq!(read_back(&map, &package, img.len(), read), img);
        }
    }
}

#[test]
fn records_in_any_order_and_gaps_read_back_in_address_order() {
    let img = image(PRODUCT, [0x02, 0x15], 9_000);
    let gap = 3_000..3_500;
    let mut recs = records(&img, 16, std::slice::from_ref(&gap));
    recs.pop();
    // The second half first: two runs, indexed by address.
    let half = recs.len() / 2;
    recs.rotate_left(half);
    if !matches!(recs[0], Record::ExtendedLinearAddress(_)) {
        recs.insert(0, Record::ExtendedLinearAddress(0x0801));
    }
    recs.push(Record::EndOfFile);
    let package = reader(hex_text(&recs).into_bytes());
    let map = scan(&package).unwrap();
    assert!(map.runs.windows(2).all(|w| w[0].end <= w[1].start));
    assert!(map.runs.len() >= 2 && map.runs.len() <= 4, "{:?}", map.runs);
    let mut expected = img.clone();
    expected[gap.clone()].fill(FILL);
    assert_eq!(read_back(&map, &package, img.len(), 889), expected);
    assert!(!map.covers(APP_START + 3_000, APP_START + 3_001));
    assert!(map.covers(APP_START, APP_START + 3_000));
}

#[test]
fn overlapping_records_are_refused_with_both_lines() {
    let mut recs = vec![Record::ExtendedLinearAddress(0x0801)];
    for i in 0..4u16 {
        recs.push(Record::Data {
            offset: i * 16,
            value: vec![i as u8; 16],
        });
    }
    // Line 6 rewrites 0x08010018..0x0801001F, which the run of lines 2-5 already
    // wrote.
    recs.push(Record::Data {
        offset: 0x18,
        value: vec![9; 8],
    });
    recs.push(Record::EndOfFile);
    let e = scan_error(hex_text(&recs).into_bytes());
    assert_eq!(e.location, Location::line(6), "{e}");
    assert!(e.message.contains("overlapping records"), "{e}");
    assert!(e.message.contains("lines 2-5"), "{e}");
    assert!(e.message.contains("0x08010018-0x0801001F"), "{e}");
    // An earlier run overlapped from below.
    let mut recs = vec![Record::ExtendedLinearAddress(0x0801)];
    recs.push(Record::Data {
        offset: 0x100,
        value: vec![1; 16],
    });
    recs.push(Record::Data {
        offset: 0xF8,
        value: vec![2; 16],
    });
    recs.push(Record::EndOfFile);
    let e = scan_error(hex_text(&recs).into_bytes());
    assert_eq!(e.location, Location::line(3), "{e}");
    assert!(e.message.contains("line 2 already"), "{e}");
}

#[test]
fn addresses_outside_the_application_area_are_refused_with_the_line() {
    // Into the bootloader below 0x08010000.
    let mut recs = vec![Record::ExtendedLinearAddress(0x0801)];
    recs.push(Record::Data {
        offset: 0,
        value: vec![1; 16],
    });
    recs.extend(data(0x0800_FFF0, vec![0; 16]));
    recs.push(Record::EndOfFile);
    let e = scan_error(hex_text(&recs).into_bytes());
    assert_eq!(e.location, Location::line(4), "{e}");
    assert!(e.message.contains("address out of range"), "{e}");
    assert!(e.message.contains("0x0800FFF0-0x0800FFFF"), "{e}");
    // Past the end of the area, by one byte.
    let last = APP_START + MAX_IMAGE_LEN;
    let mut recs = data(last - 15, vec![0; 16]).to_vec();
    recs.push(Record::EndOfFile);
    let e = scan_error(hex_text(&recs).into_bytes());
    assert_eq!(e.location, Location::line(2), "{e}");
    assert!(e.message.contains("0x08100000"), "{e}");
    // The last byte of the area is fine.
    let mut recs = data(last - 16, vec![0; 16]).to_vec();
    recs.push(Record::EndOfFile);
    assert!(scan(&reader(hex_text(&recs).into_bytes())).is_ok());
}

#[test]
fn bad_checksums_unsupported_types_and_stray_lines_name_their_line() {
    let img = image(PRODUCT, [0x02, 0x15], 2_000);
    let good = String::from_utf8(crate::testing::hex_file(&img)).unwrap();
    let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
    // Line 10: one hex digit of the data changed, the checksum kept.
    let mut damaged = lines.clone();
    let l = &mut damaged[9];
    let digit = if &l[12..13] == "0" { "1" } else { "0" };
    l.replace_range(12..13, digit);
    let refs: Vec<&str> = damaged.iter().map(String::as_str).collect();
    let e = scan_error(text_of(&refs));
    assert_eq!(e.location, Location::line(10), "{e}");
    assert!(e.message.contains("bad checksum"), "{e}");
    // A segment-address record on line 3.
    lines.insert(2, ":020000021000EC".into());
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let e = scan_error(text_of(&refs));
    assert_eq!(e.location, Location::line(3), "{e}");
    assert!(e.message.contains("type 02"), "{e}");
    lines.remove(2);
    // A record type Intel HEX does not define, on line 4.
    lines.insert(3, ":00000006FA".into());
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let e = scan_error(text_of(&refs));
    assert_eq!(e.location, Location::line(4), "{e}");
    assert!(e.message.contains("type 06"), "{e}");
    lines.remove(3);
    // An empty line in the middle.
    lines.insert(5, String::new());
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_eq!(scan_error(text_of(&refs)).location, Location::line(6));
    lines.remove(5);
    // A record after the end-of-file record; blank lines after it are fine.
    let n = lines.len();
    lines.push(String::new());
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert!(scan(&reader(text_of(&refs))).is_ok());
    lines.push(":00000001FF".into());
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let e = scan_error(text_of(&refs));
    assert_eq!(e.location, Location::line(n as u64 + 2), "{e}");
    assert!(
        e.message
            .contains(&format!("end-of-file record of line {n}")),
        "{e}"
    );
}

#[test]
fn a_missing_end_of_file_record_names_the_line_after_the_last() {
    let img = image(PRODUCT, [0x02, 0x15], 1_000);
    let good = String::from_utf8(crate::testing::hex_file(&img)).unwrap();
    let mut lines: Vec<&str> = good.lines().collect();
    lines.pop();
    let n = lines.len() as u64;
    // With or without a newline after the last record.
    for bytes in [text_of(&lines), lines.join("\n").into_bytes()] {
        let e = scan_error(bytes);
        assert_eq!(e.location, Location::line(n + 1), "{e}");
        assert!(e.message.contains("missing end-of-file record"), "{e}");
        assert!(e.message.contains(&format!("after line {n}")), "{e}");
    }
    let e = scan_error(Vec::new());
    assert_eq!(e.location, Location::line(1), "{e}");
}

#[test]
fn a_file_changed_after_the_scan_is_caught_at_the_changed_line() {
    let img = image(PRODUCT, [0x02, 0x15], 4_000);
    let file = crate::testing::hex_file(&img);
    let shared = Arc::new(Mutex::new(file.clone()));
    let package = shared_reader(shared.clone());
    let map = scan(&package).unwrap();
    // Line 30's address field now says 0x0000: the record moved.
    let text = String::from_utf8(file).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let moved = Record::Data {
        offset: 0,
        value: vec![0; 32],
    }
    .to_record_string()
    .unwrap();
    lines[29] = moved;
    *shared.lock().unwrap() = (lines.join("\n") + "\n").into_bytes();
    let mut r = ImageReader::new(&map, APP_START, img.len() as u32);
    let mut buf = vec![0u8; img.len()];
    let e = r.read(&package, 0, &mut buf).unwrap_err();
    assert_eq!(e.location, Location::line(30), "{e}");
    assert!(e.message.contains("changed after it was checked"), "{e}");
}

#[test]
fn too_many_runs_are_refused() {
    let mut recs = vec![Record::ExtendedLinearAddress(0x0801)];
    // Every other 2-byte word, backwards: no two records are consecutive.
    for i in (0..=MAX_RUNS as u16).rev() {
        recs.push(Record::Data {
            offset: i * 4,
            value: vec![1, 2],
        });
    }
    recs.push(Record::EndOfFile);
    let e = scan_error(hex_text(&recs).into_bytes());
    assert_eq!(e.location, Location::line(MAX_RUNS as u64 + 2), "{e}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    #[test]
    fn a_mutated_file_is_refused_at_a_line_it_has_or_read_the_same(
        at in 0usize..3_000, byte in proptest::num::u8::ANY, cut in proptest::bool::ANY,
    ) {
        let img = image(PRODUCT, [0x02, 0x15], 2_000);
        let mut file = crate::testing::hex_file(&img);
        let at = at % file.len();
        if cut {
            file.truncate(at);
        } else {
            file[at] = byte;
        }
        let lines = file.split(|&b| b == b'\n').count() as u64 + 1;
        let package = reader(file);
        match scan(&package) {
            Ok(map) => {
                // A harmless change (a digit's case, a trailing character) or a checksum
                // that still matches: the image reads back in full or with gaps.
                let _ = read_back(&map, &package, img.len(), 889);
            }
            Err(e) => {
                proptest::prop_assert_eq!(e.location.kind, bmsfw_plugin_api::LocationKind::LINE);
                proptest::prop_assert!(e.location.value >= 1 && e.location.value <= lines, "{}", e);
            }
        }
    }
}
