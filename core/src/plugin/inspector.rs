//! Stage 1's package inspection, answered by a loaded plugin.

use super::host::{FilePackage, PackageRead, VendorPlugin};
use super::types::{DecodedVersion, PackagePlace, PackageSummary, Signature};
use crate::errors::codes;
use crate::job::identity::VersionInfo;
use crate::staging::{
    AcceptedPackage, InspectionFailure, ModuleImage, PackageCandidate, PackageInspector,
    SignatureStatus,
};
use bmsfw_plugin_api::ErrorCode;
use std::sync::{Arc, Mutex, PoisonError};

/// A [`PackageInspector`] that asks one vendor plugin: the staging area hands it each
/// complete package whose digest matched, before the package is accepted.
pub struct PluginInspector {
    plugin: Arc<dyn VendorPlugin>,
    accepted: Mutex<Option<PackageSummary>>,
}

impl PluginInspector {
    /// Inspects packages with `plugin`.
    pub fn new(plugin: Arc<dyn VendorPlugin>) -> PluginInspector {
        PluginInspector {
            plugin,
            accepted: Mutex::new(None),
        }
    }

    /// The plugin's complete answer about the last package it accepted (targets with
    /// product codes, comparable version, image size and digest): what the engine's
    /// version gates and product check need beyond [`AcceptedPackage`].
    pub fn accepted_summary(&self) -> Option<PackageSummary> {
        self.accepted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn version_info(v: DecodedVersion) -> VersionInfo {
    VersionInfo {
        raw: v.raw,
        display: v.display,
    }
}

impl PackageInspector for PluginInspector {
    fn inspect(
        &self,
        candidate: &PackageCandidate<'_>,
    ) -> Result<AcceptedPackage, InspectionFailure> {
        let package = FilePackage::open(candidate.path).map_err(|e| InspectionFailure {
            code: codes::STAGING_STORAGE_ERROR,
            message: format!(
                "cannot open the stored package {}: {e}",
                candidate.file_name
            ),
        })?;
        if package.len() != candidate.size {
            return Err(InspectionFailure {
                code: codes::STAGED_PACKAGE_DAMAGED,
                message: format!(
                    "the stored package {} is {} bytes, {} were received",
                    candidate.file_name,
                    package.len(),
                    candidate.size
                ),
            });
        }
        let summary = self
            .plugin
            .inspect_package(Arc::new(package))
            .map_err(|r| InspectionFailure {
                code: r.code.get(),
                message: match r.place {
                    PackagePlace::Unknown => r.message,
                    place => format!("{} (at {place})", r.message),
                },
            })?;
        let signature = match summary.signature {
            Signature::Valid => SignatureStatus::Verified,
            Signature::Unsigned => SignatureStatus::Unsigned,
            Signature::Invalid => {
                return Err(InspectionFailure {
                    code: ErrorCode::SIGNATURE_INVALID.get(),
                    message: format!("the signature of {} does not verify", candidate.file_name),
                });
            }
        };
        *self.accepted.lock().unwrap_or_else(PoisonError::into_inner) = Some(summary.clone());
        Ok(AcceptedPackage {
            vendor: self.plugin.info().vendor_id.to_string(),
            products: summary
                .targets
                .iter()
                .map(|t| match t.product_code {
                    Some(code) => format!("{} {code:#06x}", t.manufacturer),
                    None => t.manufacturer.clone(),
                })
                .collect(),
            version: version_info(summary.version),
            signature,
            modules: summary
                .modules
                .into_iter()
                .map(|m| ModuleImage {
                    name: format!("{} {}", m.kind, m.index),
                    version: version_info(m.version),
                    size: m.size,
                })
                .collect(),
        })
    }
}
