//! `--record LOG`: every frame and error frame of the buses, simulated or SocketCAN, as
//! one candump log in time order (`candump -l` format, read by `canplayer`, python-can
//! and `bmsfw`'s own reader).
//!
//! Each simulated bus logs what it carries, under its own name; each SocketCAN interface
//! is read by a socket of the recording's own (the node's own frames reach it through the
//! interface's loopback, error frames through its error filter). The lines of all buses
//! meet in one [`OrderedWriter`], which puts them in time order before they reach the
//! file.

use anyhow::Context;
use bmsfw_can::candump::OrderedWriter;
#[cfg(feature = "sim")]
use bmsfw_can::candump::parse_line;
use bmsfw_can::{CanEvent, CanInterface, LogEntry, SocketCanInterface};
#[cfg(feature = "sim")]
use bmsfw_sim::bus::SimBus;

/// A build without the simulator has no simulated bus to record.
#[cfg(not(feature = "sim"))]
#[derive(Clone)]
pub enum SimBus {}
use std::fs::File;
use std::io::BufWriter;
#[cfg(feature = "sim")]
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// How long lines wait to be put in order with the other buses' lines.
const REORDER_WINDOW: Duration = Duration::from_secs(1);

/// Longest line a bus hands over (a log line is under 80 bytes).
#[cfg(feature = "sim")]
const MAX_PENDING_LINE: usize = 1024;

type Shared = Arc<Mutex<OrderedWriter<BufWriter<File>>>>;

/// A recording in progress.
pub struct Recorder {
    path: PathBuf,
    shared: Shared,
    #[cfg(feature = "sim")]
    buses: Vec<SimBus>,
    sockets: Vec<SocketReader>,
}

/// The reader of one SocketCAN interface.
struct SocketReader {
    name: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// What a finished recording holds.
pub struct Recorded {
    /// Lines written.
    pub lines: u64,
    /// Where.
    pub path: PathBuf,
}

impl Recorder {
    /// Creates `path` and starts logging every simulated bus of `buses` and every
    /// SocketCAN interface of `interfaces` into it. With interfaces, it must run inside a
    /// Tokio runtime.
    #[cfg_attr(not(feature = "sim"), allow(unused_variables))]
    pub fn start(path: &Path, buses: &[SimBus], interfaces: &[String]) -> anyhow::Result<Recorder> {
        // Every interface opens before the file is created: a wrong name leaves nothing.
        let opened = interfaces
            .iter()
            .map(|name| {
                SocketCanInterface::open(name)
                    .with_context(|| format!("opening SocketCAN interface {name} to record it"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
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
        #[cfg(feature = "sim")]
        for bus in buses {
            let age = now.saturating_duration_since(bus.epoch());
            let sink = BusSink {
                shared: Arc::clone(&shared),
                line: Vec::new(),
            };
            bus.start_log(sink, unix_now.saturating_sub(age))
                .with_context(|| format!("recording bus {}", bus.name()))?;
        }
        let sockets = opened
            .into_iter()
            .map(|iface| SocketReader::start(iface, Arc::clone(&shared), unix_now, now))
            .collect();
        Ok(Recorder {
            path: path.to_path_buf(),
            shared,
            #[cfg(feature = "sim")]
            buses: buses.to_vec(),
            sockets,
        })
    }

    /// Stops logging, writes the lines still held and closes the file.
    pub async fn finish(self) -> anyhow::Result<Recorded> {
        let mut failures: Vec<String> = Vec::new();
        #[cfg(feature = "sim")]
        for bus in &self.buses {
            if let Some(Err(e)) = bus.stop_log() {
                failures.push(format!("bus {}: {e}", bus.name()));
            }
        }
        for socket in self.sockets {
            let _ = socket.stop.send(());
            match socket.task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(format!("interface {}: {e:#}", socket.name)),
                Err(e) => failures.push(format!("interface {}: {e}", socket.name)),
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

impl SocketReader {
    /// Reads `iface` into `shared` until stopped; timestamps are `unix_now` plus the time
    /// since `now`.
    fn start(
        iface: SocketCanInterface,
        shared: Shared,
        unix_now: Duration,
        now: Instant,
    ) -> SocketReader {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let name = iface.name().to_owned();
        let bus = name.clone();
        let task = tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    _ = &mut stopped => return Ok(()),
                    event = iface.recv() => event,
                };
                let (at, entry) = match event {
                    Ok(CanEvent::Frame(rx)) => (rx.at, LogEntry::Frame(rx.frame)),
                    Ok(CanEvent::Error(e)) => (e.at, LogEntry::Error(e.frame)),
                    Ok(CanEvent::State(_)) => continue,
                    Err(e) => anyhow::bail!("reading it: {e}"),
                };
                let timestamp = unix_now + at.saturating_duration_since(now);
                shared
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(timestamp, &bus, entry)
                    .context("writing the log")?;
            }
        });
        SocketReader { name, stop, task }
    }
}

/// What one bus writes its log lines into: parses each line back and hands it to the
/// shared writer.
#[cfg(feature = "sim")]
struct BusSink {
    shared: Shared,
    line: Vec<u8>,
}

#[cfg(feature = "sim")]
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

#[cfg(feature = "sim")]
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
        let recorder = Recorder::start(&path, &[can0.clone(), can1.clone()], &[]).unwrap();
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
        let recorded = recorder.finish().await.unwrap();
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
