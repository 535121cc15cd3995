//! Text from outside (file names chosen by installers, values a GX publishes) made safe to
//! show: characters that are invisible or that change how the text around them is drawn
//! are replaced by a visible mark.
//!
//! A name like `invoice<U+202E>nib.exe`, with a right-to-left override, is drawn by a
//! browser as "invoiceexe.bin"; the API gives it as `invoice[U+202E]nib.exe` instead, so
//! what the installer reads is what the name holds. Marking is idempotent: marked text
//! holds nothing hidden, so it can pass through the GX and back and be marked again.

/// Whether `c` must not reach a page as it is: control characters, bidirectional
/// embeddings, overrides, isolates and marks, zero-width and other invisible format
/// characters, line and paragraph separators, and Unicode tags.
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFFB}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// `text` with every hidden character ([`is_hidden`]) written as `[U+XXXX]`.
pub fn shown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_hidden(c) {
            out.push_str(&format!("[U+{:04X}]", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_and_controls_are_marked() {
        assert_eq!(shown("fw-4.16.bin"), "fw-4.16.bin");
        assert_eq!(shown("invoice\u{202E}nib.exe"), "invoice[U+202E]nib.exe");
        assert_eq!(shown("a\u{7}b\u{1b}[31m"), "a[U+0007]b[U+001B][31m");
        assert_eq!(
            shown("x\u{200B}\u{2066}y\u{FEFF}"),
            "x[U+200B][U+2066]y[U+FEFF]"
        );
        assert_eq!(shown("tag\u{E0041}"), "tag[U+E0041]");
        assert_eq!(
            shown("Ünïcödé 电池.bin"),
            "Ünïcödé 电池.bin",
            "ordinary letters stay"
        );
    }

    #[test]
    fn marking_twice_changes_nothing() {
        for s in ["\u{202E}", "a[U+202E]b", "\u{0}x", "plain.bin"] {
            let once = shown(s);
            assert!(!once.chars().any(is_hidden), "{once:?}");
            assert_eq!(shown(&once), once);
        }
    }
}
