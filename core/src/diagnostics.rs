//! The diagnostics bundle of the manual's section 10.2: what support needs about a failed
//! (or any) update, as one JSON document.

use crate::errors;
use crate::job::{BatteryIdentity, JobId, JobRecord, JobState, VersionInfo};
use crate::staging::Sha256Digest;
use crate::unix_time::UnixMillis;
use serde::{Deserialize, Serialize};

/// The battery's state as telemetry last saw it, kept with a failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatterySnapshot {
    /// When telemetry captured these values.
    pub captured_at: UnixMillis,
    /// State of charge in percent (0x355), when known.
    pub soc_percent: Option<f32>,
    /// Pack voltage in volts (0x356), when known.
    pub voltage_v: Option<f32>,
    /// Battery temperature in degrees Celsius (0x356), when known.
    pub temperature_c: Option<f32>,
    /// Names of the alarms active at the time (0x35A / 0x359); empty when none.
    pub active_alarms: Vec<String>,
}

/// Facts about the site and the GX that the journal does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteInfo {
    /// The VRM installation id (portal id).
    pub vrm_installation_id: String,
    /// The GX device's firmware version.
    pub gx_firmware_version: String,
}

/// The error part of a bundle: code, names and the complete message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagnosticError {
    /// The stable code.
    pub code: u32,
    /// Its stable name (`UNKNOWN` outside the catalogue).
    pub name: String,
    /// The title the portal shows.
    pub title: String,
    /// The complete error message.
    pub message: String,
    /// The catalogue's resolution steps.
    pub resolution: Vec<String>,
}

/// The package a job installs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagnosticPackage {
    /// The installer's file name.
    pub file_name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the file.
    pub sha256: Sha256Digest,
}

/// Every item of the manual's section 10.2, plus the job it describes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiagnosticsBundle {
    /// When the bundle was made.
    pub generated_at: UnixMillis,
    /// VRM installation id.
    pub vrm_installation_id: String,
    /// GX device firmware version.
    pub gx_firmware_version: String,
    /// The job.
    pub job_id: JobId,
    /// The job's state.
    pub job_state: JobState,
    /// When the update was initiated.
    pub initiated_at: UnixMillis,
    /// Battery manufacturer, model and serial number.
    pub battery: BatteryIdentity,
    /// The firmware the battery runs now, raw and decoded.
    pub current_firmware: Option<VersionInfo>,
    /// The firmware the update installs, raw and decoded.
    pub target_firmware: Option<VersionInfo>,
    /// The package.
    pub package: DiagnosticPackage,
    /// Complete error message and code, for a failed job.
    pub error: Option<DiagnosticError>,
    /// Battery state (SOC, voltage, temperature, alarms) at the time of failure.
    pub battery_state_at_failure: Option<BatterySnapshot>,
}

impl DiagnosticsBundle {
    /// The bundle of `job`. `current_firmware` is the version the battery reports now, when
    /// telemetry has it; otherwise the job's last known version is used (after the update
    /// for a completed job, before it otherwise).
    pub fn for_job(
        job: &JobRecord,
        site: &SiteInfo,
        current_firmware: Option<VersionInfo>,
        now: UnixMillis,
    ) -> DiagnosticsBundle {
        let error = job.failure().map(|f| {
            let info = errors::lookup(f.code);
            DiagnosticError {
                code: f.code,
                name: errors::name_of(f.code).to_owned(),
                title: info.map_or_else(|| format!("Error {}", f.code), |i| i.title.to_owned()),
                message: f.message.clone(),
                resolution: info
                    .map(|i| i.resolution.iter().map(|s| (*s).to_owned()).collect())
                    .unwrap_or_default(),
            }
        });
        let last_known = job.version_after().or(job.version_before()).cloned();
        DiagnosticsBundle {
            generated_at: now,
            vrm_installation_id: site.vrm_installation_id.clone(),
            gx_firmware_version: site.gx_firmware_version.clone(),
            job_id: job.id(),
            job_state: job.state(),
            initiated_at: job.created_at(),
            battery: job.battery().clone(),
            current_firmware: current_firmware.or(last_known),
            target_firmware: job.version_target().cloned(),
            package: DiagnosticPackage {
                file_name: job.package().file_name().to_owned(),
                size: job.package().size(),
                sha256: job.package().sha256(),
            },
            error,
            battery_state_at_failure: job.failure().and_then(|f| f.battery_state.clone()),
        }
    }

    /// Pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // Plain data with string keys always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobEvent, JobFailure};
    use crate::staging::UploadAnnouncement;

    fn failed_job() -> JobRecord {
        let mut job = JobRecord::new(
            JobId(7),
            BatteryIdentity {
                manufacturer: "Aurora".into(),
                model: "AX-5".into(),
                serial: "SN-0042".into(),
            },
            UploadAnnouncement::new("ax5-2.1.bin".into(), 4096, 1024, Sha256Digest([9; 32]))
                .unwrap(),
            Some(VersionInfo {
                raw: vec![0x04, 0x0F],
                display: "v4.15".into(),
            }),
            UnixMillis(1_000),
        );
        job.apply(
            JobEvent::TransferStarted {
                target: VersionInfo {
                    raw: vec![0x05, 0x00],
                    display: "v5.00".into(),
                },
            },
            UnixMillis(2_000),
        )
        .unwrap();
        job.apply(
            JobEvent::Failed(JobFailure {
                code: 780,
                message: "BMS reported CRC mismatch of image".into(),
                at: UnixMillis(3_000),
                battery_state: Some(BatterySnapshot {
                    captured_at: UnixMillis(2_900),
                    soc_percent: Some(71.0),
                    voltage_v: Some(52.3),
                    temperature_c: Some(24.5),
                    active_alarms: vec!["cell imbalance".into()],
                }),
            }),
            UnixMillis(3_000),
        )
        .unwrap();
        job
    }

    #[test]
    fn bundle_carries_every_item_of_section_10_2() {
        let site = SiteInfo {
            vrm_installation_id: "c0619ab1e2f3".into(),
            gx_firmware_version: "v3.60".into(),
        };
        let bundle = DiagnosticsBundle::for_job(&failed_job(), &site, None, UnixMillis(4_000));
        let json: serde_json::Value = serde_json::from_str(&bundle.to_json()).unwrap();
        assert_eq!(json["vrm_installation_id"], "c0619ab1e2f3");
        assert_eq!(json["battery"]["manufacturer"], "Aurora");
        assert_eq!(json["battery"]["model"], "AX-5");
        assert_eq!(json["battery"]["serial"], "SN-0042");
        assert_eq!(json["current_firmware"]["display"], "v4.15");
        assert_eq!(json["current_firmware"]["raw"], "040f");
        assert_eq!(json["target_firmware"]["display"], "v5.00");
        assert_eq!(json["error"]["code"], 780);
        assert_eq!(json["error"]["title"], "Verification failed");
        assert_eq!(
            json["error"]["message"],
            "BMS reported CRC mismatch of image"
        );
        assert_eq!(
            json["error"]["resolution"][0],
            "If using uploaded firmware file, obtain a new copy from the manufacturer"
        );
        assert_eq!(json["gx_firmware_version"], "v3.60");
        let state = &json["battery_state_at_failure"];
        assert_eq!(state["soc_percent"], 71.0);
        assert_eq!(state["voltage_v"].as_f64().unwrap() as f32, 52.3);
        assert_eq!(state["temperature_c"], 24.5);
        assert_eq!(state["active_alarms"][0], "cell imbalance");
        let back: DiagnosticsBundle = serde_json::from_value(json).unwrap();
        assert_eq!(back, bundle);
    }

    #[test]
    fn reported_current_version_wins_over_the_journal() {
        let site = SiteInfo {
            vrm_installation_id: "x".into(),
            gx_firmware_version: "v3.60".into(),
        };
        let now = VersionInfo {
            raw: vec![0x05, 0x00],
            display: "v5.00".into(),
        };
        let bundle =
            DiagnosticsBundle::for_job(&failed_job(), &site, Some(now.clone()), UnixMillis(1));
        assert_eq!(bundle.current_firmware, Some(now));
    }
}
