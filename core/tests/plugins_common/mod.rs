//! Shared helpers of the plugin loader tests: fixture libraries in a temporary plugin
//! directory and allowlists written as TOML, parsed by the real parser.

#![allow(dead_code)]

use bmsfw_core::plugin::{Allowlist, PluginLoader, Sha256Digest};
use std::path::{Path, PathBuf};

/// An allowlist entry to write.
pub struct Approve<'a> {
    pub file: &'a Path,
    pub vendor_id: &'a str,
    pub versions: &'a str,
    pub review: &'a str,
    pub compliance: &'a str,
}

impl<'a> Approve<'a> {
    /// Approves `file` for `vendor_id`, any version, review and compliance passed.
    pub fn new(file: &'a Path, vendor_id: &'a str) -> Approve<'a> {
        Approve {
            file,
            vendor_id,
            versions: "*",
            review: "passed",
            compliance: "passed",
        }
    }
}

/// The TOML entry approving `a` (hashing the file as it is now).
pub fn entry(a: &Approve<'_>) -> String {
    let bytes = std::fs::read(a.file).unwrap();
    format!(
        r#"
[[plugin]]
vendor_id = "{vendor}"
file = "{file}"
sha256 = "{hash}"
versions = "{versions}"
firmware = {{ from = "0.0", to = "255.255" }}

[[plugin.products]]
manufacturer = "ANY"

[plugin.review]
status = "{review}"
date = 2025-03-14

[plugin.compliance]
status = "{compliance}"
date = 2025-03-20
"#,
        vendor = a.vendor_id,
        file = a.file.file_name().unwrap().to_string_lossy(),
        hash = Sha256Digest::of(&bytes),
        versions = a.versions,
        review = a.review,
        compliance = a.compliance,
    )
}

/// An allowlist of `entries`, parsed from TOML.
pub fn allowlist(entries: &[Approve<'_>]) -> Allowlist {
    let text: String = entries.iter().map(entry).collect();
    Allowlist::parse(Path::new("test-allowlist.toml"), &text).unwrap()
}

/// A loader for `entries`.
pub fn loader(entries: &[Approve<'_>]) -> PluginLoader {
    PluginLoader::new(allowlist(entries))
}

/// Copies fixture `name` into `dir` as `file_name`; returns the copy's path.
pub fn install(dir: &Path, name: &str, file_name: &str) -> PathBuf {
    let to = dir.join(file_name);
    std::fs::copy(bmsfw_test_fixtures::library(name), &to).unwrap();
    to
}
