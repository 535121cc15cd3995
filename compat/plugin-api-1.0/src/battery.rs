//! The battery the engine discovered on BMS-Can, and a plugin's answer whether it is its own.

use abi_stable::{
    StableAbi,
    std_types::{ROption, RString},
};
use std::fmt;

/// What the engine learned about a battery from its BMS-Can broadcast.
///
/// Fields the battery did not send are empty strings or `RNone`. Strings are the ASCII
/// the battery sent, with trailing NULs and spaces removed.
#[repr(C)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct BatteryIdentity {
    /// The manufacturer name of frame 0x35E.
    pub manufacturer: RString,
    /// The BMS name of frames 0x370/0x371.
    pub bms_name: RString,
    raw_35f: [u8; 8],
    raw_35f_len: u8,
    /// The installed capacity in Ah (0x379, else bytes 4-5 of 0x35F).
    pub capacity_ah: ROption<u16>,
    /// Modules online (0x372 bytes 0-1).
    pub modules_online: ROption<u16>,
    /// Modules offline (0x372 bytes 6-7).
    pub modules_offline: ROption<u16>,
    /// The serial number of frames 0x380/0x381, when the battery sends it.
    pub serial: ROption<RString>,
    /// The product (model) code of 0x35F bytes 0-1, little-endian.
    pub product_code: ROption<u16>,
}

impl BatteryIdentity {
    /// A battery known by its manufacturer string only.
    pub fn new(manufacturer: impl Into<String>) -> BatteryIdentity {
        BatteryIdentity {
            manufacturer: RString::from(manufacturer.into()),
            bms_name: RString::new(),
            raw_35f: [0; 8],
            raw_35f_len: 0,
            capacity_ah: ROption::RNone,
            modules_online: ROption::RNone,
            modules_offline: ROption::RNone,
            serial: ROption::RNone,
            product_code: ROption::RNone,
        }
    }

    /// Sets the BMS name.
    pub fn with_bms_name(mut self, name: impl Into<String>) -> BatteryIdentity {
        self.bms_name = RString::from(name.into());
        self
    }

    /// Sets the raw payload of frame 0x35F (at most 8 bytes are kept) and, when it holds
    /// bytes 0-1, the product code they carry.
    pub fn with_raw_35f(mut self, payload: &[u8]) -> BatteryIdentity {
        let n = payload.len().min(8);
        self.raw_35f = [0; 8];
        self.raw_35f[..n].copy_from_slice(&payload[..n]);
        self.raw_35f_len = n as u8;
        if n >= 2 {
            self.product_code = ROption::RSome(u16::from_le_bytes([payload[0], payload[1]]));
        }
        self
    }

    /// Sets the capacity in Ah.
    pub fn with_capacity_ah(mut self, ah: u16) -> BatteryIdentity {
        self.capacity_ah = ROption::RSome(ah);
        self
    }

    /// Sets the module counts of frame 0x372.
    pub fn with_modules(mut self, online: u16, offline: u16) -> BatteryIdentity {
        self.modules_online = ROption::RSome(online);
        self.modules_offline = ROption::RSome(offline);
        self
    }

    /// Sets the serial number.
    pub fn with_serial(mut self, serial: impl Into<String>) -> BatteryIdentity {
        self.serial = ROption::RSome(RString::from(serial.into()));
        self
    }

    /// Sets the product code (overriding the one taken from 0x35F).
    pub fn with_product_code(mut self, code: u16) -> BatteryIdentity {
        self.product_code = ROption::RSome(code);
        self
    }

    /// The payload of frame 0x35F as received: 0 to 8 bytes. Bytes 2-3 usually hold the
    /// firmware version in the vendor's own encoding (see `decode_version`).
    pub fn raw_35f(&self) -> &[u8] {
        &self.raw_35f[..usize::from(self.raw_35f_len).min(8)]
    }
}

/// Whether a battery is the plugin's, and whether its firmware can be updated over CAN.
#[repr(transparent)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MatchKind(pub u8);

impl MatchKind {
    /// Another vendor's battery.
    pub const NOT_MINE: MatchKind = MatchKind(0);
    /// The plugin's battery, but its current firmware cannot take an update over CAN.
    pub const MINE_NOT_UPDATABLE: MatchKind = MatchKind(1);
    /// The plugin's battery, updatable over CAN.
    pub const UPDATABLE: MatchKind = MatchKind(2);
}

impl fmt::Debug for MatchKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MatchKind::NOT_MINE => f.write_str("NOT_MINE"),
            MatchKind::MINE_NOT_UPDATABLE => f.write_str("MINE_NOT_UPDATABLE"),
            MatchKind::UPDATABLE => f.write_str("UPDATABLE"),
            MatchKind(other) => write!(f, "MatchKind({other})"),
        }
    }
}

/// A plugin's answer to "is this battery yours?".
#[repr(C)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct DeviceMatch {
    /// The answer.
    pub kind: MatchKind,
    /// For [`MatchKind::MINE_NOT_UPDATABLE`]: why, for the installer (e.g. "firmware
    /// 1.02 has no CAN bootloader; update it locally to 1.10 first"). Empty otherwise.
    pub reason: RString,
}

impl DeviceMatch {
    /// Another vendor's battery.
    pub fn not_mine() -> DeviceMatch {
        DeviceMatch {
            kind: MatchKind::NOT_MINE,
            reason: RString::new(),
        }
    }

    /// The plugin's battery, not updatable over CAN, because of `reason`.
    pub fn mine_not_updatable(reason: impl Into<String>) -> DeviceMatch {
        DeviceMatch {
            kind: MatchKind::MINE_NOT_UPDATABLE,
            reason: RString::from(reason.into()),
        }
    }

    /// The plugin's battery, updatable over CAN.
    pub fn updatable() -> DeviceMatch {
        DeviceMatch {
            kind: MatchKind::UPDATABLE,
            reason: RString::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_35f_keeps_what_was_received_and_yields_the_product_code() {
        let b = BatteryIdentity::new("ACME").with_raw_35f(&[0x34, 0x12, 0x04, 0x0F, 0xC8, 0x00]);
        assert_eq!(b.raw_35f(), &[0x34, 0x12, 0x04, 0x0F, 0xC8, 0x00]);
        assert_eq!(b.product_code, ROption::RSome(0x1234));
        let long = BatteryIdentity::new("ACME").with_raw_35f(&[1; 12]);
        assert_eq!(long.raw_35f().len(), 8);
        let short = BatteryIdentity::new("ACME").with_raw_35f(&[7]);
        assert_eq!(short.raw_35f(), &[7]);
        assert_eq!(short.product_code, ROption::RNone);
    }

    proptest::proptest! {
        #[test]
        fn any_35f_payload_is_kept_up_to_8_bytes(payload in proptest::collection::vec(proptest::num::u8::ANY, 0..20)) {
            let b = BatteryIdentity::new("X").with_raw_35f(&payload);
            let kept = payload.len().min(8);
            proptest::prop_assert_eq!(b.raw_35f(), &payload[..kept]);
            proptest::prop_assert_eq!(b.product_code.is_some(), payload.len() >= 2);
        }
    }

    #[test]
    fn match_constructors_set_their_kind() {
        assert_eq!(DeviceMatch::not_mine().kind, MatchKind::NOT_MINE);
        assert_eq!(DeviceMatch::updatable().kind, MatchKind::UPDATABLE);
        let m = DeviceMatch::mine_not_updatable("bootloader too old");
        assert_eq!(m.kind, MatchKind::MINE_NOT_UPDATABLE);
        assert_eq!(m.reason.as_str(), "bootloader too old");
        assert_eq!(format!("{:?}", MatchKind(9)), "MatchKind(9)");
    }
}
