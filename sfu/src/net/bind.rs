//! The media plane's one UDP socket: which address it binds (policy), which port, and
//! which address it announces in our ICE candidates.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    ops::RangeInclusive,
    os::fd::AsRawFd,
};

use socket2::{Domain, Protocol, Socket, Type};

use crate::api::{NetConfig, SfuError};

/// Kernel buffers of the shared socket. Every participant's traffic goes through it, so a
/// burst (a keyframe to many subscribers) must fit: 4 MiB ≈ 3000 full-size packets.
const SOCKET_BUFFER_BYTES: usize = 4 << 20;

impl NetConfig {
    /// Where to bind given the web listener's address and the configured public address:
    /// the public address if it is loopback (tests), else every interface of the
    /// listener's address family; the public address is then announced only if it differs
    /// from the bound one.
    ///
    /// A loopback web listener does not keep media on loopback: that is how the web server
    /// runs behind a reverse proxy (nginx, Caddy), while browsers must still reach the
    /// media socket directly.
    pub fn for_listener(listen_ip: IpAddr, public_ip: Option<IpAddr>) -> NetConfig {
        let bind_ip = match public_ip {
            Some(ip) if ip.is_loopback() => ip,
            _ if listen_ip.is_ipv6() => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        NetConfig {
            bind_ip,
            public_ip: public_ip.filter(|ip| *ip != bind_ip),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortRangeError {
    #[error("expected MIN-MAX, got {0:?}")]
    Syntax(String),
    #[error("{0:?} is not a port number")]
    NotAPort(String),
    #[error("invalid port range {0}-{1} (need 0 < MIN <= MAX)")]
    Empty(u16, u16),
}

/// Parses `MIN-MAX` (0 < MIN ≤ MAX), as in `--rtc-ports 40000-40009`.
pub fn parse_port_range(text: &str) -> Result<RangeInclusive<u16>, PortRangeError> {
    let (min, max) = text
        .split_once('-')
        .ok_or_else(|| PortRangeError::Syntax(text.to_owned()))?;
    let port = |s: &str| {
        s.trim()
            .parse::<u16>()
            .map_err(|_| PortRangeError::NotAPort(s.to_owned()))
    };
    let (min, max) = (port(min)?, port(max)?);
    if min == 0 || min > max {
        return Err(PortRangeError::Empty(min, max));
    }
    Ok(min..=max)
}

/// Binds the media socket: the first free port of `ports`, or any port.
pub fn bind(net: &NetConfig, ports: Option<&RangeInclusive<u16>>) -> Result<UdpSocket, SfuError> {
    let candidates: Vec<u16> = match ports {
        Some(range) => range.clone().collect(),
        None => vec![0],
    };
    let mut last_error = io::Error::new(io::ErrorKind::AddrInUse, "no port in the range");
    for port in candidates {
        match bind_one(SocketAddr::new(net.bind_ip, port)) {
            Ok(socket) => return Ok(socket),
            Err(error) => last_error = error,
        }
    }
    Err(SfuError::Bind {
        ip: net.bind_ip,
        ports: ports.map_or_else(
            || "any".to_owned(),
            |r| format!("{}-{}", r.start(), r.end()),
        ),
        source: last_error,
    })
}

fn bind_one(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: the kernel caps these at net.core.{r,w}mem_max.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    socket.set_nonblocking(true)?;
    // Each datagram's own arrival time for str0m's feedback to publishers: the media thread
    // reads in batches, and a batch read after a busy pass would otherwise stamp datagrams
    // that waited milliseconds apart with one time. Best effort too.
    if let Err(error) = udp_batch::enable_receive_timestamps(socket.as_raw_fd()) {
        tracing::warn!(%error, "no kernel arrival times: datagrams stamped when read");
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// The address put in our host candidate (and given to str0m as the packets' destination):
/// `public_ip`, else the bound address, else — bound to every interface — the address of
/// the interface with the default route, else (no network: a laptop offline, a test
/// namespace) loopback, the only place a browser could then reach us from.
pub fn announced_addr(net: &NetConfig, local: SocketAddr) -> SocketAddr {
    let loopback = if local.is_ipv6() {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    };
    let ip = net
        .public_ip
        .filter(|ip| !ip.is_unspecified())
        .or_else(|| (!local.ip().is_unspecified()).then_some(local.ip()))
        .or_else(|| default_route_ip(local.is_ipv6()))
        .unwrap_or(loopback);
    SocketAddr::new(ip, local.port())
}

/// A connected UDP socket learns its source address without sending anything.
fn default_route_ip(v6: bool) -> Option<IpAddr> {
    let (bind, probe) = if v6 {
        ("[::]:0", "[2001:db8::1]:9")
    } else {
        ("0.0.0.0:0", "192.0.2.1:9")
    };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(probe).ok()?;
    socket
        .local_addr()
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announced_address() {
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let net = |public_ip| NetConfig {
            bind_ip: local.ip(),
            public_ip,
        };
        assert_eq!(announced_addr(&net(None), local), local);
        assert_eq!(
            announced_addr(&net(Some("203.0.113.7".parse().unwrap())), local),
            "203.0.113.7:5000".parse().unwrap()
        );
        // Bound to every interface: never announce 0.0.0.0 (the default-route interface's
        // address, or loopback where there is no network, as in the test namespace).
        let any: SocketAddr = "0.0.0.0:5000".parse().unwrap();
        let announced = announced_addr(&net(None), any);
        assert!(!announced.ip().is_unspecified(), "{announced}");
        assert_eq!(announced.port(), 5000);
    }

    #[test]
    fn bind_policy() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Tests: a loopback public address is where we bind.
        assert_eq!(
            NetConfig::for_listener(ip("0.0.0.0"), Some(ip("127.0.0.1"))),
            NetConfig {
                bind_ip: ip("127.0.0.1"),
                public_ip: None
            }
        );
        // A loopback listener (behind a reverse proxy) does not keep media on loopback.
        assert_eq!(
            NetConfig::for_listener(ip("127.0.0.1"), None).bind_ip,
            ip("0.0.0.0")
        );
        // Otherwise every interface of the listener's family, announcing the public one.
        assert_eq!(
            NetConfig::for_listener(ip("0.0.0.0"), Some(ip("203.0.113.7"))),
            NetConfig {
                bind_ip: ip("0.0.0.0"),
                public_ip: Some(ip("203.0.113.7"))
            }
        );
        assert_eq!(NetConfig::for_listener(ip("::"), None).bind_ip, ip("::"));
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_port_range("40000-40100"), Ok(40000..=40100));
        assert_eq!(parse_port_range("5000-5000"), Ok(5000..=5000));
        assert!(matches!(
            parse_port_range("0-10"),
            Err(PortRangeError::Empty(0, 10))
        ));
        assert!(parse_port_range("10-5").is_err());
        assert!(matches!(
            parse_port_range("10"),
            Err(PortRangeError::Syntax(_))
        ));
        assert!(matches!(
            parse_port_range("a-b"),
            Err(PortRangeError::NotAPort(_))
        ));
    }

    #[test]
    fn binds_a_free_port_of_the_range_or_says_why_not() {
        let net = NetConfig {
            bind_ip: "127.0.0.1".parse().unwrap(),
            public_ip: None,
        };
        let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let error = bind(&net, Some(&(port..=port))).unwrap_err();
        let text = error.to_string();
        assert!(text.contains(&format!("ports {port}-{port}")), "{text}");
        assert!(matches!(error, SfuError::Bind { .. }));
        let any = bind(&net, None).unwrap();
        assert_ne!(any.local_addr().unwrap().port(), port);
    }
}
