//! A [`GxEngine`] for the link's tests, built from the engine's real stage-1 parts: the
//! staging area, the job store and the event log. Stage 2 is played by the test: every
//! staged package is handed over on a channel ([`StagedJob`]) and the test reports the
//! job's phases back through [`StageOneEngine::apply`], so it can script failures, slow
//! phases and cuts of the link at exact moments. The end-to-end tests use the daemon's
//! engine with a real plugin instead.
//!
//! It checks what stage 1 can know at request time: the battery is in the device list and
//! eligible, no other update of it runs, and every acknowledgement was given.

use async_trait::async_trait;
use bmsfw_core::diagnostics::{DiagnosticsBundle, SiteInfo};
use bmsfw_core::errors::codes;
use bmsfw_core::events::{EventLogConfig, EventRecord, History};
use bmsfw_core::job::{
    JobEvent, JobFailure, JobId, JobRecord, JobState, JobStore, JobStoreError, StateDir,
};
use bmsfw_core::staging::{
    PackageInspector, Sha256Digest, SignatureStatus, StagedPackage, StagingArea, StagingConfig,
    StagingError, Upload,
};
use bmsfw_core::unix_time::UnixMillis;
use bmsfw_core::vrm::engine::{
    BatteryView, ChunkReceipt, Eligibility, EngineRefusal, EngineUpdate, GxEngine,
    PreflightRequest, StagedReceipt, UPDATE_CHANNEL_CAPACITY, UpdateRequest, UploadStatus,
    check_cancellable,
};
use bmsfw_vrm_wire::{Integrity, PreflightReport, PreflightVerdict, VersionOrder, WireVersion};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{broadcast, mpsc};

/// A package that passed stage 1, handed to stage 2.
#[derive(Debug)]
pub struct StagedJob {
    /// The job, now Transferring.
    pub job: JobId,
    /// The battery's serial number.
    pub battery_serial: String,
    /// The verified package.
    pub package: StagedPackage,
}

/// A package inspector the engine can share across threads.
pub type SharedInspector = Box<dyn PackageInspector + Send + Sync>;

struct Inner {
    state: StateDir,
    staging: StagingArea,
    jobs: JobStore,
    uploads: HashMap<JobId, Upload>,
    /// Pre-flight uploads by the file's digest.
    preflights: HashMap<Sha256Digest, Upload>,
    batteries: BTreeMap<u32, BatteryView>,
    inspector: SharedInspector,
    site: SiteInfo,
    stage_two: mpsc::UnboundedSender<StagedJob>,
}

/// Stage 1 of the GX engine behind the [`GxEngine`] boundary.
#[derive(Clone)]
pub struct StageOneEngine {
    inner: Arc<Mutex<Inner>>,
    updates: broadcast::Sender<EngineUpdate>,
}

impl std::fmt::Debug for StageOneEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageOneEngine").finish_non_exhaustive()
    }
}

fn refusal(e: &StagingError) -> EngineRefusal {
    EngineRefusal::new(e.code(), e.to_string())
}

fn store_refusal(e: &JobStoreError) -> EngineRefusal {
    EngineRefusal::new(codes::STAGING_STORAGE_ERROR, e.to_string())
}

impl Inner {
    fn job(&self, job: JobId) -> Result<&JobRecord, EngineRefusal> {
        self.jobs
            .get(job)
            .ok_or_else(|| EngineRefusal::new(codes::UPDATE_NOT_FOUND, format!("no update {job}")))
    }

    /// The open upload of `job`, reopening it from disk after a restart.
    fn upload(&mut self, job: JobId) -> Result<&mut Upload, EngineRefusal> {
        let record = self.job(job)?;
        if record.state() != JobState::Uploading {
            return Err(EngineRefusal::new(
                codes::UPDATE_NOT_FOUND,
                format!(
                    "the upload of update {job} has ended; the update is {}",
                    record.state().label()
                ),
            ));
        }
        if !self.uploads.contains_key(&job) {
            let announcement = record.package().clone();
            let upload = self.staging.begin(&announcement).map_err(|e| refusal(&e))?;
            self.uploads.insert(job, upload);
        }
        self.uploads
            .get_mut(&job)
            .ok_or_else(|| EngineRefusal::new(codes::UPDATE_NOT_FOUND, format!("no upload {job}")))
    }

    fn status(job: JobId, upload: &Upload) -> UploadStatus {
        UploadStatus {
            job,
            first_missing: upload.first_missing(),
            received_bytes: upload.received_bytes(),
            percent: upload.progress(),
        }
    }

    fn fail(&mut self, job: JobId, code: u32, message: String) -> Option<JobRecord> {
        self.uploads.remove(&job);
        let failure = JobFailure {
            code,
            message,
            at: UnixMillis::now(),
            battery_state: None,
        };
        match self
            .jobs
            .apply(job, JobEvent::Failed(failure), UnixMillis::now())
        {
            Ok(r) => Some(r.clone()),
            Err(e) => {
                tracing::error!(%job, error = %e, "could not record the failure of a job");
                self.jobs.get(job).cloned()
            }
        }
    }
}

impl StageOneEngine {
    /// Opens the job store in `state` and the staging area, and recovers interrupted jobs
    /// (an upload waits for its missing chunks; anything later fails with 740). Returns the
    /// engine and the channel on which staged packages leave for stage 2.
    pub fn open(
        state: &StateDir,
        staging: StagingConfig,
        inspector: SharedInspector,
        site: SiteInfo,
    ) -> anyhow::Result<(StageOneEngine, mpsc::UnboundedReceiver<StagedJob>)> {
        let (jobs, report) = JobStore::open(state, EventLogConfig::default(), UnixMillis::now())?;
        for job in &report.recovered {
            tracing::info!(job = %job.id, action = ?job.action, "recovered job");
        }
        let staging = StagingArea::open(staging)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (updates, _) = broadcast::channel(UPDATE_CHANNEL_CAPACITY);
        let inner = Inner {
            state: state.clone(),
            staging,
            jobs,
            uploads: HashMap::new(),
            preflights: HashMap::new(),
            batteries: BTreeMap::new(),
            inspector,
            site,
            stage_two: tx,
        };
        Ok((
            StageOneEngine {
                inner: Arc::new(Mutex::new(inner)),
                updates,
            },
            rx,
        ))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent on-disk state (every change is
        // committed before memory changes), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish_job(&self, record: Option<JobRecord>) {
        if let Some(r) = record {
            let _ = self.updates.send(EngineUpdate::Job(Box::new(r)));
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Inner) -> T + Send + 'static,
    ) -> T {
        let inner = Arc::clone(&self.inner);
        let run = move || {
            let mut guard = inner.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        };
        match tokio::task::spawn_blocking(run).await {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Adds or replaces a battery of the device list (telemetry feeds it).
    pub fn set_battery(&self, battery: BatteryView) {
        let mut inner = self.lock();
        if inner.batteries.get(&battery.instance) == Some(&battery) {
            return;
        }
        inner.batteries.insert(battery.instance, battery.clone());
        drop(inner);
        let _ = self.updates.send(EngineUpdate::Battery(Box::new(battery)));
    }

    /// Removes a battery from the device list.
    pub fn remove_battery(&self, instance: u32) {
        if self.lock().batteries.remove(&instance).is_some() {
            let _ = self.updates.send(EngineUpdate::BatteryGone { instance });
        }
    }

    /// Applies a stage-2 event to `job` (progress, phases, completion, failure), commits and
    /// logs it, and reports the change to subscribers.
    pub fn apply(&self, job: JobId, event: JobEvent) -> Result<JobRecord, JobStoreError> {
        let record = self
            .lock()
            .jobs
            .apply(job, event, UnixMillis::now())?
            .clone();
        let _ = self
            .updates
            .send(EngineUpdate::Job(Box::new(record.clone())));
        Ok(record)
    }

    /// The state directory this engine keeps its jobs in.
    pub fn state_dir(&self) -> StateDir {
        self.lock().state.clone()
    }
}

#[async_trait]
impl GxEngine for StageOneEngine {
    async fn batteries(&self) -> Vec<BatteryView> {
        self.lock().batteries.values().cloned().collect()
    }

    async fn jobs(&self) -> Vec<JobRecord> {
        let mut jobs: Vec<JobRecord> = self.lock().jobs.jobs().cloned().collect();
        jobs.sort_by_key(JobRecord::id);
        jobs
    }

    async fn request_update(&self, request: UpdateRequest) -> Result<UploadStatus, EngineRefusal> {
        let missing = request.acknowledgements.missing();
        if !missing.is_empty() {
            let names: Vec<String> = missing.iter().map(ToString::to_string).collect();
            return Err(EngineRefusal::new(
                codes::ACKNOWLEDGEMENT_MISSING,
                format!("not confirmed: {}", names.join(", ")),
            ));
        }
        let (status, record) = self
            .blocking(move |inner| {
                let battery = inner
                    .batteries
                    .values()
                    .find(|b| b.identity.matches(&request.battery_serial))
                    .cloned()
                    .ok_or_else(|| {
                        EngineRefusal::new(
                            codes::BATTERY_NOT_FOUND,
                            format!(
                                "no battery with serial number {:?} on this GX device",
                                request.battery_serial
                            ),
                        )
                    })?;
                if let Eligibility::NotEligible { code, reason } = &battery.eligibility {
                    return Err(EngineRefusal::new(*code, reason.clone()));
                }
                if let Some(running) = inner.jobs.active_for(&request.battery_serial) {
                    return Err(EngineRefusal::new(
                        codes::UPDATE_ALREADY_RUNNING,
                        format!(
                            "update {} of this battery is {}",
                            running.id(),
                            running.state().label()
                        ),
                    ));
                }
                let upload = inner
                    .staging
                    .begin(&request.package)
                    .map_err(|e| refusal(&e))?;
                let job = inner
                    .jobs
                    .create_for(
                        battery.identity.clone(),
                        request.package.clone(),
                        battery.firmware.clone(),
                        request.options.targets.clone(),
                        UnixMillis::now(),
                    )
                    .map_err(|e| store_refusal(&e))?;
                let status = Inner::status(job, &upload);
                inner.uploads.insert(job, upload);
                let record = inner.jobs.get(job).cloned();
                Ok((status, record))
            })
            .await?;
        self.publish_job(record);
        Ok(status)
    }

    async fn cancel_update(
        &self,
        job: JobId,
        reason: EngineRefusal,
    ) -> Result<JobRecord, EngineRefusal> {
        let record = self
            .blocking(move |inner| {
                check_cancellable(inner.job(job)?)?;
                inner
                    .fail(job, reason.code, reason.message)
                    .ok_or_else(|| EngineRefusal::new(codes::UPDATE_NOT_FOUND, "job lost"))
            })
            .await?;
        self.publish_job(Some(record.clone()));
        Ok(record)
    }

    async fn resume_upload(&self, job: JobId) -> Result<UploadStatus, EngineRefusal> {
        self.blocking(move |inner| {
            let upload = inner.upload(job)?;
            Ok(Inner::status(job, upload))
        })
        .await
    }

    async fn accept_chunk(
        &self,
        job: JobId,
        index: u32,
        bytes: Vec<u8>,
    ) -> Result<ChunkReceipt, EngineRefusal> {
        let (receipt, record) = self
            .blocking(move |inner| {
                let before = inner.job(job)?.percent();
                let upload = inner.upload(job)?;
                let outcome = upload
                    .accept_chunk(index, &bytes)
                    .map_err(|e| refusal(&e))?;
                let status = Inner::status(job, upload);
                let mut record = None;
                if status.percent > before {
                    match inner.jobs.apply(
                        job,
                        JobEvent::UploadProgress(status.percent),
                        UnixMillis::now(),
                    ) {
                        Ok(r) => record = Some(r.clone()),
                        Err(e) => tracing::warn!(%job, error = %e, "upload progress not recorded"),
                    }
                }
                Ok((ChunkReceipt { outcome, status }, record))
            })
            .await?;
        self.publish_job(record);
        Ok(receipt)
    }

    async fn finish_upload(&self, job: JobId) -> Result<StagedReceipt, EngineRefusal> {
        let (result, record) = self
            .blocking(move |inner| {
                let upload = match inner.upload(job) {
                    Ok(u) => u,
                    Err(e) => return (Err(e), None),
                };
                if let Some(first_missing) = upload.first_missing() {
                    let e = StagingError::Incomplete {
                        first_missing,
                        chunk_count: upload.announcement().chunk_count(),
                    };
                    return (Err(refusal(&e)), None);
                }
                let Some(upload) = inner.uploads.remove(&job) else {
                    return (
                        Err(EngineRefusal::new(
                            codes::UPDATE_NOT_FOUND,
                            format!("no upload {job}"),
                        )),
                        None,
                    );
                };
                match upload.finish(inner.inspector.as_ref()) {
                    Ok(staged) => {
                        let target = staged.package().version.clone();
                        let receipt = StagedReceipt {
                            job,
                            sha256: staged.sha256(),
                            size: staged.size(),
                            target: target.clone(),
                        };
                        let record = match inner.jobs.apply(
                            job,
                            JobEvent::TransferStarted { target },
                            UnixMillis::now(),
                        ) {
                            Ok(r) => r.clone(),
                            Err(e) => {
                                let code = codes::STAGING_STORAGE_ERROR;
                                let record = inner.fail(job, code, e.to_string());
                                return (Err(EngineRefusal::new(code, e.to_string())), record);
                            }
                        };
                        let serial = record.battery().serial.clone();
                        if inner
                            .stage_two
                            .send(StagedJob {
                                job,
                                battery_serial: serial,
                                package: staged,
                            })
                            .is_err()
                        {
                            tracing::warn!(%job, "no stage-2 driver is listening");
                        }
                        (Ok(receipt), Some(record))
                    }
                    Err(e) => {
                        let r = refusal(&e);
                        let record = inner.fail(job, r.code, r.message.clone());
                        (Err(r), record)
                    }
                }
            })
            .await;
        self.publish_job(record);
        result
    }

    fn subscribe(&self) -> broadcast::Receiver<EngineUpdate> {
        self.updates.subscribe()
    }

    async fn history(&self, serial: &str) -> Result<Vec<EventRecord>, EngineRefusal> {
        let dir = self.lock().state.events();
        let serial = serial.to_owned();
        tokio::task::spawn_blocking(move || {
            History::read(&dir)
                .map(|h| h.for_battery(&serial).cloned().collect())
                .map_err(|e| {
                    EngineRefusal::new(
                        codes::STAGING_STORAGE_ERROR,
                        format!("reading the event log in {}: {e}", dir.display()),
                    )
                })
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    async fn record_refusal(&self, refused: bmsfw_core::vrm::authority::RefusedCommand) {
        self.blocking(move |inner| {
            let identity = inner
                .batteries
                .values()
                .find(|b| b.identity.serial == refused.battery_serial)
                .map(|b| b.identity.clone())
                .unwrap_or_else(|| bmsfw_core::job::BatteryIdentity {
                    manufacturer: "unknown".into(),
                    model: "unknown".into(),
                    serial: refused.battery_serial.clone(),
                });
            if let Err(e) = inner
                .jobs
                .log_refusal(identity, refused.event(), UnixMillis::now())
            {
                tracing::error!(error = %e, "could not log a refused command");
            }
        })
        .await;
    }

    async fn begin_preflight(
        &self,
        request: PreflightRequest,
    ) -> Result<UploadStatus, EngineRefusal> {
        self.blocking(move |inner| {
            let battery = inner
                .batteries
                .values()
                .any(|b| b.identity.matches(&request.battery_serial));
            if !battery {
                return Err(EngineRefusal::new(
                    codes::BATTERY_NOT_FOUND,
                    format!("no battery {:?}", request.battery_serial),
                ));
            }
            let sha256 = request.package.sha256();
            if let Some(open) = inner.preflights.get(&sha256) {
                return Ok(Inner::status(JobId(0), open));
            }
            let upload = inner
                .staging
                .begin(&request.package)
                .map_err(|e| refusal(&e))?;
            let status = Inner::status(JobId(0), &upload);
            inner.preflights.insert(sha256, upload);
            Ok(status)
        })
        .await
    }

    async fn preflight_chunk(
        &self,
        sha256: Sha256Digest,
        index: u32,
        bytes: Vec<u8>,
    ) -> Result<ChunkReceipt, EngineRefusal> {
        self.blocking(move |inner| {
            let upload = inner.preflights.get_mut(&sha256).ok_or_else(|| {
                EngineRefusal::new(codes::UPDATE_NOT_FOUND, "no pre-flight upload")
            })?;
            let outcome = upload
                .accept_chunk(index, &bytes)
                .map_err(|e| refusal(&e))?;
            Ok(ChunkReceipt {
                outcome,
                status: Inner::status(JobId(0), upload),
            })
        })
        .await
    }

    async fn preflight_status(&self, sha256: Sha256Digest) -> Result<UploadStatus, EngineRefusal> {
        self.blocking(move |inner| {
            inner
                .preflights
                .get(&sha256)
                .map(|u| Inner::status(JobId(0), u))
                .ok_or_else(|| EngineRefusal::new(codes::UPDATE_NOT_FOUND, "no pre-flight upload"))
        })
        .await
    }

    async fn finish_preflight(
        &self,
        battery_serial: String,
        sha256: Sha256Digest,
    ) -> Result<PreflightReport, EngineRefusal> {
        self.blocking(move |inner| {
            let battery = inner
                .batteries
                .values()
                .find(|b| b.identity.matches(&battery_serial))
                .cloned()
                .ok_or_else(|| EngineRefusal::new(codes::BATTERY_NOT_FOUND, "no battery"))?;
            let upload = inner.preflights.remove(&sha256).ok_or_else(|| {
                EngineRefusal::new(codes::UPDATE_NOT_FOUND, "no pre-flight upload")
            })?;
            let size = upload.announcement().size();
            let wire = |v: &bmsfw_core::job::VersionInfo| WireVersion {
                raw: v.raw.iter().map(|b| format!("{b:02x}")).collect(),
                display: v.display.clone(),
            };
            let mut report = PreflightReport {
                verdict: PreflightVerdict::Passed,
                code: None,
                message: None,
                battery: format!(
                    "{} {}",
                    battery.identity.manufacturer, battery.identity.model
                ),
                plugin: Some("Test plugin".into()),
                products: Vec::new(),
                version_current: battery.firmware.as_ref().map(wire),
                version_new: None,
                order: VersionOrder::Unknown,
                integrity: Integrity::Unknown,
                size,
                image_size: None,
                estimate_seconds: None,
                units: Vec::new(),
                unit_name: None,
                images: Vec::new(),
                release_notes: None,
            };
            match upload.finish(inner.inspector.as_ref()) {
                Ok(staged) => {
                    let accepted = staged.package();
                    report.products = accepted.products.clone();
                    report.version_new = Some(wire(&accepted.version));
                    report.integrity = match accepted.signature {
                        SignatureStatus::Verified => Integrity::Signed,
                        SignatureStatus::Unsigned => Integrity::Checksum,
                    };
                    report.image_size = Some(size);
                    report.estimate_seconds = Some(10);
                    report.order = match &battery.firmware {
                        Some(current) => match accepted.version.raw.cmp(&current.raw) {
                            std::cmp::Ordering::Greater => VersionOrder::Newer,
                            std::cmp::Ordering::Equal => VersionOrder::Same,
                            std::cmp::Ordering::Less => VersionOrder::Older,
                        },
                        None => VersionOrder::Unknown,
                    };
                }
                Err(StagingError::Rejected { code, message }) => {
                    report.verdict = PreflightVerdict::Refused;
                    report.code = Some(code);
                    report.message = Some(message);
                }
                Err(e) => return Err(refusal(&e)),
            }
            Ok(report)
        })
        .await
    }

    async fn diagnostics(&self, job: JobId) -> Result<DiagnosticsBundle, EngineRefusal> {
        let inner = self.lock();
        let record = inner.job(job)?;
        let current = inner
            .batteries
            .values()
            .find(|b| b.identity == *record.battery())
            .and_then(|b| b.firmware.clone());
        Ok(DiagnosticsBundle::for_job(
            record,
            &inner.site,
            current,
            UnixMillis::now(),
        ))
    }
}
