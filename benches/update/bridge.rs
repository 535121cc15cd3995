//! A CAN interface carried over a Unix socket, so the GX engine runs in one process and
//! the simulated bus with the BMS in another: each frame is 16 bytes (identifier with
//! bit 31 set for 29-bit, length, three zero bytes, eight data bytes).

use async_trait::async_trait;
use bmsfw_can::{
    CanError, CanEvent, CanFilter, CanFrame, CanId, CanInterface, ControllerState, ReceivedFrame,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Bytes of one frame on the socket.
pub const RECORD: usize = 16;

/// `frame` as a record.
pub fn encode(frame: &CanFrame) -> [u8; RECORD] {
    let mut out = [0u8; RECORD];
    let id = frame.id();
    let raw = id.raw() | if id.is_extended() { 1 << 31 } else { 0 };
    out[..4].copy_from_slice(&raw.to_le_bytes());
    out[4] = frame.data().len() as u8;
    out[8..8 + frame.data().len()].copy_from_slice(frame.data());
    out
}

/// A record as a frame; `None` when it holds no valid frame.
pub fn decode(record: &[u8; RECORD]) -> Option<CanFrame> {
    let raw = u32::from_le_bytes([record[0], record[1], record[2], record[3]]);
    let id = if raw & (1 << 31) != 0 {
        CanId::extended(raw & 0x1FFF_FFFF)?
    } else {
        CanId::standard(u16::try_from(raw).ok()?)?
    };
    let len = usize::from(record[4]);
    if len > 8 {
        return None;
    }
    CanFrame::new(id, &record[8..8 + len])
}

fn closed() -> CanError {
    CanError::Closed {
        interface: "bridge".into(),
    }
}

/// The GX's end: a 500 kbit/s bus behind a socket.
pub struct BridgeInterface {
    name: String,
    reader: Mutex<OwnedReadHalf>,
    writer: Mutex<OwnedWriteHalf>,
}

impl BridgeInterface {
    /// The interface `name` over `stream`.
    pub fn new(name: &str, stream: UnixStream) -> BridgeInterface {
        let (reader, writer) = stream.into_split();
        BridgeInterface {
            name: name.to_owned(),
            reader: Mutex::new(reader),
            writer: Mutex::new(writer),
        }
    }
}

#[async_trait]
impl CanInterface for BridgeInterface {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, frame: CanFrame) -> Result<(), CanError> {
        self.writer
            .lock()
            .await
            .write_all(&encode(&frame))
            .await
            .map_err(|_| closed())
    }

    /// The round's records in one write, as SocketCAN takes them in one `sendmmsg`.
    async fn send_batch(&self, frames: &[CanFrame]) -> Result<(), (usize, CanError)> {
        let records: Vec<u8> = frames.iter().flat_map(encode).collect();
        self.writer
            .lock()
            .await
            .write_all(&records)
            .await
            .map_err(|_| (0, closed()))
    }

    async fn recv(&self) -> Result<CanEvent, CanError> {
        let mut record = [0u8; RECORD];
        loop {
            self.reader
                .lock()
                .await
                .read_exact(&mut record)
                .await
                .map_err(|_| closed())?;
            if let Some(frame) = decode(&record) {
                return Ok(CanEvent::Frame(ReceivedFrame {
                    frame,
                    at: Instant::now(),
                }));
            }
        }
    }

    fn set_filters(&self, _filters: &[CanFilter]) -> Result<(), CanError> {
        Ok(())
    }

    fn bitrate(&self) -> Option<u32> {
        Some(500_000)
    }

    fn controller_state(&self) -> ControllerState {
        ControllerState::ErrorActive
    }
}

/// The bus's end: relays between the socket and `node` until either side closes.
pub async fn relay(stream: UnixStream, node: std::sync::Arc<dyn CanInterface>) {
    let (mut reader, mut writer) = stream.into_split();
    let to_bus = {
        let node = node.clone();
        async move {
            let mut record = [0u8; RECORD];
            while reader.read_exact(&mut record).await.is_ok() {
                if let Some(frame) = decode(&record)
                    && node.send(frame).await.is_err()
                {
                    break;
                }
            }
        }
    };
    let from_bus = async move {
        while let Ok(event) = node.recv().await {
            if let CanEvent::Frame(rx) = event
                && writer.write_all(&encode(&rx.frame)).await.is_err()
            {
                break;
            }
        }
    };
    tokio::select! {
        _ = to_bus => {}
        _ = from_bus => {}
    }
}
