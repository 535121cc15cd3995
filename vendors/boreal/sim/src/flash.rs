//! A node's firmware flash: two slots and the boot record that says which one runs.
//!
//! The active slot always holds a complete image that passed the check; a download only
//! ever writes the inactive slot. Activation is one write of the boot record, so a power
//! cut leaves either the old record (old firmware) or the new one (the new, checked
//! firmware), never a partial image. A newly activated slot runs on trial: when it does
//! not start, the bootloader goes back to the other slot.

use crate::package::{ImageHeader, check_image};
use crate::protocol::{BOOT_ACTIVATION_PENDING, BOOT_ROLLED_BACK, BOOT_RUNNING, SLOT_SIZE};
use bmsfw_protocols::checksum::crc32;
use std::fmt;

/// One of the two slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SlotId {
    /// Slot A.
    A,
    /// Slot B.
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

    fn index(self) -> usize {
        match self {
            SlotId::A => 0,
            SlotId::B => 1,
        }
    }
}

/// What the boot record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BootState {
    /// The active slot runs.
    Running,
    /// The inactive slot holds a checked image that boots at the next restart.
    ActivationPending,
    /// The last activated image did not start; the previous one runs again (until the
    /// next clear).
    RolledBack,
}

impl BootState {
    /// The value of 0x2F10:03.
    pub fn byte(self) -> u8 {
        match self {
            BootState::Running => BOOT_RUNNING,
            BootState::ActivationPending => BOOT_ACTIVATION_PENDING,
            BootState::RolledBack => BOOT_ROLLED_BACK,
        }
    }
}

/// Whether an image on trial starts.
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
    checked: Option<ImageHeader>,
}

impl Slot {
    /// The bytes written since the slot was last cleared.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The descriptor of the image the slot holds, once it passed the check.
    pub fn checked(&self) -> Option<&ImageHeader> {
        self.checked.as_ref()
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("len", &self.data.len())
            .field("checked", &self.checked.map(|h| h.version))
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

/// The two slots and the boot record of one node.
#[derive(Clone, Debug)]
pub struct Flash {
    slots: [Slot; 2],
    active: SlotId,
    running: ImageHeader,
    pending: Option<SlotId>,
    state: BootState,
    product: u16,
    bootloader: [u8; 2],
}

impl Flash {
    /// A flash whose slot A holds `image` (checked for `product` and `bootloader`),
    /// running; slot B empty.
    pub fn new(image: &[u8], product: u16, bootloader: [u8; 2]) -> Result<Flash, u8> {
        let header = check_image(image, product, bootloader)?;
        Ok(Flash {
            slots: [
                Slot {
                    data: image.to_vec(),
                    checked: Some(header),
                },
                Slot::default(),
            ],
            active: SlotId::A,
            running: header,
            pending: None,
            state: BootState::Running,
            product,
            bootloader,
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

    /// The descriptor of the image that runs.
    pub fn running(&self) -> &ImageHeader {
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

    /// Clears the inactive slot; an activation not booted yet is cancelled first, and a
    /// rolled-back state is forgotten.
    pub fn clear_inactive(&mut self) {
        self.pending = None;
        self.state = BootState::Running;
        let slot = self.inactive_mut();
        slot.data = Vec::new();
        slot.checked = None;
    }

    /// Appends `data` to the inactive slot at `offset`.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), WriteError> {
        let slot = self.inactive_mut();
        let len = slot.data.len() as u64;
        if offset != len {
            return Err(WriteError::NotSequential { offset, len });
        }
        if len + data.len() as u64 > u64::from(SLOT_SIZE) {
            return Err(WriteError::PastEnd);
        }
        slot.checked = None;
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

    /// Checks the image in the inactive slot; the error is the flash status code.
    pub fn check_inactive(&self) -> Result<ImageHeader, u8> {
        check_image(
            &self.slot(self.inactive()).data,
            self.product,
            self.bootloader,
        )
    }

    /// The CRC-32 of the inactive slot's bytes (0x1F56).
    pub fn inactive_crc(&self) -> u32 {
        crc32(&self.slot(self.inactive()).data)
    }

    /// Marks the inactive slot's image, checked as `header`, to boot at the next
    /// restart: the boot record's one write.
    pub fn activate(&mut self, header: ImageHeader) {
        self.inactive_mut().checked = Some(header);
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
        let again = check_image(&slot.data, self.product, self.bootloader);
        match (again, trial) {
            (Ok(header), TrialBoot::Starts) if slot.checked == Some(header) => {
                self.active = pending;
                self.running = header;
                self.state = BootState::Running;
                BootOutcome::Activated
            }
            _ => {
                self.slots[pending.index()].checked = None;
                self.state = BootState::RolledBack;
                BootOutcome::RolledBack
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::{PackageSpec, image};

    const PRODUCT: u16 = 0xB210;
    const BOOT: [u8; 2] = [0x01, 0x30];

    fn img(version: [u8; 2]) -> Vec<u8> {
        image(&PackageSpec::new(
            PRODUCT,
            version,
            3_000,
            u64::from(version[1]),
        ))
    }

    fn flash_with_new(new: &[u8]) -> Flash {
        let mut f = Flash::new(&img([0x02, 0x10]), PRODUCT, BOOT).unwrap();
        f.clear_inactive();
        for (i, chunk) in new.chunks(889).enumerate() {
            f.write(i as u64 * 889, chunk).unwrap();
        }
        f
    }

    #[test]
    fn a_checked_and_activated_image_runs_after_the_boot() {
        let new = img([0x02, 0x15]);
        let mut f = flash_with_new(&new);
        let h = f.check_inactive().unwrap();
        assert_eq!(f.inactive_crc(), crc32(&new));
        f.activate(h);
        assert_eq!(f.boot_state(), BootState::ActivationPending);
        assert_eq!(
            f.running().version,
            [0x02, 0x10],
            "nothing changes before the boot"
        );
        assert_eq!(f.boot(TrialBoot::Starts), BootOutcome::Activated);
        assert_eq!(f.active(), SlotId::B);
        assert_eq!(f.running().version, [0x02, 0x15]);
        assert_eq!(f.boot(TrialBoot::Starts), BootOutcome::Unchanged);
    }

    #[test]
    fn an_image_that_does_not_start_or_decays_is_rolled_back() {
        let mut f = flash_with_new(&img([0x02, 0x15]));
        let h = f.check_inactive().unwrap();
        f.activate(h);
        assert_eq!(f.boot(TrialBoot::Fails), BootOutcome::RolledBack);
        assert_eq!(f.running().version, [0x02, 0x10]);
        assert_eq!(f.boot_state(), BootState::RolledBack);
        f.clear_inactive();
        assert_eq!(f.boot_state(), BootState::Running);
        // A cell that decays between the check and the boot.
        let mut f = flash_with_new(&img([0x02, 0x15]));
        let h = f.check_inactive().unwrap();
        f.activate(h);
        f.flip_bit(100);
        assert_eq!(f.boot(TrialBoot::Starts), BootOutcome::RolledBack);
        assert_eq!(f.active(), SlotId::A);
    }

    #[test]
    fn writes_stay_in_order_and_a_partial_image_never_checks() {
        let mut f = Flash::new(&img([0x02, 0x10]), PRODUCT, BOOT).unwrap();
        f.clear_inactive();
        assert_eq!(
            f.write(5, &[1]),
            Err(WriteError::NotSequential { offset: 5, len: 0 })
        );
        f.write(0, &img([0x02, 0x15])[..1_000]).unwrap();
        assert!(f.check_inactive().is_err());
        let mut f = flash_with_new(&img([0x02, 0x15]));
        f.flip_bit(2_000);
        assert_eq!(f.check_inactive(), Err(crate::protocol::flash_codes::CRC));
    }
}
