//! The engine's settings, most of them from `gx.toml`.

use crate::config::{GatesConfig, GxConfig};
use crate::diagnostics::SiteInfo;
use crate::dotted_version::DottedVersion;
use crate::driver::{BudgetConfig, Stage2Config};
use crate::events::EventLogConfig;
use crate::gx_frames::KEEP_ALIVE_PERIOD;
use crate::job::StateDir;
use crate::staging::StagingConfig;
use crate::telemetry::DEFAULT_MAX_AGE;
use std::time::Duration;

/// Everything the engine needs to run, besides its plugins and buses.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// The state directory: journal, event log, request records.
    pub state_dir: StateDir,
    /// The staging area of stage 1.
    pub staging: StagingConfig,
    /// Gate thresholds.
    pub gates: GatesConfig,
    /// The GX device's own firmware version (the GX firmware gate).
    pub gx_firmware: DottedVersion,
    /// VRM installation id and GX firmware, for the diagnostics bundle.
    pub site: SiteInfo,
    /// The bus-load budget (its percentage comes from `gates.bus_load_budget_percent`).
    pub budget: BudgetConfig,
    /// The stage-2 driver's settings.
    pub stage2: Stage2Config,
    /// How often the gates are evaluated during stage 2 besides every telemetry change.
    pub gate_interval: Duration,
    /// How old a required BMS-Can frame may be.
    pub telemetry_max_age: Duration,
    /// Period of the GX keep-alive pair (0x305, 0x307).
    pub keep_alive_period: Duration,
    /// Shortest time between two journaled transfer progress updates (with the plugin's
    /// checkpoint).
    pub progress_interval: Duration,
    /// How often a changed battery view is published.
    pub battery_publish_interval: Duration,
    /// How long a transfer interrupted by a GX restart waits for its battery to
    /// reappear before it fails with 740.
    pub resume_wait: Duration,
    /// The event log's size limits.
    pub events: EventLogConfig,
}

impl EngineConfig {
    /// Default gate interval: four evaluations per second.
    pub const DEFAULT_GATE_INTERVAL: Duration = Duration::from_millis(250);

    /// Settings from a checked `gx.toml` and the GX's firmware version.
    pub fn from_gx(config: &GxConfig, gx_firmware: DottedVersion) -> EngineConfig {
        let percent = config.gates.bus_load_budget_percent.get();
        EngineConfig {
            state_dir: StateDir::new(config.state_dir.clone()),
            staging: StagingConfig {
                dir: config.staging.dir.clone(),
                max_package_size: config.staging.max_package_bytes,
                free_space_margin: config.staging.min_free_bytes,
            },
            gates: config.gates.clone(),
            site: SiteInfo {
                vrm_installation_id: config.portal_id.as_str().to_owned(),
                gx_firmware_version: gx_firmware.to_string(),
            },
            gx_firmware,
            budget: BudgetConfig {
                percent,
                ..BudgetConfig::default()
            },
            stage2: Stage2Config {
                budget_percent: percent,
                ..Stage2Config::default()
            },
            gate_interval: EngineConfig::DEFAULT_GATE_INTERVAL,
            telemetry_max_age: DEFAULT_MAX_AGE,
            keep_alive_period: KEEP_ALIVE_PERIOD,
            progress_interval: Duration::from_secs(1),
            battery_publish_interval: Duration::from_secs(1),
            resume_wait: Duration::from_secs(60),
            events: EventLogConfig::default(),
        }
    }

    /// Defaults for a state directory `state` (staging inside it), for tests and the
    /// simulator: the gates of an empty `gx.toml` and GX firmware `gx_firmware`.
    pub fn in_dir(
        state: impl Into<std::path::PathBuf>,
        gx_firmware: DottedVersion,
    ) -> EngineConfig {
        let state = StateDir::new(state);
        let gates = GatesConfig::default();
        let percent = gates.bus_load_budget_percent.get();
        EngineConfig {
            staging: StagingConfig::new(state.staging()),
            state_dir: state,
            gates,
            site: SiteInfo {
                vrm_installation_id: "c0619ab00000".into(),
                gx_firmware_version: gx_firmware.to_string(),
            },
            gx_firmware,
            budget: BudgetConfig {
                percent,
                ..BudgetConfig::default()
            },
            stage2: Stage2Config {
                budget_percent: percent,
                ..Stage2Config::default()
            },
            gate_interval: EngineConfig::DEFAULT_GATE_INTERVAL,
            telemetry_max_age: DEFAULT_MAX_AGE,
            keep_alive_period: KEEP_ALIVE_PERIOD,
            progress_interval: Duration::from_secs(1),
            battery_publish_interval: Duration::from_secs(1),
            resume_wait: Duration::from_secs(60),
            events: EventLogConfig::default(),
        }
    }
}
