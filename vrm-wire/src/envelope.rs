//! The `{"value": ...}` envelope of `N/`, `R/` and `W/` messages, and keepalive options.

use crate::command::CommandId;
use crate::error::WireError;
use crate::limits::MAX_VALUE_MESSAGE;
use serde_json::{Map, Value};

pub(crate) fn object(bytes: &[u8], what: &'static str) -> Result<Map<String, Value>, WireError> {
    WireError::check_size(what, bytes.len(), MAX_VALUE_MESSAGE)?;
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(WireError::field(
            "(message)",
            format!("must be a JSON object, is {}", kind_of(&other)),
        )),
        Err(e) => Err(WireError::NotJson {
            what,
            reason: e.to_string(),
        }),
    }
}

pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A value published on an `N/` topic: `{"value": X}`, where `null` means the value is
/// invalid (unknown right now).
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The value, `None` when invalid.
    pub value: Option<Value>,
}

impl Notification {
    /// A valid value.
    pub fn new(value: impl Into<Value>) -> Notification {
        Notification {
            value: Some(value.into()),
        }
    }

    /// An invalid (unknown) value.
    pub fn invalid() -> Notification {
        Notification { value: None }
    }

    /// The message bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut map = Map::new();
        map.insert("value".into(), self.value.clone().unwrap_or(Value::Null));
        // A map of JSON values always serializes.
        serde_json::to_vec(&Value::Object(map)).unwrap_or_default()
    }

    /// Parses a message of at most [`MAX_VALUE_MESSAGE`] bytes; it must be an object with
    /// a `value` member (other members are ignored).
    pub fn parse(bytes: &[u8]) -> Result<Notification, WireError> {
        let mut map = object(bytes, "value message")?;
        match map.remove("value") {
            Some(Value::Null) => Ok(Notification::invalid()),
            Some(v) => Ok(Notification { value: Some(v) }),
            None => Err(WireError::field("value", "missing")),
        }
    }
}

/// A write on a `W/` topic: `{"value": X}`, optionally with a `commandid` under which the GX
/// answers on `P/<portalId>/out`.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteRequest {
    /// The value to write (`None` for `null`).
    pub value: Option<Value>,
    /// The id the reply carries, when the writer gave one.
    pub commandid: Option<CommandId>,
}

impl WriteRequest {
    /// Parses a write of at most [`MAX_VALUE_MESSAGE`] bytes.
    pub fn parse(bytes: &[u8]) -> Result<WriteRequest, WireError> {
        let mut map = object(bytes, "write message")?;
        let commandid = match map.remove("commandid") {
            None | Some(Value::Null) => None,
            Some(v) => {
                Some(CommandId::from_json(&v).map_err(|r| WireError::field("commandid", r))?)
            }
        };
        let value = match map.remove("value") {
            Some(Value::Null) => None,
            Some(v) => Some(v),
            None => return Err(WireError::field("value", "missing")),
        };
        Ok(WriteRequest { value, commandid })
    }

    /// The message bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut map = Map::new();
        map.insert("value".into(), self.value.clone().unwrap_or(Value::Null));
        if let Some(id) = &self.commandid {
            map.insert("commandid".into(), Value::String(id.as_str().to_owned()));
        }
        serde_json::to_vec(&Value::Object(map)).unwrap_or_default()
    }
}

/// The options of an `R/<portalId>/keepalive` message. An empty payload means none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeepaliveOptions {
    /// `suppress-republish`: keep publishing changes but skip the full dump of every value.
    pub suppress_republish: bool,
}

/// Most options one keepalive may list.
const MAX_KEEPALIVE_OPTIONS: usize = 16;

impl KeepaliveOptions {
    /// Parses a keepalive payload: empty, or `{"keepalive-options": [..]}`. Unknown option
    /// names are ignored, as a GX does; anything else than strings is refused.
    pub fn parse(bytes: &[u8]) -> Result<KeepaliveOptions, WireError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(KeepaliveOptions::default());
        }
        let map = object(bytes, "keepalive message")?;
        let mut options = KeepaliveOptions::default();
        match map.get("keepalive-options") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                if list.len() > MAX_KEEPALIVE_OPTIONS {
                    return Err(WireError::field(
                        "keepalive-options",
                        format!("{} options, at most {MAX_KEEPALIVE_OPTIONS}", list.len()),
                    ));
                }
                for (i, item) in list.iter().enumerate() {
                    match item {
                        Value::String(s) if s == "suppress-republish" => {
                            options.suppress_republish = true;
                        }
                        Value::String(_) => {}
                        other => {
                            return Err(WireError::field(
                                format!("keepalive-options[{i}]"),
                                format!("must be a string, is {}", kind_of(other)),
                            ));
                        }
                    }
                }
            }
            Some(other) => {
                return Err(WireError::field(
                    "keepalive-options",
                    format!("must be an array, is {}", kind_of(other)),
                ));
            }
        }
        Ok(options)
    }

    /// The message bytes (empty without options).
    pub fn encode(&self) -> Vec<u8> {
        if self.suppress_republish {
            br#"{"keepalive-options":["suppress-republish"]}"#.to_vec()
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn values_and_null_round_trip() {
        let n = Notification::new(52.3);
        assert_eq!(n.encode(), br#"{"value":52.3}"#);
        assert_eq!(Notification::parse(&n.encode()).unwrap(), n);
        assert_eq!(Notification::invalid().encode(), br#"{"value":null}"#);
        assert_eq!(
            Notification::parse(br#"{"value":null}"#).unwrap(),
            Notification::invalid()
        );
        assert_eq!(
            Notification::parse(br#"{"value":[1,2]}"#).unwrap().value,
            Some(json!([1, 2]))
        );
    }

    #[test]
    fn malformed_values_name_the_problem() {
        assert_eq!(
            Notification::parse(b"{}"),
            Err(WireError::field("value", "missing"))
        );
        assert!(matches!(
            Notification::parse(b"{\"value\":"),
            Err(WireError::NotJson { .. })
        ));
        assert!(matches!(
            Notification::parse(b"[1]"),
            Err(WireError::Field { reason, .. }) if reason.contains("an array")
        ));
        let big = format!("{{\"value\":\"{}\"}}", "x".repeat(MAX_VALUE_MESSAGE));
        assert!(matches!(
            Notification::parse(big.as_bytes()),
            Err(WireError::TooLarge { .. })
        ));
    }

    #[test]
    fn writes_carry_an_optional_command_id() {
        let w = WriteRequest::parse(br#"{"value":1,"commandid":"w-1"}"#).unwrap();
        assert_eq!(w.value, Some(json!(1)));
        assert_eq!(w.commandid.as_ref().map(CommandId::as_str), Some("w-1"));
        assert_eq!(WriteRequest::parse(&w.encode()).unwrap(), w);
        assert!(WriteRequest::parse(br#"{"value":1,"commandid":"a/b"}"#).is_err());
        assert!(WriteRequest::parse(br#"{"commandid":"x"}"#).is_err());
    }

    #[test]
    fn a_written_number_reads_back_to_the_same_value() {
        // A number whose nearest double the default fast parser misses by one ulp: the
        // value a writer sent must be the value the GX acts on, and re-encoding it must
        // not change it.
        let w = WriteRequest::parse(br#"{"value":2.5555555550555558}"#).unwrap();
        let n = w.value.as_ref().and_then(Value::as_f64).unwrap();
        assert_eq!(n, "2.5555555550555558".parse::<f64>().unwrap());
        assert_eq!(WriteRequest::parse(&w.encode()).unwrap(), w);
    }

    #[test]
    fn keepalive_options() {
        assert_eq!(
            KeepaliveOptions::parse(b"").unwrap(),
            KeepaliveOptions::default()
        );
        let s = KeepaliveOptions::parse(br#"{"keepalive-options":["suppress-republish","x"]}"#)
            .unwrap();
        assert!(s.suppress_republish);
        assert_eq!(KeepaliveOptions::parse(&s.encode()).unwrap(), s);
        assert!(KeepaliveOptions::parse(br#"{"keepalive-options":[1]}"#).is_err());
        assert!(KeepaliveOptions::parse(br#"{"keepalive-options":"x"}"#).is_err());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Notification::parse(&bytes);
            let _ = WriteRequest::parse(&bytes);
            let _ = KeepaliveOptions::parse(&bytes);
        }
    }
}
