//! The second pass: the image in address order, from the runs of the first.

use super::lines::LineReader;
use super::record::{self, HexRecord, at};
use super::{HexMap, Run};
use crate::protocol::FILL;
use bmsfw_plugin_api::{PackageError, PackageReader};

/// A data record read back, not yet used up.
#[derive(Debug, Clone)]
struct Pending {
    start: u32,
    bytes: Vec<u8>,
}

/// Where the reader stands inside one run.
#[derive(Debug, Clone)]
struct Cursor {
    run: usize,
    lines: LineReader,
    upper: u32,
    /// The next address the run's records must write.
    next: u32,
    pending: Option<Pending>,
}

/// Serves the bytes of an image that starts at `start` and is `len` bytes long, read from
/// the file's runs; addresses no record writes read as 0xFF. Reads are cheapest in
/// ascending order (each line is then parsed once); any order works.
#[derive(Debug, Clone)]
pub struct ImageReader {
    runs: Vec<Run>,
    start: u32,
    len: u32,
    cursor: Option<Cursor>,
}

/// The file no longer says what the first pass read: it changed on disk.
fn changed(line: u64, what: &str) -> PackageError {
    at(
        line,
        format!("the package changed after it was checked ({what}); upload it again"),
    )
}

impl ImageReader {
    /// A reader of the image `start..start + len` of the file `map` describes.
    pub fn new(map: &HexMap, start: u32, len: u32) -> ImageReader {
        ImageReader {
            runs: map.runs.clone(),
            start,
            len,
            cursor: None,
        }
    }

    /// The image's length.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether the image is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Fills `buf` with the image's bytes from `offset`.
    pub fn read(
        &mut self,
        package: &PackageReader,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), PackageError> {
        buf.fill(FILL);
        let end_offset = offset.saturating_add(buf.len() as u64);
        if end_offset > u64::from(self.len) {
            return Err(PackageError::new(
                bmsfw_plugin_api::ErrorCode::TRANSFER_FAILED,
                format!(
                    "bytes {offset} to {end_offset} were asked of a {}-byte image",
                    self.len
                ),
            ));
        }
        // Within the image, so within 32-bit addresses.
        let a = self.start + offset as u32;
        let b = self.start + end_offset as u32;
        let mut i = self.runs.partition_point(|r| r.end <= a);
        while i < self.runs.len() && self.runs[i].start < b {
            self.copy_run(package, i, a, b, buf)?;
            i += 1;
        }
        Ok(())
    }

    /// Copies what run `i` writes inside `a..b` into `buf` (which starts at `a`).
    fn copy_run(
        &mut self,
        package: &PackageReader,
        i: usize,
        a: u32,
        b: u32,
        buf: &mut [u8],
    ) -> Result<(), PackageError> {
        let run = self.runs[i];
        let from = a.max(run.start);
        let reusable = self
            .cursor
            .as_ref()
            .is_some_and(|c| c.run == i && c.next <= from);
        if !reusable {
            self.cursor = Some(Cursor {
                run: i,
                lines: LineReader::new(run.offset, run.first_line),
                upper: run.upper,
                next: run.start,
                pending: None,
            });
        }
        let Some(cursor) = self.cursor.as_mut() else {
            return Ok(());
        };
        while cursor.next < run.end && cursor.next < b {
            let record = match cursor.pending.take() {
                Some(p) => p,
                None => next_data(package, cursor, &run)?,
            };
            let end = record.start + record.bytes.len() as u32;
            let lo = record.start.max(a);
            let hi = end.min(b);
            if lo < hi {
                let src = &record.bytes[(lo - record.start) as usize..(hi - record.start) as usize];
                buf[(lo - a) as usize..(hi - a) as usize].copy_from_slice(src);
            }
            if end > b {
                cursor.pending = Some(record);
                break;
            }
            cursor.next = end;
        }
        Ok(())
    }
}

/// The next data record of the cursor's run, checked against the first pass.
fn next_data(
    package: &PackageReader,
    cursor: &mut Cursor,
    run: &Run,
) -> Result<Pending, PackageError> {
    loop {
        let Some(line) = cursor.lines.next_line(package)? else {
            return Err(changed(cursor.lines.next_number(), "it ends early"));
        };
        if line.number > run.last_line {
            return Err(changed(line.number, "a run of records is shorter"));
        }
        match record::parse(&line) {
            Ok(HexRecord::UpperAddress(u)) => cursor.upper = u32::from(u) << 16,
            Ok(HexRecord::Entry(_)) => {}
            Ok(HexRecord::Data { bytes, .. }) if bytes.is_empty() => {}
            Ok(HexRecord::Data { offset, bytes }) => {
                let start = u64::from(cursor.upper) + u64::from(offset);
                let end = start + bytes.len() as u64;
                if start != u64::from(cursor.next) || end > u64::from(run.end) {
                    return Err(changed(line.number, "a record moved"));
                }
                return Ok(Pending {
                    start: cursor.next,
                    bytes,
                });
            }
            Ok(HexRecord::EndOfFile) => {
                return Err(changed(line.number, "the end-of-file record moved"));
            }
            Err(e) => return Err(changed(line.number, &e.message)),
        }
    }
}

/// The line of the record of `map` that writes `address`, read back from `package`.
pub(super) fn record_line(package: &PackageReader, map: &HexMap, address: u32) -> Option<u64> {
    let run = *map
        .runs
        .iter()
        .find(|r| (r.start..r.end).contains(&address))?;
    let mut cursor = Cursor {
        run: 0,
        lines: LineReader::new(run.offset, run.first_line),
        upper: run.upper,
        next: run.start,
        pending: None,
    };
    while cursor.next < run.end {
        let record = next_data(package, &mut cursor, &run).ok()?;
        let end = record.start + record.bytes.len() as u32;
        if (record.start..end).contains(&address) {
            return Some(cursor.lines.next_number() - 1);
        }
        cursor.next = end;
    }
    None
}
