//! Relay sockets: one UDP socket per allocation, drained by a small task.

use super::{scratch, Shared};
use crate::allocation::AllocId;
use crate::relay::{PeerAction, PEER_HEADROOM};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::Notify;

pub struct RelaySocket {
    socket: UdpSocket,
    stop: Notify,
}

impl RelaySocket {
    pub(super) fn new(socket: UdpSocket) -> Self {
        RelaySocket {
            socket,
            stop: Notify::new(),
        }
    }

    /// Send to a peer; a full socket buffer drops the datagram (UDP semantics).
    pub fn send_to(&self, data: &[u8], peer: SocketAddr) {
        let _ = self.socket.try_send_to(data, peer);
    }

    pub(super) fn stop(&self) {
        // notify_one stores a permit, so a stop before the task waits is not lost.
        self.stop.notify_one();
    }
}

pub(super) fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

/// Packets handled per wake-up before yielding, so one busy allocation cannot
/// starve the others on the same worker.
const BATCH: usize = 64;

pub(super) async fn run(shared: Weak<Shared>, id: AllocId, rs: Arc<RelaySocket>) {
    loop {
        tokio::select! {
            biased;
            _ = rs.stop.notified() => return,
            r = rs.socket.readable() => if r.is_err() { return },
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let done = scratch(|buf, out| {
            for _ in 0..BATCH {
                let (n, peer) = match rs.socket.try_recv_from(&mut buf[PEER_HEADROOM..]) {
                    Ok(r) => r,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                    // e.g. an ICMP error surfaced on the socket: skip it.
                    Err(_) => continue,
                };
                let action = shared
                    .core()
                    .handle_peer(Instant::now(), id, peer, buf, n, out);
                match action {
                    PeerAction::None => {}
                    PeerAction::ChannelData { client, to, len } => client.send(&buf[..len], to),
                    PeerAction::Indication { client, to } => client.send(out, to),
                }
            }
            false
        });
        if done {
            return;
        }
        tokio::task::yield_now().await;
    }
}
