//! The Coral bundle reader past the signature: the harness signs whatever manifest the
//! fuzzer wrote with the TEST key (whose private half is public, `PROTOCOL.md`
//! section 11), so the manifest's checks, the image layout and the image digests are
//! exercised. A bundle that reads describes images that lie inside the file.
#![no_main]

use bmsfw_fuzz::Bytes;
use bmsfw_protocols::checksum::sha256;
use bmsfw_protocols::package::memory_reader;
use bmsfw_vendor_coral::bundle::{HEADER_LEN, SIGNATURE_LEN, inspect, read_bundle};
use ed25519_dalek::{Signer, SigningKey};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn test_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| {
        SigningKey::from_bytes(&sha256(
            b"Coral ReefStack TEST signing key - never use for production firmware",
        ))
    })
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let piece = usize::from(input.u8()).max(1);
    let mut file = input.rest().to_vec();
    if file.len() < HEADER_LEN as usize {
        return;
    }
    file[0..4].copy_from_slice(b"CRLB");
    file[4] = 1;
    file[5] = 0x01;
    let signed = HEADER_LEN as usize + usize::from(u16::from_le_bytes([file[6], file[7]]));
    let end = signed + SIGNATURE_LEN as usize;
    if file.len() < end {
        return;
    }
    let signature = test_key().sign(&file[..signed]);
    file[signed..end].copy_from_slice(&signature.to_bytes());
    let len = file.len() as u64;
    let mut package = memory_reader(file, piece);
    if let Ok(bundle) = read_bundle(&package) {
        for image in &bundle.images {
            assert!(
                image.offset >= end as u64,
                "an image inside the signed part"
            );
            assert!(image.offset + image.len <= len, "an image past the end");
        }
    }
    let _ = inspect(&mut package);
});
