//! The plugin host's wire protocol: length-prefixed postcard messages over a socketpair.
//!
//! Every message is a 4-byte little-endian length followed by that many bytes of a
//! postcard-encoded [`Request`] (engine to host) or [`Response`] (host to engine). The
//! host speaks first, with [`Response::Hello`] naming [`PROTOCOL_VERSION`]; after that it
//! answers each request with exactly one response, in order.
//!
//! The host runs third-party code, so the engine reads everything it sends as hostile: a
//! message longer than [`MAX_MESSAGE_LEN`], one that does not decode, or a response of the
//! wrong kind is a protocol violation, and every value is checked again by the engine's
//! contract checks (`PluginInfo::from_abi`, `SessionReport::from_abi`, ...) exactly as for
//! a plugin loaded in-process.

use bmsfw_plugin_api::{
    BatteryIdentity, CanFrame, DeviceMatch, Failure, FirmwareVersion, PackageError, PackageInfo,
    PluginIdentity, SessionOptions, SessionStatus, Timestamp,
};
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};

/// The protocol's version; the engine refuses a host that names another.
pub const PROTOCOL_VERSION: u16 = 1;

/// Longest message either side accepts, in bytes.
pub const MAX_MESSAGE_LEN: usize = 1 << 20;

/// The engine's requests.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// Load the library handed over as the library descriptor (its constructors, the
    /// contract and layout checks).
    Load,
    /// The plugin's identity.
    Identity,
    /// `match_battery`.
    MatchBattery(BatteryIdentity),
    /// `decode_version`.
    DecodeVersion(Vec<u8>),
    /// `inspect_package` on the package handed over as the package descriptor.
    InspectPackage,
    /// `start_session` on the package handed over as the package descriptor.
    StartSession {
        /// The battery.
        battery: BatteryIdentity,
        /// The engine's options.
        options: SessionOptions,
        /// A journaled checkpoint to resume from.
        resume: Option<Vec<u8>>,
    },
    /// One round of the session: the inputs in order, then up to `max_frames` frames.
    Step(Step),
    /// The session's checkpoint.
    Checkpoint,
}

/// One batched round trip of a session: what happened since the last one, and how many
/// frames the engine can send now.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Step {
    /// Inputs, in the order the engine produced them.
    pub inputs: Vec<Input>,
    /// The time of the round.
    pub now: Timestamp,
    /// Most frames the session may hand over this round (0: none, status only).
    pub max_frames: u32,
}

/// What the engine hands a session between two rounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Input {
    /// A received frame (`handle_frame`).
    Frame(Timestamp, CanFrame),
    /// `handle_timeout`, unconditionally.
    Timeout(Timestamp),
    /// Time passed: the host calls `handle_timeout(now)` when the session's own
    /// `poll_timeout` deadline is at or before `now`.
    TimerCheck(Timestamp),
    /// `abort`.
    Abort {
        /// When.
        now: Timestamp,
        /// The engine's code.
        code: u32,
        /// The engine's explanation.
        message: String,
    },
}

/// The host's answers.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    /// The host's first message.
    Hello {
        /// Its protocol version.
        protocol: u16,
    },
    /// The answer to [`Request::Load`].
    Loaded(Result<(), LoadRefusal>),
    /// The answer to [`Request::Identity`].
    Identity(Result<PluginIdentity, Failure>),
    /// The answer to [`Request::MatchBattery`].
    Matched(Result<DeviceMatch, Failure>),
    /// The answer to [`Request::DecodeVersion`].
    Decoded(Result<FirmwareVersion, Failure>),
    /// The answer to [`Request::InspectPackage`].
    Inspected(Result<PackageInfo, PackageError>),
    /// The answer to [`Request::StartSession`].
    Started(Result<(), Failure>),
    /// The answer to [`Request::Step`].
    Stepped(Stepped),
    /// The answer to [`Request::Checkpoint`].
    Checkpoint(Vec<u8>),
    /// The host cannot serve the request in its state (a step before a session, say).
    Refused(String),
}

/// The session after a round.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stepped {
    /// Frames to send, in order (at most the round's `max_frames`).
    pub frames: Vec<CanFrame>,
    /// The session's next deadline.
    pub timeout: Option<Timestamp>,
    /// The session's status after the round.
    pub status: SessionStatus,
    /// What the session read as the battery's running version (contract 1.1).
    pub running_version: Option<FirmwareVersion>,
}

/// Why the host could not load the library, as the in-process loader would say it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LoadRefusal {
    /// The dynamic loader refused the file, or it exports no plugin root module.
    NotAPlugin(String),
    /// Built with an incompatible abi_stable.
    AbiIncompatible(String),
    /// Built against another major contract version (the library's, as stated).
    ContractMismatch(String),
    /// The root module's layout differs (the library's contract, the differences).
    LayoutMismatch(String, String),
    /// The root module's constructor failed.
    RootModuleFailed(String),
    /// The identity entry point failed.
    IdentityFailed(Failure),
    /// The host could not prepare the library.
    Staging(String),
}

/// Writes one message.
pub fn write_message<T: Serialize>(out: &mut impl Write, message: &T) -> io::Result<()> {
    let bytes = encode(message)?;
    out.write_all(&bytes)
}

/// `message` with its length prefix.
pub fn encode<T: Serialize>(message: &T) -> io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; 4];
    bytes = postcard::to_extend(message, bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let len = bytes.len() - 4;
    if len > MAX_MESSAGE_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a message of {len} bytes, at most {MAX_MESSAGE_LEN} are allowed"),
        ));
    }
    bytes[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(bytes)
}

/// The length a message header announces, checked against [`MAX_MESSAGE_LEN`].
pub fn announced_len(header: [u8; 4]) -> Result<usize, String> {
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_MESSAGE_LEN {
        return Err(format!(
            "announced a message of {len} bytes, at most {MAX_MESSAGE_LEN} are allowed"
        ));
    }
    Ok(len)
}

/// Decodes a message body; every byte must be used.
pub fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, String> {
    match postcard::take_from_bytes::<T>(body) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(format!(
            "{} bytes left over after a {}-byte message",
            rest.len(),
            body.len()
        )),
        Err(e) => Err(format!(
            "a {}-byte message does not decode: {e}",
            body.len()
        )),
    }
}

/// Reads one message, blocking (the host's side).
pub fn read_message<T: for<'de> Deserialize<'de>>(input: &mut impl Read) -> io::Result<T> {
    let mut header = [0u8; 4];
    input.read_exact(&mut header)?;
    let len = announced_len(header).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut body = vec![0u8; len];
    input.read_exact(&mut body)?;
    decode(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_plugin_api::{CanId, Phase};

    #[test]
    fn a_step_and_its_answer_survive_the_wire() {
        let frame = CanFrame::new(CanId::standard(0x7E0).unwrap(), &[1, 2, 3]).unwrap();
        let step = Request::Step(Step {
            inputs: vec![
                Input::Frame(Timestamp::from_micros(5), frame),
                Input::TimerCheck(Timestamp::from_micros(9)),
            ],
            now: Timestamp::from_micros(10),
            max_frames: 8,
        });
        let bytes = encode(&step).unwrap();
        let back: Request = read_message(&mut &bytes[..]).unwrap();
        let Request::Step(back) = back else {
            panic!("not a step: {back:?}")
        };
        assert_eq!(back.inputs.len(), 2);
        assert!(matches!(back.inputs[0], Input::Frame(t, f) if f == frame && t.as_micros() == 5));
        let answer = Response::Stepped(Stepped {
            frames: vec![frame],
            timeout: Some(Timestamp::from_micros(99)),
            status: SessionStatus::new(Phase::TRANSFERRING, 3, 10),
            running_version: None,
        });
        let bytes = encode(&answer).unwrap();
        let back: Response = read_message(&mut &bytes[..]).unwrap();
        let Response::Stepped(back) = back else {
            panic!("not stepped")
        };
        assert_eq!(back.frames, vec![frame]);
        assert_eq!(back.status, SessionStatus::new(Phase::TRANSFERRING, 3, 10));
    }

    #[test]
    fn hostile_messages_are_refused_with_a_reason() {
        assert!(
            announced_len((MAX_MESSAGE_LEN as u32 + 1).to_le_bytes())
                .unwrap_err()
                .contains("at most")
        );
        // A frame with 9 data bytes: the tag of Stepped, one frame, id 0x7E0 standard,
        // then a 9-byte payload.
        let mut body = postcard::to_allocvec(&Response::Checkpoint(vec![])).unwrap();
        body.push(0);
        assert!(decode::<Response>(&body).unwrap_err().contains("left over"));
        let raw = postcard::to_allocvec(&(0x7E0u32, false, vec![0u8; 9])).unwrap();
        let err = decode::<CanFrame>(&raw).unwrap_err();
        assert!(err.contains("does not decode"), "{err}");
        let raw = postcard::to_allocvec(&(0x800u32, false, vec![0u8; 1])).unwrap();
        assert!(decode::<CanFrame>(&raw).is_err());
        assert!(decode::<Response>(&[0xFF, 0xFF]).is_err());
    }
}
