//! The engine's jobs: the one store every change goes through, the writer that journals
//! the driver's events off the bus tasks, and the request record each running job keeps
//! beside the journal.

use crate::job::{JobEvent, JobId, JobRecord, JobStore, JobStoreError};
use crate::journal::durable::{ensure_dir, read_bounded, write_atomic};
use crate::unix_time::UnixMillis;
use crate::vrm::{Acknowledgements, EngineUpdate, UpdateOptions};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::{broadcast, mpsc};

/// What the installer asked for with a job, kept beside the journal until the job ends so
/// that a job resumed after a GX restart is held to the same gates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRequest {
    /// The bus of the battery.
    pub bus: String,
    /// What the installer confirmed.
    pub acknowledgements: Acknowledgements,
    /// The installer's options.
    pub options: UpdateOptions,
}

/// Largest request record read back.
const MAX_REQUEST_FILE: u64 = 16 * 1024;

fn request_name(job: JobId) -> String {
    format!("{job}.json")
}

/// A change of a job from a bus task.
#[derive(Debug)]
pub(crate) enum JobChange {
    /// An input of the job's state machine.
    Event(JobEvent),
    /// The plugin's resume checkpoint.
    Checkpoint(Vec<u8>),
}

/// The jobs of the engine: the store, the request records and the update channel.
#[derive(Clone)]
pub(crate) struct JobBook {
    store: Arc<Mutex<JobStore>>,
    requests: PathBuf,
    updates: broadcast::Sender<EngineUpdate>,
}

/// The jobs, with the queue towards the writer task.
pub(crate) struct Jobs {
    book: JobBook,
    writer: mpsc::UnboundedSender<(JobId, JobChange)>,
}

impl std::ops::Deref for Jobs {
    type Target = JobBook;
    fn deref(&self) -> &JobBook {
        &self.book
    }
}

impl Jobs {
    /// Wraps `store`; returns the book and the queue's receiving end for [`run_writer`].
    pub(crate) fn new(
        store: JobStore,
        requests: PathBuf,
        updates: broadcast::Sender<EngineUpdate>,
    ) -> std::io::Result<(Jobs, mpsc::UnboundedReceiver<(JobId, JobChange)>)> {
        ensure_dir(&requests)?;
        let (writer, rx) = mpsc::unbounded_channel();
        Ok((
            Jobs {
                book: JobBook {
                    store: Arc::new(Mutex::new(store)),
                    requests,
                    updates,
                },
                writer,
            },
            rx,
        ))
    }

    /// The book, for the writer task.
    pub(crate) fn book(&self) -> JobBook {
        self.book.clone()
    }

    /// Queues a change for the writer (for the bus tasks, which must not block).
    pub(crate) fn queue(&self, id: JobId, change: JobChange) {
        if self.writer.send((id, change)).is_err() {
            tracing::error!(job = %id, "job writer stopped; change lost");
        }
    }
}

impl JobBook {
    /// The store, locked.
    pub(crate) fn lock(&self) -> MutexGuard<'_, JobStore> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of job `id`.
    pub(crate) fn get(&self, id: JobId) -> Option<JobRecord> {
        self.lock().get(id).cloned()
    }

    /// Applies `event` now (blocking: journal write and fsync) and publishes the job.
    pub(crate) fn apply(&self, id: JobId, event: JobEvent) -> Result<JobRecord, JobStoreError> {
        self.apply_if(id, event, |_| Ok(()), |e| e)
    }

    /// Applies `event` to job `id` only if `allowed` accepts the job as it is, both under
    /// one lock of the store (no other change slips in between), then publishes the job.
    pub(crate) fn apply_if<E>(
        &self,
        id: JobId,
        event: JobEvent,
        allowed: impl FnOnce(&JobRecord) -> Result<(), E>,
        store_error: impl FnOnce(JobStoreError) -> E,
    ) -> Result<JobRecord, E> {
        let ends = matches!(event, JobEvent::Completed { .. } | JobEvent::Failed(_));
        let record = {
            let mut store = self.lock();
            if let Some(record) = store.get(id) {
                allowed(record)?;
            }
            store
                .apply(id, event, UnixMillis::now())
                .map_err(store_error)?
                .clone()
        };
        if ends {
            self.forget_request(id);
        }
        let _ = self
            .updates
            .send(EngineUpdate::Job(Box::new(record.clone())));
        Ok(record)
    }

    /// Stores the request record of `id`.
    pub(crate) fn remember_request(&self, id: JobId, request: &JobRequest) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(request).map_err(std::io::Error::other)?;
        crate::crash::point("jobs.request");
        write_atomic(&self.requests, &request_name(id), &bytes)
    }

    /// The request record of `id`, if it is on disk and readable.
    pub(crate) fn request(&self, id: JobId) -> Option<JobRequest> {
        load_request(&self.requests, id)
    }

    /// Deletes the request record of an ended job.
    pub(crate) fn forget_request(&self, id: JobId) {
        let path = self.requests.join(request_name(id));
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "could not delete request record");
        }
    }

    /// Deletes request records of jobs that are not running.
    pub(crate) fn collect_requests(&self) {
        let running: Vec<JobId> = self
            .lock()
            .jobs()
            .filter(|r| !r.state().is_terminal())
            .map(|r| r.id())
            .collect();
        let Ok(entries) = std::fs::read_dir(&self.requests) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let id = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<u64>().ok())
                .map(JobId);
            if id.is_none_or(|id| !running.contains(&id)) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

fn load_request(dir: &Path, id: JobId) -> Option<JobRequest> {
    let path = dir.join(request_name(id));
    let bytes = match read_bounded(&path, MAX_REQUEST_FILE) {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            tracing::warn!(path = %path.display(), "request record too large");
            return None;
        }
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "request record unreadable");
            }
            return None;
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "request record damaged");
            None
        }
    }
}

/// Journals the bus tasks' changes in order, off the async threads.
pub(crate) async fn run_writer(jobs: JobBook, mut rx: mpsc::UnboundedReceiver<(JobId, JobChange)>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let jobs = jobs.clone();
        let done = tokio::task::spawn_blocking(move || {
            for (id, change) in batch {
                let result = match change {
                    JobChange::Event(event) => jobs.apply(id, event).map(drop),
                    JobChange::Checkpoint(bytes) => {
                        jobs.lock().set_checkpoint(id, bytes, UnixMillis::now())
                    }
                };
                match result {
                    Ok(()) => {}
                    Err(JobStoreError::Transition(t)) => {
                        tracing::debug!(job = %id, %t, "job change not applicable")
                    }
                    Err(JobStoreError::Checkpoint(e)) => {
                        tracing::debug!(job = %id, %e, "checkpoint not kept")
                    }
                    Err(e) => tracing::error!(job = %id, error = %e, "job change failed"),
                }
            }
        })
        .await;
        if let Err(e) = done {
            tracing::error!(error = %e, "job writer failed");
        }
    }
}
