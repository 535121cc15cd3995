//! The BMS-Can codec: any frame on any identifier, decoded on its own and fed to a bus
//! monitor in sequence. A frame kind found by identifier has that identifier; a decoded
//! frame re-encodes to a frame that decodes to the same value.
#![no_main]

use bmsfw_core::telemetry::{BmsCanMonitor, Telemetry};
use bmsfw_fuzz::Bytes;
use bmsfw_plugin_api::{CanFrame, CanId, Timestamp};
use bmsfw_protocols::bms_can::{FrameKind, GxIdentification};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let mut monitor = BmsCanMonitor::new("can0");
    let mut now = 1_000_000u64;
    while !input.is_empty() {
        let head = input.u8();
        // Mostly the broadcast range 0x351..0x382, sometimes anything.
        let id = if head & 0x80 == 0 {
            CanId::standard(0x351 + u16::from(head & 0x3F))
        } else if head & 0x40 == 0 {
            CanId::standard(input.u16() & 0x7FF)
        } else {
            CanId::extended(input.u32() & 0x1FFF_FFFF)
        };
        let len = usize::from(input.u8() % 9);
        let Some(frame) = id.and_then(|id| CanFrame::new(id, input.take(len))) else {
            continue;
        };
        if let Some(kind) = FrameKind::from_id(frame.id()) {
            assert_eq!(kind.id(), frame.id());
            let _ = kind.requirement();
        }
        match Telemetry::decode_frame(&frame) {
            Some(Ok(value)) => {
                assert_eq!(Telemetry::decode_frame(&value.encode()), Some(Ok(value)));
            }
            Some(Err(e)) => {
                let _ = e.to_string();
            }
            None => {}
        }
        let _ = GxIdentification::decode(&frame).map_err(|e| e.to_string());
        now += u64::from(head & 0x0F) * 10_000;
        let _ = monitor.handle_frame(Timestamp::from_micros(now), &frame);
    }
    let _ = monitor.battery();
    let _ = monitor.rejections().total();
});
