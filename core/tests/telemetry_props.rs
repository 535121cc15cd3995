//! Property tests of the BMS-Can monitor: hostile frames never panic and change nothing
//! when rejected, and a short frame is never misread. (The field-by-field properties of
//! the decoders are bmsfw-protocols' own, in `protocols/tests/bms_can_fields.rs`.)

use bmsfw_core::telemetry::{BmsCanMonitor, DecodeError, FrameKind, FrameOutcome};
use bmsfw_plugin_api::{CanFrame, CanId, Timestamp};
use proptest::prelude::*;

fn std_frame(id: u16, data: &[u8]) -> CanFrame {
    CanFrame::new(CanId::standard(id).unwrap(), data).unwrap()
}

fn any_kind() -> impl Strategy<Value = FrameKind> {
    proptest::sample::select(FrameKind::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_frame_decodes_or_is_rejected_without_panic(
        raw in 0u32..0x800,
        extended in any::<bool>(),
        data in proptest::collection::vec(any::<u8>(), 0..=8),
    ) {
        let id = if extended { CanId::extended(raw).unwrap() } else { CanId::standard(raw as u16).unwrap() };
        let frame = CanFrame::new(id, &data).unwrap();
        let mut monitor = BmsCanMonitor::new("p");
        let outcome = monitor.handle_frame(Timestamp::ZERO, &frame);
        match (FrameKind::from_id(id), outcome) {
            (None, FrameOutcome::NotBmsCan) => prop_assert!(!extended || monitor.battery().is_none()),
            (Some(kind), FrameOutcome::Applied(k)) => {
                prop_assert_eq!(kind, k);
                prop_assert!(data.len() >= kind.min_len());
                prop_assert_eq!(monitor.battery().unwrap().last_seen(kind), Some(Timestamp::ZERO));
            }
            (Some(kind), FrameOutcome::Rejected(e)) => {
                prop_assert_eq!(e.kind(), Some(kind));
                prop_assert!(monitor.battery().is_none());
                prop_assert_eq!(monitor.rejections().total(), 1);
                prop_assert!(!e.to_string().is_empty());
            }
            (kind, outcome) => prop_assert!(false, "{kind:?} gave {outcome:?}"),
        }
    }

    #[test]
    fn a_short_frame_is_never_misread(kind in any_kind(), fill in any::<u8>(), cut in 0usize..8) {
        // Prime a monitor with a valid frame of the kind, then feed a short one.
        let mut monitor = BmsCanMonitor::new("p");
        let valid = vec![0x41u8; 8]; // 'A': valid text, SOC/SOH 65 %, hi-res 0x4141 rejected
        let valid = if kind == FrameKind::StateOfCharge { vec![50, 0, 90, 0] } else { valid };
        let first = monitor.handle_frame(Timestamp::ZERO, &std_frame(kind.raw_id() as u16, &valid));
        prop_assert_eq!(first, FrameOutcome::Applied(kind));
        let before = format!("{:?}", monitor.battery().unwrap());
        let len = cut.min(kind.min_len().saturating_sub(1));
        let short = vec![fill; len];
        let out = monitor.handle_frame(Timestamp::from_micros(10), &std_frame(kind.raw_id() as u16, &short));
        let too_short = matches!(out, FrameOutcome::Rejected(DecodeError::TooShort { .. }));
        prop_assert!(too_short, "{:?}", out);
        prop_assert_eq!(before, format!("{:?}", monitor.battery().unwrap()));
    }
}
