//! The address of an MQTT broker, as given on the command line: `mqtt://host:port`.

use crate::error::{WireError, clip};
use std::fmt;
use std::str::FromStr;

/// The default MQTT port.
pub const DEFAULT_PORT: u16 = 1883;

/// An MQTT broker's host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BrokerAddr {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl BrokerAddr {
    /// `host:port`.
    pub fn new(host: impl Into<String>, port: u16) -> BrokerAddr {
        BrokerAddr {
            host: host.into(),
            port,
        }
    }
}

impl FromStr for BrokerAddr {
    type Err = WireError;

    /// Parses `mqtt://host[:port]` (port 1883 by default); `[::1]` style IPv6 hosts are
    /// accepted. TLS (`mqtts://`) is not supported.
    fn from_str(s: &str) -> Result<BrokerAddr, WireError> {
        let bad =
            |reason: String| WireError::field("broker", format!("{:?}: {reason}", clip(s, 64)));
        let rest = s
            .strip_prefix("mqtt://")
            .ok_or_else(|| bad("must start with mqtt://".into()))?;
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
            None => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad(format!("port {:?} is not 1 to 65535", clip(p, 8))))?,
        };
        Ok(BrokerAddr::new(host, port))
    }
}

impl fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "mqtt://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "mqtt://{}:{}", self.host, self.port)
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
        for bad in [
            "tcp://x:1",
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
