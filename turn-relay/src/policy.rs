//! Peer-address policy: which peers a client may reach through the relay.
//!
//! Applied in CreatePermission, ChannelBind, Send and to inbound peer traffic.
//! Every address is normalised first (`::ffff:127.0.0.1` is `127.0.0.1`), otherwise
//! a v4-mapped literal would walk straight past the IPv4 loopback rule.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// IPv4-mapped IPv6 → IPv4; everything else unchanged.
pub fn normalize_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

pub fn normalize_addr(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(normalize_ip(a.ip()), a.port())
}

/// An inclusive address range, as coturn writes them (`a-b`, `a`, or CIDR `a/n`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRange {
    start: IpAddr,
    end: IpAddr,
}

impl IpRange {
    pub fn parse(s: &str) -> Result<IpRange, String> {
        let s = s.trim();
        let bad = || format!("bad address range {s:?}");
        if let Some((a, b)) = s.split_once('-') {
            let a: IpAddr = a.trim().parse().map_err(|_| bad())?;
            let b: IpAddr = b.trim().parse().map_err(|_| bad())?;
            let (a, b) = (normalize_ip(a), normalize_ip(b));
            if a.is_ipv4() != b.is_ipv4() || a > b {
                return Err(bad());
            }
            return Ok(IpRange { start: a, end: b });
        }
        if let Some((a, n)) = s.split_once('/') {
            let a: IpAddr = normalize_ip(a.trim().parse().map_err(|_| bad())?);
            let n: u32 = n.trim().parse().map_err(|_| bad())?;
            return match a {
                IpAddr::V4(v4) if n <= 32 => {
                    let mask = if n == 0 { 0 } else { u32::MAX << (32 - n) };
                    let lo = u32::from(v4) & mask;
                    Ok(IpRange {
                        start: Ipv4Addr::from(lo).into(),
                        end: Ipv4Addr::from(lo | !mask).into(),
                    })
                }
                IpAddr::V6(v6) if n <= 128 => {
                    let mask = if n == 0 { 0 } else { u128::MAX << (128 - n) };
                    let lo = u128::from(v6) & mask;
                    Ok(IpRange {
                        start: Ipv6Addr::from(lo).into(),
                        end: Ipv6Addr::from(lo | !mask).into(),
                    })
                }
                _ => Err(bad()),
            };
        }
        let a = normalize_ip(s.parse().map_err(|_| bad())?);
        Ok(IpRange { start: a, end: a })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // IpAddr orders all V4 before all V6, so mixed families never match.
        ip.is_ipv4() == self.start.is_ipv4() && self.start <= ip && ip <= self.end
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    Loopback,
    Unspecified,
    Multicast,
    LinkLocal,
    Broadcast,
    DeniedRange,
    OwnAddress,
}

#[derive(Clone, Debug, Default)]
pub struct PeerPolicy {
    pub allow_loopback: bool,
    pub allow_multicast: bool,
    pub denied: Vec<IpRange>,
    pub allowed: Vec<IpRange>,
    /// Exact transport addresses a client may reach even where the rules above deny their IP
    /// (an SFU beside an embedded relay on loopback or a private address): only that port of
    /// that IP is opened, in both directions; other ports of the IP stay denied.
    pub allowed_addrs: Vec<SocketAddr>,
    /// The relay's own listening sockets. A peer may not be one of them, which stops
    /// a client looping the relay into itself. Relay ports are deliberately not
    /// listed: two clients of the same relay talking to each other's relayed
    /// addresses is the normal relay-to-relay WebRTC case.
    pub own: Vec<SocketAddr>,
}

impl PeerPolicy {
    /// Check a peer IP (permissions are per IP, RFC 8656 §9). An IP named by an
    /// `allowed_addrs` entry passes here; [`PeerPolicy::check_addr`] and
    /// [`PeerPolicy::check_inbound`] then hold its traffic to that entry's port.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Denied> {
        let ip = normalize_ip(ip);
        if self
            .allowed_addrs
            .iter()
            .any(|a| normalize_ip(a.ip()) == ip)
        {
            return Ok(());
        }
        self.check_ip_by_rules(ip)
    }

    /// The IP rules alone, without `allowed_addrs`.
    fn check_ip_by_rules(&self, ip: IpAddr) -> Result<(), Denied> {
        let unspecified = match ip {
            IpAddr::V4(v4) => v4.octets()[0] == 0, // 0.0.0.0/8: "this network"
            IpAddr::V6(v6) => v6.is_unspecified(),
        };
        if unspecified {
            return Err(Denied::Unspecified);
        }
        // An explicit allow beats every default rule and every deny (coturn's order).
        if self.allowed.iter().any(|r| r.contains(ip)) {
            return Ok(());
        }
        if ip.is_loopback() && !self.allow_loopback {
            return Err(Denied::Loopback);
        }
        if ip.is_multicast() && !self.allow_multicast {
            return Err(Denied::Multicast);
        }
        match ip {
            IpAddr::V4(v4) if v4.is_link_local() => return Err(Denied::LinkLocal),
            IpAddr::V4(v4) if v4.is_broadcast() => return Err(Denied::Broadcast),
            IpAddr::V6(v6) if v6.is_unicast_link_local() => return Err(Denied::LinkLocal),
            _ => {}
        }
        if self.denied.iter().any(|r| r.contains(ip)) {
            return Err(Denied::DeniedRange);
        }
        Ok(())
    }

    /// Check a full peer transport address (Send, ChannelBind, outgoing data).
    pub fn check_addr(&self, addr: SocketAddr) -> Result<(), Denied> {
        let addr = normalize_addr(addr);
        if self.is_allowed_addr(addr) {
            return Ok(());
        }
        self.check_ip_by_rules(addr.ip())?;
        if self.is_own(addr) {
            return Err(Denied::OwnAddress);
        }
        Ok(())
    }

    /// May data from `peer` (already normalised), whose IP holds a permission, reach the
    /// client? Permissions are per IP, so an IP let in only through an `allowed_addrs`
    /// entry must be held to that entry's port here. Free when `allowed_addrs` is empty.
    pub fn check_inbound(&self, peer: SocketAddr) -> Result<(), Denied> {
        if self.is_own(peer) {
            return Err(Denied::OwnAddress);
        }
        if self.allowed_addrs.is_empty() || self.is_allowed_addr(peer) {
            return Ok(());
        }
        self.check_ip_by_rules(peer.ip())
    }

    fn is_allowed_addr(&self, addr: SocketAddr) -> bool {
        self.allowed_addrs
            .iter()
            .any(|a| normalize_addr(*a) == addr)
    }

    /// Is `addr` (already normalised) one of our listeners? A wildcard listener
    /// matches its port on loopback.
    pub fn is_own(&self, addr: SocketAddr) -> bool {
        self.own.iter().any(|o| {
            o.port() == addr.port()
                && (normalize_ip(o.ip()) == addr.ip()
                    || (o.ip().is_unspecified() && addr.ip().is_loopback()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn default_denies_special_ranges() {
        let p = PeerPolicy::default();
        for (a, why) in [
            ("127.0.0.1", Denied::Loopback),
            ("127.8.9.10", Denied::Loopback),
            ("::1", Denied::Loopback),
            ("0.0.0.0", Denied::Unspecified),
            ("0.1.2.3", Denied::Unspecified),
            ("::", Denied::Unspecified),
            ("224.0.0.1", Denied::Multicast),
            ("ff02::1", Denied::Multicast),
            ("169.254.1.1", Denied::LinkLocal),
            ("fe80::1", Denied::LinkLocal),
            ("255.255.255.255", Denied::Broadcast),
        ] {
            assert_eq!(p.check_ip(ip(a)), Err(why), "{a}");
        }
        assert_eq!(p.check_ip(ip("192.0.2.1")), Ok(()));
        assert_eq!(p.check_ip(ip("2001:db8::1")), Ok(()));
    }

    #[test]
    fn v4_mapped_is_normalised_before_checks() {
        let p = PeerPolicy::default();
        assert_eq!(p.check_ip(ip("::ffff:127.0.0.1")), Err(Denied::Loopback));
        assert_eq!(p.check_ip(ip("::ffff:0.0.0.0")), Err(Denied::Unspecified));
        assert_eq!(p.check_ip(ip("::ffff:224.1.1.1")), Err(Denied::Multicast));
        assert_eq!(p.check_ip(ip("::ffff:169.254.9.9")), Err(Denied::LinkLocal));
        let mut d = PeerPolicy::default();
        d.denied
            .push(IpRange::parse("10.0.0.0-10.255.255.255").unwrap());
        assert_eq!(d.check_ip(ip("::ffff:10.1.2.3")), Err(Denied::DeniedRange));
        assert_eq!(
            normalize_addr("[::ffff:192.0.2.1]:9".parse().unwrap()),
            "192.0.2.1:9".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn allow_flags_and_allowed_ranges() {
        let p = PeerPolicy {
            allow_loopback: true,
            allow_multicast: true,
            ..Default::default()
        };
        assert_eq!(p.check_ip(ip("127.0.0.1")), Ok(()));
        assert_eq!(p.check_ip(ip("::ffff:127.0.0.1")), Ok(()));
        assert_eq!(p.check_ip(ip("224.0.0.1")), Ok(()));
        // Unspecified is never a destination, whatever is allowed.
        let q = PeerPolicy {
            allowed: vec![IpRange::parse("0.0.0.0/0").unwrap()],
            ..Default::default()
        };
        assert_eq!(q.check_ip(ip("0.0.0.0")), Err(Denied::Unspecified));
        assert_eq!(q.check_ip(ip("127.0.0.1")), Ok(()));
        // allowed-peer-ip overrides denied-peer-ip.
        let r = PeerPolicy {
            denied: vec![IpRange::parse("10.0.0.0/8").unwrap()],
            allowed: vec![IpRange::parse("10.1.1.1").unwrap()],
            ..Default::default()
        };
        assert_eq!(r.check_ip(ip("10.1.1.1")), Ok(()));
        assert_eq!(r.check_ip(ip("10.1.1.2")), Err(Denied::DeniedRange));
    }

    #[test]
    fn own_listener_is_denied() {
        let p = PeerPolicy {
            allow_loopback: true,
            own: vec![
                "0.0.0.0:3478".parse().unwrap(),
                "192.0.2.5:5349".parse().unwrap(),
            ],
            ..Default::default()
        };
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(p.check_addr(a("127.0.0.1:3478")), Err(Denied::OwnAddress));
        assert_eq!(
            p.check_addr(a("[::ffff:127.0.0.1]:3478")),
            Err(Denied::OwnAddress)
        );
        assert_eq!(p.check_addr(a("192.0.2.5:5349")), Err(Denied::OwnAddress));
        assert_eq!(p.check_addr(a("127.0.0.1:3480")), Ok(()));
        assert_eq!(p.check_addr(a("192.0.2.5:50000")), Ok(()));
    }

    #[test]
    fn an_allowed_address_opens_one_port_only() {
        let sfu: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let p = PeerPolicy {
            allowed_addrs: vec![sfu],
            own: vec!["0.0.0.0:3478".parse().unwrap()],
            ..Default::default()
        };
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        // The permission (per IP) is granted...
        assert_eq!(p.check_ip(ip("127.0.0.1")), Ok(()));
        assert_eq!(p.check_ip(ip("::ffff:127.0.0.1")), Ok(()));
        // ...but traffic either way is held to that port.
        assert_eq!(p.check_addr(sfu), Ok(()));
        assert_eq!(p.check_addr(a("[::ffff:127.0.0.1]:40000")), Ok(()));
        assert_eq!(p.check_addr(a("127.0.0.1:8443")), Err(Denied::Loopback));
        assert_eq!(p.check_addr(a("127.0.0.1:3478")), Err(Denied::Loopback));
        assert_eq!(p.check_inbound(sfu), Ok(()));
        assert_eq!(p.check_inbound(a("127.0.0.1:8443")), Err(Denied::Loopback));
        assert_eq!(
            p.check_inbound(a("127.0.0.1:3478")),
            Err(Denied::OwnAddress)
        );
        // Other loopback addresses are untouched.
        assert_eq!(p.check_ip(ip("127.0.0.2")), Err(Denied::Loopback));
        // Without allowed addresses, inbound checks only the loop rule.
        let open = PeerPolicy::default();
        assert_eq!(open.check_inbound(a("192.0.2.1:9")), Ok(()));
    }

    #[test]
    fn range_parsing() {
        assert!(IpRange::parse("10.0.0.0/8")
            .unwrap()
            .contains(ip("10.200.0.1")));
        assert!(!IpRange::parse("10.0.0.0/8")
            .unwrap()
            .contains(ip("11.0.0.0")));
        assert!(IpRange::parse("2001:db8::/32")
            .unwrap()
            .contains(ip("2001:db8:1::5")));
        assert!(!IpRange::parse("10.0.0.0/8")
            .unwrap()
            .contains(ip("::a00:1")));
        assert!(IpRange::parse("10.0.0.9-10.0.0.1").is_err());
        assert!(IpRange::parse("10.0.0.1-::1").is_err());
        assert!(IpRange::parse("nonsense").is_err());
        assert!(IpRange::parse("10.0.0.0/33").is_err());
    }
}
