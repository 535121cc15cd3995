//! The candump log reader: any bytes, read line by line. Every record it accepts is
//! written back and read again to the same record (the log keeps microseconds).
#![no_main]

use bmsfw_can::candump::{CandumpReader, parse_line};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let mut reader = CandumpReader::new(data);
    let mut records = 0usize;
    while let Some(item) = reader.next() {
        records += 1;
        assert!(records <= data.len() + 1, "more records than lines");
        let Ok(record) = item else { continue };
        let line = record.to_string();
        let again = parse_line(&line)
            .unwrap_or_else(|e| panic!("{line:?} does not read back: {e:?}"))
            .expect("a record line is no comment");
        let t = record.timestamp;
        let micros = Duration::new(t.as_secs(), t.subsec_micros() * 1000);
        assert_eq!(again.timestamp, micros, "{line:?}");
        assert_eq!(again.interface, record.interface);
        assert_eq!(again.entry, record.entry, "{line:?}");
    }
});
