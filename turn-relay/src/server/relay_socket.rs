//! Relay sockets: one UDP socket per allocation, registered with one data-plane
//! thread's epoll set (see `udp.rs`). Closing the socket (dropping the last
//! `Arc<RelaySocket>`, which the allocation holds) removes it from epoll.

use socket2::{Domain, Protocol, Socket, Type};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

pub struct RelaySocket {
    socket: UdpSocket,
}

impl RelaySocket {
    /// Send to a peer; a full socket buffer drops the datagram (UDP semantics).
    pub fn send_to(&self, data: &[u8], peer: SocketAddr) {
        let _ = self.socket.send_to(data, peer);
    }

    pub(super) fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    pub(super) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

pub(super) fn bind(addr: SocketAddr) -> std::io::Result<RelaySocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(RelaySocket { socket: s.into() })
}
