//! `--record LOG`: every frame and error frame of a simulated site's buses, as one
//! candump log in time order (`candump -l` format, read by `canplayer`, python-can and
//! `bmsfw`'s own reader).
//!
//! Each bus logs what it carries, under its own name; the lines of all buses meet in one
//! [`OrderedWriter`], which puts them in time order before they reach the file.

use anyhow::Context;
use bmsfw_can::candump::{OrderedWriter, parse_line};
use bmsfw_sim::bus::SimBus;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// How long lines wait to be put in order with the other buses' lines.
const REORDER_WINDOW: Duration = Duration::from_secs(1);

/// Longest line a bus hands over (a log line is under 80 bytes).
const MAX_PENDING_LINE: usize = 1024;

type Shared = Arc<Mutex<OrderedWriter<BufWriter<File>>>>;

/// A recording in progress.
pub struct Recorder {
    path: PathBuf,
    shared: Shared,
    buses: Vec<SimBus>,
}

/// What a finished recording holds.
pub struct Recorded {
    /// Lines written.
    pub lines: u64,
    /// Where.
    pub path: PathBuf,
}

impl Recorder {
    /// Creates `path` and starts logging every bus of `buses` into it.
    pub fn start(path: &Path, buses: &[SimBus]) -> anyhow::Result<Recorder> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let shared: Shared = Arc::new(Mutex::new(OrderedWriter::new(
            BufWriter::new(file),
            REORDER_WINDOW,
        )));
        // One clock for all buses: the wall-clock time now, less each bus's age.
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let now = Instant::now();
        for bus in buses {
            let age = now.saturating_duration_since(bus.epoch());
            let sink = BusSink {
                shared: Arc::clone(&shared),
                line: Vec::new(),
            };
            bus.start_log(sink, unix_now.saturating_sub(age))
                .with_context(|| format!("recording bus {}", bus.name()))?;
        }
        Ok(Recorder {
            path: path.to_path_buf(),
            shared,
            buses: buses.to_vec(),
        })
    }

    /// Stops logging, writes the lines still held and closes the file.
    pub fn finish(self) -> anyhow::Result<Recorded> {
        let mut failures = Vec::new();
        for bus in &self.buses {
            if let Some(Err(e)) = bus.stop_log() {
                failures.push(format!("bus {}: {e}", bus.name()));
            }
        }
        let writer = match Arc::try_unwrap(self.shared) {
            Ok(mutex) => mutex.into_inner().unwrap_or_else(PoisonError::into_inner),
            Err(_) => anyhow::bail!(
                "recording {}: a bus still holds the log",
                self.path.display()
            ),
        };
        let mut writer = writer;
        writer
            .drain()
            .with_context(|| format!("writing {}", self.path.display()))?;
        let late = writer.late();
        if late > 0 {
            tracing::warn!(
                late,
                "recording: lines arrived later than the reorder window"
            );
        }
        if !failures.is_empty() {
            anyhow::bail!(
                "recording {} is incomplete: {}",
                self.path.display(),
                failures.join("; ")
            );
        }
        Ok(Recorded {
            lines: writer.written(),
            path: self.path,
        })
    }
}

/// What one bus writes its log lines into: parses each line back and hands it to the
/// shared writer.
struct BusSink {
    shared: Shared,
    line: Vec<u8>,
}

impl BusSink {
    fn take_line(&mut self, line: &[u8]) -> io::Result<()> {
        let text =
            std::str::from_utf8(line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let record = parse_line(text)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{text:?}: {e}")))?;
        let Some(record) = record else {
            return Ok(());
        };
        self.shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record.timestamp, &record.interface, record.entry)
    }
}

impl Write for BusSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            let line = if self.line.is_empty() {
                self.take_line(&rest[..i])
            } else {
                self.line.extend_from_slice(&rest[..i]);
                let line = std::mem::take(&mut self.line);
                self.take_line(&line)
            };
            line?;
            rest = &rest[i + 1..];
        }
        if self.line.len() + rest.len() > MAX_PENDING_LINE {
            self.line.clear();
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a log line longer than 1024 bytes",
            ));
        }
        self.line.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_can::candump::{CandumpReader, ErrorFrame, LogEntry};
    use bmsfw_can::{CanFrame, CanId};
    use bmsfw_sim::bus::CorruptRule;

    #[tokio::test]
    async fn two_buses_are_recorded_in_one_time_ordered_log_with_error_frames() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.log");
        let can0 = SimBus::new("can0", 500_000);
        let can1 = SimBus::new("can1", 500_000);
        let recorder = Recorder::start(&path, &[can0.clone(), can1.clone()]).unwrap();
        can1.set_corrupt_rule(CorruptRule::when(|t| {
            t.frame.id().raw() == 0x356 && t.retransmission == 0
        }));
        let (a, b) = (can0.attach("a"), can1.attach("b"));
        let (_ra, _rb) = (can0.attach("gx0"), can1.attach("gx1"));
        for i in 0..20u8 {
            let f = CanFrame::new(CanId::standard(0x351).unwrap(), &[i]).unwrap();
            a.send(f).await.unwrap();
            let g = CanFrame::new(CanId::standard(0x356).unwrap(), &[i]).unwrap();
            b.send(g).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let recorded = recorder.finish().unwrap();
        let records: Vec<_> = CandumpReader::new(io::BufReader::new(File::open(&path).unwrap()))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(recorded.lines, records.len() as u64);
        let count = |bus: &str, error: bool| {
            records
                .iter()
                .filter(|r| r.interface == bus && matches!(r.entry, LogEntry::Error(_)) == error)
                .count()
        };
        assert_eq!(count("can0", false), 20);
        assert_eq!(count("can1", false), 20);
        assert_eq!(
            count("can1", true),
            20,
            "one error frame per corrupted 0x356"
        );
        assert_eq!(count("can0", true), 0);
        assert!(
            records
                .iter()
                .any(|r| r.entry == LogEntry::Error(ErrorFrame::CRC_ERROR))
        );
        assert!(
            records.windows(2).all(|w| w[0].timestamp <= w[1].timestamp),
            "lines in time order"
        );
    }
}
