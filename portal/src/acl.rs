//! Who may publish and subscribe to what on the VRM broker.
//!
//! - a GX (user name = its portal id) subscribes only to its own `P/<id>/in`, `R/<id>/#` and
//!   `W/<id>/#`, and publishes only its own `N/<id>/#` and `P/<id>/out` (its last will
//!   included);
//! - the portal ([`PORTAL_USERNAME`]) subscribes to every GX's `N/+/#` and `P/+/out`, and is
//!   the only one that publishes requests to a GX: `P/+/in`, `R/+/#`, `W/+/#`;
//! - anything else is refused.
//!
//! The embedded broker enforces these rules itself ([`crate::broker`]); for mosquitto,
//! [`MOSQUITTO_ACL`] is the same rules as an ACL file (shipped as
//! `deploy/mosquitto/bmsfw.acl`).

pub use bmsfw_core::vrm::tls::PORTAL_USERNAME;
use bmsfw_vrm_wire::PortalId;

/// An authenticated client of the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The portal.
    Portal,
    /// A GX, by its portal id.
    Gx(String),
}

impl Role {
    /// The role of a user name, if it can have one.
    pub fn of(username: &str) -> Option<Role> {
        if username == PORTAL_USERNAME {
            return Some(Role::Portal);
        }
        PortalId::new(username)
            .ok()
            .map(|id| Role::Gx(id.as_str().to_owned()))
    }

    /// The user name of the role.
    pub fn username(&self) -> &str {
        match self {
            Role::Portal => PORTAL_USERNAME,
            Role::Gx(id) => id,
        }
    }

    fn subscribe_patterns(&self) -> Vec<String> {
        match self {
            Role::Portal => vec!["N/+/#".into(), "P/+/out".into()],
            Role::Gx(id) => vec![
                format!("P/{id}/in"),
                format!("R/{id}/#"),
                format!("W/{id}/#"),
            ],
        }
    }

    fn publish_patterns(&self) -> Vec<String> {
        match self {
            Role::Portal => vec!["P/+/in".into(), "R/+/#".into(), "W/+/#".into()],
            Role::Gx(id) => vec![format!("N/{id}/#"), format!("P/{id}/out")],
        }
    }

    /// Whether this client may subscribe to `filter`: every topic the filter matches
    /// must be one the role may read.
    pub fn may_subscribe(&self, filter: &str) -> bool {
        valid(filter) && self.subscribe_patterns().iter().any(|p| covers(p, filter))
    }

    /// Whether this client may publish on `topic` (a topic, never a filter).
    pub fn may_publish(&self, topic: &str) -> bool {
        valid(topic)
            && !topic.contains(['+', '#'])
            && self.publish_patterns().iter().any(|p| covers(p, topic))
    }
}

/// Not empty, no NUL, not a `$` topic (`$SYS`, `$share`: never for these clients).
fn valid(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('$') && !s.contains('\0') && s.len() <= 1024
}

/// Whether every topic matched by `filter` is matched by `pattern`.
fn covers(pattern: &str, filter: &str) -> bool {
    let mut p = pattern.split('/');
    let mut f = filter.split('/');
    loop {
        match (p.next(), f.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(level)) => {
                if level != "+" && level.contains(['+', '#']) || level == "#" {
                    return false;
                }
            }
            (Some(want), Some(level)) => {
                if want != level {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The rules as a mosquitto ACL file (`acl_file`): `pattern` lines apply to every user,
/// with `%u` the user name, so provisioning a GX never changes this file.
pub const MOSQUITTO_ACL: &str = "\
# bmsfw: who may read and write what on the VRM broker (docs/security.md).
# Every GX logs in with its portal id as user name; the portal as vrm.portal.

# Each GX (%u is the user name): its own requests in, its own values and replies out.
pattern read P/%u/in
pattern read R/%u/#
pattern read W/%u/#
pattern write N/%u/#
pattern write P/%u/out

# The portal: every GX's values and replies; the only one sending requests to a GX.
user vrm.portal
topic read N/+/#
topic read P/+/out
topic write P/+/in
topic write R/+/#
topic write W/+/#
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gx_reaches_its_own_topics_only() {
        let gx = Role::of("gx1").unwrap();
        for ok in [
            "P/gx1/in",
            "R/gx1/#",
            "W/gx1/#",
            "R/gx1/keepalive",
            "R/gx1/+/x",
        ] {
            assert!(gx.may_subscribe(ok), "{ok}");
        }
        for no in [
            "P/gx2/in",
            "P/+/in",
            "#",
            "+/gx1/#",
            "R/#",
            "R/+/#",
            "N/gx1/#",
            "P/gx1/out",
            "P/gx1/#",
            "$share/g/P/gx1/in",
            "$SYS/#",
            "P/gx1/in/#x",
            "R/gx1x/#",
            "P/gx1",
            "",
            "P/gx1/+",
        ] {
            assert!(!gx.may_subscribe(no), "{no}");
        }
        for ok in [
            "N/gx1/battery/512/Soc",
            "P/gx1/out",
            "N/gx1/system/0/Connected",
        ] {
            assert!(gx.may_publish(ok), "{ok}");
        }
        for no in [
            "P/gx1/in",
            "P/gx2/in",
            "N/gx2/x",
            "R/gx1/keepalive",
            "W/gx1/x",
            "N/gx1/#",
            "N/+/x",
            "P/gx1/out/x",
            "$SYS/x",
        ] {
            assert!(!gx.may_publish(no), "{no}");
        }
    }

    #[test]
    fn only_the_portal_sends_requests() {
        let portal = Role::of(PORTAL_USERNAME).unwrap();
        assert!(portal.may_publish("P/gx1/in"));
        assert!(portal.may_publish("R/gx1/keepalive"));
        assert!(portal.may_subscribe("N/+/#"));
        assert!(portal.may_subscribe("P/+/out"));
        assert!(!portal.may_publish("N/gx1/x"));
        assert!(!portal.may_publish("P/gx1/out"));
        assert!(!portal.may_subscribe("#"));
        assert_eq!(Role::of("not a user"), None);
        assert_eq!(Role::of(""), None);
    }

    #[test]
    fn the_shipped_mosquitto_acl_is_these_rules() {
        let shipped = include_str!("../../deploy/mosquitto/bmsfw.acl");
        assert_eq!(shipped, MOSQUITTO_ACL);
    }
}
