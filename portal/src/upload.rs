//! Stage 1 from the portal's side: sending a package to a GX in numbered chunks.
//!
//! A sans-IO state machine: the driver hands it the GX's replies
//! ([`UploadSender::handle_feedback`]) and the time ([`UploadSender::handle_timeout`]), and
//! asks it for the next chunk to publish ([`UploadSender::poll_transmit`]) and when to wake
//! it ([`UploadSender::poll_timeout`]). At most `window` chunks are unacknowledged at once.
//!
//! The GX leads the resume: whenever it says `waitingforchunks` without acknowledging a
//! chunk (after the update started, after every reconnect, after a status query) it names
//! the first chunk it lacks, and the sender continues from there; everything before it is on
//! the GX's disk. When acknowledgements stop coming for `stall_timeout`, the sender asks the
//! GX where the upload stands instead of guessing.

use bmsfw_vrm_wire::{Feedback, Status};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the upload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadPhase {
    /// The update command is out; the GX has not asked for chunks yet.
    Announced,
    /// Sending chunks.
    Sending,
    /// The GX received the whole file and verified it (`filereceivedok`).
    Received,
    /// The GX refused the upload; no more chunks are sent.
    Failed,
}

/// What the sender wants the driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadTransmit {
    /// Publish chunk `index` with these bytes.
    Chunk {
        /// The chunk's index.
        index: u32,
        /// Its bytes.
        data: Vec<u8>,
    },
    /// Ask the GX where the upload stands (`uploadstatus`).
    StatusQuery,
}

/// Counters of one upload, for the installer and for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UploadStats {
    /// Chunk messages published, repeats included.
    pub chunks_sent: u64,
    /// Chunk messages that repeated a chunk sent before.
    pub chunks_resent: u64,
    /// Chunks the GX acknowledged.
    pub chunks_acked: u32,
    /// The first-missing chunk of every resume the GX asked for after chunks had been sent.
    pub resumes: Vec<u32>,
    /// Status queries sent because acknowledgements stopped.
    pub status_queries: u64,
}

/// The sending side of one upload.
#[derive(Debug, Clone)]
pub struct UploadSender {
    file: Arc<Vec<u8>>,
    chunk_size: u32,
    chunk_count: u32,
    window: usize,
    stall_timeout: Duration,
    phase: UploadPhase,
    next: u32,
    acked: Vec<bool>,
    sent: Vec<bool>,
    in_flight: usize,
    last_progress: Instant,
    resume_point: Option<u32>,
    stats: UploadStats,
    /// Taken up after a restart of the portal: the GX's first answer is a resume.
    interrupted: bool,
}

impl UploadSender {
    /// A sender of `file` in chunks of `chunk_size` bytes (at least 1), at most `window`
    /// unacknowledged.
    pub fn new(
        file: Arc<Vec<u8>>,
        chunk_size: u32,
        window: usize,
        stall_timeout: Duration,
        now: Instant,
    ) -> UploadSender {
        let chunk_size = chunk_size.max(1);
        let chunk_count =
            u32::try_from(file.len().div_ceil(chunk_size as usize)).unwrap_or(u32::MAX);
        UploadSender {
            file,
            chunk_size,
            chunk_count,
            window: window.max(1),
            stall_timeout,
            phase: UploadPhase::Announced,
            next: 0,
            acked: vec![false; chunk_count as usize],
            sent: vec![false; chunk_count as usize],
            in_flight: 0,
            last_progress: now,
            resume_point: None,
            stats: UploadStats::default(),
            interrupted: false,
        }
    }

    /// A sender taking up an upload from the portal's store after a restart. An upload
    /// that had not ended waits, as a new one does, for the GX to name the first chunk it
    /// lacks (its answer to a status query, or to the command sent again) and counts that
    /// answer as a resume; the counters go on from `stats` (the acknowledged chunks are
    /// counted again from the GX's answer). An upload that had ended stays as it was.
    pub fn restored(
        file: Arc<Vec<u8>>,
        chunk_size: u32,
        window: usize,
        stall_timeout: Duration,
        now: Instant,
        phase: UploadPhase,
        stats: UploadStats,
    ) -> UploadSender {
        let mut s = UploadSender::new(file, chunk_size, window, stall_timeout, now);
        s.stats = stats;
        if matches!(phase, UploadPhase::Announced | UploadPhase::Sending) {
            s.interrupted = true;
            s.stats.chunks_acked = 0;
        } else {
            s.phase = phase;
        }
        s
    }

    /// Where the upload stands.
    pub fn phase(&self) -> UploadPhase {
        self.phase
    }

    /// The counters.
    pub fn stats(&self) -> &UploadStats {
        &self.stats
    }

    /// Number of chunks.
    pub fn chunk_count(&self) -> u32 {
        self.chunk_count
    }

    /// Chunks the GX has, as far as the sender knows.
    pub fn chunks_on_gx(&self) -> u32 {
        self.acked.iter().filter(|a| **a).count() as u32
    }

    fn chunk(&self, index: u32) -> Vec<u8> {
        let start = index as usize * self.chunk_size as usize;
        let end = (start + self.chunk_size as usize).min(self.file.len());
        self.file.get(start..end).unwrap_or_default().to_vec()
    }

    /// Takes a reply of the GX to this upload's command.
    pub fn handle_feedback(&mut self, feedback: &Feedback, now: Instant) {
        match feedback.status {
            Status::WaitingForChunks => {
                if !matches!(self.phase, UploadPhase::Announced | UploadPhase::Sending) {
                    return;
                }
                match feedback.chunk {
                    Some(index) => {
                        if let Some(a) = self.acked.get_mut(index as usize)
                            && !*a
                        {
                            *a = true;
                            self.stats.chunks_acked += 1;
                        }
                        if self.interrupted {
                            // An acknowledgement of a chunk sent before the restart: wait
                            // for the GX to say where it stands.
                            return;
                        }
                        self.phase = UploadPhase::Sending;
                        self.in_flight = self.in_flight.saturating_sub(1);
                        self.last_progress = now;
                    }
                    None => {
                        self.phase = UploadPhase::Sending;
                        let first = feedback.first_missing.unwrap_or(self.chunk_count);
                        self.resume_from(first, now);
                    }
                }
            }
            Status::FileReceivedOk => {
                self.phase = UploadPhase::Received;
                self.in_flight = 0;
            }
            Status::Error => {
                // Errors after the file arrived concern the job, not the upload. Before, a
                // refused chunk or a refused update ends the upload.
                if self.phase != UploadPhase::Received {
                    self.phase = UploadPhase::Failed;
                    self.in_flight = 0;
                }
            }
            Status::Running | Status::Finished => {
                if self.phase == UploadPhase::Sending {
                    // The job moved past its upload (the reply that said so was lost).
                    self.phase = UploadPhase::Received;
                    self.in_flight = 0;
                }
            }
            // A status from a newer GX: its other members (a chunk, the first missing
            // one) are not trusted to mean the same.
            Status::Starting | Status::Unknown => {}
        }
    }

    /// The GX lacks chunk `first` (and maybe later ones) and has every earlier one.
    fn resume_from(&mut self, first: u32, now: Instant) {
        let already_resending = self.resume_point == Some(first) && self.next > first;
        let stalled = now.duration_since(self.last_progress) >= self.stall_timeout;
        if already_resending && !stalled {
            // The same request twice (the GX's own ask and the answer to a status query):
            // the chunks from `first` on are already on their way again.
            return;
        }
        for i in 0..first.min(self.chunk_count) {
            if !self.acked[i as usize] {
                self.acked[i as usize] = true;
                self.stats.chunks_acked += 1;
            }
        }
        if self.sent.iter().any(|s| *s) || std::mem::take(&mut self.interrupted) {
            self.stats.resumes.push(first);
        }
        self.next = first;
        self.in_flight = 0;
        self.resume_point = Some(first);
        self.last_progress = now;
    }

    /// The next thing to publish, if any.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<UploadTransmit> {
        if self.phase != UploadPhase::Sending {
            return None;
        }
        if self.in_flight > 0 && now.duration_since(self.last_progress) >= self.stall_timeout {
            self.stats.status_queries += 1;
            self.last_progress = now;
            return Some(UploadTransmit::StatusQuery);
        }
        if self.in_flight >= self.window {
            return None;
        }
        while self.next < self.chunk_count && self.acked[self.next as usize] {
            self.next += 1;
        }
        if self.next >= self.chunk_count {
            return None;
        }
        let index = self.next;
        self.next += 1;
        if self.sent[index as usize] {
            self.stats.chunks_resent += 1;
        }
        self.sent[index as usize] = true;
        self.stats.chunks_sent += 1;
        if self.in_flight == 0 {
            self.last_progress = now;
        }
        self.in_flight += 1;
        Some(UploadTransmit::Chunk {
            index,
            data: self.chunk(index),
        })
    }

    /// When the sender wants to be asked again (a stall check), if it is waiting for
    /// acknowledgements.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.phase == UploadPhase::Sending && self.in_flight > 0)
            .then(|| self.last_progress + self.stall_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(first: u32) -> Feedback {
        Feedback {
            first_missing: Some(first),
            ..Feedback::new(Status::WaitingForChunks)
        }
    }

    fn ack(chunk: u32) -> Feedback {
        Feedback {
            chunk: Some(chunk),
            ..Feedback::new(Status::WaitingForChunks)
        }
    }

    fn indices(s: &mut UploadSender, now: Instant) -> Vec<u32> {
        let mut out = Vec::new();
        while let Some(t) = s.poll_transmit(now) {
            match t {
                UploadTransmit::Chunk { index, .. } => out.push(index),
                UploadTransmit::StatusQuery => panic!("unexpected status query"),
            }
        }
        out
    }

    fn sender(len: usize, window: usize) -> (UploadSender, Instant) {
        let now = Instant::now();
        let file = Arc::new((0..len).map(|i| i as u8).collect::<Vec<u8>>());
        (
            UploadSender::new(file, 4, window, Duration::from_secs(2), now),
            now,
        )
    }

    #[test]
    fn sends_within_the_window_and_the_last_chunk_is_short() {
        let (mut s, now) = sender(18, 2);
        assert_eq!(s.chunk_count(), 5);
        assert!(s.poll_transmit(now).is_none(), "nothing before the GX asks");
        s.handle_feedback(&ask(0), now);
        assert_eq!(indices(&mut s, now), [0, 1]);
        s.handle_feedback(&ack(0), now);
        assert_eq!(indices(&mut s, now), [2]);
        for i in 1..=2 {
            s.handle_feedback(&ack(i), now);
        }
        match s.poll_transmit(now) {
            Some(UploadTransmit::Chunk { index: 3, data }) => assert_eq!(data, [12, 13, 14, 15]),
            other => panic!("{other:?}"),
        }
        match s.poll_transmit(now) {
            Some(UploadTransmit::Chunk { index: 4, data }) => assert_eq!(data, [16, 17]),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.stats().chunks_resent, 0);
    }

    #[test]
    fn resumes_from_the_gx_first_missing_chunk_resending_only_what_was_in_flight() {
        let (mut s, now) = sender(40, 3);
        s.handle_feedback(&ask(0), now);
        assert_eq!(indices(&mut s, now), [0, 1, 2]);
        for i in 0..2 {
            s.handle_feedback(&ack(i), now);
        }
        assert_eq!(indices(&mut s, now), [3, 4]);
        // The link drops; the GX had chunks 0 to 2 and asks for 3 after reconnecting.
        s.handle_feedback(&ask(3), now);
        assert_eq!(indices(&mut s, now), [3, 4, 5]);
        assert_eq!(s.stats().chunks_resent, 2);
        assert_eq!(s.stats().resumes, vec![3]);
        // The same ask again (answer to a status query) changes nothing.
        s.handle_feedback(&ask(3), now);
        assert!(indices(&mut s, now).is_empty());
        assert_eq!(s.chunks_on_gx(), 3);
    }

    #[test]
    fn a_stall_asks_the_gx_instead_of_guessing() {
        let (mut s, now) = sender(40, 2);
        s.handle_feedback(&ask(0), now);
        assert_eq!(indices(&mut s, now), [0, 1]);
        let deadline = s.poll_timeout().unwrap();
        assert_eq!(deadline, now + Duration::from_secs(2));
        assert_eq!(s.poll_transmit(deadline), Some(UploadTransmit::StatusQuery));
        assert_eq!(s.stats().status_queries, 1);
        assert!(s.poll_transmit(deadline).is_none());
        // After the stall the same resume point is honoured again.
        s.handle_feedback(&ask(0), deadline + Duration::from_secs(3));
        assert_eq!(indices(&mut s, deadline), [0, 1]);
    }

    #[test]
    fn ends_on_file_received_or_error() {
        let (mut s, now) = sender(8, 4);
        s.handle_feedback(&ask(0), now);
        indices(&mut s, now);
        s.handle_feedback(&Feedback::new(Status::FileReceivedOk), now);
        assert_eq!(s.phase(), UploadPhase::Received);
        assert!(s.poll_transmit(now).is_none());
        let (mut f, now) = sender(8, 4);
        f.handle_feedback(&ask(0), now);
        f.handle_feedback(&Feedback::error(705, "digest"), now);
        assert_eq!(f.phase(), UploadPhase::Failed);
        assert!(f.poll_transmit(now).is_none());
    }

    #[test]
    fn an_upload_taken_up_after_a_restart_goes_on_from_the_gx_first_missing_chunk() {
        let now = Instant::now();
        let file = Arc::new((0..40u8).collect::<Vec<u8>>());
        let before = UploadStats {
            chunks_sent: 6,
            chunks_acked: 5,
            ..UploadStats::default()
        };
        let mut s = UploadSender::restored(
            file,
            4,
            3,
            Duration::from_secs(2),
            now,
            UploadPhase::Sending,
            before,
        );
        assert_eq!(s.phase(), UploadPhase::Announced);
        assert!(
            s.poll_transmit(now).is_none(),
            "nothing before the GX answers"
        );
        // A late acknowledgement of a chunk sent before the restart starts nothing.
        s.handle_feedback(&ack(4), now);
        assert!(s.poll_transmit(now).is_none());
        s.handle_feedback(&ask(5), now);
        assert_eq!(indices(&mut s, now), [5, 6, 7]);
        assert_eq!(s.stats().resumes, vec![5]);
        assert_eq!(s.stats().chunks_acked, 5);
        assert_eq!(s.stats().chunks_sent, 9);
        // An upload that had ended sends nothing.
        let mut done = UploadSender::restored(
            Arc::new(Vec::new()),
            4,
            3,
            Duration::from_secs(2),
            now,
            UploadPhase::Received,
            UploadStats::default(),
        );
        done.handle_feedback(&ask(0), now);
        assert_eq!(done.phase(), UploadPhase::Received);
        assert!(done.poll_transmit(now).is_none());
    }

    #[test]
    fn a_gx_that_already_has_the_file_asks_for_nothing() {
        let (mut s, now) = sender(8, 4);
        s.handle_feedback(&Feedback::new(Status::Starting), now);
        s.handle_feedback(&Feedback::new(Status::FileReceivedOk), now);
        assert_eq!(s.phase(), UploadPhase::Received);
        assert_eq!(s.stats().chunks_sent, 0);
    }
}
