//! A session served by a plugin host: batched round trips, checked answers, and a clean
//! failure when the host fails.

use super::plugin::{Health, HostedShared};
use super::process::{HostFault, HostProcess};
use super::wire::{Input, Request, Response, Step, Stepped};
use crate::plugin::host::{ReportGuard, VendorSession};
use crate::plugin::types::{DecodedVersion, PluginFailure, SessionReport};
use bmsfw_plugin_api::{CanFrame, Timestamp};
use std::fmt;
use std::sync::Arc;

/// A transfer session whose plugin runs in its own host process.
///
/// Calls that only hand something to the session (frames, timer checks, an abort) are
/// queued and travel with the next round trip; `poll_transmit_batch` makes that round
/// trip and brings back the frames, the next deadline, the status and the running
/// version in one answer. `status`, `running_version` and `poll_timeout` answer from that
/// last round, after sending what is still queued (a round of its own only then), so
/// every answer is the session's state after every call so far.
///
/// When the host misses a deadline, crashes, exits, runs out of a limit or breaks the
/// protocol, it is killed, the session reports `Failed` with code 747 naming the plugin,
/// the call and the cause, and nothing is sent on the plugin's behalf afterwards.
pub struct HostedSession {
    shared: Arc<HostedShared>,
    host: Option<HostProcess>,
    pending: Vec<Input>,
    latest: Timestamp,
    timeout: Option<Timestamp>,
    report: SessionReport,
    running_version: Option<DecodedVersion>,
    guard: ReportGuard,
    failure: Option<PluginFailure>,
}

impl fmt::Debug for HostedSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostedSession")
            .field("plugin", &self.shared.label)
            .field("host", &self.host)
            .field("phase", &self.report.phase)
            .field("failure", &self.failure)
            .finish_non_exhaustive()
    }
}

impl HostedSession {
    /// A session in `host`, which has started it; fetches the first status.
    pub(crate) fn new(shared: Arc<HostedShared>, host: HostProcess) -> HostedSession {
        let mut session = HostedSession {
            shared,
            host: Some(host),
            pending: Vec::new(),
            latest: Timestamp::ZERO,
            timeout: None,
            report: SessionReport {
                phase: crate::plugin::SessionPhase::Transferring,
                bytes_done: 0,
                bytes_total: 0,
                modules: Vec::new(),
                failure: None,
            },
            running_version: None,
            guard: ReportGuard::default(),
            failure: None,
        };
        session.round(Timestamp::ZERO, 0);
        session
    }

    /// The host's process id while it runs.
    pub fn host_pid(&self) -> Option<u32> {
        self.host.as_ref().map(HostProcess::pid)
    }

    fn queue(&mut self, input: Input) {
        if self.host.is_some() {
            self.pending.push(input);
        }
    }

    fn see(&mut self, t: Timestamp) {
        self.latest = self.latest.max(t);
    }

    /// One round trip; returns the frames.
    fn round(&mut self, now: Timestamp, max_frames: usize) -> Vec<CanFrame> {
        let Some(host) = &mut self.host else {
            self.pending.clear();
            return Vec::new();
        };
        let step = Step {
            inputs: std::mem::take(&mut self.pending),
            now,
            max_frames: u32::try_from(max_frames).unwrap_or(u32::MAX),
        };
        let deadline = self.shared.settings.deadlines.session;
        match host.call("session step", &Request::Step(step), deadline) {
            Ok(Response::Stepped(stepped)) => match self.accept(stepped, max_frames) {
                Ok(frames) => frames,
                Err(failure) => {
                    self.fault(failure);
                    Vec::new()
                }
            },
            Ok(other) => {
                let fault = self.host_violation("session step", &other);
                self.host_failed(fault);
                Vec::new()
            }
            Err(fault) => {
                self.host_failed(fault);
                Vec::new()
            }
        }
    }

    fn accept(&mut self, stepped: Stepped, max: usize) -> Result<Vec<CanFrame>, PluginFailure> {
        if stepped.frames.len() > max {
            return Err(PluginFailure::contract(format_args!(
                "the host returned {} frames where at most {max} were asked for",
                stepped.frames.len()
            )));
        }
        self.report = self.guard.check(stepped.status)?;
        self.timeout = stepped.timeout;
        if let Some(v) = stepped.running_version {
            self.running_version = Some(DecodedVersion::from_abi(v)?);
        }
        Ok(stepped.frames)
    }

    fn host_violation(&mut self, call: &'static str, answer: &Response) -> HostFault {
        let cause = super::process::HostFaultCause::Protocol(format!(
            "answered {call} with {}",
            super::process::response_name(answer)
        ));
        let cause = match &mut self.host {
            Some(host) => host.fail(cause),
            None => cause,
        };
        HostFault { call, cause }
    }

    /// The host failed: it is gone, the session is failed with 747, and the plugin's
    /// health records the fault.
    fn host_failed(&mut self, fault: HostFault) {
        let failure = self.shared.fault(Health::SESSION, &fault);
        self.fault(failure);
    }

    fn fault(&mut self, failure: PluginFailure) {
        tracing::warn!(plugin = %self.shared.label, %failure, "hosted session failed");
        self.host = None;
        self.pending.clear();
        self.timeout = None;
        self.report = self.guard.failed(failure.clone());
        self.failure = Some(failure);
    }

    /// Sends what is queued.
    fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.round(self.latest, 0);
        }
    }
}

impl VendorSession for HostedSession {
    fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        self.see(now);
        self.queue(Input::Frame(now, *frame));
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        self.see(now);
        self.queue(Input::Timeout(now));
    }

    fn handle_timeout_if_due(&mut self, now: Timestamp) {
        self.see(now);
        self.queue(Input::TimerCheck(now));
    }

    fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        let mut out = Vec::with_capacity(1);
        self.poll_transmit_batch(now, 1, &mut out);
        out.pop()
    }

    fn poll_transmit_batch(&mut self, now: Timestamp, max: usize, out: &mut Vec<CanFrame>) {
        self.see(now);
        if self.host.is_none() || (max == 0 && self.pending.is_empty()) {
            return;
        }
        out.extend(self.round(now, max));
    }

    fn poll_timeout(&mut self) -> Option<Timestamp> {
        self.flush();
        self.timeout
    }

    fn status(&mut self) -> SessionReport {
        self.flush();
        self.report.clone()
    }

    fn abort(&mut self, now: Timestamp, code: u32, message: &str) {
        self.see(now);
        self.queue(Input::Abort {
            now,
            code,
            message: message.to_owned(),
        });
    }

    fn checkpoint(&mut self) -> Vec<u8> {
        self.flush();
        let Some(host) = &mut self.host else {
            return Vec::new();
        };
        let deadline = self.shared.settings.deadlines.session;
        match host.call("checkpoint", &Request::Checkpoint, deadline) {
            Ok(Response::Checkpoint(bytes)) => match ReportGuard::checkpoint(&bytes) {
                Ok(()) => bytes,
                Err(failure) => {
                    self.fault(failure);
                    Vec::new()
                }
            },
            Ok(other) => {
                let fault = self.host_violation("checkpoint", &other);
                self.host_failed(fault);
                Vec::new()
            }
            Err(fault) => {
                self.host_failed(fault);
                Vec::new()
            }
        }
    }

    fn running_version(&mut self) -> Option<DecodedVersion> {
        self.flush();
        self.running_version.clone()
    }
}

impl Drop for HostedSession {
    fn drop(&mut self) {
        // A session that ended as the plugin reported it counts as a clean run.
        if self.failure.is_none() && self.report.phase.is_final() {
            self.shared.health().record_success(Health::SESSION);
        }
    }
}
