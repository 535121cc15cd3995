//! The template vendor's package reader (`ACFW`) and version decoder, on any file read
//! in pieces of any size. With bit 0 of the first byte set the harness writes the right
//! image and header CRCs into the file first, so the fuzzer gets past them.
#![no_main]

use bmsfw_fuzz::Bytes;
use bmsfw_protocols::checksum::crc32;
use bmsfw_protocols::package::memory_reader;
use bmsfw_vendor_template::package::{inspect, read_header};
use bmsfw_vendor_template::version;
use libfuzzer_sys::fuzz_target;

const HEADER: usize = 24;

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let mode = input.u8();
    let piece = usize::from(input.u8()).max(1);
    let _ = version::decode(input.take(2));
    let mut file = input.rest().to_vec();
    if mode & 1 == 1 && file.len() >= HEADER {
        let len = u32::from_le_bytes(file[12..16].try_into().unwrap()) as usize;
        if let Some(image) = file.get(HEADER..HEADER.saturating_add(len)) {
            let crc = crc32(image);
            file[16..20].copy_from_slice(&crc.to_le_bytes());
        }
        let crc = crc32(&file[..20]);
        file[20..24].copy_from_slice(&crc.to_le_bytes());
    }
    let mut package = memory_reader(file, piece);
    let header = read_header(&package);
    let info = inspect(&mut package);
    if info.is_ok() {
        assert!(header.is_ok(), "a package that inspects has a header");
    }
});
