//! The CANopen SDO client fed any server frames at any time, in each kind of transfer
//! (block download, segmented or expedited download, upload). Every frame is also parsed
//! as each kind of SDO frame, with its round trip.
#![no_main]

use bmsfw_fuzz::{Bytes, Machine, drive, sdo_frame_round_trips};
use bmsfw_plugin_api::{CanFrame, Timestamp};
use bmsfw_protocols::canopen::{
    DownloadMethod, NodeId, ObjectAddress, SdoChannel, SdoClient, SdoClientConfig, SdoEvent,
};
use libfuzzer_sys::fuzz_target;

const UPLOAD_MAX: usize = 600;

struct Driven {
    client: SdoClient,
    total: u64,
}

impl Machine for Driven {
    fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        sdo_frame_round_trips(frame.data());
        self.client.handle_frame(now, frame);
    }
    fn handle_timeout(&mut self, now: Timestamp) {
        self.client.handle_timeout(now);
    }
    fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        self.client.poll_transmit(now)
    }
    fn poll_timeout(&self) -> Option<Timestamp> {
        self.client.poll_timeout()
    }
    fn drain_events(&mut self, now: Timestamp) -> usize {
        let mut n = 0;
        while let Some(event) = self.client.poll_event() {
            n += 1;
            match event {
                SdoEvent::NeedData { offset, len } => {
                    assert!(offset + len as u64 <= self.total, "{offset} + {len}");
                    let data: Vec<u8> = (0..len).map(|i| (offset as usize + i) as u8).collect();
                    self.client
                        .provide_data(now, &data)
                        .expect("the data asked for is taken");
                }
                SdoEvent::Uploaded { data, .. } => assert!(data.len() <= UPLOAD_MAX),
                SdoEvent::Downloaded { len, .. } => assert_eq!(len, self.total),
                _ => {}
            }
        }
        n
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let channel = SdoChannel::for_node(NodeId::new(5).expect("node 5"));
    let mut client = SdoClient::new(SdoClientConfig::new(channel));
    let mode = input.u8();
    let size = u32::from(input.u16() % 2048);
    let object = ObjectAddress::new(0x1F50, 1);
    let now = Timestamp::from_micros(1_000_000);
    let total = match mode % 4 {
        0 => {
            let _ = client.download(now, object, size, DownloadMethod::Block);
            u64::from(size)
        }
        1 => {
            let _ = client.download(now, object, size, DownloadMethod::Segmented);
            u64::from(size)
        }
        2 => {
            let value = input.take(usize::from(mode >> 2 & 3) + 1);
            let _ = client.download_value(now, object, value);
            value.len() as u64
        }
        _ => {
            let _ = client.upload(now, object, UPLOAD_MAX);
            0
        }
    };
    let mut driven = Driven { client, total };
    drive(&mut driven, channel.response, channel.request, input.rest());
});
