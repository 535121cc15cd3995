//! The battery a conformance session updates, and hostile identities and version bytes.

use crate::plugin::{BatteryMatch, PackageSummary, VendorPlugin};
use bmsfw_plugin_api::BatteryIdentity;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// Firmware bytes (0x35F bytes 2-3) tried in turn: the package's own version bytes,
/// reversed, then high values in the common encodings (BCD, little- and big-endian).
fn firmware_candidates(summary: &PackageSummary) -> Vec<[u8; 2]> {
    let raw = &summary.version.raw;
    let mut out = Vec::new();
    if let [a, b, ..] = raw[..] {
        out.push([a, b]);
        out.push([b, a]);
    }
    if let [_, b, c] = raw[..] {
        out.push([b, c]);
        out.push([c, b]);
    }
    out.extend([
        [0x99, 0x99],
        [0x10, 0x01],
        [0x01, 0x10],
        [0x09, 0x09],
        [0xFF, 0xFF],
    ]);
    out.dedup();
    out
}

/// The 0x35F payload of a battery of `product_code` running `firmware`: 100 Ah, and in
/// bytes 6-7 the first node of a bank of one (`01 01`), which protocols that address
/// nodes read and others ignore.
fn product_info(product_code: u16, firmware: [u8; 2], with_nodes: bool) -> Vec<u8> {
    let [p0, p1] = product_code.to_le_bytes();
    let mut raw = vec![p0, p1, firmware[0], firmware[1], 100, 0];
    if with_nodes {
        raw.extend([1, 1]);
    }
    raw
}

/// A battery of the package's targets that the plugin calls updatable, built from the
/// targets' manufacturer and product code and the firmware candidates; or every answer
/// the plugin gave, for the report.
pub fn plausible_battery(
    plugin: &dyn VendorPlugin,
    summary: &PackageSummary,
) -> Result<BatteryIdentity, Vec<String>> {
    let mut answers = Vec::new();
    for target in &summary.targets {
        let codes: Vec<Option<u16>> = match target.product_code {
            Some(c) => vec![Some(c)],
            None => vec![None],
        };
        for code in codes {
            for firmware in firmware_candidates(summary) {
                for with_nodes in [false, true] {
                    let mut battery = BatteryIdentity::new(target.manufacturer.clone())
                        .with_capacity_ah(100)
                        .with_modules(1, 0);
                    if let Some(code) = code {
                        battery = battery.with_raw_35f(&product_info(code, firmware, with_nodes));
                    }
                    match plugin.match_battery(&battery) {
                        Ok(BatteryMatch::Updatable) => return Ok(battery),
                        Ok(BatteryMatch::MineNotUpdatable { reason }) => {
                            answers.push(format!("{}: {reason}", target.manufacturer))
                        }
                        Ok(BatteryMatch::NotMine) => {
                            answers.push(format!("{}: not its battery", target.manufacturer))
                        }
                        Err(f) => answers.push(format!("{}: {f}", target.manufacturer)),
                    }
                }
            }
        }
    }
    answers.dedup();
    Err(answers)
}

/// Identities a hostile or confused bus could produce: empty fields, random and long
/// strings, random 0x35F payloads, under `manufacturers` (the package's) and random ones.
pub fn hostile_identities(
    manufacturers: &[String],
    seed: u64,
    count: usize,
) -> Vec<BatteryIdentity> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x001D_E471);
    let mut out = vec![BatteryIdentity::new("")];
    for i in 0..count {
        let manufacturer = match manufacturers.get(i % manufacturers.len().max(1)) {
            Some(m) if rng.random_bool(0.5) => m.clone(),
            _ => random_text(&mut rng, 0..=64),
        };
        let mut b = BatteryIdentity::new(manufacturer).with_bms_name(random_text(&mut rng, 0..=32));
        let mut raw = [0u8; 8];
        let n = rng.random_range(0..=8);
        rng.fill(&mut raw[..n]);
        b = b.with_raw_35f(&raw[..n]);
        if rng.random_bool(0.5) {
            b = b.with_modules(rng.random(), rng.random());
        }
        if rng.random_bool(0.5) {
            b = b.with_serial(random_text(&mut rng, 0..=32));
        }
        if rng.random_bool(0.3) {
            b = b.with_product_code(rng.random());
        }
        out.push(b);
    }
    out
}

/// Raw version bytes: empty, then random of 1 to 16 bytes.
pub fn hostile_versions(seed: u64, count: usize) -> Vec<Vec<u8>> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x7E25);
    let mut out = vec![Vec::new(), vec![0xFF; 2], vec![0x00; 2]];
    for _ in 0..count {
        let mut v = vec![0u8; rng.random_range(1..=16)];
        rng.fill(&mut v[..]);
        out.push(v);
    }
    out
}

fn random_text(rng: &mut Xoshiro256PlusPlus, len: std::ops::RangeInclusive<usize>) -> String {
    let n = rng.random_range(len);
    (0..n)
        .map(|_| char::from_u32(rng.random_range(0..0x800)).unwrap_or('?'))
        .collect()
}
