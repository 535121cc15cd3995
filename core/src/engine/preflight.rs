//! The pre-flight check of a firmware file, before any update: the file arrives in chunks
//! into the staging area (no job, no gates), then the battery's plugin inspects it and the
//! engine compares it with the battery: product, version, signature or checksums, size.
//! A file that passes stays staged, so the update that follows needs no upload.

use super::Shared;
use super::battery::{self, PluginChoice};
use super::stage;
use crate::errors::codes;
use crate::plugin::types::Signature;
use crate::plugin::{DecodedVersion, FilePackage, PluginInspector, VendorPlugin, VersionOrder};
use crate::staging::{
    AcceptedPackage, ChunkOutcome, InspectionFailure, PackageCandidate, PackageInspector,
    Sha256Digest, StagingError, Upload,
};
use crate::vrm::{ChunkReceipt, EngineRefusal, PreflightRequest, UploadStatus};
use bmsfw_vrm_wire::{Integrity, PreflightReport, PreflightVerdict, WireVersion};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

/// Most pre-flight uploads open at once; the oldest is dropped beyond (its partial file
/// stays on disk and resumes when the portal asks again).
const MAX_OPEN: usize = 8;

fn refusal(e: &StagingError) -> EngineRefusal {
    EngineRefusal::new(e.code(), e.to_string())
}

fn no_upload(sha256: &Sha256Digest) -> EngineRefusal {
    EngineRefusal::new(
        codes::UPDATE_NOT_FOUND,
        format!("no pre-flight upload of the file {sha256} is open on this GX device"),
    )
}

fn status_of(upload: &Upload) -> UploadStatus {
    UploadStatus {
        job: crate::job::JobId(0),
        first_missing: upload.first_missing(),
        received_bytes: upload.received_bytes(),
        percent: upload.progress(),
    }
}

fn wire(v: &DecodedVersion) -> WireVersion {
    crate::vrm::values::wire_version(&battery::version_info(v))
}

/// The battery with serial number `serial`, on the bus it is on.
fn find_battery<'a>(
    shared: &'a Shared,
    serial: &str,
) -> Result<(&'a super::bus::Bus, crate::job::BatteryIdentity), EngineRefusal> {
    shared
        .buses
        .iter()
        .find_map(|bus| {
            let core = bus.lock();
            let state = core.monitor.battery()?;
            let identity = battery::job_identity(state, &bus.name);
            (identity.serial == serial).then_some((bus, identity))
        })
        .ok_or_else(|| {
            EngineRefusal::new(
                codes::BATTERY_NOT_FOUND,
                format!(
                    "no battery with serial number {serial:?} is communicating on this GX device"
                ),
            )
        })
}

pub(crate) fn begin(shared: &Shared, req: PreflightRequest) -> Result<UploadStatus, EngineRefusal> {
    find_battery(shared, &req.battery_serial)?;
    let sha256 = req.package.sha256();
    let mut open = shared
        .preflights
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some((_, upload)) = open.iter().find(|(s, _)| *s == sha256) {
        return Ok(status_of(upload));
    }
    let uploading =
        shared.jobs.lock().jobs().any(|r| {
            r.state() == crate::job::JobState::Uploading && r.package().sha256() == sha256
        });
    if uploading {
        return Err(EngineRefusal::new(
            codes::UPDATE_ALREADY_RUNNING,
            "an update is uploading this very file; check it once that upload has ended",
        ));
    }
    let upload = shared
        .staging
        .begin(&req.package)
        .map_err(|e| refusal(&e))?;
    let status = status_of(&upload);
    if open.len() >= MAX_OPEN {
        open.remove(0);
    }
    open.push((sha256, upload));
    Ok(status)
}

pub(crate) fn chunk(
    shared: &Shared,
    sha256: Sha256Digest,
    index: u32,
    bytes: &[u8],
) -> Result<ChunkReceipt, EngineRefusal> {
    let mut open = shared
        .preflights
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let (_, upload) = open
        .iter_mut()
        .find(|(s, _)| *s == sha256)
        .ok_or_else(|| no_upload(&sha256))?;
    let outcome: ChunkOutcome = upload.accept_chunk(index, bytes).map_err(|e| refusal(&e))?;
    Ok(ChunkReceipt {
        outcome,
        status: status_of(upload),
    })
}

pub(crate) fn status(shared: &Shared, sha256: Sha256Digest) -> Result<UploadStatus, EngineRefusal> {
    let open = shared
        .preflights
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    open.iter()
        .find(|(s, _)| *s == sha256)
        .map(|(_, u)| status_of(u))
        .ok_or_else(|| no_upload(&sha256))
}

/// Asks the battery's plugin; when it cannot read the file at all, asks the other plugins
/// whose file it is, so the installer hears "this is a file for another battery" instead
/// of "damaged file".
struct PreflightInspector {
    own: PluginInspector,
    others: Vec<Arc<dyn VendorPlugin>>,
    battery: String,
}

impl PackageInspector for PreflightInspector {
    fn inspect(
        &self,
        candidate: &PackageCandidate<'_>,
    ) -> Result<AcceptedPackage, InspectionFailure> {
        let refused = match self.own.inspect(candidate) {
            Ok(accepted) => return Ok(accepted),
            Err(e) => e,
        };
        if refused.code != codes::PACKAGE_INVALID && refused.code != codes::NO_MATCHING_PLUGIN {
            return Err(refused);
        }
        for other in &self.others {
            let Ok(package) = FilePackage::open(candidate.path) else {
                break;
            };
            if let Ok(summary) = other.inspect_package(Arc::new(package)) {
                let targets: Vec<String> = summary
                    .targets
                    .iter()
                    .map(|t| t.manufacturer.clone())
                    .collect();
                let whose = if targets.is_empty() {
                    other.info().name.clone()
                } else {
                    targets.join(", ")
                };
                return Err(InspectionFailure {
                    code: codes::PACKAGE_WRONG_PRODUCT,
                    message: format!(
                        "{} is a firmware file for {whose} batteries ({}, version {}), not for \
                         the {}",
                        candidate.file_name,
                        other.info().name,
                        summary.version.display,
                        self.battery
                    ),
                });
            }
        }
        Err(refused)
    }
}

fn refused(
    base: PreflightReport,
    code: u32,
    message: impl Into<String>,
) -> Result<PreflightReport, EngineRefusal> {
    Ok(PreflightReport {
        verdict: PreflightVerdict::Refused,
        code: Some(code),
        message: Some(message.into()),
        ..base
    })
}

pub(crate) fn finish(
    shared: &Shared,
    serial: &str,
    sha256: Sha256Digest,
) -> Result<PreflightReport, EngineRefusal> {
    let (bus, identity) = find_battery(shared, serial)?;
    let upload = {
        let mut open = shared
            .preflights
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let at = open
            .iter()
            .position(|(s, _)| *s == sha256)
            .ok_or_else(|| no_upload(&sha256))?;
        if let Some(first_missing) = open[at].1.first_missing() {
            let e = StagingError::Incomplete {
                first_missing,
                chunk_count: open[at].1.announcement().chunk_count(),
            };
            return Err(refusal(&e));
        }
        open.remove(at).1
    };
    let size = upload.announcement().size();
    let name = format!("{} {}", identity.manufacturer, identity.model);
    let (choice, installed_bytes, units) = {
        let core = bus.lock();
        let state = core.monitor.battery().ok_or_else(|| {
            EngineRefusal::new(codes::GATE_NOT_COMMUNICATING, "the battery left the bus")
        })?;
        let online = state.identity().modules.map_or(0, |m| m.online);
        (
            shared.choose_plugin(state),
            state.identity().firmware_bytes(),
            online,
        )
    };
    let base = PreflightReport {
        verdict: PreflightVerdict::Passed,
        code: None,
        message: None,
        battery: name.clone(),
        plugin: None,
        products: Vec::new(),
        version_current: None,
        version_new: None,
        order: bmsfw_vrm_wire::VersionOrder::Unknown,
        integrity: Integrity::Unknown,
        size,
        image_size: None,
        estimate_seconds: None,
        units: if units >= 2 {
            (1..=units).collect()
        } else {
            Vec::new()
        },
        unit_name: None,
        images: Vec::new(),
        release_notes: None,
    };
    let index = match choice {
        PluginChoice::Updatable(i) => i,
        PluginChoice::NotSupported { code, reason } => {
            // The file cannot be for a battery no plugin updates; it is not kept.
            drop(upload);
            return refused(base, code, reason);
        }
    };
    let plugin = &shared.plugins[index];
    let installed = installed_bytes.and_then(|b| plugin.plugin.decode_version(&b).ok());
    let base = PreflightReport {
        plugin: Some(plugin.plugin.info().name.clone()),
        version_current: installed.as_ref().map(wire),
        ..base
    };
    let inspector = PreflightInspector {
        own: PluginInspector::new(plugin.plugin.clone()),
        others: shared
            .plugins
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .map(|(_, p)| p.plugin.clone())
            .collect(),
        battery: name,
    };
    let staged = match upload.finish(&inspector) {
        Ok(staged) => staged,
        Err(StagingError::Rejected { code, message }) => return refused(base, code, message),
        Err(
            e @ (StagingError::DigestMismatch { .. } | StagingError::StagedPackageDamaged { .. }),
        ) => {
            return refused(base, e.code(), e.to_string());
        }
        Err(e) => return Err(refusal(&e)),
    };
    let Some(summary) = inspector.own.accepted_summary() else {
        return Err(EngineRefusal::new(
            codes::STAGING_STORAGE_ERROR,
            "the plugin's answer about the file was lost",
        ));
    };
    tracing::info!(%sha256, size = staged.size(), version = %summary.version.display, "pre-flight: file staged");
    let order = match &installed {
        Some(v) => match summary.version.order_against(v) {
            VersionOrder::Newer => bmsfw_vrm_wire::VersionOrder::Newer,
            VersionOrder::Older => bmsfw_vrm_wire::VersionOrder::Older,
            VersionOrder::Same | VersionOrder::SameAsFarAsShown => {
                bmsfw_vrm_wire::VersionOrder::Same
            }
        },
        None => bmsfw_vrm_wire::VersionOrder::Unknown,
    };
    let copies = if summary.modules.is_empty() {
        base.units.len().max(1) as u64
    } else {
        1
    };
    let wire_seconds = crate::driver::wire_time(
        summary.image_size.saturating_mul(copies),
        bus.bitrate,
        shared.config.stage2.budget_percent,
    );
    // The bus time is the least a transfer takes; handshakes, the BMS's flash writes, the
    // restart and the confirmation add to it.
    let estimate = wire_seconds * 3 + Duration::from_secs(10);
    let report = PreflightReport {
        products: summary
            .targets
            .iter()
            .map(|t| match t.product_code {
                Some(c) => format!("{} {c:#06x}", t.manufacturer),
                None => t.manufacturer.clone(),
            })
            .collect(),
        version_new: Some(wire(&summary.version)),
        order,
        integrity: match summary.signature {
            Signature::Valid => Integrity::Signed,
            _ => Integrity::Checksum,
        },
        image_size: Some(summary.image_size),
        estimate_seconds: Some(estimate.as_secs()),
        // The plugin names a pack's images ("module, hardware revision 2"); a battery of
        // several units with one image for all is a bank of BMS nodes.
        unit_name: (!base.units.is_empty()).then(|| {
            summary
                .modules
                .iter()
                .filter_map(|m| m.kind.split([',', ' ']).next())
                .find(|w| !w.is_empty() && *w != "master")
                .map_or_else(|| "node".to_owned(), str::to_lowercase)
        }),
        images: summary
            .modules
            .iter()
            .map(|m| bmsfw_vrm_wire::preflight::PreflightImage {
                index: m.index,
                name: m.kind.clone(),
                version: wire(&m.version),
            })
            .collect(),
        ..base
    };
    {
        let core = bus.lock();
        if let Err(wrong) = stage::check_product(&core, &summary) {
            return refused(report, wrong.code, wrong.message);
        }
    }
    if !plugin.entry.firmware.contains(&summary.version.comparable) {
        let message = format!(
            "version {} is outside the versions approved for remote updates of this battery \
             ({} to {})",
            summary.version.display, plugin.entry.firmware.from, plugin.entry.firmware.to
        );
        return refused(report, codes::GATE_TARGET_NOT_APPROVED, message);
    }
    Ok(report)
}
