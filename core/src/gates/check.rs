//! The gates' rules: one function per gate, from the inputs to a verdict.

use super::gate::Gate;
use super::inputs::{GateInputs, Silence};
use super::site::{GridStatus, SiteValue};
use super::verdict::{GateReport, GateVerdict, Moment, Outcome};
use crate::config::GatesConfig;
use crate::plugin::{DecodedVersion, VersionOrder};
use crate::telemetry::{BatteryState, FrameKind, Severity};
use crate::vrm::{VersionPolicy, VrmPortalMode};
use bmsfw_can::ControllerState;
use bmsfw_plugin_api::Timestamp;
use std::time::Duration;

/// Evaluates every gate of [`Gate::ALL`] against `config`'s thresholds; `max_age` is how
/// old a required BMS-Can frame may be (see [`crate::telemetry::DEFAULT_MAX_AGE`]).
pub fn evaluate(inputs: &GateInputs<'_>, config: &GatesConfig, max_age: Duration) -> GateReport {
    let verdicts = Gate::ALL
        .into_iter()
        .map(|gate| verdict(gate, inputs, config, max_age))
        .collect();
    GateReport {
        moment: inputs.moment,
        verdicts,
    }
}

/// The verdict of one gate.
pub fn verdict(
    gate: Gate,
    i: &GateInputs<'_>,
    config: &GatesConfig,
    max_age: Duration,
) -> GateVerdict {
    match gate {
        Gate::VrmAccess => vrm_access(&i.site.vrm),
        Gate::GxFirmware => {
            let ok = i
                .site
                .gx_firmware
                .known()
                .is_some_and(|v| v.meets(&config.min_gx_firmware));
            GateVerdict::new(
                gate,
                pass_if(ok),
                i.site.gx_firmware.to_string(),
                format!("v{} or later", config.min_gx_firmware),
            )
        }
        Gate::BusBitrate => {
            let want = config.bitrate.bits_per_second();
            let (ok, measured) = match i.bitrate {
                Some(b) => (b == want, format!("{b} bit/s")),
                None => (
                    false,
                    "unknown (the interface does not report it)".to_owned(),
                ),
            };
            GateVerdict::new(gate, pass_if(ok), measured, format!("{want} bit/s"))
        }
        Gate::StateOfCharge => state_of_charge(i, config, max_age),
        Gate::Communicating => communicating(i, max_age),
        Gate::BusErrorState => {
            let ok = !matches!(
                i.controller,
                ControllerState::ErrorPassive | ControllerState::BusOff | ControllerState::Stopped
            );
            GateVerdict::new(
                gate,
                pass_if(ok),
                controller_name(i.controller),
                "error active or error warning",
            )
        }
        Gate::NoActiveAlarm => alarms(i.battery),
        Gate::Temperature => temperature(i, config),
        Gate::NoBackupPowerEvent => GateVerdict::new(
            gate,
            pass_if(matches!(
                i.site.grid,
                SiteValue::Known(GridStatus::Connected | GridStatus::NotMonitored)
            )),
            i.site.grid.to_string(),
            "no grid loss",
        ),
        Gate::BusFree => match i.other_update {
            None => GateVerdict::new(gate, Outcome::Pass, "no other update", "none"),
            Some(job) => GateVerdict::new(
                gate,
                Outcome::Fail,
                format!("job {job} is updating a battery on this bus"),
                "none",
            ),
        },
        Gate::Acknowledgements => {
            let missing = i.acknowledgements.missing();
            let measured = if missing.is_empty() {
                "all confirmed".to_owned()
            } else {
                let names: Vec<String> = missing.iter().map(|a| a.to_string()).collect();
                format!("missing: {}", names.join(", "))
            };
            GateVerdict::new(
                gate,
                pass_if(missing.is_empty()),
                measured,
                "site reachable, backup capacity, maintenance window",
            )
        }
        Gate::VersionChoice => version_choice(i),
        Gate::TargetApproved => approved(gate, i.versions.target, i, "the package's version"),
        Gate::InstalledApproved => approved(gate, i.versions.installed, i, "the installed version"),
    }
}

fn pass_if(ok: bool) -> Outcome {
    if ok { Outcome::Pass } else { Outcome::Fail }
}

fn vrm_access(mode: &SiteValue<VrmPortalMode>) -> GateVerdict {
    GateVerdict::new(
        Gate::VrmAccess,
        pass_if(*mode == SiteValue::Known(VrmPortalMode::Full)),
        mode.to_string(),
        VrmPortalMode::Full.to_string(),
    )
}

fn controller_name(state: ControllerState) -> &'static str {
    match state {
        ControllerState::ErrorActive => "error active",
        ControllerState::ErrorWarning => "error warning",
        ControllerState::ErrorPassive => "error passive",
        ControllerState::BusOff => "bus-off",
        ControllerState::Stopped => "stopped",
    }
}

/// ` (received 4.2 s ago)` when the value is older than `max_age`, else empty.
fn age_note(battery: &BatteryState, kind: FrameKind, now: Timestamp, max_age: Duration) -> String {
    match battery.age(kind, now) {
        Some(age) if age > max_age => format!(" (last received {:.1} s ago)", age.as_secs_f64()),
        _ => String::new(),
    }
}

fn state_of_charge(i: &GateInputs<'_>, config: &GatesConfig, max_age: Duration) -> GateVerdict {
    let min = config.soc_min_percent.percent();
    let limit = format!("at least {min} %");
    let Some((battery, soc)) = i.battery.and_then(|b| b.state_of_charge().map(|s| (b, s))) else {
        return GateVerdict::new(
            Gate::StateOfCharge,
            Outcome::Fail,
            "not reported (no 0x355 received)",
            limit,
        );
    };
    let percent = soc.soc.0;
    GateVerdict::new(
        Gate::StateOfCharge,
        pass_if(percent >= u16::from(min)),
        format!(
            "{}{}",
            soc.soc,
            age_note(battery, FrameKind::StateOfCharge, i.now, max_age)
        ),
        limit,
    )
}

fn communicating(i: &GateInputs<'_>, max_age: Duration) -> GateVerdict {
    let limit = format!(
        "0x351, 0x355, 0x356 and 0x35A each within {} s",
        max_age.as_secs_f64()
    );
    let stale: Vec<FrameKind> = match i.battery {
        Some(b) => b.stale_required(i.now, max_age),
        None => FrameKind::REQUIRED.to_vec(),
    };
    if stale.is_empty() {
        return GateVerdict::new(Gate::Communicating, Outcome::Pass, "all fresh", limit);
    }
    let names: Vec<String> = stale
        .iter()
        .map(|k| format!("{:#05X}", k.raw_id()))
        .collect();
    let measured = format!("stale or missing: {}", names.join(", "));
    match i.silence {
        Silence::Restarting { since, until } if i.now < until => GateVerdict::new(
            Gate::Communicating,
            Outcome::Suspended {
                reason: format!(
                    "the battery is restarting: silence is expected for up to {:.1} s, \
                     {:.1} s have passed",
                    until.saturating_duration_since(since).as_secs_f64(),
                    i.now.saturating_duration_since(since).as_secs_f64()
                ),
            },
            measured,
            limit,
        ),
        _ => GateVerdict::new(Gate::Communicating, Outcome::Fail, measured, limit),
    }
}

fn alarms(battery: Option<&BatteryState>) -> GateVerdict {
    let limit = "no alarm in 0x35A, no protection flag in 0x359";
    let Some(battery) = battery else {
        return GateVerdict::new(
            Gate::NoActiveAlarm,
            Outcome::Fail,
            "no BMS-Can frame received",
            limit,
        );
    };
    if battery.alarms().is_none() {
        return GateVerdict::new(
            Gate::NoActiveAlarm,
            Outcome::Fail,
            "not reported (no 0x35A received)",
            limit,
        );
    }
    let mut active: Vec<String> = battery
        .active_alarms()
        .iter()
        .map(|a| format!("{a} alarm"))
        .collect();
    if let Some(p) = battery.protection() {
        active.extend(
            p.protection
                .active()
                .iter()
                .map(|f| format!("{f} protection")),
        );
    }
    if let Some(invalid) = battery.alarms().map(|a| a.invalid(Severity::Alarm))
        && !invalid.is_empty()
    {
        active.extend(
            invalid
                .iter()
                .map(|f| format!("{f} alarm field invalid (11)")),
        );
    }
    if active.is_empty() {
        GateVerdict::new(Gate::NoActiveAlarm, Outcome::Pass, "none", limit)
    } else {
        GateVerdict::new(Gate::NoActiveAlarm, Outcome::Fail, active.join(", "), limit)
    }
}

fn temperature(i: &GateInputs<'_>, config: &GatesConfig) -> GateVerdict {
    let range = config.temperature_celsius;
    let limit = format!("{} °C to {} °C", range.min, range.max);
    let Some(m) = i.battery.and_then(|b| b.measurements()) else {
        return GateVerdict::new(
            Gate::Temperature,
            Outcome::Fail,
            "not reported (no 0x356 received)",
            limit,
        );
    };
    let celsius = m.temperature.celsius();
    GateVerdict::new(
        Gate::Temperature,
        pass_if(celsius >= range.min && celsius <= range.max),
        m.temperature.to_string(),
        limit,
    )
}

fn show(v: Option<&DecodedVersion>) -> String {
    match v {
        Some(v) => format!("{} [{}]", v.display, hex::encode_upper(&v.raw)),
        None => "unknown".to_owned(),
    }
}

fn version_choice(i: &GateInputs<'_>) -> GateVerdict {
    let v = i.versions;
    let limit = match v.policy {
        VersionPolicy::NewerOnly => format!("newer than {}", show(v.installed)),
        VersionPolicy::AllowReinstallOrDowngrade => {
            "any version (the installer chose to allow a reinstall or downgrade)".to_owned()
        }
    };
    let Some(target) = v.target else {
        let outcome = if i.moment == Moment::Request {
            Outcome::Deferred {
                reason: "the package's version is known once it is on the GX and inspected".into(),
            }
        } else {
            Outcome::Fail
        };
        return GateVerdict::new(Gate::VersionChoice, outcome, "unknown", limit);
    };
    let outcome = match (v.policy, v.installed) {
        (VersionPolicy::AllowReinstallOrDowngrade, _) => Outcome::Pass,
        (VersionPolicy::NewerOnly, Some(installed)) => match target.order_against(installed) {
            VersionOrder::Newer => Outcome::Pass,
            VersionOrder::Same | VersionOrder::Older => Outcome::Fail,
            // 0x35F shows the version less precisely than the package (no build): the
            // battery's full version, read by the plugin's session before it writes
            // anything, decides (the stage-2 driver stops the session if it is not older).
            VersionOrder::SameAsFarAsShown => Outcome::Deferred {
                reason: format!(
                    "the battery shows {} and the package is {}: the version the battery's \
                     plugin reads from it decides, before anything is written",
                    show(Some(installed)),
                    show(Some(target))
                ),
            },
        },
        (VersionPolicy::NewerOnly, None) => Outcome::Fail,
    };
    GateVerdict::new(Gate::VersionChoice, outcome, show(Some(target)), limit)
}

fn approved(
    gate: Gate,
    version: Option<&DecodedVersion>,
    i: &GateInputs<'_>,
    what: &str,
) -> GateVerdict {
    let limit = match i.versions.approved {
        Some(r) => format!("v{} to v{} (allowlist)", r.from, r.to),
        None => "an approved range (none found in the allowlist)".to_owned(),
    };
    match (version, i.versions.approved) {
        (None, _) if gate == Gate::TargetApproved && i.moment == Moment::Request => {
            GateVerdict::new(
                gate,
                Outcome::Deferred {
                    reason: format!("{what} is known once the package is on the GX and inspected"),
                },
                "unknown",
                limit,
            )
        }
        (Some(v), Some(range)) => GateVerdict::new(
            gate,
            pass_if(range.contains(&v.comparable)),
            show(Some(v)),
            limit,
        ),
        (v, _) => GateVerdict::new(gate, Outcome::Fail, show(v), limit),
    }
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
