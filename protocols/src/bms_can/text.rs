//! ASCII text fields (names, serial numbers, cell ids).
//!
//! Senders pad with NULs or spaces, so both are trimmed at either end. What remains must
//! be printable ASCII (0x20 to 0x7E): a byte outside that range, an interior NUL
//! included, rejects the whole frame rather than guessing at an encoding. Padding with
//! 0xFF (erased flash) is therefore refused too.

/// A byte of a text field that is not printable ASCII.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotAscii {
    /// Offset of the byte inside the frame's data.
    pub offset: usize,
    /// The byte itself.
    pub byte: u8,
}

fn is_padding(b: u8) -> bool {
    b == 0 || b == b' '
}

/// Decodes one frame's text: padding trimmed at both ends, the rest printable ASCII.
pub fn decode_text(data: &[u8]) -> Result<String, NotAscii> {
    let start = data
        .iter()
        .position(|&b| !is_padding(b))
        .unwrap_or(data.len());
    let end = data
        .iter()
        .rposition(|&b| !is_padding(b))
        .map_or(start, |i| i + 1);
    segment(data, start, end)
}

/// Decodes the first or second half of a two-frame text (0x370/0x371, 0x380/0x381):
/// only NULs are trimmed, so a space at the seam survives joining; [`join_halves`]
/// trims the joined text.
pub fn decode_half(data: &[u8]) -> Result<String, NotAscii> {
    let start = data.iter().position(|&b| b != 0).unwrap_or(data.len());
    let end = data.iter().rposition(|&b| b != 0).map_or(start, |i| i + 1);
    segment(data, start, end)
}

fn segment(data: &[u8], start: usize, end: usize) -> Result<String, NotAscii> {
    let body = data.get(start..end).unwrap_or_default();
    if let Some(i) = body.iter().position(|&b| !(0x20..=0x7E).contains(&b)) {
        return Err(NotAscii {
            offset: start + i,
            byte: body[i],
        });
    }
    Ok(body.iter().map(|&b| char::from(b)).collect())
}

/// Joins the two halves of a text, either of which may be missing, and trims spaces.
/// `None` when nothing but padding was sent.
pub fn join_halves(first: Option<&str>, second: Option<&str>) -> Option<String> {
    let joined = format!("{}{}", first.unwrap_or(""), second.unwrap_or(""));
    let trimmed = joined.trim_matches(' ');
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_is_trimmed_at_both_ends() {
        assert_eq!(decode_text(b"PYLON\0\0\0").unwrap(), "PYLON");
        assert_eq!(decode_text(b"  BYD   ").unwrap(), "BYD");
        assert_eq!(decode_text(b"\0\0AB C\0 ").unwrap(), "AB C");
        assert_eq!(decode_text(b"\0\0\0\0").unwrap(), "");
        assert_eq!(decode_text(b"").unwrap(), "");
    }

    #[test]
    fn non_ascii_is_refused_with_its_offset() {
        assert_eq!(
            decode_text(b"AB\xC3\xA9\0\0").unwrap_err(),
            NotAscii {
                offset: 2,
                byte: 0xC3
            }
        );
        assert_eq!(
            decode_text(b"AB\0CD").unwrap_err(),
            NotAscii { offset: 2, byte: 0 }
        );
        assert_eq!(
            decode_text(b"ABC\x07").unwrap_err(),
            NotAscii { offset: 3, byte: 7 }
        );
        assert_eq!(
            decode_text(b"\xFF\xFF\xFF\xFF").unwrap_err(),
            NotAscii {
                offset: 0,
                byte: 0xFF
            }
        );
    }

    #[test]
    fn halves_keep_the_space_at_the_seam() {
        let a = decode_half(b"Battery ").unwrap();
        let b = decode_half(b"Box\0\0\0\0\0").unwrap();
        assert_eq!(
            join_halves(Some(&a), Some(&b)).as_deref(),
            Some("Battery Box")
        );
        assert_eq!(join_halves(Some("  X"), None).as_deref(), Some("X"));
        assert_eq!(join_halves(None, Some("Y ")).as_deref(), Some("Y"));
        assert_eq!(join_halves(Some("   "), None), None);
        assert_eq!(join_halves(None, None), None);
    }
}
