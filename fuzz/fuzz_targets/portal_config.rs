//! The portal's configuration file (`portal.toml`).
#![no_main]

use bmsfw_portal::config::PortalConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = PortalConfig::parse(text) {
        let _ = e.to_string();
    }
});
