//! The BMS's firmware flash: the simulator's dual-slot flash
//! ([`bmsfw_sim::flash`]), checking packages as the Aurora bootloader does
//! ([`package::verify`](crate::package::verify)), with slots of [`SLOT_SIZE`] bytes.

use crate::package::{Header, VerifyError, verify};
use crate::protocol::{BOOT_ACTIVATION_PENDING, BOOT_ROLLED_BACK, BOOT_RUNNING, SLOT_SIZE};
use bmsfw_sim::flash::{DualSlotFlash, ImageCheck};

pub use bmsfw_sim::flash::{BootOutcome, BootState, SlotId, TrialBoot, WriteError};

/// The bootloader's check of a package: header, length, CRC-32 and SHA-256
/// ([`verify`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PackageCheck;

impl ImageCheck for PackageCheck {
    type Header = Header;
    type Error = VerifyError;
    fn check(&self, package: &[u8]) -> Result<Header, VerifyError> {
        verify(package)
    }
}

/// The two slots and the boot record of an Aurora BMS.
pub type Flash = DualSlotFlash<PackageCheck>;

/// A slot's contents.
pub type Slot = bmsfw_sim::flash::Slot<Header>;

/// A flash whose slot A holds `package`, running; slot B empty.
pub fn with_package(package: &[u8]) -> Result<Flash, VerifyError> {
    Flash::new(PackageCheck, SLOT_SIZE, package)
}

/// The boot state's byte in the boot-state identifier (0xF1A0).
pub fn boot_state_byte(state: BootState) -> u8 {
    match state {
        BootState::Running => BOOT_RUNNING,
        BootState::ActivationPending => BOOT_ACTIVATION_PENDING,
        BootState::RolledBack => BOOT_ROLLED_BACK,
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

    #[test]
    fn packages_are_checked_as_the_bootloader_verifies_them() {
        let mut f = with_package(&package([4, 15])).unwrap();
        assert_eq!(f.slot_size(), SLOT_SIZE);
        f.erase_inactive();
        let new = package([4, 16]);
        f.write(0, &new).unwrap();
        assert_eq!(f.check_inactive().map(|h| h.version), Ok([4, 16]));
        f.flip_bit(2000);
        assert!(matches!(f.check_inactive(), Err(VerifyError::Crc { .. })));
        assert!(matches!(
            with_package(&new[..40]),
            Err(VerifyError::Short { len: 40 })
        ));
    }

    #[test]
    fn boot_states_have_the_bytes_of_protocol_md() {
        assert_eq!(boot_state_byte(BootState::Running), 0x00);
        assert_eq!(boot_state_byte(BootState::ActivationPending), 0x01);
        assert_eq!(boot_state_byte(BootState::RolledBack), 0x02);
    }
}
