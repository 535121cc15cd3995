//! The exit codes of `bmsfw update`, one per kind of outcome, and how a catalogue code
//! maps to one.

use bmsfw_core::errors::{self, codes};
use std::process::ExitCode;

/// How `bmsfw update` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: the update completed; the battery runs the new firmware.
    Completed = 0,
    /// 1: bmsfw could not run the update (the state directory, the engine, an I/O error).
    Error = 1,
    /// 2: a bad command line or input file: missing or unreadable file, a site without
    /// the battery named, an unreadable configuration, allowlist or plugin directory.
    Usage = 2,
    /// 3: refused at a safety gate (720-739), before or during the transfer.
    Gate = 3,
    /// 4: refused before anything was sent to the battery: the firmware file or the
    /// battery refused by the GX or by the battery's plugin (700-718, 740-799, 900-999).
    Refused = 4,
    /// 5: failed once the transfer had begun: transfer, installation, restart or
    /// verification (740-799, 900-999).
    Failed = 5,
    /// 6: cancelled or stopped with Ctrl-C (719).
    Cancelled = 6,
    /// 7: timed out: the battery was not heard within --wait, or the update did not end
    /// within --timeout.
    TimedOut = 7,
}

/// The table for `--help` and the README.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  completed: the battery runs the new firmware
  1  bmsfw could not run the update (state directory, engine, I/O)
  2  bad command line or input (missing file, unknown battery, unreadable site,
     configuration, allowlist or plugin directory)
  3  refused at a safety gate (codes 720-739), before or during the transfer
  4  refused before anything reached the battery: the file or the battery refused
     by the GX or by the battery's plugin (e.g. 707, 748, 760-762)
  5  failed once the transfer had begun (transfer, install, restart, verification)
  6  cancelled or stopped with Ctrl-C (719)
  7  timed out: battery not heard within --wait, update not ended within --timeout
A failure prints its catalogue code, title and message.

Ctrl-C while the file is staged cancels the update (719). Once the transfer has
begun the engine runs it to its end under its safety rules (716); a second
Ctrl-C stops bmsfw there, the job journaled in the state directory.";

impl Exit {
    /// The exit of an update that ended with catalogue `code`; `transfer_began`: the
    /// package had passed stage 1 and stage 2 had started.
    pub fn for_code(code: u32, transfer_began: bool) -> Exit {
        match code {
            codes::UPDATE_CANCELLED => Exit::Cancelled,
            720..=739 => Exit::Gate,
            _ if transfer_began => Exit::Failed,
            _ => Exit::Refused,
        }
    }

    /// What the exit code says, for the last line.
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Completed => "completed",
            Exit::Error => "bmsfw could not run the update",
            Exit::Usage => "bad command line or input",
            Exit::Gate => "refused at a safety gate",
            Exit::Refused => "refused before anything reached the battery",
            Exit::Failed => "failed during the update",
            Exit::Cancelled => "cancelled",
            Exit::TimedOut => "timed out",
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// The lines that explain catalogue `code` with the engine's `message`: the code and its
/// title, the message, what to do.
pub fn explain(code: u32, message: &str) -> Vec<String> {
    let mut lines = Vec::new();
    match errors::lookup(code) {
        Some(info) => {
            lines.push(format!("error {code} {}: {}", info.name, info.title));
            lines.push(format!("  {message}"));
            for (i, step) in info.resolution.iter().enumerate() {
                lines.push(format!("  {}. {step}", i + 1));
            }
        }
        None => {
            lines.push(format!("error {code}"));
            lines.push(format!("  {message}"));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_their_kind_of_outcome() {
        assert_eq!(Exit::for_code(723, false), Exit::Gate);
        assert_eq!(Exit::for_code(728, true), Exit::Gate);
        assert_eq!(Exit::for_code(731, false), Exit::Gate);
        assert_eq!(Exit::for_code(760, false), Exit::Refused);
        assert_eq!(Exit::for_code(707, false), Exit::Refused);
        assert_eq!(Exit::for_code(780, true), Exit::Failed);
        assert_eq!(Exit::for_code(955, true), Exit::Failed);
        assert_eq!(Exit::for_code(719, false), Exit::Cancelled);
    }
}
