//! One Intel HEX record of a line, parsed by the `ihex` crate, with errors that name the
//! line.

use super::lines::Line;
use bmsfw_plugin_api::{ErrorCode, PackageError};
use ihex::{ReaderError, Record};

/// A record as a Boreal image uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HexRecord {
    /// Type 00: bytes at `offset` from the current upper address.
    Data {
        /// The 16-bit offset.
        offset: u16,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// Type 04: the upper 16 bits of the addresses of the following data records.
    UpperAddress(u16),
    /// Type 05: the entry point.
    Entry(u32),
    /// Type 01: the end of the file.
    EndOfFile,
}

/// An error at `line`.
pub fn at(line: u64, message: impl Into<String>) -> PackageError {
    PackageError::at_line(ErrorCode::PACKAGE_INVALID, line, message)
}

/// Parses `line` as one record. Segment addressing (types 02 and 03, for 8086-style
/// 20-bit addresses) is refused: Boreal images use 32-bit linear addresses.
pub fn parse(line: &Line) -> Result<HexRecord, PackageError> {
    let n = line.number;
    let text = std::str::from_utf8(&line.bytes)
        .ok()
        .filter(|t| t.is_ascii())
        .ok_or_else(|| at(n, "the line holds bytes that are not ASCII text"))?;
    let record = Record::from_record_string(text).map_err(|e| at(n, describe(e)))?;
    Ok(match record {
        Record::Data { offset, value } => HexRecord::Data {
            offset,
            bytes: value,
        },
        Record::ExtendedLinearAddress(upper) => HexRecord::UpperAddress(upper),
        Record::StartLinearAddress(entry) => HexRecord::Entry(entry),
        Record::EndOfFile => HexRecord::EndOfFile,
        Record::ExtendedSegmentAddress(_) => {
            return Err(at(
                n,
                "record type 02 (extended segment address) is not supported: Boreal images \
                 use 32-bit linear addresses (record type 04)",
            ));
        }
        Record::StartSegmentAddress { .. } => {
            return Err(at(
                n,
                "record type 03 (start segment address) is not supported: Boreal images use \
                 32-bit linear addresses (record type 05)",
            ));
        }
    })
}

fn describe(error: ReaderError) -> String {
    match error {
        ReaderError::MissingStartCode => "the line does not start with ':'".into(),
        ReaderError::ContainsInvalidCharacters => {
            "the record holds characters that are not hexadecimal digits".into()
        }
        ReaderError::ChecksumMismatch(computed, stored) => format!(
            "bad checksum: the record's checksum byte is {stored:02X} but its bytes give \
             {computed:02X}; the line is damaged"
        ),
        ReaderError::UnsupportedRecordType(kind) => {
            format!("record type {kind:02X} is not supported (Intel HEX defines 00 to 05)")
        }
        ReaderError::RecordTooShort => "the record is too short".into(),
        ReaderError::RecordTooLong => "the record is longer than 255 data bytes".into(),
        ReaderError::RecordNotEvenLength => "the record has an odd number of hex digits".into(),
        ReaderError::PayloadLengthMismatch => {
            "the record's byte count does not match its data".into()
        }
        ReaderError::InvalidLengthForType => {
            "the record's byte count does not fit its record type".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Line {
        Line {
            number: 7,
            offset: 0,
            bytes: text.as_bytes().to_vec(),
        }
    }

    fn error(text: &str) -> String {
        let e = parse(&line(text)).unwrap_err();
        assert_eq!(e.location, bmsfw_plugin_api::Location::line(7));
        assert_eq!(e.code, ErrorCode::PACKAGE_INVALID);
        e.message.into_string()
    }

    #[test]
    fn records_of_a_linear_image_parse() {
        assert_eq!(
            parse(&line(":04000A0001020304E8")).unwrap(),
            HexRecord::Data {
                offset: 0x000A,
                bytes: vec![1, 2, 3, 4]
            }
        );
        assert_eq!(
            parse(&line(":020000040801F1")).unwrap(),
            HexRecord::UpperAddress(0x0801)
        );
        assert_eq!(
            parse(&line(":0400000508010201EB")).unwrap(),
            HexRecord::Entry(0x0801_0201)
        );
        assert_eq!(parse(&line(":00000001FF")).unwrap(), HexRecord::EndOfFile);
    }

    #[test]
    fn damaged_and_unsupported_records_say_what_is_wrong() {
        assert!(error(":04000A0001020304E7").contains("bad checksum"));
        assert!(error(":04000A0001020304E7").contains("E7 but its bytes give E8"));
        assert!(error("04000A0001020304E8").contains("':'"));
        assert!(error(":04000A00010203G4E7").contains("hexadecimal"));
        assert!(error(":020000021000EC").contains("type 02"));
        assert!(error(":0400000300003800C1").contains("type 03"));
        assert!(error(":00000006FA").contains("type 06"));
        assert!(error(":05000A0001020304E7").contains("byte count"));
        assert!(error(":00").contains("too short"));
        let mut bytes = b":00000001FF".to_vec();
        bytes[3] = 0xC3;
        let e = parse(&Line {
            number: 7,
            offset: 0,
            bytes,
        })
        .unwrap_err();
        assert!(e.message.contains("ASCII"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn any_line_parses_or_fails_at_its_own_line(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let l = Line { number: 3, offset: 0, bytes };
            if let Err(e) = parse(&l) {
                proptest::prop_assert_eq!(e.location, bmsfw_plugin_api::Location::line(3));
            }
        }

        #[test]
        fn every_written_data_record_reads_back(offset in 0u16.., data in proptest::collection::vec(proptest::num::u8::ANY, 0..=255)) {
            let text = Record::Data { offset, value: data.clone() }.to_record_string().unwrap();
            proptest::prop_assert_eq!(parse(&line(&text)).unwrap(), HexRecord::Data { offset, bytes: data });
        }
    }
}
