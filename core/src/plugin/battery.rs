//! The battery as a plugin sees it: the telemetry's identity in the contract's form.

use crate::telemetry::identity::BatteryIdentity as Heard;
use bmsfw_plugin_api::BatteryIdentity;

/// What the telemetry learned about a battery, as the plugin contract passes it to
/// `match_battery` and `start_session`. Frames not received stay empty (an empty
/// manufacturer, `RNone` elsewhere); the raw 0x35F bytes carry the product code.
pub fn plugin_battery(heard: &Heard) -> BatteryIdentity {
    let mut b = BatteryIdentity::new(heard.manufacturer.clone().unwrap_or_default());
    if let Some(name) = &heard.bms_name {
        b = b.with_bms_name(name.clone());
    }
    if let Some(raw) = heard.product_info_raw() {
        b = b.with_raw_35f(raw);
    }
    if let Some(capacity) = heard.capacity() {
        b = b.with_capacity_ah(capacity.0);
    }
    if let Some(m) = heard.modules {
        b = b.with_modules(m.online, m.offline);
    }
    if let Some(serial) = &heard.serial {
        b = b.with_serial(serial.clone());
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{AmpHours, ModuleCounts, ProductInfo};
    use bmsfw_plugin_api::abi_stable::std_types::{ROption, RString};

    #[test]
    fn every_heard_field_reaches_the_plugin() {
        let heard = Heard {
            manufacturer: Some("PYLON".into()),
            bms_name: Some("US5000".into()),
            product_info: ProductInfo::from_data(&[0x34, 0x12, 0x04, 0x0F, 0x64, 0x00]),
            installed_capacity: Some(AmpHours(200)),
            modules: Some(ModuleCounts {
                online: 3,
                blocking_charge: 0,
                blocking_discharge: 0,
                offline: 1,
            }),
            serial: Some("PN123".into()),
            product_name: None,
        };
        let b = plugin_battery(&heard);
        assert_eq!(b.manufacturer.as_str(), "PYLON");
        assert_eq!(b.bms_name.as_str(), "US5000");
        assert_eq!(b.raw_35f(), &[0x34, 0x12, 0x04, 0x0F, 0x64, 0x00]);
        assert_eq!(b.product_code, ROption::RSome(0x1234));
        assert_eq!(b.capacity_ah, ROption::RSome(200), "0x379 wins over 0x35F");
        assert_eq!(b.modules_online, ROption::RSome(3));
        assert_eq!(b.modules_offline, ROption::RSome(1));
        assert_eq!(b.serial, ROption::RSome(RString::from("PN123")));
    }

    #[test]
    fn a_battery_heard_only_by_name_is_passed_with_empty_fields() {
        let heard = Heard {
            manufacturer: Some("BYD".into()),
            ..Heard::default()
        };
        let b = plugin_battery(&heard);
        assert_eq!(b.manufacturer.as_str(), "BYD");
        assert!(b.raw_35f().is_empty());
        assert_eq!(b.product_code, ROption::RNone);
        assert_eq!(b.capacity_ah, ROption::RNone);
    }
}
