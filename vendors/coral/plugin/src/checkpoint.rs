//! The transfer checkpoint the GX journals (`PROTOCOL.md` section 10).

/// The magic of a checkpoint.
const MAGIC: [u8; 4] = *b"CRK1";
/// Bytes of a checkpoint.
pub const LEN: usize = 49;

/// Where a transfer stands, enough to resume it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The master's token of the transfer.
    pub token: u32,
    /// SHA-256 of the bundle's manifest.
    pub manifest_sha256: [u8; 32],
    /// The bundle's length.
    pub len: u32,
    /// Frames the master acknowledged.
    pub written: u32,
}

impl Checkpoint {
    /// The checkpoint's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(LEN);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&self.token.to_le_bytes());
        b.extend_from_slice(&self.manifest_sha256);
        b.extend_from_slice(&self.len.to_le_bytes());
        b.extend_from_slice(&self.written.to_le_bytes());
        b.push(0);
        b
    }

    /// Reads a checkpoint; `Err` says why the bytes are not one.
    pub fn parse(bytes: &[u8]) -> Result<Checkpoint, &'static str> {
        if bytes.len() != LEN {
            return Err("a checkpoint is 49 bytes");
        }
        if bytes[0..4] != MAGIC {
            return Err("the checkpoint does not start with CRK1");
        }
        if bytes[48] != 0 {
            return Err("byte 48 of the checkpoint is not 0");
        }
        let le32 = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let mut manifest_sha256 = [0u8; 32];
        manifest_sha256.copy_from_slice(&bytes[8..40]);
        Ok(Checkpoint {
            token: le32(4),
            manifest_sha256,
            len: le32(40),
            written: le32(44),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_round_trips_with_the_documented_layout() {
        let c = Checkpoint {
            token: 0x0102_0304,
            manifest_sha256: [0xAB; 32],
            len: 1_000_000,
            written: 4096,
        };
        let b = c.to_bytes();
        assert_eq!(b.len(), 49);
        assert_eq!(&b[0..4], b"CRK1");
        assert_eq!(b[4..8], [4, 3, 2, 1]);
        assert_eq!(b[40..44], 1_000_000u32.to_le_bytes());
        assert_eq!(b[44..48], 4096u32.to_le_bytes());
        assert_eq!(Checkpoint::parse(&b), Ok(c));
        assert!(Checkpoint::parse(&b[..48]).is_err());
        let mut bad = b.clone();
        bad[0] = b'X';
        assert!(Checkpoint::parse(&bad).is_err());
        let mut bad = b;
        bad[48] = 1;
        assert!(Checkpoint::parse(&bad).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let _ = Checkpoint::parse(&bytes);
        }
    }
}
