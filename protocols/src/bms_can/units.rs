//! Physical quantities exactly as BMS-Can carries them: integers with a fixed scale.
//!
//! Keeping the raw integer avoids any rounding between the wire and a gate's
//! comparison; `Display` prints the exact decimal value with its unit.

use std::fmt;

/// Writes `value / 10^decimals` exactly, followed by ` unit`.
fn write_fixed(f: &mut fmt::Formatter<'_>, value: i64, decimals: u32, unit: &str) -> fmt::Result {
    let scale = 10i64.pow(decimals);
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
    let scale = scale.unsigned_abs();
    if decimals == 0 {
        write!(f, "{sign}{abs} {unit}")
    } else {
        write!(
            f,
            "{sign}{}.{:0width$} {unit}",
            abs / scale,
            abs % scale,
            width = decimals as usize
        )
    }
}

macro_rules! quantity {
    ($(#[$doc:meta])* $name:ident($raw:ty), $decimals:expr, $unit:expr, $as:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub $raw);

        impl $name {
            /// The value in the named unit, as a float (for display and arithmetic,
            /// never for exact comparisons).
            pub fn $as(self) -> f64 {
                f64::from(self.0) / 10f64.powi($decimals)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_fixed(f, i64::from(self.0), $decimals, $unit)
            }
        }
    };
}

quantity!(
    /// A voltage in 0.1 V steps, unsigned (charge and discharge voltage limits).
    DeciVolts(u16), 1, "V", volts
);
quantity!(
    /// A voltage in 0.01 V steps, signed (pack voltage in 0x356).
    CentiVolts(i16), 2, "V", volts
);
quantity!(
    /// A current in 0.1 A steps, signed; positive = charging.
    DeciAmps(i16), 1, "A", amps
);
quantity!(
    /// A temperature in 0.1 degC steps, signed.
    DeciCelsius(i16), 1, "°C", celsius
);
quantity!(
    /// A cell voltage in millivolts.
    MilliVolts(u16), 0, "mV", millivolts
);
quantity!(
    /// A percentage in 1 % steps (SOC, SOH).
    Percent(u16), 0, "%", percent
);
quantity!(
    /// A percentage in 0.01 % steps (high-resolution SOC).
    CentiPercent(u16), 2, "%", percent
);
quantity!(
    /// A capacity in ampere-hours.
    AmpHours(u16), 0, "Ah", amp_hours
);
quantity!(
    /// An energy in 0.1 kWh steps.
    DeciKilowattHours(u32), 1, "kWh", kilowatt_hours
);

/// A temperature in whole kelvin (cell temperatures in 0x373).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Kelvin(pub u16);

impl Kelvin {
    /// The temperature in kelvin.
    pub fn kelvin(self) -> f64 {
        f64::from(self.0)
    }

    /// The temperature in degrees Celsius (K - 273.15).
    pub fn celsius(self) -> f64 {
        f64::from(self.0) - 273.15
    }
}

impl fmt::Display for Kelvin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} K", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_exact() {
        assert_eq!(CentiVolts(5140).to_string(), "51.40 V");
        assert_eq!(CentiVolts(-1).to_string(), "-0.01 V");
        assert_eq!(CentiVolts(i16::MIN).to_string(), "-327.68 V");
        assert_eq!(DeciAmps(-125).to_string(), "-12.5 A");
        assert_eq!(DeciAmps(5).to_string(), "0.5 A");
        assert_eq!(DeciCelsius(-5).to_string(), "-0.5 °C");
        assert_eq!(DeciVolts(568).to_string(), "56.8 V");
        assert_eq!(Percent(87).to_string(), "87 %");
        assert_eq!(CentiPercent(8705).to_string(), "87.05 %");
        assert_eq!(DeciKilowattHours(u32::MAX).to_string(), "429496729.5 kWh");
        assert_eq!(Kelvin(298).to_string(), "298 K");
    }

    #[test]
    fn float_views_scale() {
        assert_eq!(CentiVolts(5140).volts(), 51.4);
        assert_eq!(DeciAmps(-125).amps(), -12.5);
        assert_eq!(DeciCelsius(-100).celsius(), -10.0);
        assert!((Kelvin(298).celsius() - 24.85).abs() < 1e-9);
    }
}
