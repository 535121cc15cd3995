//! A node's view of the simulated bus: the [`CanInterface`] a battery model, a vendor
//! bootloader or the engine under test uses.

use super::engine::{Lifeline, Shared};
use super::state::{NodeId, NodeInfo, NodeSignals, Queued};
use async_trait::async_trait;
use bmsfw_can::{CanError, CanEvent, CanFilter, CanInterface, ControllerState};
use bmsfw_plugin_api::CanFrame;
use std::sync::Arc;

/// One node attached to a [`super::SimBus`]. Dropping it lets the frames it queued go
/// out, then the node leaves the bus; [`SimNode::detach`] cuts its power at once.
pub struct SimNode {
    pub(crate) id: NodeId,
    pub(crate) name: String,
    pub(crate) shared: Arc<Shared>,
    pub(crate) signals: Arc<NodeSignals>,
    pub(crate) _life: Arc<Lifeline>,
}

impl SimNode {
    /// This attachment's id, for the fault controls of [`super::SimBus`].
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The node's name (the bus's name is [`CanInterface::name`]).
    pub fn node_name(&self) -> &str {
        &self.name
    }

    fn closed(&self) -> CanError {
        CanError::Closed {
            interface: format!("{}/{}", self.shared.name, self.name),
        }
    }

    fn bus_off(&self) -> CanError {
        CanError::BusOff {
            interface: format!("{}/{}", self.shared.name, self.name),
        }
    }

    /// Queues `frame`; waits while the transmit queue is full. Fails when the node is
    /// bus-off or detached.
    pub async fn send(&self, frame: CanFrame) -> Result<(), CanError> {
        let queued = Queued::new(frame);
        loop {
            // Register for wake-ups before looking, so none is missed.
            let space = self.signals.tx_space.notified();
            tokio::pin!(space);
            {
                let mut state = self.shared.lock();
                let capacity = state.limits.tx_queue;
                let Some(node) = state.node_mut(self.id) else {
                    return Err(self.closed());
                };
                if node.state == ControllerState::BusOff {
                    return Err(self.bus_off());
                }
                if node.tx.len() < capacity {
                    node.tx.push_back(queued);
                    self.shared.kick(&mut state);
                    return Ok(());
                }
                space.as_mut().enable();
            }
            space.await;
        }
    }

    /// The next event: a frame, an error or a state change. Fails once the node is
    /// detached.
    pub async fn recv(&self) -> Result<CanEvent, CanError> {
        loop {
            if let Some(event) = self.try_recv()? {
                return Ok(event);
            }
            self.signals.rx_ready.notified().await;
        }
    }

    /// The next event if one is waiting.
    pub fn try_recv(&self) -> Result<Option<CanEvent>, CanError> {
        let mut state = self.shared.lock();
        let Some(node) = state.node_mut(self.id) else {
            return Err(self.closed());
        };
        let event = node.rx.pop_front();
        if event.is_some() && !node.rx.is_empty() {
            // Pass the wake-up on to another reader of this node.
            self.signals.rx_ready.notify_one();
        }
        Ok(event)
    }

    /// Replaces the acceptance filters; an empty list accepts every frame.
    pub fn set_filters(&self, filters: &[CanFilter]) -> Result<(), CanError> {
        let mut state = self.shared.lock();
        let Some(node) = state.node_mut(self.id) else {
            return Err(self.closed());
        };
        node.filters.clear();
        node.filters.extend_from_slice(filters);
        Ok(())
    }

    /// The controller's fault confinement state; `Stopped` once detached.
    pub fn controller_state(&self) -> ControllerState {
        self.shared
            .lock()
            .node(self.id)
            .map_or(ControllerState::Stopped, |n| n.state)
    }

    /// Error counters, queue lengths and counters of this node, or `None` once detached.
    pub fn info(&self) -> Option<NodeInfo> {
        self.shared.lock().node(self.id).map(|n| n.info(self.id))
    }

    /// Cuts the node's power: its queues are lost and it neither sends nor receives.
    /// Attach a new node to bring it back.
    pub fn detach(&self) {
        self.shared.lock().detach(self.id);
    }
}

/// Dropping a node closes it as closing a socket does: frames it already queued still
/// go out, then it leaves the bus. [`SimNode::detach`] is the power cut.
impl Drop for SimNode {
    fn drop(&mut self) {
        self.shared.lock().release(self.id);
    }
}

impl std::fmt::Debug for SimNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNode")
            .field("bus", &self.shared.name)
            .field("name", &self.name)
            .field("id", &self.id)
            .finish()
    }
}

#[async_trait]
impl CanInterface for SimNode {
    fn name(&self) -> &str {
        &self.shared.name
    }

    async fn send(&self, frame: CanFrame) -> Result<(), CanError> {
        SimNode::send(self, frame).await
    }

    async fn recv(&self) -> Result<CanEvent, CanError> {
        SimNode::recv(self).await
    }

    fn set_filters(&self, filters: &[CanFilter]) -> Result<(), CanError> {
        SimNode::set_filters(self, filters)
    }

    fn bitrate(&self) -> Option<u32> {
        Some(self.shared.bitrate)
    }

    fn controller_state(&self) -> ControllerState {
        SimNode::controller_state(self)
    }
}
