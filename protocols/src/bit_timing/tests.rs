use super::*;
use proptest::prelude::*;

fn std_frame(id: u16, data: &[u8]) -> CanFrame {
    CanFrame::new(CanId::standard(id).unwrap(), data).unwrap()
}

fn ext_frame(id: u32, data: &[u8]) -> CanFrame {
    CanFrame::new(CanId::extended(id).unwrap(), data).unwrap()
}

/// A frame worked out by hand: its unstuffed bits from SOF through the CRC, its CRC, and
/// the bits as transmitted. In `stuffed`, each piece ends with the fifth equal bit of a
/// run and is followed by the stuff bit as a one-character piece of its own.
struct Worked {
    frame: CanFrame,
    unstuffed: &'static str,
    crc: u16,
    stuffed: &'static str,
    stuff_bits: u32,
    total_bits: u32,
}

fn check(w: &Worked) {
    let bits = FrameBits::of(&w.frame);
    assert_eq!(
        bits.unstuffed().to_string(),
        w.unstuffed,
        "unstuffed {}",
        w.frame
    );
    assert_eq!(bits.crc(), w.crc, "crc {}", w.frame);
    assert_eq!(bits.stuffed(), w.stuffed, "stuffed {}", w.frame);
    assert_eq!(bits.stuff_bits(), w.stuff_bits, "stuff bits {}", w.frame);
    assert_eq!(
        w.stuffed.len() as u32,
        w.unstuffed.len() as u32 + w.stuff_bits,
        "the worked strings themselves disagree for {}",
        w.frame
    );
    assert_eq!(bits.total_bits(), w.total_bits, "total {}", w.frame);
    assert_eq!(frame_bits(&w.frame), w.total_bits);
    assert_eq!(stuff_bit_count(&w.frame), w.stuff_bits);
}

#[test]
fn empty_standard_frame_with_id_zero() {
    // SOF 0, ID 00000000000, RTR 0, IDE 0, r0 0, DLC 0000: nineteen dominant bits. A CRC
    // with initial value 0 over all-zero input stays 0, so 34 zeros in all. Stuffing
    // puts a 1 after every fifth 0, and that 1 starts a new run: six stuff bits.
    check(&Worked {
        frame: std_frame(0x000, &[]),
        unstuffed: "0000000000000000000000000000000000",
        crc: 0x0000,
        stuffed: "0000010000010000010000010000010000010000",
        stuff_bits: 6,
        total_bits: 34 + 6 + 13,
    });
}

#[test]
fn standard_frame_of_erased_flash_all_ff() {
    // 0x7FF with eight 0xFF bytes: SOF 0, ID 11111111111, RTR/IDE/r0 000, DLC 1000,
    // 64 ones, CRC 0x4C89 = 100110010001001.
    check(&Worked {
        frame: std_frame(0x7FF, &[0xFF; 8]),
        unstuffed: concat!(
            "0",
            "11111111111",
            "000",
            "1000",
            "11111111",
            "11111111",
            "11111111",
            "11111111",
            "11111111",
            "11111111",
            "11111111",
            "11111111",
            "100110010001001"
        ),
        crc: 0x4C89,
        stuffed: concat!(
            "011111",
            "0",
            "11111",
            "0",
            "1000100011111",
            "0",
            "11111",
            "0",
            "11111",
            "0",
            "11111",
            "0",
            "11111",
            "0",
            "11111",
            "0",
            "11111",
            "0",
            "11111",
            "0",
            "11111",
            "0",
            "11111",
            "0",
            "11111",
            "0",
            "11111",
            "0",
            "11111",
            "0",
            "00110010001001"
        ),
        stuff_bits: 15,
        total_bits: 111 + 15,
    });
}

#[test]
fn standard_frame_all_zero_data() {
    // 0x000 with eight 0x00 bytes: DLC 1000 is the only recessive bit before the CRC
    // 0x145B = 001010001011011; the long dominant runs stuff every fifth bit.
    check(&Worked {
        frame: std_frame(0x000, &[0x00; 8]),
        unstuffed: concat!(
            "0",
            "00000000000",
            "000",
            "1000",
            "00000000",
            "00000000",
            "00000000",
            "00000000",
            "00000000",
            "00000000",
            "00000000",
            "00000000",
            "001010001011011"
        ),
        crc: 0x145B,
        stuffed: concat!(
            "00000",
            "1",
            "00000",
            "1",
            "00000",
            "1",
            "100000",
            "1",
            "00000",
            "1",
            "00000",
            "1",
            "00000",
            "1",
            "00000",
            "1",
            "00000",
            "1",
            "00000",
            "1",
            "00000",
            "1",
            "00000",
            "1",
            "00000",
            "1",
            "00000",
            "1",
            "00000",
            "1",
            "00000",
            "1",
            "00001010001011011"
        ),
        stuff_bits: 16,
        total_bits: 111 + 16,
    });
}

#[test]
fn bms_can_limits_frame() {
    // 0x351 01 02 .. 08, the charge limits frame of BMS-Can.
    check(&Worked {
        frame: std_frame(0x351, &[1, 2, 3, 4, 5, 6, 7, 8]),
        unstuffed: concat!(
            "0",
            "01101010001",
            "000",
            "1000",
            "00000001",
            "00000010",
            "00000011",
            "00000100",
            "00000101",
            "00000110",
            "00000111",
            "00001000",
            "011000101001011"
        ),
        crc: 0x314B,
        stuffed: concat!(
            "001101010001000100000",
            "1",
            "00000",
            "1",
            "100000",
            "1",
            "0100000",
            "1",
            "001100000",
            "1",
            "100000",
            "1",
            "0010100000",
            "1",
            "1100000",
            "1",
            "011100001000011000101001011"
        ),
        stuff_bits: 8,
        total_bits: 111 + 8,
    });
}

#[test]
fn alternating_bits_need_no_stuffing_until_the_zeros() {
    // 0x123 AA 55: the alternating payload never runs five equal bits.
    check(&Worked {
        frame: std_frame(0x123, &[0xAA, 0x55]),
        unstuffed: concat!(
            "0",
            "00100100011",
            "000",
            "0010",
            "10101010",
            "01010101",
            "100000010011001"
        ),
        crc: 0x4099,
        stuffed: concat!(
            "00010010001100000",
            "1",
            "101010101001010101100000",
            "1",
            "010011001"
        ),
        stuff_bits: 2,
        total_bits: 19 + 16 + 15 + 13 + 2,
    });
}

#[test]
fn extended_frame_all_ff() {
    // 0x1FFFFFFF: base 11111111111, SRR 1, IDE 1, extended 18 ones, RTR/r1/r0 000,
    // DLC 1000, 64 ones, CRC 0x1B69 = 001101101101001.
    check(&Worked {
        frame: ext_frame(0x1FFF_FFFF, &[0xFF; 8]),
        unstuffed: concat!(
            "0",
            "11111111111",
            "1",
            "1",
            "111111111111111111",
            "000",
            "1000",
            "11111111",
            "11111111",
            "11111111",
            "11111111",
            "11111111",
            "11111111",
            "11111111",
            "11111111",
            "001101101101001"
        ),
        crc: 0x1B69,
        stuffed: concat!(
            "011111",
            "0",
            "11111",
            "0",
            "11111",
            "0",
            "11111",
            "0",
            "11111",
            "0",
            "11111",
            "0",
            "1000100011111",
            "0",
            "11111",
            "0",
            "11111",
            "0",
            "11111",
            "0",
            "11111",
            "0",
            "11111",
            "0",
            "11111",
            "0",
            "11111",
            "0",
            "11111",
            "0",
            "11111",
            "0",
            "11111",
            "0",
            "11111",
            "0",
            "1111001101101101001"
        ),
        stuff_bits: 18,
        total_bits: 131 + 18,
    });
}

#[test]
fn extended_frame_all_zero() {
    // 0x00000000 with eight 0x00: the recessive SRR and IDE bits break the dominant run.
    check(&Worked {
        frame: ext_frame(0, &[0x00; 8]),
        unstuffed: concat!(
            "0",
            "00000000000",
            "1",
            "1",
            "000000000000000000",
            "000",
            "1000",
            "00000000",
            "00000000",
            "00000000",
            "00000000",
            "00000000",
            "00000000",
            "00000000",
            "00000000",
            "011110110101111"
        ),
        crc: 0x3DAF,
        stuffed: concat!(
            "00000",
            "1",
            "00000",
            "1",
            "001100000",
            "1",
            "00000",
            "1",
            "00000",
            "1",
            "00000",
            "1",
            "0100000",
            "1",
            "00000",
            "1",
            "00000",
            "1",
            "00000",
            "1",
            "00000",
            "1",
            "00000",
            "1",
            "00000",
            "1",
            "00000",
            "1",
            "00000",
            "1",
            "00000",
            "1",
            "00000",
            "1",
            "00000",
            "1",
            "00000",
            "1",
            "00011110110101111"
        ),
        stuff_bits: 19,
        total_bits: 131 + 19,
    });
}

#[test]
fn extended_j1939_style_frame() {
    check(&Worked {
        frame: ext_frame(0x18FF_50E5, &[0x11, 0x22]),
        unstuffed: concat!(
            "0",
            "11000111111",
            "1",
            "1",
            "110101000011100101",
            "000",
            "0010",
            "00010001",
            "00100010",
            "101101100101111"
        ),
        crc: 0x5B2F,
        stuffed: concat!(
            "01100011111",
            "0",
            "11111",
            "0",
            "010100001110010100000",
            "1",
            "100001000100100010101101100101111"
        ),
        stuff_bits: 3,
        total_bits: 39 + 16 + 15 + 13 + 3,
    });
}

#[test]
fn the_can_facts_table_bounds() {
    // Section 3 of the CAN facts: 111/135 bits for 11-bit frames with 8 bytes, 131/160
    // for 29-bit frames.
    assert_eq!(unstuffed_frame_bits(IdFormat::Standard, 8), 111);
    assert_eq!(worst_case_frame_bits(IdFormat::Standard, 8), 135);
    assert_eq!(unstuffed_frame_bits(IdFormat::Extended, 8), 131);
    assert_eq!(worst_case_frame_bits(IdFormat::Extended, 8), 160);
    // 47 bits of overhead around the data of an 11-bit frame.
    assert_eq!(unstuffed_frame_bits(IdFormat::Standard, 0), 47);
    // Frames per second at 100 % load on 500 kbit/s.
    let std8 = FrameShape {
        format: IdFormat::Standard,
        len: 8,
        payload: 8,
    };
    let ext8 = FrameShape {
        format: IdFormat::Extended,
        len: 8,
        payload: 8,
    };
    assert_eq!(
        std8.frames_per_second(500_000, 1.0, Stuffing::None).floor(),
        4504.0
    );
    assert_eq!(
        std8.frames_per_second(500_000, 1.0, Stuffing::WorstCase)
            .floor(),
        3703.0
    );
    assert_eq!(
        ext8.frames_per_second(500_000, 1.0, Stuffing::None).floor(),
        3816.0
    );
    assert_eq!(
        ext8.frames_per_second(500_000, 1.0, Stuffing::WorstCase)
            .floor(),
        3125.0
    );
    // Raw payload: 36.0 .. 29.6 kB/s and 30.5 .. 25.0 kB/s.
    let kb = |x: f64| (x / 100.0).round() / 10.0;
    assert_eq!(kb(std8.payload_ceiling(500_000, 1.0, Stuffing::None)), 36.0);
    assert_eq!(
        kb(std8.payload_ceiling(500_000, 1.0, Stuffing::WorstCase)),
        29.6
    );
    assert_eq!(kb(ext8.payload_ceiling(500_000, 1.0, Stuffing::None)), 30.5);
    assert_eq!(
        kb(ext8.payload_ceiling(500_000, 1.0, Stuffing::WorstCase)),
        25.0
    );
}

#[test]
fn payload_ceilings_scale_with_cap_and_payload() {
    // An ISO-TP consecutive frame: 8 data bytes, 7 of them payload, at a 90 % cap.
    let cf = FrameShape {
        format: IdFormat::Standard,
        len: 8,
        payload: 7,
    };
    let ceiling = cf.payload_ceiling(500_000, 0.9, Stuffing::Mean(5.0));
    assert!((ceiling - 500_000.0 * 0.9 / 116.0 * 7.0).abs() < 1e-6);
    // The exact ceiling of given frames: two 0x7FF/FF frames are 126 bits each.
    let frames = [std_frame(0x7FF, &[0xFF; 8]), std_frame(0x7FF, &[0xFF; 8])];
    let exact = payload_ceiling_of(&frames, 14, 500_000, 1.0);
    assert!((exact - 14.0 / (252.0 / 500_000.0)).abs() < 1e-6);
    assert_eq!(mean_frame_bits(&frames), Some(126.0));
    assert_eq!(mean_frame_bits(&[]), None);
    assert_eq!(payload_ceiling_of(&[], 0, 500_000, 1.0), 0.0);
}

#[test]
fn durations_are_exact_at_standard_rates() {
    assert_eq!(bits_duration(111, 500_000), Duration::from_micros(222));
    assert_eq!(bits_duration(1, 1_000_000), Duration::from_micros(1));
    assert_eq!(bits_duration(1, 800_000), Duration::from_nanos(1250));
    assert_eq!(bits_duration(3, 125_000), Duration::from_micros(24));
    assert_eq!(
        frame_duration(&std_frame(0x000, &[]), 500_000),
        Duration::from_micros(2 * 53)
    );
}

#[test]
fn error_frames_cost_the_frame_up_to_the_ack_delimiter_plus_the_error_frame() {
    let f = FrameBits::of(&std_frame(0x351, &[1, 2, 3, 4, 5, 6, 7, 8]));
    // 119 bits: 109 up to the ACK delimiter, then 6 + 8 + 3.
    assert_eq!(f.bits_with_crc_error(), 109 + 17);
}

#[test]
fn arbitration_orders_identifiers_as_the_bus_does() {
    let s = |id| arbitration_key(CanId::standard(id).unwrap());
    let e = |id| arbitration_key(CanId::extended(id).unwrap());
    assert!(s(0x100) < s(0x101));
    assert!(s(0x000) < s(0x7FF));
    // Same base identifier: the standard frame's dominant RTR beats the SRR.
    assert!(s(0x123) < e(0x123 << 18));
    assert!(s(0x123) < e((0x123 << 18) | 0x3_FFFF));
    // A lower base identifier wins whatever the format.
    assert!(e(0x122 << 18 | 0x3_FFFF) < s(0x123));
    assert!(s(0x122) < e(0x123 << 18));
    // Between extended frames the whole 29 bits count.
    assert!(e(0x18FF_50E4) < e(0x18FF_50E5));
}

#[test]
fn crc15_matches_the_published_check_value() {
    // CRC-15/CAN check value over "123456789".
    let bits = b"123456789"
        .iter()
        .flat_map(|&b| (0..8).rev().map(move |i| (b >> i) & 1 == 1));
    assert_eq!(crc15(bits), 0x059E);
}

#[test]
fn stuffing_counts_stuff_bits_toward_the_next_run() {
    let bits = |s: &str| s.chars().map(|c| c == '1').collect::<Vec<_>>();
    assert_eq!(count_stuff_bits(bits("0000")), 0);
    assert_eq!(count_stuff_bits(bits("00000")), 1);
    // 00000 [1] 1111: the stuff bit and four ones make five: another stuff bit.
    assert_eq!(count_stuff_bits(bits("000001111")), 2);
    assert_eq!(count_stuff_bits(bits("0000011110")), 2);
    assert_eq!(count_stuff_bits(bits("0000100001")), 0);
}

fn any_frame() -> impl Strategy<Value = CanFrame> {
    (
        any::<bool>(),
        any::<u32>(),
        proptest::collection::vec(any::<u8>(), 0..=8),
    )
        .prop_map(|(ext, id, data)| {
            let id = if ext {
                CanId::extended(id & 0x1FFF_FFFF).unwrap()
            } else {
                CanId::standard((id & 0x7FF) as u16).unwrap()
            };
            CanFrame::new(id, &data).unwrap()
        })
}

/// The bits after SOF through the data, left-padded with zeros to whole bytes. A CRC with
/// initial value 0 is unchanged by leading zeros, so a byte-wise CRC-15/CAN over this
/// equals the CRC of the frame.
fn byte_aligned_crc_input(frame: &CanFrame) -> Vec<u8> {
    let bits = FrameBits::of(frame).unstuffed();
    let n = bits.len() - CRC_BITS;
    let pad = (8 - n % 8) % 8;
    let padded: Vec<bool> = std::iter::repeat_n(false, pad as usize)
        .chain((0..n).map(|i| bits.get(i).unwrap()))
        .collect();
    padded
        .chunks(8)
        .map(|c| c.iter().fold(0u8, |acc, &b| (acc << 1) | u8::from(b)))
        .collect()
}

proptest! {
    #[test]
    fn crc_agrees_with_the_crc_crate(frame in any_frame()) {
        let reference = ::crc::Crc::<u16>::new(&::crc::CRC_15_CAN);
        let expected = reference.checksum(&byte_aligned_crc_input(&frame));
        prop_assert_eq!(FrameBits::of(&frame).crc(), expected);
    }

    #[test]
    fn every_frame_lies_between_the_bounds(frame in any_frame()) {
        let bits = FrameBits::of(&frame);
        let format = IdFormat::of(frame.id());
        let len = frame.len() as u8;
        prop_assert_eq!(bits.unstuffed_bits(), unstuffed_frame_bits(format, len));
        prop_assert!(bits.total_bits() <= worst_case_frame_bits(format, len));
        prop_assert!(bits.total_bits() >= unstuffed_frame_bits(format, len));
    }

    #[test]
    fn the_stuffed_stream_never_runs_six_equal_bits_and_unstuffs_back(frame in any_frame()) {
        let bits = FrameBits::of(&frame);
        let stuffed: Vec<bool> = bits.stuffed().chars().map(|c| c == '1').collect();
        prop_assert!(!stuffed.windows(6).any(|w| w.iter().all(|&b| b == w[0])));
        // Receivers drop the bit after every five equal bits.
        let mut out = Vec::new();
        let mut run = 0;
        let mut last = None;
        let mut skip = false;
        for &b in &stuffed {
            if skip {
                prop_assert_ne!(Some(b), last, "a stuff bit must complement the run");
                skip = false;
                last = Some(b);
                run = 1;
                continue;
            }
            out.push(b);
            if Some(b) == last { run += 1 } else { last = Some(b); run = 1 }
            if run == 5 { skip = true }
        }
        let original: Vec<bool> = bits.unstuffed().iter().collect();
        prop_assert_eq!(out, original);
    }
}
