//! Test support: bundles laid out by hand from `PROTOCOL.md` and signed with the TEST key,
//! and readers over bytes.

use bmsfw_plugin_api::abi_stable::sabi_trait::TD_Opaque;
use bmsfw_plugin_api::abi_stable::std_types::{RResult, RSliceMut};
use bmsfw_plugin_api::{PackageReader, PackageSource, PackageSource_TO, SourceError};
use bmsfw_protocols::checksum::sha256;
use ed25519_dalek::Signer;
use std::sync::{Arc, Mutex};

/// Bytes served at most `chunk` at a time.
struct Source {
    bytes: Arc<Mutex<Vec<u8>>>,
    chunk: usize,
    largest_read: Arc<Mutex<usize>>,
}

impl PackageSource for Source {
    fn len(&self) -> u64 {
        self.bytes.lock().unwrap().len() as u64
    }
    fn read_at(&self, offset: u64, mut buf: RSliceMut<'_, u8>) -> RResult<usize, SourceError> {
        let mut largest = self.largest_read.lock().unwrap();
        *largest = (*largest).max(buf.len());
        let bytes = self.bytes.lock().unwrap();
        let start = (offset as usize).min(bytes.len());
        let n = buf.len().min(bytes.len() - start).min(self.chunk);
        buf[..n].copy_from_slice(&bytes[start..start + n]);
        RResult::ROk(n)
    }
}

/// A reader over `bytes` handing out at most `chunk` bytes a read, and the size of the
/// largest read asked of it.
pub fn reader_with(bytes: Vec<u8>, chunk: usize) -> (PackageReader, Arc<Mutex<usize>>) {
    let largest = Arc::new(Mutex::new(0));
    let source = Source {
        bytes: Arc::new(Mutex::new(bytes)),
        chunk,
        largest_read: largest.clone(),
    };
    (
        PackageReader::new(PackageSource_TO::from_value(source, TD_Opaque)),
        largest,
    )
}

/// A reader over `bytes`.
pub fn reader(bytes: Vec<u8>) -> PackageReader {
    reader_with(bytes, usize::MAX).0
}

/// The TEST key's seed, from `PROTOCOL.md` section 11.
pub fn test_signing_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&sha256(
        b"Coral ReefStack TEST signing key - never use for production firmware",
    ))
}

/// One image of a hand-made bundle: target (0 master, 1 module), hardware revision,
/// version, bytes.
pub struct Image {
    pub target: u8,
    pub hw: u8,
    pub version: [u8; 3],
    pub bytes: Vec<u8>,
}

/// A test image of `len` bytes drawn from `seed`.
pub fn image_bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(u32::from(seed) % 31) as u8
                ^ seed
        })
        .collect()
}

/// A bundle laid out offset by offset as `PROTOCOL.md` section 7 documents it, signed with
/// key id `key_id` by `key`.
pub fn bundle_signed(
    product: u16,
    version: [u8; 3],
    images: &[Image],
    key_id: u8,
    key: &ed25519_dalek::SigningKey,
) -> Vec<u8> {
    let mut manifest = Vec::new();
    manifest.extend_from_slice(&product.to_le_bytes()); // 0: product code
    manifest.extend_from_slice(&version); // 2: version, big-endian
    manifest.push(images.len() as u8); // 5: image count
    manifest.extend_from_slice(&[0, 0]); // 6: reserved
    for image in images {
        manifest.push(image.target); // 0: target
        manifest.push(image.hw); // 1: hardware revision
        manifest.extend_from_slice(&image.version); // 2: version
        manifest.extend_from_slice(&[0; 3]); // 5: reserved
        manifest.extend_from_slice(&(image.bytes.len() as u32).to_le_bytes()); // 8: length
        manifest.extend_from_slice(&[0; 4]); // 12: reserved
        manifest.extend_from_slice(&sha256(&image.bytes)); // 16: SHA-256
    }
    let mut file = Vec::new();
    file.extend_from_slice(b"CRLB"); // 0: magic
    file.push(1); // 4: format version
    file.push(key_id); // 5: key id
    file.extend_from_slice(&(manifest.len() as u16).to_le_bytes()); // 6: manifest length
    file.extend_from_slice(&manifest);
    let signature = key.sign(&file);
    file.extend_from_slice(&signature.to_bytes());
    for image in images {
        file.extend_from_slice(&image.bytes);
    }
    file
}

/// `file` (a bundle signed with the TEST key) with `bytes` written at `at` in its header or
/// manifest and signed again: a manifest Coral got wrong but signed all the same.
pub fn resigned(mut file: Vec<u8>, at: usize, bytes: &[u8]) -> Vec<u8> {
    file[at..at + bytes.len()].copy_from_slice(bytes);
    let signed = 8 + usize::from(u16::from_le_bytes([file[6], file[7]]));
    let signature = test_signing_key().sign(&file[..signed]);
    file[signed..signed + 64].copy_from_slice(&signature.to_bytes());
    file
}

/// A bundle signed with the TEST key.
pub fn bundle(product: u16, version: [u8; 3], images: &[Image]) -> Vec<u8> {
    bundle_signed(product, version, images, 0x01, &test_signing_key())
}

/// A ReefStack 48 bundle of v1.10 (build FF): a master image for hardware revision 2 of
/// `master_len` bytes and module images for revisions 1 and 3 of `module_len` bytes.
pub fn sample_bundle(master_len: usize, module_len: usize) -> Vec<u8> {
    bundle(
        0xC0A1,
        [1, 0x10, 0xFF],
        &[
            Image {
                target: 0,
                hw: 2,
                version: [1, 0x10, 0xFF],
                bytes: image_bytes(master_len, 1),
            },
            Image {
                target: 1,
                hw: 1,
                version: [2, 0x04, 0x01],
                bytes: image_bytes(module_len, 2),
            },
            Image {
                target: 1,
                hw: 3,
                version: [2, 0x04, 0x07],
                bytes: image_bytes(module_len, 3),
            },
        ],
    )
}
