//! The ISO-TP receiver fed any frames at any time. Every frame is also parsed as a PDU:
//! a PDU built back into a frame parses to the same PDU. Messages handed up are never
//! longer than the configured limit.
#![no_main]

use bmsfw_fuzz::{Bytes, Machine, drive, std_id};
use bmsfw_plugin_api::{CanFrame, Timestamp};
use bmsfw_protocols::isotp::{Event, IsoTpConfig, Padding, Pdu, Receiver, StMin};
use libfuzzer_sys::fuzz_target;

const MAX_LEN: u32 = 4096;

struct Rx {
    receiver: Receiver,
}

impl Machine for Rx {
    fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        if let Ok(pdu) = Pdu::parse(frame.data()) {
            // Padding lengthens a consecutive frame's data: only unpadded ones compare.
            let paddings: &[Padding] = match pdu {
                Pdu::Consecutive { .. } => &[Padding::None],
                _ => &[Padding::None, Padding::Fill(0xCC)],
            };
            for &padding in paddings {
                if let Some(built) = pdu.to_frame(frame.id(), padding) {
                    assert_eq!(Pdu::parse(built.data()), Ok(pdu), "{padding:?}");
                }
            }
        }
        self.receiver.handle_frame(now, frame);
    }
    fn handle_timeout(&mut self, now: Timestamp) {
        self.receiver.handle_timeout(now);
    }
    fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        self.receiver.poll_transmit(now)
    }
    fn poll_timeout(&self) -> Option<Timestamp> {
        self.receiver.poll_timeout()
    }
    fn drain_events(&mut self, _now: Timestamp) -> usize {
        let mut n = 0;
        while let Some(event) = self.receiver.poll_event() {
            if let Event::Received(message) = event {
                assert!(!message.is_empty() && message.len() <= MAX_LEN as usize);
            }
            n += 1;
        }
        n
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let mut config = IsoTpConfig::new(std_id(0x7E8), std_id(0x7E0));
    config.block_size = input.u8() % 4;
    config.st_min = StMin::from_byte(input.u8() % 3);
    config.max_message_len = MAX_LEN;
    if input.u8() & 1 == 0 {
        config.padding = Padding::None;
    }
    let mut rx = Rx {
        receiver: Receiver::new(&config),
    };
    drive(&mut rx, std_id(0x7E0), std_id(0x7E1), input.rest());
});
