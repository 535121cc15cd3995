//! Every bench runs its updates twice in one run: with the plugin in its own plugin host
//! process (the loader's default) and with the plugin in the engine's process
//! (`PluginLoader::in_process`), and prints the figures of both side by side.

#![allow(dead_code)]

use bmsfw_core::plugin::{Allowlist, LoadedPlugin, PluginLoader};
use std::path::Path;
use std::time::Duration;

/// Where the plugin runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// In a plugin host process, sandboxed (the default).
    Hosted,
    /// In the engine's process.
    InProcess,
}

impl Isolation {
    /// Both, the default first.
    pub const BOTH: [Isolation; 2] = [Isolation::Hosted, Isolation::InProcess];

    /// The name printed.
    pub fn name(self) -> &'static str {
        match self {
            Isolation::Hosted => "hosted",
            Isolation::InProcess => "in-process",
        }
    }

    /// Loads `library`, approved by `allowlist`, to run this way.
    pub fn load(self, allowlist: Allowlist, library: &Path) -> LoadedPlugin {
        let loader = PluginLoader::new(allowlist);
        let loader = match self {
            Isolation::Hosted => loader,
            Isolation::InProcess => loader.in_process(),
        };
        loader.load_file(library).unwrap_or_else(|r| panic!("{r}"))
    }
}

/// The goal for the payload throughput with the plugin hosted, percent of the bus's
/// physical limit at the load cap.
pub const THROUGHPUT_GOAL: f64 = 97.0;
/// The goal for the worst telemetry delay the transfer causes, in frame times.
pub const TELEMETRY_GOAL: f64 = 1.0;

/// One virtual-time run's figures.
#[derive(Debug, Clone)]
pub struct Figures {
    /// What ran.
    pub run: String,
    pub isolation: Isolation,
    /// Payload throughput over the bus's physical limit at the load cap, percent (the
    /// lowest transfer's, when the run made several).
    pub throughput: f64,
    /// Worst delay of a telemetry frame caused by the transfer, in frame times.
    pub telemetry: f64,
    /// Wall time of the run.
    pub wall: Duration,
    /// Bus time it simulated.
    pub simulated: Duration,
    /// CPU time per transferred MiB: the engine, its plugin hosts and the simulation.
    pub cpu_per_mib: f64,
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// Prints the runs side by side, with the goals.
pub fn summary(rows: &[Figures]) {
    println!(
        "\n== summary: each run with the plugin hosted (the default) and in-process, \
         measured in this run"
    );
    println!(
        "goals: throughput / physical limit at the 80 % cap at least {THROUGHPUT_GOAL:.0} % \
         hosted; worst telemetry delay at most {TELEMETRY_GOAL:.0} frame time"
    );
    println!(
        "{:<34} {:<10} {:>11} {:>16} {:>10} {:>9} {:>10}",
        "run", "plugin", "throughput", "telemetry delay", "wall time", "bus time", "CPU/MiB"
    );
    for r in rows {
        let throughput_ok = r.isolation != Isolation::Hosted || r.throughput >= THROUGHPUT_GOAL;
        println!(
            "{:<34} {:<10} {:>8.1} % {:>9.2} frames {:>8.3} s {:>7.1} s {:>8.3} s   \
             throughput goal {}, telemetry goal {}",
            r.run,
            r.isolation.name(),
            r.throughput,
            r.telemetry,
            r.wall.as_secs_f64(),
            r.simulated.as_secs_f64(),
            r.cpu_per_mib,
            if r.isolation == Isolation::Hosted {
                verdict(throughput_ok)
            } else {
                "n/a"
            },
            verdict(r.telemetry <= TELEMETRY_GOAL),
        );
    }
}
