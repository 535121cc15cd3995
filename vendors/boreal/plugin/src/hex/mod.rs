//! Intel HEX files as Boreal images (`PROTOCOL.md`, "Package format").
//!
//! A file is read twice, both times streamed through the engine's reader:
//!
//! 1. [`scan`] checks every line (syntax, checksum, record type, address range, overlaps,
//!    the end-of-file record) and keeps an index of *runs*: stretches of consecutive
//!    addresses written by consecutive data records, each with the file offset of its
//!    first line. Errors name the line.
//! 2. [`ImageReader`] serves the image in address order from that index, re-reading the
//!    runs' lines and filling the gaps between them with 0xFF. The image is never held
//!    whole: a session asks for one SDO sub-block (889 bytes) at a time.

mod image;
pub mod lines;
pub mod record;

pub use image::ImageReader;

use crate::protocol::{APP_START, DESCRIPTOR_LEN, DESCRIPTOR_OFFSET, MAX_FILE_LEN, MAX_IMAGE_LEN};
use bmsfw_plugin_api::{ErrorCode, PackageError, PackageReader};
use lines::LineReader;
use record::{HexRecord, at};
use std::collections::BTreeMap;

/// Most runs a file may fall into. Linkers write one run per section; a file scattered
/// into more is refused rather than indexed without bound.
pub const MAX_RUNS: usize = 4096;

/// Addresses written by consecutive data records, one after the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// First address.
    pub start: u32,
    /// One past the last address.
    pub end: u32,
    /// File offset of the line of the run's first record.
    pub offset: u64,
    /// Line of the run's first record.
    pub first_line: u64,
    /// Line of the run's last record.
    pub last_line: u64,
    /// The upper address in effect at the first record.
    pub upper: u32,
}

/// Where the image's descriptor was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// Its bytes.
    pub bytes: [u8; DESCRIPTOR_LEN as usize],
    /// The line that wrote its first byte.
    pub line: u64,
}

/// What the first pass learned about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HexMap {
    /// The runs, by address.
    pub runs: Vec<Run>,
    /// The descriptor, when every one of its bytes was written.
    pub descriptor: Option<Descriptor>,
    /// The entry point (record type 05) and its line.
    pub entry: Option<(u32, u64)>,
    /// Lines in the file.
    pub lines: u64,
}

impl HexMap {
    /// The lowest address written and one past the highest, with the lines of the
    /// records that wrote them.
    pub fn extent(&self) -> Option<((u32, u64), (u32, u64))> {
        let first = self.runs.first()?;
        let last = self.runs.iter().max_by_key(|r| r.end)?;
        Some(((first.start, first.first_line), (last.end, last.last_line)))
    }

    /// Whether every address of `start..end` was written by a record.
    pub fn covers(&self, start: u32, end: u32) -> bool {
        let mut at = start;
        let first = self.runs.partition_point(|r| r.end <= start);
        for r in &self.runs[first..] {
            if r.start > at || at >= end {
                break;
            }
            at = at.max(r.end);
        }
        at >= end
    }

    /// The line of the record that wrote `address`, read back from `package`.
    pub fn line_of(&self, package: &PackageReader, address: u32) -> Option<u64> {
        image::record_line(package, self, address)
    }
}

/// The addresses an image may use, shown in errors.
fn area() -> String {
    format!("0x{APP_START:08X}-0x{:08X}", APP_START + MAX_IMAGE_LEN - 1)
}

/// The first pass: checks every line and indexes the runs.
pub fn scan(package: &PackageReader) -> Result<HexMap, PackageError> {
    let len = package.len();
    if len > MAX_FILE_LEN {
        return Err(PackageError::new(
            ErrorCode::PACKAGE_INVALID,
            format!("the file has {len} bytes; a Boreal HEX file has at most {MAX_FILE_LEN}"),
        ));
    }
    let mut lines = LineReader::new(0, 1);
    let mut runs: BTreeMap<u32, Run> = BTreeMap::new();
    let mut upper = 0u32;
    // The run the previous data record extended, if no other data record came since.
    let mut last_run: Option<u32> = None;
    let mut end_of_file: Option<u64> = None;
    let mut entry = None;
    let mut descriptor = [0u8; DESCRIPTOR_LEN as usize];
    let mut descriptor_seen = 0u32;
    let mut descriptor_line = None;
    let descriptor_at = APP_START + DESCRIPTOR_OFFSET;
    while let Some(line) = lines.next_line(package)? {
        let n = line.number;
        if line.bytes.iter().all(u8::is_ascii_whitespace) {
            if end_of_file.is_some() {
                continue;
            }
            return Err(at(
                n,
                "the line is empty; records follow each other without gaps",
            ));
        }
        if let Some(eof) = end_of_file {
            return Err(at(
                n,
                format!("a record follows the end-of-file record of line {eof}"),
            ));
        }
        match record::parse(&line)? {
            HexRecord::UpperAddress(u) => upper = u32::from(u) << 16,
            HexRecord::Entry(address) => entry = Some((address, n)),
            HexRecord::EndOfFile => end_of_file = Some(n),
            HexRecord::Data { bytes, .. } if bytes.is_empty() => {}
            HexRecord::Data { offset, bytes } => {
                let start = u64::from(upper) + u64::from(offset);
                let end = start + bytes.len() as u64;
                let limit = u64::from(APP_START) + u64::from(MAX_IMAGE_LEN);
                if start < u64::from(APP_START) || end > limit {
                    return Err(at(
                        n,
                        format!(
                            "address out of range: the record writes 0x{start:08X}-0x{:08X}, \
                             outside the application area {} (the bootloader lies below it)",
                            end - 1,
                            area()
                        ),
                    ));
                }
                // Inside the area, so both fit in 32 bits.
                let (start, end) = (start as u32, end as u32);
                if let Some(other) = overlapping(&runs, start, end) {
                    let lines = if other.first_line == other.last_line {
                        format!("line {}", other.first_line)
                    } else {
                        format!("lines {}-{}", other.first_line, other.last_line)
                    };
                    return Err(at(
                        n,
                        format!(
                            "overlapping records: the record writes 0x{start:08X}-0x{:08X}, \
                             which {lines} already wrote",
                            end - 1
                        ),
                    ));
                }
                match last_run.and_then(|k| runs.get_mut(&k)) {
                    Some(run) if run.end == start => {
                        run.end = end;
                        run.last_line = n;
                    }
                    _ => {
                        if runs.len() >= MAX_RUNS {
                            return Err(at(
                                n,
                                format!(
                                    "the records jump between addresses more than {MAX_RUNS} \
                                     times; write them in address order"
                                ),
                            ));
                        }
                        runs.insert(
                            start,
                            Run {
                                start,
                                end,
                                offset: line.offset,
                                first_line: n,
                                last_line: n,
                                upper,
                            },
                        );
                        last_run = Some(start);
                    }
                }
                let from = start.max(descriptor_at);
                let to = end.min(descriptor_at + DESCRIPTOR_LEN);
                for address in from..to {
                    let i = address - descriptor_at;
                    descriptor[i as usize] = bytes[(address - start) as usize];
                    descriptor_seen |= 1 << i;
                    if i == 0 {
                        descriptor_line = Some(n);
                    }
                }
            }
        }
    }
    if end_of_file.is_none() {
        return Err(at(
            lines.next_number(),
            format!(
                "missing end-of-file record: the file ends after line {} without \
                 :00000001FF; it is truncated",
                lines.next_number() - 1
            ),
        ));
    }
    let complete = descriptor_seen == (1u32 << DESCRIPTOR_LEN) - 1;
    Ok(HexMap {
        runs: runs.into_values().collect(),
        descriptor: match (complete, descriptor_line) {
            (true, Some(line)) => Some(Descriptor {
                bytes: descriptor,
                line,
            }),
            _ => None,
        },
        entry,
        lines: lines.next_number() - 1,
    })
}

/// A run sharing an address with `start..end`.
fn overlapping(runs: &BTreeMap<u32, Run>, start: u32, end: u32) -> Option<&Run> {
    let before = runs
        .range(..=start)
        .next_back()
        .map(|(_, r)| r)
        .filter(|r| r.end > start);
    before.or_else(|| runs.range(start..end).next().map(|(_, r)| r))
}

#[cfg(test)]
mod tests;
