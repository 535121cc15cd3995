//! Boreal packages (`PROTOCOL.md`, "Package format"): the Intel HEX builder, corruptions
//! for tests, and the node's own check of a received image. Independent of the plugin's
//! parser: the two meet only in the end-to-end tests.

use crate::protocol::{
    APP_START, DESCRIPTOR_LEN, DESCRIPTOR_MAGIC, DESCRIPTOR_OFFSET, FILL, SLOT_SIZE, TRAILER_LEN,
    flash_codes,
};
use bmsfw_protocols::checksum::crc32;
use ihex::Record;
use std::ops::Range;

/// What a package holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageSpec {
    /// Product code of the descriptor.
    pub product: u16,
    /// Firmware version, BCD `[major, minor]`.
    pub version: [u8; 2],
    /// Lowest bootloader, BCD.
    pub min_bootloader: [u8; 2],
    /// Image length, trailer included.
    pub image_len: usize,
    /// Seed of the image's content.
    pub seed: u64,
    /// Data bytes per record (1 to 255).
    pub record_len: usize,
    /// Image ranges no record writes (read as 0xFF).
    pub gaps: Vec<Range<usize>>,
}

impl PackageSpec {
    /// A package of `image_len` bytes for `product`, `version`, bootloader 1.20 and later,
    /// in 32-byte records without gaps.
    pub fn new(product: u16, version: [u8; 2], image_len: usize, seed: u64) -> PackageSpec {
        PackageSpec {
            product,
            version,
            min_bootloader: [0x01, 0x20],
            image_len,
            seed,
            record_len: 32,
            gaps: Vec::new(),
        }
    }
}

/// The next value of a SplitMix64 sequence.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The image of `spec`: content drawn from the seed (code does not compress), gaps of
/// erased flash, the descriptor at 0x200, the CRC-32 trailer.
///
/// # Panics
///
/// When the image is too short for its descriptor and trailer.
pub fn image(spec: &PackageSpec) -> Vec<u8> {
    let len = spec.image_len;
    assert!(
        len >= DESCRIPTOR_OFFSET + DESCRIPTOR_LEN + TRAILER_LEN,
        "an image holds its descriptor and trailer"
    );
    let mut state = spec.seed;
    let mut img: Vec<u8> = (0..len.div_ceil(8))
        .flat_map(|_| splitmix(&mut state).to_le_bytes())
        .take(len)
        .collect();
    for gap in &spec.gaps {
        img[gap.start.min(len)..gap.end.min(len)].fill(FILL);
    }
    let d = DESCRIPTOR_OFFSET;
    img[d..d + 4].copy_from_slice(&DESCRIPTOR_MAGIC);
    img[d + 4] = 1;
    img[d + 5] = 0;
    img[d + 6..d + 8].copy_from_slice(&spec.product.to_le_bytes());
    img[d + 8..d + 10].copy_from_slice(&spec.version);
    img[d + 10..d + 12].copy_from_slice(&spec.min_bootloader);
    img[d + 12..d + 16].copy_from_slice(&(len as u32).to_le_bytes());
    seal(&mut img);
    img
}

/// Rewrites the CRC-32 trailer of `img`.
pub fn seal(img: &mut [u8]) {
    let body = img.len() - TRAILER_LEN;
    let crc = crc32(&img[..body]);
    img[body..].copy_from_slice(&crc.to_le_bytes());
}

/// The records of `img` at 0x08010000 as a linker writes them: upper-address records
/// when the upper 16 bits change, `record_len` bytes per record, nothing in the gaps,
/// the end-of-file record last.
pub fn records(img: &[u8], record_len: usize, gaps: &[Range<usize>]) -> Vec<Record> {
    let record_len = record_len.clamp(1, 255);
    let mut out = Vec::new();
    let mut upper = None;
    let mut at = 0;
    while at < img.len() {
        if let Some(gap) = gaps.iter().find(|g| g.contains(&at)) {
            at = gap.end;
            continue;
        }
        let address = APP_START as usize + at;
        let next_gap = gaps
            .iter()
            .filter(|g| g.start > at)
            .map(|g| g.start)
            .min()
            .unwrap_or(img.len());
        let to_boundary = 0x1_0000 - (address & 0xFFFF);
        let n = record_len
            .min(img.len() - at)
            .min(next_gap - at)
            .min(to_boundary);
        if upper != Some(address >> 16) {
            upper = Some(address >> 16);
            out.push(Record::ExtendedLinearAddress((address >> 16) as u16));
        }
        out.push(Record::Data {
            offset: (address & 0xFFFF) as u16,
            value: img[at..at + n].to_vec(),
        });
        at += n;
    }
    out.push(Record::EndOfFile);
    out
}

/// Records as the lines of a file.
pub fn to_text(records: &[Record]) -> Vec<u8> {
    let mut out = String::new();
    for r in records {
        // Records built here carry at most 255 bytes: writing them cannot fail.
        if let Ok(line) = r.to_record_string() {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out.into_bytes()
}

/// The HEX file of `spec`, and its image.
pub fn build(spec: &PackageSpec) -> (Vec<u8>, Vec<u8>) {
    let img = image(spec);
    let hex = to_text(&records(&img, spec.record_len, &spec.gaps));
    (hex, img)
}

/// A way to damage a HEX file, and the line a reader must name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// One data digit of line `line` changed, its checksum kept.
    BadChecksum {
        /// The line damaged.
        line: usize,
    },
    /// A copy of the data record of line `line`, with other bytes, inserted after it: it
    /// writes the same addresses again.
    OverlappingRecord {
        /// The line copied.
        line: usize,
    },
    /// A data record into the bootloader (0x08000100) inserted after line `line`, with
    /// its upper-address record.
    OutOfRange {
        /// The line after which it goes.
        line: usize,
    },
    /// A record of type `kind` inserted after line `line`.
    UnsupportedRecordType {
        /// The line after which it goes.
        line: usize,
        /// Its record type (02, 03, or 06 and above).
        kind: u8,
    },
    /// The end-of-file record removed.
    MissingEndOfFile,
}

/// A damaged file and the line at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corrupted {
    /// The file.
    pub bytes: Vec<u8>,
    /// The 1-based line a reader must name.
    pub line: u64,
}

/// A record line of `kind` with `payload` at address 0, its checksum right.
fn raw_record(kind: u8, payload: &[u8]) -> String {
    let mut bytes = vec![payload.len() as u8, 0, 0, kind];
    bytes.extend_from_slice(payload);
    let sum = bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    bytes.push(sum.wrapping_neg());
    let mut s = String::from(":");
    for b in bytes {
        s.push_str(&format!("{b:02X}"));
    }
    s
}

/// Applies `corruption` to the HEX file `hex`.
///
/// # Panics
///
/// When `hex` is not text or the line named does not exist (or is not a data record
/// where one is needed): a test's own mistake.
pub fn corrupt(hex: &[u8], corruption: Corruption) -> Corrupted {
    let text = std::str::from_utf8(hex).expect("a HEX file is text");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let data_line = |lines: &[String], line: usize| -> (u16, Vec<u8>) {
        match lines[line - 1].parse::<Record>() {
            Ok(Record::Data { offset, value }) => (offset, value),
            other => panic!("line {line} is not a data record: {other:?}"),
        }
    };
    let line = match corruption {
        Corruption::BadChecksum { line } => {
            data_line(&lines, line);
            let l = &mut lines[line - 1];
            let digit = if &l[9..10] == "0" { "1" } else { "0" };
            l.replace_range(9..10, digit);
            line
        }
        Corruption::OverlappingRecord { line } => {
            let (offset, value) = data_line(&lines, line);
            let other: Vec<u8> = value.iter().map(|b| !b).collect();
            let copy = Record::Data {
                offset,
                value: other,
            };
            lines.insert(line, copy.to_record_string().expect("a short record"));
            line + 1
        }
        Corruption::OutOfRange { line } => {
            let upper = Record::ExtendedLinearAddress(0x0800);
            let data = Record::Data {
                offset: 0x0100,
                value: vec![0xA5; 16],
            };
            lines.insert(line, data.to_record_string().expect("a short record"));
            lines.insert(line, upper.to_record_string().expect("a short record"));
            line + 2
        }
        Corruption::UnsupportedRecordType { line, kind } => {
            let payload: &[u8] = match kind {
                2 => &[0x10, 0x00],
                3 => &[0x00, 0x00, 0x38, 0x00],
                _ => &[],
            };
            lines.insert(line, raw_record(kind, payload));
            line + 1
        }
        Corruption::MissingEndOfFile => {
            let eof = lines
                .iter()
                .rposition(|l| l.trim() == ":00000001FF")
                .expect("the file has an end-of-file record");
            lines.remove(eof);
            lines.len() + 1
        }
    };
    let mut bytes = lines.join("\n").into_bytes();
    bytes.push(b'\n');
    Corrupted {
        bytes,
        line: line as u64,
    }
}

/// What a node's check read from an image's descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Product code.
    pub product: u16,
    /// Firmware version, BCD.
    pub version: [u8; 2],
    /// Lowest bootloader, BCD.
    pub min_bootloader: [u8; 2],
    /// Image length.
    pub len: usize,
}

/// A node's check of a received image (`PROTOCOL.md`, "Slots"): the descriptor, the
/// length, the CRC-32 trailer, the product, the lowest bootloader, in that order. The
/// error is the flash status code.
pub fn check_image(img: &[u8], product: u16, bootloader: [u8; 2]) -> Result<ImageHeader, u8> {
    let d = DESCRIPTOR_OFFSET;
    let descriptor = img.get(d..d + DESCRIPTOR_LEN).ok_or(flash_codes::FORMAT)?;
    if descriptor[0..4] != DESCRIPTOR_MAGIC || descriptor[4] != 1 || descriptor[5] != 0 {
        return Err(flash_codes::FORMAT);
    }
    let len = u32::from_le_bytes([
        descriptor[12],
        descriptor[13],
        descriptor[14],
        descriptor[15],
    ]);
    if len as usize != img.len() || len > SLOT_SIZE || img.len() < d + DESCRIPTOR_LEN + TRAILER_LEN
    {
        return Err(flash_codes::LENGTH);
    }
    let body = img.len() - TRAILER_LEN;
    if crc32(&img[..body]).to_le_bytes() != img[body..] {
        return Err(flash_codes::CRC);
    }
    let header = ImageHeader {
        product: u16::from_le_bytes([descriptor[6], descriptor[7]]),
        version: [descriptor[8], descriptor[9]],
        min_bootloader: [descriptor[10], descriptor[11]],
        len: img.len(),
    };
    if header.product != product {
        return Err(flash_codes::WRONG_PRODUCT);
    }
    if header.min_bootloader > bootloader {
        return Err(flash_codes::BOOTLOADER_TOO_OLD);
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRODUCT: u16 = 0xB210;

    fn parse_all(hex: &[u8]) -> Vec<Result<Record, ihex::ReaderError>> {
        std::str::from_utf8(hex)
            .unwrap()
            .lines()
            .map(|l| l.parse::<Record>())
            .collect()
    }

    #[test]
    fn a_built_package_is_the_image_in_records_and_passes_the_nodes_check() {
        let mut spec = PackageSpec::new(PRODUCT, [0x02, 0x15], 150_000, 9);
        spec.gaps = std::iter::once(4_096..8_192).collect();
        let (hex, img) = build(&spec);
        assert_eq!(img.len(), 150_000);
        assert!(img[4_096..8_192].iter().all(|&b| b == FILL));
        let header = check_image(&img, PRODUCT, [0x01, 0x30]).unwrap();
        assert_eq!(header.version, [0x02, 0x15]);
        // Reassemble the image from the records.
        let mut back = vec![FILL; img.len()];
        let mut upper = 0u32;
        let records = parse_all(&hex);
        assert_eq!(records.last(), Some(&Ok(Record::EndOfFile)));
        for r in records {
            match r.unwrap() {
                Record::ExtendedLinearAddress(u) => upper = u32::from(u) << 16,
                Record::Data { offset, value } => {
                    let at = (upper + u32::from(offset) - APP_START) as usize;
                    back[at..at + value.len()].copy_from_slice(&value);
                }
                Record::EndOfFile => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(back, img);
    }

    #[test]
    fn the_nodes_check_refuses_in_protocol_order() {
        let spec = PackageSpec::new(PRODUCT, [0x02, 0x15], 4_000, 1);
        let img = image(&spec);
        let mut bad = img.clone();
        bad[DESCRIPTOR_OFFSET] = b'X';
        assert_eq!(
            check_image(&bad, PRODUCT, [1, 0x30]),
            Err(flash_codes::FORMAT)
        );
        assert_eq!(
            check_image(&img[..3_999], PRODUCT, [1, 0x30]),
            Err(flash_codes::LENGTH)
        );
        let mut bad = img.clone();
        bad[1_000] ^= 1;
        assert_eq!(check_image(&bad, PRODUCT, [1, 0x30]), Err(flash_codes::CRC));
        assert_eq!(
            check_image(&img, 0xB205, [1, 0x30]),
            Err(flash_codes::WRONG_PRODUCT)
        );
        assert_eq!(
            check_image(&img, PRODUCT, [1, 0x10]),
            Err(flash_codes::BOOTLOADER_TOO_OLD)
        );
        assert_eq!(
            check_image(&[], PRODUCT, [1, 0x30]),
            Err(flash_codes::FORMAT)
        );
    }

    #[test]
    fn each_corruption_breaks_exactly_the_line_it_names() {
        let (hex, _) = build(&PackageSpec::new(PRODUCT, [0x02, 0x15], 2_000, 3));
        let c = corrupt(&hex, Corruption::BadChecksum { line: 12 });
        let parsed = parse_all(&c.bytes);
        assert!(matches!(
            parsed[11],
            Err(ihex::ReaderError::ChecksumMismatch(..))
        ));
        assert_eq!(parsed.iter().filter(|r| r.is_err()).count(), 1);
        assert_eq!(c.line, 12);
        let c = corrupt(&hex, Corruption::OverlappingRecord { line: 5 });
        assert_eq!(c.line, 6);
        let parsed = parse_all(&c.bytes);
        let (Ok(Record::Data { offset: a, .. }), Ok(Record::Data { offset: b, .. })) =
            (&parsed[4], &parsed[5])
        else {
            panic!("two data records");
        };
        assert_eq!(a, b);
        let c = corrupt(&hex, Corruption::OutOfRange { line: 7 });
        assert_eq!(c.line, 9);
        assert_eq!(
            parse_all(&c.bytes)[7],
            Ok(Record::ExtendedLinearAddress(0x0800))
        );
        for kind in [2u8, 3, 6, 0x7F] {
            let c = corrupt(&hex, Corruption::UnsupportedRecordType { line: 3, kind });
            assert_eq!(c.line, 4);
            let line = std::str::from_utf8(&c.bytes)
                .unwrap()
                .lines()
                .nth(3)
                .unwrap()
                .to_owned();
            assert_eq!(&line[7..9], format!("{kind:02X}"));
        }
        let c = corrupt(&hex, Corruption::MissingEndOfFile);
        let lines = std::str::from_utf8(&c.bytes).unwrap().lines().count();
        assert_eq!(c.line, lines as u64 + 1);
        assert!(
            !std::str::from_utf8(&c.bytes)
                .unwrap()
                .contains(":00000001FF")
        );
    }
}
