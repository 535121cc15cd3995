//! `bmsfw plugin conformance <library>`: a vendor plugin under hostile conditions on the
//! simulated bus, before it is approved.
//!
//! The library is read and hashed like `bmsfw plugin check` does, then opened without
//! asking the allowlist (conformance runs before the plugin is in it; opening runs the
//! library's constructors, so run it on a review machine) and put through the loader's
//! contract, layout and identity checks. The checks themselves live in
//! `bmsfw_core::conformance`; this command parses the options and prints the table.
//!
//! Exit status: 0 when no check failed, 1 when one did, 2 for usage or I/O errors.

use super::plugin::{field, print_identity, print_refusal, read_library};
use anyhow::Context;
use bmsfw_core::conformance::{self, Check, Config, Recording, Report, Verdict};
use bmsfw_core::driver::BudgetConfig;
use bmsfw_core::plugin::{Allowlist, HostSettings, Isolation, PluginLoader};
use bmsfw_plugin_api::abi_stable::std_types::{ROption, RVec};
use bmsfw_plugin_api::{BatteryIdentity, SessionOptions};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `bmsfw plugin conformance`.
#[derive(Args, Debug)]
pub struct ConformanceArgs {
    /// The plugin library file.
    library: PathBuf,
    /// A sample package the vendor supplies. Without it, only the checks that need no
    /// valid package run; the others are reported as skipped.
    #[arg(long, value_name = "FILE")]
    package: Option<PathBuf>,
    /// A candump log (`bmsfw capture`) of a complete, successful update of a battery
    /// with the same package: its BMS is replayed to the plugin, which reaches the later
    /// phases with it (Installing, Restarting, Verifying) and is aborted in each.
    #[arg(long, value_name = "FILE", requires = "package")]
    recording: Option<PathBuf>,
    /// The battery's manufacturer (0x35E) for the sessions; by default the package's
    /// first target.
    #[arg(long, requires = "raw_35f")]
    manufacturer: Option<String>,
    /// The battery's 0x35F payload in hex (e.g. 20A5040FC800); with --manufacturer.
    #[arg(long = "raw-35f", value_name = "HEX", value_parser = parse_hex, requires = "manufacturer")]
    raw_35f: Option<Vec<u8>>,
    /// The BMS's node id passed to the sessions.
    #[arg(long)]
    node_id: Option<u8>,
    /// A module behind the BMS to update (repeat for several); by default every module.
    #[arg(long = "module", value_name = "INDEX")]
    modules: Vec<u16>,
    /// The bus budget the plugin's own frames must stay within, percent of the bus.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(1..=100))]
    budget_percent: u8,
    /// The window the budget is measured over, in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    budget_window_ms: u64,
    /// The bus's bit rate.
    #[arg(long, default_value_t = 500_000)]
    bitrate: u32,
    /// Seed of the hostile peers and the random packages: the same seed, the same run.
    #[arg(long, default_value_t = Config::default().seed)]
    seed: u64,
}

fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let bytes = hex::decode(s.replace([' ', ':'], "")).map_err(|e| format!("not hex: {e}"))?;
    if bytes.len() > 8 {
        return Err(format!(
            "a CAN payload holds at most 8 bytes, got {}",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// Runs the command; I/O and usage errors end with status 2.
pub fn run(args: ConformanceArgs) -> anyhow::Result<ExitCode> {
    Ok(conformance(args).unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(2)
    }))
}

fn conformance(args: ConformanceArgs) -> anyhow::Result<ExitCode> {
    let sample =
        match &args.package {
            Some(path) => Some(std::fs::read(path).with_context(|| {
                format!("the sample package {} could not be read", path.display())
            })?),
            None => None,
        };
    let recording = match &args.recording {
        Some(path) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("the recording {} could not be read", path.display()))?;
            Some(Arc::new(Recording::read(file).with_context(|| {
                format!(
                    "the recording {} is not a usable candump log",
                    path.display()
                )
            })?))
        }
        None => None,
    };
    let loader = PluginLoader::new(Allowlist::parse(Path::new("(none)"), "")?).with_isolation(
        Isolation::Hosted(std::sync::Arc::new(HostSettings::for_review())),
    );
    let Some(file) = read_library(&loader, &args.library) else {
        return Ok(ExitCode::from(1));
    };
    outln!("opened without the allowlist (conformance runs before approval)");
    let mut report = Report::default();
    let plugin = match loader.open_unvetted(&file) {
        Ok(plugin) => plugin,
        Err(reason) => {
            print_refusal(&reason);
            report.push(
                Check::Load,
                "open the library",
                Verdict::Failed(format!("refused by the {} check: {reason}", reason.check())),
            );
            outln!();
            out!("{}", report.table());
            return Ok(ExitCode::from(1));
        }
    };
    print_identity(plugin.info());
    report.push(
        Check::Load,
        "open the library",
        Verdict::Passed(format!(
            "contract {}, layout and identity accepted",
            plugin.info().contract
        )),
    );
    match &args.package {
        Some(p) => field("package", p.display()),
        None => field("package", "none (checks that need one are skipped)"),
    }
    match (&args.recording, &recording) {
        (Some(p), Some(r)) => field(
            "recording",
            format!(
                "{} ({} frames on {})",
                p.display(),
                r.frames.len(),
                if r.interfaces.is_empty() {
                    "no interface".to_owned()
                } else {
                    r.interfaces.join(", ")
                }
            ),
        ),
        _ => field("recording", "none (the later phases are not reached)"),
    }
    field("seed", args.seed);
    let mut config = Config {
        seed: args.seed,
        battery: args.manufacturer.as_ref().map(|m| {
            BatteryIdentity::new(m.clone()).with_raw_35f(args.raw_35f.as_deref().unwrap_or(&[]))
        }),
        options: SessionOptions {
            node_id: args.node_id.map_or(ROption::RNone, ROption::RSome),
            modules: RVec::from(args.modules.clone()),
        },
        recording,
        ..Config::default()
    };
    config.limits.bitrate = args.bitrate;
    config.limits.budget = BudgetConfig {
        percent: args.budget_percent,
        window: Duration::from_millis(args.budget_window_ms),
    };
    report
        .rows
        .extend(conformance::run(plugin.as_ref(), sample.as_deref(), &config).rows);
    outln!();
    out!("{}", report.table());
    Ok(ExitCode::from(u8::from(!report.passed())))
}
