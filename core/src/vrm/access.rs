//! The GX setting `/Settings/Network/VrmPortal`: how much the VRM portal may do.

use serde::{Deserialize, Serialize};
use std::fmt;
use tokio::sync::watch;

/// The value of `/Settings/Network/VrmPortal` (0 off, 1 read-only, 2 full).
///
/// Only [`VrmPortalMode::Full`] lets VRM write settings, run remote commands and start
/// firmware updates; in read-only mode the GX still reports, and every write and command
/// from VRM gets an error reply. The setting is changed on the GX itself, never from VRM.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum VrmPortalMode {
    /// 0: no contact with VRM at all.
    Off,
    /// 1: VRM sees the data but may change nothing.
    #[default]
    ReadOnly,
    /// 2: VRM may change settings and start remote firmware updates.
    Full,
}

/// A number that is not a `/Settings/Network/VrmPortal` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("/Settings/Network/VrmPortal is 0 (off), 1 (read-only) or 2 (full), not {0}")]
pub struct InvalidVrmPortalMode(pub i64);

impl VrmPortalMode {
    /// The number the GX stores and publishes.
    pub const fn as_number(self) -> u8 {
        match self {
            VrmPortalMode::Off => 0,
            VrmPortalMode::ReadOnly => 1,
            VrmPortalMode::Full => 2,
        }
    }

    /// The mode stored as `n`.
    pub fn from_number(n: i64) -> Result<VrmPortalMode, InvalidVrmPortalMode> {
        match n {
            0 => Ok(VrmPortalMode::Off),
            1 => Ok(VrmPortalMode::ReadOnly),
            2 => Ok(VrmPortalMode::Full),
            other => Err(InvalidVrmPortalMode(other)),
        }
    }

    /// Whether VRM may write settings, run commands and start updates.
    pub const fn allows_remote_control(self) -> bool {
        matches!(self, VrmPortalMode::Full)
    }
}

impl fmt::Display for VrmPortalMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VrmPortalMode::Off => "off",
            VrmPortalMode::ReadOnly => "read-only",
            VrmPortalMode::Full => "full",
        })
    }
}

/// The live value of the setting, shared by the VRM link (which refuses writes and commands
/// outside Full) and the engine's gates (which refuse and stop updates outside Full).
///
/// Cloning gives another handle on the same value.
///
/// A live site source (Venus OS) may not know the value (never received, invalid or
/// stale): then [`VrmAccess::reading`] is unknown, so the gates refuse with "unknown",
/// and [`VrmAccess::get`] reads read-only, so the link keeps reporting but refuses every
/// write and command.
#[derive(Debug, Clone)]
pub struct VrmAccess {
    tx: watch::Sender<VrmPortalMode>,
    /// Why the value is not known, when it is not.
    unknown: watch::Sender<Option<String>>,
}

impl VrmAccess {
    /// The setting with its value at start-up.
    pub fn new(mode: VrmPortalMode) -> VrmAccess {
        VrmAccess {
            tx: watch::Sender::new(mode),
            unknown: watch::Sender::new(None),
        }
    }

    /// The setting, unknown until a live source sets it (`why` says what is awaited).
    pub fn unknown(why: impl Into<String>) -> VrmAccess {
        VrmAccess {
            tx: watch::Sender::new(VrmPortalMode::ReadOnly),
            unknown: watch::Sender::new(Some(why.into())),
        }
    }

    /// The value as the gates read it: unknown, with why, when the source does not know it.
    pub fn reading(&self) -> crate::gates::SiteValue<VrmPortalMode> {
        match &*self.unknown.borrow() {
            Some(why) => crate::gates::SiteValue::Unknown(why.clone()),
            None => crate::gates::SiteValue::Known(self.get()),
        }
    }

    /// The value is not known any more: the gates refuse, the link acts as read-only.
    pub fn set_unknown(&self, why: impl Into<String>) {
        let why = Some(why.into());
        // First unknown, then read-only: no reader ever sees a stale Full as known.
        self.unknown.send_if_modified(|v| {
            let changed = *v != why;
            *v = why;
            changed
        });
        self.set_mode(VrmPortalMode::ReadOnly);
    }

    /// The current value.
    pub fn get(&self) -> VrmPortalMode {
        *self.tx.borrow()
    }

    /// Changes the value (the GX's own menu); every subscriber sees the change.
    pub fn set(&self, mode: VrmPortalMode) {
        // First the mode, then known: no reader ever sees the old mode as known.
        self.set_mode(mode);
        self.unknown.send_if_modified(|v| v.take().is_some());
    }

    fn set_mode(&self, mode: VrmPortalMode) {
        self.tx.send_if_modified(|v| {
            let changed = *v != mode;
            *v = mode;
            changed
        });
    }

    /// A receiver that wakes on every change.
    pub fn subscribe(&self) -> watch::Receiver<VrmPortalMode> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_only_full_allows_control() {
        for mode in [
            VrmPortalMode::Off,
            VrmPortalMode::ReadOnly,
            VrmPortalMode::Full,
        ] {
            assert_eq!(
                VrmPortalMode::from_number(i64::from(mode.as_number())),
                Ok(mode)
            );
            assert_eq!(mode.allows_remote_control(), mode == VrmPortalMode::Full);
        }
        assert_eq!(VrmPortalMode::from_number(3), Err(InvalidVrmPortalMode(3)));
        assert_eq!(
            VrmPortalMode::from_number(-1),
            Err(InvalidVrmPortalMode(-1))
        );
    }

    #[test]
    fn every_handle_sees_a_change() {
        let access = VrmAccess::new(VrmPortalMode::Full);
        let other = access.clone();
        let mut rx = access.subscribe();
        other.set(VrmPortalMode::ReadOnly);
        assert_eq!(access.get(), VrmPortalMode::ReadOnly);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), VrmPortalMode::ReadOnly);
    }

    #[test]
    fn an_unknown_value_reads_read_only_to_the_link_and_unknown_to_the_gates() {
        let access = VrmAccess::unknown("not received from Venus OS");
        assert_eq!(access.get(), VrmPortalMode::ReadOnly);
        assert_eq!(
            access.reading(),
            crate::gates::SiteValue::Unknown("not received from Venus OS".into())
        );
        access.set(VrmPortalMode::Full);
        assert_eq!(
            access.reading(),
            crate::gates::SiteValue::Known(VrmPortalMode::Full)
        );
        access.set_unknown("stale");
        assert_eq!(access.get(), VrmPortalMode::ReadOnly);
        assert!(access.reading().known().is_none());
    }
}
