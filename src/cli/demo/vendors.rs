//! The vendors whose plugin and simulated BMS ship with bmsfw, as the demo needs them: the
//! plugin library's package, the allowlist entry an integrator would write for it, and a
//! sample firmware file one version newer than what a simulated battery runs.
//!
//! This, like the registry of simulated BMS models, is composition: the engine and the
//! portal never name a vendor.

use anyhow::{Context, bail};
use bmsfw_sim::site::SiteBattery;

/// A sample firmware file for one battery.
pub struct Sample {
    /// The file's name, as the installer uploads it.
    pub file_name: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// The version it installs, as the vendor's plugin shows it.
    pub version: String,
    /// What the battery's flash holds once the file is installed, as
    /// [`crate::campaign::truth`] reads it: the package (Aurora), the image (Boreal), the
    /// master's version (Coral).
    pub installed: Vec<u8>,
}

/// What the demo knows of one shipped vendor.
pub struct DemoVendor {
    /// The `vendor` of site files.
    pub name: &'static str,
    /// The Cargo package of its plugin library.
    pub package: &'static str,
    /// The vendor id the plugin reports.
    pub vendor_id: &'static str,
    /// The manufacturer its batteries send in 0x35E.
    pub manufacturer: &'static str,
    /// Its product codes (0x35F bytes 0-1).
    pub product_codes: &'static [u16],
    /// The battery firmware range the approval covers, as the plugin decodes versions.
    pub firmware: (&'static str, &'static str),
    /// A sample firmware file for `battery`, newer than what it runs, with an image of
    /// the given size in bytes.
    pub sample: fn(&SiteBattery, usize) -> anyhow::Result<Sample>,
}

/// The shipped vendors.
pub const VENDORS: &[DemoVendor] = &[
    DemoVendor {
        name: "aurora",
        package: "bmsfw-vendor-aurora",
        vendor_id: "com.aurora-energy.powercore",
        manufacturer: "AURORA",
        product_codes: &[0xA510, 0xA520, 0xA530],
        firmware: ("4.0", "4.254"),
        sample: aurora_sample,
    },
    DemoVendor {
        name: "boreal",
        package: "bmsfw-vendor-boreal",
        vendor_id: "com.boreal-batteries.taiga",
        manufacturer: "BOREAL",
        product_codes: &[0xB205, 0xB210],
        firmware: ("2.0", "9.98"),
        sample: boreal_sample,
    },
    DemoVendor {
        name: "coral",
        package: "bmsfw-vendor-coral",
        vendor_id: "com.coral-cells.reefstack",
        manufacturer: "CORAL",
        product_codes: &[0xC0A1, 0xC0A2],
        firmware: ("1.4", "9.254"),
        sample: coral_sample,
    },
    DemoVendor {
        name: "template",
        package: "bmsfw-vendor-template",
        vendor_id: "com.example.acme",
        manufacturer: "ACME",
        product_codes: &[0xAC05, 0xAC10],
        firmware: ("1.0", "1.254"),
        sample: template_sample,
    },
];

/// The shipped vendor named `name` in site files.
pub fn vendor(name: &str) -> Option<&'static DemoVendor> {
    VENDORS.iter().find(|v| v.name == name)
}

/// Bytes of the demo's Aurora and Boreal sample images, and of each Coral image.
pub const IMAGE_BYTES: usize = 48 * 1024;

fn seed(battery: &SiteBattery) -> u64 {
    battery
        .name
        .bytes()
        .fold(0xB35F_D3E0_u64, |h, b| h.rotate_left(7) ^ u64::from(b))
}

fn slug(battery: &SiteBattery) -> String {
    battery
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// Aurora: 0x35F bytes 2-3 are major and minor in binary; the package is Aurora's
/// binary format.
fn aurora_sample(battery: &SiteBattery, image_bytes: usize) -> anyhow::Result<Sample> {
    let [major, minor] = battery.config.identity.firmware;
    let Some(next) = minor.checked_add(1) else {
        bail!(
            "{}: firmware {major}.{minor} has no next minor version",
            battery.name
        );
    };
    let spec = aurora_sim::package::PackageSpec::new(
        battery.config.identity.product_code,
        [major, next],
        image_bytes,
        seed(battery),
    );
    let bytes = aurora_sim::package::build(&spec);
    Ok(Sample {
        file_name: format!("{}-aurora-{major}.{next}.bin", slug(battery)),
        installed: bytes.clone(),
        bytes,
        version: format!("v{major}.{next}"),
    })
}

/// Template (the Acme BMS a vendor starts from): 0x35F bytes 2-3 are major and minor in
/// binary, as Aurora's; the package is the template's signed-checksum format.
fn template_sample(battery: &SiteBattery, image_bytes: usize) -> anyhow::Result<Sample> {
    let [major, minor] = battery.config.identity.firmware;
    let Some(next) = minor.checked_add(1) else {
        bail!(
            "{}: firmware {major}.{minor} has no next minor version",
            battery.name
        );
    };
    let spec = template_sim::package::PackageSpec::new(
        battery.config.identity.product_code,
        [major, next],
        image_bytes,
        seed(battery),
    );
    let bytes = template_sim::package::build(&spec);
    Ok(Sample {
        file_name: format!("{}-acme-{major}.{next}.bin", slug(battery)),
        installed: bytes.clone(),
        bytes,
        version: format!("v{major}.{next}"),
    })
}

/// The BCD byte after `b`, when there is one.
fn bcd_next(b: u8) -> Option<u8> {
    let (tens, ones) = (b >> 4, b & 0x0F);
    match (tens, ones) {
        (t, o) if t > 9 || o > 9 => None,
        (9, 9) => None,
        (t, 9) => Some((t + 1) << 4),
        (t, o) => Some((t << 4) | (o + 1)),
    }
}

/// Boreal: 0x35F bytes 2-3 are BCD (`02 15` is 2.15); the package is an Intel HEX file
/// every node of the bank takes.
fn boreal_sample(battery: &SiteBattery, image_bytes: usize) -> anyhow::Result<Sample> {
    let [major, minor] = battery.config.identity.firmware;
    let next = bcd_next(minor).with_context(|| {
        format!(
            "{}: firmware {major:02X}.{minor:02X} is not BCD or has no next minor version",
            battery.name
        )
    })?;
    let spec = boreal_sim::package::PackageSpec::new(
        battery.config.identity.product_code,
        [major, next],
        image_bytes,
        seed(battery),
    );
    let (bytes, image) = boreal_sim::package::build(&spec);
    Ok(Sample {
        file_name: format!("{}-boreal-{major:X}.{next:02X}.hex", slug(battery)),
        bytes,
        version: format!("{major:X}.{next:02X}"),
        installed: image,
    })
}

/// Coral: 0x35F bytes 2-3 are a 16-bit little-endian `0xMMmm`, shown in hex (`0F 01` is
/// v1.0F); the package is a bundle
/// signed with the Coral TEST key, with one image for the master and one for the modules
/// (hardware revision 1, as the simulated modules are).
fn coral_sample(battery: &SiteBattery, image_bytes: usize) -> anyhow::Result<Sample> {
    let [minor, major] = battery.config.identity.firmware;
    let Some(next) = minor.checked_add(1) else {
        bail!(
            "{}: firmware {major}.{minor} has no next minor version",
            battery.name
        );
    };
    let spec = coral_sim::bundle::BundleSpec::new(
        battery.config.identity.product_code,
        [major, next, 0],
        2,
        image_bytes,
        seed(battery),
    )
    .with_modules([2, 4, 1], &[1], image_bytes / 3);
    Ok(Sample {
        file_name: format!("{}-coral-{major}.{next:02X}.crb", slug(battery)),
        bytes: coral_sim::bundle::build(&spec),
        version: format!("v{major}.{next:02X}"),
        installed: vec![major, next, 0],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcd_counts_like_decimal_and_refuses_what_is_not_bcd() {
        assert_eq!(bcd_next(0x10), Some(0x11));
        assert_eq!(bcd_next(0x19), Some(0x20));
        assert_eq!(bcd_next(0x99), None);
        assert_eq!(bcd_next(0x1A), None);
        assert_eq!(bcd_next(0xA0), None);
    }
}
