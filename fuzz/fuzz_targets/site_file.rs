//! The simulator's site file (`config/demo.toml`).
#![no_main]

use bmsfw_sim::site::SiteDescription;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = SiteDescription::parse(text, "site.toml") {
        let _ = e.to_string();
    }
});
