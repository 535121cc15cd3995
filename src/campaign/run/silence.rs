//! The BMS going silent: its node on the bus, with a switch that keeps its frames off
//! the wire.

use async_trait::async_trait;
use bmsfw_can::{CanError, CanEvent, CanFilter, CanInterface, ControllerState};
use bmsfw_plugin_api::CanFrame;
use bmsfw_sim::bus::SimNode;
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// A BMS's node whose frames are dropped before they reach the wire while it is silent:
/// a BMS that stops talking leaves the bus free, as a frozen firmware does. (Dropping
/// its frames at the receivers instead would leave them on the wire, taking bus time
/// no node can account for.) It still hears the bus.
pub(super) struct Silenceable {
    pub(super) node: SimNode,
    pub(super) until: Arc<Mutex<Option<Instant>>>,
}

impl Silenceable {
    fn silent(&self) -> bool {
        self.until
            .lock()
            .unwrap()
            .is_some_and(|until| Instant::now() < until)
    }
}

#[async_trait]
impl CanInterface for Silenceable {
    fn name(&self) -> &str {
        CanInterface::name(&self.node)
    }

    async fn send(&self, frame: CanFrame) -> Result<(), CanError> {
        if self.silent() {
            return Ok(());
        }
        self.node.send(frame).await
    }

    async fn recv(&self) -> Result<CanEvent, CanError> {
        self.node.recv().await
    }

    fn set_filters(&self, filters: &[CanFilter]) -> Result<(), CanError> {
        self.node.set_filters(filters)
    }

    fn bitrate(&self) -> Option<u32> {
        CanInterface::bitrate(&self.node)
    }

    fn controller_state(&self) -> ControllerState {
        self.node.controller_state()
    }
}
