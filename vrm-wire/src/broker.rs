//! The address of an MQTT broker, as given on the command line: `mqtts://host:port` (TLS)
//! or `mqtt://host:port` (plain TCP, which the link allows only towards loopback or when
//! the configuration says `insecure = true`).

use crate::error::{WireError, clip};
use std::fmt;
use std::str::FromStr;

/// The default MQTT port.
pub const DEFAULT_PORT: u16 = 1883;
/// The default port of MQTT over TLS.
pub const DEFAULT_TLS_PORT: u16 = 8883;

/// An MQTT broker's host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BrokerAddr {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// TLS (`mqtts://`).
    pub tls: bool,
}

impl BrokerAddr {
    /// `mqtt://host:port`: plain TCP.
    pub fn new(host: impl Into<String>, port: u16) -> BrokerAddr {
        BrokerAddr {
            host: host.into(),
            port,
            tls: false,
        }
    }

    /// `mqtts://host:port`: TLS.
    pub fn tls(host: impl Into<String>, port: u16) -> BrokerAddr {
        BrokerAddr {
            host: host.into(),
            port,
            tls: true,
        }
    }

    /// Whether the host is a loopback address (`localhost`, 127.0.0.0/8, `::1`): the only
    /// place where plain MQTT is acceptable without saying so.
    pub fn is_loopback(&self) -> bool {
        if self.host.eq_ignore_ascii_case("localhost") {
            return true;
        }
        self.host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    }
}

impl FromStr for BrokerAddr {
    type Err = WireError;

    /// Parses `mqtts://host[:port]` (TLS, port 8883 by default) or `mqtt://host[:port]`
    /// (plain, port 1883 by default); `[::1]` style IPv6 hosts are accepted.
    fn from_str(s: &str) -> Result<BrokerAddr, WireError> {
        let bad =
            |reason: String| WireError::field("broker", format!("{:?}: {reason}", clip(s, 64)));
        let (tls, rest) = if let Some(rest) = s.strip_prefix("mqtts://") {
            (true, rest)
        } else if let Some(rest) = s.strip_prefix("mqtt://") {
            (false, rest)
        } else {
            return Err(bad("must start with mqtts:// or mqtt://".into()));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in the host".into()))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad("expected :port after ]".into()))?,
                ),
            };
            (host, port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() || host.len() > 253 {
            return Err(bad("the host is empty or too long".into()));
        }
        if let Some(c) = host
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_')))
        {
            return Err(bad(format!("the host contains {c:?}")));
        }
        let port = match port {
            None if tls => DEFAULT_TLS_PORT,
            None => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad(format!("port {:?} is not 1 to 65535", clip(p, 8))))?,
        };
        Ok(BrokerAddr {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

impl fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_hosts_ports_and_ipv6() {
        let a: BrokerAddr = "mqtt://127.0.0.1:18830".parse().unwrap();
        assert_eq!(a, BrokerAddr::new("127.0.0.1", 18830));
        assert_eq!(a.to_string(), "mqtt://127.0.0.1:18830");
        let d: BrokerAddr = "mqtt://broker.example".parse().unwrap();
        assert_eq!(d.port, DEFAULT_PORT);
        let v6: BrokerAddr = "mqtt://[::1]:1884".parse().unwrap();
        assert_eq!(v6, BrokerAddr::new("::1", 1884));
        assert_eq!(v6.to_string(), "mqtt://[::1]:1884");
        let t: BrokerAddr = "mqtts://vrm.example".parse().unwrap();
        assert_eq!(t, BrokerAddr::tls("vrm.example", DEFAULT_TLS_PORT));
        assert_eq!(t.to_string(), "mqtts://vrm.example:8883");
        assert!(!t.is_loopback());
        assert!(BrokerAddr::new("127.0.0.2", 1).is_loopback());
        assert!(BrokerAddr::new("::1", 1).is_loopback());
        assert!(BrokerAddr::new("LocalHost", 1).is_loopback());
        assert!(!BrokerAddr::new("10.0.0.1", 1).is_loopback());
        assert!(!BrokerAddr::new("localhost.evil.example", 1).is_loopback());
        for bad in [
            "tcp://x:1",
            "mqtts:/x:1",
            "MQTTS://x:1",
            "mqtt://",
            "mqtt://x:0",
            "mqtt://x:65536",
            "mqtt://x:y",
            "mqtt://a b:1",
            "mqtt://[::1",
            "mqtt://[::1]1883",
        ] {
            assert!(bad.parse::<BrokerAddr>().is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_display_parses_back(s in "\\PC{0,80}") {
            if let Ok(a) = s.parse::<BrokerAddr>() {
                prop_assert_eq!(a.to_string().parse::<BrokerAddr>().unwrap(), a);
            }
        }
    }
}
