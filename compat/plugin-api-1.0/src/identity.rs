//! What a plugin says about itself.

use crate::contract::{CONTRACT_VERSION, ContractVersion};
use crate::frame::CanId;
use abi_stable::{
    StableAbi,
    std_types::{RString, RVec},
};
use std::{fmt, time::Duration};

/// A plugin's identity, answered once when the engine loads the library.
///
/// The engine checks `vendor_id` and `plugin_version` against the allowlist entry of the
/// library file, lets a session send only the identifiers in `sends`, and feeds the
/// watchdogs from `timeouts`.
#[repr(C)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct PluginIdentity {
    /// A stable, unique vendor identifier in reverse-DNS form, lowercase ASCII letters,
    /// digits, `.`, `-` and `_` (e.g. `com.example.battery`). The allowlist names it.
    pub vendor_id: RString,
    /// The plugin's name for people (e.g. `Example Power LFP series`).
    pub name: RString,
    /// The plugin's own version, a semantic version (`1.4.0`). The allowlist restricts it.
    pub plugin_version: RString,
    /// The contract version the plugin was built against. The export macro fills it in
    /// from [`CONTRACT_VERSION`]; whatever the plugin set is replaced.
    pub contract: ContractVersion,
    /// Every CAN identifier a session may send. The engine drops the session's frames
    /// outside these ranges and fails the session.
    pub sends: RVec<CanIdRange>,
    /// Every CAN identifier a session wants to receive; the engine hands it these frames.
    pub receives: RVec<CanIdRange>,
    /// The package file types the plugin reads, as lowercase extensions without the dot
    /// (`bin`, `hex`).
    pub file_types: RVec<RString>,
    /// The limits the engine's watchdogs use for this plugin's sessions.
    pub timeouts: DeclaredTimeouts,
}

impl PluginIdentity {
    /// An identity with no CAN identifiers, no file types and [`DeclaredTimeouts::default`].
    pub fn new(
        vendor_id: impl Into<String>,
        name: impl Into<String>,
        plugin_version: impl Into<String>,
    ) -> PluginIdentity {
        PluginIdentity {
            vendor_id: RString::from(vendor_id.into()),
            name: RString::from(name.into()),
            plugin_version: RString::from(plugin_version.into()),
            contract: CONTRACT_VERSION,
            sends: RVec::new(),
            receives: RVec::new(),
            file_types: RVec::new(),
            timeouts: DeclaredTimeouts::default(),
        }
    }

    /// Adds a range of identifiers the plugin sends.
    pub fn sends(mut self, range: CanIdRange) -> PluginIdentity {
        self.sends.push(range);
        self
    }

    /// Adds a range of identifiers the plugin receives.
    pub fn receives(mut self, range: CanIdRange) -> PluginIdentity {
        self.receives.push(range);
        self
    }

    /// Adds a file type (extension without the dot).
    pub fn file_type(mut self, extension: impl Into<String>) -> PluginIdentity {
        self.file_types.push(RString::from(extension.into()));
        self
    }

    /// Sets the declared timeouts.
    pub fn timeouts(mut self, timeouts: DeclaredTimeouts) -> PluginIdentity {
        self.timeouts = timeouts;
        self
    }

    /// Whether `id` is inside one of the `sends` ranges.
    pub fn may_send(&self, id: CanId) -> bool {
        self.sends.iter().any(|r| r.contains(id))
    }

    /// Whether `id` is inside one of the `receives` ranges.
    pub fn wants(&self, id: CanId) -> bool {
        self.receives.iter().any(|r| r.contains(id))
    }
}

/// An inclusive range of CAN identifiers of one format (both standard or both extended).
#[repr(C)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CanIdRange {
    first: CanId,
    last: CanId,
}

impl CanIdRange {
    /// `first..=last`, or `None` when the two differ in format or `first > last`.
    pub fn new(first: CanId, last: CanId) -> Option<CanIdRange> {
        if first.is_extended() != last.is_extended() || first.raw() > last.raw() {
            return None;
        }
        Some(CanIdRange { first, last })
    }

    /// The range holding `id` alone.
    pub const fn single(id: CanId) -> CanIdRange {
        CanIdRange {
            first: id,
            last: id,
        }
    }

    /// The lowest identifier in the range.
    pub const fn first(&self) -> CanId {
        self.first
    }

    /// The highest identifier in the range.
    pub const fn last(&self) -> CanId {
        self.last
    }

    /// Whether the range is well formed: one format, `first <= last`. Ranges built with
    /// [`CanIdRange::new`] always are; the engine checks the ones a plugin hands it.
    pub const fn is_valid(&self) -> bool {
        self.first.is_extended() == self.last.is_extended() && self.first.raw() <= self.last.raw()
    }

    /// Whether `id` is in the range (same format, between `first` and `last`).
    pub const fn contains(&self, id: CanId) -> bool {
        id.is_extended() == self.first.is_extended()
            && id.raw() >= self.first.raw()
            && id.raw() <= self.last.raw()
    }
}

/// Prints `7E0` for a single identifier, `7E0-7EF` for a range.
impl fmt::Display for CanIdRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl fmt::Debug for CanIdRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The limits a plugin declares for its sessions, in milliseconds. The engine's watchdogs
/// fail a session that exceeds them (the engine's own code, not the plugin's).
#[repr(C)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeclaredTimeouts {
    /// Longest wait for the BMS's answer while Transferring.
    pub transfer_response_ms: u32,
    /// Longest wait for the BMS's answer while Installing.
    pub install_response_ms: u32,
    /// Longest wait for the BMS's answer while Verifying.
    pub verify_response_ms: u32,
    /// Longest silence of the battery while Restarting (no BMS-Can telemetry, no reply):
    /// the engine's "battery is communicating" gate is suspended for this long.
    pub restart_silence_max_ms: u32,
    /// Longest time from the end of the transfer to the end of Installing.
    pub install_max_ms: u32,
}

impl DeclaredTimeouts {
    /// `transfer_response_ms` as a [`Duration`].
    pub fn transfer_response(&self) -> Duration {
        Duration::from_millis(self.transfer_response_ms.into())
    }
    /// `install_response_ms` as a [`Duration`].
    pub fn install_response(&self) -> Duration {
        Duration::from_millis(self.install_response_ms.into())
    }
    /// `verify_response_ms` as a [`Duration`].
    pub fn verify_response(&self) -> Duration {
        Duration::from_millis(self.verify_response_ms.into())
    }
    /// `restart_silence_max_ms` as a [`Duration`].
    pub fn restart_silence_max(&self) -> Duration {
        Duration::from_millis(self.restart_silence_max_ms.into())
    }
    /// `install_max_ms` as a [`Duration`].
    pub fn install_max(&self) -> Duration {
        Duration::from_millis(self.install_max_ms.into())
    }
}

/// One second per answer (the ISO-TP and UDS P2* order of magnitude, rounded up), 30 s
/// of silence while restarting, 5 minutes to install.
impl Default for DeclaredTimeouts {
    fn default() -> DeclaredTimeouts {
        DeclaredTimeouts {
            transfer_response_ms: 1_000,
            install_response_ms: 5_000,
            verify_response_ms: 5_000,
            restart_silence_max_ms: 30_000,
            install_max_ms: 300_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn std_id(id: u16) -> CanId {
        CanId::standard(id).unwrap()
    }

    #[test]
    fn ranges_hold_one_format_and_their_bounds() {
        let r = CanIdRange::new(std_id(0x7E0), std_id(0x7EF)).unwrap();
        assert!(r.contains(std_id(0x7E0)));
        assert!(r.contains(std_id(0x7EF)));
        assert!(!r.contains(std_id(0x7DF)));
        assert!(!r.contains(std_id(0x7F0)));
        assert!(!r.contains(CanId::extended(0x7E5).unwrap()));
        assert!(CanIdRange::new(std_id(0x10), std_id(0x0F)).is_none());
        assert!(CanIdRange::new(std_id(0x10), CanId::extended(0x20).unwrap()).is_none());
        assert_eq!(r.to_string(), "7E0-7EF");
        assert_eq!(CanIdRange::single(std_id(0x35F)).to_string(), "35F");
    }

    proptest::proptest! {
        #[test]
        fn a_built_range_is_valid_and_holds_exactly_its_bounds(
            a in 0u32..=0x1FFF_FFFF, b in 0u32..=0x1FFF_FFFF, x in 0u32..=0x1FFF_FFFF,
            ext in proptest::bool::ANY,
        ) {
            let id = |v: u32| if ext { CanId::extended(v) } else { CanId::standard((v & 0x7FF) as u16) };
            let (first, last, probe) = (id(a).unwrap(), id(b).unwrap(), id(x).unwrap());
            match CanIdRange::new(first, last) {
                Some(r) => {
                    proptest::prop_assert!(r.is_valid());
                    let inside = probe.raw() >= first.raw() && probe.raw() <= last.raw();
                    proptest::prop_assert_eq!(r.contains(probe), inside);
                    let other_format = if ext {
                        CanId::standard((x & 0x7FF) as u16)
                    } else {
                        CanId::extended(x)
                    };
                    proptest::prop_assert!(!r.contains(other_format.unwrap()));
                }
                None => proptest::prop_assert!(first.raw() > last.raw()),
            }
        }
    }

    #[test]
    fn identity_answers_send_and_receive_questions() {
        let id = PluginIdentity::new("com.example", "Example", "1.0.0")
            .sends(CanIdRange::single(std_id(0x7E0)))
            .receives(CanIdRange::single(std_id(0x7E8)));
        assert!(id.may_send(std_id(0x7E0)));
        assert!(!id.may_send(std_id(0x7E8)));
        assert!(id.wants(std_id(0x7E8)));
        assert_eq!(id.contract, CONTRACT_VERSION);
    }
}
