//! The GX daemon's configuration file (`gx.toml`).
#![no_main]

use bmsfw_core::config::GxConfig;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match GxConfig::parse(Path::new("gx.toml"), text) {
        Ok(config) => {
            let _ = config.isolation();
            let _ = config.load_method();
            let _ = config.plugins.host.settings();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
