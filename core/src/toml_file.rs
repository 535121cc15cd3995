//! Reading TOML files (gx.toml, the allowlist) so that every error names the file, the
//! line and the column.

use serde::de::DeserializeOwned;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Largest configuration file accepted, in bytes: configuration is small, and a bound
/// keeps a wrong path (a firmware image, a log) from being read whole.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// An error in a TOML file, located to the line and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", path.display())]
pub struct TomlFileError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Why a TOML file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    #[error("{} is {size} bytes; configuration files are limited to {MAX_CONFIG_BYTES}", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The file's content is wrong.
    #[error(transparent)]
    Invalid(#[from] TomlFileError),
}

impl LoadError {
    /// The located error, when the content was at fault.
    pub fn located(&self) -> Option<&TomlFileError> {
        match self {
            LoadError::Invalid(e) => Some(e),
            _ => None,
        }
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// A [`TomlFileError`] at `span` of `text`.
pub fn error_at(
    path: &Path,
    text: &str,
    span: Range<usize>,
    message: impl Into<String>,
) -> TomlFileError {
    let (line, column) = line_column(text, span.start);
    TomlFileError {
        path: path.to_path_buf(),
        line,
        column,
        message: message.into(),
    }
}

/// Parses `text` (the content of `path`) as `T`.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, TomlFileError> {
    toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        // toml's own message repeats the location and the source line; keep its first
        // line, the located message proper.
        let message = e.message().trim().to_owned();
        error_at(path, text, span, message)
    })
}

/// Reads `path` (bounded) and returns its text.
pub fn read(path: &Path) -> Result<String, LoadError> {
    use std::io::Read;
    let read_err = |source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(LoadError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let text = String::from_utf8_lossy(e.as_bytes());
        LoadError::Invalid(error_at(
            path,
            &text,
            valid..valid,
            "the file is not UTF-8 text",
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_from_one_in_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        // After the two-byte 'é', column 3 (characters, not bytes).
        assert_eq!(line_column(text, 9), (2, 3));
        assert_eq!(line_column(text, 1000), (3, 1));
    }

    #[test]
    fn syntax_errors_are_located() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            a: u32,
        }
        let e = parse::<T>(Path::new("x.toml"), "\n\na = \"text\"\n").unwrap_err();
        assert_eq!((e.line, e.column), (3, 5), "{e}");
        assert!(e.to_string().starts_with("x.toml:3:5: "), "{e}");
    }
}
