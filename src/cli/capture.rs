//! `bmsfw capture`: writes everything the buses carry to a candump log.

use super::source::Source;
use anyhow::Context;
use bmsfw_can::candump::OrderedWriter;
use bmsfw_can::{CanError, CanEvent, CanInterface, LogEntry};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Captures the frames of one or more buses into a candump log (`candump -l` format,
/// readable by `canplayer` and by `bmsfw`).
#[derive(clap::Args, Debug)]
pub struct CaptureArgs {
    #[command(flatten)]
    source: Source,
    /// The log file to write
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// How long to capture, in seconds
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    secs: u64,
}

struct Captured {
    bus: String,
    at: Instant,
    entry: LogEntry,
}

/// How long lines are held to put the buses' lines in time order: frames of different
/// buses reach the writer through different tasks.
pub const REORDER_WINDOW: Duration = Duration::from_secs(1);

/// Reads `iface` until `until`, passing every data frame and error frame on; returns the
/// error frames seen.
async fn read(
    iface: Arc<dyn CanInterface>,
    until: Instant,
    tx: mpsc::Sender<Captured>,
) -> Result<u64, CanError> {
    let mut errors = 0;
    loop {
        let (at, entry) = match tokio::time::timeout_at(until, iface.recv()).await {
            Err(_) => return Ok(errors),
            Ok(Ok(CanEvent::Frame(rx))) => (rx.at, LogEntry::Frame(rx.frame)),
            Ok(Ok(CanEvent::Error(e))) => {
                errors += 1;
                (e.at, LogEntry::Error(e.frame))
            }
            Ok(Ok(CanEvent::State(_))) => continue,
            Ok(Err(e)) => return Err(e),
        };
        let item = Captured {
            bus: iface.name().to_owned(),
            at,
            entry,
        };
        if tx.send(item).await.is_err() {
            return Ok(errors);
        }
    }
}

/// Runs the command; a summary goes to stderr.
pub async fn run(args: CaptureArgs) -> anyhow::Result<()> {
    let file =
        File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut writer = OrderedWriter::new(BufWriter::new(file), REORDER_WINDOW);
    let opened = args.source.open("capture")?;
    // Log timestamps: wall-clock time at the start plus the monotonic time since.
    let start = Instant::now();
    let unix_start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let until = start + Duration::from_secs(args.secs);
    let (tx, mut rx) = mpsc::channel(1024);
    let readers: Vec<_> = opened
        .interfaces
        .iter()
        .map(|iface| tokio::spawn(read(iface.clone(), until, tx.clone())))
        .collect();
    drop(tx);
    let bar = ProgressBar::new(args.secs).with_style(
        ProgressStyle::with_template("capturing {bar:30} {pos}/{len} s, {msg} frames")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for iface in &opened.interfaces {
        counts.insert(iface.name().to_owned(), 0);
    }
    let mut total = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let item = tokio::select! {
            item = rx.recv() => item,
            _ = tick.tick() => {
                // Lines of a quiet bus still leave the window.
                writer
                    .advance(unix_start + start.elapsed())
                    .with_context(|| format!("writing {}", args.out.display()))?;
                continue;
            }
        };
        let Some(item) = item else { break };
        let timestamp = unix_start + item.at.saturating_duration_since(start);
        writer
            .push(timestamp, &item.bus, item.entry)
            .with_context(|| format!("writing {}", args.out.display()))?;
        *counts.entry(item.bus).or_default() += 1;
        total += 1;
        if total % 64 == 0 {
            bar.set_message(total.to_string());
            bar.set_position(start.elapsed().as_secs().min(args.secs));
        }
    }
    bar.finish_and_clear();
    let late = writer.late();
    writer
        .finish()
        .with_context(|| format!("writing {}", args.out.display()))?;
    let mut problems = Vec::new();
    if late > 0 {
        problems.push(format!(
            "{late} lines arrived more than {} ms late and carry the time of the line before",
            REORDER_WINDOW.as_millis()
        ));
    }
    let mut error_frames = 0u64;
    for (iface, reader) in opened.interfaces.iter().zip(readers) {
        match reader.await? {
            Ok(errors) => error_frames += errors,
            Err(e) => problems.push(format!("{}: capture stopped early: {e}", iface.name())),
        }
    }
    opened.close().await;
    let per_bus: Vec<String> = counts
        .iter()
        .map(|(b, n)| format!("{n} from {b}"))
        .collect();
    let mut stderr = std::io::stderr().lock();
    writeln!(
        stderr,
        "{total} frames ({}; {error_frames} error frames among them) written to {}",
        per_bus.join(", "),
        args.out.display()
    )?;
    for p in &problems {
        writeln!(stderr, "{p}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_can::{CanFrame, CanId, ErrorFrame};
    use bmsfw_sim::bus::{CorruptRule, SimBus};

    /// The reader is the same for `--bus` and `--sim`: error frames a controller reports
    /// reach the log like data frames, in the order the bus carried them.
    #[tokio::test(start_paused = true)]
    async fn error_frames_are_captured_with_the_frames() {
        let bus = SimBus::new("can0", 500_000);
        let battery = bus.attach("battery");
        let iface: Arc<dyn CanInterface> = Arc::new(bus.attach("capture"));
        bus.set_corrupt_rule(CorruptRule::when(|t| t.retransmission == 0));
        let until = Instant::now() + Duration::from_secs(1);
        let (tx, mut rx) = mpsc::channel(16);
        let reader = tokio::spawn(read(iface, until, tx));
        let frame = CanFrame::new(CanId::standard(0x351).unwrap(), &[1, 2, 3]).unwrap();
        battery.send(frame).await.unwrap();
        let mut entries = Vec::new();
        while let Some(item) = rx.recv().await {
            assert_eq!(item.bus, "can0");
            entries.push(item.entry);
        }
        assert_eq!(
            entries,
            [
                LogEntry::Error(ErrorFrame::CRC_ERROR),
                LogEntry::Frame(frame)
            ]
        );
        assert_eq!(reader.await.unwrap().unwrap(), 1);
    }
}
