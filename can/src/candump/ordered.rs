//! A candump writer that puts the lines of several buses in time order.
//!
//! Frames of different buses reach a recorder through different tasks, so they arrive
//! slightly out of order. [`OrderedWriter`] holds every line for a reorder window and
//! writes it once no earlier line can still come: lines are released when they are more
//! than the window older than the newest timestamp seen, or than the time given to
//! [`OrderedWriter::advance`]. A line that arrives later than the window is still written,
//! at the timestamp of the line before it, so the log never goes back in time; such lines
//! are counted by [`OrderedWriter::late`].

use super::{CandumpWriter, LogEntry, valid_interface};
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::io::{self, Write};
use std::time::Duration;

/// Most lines held at once; beyond it the oldest are written early. At 4,000 frames a
/// second on each of four buses, a one-second window holds 16,000.
pub const MAX_PENDING: usize = 65_536;

struct Pending {
    timestamp: Duration,
    seq: u64,
    interface: String,
    entry: LogEntry,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.timestamp, self.seq).cmp(&(other.timestamp, other.seq))
    }
}

/// Writes candump lines in timestamp order (ties keep their arrival order).
pub struct OrderedWriter<W: Write> {
    writer: CandumpWriter<W>,
    window: Duration,
    pending: BinaryHeap<Reverse<Pending>>,
    seq: u64,
    newest: Duration,
    last_written: Option<Duration>,
    written: u64,
    late: u64,
}

impl<W: Write> OrderedWriter<W> {
    /// A writer into `out` holding lines for `window`.
    pub fn new(out: W, window: Duration) -> OrderedWriter<W> {
        OrderedWriter {
            writer: CandumpWriter::new(out),
            window,
            pending: BinaryHeap::new(),
            seq: 0,
            newest: Duration::ZERO,
            last_written: None,
            written: 0,
            late: 0,
        }
    }

    /// Takes one line; writes the lines that can no longer be preceded. Refuses interface
    /// names a reader could not parse back.
    pub fn push(
        &mut self,
        timestamp: Duration,
        interface: &str,
        entry: LogEntry,
    ) -> io::Result<()> {
        valid_interface(interface).map_err(|why| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("interface name {interface:?}: {why}"),
            )
        })?;
        self.seq += 1;
        self.pending.push(Reverse(Pending {
            timestamp,
            seq: self.seq,
            interface: interface.to_owned(),
            entry,
        }));
        while self.pending.len() > MAX_PENDING {
            self.write_oldest()?;
        }
        self.advance(timestamp)
    }

    /// Tells the writer that the recording's clock reached `now`: lines older than
    /// `now` less the window are written.
    pub fn advance(&mut self, now: Duration) -> io::Result<()> {
        self.newest = self.newest.max(now);
        let Some(cut) = self.newest.checked_sub(self.window) else {
            return Ok(());
        };
        while self
            .pending
            .peek()
            .is_some_and(|Reverse(p)| p.timestamp <= cut)
        {
            self.write_oldest()?;
        }
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(Reverse(p)) = self.pending.pop() else {
            return Ok(());
        };
        let timestamp = match self.last_written {
            Some(last) if p.timestamp < last => {
                self.late += 1;
                last
            }
            _ => p.timestamp,
        };
        self.writer.write(timestamp, &p.interface, &p.entry)?;
        self.last_written = Some(timestamp);
        self.written += 1;
        Ok(())
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Lines that arrived after later lines had been written (written at the time of the
    /// line before them).
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Writes every line still held and flushes.
    pub fn drain(&mut self) -> io::Result<()> {
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        self.writer.flush()
    }

    /// Writes every line still held and flushes; hands back the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.drain()?;
        Ok(self.writer.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candump::{CandumpReader, ErrorFrame, LogRecord};
    use bmsfw_plugin_api::{CanFrame, CanId};
    use proptest::prelude::*;

    fn frame(id: u16) -> LogEntry {
        LogEntry::Frame(CanFrame::new(CanId::standard(id).unwrap(), &[id as u8]).unwrap())
    }

    fn read(bytes: &[u8]) -> Vec<LogRecord> {
        CandumpReader::new(bytes)
            .map(|r| r.expect("a line the writer wrote"))
            .collect()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn two_buses_arriving_out_of_order_are_written_in_time_order() {
        let mut w = OrderedWriter::new(Vec::new(), ms(300));
        // can1's frames arrive in a batch, 250 ms behind can0's.
        w.push(ms(1000), "can0", frame(1)).unwrap();
        w.push(ms(1100), "can0", frame(2)).unwrap();
        w.push(ms(1300), "can0", frame(3)).unwrap();
        w.push(ms(1050), "can1", frame(4)).unwrap();
        w.push(ms(1060), "can1", LogEntry::Error(ErrorFrame::CRC_ERROR))
            .unwrap();
        w.push(ms(1250), "can1", frame(5)).unwrap();
        assert_eq!(w.late(), 0);
        let records = read(&w.finish().unwrap());
        let times: Vec<u64> = records
            .iter()
            .map(|r| r.timestamp.as_millis() as u64)
            .collect();
        assert_eq!(times, [1000, 1050, 1060, 1100, 1250, 1300]);
        assert_eq!(records[2].interface, "can1");
        assert_eq!(records[2].entry, LogEntry::Error(ErrorFrame::CRC_ERROR));
    }

    #[test]
    fn lines_are_held_for_the_window_only() {
        let mut w = OrderedWriter::new(Vec::new(), ms(500));
        w.push(ms(1000), "can0", frame(1)).unwrap();
        w.advance(ms(1400)).unwrap();
        assert_eq!(w.written(), 0);
        w.advance(ms(1500)).unwrap();
        assert_eq!(w.written(), 1);
    }

    #[test]
    fn a_line_later_than_the_window_does_not_send_the_log_back_in_time() {
        let mut w = OrderedWriter::new(Vec::new(), ms(100));
        w.push(ms(1000), "can0", frame(1)).unwrap();
        w.push(ms(2000), "can0", frame(2)).unwrap();
        w.push(ms(900), "can1", frame(3)).unwrap();
        assert_eq!(w.late(), 1);
        let records = read(&w.finish().unwrap());
        assert_eq!(records.len(), 3);
        assert_eq!(records[1].interface, "can1");
        assert_eq!(records[1].timestamp, ms(1000));
    }

    #[test]
    fn bad_interface_names_are_refused() {
        let mut w = OrderedWriter::new(Vec::new(), ms(100));
        let err = w.push(ms(1), "can 0", frame(1)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(w.finish().unwrap().is_empty());
    }

    proptest! {
        #[test]
        fn any_arrival_order_within_the_window_comes_out_sorted(
            times in proptest::collection::vec(0u64..10_000, 0..200),
            jitter in proptest::collection::vec(0u64..250, 200),
        ) {
            let mut w = OrderedWriter::new(Vec::new(), ms(300));
            // Arrival order: by time plus up to 250 ms of delay.
            let mut arrivals: Vec<(u64, u64, usize)> = times
                .iter()
                .enumerate()
                .map(|(i, &t)| (t + jitter[i], t, i))
                .collect();
            arrivals.sort();
            for &(_, t, i) in &arrivals {
                let bus = if i % 2 == 0 { "can0" } else { "can1" };
                w.push(ms(t), bus, frame((i % 0x7FF) as u16)).unwrap();
            }
            prop_assert_eq!(w.late(), 0);
            let records = read(&w.finish().unwrap());
            prop_assert_eq!(records.len(), times.len());
            let mut sorted = times.clone();
            sorted.sort();
            let got: Vec<u64> = records.iter().map(|r| r.timestamp.as_millis() as u64).collect();
            prop_assert_eq!(got, sorted);
        }
    }
}
