//! What the `venus` source has heard, and the site values it makes of it (sans-IO).
//!
//! Every message of a watched topic is kept with the time it arrived. A value counts only
//! while it is fresh: received within the staleness bound (the source re-reads every
//! value once per refresh period, so a fresh value is never older than that unless Venus
//! OS stopped answering). The three values of the gates are computed from the kept
//! messages at a given time, each [`SiteValue::Unknown`] with the reason when it cannot
//! be decided.

use super::paths;
use crate::gates::{GridStatus, GxFirmware, SiteValue};
use crate::vrm::VrmPortalMode;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// One message's payload, as dbus-flashmq publishes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// `{"value": ...}` with a valid value.
    Value(serde_json::Value),
    /// `{"value": null}`: the D-Bus value is invalid.
    Invalid,
    /// Empty: the service left the D-Bus.
    Gone,
    /// Not JSON with a `value`.
    Malformed(String),
}

impl Payload {
    /// Reads a message's bytes.
    pub fn parse(bytes: &[u8]) -> Payload {
        if bytes.is_empty() {
            return Payload::Gone;
        }
        match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(serde_json::Value::Object(mut map)) => match map.remove("value") {
                Some(serde_json::Value::Null) => Payload::Invalid,
                Some(v) => Payload::Value(v),
                None => Payload::Malformed("a JSON object without \"value\"".into()),
            },
            Ok(_) => Payload::Malformed("JSON that is not an object".into()),
            Err(_) => Payload::Malformed(format!(
                "not JSON: {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
            )),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    payload: Payload,
    at: Instant,
}

/// The source's view of Venus OS.
#[derive(Debug)]
pub struct VenusState {
    portal_id: String,
    stale_after: Duration,
    /// Messages by path below `N/<portal id>/`.
    entries: BTreeMap<String, Entry>,
    /// Why nothing can be known (the broker is not reachable), when so.
    offline: Option<String>,
}

impl VenusState {
    /// Nothing heard yet; `offline` says why until the broker answers.
    pub fn new(portal_id: &str, stale_after: Duration, offline: String) -> VenusState {
        VenusState {
            portal_id: portal_id.to_owned(),
            stale_after,
            entries: BTreeMap::new(),
            offline: Some(offline),
        }
    }

    /// The broker is reachable again: values count once they arrive anew.
    pub fn online(&mut self) {
        self.offline = None;
        self.entries.clear();
    }

    /// The broker is not reachable: every value is unknown, with `why`.
    pub fn offline(&mut self, why: String) {
        self.offline = Some(why);
        self.entries.clear();
    }

    /// A message on `topic` (a full `N/...` topic) at `now`. Returns whether it is one of
    /// the watched topics.
    pub fn message(&mut self, topic: &str, payload: &[u8], now: Instant) -> bool {
        let Some(path) = topic
            .strip_prefix("N/")
            .and_then(|t| t.strip_prefix(self.portal_id.as_str()))
            .and_then(|t| t.strip_prefix('/'))
        else {
            return false;
        };
        if !paths::watched(path) {
            return false;
        }
        self.entries.insert(
            path.to_owned(),
            Entry {
                payload: Payload::parse(payload),
                at: now,
            },
        );
        true
    }

    /// The inverter/charger (`vebus`) instances heard of.
    pub fn vebus_instances(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .entries
            .keys()
            .filter_map(|k| k.strip_prefix("vebus/"))
            .filter_map(|k| k.split_once('/').map(|(i, _)| i.to_owned()))
            .collect();
        out.dedup();
        out
    }

    fn topic(&self, path: &str) -> String {
        format!("N/{}/{path}", self.portal_id)
    }

    /// The valid value of `path` at `now`, or why there is none.
    fn read(&self, path: &str, now: Instant) -> Result<&serde_json::Value, String> {
        if let Some(why) = &self.offline {
            return Err(why.clone());
        }
        let topic = self.topic(path);
        let Some(entry) = self.entries.get(path) else {
            return Err(format!("no value received on {topic}"));
        };
        let age = now.saturating_duration_since(entry.at);
        if age > self.stale_after {
            return Err(format!(
                "{topic} stale: last received {:.0} s ago, the limit is {} s",
                age.as_secs_f64(),
                self.stale_after.as_secs()
            ));
        }
        match &entry.payload {
            Payload::Value(v) => Ok(v),
            Payload::Invalid => Err(format!("Venus OS reports {topic} invalid (null)")),
            Payload::Gone => Err(format!("the service of {topic} left Venus OS's D-Bus")),
            Payload::Malformed(what) => Err(format!("{topic} carries {what}")),
        }
    }

    fn read_int(&self, path: &str, now: Instant) -> Result<i64, String> {
        let v = self.read(path, now)?;
        v.as_i64()
            .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .ok_or_else(|| format!("{} is {v}, not an integer", self.topic(path)))
    }

    /// `/Settings/Network/VrmPortal` at `now`.
    pub fn vrm_portal(&self, now: Instant) -> SiteValue<VrmPortalMode> {
        let n = match self.read_int(paths::VRM_PORTAL, now) {
            Ok(n) => n,
            Err(why) => return SiteValue::Unknown(why),
        };
        match VrmPortalMode::from_number(n) {
            Ok(mode) => SiteValue::Known(mode),
            Err(_) => SiteValue::Unknown(format!(
                "{} is {n}, not 0 (off), 1 (read-only) or 2 (full)",
                self.topic(paths::VRM_PORTAL)
            )),
        }
    }

    /// The GX firmware at `now`.
    pub fn gx_firmware(&self, now: Instant) -> SiteValue<GxFirmware> {
        let v = match self.read(paths::FIRMWARE_VERSION, now) {
            Ok(v) => v,
            Err(why) => return SiteValue::Unknown(why),
        };
        let Some(text) = v.as_str() else {
            return SiteValue::Unknown(format!(
                "{} is {v}, not a version string",
                self.topic(paths::FIRMWARE_VERSION)
            ));
        };
        match GxFirmware::parse(text) {
            Ok(f) => SiteValue::Known(f),
            Err(why) => {
                SiteValue::Unknown(format!("{}: {why}", self.topic(paths::FIRMWARE_VERSION)))
            }
        }
    }

    /// The grid at `now`, from `system` `/Ac/ActiveIn/Source` and the inverter/chargers'
    /// `/Ac/ActiveIn/Connected` and `/State` (see `docs/venus.md`).
    pub fn grid(&self, now: Instant) -> SiteValue<GridStatus> {
        if let Some(why) = &self.offline {
            return SiteValue::Unknown(why.clone());
        }
        let source_topic = self.topic(paths::AC_SOURCE);
        let source_null = matches!(
            self.entries.get(paths::AC_SOURCE),
            Some(Entry { payload: Payload::Invalid, at })
                if now.saturating_duration_since(*at) <= self.stale_after
        );
        if source_null {
            // No inverter/charger gives the system an active input: decide from the
            // inverter/chargers if any was ever heard of, else there is no AC input.
            return if self.vebus_instances().is_empty() {
                SiteValue::Known(GridStatus::NotMonitored)
            } else {
                self.grid_from_vebus(now)
            };
        }
        match self.read_int(paths::AC_SOURCE, now) {
            Err(why) => SiteValue::Unknown(why),
            Ok(paths::SOURCE_INVERTING) => SiteValue::Known(GridStatus::Lost),
            Ok(1..=3) => match self.grid_from_vebus(now) {
                SiteValue::Known(GridStatus::Lost) => SiteValue::Known(GridStatus::Lost),
                _ => SiteValue::Known(GridStatus::Connected),
            },
            Ok(0) => self.grid_from_vebus(now),
            Ok(n) => SiteValue::Unknown(format!(
                "{source_topic} is {n}, not 0 (not available), 1 (grid), 2 (generator), \
                 3 (shore) or 240 (inverting)"
            )),
        }
    }

    /// The grid as the inverter/chargers see it: an AC input not connected is a grid
    /// loss; an inverter/charger inverting with no connection reported is one too.
    fn grid_from_vebus(&self, now: Instant) -> SiteValue<GridStatus> {
        let instances = self.vebus_instances();
        let mut connected = false;
        for i in &instances {
            match self.read_int(&paths::vebus(i, paths::VEBUS_AC_CONNECTED), now) {
                Ok(0) => return SiteValue::Known(GridStatus::Lost),
                Ok(1) => connected = true,
                _ => {
                    if self.read_int(&paths::vebus(i, paths::VEBUS_STATE), now)
                        == Ok(paths::STATE_INVERTING)
                    {
                        return SiteValue::Known(GridStatus::Lost);
                    }
                }
            }
        }
        if connected {
            SiteValue::Known(GridStatus::Connected)
        } else {
            SiteValue::Unknown(format!(
                "{} does not name a connected input and no inverter/charger reports its AC \
                 input (N/{}/vebus/<instance>/{})",
                self.topic(paths::AC_SOURCE),
                self.portal_id,
                paths::VEBUS_AC_CONNECTED
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORTAL: &str = "c0619ab00000";

    fn state() -> (VenusState, Instant) {
        let mut s = VenusState::new(PORTAL, Duration::from_secs(30), "not connected".into());
        s.online();
        (s, Instant::now())
    }

    fn put(s: &mut VenusState, path: &str, payload: &str, at: Instant) {
        assert!(s.message(&format!("N/{PORTAL}/{path}"), payload.as_bytes(), at));
    }

    #[test]
    fn payloads_read_as_dbus_flashmq_writes_them() {
        assert_eq!(
            Payload::parse(br#"{"value": 2}"#),
            Payload::Value(serde_json::json!(2))
        );
        assert_eq!(
            Payload::parse(br#"{"max":2,"min":0,"value":1}"#),
            Payload::Value(serde_json::json!(1))
        );
        assert_eq!(Payload::parse(br#"{"value": null}"#), Payload::Invalid);
        assert_eq!(Payload::parse(b""), Payload::Gone);
        assert!(matches!(Payload::parse(b"2"), Payload::Malformed(_)));
        assert!(matches!(Payload::parse(b"{}"), Payload::Malformed(_)));
        assert!(matches!(Payload::parse(b"\xff"), Payload::Malformed(_)));
    }

    #[test]
    fn vrm_portal_is_known_only_fresh_and_valid() {
        let (mut s, t0) = state();
        assert_eq!(
            s.vrm_portal(t0),
            SiteValue::Unknown(format!(
                "no value received on N/{PORTAL}/settings/0/Settings/Network/VrmPortal"
            ))
        );
        put(&mut s, paths::VRM_PORTAL, r#"{"value": 2}"#, t0);
        assert_eq!(s.vrm_portal(t0), SiteValue::Known(VrmPortalMode::Full));
        let later = t0 + Duration::from_secs(31);
        assert!(s.vrm_portal(later).to_string().contains("stale"));
        put(&mut s, paths::VRM_PORTAL, r#"{"value": 1}"#, later);
        assert_eq!(
            s.vrm_portal(later),
            SiteValue::Known(VrmPortalMode::ReadOnly)
        );
        for bad in [
            r#"{"value": 7}"#,
            r#"{"value": "full"}"#,
            r#"{"value": null}"#,
            "",
        ] {
            put(&mut s, paths::VRM_PORTAL, bad, later);
            assert!(s.vrm_portal(later).known().is_none(), "{bad}");
        }
        // Other portals and other paths are not watched.
        assert!(!s.message(
            "N/otherportal/settings/0/Settings/Network/VrmPortal",
            b"{\"value\":2}",
            later
        ));
        assert!(!s.message(&format!("N/{PORTAL}/battery/512/Soc"), b"{}", later));
        s.offline("broker gone".into());
        assert_eq!(
            s.vrm_portal(later),
            SiteValue::Unknown("broker gone".into())
        );
    }

    #[test]
    fn firmware_reads_the_platform_version() {
        let (mut s, t0) = state();
        put(
            &mut s,
            paths::FIRMWARE_VERSION,
            r#"{"value": "v3.70~12"}"#,
            t0,
        );
        assert_eq!(s.gx_firmware(t0).to_string(), "v3.70~12");
        put(
            &mut s,
            paths::FIRMWARE_VERSION,
            r#"{"value": "banana"}"#,
            t0,
        );
        assert!(
            s.gx_firmware(t0)
                .to_string()
                .contains("not a Venus OS version")
        );
        put(&mut s, paths::FIRMWARE_VERSION, r#"{"value": 360}"#, t0);
        assert!(s.gx_firmware(t0).known().is_none());
    }

    #[test]
    fn the_grid_follows_the_active_input_and_the_inverter_charger() {
        let (mut s, t0) = state();
        let grid = |s: &VenusState| s.grid(t0);
        assert!(grid(&s).known().is_none(), "nothing heard");
        put(&mut s, paths::AC_SOURCE, r#"{"value": 1}"#, t0);
        assert_eq!(grid(&s), SiteValue::Known(GridStatus::Connected));
        put(&mut s, paths::AC_SOURCE, r#"{"value": 240}"#, t0);
        assert_eq!(grid(&s), SiteValue::Known(GridStatus::Lost));
        put(&mut s, paths::AC_SOURCE, r#"{"value": 99}"#, t0);
        assert!(grid(&s).to_string().contains("is 99"));
        // No inverter/charger at all: no AC input to lose.
        put(&mut s, paths::AC_SOURCE, r#"{"value": null}"#, t0);
        assert_eq!(grid(&s), SiteValue::Known(GridStatus::NotMonitored));
        // An inverter/charger inverting without its input.
        put(
            &mut s,
            "vebus/276/Ac/ActiveIn/Connected",
            r#"{"value": 0}"#,
            t0,
        );
        put(&mut s, "vebus/276/State", r#"{"value": 9}"#, t0);
        assert_eq!(grid(&s), SiteValue::Known(GridStatus::Lost));
        put(&mut s, paths::AC_SOURCE, r#"{"value": 2}"#, t0);
        assert_eq!(grid(&s), SiteValue::Known(GridStatus::Lost), "vebus wins");
        put(
            &mut s,
            "vebus/276/Ac/ActiveIn/Connected",
            r#"{"value": 1}"#,
            t0,
        );
        put(&mut s, "vebus/276/State", r#"{"value": 3}"#, t0);
        assert_eq!(grid(&s), SiteValue::Known(GridStatus::Connected));
        assert_eq!(s.vebus_instances(), vec!["276".to_owned()]);
        // Source invalid while an inverter/charger was heard of: it decides.
        put(&mut s, paths::AC_SOURCE, r#"{"value": null}"#, t0);
        assert_eq!(grid(&s), SiteValue::Known(GridStatus::Connected));
        put(&mut s, "vebus/276/Ac/ActiveIn/Connected", "", t0);
        put(&mut s, "vebus/276/State", "", t0);
        assert!(grid(&s).known().is_none(), "the inverter/charger left");
        // Stale source.
        put(&mut s, paths::AC_SOURCE, r#"{"value": 1}"#, t0);
        assert!(
            s.grid(t0 + Duration::from_secs(31))
                .to_string()
                .contains("stale")
        );
    }
}
