//! UDP listener: STUN/TURN requests and client data in one socket.

use super::{scratch, ClientSink, Shared};
use crate::allocation::FiveTuple;
use crate::relay::ClientAction;
use crate::Transport;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::watch;

/// Listener socket buffers; bursts from many clients otherwise overflow the
/// kernel default (~200 KiB) before the task drains them. The kernel caps this at
/// net.core.rmem_max.
const SOCKET_BUFFER: usize = 4 << 20;

/// Binds with SO_REUSEPORT so the driver can open one socket per core on the
/// same address: the kernel hashes each client's 4-tuple to one of them, which
/// spreads the receive work (and the receive buffers) across cores. Linux only
/// lets sockets of the same user join the group.
pub(super) fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    #[cfg(unix)]
    s.set_reuse_port(true)?;
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

const BATCH: usize = 64;

pub(super) async fn run(
    shared: Arc<Shared>,
    sock: Arc<UdpSocket>,
    local: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let sink = ClientSink::Udp(sock.clone());
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            r = sock.readable() => if r.is_err() { return },
        }
        scratch(|buf, out| {
            for _ in 0..BATCH {
                let (n, from) = match sock.try_recv_from(buf) {
                    Ok(r) => r,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                    Err(_) => continue,
                };
                let ft = FiveTuple {
                    transport: Transport::Udp,
                    client: from,
                    server: local,
                };
                let packet = &buf[..n];
                let action = shared
                    .core()
                    .handle_client(Instant::now(), &ft, &sink, packet, out);
                match action {
                    ClientAction::None => {}
                    ClientAction::Reply => {
                        let _ = sock.try_send_to(out, from);
                    }
                    ClientAction::ToPeer { relay, peer, data } => {
                        relay.send_to(&packet[data], peer)
                    }
                }
            }
        });
        tokio::task::yield_now().await;
    }
}
