//! The UDS client's handling of responses: the flash client and the one-request
//! requester, fed any frames at any time (with help to answer the request under way),
//! and the response parsers on their own with their round trips.
#![no_main]

use bmsfw_fuzz::{Bytes, Machine, drive, std_id};
use bmsfw_plugin_api::{CanFrame, Timestamp};
use bmsfw_protocols::isotp::{IsoTpConfig, Pdu};
use bmsfw_protocols::uds::{
    FlashClient, FlashConfig, FlashEvent, KeyError, Requester, RequesterConfig, UdsResponse,
    negative, parse_max_block_length, parse_read_data, positive,
};
use libfuzzer_sys::fuzz_target;

const IMAGE_LEN: u32 = 300;

/// Checks the response parsers on `bytes`.
fn parse_response(bytes: &[u8], records: &[(u16, usize)]) {
    match UdsResponse::parse(bytes) {
        Ok(UdsResponse::Positive { service, data }) => {
            assert_eq!(positive(service, data), bytes);
            let _ = parse_max_block_length(data);
            if let Ok(values) = parse_read_data(data, records) {
                assert_eq!(values.len(), records.len());
                for (v, (_, len)) in values.iter().zip(records) {
                    assert_eq!(v.len(), *len);
                }
            }
        }
        Ok(UdsResponse::Negative { service, nrc }) => {
            assert_eq!(negative(service, nrc), bytes);
        }
        Err(_) => {}
    }
}

enum Client {
    Flash(FlashClient),
    Requester(Requester),
}

struct Driven {
    client: Client,
    /// Service identifier of the last request seen going out.
    last_service: u8,
}

impl Machine for Driven {
    fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        match &mut self.client {
            Client::Flash(c) => c.handle_frame(now, frame),
            Client::Requester(r) => r.handle_frame(now, frame),
        }
    }
    fn handle_timeout(&mut self, now: Timestamp) {
        match &mut self.client {
            Client::Flash(c) => c.handle_timeout(now),
            Client::Requester(r) => r.handle_timeout(now),
        }
    }
    fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        let frame = match &mut self.client {
            Client::Flash(c) => c.poll_transmit(now),
            Client::Requester(r) => r.poll_transmit(now),
        }?;
        match Pdu::parse(frame.data()) {
            Ok(Pdu::Single { data }) | Ok(Pdu::First { data, .. }) => {
                self.last_service = data[0];
            }
            _ => {}
        }
        Some(frame)
    }
    fn poll_timeout(&self) -> Option<Timestamp> {
        match &self.client {
            Client::Flash(c) => c.poll_timeout(),
            Client::Requester(r) => r.poll_timeout(),
        }
    }
    fn drain_events(&mut self, now: Timestamp) -> usize {
        let mut n = 0;
        match &mut self.client {
            Client::Flash(c) => {
                while let Some(event) = c.poll_event() {
                    n += 1;
                    if let FlashEvent::NeedData { offset, len } = event {
                        assert!(offset + len as u64 <= u64::from(IMAGE_LEN));
                        let data: Vec<u8> = (0..len).map(|i| (offset as usize + i) as u8).collect();
                        c.provide_data(now, &data)
                            .expect("the data asked for is taken");
                    }
                }
            }
            Client::Requester(r) => {
                while r.poll_event().is_some() {
                    n += 1;
                }
            }
        }
        n
    }
    fn custom(&mut self, now: Timestamp, op: u8, input: &mut Bytes<'_>) {
        let rx = std_id(0x7E8);
        match op & 0x07 {
            // A positive single-frame answer to the request under way.
            5 => {
                let len = usize::from(input.u8() % 7);
                let mut data = vec![(len + 1) as u8, self.last_service.wrapping_add(0x40)];
                data.extend_from_slice(input.take(len));
                if let Some(frame) = CanFrame::new(rx, &data) {
                    self.handle_frame(now, &frame);
                }
            }
            // A negative answer to it.
            6 => {
                let data = [3, 0x7F, self.last_service, input.u8()];
                if let Some(frame) = CanFrame::new(rx, &data) {
                    self.handle_frame(now, &frame);
                }
            }
            // The parsers on their own.
            _ => {
                let len = usize::from(input.u8());
                let records = [(input.u16(), usize::from(input.u8() % 8)), (0xF189, 2)];
                parse_response(input.take(len), &records);
                if let Client::Requester(r) = &mut self.client {
                    if r.is_idle() {
                        let _ = r.request(now, vec![0x22, 0xF1, 0x89]);
                    }
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let isotp = IsoTpConfig::new(std_id(0x7E0), std_id(0x7E8));
    let mode = input.u8();
    let client = if mode & 1 == 0 {
        let config = FlashConfig {
            max_retries: mode >> 1 & 3,
            erase_option: vec![0x01],
            ..FlashConfig::default()
        };
        let key = Box::new(|_level: u8, seed: &[u8]| -> Result<Vec<u8>, KeyError> {
            if seed.len() > 4 {
                return Err(KeyError("seed too long".into()));
            }
            Ok(seed.iter().map(|b| b ^ 0x5A).collect())
        });
        let mut c = FlashClient::new(isotp, config, IMAGE_LEN, key).expect("a valid client");
        c.start(Timestamp::from_micros(1_000_000));
        Client::Flash(c)
    } else {
        let mut r = Requester::new(isotp, RequesterConfig::default());
        r.request(Timestamp::from_micros(1_000_000), vec![0x22, 0xF1, 0x89])
            .expect("an idle requester takes a request");
        Client::Requester(r)
    };
    let mut driven = Driven {
        client,
        last_service: 0x10,
    };
    drive(&mut driven, std_id(0x7E8), std_id(0x7E9), input.rest());
});
