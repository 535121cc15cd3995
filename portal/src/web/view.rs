//! What the browser receives: the installations a user sees, each battery with its latest
//! update merged from the GX's values and the portal's own follow-up of the command.

use crate::auth::AccessLevel;
use crate::model::{Battery, Installation, PublishedUpdate};
use crate::presence::{OfflineCause, Presence};
use crate::upload::{UploadPhase, UploadStats};
use crate::vrm::{UpdateView, VrmSnapshot};
use bmsfw_vrm_wire::{JobState, ModuleState, WireVersion};
use serde::Serialize;

/// The file an installer uploaded for a battery and has not sent yet.
#[derive(Debug, Clone, Serialize)]
pub struct PendingFile {
    /// The file name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: String,
    /// The GX's pre-flight check of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckJson>,
}

impl PendingFile {
    /// The file as the browser shows it, its check not known yet.
    pub fn of(file: &crate::vrm::StoredFile) -> PendingFile {
        PendingFile {
            name: file.name.as_str().to_owned(),
            size: file.data.len() as u64,
            sha256: file.sha256.to_string(),
            check: None,
        }
    }
}

/// A failure in the installer's words, from the catalogue (`core/src/errors.rs`, the
/// source of `docs/errors.md` too): title, what to do first, the other steps, and the
/// code and the GX's own message for "Details".
#[derive(Debug, Clone, Serialize)]
pub struct ErrorJson {
    /// The stable code, when there is one.
    pub code: Option<u32>,
    /// Its stable name.
    pub name: Option<&'static str>,
    /// The catalogue's title.
    pub title: String,
    /// What it means.
    pub meaning: Option<&'static str>,
    /// What to do first.
    pub action: Option<&'static str>,
    /// Every step, in order.
    pub steps: Vec<&'static str>,
    /// The complete message (the GX's or the portal's).
    pub message: Option<String>,
    /// What the page offers: `retry`, `choose_file` or `contact_manufacturer`.
    pub remedy: &'static str,
}

/// The catalogue's words for `code`, with `message` as the details.
pub fn error_json(code: Option<u32>, message: Option<&str>) -> ErrorJson {
    use bmsfw_core::errors::{lookup, remedy};
    let info = code.and_then(lookup);
    ErrorJson {
        code,
        name: info.map(|i| i.name),
        title: info.map_or_else(|| "Update failed".to_owned(), |i| i.title.to_owned()),
        meaning: info.map(|i| i.meaning),
        action: info.and_then(|i| i.resolution.first().copied()),
        steps: info.map(|i| i.resolution.to_vec()).unwrap_or_default(),
        message: message.map(str::to_owned),
        remedy: code.map_or("retry", |c| remedy(c).name()),
    }
}

/// Where the pre-flight check of a pending file stands, as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CheckJson {
    /// `sending`, `checking`, `passed`, `refused` or `unavailable`.
    pub phase: crate::preflight::PreflightPhase,
    /// Upload progress to the GX.
    pub percent: u8,
    /// The GX's report.
    pub report: Option<bmsfw_vrm_wire::PreflightReport>,
    /// A refusal in plain words.
    pub error: Option<ErrorJson>,
    /// Why no check runs, when none does.
    pub note: Option<&'static str>,
}

/// The check of `view`, for the page.
pub fn check_json(view: Option<&crate::preflight::PreflightView>) -> CheckJson {
    use crate::preflight::PreflightPhase;
    match view {
        Some(v) => CheckJson {
            phase: v.phase,
            percent: v.percent,
            report: v.report.clone(),
            error: (v.phase == PreflightPhase::Refused)
                .then(|| error_json(v.error_code, v.error.as_deref())),
            note: (v.phase == PreflightPhase::Unavailable)
                .then_some("This GX device checks the file when you press Update."),
        },
        None => CheckJson {
            phase: PreflightPhase::Unavailable,
            percent: 0,
            report: None,
            error: None,
            note: Some(
                "The portal restarted since the file was uploaded; the GX device checks it when you press Update.",
            ),
        },
    }
}

/// One module behind a battery's BMS in its latest update.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleJson {
    /// The module's number.
    pub index: u16,
    /// Where it is.
    pub state: Option<ModuleState>,
    /// The state's label.
    pub state_label: Option<&'static str>,
    /// The firmware it runs.
    pub version: Option<WireVersion>,
}

fn modules(p: &PublishedUpdate) -> Vec<ModuleJson> {
    p.modules
        .iter()
        .map(|(&index, m)| ModuleJson {
            index,
            state: m.state,
            state_label: m.state.map(ModuleState::label),
            version: m.version.clone(),
        })
        .collect()
}

/// What a running update shows while its GX is offline.
pub const STATUS_UNKNOWN: &str = "Status unknown (GX device offline)";

/// A battery's latest update as the browser shows it.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateJson {
    /// The command id, for an update started from this portal.
    pub commandid: Option<String>,
    /// The job on the GX.
    pub job: Option<u64>,
    /// The state.
    pub state: Option<JobState>,
    /// The state's label, as the manual names it.
    pub state_label: Option<&'static str>,
    /// Progress of the state.
    pub percent: Option<u8>,
    /// Every state passed, in order (updates started here).
    pub states_seen: Vec<JobState>,
    /// The failure's code.
    pub error_code: Option<u32>,
    /// The failure's message.
    pub error: Option<String>,
    /// The file.
    pub file_name: Option<String>,
    /// When it was initiated (ms since the epoch).
    pub started_at: Option<u64>,
    /// Firmware before.
    pub version_before: Option<WireVersion>,
    /// Firmware the package installs.
    pub version_target: Option<WireVersion>,
    /// Firmware after.
    pub version_after: Option<WireVersion>,
    /// Whether it ended.
    pub ended: bool,
    /// Whether the GX's last reply of the update has arrived. The GX's published values
    /// can show the end first (after a link cut); until this is true, states the GX queued
    /// while the link was down may still arrive and fill in `states_seen`.
    pub caught_up: bool,
    /// The upload's phase (updates started here).
    pub upload_phase: Option<UploadPhase>,
    /// The upload's counters (updates started here).
    pub upload: Option<UploadStats>,
    /// The modules behind the BMS, for packs updated module by module (empty otherwise).
    pub modules: Vec<ModuleJson>,
    /// True while the update has not ended and its GX is offline: `state` is the last
    /// one reported, and nobody knows where it stands now.
    pub status_unknown: bool,
    /// [`STATUS_UNKNOWN`] when `status_unknown`.
    pub status_note: Option<&'static str>,
    /// The failure in plain words.
    pub error_info: Option<ErrorJson>,
    /// The pre-flight's estimate of the update's duration, in seconds.
    pub estimate_seconds: Option<u64>,
    /// What the battery's nodes or modules are called (`node`, `module`), from the
    /// pre-flight of the file.
    pub unit_name: Option<String>,
}

/// One battery as the browser shows it.
#[derive(Debug, Clone, Serialize)]
pub struct BatteryJson {
    /// Everything the GX publishes about it.
    #[serde(flatten)]
    pub battery: Battery,
    /// True while its GX is offline: the values are the last ones the GX sent (at the
    /// installation's `last_seen`).
    pub stale: bool,
    /// Its latest update.
    pub latest_update: Option<UpdateJson>,
    /// The file this user uploaded for it, waiting for Update.
    pub pending_file: Option<PendingFile>,
    /// Whether this user may start an update of it now.
    pub can_update: bool,
    /// Why not, when not.
    pub update_blocked: Option<String>,
}

/// One installation as the browser shows it.
#[derive(Debug, Clone, Serialize)]
pub struct InstallationJson {
    /// The GX's portal id.
    pub portal_id: String,
    /// The installation's name.
    pub name: String,
    /// `/Settings/Network/VrmPortal`.
    pub vrm_portal: Option<u8>,
    /// Its label.
    pub vrm_portal_label: &'static str,
    /// The GX's firmware.
    pub gx_firmware: Option<String>,
    /// Last contact (ms since the epoch).
    pub last_seen: Option<u64>,
    /// Whether the GX is online, offline or not heard from yet.
    pub presence: Presence,
    /// Since when it is offline (ms since the epoch), when known.
    pub offline_since: Option<u64>,
    /// Why it is offline: its last will arrived, or it was silent for too long.
    pub offline_cause: Option<OfflineCause>,
    /// "GX device offline since <time>" (UTC), "GX device online", ...
    pub presence_label: String,
    /// The batteries.
    pub batteries: Vec<BatteryJson>,
}

/// The user as the browser shows it.
#[derive(Debug, Clone, Serialize)]
pub struct UserJson {
    /// The login name.
    pub name: String,
    /// The access level.
    pub access: AccessLevel,
    /// Its label.
    pub access_label: &'static str,
}

/// Everything the browser needs to draw the page.
#[derive(Debug, Clone, Serialize)]
pub struct StateJson {
    /// Who is logged in.
    pub user: UserJson,
    /// Whether the portal reaches the broker.
    pub connected: bool,
    /// The installations the user sees.
    pub installations: Vec<InstallationJson>,
}

fn vrm_label(v: Option<u8>) -> &'static str {
    match v {
        Some(0) => "Off",
        Some(1) => "Read-only",
        Some(2) => "Full",
        _ => "Unknown",
    }
}

fn from_tracker(t: &UpdateView, b: &Battery) -> UpdateJson {
    // The GX's own values win when they are further along for the same job (a reply
    // that was lost, or a portal restart).
    let published = &b.update;
    let same_job = published.job.is_some() && published.job == t.job;
    let (state, percent) = match (t.state, published.state) {
        (Some(mine), Some(theirs)) if same_job && theirs > mine => {
            (Some(theirs), published.percent)
        }
        (None, Some(theirs)) if same_job => (Some(theirs), published.percent),
        (mine, _) => (mine, Some(t.percent)),
    };
    let mut states_seen = t.states_seen.clone();
    if let Some(s) = state
        && states_seen.last() != Some(&s)
    {
        states_seen.push(s);
    }
    let failed = state == Some(JobState::Failed);
    UpdateJson {
        commandid: Some(t.commandid.to_string()),
        job: t.job,
        state,
        state_label: state.map(JobState::label),
        percent,
        states_seen,
        error_code: t
            .error_code
            .or(if same_job { published.error_code } else { None }),
        error: t.error.clone().or(if same_job && failed {
            published.error.clone()
        } else {
            None
        }),
        file_name: Some(t.file_name.clone()),
        started_at: Some(t.requested_at),
        version_before: t.version_before.clone(),
        version_target: t.version_target.clone(),
        version_after: t.version_after.clone().or(if same_job {
            published.version_after.clone()
        } else {
            None
        }),
        ended: t.finished
            || state.is_some_and(JobState::is_terminal)
            || t.upload_phase == UploadPhase::Failed,
        caught_up: t.finished || t.upload_phase == UploadPhase::Failed,
        upload_phase: Some(t.upload_phase),
        upload: Some(t.upload.clone()),
        modules: if same_job {
            modules(published)
        } else {
            Vec::new()
        },
        status_unknown: false,
        status_note: None,
        error_info: None,
        estimate_seconds: None,
        unit_name: None,
    }
}

fn from_published(b: &Battery) -> Option<UpdateJson> {
    let p = &b.update;
    p.job?;
    Some(UpdateJson {
        commandid: None,
        job: p.job,
        state: p.state,
        state_label: p.state.map(JobState::label),
        percent: p.percent,
        states_seen: p.state.into_iter().collect(),
        error_code: p.error_code,
        error: p.error.clone(),
        file_name: p.file_name.clone(),
        started_at: p.started_at,
        version_before: p.version_before.clone(),
        version_target: p.version_target.clone(),
        version_after: p.version_after.clone(),
        ended: p.state.is_some_and(JobState::is_terminal),
        caught_up: p.state.is_some_and(JobState::is_terminal),
        upload_phase: None,
        upload: None,
        modules: modules(p),
        status_unknown: false,
        status_note: None,
        error_info: None,
        estimate_seconds: None,
        unit_name: None,
    })
}

/// The latest update of battery `b` of `inst`.
pub fn latest_update(snap: &VrmSnapshot, inst: &Installation, b: &Battery) -> Option<UpdateJson> {
    let tracker = snap
        .updates
        .iter()
        .rev()
        .find(|t| t.portal_id == inst.portal_id && t.instance == b.instance);
    let mut latest = match tracker {
        // A newer job published by the GX (started elsewhere) wins over an older one here.
        Some(t) if !(b.update.job.is_some() && t.job.is_some() && b.update.job > t.job) => {
            Some(from_tracker(t, b))
        }
        _ => from_published(b),
    };
    if let Some(u) = &mut latest
        && !u.ended
        && inst.presence.is_offline()
    {
        u.status_unknown = true;
        u.status_note = Some(STATUS_UNKNOWN);
    }
    if let Some(u) = &mut latest {
        if u.state == Some(JobState::Failed) || u.upload_phase == Some(UploadPhase::Failed) {
            u.error_info = Some(error_json(u.error_code, u.error.as_deref()));
        }
        // The check of the battery's latest file says how long it should take, and what
        // its nodes or modules are called.
        let report = snap
            .preflights
            .iter()
            .rev()
            .filter(|p| p.portal_id == inst.portal_id && p.instance == b.instance)
            .find_map(|p| p.report.as_ref());
        u.unit_name = report.and_then(|r| r.unit_name.clone());
        u.estimate_seconds = report
            .filter(|r| r.version_new.is_some() && r.version_new == u.version_target)
            .and_then(|r| r.estimate_seconds);
    }
    latest
}

/// Whether `access` may start an update of `b` now, and why not.
pub fn update_blocked(
    access: AccessLevel,
    inst: &Installation,
    b: &Battery,
    latest: Option<&UpdateJson>,
) -> Option<String> {
    if access != AccessLevel::FullControl {
        return Some("Your access level is Monitor only.".into());
    }
    if inst.presence.is_offline() {
        return Some(format!(
            "{}: remote updates need the GX device online.",
            inst.presence.label()
        ));
    }
    if !inst.allows_updates() {
        return Some(format!(
            "The GX device's VRM Portal access is {}; remote updates need Full.",
            vrm_label(inst.vrm_portal)
        ));
    }
    if b.eligible != Some(true) {
        return Some(
            b.eligibility_reason
                .clone()
                .unwrap_or_else(|| "This battery does not support remote updates.".into()),
        );
    }
    if latest.is_some_and(|u| !u.ended) {
        return Some("An update of this battery is running.".into());
    }
    None
}

/// The installation's header for the browser (batteries filled by the caller).
pub fn installation_json(inst: &Installation) -> InstallationJson {
    InstallationJson {
        portal_id: inst.portal_id.to_string(),
        name: inst.name.clone(),
        vrm_portal: inst.vrm_portal,
        vrm_portal_label: vrm_label(inst.vrm_portal),
        gx_firmware: inst.gx_firmware.clone(),
        last_seen: inst.last_seen,
        presence: inst.presence.state,
        offline_since: inst.presence.offline_since,
        offline_cause: inst.presence.offline_cause,
        presence_label: inst.presence.label(),
        batteries: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PublishedModule;
    use bmsfw_vrm_wire::PortalId;

    #[test]
    fn the_latest_update_of_a_pack_lists_its_modules_in_order() {
        let mut inst = Installation::new(PortalId::new("gx1").unwrap(), "Site");
        let mut b = Battery {
            instance: 512,
            ..Battery::default()
        };
        b.update.job = Some(7);
        b.update.state = Some(JobState::Failed);
        b.update.module_count = Some(2);
        b.update.modules.insert(
            2,
            PublishedModule {
                state: Some(ModuleState::Failed),
                version: None,
            },
        );
        b.update.modules.insert(
            1,
            PublishedModule {
                state: Some(ModuleState::Done),
                version: Some(WireVersion {
                    raw: "020401".into(),
                    display: "v2.04 (build 01)".into(),
                }),
            },
        );
        inst.batteries.insert(512, b.clone());
        let snap = VrmSnapshot {
            connected: true,
            ..VrmSnapshot::default()
        };
        let u = latest_update(&snap, &inst, &b).unwrap();
        let shown: Vec<(u16, Option<&str>, Option<&str>)> = u
            .modules
            .iter()
            .map(|m| {
                (
                    m.index,
                    m.state_label,
                    m.version.as_ref().map(|v| v.display.as_str()),
                )
            })
            .collect();
        assert_eq!(
            shown,
            vec![
                (1, Some("Updated"), Some("v2.04 (build 01)")),
                (2, Some("Failed"), None)
            ]
        );
        let json = serde_json::to_value(&u).unwrap();
        assert_eq!(json["modules"][1]["state"], "failed");
        // A battery that updates as one shows no modules.
        b.update.modules.clear();
        assert!(latest_update(&snap, &inst, &b).unwrap().modules.is_empty());
    }

    #[test]
    fn while_the_gx_is_offline_a_running_update_is_of_unknown_status_and_none_starts() {
        use crate::presence::{GxPresence, OfflineCause, Presence};
        let mut inst = Installation::new(PortalId::new("gx1").unwrap(), "Site");
        inst.vrm_portal = Some(2);
        let mut b = Battery {
            instance: 512,
            eligible: Some(true),
            ..Battery::default()
        };
        b.update.job = Some(3);
        b.update.state = Some(JobState::Transferring);
        inst.batteries.insert(512, b.clone());
        let snap = VrmSnapshot::default();
        let u = latest_update(&snap, &inst, &b).unwrap();
        assert!(!u.status_unknown);
        assert_eq!(
            update_blocked(AccessLevel::FullControl, &inst, &b, Some(&u)).as_deref(),
            Some("An update of this battery is running.")
        );

        inst.presence = GxPresence {
            state: Presence::Offline,
            offline_since: Some(1_700_000_000_000),
            offline_cause: Some(OfflineCause::Will),
        };
        let u = latest_update(&snap, &inst, &b).unwrap();
        assert!(u.status_unknown);
        assert_eq!(u.status_note, Some(STATUS_UNKNOWN));
        assert_eq!(
            u.state,
            Some(JobState::Transferring),
            "the last state reported"
        );
        let blocked = update_blocked(AccessLevel::FullControl, &inst, &b, Some(&u)).unwrap();
        assert_eq!(
            blocked,
            "GX device offline since 2023-11-14T22:13:20Z: remote updates need the GX device \
             online."
        );
        let json = installation_json(&inst);
        assert_eq!(json.presence, Presence::Offline);
        assert_eq!(
            json.presence_label,
            "GX device offline since 2023-11-14T22:13:20Z"
        );

        // An update that ended is not in doubt.
        b.update.state = Some(JobState::Completed);
        let u = latest_update(&snap, &inst, &b).unwrap();
        assert!(!u.status_unknown);
        // Nor is anything while the GX is online.
        inst.presence = GxPresence {
            state: Presence::Online,
            ..GxPresence::default()
        };
        b.update.state = Some(JobState::Transferring);
        assert!(!latest_update(&snap, &inst, &b).unwrap().status_unknown);
        assert!(update_blocked(AccessLevel::FullControl, &inst, &b, None).is_none());
    }
}
