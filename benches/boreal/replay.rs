//! The frames each node handed to its controller, replayed on an exact bus.

use async_trait::async_trait;
use bmsfw_can::{CanError, CanEvent, CanFilter, CanFrame, CanInterface, ControllerState};
use bmsfw_protocols::bit_timing::{arbitration_key, frame_duration};
use bmsfw_sim::bus::SimNode;
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// Frames a node handed over, with the instant it did.
pub type Sends = Arc<Mutex<Vec<(CanFrame, Instant)>>>;

/// A node's interface, noting when each frame was handed to its controller.
pub struct Recording {
    pub inner: SimNode,
    pub sends: Sends,
}

#[async_trait]
impl CanInterface for Recording {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn send(&self, frame: CanFrame) -> Result<(), CanError> {
        self.sends.lock().unwrap().push((frame, Instant::now()));
        self.inner.send(frame).await
    }
    async fn recv(&self) -> Result<CanEvent, CanError> {
        self.inner.recv().await
    }
    fn set_filters(&self, filters: &[CanFilter]) -> Result<(), CanError> {
        self.inner.set_filters(filters)
    }
    fn bitrate(&self) -> Option<u32> {
        self.inner.bitrate()
    }
    fn controller_state(&self) -> ControllerState {
        self.inner.controller_state()
    }
}

/// The frames of each node (in the order handed over, with the instant), carried by an
/// exact bus at `bitrate`: whenever it is idle, the lowest arbitration key among the
/// nodes' first frames already handed over wins. Returns each frame's start and end, per
/// node.
pub fn replay(nodes: &[&Vec<(CanFrame, Instant)>], bitrate: u32) -> Vec<Vec<(Instant, Instant)>> {
    let mut next = vec![0usize; nodes.len()];
    let mut out: Vec<Vec<(Instant, Instant)>> =
        nodes.iter().map(|n| Vec::with_capacity(n.len())).collect();
    let Some(mut free) = nodes
        .iter()
        .filter_map(|n| n.first().map(|(_, at)| *at))
        .min()
    else {
        return out;
    };
    loop {
        let heads: Vec<(usize, &(CanFrame, Instant))> = (0..nodes.len())
            .filter_map(|i| nodes[i].get(next[i]).map(|f| (i, f)))
            .collect();
        let Some(earliest) = heads.iter().map(|(_, (_, at))| *at).min() else {
            return out;
        };
        let ready = heads
            .iter()
            .filter(|(_, (_, at))| *at <= free)
            .min_by_key(|(_, (f, _))| arbitration_key(f.id()));
        let Some(&(node, (frame, _))) = ready else {
            free = earliest;
            continue;
        };
        let end = free + frame_duration(frame, bitrate);
        out[node].push((free, end));
        next[node] += 1;
        free = end;
    }
}
