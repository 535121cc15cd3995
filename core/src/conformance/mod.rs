//! Plugin conformance: a vendor plugin under hostile conditions, without the vendor's
//! simulator.
//!
//! An integrator runs it (`bmsfw plugin conformance <library>`) before the plugin is in
//! the allowlist. Every scenario runs in virtual time against the plugin's real entry
//! points, through the engine's own [`VendorPlugin`] and [`VendorSession`] interface:
//!
//! - **packages** ([`packages`]): truncated copies of the vendor's sample package and
//!   random files must all be rejected by `inspect_package`;
//! - **inputs** ([`battery`]): hostile battery identities and version bytes must not
//!   make `match_battery` or `decode_version` panic;
//! - **sessions** ([`run`]): a session with the sample package, answered by a hostile
//!   peer ([`peer`]: silence, garbage, truncated, duplicated, reordered and fuzzed
//!   frames on the plugin's receive identifiers) and aborted at the start, after its
//!   first frame, while it waits, and in every further phase a peer drove it to.
//!
//! The checks ([`Check`]) and their meaning are listed in `docs/conformance.md`. Without
//! a sample package, the checks that need one are reported as skipped, with the reason.

pub mod battery;
pub mod check;
pub mod packages;
pub mod peer;
pub mod report;
pub mod run;

pub use check::{Check, Row, Verdict};
pub use peer::PeerBehaviour;
pub use report::{Report, Tally};
pub use run::{AbortAt, BudgetExcess, Ending, Observation, RunLimits, SessionFactory};

use crate::plugin::{
    PackageRead, PackageSummary, PluginFailure, SessionPhase, SessionStart, VendorPlugin,
    VendorSession,
};
use bmsfw_plugin_api::{BatteryIdentity, CanIdRange, ErrorCode, SessionOptions};
use std::sync::Arc;

/// Settings of a conformance run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Seed of every random choice: the same seed gives the same run.
    pub seed: u64,
    /// Bus, budget and time limits.
    pub limits: RunLimits,
    /// The battery to update; when `None`, one is built from the package's targets.
    pub battery: Option<BatteryIdentity>,
    /// The session options (node id, modules).
    pub options: SessionOptions,
    /// Hostile identities and version byte strings tried.
    pub hostile_inputs: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            seed: 0x00C0_FFEE,
            limits: RunLimits::default(),
            battery: None,
            options: SessionOptions::default(),
            hostile_inputs: 200,
        }
    }
}

/// Runs every check against `plugin`, with the vendor's `sample` package when there is
/// one, and returns the report.
pub fn run(plugin: &dyn VendorPlugin, sample: Option<&[u8]>, config: &Config) -> Report {
    let mut report = Report::default();
    let summary = sample.and_then(|s| setup_package(plugin, s, &mut report));
    check_inputs(plugin, summary.as_ref(), config, &mut report);
    check_packages(plugin, sample, summary.is_some(), config, &mut report);
    match (sample, summary) {
        (Some(sample), Some(summary)) => {
            match setup_session(plugin, sample, &summary, config, &mut report) {
                Some(factory) => check_sessions(plugin, &factory, config, &mut report),
                None => skip_sessions(&mut report, "the setup failed (see the setup rows)"),
            }
        }
        (Some(_), None) => skip_sessions(&mut report, "the sample package was rejected"),
        (None, _) => skip_sessions(
            &mut report,
            "no sample package (--package): a session needs a package the plugin accepts",
        ),
    }
    report
}

fn setup_package(
    plugin: &dyn VendorPlugin,
    sample: &[u8],
    report: &mut Report,
) -> Option<PackageSummary> {
    let package: Arc<dyn PackageRead> = Arc::new(sample.to_vec());
    match plugin.inspect_package(package) {
        Ok(summary) => {
            let targets: Vec<String> = summary
                .targets
                .iter()
                .map(|t| match t.product_code {
                    Some(c) => format!("{} {c:#06x}", t.manufacturer),
                    None => t.manufacturer.clone(),
                })
                .collect();
            report.push(
                Check::Setup,
                "sample package",
                Verdict::Passed(format!(
                    "accepted: version {}, image {} bytes, for {}",
                    summary.version.display,
                    summary.image_size,
                    targets.join(", ")
                )),
            );
            Some(summary)
        }
        Err(rejection) => {
            report.push(
                Check::Setup,
                "sample package",
                Verdict::Failed(format!(
                    "the plugin rejects its own sample package: {rejection}"
                )),
            );
            None
        }
    }
}

/// Starts sessions of the sample package for the setup's battery.
struct SampleSessions<'a> {
    plugin: &'a dyn VendorPlugin,
    package: Arc<dyn PackageRead>,
    image_size: u64,
    battery: BatteryIdentity,
    options: SessionOptions,
}

impl SessionFactory for SampleSessions<'_> {
    fn start(&self) -> Result<Box<dyn VendorSession>, PluginFailure> {
        self.plugin.start_session(SessionStart {
            battery: self.battery.clone(),
            package: self.package.clone(),
            options: self.options.clone(),
            resume: None,
        })
    }

    fn image_size(&self) -> u64 {
        self.image_size
    }
}

fn setup_session<'a>(
    plugin: &'a dyn VendorPlugin,
    sample: &[u8],
    summary: &PackageSummary,
    config: &Config,
    report: &mut Report,
) -> Option<SampleSessions<'a>> {
    let battery = match &config.battery {
        Some(b) => {
            report.push(
                Check::Setup,
                "battery identity",
                Verdict::Passed(format!("as given: {}", describe_battery(b))),
            );
            b.clone()
        }
        None => match battery::plausible_battery(plugin, summary) {
            Ok(b) => {
                report.push(
                    Check::Setup,
                    "battery identity",
                    Verdict::Passed(format!(
                        "built from the package's targets, updatable: {}",
                        describe_battery(&b)
                    )),
                );
                b
            }
            Err(answers) => {
                let shown: Vec<&str> = answers.iter().take(3).map(String::as_str).collect();
                report.push(
                    Check::Setup,
                    "battery identity",
                    Verdict::Failed(format!(
                        "no battery built from the package's targets is updatable ({}); \
                         name one with --manufacturer and --raw-35f",
                        shown.join("; ")
                    )),
                );
                return None;
            }
        },
    };
    let factory = SampleSessions {
        plugin,
        package: Arc::new(sample.to_vec()),
        image_size: summary.image_size,
        battery,
        options: config.options.clone(),
    };
    match factory.start() {
        Ok(mut session) => {
            let status = session.status();
            report.push(
                Check::Setup,
                "session start",
                Verdict::Passed(format!(
                    "started in {:?}, {} bytes to transfer",
                    status.phase, status.bytes_total
                )),
            );
            Some(factory)
        }
        Err(f) if f.code == ErrorCode::PLUGIN_FAULT => {
            report.push(
                Check::NoPanic,
                "session start",
                Verdict::Failed(f.to_string()),
            );
            None
        }
        Err(f) => {
            report.push(
                Check::Setup,
                "session start",
                Verdict::Failed(format!(
                    "the plugin refuses to start a session for a battery it matched and a \
                     package it accepted: {f}"
                )),
            );
            None
        }
    }
}

fn describe_battery(b: &BatteryIdentity) -> String {
    let raw: Vec<String> = b.raw_35f().iter().map(|x| format!("{x:02X}")).collect();
    format!("{:?}, 0x35F [{}]", b.manufacturer.as_str(), raw.join(" "))
}

fn check_inputs(
    plugin: &dyn VendorPlugin,
    summary: Option<&PackageSummary>,
    config: &Config,
    report: &mut Report,
) {
    let manufacturers: Vec<String> = summary
        .map(|s| s.targets.iter().map(|t| t.manufacturer.clone()).collect())
        .unwrap_or_default();
    let identities =
        battery::hostile_identities(&manufacturers, config.seed, config.hostile_inputs);
    let fault = identities
        .iter()
        .find_map(|b| match plugin.match_battery(b) {
            Err(f) if f.code == ErrorCode::PLUGIN_FAULT => Some((describe_battery(b), f)),
            _ => None,
        });
    report.push(
        Check::NoPanic,
        "hostile battery identities",
        match fault {
            Some((b, f)) => Verdict::Failed(format!("match_battery({b}): {f}")),
            None => Verdict::Passed(format!(
                "match_battery answered {} identities",
                identities.len()
            )),
        },
    );
    let versions = battery::hostile_versions(config.seed, config.hostile_inputs);
    let fault = versions
        .iter()
        .find_map(|v| match plugin.decode_version(v) {
            Err(f) if f.code == ErrorCode::PLUGIN_FAULT => Some((v, f)),
            _ => None,
        });
    report.push(
        Check::NoPanic,
        "hostile version bytes",
        match fault {
            Some((v, f)) => {
                Verdict::Failed(format!("decode_version({}): {f}", hex::encode_upper(v)))
            }
            None => Verdict::Passed(format!(
                "decode_version answered {} byte strings",
                versions.len()
            )),
        },
    );
}

fn check_packages(
    plugin: &dyn VendorPlugin,
    sample: Option<&[u8]>,
    sample_accepted: bool,
    config: &Config,
    report: &mut Report,
) {
    let random = packages::random(sample.filter(|_| sample_accepted), config.seed);
    package_rows(plugin, "random packages", &random, report);
    match sample {
        Some(s) if sample_accepted => {
            let truncated = packages::truncated(s, config.seed);
            package_rows(plugin, "truncated packages", &truncated, report);
        }
        _ => {
            let why = match sample {
                Some(_) => "the sample package was rejected, so its truncations prove nothing",
                None => "no sample package (--package) to truncate",
            };
            for check in [Check::NoPanic, Check::BadPackages] {
                report.push(check, "truncated packages", Verdict::Skipped(why.into()));
            }
        }
    }
}

fn package_rows(
    plugin: &dyn VendorPlugin,
    scenario: &str,
    bad: &[packages::BadPackage],
    report: &mut Report,
) {
    let mut fault = None;
    let mut accepted = Vec::new();
    let mut example = None;
    for p in bad {
        match plugin.inspect_package(Arc::new(p.bytes.clone())) {
            Ok(summary) => accepted.push(format!(
                "{} (as version {}, image {} bytes)",
                p.label, summary.version.display, summary.image_size
            )),
            Err(r) if r.code == ErrorCode::PLUGIN_FAULT => {
                fault.get_or_insert_with(|| format!("{}: {r}", p.label));
            }
            Err(r) => {
                example.get_or_insert_with(|| format!("{}: {r}", p.label));
            }
        }
    }
    report.push(
        Check::NoPanic,
        scenario,
        match fault {
            Some(f) => Verdict::Failed(format!("inspect_package faulted on {f}")),
            None => Verdict::Passed(format!("inspect_package answered {} packages", bad.len())),
        },
    );
    report.push(
        Check::BadPackages,
        scenario,
        if accepted.is_empty() {
            Verdict::Passed(format!(
                "{} of {} rejected, e.g. {}",
                bad.len(),
                bad.len(),
                example.unwrap_or_else(|| "-".into())
            ))
        } else {
            Verdict::Failed(format!(
                "accepted {} of {}: {}",
                accepted.len(),
                bad.len(),
                accepted.join("; ")
            ))
        },
    );
}

/// The session checks, in report order.
const SESSION_CHECKS: [Check; 4] = [
    Check::NoPanic,
    Check::DeclaredIds,
    Check::BusBudget,
    Check::TerminalState,
];

fn skip_sessions(report: &mut Report, why: &str) {
    let scenarios = PeerBehaviour::ALL
        .iter()
        .map(|b| b.scenario().to_owned())
        .chain(
            [AbortAt::Start, AbortAt::FirstFrame, AbortAt::Waiting]
                .iter()
                .map(|a| a.describe()),
        );
    for scenario in scenarios {
        for check in SESSION_CHECKS {
            report.push(check, scenario.clone(), Verdict::Skipped(why.into()));
        }
    }
}

fn check_sessions(
    plugin: &dyn VendorPlugin,
    factory: &SampleSessions<'_>,
    config: &Config,
    report: &mut Report,
) {
    let mut phases: Vec<(SessionPhase, PeerBehaviour)> = Vec::new();
    // The aborts run with the first peer under which the session sends at all.
    let mut talking: Option<PeerBehaviour> = None;
    let seed_of = |i: usize| config.seed.wrapping_add(0x9E37_79B9 * (i as u64 + 1));
    for (i, behaviour) in PeerBehaviour::ALL.into_iter().enumerate() {
        let obs = run::run_scenario(plugin, factory, behaviour, None, seed_of(i), config.limits);
        if let Ok(obs) = &obs {
            if obs.frames_sent > 0 && talking.is_none() {
                talking = Some(behaviour);
            }
            for p in &obs.phases {
                if !p.is_final()
                    && *p != SessionPhase::Transferring
                    && !phases.iter().any(|(q, _)| q == p)
                {
                    phases.push((*p, behaviour));
                }
            }
        }
        scenario_rows(plugin, behaviour.scenario(), None, obs, config, report);
    }
    let peer = talking.unwrap_or(PeerBehaviour::Silence);
    let mut aborts: Vec<(AbortAt, PeerBehaviour)> = vec![
        (AbortAt::Start, peer),
        (AbortAt::FirstFrame, peer),
        (AbortAt::Waiting, peer),
    ];
    aborts.extend(phases.iter().map(|(p, b)| (AbortAt::Phase(*p), *b)));
    for (abort, behaviour) in aborts {
        let i = PeerBehaviour::ALL
            .iter()
            .position(|b| *b == behaviour)
            .unwrap_or(0);
        let obs = run::run_scenario(
            plugin,
            factory,
            behaviour,
            Some(abort),
            seed_of(i),
            config.limits,
        );
        let name = match abort {
            AbortAt::Phase(_) => format!(
                "{} (reached with {})",
                abort.describe(),
                behaviour.scenario()
            ),
            AbortAt::Start => abort.describe(),
            _ => format!("{} ({})", abort.describe(), behaviour.scenario()),
        };
        scenario_rows(plugin, &name, Some(abort), obs, config, report);
    }
    if phases.is_empty() {
        for check in SESSION_CHECKS {
            report.push(
                check,
                "abort in Installing, Restarting, Verifying",
                Verdict::Skipped(
                    "no hostile peer drove the session past Transferring; those phases need \
                     the vendor's BMS"
                        .into(),
                ),
            );
        }
    }
}

fn ranges(r: &[CanIdRange]) -> String {
    if r.is_empty() {
        return "none".into();
    }
    r.iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn scenario_rows(
    plugin: &dyn VendorPlugin,
    scenario: &str,
    abort: Option<AbortAt>,
    obs: Result<Observation, PluginFailure>,
    config: &Config,
    report: &mut Report,
) {
    let obs = match obs {
        Ok(obs) => obs,
        Err(f) => {
            let fault = f.code == ErrorCode::PLUGIN_FAULT;
            for check in SESSION_CHECKS {
                let verdict = if check == Check::NoPanic && fault {
                    Verdict::Failed(format!("start_session: {f}"))
                } else {
                    Verdict::Skipped(format!("the session did not start: {f}"))
                };
                report.push(check, scenario, verdict);
            }
            return;
        }
    };
    report.push(
        Check::NoPanic,
        scenario,
        match &obs.fault {
            Some(f) => Verdict::Failed(f.clone()),
            None => Verdict::Passed(format!("no fault; {} frames sent", obs.frames_sent)),
        },
    );
    let info = plugin.info();
    report.push(
        Check::DeclaredIds,
        scenario,
        match obs.id_violations.first() {
            Some(frame) => Verdict::Failed(format!(
                "tried to send {frame} on {}, outside its declared {} ({} such frames, none \
                 sent)",
                frame.id(),
                ranges(&info.sends),
                obs.id_violations.len()
            )),
            None => Verdict::Passed(format!(
                "{} frames, all on {}",
                obs.frames_sent,
                ranges(&info.sends)
            )),
        },
    );
    let budget = config.limits.budget;
    report.push(
        Check::BusBudget,
        scenario,
        match (obs.flood, obs.budget_exceeded) {
            (Some(n), _) => Verdict::Failed(format!(
                "handed out more than {n} frames in one go, without waiting for anything"
            )),
            (None, Some(excess)) => Verdict::Failed(format!(
                "its frames took {} bits in the {:.0} ms window ending at {:.3} s, over the \
                 {} bits of the budget (the budget is {} % of the bus)",
                excess.bits,
                budget.window.as_secs_f64() * 1000.0,
                excess.at.as_secs_f64(),
                excess.limit,
                budget.percent
            )),
            (None, None) => Verdict::Passed(format!(
                "peak {:.1} % of the bus in a {:.0} ms window (budget {} %)",
                obs.peak_load_percent,
                budget.window.as_secs_f64() * 1000.0,
                budget.percent
            )),
        },
    );
    let grace = config.limits.abort_grace;
    let terminal = match &obs.ending {
        Ending::Final { after, report: r } => {
            let how = match &r.failure {
                Some(f) => format!("Failed ({f})"),
                None => format!("{:?}", r.phase),
            };
            match abort {
                Some(a) if !obs.aborted => Verdict::Skipped(format!(
                    "the abort was not made: the session ended {how} after {:.3} s, before \
                     the point of the {}",
                    after.as_secs_f64(),
                    a.describe()
                )),
                _ => Verdict::Passed(format!("ended {how} after {:.3} s", after.as_secs_f64())),
            }
        }
        Ending::WatchdogExpired {
            phase,
            elapsed,
            limit,
        } => Verdict::Failed(format!(
            "still {phase:?} after {:.1} s without progress; the engine's watchdog allows \
             {:.1} s from the declared timeouts",
            elapsed.as_secs_f64(),
            limit.as_secs_f64()
        )),
        Ending::AbortIgnored { phase } => Verdict::Failed(format!(
            "still {phase:?} {:.0} ms after the abort; it must end Failed (753 ABORTED)",
            grace.as_secs_f64() * 1000.0
        )),
        Ending::AbortMisreported { report: r } => Verdict::Failed(format!(
            "ended {:?}{} after the abort; the contract asks Failed with 753 ABORTED",
            r.phase,
            r.failure
                .as_ref()
                .map(|f| format!(" ({f})"))
                .unwrap_or_default()
        )),
        Ending::Stopped { why } if obs.flood.is_some() || obs.budget_exceeded.is_some() => {
            Verdict::Skipped(format!("not evaluated: {why}"))
        }
        Ending::Stopped { why } => Verdict::Failed(why.clone()),
    };
    report.push(Check::TerminalState, scenario, terminal);
}
