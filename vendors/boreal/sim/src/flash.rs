//! A node's firmware flash: the simulator's dual-slot flash ([`bmsfw_sim::flash`]),
//! checking images as a Taiga node does ([`check_image`]) for its product and its
//! bootloader, with slots of [`SLOT_SIZE`] bytes.

use crate::package::{ImageHeader, check_image};
use crate::protocol::{BOOT_ACTIVATION_PENDING, BOOT_ROLLED_BACK, BOOT_RUNNING, SLOT_SIZE};
use bmsfw_sim::flash::{DualSlotFlash, ImageCheck};

pub use bmsfw_sim::flash::{BootOutcome, BootState, SlotId, TrialBoot, WriteError};

/// A node's check of an image: descriptor, length, CRC-32 trailer, product, lowest
/// bootloader ([`check_image`]). The error is the flash status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeImageCheck {
    /// The node's product code.
    pub product: u16,
    /// The node's bootloader version, BCD.
    pub bootloader: [u8; 2],
}

impl ImageCheck for NodeImageCheck {
    type Header = ImageHeader;
    type Error = u8;
    fn check(&self, image: &[u8]) -> Result<ImageHeader, u8> {
        check_image(image, self.product, self.bootloader)
    }
}

/// The two slots and the boot record of one node.
pub type Flash = DualSlotFlash<NodeImageCheck>;

/// A slot's contents.
pub type Slot = bmsfw_sim::flash::Slot<ImageHeader>;

/// A flash whose slot A holds `image` (checked for `product` and `bootloader`),
/// running; slot B empty. The error is the flash status code.
pub fn with_image(image: &[u8], product: u16, bootloader: [u8; 2]) -> Result<Flash, u8> {
    let check = NodeImageCheck {
        product,
        bootloader,
    };
    Flash::new(check, u64::from(SLOT_SIZE), image)
}

/// The boot state's value in 0x2F10:03.
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
    use crate::package::{PackageSpec, image};
    use crate::protocol::flash_codes;

    const PRODUCT: u16 = 0xB210;
    const BOOT: [u8; 2] = [0x01, 0x30];

    fn img(product: u16, version: [u8; 2]) -> Vec<u8> {
        image(&PackageSpec::new(
            product,
            version,
            3_000,
            u64::from(version[1]),
        ))
    }

    #[test]
    fn images_are_checked_for_the_nodes_product_and_bootloader() {
        let mut f = with_image(&img(PRODUCT, [0x02, 0x10]), PRODUCT, BOOT).unwrap();
        assert_eq!(f.slot_size(), u64::from(SLOT_SIZE));
        f.erase_inactive();
        f.write(0, &img(0xB205, [0x02, 0x15])).unwrap();
        assert_eq!(f.check_inactive(), Err(flash_codes::WRONG_PRODUCT));
        f.erase_inactive();
        f.write(0, &img(PRODUCT, [0x02, 0x15])).unwrap();
        assert_eq!(f.check_inactive().map(|h| h.version), Ok([0x02, 0x15]));
        f.flip_bit(2_000);
        assert_eq!(f.check_inactive(), Err(flash_codes::CRC));
        // The images ask for bootloader 1.20 at least.
        assert_eq!(
            with_image(&img(PRODUCT, [0x02, 0x10]), PRODUCT, [0x01, 0x10]).err(),
            Some(flash_codes::BOOTLOADER_TOO_OLD)
        );
    }

    #[test]
    fn boot_states_have_the_values_of_protocol_md() {
        assert_eq!(boot_state_byte(BootState::Running), 0);
        assert_eq!(boot_state_byte(BootState::ActivationPending), 1);
        assert_eq!(boot_state_byte(BootState::RolledBack), 2);
    }
}
