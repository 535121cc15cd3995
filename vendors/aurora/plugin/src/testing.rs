//! Test support: packages laid out by hand from `PROTOCOL.md`, and readers over bytes.

use bmsfw_plugin_api::abi_stable::sabi_trait::TD_Opaque;
use bmsfw_plugin_api::abi_stable::std_types::{RResult, RSliceMut};
use bmsfw_plugin_api::{PackageReader, PackageSource, PackageSource_TO, SourceError};
use bmsfw_protocols::checksum::{crc32, sha256};
use std::sync::{Arc, Mutex};

/// Bytes served at most `chunk` at a time; the largest read asked for is noted.
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

/// A reader over bytes the test can still change (a file changed on disk after its
/// inspection).
pub fn shared_reader(bytes: Arc<Mutex<Vec<u8>>>) -> PackageReader {
    let source = Source {
        bytes,
        chunk: usize::MAX,
        largest_read: Arc::new(Mutex::new(0)),
    };
    PackageReader::new(PackageSource_TO::from_value(source, TD_Opaque))
}

/// A package laid out by hand, offset by offset, as `PROTOCOL.md` documents it, for
/// bootloader 2.0 and later.
pub fn package(product: u16, version: [u8; 2], image: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(b"AUFW"); // 0: magic
    p.extend_from_slice(&[0x01, 0x00]); // 4: header version 1
    p.extend_from_slice(&[0x40, 0x00]); // 6: header length 64
    p.extend_from_slice(&product.to_le_bytes()); // 8: product code
    p.extend_from_slice(&version); // 10: major, minor
    p.extend_from_slice(&[2, 0]); // 12: lowest bootloader 2.0
    p.extend_from_slice(&[0, 0]); // 14: flags
    p.extend_from_slice(&(image.len() as u32).to_le_bytes()); // 16: image length
    p.extend_from_slice(&crc32(image).to_le_bytes()); // 20: CRC-32
    p.extend_from_slice(&sha256(image)); // 24: SHA-256
    p.extend_from_slice(&[0; 4]); // 56: reserved
    let crc = crc32(&p);
    p.extend_from_slice(&crc.to_le_bytes()); // 60: header CRC
    assert_eq!(p.len(), 64);
    p.extend_from_slice(image);
    p
}

/// A test image of `len` bytes.
pub fn image(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}
