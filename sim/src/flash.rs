//! A BMS's dual-slot firmware flash: two slots and the boot record that says which one
//! runs, the way vendor bootloaders keep a power cut from bricking a battery.
//!
//! The active slot always holds a complete image that passed the check; a download only
//! ever writes the inactive slot. Activation is one write of the boot record, so a power
//! cut leaves either the old record (old firmware) or the new one (the new, checked
//! firmware), never a partial image. A newly activated slot runs on trial: when it does
//! not start, the bootloader goes back to the other slot.
//!
//! What differs from one vendor to the next is the check of an image (its header, its
//! checksums, the product it is for) and the size of a slot: a vendor model names its
//! check with [`ImageCheck`] and builds a [`DualSlotFlash`] with its slot size.
//!
//! ```
//! use bmsfw_sim::flash::{BootOutcome, DualSlotFlash, ImageCheck, SlotId, TrialBoot};
//!
//! /// Images are `[version, payload..., xor of the payload]`.
//! #[derive(Clone, Debug)]
//! struct Xor;
//! impl ImageCheck for Xor {
//!     type Header = u8;
//!     type Error = &'static str;
//!     fn check(&self, image: &[u8]) -> Result<u8, &'static str> {
//!         let [version, payload @ .., sum] = image else { return Err("short") };
//!         let xor = payload.iter().fold(0, |a, b| a ^ b);
//!         if xor == *sum { Ok(*version) } else { Err("checksum") }
//!     }
//! }
//!
//! let mut flash = DualSlotFlash::new(Xor, 1024, &[1, 7, 7, 0]).unwrap();
//! flash.erase_inactive();
//! flash.write(0, &[2, 5, 6]).unwrap();
//! assert_eq!(flash.check_inactive(), Err("checksum"), "a partial image never checks");
//! flash.write(3, &[3]).unwrap();
//! let header = flash.check_inactive().unwrap();
//! flash.activate(header);
//! assert_eq!(flash.boot(TrialBoot::Starts), BootOutcome::Activated);
//! assert_eq!((flash.active(), *flash.running()), (SlotId::B, 2));
//! ```

use std::fmt;

/// How a vendor's bootloader checks an image (a package, a slot's contents) before it
/// activates it, and again when it boots it.
pub trait ImageCheck: Clone + fmt::Debug {
    /// What the check reads from a valid image (its version, its product).
    type Header: Copy + Eq + fmt::Debug;
    /// Why an image was refused.
    type Error;
    /// Checks `image`; never panics, whatever the bytes.
    fn check(&self, image: &[u8]) -> Result<Self::Header, Self::Error>;
}

/// One of the two slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SlotId {
    /// Slot A, number 0.
    A,
    /// Slot B, number 1.
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

    /// The slot's number: 0 for A, 1 for B.
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
    /// The inactive slot holds a checked image that boots at the next restart.
    ActivationPending,
    /// The last activated image did not start; the previous one runs again. Stays until
    /// the next download erases the inactive slot.
    RolledBack,
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
#[derive(Clone, PartialEq, Eq)]
pub struct Slot<H> {
    data: Vec<u8>,
    checked: Option<H>,
}

impl<H> Default for Slot<H> {
    fn default() -> Slot<H> {
        Slot {
            data: Vec::new(),
            checked: None,
        }
    }
}

impl<H> Slot<H> {
    /// The bytes written since the slot was last erased.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The header of the image the slot holds, once it passed the check.
    pub fn checked(&self) -> Option<&H> {
        self.checked.as_ref()
    }
}

impl<H: fmt::Debug> fmt::Debug for Slot<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("len", &self.data.len())
            .field("checked", &self.checked)
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
    #[error("write past the end of the {slot_size}-byte slot")]
    PastEnd {
        /// The size of a slot.
        slot_size: u64,
    },
}

/// The two slots and the boot record, checking images with `C`.
#[derive(Clone, Debug)]
pub struct DualSlotFlash<C: ImageCheck> {
    check: C,
    slot_size: u64,
    slots: [Slot<C::Header>; 2],
    active: SlotId,
    running: C::Header,
    pending: Option<SlotId>,
    state: BootState,
}

impl<C: ImageCheck> DualSlotFlash<C> {
    /// A flash of two `slot_size`-byte slots whose slot A holds `image` (which must pass
    /// `check`), running; slot B empty.
    pub fn new(check: C, slot_size: u64, image: &[u8]) -> Result<DualSlotFlash<C>, C::Error> {
        let header = check.check(image)?;
        Ok(DualSlotFlash {
            check,
            slot_size,
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
        })
    }

    /// The check the bootloader runs.
    pub fn image_check(&self) -> &C {
        &self.check
    }

    /// The size of one slot, bytes.
    pub fn slot_size(&self) -> u64 {
        self.slot_size
    }

    /// The slot that runs.
    pub fn active(&self) -> SlotId {
        self.active
    }

    /// The slot downloads write.
    pub fn inactive(&self) -> SlotId {
        self.active.other()
    }

    /// The header of the image that runs.
    pub fn running(&self) -> &C::Header {
        &self.running
    }

    /// What the boot record says.
    pub fn boot_state(&self) -> BootState {
        self.state
    }

    /// A slot.
    pub fn slot(&self, id: SlotId) -> &Slot<C::Header> {
        &self.slots[id.index()]
    }

    /// The bytes of the inactive slot.
    pub fn inactive_data(&self) -> &[u8] {
        &self.slot(self.inactive()).data
    }

    fn inactive_mut(&mut self) -> &mut Slot<C::Header> {
        let i = self.inactive().index();
        &mut self.slots[i]
    }

    /// Erases the inactive slot; an activation not booted yet is cancelled first, and a
    /// rolled-back state is forgotten.
    pub fn erase_inactive(&mut self) {
        self.pending = None;
        self.state = BootState::Running;
        let slot = self.inactive_mut();
        slot.data = Vec::new();
        slot.checked = None;
    }

    /// Appends `data` to the inactive slot at `offset`.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), WriteError> {
        let slot_size = self.slot_size;
        let slot = self.inactive_mut();
        let len = slot.data.len() as u64;
        if offset != len {
            return Err(WriteError::NotSequential { offset, len });
        }
        if len.saturating_add(data.len() as u64) > slot_size {
            return Err(WriteError::PastEnd { slot_size });
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

    /// Checks the image in the inactive slot.
    pub fn check_inactive(&self) -> Result<C::Header, C::Error> {
        self.check.check(self.inactive_data())
    }

    /// Marks the inactive slot's image, checked as `header`, to boot at the next
    /// restart: the boot record's one write.
    pub fn activate(&mut self, header: C::Header) {
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
        match (self.check.check(&slot.data), trial) {
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
    use bmsfw_protocols::checksum::crc32;

    /// Images are `[major, minor, payload..., CRC-32 of the rest, little-endian]`.
    #[derive(Clone, Debug)]
    struct Crc;

    #[derive(Debug, PartialEq, Eq)]
    enum Refused {
        Short,
        Crc,
    }

    impl ImageCheck for Crc {
        type Header = [u8; 2];
        type Error = Refused;
        fn check(&self, image: &[u8]) -> Result<[u8; 2], Refused> {
            let split = image.len().checked_sub(4).filter(|&n| n >= 2);
            let (body, tail) = image.split_at(split.ok_or(Refused::Short)?);
            if tail != crc32(body).to_le_bytes() {
                return Err(Refused::Crc);
            }
            Ok([body[0], body[1]])
        }
    }

    fn image(version: [u8; 2], len: usize) -> Vec<u8> {
        let mut v = version.to_vec();
        v.extend((0..len).map(|i| (i * 7 + usize::from(version[1])) as u8));
        let crc = crc32(&v);
        v.extend_from_slice(&crc.to_le_bytes());
        v
    }

    fn flash_with_new(new: &[u8]) -> DualSlotFlash<Crc> {
        let mut f = DualSlotFlash::new(Crc, 4096, &image([4, 15], 3000)).unwrap();
        f.erase_inactive();
        for (i, chunk) in new.chunks(1000).enumerate() {
            f.write(i as u64 * 1000, chunk).unwrap();
        }
        f
    }

    #[test]
    fn a_checked_and_activated_image_runs_after_the_boot() {
        let new = image([4, 16], 3000);
        let mut f = flash_with_new(&new);
        assert_eq!(*f.running(), [4, 15]);
        let h = f.check_inactive().unwrap();
        f.activate(h);
        assert_eq!(f.boot_state(), BootState::ActivationPending);
        assert_eq!(*f.running(), [4, 15], "nothing changes before the boot");
        assert_eq!(f.boot(TrialBoot::Starts), BootOutcome::Activated);
        assert_eq!(f.active(), SlotId::B);
        assert_eq!(*f.running(), [4, 16]);
        assert_eq!(f.slot(SlotId::B).data(), &new[..]);
        assert_eq!(f.boot(TrialBoot::Starts), BootOutcome::Unchanged);
        assert_eq!(
            f.inactive(),
            SlotId::A,
            "the next download writes the old slot"
        );
    }

    #[test]
    fn an_image_that_does_not_start_is_rolled_back_until_the_next_erase() {
        let mut f = flash_with_new(&image([4, 16], 3000));
        let h = f.check_inactive().unwrap();
        f.activate(h);
        assert_eq!(f.boot(TrialBoot::Fails), BootOutcome::RolledBack);
        assert_eq!(f.active(), SlotId::A);
        assert_eq!(*f.running(), [4, 15]);
        assert_eq!(f.boot_state(), BootState::RolledBack);
        assert_eq!(f.slot(SlotId::B).checked(), None);
        f.erase_inactive();
        assert_eq!(f.boot_state(), BootState::Running);
    }

    #[test]
    fn an_erase_cancels_an_activation_and_writes_stay_in_order_within_the_slot() {
        let mut f = flash_with_new(&image([4, 16], 3000));
        let h = f.check_inactive().unwrap();
        f.activate(h);
        f.erase_inactive();
        assert_eq!(f.boot(TrialBoot::Starts), BootOutcome::Unchanged);
        assert_eq!(*f.running(), [4, 15]);
        assert_eq!(
            f.write(5, &[1]),
            Err(WriteError::NotSequential { offset: 5, len: 0 })
        );
        f.write(0, &[1, 2]).unwrap();
        assert_eq!(f.check_inactive(), Err(Refused::Short));
        assert_eq!(
            f.write(2, &[0; 4095]),
            Err(WriteError::PastEnd { slot_size: 4096 })
        );
        f.write(2, &[0; 4094]).unwrap();
        assert_eq!(f.inactive_data().len(), 4096);
    }

    #[test]
    fn a_flipped_cell_is_caught_by_the_check_and_again_at_boot() {
        let mut f = flash_with_new(&image([4, 16], 3000));
        f.flip_bit(2000);
        assert_eq!(f.check_inactive(), Err(Refused::Crc));
        // A slot that changes after its check (a cell decaying) is caught at boot.
        let mut f = flash_with_new(&image([4, 16], 3000));
        let h = f.check_inactive().unwrap();
        f.activate(h);
        f.flip_bit(100);
        assert_eq!(f.boot(TrialBoot::Starts), BootOutcome::RolledBack);
        assert_eq!(*f.running(), [4, 15]);
    }

    #[test]
    fn an_initial_image_that_fails_its_check_builds_no_flash() {
        let mut bad = image([1, 0], 10);
        bad[3] ^= 0xFF;
        assert!(matches!(
            DualSlotFlash::new(Crc, 4096, &bad),
            Err(Refused::Crc)
        ));
    }
}
