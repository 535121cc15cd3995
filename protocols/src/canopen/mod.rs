//! CANopen SDO transfers (CiA 301) and the program download of CiA 302-3, as sans-IO
//! state machines.
//!
//! - [`SdoClient`]: downloads (writes) and uploads (reads) objects of one server: block
//!   download with sequence numbers, acknowledgements, resends and CRC-16, falling back
//!   to a segmented download when the server has no block transfer; expedited and
//!   segmented downloads and uploads.
//! - [`SdoServer`]: the other side, over an [`ObjectDictionary`] a simulated battery
//!   management system implements; it parses every request as hostile input.
//! - [`ProgramDownload`]: the CiA 302-3 program download flow on top of a client: stop
//!   the program (0x1F51 = 0), clear it (3), write the image to 0x1F50 by block
//!   download, poll the flash status 0x1F57, read back the software identification
//!   0x1F56, start the new program (1).
//! - [`frame`]: the SDO frames, typed, parsed and encoded.
//! - [`heartbeat`]: a node's heartbeat and boot-up message, recognised.
//!
//! Every type follows the calling pattern of the rest of this crate: feed received
//! frames to `handle_frame(now, &frame)`, drain `poll_transmit(now)` onto the bus, come
//! back at `poll_timeout()` with `handle_timeout(now)`, drain `poll_event()`. Image
//! bytes are asked for with `NeedData { offset, len }` events and handed over with
//! `provide_data`, at most one sub-block (889 bytes) at a time, each byte exactly once
//! and in order: the image is never held whole in memory.
//!
//! ```
//! use bmsfw_plugin_api::Timestamp;
//! use bmsfw_protocols::canopen::{
//!     AbortCode, DownloadMethod, NodeId, ObjectAddress, ObjectDictionary, SdoChannel,
//!     SdoClient, SdoClientConfig, SdoEvent, SdoServer, SdoServerConfig,
//! };
//! use std::time::Duration;
//!
//! /// One writable domain object, 0x1F50:01.
//! #[derive(Default)]
//! struct Program(Vec<u8>);
//!
//! impl ObjectDictionary for Program {
//!     fn read(&mut self, _: Timestamp, _: ObjectAddress) -> Result<Vec<u8>, AbortCode> {
//!         Err(AbortCode::WriteOnly)
//!     }
//!     fn begin_write(&mut self, _: Timestamp, o: ObjectAddress, _: Option<u32>) -> Result<(), AbortCode> {
//!         self.0.clear();
//!         if o == ObjectAddress::new(0x1F50, 1) { Ok(()) } else { Err(AbortCode::ObjectDoesNotExist) }
//!     }
//!     fn write(&mut self, _: Timestamp, _: ObjectAddress, _: u64, data: &[u8]) -> Result<Duration, AbortCode> {
//!         self.0.extend_from_slice(data);
//!         Ok(Duration::ZERO)
//!     }
//!     fn end_write(&mut self, _: Timestamp, _: ObjectAddress, _: u64) -> Result<Duration, AbortCode> {
//!         Ok(Duration::ZERO)
//!     }
//!     fn abort_write(&mut self, _: Timestamp, _: ObjectAddress, _: AbortCode) {}
//! }
//!
//! let channel = SdoChannel::for_node(NodeId::new(5).unwrap());
//! let mut client = SdoClient::new(SdoClientConfig::new(channel));
//! let mut server = SdoServer::new(channel, SdoServerConfig::default(), Program::default());
//! let image: Vec<u8> = (0..2000).map(|i| i as u8).collect();
//! let now = Timestamp::ZERO;
//! client
//!     .download(now, ObjectAddress::new(0x1F50, 1), image.len() as u32, DownloadMethod::Block)
//!     .unwrap();
//! // Stand-in for a bus: move frames and answer events until the transfer ends.
//! let outcome = loop {
//!     while let Some(frame) = client.poll_transmit(now) {
//!         server.handle_frame(now, &frame);
//!     }
//!     while let Some(frame) = server.poll_transmit(now) {
//!         client.handle_frame(now, &frame);
//!     }
//!     match client.poll_event() {
//!         Some(SdoEvent::NeedData { offset, len }) => {
//!             let start = offset as usize;
//!             client.provide_data(now, &image[start..start + len]).unwrap();
//!         }
//!         Some(SdoEvent::Progress { .. }) => {}
//!         Some(other) => break other,
//!         None => {}
//!     }
//! };
//! assert!(matches!(outcome, SdoEvent::Downloaded { .. }));
//! assert_eq!(server.dictionary().0, image);
//! ```

mod abort;
mod client;
mod dictionary;
pub mod frame;
pub mod heartbeat;
mod program;
mod server;

#[cfg(test)]
mod tests;

pub use abort::AbortCode;
pub use client::{
    Awaiting, BlockFallback, DownloadMethod, ProvideDataError, SdoClient, SdoClientConfig,
    SdoError, SdoEvent, StartError, TransferMode, Violation,
};
pub use dictionary::ObjectDictionary;
pub use frame::{CrcSupport, SdoFrameError};
pub use program::{
    Finish, FlashStatus, FlashStatusCode, ProgramConfig, ProgramControl, ProgramDownload,
    ProgramError, ProgramEvent, ProgramPhase, SoftwareIdCheck, StartOutcome, objects,
};
pub use server::{AbortedBy, BlockTransfer, SdoServer, SdoServerConfig, ServerEvent, ServerState};

use bmsfw_plugin_api::CanId;
use std::fmt;

/// A CANopen node-id, 1 to 127.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(u8);

impl NodeId {
    /// The node-id `id`, or `None` outside 1 to 127.
    pub const fn new(id: u8) -> Option<NodeId> {
        if id >= 1 && id <= 127 {
            Some(NodeId(id))
        } else {
            None
        }
    }

    /// The number.
    pub const fn get(self) -> u8 {
        self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {}", self.0)
    }
}

/// The pair of CAN identifiers one SDO connection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SdoChannel {
    /// Client to server (requests).
    pub request: CanId,
    /// Server to client (responses).
    pub response: CanId,
}

impl SdoChannel {
    /// COB-ID base of the default server's requests (CiA 301 predefined connection set).
    pub const REQUEST_BASE: u16 = 0x600;
    /// COB-ID base of the default server's responses.
    pub const RESPONSE_BASE: u16 = 0x580;

    /// The default SDO server of `node`: requests on 0x600 + node-id, responses on
    /// 0x580 + node-id.
    pub fn for_node(node: NodeId) -> SdoChannel {
        let id = |base: u16| match CanId::standard(base + u16::from(node.get())) {
            Some(id) => id,
            None => unreachable!("0x600 + 127 is a standard identifier"),
        };
        SdoChannel {
            request: id(SdoChannel::REQUEST_BASE),
            response: id(SdoChannel::RESPONSE_BASE),
        }
    }
}

/// An entry of an object dictionary: index and sub-index (the SDO "multiplexer").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectAddress {
    /// The index, 0x0000 to 0xFFFF.
    pub index: u16,
    /// The sub-index.
    pub sub_index: u8,
}

impl ObjectAddress {
    /// The entry `index`:`sub_index`.
    pub const fn new(index: u16, sub_index: u8) -> ObjectAddress {
        ObjectAddress { index, sub_index }
    }
}

/// Printed as `0x1F50:01`.
impl fmt::Display for ObjectAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04X}:{:02X}", self.index, self.sub_index)
    }
}
