//! The CANopen SDO server (what simulated batteries answer with) fed any client frames at
//! any time, over a small object dictionary. Every frame is also parsed as each kind of
//! SDO frame, with its round trip.
#![no_main]

use bmsfw_fuzz::{Bytes, Machine, drive, sdo_frame_round_trips};
use bmsfw_plugin_api::{CanFrame, Timestamp};
use bmsfw_protocols::canopen::{
    AbortCode, BlockTransfer, CrcSupport, NodeId, ObjectAddress, ObjectDictionary, SdoChannel,
    SdoServer, SdoServerConfig,
};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

const LIMIT: u64 = 4096;

#[derive(Default)]
struct Dictionary {
    written: Vec<u8>,
    writing: Option<ObjectAddress>,
}

impl ObjectDictionary for Dictionary {
    fn read(&mut self, _now: Timestamp, object: ObjectAddress) -> Result<Vec<u8>, AbortCode> {
        match object.index {
            0x1000 => Ok(vec![0x12]),
            0x1008 => Ok(b"Fuzzed BMS".to_vec()),
            0x2000 => Ok((0..200).collect()),
            0x2001 => Ok(self.written.clone()),
            _ => Err(AbortCode::ObjectDoesNotExist),
        }
    }
    fn begin_write(
        &mut self,
        _now: Timestamp,
        object: ObjectAddress,
        size: Option<u32>,
    ) -> Result<(), AbortCode> {
        assert!(self.writing.is_none(), "a write began inside another");
        if object.index == 0x1000 {
            return Err(AbortCode::ObjectDoesNotExist);
        }
        if size.is_some_and(|s| u64::from(s) > LIMIT) {
            return Err(AbortCode::LengthTooHigh);
        }
        self.writing = Some(object);
        self.written.clear();
        Ok(())
    }
    fn write(
        &mut self,
        _now: Timestamp,
        object: ObjectAddress,
        offset: u64,
        data: &[u8],
    ) -> Result<Duration, AbortCode> {
        assert_eq!(self.writing, Some(object), "a write outside a download");
        assert_eq!(offset, self.written.len() as u64, "data out of order");
        if offset + data.len() as u64 > LIMIT {
            return Err(AbortCode::LengthTooHigh);
        }
        self.written.extend_from_slice(data);
        Ok(Duration::from_millis(data.len() as u64 % 4))
    }
    fn end_write(
        &mut self,
        _now: Timestamp,
        object: ObjectAddress,
        len: u64,
    ) -> Result<Duration, AbortCode> {
        assert_eq!(
            self.writing.take(),
            Some(object),
            "an end outside a download"
        );
        assert_eq!(len, self.written.len() as u64, "the length written");
        Ok(Duration::from_millis(5))
    }
    fn abort_write(&mut self, _now: Timestamp, object: ObjectAddress, _code: AbortCode) {
        assert_eq!(
            self.writing.take(),
            Some(object),
            "an abort outside a download"
        );
    }
}

struct Driven {
    server: SdoServer<Dictionary>,
}

impl Machine for Driven {
    fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        sdo_frame_round_trips(frame.data());
        self.server.handle_frame(now, frame);
    }
    fn handle_timeout(&mut self, now: Timestamp) {
        self.server.handle_timeout(now);
    }
    fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        self.server.poll_transmit(now)
    }
    fn poll_timeout(&self) -> Option<Timestamp> {
        self.server.poll_timeout()
    }
    fn drain_events(&mut self, _now: Timestamp) -> usize {
        let mut n = 0;
        while self.server.poll_event().is_some() {
            n += 1;
        }
        n
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let mode = input.u8();
    let config = SdoServerConfig {
        block_size: (mode >> 2) % 8 + 1,
        crc: if mode & 1 == 0 {
            CrcSupport::Supported
        } else {
            CrcSupport::NotSupported
        },
        block_transfer: if mode & 2 == 0 {
            BlockTransfer::Supported
        } else {
            BlockTransfer::Refused
        },
        ..SdoServerConfig::default()
    };
    let channel = SdoChannel::for_node(NodeId::new(5).expect("node 5"));
    let server = SdoServer::new(channel, config, Dictionary::default());
    let mut driven = Driven { server };
    drive(&mut driven, channel.request, channel.response, input.rest());
});
