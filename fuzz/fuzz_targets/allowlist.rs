//! The plugin allowlist (`allowlist.toml`).
#![no_main]

use bmsfw_core::plugin::allowlist::Allowlist;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Allowlist::parse(Path::new("allowlist.toml"), text) {
        let _ = e.to_string();
    }
});
