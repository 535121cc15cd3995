//! The UDS flash server (what simulated batteries answer with) fed any requests, message
//! by message or as CAN frames. Every request that parses encodes to bytes that parse to
//! the same request; every response the server gives is a well-formed response.
#![no_main]

use bmsfw_fuzz::{Bytes, Machine, drive, std_id};
use bmsfw_plugin_api::{CanFrame, Timestamp};
use bmsfw_protocols::isotp::IsoTpConfig;
use bmsfw_protocols::uds::{
    CheckOutcome, FlashBackend, FlashServer, Nrc, ServerConfig, TransferAck, UdsRequest,
    UdsResponse,
};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

const SEED: [u8; 2] = [0x12, 0x34];

struct Backend {
    image: Vec<u8>,
}

impl FlashBackend for Backend {
    fn seed(&mut self, _level: u8) -> Vec<u8> {
        SEED.to_vec()
    }
    fn key_is_valid(&mut self, _level: u8, seed: &[u8], key: &[u8]) -> bool {
        seed.len() == key.len() && seed.iter().zip(key).all(|(s, k)| s ^ 0x5A == *k)
    }
    fn erase(&mut self, option: &[u8]) -> Result<Duration, Nrc> {
        match option.first() {
            Some(0xEE) => Err(Nrc::ConditionsNotCorrect),
            Some(&ms) => Ok(Duration::from_millis(u64::from(ms) * 10)),
            None => Ok(Duration::ZERO),
        }
    }
    fn request_download(&mut self, _address: u64, size: u64, _format: u8) -> Result<u64, Nrc> {
        if size > 4096 {
            return Err(Nrc::RequestOutOfRange);
        }
        self.image.clear();
        Ok(if size % 2 == 0 { 0x102 } else { 0x12 })
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<Duration, Nrc> {
        assert!(offset <= 4096, "a write past the announced size");
        self.image.truncate(offset as usize);
        self.image.extend_from_slice(data);
        Ok(Duration::from_millis(data.len() as u64 % 3 * 40))
    }
    fn transfer_exit(&mut self) -> Result<(), Nrc> {
        Ok(())
    }
    fn check(&mut self, option: &[u8]) -> Result<(Duration, CheckOutcome), Nrc> {
        let outcome = match option.first() {
            None => CheckOutcome::Correct,
            Some(0) => CheckOutcome::Incorrect,
            Some(&b) => CheckOutcome::Rejected(Nrc::from_byte(b)),
        };
        Ok((Duration::from_millis(option.len() as u64 * 30), outcome))
    }
    fn reset(&mut self, _reset_type: u8) {}
    fn read_data(&mut self, identifier: u16) -> Option<Vec<u8>> {
        (identifier == 0xF189).then(|| b"1.2".to_vec())
    }
}

struct Driven {
    server: FlashServer<Backend>,
    by_message: bool,
}

impl Driven {
    fn request(&mut self, now: Timestamp, request: &[u8]) {
        if let Ok(parsed) = UdsRequest::parse(request) {
            let bytes = parsed.to_bytes();
            assert_eq!(
                UdsRequest::parse(&bytes).as_ref(),
                Ok(&parsed),
                "{request:02X?}"
            );
        }
        if self.by_message {
            self.server.handle_request(now, request);
        } else if !request.is_empty() && request.len() <= 7 {
            let mut data = vec![request.len() as u8];
            data.extend_from_slice(request);
            let frame = CanFrame::new(std_id(0x7E0), &data).expect("a single frame");
            self.server.handle_frame(now, &frame);
        }
    }
}

impl Machine for Driven {
    fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        if !self.by_message {
            self.server.handle_frame(now, frame);
        }
    }
    fn handle_timeout(&mut self, now: Timestamp) {
        self.server.handle_timeout(now);
    }
    fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        if self.by_message {
            None
        } else {
            self.server.poll_transmit(now)
        }
    }
    fn poll_timeout(&self) -> Option<Timestamp> {
        self.server.poll_timeout()
    }
    fn drain_events(&mut self, _now: Timestamp) -> usize {
        let mut n = 0;
        if self.by_message {
            while let Some(response) = self.server.poll_response() {
                UdsResponse::parse(&response)
                    .unwrap_or_else(|e| panic!("server response {response:02X?}: {e}"));
                n += 1;
            }
        }
        n
    }
    fn custom(&mut self, now: Timestamp, op: u8, input: &mut Bytes<'_>) {
        match op & 0x07 {
            // Any request.
            5 => {
                let len = usize::from(input.u8());
                let request = input.take(len).to_vec();
                self.request(now, &request);
            }
            // The right key.
            6 => {
                let level = input.u8() | 1;
                let key = [0x27, level.wrapping_add(1), SEED[0] ^ 0x5A, SEED[1] ^ 0x5A];
                self.request(now, &key);
            }
            // A block of data.
            _ => {
                let counter = input.u8();
                let len = usize::from(input.u8());
                let mut request = vec![0x36, counter];
                request.extend((0..len).map(|i| i as u8));
                self.request(now, &request);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let mode = input.u8();
    let config = ServerConfig {
        transfer_ack: if mode & 2 == 0 {
            TransferAck::Counter
        } else {
            TransferAck::CounterAndBytesReceived
        },
        ..ServerConfig::default()
    };
    let isotp = IsoTpConfig::new(std_id(0x7E8), std_id(0x7E0));
    let server = FlashServer::new(isotp, config, Backend { image: Vec::new() });
    let mut driven = Driven {
        server,
        by_message: mode & 1 == 0,
    };
    drive(&mut driven, std_id(0x7E0), std_id(0x7E1), input.rest());
});
