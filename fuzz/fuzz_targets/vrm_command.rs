//! Commands from the portal as the GX reads them. A command read is encoded and read
//! again to the same command.
#![no_main]

use bmsfw_vrm_wire::RpcCommand;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match RpcCommand::parse(data) {
        Ok(command) => {
            let bytes = command.encode();
            let again = RpcCommand::parse(&bytes).expect("an encoded command reads back");
            assert_eq!(again, command);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
