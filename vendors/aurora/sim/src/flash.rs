//! The BMS's firmware flash: two slots and the boot record that says which one runs.
//!
//! The active slot always holds a complete package that passed the check; a download
//! only ever writes the inactive slot. Activation is one write of the boot record, so a
//! power cut leaves either the old record (old firmware) or the new one (the new,
//! verified firmware), never a partial image. A newly activated slot runs on trial:
//! when it does not start, the bootloader goes back to the other slot.

use crate::package::{Header, VerifyError, verify};
use crate::protocol::{BOOT_ACTIVATION_PENDING, BOOT_ROLLED_BACK, BOOT_RUNNING, SLOT_SIZE};
use std::fmt;

/// One of the two slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SlotId {
    /// Slot A, number 0 on the wire.
    A,
    /// Slot B, number 1 on the wire.
    B,
}

impl SlotId {
    /// The other slot.
    pub fn other(self) -> SlotId {
        match self {
            SlotId::A => SlotId::B,
            SlotId::B => SlotId::A,
        }
    }

    /// The slot's number in the boot-state identifier.
    pub fn number(self) -> u8 {
        match self {
            SlotId::A => 0,
            SlotId::B => 1,
        }
    }

    fn index(self) -> usize {
        usize::from(self.number())
    }
}

/// What the boot record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BootState {
    /// The active slot runs.
    Running,
    /// The inactive slot holds a verified package that boots at the next reset.
    ActivationPending,
    /// The last activated package did not start; the previous one runs again. Stays until
    /// the next download erases the inactive slot.
    RolledBack,
}

impl BootState {
    /// The state's byte in the boot-state identifier.
    pub fn byte(self) -> u8 {
        match self {
            BootState::Running => BOOT_RUNNING,
            BootState::ActivationPending => BOOT_ACTIVATION_PENDING,
            BootState::RolledBack => BOOT_ROLLED_BACK,
        }
    }
}

/// Whether a package on trial starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrialBoot {
    /// It starts and confirms itself.
    Starts,
    /// It crashes before confirming itself (a fault injected by a test).
    Fails,
}

/// What a boot ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootOutcome {
    /// Nothing was pending: the active slot runs again.
    Unchanged,
    /// The pending slot started and is now the active one.
    Activated,
    /// The pending slot did not start; the other slot runs again.
    RolledBack,
}

/// A slot's contents.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Slot {
    data: Vec<u8>,
    verified: Option<Header>,
}

impl Slot {
    /// The bytes written since the slot was last erased.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The header of the package the slot holds, once it passed the check.
    pub fn verified(&self) -> Option<&Header> {
        self.verified.as_ref()
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("len", &self.data.len())
            .field("verified", &self.verified.map(|h| h.version))
            .finish()
    }
}

/// Why a write was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Writes must follow each other without gaps or overlaps.
    #[error("write at {offset}, but the slot holds {len} bytes")]
    NotSequential {
        /// Where the write was asked for.
        offset: u64,
        /// What the slot holds.
        len: u64,
    },
    /// The write would pass the end of the slot.
    #[error("write past the end of the {SLOT_SIZE}-byte slot")]
    PastEnd,
}

/// The two slots and the boot record.
#[derive(Clone, Debug)]
pub struct Flash {
    slots: [Slot; 2],
    active: SlotId,
    running: Header,
    pending: Option<SlotId>,
    state: BootState,
}

impl Flash {
    /// A flash whose slot A holds `package`, running; slot B empty.
    pub fn new(package: &[u8]) -> Result<Flash, VerifyError> {
        let header = verify(package)?;
        Ok(Flash {
            slots: [
                Slot {
                    data: package.to_vec(),
                    verified: Some(header),
                },
                Slot::default(),
            ],
            active: SlotId::A,
            running: header,
            pending: None,
            state: BootState::Running,
        })
    }

    /// The slot that runs.
    pub fn active(&self) -> SlotId {
        self.active
    }

    /// The slot downloads write.
    pub fn inactive(&self) -> SlotId {
        self.active.other()
    }

    /// The header of the package that runs.
    pub fn running(&self) -> &Header {
        &self.running
    }

    /// What the boot record says.
    pub fn boot_state(&self) -> BootState {
        self.state
    }

    /// A slot.
    pub fn slot(&self, id: SlotId) -> &Slot {
        &self.slots[id.index()]
    }

    fn inactive_mut(&mut self) -> &mut Slot {
        let i = self.inactive().index();
        &mut self.slots[i]
    }

    /// Erases the inactive slot; an activation not booted yet is cancelled first.
    pub fn erase_inactive(&mut self) {
        self.pending = None;
        self.state = BootState::Running;
        let slot = self.inactive_mut();
        slot.data = Vec::new();
        slot.verified = None;
    }

    /// Appends `data` to the inactive slot at `offset`.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), WriteError> {
        let slot = self.inactive_mut();
        let len = slot.data.len() as u64;
        if offset != len {
            return Err(WriteError::NotSequential { offset, len });
        }
        if len + data.len() as u64 > SLOT_SIZE {
            return Err(WriteError::PastEnd);
        }
        slot.verified = None;
        slot.data.extend_from_slice(data);
        Ok(())
    }

    /// Flips the lowest bit of the inactive slot's byte at `offset` (a cell that did not
    /// take its value), if it was written.
    pub fn flip_bit(&mut self, offset: u64) {
        let slot = self.inactive_mut();
        if let Some(b) = usize::try_from(offset)
            .ok()
            .and_then(|o| slot.data.get_mut(o))
        {
            *b ^= 0x01;
        }
    }

    /// Checks the package in the inactive slot.
    pub fn check_inactive(&self) -> Result<Header, VerifyError> {
        verify(&self.slot(self.inactive()).data)
    }

    /// Marks the inactive slot's package, checked as `header`, to boot at the next
    /// reset: the boot record's one write.
    pub fn activate(&mut self, header: Header) {
        self.inactive_mut().verified = Some(header);
        self.pending = Some(self.inactive());
        self.state = BootState::ActivationPending;
    }

    /// Boots: a pending slot is checked again and tried; it becomes the active slot when
    /// it starts, and is marked bad when it does not.
    pub fn boot(&mut self, trial: TrialBoot) -> BootOutcome {
        let Some(pending) = self.pending.take() else {
            return BootOutcome::Unchanged;
        };
        let slot = &self.slots[pending.index()];
        match (verify(&slot.data), trial) {
            (Ok(header), TrialBoot::Starts) if slot.verified == Some(header) => {
                self.active = pending;
                self.running = header;
                self.state = BootState::Running;
                BootOutcome::Activated
            }
            _ => {
                self.slots[pending.index()].verified = None;
                self.state = BootState::RolledBack;
                BootOutcome::RolledBack
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::{PackageSpec, build};

    fn package(version: [u8; 2]) -> Vec<u8> {
        build(&PackageSpec::new(
            0xA520,
            version,
            3000,
            u64::from(version[1]),
        ))
    }

    fn flash_with_new(new: &[u8]) -> Flash {
        let mut f = Flash::new(&package([4, 15])).unwrap();
        f.erase_inactive();
        for (i, chunk) in new.chunks(1000).enumerate() {
            f.write(i as u64 * 1000, chunk).unwrap();
        }
        f
    }

    #[test]
    fn a_checked_and_activated_package_runs_after_the_boot() {
        let new = package([4, 16]);
        let mut f = flash_with_new(&new);
        assert_eq!(f.running().version, [4, 15]);
        let h = f.check_inactive().unwrap();
        f.activate(h);
        assert_eq!(f.boot_state(), BootState::ActivationPending);
        assert_eq!(
            f.running().version,
            [4, 15],
            "nothing changes before the reset"
        );
        assert_eq!(f.boot(TrialBoot::Starts), BootOutcome::Activated);
        assert_eq!(f.active(), SlotId::B);
        assert_eq!(f.running().version, [4, 16]);
        assert_eq!(f.slot(SlotId::B).data(), &new[..]);
        assert_eq!(f.boot(TrialBoot::Starts), BootOutcome::Unchanged);
    }

    #[test]
    fn a_package_that_does_not_start_is_rolled_back() {
        let mut f = flash_with_new(&package([4, 16]));
        let h = f.check_inactive().unwrap();
        f.activate(h);
        assert_eq!(f.boot(TrialBoot::Fails), BootOutcome::RolledBack);
        assert_eq!(f.active(), SlotId::A);
        assert_eq!(f.running().version, [4, 15]);
        assert_eq!(f.boot_state(), BootState::RolledBack);
        assert_eq!(f.slot(SlotId::B).verified(), None);
        // The next download clears the state.
        f.erase_inactive();
        assert_eq!(f.boot_state(), BootState::Running);
    }

    #[test]
    fn an_erase_cancels_an_activation_and_writes_stay_in_order() {
        let mut f = flash_with_new(&package([4, 16]));
        let h = f.check_inactive().unwrap();
        f.activate(h);
        f.erase_inactive();
        assert_eq!(f.boot(TrialBoot::Starts), BootOutcome::Unchanged);
        assert_eq!(f.running().version, [4, 15]);
        assert_eq!(
            f.write(5, &[1]),
            Err(WriteError::NotSequential { offset: 5, len: 0 })
        );
        f.write(0, &[1, 2]).unwrap();
        assert!(
            f.check_inactive().is_err(),
            "a partial package never verifies"
        );
    }

    #[test]
    fn a_flipped_cell_is_caught_by_the_check_and_again_at_boot() {
        let mut f = flash_with_new(&package([4, 16]));
        f.flip_bit(2000);
        assert!(matches!(f.check_inactive(), Err(VerifyError::Crc { .. })));
        // A slot that changes after its check (a cell decaying) is caught at boot.
        let mut f = flash_with_new(&package([4, 16]));
        let h = f.check_inactive().unwrap();
        f.activate(h);
        f.flip_bit(100);
        assert_eq!(f.boot(TrialBoot::Starts), BootOutcome::RolledBack);
        assert_eq!(f.running().version, [4, 15]);
    }
}
