//! How the matching vendor plugin looks at a received package.

use crate::job::identity::VersionInfo;
use crate::staging::digest::Sha256Digest;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A complete package whose digest matched, handed to its plugin before it is staged.
#[derive(Debug, Clone, Copy)]
pub struct PackageCandidate<'a> {
    /// Where the bytes are (read-only for the inspector).
    pub path: &'a Path,
    /// The installer's file name.
    pub file_name: &'a str,
    /// Exact size in bytes.
    pub size: u64,
    /// Verified SHA-256 of the bytes.
    pub sha256: Sha256Digest,
}

/// Whether the package carries a signature its plugin verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureStatus {
    /// Signed, and the signature verified.
    Verified,
    /// The format has no signature (integrity rests on checksums and the BMS's own checks).
    Unsigned,
}

/// One image inside a package for packs whose modules update one by one behind one BMS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleImage {
    /// The module's name or position as the plugin names it.
    pub name: String,
    /// The image's firmware version.
    pub version: VersionInfo,
    /// Image size in bytes.
    pub size: u64,
}

/// What the plugin found in a package it accepts: the engine's copy of the plugin's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedPackage {
    /// The plugin's vendor id.
    pub vendor: String,
    /// Product identifiers the package targets.
    pub products: Vec<String>,
    /// The firmware version the package installs.
    pub version: VersionInfo,
    /// Signature status.
    pub signature: SignatureStatus,
    /// Per-module images (empty for single-image packages).
    pub modules: Vec<ModuleImage>,
}

/// Why an inspector refused a package: a catalogue code (760 invalid, 761 wrong product, 762
/// signature, 707 no plugin reads it, or a vendor code) and a message for the installer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("code {code}: {message}")]
pub struct InspectionFailure {
    /// The stable code.
    pub code: u32,
    /// The explanation.
    pub message: String,
}

/// Parses and judges a received package. The plugin layer implements it with the plugin
/// that matches the job's battery.
pub trait PackageInspector {
    /// Accepts the package with its contents, or refuses it with a code.
    fn inspect(
        &self,
        candidate: &PackageCandidate<'_>,
    ) -> Result<AcceptedPackage, InspectionFailure>;
}
