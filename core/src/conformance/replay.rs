//! The replay peer: the BMS of a recorded update, played back to the plugin.
//!
//! The peer pairs each frame the plugin sends with the next frame the plugin sent in the
//! recording ([`Script::steps`]). When they are the same frame, it answers with what
//! followed in the recording, each frame after its recorded delay from the frame before
//! it (the plugin's frame's end, then the answer before), so the install time and the
//! restart silence come back as they were. When the plugin's frame differs, or the
//! recording has no frame left, the replay ends: the peer goes silent (what it had not
//! yet delivered is dropped) and the [`Divergence`] is kept for the report.
//!
//! The plugin's frames keep the recording's pace: the runner asks the plugin for its next
//! frame no sooner than [`ReplayPeer::hold_until`], when the recorded one went out (its
//! end, less its own wire time, after the end of the plugin's frame before it). The pace
//! of the bench (the engine's bus budget) comes back with it, and so does what the
//! plugin's timers see between its frames: a plugin that asks for an acknowledgement
//! after a silence asks when it did in the recording.
//!
//! Before the plugin's first frame the peer plays the script's prologue (what the
//! battery sent before the plugin spoke in the recording) from the session's start; the
//! rest of it is dropped when the plugin speaks.

use super::recording::{Answer, Script};
use crate::plugin::SessionPhase;
use bmsfw_plugin_api::{CanFrame, Timestamp};
use bmsfw_protocols::bit_timing;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Where the plugin departed from the recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// The plugin's frame number (1-based) in the session.
    pub index: usize,
    /// Virtual time from the session's start.
    pub at: Duration,
    /// The phase the session reported then.
    pub phase: SessionPhase,
    /// What the plugin sent.
    pub sent: CanFrame,
    /// What the recording has in its place, with its line; `None` when the recording had
    /// no frame of the plugin left.
    pub expected: Option<(CanFrame, u64)>,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "frame {} of the plugin ({:?}, at {:.3} s) was {}; ",
            self.index,
            self.phase,
            self.at.as_secs_f64(),
            self.sent
        )?;
        match &self.expected {
            Some((frame, line)) => write!(f, "the recording has {frame} (line {line})"),
            None => f.write_str("the recording has no further frame of the plugin"),
        }
    }
}

/// How far a replay went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayProgress {
    /// The plugin's frames that matched the recording.
    pub matched: usize,
    /// The plugin's frames in the recording.
    pub recorded: usize,
    /// Frames the peer delivered.
    pub delivered: usize,
    /// Where the plugin departed from the recording, if it did.
    pub divergence: Option<Divergence>,
}

/// The replay peer.
#[derive(Debug)]
pub(crate) struct ReplayPeer {
    script: Arc<Script>,
    start: Timestamp,
    /// The next step of the script to match.
    next: usize,
    /// Frames due: (time, sequence) -> frame.
    due: BTreeMap<(Timestamp, u64), CanFrame>,
    seq: u64,
    heard: bool,
    /// The earliest time the plugin's next frame may go out.
    hold: Option<Timestamp>,
    bitrate: u32,
    progress: ReplayProgress,
}

impl ReplayPeer {
    /// A peer playing `script` to a session that started at `start`, on a bus at
    /// `bitrate`.
    pub(crate) fn new(script: Arc<Script>, start: Timestamp, bitrate: u32) -> ReplayPeer {
        let recorded = script.steps.len();
        let mut peer = ReplayPeer {
            script: script.clone(),
            start,
            next: 0,
            due: BTreeMap::new(),
            seq: 0,
            heard: false,
            hold: None,
            bitrate,
            progress: ReplayProgress {
                matched: 0,
                recorded,
                delivered: 0,
                divergence: None,
            },
        };
        peer.schedule(start, &script.prologue);
        peer
    }

    fn schedule(&mut self, from: Timestamp, answers: &[Answer]) {
        let mut at = from;
        for a in answers {
            at = at + a.after;
            self.seq += 1;
            self.due.insert((at, self.seq), a.frame);
        }
    }

    /// How far the replay went.
    pub(crate) fn progress(&self) -> &ReplayProgress {
        &self.progress
    }

    /// The earliest time the plugin may be asked for its next frame; `None` once the
    /// replay has ended (the plugin is then free).
    pub(crate) fn hold_until(&self) -> Option<Timestamp> {
        self.hold
    }

    /// When the next frame is due.
    pub(crate) fn next_due(&self) -> Option<Timestamp> {
        self.due.keys().next().map(|(t, _)| *t)
    }

    /// The frames due at `now`, in order.
    pub(crate) fn take_due(&mut self, now: Timestamp) -> Vec<CanFrame> {
        let mut out = Vec::new();
        while let Some(entry) = self.due.first_entry() {
            if entry.key().0 > now {
                break;
            }
            out.push(entry.remove());
        }
        self.progress.delivered += out.len();
        out
    }

    /// The plugin's `frame` left the wire at `end`, in `phase`: schedules the recorded
    /// answers, or ends the replay when the frame is not the recorded one.
    pub(crate) fn heard(&mut self, end: Timestamp, frame: &CanFrame, phase: SessionPhase) {
        if !self.heard {
            // What the battery said before the plugin spoke is over.
            self.heard = true;
            self.due.clear();
        }
        if self.progress.divergence.is_some() {
            return;
        }
        let script = self.script.clone();
        match script.steps.get(self.next) {
            Some(step) if step.sent == *frame => {
                self.next += 1;
                self.progress.matched += 1;
                self.schedule(end, &step.answers);
                self.hold = script.steps.get(self.next).map(|next| {
                    let wire = bit_timing::bits_duration(
                        u64::from(bit_timing::frame_bits(&next.sent)),
                        self.bitrate,
                    );
                    end + next.since_sent.saturating_sub(wire)
                });
            }
            other => {
                self.due.clear();
                self.hold = None;
                self.progress.divergence = Some(Divergence {
                    index: self.progress.matched + 1,
                    at: end.saturating_duration_since(self.start),
                    phase,
                    sent: *frame,
                    expected: other.map(|s| (s.sent, s.line)),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::recording::Step;
    use bmsfw_plugin_api::CanId;

    fn frame(id: u16, data: &[u8]) -> CanFrame {
        CanFrame::new(CanId::standard(id).unwrap(), data).unwrap()
    }

    fn script() -> Arc<Script> {
        Arc::new(Script {
            interface: Some("can0".into()),
            prologue: vec![Answer {
                after: Duration::ZERO,
                frame: frame(0x701, &[0x7F]),
            }],
            steps: vec![
                Step {
                    sent: frame(0x601, &[1]),
                    line: 3,
                    since_sent: Duration::ZERO,
                    answers: vec![
                        Answer {
                            after: Duration::from_millis(2),
                            frame: frame(0x581, &[1]),
                        },
                        Answer {
                            after: Duration::from_secs(5),
                            frame: frame(0x701, &[0]),
                        },
                    ],
                },
                Step {
                    sent: frame(0x601, &[2]),
                    line: 6,
                    since_sent: Duration::from_millis(5),
                    answers: vec![Answer {
                        after: Duration::from_millis(1),
                        frame: frame(0x581, &[2]),
                    }],
                },
            ],
            ignored: 0,
        })
    }

    const T0: Timestamp = Timestamp::from_micros(1_000_000);

    #[test]
    fn matching_frames_get_the_recorded_answers_with_their_delays() {
        let mut p = ReplayPeer::new(script(), T0, 500_000);
        assert_eq!(p.next_due(), Some(T0), "the prologue plays from the start");
        assert_eq!(p.take_due(T0), [frame(0x701, &[0x7F])]);
        let end = T0 + Duration::from_millis(10);
        p.heard(end, &frame(0x601, &[1]), SessionPhase::Transferring);
        assert_eq!(p.next_due(), Some(end + Duration::from_millis(2)));
        assert_eq!(
            p.take_due(end + Duration::from_millis(2)),
            [frame(0x581, &[1])]
        );
        let restart = end + Duration::from_millis(5002);
        assert_eq!(p.next_due(), Some(restart), "the silence is kept");
        assert_eq!(p.take_due(restart), [frame(0x701, &[0])]);
        // The plugin's next frame is held to the recording's pace: it ended 5 ms after
        // the first, so it is asked for no sooner than 5 ms less its wire time.
        let wire = bit_timing::bits_duration(
            u64::from(bit_timing::frame_bits(&frame(0x601, &[2]))),
            500_000,
        );
        assert_eq!(
            p.hold_until(),
            Some(end + (Duration::from_millis(5) - wire))
        );
        p.heard(restart, &frame(0x601, &[2]), SessionPhase::Restarting);
        assert_eq!(p.hold_until(), None, "nothing recorded after it");
        assert_eq!(p.progress().matched, 2);
        assert_eq!(p.progress().divergence, None);
        assert_eq!(p.progress().delivered, 3);
    }

    #[test]
    fn a_different_frame_ends_the_replay_and_is_reported() {
        let mut p = ReplayPeer::new(script(), T0, 500_000);
        let end = T0 + Duration::from_millis(10);
        p.heard(end, &frame(0x601, &[1]), SessionPhase::Transferring);
        p.heard(
            end + Duration::from_millis(1),
            &frame(0x601, &[9]),
            SessionPhase::Transferring,
        );
        assert_eq!(p.next_due(), None, "the peer goes silent");
        let d = p.progress().divergence.clone().expect("a divergence");
        assert_eq!(d.index, 2);
        assert_eq!(d.expected, Some((frame(0x601, &[2]), 6)));
        let text = d.to_string();
        assert!(text.contains("601#09") && text.contains("line 6"), "{text}");
        // Nothing more is answered, even the recorded frame.
        p.heard(end, &frame(0x601, &[2]), SessionPhase::Transferring);
        assert_eq!(p.next_due(), None);
    }

    #[test]
    fn a_frame_after_the_recording_ends_is_a_divergence() {
        let mut p = ReplayPeer::new(script(), T0, 500_000);
        p.heard(T0, &frame(0x601, &[1]), SessionPhase::Transferring);
        p.heard(T0, &frame(0x601, &[2]), SessionPhase::Transferring);
        p.heard(T0, &frame(0x601, &[3]), SessionPhase::Verifying);
        let d = p.progress().divergence.clone().unwrap();
        assert_eq!((d.index, d.expected), (3, None));
        assert!(d.to_string().contains("no further frame"));
    }
}
