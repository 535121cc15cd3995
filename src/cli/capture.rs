//! `bmsfw capture`: writes everything the buses carry to a candump log.

use super::source::Source;
use anyhow::Context;
use bmsfw_can::{CanError, CanEvent, CanFrame, CanInterface, CandumpWriter};
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
    frame: CanFrame,
}

/// Reads `iface` until `until`, passing every data frame on; returns the bus errors seen
/// (they are counted, not logged: backends report them in words, not as raw frames).
async fn read(
    iface: Arc<dyn CanInterface>,
    until: Instant,
    tx: mpsc::Sender<Captured>,
) -> Result<u64, CanError> {
    let mut errors = 0;
    loop {
        match tokio::time::timeout_at(until, iface.recv()).await {
            Err(_) => return Ok(errors),
            Ok(Ok(CanEvent::Frame(rx))) => {
                let item = Captured {
                    bus: iface.name().to_owned(),
                    at: rx.at,
                    frame: rx.frame,
                };
                if tx.send(item).await.is_err() {
                    return Ok(errors);
                }
            }
            Ok(Ok(CanEvent::Error(_))) => errors += 1,
            Ok(Ok(CanEvent::State(_))) => {}
            Ok(Err(e)) => return Err(e),
        }
    }
}

/// Runs the command; a summary goes to stderr.
pub async fn run(args: CaptureArgs) -> anyhow::Result<()> {
    let file =
        File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut writer = CandumpWriter::new(BufWriter::new(file));
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
    while let Some(item) = rx.recv().await {
        let timestamp = unix_start + item.at.saturating_duration_since(start);
        writer
            .write_frame(timestamp, &item.bus, &item.frame)
            .with_context(|| format!("writing {}", args.out.display()))?;
        *counts.entry(item.bus).or_default() += 1;
        total += 1;
        if total % 64 == 0 {
            bar.set_message(total.to_string());
            bar.set_position(start.elapsed().as_secs().min(args.secs));
        }
    }
    bar.finish_and_clear();
    writer
        .flush()
        .with_context(|| format!("writing {}", args.out.display()))?;
    let mut problems = Vec::new();
    for (iface, reader) in opened.interfaces.iter().zip(readers) {
        match reader.await? {
            Ok(0) => {}
            Ok(errors) => problems.push(format!(
                "{}: {errors} bus errors (not logged)",
                iface.name()
            )),
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
        "{total} frames ({}) written to {}",
        per_bus.join(", "),
        args.out.display()
    )?;
    for p in &problems {
        writeln!(stderr, "{p}")?;
    }
    Ok(())
}
