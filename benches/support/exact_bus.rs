//! An exact bus for benchmarks, replayed from what each node handed to its controller:
//! telemetry delays measured on it do not depend on the simulated bus's timer steps.

use async_trait::async_trait;
use bmsfw_can::{CanError, CanEvent, CanFilter, CanFrame, CanInterface, ControllerState};
use bmsfw_protocols::bit_timing::frame_duration;
use bmsfw_sim::bus::SimNode;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// A node's interface, noting when each frame was handed to its controller.
pub struct Recording {
    /// The node the frames go through.
    pub inner: SimNode,
    /// Each frame handed over, with the instant.
    pub sends: Arc<Mutex<Vec<(CanFrame, Instant)>>>,
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

/// Whether `id` is a BMS-Can telemetry frame.
pub fn is_telemetry(id: u32) -> bool {
    (0x351..=0x382).contains(&id)
}

/// `d` in microseconds.
pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The frames of each node (in the order handed over, with the instant), carried by an
/// exact bus: whenever it is idle, the lowest arbitration key among the nodes' first
/// frames already handed over wins. Returns each frame's start and end, per node.
pub fn replay(nodes: &[&Vec<(CanFrame, Instant)>], bitrate: u32) -> Vec<Vec<(Instant, Instant)>> {
    let mut next = vec![0usize; nodes.len()];
    let mut out: Vec<Vec<(Instant, Instant)>> =
        nodes.iter().map(|n| Vec::with_capacity(n.len())).collect();
    let mut free = nodes
        .iter()
        .filter_map(|n| n.first().map(|(_, at)| *at))
        .min()
        .unwrap();
    loop {
        let heads: Vec<(usize, &(CanFrame, Instant))> = (0..nodes.len())
            .filter_map(|i| nodes[i].get(next[i]).map(|f| (i, f)))
            .collect();
        if heads.is_empty() {
            return out;
        }
        let ready: Vec<&(usize, &(CanFrame, Instant))> =
            heads.iter().filter(|(_, (_, at))| *at <= free).collect();
        let Some(&&(node, (frame, _))) = ready
            .iter()
            .min_by_key(|(_, (f, _))| bmsfw_protocols::bit_timing::arbitration_key(f.id()))
        else {
            free = heads.iter().map(|(_, (_, at))| *at).min().unwrap();
            continue;
        };
        let end = free + frame_duration(frame, bitrate);
        out[node].push((free, end));
        next[node] += 1;
        free = end;
    }
}

/// The time the frames of `node` matching `counted` occupied the bus within
/// `[from, until)`, from their replayed spans (`spans[i]` is the span of `node[i]`, in
/// order).
pub fn busy_within(
    node: &[(CanFrame, Instant)],
    spans: &[(Instant, Instant)],
    counted: impl Fn(&CanFrame) -> bool,
    from: Instant,
    until: Instant,
) -> Duration {
    let first = spans.partition_point(|(_, end)| *end <= from);
    let last = spans.partition_point(|(start, _)| *start < until);
    (first..last.max(first))
        .filter(|&i| counted(&node[i].0))
        .map(|i| {
            let (start, end) = spans[i];
            end.min(until).saturating_duration_since(start.max(from))
        })
        .sum()
}
