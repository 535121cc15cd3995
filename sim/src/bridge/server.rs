//! The site's side: a simulated bus offered on a Unix socket.

use super::wire::{RECORD_LEN, Record};
use crate::bus::{SimBus, SimNode};
use bmsfw_can::{CanError, CanEvent};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

/// Frames a connected node may have on their way to the bus's transmit queue, beyond the
/// queue itself: enough to keep the queue fed, few enough that the queue still paces the
/// sender.
pub const CREDIT: u16 = 2;

/// Records waiting for the socket, per connection.
const OUTGOING: usize = 1024;

/// A simulated bus offered at a Unix socket: each connection is a new node on the bus,
/// which leaves the bus when the connection ends (as a controller whose program died).
/// Dropping the server stops it and removes the socket.
pub struct BridgeServer {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl BridgeServer {
    /// Offers `bus` at `path`, replacing a socket left there by an earlier run. Each
    /// connection's node is named `node_name` on the bus. Must run inside a Tokio runtime.
    pub fn serve(bus: SimBus, path: &Path, node_name: &str) -> io::Result<BridgeServer> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(path)?;
        let node_name = node_name.to_owned();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let node = bus.attach(&node_name);
                tokio::spawn(connection(stream, node, bus.bitrate()));
            }
        });
        Ok(BridgeServer {
            path: path.to_path_buf(),
            task,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BridgeServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Carries one node's frames until either side stops; the node then leaves the bus.
async fn connection(stream: UnixStream, node: SimNode, bitrate: u32) {
    let node = Arc::new(node);
    let (mut read, mut write) = stream.into_split();
    let (out, mut outgoing) = mpsc::channel::<Record>(OUTGOING);
    let hello = Record::Hello {
        bitrate,
        credit: CREDIT,
    };
    if write.write_all(&hello.encode()).await.is_err() {
        return;
    }
    let writer = async move {
        while let Some(record) = outgoing.recv().await {
            if write.write_all(&record.encode()).await.is_err() {
                break;
            }
        }
    };
    let to_bus = {
        let node = node.clone();
        let out = out.clone();
        async move {
            let mut bytes = [0u8; RECORD_LEN];
            while read.read_exact(&mut bytes).await.is_ok() {
                let frame = match Record::decode(&bytes) {
                    Ok(Record::Frame(frame)) => frame,
                    Ok(other) => {
                        tracing::warn!(?other, "bridge: a node may only send frames; closing");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!("bridge: {e}; closing");
                        break;
                    }
                };
                match node.send(frame).await {
                    // A bus-off controller drops the frame; the node learns of it
                    // from the state it was told.
                    Ok(()) | Err(CanError::BusOff { .. }) => {}
                    Err(_) => break,
                }
                if out.send(Record::Credit(1)).await.is_err() {
                    break;
                }
            }
        }
    };
    let from_bus = async move {
        loop {
            let record = match node.recv().await {
                Ok(CanEvent::Frame(f)) => Record::Frame(f.frame),
                Ok(CanEvent::Error(e)) => Record::Error(e.frame),
                Ok(CanEvent::State(s)) => Record::State(s),
                Err(_) => break,
            };
            if out.send(record).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        () = writer => {}
        () = to_bus => {}
        () = from_bus => {}
    }
}
