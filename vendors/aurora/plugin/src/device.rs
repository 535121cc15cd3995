//! Whether a discovered battery is an Aurora, and whether it can be updated over CAN.

use crate::protocol::{MANUFACTURER, MIN_UPDATABLE_FIRMWARE, product_name};
use crate::version::show;
use bmsfw_plugin_api::{BatteryIdentity, DeviceMatch};

/// Answers from the BMS-Can broadcast: the manufacturer of 0x35E, the product code and
/// the firmware bytes of 0x35F. Firmware before v2.0 has no UDS service on CAN. (The
/// bootloader is probed over UDS when a session starts.)
pub fn match_battery(battery: &BatteryIdentity) -> DeviceMatch {
    if battery.manufacturer.as_str() != MANUFACTURER {
        return DeviceMatch::not_mine();
    }
    let Some(code) = battery.product_code.into_option() else {
        return DeviceMatch::mine_not_updatable(
            "the battery has not sent its product code (0x35F) yet",
        );
    };
    if product_name(code).is_none() {
        return DeviceMatch::mine_not_updatable(format!(
            "product code 0x{code:04X} is not an Aurora PowerCore; its firmware cannot be \
             updated over CAN"
        ));
    }
    match battery.raw_35f() {
        [_, _, major, minor, ..] if [*major, *minor] >= MIN_UPDATABLE_FIRMWARE => {
            DeviceMatch::updatable()
        }
        [_, _, major, minor, ..] => DeviceMatch::mine_not_updatable(format!(
            "firmware {} has no update service on CAN; update it to {} or later with the \
             Aurora service tool first",
            show([*major, *minor]),
            show(MIN_UPDATABLE_FIRMWARE)
        )),
        _ => DeviceMatch::mine_not_updatable(
            "the battery's 0x35F frame is too short to hold its firmware version",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_plugin_api::MatchKind;

    fn aurora(raw_35f: &[u8]) -> BatteryIdentity {
        BatteryIdentity::new("AURORA").with_raw_35f(raw_35f)
    }

    #[test]
    fn powercores_from_firmware_2_0_are_updatable() {
        let m = match_battery(&aurora(&[0x20, 0xA5, 4, 15, 200, 0]));
        assert_eq!(m.kind, MatchKind::UPDATABLE);
        assert_eq!(
            match_battery(&aurora(&[0x10, 0xA5, 2, 0, 100, 0])).kind,
            MatchKind::UPDATABLE
        );
    }

    #[test]
    fn other_batteries_and_old_firmware_are_told_apart() {
        assert_eq!(
            match_battery(&BatteryIdentity::new("PYLON").with_raw_35f(&[0x20, 0xA5, 4, 15])).kind,
            MatchKind::NOT_MINE
        );
        let old = match_battery(&aurora(&[0x20, 0xA5, 1, 99, 200, 0]));
        assert_eq!(old.kind, MatchKind::MINE_NOT_UPDATABLE);
        assert!(old.reason.contains("v1.99"), "{}", old.reason);
        let unknown = match_battery(&aurora(&[0x99, 0x00, 4, 15]));
        assert_eq!(unknown.kind, MatchKind::MINE_NOT_UPDATABLE);
        assert!(unknown.reason.contains("0x0099"), "{}", unknown.reason);
        let silent = match_battery(&BatteryIdentity::new("AURORA"));
        assert_eq!(silent.kind, MatchKind::MINE_NOT_UPDATABLE);
        let short = match_battery(&aurora(&[0x20, 0xA5, 4]));
        assert_eq!(short.kind, MatchKind::MINE_NOT_UPDATABLE);
    }
}
