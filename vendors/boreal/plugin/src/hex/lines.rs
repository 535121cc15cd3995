//! Lines of a package file, read through the engine's reader in chunks, never the whole
//! file at once.

use bmsfw_plugin_api::{ErrorCode, PackageError, PackageReader};

/// Longest line accepted: a record of 255 data bytes is 521 characters.
pub const MAX_LINE: usize = 600;
/// Bytes read from the package at a time.
const CHUNK: usize = 64 * 1024;

/// One line, without its line ending (`\n` or `\r\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based line number.
    pub number: u64,
    /// Byte offset of the line's first character in the file.
    pub offset: u64,
    /// The line's bytes.
    pub bytes: Vec<u8>,
}

/// Reads lines from a byte offset on. The package is passed to every call, so that the
/// reader can live next to it in a session.
#[derive(Debug, Clone)]
pub struct LineReader {
    /// File offset of `buf[start]`.
    at: u64,
    /// Number of the next line.
    line: u64,
    buf: Vec<u8>,
    start: usize,
    /// The package's end was read into `buf`.
    ended: bool,
}

impl LineReader {
    /// A reader whose first line starts at `offset` and has number `line`.
    pub fn new(offset: u64, line: u64) -> LineReader {
        LineReader {
            at: offset,
            line,
            buf: Vec::new(),
            start: 0,
            ended: false,
        }
    }

    /// The number the next line will have (one past the last line at the end).
    pub fn next_number(&self) -> u64 {
        self.line
    }

    /// The next line, or `None` at the end of the file.
    pub fn next_line(&mut self, package: &PackageReader) -> Result<Option<Line>, PackageError> {
        loop {
            let pending = &self.buf[self.start..];
            if let Some(i) = pending.iter().position(|&b| b == b'\n') {
                return self.take(i, i + 1).map(Some);
            }
            if pending.len() > MAX_LINE {
                return Err(too_long(self.line));
            }
            if self.ended {
                if pending.is_empty() {
                    return Ok(None);
                }
                let len = pending.len();
                return self.take(len, len).map(Some);
            }
            self.fill(package)?;
        }
    }

    /// Takes `len` bytes as a line and consumes `consumed` bytes.
    fn take(&mut self, len: usize, consumed: usize) -> Result<Line, PackageError> {
        let mut bytes = &self.buf[self.start..self.start + len];
        if let [rest @ .., b'\r'] = bytes {
            bytes = rest;
        }
        if bytes.len() > MAX_LINE {
            return Err(too_long(self.line));
        }
        let line = Line {
            number: self.line,
            offset: self.at,
            bytes: bytes.to_vec(),
        };
        self.start += consumed;
        self.at += consumed as u64;
        self.line += 1;
        Ok(line)
    }

    fn fill(&mut self, package: &PackageReader) -> Result<(), PackageError> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let read_from = self.at + self.buf.len() as u64;
        let have = self.buf.len();
        self.buf.resize(have + CHUNK, 0);
        let n = package.read_at(read_from, &mut self.buf[have..])?;
        self.buf.truncate(have + n);
        if n == 0 {
            self.ended = true;
        }
        Ok(())
    }
}

fn too_long(line: u64) -> PackageError {
    PackageError::at_line(
        ErrorCode::PACKAGE_INVALID,
        line,
        format!(
            "the line is longer than {MAX_LINE} characters, longer than any Intel HEX record: \
             this is not an Intel HEX file"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{reader, reader_with};

    fn all(bytes: &[u8], chunk: usize) -> Result<Vec<Line>, PackageError> {
        let (package, _) = reader_with(bytes.to_vec(), chunk);
        let mut r = LineReader::new(0, 1);
        let mut out = Vec::new();
        while let Some(line) = r.next_line(&package)? {
            out.push(line);
        }
        Ok(out)
    }

    #[test]
    fn lines_split_on_lf_and_crlf_with_numbers_and_offsets() {
        for chunk in [1, 3, 64 * 1024] {
            let lines = all(b"ab\r\ncd\n\nlast", chunk).unwrap();
            let got: Vec<(u64, u64, &[u8])> = lines
                .iter()
                .map(|l| (l.number, l.offset, l.bytes.as_slice()))
                .collect();
            assert_eq!(
                got,
                vec![
                    (1, 0, &b"ab"[..]),
                    (2, 4, b"cd"),
                    (3, 7, b""),
                    (4, 8, b"last")
                ]
            );
        }
        assert!(all(b"", 10).unwrap().is_empty());
        assert_eq!(all(b"x\n", 10).unwrap().len(), 1);
    }

    #[test]
    fn a_reader_can_start_in_the_middle() {
        let package = reader(b"one\ntwo\nthree\n".to_vec());
        let mut r = LineReader::new(4, 2);
        let l = r.next_line(&package).unwrap().unwrap();
        assert_eq!((l.number, l.bytes.as_slice()), (2, &b"two"[..]));
        assert_eq!(r.next_line(&package).unwrap().unwrap().number, 3);
        assert_eq!(r.next_line(&package).unwrap(), None);
        assert_eq!(r.next_number(), 4);
    }

    #[test]
    fn an_endless_line_is_refused_with_its_number() {
        let mut bytes = b":00000001FF\n".to_vec();
        bytes.extend(std::iter::repeat_n(b'A', 5000));
        for chunk in [7, 64 * 1024] {
            let e = all(&bytes, chunk).unwrap_err();
            assert_eq!(e.location, bmsfw_plugin_api::Location::line(2), "{e}");
        }
    }
}
