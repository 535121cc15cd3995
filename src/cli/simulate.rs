//! `bmsfw simulate`: a site's simulated batteries on real CAN interfaces.
//!
//! Each `[[bus]]` of the site file names a SocketCAN interface; each of its batteries gets
//! a socket of its own there and answers as the site describes it: telemetry, and the
//! vendor's bootloader where its model has one. A GX (or `bmsfw update --bus`) on another
//! interface of the same physical bus (two USB-CAN adapters looped on a bench, or two
//! controllers of one virtual bus) then sees real batteries.
//!
//! With `--serve DIR` the site's buses run in this process instead, each offered on a
//! Unix socket in DIR; a GX daemon started with `--site-socket DIR` joins them. Killing
//! and restarting the daemon then leaves the batteries where real ones would be.

use super::record::Recorder;
use super::source::vendor_models;
use anyhow::{Context, bail};
use bmsfw_can::{CanInterface, SocketCanInterface};
use bmsfw_sim::battery::model::PowerState;
use bmsfw_sim::bridge::BridgeServer;
use bmsfw_sim::site::{RunningSite, SiteDescription};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Puts the simulated batteries of a site file on real SocketCAN interfaces.
#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// The site file; the name of each [[bus]] is the interface its batteries go on
    #[arg(long, value_name = "SITE.toml")]
    site: PathBuf,
    /// Record every frame and error frame of the site's interfaces into this candump log,
    /// in time order
    #[arg(long, value_name = "LOG")]
    record: Option<PathBuf>,
    /// Run the site's buses in this process instead, each offered at DIR/<bus>.sock, where
    /// a GX daemon started with --site-socket DIR joins them; the batteries then outlive
    /// any restart of the daemon
    #[arg(long, value_name = "DIR")]
    serve: Option<PathBuf>,
    /// Stop after this many seconds (default: run until Ctrl-C)
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    secs: Option<u64>,
}

/// How often the batteries are looked at for a line worth printing.
const LOOK_EVERY: Duration = Duration::from_millis(250);

/// What a battery shows that is worth a line when it changes.
#[derive(Debug, Clone, PartialEq)]
struct Shown {
    power: PowerState,
    product_info: Vec<u8>,
}

/// Runs the command until Ctrl-C (or `--secs`); each battery's changes of power state and
/// of the identity it broadcasts (0x35F: a new firmware after an update) go to stdout.
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let site = SiteDescription::load(&args.site)?;
    let (running, recorder, _served) = match &args.serve {
        Some(dir) => serve(&site, &args, dir)?,
        None => on_socketcan(&site, &args)?,
    };
    let mut shown: BTreeMap<String, Shown> = BTreeMap::new();
    for battery in running.batteries() {
        let d = &battery.description;
        outln!(
            "battery {} (vendor {}) on {}{}",
            d.name,
            d.vendor,
            d.bus,
            d.config
                .identity
                .serial
                .as_deref()
                .map(|s| format!(", serial {s}"))
                .unwrap_or_default()
        );
    }
    if running.batteries().is_empty() {
        bail!("{} describes no battery", args.site.display());
    }
    let until = args
        .secs
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut look = tokio::time::interval(LOOK_EVERY);
    let end = async {
        match until {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(end);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let stopped_by = loop {
        tokio::select! {
            r = &mut ctrl_c => {
                r.context("waiting for Ctrl-C")?;
                break "Ctrl-C";
            }
            () = &mut end => break "the end of --secs",
            _ = look.tick() => {}
        }
        for battery in running.batteries() {
            let snapshot = battery.control().snapshot();
            let now = Shown {
                power: snapshot.power,
                product_info: snapshot.product_info,
            };
            let name = &battery.description.name;
            if let Some(before) = shown.get(name) {
                if before.power != now.power {
                    outln!("{name}: power {:?}", now.power);
                }
                if before.product_info != now.product_info {
                    outln!("{name}: broadcasts 0x35F {}", hex(&now.product_info));
                }
            }
            shown.insert(name.clone(), now);
        }
    };
    eprintln!("stopping the batteries ({stopped_by})");
    let mut failed = Vec::new();
    for (name, exit) in running.shutdown().await {
        if let Err(e) = exit {
            failed.push(format!("{name}: {e}"));
        }
    }
    if let Some(recorder) = recorder {
        let recorded = recorder.finish().await?;
        outln!(
            "recorded {} lines to {}",
            recorded.lines,
            recorded.path.display()
        );
    }
    if !failed.is_empty() {
        bail!("batteries that stopped on an error: {}", failed.join("; "));
    }
    Ok(())
}

/// The site's batteries on the SocketCAN interfaces its buses name.
fn on_socketcan(
    site: &SiteDescription,
    args: &SimulateArgs,
) -> anyhow::Result<(RunningSite, Option<Recorder>, Vec<BridgeServer>)> {
    // Each interface must exist and, where its driver has a bit rate, run at the site's.
    for bus in &site.buses {
        let name = bus.name.get_ref();
        let wanted = *bus.bitrate.get_ref();
        let iface = SocketCanInterface::open(name).with_context(|| {
            format!(
                "opening SocketCAN interface {name} (the [[bus]] of {})",
                args.site.display()
            )
        })?;
        if let Some(actual) = iface.bitrate()
            && actual != wanted
        {
            bail!(
                "interface {name} runs at {actual} bit/s, but {} describes its bus at {wanted} \
                 bit/s: set the interface's bit rate (ip link set {name} type can bitrate \
                 {wanted}) or the site's",
                args.site.display()
            );
        }
    }
    let recorder = match &args.record {
        Some(path) => {
            let interfaces: Vec<String> = site
                .buses
                .iter()
                .map(|b| b.name.get_ref().clone())
                .collect();
            let recorder = Recorder::start(path, &[], &interfaces)?;
            outln!("recording {} to {}", interfaces.join(", "), path.display());
            Some(recorder)
        }
        None => None,
    };
    let running = site
        .start_on(&vendor_models(), |battery| {
            SocketCanInterface::open(&battery.bus)
                .map(|iface| Arc::new(iface) as Arc<dyn CanInterface>)
                .map_err(|e| format!("opening SocketCAN interface {}: {e}", battery.bus))
        })
        .with_context(|| format!("starting the batteries of {}", args.site.display()))?;
    Ok((running, recorder, Vec::new()))
}

/// The site's buses in this process, each served at `dir/<bus>.sock`.
fn serve(
    site: &SiteDescription,
    args: &SimulateArgs,
    dir: &Path,
) -> anyhow::Result<(RunningSite, Option<Recorder>, Vec<BridgeServer>)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let running = site
        .start_with(&vendor_models())
        .with_context(|| format!("starting the simulated site of {}", args.site.display()))?;
    let mut served = Vec::new();
    for bus in running.buses() {
        let path = dir.join(format!("{}.sock", bus.name()));
        let server = BridgeServer::serve(bus.clone(), &path, "gx")
            .with_context(|| format!("offering bus {} at {}", bus.name(), path.display()))?;
        outln!("bus {} at {}", bus.name(), path.display());
        served.push(server);
    }
    let recorder = match &args.record {
        Some(path) => {
            let recorder = Recorder::start(path, running.buses(), &[])?;
            outln!("recording the site's buses to {}", path.display());
            Some(recorder)
        }
        None => None,
    };
    Ok((running, recorder, served))
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}
