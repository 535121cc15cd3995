//! `bmsfw history`: the update history and event log kept in a GX state directory.

use anyhow::{Context, bail};
use bmsfw_core::events::{EventRecord, History};
use bmsfw_core::job::{JobRecord, StateDir};
use bmsfw_core::journal::Journal;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Print the update history and event log of a GX state directory.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The GX state directory.
    #[arg(long, value_name = "DIR", default_value = StateDir::DEFAULT)]
    pub state_dir: PathBuf,
    /// Only this battery (its serial number).
    #[arg(long, value_name = "ID")]
    pub battery: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand; reads only, never changes the state directory.
pub fn run(args: &Args) -> anyhow::Result<()> {
    out!("{}", render(args)?);
    Ok(())
}

fn render(args: &Args) -> anyhow::Result<String> {
    if !args.state_dir.is_dir() {
        bail!("no GX state directory at {}", args.state_dir.display());
    }
    let state = StateDir::new(&args.state_dir);
    let (journal, load) = Journal::read_only(&state.journal())
        .with_context(|| format!("reading the journal in {}", state.journal().display()))?;
    let history = History::read(&state.events())
        .with_context(|| format!("reading the event log in {}", state.events().display()))?;
    for bad in &load.bad_records {
        tracing::warn!(path = %bad.path.display(), reason = %bad.reason, "unreadable job record");
    }
    let wanted = |serial: &str| args.battery.as_deref().is_none_or(|b| b == serial);
    let jobs: Vec<&JobRecord> = journal
        .records()
        .filter(|j| wanted(&j.battery().serial))
        .collect();
    let events: Vec<&EventRecord> = history
        .events
        .iter()
        .filter(|e| wanted(&e.battery.serial))
        .collect();
    if args.json {
        let doc = serde_json::json!({
            "jobs": jobs,
            "events": events,
            "skipped_lines": history.skipped.len(),
            "unreadable_jobs": load.bad_records.len(),
        });
        return Ok(format!("{}\n", serde_json::to_string_pretty(&doc)?));
    }
    let mut out = String::new();
    writeln!(out, "Update jobs")?;
    let rows: Vec<Vec<String>> = jobs.iter().map(|j| job_row(j)).collect();
    out.push_str(&table(
        &["JOB", "INITIATED", "BATTERY", "STATE", "VERSIONS", "CODE"],
        &rows,
    ));
    writeln!(out)?;
    writeln!(out, "Event log")?;
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                e.at.to_string(),
                e.battery.serial.clone(),
                e.job.to_string(),
                e.event.label(),
                e.event.versions(),
                e.event.code().map(code_text).unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&table(
        &["TIME", "BATTERY", "JOB", "EVENT", "VERSIONS", "CODE"],
        &rows,
    ));
    if !history.skipped.is_empty() || !load.bad_records.is_empty() {
        writeln!(
            out,
            "\n{} unreadable event line(s) and {} unreadable job record(s) were skipped",
            history.skipped.len(),
            load.bad_records.len()
        )?;
    }
    Ok(out)
}

fn code_text(code: u32) -> String {
    format!("{code} {}", bmsfw_core::errors::name_of(code))
}

fn job_row(job: &JobRecord) -> Vec<String> {
    let state = if job.state().shows_percent() {
        format!("{} {}", job.state().label(), job.percent())
    } else {
        job.state().label().to_owned()
    };
    let show =
        |v: Option<&bmsfw_core::job::VersionInfo>| v.map_or("?".to_owned(), |v| v.to_string());
    let after = job.version_after().or(job.version_target());
    vec![
        job.id().to_string(),
        job.created_at().to_string(),
        job.battery().serial.clone(),
        state,
        format!("{} -> {}", show(job.version_before()), show(after)),
        job.failure().map(|f| code_text(f.code)).unwrap_or_default(),
    ]
}

/// Left-aligned columns two spaces apart; "(none)" for an empty table.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return "(none)\n".to_owned();
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}
