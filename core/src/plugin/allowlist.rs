//! The allowlist: the plugin libraries approved to run on this GX device.
//!
//! Stands in for the manufacturer's approval and code review. One `[[plugin]]` entry per
//! approved library file, named by its SHA-256; see `docs/plugin-loading.md` for the
//! fields and `config/allowlist.toml` for a documented example.

use crate::dotted_version::DottedVersion;
use crate::staging::digest::Sha256Digest;
use crate::toml_file::{self, LoadError, TomlFileError};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Longest vendor id accepted.
pub const MAX_VENDOR_ID_LEN: usize = 64;

/// A vendor id: lowercase ASCII letters, digits, `.`, `-` and `_`, 1 to
/// [`MAX_VENDOR_ID_LEN`] characters, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct VendorId(String);

impl VendorId {
    /// Checks `s` and wraps it.
    pub fn new(s: &str) -> Result<VendorId, String> {
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c);
        if s.is_empty() || s.len() > MAX_VENDOR_ID_LEN {
            return Err(format!(
                "a vendor id has 1 to {MAX_VENDOR_ID_LEN} characters; got {}",
                s.chars().count()
            ));
        }
        if !s.chars().all(ok_char) || !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(format!(
                "vendor id {s:?} must be lowercase ASCII letters, digits, '.', '-' or '_', \
                 starting with a letter or digit"
            ));
        }
        Ok(VendorId(s.to_owned()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VendorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for VendorId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<VendorId, D::Error> {
        let s = String::deserialize(d)?;
        VendorId::new(&s).map_err(serde::de::Error::custom)
    }
}

/// The status of a review or a compliance test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalStatus {
    /// Completed successfully: the plugin may run.
    Passed,
    /// Not completed yet: the plugin may not run.
    Pending,
    /// Completed unsuccessfully: the plugin may not run.
    Failed,
}

impl fmt::Display for ApprovalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApprovalStatus::Passed => "passed",
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Failed => "failed",
        })
    }
}

/// A calendar date (TOML local date, `2025-03-14`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ApprovalDate(toml::value::Datetime);

impl ApprovalDate {
    /// The date `year-month-day`, or `None` when it is not a calendar date.
    pub fn new(year: u16, month: u8, day: u8) -> Option<ApprovalDate> {
        format!("{year:04}-{month:02}-{day:02}")
            .parse::<toml::value::Datetime>()
            .ok()
            .map(ApprovalDate)
    }
}

impl fmt::Display for ApprovalDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl<'de> Deserialize<'de> for ApprovalDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ApprovalDate, D::Error> {
        let dt = toml::value::Datetime::deserialize(d)?;
        if dt.date.is_none() || dt.time.is_some() || dt.offset.is_some() {
            return Err(serde::de::Error::custom(format!(
                "expected a date like 2025-03-14, got {dt}"
            )));
        }
        Ok(ApprovalDate(dt))
    }
}

/// A review or compliance-test record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// Whether it passed.
    pub status: ApprovalStatus,
    /// When the status was set.
    pub date: ApprovalDate,
    /// Who reviewed or tested, or the report's reference.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub by: String,
}

/// A product a plugin may update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovedProduct {
    /// The manufacturer string the battery sends (0x35E), compared exactly.
    pub manufacturer: String,
    /// Product codes (0x35F bytes 0-1) the approval covers; empty covers every product
    /// of the manufacturer.
    #[serde(default)]
    pub product_codes: Vec<u16>,
}

/// The firmware versions a plugin may update from, inclusive, as compared against the
/// plugin's own decoding of the battery's version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirmwareRange {
    /// The lowest battery firmware covered.
    pub from: DottedVersion,
    /// The highest battery firmware covered.
    pub to: DottedVersion,
}

impl FirmwareRange {
    /// Whether `comparable` (a plugin-decoded comparable version) is inside the range. The
    /// upper bound covers every more precise version it is a prefix of: `to = "1.10"`
    /// covers v1.10 build 02.
    pub fn contains(&self, comparable: &[u32]) -> bool {
        let to = self.to.parts();
        let upto = &comparable[..comparable.len().min(to.len())];
        comparable >= self.from.parts() && upto <= to
    }
}

/// One approved plugin library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AllowlistEntry {
    /// The vendor id the plugin must report.
    pub vendor_id: VendorId,
    /// The file name the library was approved under: the approved bytes load only under
    /// this name, and a file of that name with another hash is reported as tampered.
    pub file: String,
    /// SHA-256 of the library file.
    pub sha256: Sha256Digest,
    /// Plugin versions (as the plugin reports them) the approval covers.
    pub versions: semver::VersionReq,
    /// Products the plugin may update.
    pub products: Vec<ApprovedProduct>,
    /// Battery firmware versions the plugin may update from.
    pub firmware: FirmwareRange,
    /// The code review.
    pub review: Approval,
    /// The compliance test.
    pub compliance: Approval,
    /// Free text for integrators.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub notes: String,
}

impl AllowlistEntry {
    /// Whether the entry covers a battery of `manufacturer` with `product_code`.
    pub fn covers_product(&self, manufacturer: &str, product_code: Option<u16>) -> bool {
        self.products.iter().any(|p| {
            p.manufacturer == manufacturer
                && (p.product_codes.is_empty()
                    || product_code.is_some_and(|c| p.product_codes.contains(&c)))
        })
    }

    /// Whether both the review and the compliance test passed.
    pub fn is_approved(&self) -> bool {
        self.review.status == ApprovalStatus::Passed
            && self.compliance.status == ApprovalStatus::Passed
    }

    /// The entry as a ready-to-paste `[[plugin]]` block. Product codes are written in
    /// hex (`0xA520`), as vendors and the 0x35F frame give them.
    pub fn to_toml(&self) -> String {
        #[derive(Serialize)]
        struct One<'a> {
            plugin: [&'a AllowlistEntry; 1],
        }
        // Serializing plain data with string keys cannot fail.
        let text = toml::to_string(&One { plugin: [self] }).unwrap_or_default();
        let mut products = self.products.iter();
        text.lines()
            .map(|line| match line.strip_prefix("product_codes = ") {
                Some(_) => {
                    let codes = products
                        .next()
                        .map(|p| {
                            p.product_codes
                                .iter()
                                .map(|c| format!("0x{c:04X}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        })
                        .unwrap_or_default();
                    format!("product_codes = [{codes}]\n")
                }
                None => format!("{line}\n"),
            })
            .collect()
    }
}

/// An entry as written, with the spans cross-field checks need.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    vendor_id: VendorId,
    file: Spanned<String>,
    sha256: Spanned<Sha256Digest>,
    versions: semver::VersionReq,
    products: Spanned<Vec<ApprovedProduct>>,
    firmware: Spanned<FirmwareRange>,
    review: Approval,
    compliance: Approval,
    #[serde(default)]
    notes: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    plugin: Vec<RawEntry>,
}

/// The approved plugin libraries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    path: PathBuf,
    entries: Vec<AllowlistEntry>,
}

/// The verdict of the allowlist on a library file, before it is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vetting<'a> {
    /// The hash is approved and review and compliance passed.
    Approved(&'a AllowlistEntry),
    /// The hash is not in the allowlist.
    UnknownHash,
    /// The file name is in the allowlist with other hashes: the file changed since it
    /// was approved.
    Tampered {
        /// The hashes approved for that file name.
        expected: Vec<Sha256Digest>,
    },
    /// The hash is listed but the review or compliance test has not passed.
    NotPassed(&'a AllowlistEntry),
    /// The hash is approved, but under another file name (the entry's `file`): approved
    /// bytes load only under the name they were approved under.
    Misnamed(&'a AllowlistEntry),
}

impl Allowlist {
    /// Reads and checks the allowlist at `path`.
    pub fn load(path: &Path) -> Result<Allowlist, LoadError> {
        let text = toml_file::read(path)?;
        Ok(Allowlist::parse(path, &text)?)
    }

    /// Checks `text`, the content of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Allowlist, TomlFileError> {
        let raw: RawFile = toml_file::parse(path, text)?;
        let mut entries: Vec<AllowlistEntry> = Vec::with_capacity(raw.plugin.len());
        for r in raw.plugin {
            let at = |span: std::ops::Range<usize>, msg: String| {
                toml_file::error_at(path, text, span, msg)
            };
            if r.file.get_ref().is_empty()
                || r.file.get_ref().contains('/')
                || r.file.get_ref().len() > 255
            {
                return Err(at(
                    r.file.span(),
                    "file must be the library's file name alone (no directory), 1 to 255 bytes"
                        .into(),
                ));
            }
            if let Some(first) = entries.iter().find(|e| e.sha256 == *r.sha256.get_ref()) {
                return Err(at(
                    r.sha256.span(),
                    format!(
                        "sha256 {} is already listed (for {} {})",
                        r.sha256.get_ref(),
                        first.vendor_id,
                        first.file
                    ),
                ));
            }
            if r.products.get_ref().is_empty() {
                return Err(at(
                    r.products.span(),
                    "products must name at least one product".into(),
                ));
            }
            let fw = r.firmware.get_ref();
            if fw.from > fw.to {
                return Err(at(
                    r.firmware.span(),
                    format!(
                        "firmware range is empty: from {} is above to {}",
                        fw.from, fw.to
                    ),
                ));
            }
            entries.push(AllowlistEntry {
                vendor_id: r.vendor_id,
                file: r.file.into_inner(),
                sha256: r.sha256.into_inner(),
                versions: r.versions,
                products: r.products.into_inner(),
                firmware: r.firmware.into_inner(),
                review: r.review,
                compliance: r.compliance,
                notes: r.notes,
            });
        }
        Ok(Allowlist {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// The file the allowlist was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every entry, in file order.
    pub fn entries(&self) -> &[AllowlistEntry] {
        &self.entries
    }

    /// The entry approving `sha256`, if any.
    pub fn by_hash(&self, sha256: &Sha256Digest) -> Option<&AllowlistEntry> {
        self.entries.iter().find(|e| e.sha256 == *sha256)
    }

    /// The allowlist's verdict on a library file named `file_name` with hash `sha256`.
    /// Uses the file's name and bytes only: nothing is opened. Approved bytes are
    /// approved only under the entry's file name, compared exactly; bytes whose review or
    /// compliance test has not passed are [`Vetting::NotPassed`] under any name.
    pub fn vet(&self, file_name: &str, sha256: &Sha256Digest) -> Vetting<'_> {
        match self.by_hash(sha256) {
            Some(entry) if entry.is_approved() && entry.file != file_name => {
                Vetting::Misnamed(entry)
            }
            Some(entry) if entry.is_approved() => Vetting::Approved(entry),
            Some(entry) => Vetting::NotPassed(entry),
            None => {
                let expected: Vec<Sha256Digest> = self
                    .entries
                    .iter()
                    .filter(|e| e.file == file_name)
                    .map(|e| e.sha256)
                    .collect();
                if expected.is_empty() {
                    Vetting::UnknownHash
                } else {
                    Vetting::Tampered { expected }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
