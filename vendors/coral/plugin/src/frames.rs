//! Commands the GX sends and replies the master sends (`PROTOCOL.md` section 4), as
//! typed values. Replies are hostile input: exactly 8 bytes, known kinds, counts that
//! add up, or an error naming what was wrong.

use crate::protocol::{COMMAND_ID, REPLY_ID, op, reply};
use crate::version::Version24;
use bmsfw_plugin_api::CanFrame;
use std::fmt;

/// A command, GX to master.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Product, firmware, modules.
    Hello,
    /// Every module's entry.
    Modules,
    /// Start a transfer of `len` bytes.
    Begin {
        /// The bundle's length.
        len: u32,
    },
    /// Resume the transfer `token`.
    Resume {
        /// The token the master chose.
        token: u32,
    },
    /// Check the bundle.
    End,
    /// Install; `mask` bit `i - 1` selects module `i`, 0 selects all.
    Install {
        /// The modules to update.
        mask: u32,
    },
    /// Restart into the new image.
    Restart,
    /// Drop the transfer, stop the update.
    Abort,
    /// Acknowledge now.
    AckRequest,
}

impl Command {
    /// The command's 8 bytes.
    pub fn bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        match self {
            Command::Hello => b[0] = op::HELLO,
            Command::Modules => b[0] = op::MODULES,
            Command::Begin { len } => {
                b[0] = op::BEGIN;
                b[1..5].copy_from_slice(&len.to_le_bytes());
            }
            Command::Resume { token } => {
                b[0] = op::RESUME;
                b[1..5].copy_from_slice(&token.to_le_bytes());
            }
            Command::End => b[0] = op::END,
            Command::Install { mask } => {
                b[0] = op::INSTALL;
                b[1..5].copy_from_slice(&mask.to_le_bytes());
            }
            Command::Restart => b[0] = op::RESTART,
            Command::Abort => b[0] = op::ABORT,
            Command::AckRequest => b[0] = op::ACK_REQUEST,
        }
        b
    }

    /// The command as a frame on [`COMMAND_ID`].
    pub fn frame(self) -> CanFrame {
        CanFrame::new(COMMAND_ID, &self.bytes())
            .unwrap_or_else(|| unreachable!("8 bytes always make a frame"))
    }

    /// The command's opcode.
    pub fn opcode(self) -> u8 {
        self.bytes()[0]
    }

    /// The command's name, for messages.
    pub fn name(self) -> &'static str {
        name(self.opcode())
    }
}

/// The name of an opcode.
pub fn name(opcode: u8) -> &'static str {
    match opcode {
        op::HELLO => "HELLO",
        op::MODULES => "MODULES",
        op::BEGIN => "BEGIN",
        op::RESUME => "RESUME",
        op::END => "END",
        op::INSTALL => "INSTALL",
        op::RESTART => "RESTART",
        op::ABORT => "ABORT",
        op::ACK_REQUEST => "ACK-REQUEST",
        _ => "an unknown command",
    }
}

/// One entry of the MODULES answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleEntry {
    /// 0 the master, 1 to N the modules.
    pub index: u8,
    /// Hardware revision.
    pub hw_revision: u8,
    /// The version it runs.
    pub version: Version24,
    /// Its state.
    pub state: u8,
    /// Its last error, 0 for none.
    pub error: u8,
}

/// What the master's counts say (`PROTOCOL.md` section 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    /// Frames written: acknowledged.
    pub written: u32,
    /// The first frame missing.
    pub next: u32,
    /// One past the highest frame held.
    pub end: u32,
}

/// A reply, master to GX.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Answer to HELLO.
    Hello {
        /// Protocol revision.
        revision: u8,
        /// Product code.
        product_code: u16,
        /// The master's firmware.
        firmware: Version24,
        /// Modules behind the master.
        modules: u8,
    },
    /// One MODULES entry.
    Module(ModuleEntry),
    /// Answer to BEGIN.
    Begin {
        /// The transfer's token.
        token: u32,
        /// Frames the GX may have in flight.
        window: u16,
    },
    /// Answer to RESUME: resumed, with the master's counts (`end` equals `next`).
    Resumed(Counts),
    /// Answer to RESUME: the master does not hold that transfer.
    UnknownToken,
    /// Answer to END.
    End {
        /// 0 accepted, else the failed check's code.
        result: u8,
        /// The image entry or module the failure is about.
        detail: u8,
    },
    /// Answer to INSTALL.
    Install,
    /// Answer to RESTART.
    Restart,
    /// Answer to ABORT.
    Abort,
    /// An acknowledgement; `asked` when it answers an ACK-REQUEST.
    Ack {
        /// Whether it answers an ACK-REQUEST.
        asked: bool,
        /// The counts.
        counts: Counts,
    },
    /// Frames `first` to `first + count - 1` are missing.
    Nack {
        /// The first missing frame.
        first: u32,
        /// How many.
        count: u16,
    },
    /// Still working on `opcode`.
    Busy {
        /// The command.
        opcode: u8,
        /// Percent done.
        percent: u8,
    },
    /// `opcode` refused with `code`.
    Refused {
        /// The command.
        opcode: u8,
        /// Why.
        code: u8,
    },
}

/// Why a frame on the reply identifier is not a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyError {
    /// The frame, as candump prints it.
    pub frame: String,
    /// What is wrong.
    pub why: &'static str,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reply {} is malformed: {}", self.frame, self.why)
    }
}

fn le24(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], 0])
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads a frame of the master. `None` for frames on other identifiers.
pub fn parse(frame: &CanFrame) -> Option<Result<Reply, ReplyError>> {
    if frame.id() != REPLY_ID {
        return None;
    }
    let fail = |why| {
        Err(ReplyError {
            frame: frame.to_string(),
            why,
        })
    };
    let b = frame.data();
    if b.len() != 8 {
        return Some(fail("replies are 8 bytes"));
    }
    let counts = || {
        let written = le24(b, 1);
        let next = written + u32::from(le16(b, 4));
        Counts {
            written,
            next,
            end: next + u32::from(le16(b, 6)),
        }
    };
    let reply = match b[0] {
        reply::HELLO => Reply::Hello {
            revision: b[1],
            product_code: le16(b, 2),
            firmware: Version24::from_be([b[4], b[5], b[6]]),
            modules: b[7],
        },
        reply::MODULE => Reply::Module(ModuleEntry {
            index: b[1],
            hw_revision: b[2],
            version: Version24::from_be([b[3], b[4], b[5]]),
            state: b[6],
            error: b[7],
        }),
        reply::BEGIN => Reply::Begin {
            token: le32(b, 1),
            window: le16(b, 5),
        },
        reply::RESUME => match b[1] {
            0 => {
                let written = le24(b, 2);
                let next = written + u32::from(le16(b, 5));
                Reply::Resumed(Counts {
                    written,
                    next,
                    end: next,
                })
            }
            1 => Reply::UnknownToken,
            _ => return Some(fail("RESUME answers 00 or 01")),
        },
        reply::END => Reply::End {
            result: b[1],
            detail: b[2],
        },
        reply::INSTALL => Reply::Install,
        reply::RESTART => Reply::Restart,
        reply::ABORT => Reply::Abort,
        reply::ACK => Reply::Ack {
            asked: false,
            counts: counts(),
        },
        reply::ACK_ASKED => Reply::Ack {
            asked: true,
            counts: counts(),
        },
        reply::NACK => {
            let count = le16(b, 4);
            if count == 0 {
                return Some(fail("a NACK names at least one frame"));
            }
            Reply::Nack {
                first: le24(b, 1),
                count,
            }
        }
        reply::BUSY => Reply::Busy {
            opcode: b[1],
            percent: b[2],
        },
        reply::REFUSED => Reply::Refused {
            opcode: b[1],
            code: b[2],
        },
        _ => return Some(fail("unknown reply kind")),
    };
    Some(Ok(reply))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_plugin_api::CanId;

    fn frame(bytes: &[u8]) -> CanFrame {
        CanFrame::new(REPLY_ID, bytes).unwrap()
    }

    #[test]
    fn commands_have_the_documented_bytes() {
        assert_eq!(Command::Hello.bytes(), [1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            Command::Begin { len: 0x0012_3456 }.bytes(),
            [3, 0x56, 0x34, 0x12, 0, 0, 0, 0]
        );
        assert_eq!(
            Command::Resume { token: 0xA1B2_C3D4 }.bytes(),
            [4, 0xD4, 0xC3, 0xB2, 0xA1, 0, 0, 0]
        );
        assert_eq!(
            Command::Install { mask: 0b1010 }.bytes(),
            [6, 0x0A, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(Command::AckRequest.bytes()[0], 9);
        assert_eq!(Command::Restart.frame().id().raw(), 0x1B00_C0A1);
        assert_eq!(Command::Abort.name(), "ABORT");
    }

    #[test]
    fn replies_read_as_documented() {
        let r = |b: &[u8]| parse(&frame(b)).unwrap().unwrap();
        assert_eq!(
            r(&[0x81, 1, 0xA1, 0xC0, 1, 0x0F, 3, 4]),
            Reply::Hello {
                revision: 1,
                product_code: 0xC0A1,
                firmware: Version24([1, 0x0F, 3]),
                modules: 4
            }
        );
        assert_eq!(
            r(&[0x82, 2, 3, 2, 4, 7, 1, 0]),
            Reply::Module(ModuleEntry {
                index: 2,
                hw_revision: 3,
                version: Version24([2, 4, 7]),
                state: 1,
                error: 0
            })
        );
        assert_eq!(
            r(&[0x83, 0x78, 0x56, 0x34, 0x12, 0x00, 0x04, 0]),
            Reply::Begin {
                token: 0x1234_5678,
                window: 1024
            }
        );
        assert_eq!(
            r(&[0x84, 0, 0x00, 0x01, 0x00, 5, 0, 0]),
            Reply::Resumed(Counts {
                written: 256,
                next: 261,
                end: 261
            })
        );
        assert_eq!(r(&[0x84, 1, 0, 0, 0, 0, 0, 0]), Reply::UnknownToken);
        assert_eq!(
            r(&[0xA0, 0x80, 0, 0, 3, 0, 2, 0]),
            Reply::Ack {
                asked: false,
                counts: Counts {
                    written: 128,
                    next: 131,
                    end: 133
                }
            }
        );
        assert!(matches!(
            r(&[0xA2, 0, 0, 0, 0, 0, 0, 0]),
            Reply::Ack { asked: true, .. }
        ));
        assert_eq!(
            r(&[0xA1, 0x10, 0x27, 0, 2, 0, 0, 0]),
            Reply::Nack {
                first: 10000,
                count: 2
            }
        );
        assert_eq!(
            r(&[0xEE, 3, 0x12, 0, 0, 0, 0, 0]),
            Reply::Refused {
                opcode: 3,
                code: 0x12
            }
        );
    }

    #[test]
    fn malformed_replies_name_what_is_wrong() {
        let e = parse(&frame(&[0x81, 1])).unwrap().unwrap_err();
        assert!(e.to_string().contains("8 bytes"), "{e}");
        let e = parse(&frame(&[0x55; 8])).unwrap().unwrap_err();
        assert!(e.to_string().contains("unknown reply kind"), "{e}");
        let e = parse(&frame(&[0xA1, 0, 0, 0, 0, 0, 0, 0]))
            .unwrap()
            .unwrap_err();
        assert!(e.why.contains("at least one"));
        let e = parse(&frame(&[0x84, 7, 0, 0, 0, 0, 0, 0]))
            .unwrap()
            .unwrap_err();
        assert!(e.why.contains("00 or 01"));
        let other = CanFrame::new(CanId::extended(0x1B00_C0A1).unwrap(), &[0x81; 8]).unwrap();
        assert!(parse(&other).is_none());
    }

    proptest::proptest! {
        #[test]
        fn any_payload_parses_or_is_refused_without_panic(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..=8),
        ) {
            if let Some(Ok(Reply::Ack { counts, .. })) = parse(&frame(&bytes)) {
                proptest::prop_assert!(counts.written <= counts.next && counts.next <= counts.end);
            }
        }
    }
}
