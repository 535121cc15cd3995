//! Test support: packages laid out by hand from `PROTOCOL.md`, and readers over bytes.

use bmsfw_plugin_api::PackageReader;
use bmsfw_protocols::checksum::crc32;
use bmsfw_protocols::package::memory_reader;

/// A reader over `bytes` handing out at most `chunk` bytes a read.
pub fn reader_with(bytes: Vec<u8>, chunk: usize) -> PackageReader {
    memory_reader(bytes, chunk)
}

/// A reader over `bytes`.
pub fn reader(bytes: Vec<u8>) -> PackageReader {
    reader_with(bytes, usize::MAX)
}

/// A package laid out by hand, offset by offset, as `PROTOCOL.md` documents it.
pub fn package(product: u16, version: [u8; 2], image: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(b"ACFW"); // 0: magic
    p.push(1); // 4: header format
    p.push(0); // 5: reserved
    p.extend_from_slice(&product.to_le_bytes()); // 6: product code
    p.extend_from_slice(&version); // 8: major, minor
    p.extend_from_slice(&[0, 0]); // 10: reserved
    p.extend_from_slice(&(image.len() as u32).to_le_bytes()); // 12: image length
    p.extend_from_slice(&crc32(image).to_le_bytes()); // 16: image CRC-32
    let crc = crc32(&p);
    p.extend_from_slice(&crc.to_le_bytes()); // 20: header CRC-32 of bytes 0-19
    assert_eq!(p.len(), 24);
    p.extend_from_slice(image);
    p
}

/// A test image of `len` bytes.
pub fn image(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}
