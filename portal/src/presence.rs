//! Whether each GX is online, as far as the portal can tell.
//!
//! Two things say a GX is gone: its last will (the broker publishes `{"value": 0}` on
//! `N/<portalId>/system/0/Connected` when the GX's connection dies without a goodbye), and
//! silence (nothing from the GX for longer than the configured interval; the GX answers
//! every keepalive, so a live GX is never silent that long). Any message from the GX
//! afterwards says it is back.
//!
//! Silence is measured from the last message, or from the portal's own latest connection
//! to the broker when that is later: while the portal itself is cut off it hears nobody,
//! and after it reconnects every GX gets the whole interval to show itself.
//!
//! Everything here is a pure function of what was heard and when, so it is tested without
//! a broker.

use bmsfw_vrm_wire::PresenceMessage;
use serde::Serialize;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Online, offline or not known yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Nothing heard yet since the portal connected to the broker.
    #[default]
    Unknown,
    /// Heard from within the interval, and no last will since.
    Online,
    /// Its last will arrived, or it was silent for longer than the interval.
    Offline,
}

/// Why the portal considers a GX offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OfflineCause {
    /// The broker published the GX's last will: its connection died.
    Will,
    /// Nothing was heard from the GX for longer than the interval.
    Silence,
}

/// The portal's verdict on one GX.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GxPresence {
    /// Online, offline or unknown.
    pub state: Presence,
    /// Since when it is offline (ms since the epoch): when the last will arrived, or the
    /// last contact before a silence. `None` while online, or when the portal never heard
    /// from the GX.
    pub offline_since: Option<u64>,
    /// Why it is offline.
    pub offline_cause: Option<OfflineCause>,
}

impl GxPresence {
    /// Whether the GX is offline.
    pub fn is_offline(&self) -> bool {
        self.state == Presence::Offline
    }

    /// "GX device offline since <time>", "GX device online", ... (times in UTC).
    pub fn label(&self) -> String {
        match (self.state, self.offline_since) {
            (Presence::Online, _) => "GX device online".into(),
            (Presence::Unknown, _) => "GX device not heard from yet".into(),
            (Presence::Offline, Some(since)) => {
                format!("GX device offline since {}", utc(since))
            }
            (Presence::Offline, None) => {
                "GX device offline (not heard from since the portal started)".into()
            }
        }
    }

    /// Why an update cannot start, for a refusal; `None` unless offline.
    pub fn refusal(&self, interval: Duration) -> Option<String> {
        if !self.is_offline() {
            return None;
        }
        let why = match self.offline_cause {
            Some(OfflineCause::Will) => "the MQTT broker reported its connection lost".to_owned(),
            _ => format!(
                "nothing was heard from it for longer than {} s",
                interval.as_secs().max(1)
            ),
        };
        let since = self
            .offline_since
            .map_or_else(|| "the portal started".to_owned(), utc);
        Some(format!(
            "the GX device is offline ({why}); last contact: {since}. An update can start \
             only while the GX device is online: check its internet connection and wait \
             until the portal shows it online again"
        ))
    }
}

/// `ms` since the epoch as an RFC 3339 time in UTC, to the second.
pub fn utc(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The wall clock now, in ms since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct WillSeen {
    /// When the GX went away, as far as known (ms since the epoch).
    since: Option<u64>,
}

/// What the portal has heard of one GX, and when.
#[derive(Debug, Clone, Default)]
pub struct PresenceTracker {
    /// The last message from the GX itself (monotonic clock, for the interval).
    last_contact: Option<Instant>,
    /// The same on the wall clock, as shown (ms since the epoch).
    last_contact_ms: Option<u64>,
    /// The last will, when it arrived after the last contact.
    will: Option<WillSeen>,
    /// The connection the GX last announced online.
    session: Option<String>,
}

impl PresenceTracker {
    /// What a restart of the portal knows of a GX: its last contact on the wall clock
    /// (from the portal's store), nothing on the monotonic clock. The GX counts as not
    /// heard from until it speaks, and as offline since that last contact once the
    /// interval passes in silence.
    pub fn restored(last_contact_ms: Option<u64>) -> PresenceTracker {
        PresenceTracker {
            last_contact_ms,
            ..PresenceTracker::default()
        }
    }

    /// A message from the GX arrived (a value, a reply): it is connected.
    pub fn contact(&mut self, at: Instant, at_ms: u64) {
        self.last_contact = Some(at);
        self.last_contact_ms = Some(at_ms);
        self.will = None;
    }

    /// The last contact, on the wall clock.
    pub fn last_contact_ms(&self) -> Option<u64> {
        self.last_contact_ms
    }

    /// A message on the presence topic. `retained`: the broker replayed it on subscribe
    /// (it tells the state at some earlier time, not that the GX speaks now).
    pub fn announced(
        &mut self,
        message: &PresenceMessage,
        retained: bool,
        at: Instant,
        at_ms: u64,
    ) {
        if message.online {
            if !retained {
                self.contact(at, at_ms);
            }
            self.will = None;
            if message.session.is_some() {
                self.session.clone_from(&message.session);
            }
            return;
        }
        if let (Some(current), Some(gone)) = (&self.session, &message.session)
            && current != gone
        {
            // The will of an older connection (the broker gave up on it only after the GX
            // had connected again): the GX is still here.
            tracing::debug!(%current, %gone, "ignoring the last will of an older connection");
            return;
        }
        let since = if retained {
            self.last_contact_ms
        } else {
            Some(at_ms)
        };
        self.will = Some(WillSeen { since });
    }

    /// The verdict at `now`: the portal (re)connected to the broker at `watching_since`,
    /// and a GX silent for longer than `interval` is offline.
    pub fn judge(&self, now: Instant, watching_since: Instant, interval: Duration) -> GxPresence {
        if let Some(will) = &self.will {
            return GxPresence {
                state: Presence::Offline,
                offline_since: will.since,
                offline_cause: Some(OfflineCause::Will),
            };
        }
        let heard = self
            .last_contact
            .map_or(watching_since, |c| c.max(watching_since));
        if now.saturating_duration_since(heard) > interval {
            return GxPresence {
                state: Presence::Offline,
                offline_since: self.last_contact_ms,
                offline_cause: Some(OfflineCause::Silence),
            };
        }
        let state = match self.last_contact {
            Some(c) if c >= watching_since => Presence::Online,
            _ => Presence::Unknown,
        };
        GxPresence {
            state,
            offline_since: None,
            offline_cause: None,
        }
    }

    /// When silence will make the GX offline, unless it speaks first; `None` when it is
    /// offline already (by its will, or silent since before `now`).
    pub fn deadline(
        &self,
        now: Instant,
        watching_since: Instant,
        interval: Duration,
    ) -> Option<Instant> {
        if self.will.is_some() {
            return None;
        }
        let heard = self
            .last_contact
            .map_or(watching_since, |c| c.max(watching_since));
        Some(heard + interval + Duration::from_millis(1)).filter(|d| *d > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(60);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn contact_keeps_a_gx_online_and_silence_makes_it_offline_since_the_last_contact() {
        let t0 = Instant::now();
        let mut p = PresenceTracker::default();
        assert_eq!(p.judge(t0, t0, INTERVAL).state, Presence::Unknown);
        p.contact(t0 + secs(1), 1_000);
        assert_eq!(p.judge(t0 + secs(2), t0, INTERVAL).state, Presence::Online);
        assert_eq!(p.judge(t0 + secs(61), t0, INTERVAL).state, Presence::Online);
        let v = p.judge(t0 + secs(62), t0, INTERVAL);
        assert_eq!(v.state, Presence::Offline);
        assert_eq!(v.offline_cause, Some(OfflineCause::Silence));
        assert_eq!(v.offline_since, Some(1_000));
        assert_eq!(
            p.deadline(t0 + secs(2), t0, INTERVAL),
            Some(t0 + secs(61) + Duration::from_millis(1))
        );
        assert_eq!(
            p.deadline(t0 + secs(62), t0, INTERVAL),
            None,
            "offline already"
        );
        // Any message brings it back.
        p.contact(t0 + secs(70), 70_000);
        assert_eq!(p.judge(t0 + secs(70), t0, INTERVAL).state, Presence::Online);
    }

    #[test]
    fn a_gx_never_heard_from_is_offline_once_the_interval_after_the_portal_connected_passed() {
        let t0 = Instant::now();
        let p = PresenceTracker::default();
        assert_eq!(
            p.judge(t0 + secs(60), t0, INTERVAL).state,
            Presence::Unknown
        );
        let v = p.judge(t0 + secs(61), t0, INTERVAL);
        assert_eq!(v.state, Presence::Offline);
        assert_eq!(v.offline_since, None);
        assert!(v.label().contains("offline"), "{}", v.label());
    }

    #[test]
    fn the_portals_own_reconnect_restarts_the_interval() {
        let t0 = Instant::now();
        let mut p = PresenceTracker::default();
        p.contact(t0, 5);
        // The portal was away for two minutes and just reconnected.
        let back = t0 + secs(120);
        let v = p.judge(back + secs(1), back, INTERVAL);
        assert_eq!(v.state, Presence::Unknown, "not heard since the reconnect");
        assert_eq!(
            p.judge(back + secs(61), back, INTERVAL).state,
            Presence::Offline
        );
    }

    #[test]
    fn the_last_will_makes_it_offline_at_once_until_the_gx_speaks_again() {
        let t0 = Instant::now();
        let mut p = PresenceTracker::default();
        let on = PresenceMessage::online("a-1").unwrap();
        p.announced(&on, false, t0, 1_000);
        assert_eq!(p.judge(t0, t0, INTERVAL).state, Presence::Online);
        let off = PresenceMessage::offline("a-1").unwrap();
        p.announced(&off, false, t0 + secs(5), 6_000);
        let v = p.judge(t0 + secs(5), t0, INTERVAL);
        assert_eq!(v.state, Presence::Offline);
        assert_eq!(v.offline_cause, Some(OfflineCause::Will));
        assert_eq!(v.offline_since, Some(6_000));
        assert_eq!(v.label(), format!("GX device offline since {}", utc(6_000)));
        assert!(v.refusal(INTERVAL).unwrap().contains("offline"));
        assert_eq!(p.deadline(t0, t0, INTERVAL), None);
        // The reconnect announces a new connection.
        let again = PresenceMessage::online("a-2").unwrap();
        p.announced(&again, false, t0 + secs(9), 10_000);
        assert_eq!(p.judge(t0 + secs(9), t0, INTERVAL).state, Presence::Online);
        assert_eq!(p.judge(t0 + secs(9), t0, INTERVAL).refusal(INTERVAL), None);
    }

    #[test]
    fn a_last_contact_from_before_a_restart_dates_a_silence() {
        let t0 = Instant::now();
        let p = PresenceTracker::restored(Some(4_000));
        assert_eq!(p.last_contact_ms(), Some(4_000));
        assert_eq!(p.judge(t0 + secs(1), t0, INTERVAL).state, Presence::Unknown);
        let v = p.judge(t0 + secs(61), t0, INTERVAL);
        assert_eq!(v.state, Presence::Offline);
        assert_eq!(v.offline_since, Some(4_000));
    }

    #[test]
    fn the_will_of_an_older_connection_is_ignored() {
        let t0 = Instant::now();
        let mut p = PresenceTracker::default();
        p.announced(&PresenceMessage::online("a-2").unwrap(), false, t0, 1);
        p.announced(&PresenceMessage::offline("a-1").unwrap(), false, t0, 2);
        assert_eq!(p.judge(t0, t0, INTERVAL).state, Presence::Online);
    }

    #[test]
    fn a_retained_will_dates_the_absence_from_the_last_contact() {
        let t0 = Instant::now();
        let mut p = PresenceTracker::default();
        // The portal starts and finds the will the broker kept.
        p.announced(&PresenceMessage::offline("a-1").unwrap(), true, t0, 9_000);
        let v = p.judge(t0, t0, INTERVAL);
        assert_eq!(v.state, Presence::Offline);
        assert_eq!(v.offline_since, None, "the portal cannot know when");
        // A retained "online" is no contact: the GX must still speak.
        let mut q = PresenceTracker::default();
        q.announced(&PresenceMessage::online("a-1").unwrap(), true, t0, 9_000);
        assert_eq!(q.judge(t0, t0, INTERVAL).state, Presence::Unknown);
        assert_eq!(
            q.judge(t0 + secs(61), t0, INTERVAL).state,
            Presence::Offline
        );
        // A value from the GX after a will: it is back.
        p.contact(t0 + secs(1), 10_000);
        assert_eq!(p.judge(t0 + secs(1), t0, INTERVAL).state, Presence::Online);
    }
}
