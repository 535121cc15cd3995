//! `bmsfw campaign`: runs the scenarios of one seed in worker processes (one scenario at
//! a time each, so that a plugin crash strikes the right host), prints a table by fault
//! class, and for each broken promise a one-line reproduction and the smallest set of the
//! scenario's faults that still breaks it.

use crate::campaign::run::{Outcome, Workbench, run};
use crate::campaign::scenario::{Fault, Scenario};
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

/// Arguments of `bmsfw campaign`.
#[derive(clap::Args, Debug)]
pub struct CampaignArgs {
    /// The campaign's seed: the same seed draws the same scenarios.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many scenarios to run (numbered from 0).
    #[arg(long, default_value_t = 300)]
    scenarios: u64,
    /// Run only this scenario and print what happened in it.
    #[arg(long, value_name = "N")]
    scenario: Option<u64>,
    /// Worker processes running scenarios side by side (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Where the built vendor plugin libraries are (default: beside this executable).
    #[arg(long, value_name = "DIR")]
    plugins: Option<PathBuf>,
    /// A worker: runs scenarios first, first + stride, ... and prints one JSON line each.
    #[arg(long, hide = true, num_args = 2, value_names = ["FIRST", "STRIDE"])]
    worker: Option<Vec<u64>>,
}

/// What a worker reports of one scenario.
#[derive(Debug, Serialize, Deserialize)]
struct Report {
    number: u64,
    vendor: String,
    classes: Vec<String>,
    end: String,
    code: Option<u32>,
    violations: Vec<(char, String)>,
    /// The smallest set of the scenario's faults that still breaks the first promise.
    minimal: Vec<String>,
    millis: u64,
}

fn report(bench: &Workbench, scenario: &Scenario) -> anyhow::Result<Report> {
    let started = std::time::Instant::now();
    let outcome = run(bench, scenario)?;
    let minimal = match outcome.violations.first() {
        Some(v) => shrink(bench, scenario, v.invariant)?
            .iter()
            .map(Fault::to_string)
            .collect(),
        None => Vec::new(),
    };
    Ok(Report {
        number: scenario.number,
        vendor: scenario.vendor.to_owned(),
        classes: scenario.classes().iter().map(|c| c.to_string()).collect(),
        end: end_text(&outcome),
        code: outcome.code,
        violations: outcome
            .violations
            .iter()
            .map(|v| (v.invariant, v.what.clone()))
            .collect(),
        minimal,
        millis: started.elapsed().as_millis() as u64,
    })
}

fn end_text(outcome: &Outcome) -> String {
    match (outcome.end, outcome.code) {
        (Some(state), Some(code)) => format!("{state:?} {code}").to_lowercase(),
        (Some(state), None) => format!("{state:?}").to_lowercase(),
        (None, _) => "never ended".into(),
    }
}

/// Drops the scenario's faults one by one while the promise stays broken without it.
fn shrink(bench: &Workbench, scenario: &Scenario, invariant: char) -> anyhow::Result<Vec<Fault>> {
    let mut faults = scenario.faults.clone();
    let mut i = 0;
    while i < faults.len() {
        let mut fewer = faults.clone();
        fewer.remove(i);
        let trial = Scenario {
            faults: fewer.clone(),
            ..scenario.clone()
        };
        if run(bench, &trial)?
            .violations
            .iter()
            .any(|v| v.invariant == invariant)
        {
            faults = fewer;
        } else {
            i += 1;
        }
    }
    Ok(faults)
}

fn workbench(args: &CampaignArgs) -> anyhow::Result<(tempfile::TempDir, Workbench)> {
    let plugins = crate::cli::demo::files::locate_plugins(args.plugins.as_deref())?;
    let dir = tempfile::tempdir().context("making the campaign's folder")?;
    let bench = Workbench::new(&plugins, dir.path())?;
    Ok((dir, bench))
}

/// Runs `bmsfw campaign`.
pub fn run_campaign(args: CampaignArgs) -> anyhow::Result<ExitCode> {
    if let Some(worker) = &args.worker {
        let (first, stride) = (worker[0], worker[1].max(1));
        let (_dir, bench) = workbench(&args)?;
        let mut stdout = std::io::stdout().lock();
        let mut n = first;
        while n < args.scenarios {
            let line = serde_json::to_string(&report(&bench, &Scenario::draw(args.seed, n))?)?;
            if writeln!(stdout, "{line}")
                .and_then(|()| stdout.flush())
                .is_err()
            {
                return Ok(ExitCode::SUCCESS);
            }
            n += stride;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(n) = args.scenario {
        let (_dir, bench) = workbench(&args)?;
        let scenario = Scenario::draw(args.seed, n);
        outln!("{scenario}");
        let r = report(&bench, &scenario)?;
        outln!("ended: {} ({:.1} s)", r.end, r.millis as f64 / 1000.0);
        for (invariant, what) in &r.violations {
            outln!("VIOLATION {invariant}: {what}");
        }
        if !r.minimal.is_empty() || !r.violations.is_empty() {
            outln!(
                "smallest set of faults that still breaks it: {}",
                if r.minimal.is_empty() {
                    "none (it breaks without faults)".to_owned()
                } else {
                    r.minimal.join("; ")
                }
            );
        }
        return Ok(if r.violations.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .clamp(1, 64) as u64;
    let exe = std::env::current_exe().context("finding this executable")?;
    let plugins = crate::cli::demo::files::locate_plugins(args.plugins.as_deref())?;
    let started = std::time::Instant::now();
    let mut children = Vec::new();
    for w in 0..jobs.min(args.scenarios.max(1)) {
        let child = Command::new(&exe)
            .args(["campaign", "--seed", &args.seed.to_string()])
            .args(["--scenarios", &args.scenarios.to_string()])
            .arg("--plugins")
            .arg(&plugins)
            .args(["--worker", &w.to_string(), &jobs.to_string()])
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "off".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting a campaign worker")?;
        children.push(child);
    }
    let (tx, rx) = std::sync::mpsc::channel::<Report>();
    let mut readers = Vec::new();
    for child in &mut children {
        let stdout = child.stdout.take().context("a worker's output")?;
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(r) = serde_json::from_str::<Report>(&line) {
                    let _ = tx.send(r);
                }
            }
        }));
    }
    drop(tx);
    let mut reports = Vec::new();
    for r in rx {
        reports.push(r);
        if reports.len() % 50 == 0 {
            eprintln!(
                "{} of {} scenarios ({:.0} s)",
                reports.len(),
                args.scenarios,
                started.elapsed().as_secs_f64()
            );
        }
    }
    for reader in readers {
        let _ = reader.join();
    }
    let mut failed_workers = 0;
    for mut child in children {
        if !child.wait().is_ok_and(|s| s.success()) {
            failed_workers += 1;
        }
    }
    reports.sort_by_key(|r| r.number);
    print_table(&args, &reports, started.elapsed());
    if failed_workers > 0 || reports.len() as u64 != args.scenarios {
        bail!(
            "{failed_workers} worker(s) failed; {} of {} scenarios reported",
            reports.len(),
            args.scenarios
        );
    }
    Ok(if reports.iter().all(|r| r.violations.is_empty()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[derive(Default)]
struct Row {
    scenarios: u64,
    completed: u64,
    failed: u64,
    violations: u64,
}

fn print_table(args: &CampaignArgs, reports: &[Report], wall: std::time::Duration) {
    let mut by_class: BTreeMap<String, Row> = BTreeMap::new();
    let mut by_vendor: BTreeMap<String, Row> = BTreeMap::new();
    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
    for r in reports {
        let count = |row: &mut Row| {
            row.scenarios += 1;
            row.completed += u64::from(r.end == "completed");
            row.failed += u64::from(r.end.starts_with("failed"));
            row.violations += u64::from(!r.violations.is_empty());
        };
        for class in &r.classes {
            count(by_class.entry(class.clone()).or_default());
        }
        count(by_vendor.entry(r.vendor.clone()).or_default());
        *codes.entry(r.end.clone()).or_default() += 1;
    }
    outln!(
        "campaign of seed {}: {} scenarios in {:.0} s",
        args.seed,
        reports.len(),
        wall.as_secs_f64()
    );
    outln!("");
    outln!(
        "{:<22} {:>9} {:>9} {:>7} {:>10}",
        "fault class",
        "scenarios",
        "completed",
        "failed",
        "violations"
    );
    for (table, rows) in [("", &by_class), ("vendor ", &by_vendor)] {
        for (key, row) in rows.iter() {
            outln!(
                "{:<22} {:>9} {:>9} {:>7} {:>10}",
                format!("{table}{key}"),
                row.scenarios,
                row.completed,
                row.failed,
                row.violations
            );
        }
    }
    outln!("");
    outln!(
        "ends: {}",
        codes
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let broken: Vec<&Report> = reports
        .iter()
        .filter(|r| !r.violations.is_empty())
        .collect();
    outln!("violations: {}", broken.len());
    for r in broken {
        for (invariant, what) in &r.violations {
            outln!("  {invariant}: {what}");
        }
        outln!(
            "    reproduce: bmsfw campaign --seed {} --scenario {}",
            args.seed,
            r.number
        );
        outln!(
            "    smallest set of faults: {}",
            if r.minimal.is_empty() {
                "none".to_owned()
            } else {
                r.minimal.join("; ")
            }
        );
    }
}
