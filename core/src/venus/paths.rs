//! The Venus OS paths the `venus` source reads, below `N/<portal id>/`. Their encodings
//! and sources are in `docs/venus.md`.

/// `com.victronenergy.settings` `/Settings/Network/VrmPortal`: 0 off, 1 read-only,
/// 2 full.
pub const VRM_PORTAL: &str = "settings/0/Settings/Network/VrmPortal";
/// `com.victronenergy.system` `/Ac/ActiveIn/Source`: 0 not available, 1 grid,
/// 2 generator, 3 shore, 240 inverting (no AC input); invalid without an
/// inverter/charger.
pub const AC_SOURCE: &str = "system/0/Ac/ActiveIn/Source";
/// `com.victronenergy.platform` `/Firmware/Installed/Version`: `v3.60`, `v3.70~12`.
pub const FIRMWARE_VERSION: &str = "platform/0/Firmware/Installed/Version";
/// An inverter/charger's `/Ac/ActiveIn/Connected`: 0 no AC input, 1 connected.
pub const VEBUS_AC_CONNECTED: &str = "Ac/ActiveIn/Connected";
/// An inverter/charger's `/State`: 9 inverting, among others.
pub const VEBUS_STATE: &str = "State";

/// `/Ac/ActiveIn/Source` while the inverter runs the site from its batteries.
pub const SOURCE_INVERTING: i64 = 240;
/// An inverter/charger's `/State` while inverting.
pub const STATE_INVERTING: i64 = 9;

/// The subscriptions (below `N/<portal id>/`).
pub const SUBSCRIPTIONS: [&str; 5] = [
    VRM_PORTAL,
    AC_SOURCE,
    FIRMWARE_VERSION,
    "vebus/+/Ac/ActiveIn/Connected",
    "vebus/+/State",
];

/// The values re-read every refresh period besides each inverter/charger's.
pub const READS: [&str; 3] = [VRM_PORTAL, AC_SOURCE, FIRMWARE_VERSION];

/// `vebus/<instance>/<path>`.
pub fn vebus(instance: &str, path: &str) -> String {
    format!("vebus/{instance}/{path}")
}

/// Whether `path` (below `N/<portal id>/`) is one the source reads.
pub fn watched(path: &str) -> bool {
    if [VRM_PORTAL, AC_SOURCE, FIRMWARE_VERSION].contains(&path) {
        return true;
    }
    let Some(rest) = path.strip_prefix("vebus/") else {
        return false;
    };
    let Some((instance, tail)) = rest.split_once('/') else {
        return false;
    };
    !instance.is_empty()
        && instance.bytes().all(|b| b.is_ascii_digit())
        && (tail == VEBUS_AC_CONNECTED || tail == VEBUS_STATE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_read_paths_are_watched() {
        assert!(watched(VRM_PORTAL));
        assert!(watched("vebus/276/State"));
        assert!(watched("vebus/276/Ac/ActiveIn/Connected"));
        assert!(!watched("vebus/x/State"));
        assert!(!watched("vebus//State"));
        assert!(!watched("vebus/276/Mode"));
        assert!(!watched("battery/512/Soc"));
    }
}
