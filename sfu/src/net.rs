//! The media plane's one UDP socket: where it binds and which address it announces.

use std::{
    io,
    net::{IpAddr, SocketAddr, UdpSocket},
    ops::RangeInclusive,
};

use socket2::{Domain, Protocol, Socket, Type};

/// Kernel buffers of the shared socket. Every participant's traffic goes through it, so a
/// burst (a keyframe to many subscribers) must fit: 4 MiB ≈ 3000 full-size packets.
const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// Where the media socket binds and what address it announces.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Address the UDP socket is bound to (`0.0.0.0` = every interface).
    pub bind_ip: IpAddr,
    /// Put in the host candidate instead of the bound address (NAT 1:1).
    pub public_ip: Option<IpAddr>,
}

/// Binds the media socket: the first free port of `ports`, or any port.
pub fn bind(net: &NetConfig, ports: Option<&RangeInclusive<u16>>) -> io::Result<UdpSocket> {
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
    Err(last_error)
}

fn bind_one(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: the kernel caps these at net.core.{r,w}mem_max.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// The address put in our host candidate (and given to str0m as the packets' destination):
/// `public_ip`, else the bound address, else — bound to every interface — the address of
/// the interface with the default route.
pub fn announced_addr(net: &NetConfig, local: SocketAddr) -> SocketAddr {
    let ip = net
        .public_ip
        .filter(|ip| !ip.is_unspecified())
        .or_else(|| (!local.ip().is_unspecified()).then_some(local.ip()))
        .or_else(|| default_route_ip(local.is_ipv6()))
        .unwrap_or(local.ip());
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
    }
}
