//! Round-trip properties of the codec: every value in range encodes and decodes back
//! equal; every payload of 0 to 8 bytes on every identifier decodes or is refused,
//! never panics; and a decoded frame re-encodes to its own bytes wherever the encoding
//! is canonical (elsewhere, to bytes that decode to the same value).

use super::*;
use bmsfw_plugin_api::{CanFrame, CanId};
use proptest::prelude::*;

fn payload() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..=8)
}

fn percent() -> impl Strategy<Value = Percent> {
    (0u16..=100).prop_map(Percent)
}

fn text_kind() -> impl Strategy<Value = FrameKind> {
    proptest::sample::select(
        FrameKind::ALL
            .into_iter()
            .filter(|k| TextPart::of(*k).is_some())
            .collect::<Vec<_>>(),
    )
}

/// Texts that decode back as they are: printable ASCII, at most eight bytes, and for a
/// whole text no space at either end (a whole text is trimmed of spaces; a half keeps
/// them for the seam).
fn text_frame() -> impl Strategy<Value = TextFrame> {
    (text_kind(), "[ -~]{0,8}").prop_map(|(kind, text)| {
        let text = match TextPart::of(kind) {
            Some(TextPart::Whole) => text.trim_matches(' ').to_owned(),
            _ => text,
        };
        TextFrame::new(kind, text).unwrap()
    })
}

fn requests() -> impl Strategy<Value = Requests> {
    let permission = prop_oneof![Just(Permission::Enabled), Just(Permission::Disabled)];
    let force = prop_oneof![
        Just(ForceCharge::Requested),
        Just(ForceCharge::NotRequested)
    ];
    (
        permission.clone(),
        permission,
        force.clone(),
        force,
        0u8..16,
    )
        .prop_map(
            |(charge, discharge, force_charge_1, force_charge_2, other_bits)| Requests {
                charge,
                discharge,
                force_charge_1,
                force_charge_2,
                other_bits,
            },
        )
}

/// Any value of any broadcast kind, within its range.
fn telemetry() -> impl Strategy<Value = Telemetry> {
    prop_oneof![
        any::<(u16, i16, i16, u16)>().prop_map(|(a, b, c, d)| Telemetry::Limits(ChargeLimits {
            charge_voltage: DeciVolts(a),
            charge_current: DeciAmps(b),
            discharge_current: DeciAmps(c),
            discharge_voltage: DeciVolts(d),
        })),
        (percent(), percent(), proptest::option::of(0u16..=10_000)).prop_map(|(soc, soh, h)| {
            Telemetry::StateOfCharge(StateOfCharge {
                soc,
                soh,
                soc_high_res: h.map(CentiPercent),
            })
        }),
        any::<(i16, i16, i16)>().prop_map(|(v, i, t)| Telemetry::Measurements(Measurements {
            voltage: CentiVolts(v),
            current: DeciAmps(i),
            temperature: DeciCelsius(t),
        })),
        // A marker is sent after the module count only (byte 4 before bytes 5-6).
        (
            any::<(u16, u16)>(),
            proptest::option::of((any::<u8>(), proptest::option::of(any::<[u8; 2]>())))
        )
            .prop_map(|((p, w), tail)| Telemetry::Protection(ProtectionStatus {
                protection: ProtectionFlags(p),
                warning: ProtectionFlags(w),
                module_count: tail.map(|(n, _)| n),
                marker: tail.and_then(|(_, m)| m),
            })),
        any::<[u8; 8]>().prop_map(|b| Telemetry::Alarms(AlarmStatus::from_bytes(b))),
        requests().prop_map(Telemetry::Requests),
        proptest::collection::vec(any::<u8>(), 6..=8)
            .prop_map(|d| Telemetry::ProductInfo(ProductInfo::from_data(&d).unwrap())),
        any::<[u16; 4]>().prop_map(|[a, b, c, d]| Telemetry::ModuleCounts(ModuleCounts {
            online: a,
            blocking_charge: b,
            blocking_discharge: c,
            offline: d,
        })),
        any::<[u16; 4]>().prop_map(|[a, b, c, d]| Telemetry::CellExtremes(CellExtremes {
            min_cell_voltage: MilliVolts(a),
            max_cell_voltage: MilliVolts(b),
            min_cell_temperature: Kelvin(c),
            max_cell_temperature: Kelvin(d),
        })),
        any::<(u32, u32)>().prop_map(|(c, d)| Telemetry::Energy(EnergyCounters {
            charged: DeciKilowattHours(c),
            discharged: DeciKilowattHours(d),
        })),
        any::<u16>().prop_map(|c| Telemetry::InstalledCapacity(InstalledCapacity {
            capacity: AmpHours(c)
        })),
        text_frame().prop_map(Telemetry::Text),
    ]
}

/// Decodes `frame` with the type of `kind` (not through [`Telemetry`]), so that both
/// paths are exercised.
fn decode_typed(kind: FrameKind, frame: &CanFrame) -> Result<Telemetry, DecodeError> {
    Ok(match kind {
        FrameKind::Limits => Telemetry::Limits(ChargeLimits::decode(frame)?),
        FrameKind::StateOfCharge => Telemetry::StateOfCharge(StateOfCharge::decode(frame)?),
        FrameKind::Measurements => Telemetry::Measurements(Measurements::decode(frame)?),
        FrameKind::Protection => Telemetry::Protection(ProtectionStatus::decode(frame)?),
        FrameKind::Alarms => Telemetry::Alarms(AlarmStatus::decode(frame)?),
        FrameKind::Requests => Telemetry::Requests(Requests::decode(frame)?),
        FrameKind::ProductInfo => Telemetry::ProductInfo(ProductInfo::decode(frame)?),
        FrameKind::ModuleCounts => Telemetry::ModuleCounts(ModuleCounts::decode(frame)?),
        FrameKind::CellExtremes => Telemetry::CellExtremes(CellExtremes::decode(frame)?),
        FrameKind::Energy => Telemetry::Energy(EnergyCounters::decode(frame)?),
        FrameKind::InstalledCapacity => {
            Telemetry::InstalledCapacity(InstalledCapacity::decode(frame)?)
        }
        _ => Telemetry::Text(TextFrame::decode(frame)?),
    })
}

/// Whether the decoder reads every byte of a frame of this kind and length, so that a
/// decoded frame must re-encode to exactly its bytes. Where it does not (see each
/// type's documentation): 0x355 of 5 to 7 bytes or with bytes 6-7 set, 0x356 of 6 or 7
/// bytes or with bytes 6-7 set, 0x359 of 6 or 8 bytes (byte 7 unread), 0x35C of other
/// than 2 bytes or with byte 1 set, 0x379 of more than 2 bytes, and text frames (padding
/// is trimmed).
fn canonical(kind: FrameKind, d: &[u8]) -> bool {
    match kind {
        FrameKind::StateOfCharge => d.len() == 4 || (d.len() == 8 && d[6..] == [0, 0]),
        FrameKind::Measurements => d.len() == 8 && d[6..] == [0, 0],
        FrameKind::Protection => matches!(d.len(), 4 | 5) || (d.len() == 8 && d[7] == 0),
        FrameKind::Requests => d.len() == 2 && d[1] == 0,
        FrameKind::InstalledCapacity => d.len() == 2,
        FrameKind::Manufacturer
        | FrameKind::BmsName1
        | FrameKind::BmsName2
        | FrameKind::MinCellVoltageId
        | FrameKind::MaxCellVoltageId
        | FrameKind::MinCellTemperatureId
        | FrameKind::MaxCellTemperatureId
        | FrameKind::Serial1
        | FrameKind::Serial2
        | FrameKind::ProductName => false,
        // 0x351, 0x35A, 0x35F, 0x372, 0x373, 0x378: every byte is a field.
        _ => true,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_value_round_trips(value in telemetry()) {
        let frame = value.encode();
        prop_assert_eq!(FrameKind::from_id(frame.id()), Some(value.kind()));
        prop_assert!(frame.len() >= value.kind().min_len());
        prop_assert_eq!(Telemetry::decode_frame(&frame), Some(Ok(value.clone())));
        prop_assert_eq!(decode_typed(value.kind(), &frame), Ok(value));
    }

    #[test]
    fn any_payload_on_a_bms_can_id_decodes_or_is_refused(
        kind in proptest::sample::select(FrameKind::ALL.to_vec()),
        data in payload(),
    ) {
        let frame = CanFrame::new(kind.id(), &data).unwrap();
        let by_id = Telemetry::decode_frame(&frame).expect("a BMS-Can identifier");
        prop_assert_eq!(&decode_typed(kind, &frame), &by_id);
        match by_id {
            Ok(value) => {
                prop_assert_eq!(value.kind(), kind);
                prop_assert!(data.len() >= kind.min_len());
                let again = value.encode();
                if canonical(kind, &data) {
                    prop_assert_eq!(again.data(), &data[..]);
                }
                // Canonical or not, the re-encoded frame means the same.
                prop_assert_eq!(Telemetry::decode_frame(&again), Some(Ok(value)));
            }
            Err(e) => {
                prop_assert_eq!(e.kind(), Some(kind));
                prop_assert!(e.to_string().starts_with(&format!("0x{:03X} ", kind.raw_id())), "{}", e);
                if data.len() < kind.min_len() {
                    prop_assert_eq!(e.reason(), RejectReason::TooShort);
                }
            }
        }
    }

    #[test]
    fn any_frame_on_any_id_is_decoded_only_by_its_own_type(
        raw in 0u32..0x800,
        extended in any::<bool>(),
        kind in proptest::sample::select(FrameKind::ALL.to_vec()),
        data in payload(),
    ) {
        let id = if extended { CanId::extended(raw).unwrap() } else { CanId::standard(raw as u16).unwrap() };
        let frame = CanFrame::new(id, &data).unwrap();
        let typed = decode_typed(kind, &frame);
        let own = FrameKind::from_id(id);
        let is_text = |k: FrameKind| TextPart::of(k).is_some();
        match typed {
            Err(DecodeError::WrongId { kind: k, id: got }) => {
                prop_assert_eq!(k, kind);
                prop_assert_eq!(got, id);
                prop_assert!(own != Some(kind));
            }
            Err(DecodeError::NotText { id: got }) => {
                prop_assert!(is_text(kind));
                prop_assert_eq!(got, id);
                prop_assert!(!own.is_some_and(is_text));
            }
            Ok(v) => {
                prop_assert_eq!(Some(v.kind()), own);
                prop_assert!(!extended);
            }
            Err(e) => prop_assert_eq!(e.kind(), own),
        }
        prop_assert_eq!(GxIdentification::decode(&frame).is_ok(),
            !extended && raw == 0x307 && data.len() >= 7 && data[4..7] == *b"VIC");
        prop_assert_eq!(KeepAlive::decode(&frame).is_ok(), !extended && raw == 0x305);
    }

    #[test]
    fn gx_frames_round_trip_and_refuse_without_panic(data in payload(), id in 0x300u16..0x310) {
        let frame = CanFrame::new(CanId::standard(id).unwrap(), &data).unwrap();
        if let Ok(k) = KeepAlive::decode(&frame) {
            prop_assert_eq!(KeepAlive::decode(&k.encode()), Ok(k));
        }
        match GxIdentification::decode(&frame) {
            Ok(g) => {
                prop_assert_eq!(GxIdentification::decode(&g.encode()), Ok(g));
                // Canonical only for the bytes a GX sends.
                if data == [0, 0, 0, 0, b'V', b'I', b'C', 0] {
                    let again = g.encode();
                    prop_assert_eq!(again.data(), &data[..]);
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        prop_assert_eq!(is_gx_frame(&frame), id == 0x305 || id == 0x307);
    }

    #[test]
    fn alarm_fields_set_and_read_back(
        raw in any::<[u8; 8]>(),
        field in proptest::sample::select(AlarmField::ALL.to_vec()),
        warning in any::<bool>(),
        bits in 0u8..4,
    ) {
        let severity = if warning { Severity::Warning } else { Severity::Alarm };
        let state = FlagState::from_bits(bits);
        let mut status = AlarmStatus::from_bytes(raw);
        status.set(severity, field, state);
        prop_assert_eq!(status.state(severity, field), state);
        prop_assert_eq!(state.bits(), bits);
        // Every other field, at both severities, is untouched.
        for other in AlarmField::ALL {
            for s in [Severity::Alarm, Severity::Warning] {
                if (other, s) != (field, severity) {
                    prop_assert_eq!(status.state(s, other), AlarmStatus::from_bytes(raw).state(s, other));
                }
            }
        }
        prop_assert_eq!(status.active(severity).contains(&field), state == FlagState::Active);
        prop_assert_eq!(status.invalid(severity).contains(&field), state == FlagState::Invalid);
    }
}
