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
//!   first frame, while it waits, and in every further phase a peer drove it to;
//! - **replay** ([`replay`], [`recording`]): with a recording of a real update of the
//!   same package, the recorded BMS is played back to the plugin, which must complete
//!   the update again, and is aborted in every later phase the replay reaches.
//!
//! The checks ([`Check`]) and their meaning are listed in `docs/conformance.md`. Without
//! a sample package, the checks that need one are reported as skipped, with the reason.

pub mod battery;
pub mod check;
pub mod packages;
pub mod peer;
pub mod recording;
pub mod replay;
pub mod report;
pub mod run;

pub use check::{Check, Row, Verdict};
pub use peer::PeerBehaviour;
pub use recording::{Recording, RecordingError, Script};
pub use replay::{Divergence, ReplayProgress};
pub use report::{Report, Tally};
pub use run::{AbortAt, BudgetExcess, Ending, Observation, Responder, RunLimits, SessionFactory};

use crate::plugin::{
    BatteryMatch, PackageRead, PackageSummary, PluginFailure, SessionPhase, SessionStart,
    VendorPlugin, VendorSession,
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
    /// A recording of a complete, successful update with the same package, for the
    /// replay peer; without it the later phases are not reached.
    pub recording: Option<Arc<Recording>>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            seed: 0x00C0_FFEE,
            limits: RunLimits::default(),
            battery: None,
            options: SessionOptions::default(),
            hostile_inputs: 200,
            recording: None,
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
    let recorded = match &config.battery {
        Some(_) => None,
        None => recorded_battery(plugin, config),
    };
    let battery = match (&config.battery, recorded) {
        (Some(b), _) => {
            report.push(
                Check::Setup,
                "battery identity",
                Verdict::Passed(format!("as given: {}", describe_battery(b))),
            );
            b.clone()
        }
        (None, Some(b)) => {
            report.push(
                Check::Setup,
                "battery identity",
                Verdict::Passed(format!(
                    "the recording's telemetry, updatable: {}",
                    describe_battery(&b)
                )),
            );
            b
        }
        (None, None) => match battery::plausible_battery(plugin, summary) {
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
        Err(f) if is_fault(f.code) => {
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

/// The battery the recording's telemetry announces, when the plugin calls it updatable:
/// the battery the recorded update was made with.
fn recorded_battery(plugin: &dyn VendorPlugin, config: &Config) -> Option<BatteryIdentity> {
    let battery = config.recording.as_ref()?.battery(plugin.info())?;
    matches!(plugin.match_battery(&battery), Ok(BatteryMatch::Updatable)).then_some(battery)
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
            Err(f) if is_fault(f.code) => Some((describe_battery(b), f)),
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
            Err(f) if is_fault(f.code) => Some((v, f)),
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
            Err(r) if is_fault(r.code) => {
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
    report.push(Check::Replay, REPLAYED_UPDATE, Verdict::Skipped(why.into()));
}

/// The scenario that replays the recording.
const REPLAYED_UPDATE: &str = "replayed update";

/// The later phases' abort rows, when no peer reached any of them.
const LATER_ABORTS: &str = "abort in Installing, Restarting, Verifying";

/// Why the later phases are not reached without a recording.
const NO_RECORDING: &str = "give --recording to reach later phases";

fn check_sessions(
    plugin: &dyn VendorPlugin,
    factory: &SampleSessions<'_>,
    config: &Config,
    report: &mut Report,
) {
    // The later phases each peer drove the session to, in order of first appearance.
    let mut phases: Vec<(SessionPhase, Responder)> = Vec::new();
    let later = |p: &SessionPhase| !p.is_final() && *p != SessionPhase::Transferring;
    // The aborts run with the first peer under which the session sends at all.
    let mut talking: Option<PeerBehaviour> = None;
    let seed_of = |i: usize| config.seed.wrapping_add(0x9E37_79B9 * (i as u64 + 1));
    for (i, behaviour) in PeerBehaviour::ALL.into_iter().enumerate() {
        let responder = Responder::Hostile(behaviour);
        let obs = run::run_scenario(plugin, factory, &responder, None, seed_of(i), config.limits);
        if let Ok(obs) = &obs {
            if obs.frames_sent > 0 && talking.is_none() {
                talking = Some(behaviour);
            }
            for p in obs.phases.iter().filter(|p| later(p)) {
                if !phases.iter().any(|(q, _)| q == p) {
                    phases.push((*p, responder.clone()));
                }
            }
        }
        scenario_rows(plugin, behaviour.scenario(), None, obs, config, report);
    }
    // The replay reaches the later phases as the vendor's BMS does: they are aborted
    // with it, where a hostile peer got there too.
    let mut replay_stop = NO_RECORDING.to_owned();
    if let Some(recording) = &config.recording {
        let script = Arc::new(recording.script(plugin.info()));
        let (reached, stop) = replay_scenario(plugin, factory, &script, config, report);
        replay_stop = stop;
        let responder = Responder::Replay(script);
        for p in reached.iter().filter(|p| later(p)) {
            phases.retain(|(q, _)| q != p);
            phases.push((*p, responder.clone()));
        }
        phases.sort_by_key(|(p, _)| *p as u8);
    } else {
        report.push(
            Check::Replay,
            REPLAYED_UPDATE,
            Verdict::Skipped(format!("no recording (--recording): {NO_RECORDING}")),
        );
    }
    let peer = Responder::Hostile(talking.unwrap_or(PeerBehaviour::Silence));
    let mut aborts: Vec<(AbortAt, Responder)> = vec![
        (AbortAt::Start, peer.clone()),
        (AbortAt::FirstFrame, peer.clone()),
        (AbortAt::Waiting, peer),
    ];
    let no_phase = phases.is_empty();
    aborts.extend(phases.into_iter().map(|(p, r)| (AbortAt::Phase(p), r)));
    for (abort, responder) in aborts {
        let seed = match &responder {
            Responder::Hostile(b) => {
                seed_of(PeerBehaviour::ALL.iter().position(|x| x == b).unwrap_or(0))
            }
            Responder::Replay(_) => config.seed,
        };
        let obs = run::run_scenario(
            plugin,
            factory,
            &responder,
            Some(abort),
            seed,
            config.limits,
        );
        let name = match abort {
            AbortAt::Phase(_) => format!(
                "{} (reached with {})",
                abort.describe(),
                responder.describe()
            ),
            AbortAt::Start => abort.describe(),
            _ => format!("{} ({})", abort.describe(), responder.describe()),
        };
        scenario_rows(plugin, &name, Some(abort), obs, config, report);
    }
    if no_phase {
        for check in SESSION_CHECKS {
            report.push(check, LATER_ABORTS, Verdict::Skipped(replay_stop.clone()));
        }
    }
}

/// Runs the replayed update and reports it; returns the phases the session reported
/// and, in words, why the replay did not reach the later phases (for their skipped
/// rows).
fn replay_scenario(
    plugin: &dyn VendorPlugin,
    factory: &SampleSessions<'_>,
    script: &Arc<Script>,
    config: &Config,
    report: &mut Report,
) -> (Vec<SessionPhase>, String) {
    let interface = script.interface.as_deref().unwrap_or("-");
    if script.steps.is_empty() {
        let why = format!(
            "the recording holds no frame on the plugin's send identifiers ({}): it is not \
             a recording of this plugin's update",
            ranges(&plugin.info().sends)
        );
        report.push(Check::Replay, "recording", Verdict::Failed(why.clone()));
        report.push(
            Check::Replay,
            REPLAYED_UPDATE,
            Verdict::Skipped("nothing to replay".into()),
        );
        return (Vec::new(), format!("the replay did not run: {why}"));
    }
    report.push(
        Check::Replay,
        "recording",
        Verdict::Passed(format!(
            "{} frames of the plugin and {} on its receive identifiers, on {interface}; {} \
             other frames ignored",
            script.steps.len(),
            script.answers(),
            script.ignored
        )),
    );
    let obs = run::run_scenario(
        plugin,
        factory,
        &Responder::Replay(script.clone()),
        None,
        config.seed,
        config.limits,
    );
    let (verdict, stop, phases) = match &obs {
        Err(f) => (
            Verdict::Skipped(format!("the session did not start: {f}")),
            format!("the replayed session did not start: {f}"),
            Vec::new(),
        ),
        Ok(obs) => {
            let (verdict, stop) = replay_verdict(obs);
            (verdict, stop, obs.phases.clone())
        }
    };
    scenario_rows(plugin, REPLAYED_UPDATE, None, obs, config, report);
    report.push(Check::Replay, REPLAYED_UPDATE, verdict);
    (phases, stop)
}

/// The replay check's verdict, and in words why the later phases were not reached.
fn replay_verdict(obs: &Observation) -> (Verdict, String) {
    let phases: Vec<String> = obs.phases.iter().map(|p| format!("{p:?}")).collect();
    let phases = phases.join(" > ");
    let progress = obs.replay.clone().unwrap_or(ReplayProgress {
        matched: 0,
        recorded: 0,
        delivered: 0,
        divergence: None,
    });
    let stop = format!("the replay did not get past Transferring ({phases})");
    if let Some(d) = &progress.divergence {
        return (
            Verdict::Failed(format!(
                "the plugin departed from the recording after {} matching frames: {d}; the \
                 replay stopped there (is it a recording of an update with this package, \
                 battery and options?)",
                progress.matched
            )),
            format!("{stop}: {d}"),
        );
    }
    match &obs.ending {
        Ending::Final { after, report: r } if r.phase == SessionPhase::Done => {
            let rest = progress.recorded - progress.matched;
            (
                Verdict::Passed(format!(
                    "Done after {:.3} s, as recorded: {} of {} recorded frames of the plugin \
                     matched{}, {} frames replayed to it; {phases}",
                    after.as_secs_f64(),
                    progress.matched,
                    progress.recorded,
                    if rest > 0 {
                        format!(" (the recording goes on for {rest} more)")
                    } else {
                        String::new()
                    },
                    progress.delivered
                )),
                stop,
            )
        }
        ending => (
            Verdict::Failed(format!(
                "the plugin sent {} of the {} recorded frames without departing from them, \
                 but did not complete the update: {}; {phases}",
                progress.matched,
                progress.recorded,
                describe_ending(ending)
            )),
            stop,
        ),
    }
}

fn describe_ending(ending: &Ending) -> String {
    match ending {
        Ending::Final { after, report: r } => format!(
            "it ended {:?}{} after {:.3} s",
            r.phase,
            r.failure
                .as_ref()
                .map(|f| format!(" ({f})"))
                .unwrap_or_default(),
            after.as_secs_f64()
        ),
        Ending::WatchdogExpired {
            phase,
            elapsed,
            limit,
        } => format!(
            "still {phase:?} after {:.1} s without progress (the watchdog allows {:.1} s)",
            elapsed.as_secs_f64(),
            limit.as_secs_f64()
        ),
        Ending::AbortIgnored { phase } => format!("still {phase:?} after an abort"),
        Ending::AbortMisreported { report: r } => format!("it ended {:?} after an abort", r.phase),
        Ending::Stopped { why } => why.clone(),
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
            let fault = is_fault(f.code);
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
                "peak {:.1} % of the bus in a {:.0} ms window (budget {} %){}",
                obs.peak_load_percent,
                budget.window.as_secs_f64() * 1000.0,
                budget.percent,
                if obs.replay.is_some() {
                    "; the plugin's frames at the recording's pace"
                } else {
                    ""
                }
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

/// Whether a failure is the plugin's own fault: a panic or a broken contract
/// (`PLUGIN_FAULT`), or its host crashing, hanging past a deadline, running out of a
/// limit or making a forbidden call (747), or its suspension after such failures (749).
pub fn is_fault(code: ErrorCode) -> bool {
    code == ErrorCode::PLUGIN_FAULT
        || code.get() == crate::errors::codes::PLUGIN_HOST_FAILED
        || code.get() == crate::errors::codes::PLUGIN_QUARANTINED
}
