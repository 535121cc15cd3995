//! [`RestartPoll`]: waiting for a battery to answer again after the reset that ends a
//! flash sequence.

use super::{Requester, RequesterError, RequesterEvent};
use bmsfw_plugin_api::{CanFrame, ErrorCode, Failure, Timestamp};
use std::time::Duration;

/// Where the poll is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Schedule {
    /// The next poll goes out at this time.
    Waiting(Timestamp),
    /// A poll is out since this time.
    Sent(Timestamp),
}

/// Polls a restarting battery with one request at a time until it answers, at most once
/// per `interval` and for `silence_max` at the most, sans-IO.
///
/// The plugin chooses what to poll with (`3E 00`, a boot-state read) and what an
/// answer means; this keeps the schedule: a poll is due `interval` after the previous
/// one went out, however long that one waited for its answer; a requester without
/// repeats (`max_retries: 0`) suits it, since the next poll follows anyway. Once the
/// battery has been silent until the deadline, [`send_due`](Self::send_due) reports
/// `RESTART_FAILED`.
///
/// Feed it frames and timeouts like the [`Requester`] it wraps, call
/// [`send_due`](Self::send_due) after each timeout, and take the answers from
/// [`poll_event`](Self::poll_event): silence ([`RequesterEvent::NoResponse`]) is
/// expected while the battery restarts, and the poll simply goes on.
#[derive(Debug)]
pub struct RestartPoll {
    requester: Requester,
    schedule: Schedule,
    interval: Duration,
    silence_max: Duration,
    /// The battery must have answered by then.
    deadline: Timestamp,
}

impl RestartPoll {
    /// A poll whose first request goes out at `first_poll` and whose battery must have
    /// answered within `silence_max` of `now`.
    pub fn new(
        requester: Requester,
        now: Timestamp,
        first_poll: Timestamp,
        interval: Duration,
        silence_max: Duration,
    ) -> RestartPoll {
        RestartPoll {
            requester,
            schedule: Schedule::Waiting(first_poll),
            interval,
            silence_max,
            deadline: now + silence_max,
        }
    }

    /// Sends `poll` if a poll is due at `now`. Fails with `RESTART_FAILED` once the
    /// deadline has passed without an answer.
    pub fn send_due(
        &mut self,
        now: Timestamp,
        poll: impl FnOnce() -> Vec<u8>,
    ) -> Result<(), Failure> {
        let Schedule::Waiting(at) = self.schedule else {
            return Ok(());
        };
        if now >= self.deadline {
            return Err(Failure::new(
                ErrorCode::RESTART_FAILED,
                format!(
                    "the battery did not answer within {} s of its restart",
                    self.silence_max.as_secs()
                ),
            ));
        }
        if now >= at && self.requester.is_idle() {
            self.send_now(now, poll());
        }
        Ok(())
    }

    /// Sends `request` at once, in the place of the next poll (a repeated reset request,
    /// say); its answer comes from [`poll_event`](Self::poll_event) like a poll's.
    pub fn send_now(&mut self, now: Timestamp, request: Vec<u8>) {
        self.schedule = match self.requester.request(now, request) {
            Ok(()) => Schedule::Sent(now),
            // A request still under way or an empty one: try again at the next poll.
            Err(RequesterError::Busy | RequesterError::Empty) => {
                Schedule::Waiting(now + self.interval)
            }
        };
    }

    /// The answer to the poll under way, if it came (or it is known that none will);
    /// the next poll is scheduled `interval` after this one went out.
    pub fn poll_event(&mut self) -> Option<RequesterEvent> {
        let event = self.requester.poll_event()?;
        if let Schedule::Sent(since) = self.schedule {
            self.schedule = Schedule::Waiting(since + self.interval);
        }
        Some(event)
    }

    /// Hands a received frame to the requester.
    pub fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        self.requester.handle_frame(now, frame);
    }

    /// Runs the requester's timers.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.requester.handle_timeout(now);
    }

    /// The next frame of the poll under way.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        self.requester.poll_transmit(now)
    }

    /// When [`handle_timeout`](Self::handle_timeout) and
    /// [`send_due`](Self::send_due) are next wanted.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let own = match self.schedule {
            Schedule::Waiting(at) => Some(at.min(self.deadline)),
            Schedule::Sent(_) => None,
        };
        [own, self.requester.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Drops the poll under way.
    pub fn cancel(&mut self) {
        self.requester.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isotp::IsoTpConfig;
    use crate::uds::RequesterConfig;
    use bmsfw_plugin_api::CanId;

    const REQUEST: u16 = 0x7E5;
    const RESPONSE: u16 = 0x7ED;

    fn poll(now: Timestamp) -> RestartPoll {
        let isotp = IsoTpConfig::new(
            CanId::standard(REQUEST).unwrap(),
            CanId::standard(RESPONSE).unwrap(),
        );
        let requester = Requester::new(
            isotp,
            RequesterConfig {
                p2: Duration::from_millis(50),
                max_retries: 0,
                ..RequesterConfig::default()
            },
        );
        RestartPoll::new(
            requester,
            now,
            now + Duration::from_millis(500),
            Duration::from_millis(500),
            Duration::from_secs(10),
        )
    }

    fn at(ms: u64) -> Timestamp {
        Timestamp::ZERO + Duration::from_millis(ms)
    }

    /// Runs the poll against a silent battery until `until`, returning the times polls
    /// went out and the failure, if any.
    fn silent(p: &mut RestartPoll, until: u64) -> (Vec<u64>, Option<Failure>) {
        let mut sent = Vec::new();
        let mut now = at(0);
        while now <= at(until) {
            p.handle_timeout(now);
            let events = std::iter::from_fn(|| p.poll_event()).take(100).count();
            assert!(events < 100, "the poll never runs out of events");
            if let Err(f) = p.send_due(now, || vec![0x3E, 0x00]) {
                return (sent, Some(f));
            }
            for frame in std::iter::from_fn(|| p.poll_transmit(now)).take(2) {
                assert_eq!(&frame.data()[..3], &[0x02, 0x3E, 0x00]);
                sent.push((now.saturating_duration_since(at(0))).as_millis() as u64);
            }
            assert!(
                sent.windows(2).all(|w| w[0] != w[1]),
                "one single-frame poll at a time"
            );
            match p.poll_timeout() {
                Some(next) if next > now => now = next,
                _ => now = now + Duration::from_millis(1),
            }
        }
        (sent, None)
    }

    #[test]
    fn a_silent_battery_is_polled_every_interval_until_the_deadline() {
        let mut p = poll(at(0));
        let (sent, failure) = silent(&mut p, 20_000);
        assert_eq!(sent.first(), Some(&500));
        assert!(sent.windows(2).all(|w| w[1] - w[0] == 500), "{sent:?}");
        assert_eq!(sent.last(), Some(&9_500));
        let failure = failure.expect("the deadline fails the poll");
        assert_eq!(failure.code, ErrorCode::RESTART_FAILED);
        assert!(failure.message.contains("10 s"), "{failure}");
    }

    #[test]
    fn an_answer_is_handed_over_and_the_next_poll_keeps_the_rhythm() {
        let mut p = poll(at(0));
        p.send_due(at(500), || vec![0x3E, 0x00]).unwrap();
        assert!(p.poll_transmit(at(500)).is_some());
        assert_eq!(
            p.poll_timeout(),
            Some(at(550)),
            "only the answer's P2 is awaited"
        );
        let answer =
            CanFrame::new(CanId::standard(RESPONSE).unwrap(), &[0x02, 0x7E, 0x00]).unwrap();
        p.handle_frame(at(520), &answer);
        assert_eq!(p.poll_event(), Some(RequesterEvent::Positive(vec![0x00])));
        assert_eq!(p.poll_timeout(), Some(at(1_000)));
        // A request sent in the place of a poll is answered the same way.
        p.send_now(at(600), vec![0x11, 0x01]);
        let frame = p.poll_transmit(at(600)).unwrap();
        assert_eq!(&frame.data()[..3], &[0x02, 0x11, 0x01]);
        p.cancel();
        assert_eq!(p.poll_timeout(), None, "nothing is awaited after a cancel");
        let late = CanFrame::new(CanId::standard(RESPONSE).unwrap(), &[0x02, 0x51, 0x01]).unwrap();
        p.handle_frame(at(610), &late);
        assert!(
            p.poll_event().is_none(),
            "a cancelled request's answer is dropped"
        );
        assert_eq!(p.poll_transmit(at(610)), None);
    }

    #[test]
    fn a_request_the_requester_refuses_waits_for_the_next_poll() {
        let mut p = poll(at(0));
        p.send_now(at(600), Vec::new());
        assert_eq!(p.poll_transmit(at(600)), None);
        assert_eq!(p.poll_timeout(), Some(at(1_100)), "one interval later");
        p.send_due(at(1_099), || vec![0x3E, 0x00]).unwrap();
        assert_eq!(p.poll_transmit(at(1_099)), None, "not due yet");
        p.send_due(at(1_100), || vec![0x3E, 0x00]).unwrap();
        let frame = p.poll_transmit(at(1_100)).unwrap();
        assert_eq!(&frame.data()[..3], &[0x02, 0x3E, 0x00]);
        // A request while that poll is under way is refused as busy: the poll goes on.
        p.send_now(at(1_120), vec![0x11, 0x01]);
        assert_eq!(p.poll_transmit(at(1_120)), None);
        assert_eq!(
            p.poll_timeout(),
            Some(at(1_150)),
            "the poll's P2 comes before the next poll at 1.62 s"
        );
    }

    #[test]
    fn the_deadline_counts_from_the_start_even_while_a_poll_is_under_way() {
        let mut p = poll(at(0));
        p.send_due(at(9_990), || vec![0x3E, 0x00]).unwrap();
        assert!(p.poll_transmit(at(9_990)).is_some());
        assert_eq!(
            p.send_due(at(10_000), || vec![0x3E, 0x00]),
            Ok(()),
            "a poll under way is awaited"
        );
        p.handle_timeout(at(10_040));
        assert_eq!(
            p.poll_event(),
            Some(RequesterEvent::NoResponse { attempts: 1 })
        );
        let f = p.send_due(at(10_040), || vec![0x3E, 0x00]).unwrap_err();
        assert_eq!(f.code, ErrorCode::RESTART_FAILED);
        assert_eq!(p.poll_transmit(at(10_040)), None);
    }
}
