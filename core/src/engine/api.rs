//! The VRM link's boundary, implemented by the engine.

use super::battery::{self, PluginChoice};
use super::bus::{GateCall, JobGates, evaluate_gates};
use super::jobs::JobRequest;
use super::stage::{self, Prepared};
use super::{Engine, Shared};
use crate::diagnostics::DiagnosticsBundle;
use crate::errors::codes;
use crate::events::{EventRecord, History};
use crate::gates::{Moment, Silence};
use crate::job::{JobEvent, JobFailure, JobId, JobRecord, JobState, Percent};
use crate::staging::Sha256Digest;
use crate::staging::{StagingError, Upload};
use crate::unix_time::UnixMillis;
use crate::vrm::{
    BatteryView, ChunkReceipt, EngineRefusal, EngineUpdate, GxEngine, PreflightRequest,
    StagedReceipt, UpdateRequest, UploadStatus,
};
use async_trait::async_trait;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::broadcast;

/// How long a request waits for its battery (its serial number, its manufacturer, 0x35E,
/// its product information, 0x35F, and the frames the communication gate requires) when
/// the GX has not heard all of it yet: five periods of the slowest of these broadcasts.
/// Just after a restart of the GX, a pre-flight check, an update command sent again by
/// the portal, or a job whose upload had ended, arrives before them; deciding then would
/// refuse the battery as absent (713) or unsupported (748).
pub(crate) const IDENTITY_WAIT: Duration = Duration::from_secs(5);

/// Waits up to `limit` until a battery that `wanted` accepts (given its bus and its state)
/// has sent its manufacturer, its product information and each frame the communication
/// gate requires.
async fn until_identified(
    shared: &Arc<Shared>,
    limit: Duration,
    wanted: impl Fn(&super::Bus, &crate::telemetry::BatteryState) -> bool,
) {
    let until = tokio::time::Instant::now() + limit;
    loop {
        let heard = shared.buses.iter().any(|bus| {
            let core = bus.lock();
            core.monitor.battery().is_some_and(|b| {
                let identity = b.identity();
                identity.manufacturer.is_some()
                    && identity.product_info.is_some()
                    && crate::telemetry::FrameKind::REQUIRED
                        .iter()
                        .all(|k| b.last_seen(*k).is_some())
                    && wanted(bus, b)
            })
        });
        if heard || tokio::time::Instant::now() >= until {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits up to [`IDENTITY_WAIT`] until the battery with serial number `serial` is heard
/// whole.
async fn until_serial_heard(shared: &Arc<Shared>, serial: &str) {
    until_identified(shared, IDENTITY_WAIT, |bus, b| {
        battery::job_identity(b, &bus.name).serial == serial
    })
    .await;
}

fn staging_refusal(e: &StagingError) -> EngineRefusal {
    EngineRefusal::new(e.code(), e.to_string())
}

fn status_of(job: JobId, upload: &Upload) -> UploadStatus {
    UploadStatus {
        job,
        first_missing: upload.first_missing(),
        received_bytes: upload.received_bytes(),
        percent: upload.progress(),
    }
}

fn unknown_job(job: JobId) -> EngineRefusal {
    EngineRefusal::new(
        codes::UPDATE_NOT_FOUND,
        format!("there is no job {job} on this GX device"),
    )
}

/// Runs blocking engine work off the async threads.
async fn blocking<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&Shared) -> Result<T, EngineRefusal> + Send + 'static,
) -> Result<T, EngineRefusal> {
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || f(&shared))
        .await
        .unwrap_or_else(|e| {
            Err(EngineRefusal::new(
                codes::STAGING_STORAGE_ERROR,
                format!("the GX device could not complete the operation: {e}"),
            ))
        })
}

/// The upload slot of a job that is uploading, reopened after a GX restart.
fn upload_of(shared: &Shared, job: JobId) -> Result<Arc<Mutex<Option<Upload>>>, EngineRefusal> {
    let record = shared.jobs.get(job).ok_or_else(|| unknown_job(job))?;
    if record.state() != JobState::Uploading {
        return Err(EngineRefusal::new(
            codes::UPDATE_NOT_FOUND,
            format!("job {job} is {}, not uploading", record.state()),
        ));
    }
    let mut uploads = shared
        .uploads
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(slot) = uploads.get(&job)
        && slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    {
        return Ok(slot.clone());
    }
    let upload = shared
        .staging
        .begin(record.package())
        .map_err(|e| staging_refusal(&e))?;
    let slot = Arc::new(Mutex::new(Some(upload)));
    uploads.insert(job, slot.clone());
    Ok(slot)
}

fn request_update(shared: &Shared, req: UpdateRequest) -> Result<UploadStatus, EngineRefusal> {
    let now = shared.now();
    let found = shared.buses.iter().find_map(|bus| {
        let core = bus.lock();
        let state = core.monitor.battery()?;
        let identity = battery::job_identity(state, &bus.name);
        (identity.serial == req.battery_serial).then_some((bus, identity))
    });
    let Some((bus, identity)) = found else {
        return Err(EngineRefusal::new(
            codes::BATTERY_NOT_FOUND,
            format!(
                "no battery with serial number {:?} is communicating on {}",
                req.battery_serial,
                shared
                    .buses
                    .iter()
                    .map(|b| b.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    let request = JobRequest {
        bus: bus.name.clone(),
        acknowledgements: req.acknowledgements.clone(),
        options: req.options.clone(),
    };
    let other_update = shared
        .jobs
        .lock()
        .jobs()
        .filter(|r| !r.state().is_terminal())
        .map(|r| (r.id(), r.battery().serial.clone()))
        .collect::<Vec<_>>()
        .into_iter()
        .find(|(id, serial)| {
            *serial == identity.serial
                || shared.jobs.request(*id).is_some_and(|r| r.bus == bus.name)
        })
        .map(|(id, _)| id);
    let (installed, report) = {
        let core = bus.lock();
        let state = core.monitor.battery().ok_or_else(|| {
            EngineRefusal::new(codes::BATTERY_NOT_FOUND, "the battery left the bus")
        })?;
        let plugin = match shared.choose_plugin(state) {
            PluginChoice::Updatable(i) => &shared.plugins[i],
            PluginChoice::NotSupported { code, reason } => {
                return Err(EngineRefusal::new(code, reason));
            }
        };
        let installed = battery::installed_version(plugin.plugin.as_ref(), state);
        let gates = JobGates::new(
            &request,
            installed.clone(),
            None,
            plugin.entry.firmware.clone(),
        );
        let report = evaluate_gates(
            shared,
            bus,
            &core,
            GateCall {
                moment: Moment::Request,
                now,
                gates: &gates,
                other_update,
                silence: Silence::NotExpected,
            },
        );
        (installed, report)
    };
    for v in &report.verdicts {
        tracing::info!(serial = %identity.serial, verdict = %v, "gate at the request");
    }
    if let Some(red) = report.first_failure() {
        return Err(EngineRefusal::new(red.code(), report.refusal_message()));
    }
    let upload = shared
        .staging
        .begin(&req.package)
        .map_err(|e| staging_refusal(&e))?;
    let id = shared
        .jobs
        .lock()
        .create_for(
            identity,
            req.package.clone(),
            installed.as_ref().map(battery::version_info),
            req.options.targets.clone(),
            UnixMillis::now(),
        )
        .map_err(|e| EngineRefusal::new(codes::STAGING_STORAGE_ERROR, e.to_string()))?;
    if let Err(e) = shared.jobs.remember_request(id, &request) {
        tracing::error!(job = %id, error = %e, "could not store the request record");
    }
    if let Some(record) = shared.jobs.get(id) {
        let _ = shared.updates.send(EngineUpdate::Job(Box::new(record)));
    }
    let status = status_of(id, &upload);
    if upload.is_complete() {
        // The package is still staged from an earlier job: an immediate retry.
        let _ = shared
            .jobs
            .apply(id, JobEvent::UploadProgress(Percent::FULL));
    }
    shared
        .uploads
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id, Arc::new(Mutex::new(Some(upload))));
    tracing::info!(job = %id, bus = %request.bus, targets = %request.options.targets, "update requested");
    Ok(status)
}

fn accept_chunk(
    shared: &Shared,
    job: JobId,
    index: u32,
    bytes: Vec<u8>,
) -> Result<ChunkReceipt, EngineRefusal> {
    let slot = upload_of(shared, job)?;
    let (outcome, status) = {
        let mut guard = slot.lock().unwrap_or_else(PoisonError::into_inner);
        let upload = guard.as_mut().ok_or_else(|| unknown_job(job))?;
        let outcome = upload
            .accept_chunk(index, &bytes)
            .map_err(|e| staging_refusal(&e))?;
        (outcome, status_of(job, upload))
    };
    let recorded = shared.jobs.get(job).map(|r| r.percent());
    if recorded != Some(status.percent) {
        let _ = shared
            .jobs
            .apply(job, JobEvent::UploadProgress(status.percent));
    }
    Ok(ChunkReceipt { outcome, status })
}

fn finish_upload(shared: &Shared, job: JobId) -> Result<StagedReceipt, EngineRefusal> {
    let slot = upload_of(shared, job)?;
    let record = shared.jobs.get(job).ok_or_else(|| unknown_job(job))?;
    let fail = |bus, refusal: EngineRefusal| {
        stage::fail_job(shared, bus, job, &refusal);
        Err(refusal)
    };
    let Some(request) = shared.jobs.request(job) else {
        return fail(
            None,
            EngineRefusal::new(
                codes::STAGING_STORAGE_ERROR,
                "the record of the update request is lost; request the update again",
            ),
        );
    };
    let Some(bus) = shared.bus_named(&request.bus) else {
        return fail(
            None,
            EngineRefusal::new(
                codes::BATTERY_NOT_FOUND,
                format!("the battery's bus {} is gone", request.bus),
            ),
        );
    };
    let choice = bus
        .lock()
        .monitor
        .battery()
        .map(|state| shared.choose_plugin(state));
    let plugin = match choice {
        Some(PluginChoice::Updatable(i)) => i,
        Some(PluginChoice::NotSupported { code, reason }) => {
            return fail(Some(bus), EngineRefusal::new(code, reason));
        }
        None => {
            return fail(
                Some(bus),
                EngineRefusal::new(codes::GATE_NOT_COMMUNICATING, "the battery left the bus"),
            );
        }
    };
    let upload = slot
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .ok_or_else(|| unknown_job(job))?;
    let prepared: Prepared = match stage::finish_stage1(shared, plugin, upload) {
        Ok(p) => p,
        Err(e @ StagingError::Incomplete { .. }) => {
            // The partial upload stays on disk; the next chunk reopens it.
            return Err(staging_refusal(&e));
        }
        Err(e) => return fail(Some(bus), staging_refusal(&e)),
    };
    shared
        .uploads
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&job);
    if record.percent() != Percent::FULL {
        let _ = shared
            .jobs
            .apply(job, JobEvent::UploadProgress(Percent::FULL));
    }
    let target = prepared.target().clone();
    let gates = {
        let core = bus.lock();
        if let Err(refusal) = stage::check_product(&core, &prepared.summary) {
            drop(core);
            return fail(Some(bus), refusal);
        }
        let gates = stage::job_gates(shared, &core, plugin, &request, &target, None);
        let report = stage::gates_before(shared, bus, &core, job, &gates);
        if let Some(red) = report.first_failure() {
            let refusal = EngineRefusal::new(red.code(), report.refusal_message());
            drop(core);
            return fail(Some(bus), refusal);
        }
        gates
    };
    let record = shared
        .jobs
        .apply(
            job,
            JobEvent::TransferStarted {
                target: battery::version_info(&target),
            },
        )
        .map_err(|e| EngineRefusal::new(codes::STAGING_STORAGE_ERROR, e.to_string()))?;
    let started = stage::start_session(shared, bus, &record, &prepared, gates, None);
    if let Err(refusal) = started {
        return fail(Some(bus), refusal);
    }
    Ok(StagedReceipt {
        job,
        sha256: prepared.staged.sha256(),
        size: prepared.staged.size(),
        target: battery::version_info(&target),
    })
}

/// Fails `job` with `reason` while it is uploading (stage 1); refuses once stage 2 has
/// begun (716) and for an ended job (714). The partial upload stays on disk, so a retry of
/// the same file continues it.
fn cancel_update(
    shared: &Shared,
    job: JobId,
    reason: EngineRefusal,
) -> Result<JobRecord, EngineRefusal> {
    if shared.jobs.get(job).is_none() {
        return Err(unknown_job(job));
    }
    let battery_state = shared
        .jobs
        .request(job)
        .and_then(|r| shared.bus_named(&r.bus))
        .and_then(|b| b.lock().monitor.battery().map(battery::snapshot));
    let failure = JobFailure {
        code: reason.code,
        message: reason.message,
        at: UnixMillis::now(),
        battery_state,
    };
    let record = shared.jobs.apply_if(
        job,
        JobEvent::Failed(failure),
        crate::vrm::engine::check_cancellable,
        |e| EngineRefusal::new(codes::STAGING_STORAGE_ERROR, e.to_string()),
    )?;
    // The link sends no more chunks; the next request of the same file reopens the
    // partial upload.
    shared
        .uploads
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&job);
    tracing::info!(%job, code = record.failure().map(|f| f.code), "update cancelled in stage 1");
    Ok(record)
}

fn diagnostics(shared: &Shared, job: JobId) -> Result<DiagnosticsBundle, EngineRefusal> {
    let record: JobRecord = shared.jobs.get(job).ok_or_else(|| unknown_job(job))?;
    let current = shared.buses.iter().find_map(|bus| {
        let core = bus.lock();
        let state = core.monitor.battery()?;
        if battery::job_identity(state, &bus.name).serial != record.battery().serial {
            return None;
        }
        match shared.choose_plugin(state) {
            PluginChoice::Updatable(i) => {
                battery::installed_version(shared.plugins[i].plugin.as_ref(), state)
                    .map(|v| battery::version_info(&v))
            }
            PluginChoice::NotSupported { .. } => None,
        }
    });
    Ok(DiagnosticsBundle::for_job(
        &record,
        &shared.config.site,
        current,
        UnixMillis::now(),
    ))
}

#[async_trait]
impl GxEngine for Engine {
    async fn batteries(&self) -> Vec<BatteryView> {
        let shared = &self.shared;
        let now = shared.now();
        shared
            .buses
            .iter()
            .filter_map(|bus| {
                let core = bus.lock();
                core.monitor.battery().map(|state| {
                    battery::view(
                        bus.index,
                        &bus.name,
                        state,
                        &shared.plugins,
                        shared.plugins_unavailable.as_deref(),
                        now,
                        shared.config.telemetry_max_age,
                    )
                })
            })
            .collect()
    }

    async fn jobs(&self) -> Vec<JobRecord> {
        let mut jobs: Vec<JobRecord> = self.shared.jobs.lock().jobs().cloned().collect();
        jobs.sort_by_key(|r| r.id());
        jobs
    }

    async fn request_update(&self, request: UpdateRequest) -> Result<UploadStatus, EngineRefusal> {
        until_serial_heard(&self.shared, &request.battery_serial).await;
        blocking(&self.shared, move |s| request_update(s, request)).await
    }

    async fn resume_upload(&self, job: JobId) -> Result<UploadStatus, EngineRefusal> {
        blocking(&self.shared, move |s| {
            let slot = upload_of(s, job)?;
            let guard = slot.lock().unwrap_or_else(PoisonError::into_inner);
            let upload = guard.as_ref().ok_or_else(|| unknown_job(job))?;
            Ok(status_of(job, upload))
        })
        .await
    }

    async fn accept_chunk(
        &self,
        job: JobId,
        index: u32,
        bytes: Vec<u8>,
    ) -> Result<ChunkReceipt, EngineRefusal> {
        blocking(&self.shared, move |s| accept_chunk(s, job, index, bytes)).await
    }

    async fn finish_upload(&self, job: JobId) -> Result<StagedReceipt, EngineRefusal> {
        if let Some(request) = self.shared.jobs.request(job) {
            until_identified(&self.shared, IDENTITY_WAIT, |bus, _| {
                bus.name == request.bus
            })
            .await;
        }
        blocking(&self.shared, move |s| finish_upload(s, job)).await
    }

    async fn cancel_update(
        &self,
        job: JobId,
        reason: EngineRefusal,
    ) -> Result<JobRecord, EngineRefusal> {
        blocking(&self.shared, move |s| cancel_update(s, job, reason)).await
    }

    fn subscribe(&self) -> broadcast::Receiver<EngineUpdate> {
        self.shared.updates.subscribe()
    }

    async fn history(&self, serial: &str) -> Result<Vec<EventRecord>, EngineRefusal> {
        let serial = serial.to_owned();
        blocking(&self.shared, move |s| {
            let history = History::read(&s.config.state_dir.events()).map_err(|e| {
                EngineRefusal::new(
                    codes::STAGING_STORAGE_ERROR,
                    format!("cannot read the event log: {e}"),
                )
            })?;
            Ok(history.for_battery(&serial).cloned().collect())
        })
        .await
    }

    async fn record_refusal(&self, refused: crate::vrm::authority::RefusedCommand) {
        let shared = self.shared.clone();
        let logged = tokio::task::spawn_blocking(move || {
            let identity = shared
                .buses
                .iter()
                .find_map(|bus| {
                    let core = bus.lock();
                    let identity = battery::job_identity(core.monitor.battery()?, &bus.name);
                    (identity.serial == refused.battery_serial).then_some(identity)
                })
                .unwrap_or_else(|| crate::job::BatteryIdentity {
                    manufacturer: "unknown".into(),
                    model: "unknown".into(),
                    serial: refused.battery_serial.clone(),
                });
            shared
                .jobs
                .lock()
                .log_refusal(identity, refused.event(), UnixMillis::now())
        })
        .await;
        match logged {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "could not log a refused command"),
            Err(e) => tracing::error!(error = %e, "could not log a refused command"),
        }
    }

    async fn diagnostics(&self, job: JobId) -> Result<DiagnosticsBundle, EngineRefusal> {
        blocking(&self.shared, move |s| diagnostics(s, job)).await
    }

    async fn begin_preflight(
        &self,
        request: PreflightRequest,
    ) -> Result<UploadStatus, EngineRefusal> {
        until_serial_heard(&self.shared, &request.battery_serial).await;
        blocking(&self.shared, move |s| super::preflight::begin(s, request)).await
    }

    async fn preflight_chunk(
        &self,
        sha256: Sha256Digest,
        index: u32,
        bytes: Vec<u8>,
    ) -> Result<ChunkReceipt, EngineRefusal> {
        blocking(&self.shared, move |s| {
            super::preflight::chunk(s, sha256, index, &bytes)
        })
        .await
    }

    async fn preflight_status(&self, sha256: Sha256Digest) -> Result<UploadStatus, EngineRefusal> {
        blocking(&self.shared, move |s| super::preflight::status(s, sha256)).await
    }

    async fn finish_preflight(
        &self,
        battery_serial: String,
        sha256: Sha256Digest,
    ) -> Result<bmsfw_vrm_wire::PreflightReport, EngineRefusal> {
        until_serial_heard(&self.shared, &battery_serial).await;
        blocking(&self.shared, move |s| {
            super::preflight::finish(s, &battery_serial, sha256)
        })
        .await
    }
}
