//! What the crate's unit tests share: two sans-IO endpoints handing frames to each other.

use crate::isotp::IsoTpChannel;
use crate::uds::{FlashClient, Requester};
use bmsfw_plugin_api::{CanFrame, Timestamp};

/// One end of a link driven frame by frame.
pub(crate) trait Endpoint {
    fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame>;
    fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame);
}

macro_rules! endpoint {
    ($t:ty) => {
        impl Endpoint for $t {
            fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
                <$t>::poll_transmit(self, now)
            }
            fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
                <$t>::handle_frame(self, now, frame)
            }
        }
    };
}
endpoint!(IsoTpChannel);
endpoint!(FlashClient);
endpoint!(Requester);

/// Moves frames between `a` and `b` at `now` until neither has anything to send, and
/// returns every frame that crossed, in order. More than `limit` frames fail the test: a
/// side that never stops sending fails it instead of hanging it.
pub(crate) fn pump(
    a: &mut impl Endpoint,
    b: &mut impl Endpoint,
    now: Timestamp,
    limit: usize,
) -> Vec<CanFrame> {
    let mut log = Vec::new();
    loop {
        let mut moved = false;
        while let Some(f) = a.poll_transmit(now) {
            b.handle_frame(now, &f);
            log.push(f);
            moved = true;
            assert!(log.len() <= limit, "the first side never stops sending");
        }
        while let Some(f) = b.poll_transmit(now) {
            a.handle_frame(now, &f);
            log.push(f);
            moved = true;
            assert!(log.len() <= limit, "the second side never stops sending");
        }
        if !moved {
            return log;
        }
    }
}
