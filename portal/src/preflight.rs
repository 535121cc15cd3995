//! The pre-flight check of a firmware file, from the portal's side: as soon as an installer
//! has uploaded a file for a battery, the portal sends it to the GX (`preflight`, then the
//! chunks with `job` 0) and the GX's answer says whether the file is for this battery,
//! which version it installs against which one the battery runs, and whether it is intact.
//! The warnings and Update come only after a passed check.
//!
//! A GX that does not know the command (older software) answers 712: the check is then
//! "unavailable" and the file is checked when the installer presses Update, as before.

use crate::upload::{UploadPhase, UploadSender, UploadTransmit};
use crate::vrm::StoredFile;
use bmsfw_vrm_wire::command::{ChunkCommand, StatusQuery};
use bmsfw_vrm_wire::preflight::{PREFLIGHT_JOB, PreflightCommand};
use bmsfw_vrm_wire::{
    ChunkData, Command, CommandId, PortalId, PreflightReport, PreflightVerdict, RpcCommand,
    RpcResponse, Status, Topic,
};
use serde::Serialize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The code a GX answers a command it does not know with (`COMMAND_INVALID`).
const COMMAND_INVALID: u32 = 712;
/// Most checks kept; the oldest ended one goes first.
const MAX_CHECKS: usize = 64;

/// What an installer's upload asks the GX to check.
#[derive(Debug, Clone)]
pub struct PreflightOrder {
    /// The installation.
    pub portal_id: PortalId,
    /// The battery's device instance.
    pub instance: u32,
    /// Who uploaded the file.
    pub user: String,
    /// The file.
    pub file: StoredFile,
}

/// Where a check stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PreflightPhase {
    /// The file is on its way to the GX.
    Sending,
    /// The GX has the file and its plugin is reading it.
    Checking,
    /// The file is for this battery and intact: the warnings and Update may follow.
    Passed,
    /// The file was refused; `error_code` and `error` say why.
    Refused,
    /// The GX cannot check files in advance (older software); it checks at Update.
    Unavailable,
}

impl PreflightPhase {
    /// Whether the check has ended.
    pub fn is_done(self) -> bool {
        !matches!(self, PreflightPhase::Sending | PreflightPhase::Checking)
    }
}

/// One check as the web layer shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PreflightView {
    /// The command id its replies carry.
    pub commandid: CommandId,
    /// The installation.
    pub portal_id: PortalId,
    /// The battery's device instance.
    pub instance: u32,
    /// Who uploaded the file.
    pub user: String,
    /// The file's SHA-256.
    pub sha256: String,
    /// Where the check stands.
    pub phase: PreflightPhase,
    /// Upload progress to the GX.
    pub percent: u8,
    /// The GX's answer, once there.
    pub report: Option<PreflightReport>,
    /// The refusal's code.
    pub error_code: Option<u32>,
    /// The refusal's message.
    pub error: Option<String>,
}

struct Check {
    view: PreflightView,
    upload: UploadSender,
    last_msgnr: u64,
    command: PreflightCommand,
}

impl Check {
    fn refuse(&mut self, code: Option<u32>, message: Option<String>) {
        self.view.phase = PreflightPhase::Refused;
        self.view.error_code = code;
        self.view.error = message;
    }

    fn apply(&mut self, reply: &RpcResponse) {
        let fb = &reply.feedback;
        self.upload.handle_feedback(fb, Instant::now());
        if let Some(p) = fb.percent {
            self.view.percent = self.view.percent.max(p);
        }
        if self.view.phase.is_done() {
            return;
        }
        if let Some(report) = &fb.preflight {
            match report.verdict {
                PreflightVerdict::Passed => self.view.phase = PreflightPhase::Passed,
                PreflightVerdict::Refused => {
                    self.refuse(report.code, report.message.clone());
                }
                PreflightVerdict::Unknown => {
                    self.view.phase = PreflightPhase::Unavailable;
                }
            }
            self.view.percent = 100;
            self.view.report = Some(report.clone());
            return;
        }
        match fb.status {
            Status::Error if reply.finished && fb.error_code == Some(COMMAND_INVALID) => {
                // An older GX: it does not know `preflight`.
                self.view.phase = PreflightPhase::Unavailable;
            }
            Status::Error => self.refuse(fb.error_code, fb.error.clone()),
            Status::WaitingForChunks if fb.first_missing.is_none() && fb.chunk.is_some() => {
                self.view.phase = PreflightPhase::Checking;
                self.view.percent = 100;
            }
            _ if reply.finished => {
                self.refuse(
                    None,
                    Some("the GX device ended the check without an answer".into()),
                );
            }
            _ => {}
        }
        if self.upload.phase() == UploadPhase::Failed && !self.view.phase.is_done() {
            self.refuse(fb.error_code, fb.error.clone());
        }
    }
}

/// The checks in progress and done, shared by the web layer and the MQTT driver.
#[derive(Clone, Default)]
pub struct Preflights {
    checks: Arc<Mutex<Vec<Check>>>,
}

impl std::fmt::Debug for Preflights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preflights").finish_non_exhaustive()
    }
}

impl Preflights {
    fn lock(&self) -> MutexGuard<'_, Vec<Check>> {
        self.checks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every check, oldest first.
    pub fn views(&self) -> Vec<PreflightView> {
        self.lock().iter().map(|c| c.view.clone()).collect()
    }

    /// The check of the file with `sha256` that `user` uploaded for battery `instance`.
    pub fn find(
        &self,
        user: &str,
        portal_id: &PortalId,
        instance: u32,
        sha256: &str,
    ) -> Option<PreflightView> {
        self.lock()
            .iter()
            .rev()
            .find(|c| {
                c.view.user == user
                    && &c.view.portal_id == portal_id
                    && c.view.instance == instance
                    && c.view.sha256 == sha256
            })
            .map(|c| c.view.clone())
    }

    /// Forgets the checks of `user` for battery `instance` (the file was removed or
    /// replaced).
    pub fn forget(&self, user: &str, portal_id: &PortalId, instance: u32) {
        self.lock().retain(|c| {
            !(c.view.user == user && &c.view.portal_id == portal_id && c.view.instance == instance)
        });
    }

    /// Starts following a check: the command to publish and its id.
    pub(crate) fn begin(
        &self,
        order: &PreflightOrder,
        battery: bmsfw_vrm_wire::Serial,
        id: CommandId,
        chunk_size: u32,
        window: usize,
        stall_timeout: Duration,
    ) -> RpcCommand {
        let command = PreflightCommand {
            battery,
            file_name: order.file.name.clone(),
            size: order.file.data.len() as u64,
            chunk_size,
            sha256: order.file.sha256,
        };
        let check = Check {
            view: PreflightView {
                commandid: id.clone(),
                portal_id: order.portal_id.clone(),
                instance: order.instance,
                user: order.user.clone(),
                sha256: order.file.sha256.to_string(),
                phase: PreflightPhase::Sending,
                percent: 0,
                report: None,
                error_code: None,
                error: None,
            },
            upload: UploadSender::new(
                Arc::clone(&order.file.data),
                chunk_size,
                window,
                stall_timeout,
                Instant::now(),
            ),
            last_msgnr: 0,
            command: command.clone(),
        };
        let mut checks = self.lock();
        // One check per user and battery: a new file replaces the old one.
        checks.retain(|c| {
            !(c.view.user == order.user
                && c.view.portal_id == order.portal_id
                && c.view.instance == order.instance)
        });
        if checks.len() >= MAX_CHECKS {
            let at = checks
                .iter()
                .position(|c| c.view.phase.is_done())
                .unwrap_or(0);
            checks.remove(at);
        }
        checks.push(check);
        RpcCommand {
            id,
            command: Command::Preflight(command),
        }
    }

    /// Takes a reply; true when it belonged to a check.
    pub(crate) fn apply_reply(&self, portal: &PortalId, reply: &RpcResponse) -> bool {
        let Some(id) = &reply.commandid else {
            return false;
        };
        let mut checks = self.lock();
        let Some(check) = checks
            .iter_mut()
            .find(|c| &c.view.commandid == id && &c.view.portal_id == portal)
        else {
            return false;
        };
        if reply.msgnr > check.last_msgnr {
            check.last_msgnr = reply.msgnr;
            check.apply(reply);
        }
        true
    }

    /// The messages the checks' uploads want to send now: (topic, payload).
    pub(crate) fn transmits(&self, now: Instant) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for c in self.lock().iter_mut() {
            if c.view.phase != PreflightPhase::Sending {
                continue;
            }
            while let Some(tx) = c.upload.poll_transmit(now) {
                let command = match tx {
                    UploadTransmit::Chunk { index, data } => match ChunkData::new(data) {
                        Ok(data) => Command::UploadChunk(ChunkCommand {
                            job: PREFLIGHT_JOB,
                            index,
                            data,
                        }),
                        Err(_) => break,
                    },
                    UploadTransmit::StatusQuery => {
                        Command::UploadStatus(StatusQuery { job: PREFLIGHT_JOB })
                    }
                };
                let rpc = RpcCommand {
                    id: c.view.commandid.clone(),
                    command,
                };
                let topic = Topic::RpcIn {
                    portal: c.view.portal_id.clone(),
                }
                .to_string();
                out.push((topic, rpc.encode()));
            }
        }
        out
    }

    /// The `preflight` commands of the checks not yet ended, to `only`'s GX (every GX when
    /// `None`), to send again after a reconnect or when the GX came back (the GX answers
    /// where the upload or the check stands, and starts again what it lost).
    pub(crate) fn resends(&self, only: Option<&PortalId>) -> Vec<(String, Vec<u8>)> {
        self.lock()
            .iter()
            // A check under way too: a GX that restarted while reading the file lost it.
            .filter(|c| !c.view.phase.is_done())
            .filter(|c| only.is_none_or(|p| *p == c.view.portal_id))
            .map(|c| {
                let topic = Topic::RpcIn {
                    portal: c.view.portal_id.clone(),
                }
                .to_string();
                let rpc = RpcCommand {
                    id: c.view.commandid.clone(),
                    command: Command::Preflight(c.command.clone()),
                };
                (topic, rpc.encode())
            })
            .collect()
    }

    /// When the next stalled upload wants to ask the GX where it stands.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.lock()
            .iter()
            .filter(|c| c.view.phase == PreflightPhase::Sending)
            .filter_map(|c| c.upload.poll_timeout())
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_vrm_wire::{Feedback, FileName, Serial};

    fn order() -> PreflightOrder {
        PreflightOrder {
            portal_id: PortalId::new("gx1").unwrap(),
            instance: 512,
            user: "installer".into(),
            file: StoredFile::new(FileName::new("a.bin").unwrap(), vec![7; 100]),
        }
    }

    fn reply(id: &CommandId, msgnr: u64, finished: bool, fb: Feedback) -> RpcResponse {
        RpcResponse {
            commandid: Some(id.clone()),
            msgnr,
            finished,
            feedback: fb,
        }
    }

    #[test]
    fn a_check_sends_its_chunks_and_takes_the_verdict() {
        let p = Preflights::default();
        let o = order();
        let id = CommandId::new("p-1").unwrap();
        let rpc = p.begin(
            &o,
            Serial::new("SN").unwrap(),
            id.clone(),
            64,
            4,
            Duration::from_secs(5),
        );
        assert_eq!(rpc.command.name(), "preflight");
        let portal = o.portal_id.clone();
        let ask = Feedback {
            first_missing: Some(0),
            job: Some(0),
            ..Feedback::new(Status::WaitingForChunks)
        };
        assert!(p.apply_reply(&portal, &reply(&id, 1, false, ask)));
        let sent = p.transmits(Instant::now());
        assert_eq!(sent.len(), 2, "100 bytes in chunks of 64");
        let view = p
            .find("installer", &portal, 512, &o.file.sha256.to_string())
            .unwrap();
        assert_eq!(view.phase, PreflightPhase::Sending);
        let refused = Feedback {
            preflight: Some(PreflightReport {
                verdict: PreflightVerdict::Refused,
                code: Some(761),
                message: Some("for another product".into()),
                battery: "AURORA PowerCore 10".into(),
                plugin: None,
                products: vec![],
                version_current: None,
                version_new: None,
                order: bmsfw_vrm_wire::VersionOrder::Unknown,
                integrity: bmsfw_vrm_wire::Integrity::Unknown,
                size: 100,
                image_size: None,
                estimate_seconds: None,
                units: vec![],
                unit_name: None,
                images: vec![],
                release_notes: None,
            }),
            ..Feedback::new(Status::Finished)
        };
        assert!(p.apply_reply(&portal, &reply(&id, 2, true, refused)));
        let view = p.views().pop().unwrap();
        assert_eq!(view.phase, PreflightPhase::Refused);
        assert_eq!(view.error_code, Some(761));
        // Not a check's reply.
        let other = CommandId::new("u-1").unwrap();
        assert!(!p.apply_reply(
            &portal,
            &reply(&other, 3, true, Feedback::new(Status::Finished))
        ));
    }

    #[test]
    fn an_older_gx_makes_the_check_unavailable() {
        let p = Preflights::default();
        let o = order();
        let id = CommandId::new("p-2").unwrap();
        p.begin(
            &o,
            Serial::new("SN").unwrap(),
            id.clone(),
            64,
            4,
            Duration::from_secs(5),
        );
        let unknown = Feedback::error(712, "unknown command \"preflight\"");
        p.apply_reply(&o.portal_id, &reply(&id, 1, true, unknown));
        assert_eq!(p.views()[0].phase, PreflightPhase::Unavailable);
        p.forget("installer", &o.portal_id, 512);
        assert!(p.views().is_empty());
    }
}
