//! From a staged package to a running stage 2: the product check, the gates right before
//! the transfer, and the session on the battery's bus.

use super::Shared;
use super::battery::{self, EnginePlugin};
use super::bus::{Active, Bus, BusCore, GateCall, JobGates, evaluate_gates};
use super::jobs::JobRequest;
use crate::driver::{NewerCheck, Stage2};
use crate::errors::codes;
use crate::gates::{GateReport, Moment, Silence};
use crate::job::{JobEvent, JobFailure, JobId, JobRecord};
use crate::plugin::{
    DecodedVersion, FilePackage, PackageSummary, PluginInspector, SessionStart, VersionOrder,
    plugin_battery,
};
use crate::staging::{StagedPackage, StagingError, Upload};
use crate::unix_time::UnixMillis;
use crate::vrm::{EngineRefusal, VersionPolicy};
use bmsfw_plugin_api::SessionOptions;
use bmsfw_plugin_api::abi_stable::std_types::{ROption, RVec};
use std::sync::Arc;

/// A package that passed stage 1, with its plugin's complete answer.
pub(crate) struct Prepared {
    pub staged: StagedPackage,
    pub summary: PackageSummary,
    pub plugin: usize,
}

impl Prepared {
    pub(crate) fn target(&self) -> &DecodedVersion {
        &self.summary.version
    }
}

/// Ends stage 1 of `upload` with the job's plugin: digest, inspection, staging.
pub(crate) fn finish_stage1(
    shared: &Shared,
    plugin: usize,
    upload: Upload,
) -> Result<Prepared, StagingError> {
    let p: &EnginePlugin = &shared.plugins[plugin];
    let inspector = PluginInspector::new(p.plugin.clone());
    let staged = upload.finish(&inspector)?;
    let summary = inspector
        .accepted_summary()
        .ok_or_else(|| StagingError::Rejected {
            code: codes::STAGING_STORAGE_ERROR,
            message: "the plugin's answer about the package was lost".into(),
        })?;
    Ok(Prepared {
        staged,
        summary,
        plugin,
    })
}

/// Whether the package is meant for the battery on `core`'s bus (761 otherwise).
pub(crate) fn check_product(core: &BusCore, summary: &PackageSummary) -> Result<(), EngineRefusal> {
    let heard = core
        .monitor
        .battery()
        .map(|b| b.identity())
        .unwrap_or_default();
    let manufacturer = heard.manufacturer.unwrap_or_default();
    let code = heard.product_info.map(|p| p.product_code());
    let fits = summary.targets.is_empty()
        || summary.targets.iter().any(|t| {
            t.manufacturer == manufacturer && (t.product_code.is_none() || t.product_code == code)
        });
    if fits {
        return Ok(());
    }
    let targets: Vec<String> = summary
        .targets
        .iter()
        .map(|t| match t.product_code {
            Some(c) => format!("{} {c:#06x}", t.manufacturer),
            None => t.manufacturer.clone(),
        })
        .collect();
    Err(EngineRefusal::new(
        codes::PACKAGE_WRONG_PRODUCT,
        format!(
            "the package is for {}, the battery is {manufacturer} {}",
            targets.join(", "),
            code.map_or("without product code".to_owned(), |c| format!("{c:#06x}"))
        ),
    ))
}

/// The job's gates with the package known.
pub(crate) fn job_gates(
    shared: &Shared,
    core: &BusCore,
    plugin: usize,
    request: &JobRequest,
    target: &DecodedVersion,
    installed_frozen: Option<DecodedVersion>,
) -> JobGates {
    let p = &shared.plugins[plugin];
    let installed = installed_frozen.or_else(|| {
        core.monitor
            .battery()
            .and_then(|b| battery::installed_version(p.plugin.as_ref(), b))
    });
    JobGates::new(
        request,
        installed,
        Some(target.clone()),
        p.entry.firmware.clone(),
    )
}

/// The gates right before stage 2 on `bus` for `job`.
pub(crate) fn gates_before(
    shared: &Shared,
    bus: &Bus,
    core: &BusCore,
    job: JobId,
    gates: &JobGates,
) -> GateReport {
    let other = core.active.as_ref().map(|a| a.job).filter(|j| *j != job);
    let report = evaluate_gates(
        shared,
        bus,
        core,
        GateCall {
            moment: Moment::BeforeTransfer,
            now: shared.now(),
            gates,
            other_update: other,
            silence: Silence::NotExpected,
        },
    );
    for v in &report.verdicts {
        tracing::info!(%job, verdict = %v, "gate before the transfer");
    }
    report
}

/// Starts the session of `job` on `bus` after the gates passed once more; `resume` is a
/// journaled checkpoint.
///
/// The bus's lock is not held while the plugin starts its session (a plugin host may
/// take up to its start deadline): the gates are checked before, and again after, under
/// the lock.
pub(crate) fn start_session(
    shared: &Shared,
    bus: &Bus,
    job: &JobRecord,
    prepared: &Prepared,
    gates: JobGates,
    resume: Option<Vec<u8>>,
) -> Result<(), EngineRefusal> {
    let heard = {
        let core = bus.lock();
        let report = gates_before(shared, bus, &core, job.id(), &gates);
        if let Some(red) = report.first_failure() {
            return Err(EngineRefusal::new(red.code(), report.refusal_message()));
        }
        core.monitor
            .battery()
            .map(|b| b.identity())
            .unwrap_or_default()
    };
    let p = &shared.plugins[prepared.plugin];
    let package = FilePackage::open(prepared.staged.path()).map_err(|e| {
        EngineRefusal::new(
            codes::STAGING_STORAGE_ERROR,
            format!(
                "cannot open the staged package {}: {e}",
                prepared.staged.path().display()
            ),
        )
    })?;
    let session = p
        .plugin
        .start_session(SessionStart {
            battery: plugin_battery(&heard),
            package: Arc::new(package),
            options: SessionOptions {
                node_id: ROption::RNone,
                modules: RVec::from(job.targets().ids().to_vec()),
            },
            resume,
        })
        .map_err(|f| EngineRefusal::new(f.code.get(), f.message))?;
    let mut core = bus.lock();
    let report = gates_before(shared, bus, &core, job.id(), &gates);
    if let Some(red) = report.first_failure() {
        // The session never sent a frame; dropping it ends its host.
        return Err(EngineRefusal::new(red.code(), report.refusal_message()));
    }
    if let Some(active) = &core.active {
        return Err(EngineRefusal::new(
            codes::GATE_BUS_BUSY,
            format!("job {} started on {} meanwhile", active.job, bus.name),
        ));
    }
    let now = shared.now();
    let stage2 = Stage2::new(
        session,
        p.plugin.clone(),
        prepared.target().clone(),
        job.targets().clone(),
        prepared.summary.image_size,
        bus.bitrate,
        shared.config.stage2,
        now,
    );
    // 0x35F may show the installed version less precisely than the package (no build):
    // then the plugin's reading of the battery decides "newer" (the gate deferred it).
    let newer = match (&gates.policy, &gates.installed) {
        (VersionPolicy::NewerOnly, Some(installed))
            if prepared.target().order_against(installed) == VersionOrder::SameAsFarAsShown =>
        {
            NewerCheck::AgainstRunning
        }
        _ => NewerCheck::NotNeeded,
    };
    let stage2 = stage2.with_newer_check(newer);
    tracing::info!(
        job = %job.id(),
        bus = %bus.name,
        targets = %job.targets(),
        limits = ?stage2.limits(),
        "stage 2 started"
    );
    core.active = Some(Active::new(job.id(), stage2, gates));
    bus.wake.notify_one();
    Ok(())
}

/// Fails `job` with `refusal`, keeping the battery's state now (blocking).
pub(crate) fn fail_job(shared: &Shared, bus: Option<&Bus>, job: JobId, refusal: &EngineRefusal) {
    let battery_state = bus.and_then(|b| b.lock().monitor.battery().map(battery::snapshot));
    let failure = JobFailure {
        code: refusal.code,
        message: refusal.message.clone(),
        at: UnixMillis::now(),
        battery_state,
    };
    if let Err(e) = shared.jobs.apply(job, JobEvent::Failed(failure)) {
        tracing::error!(%job, error = %e, "could not fail the job");
    }
}
