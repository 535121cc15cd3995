//! A recording of a real update, read as hostile input, and the script the replay peer
//! plays from it.
//!
//! The recording is a candump log (`bmsfw capture`, `candump -l`) of a complete,
//! successful update of a battery with the same package the conformance run is given.
//! It is read with the `can` crate's candump reader, so every error names its line and
//! column, and it is bounded: at most [`MAX_RECORDING_BYTES`] bytes and
//! [`MAX_RECORDING_FRAMES`] frames.
//!
//! A [`Script`] splits the recording by the plugin's declared identifiers: the frames on
//! its send identifiers are what the plugin sent, each followed by the frames on its
//! receive identifiers recorded after it (the BMS's answers, and telemetry the plugin
//! listens to) with their delays; frames on other identifiers and error frames are left
//! out. Only one interface is replayed: the one the plugin's first frame was recorded on.

use crate::plugin::PluginInfo;
use crate::telemetry::BmsCanMonitor;
use bmsfw_can::candump::{CandumpError, CandumpReader, LogEntry};
use bmsfw_plugin_api::{BatteryIdentity, CanFrame, Timestamp};
use std::io::Read;
use std::time::Duration;

/// Largest recording read, in bytes.
pub const MAX_RECORDING_BYTES: u64 = 128 * 1024 * 1024;

/// Most frames a recording may hold.
pub const MAX_RECORDING_FRAMES: usize = 2_000_000;

/// The longest single delay the replay keeps; a longer gap in the recording is cut to
/// it (a capture left running over lunch is not a restart).
pub const MAX_REPLAY_GAP: Duration = Duration::from_secs(600);

/// How much of what the battery sent before the plugin's first frame is replayed from
/// the session's start: a plugin that listens before it speaks (to heartbeats, say)
/// hears the last of it.
pub const PROLOGUE_WINDOW: Duration = Duration::from_secs(10);

/// Why a recording could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// Reading failed.
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
    /// More bytes than [`MAX_RECORDING_BYTES`].
    #[error("longer than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// More frames than [`MAX_RECORDING_FRAMES`].
    #[error("line {line}: more than {limit} frames")]
    TooManyFrames {
        /// The line of the first frame over the limit.
        line: u64,
        /// The limit.
        limit: usize,
    },
    /// A line that is not a candump log line (the error names its line and column).
    #[error(transparent)]
    Candump(#[from] CandumpError),
}

/// One data frame of the recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedFrame {
    /// Its timestamp in the log.
    pub at: Duration,
    /// The 1-based line it is on.
    pub line: u64,
    /// Index of its interface in [`Recording::interfaces`].
    pub interface: usize,
    /// The frame.
    pub frame: CanFrame,
}

/// A candump log, read and bounded: its data frames in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recording {
    /// The interfaces named in the log, in order of first appearance.
    pub interfaces: Vec<String>,
    /// The data frames (error frames are left out).
    pub frames: Vec<RecordedFrame>,
}

impl Recording {
    /// Reads a candump log from `input`, at most [`MAX_RECORDING_BYTES`] of it.
    pub fn read(input: impl Read) -> Result<Recording, RecordingError> {
        let mut bytes = Vec::new();
        input
            .take(MAX_RECORDING_BYTES + 1)
            .read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_RECORDING_BYTES {
            return Err(RecordingError::TooLarge {
                limit: MAX_RECORDING_BYTES,
            });
        }
        Recording::parse(&bytes)
    }

    /// Parses the text of a candump log.
    pub fn parse(log: &[u8]) -> Result<Recording, RecordingError> {
        if log.len() as u64 > MAX_RECORDING_BYTES {
            return Err(RecordingError::TooLarge {
                limit: MAX_RECORDING_BYTES,
            });
        }
        let mut recording = Recording::default();
        let mut reader = CandumpReader::new(log);
        while let Some(record) = reader.next() {
            let record = record?;
            let LogEntry::Frame(frame) = record.entry else {
                continue;
            };
            let line = reader.line();
            if recording.frames.len() >= MAX_RECORDING_FRAMES {
                return Err(RecordingError::TooManyFrames {
                    line,
                    limit: MAX_RECORDING_FRAMES,
                });
            }
            let interface = match recording
                .interfaces
                .iter()
                .position(|i| *i == record.interface)
            {
                Some(i) => i,
                None => {
                    recording.interfaces.push(record.interface);
                    recording.interfaces.len() - 1
                }
            };
            recording.frames.push(RecordedFrame {
                at: record.timestamp,
                line,
                interface,
                frame,
            });
        }
        Ok(recording)
    }

    /// The script of a plugin that declares `info`'s identifiers.
    pub fn script(&self, info: &PluginInfo) -> Script {
        let interface = self
            .frames
            .iter()
            .find(|f| info.may_send(f.frame.id()))
            .map(|f| f.interface);
        let mut script = Script {
            interface: interface.and_then(|i| self.interfaces.get(i).cloned()),
            ..Script::default()
        };
        let Some(interface) = interface else {
            script.ignored = self.frames.len();
            return script;
        };
        let mut last: Option<Duration> = None;
        let mut sent_at: Option<Duration> = None;
        let mut before_first: Vec<&RecordedFrame> = Vec::new();
        for f in &self.frames {
            if f.interface != interface {
                script.ignored += 1;
            } else if info.may_send(f.frame.id()) {
                script.steps.push(Step {
                    sent: f.frame,
                    line: f.line,
                    since_sent: sent_at.map_or(Duration::ZERO, |p| gap(p, f.at)),
                    answers: Vec::new(),
                });
                last = Some(f.at);
                sent_at = Some(f.at);
            } else if !info.wants(f.frame.id()) {
                script.ignored += 1;
            } else if let (Some(step), Some(previous)) = (script.steps.last_mut(), last) {
                step.answers.push(Answer {
                    after: gap(previous, f.at),
                    frame: f.frame,
                });
                last = Some(f.at);
            } else {
                before_first.push(f);
            }
        }
        // The prologue: the last PROLOGUE_WINDOW of what came before the first frame.
        let first_sent = self
            .frames
            .iter()
            .find(|f| f.interface == interface && info.may_send(f.frame.id()))
            .map(|f| f.at);
        if let Some(first_sent) = first_sent {
            let from = first_sent.saturating_sub(PROLOGUE_WINDOW);
            let mut previous: Option<Duration> = None;
            for f in before_first.iter().filter(|f| f.at >= from) {
                script.prologue.push(Answer {
                    after: previous.map_or(Duration::ZERO, |p| gap(p, f.at)),
                    frame: f.frame,
                });
                previous = Some(f.at);
            }
            script.ignored += before_first.len() - script.prologue.len();
        }
        script
    }

    /// The battery the recording's BMS-Can telemetry announces before the first frame of
    /// a plugin that sends on `info`'s identifiers (0x35E, 0x35F and the rest, as the
    /// engine hears them), on the interface the plugin's first frame was recorded on.
    /// `None` when the telemetry names no manufacturer.
    pub fn battery(&self, info: &PluginInfo) -> Option<BatteryIdentity> {
        let interface = self
            .frames
            .iter()
            .find(|f| info.may_send(f.frame.id()))
            .map_or(0, |f| f.interface);
        let mut monitor = BmsCanMonitor::new(self.interfaces.get(interface)?.clone());
        let start = self.frames.first()?.at;
        for f in &self.frames {
            if f.interface != interface {
                continue;
            }
            if info.may_send(f.frame.id()) {
                break;
            }
            // The monitor wants a clock that starts above zero; the log's differences
            // are what matter.
            let t = Timestamp::from_micros(
                1_000_000 + f.at.saturating_sub(start).as_micros().min(u64::MAX as u128) as u64,
            );
            monitor.handle_frame(t, &f.frame);
        }
        let identity = monitor.battery()?.identity();
        identity.manufacturer.as_ref()?;
        Some(crate::plugin::plugin_battery(&identity))
    }
}

/// `to - from`, and zero when the log's clock went backwards; cut at [`MAX_REPLAY_GAP`].
fn gap(from: Duration, to: Duration) -> Duration {
    to.saturating_sub(from).min(MAX_REPLAY_GAP)
}

/// A frame the replay peer sends, `after` the frame before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The delay after the frame before it (the plugin's frame, or the answer before).
    pub after: Duration,
    /// The frame, on one of the plugin's receive identifiers.
    pub frame: CanFrame,
}

/// One frame the plugin sent in the recording and what followed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The plugin's frame.
    pub sent: CanFrame,
    /// Its line in the log.
    pub line: u64,
    /// The time from the end of the plugin's frame before it to its own end (zero for
    /// the first), cut at [`MAX_REPLAY_GAP`]: the recording's pace.
    pub since_sent: Duration,
    /// The frames on the plugin's receive identifiers recorded after it, before the
    /// plugin's next frame.
    pub answers: Vec<Answer>,
}

/// What the replay peer plays, for one plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    /// The interface replayed, `None` when no frame is on the plugin's send identifiers.
    pub interface: Option<String>,
    /// Frames on the receive identifiers before the plugin's first frame (the last
    /// [`PROLOGUE_WINDOW`] of them), the first one's delay zero.
    pub prologue: Vec<Answer>,
    /// The plugin's frames in order, each with what followed it.
    pub steps: Vec<Step>,
    /// Frames left out: on other identifiers or interfaces, or before the prologue.
    pub ignored: usize,
}

impl Script {
    /// Frames on the plugin's receive identifiers the script plays.
    pub fn answers(&self) -> usize {
        self.prologue.len() + self.steps.iter().map(|s| s.answers.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_plugin_api::{CanId, CanIdRange, PluginIdentity};

    fn info() -> PluginInfo {
        let id = |raw| CanId::standard(raw).unwrap();
        PluginInfo::from_abi(
            PluginIdentity::new("com.example.alpha", "Alpha", "1.2.0")
                .sends(CanIdRange::single(id(0x7E0)))
                .receives(CanIdRange::single(id(0x7E8)))
                .receives(CanIdRange::single(id(0x35F)))
                .file_type("bin"),
        )
        .unwrap()
    }

    const LOG: &str = "\
(98.000000) can0 351#0102
(99.500000) can0 35F#10A50410C800
(101.000000) can1 7E0#AA
(108.000000) can0 35F#10A50410C800
(110.000000) can0 7E0#0210
(110.001000) can0 20000008#0000000800000000
(110.002000) can0 7E8#5010
(110.003000) can0 356#1400
(110.004000) can1 7E8#FF
(110.010000) can0 7E0#1101
(900.010000) can0 7E8#5101
";

    #[test]
    fn the_script_pairs_the_plugins_frames_with_what_followed_them() {
        let recording = Recording::parse(LOG.as_bytes()).unwrap();
        assert_eq!(recording.interfaces, ["can0", "can1"]);
        assert_eq!(recording.frames.len(), 10, "the error frame is left out");
        assert_eq!(recording.frames[4].line, 5);
        let script = recording.script(&info());
        assert_eq!(
            script.interface.as_deref(),
            Some("can1"),
            "the interface of the plugin's first frame"
        );
        // On can1: 7E0#AA, then 7E8#FF after it; can0 is ignored.
        assert_eq!(script.steps.len(), 1);
        assert_eq!(script.steps[0].line, 3);
        assert_eq!(script.steps[0].answers.len(), 1);
        assert_eq!(script.ignored, 8);
    }

    #[test]
    fn delays_are_kept_and_long_gaps_cut() {
        let log: String = LOG
            .lines()
            .filter(|l| !l.contains("can1"))
            .collect::<Vec<_>>()
            .join("\n");
        let recording = Recording::parse(log.as_bytes()).unwrap();
        let script = recording.script(&info());
        assert_eq!(script.interface.as_deref(), Some("can0"));
        assert_eq!(script.steps.len(), 2);
        let first = &script.steps[0];
        assert_eq!(first.sent.data(), [0x02, 0x10]);
        // 7E8 after 2 ms; 356 is not the plugin's and is left out.
        assert_eq!(first.answers.len(), 1);
        assert_eq!(first.answers[0].after, Duration::from_millis(2));
        let second = &script.steps[1];
        assert_eq!(second.answers[0].after, MAX_REPLAY_GAP, "790 s is cut");
        // The prologue: 0x35F within the 10 s before the first frame, not the one at
        // 99.5 s; 0x351 is not the plugin's.
        assert_eq!(script.prologue.len(), 1);
        assert_eq!(script.prologue[0].after, Duration::ZERO);
        assert_eq!(script.answers(), 3);
        assert_eq!(script.ignored, 3, "351, 356 and the old 35F");
        // The battery, from the telemetry before the plugin's first frame.
        let battery = recording.battery(&info());
        assert!(battery.is_none(), "no 0x35E: no manufacturer");
    }

    #[test]
    fn the_battery_comes_from_the_telemetry_before_the_first_frame() {
        let log = "\
(1.000000) can0 35E#414C50484100
(1.100000) can0 35F#10A50410C800
(2.000000) can0 7E0#01
(3.000000) can0 35F#10A50510C800
";
        let recording = Recording::parse(log.as_bytes()).unwrap();
        let b = recording.battery(&info()).expect("a battery");
        assert_eq!(b.manufacturer.as_str(), "ALPHA");
        assert_eq!(b.raw_35f(), [0x10, 0xA5, 0x04, 0x10, 0xC8, 0x00]);
    }

    #[test]
    fn a_bad_line_is_named_by_line_and_column() {
        let log = "(1.000000) can0 7E0#01\n(1.100000) can0 7E0#0G\n";
        let e = Recording::parse(log.as_bytes()).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("line 2, column 22:"), "{text}");
        let e = Recording::parse(b"(1.0) can0 7E0#01\n\xff\n").unwrap_err();
        assert!(e.to_string().starts_with("line 2, column 1:"), "{e}");
    }

    #[test]
    fn an_oversized_recording_is_refused_before_it_is_parsed() {
        let big = std::io::repeat(b'#').take(MAX_RECORDING_BYTES + 10);
        let e = Recording::read(big).unwrap_err();
        assert!(matches!(e, RecordingError::TooLarge { .. }), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_give_a_recording_or_an_error_never_a_panic(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
        ) {
            if let Ok(r) = Recording::parse(&bytes) {
                let script = r.script(&info());
                proptest::prop_assert!(script.steps.len() + script.answers() + script.ignored <= r.frames.len());
                let _ = r.battery(&info());
            }
        }

        #[test]
        fn every_frame_of_a_valid_log_is_counted_once(
            frames in proptest::collection::vec((0u16..4, 0u64..5_000_000, proptest::collection::vec(proptest::num::u8::ANY, 0..=8)), 0..40),
        ) {
            let ids = [0x7E0u16, 0x7E8, 0x35F, 0x100];
            let mut t = 0u64;
            let mut log = String::new();
            for (which, dt, data) in &frames {
                t += dt;
                let frame = CanFrame::new(CanId::standard(ids[usize::from(*which)]).unwrap(), data).unwrap();
                log.push_str(&format!("({}.{:06}) can0 {frame}\n", t / 1_000_000, t % 1_000_000));
            }
            let r = Recording::parse(log.as_bytes()).unwrap();
            proptest::prop_assert_eq!(r.frames.len(), frames.len());
            let s = r.script(&info());
            let sent = frames.iter().filter(|f| f.0 == 0).count();
            proptest::prop_assert_eq!(s.steps.len(), sent);
            if sent > 0 {
                proptest::prop_assert_eq!(s.steps.len() + s.answers() + s.ignored, frames.len());
            }
            for step in &s.steps {
                for a in &step.answers {
                    proptest::prop_assert!(a.after <= MAX_REPLAY_GAP);
                }
            }
        }
    }
}
