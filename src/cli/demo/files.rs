//! The demo's folder: the plugin directory, the allowlist approving exactly those
//! libraries, the GX configuration, the sample firmware files.

use super::vendors::{DemoVendor, Sample, VENDORS};
use anyhow::{Context, bail};
use bmsfw_core::plugin::allowlist::{Approval, ApprovalDate, ApprovedProduct, FirmwareRange};
use bmsfw_core::plugin::{AllowlistEntry, ApprovalStatus, Sha256Digest, VendorId};
use bmsfw_sim::site::SiteDescription;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The file name of a package's plugin library on this platform.
pub(crate) fn library_name(package: &str) -> String {
    format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        package.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    )
}

/// Where the vendor plugin libraries are: `dir` when given, else the directory of this
/// executable (where Cargo puts the workspace's libraries). Under `cargo run` missing
/// libraries are built first, with the profile of this executable.
pub fn locate_plugins(dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => std::env::current_exe()
            .context("finding this executable")?
            .parent()
            .context("this executable has no directory")?
            .to_path_buf(),
    };
    let missing = |dir: &Path| -> Vec<&'static DemoVendor> {
        VENDORS
            .iter()
            .filter(|v| !dir.join(library_name(v.package)).is_file())
            .collect()
    };
    let first = missing(&dir);
    if first.is_empty() {
        return Ok(dir);
    }
    // `cargo run` tells its program where cargo is; build the plugins it did not.
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut cmd = Command::new(cargo);
        cmd.current_dir(env!("CARGO_MANIFEST_DIR")).arg("build");
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        for v in &first {
            cmd.arg("-p").arg(v.package);
        }
        outln!("building the vendor plugins ({})", names(&first));
        let status = cmd
            .status()
            .context("running cargo to build the vendor plugins")?;
        if !status.success() {
            bail!("building the vendor plugins failed ({status})");
        }
    }
    let still = missing(&dir);
    if !still.is_empty() {
        bail!(
            "the plugin libraries of {} are not in {}: build them with `cargo build --release --workspace`, or give their directory with --plugins",
            names(&still),
            dir.display()
        );
    }
    Ok(dir)
}

fn names(vendors: &[&DemoVendor]) -> String {
    vendors
        .iter()
        .map(|v| v.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The approval the demo gives a shipped vendor's library, as an integrator would write
/// it after `bmsfw plugin check` and a conformance run.
fn approval(v: &DemoVendor, file: String, sha256: Sha256Digest) -> anyhow::Result<AllowlistEntry> {
    let passed = Approval {
        status: ApprovalStatus::Passed,
        date: ApprovalDate::new(2026, 1, 15).context("the demo's approval date")?,
        by: "bmsfw demo".into(),
    };
    Ok(AllowlistEntry {
        vendor_id: VendorId::new(v.vendor_id).map_err(anyhow::Error::msg)?,
        file,
        sha256,
        versions: "^1.0".parse()?,
        products: vec![ApprovedProduct {
            manufacturer: v.manufacturer.into(),
            product_codes: v.product_codes.to_vec(),
        }],
        firmware: FirmwareRange {
            from: v.firmware.0.parse()?,
            to: v.firmware.1.parse()?,
        },
        review: passed.clone(),
        compliance: passed,
        notes: "approved for the demo".into(),
    })
}

/// Copies every shipped vendor's library from `from` into `dir/plugins` and writes
/// `dir/allowlist.toml` approving exactly those bytes. Returns the lines to print, one
/// per library.
pub fn install_plugins(from: &Path, dir: &Path) -> anyhow::Result<Vec<String>> {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).with_context(|| format!("creating {}", plugins.display()))?;
    let mut allowlist = String::from(
        "# The allowlist of the demo GX: written by `bmsfw demo` for the libraries it\n\
         # copied into plugins/, each approved by its SHA-256.\n",
    );
    let mut lines = Vec::new();
    for v in VENDORS {
        let name = library_name(v.package);
        let bytes = std::fs::read(from.join(&name))
            .with_context(|| format!("reading {}", from.join(&name).display()))?;
        std::fs::write(plugins.join(&name), &bytes)
            .with_context(|| format!("writing {}", plugins.join(&name).display()))?;
        let sha = Sha256Digest::of(&bytes);
        allowlist.push('\n');
        allowlist.push_str(&approval(v, name.clone(), sha)?.to_toml());
        lines.push(format!("{:<8} {name}  sha256 {sha}", v.name));
    }
    let path = dir.join("allowlist.toml");
    std::fs::write(&path, allowlist).with_context(|| format!("writing {}", path.display()))?;
    Ok(lines)
}

/// The demo's CA certificate, in its folder.
pub const MQTT_CA: &str = "mqtt-ca.pem";
/// The demo GX's MQTT credentials, in its folder.
pub const GX_CREDENTIALS: &str = "gx-mqtt.toml";

/// Writes `dir/gx.toml`: the GX of installation `portal_id` with one simulated interface
/// per bus of `site`, the plugins and allowlist of `dir`, VRM access Full.
pub fn write_gx_config(
    dir: &Path,
    portal_id: &str,
    site: &SiteDescription,
    broker: &bmsfw_vrm_wire::BrokerAddr,
    venus: &bmsfw_vrm_wire::BrokerAddr,
) -> anyhow::Result<PathBuf> {
    let mut text = format!(
        r#"# The demo GX: written by `bmsfw demo`. Paths are relative to this file.
portal_id = "{portal_id}"
state_dir = "state"

[plugins]
dir = "plugins"
allowlist = "allowlist.toml"

[staging]
dir = "staging"
min_free_bytes = 16777216

[mqtt]
broker = "{broker}"
{security}
# The site's state comes live from the simulated Venus OS, on a broker of its own as on
# a GX device.
[site]
source = "venus"
broker = "{venus_host}:{venus_port}"
refresh_seconds = 2
stale_after_seconds = 10
"#,
        security = if broker.tls {
            format!("ca = \"{MQTT_CA}\"\ncredentials = \"{GX_CREDENTIALS}\"\n")
        } else {
            String::new()
        },
        venus_host = venus.host,
        venus_port = venus.port,
    );
    for bus in &site.buses {
        write!(
            text,
            "\n[[can]]\nname = \"{}\"\nbackend = \"sim\"\n",
            bus.name.get_ref()
        )?;
    }
    let path = dir.join("gx.toml");
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Writes `sample` into `dir/firmware`; returns its path.
pub fn write_sample(dir: &Path, sample: &Sample) -> anyhow::Result<PathBuf> {
    let firmware = dir.join("firmware");
    std::fs::create_dir_all(&firmware)
        .with_context(|| format!("creating {}", firmware.display()))?;
    let path = firmware.join(&sample.file_name);
    std::fs::write(&path, &sample.bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
