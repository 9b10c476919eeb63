//! Remote-address patterns of the ACL's white lists, as RocketMQ's `plain_acl.yml` writes
//! them (`RemoteAddressStrategyFactory`):
//!
//! - `""`: matches nothing (an account without a white list);
//! - `*` (or `*.*.*.*`): matches every address;
//! - an IPv4 address whose segments are each a number, a range `a-b`, `*`, or a set `{a,b,c}`
//!   (RocketMQ allows the set only in the last segment and `*` only as trailing segments; we
//!   accept them in any segment, a superset), e.g. `192.168.0.*`, `10.1.1.1-20`,
//!   `192.168.1.{1,2,3}`;
//! - an IPv6 address, matched exactly (IPv4-mapped IPv6 peers match the IPv4 patterns).

use std::net::{IpAddr, Ipv6Addr};

/// One white-list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressPattern {
    Nothing,
    Everything,
    V4([Segment; 4]),
    V6(Ipv6Addr),
}

/// One IPv4 segment's allowed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Range(u8, u8),
    Set(Vec<u8>),
}

impl Segment {
    fn matches(&self, v: u8) -> bool {
        match self {
            Segment::Range(lo, hi) => (*lo..=*hi).contains(&v),
            Segment::Set(values) => values.contains(&v),
        }
    }

    fn parse(s: &str) -> Option<Segment> {
        let num = |t: &str| t.trim().parse::<u8>().ok();
        if s == "*" {
            return Some(Segment::Range(0, 255));
        }
        if let Some(inner) = s.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            let values: Option<Vec<u8>> = inner.split(',').map(num).collect();
            return values.filter(|v| !v.is_empty()).map(Segment::Set);
        }
        if let Some((lo, hi)) = s.split_once('-') {
            let (lo, hi) = (num(lo)?, num(hi)?);
            return (lo <= hi).then_some(Segment::Range(lo, hi));
        }
        num(s).map(|v| Segment::Range(v, v))
    }
}

impl AddressPattern {
    /// Parses one entry; `None` names no valid pattern.
    pub fn parse(text: &str) -> Option<AddressPattern> {
        let text = text.trim();
        if text.is_empty() {
            return Some(AddressPattern::Nothing);
        }
        if text == "*" || text == "*.*.*.*" {
            return Some(AddressPattern::Everything);
        }
        if text.contains(':') {
            return text.parse().ok().map(AddressPattern::V6);
        }
        let parts: Vec<&str> = text.split('.').collect();
        let [a, b, c, d] = parts.as_slice() else { return None };
        Some(AddressPattern::V4([
            Segment::parse(a)?,
            Segment::parse(b)?,
            Segment::parse(c)?,
            Segment::parse(d)?,
        ]))
    }

    pub fn matches(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        match (self, ip) {
            (AddressPattern::Nothing, _) => false,
            (AddressPattern::Everything, _) => true,
            (AddressPattern::V4(segments), IpAddr::V4(v4)) => {
                segments.iter().zip(v4.octets()).all(|(s, o)| s.matches(o))
            }
            (AddressPattern::V6(want), IpAddr::V6(v6)) => *want == v6,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, ip: &str) -> bool {
        AddressPattern::parse(pattern).expect(pattern).matches(ip.parse().unwrap())
    }

    #[test]
    fn patterns_match_as_rocketmq_writes_them() {
        assert!(!m("", "127.0.0.1"));
        assert!(m("*", "10.0.0.1") && m("*.*.*.*", "::1"));
        assert!(m("192.168.0.7", "192.168.0.7") && !m("192.168.0.7", "192.168.0.8"));
        assert!(m("192.168.0.*", "192.168.0.200") && !m("192.168.0.*", "192.168.1.2"));
        assert!(m("192.168.*.*", "192.168.3.4"));
        assert!(m("10.1.1.1-20", "10.1.1.20") && !m("10.1.1.1-20", "10.1.1.21"));
        assert!(m("192.168.1.{1,2,3}", "192.168.1.2") && !m("192.168.1.{1,2,3}", "192.168.1.4"));
        assert!(m("127.0.0.1", "::ffff:127.0.0.1"), "an IPv4-mapped peer");
        assert!(m("::1", "::1") && !m("::1", "127.0.0.1"));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in ["1.2.3", "1.2.3.4.5", "1.2.3.256", "1.2.3.9-1", "1.2.3.{}", "a.b.c.d", "::g"] {
            assert_eq!(AddressPattern::parse(bad), None, "{bad}");
        }
    }
}
