//! The Coral bundle reader on any file read in pieces of any size: header, key id,
//! manifest bounds and the Ed25519 signature check, which nothing unsigned gets past.
//! (`coral_signed` signs the fuzzer's manifests to reach what follows.) Also the
//! version decoder and the reply frames a Coral BMS sends.
#![no_main]

use bmsfw_fuzz::{Bytes, std_id};
use bmsfw_plugin_api::CanFrame;
use bmsfw_protocols::package::memory_reader;
use bmsfw_vendor_coral::bundle::{inspect, read_bundle};
use bmsfw_vendor_coral::{checkpoint::Checkpoint, frames, version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let piece = usize::from(input.u8()).max(1);
    let id = input.u16() & 0x7FF;
    let raw = input.take(8);
    let _ = version::decode(raw);
    let _ = Checkpoint::parse(raw);
    if let Some(frame) = CanFrame::new(std_id(id), raw) {
        let _ = frames::parse(&frame);
    }
    let mut package = memory_reader(input.rest().to_vec(), piece);
    let bundle = read_bundle(&package);
    if inspect(&mut package).is_ok() {
        assert!(bundle.is_ok());
    }
});
