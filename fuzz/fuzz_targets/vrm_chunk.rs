//! Firmware chunk text (base64) inside `uploadchunk` commands. A chunk decoded encodes
//! to its text again (standard padded base64 has one spelling per byte string).
#![no_main]

use bmsfw_vrm_wire::ChunkData;
use bmsfw_vrm_wire::limits::MAX_CHUNK_DATA;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(chunk) = ChunkData::decode(text) {
        assert!(!chunk.bytes().is_empty() && chunk.bytes().len() <= MAX_CHUNK_DATA);
        let again = ChunkData::decode(&chunk.encode()).expect("an encoded chunk decodes");
        assert_eq!(again, chunk);
    }
});
