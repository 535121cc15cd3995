//! The Boreal Intel HEX package reader, on any file read in pieces of any size: the
//! first pass (record lines, runs, descriptor), the full check and the image reader.
//! A package that checks streams, in any read size, to the SHA-256 the check gave.
#![no_main]

use bmsfw_fuzz::Bytes;
use bmsfw_protocols::checksum::sha256;
use bmsfw_protocols::package::memory_reader;
use bmsfw_vendor_boreal::hex::{ImageReader, scan};
use bmsfw_vendor_boreal::package::{check, inspect};
use bmsfw_vendor_boreal::{device::BankInfo, version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let piece = usize::from(input.u8()).max(1);
    let step = usize::from(input.u8() % 64) + 1;
    let raw = input.take(4);
    let _ = version::decode(raw);
    let _ = BankInfo::parse(raw);
    let file = input.rest().to_vec();
    let mut package = memory_reader(file.clone(), piece);
    if let Ok(map) = scan(&package) {
        if let Some(((low, _), (high, _))) = map.extent() {
            let len = high.saturating_sub(low).min(1 << 16);
            let _ = map.covers(low, low.saturating_add(len));
            let _ = map.line_of(&package, low);
            let mut image = ImageReader::new(&map, low, len);
            let mut buf = vec![0u8; step];
            let mut at = 0u64;
            while at + step as u64 <= u64::from(len) {
                if image.read(&package, at, &mut buf).is_err() {
                    break;
                }
                at += step as u64;
            }
        }
    }
    if let Ok(checked) = check(&package) {
        let len = checked.image.len();
        let mut image = checked.image.clone();
        let mut whole = Vec::with_capacity(len as usize);
        let mut buf = vec![0u8; step];
        let mut at = 0u64;
        while at < u64::from(len) {
            let n = (u64::from(len) - at).min(step as u64) as usize;
            image
                .read(&package, at, &mut buf[..n])
                .expect("a checked image reads");
            whole.extend_from_slice(&buf[..n]);
            at += n as u64;
        }
        assert_eq!(sha256(&whole), checked.sha256);
    }
    let _ = inspect(&mut package);
});
