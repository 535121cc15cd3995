//! Whether a discovered battery is a Boreal bank, whether it can be updated over CAN, and
//! what its 0x35F says about the bank's nodes.

use crate::protocol::{FIRST_NODE, LAST_NODE, MANUFACTURER, product_name};
use crate::version::Bcd;
use bmsfw_plugin_api::{BatteryIdentity, DeviceMatch};

/// Lowest application firmware with the CANopen SDO server on the BMS-Can port.
pub const MIN_UPDATABLE_FIRMWARE: Bcd = Bcd([0x02, 0x00]);

/// What a bank's 0x35F says (`PROTOCOL.md`, "Identification").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BankInfo {
    /// Product code, bytes 0-1.
    pub product_code: u16,
    /// The lowest firmware any node of the bank runs, bytes 2-3.
    pub firmware: Bcd,
    /// The node broadcasting BMS-Can for the bank (byte 6), and the nodes in the bank
    /// (byte 7), when the frame carries them.
    pub nodes: Option<(u8, u8)>,
}

impl BankInfo {
    /// Reads the 0x35F payload, or says what is wrong with it.
    pub fn parse(raw: &[u8]) -> Result<BankInfo, String> {
        let [p0, p1, f0, f1, ..] = *raw else {
            return Err(format!(
                "the battery's 0x35F frame has {} bytes, too short to hold its firmware version",
                raw.len()
            ));
        };
        let firmware = Bcd::new([f0, f1]).ok_or_else(|| {
            format!("0x35F bytes 2-3 are {f0:02X} {f1:02X}, which is not a BCD version")
        })?;
        let nodes = match raw.get(6..8) {
            Some(&[speaker, count]) => {
                let ids = FIRST_NODE..=LAST_NODE;
                if !ids.contains(&speaker) || !(1..=LAST_NODE).contains(&count) {
                    return Err(format!(
                        "0x35F names node {speaker} as the bank's speaker and {count} nodes; \
                         Boreal node ids are {FIRST_NODE} to {LAST_NODE}"
                    ));
                }
                Some((speaker, count))
            }
            _ => None,
        };
        Ok(BankInfo {
            product_code: u16::from_le_bytes([p0, p1]),
            firmware,
            nodes,
        })
    }
}

/// Answers from the BMS-Can broadcast: the manufacturer of 0x35E, the product code and
/// the bank's firmware of 0x35F. Firmware before 2.00 has no SDO server on the BMS-Can
/// port. (Each node's bootloader is asked over SDO when a session starts.)
pub fn match_battery(battery: &BatteryIdentity) -> DeviceMatch {
    if battery.manufacturer.as_str() != MANUFACTURER {
        return DeviceMatch::not_mine();
    }
    let bank = match BankInfo::parse(battery.raw_35f()) {
        Ok(bank) => bank,
        Err(reason) => return DeviceMatch::mine_not_updatable(reason),
    };
    if product_name(bank.product_code).is_none() {
        return DeviceMatch::mine_not_updatable(format!(
            "product code 0x{:04X} is not a Boreal Taiga; its firmware cannot be updated over CAN",
            bank.product_code
        ));
    }
    if bank.firmware < MIN_UPDATABLE_FIRMWARE {
        return DeviceMatch::mine_not_updatable(format!(
            "firmware {} has no update service on CAN; update the bank to \
             {MIN_UPDATABLE_FIRMWARE} or later with the Boreal service tool first",
            bank.firmware
        ));
    }
    DeviceMatch::updatable()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_plugin_api::MatchKind;

    fn boreal(raw_35f: &[u8]) -> BatteryIdentity {
        BatteryIdentity::new("BOREAL").with_raw_35f(raw_35f)
    }

    #[test]
    fn taigas_from_firmware_2_00_are_updatable() {
        let m = match_battery(&boreal(&[0x10, 0xB2, 0x02, 0x15, 0x90, 0x01, 1, 2]));
        assert_eq!(m.kind, MatchKind::UPDATABLE);
        let m = match_battery(&boreal(&[0x05, 0xB2, 0x02, 0x00, 100, 0]));
        assert_eq!(m.kind, MatchKind::UPDATABLE);
    }

    #[test]
    fn other_batteries_old_firmware_and_bad_frames_are_told_apart() {
        let other = BatteryIdentity::new("AURORA").with_raw_35f(&[0x10, 0xB2, 2, 0x15]);
        assert_eq!(match_battery(&other).kind, MatchKind::NOT_MINE);
        let old = match_battery(&boreal(&[0x10, 0xB2, 0x01, 0x99, 200, 0]));
        assert_eq!(old.kind, MatchKind::MINE_NOT_UPDATABLE);
        assert!(old.reason.contains("1.99"), "{}", old.reason);
        let hex = match_battery(&boreal(&[0x10, 0xB2, 0x02, 0x1F, 200, 0]));
        assert_eq!(hex.kind, MatchKind::MINE_NOT_UPDATABLE);
        assert!(hex.reason.contains("not a BCD"), "{}", hex.reason);
        let unknown = match_battery(&boreal(&[0x99, 0x00, 0x02, 0x15]));
        assert!(unknown.reason.contains("0x0099"), "{}", unknown.reason);
        let short = match_battery(&boreal(&[0x10, 0xB2, 0x02]));
        assert_eq!(short.kind, MatchKind::MINE_NOT_UPDATABLE);
        let bad_node = match_battery(&boreal(&[0x10, 0xB2, 0x02, 0x15, 0, 0, 17, 2]));
        assert!(bad_node.reason.contains("node 17"), "{}", bad_node.reason);
    }

    #[test]
    fn the_bank_info_names_the_speaker_and_the_node_count() {
        let b = BankInfo::parse(&[0x10, 0xB2, 0x02, 0x15, 0x90, 0x01, 3, 4]).unwrap();
        assert_eq!(b.product_code, 0xB210);
        assert_eq!(b.firmware, Bcd([0x02, 0x15]));
        assert_eq!(b.nodes, Some((3, 4)));
        let b = BankInfo::parse(&[0x10, 0xB2, 0x02, 0x15, 0x90, 0x01]).unwrap();
        assert_eq!(b.nodes, None);
    }

    proptest::proptest! {
        #[test]
        fn any_35f_payload_is_answered_without_panicking(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..9)) {
            let m = match_battery(&boreal(&raw));
            proptest::prop_assert!(m.kind != MatchKind::NOT_MINE);
            if m.kind == MatchKind::UPDATABLE {
                proptest::prop_assert!(BankInfo::parse(&raw).is_ok());
            }
        }
    }
}
