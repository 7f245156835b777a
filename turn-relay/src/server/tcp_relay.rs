//! The sockets of TCP allocations (RFC 6062): a listener per allocation on its relayed
//! address, outgoing connections to peers, and the peer connections waiting for their
//! client's ConnectionBind. The core (`relay/tcp.rs`) decides; this only does the I/O.
//!
//! Once a client data connection is bound, `stream.rs` pipes it to the peer connection it
//! takes from here ([`TcpPlane::take`]); closing a connection (its allocation went, or
//! nobody bound it in time) drops the peer socket or, for a piped one, ends the pipe.

use super::{RelayHandle, Shared};
use crate::allocation::AllocId;
use crate::relay::ConnectionId;
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

/// How long a Connect waits for the peer to accept before the client gets 447.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP allocation's listener; dropping the last handle (or releasing it) stops accepting.
pub struct TcpListenerHandle {
    port: u16,
    accept: AbortHandle,
}

impl TcpListenerHandle {
    pub(super) fn stop(&self) {
        self.accept.abort();
    }

    pub(super) fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for TcpListenerHandle {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A peer connection: its socket until a client data connection takes it, and the signal
/// that ends the pipe once one has (the sender, dropped with the entry).
struct PeerConnection {
    stream: Option<(TcpStream, oneshot::Receiver<()>)>,
    _close: oneshot::Sender<()>,
}

pub struct TcpPlane {
    shared: OnceLock<Weak<Shared>>,
    runtime: tokio::runtime::Handle,
    connections: Mutex<HashMap<ConnectionId, PeerConnection>>,
}

impl TcpPlane {
    /// Must be made inside the tokio runtime the relay runs on.
    pub(super) fn new() -> Arc<TcpPlane> {
        Arc::new(TcpPlane {
            shared: OnceLock::new(),
            runtime: tokio::runtime::Handle::current(),
            connections: Mutex::new(HashMap::new()),
        })
    }

    pub(super) fn attach(&self, shared: &Arc<Shared>) {
        let _ = self.shared.set(Arc::downgrade(shared));
    }

    fn shared(&self) -> Option<Arc<Shared>> {
        self.shared.get().and_then(Weak::upgrade)
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, PeerConnection>> {
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, connection: ConnectionId, stream: TcpStream) {
        let (close, closed) = oneshot::channel();
        self.table().insert(
            connection,
            PeerConnection {
                stream: Some((stream, closed)),
                _close: close,
            },
        );
    }

    /// The peer socket of a connection just bound, and what fires when it is closed.
    pub(super) fn take(
        &self,
        connection: ConnectionId,
    ) -> Option<(TcpStream, oneshot::Receiver<()>)> {
        self.table().get_mut(&connection)?.stream.take()
    }

    pub(super) fn close(&self, connection: ConnectionId) {
        self.table().remove(&connection);
    }

    /// Listens on `addr` for allocation `id`'s peers.
    pub(super) fn listen(
        self: &Arc<Self>,
        id: AllocId,
        addr: SocketAddr,
    ) -> std::io::Result<(SocketAddr, RelayHandle)> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        // Outgoing connections to peers leave from this same address (see `connect`).
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(128)?;
        let listener: std::net::TcpListener = socket.into();
        let local = listener.local_addr()?;
        let accept = self
            .runtime
            .spawn(self.clone().accept_peers(id, listener))
            .abort_handle();
        let handle = TcpListenerHandle {
            port: local.port(),
            accept,
        };
        Ok((local, RelayHandle::Tcp(Arc::new(handle))))
    }

    async fn accept_peers(self: Arc<Self>, id: AllocId, listener: std::net::TcpListener) {
        let Ok(listener) = TcpListener::from_std(listener) else {
            return;
        };
        let mut out = Vec::with_capacity(64);
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "peer accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(shared) = self.shared() else { return };
            let _ = stream.set_nodelay(true);
            // The core decides (a permission for the peer); the socket is filed before the
            // client hears of it, so its ConnectionBind finds it.
            let mut core = shared.core();
            if let Some((connection, client, to)) =
                core.peer_accepted(Instant::now(), id, peer, &mut out)
            {
                self.insert(connection, stream);
                client.send(&out, to);
            }
        }
    }

    /// Connects from `from` (the relayed address) to `peer`, and tells the core.
    pub(super) fn connect(
        self: &Arc<Self>,
        connection: ConnectionId,
        from: SocketAddr,
        peer: SocketAddr,
    ) {
        let plane = self.clone();
        self.runtime.spawn(async move {
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect_from(from, peer))
                .await
                .ok()
                .and_then(Result::ok);
            let Some(shared) = plane.shared() else { return };
            let mut out = Vec::with_capacity(64);
            let mut core = shared.core();
            let ok = stream.is_some();
            if let Some((client, to)) =
                core.peer_connected(Instant::now(), connection, ok, &mut out)
            {
                if let Some(stream) = stream {
                    let _ = stream.set_nodelay(true);
                    plane.insert(connection, stream);
                }
                client.send(&out, to);
            }
        });
    }
}

/// A connection from the relayed address, as RFC 6062 §5.2 asks (a peer that filters by
/// address sees the one it was told); from another port of the same IP if that fails.
async fn connect_from(from: SocketAddr, peer: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = || -> std::io::Result<TcpSocket> {
        let s = if from.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        s.set_reuseaddr(true)?;
        s.set_reuseport(true)?;
        Ok(s)
    };
    let s = socket()?;
    let s = match s.bind(from) {
        Ok(()) => s,
        Err(_) => {
            let s = socket()?;
            s.bind(SocketAddr::new(from.ip(), 0))?;
            s
        }
    };
    s.connect(peer).await
}
