//! Coral bundles (`.crb`): a builder signing with the TEST key, ways to spoil a bundle,
//! and the check the master runs on a received bundle before it installs anything.
//!
//! Written from `PROTOCOL.md` section 7 alone, independently of the plugin's reader, so
//! that the two check each other.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `CRLB` |
//! | 4 | 1 | format version 1 |
//! | 5 | 1 | signing key id |
//! | 6 | 2 | manifest length `M` (LE) |
//! | 8 | `M` | manifest: product (LE), version (3, BE), `K`, reserved, `K` entries of 48 bytes |
//! | 8 + `M` | 64 | Ed25519 signature of bytes 0 to 7 + `M` |
//! | 72 + `M` | | the images |

use crate::key::{TEST_KEY_ID, TEST_PUBLIC_KEY, test_signing_key};
use bmsfw_protocols::checksum::sha256;
use bmsfw_protocols::signature::{PublicKey, Signature};
use ed25519_dalek::Signer;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng, SeedableRng};

/// The first four bytes.
pub const MAGIC: [u8; 4] = *b"CRLB";
/// Bytes of one manifest entry.
const ENTRY: usize = 48;

/// One image of a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    /// The hardware revision it is for.
    pub hw_revision: u8,
    /// Its version, `[major, minor, build]`.
    pub version: [u8; 3],
    /// Its bytes.
    pub bytes: Vec<u8>,
}

impl ImageSpec {
    /// An image of `len` pseudo-random bytes drawn from `seed` (firmware looks random on
    /// the bus).
    pub fn synthetic(hw_revision: u8, version: [u8; 3], len: usize, seed: u64) -> ImageSpec {
        ImageSpec {
            hw_revision,
            version,
            bytes: synthetic_bytes(len, seed),
        }
    }
}

/// `len` pseudo-random bytes drawn from `seed`.
pub fn synthetic_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut bytes = vec![0u8; len];
    rng.fill_bytes(&mut bytes);
    bytes
}

/// What goes into a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleSpec {
    /// The product it is for.
    pub product_code: u16,
    /// The master's image (its version is the bundle's).
    pub master: ImageSpec,
    /// One image per module hardware revision, in increasing revision order.
    pub modules: Vec<ImageSpec>,
}

impl BundleSpec {
    /// A bundle for `product_code` whose master image of `version`, for hardware revision
    /// `master_hw`, is `master_len` bytes drawn from `seed`; no module images yet.
    pub fn new(
        product_code: u16,
        version: [u8; 3],
        master_hw: u8,
        master_len: usize,
        seed: u64,
    ) -> BundleSpec {
        BundleSpec {
            product_code,
            master: ImageSpec::synthetic(master_hw, version, master_len, seed),
            modules: Vec::new(),
        }
    }

    /// Adds one module image of `version` and `len` bytes for each hardware revision of
    /// `hws`, each drawn from its own seed.
    pub fn with_modules(mut self, version: [u8; 3], hws: &[u8], len: usize) -> BundleSpec {
        let seed = u64::from(self.master.bytes.first().copied().unwrap_or(0));
        for &hw in hws {
            self.modules.push(ImageSpec::synthetic(
                hw,
                version,
                len,
                seed ^ (u64::from(hw) << 32) ^ 0xC0_4A1,
            ));
        }
        self
    }

    fn images(&self) -> impl Iterator<Item = (u8, &ImageSpec)> {
        std::iter::once((0u8, &self.master)).chain(self.modules.iter().map(|m| (1u8, m)))
    }
}

/// The manifest of `spec`.
fn manifest(spec: &BundleSpec) -> Vec<u8> {
    let count = 1 + spec.modules.len();
    let mut m = Vec::with_capacity(8 + ENTRY * count);
    m.extend_from_slice(&spec.product_code.to_le_bytes());
    m.extend_from_slice(&spec.master.version);
    m.push(u8::try_from(count).unwrap_or(u8::MAX));
    m.extend_from_slice(&[0, 0]);
    for (target, image) in spec.images() {
        m.push(target);
        m.push(image.hw_revision);
        m.extend_from_slice(&image.version);
        m.extend_from_slice(&[0; 3]);
        let len = u32::try_from(image.bytes.len()).unwrap_or(u32::MAX);
        m.extend_from_slice(&len.to_le_bytes());
        m.extend_from_slice(&[0; 4]);
        m.extend_from_slice(&sha256(&image.bytes));
    }
    m
}

/// The bundle file of `spec`, signed with the TEST key.
pub fn build(spec: &BundleSpec) -> Vec<u8> {
    let m = manifest(spec);
    let mut file = Vec::new();
    file.extend_from_slice(&MAGIC);
    file.push(1);
    file.push(TEST_KEY_ID);
    file.extend_from_slice(&u16::try_from(m.len()).unwrap_or(u16::MAX).to_le_bytes());
    file.extend_from_slice(&m);
    let signature = test_signing_key().sign(&file);
    file.extend_from_slice(&signature.to_bytes());
    for (_, image) in spec.images() {
        file.extend_from_slice(&image.bytes);
    }
    file
}

/// Ways to spoil a bundle, for tests of whoever reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// One bit of the signature flipped.
    BadSignature,
    /// The image of entry `entry` replaced by other bytes of the same length; the signed
    /// manifest is untouched (it still names the original's SHA-256).
    SwapImage {
        /// The manifest entry (0 is the master image).
        entry: usize,
    },
    /// The file ends after `len` bytes.
    Truncate {
        /// Bytes kept.
        len: usize,
    },
}

/// Where image `entry` of `bundle` lies, from its manifest.
pub fn image_range(bundle: &[u8], entry: usize) -> Option<std::ops::Range<usize>> {
    let m_len = usize::from(u16::from_le_bytes([*bundle.get(6)?, *bundle.get(7)?]));
    let m = bundle.get(8..8 + m_len)?;
    let count = usize::from(*m.get(5)?);
    let mut at = 8 + m_len + 64;
    for i in 0..count {
        let e = 8 + ENTRY * i;
        let len = u32::from_le_bytes(m.get(e + 8..e + 12)?.try_into().ok()?) as usize;
        if i == entry {
            return Some(at..at + len);
        }
        at += len;
    }
    None
}

/// `bundle` spoiled by `corruption`.
pub fn corrupt(bundle: &[u8], corruption: Corruption) -> Vec<u8> {
    let mut b = bundle.to_vec();
    match corruption {
        Corruption::BadSignature => {
            let m_len = bundle
                .get(6..8)
                .map_or(0, |l| usize::from(u16::from_le_bytes([l[0], l[1]])));
            if let Some(byte) = b.get_mut(8 + m_len + 17) {
                *byte ^= 0x04;
            }
        }
        Corruption::SwapImage { entry } => {
            if let Some(range) = image_range(bundle, entry).filter(|r| r.end <= b.len()) {
                let other = synthetic_bytes(range.len(), 0xBAD0_0000 + entry as u64);
                b[range].copy_from_slice(&other);
            }
        }
        Corruption::Truncate { len } => b.truncate(len),
    }
    b
}

/// Why the master refuses a received bundle: the check's code and its detail byte
/// (`PROTOCOL.md` section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bundle check failed with code 0x{code:02X} (detail {detail})")]
pub struct CheckError {
    /// `20` to `25`.
    pub code: u8,
    /// The image entry or module concerned.
    pub detail: u8,
}

/// A module image of a checked bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedImage {
    /// Hardware revision.
    pub hw_revision: u8,
    /// Version.
    pub version: [u8; 3],
    /// Offset in the bundle.
    pub offset: usize,
    /// Length.
    pub len: usize,
}

/// A bundle that passed the master's check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedBundle {
    /// The bundle's (the master image's) version.
    pub version: [u8; 3],
    /// The master image.
    pub master: CheckedImage,
    /// The module images.
    pub modules: Vec<CheckedImage>,
}

impl CheckedBundle {
    /// The image for modules of hardware revision `hw`.
    pub fn module_image(&self, hw: u8) -> Option<&CheckedImage> {
        self.modules.iter().find(|m| m.hw_revision == hw)
    }
}

fn fail(code: u8, detail: u8) -> CheckError {
    CheckError { code, detail }
}

/// The master's check (`PROTOCOL.md` section 6, step 5): layout, signature, every image's
/// SHA-256, the product, an image for each module's hardware revision, the master image's
/// revision.
pub fn check(
    bundle: &[u8],
    product_code: u16,
    master_hw: u8,
    module_hws: &[u8],
) -> Result<CheckedBundle, CheckError> {
    let layout = || fail(crate::protocol::code::LAYOUT, 0);
    let head = bundle.get(0..8).ok_or_else(layout)?;
    if head[0..4] != MAGIC || head[4] != 1 {
        return Err(layout());
    }
    let m_len = usize::from(u16::from_le_bytes([head[6], head[7]]));
    if m_len < 8 + ENTRY || (m_len - 8) % ENTRY != 0 {
        return Err(layout());
    }
    let m = bundle.get(8..8 + m_len).ok_or_else(layout)?;
    let sig: [u8; 64] = bundle
        .get(8 + m_len..8 + m_len + 64)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(layout)?;
    let signature_failed = || fail(crate::protocol::code::SIGNATURE, 0);
    if head[5] != TEST_KEY_ID {
        return Err(signature_failed());
    }
    let key = PublicKey::from_bytes(&TEST_PUBLIC_KEY).map_err(|_| signature_failed())?;
    key.verify(&bundle[..8 + m_len], &Signature::from_bytes(&sig))
        .map_err(|_| signature_failed())?;
    let count = usize::from(m[5]);
    if count == 0 || m_len != 8 + ENTRY * count {
        return Err(layout());
    }
    let mut at = 8 + m_len + 64;
    let mut images = Vec::with_capacity(count);
    for i in 0..count {
        let e = &m[8 + ENTRY * i..8 + ENTRY * (i + 1)];
        let len = u32::from_le_bytes([e[8], e[9], e[10], e[11]]) as usize;
        if (e[0] == 0) != (i == 0) || e[0] > 1 || len == 0 {
            return Err(layout());
        }
        let bytes = bundle.get(at..at + len).ok_or_else(layout)?;
        if sha256(bytes) != e[16..48] {
            return Err(fail(crate::protocol::code::IMAGE_HASH, i as u8));
        }
        images.push(CheckedImage {
            hw_revision: e[1],
            version: [e[2], e[3], e[4]],
            offset: at,
            len,
        });
        at += len;
    }
    if at != bundle.len() {
        return Err(layout());
    }
    if u16::from_le_bytes([m[0], m[1]]) != product_code {
        return Err(fail(crate::protocol::code::PRODUCT, 0));
    }
    let master = images.remove(0);
    for (i, hw) in module_hws.iter().enumerate() {
        if !images.iter().any(|m| m.hw_revision == *hw) {
            return Err(fail(crate::protocol::code::MODULE_REVISION, (i + 1) as u8));
        }
    }
    if master.hw_revision != master_hw {
        return Err(fail(crate::protocol::code::MASTER_REVISION, 0));
    }
    Ok(CheckedBundle {
        version: [m[2], m[3], m[4]],
        master,
        modules: images,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::code;

    fn sample() -> (BundleSpec, Vec<u8>) {
        let spec = BundleSpec::new(0xC0A1, [1, 0x10, 0xFF], 2, 3000, 9).with_modules(
            [2, 4, 1],
            &[1, 3],
            1000,
        );
        let b = build(&spec);
        (spec, b)
    }

    #[test]
    fn a_built_bundle_has_the_documented_layout_and_passes_the_check() {
        let (spec, b) = sample();
        let m_len = 8 + 48 * 3;
        assert_eq!(b.len(), 8 + m_len + 64 + 5000);
        assert_eq!(&b[0..4], b"CRLB");
        assert_eq!(b[4..8], [1, 0x01, m_len as u8, 0]);
        assert_eq!(b[8..10], [0xA1, 0xC0]);
        assert_eq!(b[10..13], [1, 0x10, 0xFF], "version big-endian");
        assert_eq!(b[13..16], [3, 0, 0]);
        assert_eq!(b[16..18], [0, 2], "entry 0: the master, revision 2");
        assert_eq!(b[16 + 8..16 + 12], 3000u32.to_le_bytes());
        assert_eq!(b[16 + 16..16 + 48], sha256(&spec.master.bytes));
        assert_eq!(b[16 + 48..16 + 50], [1, 1], "entry 1: a module, revision 1");
        assert_eq!(
            image_range(&b, 0),
            Some(8 + m_len + 64..8 + m_len + 64 + 3000)
        );
        assert_eq!(&b[image_range(&b, 2).unwrap()], &spec.modules[1].bytes[..]);
        let c = check(&b, 0xC0A1, 2, &[1, 3, 3, 1]).unwrap();
        assert_eq!(c.version, [1, 0x10, 0xFF]);
        assert_eq!(c.module_image(3).unwrap().len, 1000);
        assert!(c.module_image(2).is_none());
    }

    #[test]
    fn each_check_fails_with_its_code() {
        let (_, b) = sample();
        let check_all = |b: &[u8]| check(b, 0xC0A1, 2, &[1, 3]);
        assert_eq!(
            check_all(&corrupt(&b, Corruption::BadSignature)),
            Err(fail(code::SIGNATURE, 0))
        );
        assert_eq!(
            check_all(&corrupt(&b, Corruption::SwapImage { entry: 2 })),
            Err(fail(code::IMAGE_HASH, 2))
        );
        assert_eq!(
            check_all(&corrupt(&b, Corruption::Truncate { len: b.len() - 1 })),
            Err(fail(code::LAYOUT, 0))
        );
        assert_eq!(check(&b, 0xC0A2, 2, &[1]), Err(fail(code::PRODUCT, 0)));
        assert_eq!(
            check(&b, 0xC0A1, 2, &[1, 2]),
            Err(fail(code::MODULE_REVISION, 2))
        );
        assert_eq!(
            check(&b, 0xC0A1, 1, &[1]),
            Err(fail(code::MASTER_REVISION, 0))
        );
        // Corrupting past the end changes nothing rather than panicking.
        assert_eq!(corrupt(&b, Corruption::SwapImage { entry: 9 }), b);
        assert_eq!(corrupt(&[1, 2], Corruption::BadSignature), vec![1, 2]);
    }

    proptest::proptest! {
        #[test]
        fn the_check_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = check(&bytes, 0xC0A1, 2, &[1]);
        }
    }
}
