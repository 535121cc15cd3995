//! Test support: images and HEX files laid out from `PROTOCOL.md` (independent of the
//! simulator's builder), and readers over bytes.

use crate::protocol::{APP_START, DESCRIPTOR_OFFSET};
use bmsfw_plugin_api::abi_stable::sabi_trait::TD_Opaque;
use bmsfw_plugin_api::abi_stable::std_types::{RResult, RSliceMut};
use bmsfw_plugin_api::{PackageReader, PackageSource, PackageSource_TO, SourceError};
use bmsfw_protocols::checksum::crc32;
use ihex::Record;
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

/// An image of `len` bytes for `product`, `version` BCD, bootloader 1.20 and later: a
/// pattern, the descriptor at 0x200, the CRC-32 trailer.
pub fn image(product: u16, version: [u8; 2], len: usize) -> Vec<u8> {
    let mut img: Vec<u8> = (0..len).map(|i| (i * 13 + i / 241) as u8).collect();
    let d = DESCRIPTOR_OFFSET as usize;
    img[d..d + 4].copy_from_slice(b"BRLF");
    img[d + 4] = 1;
    img[d + 5] = 0;
    img[d + 6..d + 8].copy_from_slice(&product.to_le_bytes());
    img[d + 8..d + 10].copy_from_slice(&version);
    img[d + 10..d + 12].copy_from_slice(&[0x01, 0x20]);
    img[d + 12..d + 16].copy_from_slice(&(len as u32).to_le_bytes());
    seal(&mut img);
    img
}

/// Rewrites the CRC-32 trailer of `img`.
pub fn seal(img: &mut [u8]) {
    let body = img.len() - 4;
    let crc = crc32(&img[..body]);
    img[body..].copy_from_slice(&crc.to_le_bytes());
}

/// The records of `image` at 0x08010000, `per_record` bytes each, with the upper-address
/// records a linker writes; `skip` ranges of the image are left out (gaps).
pub fn records(image: &[u8], per_record: usize, skip: &[std::ops::Range<usize>]) -> Vec<Record> {
    let mut out = Vec::new();
    let mut upper = None;
    let mut at = 0;
    while at < image.len() {
        if let Some(gap) = skip.iter().find(|g| g.contains(&at)) {
            at = gap.end;
            continue;
        }
        let address = APP_START as usize + at;
        let until_gap = skip
            .iter()
            .filter(|g| g.start > at)
            .map(|g| g.start)
            .min()
            .unwrap_or(image.len());
        let until_boundary = 0x1_0000 - (address & 0xFFFF);
        let n = per_record
            .min(image.len() - at)
            .min(until_gap - at)
            .min(until_boundary);
        if upper != Some(address >> 16) {
            upper = Some(address >> 16);
            out.push(Record::ExtendedLinearAddress((address >> 16) as u16));
        }
        out.push(Record::Data {
            offset: (address & 0xFFFF) as u16,
            value: image[at..at + n].to_vec(),
        });
        at += n;
    }
    out.push(Record::EndOfFile);
    out
}

/// `records` as a file.
pub fn hex_text(records: &[Record]) -> String {
    records
        .iter()
        .map(|r| r.to_record_string().unwrap() + "\n")
        .collect()
}

/// A whole HEX file of `image` in 32-byte records.
pub fn hex_file(image: &[u8]) -> Vec<u8> {
    hex_text(&records(image, 32, &[])).into_bytes()
}
