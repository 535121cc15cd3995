//! What a battery says about itself: the identity vendor plugins match on.

use bmsfw_protocols::bms_can::{AmpHours, ModuleCounts, ProductInfo};
use std::fmt;

/// A battery's identity as broadcast on BMS-Can. Every field is `None` until the frame
/// that carries it has been received (many batteries send only some of them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatteryIdentity {
    /// 0x35E: manufacturer name.
    pub manufacturer: Option<String>,
    /// 0x370 + 0x371: BMS name.
    pub bms_name: Option<String>,
    /// 0x35F: product code, raw firmware bytes, capacity, and every byte as received.
    pub product_info: Option<ProductInfo>,
    /// 0x379: installed capacity.
    pub installed_capacity: Option<AmpHours>,
    /// 0x372: modules online, blocking and offline.
    pub modules: Option<ModuleCounts>,
    /// 0x380 + 0x381: serial number.
    pub serial: Option<String>,
    /// 0x382: product or family name.
    pub product_name: Option<String>,
}

impl BatteryIdentity {
    /// The raw 0x35F bytes, exactly as received.
    pub fn product_info_raw(&self) -> Option<&[u8]> {
        self.product_info.as_ref().map(ProductInfo::raw)
    }

    /// The product code of 0x35F.
    pub fn product_code(&self) -> Option<u16> {
        self.product_info.map(|p| p.product_code())
    }

    /// The raw firmware bytes of 0x35F (bytes 2-3), for the vendor's plugin to decode.
    pub fn firmware_bytes(&self) -> Option<[u8; 2]> {
        self.product_info.map(|p| p.firmware_bytes())
    }

    /// The capacity: 0x379 when sent, else the capacity field of 0x35F.
    pub fn capacity(&self) -> Option<AmpHours> {
        self.installed_capacity
            .or_else(|| self.product_info.map(|p| p.capacity()))
    }
}

/// One line: `PYLON US5000 (fw 04 0F, product 0x1234, 100 Ah, serial X)`.
impl fmt::Display for BatteryIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            self.manufacturer.as_deref().unwrap_or("?"),
            self.bms_name.as_deref().unwrap_or("?")
        )?;
        if let Some(fw) = self.firmware_bytes() {
            write!(f, " (fw {:02X} {:02X}", fw[0], fw[1])?;
            if let Some(code) = self.product_code() {
                write!(f, ", product 0x{code:04X}")?;
            }
            if let Some(cap) = self.capacity() {
                write!(f, ", {cap}")?;
            }
            if let Some(serial) = &self.serial {
                write!(f, ", serial {serial}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}
