//! Whether a GX is connected to the broker: `N/<portalId>/system/0/Connected`, a retained
//! value the MQTT last will keeps honest.
//!
//! Each time the GX connects it sets a last will on this topic (`{"value": 0}`, retained)
//! and publishes `{"value": 1}` there, retained: a reconnect replaces the will the broker
//! published when the previous connection died. Both carry the name of the connection
//! (`session`), so a reader can tell a stale will (the broker noticed an old, half-open
//! connection only after the GX had connected again) from a real one. Readers that only
//! know the `{"value": ...}` envelope see 1 or 0.
//!
//! Unlike the other `N/` values this one is published at every connect, without waiting
//! for a keepalive, and it is the only retained one.

use crate::envelope::object;
use crate::error::{WireError, clip};
use crate::portal_id::PortalId;
use crate::topic::{DevicePath, Topic};
use serde_json::{Map, Value};

/// The value's service.
pub const PRESENCE_SERVICE: &str = "system";
/// The value's path inside `system/0`.
pub const PRESENCE_PATH: &str = "Connected";
/// Longest connection name.
pub const MAX_SESSION: usize = 64;

/// The device path of the presence value, `system/0/Connected`.
pub fn presence_path() -> DevicePath {
    // A fixed, valid path.
    DevicePath::new(PRESENCE_SERVICE, 0, PRESENCE_PATH).expect("a valid device path")
}

/// Whether `path` is the presence value.
pub fn is_presence(path: &DevicePath) -> bool {
    path.service() == PRESENCE_SERVICE && path.instance() == 0 && path.path() == PRESENCE_PATH
}

/// The presence topic of a GX, `N/<portalId>/system/0/Connected`.
pub fn presence_topic(portal: &PortalId) -> String {
    Topic::Notify {
        portal: portal.clone(),
        path: presence_path(),
    }
    .to_string()
}

/// One presence message: online (published by the GX when it connects) or offline (its
/// last will, published by the broker when the connection dies without a goodbye).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceMessage {
    /// 1: connected; 0: the connection is gone.
    pub online: bool,
    /// The connection this is about: 1 to 64 letters, digits, `_` or `-` (absent in
    /// messages from other publishers).
    pub session: Option<String>,
}

fn check_session(s: &str) -> Result<(), WireError> {
    if s.is_empty() || s.len() > MAX_SESSION {
        return Err(WireError::field(
            "session",
            format!("must be 1 to {MAX_SESSION} characters, is {}", s.len()),
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(WireError::field(
            "session",
            format!("{:?} contains {c:?}", clip(s, 32)),
        ));
    }
    Ok(())
}

impl PresenceMessage {
    /// The GX is connected, on connection `session`.
    pub fn online(session: &str) -> Result<PresenceMessage, WireError> {
        check_session(session)?;
        Ok(PresenceMessage {
            online: true,
            session: Some(session.to_owned()),
        })
    }

    /// Connection `session` of the GX is gone (its last will).
    pub fn offline(session: &str) -> Result<PresenceMessage, WireError> {
        check_session(session)?;
        Ok(PresenceMessage {
            online: false,
            session: Some(session.to_owned()),
        })
    }

    /// The message bytes: `{"value": 1, "session": "..."}`.
    pub fn encode(&self) -> Vec<u8> {
        let mut map = Map::new();
        map.insert("value".into(), Value::from(u8::from(self.online)));
        if let Some(s) = &self.session {
            map.insert("session".into(), Value::String(s.clone()));
        }
        serde_json::to_vec(&Value::Object(map)).unwrap_or_default()
    }

    /// Parses a presence message: `value` 0 or 1, `session` optional.
    pub fn parse(bytes: &[u8]) -> Result<PresenceMessage, WireError> {
        let mut map = object(bytes, "presence message")?;
        let online = match map.remove("value") {
            Some(v) if v.as_u64() == Some(1) => true,
            Some(v) if v.as_u64() == Some(0) => false,
            Some(_) => return Err(WireError::field("value", "must be 0 or 1")),
            None => return Err(WireError::field("value", "missing")),
        };
        let session = match map.remove("session") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                check_session(&s)?;
                Some(s)
            }
            Some(_) => return Err(WireError::field("session", "must be a string")),
        };
        Ok(PresenceMessage { online, session })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_topic_follows_the_gx_conventions() {
        let pid = PortalId::new("c0619ab1e2f3").unwrap();
        let topic = presence_topic(&pid);
        assert_eq!(topic, "N/c0619ab1e2f3/system/0/Connected");
        match Topic::parse(&topic).unwrap() {
            Topic::Notify { path, .. } => assert!(is_presence(&path)),
            other => panic!("{other:?}"),
        }
        let other = DevicePath::new("system", 0, "Serial").unwrap();
        assert!(!is_presence(&other));
    }

    #[test]
    fn messages_round_trip_and_read_as_plain_values() {
        let on = PresenceMessage::online("1a2b-3").unwrap();
        let json: Value = serde_json::from_slice(&on.encode()).unwrap();
        assert_eq!(json, serde_json::json!({"value": 1, "session": "1a2b-3"}));
        assert_eq!(PresenceMessage::parse(&on.encode()).unwrap(), on);
        let off = PresenceMessage::offline("1a2b-3").unwrap();
        assert_eq!(PresenceMessage::parse(&off.encode()).unwrap(), off);
        // Any reader of the value envelope sees 1 or 0.
        let n = crate::Notification::parse(&off.encode()).unwrap();
        assert_eq!(n.value, Some(Value::from(0)));
        // Without a session (another publisher).
        let bare = PresenceMessage::parse(br#"{"value": 1}"#).unwrap();
        assert_eq!(bare.session, None);
        assert!(bare.online);
    }

    #[test]
    fn refusals_name_the_field() {
        for (bytes, field) in [
            (&br#"{"value": 2}"#[..], "value"),
            (br#"{"value": "1"}"#, "value"),
            (br#"{}"#, "value"),
            (br#"{"value": 1, "session": 5}"#, "session"),
            (br#"{"value": 1, "session": "a/b"}"#, "session"),
            (br#"{"value": 1, "session": ""}"#, "session"),
        ] {
            match PresenceMessage::parse(bytes) {
                Err(WireError::Field { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{}: {other:?}", String::from_utf8_lossy(bytes)),
            }
        }
        assert!(PresenceMessage::online(&"x".repeat(65)).is_err());
        assert!(PresenceMessage::parse(b"not json").is_err());
    }

    proptest! {
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = PresenceMessage::parse(&bytes);
        }
    }
}
