//! The RAM of a simulated UDS bootloader during a download into a [`DualSlotFlash`]:
//! the package length the erase routine announced, which the `34` request must match,
//! and a flash cell that fails to take its value, a fault tests inject.
//!
//! A vendor's [`FlashBackend`](bmsfw_protocols::uds::FlashBackend) calls
//! [`announce`](Download::announce) from `erase`, [`accept`](Download::accept) from
//! `request_download` and [`write`](Download::write) from `write`, and
//! [`forget`](Download::forget)s it all when the BMS loses power or restarts.

use crate::flash::{DualSlotFlash, ImageCheck};
use bmsfw_protocols::uds::Nrc;

/// What a bootloader holds in RAM about the download under way.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Download {
    /// The package length announced to the erase routine.
    len: Option<u64>,
    /// The package offset of a flash cell that will not take its value, once.
    flip_at: Option<u64>,
}

impl Download {
    /// Nothing announced, no fault armed.
    pub fn new() -> Download {
        Download::default()
    }

    /// Reads the erase routine's option, the package length as 4 bytes big-endian, and
    /// keeps it for [`accept`](Self::accept). A length of `header_len` bytes or less
    /// (no image) or above `slot_size` is `RequestOutOfRange`; an option of another
    /// size is `IncorrectMessageLengthOrInvalidFormat`.
    pub fn announce(&mut self, option: &[u8], header_len: u64, slot_size: u64) -> Result<u64, Nrc> {
        let len = <[u8; 4]>::try_from(option)
            .map(|b| u64::from(u32::from_be_bytes(b)))
            .map_err(|_| Nrc::IncorrectMessageLengthOrInvalidFormat)?;
        if len <= header_len || len > slot_size {
            return Err(Nrc::RequestOutOfRange);
        }
        self.len = Some(len);
        Ok(len)
    }

    /// Checks a RequestDownload: address 0, data format 0 (no compression, no
    /// encryption) and the size announced to the erase routine; anything else is
    /// `RequestOutOfRange`.
    pub fn accept(&self, address: u64, size: u64, data_format: u8) -> Result<(), Nrc> {
        if address != 0 || data_format != 0 || Some(size) != self.len {
            return Err(Nrc::RequestOutOfRange);
        }
        Ok(())
    }

    /// Arms the fault: the flash cell at `offset` of the package keeps its old value
    /// (its lowest bit flips) when it is next written.
    pub fn flip_bit_on_write(&mut self, offset: u64) {
        self.flip_at = Some(offset);
    }

    /// Writes `data` at `offset` of the inactive slot, flipping the armed cell if it
    /// lies inside. A write out of order or past the slot is
    /// `GeneralProgrammingFailure`.
    pub fn write<C: ImageCheck>(
        &mut self,
        flash: &mut DualSlotFlash<C>,
        offset: u64,
        data: &[u8],
    ) -> Result<(), Nrc> {
        flash
            .write(offset, data)
            .map_err(|_| Nrc::GeneralProgrammingFailure)?;
        if let Some(at) = self.flip_at {
            if (offset..offset.saturating_add(data.len() as u64)).contains(&at) {
                self.flip_at = None;
                flash.flip_bit(at);
                tracing::debug!(
                    offset = at,
                    "injected fault: a flash cell kept its old value"
                );
            }
        }
        Ok(())
    }

    /// Loses what the RAM held (power cut, restart): the announced length. An armed
    /// fault is the flash's and stays.
    pub fn forget(&mut self) {
        self.len = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flash::ImageCheck;

    /// Any image of at least one byte checks; its header is its first byte.
    #[derive(Clone, Debug)]
    struct FirstByte;
    impl ImageCheck for FirstByte {
        type Header = u8;
        type Error = ();
        fn check(&self, image: &[u8]) -> Result<u8, ()> {
            image.first().copied().ok_or(())
        }
    }

    #[test]
    fn the_announced_length_is_bounded_and_must_match_the_download() {
        let mut d = Download::new();
        assert_eq!(
            d.announce(&[0, 0, 1], 24, 1024),
            Err(Nrc::IncorrectMessageLengthOrInvalidFormat)
        );
        for len in [0u32, 24, 1025] {
            assert_eq!(
                d.announce(&len.to_be_bytes(), 24, 1024),
                Err(Nrc::RequestOutOfRange),
                "{len}"
            );
        }
        assert_eq!(
            d.accept(0, 100, 0),
            Err(Nrc::RequestOutOfRange),
            "nothing announced"
        );
        assert_eq!(d.announce(&100u32.to_be_bytes(), 24, 1024), Ok(100));
        assert_eq!(d.accept(0, 100, 0), Ok(()));
        for (address, size, format) in [(4, 100, 0), (0, 99, 0), (0, 100, 0x11)] {
            assert_eq!(d.accept(address, size, format), Err(Nrc::RequestOutOfRange));
        }
        d.forget();
        assert_eq!(d.accept(0, 100, 0), Err(Nrc::RequestOutOfRange));
    }

    #[test]
    fn an_armed_cell_flips_once_where_it_is_written() {
        let mut flash = DualSlotFlash::new(FirstByte, 64, &[1]).unwrap();
        flash.erase_inactive();
        let mut d = Download::new();
        d.flip_bit_on_write(5);
        d.write(&mut flash, 0, &[0x10; 4]).unwrap();
        assert_eq!(
            flash.inactive_data(),
            &[0x10; 4],
            "the cell is not in this block"
        );
        d.write(&mut flash, 4, &[0x10; 4]).unwrap();
        assert_eq!(flash.inactive_data()[5], 0x11);
        d.write(&mut flash, 8, &[0x10; 4]).unwrap();
        assert_eq!(
            flash.inactive_data()[4..],
            [0x10, 0x11, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10]
        );
        assert_eq!(
            d.write(&mut flash, 20, &[0]),
            Err(Nrc::GeneralProgrammingFailure)
        );
    }
}
