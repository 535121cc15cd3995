//! The node's side: a [`CanInterface`] on a bus a [`super::BridgeServer`] offers.

use super::wire::{RECORD_LEN, Record};
use async_trait::async_trait;
use bmsfw_can::{
    BusError, CanError, CanEvent, CanFilter, CanFrame, CanInterface, ControllerState, ReceivedFrame,
};
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

/// How long the site may take to greet a new connection.
const HELLO_WITHIN: Duration = Duration::from_secs(5);

/// Events received and not yet read, as a controller's receive queue.
const RECEIVED: usize = 4096;

/// One node on a simulated bus served at a Unix socket, in real time: what a GX daemon
/// uses when the simulated site runs in another process and outlives it.
pub struct BridgeInterface {
    name: String,
    bitrate: u32,
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    credits: Arc<Semaphore>,
    events: tokio::sync::Mutex<mpsc::Receiver<Result<CanEvent, CanError>>>,
    filters: Mutex<Vec<CanFilter>>,
    state: Arc<Mutex<ControllerState>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for BridgeInterface {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn io_error(name: &str, source: io::Error) -> CanError {
    CanError::Io {
        interface: name.to_owned(),
        source,
    }
}

impl BridgeInterface {
    /// Connects to the bus served at `path`, calling the interface `name`. Fails when
    /// nothing listens there or the site does not greet within 5 s.
    pub async fn connect(path: &Path, name: &str) -> Result<BridgeInterface, CanError> {
        let stream = UnixStream::connect(path).await.map_err(|e| {
            io_error(
                name,
                io::Error::new(
                    e.kind(),
                    format!("connecting to the simulated bus at {}: {e}", path.display()),
                ),
            )
        })?;
        let (mut read, writer) = stream.into_split();
        let mut bytes = [0u8; RECORD_LEN];
        let greeting = tokio::time::timeout(HELLO_WITHIN, read.read_exact(&mut bytes))
            .await
            .map_err(|_| {
                io_error(
                    name,
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the simulated bus at {} did not greet", path.display()),
                    ),
                )
            })?;
        greeting.map_err(|e| io_error(name, e))?;
        let (bitrate, credit) = match Record::decode(&bytes) {
            Ok(Record::Hello { bitrate, credit }) => (bitrate, credit),
            Ok(other) => {
                return Err(io_error(
                    name,
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("the simulated bus began with {other:?}, not its greeting"),
                    ),
                ));
            }
            Err(e) => {
                return Err(io_error(
                    name,
                    io::Error::new(io::ErrorKind::InvalidData, e),
                ));
            }
        };
        let credits = Arc::new(Semaphore::new(usize::from(credit)));
        let state = Arc::new(Mutex::new(ControllerState::ErrorActive));
        let (tx, events) = mpsc::channel(RECEIVED);
        let reader = tokio::spawn(read_records(
            read,
            name.to_owned(),
            tx,
            credits.clone(),
            state.clone(),
        ));
        Ok(BridgeInterface {
            name: name.to_owned(),
            bitrate,
            writer: tokio::sync::Mutex::new(writer),
            credits,
            events: tokio::sync::Mutex::new(events),
            filters: Mutex::new(Vec::new()),
            state,
            reader,
        })
    }

    fn closed(&self) -> CanError {
        CanError::Closed {
            interface: self.name.clone(),
        }
    }

    fn current_state(&self) -> ControllerState {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Reads the site's records until the connection ends: credits free sends, the rest
/// becomes events.
async fn read_records(
    mut read: tokio::net::unix::OwnedReadHalf,
    name: String,
    events: mpsc::Sender<Result<CanEvent, CanError>>,
    credits: Arc<Semaphore>,
    state: Arc<Mutex<ControllerState>>,
) {
    let mut bytes = [0u8; RECORD_LEN];
    let end = loop {
        if let Err(e) = read.read_exact(&mut bytes).await {
            break if e.kind() == io::ErrorKind::UnexpectedEof {
                CanError::Closed {
                    interface: name.clone(),
                }
            } else {
                io_error(&name, e)
            };
        }
        let at = Instant::now();
        let event = match Record::decode(&bytes) {
            Ok(Record::Credit(n)) => {
                credits.add_permits(usize::from(n));
                continue;
            }
            Ok(Record::Frame(frame)) => CanEvent::Frame(ReceivedFrame { frame, at }),
            Ok(Record::Error(frame)) => CanEvent::Error(BusError {
                description: format!(
                    "error frame on the simulated bus (class {:#010x})",
                    frame.class
                ),
                frame,
                at,
            }),
            Ok(Record::State(s)) => {
                *state.lock().unwrap_or_else(PoisonError::into_inner) = s;
                CanEvent::State(s)
            }
            Ok(Record::Hello { .. }) => {
                break io_error(
                    &name,
                    io::Error::new(io::ErrorKind::InvalidData, "a second greeting"),
                );
            }
            Err(e) => break io_error(&name, io::Error::new(io::ErrorKind::InvalidData, e)),
        };
        if events.send(Ok(event)).await.is_err() {
            return;
        }
    };
    *state.lock().unwrap_or_else(PoisonError::into_inner) = ControllerState::Stopped;
    credits.close();
    let _ = events.send(Err(end)).await;
}

#[async_trait]
impl CanInterface for BridgeInterface {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, frame: CanFrame) -> Result<(), CanError> {
        match self.current_state() {
            ControllerState::BusOff => {
                return Err(CanError::BusOff {
                    interface: self.name.clone(),
                });
            }
            ControllerState::Stopped => return Err(self.closed()),
            _ => {}
        }
        let permit = self.credits.acquire().await.map_err(|_| self.closed())?;
        permit.forget();
        self.writer
            .lock()
            .await
            .write_all(&Record::Frame(frame).encode())
            .await
            .map_err(|e| io_error(&self.name, e))
    }

    async fn recv(&self) -> Result<CanEvent, CanError> {
        let mut events = self.events.lock().await;
        loop {
            let event = events.recv().await.ok_or_else(|| self.closed())??;
            if let CanEvent::Frame(f) = &event {
                let filters = self.filters.lock().unwrap_or_else(PoisonError::into_inner);
                if !filters.is_empty() && !filters.iter().any(|c| c.accepts(f.frame.id())) {
                    continue;
                }
            }
            return Ok(event);
        }
    }

    fn set_filters(&self, filters: &[CanFilter]) -> Result<(), CanError> {
        let mut mine = self.filters.lock().unwrap_or_else(PoisonError::into_inner);
        mine.clear();
        mine.extend_from_slice(filters);
        Ok(())
    }

    fn bitrate(&self) -> Option<u32> {
        Some(self.bitrate)
    }

    fn controller_state(&self) -> ControllerState {
        self.current_state()
    }
}
