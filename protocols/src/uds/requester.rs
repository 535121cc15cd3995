//! One UDS request at a time over ISO-TP: identification reads, tester present, polls.

use super::response::UdsResponse;
use super::{Nrc, service};
use crate::isotp::{Event as IsoTpEvent, IsoTpChannel, IsoTpConfig};
use bmsfw_plugin_api::{CanFrame, Timestamp};
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::Duration;

/// How a [`Requester`] waits and repeats. [`RequesterConfig::default`] gives the usual
/// values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequesterConfig {
    /// P2 client timeout, from the request's last frame to the response. Default 50 ms.
    pub p2: Duration,
    /// P2* client timeout after a response-pending answer. Default 5000 ms.
    pub p2_star: Duration,
    /// Repeats after a lost or late response (or a busy answer) before the request
    /// fails. Default 3.
    pub max_retries: u8,
    /// Response-pending answers in a row one request may get. Default 120.
    pub max_pending: u16,
}

impl Default for RequesterConfig {
    fn default() -> RequesterConfig {
        RequesterConfig {
            p2: Duration::from_millis(50),
            p2_star: Duration::from_millis(5000),
            max_retries: 3,
            max_pending: 120,
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequesterEvent {
    /// The positive response: its bytes after the response service identifier.
    Positive(Vec<u8>),
    /// The server refused with this code.
    Negative(Nrc),
    /// No response came, also after repeating the request.
    NoResponse {
        /// Times the request was sent.
        attempts: u8,
    },
    /// The server kept answering response-pending.
    TooManyPending {
        /// The configured limit.
        max: u16,
    },
}

/// Why [`Requester::request`] refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequesterError {
    /// A request is still under way.
    #[error("a request is still under way")]
    Busy,
    /// A request needs at least its service identifier.
    #[error("an empty request cannot be sent")]
    Empty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// The request is going out through ISO-TP.
    Sending,
    /// Sent; the response is due by `deadline`.
    Response { deadline: Timestamp },
    /// The server was busy; send again at `at`.
    Retry { at: Timestamp },
}

#[derive(Debug)]
enum State {
    Idle,
    Waiting {
        request: Bytes,
        retries: u8,
        pending: u16,
        wait: Wait,
    },
}

/// Sends one UDS request at a time and reports its outcome: the positive response's
/// data, the negative response code, or that no answer came.
///
/// It waits P2 after the request's last frame, P2* after each response-pending answer,
/// repeats the request after a lost or late response and after a busy answer (NRC 0x21)
/// up to `max_retries` times, and ignores responses to other services. Sans-IO like the
/// [`IsoTpChannel`] it owns: feed it frames and time, send its frames, drain its
/// events, and come back at [`poll_timeout`](Self::poll_timeout).
///
/// ```
/// use bmsfw_plugin_api::{CanId, Timestamp};
/// use bmsfw_protocols::isotp::{IsoTpChannel, IsoTpConfig, Event};
/// use bmsfw_protocols::uds::{Requester, RequesterConfig, RequesterEvent};
///
/// let ids = IsoTpConfig::new(CanId::standard(0x7E0).unwrap(), CanId::standard(0x7E8).unwrap());
/// let mut client = Requester::new(ids.clone(), RequesterConfig::default());
/// let mut server = IsoTpChannel::new(ids.peer());
/// let now = Timestamp::ZERO;
/// client.request(now, vec![0x22, 0xF1, 0x80]).unwrap();
/// while let Some(frame) = client.poll_transmit(now) {
///     server.handle_frame(now, &frame);
/// }
/// assert_eq!(server.poll_event(), Some(Event::Received(vec![0x22, 0xF1, 0x80])));
/// server.send(now, vec![0x62, 0xF1, 0x80, 0x02, 0x03]).unwrap();
/// while let Some(frame) = server.poll_transmit(now) {
///     client.handle_frame(now, &frame);
/// }
/// assert_eq!(client.poll_event(), Some(RequesterEvent::Positive(vec![0xF1, 0x80, 0x02, 0x03])));
/// ```
#[derive(Debug)]
pub struct Requester {
    channel: IsoTpChannel,
    config: RequesterConfig,
    state: State,
    events: VecDeque<RequesterEvent>,
}

impl Requester {
    /// An idle requester over an ISO-TP channel with `isotp` settings.
    pub fn new(isotp: IsoTpConfig, config: RequesterConfig) -> Requester {
        Requester {
            channel: IsoTpChannel::new(isotp),
            config,
            state: State::Idle,
            events: VecDeque::new(),
        }
    }

    /// Whether no request is under way.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    /// Sends `request` (service identifier first).
    pub fn request(
        &mut self,
        now: Timestamp,
        request: impl Into<Bytes>,
    ) -> Result<(), RequesterError> {
        if !self.is_idle() {
            return Err(RequesterError::Busy);
        }
        let request = request.into();
        if request.is_empty() {
            return Err(RequesterError::Empty);
        }
        self.state = State::Waiting {
            request: request.clone(),
            retries: 0,
            pending: 0,
            wait: Wait::Sending,
        };
        self.transmit(now, request);
        Ok(())
    }

    /// Drops the request under way without an event.
    pub fn cancel(&mut self) {
        self.channel.abort_send();
        self.state = State::Idle;
    }

    /// Feeds a received CAN frame.
    pub fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        self.channel.handle_frame(now, frame);
        self.drain_channel(now);
    }

    /// Fires expired timers: ISO-TP timers, the response timeout and busy retries.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.channel.handle_timeout(now);
        self.drain_channel(now);
        let State::Waiting { request, wait, .. } = &self.state else {
            return;
        };
        match *wait {
            Wait::Response { deadline } if now >= deadline && !self.channel.is_receiving() => {
                self.no_response(now);
            }
            Wait::Retry { at } if now >= at => {
                let request = request.clone();
                self.transmit(now, request);
            }
            _ => {}
        }
    }

    /// The next frame to put on the bus.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        let frame = self.channel.poll_transmit(now);
        self.drain_channel(now);
        frame
    }

    /// The next instant to call [`handle_timeout`](Self::handle_timeout).
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let own = match &self.state {
            State::Waiting { wait, .. } => match *wait {
                Wait::Response { deadline } if !self.channel.is_receiving() => Some(deadline),
                Wait::Retry { at } => Some(at),
                _ => None,
            },
            State::Idle => None,
        };
        match (own, self.channel.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The outcome of the request, once it ended.
    pub fn poll_event(&mut self) -> Option<RequesterEvent> {
        self.events.pop_front()
    }

    fn drain_channel(&mut self, now: Timestamp) {
        while let Some(event) = self.channel.poll_event() {
            let State::Waiting { wait, .. } = &mut self.state else {
                continue;
            };
            match event {
                IsoTpEvent::Sent => {
                    if *wait == Wait::Sending {
                        *wait = Wait::Response {
                            deadline: now + self.config.p2,
                        };
                    }
                }
                IsoTpEvent::SendFailed(error) => {
                    tracing::debug!(%error, "UDS request lost in transport");
                    if *wait == Wait::Sending {
                        self.no_response(now);
                    }
                }
                IsoTpEvent::ReceiveFailed(error) => {
                    tracing::debug!(%error, "UDS response lost in transport");
                }
                IsoTpEvent::Received(message) => {
                    if matches!(wait, Wait::Response { .. }) {
                        self.response(now, &message);
                    }
                }
            }
        }
    }

    fn transmit(&mut self, now: Timestamp, request: Bytes) {
        self.channel.abort_send();
        if let State::Waiting { wait, .. } = &mut self.state {
            *wait = Wait::Sending;
        }
        if let Err(error) = self.channel.send(now, request) {
            // The request is never empty and the channel was just made idle.
            tracing::error!(%error, "ISO-TP refused a UDS request");
            self.finish(RequesterEvent::NoResponse { attempts: 0 });
        }
    }

    fn no_response(&mut self, now: Timestamp) {
        let State::Waiting {
            request,
            retries,
            pending,
            ..
        } = &mut self.state
        else {
            return;
        };
        if *retries >= self.config.max_retries {
            let attempts = retries.saturating_add(1);
            self.finish(RequesterEvent::NoResponse { attempts });
            return;
        }
        *retries += 1;
        *pending = 0;
        let request = request.clone();
        self.transmit(now, request);
    }

    fn response(&mut self, now: Timestamp, message: &[u8]) {
        let State::Waiting {
            request,
            retries,
            pending,
            wait,
        } = &mut self.state
        else {
            return;
        };
        let sid = request[0];
        let parsed = match UdsResponse::parse(message) {
            Ok(r) if r.service() == sid => r,
            Ok(_) | Err(_) => {
                tracing::debug!(response = ?message, "ignoring a response to another request");
                return;
            }
        };
        match parsed {
            UdsResponse::Negative {
                nrc: Nrc::ResponsePending,
                ..
            } => {
                *pending += 1;
                if *pending > self.config.max_pending {
                    let max = self.config.max_pending;
                    self.finish(RequesterEvent::TooManyPending { max });
                } else {
                    *wait = Wait::Response {
                        deadline: now + self.config.p2_star,
                    };
                }
            }
            UdsResponse::Negative {
                nrc: Nrc::BusyRepeatRequest,
                ..
            } if *retries < self.config.max_retries => {
                *retries += 1;
                *wait = Wait::Retry {
                    at: now + self.config.p2,
                };
            }
            UdsResponse::Negative { nrc, .. } => self.finish(RequesterEvent::Negative(nrc)),
            UdsResponse::Positive { data, .. } => {
                self.finish(RequesterEvent::Positive(data.to_vec()))
            }
        }
    }

    fn finish(&mut self, event: RequesterEvent) {
        self.channel.abort_send();
        self.state = State::Idle;
        self.events.push_back(event);
    }
}

/// The request `22 <identifiers>`: ReadDataByIdentifier of fixed-length data identifiers.
pub fn read_data_request(identifiers: &[u16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 2 * identifiers.len());
    out.push(service::READ_DATA_BY_IDENTIFIER);
    for id in identifiers {
        out.extend_from_slice(&id.to_be_bytes());
    }
    out
}

/// Why a ReadDataByIdentifier response does not hold the values asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadDataError {
    /// The response ends inside a record.
    #[error("the response ends at byte {len}; {needed} bytes are needed for the records asked")]
    Truncated {
        /// Bytes needed, counted from the response service identifier.
        needed: usize,
        /// Bytes present, counted the same way.
        len: usize,
    },
    /// A record carries another identifier than the one asked for at its place.
    #[error("byte {offset}: identifier 0x{got:04X} where 0x{expected:04X} was asked for")]
    WrongIdentifier {
        /// Offset of the identifier, counted from the response service identifier.
        offset: usize,
        /// The identifier asked for.
        expected: u16,
        /// The identifier found.
        got: u16,
    },
    /// Bytes follow the last record.
    #[error("{extra} bytes follow the last record")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
}

/// Splits the data of a positive ReadDataByIdentifier response (the bytes after `62`)
/// into the values of `records`, each an identifier and the length of its value, in the
/// order they were asked for.
pub fn parse_read_data<'a>(
    data: &'a [u8],
    records: &[(u16, usize)],
) -> Result<Vec<&'a [u8]>, ReadDataError> {
    let needed: usize = records.iter().map(|(_, len)| 2 + len).sum();
    if data.len() < needed {
        return Err(ReadDataError::Truncated {
            needed: needed + 1,
            len: data.len() + 1,
        });
    }
    let mut values = Vec::with_capacity(records.len());
    let mut at = 0;
    for &(expected, len) in records {
        let got = u16::from_be_bytes([data[at], data[at + 1]]);
        if got != expected {
            return Err(ReadDataError::WrongIdentifier {
                offset: at + 1,
                expected,
                got,
            });
        }
        values.push(&data[at + 2..at + 2 + len]);
        at += 2 + len;
    }
    if at != data.len() {
        return Err(ReadDataError::TrailingBytes {
            extra: data.len() - at,
        });
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uds::{negative, positive};
    use bmsfw_plugin_api::CanId;
    use proptest::prelude::*;

    fn ids() -> IsoTpConfig {
        IsoTpConfig::new(
            CanId::standard(0x7E0).unwrap(),
            CanId::standard(0x7E8).unwrap(),
        )
    }

    /// A requester and a server endpoint; `answer` maps each request the server receives
    /// to its responses (none to stay silent).
    struct Pair {
        client: Requester,
        server: IsoTpChannel,
        now: Timestamp,
        requests: Vec<Vec<u8>>,
    }

    impl Pair {
        fn new(config: RequesterConfig) -> Pair {
            Pair {
                client: Requester::new(ids(), config),
                server: IsoTpChannel::new(ids().peer()),
                now: Timestamp::from_micros(1_000),
                requests: Vec::new(),
            }
        }

        /// Moves frames both ways until both sides are quiet; at most 10 000 frames, so a
        /// side that never stops sending fails the test instead of hanging it.
        fn pump(&mut self) {
            crate::test_support::pump(&mut self.client, &mut self.server, self.now, 10_000);
        }

        /// Runs until the client reports an outcome; the server answers each request
        /// with the responses `answer` gives (none to stay silent).
        fn run(&mut self, mut answer: impl FnMut(usize, &[u8]) -> Vec<Vec<u8>>) -> RequesterEvent {
            for _ in 0..10_000 {
                self.pump();
                while let Some(event) = self.server.poll_event() {
                    let IsoTpEvent::Received(req) = event else {
                        continue;
                    };
                    let n = self.requests.len();
                    self.requests.push(req.clone());
                    for response in answer(n, &req) {
                        self.server.send(self.now, response).unwrap();
                        self.pump();
                    }
                }
                if let Some(e) = self.client.poll_event() {
                    return e;
                }
                let next = self
                    .client
                    .poll_timeout()
                    .expect("a running request has a timer");
                self.now = self.now.max(next);
                self.client.handle_timeout(self.now);
            }
            panic!("the request never ended");
        }
    }

    #[test]
    fn a_positive_response_ends_the_request_with_its_data() {
        let mut p = Pair::new(RequesterConfig::default());
        p.client
            .request(p.now, read_data_request(&[0xF1, 0xF180]))
            .unwrap();
        assert_eq!(
            p.client.request(p.now, vec![0x3E, 0x00]),
            Err(RequesterError::Busy)
        );
        let e = p.run(|_, req| {
            assert_eq!(req, [0x22, 0x00, 0xF1, 0xF1, 0x80]);
            vec![positive(0x22, &[0x00, 0xF1, 7, 0xF1, 0x80, 2, 3])]
        });
        let RequesterEvent::Positive(data) = e else {
            panic!("{e:?}")
        };
        assert_eq!(
            parse_read_data(&data, &[(0x00F1, 1), (0xF180, 2)]).unwrap(),
            vec![&[7][..], &[2, 3][..]]
        );
        assert!(p.client.is_idle());
        assert_eq!(p.client.request(p.now, vec![]), Err(RequesterError::Empty));
    }

    #[test]
    fn pending_answers_wait_and_other_services_are_ignored() {
        let mut p = Pair::new(RequesterConfig::default());
        p.client
            .request(p.now, vec![0x31, 0x01, 0xFF, 0x00])
            .unwrap();
        let start = p.now;
        let e = p.run(|_, _| {
            vec![
                negative(0x31, Nrc::ResponsePending),
                positive(0x22, &[0xF1, 0x80, 1, 2]),
            ]
        });
        // After the pending answer only the P2* deadline runs; the server then stays
        // silent, so the request is repeated and answered the same way until it fails.
        assert_eq!(e, RequesterEvent::NoResponse { attempts: 4 });
        assert_eq!(p.requests.len(), 4);
        assert!(p.now.saturating_duration_since(start) >= Duration::from_millis(4 * 5000));

        let mut p = Pair::new(RequesterConfig::default());
        p.client
            .request(p.now, vec![0x31, 0x01, 0xFF, 0x00])
            .unwrap();
        let e = p.run(|n, _| match n {
            0 => vec![negative(0x31, Nrc::ResponsePending)],
            _ => vec![positive(0x31, &[0x01, 0xFF, 0x00])],
        });
        assert_eq!(e, RequesterEvent::Positive(vec![0x01, 0xFF, 0x00]));
    }

    #[test]
    fn lost_responses_are_repeated_then_given_up() {
        let config = RequesterConfig {
            max_retries: 2,
            ..RequesterConfig::default()
        };
        let mut p = Pair::new(config.clone());
        p.client.request(p.now, vec![0x3E, 0x00]).unwrap();
        let e = p.run(|n, _| match n {
            0 | 1 => vec![],
            _ => vec![positive(0x3E, &[0x00])],
        });
        assert_eq!(e, RequesterEvent::Positive(vec![0x00]));
        assert_eq!(p.requests.len(), 3);

        let mut p = Pair::new(config);
        p.client.request(p.now, vec![0x3E, 0x00]).unwrap();
        let start = p.now;
        assert_eq!(
            p.run(|_, _| vec![]),
            RequesterEvent::NoResponse { attempts: 3 }
        );
        assert_eq!(
            p.now.saturating_duration_since(start),
            Duration::from_millis(150)
        );
    }

    #[test]
    fn busy_answers_are_retried_and_refusals_reported() {
        let mut p = Pair::new(RequesterConfig::default());
        p.client.request(p.now, vec![0x22, 0xF1, 0x95]).unwrap();
        let e = p.run(|n, _| match n {
            0 => vec![negative(0x22, Nrc::BusyRepeatRequest)],
            _ => vec![negative(0x22, Nrc::RequestOutOfRange)],
        });
        assert_eq!(e, RequesterEvent::Negative(Nrc::RequestOutOfRange));
        assert_eq!(p.requests.len(), 2);

        let mut p = Pair::new(RequesterConfig {
            max_pending: 2,
            ..RequesterConfig::default()
        });
        p.client
            .request(p.now, vec![0x31, 0x01, 0xFF, 0x01])
            .unwrap();
        let e = p.run(|_, _| vec![negative(0x31, Nrc::ResponsePending); 3]);
        assert_eq!(e, RequesterEvent::TooManyPending { max: 2 });
    }

    #[test]
    fn cancel_drops_the_request_silently() {
        let mut p = Pair::new(RequesterConfig::default());
        p.client.request(p.now, vec![0x3E, 0x00]).unwrap();
        p.client.cancel();
        assert!(p.client.is_idle());
        assert_eq!(p.client.poll_transmit(p.now), None);
        assert_eq!(p.client.poll_timeout(), None);
        assert_eq!(p.client.poll_event(), None);
    }

    #[test]
    fn read_data_errors_name_the_offset() {
        assert_eq!(
            parse_read_data(&[0xF1, 0x80, 1], &[(0xF180, 2)]),
            Err(ReadDataError::Truncated { needed: 5, len: 4 })
        );
        assert_eq!(
            parse_read_data(
                &[0xF1, 0x80, 1, 2, 0xF1, 0x95, 3, 4],
                &[(0xF180, 2), (0xF187, 2)]
            ),
            Err(ReadDataError::WrongIdentifier {
                offset: 5,
                expected: 0xF187,
                got: 0xF195
            })
        );
        assert_eq!(
            parse_read_data(&[0xF1, 0x80, 1, 2, 9], &[(0xF180, 2)]),
            Err(ReadDataError::TrailingBytes { extra: 1 })
        );
    }

    #[test]
    fn read_data_counts_every_record_and_every_extra_byte() {
        assert_eq!(
            parse_read_data(&[0xF1, 0x80], &[(0xF180, 1)]),
            Err(ReadDataError::Truncated { needed: 4, len: 3 })
        );
        assert_eq!(
            parse_read_data(&[0xF1, 0x80, 1, 2, 3, 4, 5], &[(0xF180, 1)]),
            Err(ReadDataError::TrailingBytes { extra: 4 })
        );
        assert_eq!(
            parse_read_data(
                &[0xF1, 0x80, 7, 0xF1, 0x95, 1, 2, 3],
                &[(0xF180, 1), (0xF195, 3)]
            ),
            Ok(vec![&[7][..], &[1, 2, 3][..]])
        );
        assert_eq!(parse_read_data(&[], &[]), Ok(vec![]));
    }

    #[test]
    fn as_many_pending_answers_as_allowed_still_end_in_the_answer() {
        let mut p = Pair::new(RequesterConfig {
            max_pending: 2,
            ..RequesterConfig::default()
        });
        p.client
            .request(p.now, vec![0x31, 0x01, 0xFF, 0x01])
            .unwrap();
        let e = p.run(|_, _| {
            vec![
                negative(0x31, Nrc::ResponsePending),
                negative(0x31, Nrc::ResponsePending),
                positive(0x31, &[0x01, 0xFF, 0x01, 0x00]),
            ]
        });
        assert_eq!(e, RequesterEvent::Positive(vec![0x01, 0xFF, 0x01, 0x00]));
        assert_eq!(p.requests.len(), 1);
    }

    #[test]
    fn a_server_that_stays_busy_is_asked_max_retries_more_times() {
        let mut p = Pair::new(RequesterConfig {
            max_retries: 2,
            ..RequesterConfig::default()
        });
        p.client.request(p.now, vec![0x22, 0xF1, 0x95]).unwrap();
        let start = p.now;
        let e = p.run(|_, _| vec![negative(0x22, Nrc::BusyRepeatRequest)]);
        assert_eq!(e, RequesterEvent::Negative(Nrc::BusyRepeatRequest));
        assert_eq!(p.requests.len(), 3);
        assert_eq!(
            p.now.saturating_duration_since(start),
            Duration::from_millis(100),
            "each repeat waits P2"
        );
    }

    /// A requester with default settings that sent `request` at time zero, the server's
    /// channel that received it, and the request's frame.
    fn requested_at_zero(request: Vec<u8>) -> (Requester, IsoTpChannel, CanFrame) {
        let mut client = Requester::new(ids(), RequesterConfig::default());
        let mut server = IsoTpChannel::new(ids().peer());
        client.request(Timestamp::ZERO, request).unwrap();
        let f = client.poll_transmit(Timestamp::ZERO).unwrap();
        server.handle_frame(Timestamp::ZERO, &f);
        (client, server, f)
    }

    #[test]
    fn a_busy_answer_is_repeated_only_once_p2_has_passed() {
        let ms = |n: u64| Timestamp::from_micros(n * 1000);
        let (mut client, mut server, f) = requested_at_zero(vec![0x22, 0xF1, 0x95]);
        server
            .send(ms(10), negative(0x22, Nrc::BusyRepeatRequest))
            .unwrap();
        let answer = server.poll_transmit(ms(10)).unwrap();
        client.handle_frame(ms(10), &answer);
        assert_eq!(client.poll_event(), None);
        assert_eq!(client.poll_timeout(), Some(ms(60)), "the repeat waits P2");
        client.handle_timeout(ms(59));
        assert_eq!(client.poll_transmit(ms(59)), None, "not before P2");
        client.handle_timeout(ms(60));
        let repeat = client.poll_transmit(ms(60)).unwrap();
        assert_eq!(repeat.data(), f.data());
    }

    #[test]
    fn a_request_whose_flow_control_never_comes_is_repeated_then_given_up() {
        let mut client = Requester::new(
            ids(),
            RequesterConfig {
                max_retries: 1,
                ..RequesterConfig::default()
            },
        );
        let mut now = Timestamp::ZERO;
        let request = read_data_request(&[0xF180, 0xF181, 0xF182, 0xF183]);
        client.request(now, request).unwrap();
        let mut first_frames = Vec::new();
        for _ in 0..100 {
            while let Some(f) = client.poll_transmit(now) {
                assert_eq!(f.data()[0], 0x10, "a first frame, nothing after it");
                first_frames.push(now);
                assert!(
                    first_frames.len() <= 10,
                    "the requester never stops sending"
                );
            }
            if let Some(e) = client.poll_event() {
                assert_eq!(e, RequesterEvent::NoResponse { attempts: 2 });
                let ms = |n: u64| Timestamp::from_micros(n * 1000);
                assert_eq!(first_frames, vec![ms(0), ms(1000)], "N_Bs apart");
                assert_eq!(now, ms(2000));
                assert!(client.is_idle());
                return;
            }
            now = client
                .poll_timeout()
                .expect("a running request has a timer");
            client.handle_timeout(now);
        }
        panic!("the request never ended");
    }

    #[test]
    fn a_long_response_under_way_at_p2_is_waited_for() {
        let ms = |n: u64| Timestamp::from_micros(n * 1000);
        let (mut client, mut server, _) = requested_at_zero(vec![0x22, 0xF1, 0x90]);
        assert_eq!(client.poll_timeout(), Some(ms(50)), "P2");
        let vin: Vec<u8> = (b'A'..=b'Q').collect();
        let answer = positive(0x22, &[&[0xF1, 0x90][..], &vin].concat());
        server.send(ms(40), answer.clone()).unwrap();
        let ff = server.poll_transmit(ms(40)).unwrap();
        client.handle_frame(ms(40), &ff);
        let fc = client.poll_transmit(ms(40)).unwrap();
        server.handle_frame(ms(40), &fc);
        // Past P2 the response is still arriving: only ISO-TP's N_Cr runs.
        assert_eq!(client.poll_timeout(), Some(ms(1040)));
        client.handle_timeout(ms(60));
        assert_eq!(
            client.poll_transmit(ms(60)),
            None,
            "no repeat while receiving"
        );
        assert_eq!(client.poll_event(), None);
        for _ in 0..10 {
            let Some(cf) = server.poll_transmit(ms(70)) else {
                break;
            };
            client.handle_frame(ms(70), &cf);
        }
        assert_eq!(
            client.poll_event(),
            Some(RequesterEvent::Positive(answer[1..].to_vec()))
        );
        assert!(client.is_idle());
    }

    proptest! {
        #[test]
        fn read_data_parsing_never_panics(
            data in prop::collection::vec(any::<u8>(), 0..40),
            records in prop::collection::vec((any::<u16>(), 0usize..8), 0..5),
        ) {
            if let Ok(values) = parse_read_data(&data, &records) {
                prop_assert_eq!(values.len(), records.len());
                for (v, (_, len)) in values.iter().zip(&records) {
                    prop_assert_eq!(v.len(), *len);
                }
            }
        }
    }
}
