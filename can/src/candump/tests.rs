use super::*;
use proptest::prelude::*;

fn read_all(text: &str) -> Vec<Result<LogRecord, CandumpError>> {
    CandumpReader::new(text.as_bytes()).collect()
}

fn frame(id: CanId, data: &[u8]) -> CanFrame {
    CanFrame::new(id, data).unwrap()
}

#[test]
fn writes_the_can_utils_format() {
    let mut w = CandumpWriter::new(Vec::new());
    let t = Duration::new(1_700_000_000, 123_456_789);
    w.write_frame(
        t,
        "can0",
        &frame(CanId::standard(0x351).unwrap(), &[1, 2, 3, 4, 5, 6, 7, 8]),
    )
    .unwrap();
    w.write_frame(
        Duration::new(5, 1_000),
        "can1",
        &frame(CanId::extended(0x18FF_50E5).unwrap(), &[]),
    )
    .unwrap();
    w.write(
        Duration::new(5, 2_000),
        "can1",
        &LogEntry::Error(ErrorFrame::CRC_ERROR),
    )
    .unwrap();
    let text = String::from_utf8(w.into_inner()).unwrap();
    assert_eq!(
        text,
        "(1700000000.123456) can0 351#0102030405060708\n\
         (5.000001) can1 18FF50E5#\n\
         (5.000002) can1 20000088#0000000800000000\n"
    );
}

/// python-can's candump reader (`can.io.canutils`) takes a line for an error frame only
/// when its identifier has both `CAN_ERR_FLAG` and `CAN_ERR_BUSERROR`; otherwise it reads
/// a data frame with identifier `id & 0x1FFFFFFF`.
fn python_can_sees_an_error_frame(line: &str) -> bool {
    let frame = line.split_whitespace().nth(2).unwrap();
    let (id, _) = frame.split_once('#').unwrap();
    let id = u32::from_str_radix(id, 16).unwrap();
    id & CAN_ERR_FLAG != 0 && id & CAN_ERR_BUSERROR != 0
}

#[test]
fn error_frames_carry_the_bus_error_bit_so_other_readers_see_error_frames() {
    for error in [ErrorFrame::CRC_ERROR, ErrorFrame::UNSPECIFIED_BUS_ERROR] {
        assert!(error.is_bus_error());
        let record = LogRecord {
            timestamp: Duration::new(1, 0),
            interface: "can0".into(),
            entry: LogEntry::Error(error),
        };
        let line = record.to_string();
        assert!(python_can_sees_an_error_frame(&line), "{line}");
        let back = parse_line(&line).unwrap().unwrap();
        assert_eq!(back.entry, LogEntry::Error(error), "{line}");
    }
    // The CRC error is what sja1000 and other drivers send for a CRC sequence fault.
    assert_eq!(
        LogRecord {
            timestamp: Duration::ZERO,
            interface: "can0".into(),
            entry: LogEntry::Error(ErrorFrame::CRC_ERROR),
        }
        .to_string(),
        "(0.000000) can0 20000088#0000000800000000"
    );
}

#[test]
fn error_frames_from_the_kernel_keep_their_class_and_details() {
    let e = ErrorFrame::from_kernel(CAN_ERR_FLAG | 0x48, &[0, 0, 0x08, 0x08]);
    assert_eq!(e.class, 0x48);
    assert_eq!(e.data, [0, 0, 8, 8, 0, 0, 0, 0]);
    let long = ErrorFrame::from_kernel(0x4, &[1; 12]);
    assert_eq!(long.data, [1; 8]);
    assert!(!long.is_bus_error());
}

#[test]
fn the_writer_refuses_names_a_reader_could_not_parse() {
    let mut w = CandumpWriter::new(Vec::new());
    let f = frame(CanId::standard(1).unwrap(), &[]);
    for bad in ["", "can 0", "a-name-that-is-too-long", "vcan/0"] {
        let err = w.write_frame(Duration::ZERO, bad, &f).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
    }
    assert!(w.into_inner().is_empty());
}

#[test]
fn reads_what_candump_writes() {
    let text = "\
# captured on a GX\n\
\n\
(1700000000.123456) can0 351#0102030405060708\n\
(1700000000.123999) can0 18FF50E5#1122\r\n\
(1700000000.200000)\tcan0\t35E#\n\
  (0.5) vcan0 123#11.22.33\n\
(1700000001.000000) can0 20000088#0000000800000000\n";
    let records: Vec<LogRecord> = read_all(text).into_iter().map(Result::unwrap).collect();
    assert_eq!(records.len(), 5);
    assert_eq!(
        records[0].timestamp,
        Duration::new(1_700_000_000, 123_456_000)
    );
    assert_eq!(records[0].interface, "can0");
    assert_eq!(
        records[0].entry,
        LogEntry::Frame(frame(
            CanId::standard(0x351).unwrap(),
            &[1, 2, 3, 4, 5, 6, 7, 8]
        ))
    );
    assert_eq!(
        records[1].entry,
        LogEntry::Frame(frame(CanId::extended(0x18FF_50E5).unwrap(), &[0x11, 0x22]))
    );
    assert_eq!(
        records[2].entry,
        LogEntry::Frame(frame(CanId::standard(0x35E).unwrap(), &[]))
    );
    assert_eq!(records[3].timestamp, Duration::from_millis(500));
    assert_eq!(
        records[3].entry,
        LogEntry::Frame(frame(CanId::standard(0x123).unwrap(), &[0x11, 0x22, 0x33]))
    );
    assert_eq!(records[4].entry, LogEntry::Error(ErrorFrame::CRC_ERROR));
    // A line with the error flag but without the bus-error bit is still an error frame.
    let r = parse_line("(1.0) can0 20000004#0004000000000000")
        .unwrap()
        .unwrap();
    assert_eq!(
        r.entry,
        LogEntry::Error(ErrorFrame {
            class: 0x4,
            data: [0, 4, 0, 0, 0, 0, 0, 0]
        })
    );
    // An 8-digit identifier below 0x800 is still a 29-bit identifier.
    let r = parse_line("(1.0) can0 00000123#").unwrap().unwrap();
    assert_eq!(
        r.entry,
        LogEntry::Frame(frame(CanId::extended(0x123).unwrap(), &[]))
    );
}

fn parse_err(line: &str) -> LineError {
    parse_line(line).expect_err(line)
}

#[test]
fn errors_name_the_column_and_the_fault() {
    let cases: &[(&str, usize, ParseErrorKind)] = &[
        ("1.0 can0 123#", 1, ParseErrorKind::MissingTimestamp),
        (
            "(x) can0 123#",
            2,
            ParseErrorKind::Timestamp("expected the seconds"),
        ),
        (
            "(12) can0 123#",
            4,
            ParseErrorKind::Timestamp("expected '.' after the seconds"),
        ),
        (
            "(1.) can0 123#",
            4,
            ParseErrorKind::Timestamp("expected 1 to 9 digits of fraction"),
        ),
        (
            "(1.0123456789) can0 123#",
            4,
            ParseErrorKind::Timestamp("expected 1 to 9 digits of fraction"),
        ),
        (
            "(1.5 can0 123#",
            5,
            ParseErrorKind::Timestamp("expected ')' closing the timestamp"),
        ),
        (
            "(99999999999999999999.0) can0 123#",
            2,
            ParseErrorKind::TimestampRange,
        ),
        (
            "(1.0)can0 123#",
            6,
            ParseErrorKind::MissingSeparator("interface name"),
        ),
        ("(1.0) can0", 11, ParseErrorKind::MissingSeparator("frame")),
        (
            "(1.0) abcdefghijklmnop 123#",
            7,
            ParseErrorKind::Interface("longer than 15 bytes"),
        ),
        ("(1.0) can0 123", 15, ParseErrorKind::MissingHash),
        ("(1.0) can0 12 #", 14, ParseErrorKind::MissingHash),
        ("(1.0) can0 12G#", 14, ParseErrorKind::NotHex('G')),
        ("(1.0) can0 1234#", 12, ParseErrorKind::IdLength(4)),
        ("(1.0) can0 123456789#", 12, ParseErrorKind::IdLength(9)),
        (
            "(1.0) can0 800#",
            12,
            ParseErrorKind::StandardIdRange(0x800),
        ),
        (
            "(1.0) can0 40000001#",
            12,
            ParseErrorKind::IdFlags(0x4000_0001),
        ),
        (
            "(1.0) can0 80000001#",
            12,
            ParseErrorKind::IdFlags(0x8000_0001),
        ),
        ("(1.0) can0 123#R", 16, ParseErrorKind::RemoteFrame),
        ("(1.0) can0 123#r4", 16, ParseErrorKind::RemoteFrame),
        ("(1.0) can0 123##1AA", 16, ParseErrorKind::CanFd),
        ("(1.0) can0 123#112", 19, ParseErrorKind::OddData),
        ("(1.0) can0 123#1 ", 17, ParseErrorKind::OddData),
        ("(1.0) can0 123#11Z2", 18, ParseErrorKind::NotHex('Z')),
        ("(1.0) can0 123#1Z", 17, ParseErrorKind::NotHex('Z')),
        ("(1.0) can0 123#.11", 16, ParseErrorKind::NotHex('.')),
        ("(1.0) can0 123#11..22", 19, ParseErrorKind::NotHex('.')),
        ("(1.0) can0 123#1.1", 17, ParseErrorKind::OddData),
        (
            "(1.0) can0 123#112233445566778899",
            32,
            ParseErrorKind::TooMuchData,
        ),
        (
            "(1.0) can0 20000008#00",
            21,
            ParseErrorKind::ErrorFrameLength(1),
        ),
        ("(1.0) can0 123#11 extra", 19, ParseErrorKind::TrailingText),
        (
            "(1.0) can0 123#é",
            16,
            ParseErrorKind::NotHex(char::REPLACEMENT_CHARACTER),
        ),
    ];
    for (line, column, kind) in cases {
        let err = parse_err(line);
        assert_eq!((&err.kind, err.column), (kind, *column), "{line:?}: {err}");
    }
}

#[test]
fn the_reader_numbers_lines_and_goes_on_after_an_error() {
    let text = "(1.0) can0 123#11\n(1.0) can0 800#\n\n(2.0) can0 124#\n";
    let out = read_all(text);
    assert_eq!(out.len(), 3);
    assert!(out[0].is_ok());
    match &out[1] {
        Err(CandumpError::Parse { line, column, kind }) => {
            assert_eq!((*line, *column), (2, 12));
            assert_eq!(*kind, ParseErrorKind::StandardIdRange(0x800));
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    assert_eq!(
        out[1].as_ref().unwrap_err().to_string(),
        "line 2, column 12: identifier 800 is above 7FF"
    );
    assert_eq!(out[2].as_ref().unwrap().timestamp, Duration::from_secs(2));
}

#[test]
fn long_lines_and_binary_are_bounded_errors() {
    let mut text = Vec::new();
    text.extend_from_slice(b"(1.0) can0 123#11\n");
    text.extend(std::iter::repeat_n(b'A', 1 << 20));
    text.extend_from_slice(b"\n(1.0) can0 12\xFF#\n(3.0) can0 125#\n");
    let out: Vec<_> = CandumpReader::new(&text[..]).collect();
    assert_eq!(out.len(), 4);
    assert!(matches!(
        out[1],
        Err(CandumpError::LineTooLong {
            line: 2,
            limit: MAX_LINE_LEN
        })
    ));
    assert!(matches!(
        out[2],
        Err(CandumpError::NotUtf8 {
            line: 3,
            column: 14
        })
    ));
    assert_eq!(out[3].as_ref().unwrap().timestamp, Duration::from_secs(3));
    // A line of exactly the limit is read; one byte more is refused.
    let pad = |n: usize| format!("(1.0) can0 123#11{}\n", " ".repeat(n));
    let base = "(1.0) can0 123#11".len();
    let ok: Vec<_> = CandumpReader::new(pad(MAX_LINE_LEN - base).as_bytes()).collect();
    assert!(ok[0].is_ok());
    let long: Vec<_> = CandumpReader::new(pad(MAX_LINE_LEN - base + 1).as_bytes()).collect();
    assert!(matches!(
        long[0],
        Err(CandumpError::LineTooLong { line: 1, .. })
    ));
}

#[test]
fn a_file_without_final_newline_still_ends_with_its_last_record() {
    let out = read_all("(1.0) can0 123#11\n(2.0) can0 124#22");
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(Result::is_ok));
}

fn any_entry() -> impl Strategy<Value = LogEntry> {
    prop_oneof![
        (
            any::<bool>(),
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..=8)
        )
            .prop_map(|(ext, id, data)| {
                let id = if ext {
                    CanId::extended(id & MAX_EXTENDED_ID).unwrap()
                } else {
                    CanId::standard((id & MAX_STANDARD_ID) as u16).unwrap()
                };
                LogEntry::Frame(CanFrame::new(id, &data).unwrap())
            }),
        (any::<u32>(), any::<[u8; 8]>()).prop_map(|(class, data)| LogEntry::Error(ErrorFrame {
            class: class & MAX_EXTENDED_ID,
            data
        })),
    ]
}

fn any_record() -> impl Strategy<Value = LogRecord> {
    (
        0u64..=u64::MAX / 2,
        0u32..1_000_000,
        "[a-zA-Z0-9_.-]{1,15}",
        any_entry(),
    )
        .prop_map(|(secs, micros, interface, entry)| LogRecord {
            timestamp: Duration::new(secs, micros * 1_000),
            interface,
            entry,
        })
}

proptest! {
    #[test]
    fn records_round_trip(records in proptest::collection::vec(any_record(), 0..20)) {
        let mut w = CandumpWriter::new(Vec::new());
        for r in &records {
            w.write_record(r).unwrap();
        }
        let bytes = w.into_inner();
        let back: Vec<LogRecord> = CandumpReader::new(&bytes[..])
            .collect::<Result<_, _>>()
            .unwrap();
        prop_assert_eq!(back, records.clone());
        for r in &records {
            prop_assert_eq!(parse_line(&r.to_string()).unwrap(), Some(r.clone()));
        }
    }

    #[test]
    fn arbitrary_text_never_panics(line in "\\PC{0,80}") {
        if let Err(e) = parse_line(&line) {
            prop_assert!(e.column >= 1 && e.column <= line.len() + 1);
        }
    }

    #[test]
    fn near_miss_lines_never_panic(
        record in any_record(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        delete in any::<bool>(),
    ) {
        let mut bytes = record.to_string().into_bytes();
        let i = at.index(bytes.len());
        if delete { bytes.remove(i); } else { bytes[i] = byte; }
        // A byte replaced by a newline splits the record into two lines.
        let lines = 1 + bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        for item in CandumpReader::new(&bytes[..]) {
            match item {
                Ok(r) => prop_assert!(r.interface.len() <= MAX_INTERFACE_LEN),
                Err(e) => prop_assert!((1..=lines).contains(&e.line()), "line {} of {}", e.line(), lines),
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut lines = 0u64;
        for item in CandumpReader::new(&bytes[..]) {
            let line = match &item { Ok(_) => lines + 1, Err(e) => e.line() };
            prop_assert!(line > lines);
            lines = line;
        }
    }
}

/// Errors that cut a transmission short (its sender sends it again) are told apart from
/// reports that destroy nothing: the budget moves the queued frames only for the first.
#[test]
fn error_frames_say_whether_a_transmission_was_destroyed_or_a_frame_lost() {
    let destroying = [
        ErrorFrame::CRC_ERROR,
        ErrorFrame::UNSPECIFIED_BUS_ERROR,
        ErrorFrame::from_kernel(CAN_ERR_FLAG | CAN_ERR_PROT, &[]),
        ErrorFrame::from_kernel(CAN_ERR_FLAG | CAN_ERR_ACK, &[]),
    ];
    for error in destroying {
        assert!(error.destroys_a_transmission(), "{error:?}");
    }
    // A controller state report (CAN_ERR_CRTL), lost arbitration (CAN_ERR_LOSTARB), a
    // bus-off (CAN_ERR_BUSOFF) and a restart (CAN_ERR_RESTARTED).
    for class in [0x04, 0x02, 0x40, 0x100] {
        let report = ErrorFrame::from_kernel(CAN_ERR_FLAG | class, &[0, 0x10]);
        assert!(!report.destroys_a_transmission(), "{report:?}");
        assert!(!report.reports_a_lost_frame(), "{report:?}");
    }
    // A receive overflow destroys nothing on the wire, but a frame went by unheard.
    let overflow = ErrorFrame::from_kernel(CAN_ERR_FLAG | CAN_ERR_CRTL, &[0, 0x01]);
    assert_eq!(overflow, ErrorFrame::RX_OVERFLOW);
    assert!(overflow.reports_a_lost_frame());
    assert!(!overflow.destroys_a_transmission());
    // The overflow bit means nothing outside a controller report.
    assert!(
        !ErrorFrame::from_kernel(CAN_ERR_FLAG | CAN_ERR_PROT, &[0, 0x01]).reports_a_lost_frame()
    );
}
