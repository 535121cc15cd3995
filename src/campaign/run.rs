//! Runs one scenario in virtual time: the real engine with the vendor's real plugin in
//! its sandboxed host, the vendor's simulated battery on a simulated bus, the faults at
//! their moments; then checks the invariants against the battery's ground truth and the
//! frames on the wire.

use super::scenario::{Fault, Scenario, Trigger};
use super::truth::{self, Truth};
use crate::cli::demo::vendors;
use bmsfw_core::dotted_version::DottedVersion;
use bmsfw_core::engine::{Engine, EngineConfig};
use bmsfw_core::gates::{GridStatus, SiteStatus};
use bmsfw_core::job::{JobId, JobRecord, JobState};
use bmsfw_core::plugin::{Allowlist, HostSettings, Isolation, PluginLoader, Sha256Digest};
use bmsfw_core::staging::UploadAnnouncement;
use bmsfw_core::vrm::{
    Acknowledgements, Eligibility, EngineRefusal, GxEngine, Presence, UpdateOptions, UpdateRequest,
    VersionPolicy, VrmAccess, VrmPortalMode,
};
use bmsfw_plugin_api::CanFrame;
use bmsfw_protocols::bit_timing;
use bmsfw_sim::battery::{Alarm, BatteryControl, Epoch, Level};
use bmsfw_sim::bus::{CorruptRule, Delivery, DropRule, LossReport, SimBus};
use bmsfw_sim::registry::VendorControls;
use bmsfw_sim::site::{SiteBattery, SiteDescription};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The bus's load cap the engine promises (gx.toml's default).
const LOAD_CAP_PERCENT: f64 = 80.0;
/// The window the cap holds in.
const WINDOW: Duration = Duration::from_millis(100);
/// How long a job may take in all (virtual time) before it counts as stuck: far beyond
/// every watchdog bound of the shipped plugins for the largest image.
const JOB_BOUND: Duration = Duration::from_secs(30 * 60);
/// How long a battery may stay silent once every fault is cleared (a restart, a
/// rollback) before it counts as bricked.
const BOOT_BOUND: Duration = Duration::from_secs(180);
/// How long the campaign lets the battery's telemetry show it healthy again before the
/// next request (the slowest BMS-Can frame comes every few seconds).
const SETTLE: Duration = Duration::from_secs(5);
/// How often the campaign looks at the job.
const TICK: Duration = Duration::from_millis(5);

/// One broken promise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The invariant (a to f).
    pub invariant: char,
    /// What happened.
    pub what: String,
}

impl Violation {
    fn new(invariant: char, what: impl Into<String>) -> Violation {
        Violation {
            invariant,
            what: what.into(),
        }
    }
}

/// What a scenario did.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// How the job ended (`None`: refused at the start, or never ended).
    pub end: Option<JobState>,
    /// Its failure code, when it failed.
    pub code: Option<u32>,
    /// The faults that struck (a trigger whose moment never came did not).
    pub struck: Vec<Fault>,
    /// The broken promises.
    pub violations: Vec<Violation>,
}

/// What the campaign's worker prepared once: the vendors' plugin libraries and the
/// allowlist approving them.
pub struct Workbench {
    dir: std::path::PathBuf,
    allowlist: Allowlist,
    site: SiteDescription,
    /// Batteries of vendors the demo's site has none of.
    extra: SiteDescription,
}

/// The template's Acme BMS, which the demo's site does not have.
const TEMPLATE_BATTERY: &str = r#"
[[bus]]
name = "sim4"
bitrate = 500000

[[bus.battery]]
name = "acme"
vendor = "template"
manufacturer = "ACME"
bms_name = "Acme 10"
product_code = 0xAC10
firmware = [1, 11]
capacity_ah = 100
serial = "ACME10-0042"
soc = 75
temperature_c = 22.0
"#;

impl Workbench {
    /// Installs the vendors' plugin libraries of `plugins` into `dir` with their
    /// allowlist.
    pub fn new(plugins: &Path, dir: &Path) -> anyhow::Result<Workbench> {
        crate::cli::demo::files::install_plugins(plugins, dir)?;
        let allowlist = Allowlist::load(&dir.join("allowlist.toml"))?;
        let site = SiteDescription::parse(crate::cli::demo::BUILT_IN_SITE, "demo.toml")?;
        let extra = SiteDescription::parse(TEMPLATE_BATTERY, "the campaign's template battery")?;
        Ok(Workbench {
            dir: dir.to_path_buf(),
            allowlist,
            site,
            extra,
        })
    }

    fn battery(&self, vendor: &str) -> anyhow::Result<SiteBattery> {
        self.site
            .batteries()
            .into_iter()
            .chain(self.extra.batteries())
            .find(|b| b.vendor == vendor)
            .ok_or_else(|| anyhow::anyhow!("the campaign has no {vendor} battery"))
    }
}

/// Everything seen on the bus: every frame with its end and its sender, and the frames
/// the GX handed over.
#[derive(Default)]
struct Wire {
    frames: Vec<(CanFrame, Instant, bool)>,
    /// The battery's frames the GX received: a lost frame is on the wire but never
    /// reached the GX, so it cannot have told the GX anything.
    to_gx: Vec<(CanFrame, Instant)>,
}

/// The faults' switches, read by the bus's drop rule.
struct Switches {
    loss: f64,
    rng: StdRng,
    /// The BMS is silent until then (its node's switch).
    silent_until: Arc<Mutex<Option<Instant>>>,
    /// A bus-off fault holds the GX's controller off until then.
    held_off_until: Option<Instant>,
    wire: Arc<Mutex<Wire>>,
}

/// The plugin hosts' settings in the campaign: the defaults, with deadlines long enough
/// that a busy machine (every core running scenarios, in virtual time) never misses one.
/// The deadlines run on the wall clock while a scenario runs in bus time, so the
/// defaults would fail jobs for the machine's load, not the plugin's; hung calls are
/// the plugin host's own tests' business.
fn host_settings() -> HostSettings {
    let mut settings = HostSettings::default();
    settings.deadlines.identity = Duration::from_secs(5);
    settings.deadlines.session = Duration::from_secs(5);
    settings.deadlines.start = Duration::from_secs(30);
    settings.deadlines.package = Duration::from_secs(60);
    settings.deadlines.load = Duration::from_secs(30);
    settings
}

/// Runs `scenario`. `Err` is a failure of the campaign itself (a plugin library that
/// does not load), never a finding.
pub fn run(bench: &Workbench, scenario: &Scenario) -> anyhow::Result<Outcome> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()?;
    let state = tempfile::tempdir_in(&bench.dir)?;
    rt.block_on(run_in(bench, scenario, state.path()))
}

async fn run_in(bench: &Workbench, scenario: &Scenario, state: &Path) -> anyhow::Result<Outcome> {
    let vendor = vendors::vendor(scenario.vendor)
        .ok_or_else(|| anyhow::anyhow!("no shipped vendor {}", scenario.vendor))?;
    let battery = bench.battery(scenario.vendor)?;
    let serial = battery.config.identity.serial.clone().unwrap_or_default();
    let sample = (vendor.sample)(&battery, scenario.image_bytes)?;

    let bus = SimBus::new(battery.bus.clone(), 500_000);
    let wire = Arc::new(Mutex::new(Wire::default()));
    let switches = Arc::new(Mutex::new(Switches {
        loss: 0.0,
        rng: StdRng::seed_from_u64(scenario.seed ^ scenario.number.rotate_left(29)),
        silent_until: Arc::new(Mutex::new(None)),
        held_off_until: None,
        wire: wire.clone(),
    }));
    for fault in &scenario.faults {
        if let Fault::Loss { permille } = fault {
            switches.lock().unwrap().loss = f64::from(*permille) / 1000.0;
        }
    }
    let rule_switches = switches.clone();
    bus.set_drop_rule(
        DropRule::when(move |d: &Delivery<'_>| {
            let mut s = rule_switches.lock().unwrap();
            if d.receiver == "tap" {
                let from_gx = d.sender == "gx";
                s.wire
                    .lock()
                    .unwrap()
                    .frames
                    .push((*d.frame, d.at, from_gx));
                return false;
            }
            let loss = s.loss;
            let dropped = loss > 0.0 && s.rng.random_bool(loss);
            if d.receiver == "gx" && !dropped {
                s.wire.lock().unwrap().to_gx.push((*d.frame, d.at));
            }
            dropped
        })
        // The GX learns of a frame it lost as from an overrun receive buffer: its
        // controller reports the overflow.
        .reported(LossReport::Overflow),
    );
    let tap = bus.attach("tap");
    let _tap_task = tokio::spawn(async move { while tap.recv().await.is_ok() {} });

    let epoch = Epoch::starting_now();
    let spawned = crate::cli::source::vendor_models()
        .factory(&battery.vendor)
        .spawn(
            &battery,
            Arc::new(silence::Silenceable {
                node: bus.attach(&battery.name),
                until: switches.lock().unwrap().silent_until.clone(),
            }),
            epoch,
        )?;
    let control = spawned.control.clone();
    let controls: VendorControls = spawned
        .vendor
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the {} model has no controls", scenario.vendor))?;
    let gx = bus.attach("gx");
    let gx_node = gx.id();
    let _restart = tokio::spawn(restart_after_bus_off(
        bus.clone(),
        gx_node,
        switches.clone(),
    ));

    let library = bench.dir.join("plugins").join(format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        vendor.package.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    ));
    let plugin = PluginLoader::new(bench.allowlist.clone())
        .with_isolation(Isolation::Hosted(Arc::new(host_settings())))
        .load_file(&library)
        .map_err(|r| anyhow::anyhow!("{r}"))?;
    let site = SiteStatus::new(GridStatus::Connected);
    let engine = Engine::builder(EngineConfig::in_dir(
        state,
        DottedVersion::from(vec![3, 70]),
    ))
    .plugin(plugin)
    .bus(Arc::new(gx))
    .vrm_access(VrmAccess::new(VrmPortalMode::Full))
    .site_status(site.clone())
    .start()?;

    let mut out = Outcome {
        end: None,
        code: None,
        struck: Vec::new(),
        violations: Vec::new(),
    };
    if !communicating(&engine, &serial, Duration::from_secs(30), true).await {
        out.violations.push(Violation::new(
            'c',
            "the battery never communicated before the update",
        ));
        return Ok(out);
    }
    let before = truth::read(scenario.vendor, &controls)
        .ok_or_else(|| anyhow::anyhow!("no ground truth for {}", scenario.vendor))?;

    let started = Instant::now();
    let job = match upload(&engine, &serial, &sample.file_name, &sample.bytes, false).await {
        Ok(job) => job,
        Err(refusal) => {
            out.violations.push(Violation::new(
                'c',
                format!(
                    "the update was refused at the start: {} {}",
                    refusal.code, refusal.message
                ),
            ));
            return Ok(out);
        }
    };

    // The faults, each at its moment; `undo` holds what ends after a while.
    let mut pending: Vec<Fault> = scenario
        .faults
        .iter()
        .copied()
        .filter(|f| f.trigger().is_some())
        .collect();
    out.struck.extend(
        scenario
            .faults
            .iter()
            .copied()
            .filter(|f| f.trigger().is_none()),
    );
    let mut undo: Vec<(Instant, Fault)> = Vec::new();
    // When a gate checked all along turned red, and the telemetry frame that tells the
    // GX (None: the GX knows at once).
    let mut red_since: Option<(Instant, Option<u32>)> = None;
    let record = loop {
        // A job the engine no longer knows never ends: counted as one that did not.
        let Some(record) = job_record(&engine, job).await else {
            break None;
        };
        let now = Instant::now();
        if record.state().is_terminal() {
            break Some(record);
        }
        if now - started > JOB_BOUND {
            break None;
        }
        let mut i = 0;
        while i < pending.len() {
            let fault = pending[i];
            let due = fault.trigger().is_some_and(|t| reached(t, &record));
            if !due {
                i += 1;
                continue;
            }
            pending.remove(i);
            out.struck.push(fault);
            if fault.holds_a_gate_red() && red_since.is_none() {
                red_since = Some((now, gate_evidence(fault)));
            }
            if let Some(until) = strike(fault, &bus, gx_node, &control, &site, &switches, now) {
                undo.push((until, fault));
            }
        }
        undo.retain(|(until, fault)| {
            if now >= *until {
                heal(*fault, &bus, gx_node, &control, &switches);
                false
            } else {
                true
            }
        });
        tokio::time::sleep(TICK).await;
    };
    let ended = Instant::now();
    // Every fault cleared: the battery back to normal operation.
    for (_, fault) in undo.drain(..) {
        heal(fault, &bus, gx_node, &control, &switches);
    }
    for fault in &out.struck {
        heal(*fault, &bus, gx_node, &control, &switches);
    }
    switches.lock().unwrap().loss = 0.0;
    site.set_grid(GridStatus::Connected);

    let Some(record) = record else {
        out.violations.push(Violation::new(
            'c',
            format!("the job did not end within {} s", JOB_BOUND.as_secs()),
        ));
        return Ok(out);
    };
    out.end = Some(record.state());
    out.code = record.failure().map(|f| f.code);

    // b: the battery boots a verified image again.
    let back = communicating(&engine, &serial, BOOT_BOUND, false).await;
    let after = settled_truth(scenario.vendor, &controls).await;
    if !back || !after.as_ref().is_some_and(|t| t.running) {
        out.violations.push(Violation::new(
            'b',
            format!(
                "the battery does not run its firmware {} s after every fault was cleared",
                BOOT_BOUND.as_secs()
            ),
        ));
    }
    let after = after.unwrap_or_else(|| before.clone());
    check_images(&before, &after, &sample.installed, &mut out);
    check_outcome(&record, &after, &sample.installed, &mut out);
    check_history(&engine, &serial, &record, &mut out).await;
    let allowed = engine.config().gate_interval + engine.config().stage2.abort_grace;
    check_gates(&wire, red_since, ended, allowed, &mut out);
    check_budget(&wire, started, ended, &mut out);

    // c: the GX takes the next request, once the battery's telemetry shows it healthy
    // again and a crashed plugin's restart pause is over.
    tokio::time::sleep(SETTLE).await;
    // Each cause of waiting has its own bound: a bus recovering from a burst may use up
    // its seconds before the plugin host's restart pause shows.
    let (mut host_waits, mut bus_waits) = (0, 0);
    loop {
        match upload(&engine, &serial, &sample.file_name, &sample.bytes, true).await {
            Ok(next) => {
                let _ = engine
                    .cancel_update(
                        next,
                        EngineRefusal::new(719, "the campaign's scenario ends"),
                    )
                    .await;
                break;
            }
            // The plugin host's restart pause runs on the wall clock.
            Err(refusal)
                if (refusal.code == 747 || refusal.message.contains("started again"))
                    && host_waits < 20 =>
            {
                host_waits += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            // A controller still error passive after a burst of errors counts its way
            // back to error active with every good frame.
            Err(refusal) if refusal.code == 725 && bus_waits < 60 => {
                bus_waits += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(refusal) => {
                out.violations.push(Violation::new(
                    'c',
                    format!(
                        "the GX refused the next request: {} {}",
                        refusal.code, refusal.message
                    ),
                ));
                break;
            }
        }
    }
    Ok(out)
}

/// Whether the job reached the trigger's moment.
fn reached(trigger: Trigger, record: &JobRecord) -> bool {
    match trigger {
        Trigger::Transfer(p) => {
            record.state() == JobState::Transferring && record.percent().get() >= p
        }
        Trigger::Installing => record.state() == JobState::Installing,
        Trigger::Restarting => record.state() == JobState::Restarting,
        Trigger::Verifying => record.state() == JobState::Verifying,
    }
}

/// The restart a GX's CAN interface is configured with (`restart-ms 100`, as the README
/// sets it up): the driver brings a controller that went bus-off back 100 ms later.
const RESTART_AFTER_BUS_OFF: Duration = Duration::from_millis(100);

/// Plays the kernel driver's `restart-ms` for the GX's controller: bus-off for
/// [`RESTART_AFTER_BUS_OFF`], then back, unless a bus-off fault holds it off longer.
async fn restart_after_bus_off(
    bus: SimBus,
    gx: bmsfw_sim::bus::NodeId,
    switches: Arc<Mutex<Switches>>,
) {
    use bmsfw_can::ControllerState;
    let mut off_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let Some(info) = bus.node_info(gx) else {
            return;
        };
        let now = Instant::now();
        if info.state != ControllerState::BusOff {
            off_since = None;
            continue;
        }
        let since = *off_since.get_or_insert(now);
        let held = switches
            .lock()
            .unwrap()
            .held_off_until
            .is_some_and(|until| now < until);
        if !held && now - since >= RESTART_AFTER_BUS_OFF {
            let _ = bus.recover(gx);
            off_since = None;
        }
    }
}

/// Applies `fault` now; returns when it ends by itself, if it does.
fn strike(
    fault: Fault,
    bus: &SimBus,
    gx: bmsfw_sim::bus::NodeId,
    control: &Arc<dyn BatteryControl>,
    site: &SiteStatus,
    switches: &Arc<Mutex<Switches>>,
    now: Instant,
) -> Option<Instant> {
    let ms = |m: u32| now + Duration::from_millis(u64::from(m));
    match fault {
        Fault::Loss { .. } => None,
        Fault::Corruption { millis, .. } => {
            if let Ok(rule) = CorruptRule::probability(0.3, u64::from(millis)) {
                bus.set_corrupt_rule(rule);
            }
            Some(ms(millis))
        }
        Fault::BusOff { millis, .. } => {
            switches.lock().unwrap().held_off_until = Some(ms(millis));
            let _ = bus.force_bus_off(gx);
            Some(ms(millis))
        }
        Fault::PowerCut { millis, .. } => {
            control.power_cut();
            Some(ms(millis))
        }
        Fault::Silence { millis, .. } => {
            *switches.lock().unwrap().silent_until.lock().unwrap() = Some(ms(millis));
            Some(ms(millis))
        }
        Fault::LowCharge { .. } => {
            control.set_soc(30.0);
            None
        }
        Fault::Alarm { .. } => {
            control.raise(Level::Alarm, Alarm::HighTemperature);
            None
        }
        Fault::Heat { .. } => {
            control.set_temperature(48.0);
            None
        }
        Fault::BackupPower { .. } => {
            site.set_grid(GridStatus::Lost);
            None
        }
        Fault::PluginCrash { .. } => {
            kill_session_hosts();
            None
        }
    }
}

/// The BMS-Can frame that tells the GX of a gate fault (`None`: the GX learns it from
/// the site at once).
fn gate_evidence(fault: Fault) -> Option<u32> {
    match fault {
        Fault::LowCharge { .. } => Some(0x355),
        Fault::Heat { .. } => Some(0x356),
        Fault::Alarm { .. } => Some(0x35A),
        _ => None,
    }
}

/// Ends `fault`.
fn heal(
    fault: Fault,
    bus: &SimBus,
    gx: bmsfw_sim::bus::NodeId,
    control: &Arc<dyn BatteryControl>,
    switches: &Arc<Mutex<Switches>>,
) {
    match fault {
        Fault::Corruption { .. } => bus.set_corrupt_rule(CorruptRule::never()),
        Fault::BusOff { .. } => {
            switches.lock().unwrap().held_off_until = None;
            let _ = bus.recover(gx);
        }
        Fault::PowerCut { .. } => control.power_restore(),
        Fault::Silence { .. } => *switches.lock().unwrap().silent_until.lock().unwrap() = None,
        Fault::LowCharge { .. } => control.set_soc(80.0),
        Fault::Alarm { .. } => control.clear_all_alarms(),
        Fault::Heat { .. } => control.set_temperature(25.0),
        Fault::Loss { .. } | Fault::BackupPower { .. } | Fault::PluginCrash { .. } => {}
    }
}

/// Kills this process's plugin hosts that serve a session (SIGKILL): a worker runs one
/// scenario at a time, so they are this scenario's.
fn kill_session_hosts() {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if parent != Some(me) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains("session") {
            // SAFETY: kill(2) on a child of this process that it has not reaped.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Whether the engine hears the battery (`eligible`: and knows who it is and may update
/// it), within
/// `within` (the identity frames come every few seconds, and some are lost on a lossy
/// bus).
async fn communicating(engine: &Engine, serial: &str, within: Duration, eligible: bool) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        let heard = engine.batteries().await.iter().any(|b| {
            b.identity.serial == serial
                && b.presence == Presence::Communicating
                && (!eligible || matches!(b.eligibility, Eligibility::Eligible { .. }))
        });
        if heard {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The truth once the model settled (a restart under way has finished).
async fn settled_truth(vendor: &str, controls: &VendorControls) -> Option<Truth> {
    let until = Instant::now() + BOOT_BOUND;
    loop {
        let truth = truth::read(vendor, controls);
        if truth.as_ref().is_none_or(|t| t.running) || Instant::now() >= until {
            return truth;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The job's record; `None` when the engine no longer knows the job.
async fn job_record(engine: &Engine, job: JobId) -> Option<JobRecord> {
    engine.jobs().await.into_iter().find(|r| r.id() == job)
}

async fn upload(
    engine: &Engine,
    serial: &str,
    name: &str,
    bytes: &[u8],
    reinstall: bool,
) -> Result<JobId, EngineRefusal> {
    let chunk = 16 * 1024u32;
    let announcement = UploadAnnouncement::new(
        name.to_owned(),
        bytes.len() as u64,
        chunk,
        Sha256Digest::of(bytes),
    )
    .map_err(|e| EngineRefusal::new(700, e.to_string()))?;
    let request = UpdateRequest {
        battery_serial: serial.to_owned(),
        package: announcement,
        acknowledgements: Acknowledgements::all(),
        options: UpdateOptions {
            version_policy: if reinstall {
                VersionPolicy::AllowReinstallOrDowngrade
            } else {
                VersionPolicy::NewerOnly
            },
            ..UpdateOptions::default()
        },
    };
    let job = engine.request_update(request).await?.job;
    for (i, part) in bytes.chunks(chunk as usize).enumerate() {
        engine.accept_chunk(job, i as u32, part.to_vec()).await?;
    }
    engine.finish_upload(job).await.map(|_| job)
}

/// a: every unit boots its old image or the complete new one.
fn check_images(before: &Truth, after: &Truth, installed: &[u8], out: &mut Outcome) {
    for (unit, image) in &after.units {
        let old = before
            .units
            .iter()
            .find(|(u, _)| u == unit)
            .map(|(_, i)| i.as_slice());
        if Some(image.as_slice()) != old && image.as_slice() != installed {
            out.violations.push(Violation::new(
                'a',
                format!(
                    "{unit} boots an image that is neither its old firmware nor the complete new one ({} bytes)",
                    image.len()
                ),
            ));
        }
    }
}

/// d: Completed only when every unit runs the new image; Failed with a catalogue code.
fn check_outcome(record: &JobRecord, after: &Truth, installed: &[u8], out: &mut Outcome) {
    match record.state() {
        JobState::Completed => {
            for (unit, image) in &after.units {
                if image.as_slice() != installed {
                    out.violations.push(Violation::new(
                        'd',
                        format!("reported Completed, but {unit} does not run the new firmware"),
                    ));
                }
            }
        }
        JobState::Failed => match record.failure() {
            Some(f) if bmsfw_core::errors::lookup(f.code).is_some() => {}
            Some(f) => out.violations.push(Violation::new(
                'd',
                format!("failed with {}, a code the catalogue does not have", f.code),
            )),
            None => out
                .violations
                .push(Violation::new('d', "failed without a failure")),
        },
        other => out
            .violations
            .push(Violation::new('d', format!("ended in {other:?}"))),
    }
}

/// d: the event log tells the same end.
async fn check_history(engine: &Engine, serial: &str, record: &JobRecord, out: &mut Outcome) {
    use bmsfw_core::events::EventKind;
    let Ok(history) = engine.history(serial).await else {
        out.violations
            .push(Violation::new('d', "the event log could not be read"));
        return;
    };
    let last = history
        .iter()
        .filter(|e| e.job == record.id())
        .filter_map(|e| match &e.event {
            EventKind::StateChanged { to, .. } => Some(*to),
            _ => None,
        })
        .next_back();
    if last != Some(record.state()) {
        out.violations.push(Violation::new(
            'd',
            format!(
                "the job ended {:?} but the event log says {last:?}",
                record.state()
            ),
        ));
    }
    if let Some(f) = record.failure() {
        let logged = history.iter().any(|e| {
            e.job == record.id()
                && matches!(&e.event, EventKind::Failed { code, .. } if *code == f.code)
        });
        if !logged {
            out.violations.push(Violation::new(
                'd',
                format!("the failure {} is not in the event log", f.code),
            ));
        }
    }
}

/// e: no transfer frame once a gate checked all along has been red for longer than
/// `allowed`: one check interval and the abort's grace, in which the plugin tells the BMS
/// to drop the update.
fn check_gates(
    wire: &Mutex<Wire>,
    red_since: Option<(Instant, Option<u32>)>,
    ended: Instant,
    allowed: Duration,
    out: &mut Outcome,
) {
    let Some((struck, evidence)) = red_since else {
        return;
    };
    let wire = wire.lock().unwrap();
    // The gate is red for the GX from the first frame it received that carries the red
    // value.
    let red = match evidence {
        None => struck,
        Some(id) => match wire
            .to_gx
            .iter()
            .find(|(f, at)| *at >= struck && f.id().raw() == id)
        {
            Some((_, at)) => *at,
            None => return,
        },
    };
    let cutoff = red + allowed + Duration::from_millis(10);
    let late = wire
        .frames
        .iter()
        .filter(|(f, at, from_gx)| {
            *from_gx && *at > cutoff && *at <= ended && !matches!(f.id().raw(), 0x305 | 0x307)
        })
        .count();
    if late > 0 {
        out.violations.push(Violation::new(
            'e',
            format!(
                "{late} frames sent more than {} ms after a gate turned red",
                (cutoff - red).as_millis()
            ),
        ));
    }
}

/// f: the bus's load stays under the cap in every window while the job runs.
fn check_budget(wire: &Mutex<Wire>, started: Instant, ended: Instant, out: &mut Outcome) {
    let wire = wire.lock().unwrap();
    let frames: Vec<&(CanFrame, Instant, bool)> = wire
        .frames
        .iter()
        .filter(|(_, at, _)| *at >= started && *at <= ended + WINDOW)
        .collect();
    let spans: Vec<(Instant, Instant)> = frames
        .iter()
        .map(|(f, at, _)| (*at - bit_timing::frame_duration(f, 500_000), *at))
        .collect();
    let mut first = 0;
    let mut peak: (f64, usize, usize) = (0.0, 0, 0);
    for (i, &(_, end)) in spans.iter().enumerate() {
        let from = end - WINDOW;
        while first < i && spans[first].1 <= from {
            first += 1;
        }
        let busy: Duration = spans[first..=i]
            .iter()
            .map(|(s, e)| e.saturating_duration_since((*s).max(from)))
            .sum();
        let percent = busy.as_secs_f64() / WINDOW.as_secs_f64() * 100.0;
        if percent > peak.0 {
            peak = (percent, first, i);
        }
    }
    if peak.0 > LOAD_CAP_PERCENT + 1e-9 {
        let (percent, first, last) = peak;
        let inside = &frames[first..=last];
        let own = inside.iter().filter(|(_, _, from_gx)| *from_gx).count();
        let unheard = inside
            .iter()
            .filter(|(f, at, from_gx)| !*from_gx && !wire.to_gx.contains(&(*f, *at)))
            .count();
        out.violations.push(Violation::new(
            'f',
            format!(
                "the bus load reached {percent:.2} % in the 100 ms window ending {} ms into the job \
                 (cap {LOAD_CAP_PERCENT} %): {own} frames of the GX, {} of other nodes ({unheard} of them never reached the GX)",
                (frames[last].1 - started).as_millis(),
                inside.len() - own
            ),
        ));
    }
}

mod silence;
#[cfg(test)]
mod tests;
