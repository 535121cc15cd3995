//! Log files in the format of can-utils' `candump -l`, read back by `canplayer`:
//!
//! ```text
//! (1700000000.123456) can0 351#0102030405060708
//! (1700000000.123678) can0 18FF50E5#1122
//! (1700000000.124000) can0 20000088#0000000800000000
//! ```
//!
//! A line holds a timestamp in seconds since the UNIX epoch, the interface name, and the
//! frame: three hex digits for an 11-bit identifier, eight for a 29-bit one, `#`, then 0
//! to 8 data bytes as hex pairs (a `.` between bytes is accepted, as can-utils does).
//! Error frames are eight-digit identifiers with the `CAN_ERR_FLAG` bit (0x20000000) set
//! and eight data bytes, as Linux reports them. Bus errors also carry `CAN_ERR_BUSERROR`
//! (0x80), as Linux drivers set it: python-can, for one, reads a line as an error frame
//! only with both bits. The reader takes any line with `CAN_ERR_FLAG` for an error frame.
//! [`OrderedWriter`] merges the lines of several buses in time order. Remote frames (`123#R`) and CAN FD frames
//! (`123##1...`) are refused with an error that says so: classic data frames are all
//! bmsfw carries.
//!
//! The reader treats its input as hostile: lines are bounded to [`MAX_LINE_LEN`] bytes,
//! nothing panics, and every error names the line, the column and what was wrong.

use bmsfw_plugin_api::frame::{MAX_DATA_LEN, MAX_EXTENDED_ID, MAX_STANDARD_ID};
use bmsfw_plugin_api::{CanFrame, CanId};
use std::fmt;
use std::io::{self, BufRead, Write};
use std::time::Duration;

mod ordered;
pub use ordered::{MAX_PENDING, OrderedWriter};

/// Longest line the reader accepts, in bytes, line ending excluded. A classic CAN line
/// is under 70 bytes; the margin allows long interface names and fractions.
pub const MAX_LINE_LEN: usize = 256;

/// Longest interface name (Linux `IFNAMSIZ` less the terminating NUL).
pub const MAX_INTERFACE_LEN: usize = 15;

/// The bit that marks an error frame's identifier (`CAN_ERR_FLAG`).
pub const CAN_ERR_FLAG: u32 = 0x2000_0000;

/// Error class bit for a protocol violation (`CAN_ERR_PROT`).
pub const CAN_ERR_PROT: u32 = 0x0000_0008;

/// Error class bit for a bus error (`CAN_ERR_BUSERROR`). Linux controller drivers set it
/// with [`CAN_ERR_PROT`] when they see a protocol violation on the bus, and readers such
/// as python-can only take a line for an error frame when it is there.
pub const CAN_ERR_BUSERROR: u32 = 0x0000_0080;

/// Error class bit for a transmission no node acknowledged (`CAN_ERR_ACK`).
pub const CAN_ERR_ACK: u32 = 0x0000_0020;

/// Error class bit for a controller problem (`CAN_ERR_CRTL`), detailed in `data[1]`.
pub const CAN_ERR_CRTL: u32 = 0x0000_0004;

/// Controller problem: its receive buffer overflowed and a frame was lost
/// (`CAN_ERR_CRTL_RX_OVERFLOW`, in `data[1]`).
pub const CAN_ERR_CRTL_RX_OVERFLOW: u8 = 0x01;

/// Location byte value "CRC sequence" of a protocol violation (`CAN_ERR_PROT_LOC_CRC_SEQ`).
pub const CAN_ERR_PROT_LOC_CRC_SEQ: u8 = 0x08;

/// An error frame as Linux reports it: the error class bits and eight bytes of detail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ErrorFrame {
    /// Error class (`CAN_ERR_*` bits, at most 29 bits, without [`CAN_ERR_FLAG`]).
    pub class: u32,
    /// Error details (`data[0..8]` of a Linux error frame).
    pub data: [u8; 8],
}

impl ErrorFrame {
    /// A bus error whose cause the backend did not report in bits: a protocol violation
    /// of unspecified type and location, with the bus-error bit.
    pub const UNSPECIFIED_BUS_ERROR: ErrorFrame = ErrorFrame {
        class: CAN_ERR_PROT | CAN_ERR_BUSERROR,
        data: [0; 8],
    };

    /// The error frame whose identifier word (with or without [`CAN_ERR_FLAG`]) is
    /// `id_word` and whose detail bytes are `data` (missing bytes are zero, extra ones
    /// are ignored).
    pub fn from_kernel(id_word: u32, data: &[u8]) -> ErrorFrame {
        let mut bytes = [0u8; 8];
        let n = data.len().min(8);
        bytes[..n].copy_from_slice(&data[..n]);
        ErrorFrame {
            class: id_word & MAX_EXTENDED_ID,
            data: bytes,
        }
    }

    /// Whether this frame reports a bus error (`CAN_ERR_BUSERROR`).
    pub fn is_bus_error(&self) -> bool {
        self.class & CAN_ERR_BUSERROR != 0
    }

    /// Whether this frame reports a transmission cut short by an error frame, which its
    /// sender sends again: a bus error, a protocol violation or a missing acknowledgement
    /// (a controller state change or lost arbitration alone destroys nothing).
    pub fn destroys_a_transmission(&self) -> bool {
        self.class & (CAN_ERR_BUSERROR | CAN_ERR_PROT | CAN_ERR_ACK) != 0
    }

    /// Whether this frame reports that the controller's receive buffer overflowed: a
    /// frame was on the bus that this node never received.
    pub fn reports_a_lost_frame(&self) -> bool {
        self.class & CAN_ERR_CRTL != 0 && self.data[1] & CAN_ERR_CRTL_RX_OVERFLOW != 0
    }
}

impl ErrorFrame {
    /// A protocol violation found in the CRC sequence: what a frame destroyed by noise
    /// looks like to the nodes that detect it. The class carries the bus-error bit with
    /// the protocol-violation bit, as Linux drivers report it.
    pub const CRC_ERROR: ErrorFrame = ErrorFrame {
        class: CAN_ERR_PROT | CAN_ERR_BUSERROR,
        data: [0, 0, 0, CAN_ERR_PROT_LOC_CRC_SEQ, 0, 0, 0, 0],
    };

    /// A receive buffer overflow: the controller lost a frame the bus carried.
    pub const RX_OVERFLOW: ErrorFrame = ErrorFrame {
        class: CAN_ERR_CRTL,
        data: [0, CAN_ERR_CRTL_RX_OVERFLOW, 0, 0, 0, 0, 0, 0],
    };
}

/// What a log line carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogEntry {
    /// A classic data frame.
    Frame(CanFrame),
    /// An error frame.
    Error(ErrorFrame),
}

/// One line of a candump log.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LogRecord {
    /// Time since the UNIX epoch (the log keeps microseconds).
    pub timestamp: Duration,
    /// Interface name, such as `can0`.
    pub interface: String,
    /// The frame.
    pub entry: LogEntry,
}

/// What is wrong with a log line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// The line does not start with `(`.
    #[error("expected '(' opening the timestamp")]
    MissingTimestamp,
    /// The timestamp is not `(seconds.fraction)` with 1 to 9 fraction digits.
    #[error("malformed timestamp: {0}")]
    Timestamp(&'static str),
    /// Seconds that do not fit 64 bits.
    #[error("timestamp seconds out of range")]
    TimestampRange,
    /// Something other than one space or tab where fields are separated.
    #[error("expected whitespace before the {0}")]
    MissingSeparator(&'static str),
    /// An interface name that is empty, too long or has a forbidden character.
    #[error("invalid interface name: {0}")]
    Interface(&'static str),
    /// The frame lacks its `#`.
    #[error("expected '#' after the identifier")]
    MissingHash,
    /// A character that is not a hex digit where one is needed.
    #[error("expected a hex digit, found {0:?}")]
    NotHex(char),
    /// An identifier that is neither 3 nor 8 hex digits.
    #[error("identifier has {0} hex digits; expected 3 (11-bit) or 8 (29-bit)")]
    IdLength(usize),
    /// An 11-bit identifier above 0x7FF.
    #[error("identifier {0:03X} is above 7FF")]
    StandardIdRange(u32),
    /// An eight-digit identifier with flag bits other than the error flag.
    #[error("identifier {0:08X} sets flag bits above the 29-bit range")]
    IdFlags(u32),
    /// A data byte with only one hex digit.
    #[error("odd number of hex digits in the data")]
    OddData,
    /// More than eight data bytes.
    #[error("more than {MAX_DATA_LEN} data bytes")]
    TooMuchData,
    /// An error frame without exactly eight data bytes.
    #[error("an error frame carries 8 data bytes, found {0}")]
    ErrorFrameLength(usize),
    /// A remote frame.
    #[error("remote frames are not supported")]
    RemoteFrame,
    /// A CAN FD frame.
    #[error("CAN FD frames are not supported")]
    CanFd,
    /// Characters after the frame.
    #[error("unexpected text after the frame")]
    TrailingText,
}

/// A log line that could not be parsed, with the 1-based column where it went wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {kind}")]
pub struct LineError {
    /// 1-based byte column.
    pub column: usize,
    /// What was wrong.
    pub kind: ParseErrorKind,
}

/// Why a candump log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CandumpError {
    /// Reading failed.
    #[error("line {line}: read error: {source}")]
    Io {
        /// 1-based line number.
        line: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A line longer than [`MAX_LINE_LEN`].
    #[error("line {line}: longer than {limit} bytes")]
    LineTooLong {
        /// 1-based line number.
        line: u64,
        /// The limit.
        limit: usize,
    },
    /// A line that is not UTF-8.
    #[error("line {line}, column {column}: not UTF-8 text")]
    NotUtf8 {
        /// 1-based line number.
        line: u64,
        /// 1-based byte column of the first invalid byte.
        column: usize,
    },
    /// A line that is not a valid log line.
    #[error("line {line}, column {column}: {kind}")]
    Parse {
        /// 1-based line number.
        line: u64,
        /// 1-based byte column.
        column: usize,
        /// What was wrong.
        kind: ParseErrorKind,
    },
}

impl CandumpError {
    /// The 1-based line the error is on.
    pub fn line(&self) -> u64 {
        match self {
            CandumpError::Io { line, .. }
            | CandumpError::LineTooLong { line, .. }
            | CandumpError::NotUtf8 { line, .. }
            | CandumpError::Parse { line, .. } => *line,
        }
    }
}

/// Whether `name` can stand as an interface name in a log.
pub fn valid_interface(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name.len() > MAX_INTERFACE_LEN {
        return Err("longer than 15 bytes");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
    {
        return Err("only printable ASCII other than '/' and ':' is allowed");
    }
    Ok(())
}

/// Writes candump log lines.
#[derive(Debug)]
pub struct CandumpWriter<W: Write> {
    out: W,
}

impl<W: Write> CandumpWriter<W> {
    /// A writer into `out` (wrap files in a `BufWriter`).
    pub fn new(out: W) -> CandumpWriter<W> {
        CandumpWriter { out }
    }

    /// Writes one line; refuses interface names a reader could not parse back.
    pub fn write(
        &mut self,
        timestamp: Duration,
        interface: &str,
        entry: &LogEntry,
    ) -> io::Result<()> {
        valid_interface(interface).map_err(|why| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("interface name {interface:?}: {why}"),
            )
        })?;
        writeln!(
            self.out,
            "{}",
            Line {
                timestamp,
                interface,
                entry
            }
        )
    }

    /// Writes a data frame.
    pub fn write_frame(
        &mut self,
        timestamp: Duration,
        interface: &str,
        frame: &CanFrame,
    ) -> io::Result<()> {
        self.write(timestamp, interface, &LogEntry::Frame(*frame))
    }

    /// Writes a record.
    pub fn write_record(&mut self, record: &LogRecord) -> io::Result<()> {
        self.write(record.timestamp, &record.interface, &record.entry)
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Reads candump log lines; an iterator of records. Blank lines and lines starting with
/// `#` are skipped. After an error the reader goes on with the next line.
#[derive(Debug)]
pub struct CandumpReader<R: BufRead> {
    input: R,
    line: u64,
    buf: Vec<u8>,
    finished: bool,
}

impl<R: BufRead> CandumpReader<R> {
    /// A reader of `input`.
    pub fn new(input: R) -> CandumpReader<R> {
        CandumpReader {
            input,
            line: 0,
            buf: Vec::with_capacity(MAX_LINE_LEN + 2),
            finished: false,
        }
    }

    /// The 1-based number of the line last read (0 before the first): the line of the
    /// record or error [`Iterator::next`] returned last.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Reads one line into `buf`, at most `MAX_LINE_LEN + 1` bytes of it; the rest of a
    /// longer line is consumed and thrown away. Returns whether a line was there and
    /// whether it was too long.
    fn read_line(&mut self) -> io::Result<Option<bool>> {
        self.buf.clear();
        let mut too_long = false;
        let mut any = false;
        loop {
            let available = match self.input.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                return Ok(any.then_some(too_long));
            }
            any = true;
            let (chunk, newline) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..i], Some(i)),
                None => (available, None),
            };
            let room = (MAX_LINE_LEN + 1).saturating_sub(self.buf.len());
            if chunk.len() > room {
                too_long = true;
            }
            self.buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            let consumed = newline.map_or(chunk.len(), |i| i + 1);
            self.input.consume(consumed);
            if newline.is_some() {
                return Ok(Some(too_long));
            }
        }
    }
}

impl<R: BufRead> Iterator for CandumpReader<R> {
    type Item = Result<LogRecord, CandumpError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.finished {
            let read = self.read_line();
            self.line += 1;
            let line = self.line;
            let too_long = match read {
                Ok(Some(too_long)) => too_long,
                Ok(None) => {
                    self.finished = true;
                    return None;
                }
                Err(source) => {
                    self.finished = true;
                    return Some(Err(CandumpError::Io { line, source }));
                }
            };
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
            if too_long || self.buf.len() > MAX_LINE_LEN {
                return Some(Err(CandumpError::LineTooLong {
                    line,
                    limit: MAX_LINE_LEN,
                }));
            }
            let text = match std::str::from_utf8(&self.buf) {
                Ok(t) => t,
                Err(e) => {
                    return Some(Err(CandumpError::NotUtf8 {
                        line,
                        column: e.valid_up_to() + 1,
                    }));
                }
            };
            match parse_line(text) {
                Ok(Some(record)) => return Some(Ok(record)),
                Ok(None) => continue,
                Err(LineError { column, kind }) => {
                    return Some(Err(CandumpError::Parse { line, column, kind }));
                }
            }
        }
        None
    }
}

/// A cursor over one line that knows its column.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn error(&self, kind: ParseErrorKind) -> LineError {
        LineError {
            column: self.pos + 1,
            kind,
        }
    }

    fn error_at(&self, pos: usize, kind: ParseErrorKind) -> LineError {
        LineError {
            column: pos + 1,
            kind,
        }
    }

    /// The current character, for messages (non-ASCII bytes show as U+FFFD).
    fn current_char(&self) -> char {
        match self.peek() {
            Some(b) if b.is_ascii() => char::from(b),
            Some(_) => char::REPLACEMENT_CHARACTER,
            None => '\n',
        }
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        // Only ASCII predicates are used, so the slice is valid UTF-8.
        std::str::from_utf8(&self.bytes[start..self.pos]).unwrap_or("")
    }

    fn separator(&mut self, before: &'static str) -> Result<(), LineError> {
        if !matches!(self.peek(), Some(b' ' | b'\t')) {
            return Err(self.error(ParseErrorKind::MissingSeparator(before)));
        }
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        Ok(())
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Parses one log line (without its line ending). Blank lines and `#` comments give
/// `Ok(None)`.
pub fn parse_line(line: &str) -> Result<Option<LogRecord>, LineError> {
    let trimmed = line.trim_start_matches([' ', '\t']);
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let mut c = Cursor {
        bytes: line.as_bytes(),
        pos: line.len() - trimmed.len(),
    };
    let timestamp = parse_timestamp(&mut c)?;
    c.separator("interface name")?;
    let iface_start = c.pos;
    let interface = c.take_while(|b| !matches!(b, b' ' | b'\t'));
    let checked = valid_interface(interface);
    let interface = interface.to_owned();
    checked.map_err(|why| c.error_at(iface_start, ParseErrorKind::Interface(why)))?;
    c.separator("frame")?;
    let entry = parse_frame(&mut c)?;
    while matches!(c.peek(), Some(b' ' | b'\t')) {
        c.pos += 1;
    }
    if c.peek().is_some() {
        return Err(c.error(ParseErrorKind::TrailingText));
    }
    Ok(Some(LogRecord {
        timestamp,
        interface,
        entry,
    }))
}

fn parse_timestamp(c: &mut Cursor<'_>) -> Result<Duration, LineError> {
    if c.peek() != Some(b'(') {
        return Err(c.error(ParseErrorKind::MissingTimestamp));
    }
    c.pos += 1;
    let secs_start = c.pos;
    let secs = c.take_while(|b| b.is_ascii_digit());
    if secs.is_empty() {
        return Err(c.error(ParseErrorKind::Timestamp("expected the seconds")));
    }
    if secs.len() > 20 {
        return Err(c.error_at(secs_start, ParseErrorKind::TimestampRange));
    }
    let secs: u64 = secs
        .parse()
        .map_err(|_| c.error_at(secs_start, ParseErrorKind::TimestampRange))?;
    if c.peek() != Some(b'.') {
        return Err(c.error(ParseErrorKind::Timestamp("expected '.' after the seconds")));
    }
    c.pos += 1;
    let frac_start = c.pos;
    let frac = c.take_while(|b| b.is_ascii_digit());
    if frac.is_empty() || frac.len() > 9 {
        return Err(c.error_at(
            frac_start,
            ParseErrorKind::Timestamp("expected 1 to 9 digits of fraction"),
        ));
    }
    let digits = frac.len() as u32;
    let frac: u32 = frac
        .parse()
        .map_err(|_| c.error_at(frac_start, ParseErrorKind::Timestamp("bad fraction")))?;
    let nanos = frac * 10u32.pow(9 - digits);
    if c.peek() != Some(b')') {
        return Err(c.error(ParseErrorKind::Timestamp(
            "expected ')' closing the timestamp",
        )));
    }
    c.pos += 1;
    Ok(Duration::new(secs, nanos))
}

fn parse_frame(c: &mut Cursor<'_>) -> Result<LogEntry, LineError> {
    let id_start = c.pos;
    let mut id: u32 = 0;
    let mut digits = 0usize;
    while let Some(b) = c.peek() {
        if b == b'#' {
            break;
        }
        if matches!(b, b' ' | b'\t') {
            return Err(c.error(ParseErrorKind::MissingHash));
        }
        let Some(v) = hex_value(b) else {
            return Err(c.error(ParseErrorKind::NotHex(c.current_char())));
        };
        digits += 1;
        if digits > 8 {
            // Keep counting for the message, without overflowing.
            c.pos += 1;
            continue;
        }
        id = (id << 4) | u32::from(v);
        c.pos += 1;
    }
    if c.peek() != Some(b'#') {
        return Err(c.error(ParseErrorKind::MissingHash));
    }
    let kind = match digits {
        3 => {
            if id > MAX_STANDARD_ID {
                return Err(c.error_at(id_start, ParseErrorKind::StandardIdRange(id)));
            }
            IdKind::Standard
        }
        8 => {
            if id & !(MAX_EXTENDED_ID | CAN_ERR_FLAG) != 0 {
                return Err(c.error_at(id_start, ParseErrorKind::IdFlags(id)));
            }
            if id & CAN_ERR_FLAG != 0 {
                IdKind::Error
            } else {
                IdKind::Extended
            }
        }
        n => return Err(c.error_at(id_start, ParseErrorKind::IdLength(n))),
    };
    c.pos += 1; // '#'
    match c.peek() {
        Some(b'#') => return Err(c.error(ParseErrorKind::CanFd)),
        Some(b'R' | b'r') => return Err(c.error(ParseErrorKind::RemoteFrame)),
        _ => {}
    }
    let mut data = [0u8; MAX_DATA_LEN];
    let mut len = 0usize;
    let data_start = c.pos;
    while !matches!(c.peek(), None | Some(b' ' | b'\t')) {
        if len > 0 && c.peek() == Some(b'.') {
            // A dot may separate two bytes.
            c.pos += 1;
            if c.peek().and_then(hex_value).is_none() {
                return Err(c.error(ParseErrorKind::NotHex(c.current_char())));
            }
        }
        let Some(hi) = c.peek().and_then(hex_value) else {
            return Err(c.error(ParseErrorKind::NotHex(c.current_char())));
        };
        if len == MAX_DATA_LEN {
            return Err(c.error(ParseErrorKind::TooMuchData));
        }
        c.pos += 1;
        let lo = match c.peek() {
            None | Some(b' ' | b'\t' | b'.') => return Err(c.error(ParseErrorKind::OddData)),
            Some(b) => match hex_value(b) {
                Some(v) => v,
                None => return Err(c.error(ParseErrorKind::NotHex(c.current_char()))),
            },
        };
        c.pos += 1;
        data[len] = (hi << 4) | lo;
        len += 1;
    }
    let entry = match kind {
        IdKind::Standard | IdKind::Extended => {
            let can_id = if kind == IdKind::Standard {
                CanId::standard(id as u16)
            } else {
                CanId::extended(id)
            };
            // Both are in range: checked above.
            let frame = can_id.and_then(|id| CanFrame::new(id, &data[..len]));
            match frame {
                Some(f) => LogEntry::Frame(f),
                None => return Err(c.error_at(id_start, ParseErrorKind::IdFlags(id))),
            }
        }
        IdKind::Error => {
            if len != 8 {
                return Err(c.error_at(data_start, ParseErrorKind::ErrorFrameLength(len)));
            }
            LogEntry::Error(ErrorFrame {
                class: id & MAX_EXTENDED_ID,
                data,
            })
        }
    };
    Ok(entry)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum IdKind {
    Standard,
    Extended,
    Error,
}

/// One log line without its line ending.
struct Line<'a> {
    timestamp: Duration,
    interface: &'a str,
    entry: &'a LogEntry,
}

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "({}.{:06}) {} ",
            self.timestamp.as_secs(),
            self.timestamp.subsec_micros(),
            self.interface
        )?;
        match self.entry {
            LogEntry::Frame(frame) => write!(f, "{frame}"),
            LogEntry::Error(err) => {
                write!(f, "{:08X}#", (err.class & MAX_EXTENDED_ID) | CAN_ERR_FLAG)?;
                err.data.iter().try_for_each(|b| write!(f, "{b:02X}"))
            }
        }
    }
}

/// The record as a log line, without the line ending.
impl fmt::Display for LogRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Line {
            timestamp: self.timestamp,
            interface: &self.interface,
            entry: &self.entry,
        }
        .fmt(f)
    }
}

#[cfg(test)]
mod tests;
