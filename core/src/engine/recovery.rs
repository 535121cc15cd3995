//! After a GX restart: what the journal's recovery decided is carried out.
//!
//! The job store has already settled every interrupted job ([`crate::journal`]): uploads
//! wait for their missing chunks, transfers with a plugin checkpoint resume, everything
//! else failed with 740. Here the engine deletes the request records and staged packages
//! no job needs any more, and resumes each resumable transfer once its battery
//! communicates again on its bus, held to the same gates as before; a battery that does
//! not reappear within [`super::EngineConfig::resume_wait`] fails the job with 740.

use super::Shared;
use super::battery::{self, PluginChoice};
use super::bus::AbortOnDrop;
use super::stage;
use crate::errors::codes;
use crate::job::{JobId, JobState, StartupReport};
use crate::journal::RecoveryAction;
use crate::telemetry::Communication;
use crate::vrm::EngineRefusal;
use std::sync::Arc;
use std::time::Duration;

/// How often a resuming transfer looks for its battery.
const LOOK_EVERY: Duration = Duration::from_millis(250);

/// Cleans up after the journal's recovery and starts the resumes.
pub(crate) fn after_start(shared: &Arc<Shared>, startup: &StartupReport) -> Vec<AbortOnDrop> {
    shared.jobs.collect_requests();
    let keep = shared.jobs.lock().packages_in_use();
    match shared.staging.collect_garbage(&keep) {
        Ok(removed) => {
            for path in removed {
                tracing::info!(path = %path.display(), "removed a package no job needs");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not clean the staging area"),
    }
    let mut tasks = Vec::new();
    for job in &startup.recovered {
        match &job.action {
            // Killed between the job's first record and its request's: without the
            // request the upload cannot end in a transfer. The job fails cleanly, and the
            // command the portal sends again starts a new one.
            RecoveryAction::ContinueUpload if shared.jobs.request(job.id).is_none() => {
                stage::fail_job(
                    shared,
                    None,
                    job.id,
                    &refusal(
                        "the GX device restarted before it recorded the update request; the \
                         portal sends the request again",
                    ),
                );
                tracing::info!(job = %job.id, "interrupted upload without its request failed with 740");
            }
            RecoveryAction::ContinueUpload => {
                tracing::info!(job = %job.id, "upload continues when the link resumes it");
            }
            RecoveryAction::ResumeTransfer { checkpoint } => {
                tracing::info!(job = %job.id, "transfer resumes once the battery is back");
                tasks.push(AbortOnDrop(tokio::spawn(resume(
                    shared.clone(),
                    job.id,
                    checkpoint.clone(),
                ))));
            }
            RecoveryAction::Failed { interrupted } => {
                tracing::info!(job = %job.id, ?interrupted, "interrupted job failed with 740");
            }
        }
    }
    tasks
}

fn refusal(message: impl Into<String>) -> EngineRefusal {
    EngineRefusal::new(codes::GX_RESTARTED, message)
}

async fn resume(shared: Arc<Shared>, job: JobId, checkpoint: Vec<u8>) {
    let deadline = shared.now() + shared.config.resume_wait;
    let bus = shared
        .jobs
        .request(job)
        .and_then(|r| shared.buses.iter().position(|b| b.name == r.bus));
    let Some(bus) = bus else {
        let s = shared.clone();
        let _ = tokio::task::spawn_blocking(move || {
            stage::fail_job(
                &s,
                None,
                job,
                &refusal(
                    "the GX device restarted during the transfer and the job's bus or request \
                     record is gone",
                ),
            )
        })
        .await;
        return;
    };
    let serial = shared.jobs.get(job).map(|r| r.battery().serial.clone());
    loop {
        let now = shared.now();
        let ready = {
            let core = shared.buses[bus].lock();
            core.monitor.battery().is_some_and(|state| {
                // The plugin is chosen from the manufacturer (0x35E) and 0x35F: the serial
                // alone, heard first, is not enough to resume with.
                let heard = state.identity();
                Some(battery::job_identity(state, &shared.buses[bus].name).serial) == serial
                    && heard.manufacturer.is_some()
                    && heard.product_info.is_some()
                    && state.communication(now, shared.config.telemetry_max_age)
                        == Communication::Communicating
            })
        };
        if ready {
            break;
        }
        if now >= deadline {
            let s = shared.clone();
            let wait = shared.config.resume_wait;
            let _ = tokio::task::spawn_blocking(move || {
                stage::fail_job(
                    &s,
                    Some(&s.buses[bus]),
                    job,
                    &refusal(format!(
                        "the GX device restarted during the transfer and the battery did not \
                         communicate again within {:.0} s",
                        wait.as_secs_f64()
                    )),
                )
            })
            .await;
            return;
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
    let s = shared.clone();
    let done = tokio::task::spawn_blocking(move || resume_now(&s, bus, job, checkpoint)).await;
    if let Err(e) = done {
        tracing::error!(%job, error = %e, "resume failed");
    }
}

fn resume_now(shared: &Shared, bus_index: usize, job: JobId, checkpoint: Vec<u8>) {
    let bus = &shared.buses[bus_index];
    let fail = |r: EngineRefusal| stage::fail_job(shared, Some(bus), job, &r);
    let (Some(record), Some(request)) = (shared.jobs.get(job), shared.jobs.request(job)) else {
        return fail(refusal("the job's records are gone"));
    };
    if record.state() != JobState::Transferring {
        return;
    }
    let choice = bus
        .lock()
        .monitor
        .battery()
        .map(|state| shared.choose_plugin(state));
    let plugin = match choice {
        Some(PluginChoice::Updatable(i)) => i,
        Some(PluginChoice::NotSupported { code, reason }) => {
            return fail(EngineRefusal::new(code, reason));
        }
        None => return fail(refusal("the battery left the bus")),
    };
    let upload = match shared.staging.begin(record.package()) {
        Ok(u) => u,
        Err(e) => return fail(EngineRefusal::new(e.code(), e.to_string())),
    };
    let prepared = match stage::finish_stage1(shared, plugin, upload) {
        Ok(p) => p,
        Err(e) => return fail(EngineRefusal::new(e.code(), e.to_string())),
    };
    let p = &shared.plugins[plugin];
    let installed = record
        .version_before()
        .and_then(|v| p.plugin.decode_version(&v.raw).ok());
    let gates = {
        let core = bus.lock();
        stage::job_gates(
            shared,
            &core,
            plugin,
            &request,
            prepared.target(),
            installed,
        )
    };
    let started = stage::start_session(shared, bus, &record, &prepared, gates, Some(checkpoint));
    match started {
        Ok(()) => tracing::info!(%job, "transfer resumed from the plugin's checkpoint"),
        Err(r) => fail(r),
    }
}
