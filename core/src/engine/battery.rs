//! The battery on a bus as the engine sees it: its identity for jobs, its plugin, its
//! live view for the portal and its state at the time of a failure.

use crate::diagnostics::BatterySnapshot;
use crate::errors::codes;
use crate::job::{BatteryIdentity, ModuleProgress, ModuleState, VersionInfo};
use crate::plugin::{
    AllowlistEntry, BatteryMatch, DecodedVersion, ModuleStatus, ModuleUpdateState, VendorPlugin,
    plugin_battery,
};
use crate::telemetry::{BatteryState, Communication, Severity};
use crate::unix_time::UnixMillis;
use crate::vrm::{AlarmLevel, AlarmView, BatteryView, Eligibility, Presence};
use bmsfw_plugin_api::Timestamp;
use std::sync::Arc;
use std::time::Duration;

/// A plugin the engine loaded, with the allowlist entry that approved it.
#[derive(Clone)]
pub struct EnginePlugin {
    /// The plugin.
    pub plugin: Arc<dyn VendorPlugin>,
    /// Its approval.
    pub entry: AllowlistEntry,
}

impl std::fmt::Debug for EnginePlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnginePlugin")
            .field("vendor", &self.plugin.info().vendor_id)
            .finish_non_exhaustive()
    }
}

/// Which plugin takes a battery, or why none does.
#[derive(Debug, Clone)]
pub enum PluginChoice {
    /// This plugin (index into the engine's list) updates the battery.
    Updatable(usize),
    /// No plugin can: the catalogue code and the reason.
    NotSupported {
        /// 748 (or a plugin fault code).
        code: u32,
        /// Why, for the installer.
        reason: String,
    },
}

/// The job's identity of the battery heard on BMS-Can: manufacturer, model (BMS name,
/// product name or product code) and serial number. A battery that sends no serial
/// number is named by its bus.
pub fn job_identity(state: &BatteryState, bus: &str) -> BatteryIdentity {
    let heard = state.identity();
    let manufacturer = heard
        .manufacturer
        .clone()
        .unwrap_or_else(|| "unknown".into());
    let model = heard
        .bms_name
        .clone()
        .or_else(|| heard.product_name.clone())
        .or_else(|| heard.product_code().map(|c| format!("product {c:#06x}")))
        .unwrap_or_else(|| "unknown".into());
    let serial = heard
        .serial
        .clone()
        .unwrap_or_else(|| format!("{bus}-{manufacturer}"));
    BatteryIdentity {
        manufacturer,
        model,
        serial,
    }
}

/// Chooses the plugin for the battery heard in `state`: the first plugin whose answer is
/// "mine, updatable" and whose allowlist entry covers the product. `unavailable` is why
/// the engine runs without plugins (an unreadable allowlist), named in the refusal.
pub fn choose_plugin(
    plugins: &[EnginePlugin],
    unavailable: Option<&str>,
    state: &BatteryState,
) -> PluginChoice {
    let heard = state.identity();
    let battery = plugin_battery(&heard);
    let mut reasons = Vec::new();
    for (i, p) in plugins.iter().enumerate() {
        match p.plugin.match_battery(&battery) {
            Ok(BatteryMatch::NotMine) => {}
            Ok(BatteryMatch::Updatable) => {
                if p.entry
                    .covers_product(battery.manufacturer.as_str(), heard.product_code())
                {
                    return PluginChoice::Updatable(i);
                }
                reasons.push(format!(
                    "the approval of {} does not cover this product ({} {})",
                    p.entry.vendor_id,
                    battery.manufacturer,
                    heard
                        .product_code()
                        .map_or("without product code".to_owned(), |c| format!("{c:#06x}"))
                ));
            }
            Ok(BatteryMatch::MineNotUpdatable { reason }) => {
                reasons.push(format!("{}: {reason}", p.entry.vendor_id));
            }
            Err(failure) => {
                tracing::warn!(vendor = %p.entry.vendor_id, %failure, "match_battery failed");
                reasons.push(format!("{}: {failure}", p.entry.vendor_id));
            }
        }
    }
    let reason = if reasons.is_empty() {
        let mut reason = format!(
            "no approved update plugin recognises this battery ({})",
            heard
                .manufacturer
                .as_deref()
                .unwrap_or("no manufacturer sent")
        );
        if let Some(why) = unavailable {
            reason.push_str("; no plugin is loaded: ");
            reason.push_str(why);
        }
        reason
    } else {
        reasons.join("; ")
    };
    PluginChoice::NotSupported {
        code: codes::BATTERY_NOT_SUPPORTED,
        reason,
    }
}

/// The installed firmware: 0x35F bytes 2-3 decoded by `plugin`.
pub fn installed_version(
    plugin: &dyn VendorPlugin,
    state: &BatteryState,
) -> Option<DecodedVersion> {
    let bytes = state.identity().firmware_bytes()?;
    match plugin.decode_version(&bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(error = %e, ?bytes, "plugin could not decode the installed version");
            None
        }
    }
}

/// A plugin's decoded version as the job keeps it.
pub fn version_info(v: &DecodedVersion) -> VersionInfo {
    VersionInfo {
        raw: v.raw.clone(),
        display: v.display.clone(),
    }
}

/// A module of the plugin's report as the job keeps it.
pub fn module_progress(m: &ModuleStatus) -> ModuleProgress {
    ModuleProgress {
        index: m.index,
        state: match m.state {
            ModuleUpdateState::Pending => ModuleState::Pending,
            ModuleUpdateState::Updating => ModuleState::Updating,
            ModuleUpdateState::Done => ModuleState::Done,
            ModuleUpdateState::Failed => ModuleState::Failed,
            ModuleUpdateState::Skipped => ModuleState::Skipped,
        },
        version: m.version.as_ref().map(version_info),
    }
}

/// The battery's state now, for a failure record and the diagnostics bundle.
pub fn snapshot(state: &BatteryState) -> BatterySnapshot {
    let mut alarms: Vec<String> = state
        .active_alarms()
        .iter()
        .map(|a| a.name().to_owned())
        .collect();
    if let Some(p) = state.protection() {
        alarms.extend(
            p.protection
                .active()
                .iter()
                .map(|f| format!("{} protection", f.name())),
        );
    }
    BatterySnapshot {
        captured_at: UnixMillis::now(),
        soc_percent: state.state_of_charge().map(|s| f32::from(s.soc.0)),
        voltage_v: state.measurements().map(|m| m.voltage.volts() as f32),
        temperature_c: state.measurements().map(|m| m.temperature.celsius() as f32),
        active_alarms: alarms,
    }
}

/// The GX path names of the alarm conditions, in the order the portal lists them.
fn alarm_views(state: &BatteryState) -> Vec<AlarmView> {
    use crate::telemetry::AlarmField as F;
    let Some(status) = state.alarms() else {
        return Vec::new();
    };
    let names = [
        (F::HighVoltage, "HighVoltage"),
        (F::LowVoltage, "LowVoltage"),
        (F::HighTemperature, "HighTemperature"),
        (F::LowTemperature, "LowTemperature"),
        (F::HighChargeTemperature, "HighChargeTemperature"),
        (F::LowChargeTemperature, "LowChargeTemperature"),
        (F::HighDischargeCurrent, "HighDischargeCurrent"),
        (F::HighChargeCurrent, "HighChargeCurrent"),
        (F::Contactor, "Contactor"),
        (F::ShortCircuit, "ShortCircuit"),
        (F::BmsInternal, "InternalFailure"),
        (F::CellImbalance, "CellImbalance"),
    ];
    let active_alarms = status.active(Severity::Alarm);
    let active_warnings = status.active(Severity::Warning);
    names
        .into_iter()
        .map(|(field, name)| AlarmView {
            name: name.to_owned(),
            level: if active_alarms.contains(&field) {
                AlarmLevel::Alarm
            } else if active_warnings.contains(&field) {
                AlarmLevel::Warning
            } else {
                AlarmLevel::Ok
            },
        })
        .collect()
}

/// The portal's view of the battery on bus `bus` (index `index`).
pub fn view(
    index: usize,
    bus: &str,
    state: &BatteryState,
    plugins: &[EnginePlugin],
    unavailable: Option<&str>,
    now: Timestamp,
    max_age: Duration,
) -> BatteryView {
    let choice = choose_plugin(plugins, unavailable, state);
    let (eligibility, firmware) = match &choice {
        PluginChoice::Updatable(i) => {
            let p = &plugins[*i];
            (
                Eligibility::Eligible {
                    vendor: p.entry.vendor_id.to_string(),
                },
                installed_version(p.plugin.as_ref(), state).map(|v| version_info(&v)),
            )
        }
        PluginChoice::NotSupported { code, reason } => (
            Eligibility::NotEligible {
                code: *code,
                reason: reason.clone(),
            },
            state.identity().firmware_bytes().map(|raw| VersionInfo {
                display: format!("{:02X} {:02X}", raw[0], raw[1]),
                raw: raw.to_vec(),
            }),
        ),
    };
    BatteryView {
        instance: 512 + index as u32,
        bus: bus.to_owned(),
        identity: job_identity(state, bus),
        firmware,
        soc_percent: state.state_of_charge().map(|s| f32::from(s.soc.0)),
        voltage_v: state.measurements().map(|m| m.voltage.volts() as f32),
        current_a: state.measurements().map(|m| m.current.amps() as f32),
        temperature_c: state.measurements().map(|m| m.temperature.celsius() as f32),
        alarms: alarm_views(state),
        presence: match state.communication(now, max_age) {
            Communication::Communicating => Presence::Communicating,
            Communication::Stale(_) => Presence::Silent,
        },
        eligibility,
    }
}
