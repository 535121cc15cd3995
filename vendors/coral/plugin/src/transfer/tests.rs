use super::*;
use std::collections::BTreeSet as Set;

fn t(ms: u64) -> Timestamp {
    Timestamp::from_micros(ms * 1000)
}

fn counts(written: u32, next: u32, end: u32) -> Counts {
    Counts { written, next, end }
}

/// Everything the sender hands out at `now`.
fn drain(s: &mut Sender, now: Timestamp) -> Vec<Outgoing> {
    std::iter::from_fn(|| s.poll(now)).collect()
}

fn data(seqs: impl IntoIterator<Item = u32>) -> Vec<Outgoing> {
    seqs.into_iter().map(Outgoing::Data).collect()
}

#[test]
fn frames_stream_in_order_up_to_the_window() {
    let mut s = Sender::new(3000, 1024, 0, 0, t(0));
    assert_eq!(drain(&mut s, t(0)), data(0..1024));
    assert!(!s.wants_to_send());
    s.on_ack(t(30), counts(128, 600, 600), false).unwrap();
    assert_eq!(s.written(), 128);
    assert_eq!(drain(&mut s, t(30)), data(1024..1152));
    // Counts beyond the file are impossible.
    s.on_ack(t(60), counts(3001, 3001, 3001), false)
        .unwrap_err();
}

#[test]
fn a_nack_resends_exactly_the_lost_frames_ahead_of_new_ones() {
    let mut s = Sender::new(3000, 1024, 0, 0, t(0));
    drain(&mut s, t(0));
    s.on_ack(t(5), counts(128, 130, 140), false).unwrap();
    s.on_nack(t(5), 130, 2);
    let out = drain(&mut s, t(5));
    assert_eq!(&out[..2], &data([130, 131])[..]);
    assert_eq!(out[2], Outgoing::Data(1024));
    assert_eq!(s.stats().resent_frames, 2);
    // The same gap reported again right away is not re-sent twice...
    s.on_nack(t(20), 130, 2);
    assert!(drain(&mut s, t(20)).is_empty());
    // ...but it is once the guard time has passed.
    s.on_nack(t(60), 130, 1);
    assert_eq!(drain(&mut s, t(60)), data([130]));
    // Frames the master holds (below N) or never sent are not re-sent.
    s.on_nack(t(200), 0, 5);
    s.on_nack(t(200), 5000, 5);
    assert!(drain(&mut s, t(200)).is_empty());
}

#[test]
fn a_lost_tail_is_found_by_asking_with_backoff() {
    let mut s = Sender::new(100, 1024, 0, 0, t(0));
    assert_eq!(drain(&mut s, t(0)).len(), 100);
    assert_eq!(s.deadline(), Some(t(100)));
    s.on_timeout(t(99)).unwrap();
    assert!(drain(&mut s, t(99)).is_empty());
    s.on_timeout(t(100)).unwrap();
    assert_eq!(drain(&mut s, t(100)), vec![Outgoing::AckRequest]);
    // Unanswered: the next requests follow after 200, 400, 800, 1600, 1600 ms.
    let mut at = 100;
    for gap in [200, 400, 800, 1600, 1600] {
        assert_eq!(s.deadline(), Some(t(at + gap)));
        at += gap;
        s.on_timeout(t(at)).unwrap();
        assert_eq!(drain(&mut s, t(at)), vec![Outgoing::AckRequest]);
    }
    // The answer: frames 0..96 written, nothing held beyond: 96..100 are lost.
    s.on_ack(t(at + 1), counts(96, 96, 96), true).unwrap();
    assert_eq!(drain(&mut s, t(at + 1)), data(96..100));
    // Answered, the interval starts again at 100 ms.
    assert_eq!(s.deadline(), Some(t(at + 101)));
    s.on_ack(t(at + 5), counts(100, 100, 100), false).unwrap();
    assert!(s.is_complete());
    assert_eq!(s.deadline(), None);
}

#[test]
fn twenty_seconds_of_silence_fail_the_transfer() {
    let mut s = Sender::new(100, 1024, 0, 0, t(0));
    drain(&mut s, t(0));
    let mut now;
    loop {
        now = s.deadline().unwrap().as_micros() / 1000;
        match s.on_timeout(t(now)) {
            Ok(()) => {
                drain(&mut s, t(now));
            }
            Err(TransferError::Silent(d)) => {
                assert_eq!(d, Duration::from_secs(20));
                break;
            }
            Err(e) => panic!("{e:?}"),
        }
        assert!(now <= 20_000);
    }
    assert_eq!(now, 20_000);
}

#[test]
fn a_resumed_transfer_starts_at_the_first_frame_the_master_lacks() {
    let mut s = Sender::new(3000, 1024, 256, 261, t(0));
    assert_eq!(s.written(), 256);
    assert_eq!(s.poll(t(0)), Some(Outgoing::Data(261)));
    // Nothing is pending before the first frame: no request is due.
    let mut idle = Sender::new(3000, 1024, 256, 256, t(0));
    assert_eq!(idle.deadline(), None);
    assert_eq!(idle.poll(t(7)), Some(Outgoing::Data(256)));
    assert_eq!(idle.deadline(), Some(t(107)));
}

#[test]
fn impossible_counts_are_errors() {
    let mut s = Sender::new(100, 1024, 0, 0, t(0));
    drain(&mut s, t(0));
    assert!(matches!(
        s.on_ack(t(1), counts(101, 101, 101), false),
        Err(TransferError::Impossible(_))
    ));
}

/// A master written from `PROTOCOL.md` section 5 for this test (no write delay): it holds
/// frames, writes whole pages, acknowledges every 128 frames, reports gaps.
struct Master {
    total: u32,
    held: Set<u32>,
    written: u32,
    highest_end: u32,
    out: Vec<(Counts, bool)>,
    nacks: Vec<(u32, u16)>,
}

impl Master {
    fn new(total: u32) -> Master {
        Master {
            total,
            held: Set::new(),
            written: 0,
            highest_end: 0,
            out: Vec::new(),
            nacks: Vec::new(),
        }
    }
    fn next(&self) -> u32 {
        (self.written..)
            .find(|s| !self.held.contains(s))
            .unwrap()
            .min(self.total)
    }
    fn counts(&self) -> Counts {
        let next = self.next();
        Counts {
            written: self.written,
            next,
            end: self.highest_end.max(next),
        }
    }
    fn gaps(&self) -> Vec<(u32, u16)> {
        let c = self.counts();
        let mut gaps = Vec::new();
        let mut s = c.next;
        while s < c.end && gaps.len() < 8 {
            if !self.held.contains(&s) {
                let start = s;
                while s < c.end && !self.held.contains(&s) {
                    s += 1;
                }
                gaps.push((start, (s - start) as u16));
            }
            s += 1;
        }
        gaps
    }
    fn frame(&mut self, seq: u32) {
        if seq < self.written || seq >= self.written + 1024 || self.held.contains(&seq) {
            return;
        }
        let end = self.highest_end.max(self.next());
        if seq > end {
            self.nacks.push((end, (seq - end) as u16));
        }
        self.held.insert(seq);
        self.highest_end = self.highest_end.max(seq + 1);
        loop {
            let page_end = (self.written + 32).min(self.total);
            if self.written >= self.total
                || !(self.written..page_end).all(|s| self.held.contains(&s))
            {
                break;
            }
            let before = self.written;
            self.written = page_end;
            self.held.retain(|s| *s >= page_end);
            if before / 128 != self.written / 128 || self.written == self.total {
                self.out.push((self.counts(), false));
            }
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Whatever frames and answers are lost, the transfer completes, and no frame is sent
    /// again once the master acknowledged it.
    #[test]
    fn any_losses_end_in_a_complete_transfer_without_resending_acknowledged_frames(
        total in 1u32..3000,
        losses in proptest::collection::vec(0u8..100, 64),
        loss_percent in 0u8..30,
    ) {
        let mut s = Sender::new(total, 1024, 0, 0, t(0));
        let mut m = Master::new(total);
        let mut lossy = losses.iter().cycle().map(|r| *r < loss_percent);
        let mut now = Timestamp::ZERO;
        let step = Duration::from_micros(270);
        let mut acked_before = 0u32;
        let mut steps = 0u64;
        while !s.is_complete() {
            steps += 1;
            proptest::prop_assert!(steps < 2_000_000, "no end");
            match s.poll(now) {
                Some(Outgoing::Data(seq)) => {
                    proptest::prop_assert!(seq >= acked_before, "frame {} re-sent after its acknowledgement", seq);
                    if !lossy.next().unwrap() {
                        m.frame(seq);
                    }
                }
                Some(Outgoing::AckRequest) => {
                    if !lossy.next().unwrap() {
                        m.out.push((m.counts(), true));
                        for g in m.gaps() {
                            m.nacks.push(g);
                        }
                    }
                }
                None => {
                    let next = s.deadline().unwrap_or(now + step);
                    now = next.max(now + step);
                    s.on_timeout(now).map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{e:?}")))?;
                    continue;
                }
            }
            now = now + step;
            for (c, asked) in std::mem::take(&mut m.out) {
                if !lossy.next().unwrap() {
                    s.on_ack(now, c, asked).unwrap();
                    acked_before = s.written();
                }
            }
            for (first, count) in std::mem::take(&mut m.nacks) {
                if !lossy.next().unwrap() {
                    s.on_nack(now, first, count);
                }
            }
            s.on_timeout(now).map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{e:?}")))?;
        }
        proptest::prop_assert_eq!(m.written, total);
        let st = s.stats();
        proptest::prop_assert!(st.new_frames == u64::from(total));
        if loss_percent == 0 {
            proptest::prop_assert_eq!(st.resent_frames, 0);
        }
    }
}
