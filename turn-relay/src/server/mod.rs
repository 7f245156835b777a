//! The tokio I/O driver around the sans-IO core.
//!
//! Threading: the core sits behind one `std::sync::Mutex`, held only for table
//! lookups (never across a syscall or an `.await`). UDP (listeners and every
//! relay socket) is served by one data-plane thread per two cores, each with its own epoll
//! set, `recvmmsg`/`sendmmsg` and fixed buffers (`udp.rs`); an idle allocation
//! costs a socket and its table entry, no task or buffer. TCP/TLS connections,
//! `/metrics` and the expiry ticker run on tokio. Sends never wait: UDP has no
//! backpressure worth waiting for, and a full socket buffer means the packet
//! would be late anyway.

mod relay_socket;
mod stream;
mod tcp_relay;
mod udp;

use crate::allocation::AllocId;
use crate::auth::Authenticator;
use crate::config::{RelayConfig, UserSecret};
use crate::policy::PeerPolicy;
use crate::quota::Quotas;
use crate::relay::{
    BoundRelay, ConnectionId, CoreConfig, Family, PortWish, Relay, RelayBindError, RelayIo,
};
use crate::{Error, Transport};
use std::collections::HashSet;
use std::net::UdpSocket;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub(crate) use relay_socket::RelaySocket;
use tcp_relay::{TcpListenerHandle, TcpPlane};

/// An allocation's relay: a UDP socket, or the listener of a TCP allocation (RFC 6062).
#[derive(Clone)]
pub enum RelayHandle {
    Udp(Arc<RelaySocket>),
    Tcp(Arc<TcpListenerHandle>),
}

impl RelayHandle {
    /// Sends a datagram from a UDP relay (the core never asks that of a TCP one).
    pub fn send_to(&self, data: &[u8], peer: SocketAddr) {
        if let RelayHandle::Udp(socket) = self {
            socket.send_to(data, peer);
        }
    }
}

/// Where a client's packets go back to.
#[derive(Clone)]
pub enum ClientSink {
    Udp(Arc<UdpSocket>),
    /// TCP or TLS connection: frames are queued to the connection's writer task.
    Stream(mpsc::Sender<Vec<u8>>),
}

impl ClientSink {
    fn send(&self, data: &[u8], to: SocketAddr) {
        match self {
            ClientSink::Udp(s) => {
                let _ = s.send_to(data, to);
            }
            ClientSink::Stream(tx) => {
                // ChannelData on a stream is padded to 4 bytes (RFC 8656 §12.5).
                let pad = if crate::stun::classify(data) == crate::stun::PacketKind::ChannelData {
                    (4 - data.len() % 4) % 4
                } else {
                    0
                };
                let mut v = Vec::with_capacity(data.len() + pad);
                v.extend_from_slice(data);
                v.resize(data.len() + pad, 0);
                // A full queue means the client cannot keep up: drop, like UDP.
                let _ = tx.try_send(v);
            }
        }
    }
}

pub(crate) struct Shared {
    core: Mutex<Relay<TokioIo>>,
    tcp: Arc<TcpPlane>,
}

impl Shared {
    /// A panic while holding the lock must not take the whole relay down with
    /// poisoned-lock panics; the core's state stays structurally valid.
    pub(crate) fn core(&self) -> MutexGuard<'_, Relay<TokioIo>> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct TokioIo {
    planes: Arc<udp::Planes>,
    relay_v4: Option<IpAddr>,
    relay_v6: Option<IpAddr>,
    min_port: u16,
    max_port: u16,
    next_port: u32,
    tcp: Arc<TcpPlane>,
    /// Ports of TCP allocations' listeners. They are bound with `SO_REUSEPORT` (connections
    /// to peers leave from the same port), so a second bind would not fail: this is what
    /// keeps two allocations off one port.
    tcp_ports: HashSet<u16>,
}

impl TokioIo {
    fn relay_ip(&self, family: Family) -> Result<IpAddr, RelayBindError> {
        match family {
            Family::V4 => self.relay_v4,
            Family::V6 => self.relay_v6,
        }
        .ok_or(RelayBindError::FamilyUnsupported)
    }

    /// The next port of the range to try (a moving cursor: a busy port costs one failed
    /// bind).
    fn next_port(&mut self) -> u16 {
        let span = (self.max_port - self.min_port) as u32 + 1;
        let port = self.min_port as u32 + self.next_port % span;
        self.next_port = self.next_port.wrapping_add(1);
        port as u16
    }

    fn port_count(&self) -> u32 {
        (self.max_port - self.min_port) as u32 + 1
    }

    /// Peer traffic on `rs` goes to allocation `id` from now on.
    fn register(&self, rs: &RelaySocket, id: AllocId) -> Result<(), RelayBindError> {
        self.planes.register_relay(rs, id).map_err(|e| {
            tracing::warn!(error = %e, "relay socket not registered");
            RelayBindError::Exhausted
        })
    }
}

impl RelayIo for TokioIo {
    type Relay = RelayHandle;
    type Client = ClientSink;

    fn bind_relay(
        &mut self,
        id: AllocId,
        family: Family,
        wish: PortWish,
    ) -> Result<BoundRelay<RelayHandle>, RelayBindError> {
        let ip = self.relay_ip(family)?;
        for _ in 0..self.port_count() {
            let port = u32::from(self.next_port());
            if wish != PortWish::Any && port % 2 == 1 {
                continue;
            }
            let Ok(rs) = relay_socket::bind(SocketAddr::new(ip, port as u16)) else {
                continue;
            };
            // The R bit: the next port too, or this pair is no good.
            let next = match wish {
                PortWish::EvenAndNext if port as u16 >= self.max_port => continue,
                PortWish::EvenAndNext => {
                    match relay_socket::bind(SocketAddr::new(ip, port as u16 + 1)) {
                        Ok(next) => {
                            let at = next.local_addr().map_err(|_| RelayBindError::Exhausted)?;
                            Some((at, RelayHandle::Udp(Arc::new(next))))
                        }
                        Err(_) => continue,
                    }
                }
                PortWish::Any | PortWish::Even => None,
            };
            let local = rs.local_addr().map_err(|_| RelayBindError::Exhausted)?;
            self.register(&rs, id)?;
            return Ok(BoundRelay {
                local,
                relay: RelayHandle::Udp(Arc::new(rs)),
                next,
            });
        }
        Err(RelayBindError::Exhausted)
    }

    fn adopt_relay(&mut self, relay: &RelayHandle, id: AllocId) -> Result<(), RelayBindError> {
        match relay {
            RelayHandle::Udp(rs) => self.register(rs, id),
            RelayHandle::Tcp(_) => Err(RelayBindError::Exhausted),
        }
    }

    fn release_relay(&mut self, relay: &RelayHandle) {
        match relay {
            // A reserved socket that nobody adopted was never registered: dropping it is
            // all. The socket closes (and leaves its epoll set) when the allocation's
            // handle, the last one, is dropped.
            RelayHandle::Udp(_) => {}
            RelayHandle::Tcp(listener) => {
                listener.stop();
                self.tcp_ports.remove(&listener.port());
            }
        }
    }

    fn listen_tcp(
        &mut self,
        id: AllocId,
        family: Family,
    ) -> Result<(SocketAddr, RelayHandle), RelayBindError> {
        let ip = self.relay_ip(family)?;
        for _ in 0..self.port_count() {
            let port = self.next_port();
            if self.tcp_ports.contains(&port) {
                continue;
            }
            if let Ok(listening) = self.tcp.listen(id, SocketAddr::new(ip, port)) {
                self.tcp_ports.insert(port);
                return Ok(listening);
            }
        }
        Err(RelayBindError::Exhausted)
    }

    fn connect_peer(&mut self, connection: ConnectionId, from: SocketAddr, peer: SocketAddr) {
        self.tcp.connect(connection, from, peer);
    }

    fn close_connection(&mut self, connection: ConnectionId) {
        self.tcp.close(connection);
    }
}

/// A running relay. Dropping it without [`TurnServer::shutdown`] stops the UDP data
/// plane at once (its threads would otherwise outlive the runtime) and leaves the
/// TCP/TLS tasks running until the runtime ends.
pub struct TurnServer {
    addrs: Vec<(Transport, SocketAddr)>,
    metrics_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    planes: Arc<udp::Planes>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// UDP data-plane threads, and listener sockets per address: one per two cores
/// (at most 8), or `TURN_RELAY_UDP_SOCKETS` when set (1 disables SO_REUSEPORT
/// fan-out). Half the cores, because the kernel's loopback/NIC delivery and the
/// wake-ups cost as much CPU as the relay itself: on 2 cores one thread spent
/// 0.66× coturn's CPU per packet and two threads 0.79× (docs/BENCHMARKS.md).
fn udp_sockets_per_address() -> usize {
    if let Some(n) = std::env::var("TURN_RELAY_UDP_SOCKETS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        return n.clamp(1, 64);
    }
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).clamp(1, 8))
}

fn pick_relay_ips(cfg: &RelayConfig) -> (Option<IpAddr>, Option<IpAddr>) {
    let mut candidates: Vec<IpAddr> = cfg.relay_ips.clone();
    if candidates.is_empty() {
        candidates = cfg
            .listening_ips
            .iter()
            .copied()
            .filter(|ip| !ip.is_unspecified())
            .collect();
    }
    if candidates.is_empty() {
        // Listening on all addresses: relay on the host's first usable address of
        // each family (coturn does the same), loopback as a last resort.
        let mut ifs: Vec<IpAddr> = if_addrs::get_if_addrs()
            .map(|v| v.into_iter().map(|i| i.ip()).collect())
            .unwrap_or_default();
        ifs.retain(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_link_local(),
            IpAddr::V6(v6) => !v6.is_unicast_link_local(),
        });
        ifs.sort_by_key(|ip| ip.is_loopback());
        candidates = ifs;
    }
    let v4 = candidates.iter().copied().find(IpAddr::is_ipv4);
    let v6 = candidates.iter().copied().find(IpAddr::is_ipv6);
    (
        v4.or_else(|| {
            cfg.relay_ips
                .is_empty()
                .then_some(Ipv4Addr::LOCALHOST.into())
        }),
        v6,
    )
}

fn authenticator(cfg: &RelayConfig) -> Authenticator {
    let mut auth = Authenticator::new(
        &cfg.realm,
        cfg.rest_secret().map(str::to_owned),
        cfg.no_auth,
    );
    for u in &cfg.users {
        match &u.secret {
            UserSecret::Password(p) => auth.add_user(&u.name, p),
            UserSecret::Key(k) => auth.add_user_key(&u.name, *k),
        }
    }
    auth
}

fn core_config(cfg: &RelayConfig) -> CoreConfig {
    CoreConfig {
        default_lifetime: Duration::from_secs(600.min(cfg.max_allocate_lifetime_secs)),
        max_lifetime: Duration::from_secs(cfg.max_allocate_lifetime_secs),
        permission_lifetime: Duration::from_secs(cfg.permission_lifetime_secs),
        channel_lifetime: Duration::from_secs(cfg.channel_lifetime_secs),
        stale_nonce: Duration::from_secs(cfg.stale_nonce_secs),
        fingerprint: cfg.fingerprint,
        max_bps: cfg.max_bps,
        external: cfg.external_ips.clone(),
    }
}

impl TurnServer {
    /// Bind every configured listener and start serving.
    pub async fn start(config: RelayConfig) -> Result<TurnServer, Error> {
        config.validate()?;
        if let Some(warning) = config.mixed_credentials_warning() {
            tracing::warn!("{warning}");
        }
        let listen_ips: Vec<IpAddr> = if config.listening_ips.is_empty() {
            vec![Ipv4Addr::UNSPECIFIED.into(), Ipv6Addr::UNSPECIFIED.into()]
        } else {
            config.listening_ips.clone()
        };
        let wildcard = config.listening_ips.is_empty();

        let mut udp_socks = Vec::new();
        let mut tcp_socks = Vec::new();
        let mut tls_socks = Vec::new();
        let mut addrs = Vec::new();
        for ip in &listen_ips {
            let mut port = config.listening_port;
            let res = Self::bind_listeners(&config, *ip, &mut port, &mut udp_socks, &mut tcp_socks);
            if let Err(e) = res {
                // With the default wildcard pair, a host without IPv6 only loses ::.
                if wildcard && ip.is_ipv6() {
                    tracing::warn!(error = %e, "IPv6 listener not started");
                    continue;
                }
                return Err(e);
            }
            if config.cert.is_some() && !config.no_tls {
                let addr = SocketAddr::new(*ip, config.tls_listening_port);
                let l = stream::bind_tcp(addr).map_err(|source| Error::Bind {
                    transport: Transport::Tls,
                    addr,
                    source,
                })?;
                tls_socks.push(l);
            }
        }
        for (_, s) in &udp_socks {
            let a = (Transport::Udp, s.local_addr()?);
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        for s in &tcp_socks {
            addrs.push((Transport::Tcp, s.local_addr()?));
        }
        for s in &tls_socks {
            addrs.push((Transport::Tls, s.local_addr()?));
        }
        if addrs.is_empty() {
            return Err(Error::NoListeners);
        }
        let tls = if tls_socks.is_empty() {
            None
        } else {
            Some(stream::tls_acceptor(
                config.cert.as_deref().unwrap_or_else(|| unreachable!()),
                config.pkey.as_deref().unwrap_or_else(|| unreachable!()),
            )?)
        };

        let metrics_listener = if config.prometheus {
            let ip = config
                .prometheus_address
                .unwrap_or(Ipv4Addr::LOCALHOST.into());
            let addr = SocketAddr::new(ip, config.prometheus_port);
            Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| Error::Bind {
                        transport: Transport::Tcp,
                        addr,
                        source,
                    })?,
            )
        } else {
            None
        };
        let metrics_addr = match &metrics_listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };

        let mut policy = PeerPolicy {
            allow_loopback: config.allow_loopback_peers,
            allow_multicast: false,
            denied: config.denied_peer_ips.clone(),
            allowed: config.allowed_peer_ips.clone(),
            allowed_addrs: config.allowed_peer_addrs.clone(),
            own: addrs.iter().map(|(_, a)| *a).collect(),
        };
        policy.own.extend(metrics_addr);
        let (relay_v4, relay_v6) = pick_relay_ips(&config);
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
        let span = (config.max_port - config.min_port) as u32 + 1;
        let start_port = u32::from_ne_bytes([key[0], key[1], key[2], key[3]]) % span;
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let planes = udp::Planes::new(udp_sockets_per_address())?;
        let tcp = TcpPlane::new();
        let shared = Arc::new(Shared {
            core: Mutex::new(Relay::new(
                core_config(&config),
                authenticator(&config),
                policy,
                Quotas::new(config.user_quota, config.total_quota),
                TokioIo {
                    planes: planes.clone(),
                    relay_v4,
                    relay_v6,
                    min_port: config.min_port,
                    max_port: config.max_port,
                    next_port: start_port,
                    tcp: tcp.clone(),
                    tcp_ports: HashSet::new(),
                },
                // The nonce key must be secret but need not be the port seed; derive
                // a separate one.
                {
                    let mut k = [0u8; 32];
                    let _ = getrandom::fill(&mut k);
                    k
                },
                Instant::now(),
                unix_now,
            )),
            tcp: tcp.clone(),
        });
        tcp.attach(&shared);

        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        // Listener socket k of every address goes to data-plane thread k.
        let mut per_thread: Vec<Vec<UdpSocket>> =
            (0..planes.threads()).map(|_| Vec::new()).collect();
        for (k, s) in udp_socks {
            per_thread[k % planes.threads()].push(s);
        }
        let mut threads = Vec::new();
        for (k, socks) in per_thread.into_iter().enumerate() {
            match udp::spawn(shared.clone(), planes.clone(), k, socks) {
                Ok(t) => threads.push(t),
                Err(e) => {
                    planes.stop();
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(e.into());
                }
            }
        }
        for l in tcp_socks {
            tasks.push(tokio::spawn(stream::accept_loop(
                shared.clone(),
                l,
                Transport::Tcp,
                None,
                shutdown_rx.clone(),
            )));
        }
        for l in tls_socks {
            tasks.push(tokio::spawn(stream::accept_loop(
                shared.clone(),
                l,
                Transport::Tls,
                tls.clone(),
                shutdown_rx.clone(),
            )));
        }
        if let Some(l) = metrics_listener {
            tasks.push(tokio::spawn(serve_metrics(
                shared.clone(),
                l,
                shutdown_rx.clone(),
            )));
        }
        tasks.push(tokio::spawn(ticker(shared.clone(), shutdown_rx.clone())));
        tracing::info!(
            listeners = ?addrs,
            relay_v4 = ?relay_v4,
            relay_v6 = ?relay_v6,
            realm = %config.realm,
            "turn-relay started"
        );
        Ok(TurnServer {
            addrs,
            metrics_addr,
            shared,
            shutdown,
            tasks,
            planes,
            threads,
        })
    }

    fn bind_listeners(
        config: &RelayConfig,
        ip: IpAddr,
        port: &mut u16,
        udp_socks: &mut Vec<(usize, UdpSocket)>,
        tcp_socks: &mut Vec<tokio::net::TcpListener>,
    ) -> Result<(), Error> {
        if !config.no_udp {
            let addr = SocketAddr::new(ip, *port);
            let s = udp::bind(addr).map_err(|source| Error::Bind {
                transport: Transport::Udp,
                addr,
                source,
            })?;
            // Port 0: let TCP follow the port the kernel gave UDP, as clients
            // expect both on one number.
            *port = s.local_addr()?.port();
            udp_socks.push((0, s));
            // One more socket per extra core on the same address (SO_REUSEPORT).
            let addr = SocketAddr::new(ip, *port);
            for k in 1..udp_sockets_per_address() {
                match udp::bind(addr) {
                    Ok(s) => udp_socks.push((k, s)),
                    Err(e) => {
                        tracing::debug!(error = %e, "extra UDP listener socket not bound");
                        break;
                    }
                }
            }
        }
        if !config.no_tcp {
            let addr = SocketAddr::new(ip, *port);
            let l = stream::bind_tcp(addr).map_err(|source| Error::Bind {
                transport: Transport::Tcp,
                addr,
                source,
            })?;
            tcp_socks.push(l);
        }
        Ok(())
    }

    /// Listener addresses actually bound (port 0 in the config is resolved here).
    pub fn local_addrs(&self) -> Vec<(Transport, SocketAddr)> {
        self.addrs.clone()
    }

    /// Address of the Prometheus `/metrics` listener, if enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Current Prometheus exposition (same text as `/metrics`).
    pub fn metrics_text(&self) -> String {
        metrics_text(&self.shared)
    }

    /// A handle that renders the exposition, for an embedding server's own `/metrics`.
    pub fn metrics_source(&self) -> MetricsSource {
        MetricsSource(self.shared.clone())
    }

    /// Number of allocations currently held.
    pub fn allocation_count(&self) -> usize {
        self.shared.core().allocation_count()
    }

    /// Stop accepting, close connections, drop every allocation and wait for the
    /// listener tasks to finish.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        self.planes.stop();
        let threads = std::mem::take(&mut self.threads);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
        self.shared.core().clear();
        tracing::info!("turn-relay stopped");
    }
}

impl Drop for TurnServer {
    fn drop(&mut self) {
        // Idempotent: after `shutdown` this is a no-op.
        self.planes.stop();
    }
}

/// Renders the relay's Prometheus exposition; cheap to clone. After the relay stopped it
/// shows the last figures.
#[derive(Clone)]
pub struct MetricsSource(Arc<Shared>);

impl MetricsSource {
    pub fn render(&self) -> String {
        metrics_text(&self.0)
    }
}

fn metrics_text(shared: &Shared) -> String {
    let (stats, n) = {
        let core = shared.core();
        (core.stats.clone(), core.allocation_count())
    };
    crate::metrics::render(&stats, n)
}

async fn ticker(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut iv = tokio::time::interval(Duration::from_secs(1));
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = iv.tick() => {
                let n = shared.core().tick(Instant::now());
                if n > 0 {
                    tracing::debug!(expired = n, "allocations expired");
                }
            }
        }
    }
}

/// Minimal HTTP/1.0 responder: any request gets the exposition for `/metrics`,
/// 404 otherwise. One short-lived task per scrape.
async fn serve_metrics(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let (mut conn, _) = tokio::select! {
            _ = shutdown.changed() => return,
            r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut req = [0u8; 1024];
            let n = match tokio::time::timeout(Duration::from_secs(5), conn.read(&mut req)).await {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let line = String::from_utf8_lossy(&req[..n]);
            let path = line.split_whitespace().nth(1).unwrap_or("/");
            let resp = if path == "/metrics" || path.starts_with("/metrics?") {
                let body = metrics_text(&shared);
                format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{}",
                    body.len(),
                    body
                )
            } else {
                "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string()
            };
            let _ = conn.write_all(resp.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}
