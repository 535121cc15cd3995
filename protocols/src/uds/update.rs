//! Small steps every UDS update session of a plugin takes: feeding the download from
//! the package, leaving the programming session when it stops early, reading a
//! two-byte version.

use super::{FlashClient, parse_read_data};
use crate::isotp::{Padding, Pdu};
use bmsfw_plugin_api::{CanFrame, CanId, ErrorCode, Failure, PackageReader, Timestamp};

/// The single frame `10 81` on `request_id`: DiagnosticSessionControl back to the
/// default session, with suppressPosMsgIndicationBit set (no answer wanted).
///
/// A session that stops in the middle of a download (failure, abort) sends it after
/// [`FlashClient::abort`], so that the bootloader does not wait for the rest of the
/// transfer until its S3 timeout. `None` only for a `padding` that does not fit.
pub fn leave_programming(request_id: CanId, padding: Padding) -> Option<CanFrame> {
    Pdu::Single {
        data: &[0x10, 0x81],
    }
    .to_frame(request_id, padding)
}

/// Answers [`FlashEvent::NeedData`](super::FlashEvent::NeedData): reads `len` bytes of
/// `package` at `offset` into `block` (a buffer the session keeps, so that at most one
/// block is in memory) and hands them to `client`.
///
/// A package that cannot be read, or data the client did not ask for, is
/// `TRANSFER_FAILED`.
pub fn provide_block(
    client: &mut FlashClient,
    now: Timestamp,
    package: &PackageReader,
    offset: u64,
    len: usize,
    block: &mut Vec<u8>,
) -> Result<(), Failure> {
    block.resize(len, 0);
    package.read_exact_at(offset, block).map_err(|e| {
        Failure::new(
            ErrorCode::TRANSFER_FAILED,
            format!("reading the package at byte {offset} failed: {e}"),
        )
    })?;
    client.provide_data(now, block).map_err(|e| {
        Failure::new(
            ErrorCode::TRANSFER_FAILED,
            format!("the download refused block data: {e}"),
        )
    })
}

/// The two-byte value of `identifier` in the data of a positive ReadDataByIdentifier
/// answer (the bytes after `62`), such as a `[major, minor]` version; `what` names it
/// in the `PROTOCOL_ERROR` of a malformed answer ("the running version").
pub fn read_two_bytes(data: &[u8], identifier: u16, what: &str) -> Result<[u8; 2], Failure> {
    match parse_read_data(data, &[(identifier, 2)]) {
        Ok(v) => Ok([v[0][0], v[0][1]]),
        Err(e) => Err(Failure::new(
            ErrorCode::PROTOCOL_ERROR,
            format!("{what} is malformed: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isotp::IsoTpConfig;
    use crate::uds::FlashConfig;
    use bmsfw_plugin_api::abi_stable::sabi_trait::TD_Opaque;
    use bmsfw_plugin_api::abi_stable::std_types::{RResult, RSliceMut};
    use bmsfw_plugin_api::{PackageSource, PackageSource_TO, SourceError};

    struct Package(Vec<u8>);

    impl PackageSource for Package {
        fn len(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_at(&self, offset: u64, mut buf: RSliceMut<'_, u8>) -> RResult<usize, SourceError> {
            let start = usize::try_from(offset).map_or(self.0.len(), |o| o.min(self.0.len()));
            let n = buf.len().min(self.0.len() - start);
            buf[..n].copy_from_slice(&self.0[start..start + n]);
            RResult::ROk(n)
        }
    }

    #[test]
    fn a_block_is_read_from_the_package_and_refusals_are_transfer_failures() {
        let package = PackageReader::new(PackageSource_TO::from_value(
            Package((0..100).collect()),
            TD_Opaque,
        ));
        let ids = IsoTpConfig::new(
            CanId::standard(0x7E0).unwrap(),
            CanId::standard(0x7E8).unwrap(),
        );
        let key = Box::new(|_: u8, seed: &[u8]| Ok(seed.to_vec()));
        let mut client = FlashClient::new(ids, FlashConfig::default(), 100, key).unwrap();
        let mut block = Vec::new();
        // The package is read, but the client asked for nothing yet.
        let f =
            provide_block(&mut client, Timestamp::ZERO, &package, 90, 4, &mut block).unwrap_err();
        assert_eq!(block, vec![90, 91, 92, 93]);
        assert_eq!(f.code, ErrorCode::TRANSFER_FAILED);
        assert!(f.message.contains("refused block data"), "{f}");
        // The package ends before the block does.
        let f =
            provide_block(&mut client, Timestamp::ZERO, &package, 98, 4, &mut block).unwrap_err();
        assert_eq!(f.code, ErrorCode::TRANSFER_FAILED);
        assert!(f.message.contains("at byte 98"), "{f}");
    }

    #[test]
    fn leaving_programming_is_one_padded_frame_without_answer() {
        let id = CanId::standard(0x7E5).unwrap();
        let frame = leave_programming(id, Padding::Fill(0xAA)).unwrap();
        assert_eq!(frame.id(), id);
        assert_eq!(
            frame.data(),
            &[0x02, 0x10, 0x81, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA]
        );
    }

    #[test]
    fn a_two_byte_value_is_read_and_a_malformed_answer_names_what_it_was() {
        assert_eq!(
            read_two_bytes(&[0xF1, 0x95, 1, 12], 0xF195, "the running version"),
            Ok([1, 12])
        );
        for data in [
            &[0xF1, 0x95, 1][..],
            &[0xF1, 0x80, 1, 12],
            &[0xF1, 0x95, 1, 12, 0],
        ] {
            let f = read_two_bytes(data, 0xF195, "the running version").unwrap_err();
            assert_eq!(f.code, ErrorCode::PROTOCOL_ERROR);
            assert!(
                f.message.starts_with("the running version is malformed"),
                "{f}"
            );
        }
    }
}
