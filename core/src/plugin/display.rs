//! File names and texts as the loader prints and logs them: on one line, unforgeable.
//!
//! A file name in the plugin directory is chosen by whoever could write there. A name
//! holding a newline (`"evil\nbmsfw: loaded com.fake 1.0.0.so"`) printed as is would
//! start a line of its own in `bmsfw plugin list` or in the log, and could pass for a
//! verdict. Every name the loader prints goes through [`display_path`] or
//! [`display_name`], and every refusal text through [`one_line`]:
//!
//! - `\n`, `\r` and `\t` become `\n`, `\r` and `\t` (a backslash and a letter);
//! - other control characters (C0, DEL, C1), line and paragraph separators, and the
//!   invisible format characters that reorder or hide text (bidirectional overrides and
//!   isolates, zero-width characters, the byte order mark) become `\u{...}`;
//! - in names, bytes that are not UTF-8 become `\xNN` and a backslash becomes `\\`, so
//!   that the printed form names exactly one file.
//!
//! An ordinary name (`libalpha.so`) prints unchanged.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The whole `path`, escaped for printing on one line.
pub fn display_path(path: &Path) -> String {
    escape_name(path.as_os_str())
}

/// The file name of `path` (the whole path when it has none), escaped for printing on
/// one line.
pub fn display_name(path: &Path) -> String {
    escape_name(path.file_name().unwrap_or(path.as_os_str()))
}

/// A file name escaped for printing on one line: non-UTF-8 bytes as `\xNN`, backslashes
/// doubled, control and invisible format characters escaped.
pub fn escape_name(name: &OsStr) -> String {
    let mut out = String::with_capacity(name.len());
    for chunk in name.as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                push_char(&mut out, c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// `text` on one line: control and invisible format characters escaped (backslashes are
/// kept as they are).
pub fn one_line(text: &str) -> String {
    if !text.chars().any(needs_escape) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        push_char(&mut out, c);
    }
    out
}

fn push_char(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if needs_escape(c) => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
        c => out.push(c),
    }
}

/// Control characters, line and paragraph separators, and the format characters that
/// reorder or hide text.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn ordinary_names_print_unchanged() {
        assert_eq!(
            display_path(Path::new("/data/plugins/libalpha.so")),
            "/data/plugins/libalpha.so"
        );
        assert_eq!(
            display_name(Path::new("/p/libz-beta_1.2.so")),
            "libz-beta_1.2.so"
        );
        assert_eq!(
            one_line("identical to libx.so, already loaded"),
            "identical to libx.so, already loaded"
        );
    }

    #[test]
    fn a_newline_in_a_name_cannot_start_a_line() {
        let p = Path::new("/p/evil\nbmsfw: loaded com.fake 1.0.0.so");
        let shown = display_path(p);
        assert_eq!(shown, "/p/evil\\nbmsfw: loaded com.fake 1.0.0.so");
        assert!(!shown.contains('\n'));
        assert_eq!(display_name(p), "evil\\nbmsfw: loaded com.fake 1.0.0.so");
        assert_eq!(one_line("a\r\nb\tc"), "a\\r\\nb\\tc");
    }

    #[test]
    fn control_format_and_invalid_bytes_are_escaped_unambiguously() {
        let name = OsStr::from_bytes(b"a\x1b[31mred\x7f\xff\\x.so");
        assert_eq!(escape_name(name), "a\\u{1b}[31mred\\u{7f}\\xff\\\\x.so");
        // A backslash written in the name cannot pass for an escape.
        assert_ne!(
            escape_name(OsStr::new("a\\nb")),
            escape_name(OsStr::new("a\nb"))
        );
        // Bidirectional overrides, separators and zero-width characters.
        assert_eq!(
            escape_name(OsStr::new("lib\u{202e}os.evil\u{2028}x\u{200b}\u{85}.so")),
            "lib\\u{202e}os.evil\\u{2028}x\\u{200b}\\u{85}.so"
        );
        // Other non-ASCII letters are kept.
        assert_eq!(escape_name(OsStr::new("libbatería.so")), "libbatería.so");
        assert_eq!(one_line("path\\to"), "path\\to");
    }
}
