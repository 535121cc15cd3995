//! The catalogue of stable numeric error codes shown to installers.
//!
//! Every code the engine or a vendor plugin can report lives in the single table below, with
//! a stable name, the title the installer sees, what it means and how to resolve it. The
//! installer-facing `docs/errors.md` is generated from this table ([`render_markdown`]) and a
//! test fails when the two differ.
//!
//! The code space is shared across the project:
//!
//! | range | owner |
//! |---|---|
//! | 700-719 | engine: upload to the GX device and staging |
//! | 720-739 | engine: safety gates, one code per gate |
//! | 740-749 | engine: the update itself (GX restart, plugin contract, bus budget, watchdog) |
//! | 750-799 | reported by vendor plugins, with fixed meanings |
//! | 800-819 | engine: authenticity of remote commands (the portal's signature) |
//! | 900-999 | vendor-specific; the plugin's message explains |
//!
//! Codes are plain `u32` numbers here. The plugin-reported codes (750 and up) are the same
//! numbers the plugin contract carries.

use std::ops::RangeInclusive;

/// One entry of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorInfo {
    /// The stable number shown to installers and carried in MQTT, the event log and the portal.
    pub code: u32,
    /// Stable machine name (SCREAMING_SNAKE_CASE).
    pub name: &'static str,
    /// Short title as the portal shows it.
    pub title: &'static str,
    /// What happened, in the installer's words.
    pub meaning: &'static str,
    /// What the installer should do, in order.
    pub resolution: &'static [&'static str],
}

/// Codes 900 to 999: meanings defined by each vendor's plugin.
pub const VENDOR_SPECIFIC: RangeInclusive<u32> = 900..=999;

/// The entry that describes every vendor-specific code.
pub const VENDOR_SPECIFIC_INFO: ErrorInfo = ErrorInfo {
    code: 900,
    name: "VENDOR_SPECIFIC",
    title: "Battery manufacturer error",
    meaning: "The battery manufacturer's update software reported an error of its own; its message explains it.",
    resolution: &[
        "Note the complete error message and code",
        "Contact the battery manufacturer with the diagnostic data",
    ],
};

macro_rules! catalogue {
    ($( $code:literal $name:ident $title:literal $meaning:literal [ $($res:literal),+ $(,)? ] ;)+) => {
        /// The numeric codes as named constants.
        pub mod codes {
            $(
                #[doc = $title]
                pub const $name: u32 = $code;
            )+
        }

        /// The catalogue: every fixed code, in ascending order.
        pub const CATALOGUE: &[ErrorInfo] = &[
            $(
                ErrorInfo {
                    code: $code,
                    name: stringify!($name),
                    title: $title,
                    meaning: $meaning,
                    resolution: &[$($res),+],
                },
            )+
        ];
    };
}

catalogue! {
    700 UPLOAD_REQUEST_INVALID "Upload request invalid"
        "The upload request named an impossible file size, chunk size or checksum."
        ["Start the upload again from the VRM Portal",
         "If it fails again, contact Victron support: the portal and the GX device disagree on the upload format"];
    701 PACKAGE_TOO_LARGE "Firmware file too large"
        "The firmware file is larger than the GX device accepts for a battery update."
        ["Check that the file is the battery firmware file from the manufacturer and not an archive of several files",
         "Contact the battery manufacturer if the file is correct"];
    702 INSUFFICIENT_STORAGE "Not enough storage on the GX device"
        "The GX device does not have enough free storage to keep the firmware file during the update."
        ["Free storage on the GX device (remove unused data logs or large files)",
         "Restart the GX device and start the update again"];
    703 CHUNK_OUT_OF_RANGE "Upload data out of range"
        "A part of the upload lies beyond the announced file size."
        ["Start the upload again from the VRM Portal"];
    704 CHUNK_WRONG_LENGTH "Upload data of wrong length"
        "A part of the upload has a different length than announced."
        ["Start the upload again from the VRM Portal"];
    705 UPLOAD_CORRUPTED "Upload corrupted"
        "The file received by the GX device differs from the uploaded file (checksum mismatch). The received copy was deleted."
        ["Upload the file again",
         "If it fails again, check the internet connection of the GX device"];
    706 STAGING_STORAGE_ERROR "GX storage error"
        "The GX device could not read or write the firmware file on its storage."
        ["Restart the GX device and start the update again",
         "If it fails again, contact Victron support"];
    707 NO_MATCHING_PLUGIN "Firmware file not supported"
        "No approved battery update plugin on the GX device reads this firmware file."
        ["Check that the file is meant for this battery model",
         "Update the GX device firmware; contact the battery manufacturer if the file is correct"];
    708 UPLOAD_INCOMPLETE "Upload incomplete"
        "The upload ended before every part of the firmware file arrived on the GX device."
        ["Start the upload again; it continues from the first missing part"];
    709 STAGED_PACKAGE_DAMAGED "Stored firmware file damaged"
        "The firmware file kept on the GX device is missing or no longer matches its checksum."
        ["Upload the firmware file again",
         "If it happens again, contact Victron support: the GX storage may be failing"];
    710 VRM_READ_ONLY "Remote control not allowed"
        "The GX device's VRM Portal setting is Read-only (or Off): VRM may show data but not change settings, run commands or start updates. Nothing was changed."
        ["On the GX device, open Settings > VRM Online Portal > VRM Portal and select Full",
         "Start the update again from the VRM Portal"];
    711 SETTING_NOT_WRITABLE "Setting cannot be changed remotely"
        "VRM asked the GX device to change a value that can only be changed on the GX device itself. Nothing was changed."
        ["Change the setting in the GX device's own menu"];
    712 COMMAND_INVALID "Remote command invalid"
        "The GX device received a command it could not read: malformed, too large, of an unknown kind, or repeating an id already in use. Nothing was changed."
        ["Reload the VRM Portal page and try again",
         "If it fails again, contact Victron support: the portal and the GX device disagree on the command format"];
    713 BATTERY_NOT_FOUND "Battery not found"
        "The battery named in the request is not in the GX device's device list."
        ["Check that the battery is powered and its BMS-Can cable connected",
         "Reload the device list and try again"];
    714 UPDATE_NOT_FOUND "Update not found"
        "The request refers to an update the GX device does not know, that belongs to another request, or whose upload has already ended."
        ["Reload the VRM Portal page to see the current state of the update",
         "Start the update again if it is needed"];
    715 ACKNOWLEDGEMENT_MISSING "Warnings not confirmed"
        "The update was requested without confirming every warning: the site is physically reachable, the system has adequate backup capacity, and this is a planned maintenance window."
        ["Read the warnings, confirm each one, and press Update again"];
    716 UPDATE_ALREADY_RUNNING "Update already running"
        "An update of this battery is already in progress."
        ["Wait until the running update completes or fails, following its progress in the device list"];
    717 GX_OFFLINE "GX device offline"
        "The VRM Portal has not heard from the GX device for longer than allowed, or the GX device's connection was lost. No update starts toward a GX device that is offline; nothing was sent to it."
        ["Check the GX device's internet connection: on the GX device, Settings > VRM Portal shows the Last contact",
         "Wait until the VRM Portal shows the GX device online again, then start the update"];
    718 UPLOAD_TIMED_OUT "Upload not finished in time"
        "The firmware file did not reach the GX device completely within the time allowed for an upload (the portal stopped sending, lost its connection or restarted). The update was stopped before anything was sent to the battery, and the CAN bus is free again. The parts already received stay on the GX device for a while."
        ["Check the internet connection of the GX device",
         "Start the update again; the upload continues from the parts already on the GX device"];
    719 UPDATE_CANCELLED "Update cancelled"
        "The update was cancelled from the VRM Portal before the transfer to the battery began; the battery was not touched and keeps its firmware. The CAN bus is free again."
        ["Start the update again when it is needed"];
    720 GATE_VRM_ACCESS "Remote updates not allowed"
        "The GX device's VRM Portal access setting is not Full; remote firmware updates need Full access."
        ["On the GX device, open Settings > VRM Online Portal > VRM Portal and select Full",
         "If the message says unknown, the GX device could not read the setting from Venus OS: check that Settings > Services > MQTT is enabled",
         "Start the update again"];
    721 GATE_GX_FIRMWARE "GX device firmware too old"
        "The GX device runs a firmware version older than the minimum that supports remote battery updates."
        ["Update the GX device firmware",
         "If the message says unknown, the GX device could not read its firmware version from Venus OS: check that Settings > Services > MQTT is enabled",
         "Start the update again"];
    722 GATE_BUS_BITRATE "BMS-Can not at 500 kbit/s"
        "The CAN bus the battery is on does not run at 500 kbit/s, the only BMS-Can speed remote updates support."
        ["Connect the battery to a VE.Can/BMS-Can port configured for 500 kbit/s",
         "Check the CAN bus settings of the GX device"];
    723 GATE_STATE_OF_CHARGE "Battery state of charge too low"
        "The battery's state of charge is below the minimum for a firmware update (at least 50 %)."
        ["Charge the battery above the minimum shown in the message",
         "Start the update again"];
    724 GATE_NOT_COMMUNICATING "Battery not communicating"
        "The battery stopped sending its BMS-Can status frames (or never sent them): it may be off, disconnected or restarting for longer than allowed."
        ["Check that the battery is powered and its BMS-Can cable and terminators are in place",
         "Start the update again once the battery shows in the device list with live values"];
    725 GATE_BUS_ERROR_STATE "CAN bus errors"
        "The GX device's CAN controller is error-passive or bus-off: the bus is not healthy enough for a firmware transfer."
        ["Check the BMS-Can cabling, terminators and bit rate",
         "Restart the GX device if the bus does not recover, then start the update again"];
    726 GATE_ACTIVE_ALARM "Battery alarm active"
        "The battery reports an active alarm or protection; no firmware update runs while one is present."
        ["Resolve the alarm named in the message",
         "Start the update again once the battery reports no alarm"];
    727 GATE_TEMPERATURE "Battery temperature out of range"
        "The battery's temperature is outside the normal operating range configured for updates."
        ["Wait until the battery temperature is within the range shown in the message",
         "Start the update again"];
    728 GATE_BACKUP_POWER "Backup power event"
        "The site runs on its batteries because the grid is lost; no firmware update runs during a backup-power event."
        ["Wait until the grid is back",
         "If the message says unknown, the GX device could not read the grid's state from Venus OS: check that Settings > Services > MQTT is enabled and the inverter/charger is connected",
         "Start the update again during a planned maintenance window"];
    729 GATE_BUS_BUSY "Another update on this bus"
        "Another firmware update is running on the same CAN bus; one update runs per bus at a time."
        ["Wait until the other update has ended",
         "Start the update again"];
    730 GATE_ACKNOWLEDGEMENT_MISSING "Confirmation missing"
        "The installer did not confirm every precaution of the manual (site reachable, backup capacity, maintenance window)."
        ["Read the warnings shown with the Update button and confirm each of them",
         "Start the update again"];
    731 GATE_VERSION_NOT_NEWER "Not a newer firmware"
        "The firmware file holds the version the battery already runs, or an older one; a reinstall or downgrade needs the installer's explicit choice."
        ["Check the battery manufacturer's change log: newer is not always better",
         "To reinstall or downgrade on purpose, select that option and start the update again"];
    732 GATE_TARGET_NOT_APPROVED "Firmware version not approved"
        "The firmware file's version is outside the range of versions approved for this battery's update plugin."
        ["Check that the file is the one the battery manufacturer released for remote updates",
         "Contact the battery manufacturer or Victron support"];
    733 GATE_INSTALLED_NOT_APPROVED "Installed firmware not approved for remote update"
        "The firmware the battery runs now is outside the range approved for remote updates with this plugin."
        ["Update the battery locally as its manufacturer describes",
         "Contact the battery manufacturer"];
    740 GX_RESTARTED "GX device restarted during the update"
        "The GX device restarted while the update was in a step that cannot be resumed."
        ["Check the battery's firmware version and status in the device list",
         "Retry the update: the firmware file is still on the GX device",
         "Contact the battery manufacturer if the battery does not communicate"];
    741 PLUGIN_CAN_ID_VIOLATION "Update stopped: unexpected CAN traffic"
        "The battery update plugin tried to send on a CAN identifier it did not declare; the update was stopped."
        ["Contact the battery manufacturer: their update plugin broke the rules it was approved under",
         "Report the diagnostic data to Victron support"];
    742 BUS_BUDGET_EXCEEDED "Update stopped: CAN bus overloaded"
        "The update could not keep the BMS-Can bus load within its limit."
        ["Check for other devices or traffic on the BMS-Can bus",
         "Retry the update"];
    743 WATCHDOG_EXPIRED "Update stopped: no progress"
        "The update made no progress within the time the battery's plugin allows."
        ["Check that the battery is powered and communicating",
         "Retry the update; contact the battery manufacturer if it fails again"];
    744 RESTART_SILENCE_EXCEEDED "Battery silent too long after restart"
        "The battery did not resume its BMS-Can status frames within the restart time its plugin declares."
        ["Check that the battery is powered and communicating",
         "Check its firmware version in the device list; retry the update",
         "Contact the battery manufacturer for support or RMA if it does not recover"];
    745 VERSION_NOT_CONFIRMED "New firmware version not confirmed"
        "After the update the battery's BMS-Can frames do not report the firmware version of the file; the battery may have kept or returned to its previous firmware."
        ["Check the firmware version in the device list",
         "Retry the update; contact the battery manufacturer if the version stays the same"];
    746 CAN_INTERFACE_FAILED "GX CAN interface failed"
        "The GX device's CAN interface failed or closed during the update."
        ["Check the CAN interface of the GX device and its cabling",
         "Restart the GX device and retry the update"];
    747 PLUGIN_HOST_FAILED "Battery update plugin stopped"
        "The battery manufacturer's update plugin crashed, hung past its deadline, ran out of a resource limit or broke the sandbox's rules; the GX device stopped it and sent nothing more on its behalf. The battery keeps the firmware its own update rules leave it with."
        ["Check the battery's firmware version and status in the device list",
         "Retry the update once; the GX device starts the plugin afresh",
         "If it fails again, send the diagnostic data to the battery manufacturer"];
    748 BATTERY_NOT_SUPPORTED "Battery not supported"
        "No approved update plugin on the GX device supports remote updates of this battery (model or installed firmware)."
        ["Check the list of supported batteries and the manufacturer's instructions",
         "Update the battery locally as its manufacturer describes"];
    749 PLUGIN_QUARANTINED "Battery update plugin suspended"
        "The battery manufacturer's update plugin failed several times in a row, so the GX device suspended it: no update with it starts until the GX device restarts or the plugin is approved again."
        ["Send the diagnostic data to the battery manufacturer and ask for a fixed plugin",
         "Restart the GX device to try the plugin again"];
    750 TIMEOUT "Battery did not answer"
        "The battery's BMS did not answer in time during the transfer."
        ["Check the BMS-Can cabling and termination",
         "Retry the update; contact the battery manufacturer if it fails again"];
    751 PROTOCOL_ERROR "Unexpected answer from battery"
        "The battery's BMS sent an unexpected or malformed answer."
        ["Retry the update",
         "Contact the battery manufacturer if the problem persists"];
    752 REJECTED_BY_BMS "Battery refused the update"
        "The battery's BMS refused a step of the update."
        ["Check the battery's state (alarms, state of charge)",
         "Contact the battery manufacturer if the problem persists"];
    753 ABORTED "Update aborted"
        "The update was aborted on request or because a safety condition stopped being met."
        ["Read the event log for the reason",
         "Retry the update once the condition is resolved"];
    754 PLUGIN_FAULT "Battery update plugin failed"
        "The battery manufacturer's update plugin crashed or broke its contract."
        ["Contact the battery manufacturer with the diagnostic data"];
    755 TRANSFER_FAILED "Transfer to battery failed"
        "The firmware transfer to the battery failed."
        ["Retry the update",
         "Contact the battery manufacturer if the problem persists"];
    760 PACKAGE_INVALID "Firmware file invalid"
        "The firmware file is not a valid package for this battery's update plugin."
        ["Obtain a new copy of the firmware file from the manufacturer"];
    761 PACKAGE_WRONG_PRODUCT "Firmware file for another product"
        "The firmware file is meant for another battery model."
        ["Check that the file matches the battery model shown in the device list",
         "Obtain the right file from the battery manufacturer"];
    762 SIGNATURE_INVALID "Firmware signature invalid"
        "The firmware file's signature is missing or does not verify."
        ["Obtain a new copy of the firmware file from the manufacturer"];
    780 VERIFICATION_FAILED "Verification failed"
        "Firmware package signature or checksum verification failed."
        ["If using uploaded firmware file, obtain a new copy from the manufacturer",
         "Contact battery manufacturer if problem persists"];
    781 INSTALL_FAILED "Installation failed"
        "The battery's BMS could not apply the firmware; it keeps its previous firmware."
        ["Retry the update",
         "Contact the battery manufacturer if the problem persists"];
    782 RESTART_FAILED "Battery did not restart"
        "The battery did not come back after restarting with the new firmware."
        ["Check that the battery is powered and its BMS-Can cable connected",
         "Contact the battery manufacturer for support or RMA if it does not recover"];
    783 VERSION_MISMATCH "Unexpected firmware version"
        "After the restart the battery reports another firmware version than the one in the file."
        ["Check the firmware version in the device list (hexadecimal encodings may differ)",
         "Contact the battery manufacturer if the version is wrong"];
    784 MODULE_UPDATE_FAILED "Battery module update failed"
        "A battery module behind the BMS failed to update; the message names it and the state of every other module."
        ["Check which module failed in the update's module list (portal or event log)",
         "Retry the update; packs that update module by module usually skip the modules already updated",
         "Contact the battery manufacturer if the same module fails again"];
    800 COMMAND_UNSIGNED "Update command not signed"
        "The GX device received an update command without the portal's signature and refused it before doing anything. Only the VRM Portal's signed commands can start or cancel an update."
        ["Start the update from the VRM Portal, not from another tool",
         "If the portal sent it, check that the portal has its signing key (see the security guide)"];
    801 COMMAND_SIGNATURE_INVALID "Update command signature invalid"
        "The update command's signature does not verify: it was signed with a key this GX device does not trust, signed for another GX device, or altered on its way. Nothing was started."
        ["Check that gx.toml lists the portal's current public key under [command_signing] portal_keys",
         "If it does, the command was altered on its way: report it to the site's network administrator"];
    802 COMMAND_KEY_REVOKED "Portal key revoked"
        "The update command is signed with a portal key this GX device has revoked. Nothing was started."
        ["Make the portal sign with its current key",
         "Check gx.toml [command_signing] portal_keys and revoked_keys"];
    803 COMMAND_STALE "Update command expired"
        "The update command was signed too long ago, or in the future, by the GX device's clock. Nothing was started."
        ["Check the clocks of the GX device and of the portal (both should use network time)",
         "Start the update again"];
    804 COMMAND_REPLAYED "Update command replayed"
        "The update command repeats the one-time value (nonce) of a command the GX device already accepted: it is a copy. Nothing was started."
        ["Start the update again from the VRM Portal",
         "If this repeats without anyone starting updates, report it to the site's network administrator"];
    805 COMMAND_KEYS_NOT_CONFIGURED "No portal key configured"
        "The GX device trusts no portal key, so it refuses every remote update."
        ["Add the portal's public key to gx.toml under [command_signing] portal_keys and restart the daemon"];
}

/// The catalogue entry of `code`: a fixed entry, or [`VENDOR_SPECIFIC_INFO`] for 900 to 999.
pub fn lookup(code: u32) -> Option<&'static ErrorInfo> {
    if VENDOR_SPECIFIC.contains(&code) {
        return Some(&VENDOR_SPECIFIC_INFO);
    }
    CATALOGUE
        .binary_search_by_key(&code, |info| info.code)
        .ok()
        .map(|i| &CATALOGUE[i])
}

/// What the portal offers after a failure with a code: a retry only where one can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Remedy {
    /// The same file again, once the cause is resolved (a gate, the link, the bus, the
    /// battery's answer).
    Retry,
    /// The file itself is wrong for this battery (damaged, another product, unsigned,
    /// not approved): another file, never the same one again.
    ChooseAnotherFile,
    /// Nothing the installer can do from the portal: the battery or the plugin needs its
    /// manufacturer.
    ContactManufacturer,
}

impl Remedy {
    /// Its machine name: `retry`, `choose_file`, `contact_manufacturer`.
    pub const fn name(self) -> &'static str {
        match self {
            Remedy::Retry => "retry",
            Remedy::ChooseAnotherFile => "choose_file",
            Remedy::ContactManufacturer => "contact_manufacturer",
        }
    }

    /// What the portal offers, in its words.
    pub const fn offer(self) -> &'static str {
        match self {
            Remedy::Retry => "Retry",
            Remedy::ChooseAnotherFile => "Choose another file",
            Remedy::ContactManufacturer => "Contact the battery manufacturer",
        }
    }
}

/// What the portal offers after a failure with `code`.
pub fn remedy(code: u32) -> Remedy {
    match code {
        codes::PACKAGE_TOO_LARGE
        | codes::NO_MATCHING_PLUGIN
        | codes::GATE_TARGET_NOT_APPROVED
        | codes::PACKAGE_INVALID
        | codes::PACKAGE_WRONG_PRODUCT
        | codes::SIGNATURE_INVALID
        | codes::VERIFICATION_FAILED => Remedy::ChooseAnotherFile,
        codes::GATE_INSTALLED_NOT_APPROVED
        | codes::PLUGIN_CAN_ID_VIOLATION
        | codes::BATTERY_NOT_SUPPORTED
        | codes::PLUGIN_QUARANTINED
        | codes::PLUGIN_FAULT => Remedy::ContactManufacturer,
        _ => Remedy::Retry,
    }
}

/// The stable name of `code`, or `"UNKNOWN"` for a number outside the catalogue.
pub fn name_of(code: u32) -> &'static str {
    lookup(code).map_or("UNKNOWN", |info| info.name)
}

/// The installer-facing error page (`docs/errors.md`), generated from the catalogue.
pub fn render_markdown() -> String {
    let mut out = String::new();
    out.push_str("# Update error codes\n\n");
    out.push_str(
        "Every failed battery firmware update ends with one of these codes. The VRM Portal \
         shows the code and the message; the event log keeps both. This page is generated \
         from the engine's catalogue (`core/src/errors.rs`); a test fails when they differ.\n\n",
    );
    out.push_str("| range | reported by |\n|---|---|\n");
    out.push_str("| 700-719 | the GX device: upload and storage of the firmware file |\n");
    out.push_str("| 720-739 | the GX device: safety checks before and during the update |\n");
    out.push_str("| 740-749 | the GX device: the update itself |\n");
    out.push_str("| 750-799 | the battery's update plugin, with the meanings below |\n");
    out.push_str("| 800-819 | the GX device: authenticity of the portal's commands |\n");
    out.push_str(
        "| 900-999 | the battery's update plugin, meaning defined by the manufacturer |\n\n",
    );
    for info in CATALOGUE
        .iter()
        .chain(std::iter::once(&VENDOR_SPECIFIC_INFO))
    {
        if info.code == VENDOR_SPECIFIC_INFO.code {
            out.push_str(&format!("## 900-999 {}\n\n", info.title));
        } else {
            out.push_str(&format!("## {} {}\n\n", info.code, info.title));
        }
        out.push_str(&format!(
            "Name: `{}`\n\n{}\n\nResolution:\n\n",
            info.name, info.meaning
        ));
        for step in info.resolution {
            out.push_str(&format!("- {step}\n"));
        }
        out.push_str(&format!(
            "\nThe portal offers: {}.\n",
            remedy(info.code).offer()
        ));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::path::Path;

    #[test]
    fn codes_ascend_and_are_unique() {
        for pair in CATALOGUE.windows(2) {
            assert!(
                pair[0].code < pair[1].code,
                "{} must come before {}",
                pair[0].code,
                pair[1].code
            );
        }
        let names: HashSet<_> = CATALOGUE.iter().map(|i| i.name).collect();
        assert_eq!(names.len(), CATALOGUE.len(), "names must be unique");
        assert!(!names.contains(VENDOR_SPECIFIC_INFO.name));
    }

    #[test]
    fn every_code_sits_in_its_agreed_range() {
        for info in CATALOGUE {
            assert!(
                (700..=749).contains(&info.code)
                    || (750..=799).contains(&info.code)
                    || (800..=819).contains(&info.code),
                "{} {} is outside the engine and plugin ranges",
                info.code,
                info.name
            );
            assert!(!info.title.is_empty() && !info.meaning.is_empty());
            assert!(!info.resolution.is_empty());
        }
    }

    #[test]
    fn plugin_codes_keep_their_agreed_numbers() {
        let agreed = [
            (750, "TIMEOUT"),
            (751, "PROTOCOL_ERROR"),
            (752, "REJECTED_BY_BMS"),
            (753, "ABORTED"),
            (754, "PLUGIN_FAULT"),
            (755, "TRANSFER_FAILED"),
            (760, "PACKAGE_INVALID"),
            (761, "PACKAGE_WRONG_PRODUCT"),
            (762, "SIGNATURE_INVALID"),
            (780, "VERIFICATION_FAILED"),
            (781, "INSTALL_FAILED"),
            (782, "RESTART_FAILED"),
            (783, "VERSION_MISMATCH"),
            (784, "MODULE_UPDATE_FAILED"),
            (740, "GX_RESTARTED"),
        ];
        for (code, name) in agreed {
            assert_eq!(name_of(code), name, "code {code}");
        }
    }

    #[test]
    fn verification_failed_carries_the_manuals_text() {
        let info = lookup(codes::VERIFICATION_FAILED).unwrap();
        assert_eq!(info.code, 780);
        assert_eq!(info.title, "Verification failed");
        assert_eq!(
            info.meaning,
            "Firmware package signature or checksum verification failed."
        );
        assert_eq!(
            info.resolution,
            &[
                "If using uploaded firmware file, obtain a new copy from the manufacturer",
                "Contact battery manufacturer if problem persists",
            ]
        );
    }

    #[test]
    fn a_retry_is_offered_only_where_it_can_succeed() {
        for code in [760, 761, 762, 780, 707, 701, 732] {
            assert_eq!(remedy(code), Remedy::ChooseAnotherFile, "{code}");
        }
        for code in [723, 750, 755, 740, 705, 717] {
            assert_eq!(remedy(code), Remedy::Retry, "{code}");
        }
        assert_eq!(remedy(748), Remedy::ContactManufacturer);
        assert_eq!(Remedy::ChooseAnotherFile.name(), "choose_file");
    }

    #[test]
    fn lookup_covers_vendor_range_and_rejects_unknown() {
        assert_eq!(lookup(900).unwrap().name, "VENDOR_SPECIFIC");
        assert_eq!(lookup(999).unwrap().name, "VENDOR_SPECIFIC");
        assert_eq!(lookup(1000), None);
        assert_eq!(lookup(0), None);
        assert_eq!(name_of(12345), "UNKNOWN");
        for info in CATALOGUE {
            assert_eq!(lookup(info.code), Some(info));
        }
    }

    /// `docs/errors.md` must be exactly what the catalogue renders. Regenerate it with
    /// `BMSFW_BLESS=1 cargo test -p bmsfw-core errors::`.
    #[test]
    fn installer_docs_match_the_catalogue() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/errors.md");
        let rendered = render_markdown();
        if std::env::var_os("BMSFW_BLESS").is_some() {
            std::fs::write(&path, &rendered).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == rendered,
            "docs/errors.md differs from core/src/errors.rs; regenerate it with \
             `BMSFW_BLESS=1 cargo test -p bmsfw-core errors::`"
        );
        for info in CATALOGUE {
            assert!(on_disk.contains(&format!("## {} {}", info.code, info.title)));
        }
    }
}
