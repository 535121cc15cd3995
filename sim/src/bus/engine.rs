//! The bus task: one per simulated bus, it arbitrates, waits out each frame's exact
//! duration on the Tokio clock, and delivers.

use super::state::{State, TaskState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::Notify;
use tokio::time::Instant;

/// What the bus task and the handles share.
pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) bitrate: u32,
    pub(crate) epoch: Instant,
    pub(crate) state: Mutex<State>,
    /// Wakes the bus task when it waits for frames, and at shutdown.
    pub(crate) wake: Notify,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the bus task if it waits for frames; called with the state locked.
    pub(crate) fn kick(&self, state: &mut State) {
        if state.task == TaskState::WaitingForFrames {
            state.task = TaskState::Running;
            self.wake.notify_one();
        }
    }
}

/// Keeps the bus task alive while a `SimBus` or a `SimNode` exists.
pub(crate) struct Lifeline(pub(crate) Arc<Shared>);

impl Drop for Lifeline {
    fn drop(&mut self) {
        self.0.lock().task = TaskState::ShuttingDown;
        self.0.wake.notify_one();
    }
}

/// Runs the bus until every handle is gone.
///
/// Timing: the bus keeps its own exact clock, `free_at`, the instant it goes idle.
/// Frames start at `free_at`, or when they were queued if that is later, and end a
/// whole number of bit times later. The task waits for the Tokio clock to reach a
/// frame's end before delivering it, so nobody sees a frame before its time; Tokio's
/// timers fire on whole milliseconds, so the Tokio clock may run up to a millisecond
/// ahead of the bus. After each delivery the task yields, letting receivers react
/// before the next arbitration. A frame never starts before the Tokio instant its node
/// queued it: a node that times its frames by the clock (the GX's bus-load budget) finds
/// them on the wire where it planned them, never up to a millisecond earlier. Frames
/// queued at the same instant take part in one arbitration.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut free_at = shared.epoch;
    loop {
        let next = {
            let mut state = shared.lock();
            if state.task == TaskState::ShuttingDown {
                return;
            }
            state.arbitrate(free_at)
        };
        let Some(tx) = next else {
            let notified = shared.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = shared.lock();
                match state.task {
                    TaskState::ShuttingDown => return,
                    _ if state.has_pending() => continue,
                    _ => state.task = TaskState::WaitingForFrames,
                }
            }
            let idle_since = Instant::now();
            notified.await;
            let woke = Instant::now();
            if woke > idle_since {
                free_at = free_at.max(woke);
            }
            continue;
        };
        if tx.end > Instant::now() {
            tokio::time::sleep_until(tx.end).await;
        }
        shared.lock().complete(&tx);
        free_at = tx.end;
        tokio::task::yield_now().await;
    }
}
