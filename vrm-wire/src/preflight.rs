//! The pre-flight check of a firmware file: as soon as the installer has chosen a file, the
//! portal sends it to the GX's staging area and the GX has the battery's plugin inspect it,
//! before any warning is confirmed and before Update.
//!
//! The command `preflight` announces the file (like `update`, without acknowledgements or
//! options); its chunks travel as `uploadchunk` with `job: 0` under the pre-flight's
//! `commandid`, and `uploadstatus` with `job: 0` asks where it stands. The last reply is
//! `finished` with a [`PreflightReport`] (the file passed, or was refused with a code), or
//! `error` when the check could not run (no such battery, an impossible announcement, a
//! damaged upload). A package that passed stays staged on the GX, so the `update` that
//! follows with the same SHA-256 needs no chunks.
//!
//! Every enumeration here reads a value it does not know as `unknown`: a portal older than
//! the GX shows "unknown" instead of failing to read the reply.

use crate::event::WireVersion;
use crate::fields::{FileName, Serial, Sha256Hex};
use serde::{Deserialize, Serialize};

/// The `job` that chunks and status queries of a pre-flight carry (jobs count from 1).
pub const PREFLIGHT_JOB: u64 = 0;

/// `preflight`: check this file for battery `battery` before any update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreflightCommand {
    /// The battery's serial number.
    pub battery: Serial,
    /// The installer's file name.
    pub file_name: FileName,
    /// Exact size in bytes (1 to 4 GiB; the GX applies its own, lower limit).
    #[serde(deserialize_with = "crate::command::de_size")]
    pub size: u64,
    /// Fixed chunk size of the upload.
    #[serde(deserialize_with = "crate::command::de_chunk_size")]
    pub chunk_size: u32,
    /// SHA-256 of the whole file.
    pub sha256: Sha256Hex,
}

impl PreflightCommand {
    /// Number of chunks of the file.
    pub fn chunk_count(&self) -> u64 {
        self.size.div_ceil(u64::from(self.chunk_size))
    }
}

/// Whether the file may go on to the warnings and Update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreflightVerdict {
    /// Meant for this battery, readable, intact: the installer may go on.
    Passed,
    /// Refused: `code` and `message` say why.
    Refused,
    /// A verdict this portal does not know (a newer GX).
    #[serde(other)]
    Unknown,
}

/// How the file's version compares with the battery's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionOrder {
    /// Newer than the battery runs.
    Newer,
    /// The version the battery runs (as far as the battery shows it).
    Same,
    /// Older than the battery runs.
    Older,
    /// Not known (the battery's version is not readable), or a value this portal does not
    /// know.
    #[serde(other)]
    Unknown,
}

/// What vouches for the file's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Integrity {
    /// A signature the plugin verified against the manufacturer's key.
    Signed,
    /// The format has no signature; its checksums verified.
    Checksum,
    /// A value this portal does not know.
    #[serde(other)]
    Unknown,
}

/// One image of a package for a node or module behind the BMS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreflightImage {
    /// The node or module number.
    pub index: u16,
    /// What the plugin says the image is for (e.g. `module, hardware revision 2`).
    pub name: String,
    /// The image's version.
    pub version: WireVersion,
}

/// The GX's answer about a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreflightReport {
    /// Passed or refused.
    pub verdict: PreflightVerdict,
    /// For a refusal: the catalogue code (e.g. 760 invalid file, 761 another product).
    #[serde(default)]
    pub code: Option<u32>,
    /// For a refusal: the complete message.
    #[serde(default)]
    pub message: Option<String>,
    /// The battery as the GX names it: manufacturer and model, e.g. `AURORA PowerCore 10`.
    pub battery: String,
    /// The plugin that read the file (its name for people).
    #[serde(default)]
    pub plugin: Option<String>,
    /// The products the file is meant for, as the plugin read them.
    #[serde(default)]
    pub products: Vec<String>,
    /// The firmware the battery runs.
    #[serde(default)]
    pub version_current: Option<WireVersion>,
    /// The firmware the file installs.
    #[serde(default)]
    pub version_new: Option<WireVersion>,
    /// How the two compare.
    pub order: VersionOrder,
    /// Signature or checksums.
    pub integrity: Integrity,
    /// The file's size in bytes.
    pub size: u64,
    /// The firmware image's size in bytes (what crosses the CAN bus).
    #[serde(default)]
    pub image_size: Option<u64>,
    /// An estimate of the update's duration, in seconds, from the image's size and the
    /// bus share the GX grants the transfer.
    #[serde(default)]
    pub estimate_seconds: Option<u64>,
    /// The node ids or module numbers of the battery, when it has several the installer
    /// may choose from.
    #[serde(default)]
    pub units: Vec<u16>,
    /// What one of them is called, lowercase and singular (`node`, `module`).
    #[serde(default)]
    pub unit_name: Option<String>,
    /// The images per node or module, for packages that carry several.
    #[serde(default)]
    pub images: Vec<PreflightImage>,
    /// The manufacturer's release notes, when the file carries them.
    #[serde(default)]
    pub release_notes: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_values_from_a_newer_gx_read_as_unknown() {
        let v = json!({
            "verdict": "needs_second_opinion",
            "battery": "AURORA PowerCore 10",
            "order": "sideways",
            "integrity": "quantum",
            "size": 10,
            "something_new": true,
        });
        let r: PreflightReport = serde_json::from_value(v).unwrap();
        assert_eq!(r.verdict, PreflightVerdict::Unknown);
        assert_eq!(r.order, VersionOrder::Unknown);
        assert_eq!(r.integrity, Integrity::Unknown);
        assert_eq!(r.release_notes, None);
    }

    #[test]
    fn a_report_round_trips() {
        let r = PreflightReport {
            verdict: PreflightVerdict::Passed,
            code: None,
            message: None,
            battery: "AURORA PowerCore 10".into(),
            plugin: Some("Aurora PowerCore".into()),
            products: vec!["AURORA 0xa520".into()],
            version_current: Some(WireVersion {
                raw: "040f".into(),
                display: "v4.15".into(),
            }),
            version_new: Some(WireVersion {
                raw: "0410".into(),
                display: "v4.16".into(),
            }),
            order: VersionOrder::Newer,
            integrity: Integrity::Checksum,
            size: 20_000,
            image_size: Some(19_000),
            estimate_seconds: Some(12),
            units: vec![],
            unit_name: None,
            images: vec![],
            release_notes: Some("Fixes the balancing at low temperature.".into()),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["order"], "newer");
        assert_eq!(v["integrity"], "checksum");
        assert_eq!(serde_json::from_value::<PreflightReport>(v).unwrap(), r);
    }
}
