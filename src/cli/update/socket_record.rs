//! `--record` on a SocketCAN interface: a second socket on the interface logs what it
//! carries (the GX's own frames reach it through the interface's loopback).

use anyhow::Context;
use bmsfw_can::candump::OrderedWriter;
use bmsfw_can::{CanEvent, CanInterface, LogEntry, SocketCanInterface};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;
use tokio::time::Instant;

const REORDER_WINDOW: Duration = Duration::from_secs(1);

/// A recording of one SocketCAN interface.
pub struct SocketRecorder {
    path: PathBuf,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<u64>>,
}

impl SocketRecorder {
    /// Creates `path` and logs `bus` into it until [`SocketRecorder::finish`].
    pub fn start(path: &Path, bus: &str) -> anyhow::Result<SocketRecorder> {
        let iface = SocketCanInterface::open(bus)
            .with_context(|| format!("opening SocketCAN interface {bus} to record it"))?;
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut writer = OrderedWriter::new(BufWriter::new(file), REORDER_WINDOW);
        let (stop, mut stopped) = oneshot::channel();
        let start = Instant::now();
        let unix_start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let name = bus.to_owned();
        let shown = path.display().to_string();
        let task = tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    _ = &mut stopped => break,
                    event = iface.recv() => event,
                };
                let (at, entry) = match event {
                    Ok(CanEvent::Frame(rx)) => (rx.at, LogEntry::Frame(rx.frame)),
                    Ok(CanEvent::Error(e)) => (e.at, LogEntry::Error(e.frame)),
                    Ok(CanEvent::State(_)) => continue,
                    Err(e) => return Err(anyhow::anyhow!("recording {name}: {e}")),
                };
                let timestamp = unix_start + at.saturating_duration_since(start);
                writer
                    .push(timestamp, &name, entry)
                    .with_context(|| format!("writing {shown}"))?;
            }
            writer.drain().with_context(|| format!("writing {shown}"))?;
            let written = writer.written();
            writer
                .finish()
                .with_context(|| format!("writing {shown}"))?;
            Ok(written)
        });
        Ok(SocketRecorder {
            path: path.to_path_buf(),
            stop,
            task,
        })
    }

    /// Stops, writes what is held and closes the file.
    pub async fn finish(self) -> anyhow::Result<(u64, PathBuf)> {
        let _ = self.stop.send(());
        let lines = self.task.await.context("the recording task")??;
        Ok((lines, self.path))
    }
}
