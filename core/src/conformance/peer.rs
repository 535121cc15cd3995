//! The hostile peers: what answers the plugin on the simulated bus in place of the
//! vendor's BMS.
//!
//! A peer knows nothing of the vendor's protocol. It answers on the identifiers the
//! plugin declared it receives, with replies derived from what the plugin sent (its
//! frame echoed, or with a request byte turned into a positive-response byte the way
//! UDS and many bootloaders answer) and then damaged in the peer's own way, or with
//! noise. Every peer draws from its own seeded generator, so a run is reproducible.

use bmsfw_plugin_api::{CanFrame, CanId, CanIdRange, Timestamp};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use std::time::Duration;

/// How the peer answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerBehaviour {
    /// Nothing answers.
    Silence,
    /// Random frames (random identifier among the receive ranges, 0 to 8 random bytes),
    /// unsolicited every few milliseconds and in answer to every frame.
    Garbage,
    /// Replies derived from the plugin's frames, cut short, and unsolicited frames of 0
    /// to 2 bytes.
    TruncatedFrames,
    /// Every derived reply delivered twice.
    Duplicated,
    /// Derived replies delivered in reverse order, followed by the replies to the
    /// plugin's previous frame again (stale and out of order).
    Reordered,
    /// Derived replies with one to three bytes changed, sometimes longer or shorter.
    Fuzzed,
}

impl PeerBehaviour {
    /// Every behaviour, in report order.
    pub const ALL: [PeerBehaviour; 6] = [
        PeerBehaviour::Silence,
        PeerBehaviour::Garbage,
        PeerBehaviour::TruncatedFrames,
        PeerBehaviour::Duplicated,
        PeerBehaviour::Reordered,
        PeerBehaviour::Fuzzed,
    ];

    /// The scenario's name in the report.
    pub const fn scenario(self) -> &'static str {
        match self {
            PeerBehaviour::Silence => "silence",
            PeerBehaviour::Garbage => "garbage frames",
            PeerBehaviour::TruncatedFrames => "truncated frames",
            PeerBehaviour::Duplicated => "duplicated replies",
            PeerBehaviour::Reordered => "reordered replies",
            PeerBehaviour::Fuzzed => "fuzzed replies",
        }
    }

    /// The unsolicited frames of the peer. The peers that derive their answers from the
    /// plugin's frames speak first, until the plugin has said something: a plugin that
    /// waits for the BMS to announce itself is otherwise never answered.
    fn noise(self, heard: bool) -> Option<NoiseKind> {
        match self {
            PeerBehaviour::Silence => None,
            PeerBehaviour::Garbage => Some(NoiseKind::Any),
            PeerBehaviour::TruncatedFrames => Some(NoiseKind::Short),
            PeerBehaviour::Duplicated | PeerBehaviour::Reordered | PeerBehaviour::Fuzzed => {
                (!heard).then_some(NoiseKind::Any)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoiseKind {
    /// 0 to 8 bytes.
    Any,
    /// 0 to 2 bytes.
    Short,
}

/// Shortest and longest gap between unsolicited frames.
const NOISE_GAP_US: (u64, u64) = (1_000, 10_000);
/// The peer's answer time after the plugin's frame left the wire, and the spacing of
/// the frames of one answer.
const ANSWER_AFTER: Duration = Duration::from_micros(300);

/// A peer on the simulated bus.
#[derive(Debug)]
pub(crate) struct Peer {
    behaviour: PeerBehaviour,
    rng: Xoshiro256PlusPlus,
    sends: Vec<CanIdRange>,
    receives: Vec<CanIdRange>,
    /// The derived replies to the plugin's previous frame.
    previous: Vec<CanFrame>,
    next_noise: Option<Timestamp>,
    /// Whether the plugin has sent anything yet.
    heard: bool,
}

impl Peer {
    /// A peer answering a plugin that sends on `sends` and receives on `receives`.
    pub(crate) fn new(
        behaviour: PeerBehaviour,
        seed: u64,
        sends: &[CanIdRange],
        receives: &[CanIdRange],
        start: Timestamp,
    ) -> Peer {
        let mut peer = Peer {
            behaviour,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            sends: sends.to_vec(),
            receives: receives.to_vec(),
            previous: Vec::new(),
            next_noise: None,
            heard: false,
        };
        if behaviour != PeerBehaviour::Silence && !receives.is_empty() {
            peer.next_noise = Some(peer.after_gap(start));
        }
        peer
    }

    fn after_gap(&mut self, t: Timestamp) -> Timestamp {
        let gap = self.rng.random_range(NOISE_GAP_US.0..=NOISE_GAP_US.1);
        Timestamp::from_micros(t.as_micros().saturating_add(gap))
    }

    /// When the next unsolicited frame is due.
    pub(crate) fn next_noise(&self) -> Option<Timestamp> {
        self.next_noise
    }

    /// Tells the peer the plugin sent a frame.
    pub(crate) fn heard_plugin(&mut self) {
        self.heard = true;
        if self.behaviour.noise(true).is_none() {
            self.next_noise = None;
        }
    }

    /// The unsolicited frames due at `now` (one, twice when the peer duplicates);
    /// schedules the next one.
    pub(crate) fn take_noise(&mut self, now: Timestamp) -> Vec<CanFrame> {
        let Some(due) = self.next_noise.filter(|t| *t <= now) else {
            return Vec::new();
        };
        let Some(kind) = self.behaviour.noise(self.heard) else {
            self.next_noise = None;
            return Vec::new();
        };
        self.next_noise = Some(self.after_gap(due.max(now)));
        let max = match kind {
            NoiseKind::Any => 8,
            NoiseKind::Short => 2,
        };
        let frame = self.random_frame(max);
        match self.behaviour {
            PeerBehaviour::Duplicated => frame.into_iter().flat_map(|f| [f, f]).collect(),
            _ => frame.into_iter().collect(),
        }
    }

    /// A random identifier of the receive ranges.
    fn random_id(&mut self) -> Option<CanId> {
        if self.receives.is_empty() {
            return None;
        }
        let range = self.receives[self.rng.random_range(0..self.receives.len())];
        let raw = self
            .rng
            .random_range(range.first().raw()..=range.last().raw());
        id_like(range.first(), raw)
    }

    fn random_frame(&mut self, max_len: usize) -> Option<CanFrame> {
        let id = self.random_id()?;
        let len = self.rng.random_range(0..=max_len);
        let mut data = [0u8; 8];
        self.rng.fill(&mut data[..len]);
        CanFrame::new(id, &data[..len])
    }

    /// The receive identifier that answers `id`: the same offset in the receive range as
    /// long as the send range holding `id` and nearest to it (0x605 -> 0x585 for SDO,
    /// 0x7E0 -> 0x7E8), else a random receive identifier.
    fn answer_id(&mut self, id: CanId) -> Option<CanId> {
        if let Some(sent) = self.sends.iter().find(|r| r.contains(id)) {
            let width = sent.last().raw() - sent.first().raw();
            let offset = id.raw() - sent.first().raw();
            let paired = self
                .receives
                .iter()
                .filter(|r| {
                    r.first().is_extended() == id.is_extended()
                        && r.last().raw() - r.first().raw() == width
                })
                .min_by_key(|r| r.first().raw().abs_diff(sent.first().raw()));
            if let Some(r) = paired {
                return id_like(r.first(), r.first().raw() + offset);
            }
        }
        self.random_id()
    }

    /// What a plausible BMS might answer to `frame`: the frame echoed, and with its first
    /// or second byte turned into a positive-response byte (`+ 0x40`).
    fn derived(&mut self, frame: &CanFrame) -> Vec<CanFrame> {
        let Some(id) = self.answer_id(frame.id()) else {
            return Vec::new();
        };
        let data = frame.data();
        let mut out = Vec::with_capacity(3);
        out.extend(CanFrame::new(id, data));
        for at in [0usize, 1] {
            if let Some(b) = data.get(at) {
                let mut d = data.to_vec();
                d[at] = b.wrapping_add(0x40);
                out.extend(CanFrame::new(id, &d));
            }
        }
        out
    }

    fn fuzz(&mut self, frame: &CanFrame) -> Option<CanFrame> {
        let mut d = frame.data().to_vec();
        if self.rng.random_bool(0.25) {
            let len = self.rng.random_range(0..=8usize);
            d.resize(len, self.rng.random());
        }
        if !d.is_empty() {
            for _ in 0..self.rng.random_range(1..=3) {
                let at = self.rng.random_range(0..d.len());
                d[at] = self.rng.random();
            }
        }
        CanFrame::new(frame.id(), &d)
    }

    /// The peer's answer to the plugin's `frame`, whose last bit left the bus at `end`:
    /// frames with the time each is to be received.
    pub(crate) fn answer(
        &mut self,
        end: Timestamp,
        frame: &CanFrame,
    ) -> Vec<(Timestamp, CanFrame)> {
        let replies: Vec<CanFrame> = match self.behaviour {
            PeerBehaviour::Silence => Vec::new(),
            PeerBehaviour::Garbage => {
                let n = self.rng.random_range(1..=3);
                (0..n).filter_map(|_| self.random_frame(8)).collect()
            }
            PeerBehaviour::TruncatedFrames => {
                let derived = self.derived(frame);
                derived
                    .iter()
                    .filter_map(|f| {
                        let len = self.rng.random_range(0..f.len().max(1));
                        CanFrame::new(f.id(), &f.data()[..len.min(f.len())])
                    })
                    .collect()
            }
            PeerBehaviour::Duplicated => self
                .derived(frame)
                .into_iter()
                .flat_map(|f| [f, f])
                .collect(),
            PeerBehaviour::Reordered => {
                let derived = self.derived(frame);
                let stale = std::mem::replace(&mut self.previous, derived.clone());
                derived.into_iter().rev().chain(stale).collect()
            }
            PeerBehaviour::Fuzzed => {
                let derived = self.derived(frame);
                derived.iter().filter_map(|f| self.fuzz(f)).collect()
            }
        };
        let mut at = end;
        replies
            .into_iter()
            .map(|f| {
                at = at + ANSWER_AFTER;
                (at, f)
            })
            .collect()
    }
}

/// The identifier `raw` in the format of `like`.
fn id_like(like: CanId, raw: u32) -> Option<CanId> {
    if like.is_extended() {
        CanId::extended(raw)
    } else {
        u16::try_from(raw).ok().and_then(CanId::standard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn std_id(id: u16) -> CanId {
        CanId::standard(id).unwrap()
    }

    fn peer(behaviour: PeerBehaviour, seed: u64) -> Peer {
        let sdo_tx = CanIdRange::new(std_id(0x601), std_id(0x67F)).unwrap();
        let sdo_rx = CanIdRange::new(std_id(0x581), std_id(0x5FF)).unwrap();
        let beat = CanIdRange::new(std_id(0x701), std_id(0x77F)).unwrap();
        Peer::new(
            behaviour,
            seed,
            &[sdo_tx],
            &[sdo_rx, beat],
            Timestamp::from_micros(0),
        )
    }

    #[test]
    fn answers_come_on_the_paired_receive_identifier() {
        let mut p = peer(PeerBehaviour::Duplicated, 1);
        let req = CanFrame::new(std_id(0x605), &[0x40, 0x18, 0x10, 0x01, 0, 0, 0, 0]).unwrap();
        let answers = p.answer(Timestamp::from_micros(1000), &req);
        assert_eq!(answers.len(), 6, "three derived replies, each twice");
        assert!(answers.iter().all(|(_, f)| f.id() == std_id(0x585)));
        assert_eq!(answers[0].1, answers[1].1);
        assert_eq!(answers[0].1.data(), req.data());
        assert_eq!(answers[2].1.data()[0], 0x80);
        assert!(answers.windows(2).all(|w| w[0].0 < w[1].0), "in time order");
        assert!(answers[0].0 > Timestamp::from_micros(1000));
    }

    #[test]
    fn reordered_replies_replay_the_previous_answer_late() {
        let mut p = peer(PeerBehaviour::Reordered, 2);
        let a = CanFrame::new(std_id(0x601), &[1, 2]).unwrap();
        let b = CanFrame::new(std_id(0x601), &[3, 4]).unwrap();
        let first = p.answer(Timestamp::from_micros(0), &a);
        let second = p.answer(Timestamp::from_micros(5000), &b);
        assert_eq!(
            first.last().unwrap().1.data(),
            &[1, 2],
            "the echo comes last"
        );
        assert_eq!(second.len(), 6);
        assert_eq!(second[2].1.data(), &[3, 4]);
        assert_eq!(second[3].1, first[2].1, "then the previous answer again");
    }

    proptest::proptest! {
        #[test]
        fn every_frame_a_peer_sends_is_one_the_plugin_receives(
            seed in proptest::num::u64::ANY,
            which in 0usize..6,
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..=8),
            node in 0x601u16..=0x67F,
        ) {
            let behaviour = PeerBehaviour::ALL[which];
            let mut p = peer(behaviour, seed);
            let receives = p.receives.clone();
            let frame = CanFrame::new(std_id(node), &data).unwrap();
            let mut all: Vec<CanFrame> = p
                .answer(Timestamp::from_micros(10), &frame)
                .into_iter()
                .map(|(_, f)| f)
                .collect();
            while let Some(at) = p.next_noise() {
                if at > Timestamp::from_micros(100_000) {
                    break;
                }
                all.extend(p.take_noise(at));
            }
            for f in &all {
                proptest::prop_assert!(receives.iter().any(|r| r.contains(f.id())), "{f}");
                if behaviour == PeerBehaviour::TruncatedFrames {
                    proptest::prop_assert!(f.len() < data.len().max(3), "{f}");
                }
            }
            if behaviour == PeerBehaviour::Silence {
                proptest::prop_assert!(all.is_empty());
            }
        }
    }
}
