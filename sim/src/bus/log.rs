//! candump logging of everything a simulated bus carries.

use bmsfw_can::candump::{CandumpWriter, ErrorFrame, LogEntry};
use bmsfw_plugin_api::CanFrame;
use std::io::{self, Write};
use std::time::Duration;
use tokio::time::Instant;

/// Where a bus writes its log, and how its clock maps to log timestamps.
pub(crate) struct BusLog {
    writer: CandumpWriter<Box<dyn Write + Send>>,
    interface: String,
    epoch: Instant,
    unix_base: Duration,
    failure: Option<io::Error>,
}

impl BusLog {
    /// A log whose timestamps are `unix_base` plus the time since `epoch`.
    pub(crate) fn new(
        out: Box<dyn Write + Send>,
        interface: &str,
        epoch: Instant,
        unix_base: Duration,
    ) -> BusLog {
        BusLog {
            writer: CandumpWriter::new(out),
            interface: interface.to_owned(),
            epoch,
            unix_base,
            failure: None,
        }
    }

    fn write(&mut self, at: Instant, entry: &LogEntry) {
        if self.failure.is_some() {
            return;
        }
        let timestamp = self.unix_base + at.saturating_duration_since(self.epoch);
        if let Err(e) = self.writer.write(timestamp, &self.interface, entry) {
            tracing::warn!(interface = %self.interface, error = %e, "bus log stopped: write failed");
            self.failure = Some(e);
        }
    }

    /// Logs a frame that ended at `at`.
    pub(crate) fn frame(&mut self, at: Instant, frame: &CanFrame) {
        self.write(at, &LogEntry::Frame(*frame));
    }

    /// Logs an error frame that ended at `at`.
    pub(crate) fn error_frame(&mut self, at: Instant) {
        self.write(at, &LogEntry::Error(ErrorFrame::CRC_ERROR));
    }

    /// Flushes and hands back the writer, or the first write error.
    pub(crate) fn finish(mut self) -> io::Result<Box<dyn Write + Send>> {
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        self.writer.flush()?;
        Ok(self.writer.into_inner())
    }
}
