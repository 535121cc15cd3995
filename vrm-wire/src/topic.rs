//! MQTT topics of the GX conventions, built and parsed.

use crate::error::{WireError, clip};
use crate::limits::MAX_TOPIC;
use crate::portal_id::PortalId;
use std::fmt;

/// Most segments of a device path after the instance (e.g. `Dc/0/Voltage` has 3).
pub const MAX_PATH_SEGMENTS: usize = 8;
/// Longest segment of a service name or a device path.
pub const MAX_SEGMENT: usize = 48;

/// A value on a GX: a service (`battery`, `system`, `settings`, `platform`), a device
/// instance and a path inside it (`Dc/0/Voltage`, without the leading slash).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DevicePath {
    service: String,
    instance: u32,
    path: String,
}

fn check_segment(topic: &str, what: &str, seg: &str) -> Result<(), WireError> {
    let bad = |reason: String| WireError::Topic {
        topic: clip(topic, 64),
        reason,
    };
    if seg.is_empty() || seg.len() > MAX_SEGMENT {
        return Err(bad(format!(
            "{what} segment must be 1 to {MAX_SEGMENT} characters, is {}",
            seg.len()
        )));
    }
    if let Some(c) = seg
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Err(bad(format!(
            "{what} segment {:?} contains {c:?}",
            clip(seg, 32)
        )));
    }
    Ok(())
}

impl DevicePath {
    /// Checks and builds a path: `service` and each `/`-separated segment of `path` are 1 to
    /// 48 ASCII letters, digits or `_`, with at most 8 segments.
    pub fn new(service: &str, instance: u32, path: &str) -> Result<DevicePath, WireError> {
        let shown = format!("{service}/{instance}/{path}");
        check_segment(&shown, "service", service)?;
        let segments: Vec<&str> = path.split('/').collect();
        if segments.len() > MAX_PATH_SEGMENTS {
            return Err(WireError::Topic {
                topic: clip(&shown, 64),
                reason: format!(
                    "path has {} segments, at most {MAX_PATH_SEGMENTS} are allowed",
                    segments.len()
                ),
            });
        }
        for seg in segments {
            check_segment(&shown, "path", seg)?;
        }
        Ok(DevicePath {
            service: service.to_owned(),
            instance,
            path: path.to_owned(),
        })
    }

    /// The service, e.g. `battery`.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The device instance.
    pub fn instance(&self) -> u32 {
        self.instance
    }

    /// The path inside the device, e.g. `Dc/0/Voltage`.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl fmt::Display for DevicePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.service, self.instance, self.path)
    }
}

/// A topic of the GX conventions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// `N/<portalId>/<service>/<instance>/<path>`: a value the GX publishes.
    Notify {
        /// The GX.
        portal: PortalId,
        /// The value.
        path: DevicePath,
    },
    /// `R/<portalId>/<service>/<instance>/<path>`: asks the GX to publish a value again.
    Read {
        /// The GX.
        portal: PortalId,
        /// The value.
        path: DevicePath,
    },
    /// `R/<portalId>/keepalive`: keeps the GX publishing.
    Keepalive {
        /// The GX.
        portal: PortalId,
    },
    /// `W/<portalId>/<service>/<instance>/<path>`: asks the GX to change a value.
    Write {
        /// The GX.
        portal: PortalId,
        /// The value.
        path: DevicePath,
    },
    /// `P/<portalId>/in`: remote commands to the GX.
    RpcIn {
        /// The GX.
        portal: PortalId,
    },
    /// `P/<portalId>/out`: the GX's replies to commands.
    RpcOut {
        /// The GX.
        portal: PortalId,
    },
}

impl Topic {
    /// Parses a topic. Anything else than the six forms above, an invalid portal id or
    /// path segment, wildcards, or more than 256 bytes is refused with the reason.
    pub fn parse(topic: &str) -> Result<Topic, WireError> {
        let bad = |reason: String| WireError::Topic {
            topic: clip(topic, 64),
            reason,
        };
        if topic.len() > MAX_TOPIC {
            return Err(bad(format!(
                "{} bytes, at most {MAX_TOPIC} are allowed",
                topic.len()
            )));
        }
        let mut parts = topic.splitn(3, '/');
        let kind = parts.next().unwrap_or_default();
        let portal = parts.next().ok_or_else(|| bad("has no portal id".into()))?;
        let portal = PortalId::new(portal).map_err(|e| bad(e.to_string()))?;
        let rest = parts
            .next()
            .ok_or_else(|| bad("ends after the portal id".into()))?;
        match (kind, rest) {
            ("R", "keepalive") => return Ok(Topic::Keepalive { portal }),
            ("P", "in") => return Ok(Topic::RpcIn { portal }),
            ("P", "out") => return Ok(Topic::RpcOut { portal }),
            ("P", _) => return Err(bad("P/ topics end in /in or /out".into())),
            ("N" | "R" | "W", _) => {}
            _ => {
                return Err(bad(format!(
                    "starts with {:?}; N, R, W or P expected",
                    clip(kind, 8)
                )));
            }
        }
        let mut rest = rest.splitn(3, '/');
        let service = rest.next().unwrap_or_default();
        let instance = rest
            .next()
            .ok_or_else(|| bad("has no device instance".into()))?;
        let path = rest
            .next()
            .ok_or_else(|| bad("has no path after the instance".into()))?;
        if instance.is_empty()
            || instance.len() > 10
            || !instance.bytes().all(|b| b.is_ascii_digit())
            || (instance.len() > 1 && instance.starts_with('0'))
        {
            return Err(bad(format!(
                "device instance {:?} is not a number (decimal, no leading zeros)",
                clip(instance, 16)
            )));
        }
        let instance: u32 = instance
            .parse()
            .map_err(|_| bad(format!("device instance {instance} is out of range")))?;
        let path = DevicePath::new(service, instance, path).map_err(|e| match e {
            WireError::Topic { reason, .. } => bad(reason),
            other => other,
        })?;
        Ok(match kind {
            "N" => Topic::Notify { portal, path },
            "R" => Topic::Read { portal, path },
            _ => Topic::Write { portal, path },
        })
    }

    /// The GX this topic belongs to.
    pub fn portal(&self) -> &PortalId {
        match self {
            Topic::Notify { portal, .. }
            | Topic::Read { portal, .. }
            | Topic::Keepalive { portal }
            | Topic::Write { portal, .. }
            | Topic::RpcIn { portal }
            | Topic::RpcOut { portal } => portal,
        }
    }

    /// The subscriptions of a GX: reads and keepalive, writes, and commands.
    pub fn gx_filters(portal: &PortalId) -> [String; 3] {
        [
            format!("R/{portal}/#"),
            format!("W/{portal}/#"),
            format!("P/{portal}/in"),
        ]
    }

    /// The subscriptions of the portal: every GX's values and replies.
    pub fn portal_filters() -> [&'static str; 2] {
        ["N/+/#", "P/+/out"]
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::Notify { portal, path } => write!(f, "N/{portal}/{path}"),
            Topic::Read { portal, path } => write!(f, "R/{portal}/{path}"),
            Topic::Keepalive { portal } => write!(f, "R/{portal}/keepalive"),
            Topic::Write { portal, path } => write!(f, "W/{portal}/{path}"),
            Topic::RpcIn { portal } => write!(f, "P/{portal}/in"),
            Topic::RpcOut { portal } => write!(f, "P/{portal}/out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pid() -> PortalId {
        PortalId::new("c0619ab1e2f3").unwrap()
    }

    #[test]
    fn every_form_round_trips() {
        let path = DevicePath::new("battery", 512, "Dc/0/Voltage").unwrap();
        let topics = [
            Topic::Notify {
                portal: pid(),
                path: path.clone(),
            },
            Topic::Read {
                portal: pid(),
                path: path.clone(),
            },
            Topic::Write {
                portal: pid(),
                path,
            },
            Topic::Keepalive { portal: pid() },
            Topic::RpcIn { portal: pid() },
            Topic::RpcOut { portal: pid() },
        ];
        let texts = [
            "N/c0619ab1e2f3/battery/512/Dc/0/Voltage",
            "R/c0619ab1e2f3/battery/512/Dc/0/Voltage",
            "W/c0619ab1e2f3/battery/512/Dc/0/Voltage",
            "R/c0619ab1e2f3/keepalive",
            "P/c0619ab1e2f3/in",
            "P/c0619ab1e2f3/out",
        ];
        for (topic, text) in topics.iter().zip(texts) {
            assert_eq!(topic.to_string(), text);
            assert_eq!(&Topic::parse(text).unwrap(), topic);
        }
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        let reason = |t: &str| match Topic::parse(t) {
            Err(WireError::Topic { reason, .. }) => reason,
            other => panic!("{t}: expected a topic error, got {other:?}"),
        };
        assert!(reason("X/abc/in").contains("N, R, W or P"));
        assert!(reason("P/abc/err").contains("/in or /out"));
        assert!(reason("N/abc/battery/x/Soc").contains("not a number"));
        assert!(reason("N/abc/battery/99999999999/Soc").contains("not a number"));
        assert!(reason("N/abc/battery/01/Soc").contains("leading zeros"));
        assert!(reason("N/abc/battery/4294967296/Soc").contains("out of range"));
        assert!(reason("N/abc/battery/1").contains("no path"));
        assert!(reason("N/abc/battery/1/Dc//Voltage").contains("path segment"));
        assert!(reason("N/abc/battery/1/#").contains("'#'"));
        assert!(reason("N/a+c/battery/1/Soc").contains("portal id"));
        assert!(reason("N").contains("no portal id"));
        assert!(reason(&format!("N/abc/battery/1/{}", "a/".repeat(200))).contains("bytes"));
        assert!(reason("N/abc/battery/1/a/b/c/d/e/f/g/h/i").contains("segments"));
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_what_parses_prints_back(s in "[NRWP/a-z0-9+#_]{0,80}") {
            if let Ok(topic) = Topic::parse(&s) {
                prop_assert_eq!(topic.to_string(), s);
            }
        }

        #[test]
        fn arbitrary_unicode_never_panics(s in "\\PC{0,300}") {
            let _ = Topic::parse(&s);
        }
    }
}
