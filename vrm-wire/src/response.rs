//! Replies on `P/<portalId>/out`: `{"opResponse": {commandid, msgnr, finished, feedback}}`.

use crate::command::CommandId;
use crate::error::WireError;
use crate::event::{JobState, WireEvent, WireVersion};
use crate::limits::{MAX_ERROR_MESSAGE, MAX_EVENTS, MAX_RESPONSE_MESSAGE};
use crate::preflight::PreflightReport;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a command stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Accepted; work begins.
    Starting,
    /// In progress (an update past its upload: transferring, installing, ...).
    Running,
    /// The GX waits for chunks, from `first_missing` on; also the acknowledgement of a
    /// stored chunk.
    WaitingForChunks,
    /// Every chunk arrived, the digest matched and the package is staged.
    FileReceivedOk,
    /// Done; for an update, completed.
    Finished,
    /// Refused or failed; `error` and `error_code` say why.
    Error,
    /// A status this end does not know (a newer GX): the reply is still read, its other
    /// members still count.
    #[serde(other)]
    Unknown,
}

/// The body of a reply. `status`, `error` and `error_code` are always present (the last two
/// `null` unless the status is `error`); the other members only where they apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    /// Where the command stands.
    pub status: Status,
    /// The complete error message.
    pub error: Option<String>,
    /// The stable error code.
    pub error_code: Option<u32>,
    /// The job the command concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<u64>,
    /// The job's state. A state this end does not know (a newer GX) reads as none: the
    /// reply is still read.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::event::lenient"
    )]
    pub state: Option<JobState>,
    /// Progress of the state, 0 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u8>,
    /// The first chunk the GX still needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_missing: Option<u32>,
    /// The chunk this reply acknowledges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<u32>,
    /// Whether that chunk had already arrived before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<bool>,
    /// Bytes of the package on the GX.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_bytes: Option<u64>,
    /// Firmware before the update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_before: Option<WireVersion>,
    /// Firmware the package installs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_target: Option<WireVersion>,
    /// Firmware after the update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_after: Option<WireVersion>,
    /// The event log, for `geteventlog`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<WireEvent>>,
    /// The diagnostics bundle, for `getdiagnostics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<Value>,
    /// The answer of a `preflight`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preflight: Option<PreflightReport>,
}

impl Feedback {
    /// A feedback with `status` and nothing else.
    pub fn new(status: Status) -> Feedback {
        Feedback {
            status,
            error: None,
            error_code: None,
            job: None,
            state: None,
            percent: None,
            first_missing: None,
            chunk: None,
            duplicate: None,
            received_bytes: None,
            version_before: None,
            version_target: None,
            version_after: None,
            events: None,
            diagnostics: None,
            preflight: None,
        }
    }

    /// An error with its code and message (cut to [`MAX_ERROR_MESSAGE`] bytes).
    pub fn error(code: u32, message: impl Into<String>) -> Feedback {
        let mut message = message.into();
        if message.len() > MAX_ERROR_MESSAGE {
            let mut end = MAX_ERROR_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        Feedback {
            error: Some(message),
            error_code: Some(code),
            ..Feedback::new(Status::Error)
        }
    }

    fn validate(&self) -> Result<(), WireError> {
        let f = "opResponse.feedback";
        if let Some(p) = self.percent
            && p > 100
        {
            return Err(WireError::field(
                format!("{f}.percent"),
                format!("{p} is above 100"),
            ));
        }
        if let Some(e) = &self.error
            && e.len() > MAX_ERROR_MESSAGE
        {
            return Err(WireError::field(
                format!("{f}.error"),
                format!("{} bytes, at most {MAX_ERROR_MESSAGE}", e.len()),
            ));
        }
        if let Some(events) = &self.events
            && events.len() > usize::from(MAX_EVENTS)
        {
            return Err(WireError::field(
                format!("{f}.events"),
                format!("{} events, at most {MAX_EVENTS}", events.len()),
            ));
        }
        if self.status == Status::Error && self.error_code.is_none() {
            return Err(WireError::field(
                format!("{f}.error_code"),
                "an error reply must carry a code",
            ));
        }
        Ok(())
    }
}

/// One reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcResponse {
    /// The command's id (`null` when the command was unreadable).
    pub commandid: Option<CommandId>,
    /// The reply's number: it only grows, so the portal drops stale or repeated replies.
    pub msgnr: u64,
    /// Whether this is the command's last reply.
    pub finished: bool,
    /// The body.
    pub feedback: Feedback,
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    #[serde(rename = "opResponse")]
    op_response: T,
}

impl RpcResponse {
    /// The message bytes.
    pub fn encode(&self) -> Vec<u8> {
        // Plain data; serializes unless a diagnostics value holds a non-string map key,
        // which serde_json values cannot.
        serde_json::to_vec(&Envelope { op_response: self }).unwrap_or_default()
    }

    /// Parses a message of at most [`MAX_RESPONSE_MESSAGE`] bytes.
    pub fn parse(bytes: &[u8]) -> Result<RpcResponse, WireError> {
        WireError::check_size("response message", bytes.len(), MAX_RESPONSE_MESSAGE)?;
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let envelope: Envelope<RpcResponse> =
            serde_path_to_error::deserialize(&mut de).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if inner.is_syntax() || inner.is_eof() {
                    WireError::NotJson {
                        what: "response message",
                        reason: inner.to_string(),
                    }
                } else {
                    WireError::field(path.replace("op_response", "opResponse"), inner.to_string())
                }
            })?;
        de.end().map_err(|e| WireError::NotJson {
            what: "response message",
            reason: e.to_string(),
        })?;
        envelope.op_response.feedback.validate()?;
        Ok(envelope.op_response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn reply() -> RpcResponse {
        RpcResponse {
            commandid: Some(CommandId::new("c-1").unwrap()),
            msgnr: 12,
            finished: false,
            feedback: Feedback {
                job: Some(7),
                first_missing: Some(3),
                percent: Some(42),
                state: Some(JobState::Uploading),
                ..Feedback::new(Status::WaitingForChunks)
            },
        }
    }

    #[test]
    fn wire_shape_and_round_trip() {
        let v: Value = serde_json::from_slice(&reply().encode()).unwrap();
        assert_eq!(v["opResponse"]["commandid"], "c-1");
        assert_eq!(v["opResponse"]["msgnr"], 12);
        assert_eq!(v["opResponse"]["finished"], false);
        let fb = &v["opResponse"]["feedback"];
        assert_eq!(fb["status"], "waitingforchunks");
        assert_eq!(fb["error"], Value::Null);
        assert_eq!(fb["error_code"], Value::Null);
        assert_eq!(fb["first_missing"], 3);
        assert_eq!(fb["state"], "uploading");
        assert!(fb.get("events").is_none());
        assert_eq!(RpcResponse::parse(&reply().encode()).unwrap(), reply());
        let names: Vec<String> = [
            Status::Starting,
            Status::Running,
            Status::WaitingForChunks,
            Status::FileReceivedOk,
            Status::Finished,
            Status::Error,
        ]
        .iter()
        .map(|s| serde_json::to_string(s).unwrap())
        .collect();
        assert_eq!(
            names,
            [
                "\"starting\"",
                "\"running\"",
                "\"waitingforchunks\"",
                "\"filereceivedok\"",
                "\"finished\"",
                "\"error\""
            ]
        );
    }

    #[test]
    fn errors_carry_code_and_bounded_message() {
        let e = Feedback::error(705, "x".repeat(MAX_ERROR_MESSAGE + 10));
        assert_eq!(e.error.as_ref().unwrap().len(), MAX_ERROR_MESSAGE);
        let r = RpcResponse {
            commandid: None,
            msgnr: 1,
            finished: true,
            feedback: e,
        };
        assert_eq!(RpcResponse::parse(&r.encode()).unwrap(), r);
    }

    #[test]
    fn hostile_replies_are_refused_naming_the_field() {
        let field = |v: Value| match RpcResponse::parse(&serde_json::to_vec(&v).unwrap()) {
            Err(WireError::Field { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        };
        let mut v: Value = serde_json::from_slice(&reply().encode()).unwrap();
        v["opResponse"]["feedback"]["percent"] = json!(101);
        assert_eq!(field(v.clone()), "opResponse.feedback.percent");
        v["opResponse"]["feedback"]["percent"] = json!(1);
        // A status or state from a newer GX is read as unknown, not refused.
        v["opResponse"]["feedback"]["status"] = json!("exploded");
        v["opResponse"]["feedback"]["state"] = json!("rebalancing");
        let newer = RpcResponse::parse(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(newer.feedback.status, Status::Unknown);
        assert_eq!(newer.feedback.state, None);
        assert_eq!(newer.feedback.percent, Some(1));
        v["opResponse"]["feedback"]["state"] = json!("uploading");
        v["opResponse"]["feedback"]["status"] = json!("error");
        assert_eq!(field(v.clone()), "opResponse.feedback.error_code");
        v["opResponse"]["msgnr"] = json!("x");
        assert_eq!(field(v), "opResponse.msgnr");
        assert!(matches!(
            RpcResponse::parse(b"{\"opResponse\":"),
            Err(WireError::NotJson { .. })
        ));
        assert!(matches!(
            RpcResponse::parse(&vec![b' '; MAX_RESPONSE_MESSAGE + 1]),
            Err(WireError::TooLarge { .. })
        ));
    }

    proptest! {
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let _ = RpcResponse::parse(&bytes);
        }

        #[test]
        fn mutated_replies_never_misread(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)
        ) {
            let mut bytes = reply().encode();
            for (i, b) in &flips {
                let i = i.index(bytes.len());
                bytes[i] = *b;
            }
            if let Ok(parsed) = RpcResponse::parse(&bytes) {
                prop_assert_eq!(RpcResponse::parse(&parsed.encode()).unwrap(), parsed);
            }
        }
    }
}
