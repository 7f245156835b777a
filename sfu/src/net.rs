//! The media plane's one UDP socket: where it binds and which address it announces.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    ops::RangeInclusive,
};

use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

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

/// Datagrams produced by one pass of the loop, sent together: one `sendmmsg` per
/// [`Outbox::CHUNK`] instead of one `sendto` each (each datagram still costs the kernel its
/// UDP send, but not a system call).
#[derive(Default)]
pub struct Outbox {
    datagrams: Vec<(u64, Vec<u8>, SockAddr)>,
}

impl Outbox {
    const CHUNK: usize = 64;

    /// Queues `contents` to `to` on behalf of `owner` (reported back if it is dropped).
    pub fn push(&mut self, owner: u64, contents: Vec<u8>, to: SocketAddr) {
        self.datagrams.push((owner, contents, SockAddr::from(to)));
    }

    pub fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }

    /// Sends everything queued on `socket`. A datagram the kernel refuses because the send
    /// buffer is full is dropped and reported with `dropped(owner)`; a slow receiver is the
    /// only way to fill it, and str0m keeps video in its resend buffer for the NACK.
    pub fn send(&mut self, socket: &impl AsRawFd, mut dropped: impl FnMut(u64)) {
        let fd = socket.as_raw_fd();
        for chunk in self.datagrams.chunks(Self::CHUNK) {
            let mut sent = 0;
            while sent < chunk.len() {
                match send_many(fd, &chunk[sent..]) {
                    Ok(n) => sent += n.max(1),
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        for (owner, _, _) in &chunk[sent..] {
                            dropped(*owner);
                        }
                        break;
                    }
                    Err(error) => {
                        // This one datagram cannot be sent (e.g. unreachable); go on.
                        tracing::debug!(%error, "sfu: send failed");
                        sent += 1;
                    }
                }
            }
        }
        self.datagrams.clear();
    }
}

/// One `sendmmsg(2)`: how many of `datagrams` (at most [`Outbox::CHUNK`]) were sent.
#[cfg(target_os = "linux")]
fn send_many(fd: RawFd, datagrams: &[(u64, Vec<u8>, SockAddr)]) -> io::Result<usize> {
    let n = datagrams.len().min(Outbox::CHUNK);
    // SAFETY: all-zero is a valid `iovec`/`mmsghdr` (null pointers, zero lengths).
    let mut iovecs: [libc::iovec; Outbox::CHUNK] = unsafe { std::mem::zeroed() };
    let mut headers: [libc::mmsghdr; Outbox::CHUNK] = unsafe { std::mem::zeroed() };
    for (i, (_, contents, to)) in datagrams[..n].iter().enumerate() {
        iovecs[i].iov_base = contents.as_ptr() as *mut libc::c_void;
        iovecs[i].iov_len = contents.len();
        let header = &mut headers[i].msg_hdr;
        header.msg_name = to.as_ptr() as *mut libc::c_void;
        header.msg_namelen = to.len();
        header.msg_iov = &mut iovecs[i];
        header.msg_iovlen = 1;
    }
    // SAFETY: `headers[..n]` point into `iovecs`, `datagrams` and their addresses, all alive
    // and unmoved for the duration of the call; the kernel only reads them (and writes
    // `msg_len`).
    let result = unsafe { libc::sendmmsg(fd, headers.as_mut_ptr(), n as libc::c_uint, 0) };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result as usize)
    }
}

#[cfg(not(target_os = "linux"))]
fn send_many(fd: RawFd, datagrams: &[(u64, Vec<u8>, SockAddr)]) -> io::Result<usize> {
    use std::os::fd::BorrowedFd;
    // SAFETY: `fd` is the caller's open socket for the duration of this call.
    let socket = socket2::SockRef::from(unsafe { &BorrowedFd::borrow_raw(fd) });
    let (_, contents, to) = &datagrams[0];
    socket.send_to(contents, to).map(|_| 1)
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
    fn binds_a_free_port_of_the_range() {
        let net = NetConfig {
            bind_ip: "127.0.0.1".parse().unwrap(),
            public_ip: None,
        };
        let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        assert!(bind(&net, Some(&(port..=port))).is_err());
        let any = bind(&net, None).unwrap();
        assert_ne!(any.local_addr().unwrap().port(), port);
    }

    #[test]
    fn outbox_sends_in_one_batch() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = receiver.local_addr().unwrap();
        let mut outbox = Outbox::default();
        for i in 0..100u8 {
            outbox.push(u64::from(i), vec![i; 10], to);
        }
        let mut dropped = 0;
        outbox.send(&sender, |_| dropped += 1);
        assert!(outbox.is_empty());
        assert_eq!(dropped, 0);
        let mut buf = [0u8; 16];
        for i in 0..100u8 {
            let (n, from) = receiver.recv_from(&mut buf).unwrap();
            assert_eq!((n, buf[0], from), (10, i, sender.local_addr().unwrap()));
        }
    }
}
