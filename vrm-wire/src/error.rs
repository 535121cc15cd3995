//! Why a message was refused.

/// A refused topic or message. Each variant names what was wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The message is larger than its limit.
    #[error("{what} of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// What was measured (e.g. "command message").
        what: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The message is not the JSON its topic requires.
    #[error("{what} is not valid JSON: {reason}")]
    NotJson {
        /// What was parsed.
        what: &'static str,
        /// The parser's words, with line and column.
        reason: String,
    },
    /// A field is missing, of the wrong type, or out of its bounds.
    #[error("field `{field}`: {reason}")]
    Field {
        /// The field's path in the message, e.g. `opCommand[1].chunk_size`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A command name this GX does not know.
    #[error("unknown command {name:?}")]
    UnknownCommand {
        /// The name (cut to 64 characters).
        name: String,
    },
    /// A topic that does not follow the GX conventions.
    #[error("topic {topic:?}: {reason}")]
    Topic {
        /// The topic (cut to 64 characters).
        topic: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl WireError {
    /// A field error.
    pub fn field(field: impl Into<String>, reason: impl Into<String>) -> WireError {
        WireError::Field {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Checks `len` against `max`.
    pub fn check_size(what: &'static str, len: usize, max: usize) -> Result<(), WireError> {
        if len > max {
            Err(WireError::TooLarge { what, len, max })
        } else {
            Ok(())
        }
    }
}

/// `text` cut to at most `max` characters, for error messages about hostile input.
pub(crate) fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_cuts_at_a_character_boundary() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("ééééé", 2), "éé...");
    }
}
