//! Whether a discovered battery is a Coral ReefStack, and whether it can be updated over
//! CAN (`PROTOCOL.md` section 1).

use crate::protocol::{MANUFACTURER, MIN_UPDATABLE_FIRMWARE, product_name};
use bmsfw_plugin_api::{BatteryIdentity, DeviceMatch};

fn show([major, minor]: [u8; 2]) -> String {
    format!("v{major}.{minor:02X}")
}

/// Answers from the BMS-Can broadcast: the manufacturer of 0x35E, the product code and the
/// firmware of 0x35F (bytes 2-3: `0xMMmm` little-endian). Masters before v1.04 have no
/// update service on CAN.
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
            "product code 0x{code:04X} is not a Coral ReefStack; its firmware cannot be \
             updated over CAN"
        ));
    }
    match battery.raw_35f() {
        [_, _, minor, major, ..] => {
            let running = [*major, *minor];
            if running >= MIN_UPDATABLE_FIRMWARE {
                DeviceMatch::updatable()
            } else {
                DeviceMatch::mine_not_updatable(format!(
                    "master firmware {} has no update service on CAN; update it to {} or \
                     later with the Coral service tool first",
                    show(running),
                    show(MIN_UPDATABLE_FIRMWARE)
                ))
            }
        }
        _ => DeviceMatch::mine_not_updatable(
            "the battery's 0x35F frame is too short to hold its firmware version",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_plugin_api::MatchKind;

    fn coral(raw_35f: &[u8]) -> BatteryIdentity {
        BatteryIdentity::new("CORAL").with_raw_35f(raw_35f)
    }

    #[test]
    fn reefstacks_from_v1_04_are_updatable() {
        assert_eq!(
            match_battery(&coral(&[0xA1, 0xC0, 0x04, 0x01, 100, 0])).kind,
            MatchKind::UPDATABLE
        );
        assert_eq!(
            match_battery(&coral(&[0xA2, 0xC0, 0x10, 0x01, 200, 0])).kind,
            MatchKind::UPDATABLE
        );
        // v2.00: the major byte is byte 3.
        assert_eq!(
            match_battery(&coral(&[0xA1, 0xC0, 0x00, 0x02, 100, 0])).kind,
            MatchKind::UPDATABLE
        );
    }

    #[test]
    fn other_batteries_and_old_firmware_are_told_apart() {
        assert_eq!(
            match_battery(&BatteryIdentity::new("AURORA").with_raw_35f(&[0xA1, 0xC0, 4, 1])).kind,
            MatchKind::NOT_MINE
        );
        // v1.03 (bytes 03 01): too old; read big-endian it would pass as v3.01.
        let old = match_battery(&coral(&[0xA1, 0xC0, 0x03, 0x01, 100, 0]));
        assert_eq!(old.kind, MatchKind::MINE_NOT_UPDATABLE);
        assert!(old.reason.contains("v1.03"), "{}", old.reason);
        let unknown = match_battery(&coral(&[0x99, 0x00, 0x10, 0x01]));
        assert_eq!(unknown.kind, MatchKind::MINE_NOT_UPDATABLE);
        assert!(unknown.reason.contains("0x0099"), "{}", unknown.reason);
        assert_eq!(
            match_battery(&BatteryIdentity::new("CORAL")).kind,
            MatchKind::MINE_NOT_UPDATABLE
        );
        assert_eq!(
            match_battery(&coral(&[0xA1, 0xC0, 0x10])).kind,
            MatchKind::MINE_NOT_UPDATABLE
        );
    }
}
