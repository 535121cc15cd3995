//! The bad packages: truncated copies of the sample package and random files.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// A bad package and its name in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPackage {
    /// What it is ("the first 512 of 70 000 bytes").
    pub label: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// Copies of `sample` cut short: empty, one byte, at a quarter, half and three quarters,
/// without its last 1, 2, 16 and 64 bytes, and at four random places.
///
/// A cut that removes only ASCII whitespace (the final newline of a text format) leaves
/// the package whole and is not made.
pub fn truncated(sample: &[u8], seed: u64) -> Vec<BadPackage> {
    let len = sample.len();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x7255_4E43);
    let mut cuts: Vec<usize> = vec![0, 1, len / 4, len / 2, len * 3 / 4];
    cuts.extend(
        [1usize, 2, 16, 64]
            .iter()
            .filter_map(|k| len.checked_sub(*k)),
    );
    if len > 1 {
        cuts.extend((0..4).map(|_| rng.random_range(1..len)));
    }
    cuts.sort_unstable();
    cuts.dedup();
    cuts.into_iter()
        .filter(|&cut| cut < len && !sample[cut..].iter().all(u8::is_ascii_whitespace))
        .map(|cut| BadPackage {
            label: format!("the first {cut} of {len} bytes"),
            bytes: sample[..cut].to_vec(),
        })
        .collect()
}

/// Random files: of 1, 8, 64, 512 and 4096 bytes, of the sample's length, and the
/// sample's first bytes (its header: up to 64 bytes, at most half of it) followed by
/// random bytes, so that a format check alone does not reject them.
pub fn random(sample: Option<&[u8]>, seed: u64) -> Vec<BadPackage> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5241_4E44);
    let mut out = Vec::new();
    let mut lengths = vec![1usize, 8, 64, 512, 4096];
    if let Some(s) = sample {
        lengths.push(s.len());
    }
    for len in lengths {
        let mut bytes = vec![0u8; len];
        rng.fill(&mut bytes[..]);
        out.push(BadPackage {
            label: format!("{len} random bytes"),
            bytes,
        });
    }
    if let Some(s) = sample {
        let keep = (s.len() / 2).min(64);
        if keep > 0 {
            let mut bytes = s.to_vec();
            rng.fill(&mut bytes[keep..]);
            if bytes != s {
                out.push(BadPackage {
                    label: format!("the sample's first {keep} bytes, then random bytes"),
                    bytes,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncations_are_strictly_shorter_and_never_only_drop_whitespace() {
        let mut text = b":10000000000102030405060708090A0B0C0D0E0F78\n:00000001FF\n".to_vec();
        let cuts = truncated(&text, 3);
        assert!(cuts.iter().all(|p| p.bytes.len() < text.len()));
        assert!(cuts.iter().all(|p| text.starts_with(&p.bytes)));
        assert!(
            !cuts.iter().any(|p| p.bytes.len() == text.len() - 1),
            "dropping the final newline leaves the file whole"
        );
        assert!(cuts.iter().any(|p| p.bytes.is_empty()));
        text.clear();
        assert!(
            truncated(&text, 3).is_empty(),
            "nothing to cut from an empty file"
        );
    }

    #[test]
    fn random_packages_keep_the_header_but_differ_from_the_sample() {
        let sample: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let bad = random(Some(&sample), 9);
        assert!(bad.iter().any(|p| p.bytes.len() == sample.len()));
        let headed = bad.last().unwrap();
        assert_eq!(&headed.bytes[..64], &sample[..64]);
        assert_ne!(headed.bytes, sample);
        assert_eq!(random(None, 9).len(), 5);
        assert_eq!(
            random(None, 9),
            random(None, 9),
            "reproducible from the seed"
        );
    }
}
