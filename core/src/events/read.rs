//! Reading the event log back, tolerating what a crash or a bad disk leaves behind.

use crate::events::log::{CURRENT_FILE, KEPT_FILE, MAX_LINE};
use crate::events::record::EventRecord;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

/// A line the reader skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    /// The file.
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub reason: String,
}

/// Every readable event, oldest first, and the lines that were not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// The events, oldest file first, in file order.
    pub events: Vec<EventRecord>,
    /// Lines skipped with a warning.
    pub skipped: Vec<SkippedLine>,
}

impl History {
    /// Reads the log in `dir`: the firmware changes kept from deleted files (the oldest
    /// events), rotated files from oldest to newest, then the current file.
    /// A torn last line (no newline at the end) and unreadable or overlong lines are skipped
    /// with a warning; nothing panics. A missing directory is an empty history.
    pub fn read(dir: &Path) -> io::Result<History> {
        let mut history = History::default();
        let mut rotated: Vec<(u32, PathBuf)> = match fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name();
                    let n = name
                        .to_str()?
                        .strip_prefix("events.")?
                        .strip_suffix(".jsonl")?
                        .parse::<u32>()
                        .ok()?;
                    Some((n, e.path()))
                })
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(history),
            Err(e) => return Err(e),
        };
        rotated.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
        let files = std::iter::once(dir.join(KEPT_FILE))
            .chain(rotated.into_iter().map(|(_, p)| p))
            .chain(std::iter::once(dir.join(CURRENT_FILE)));
        for path in files {
            match File::open(&path) {
                Ok(file) => history.read_file(&path, BufReader::new(file))?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(history)
    }

    /// Reads one file of the log (a missing one is empty), with the same tolerance.
    pub(crate) fn read_one(path: &Path) -> io::Result<History> {
        let mut history = History::default();
        match File::open(path) {
            Ok(file) => history.read_file(path, BufReader::new(file))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(history)
    }

    fn read_file(&mut self, path: &Path, mut reader: impl BufRead) -> io::Result<()> {
        let mut line_no = 0;
        let mut line = Vec::new();
        loop {
            line.clear();
            let (overlong, terminated) = read_bounded_line(&mut reader, &mut line)?;
            if line.is_empty() && !overlong && !terminated {
                return Ok(());
            }
            line_no += 1;
            let skip = |reason: String| {
                tracing::warn!(file = %path.display(), line = line_no, %reason, "event log line skipped");
                SkippedLine {
                    file: path.to_path_buf(),
                    line: line_no,
                    reason,
                }
            };
            if !terminated {
                self.skipped
                    .push(skip("torn last line (interrupted write)".into()));
                return Ok(());
            }
            if overlong {
                self.skipped
                    .push(skip(format!("longer than {MAX_LINE} bytes")));
                continue;
            }
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<EventRecord>(&line) {
                Ok(record) => self.events.push(record),
                Err(e) => self.skipped.push(skip(format!("unreadable: {e}"))),
            }
        }
    }

    /// The events of the battery with serial number `serial`.
    pub fn for_battery<'a>(&'a self, serial: &'a str) -> impl Iterator<Item = &'a EventRecord> {
        self.events
            .iter()
            .filter(move |e| e.battery.matches(serial))
    }
}

/// Reads up to the next newline into `out`, keeping at most [`MAX_LINE`] bytes. Returns
/// (whether the line was longer, whether a newline ended it).
fn read_bounded_line(reader: &mut impl BufRead, out: &mut Vec<u8>) -> io::Result<(bool, bool)> {
    let mut overlong = false;
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok((overlong, false));
        }
        let (chunk, found) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
        if !overlong {
            if out.len() + chunk.len() > MAX_LINE {
                overlong = true;
                out.clear();
            } else {
                out.extend_from_slice(chunk);
            }
        }
        let used = chunk.len() + usize::from(found);
        reader.consume(used);
        if found {
            return Ok((overlong, true));
        }
    }
}
