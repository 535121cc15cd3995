//! The other messages of the VRM link: responses and presence (read by the portal),
//! notifications, write requests and keepalives (read by the GX) and topics. What reads
//! and has an encoder reads back to the same value.
#![no_main]

use bmsfw_vrm_wire::{
    KeepaliveOptions, Notification, PresenceMessage, RpcResponse, Topic, WriteRequest,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => {
            if let Ok(r) = RpcResponse::parse(body) {
                let again = RpcResponse::parse(&r.encode()).expect("an encoded response reads");
                assert_eq!(again, r);
            }
        }
        1 => {
            if let Ok(p) = PresenceMessage::parse(body) {
                let again = PresenceMessage::parse(&p.encode()).expect("presence reads back");
                assert_eq!(again, p);
            }
        }
        2 => {
            let _ = Notification::parse(body);
        }
        3 => {
            if let Ok(w) = WriteRequest::parse(body) {
                let again = WriteRequest::parse(&w.encode()).expect("a write request reads back");
                assert_eq!(again, w);
            }
        }
        4 => {
            if let Ok(k) = KeepaliveOptions::parse(body) {
                let again = KeepaliveOptions::parse(&k.encode()).expect("keepalive reads back");
                assert_eq!(again, k);
            }
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(body) {
                let _ = Topic::parse(text);
            }
        }
    }
});
