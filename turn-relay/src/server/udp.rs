//! The UDP data plane: one thread per two cores, each with its own epoll set holding
//! one SO_REUSEPORT listener socket per listening address and a share of the
//! relay sockets (assigned round-robin when allocations are made).
//!
//! Per epoll wake-up a thread drains every ready socket with `recvmmsg` into a
//! fixed arena of datagram slots (no per-packet allocation), takes the core's
//! lock once for all packets of the round (one table lookup each), and sends
//! the results with `sendmmsg`, grouped by socket: peer→client traffic from many
//! relay sockets leaves through one listener socket in one syscall. Sockets are
//! registered edge-triggered; a `recvmmsg` that returns fewer datagrams than it
//! asked for has emptied the socket (a later datagram raises a new edge), so no
//! extra `EAGAIN` read is needed, and a socket that filled the arena is put on a
//! pending list and drained again in the next round. The system calls themselves
//! go through `udp-batch`, shared with the SFU's media loop.
//!
//! TCP/TLS clients stay on tokio (`stream.rs`); their allocations' relay sockets
//! are served here too, and data for them is queued to the connection's writer.

use super::{ClientSink, RelayHandle, RelaySocket, Shared};
use crate::allocation::{AllocId, FiveTuple};
use crate::relay::{ClientAction, PeerAction, PEER_HEADROOM};
use crate::Transport;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::mem::zeroed;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use udp_batch::MmsgBatch;

/// Listener socket buffers; bursts from many clients otherwise overflow the
/// kernel default (~200 KiB) before the thread drains them. The kernel caps this
/// at net.core.rmem_max.
const SOCKET_BUFFER: usize = 4 << 20;

/// Datagram slots per thread. A round handles at most this many datagrams
/// between two lock acquisitions.
const SLOTS: usize = 64;
/// Bytes per slot. Datagrams that do not fit (beyond an Ethernet-ish MTU with
/// lots of margin) are dropped.
const SLOT: usize = 4096;
const EVENTS: usize = 256;

/// epoll tokens: allocations use `AllocId::to_u64` (index < u32::MAX); the
/// listeners and the wake-up eventfd use index u32::MAX.
const LISTENER: u64 = 0xFFFF_FFFF_0000_0000;
const WAKE: u64 = u64::MAX;

/// Binds with SO_REUSEPORT so the driver can open one socket per core on the
/// same address: the kernel hashes each client's 4-tuple to one of them, which
/// spreads the receive work (and the receive buffers) across cores. Linux only
/// lets sockets of the same user join the group.
pub(super) fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_port(true)?;
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

struct Epoll(OwnedFd);

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 returns a new fd that we own, or -1.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: fd is a valid, owned descriptor.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn add(&self, fd: RawFd, token: u64, edge: bool) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | if edge { libc::EPOLLET } else { 0 }) as u32,
            u64: token,
        };
        // SAFETY: both fds are valid; ev outlives the call.
        cvt(unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
        Ok(())
    }
}

/// The data-plane threads' epoll sets, shared with the core's `RelayIo` so new
/// relay sockets can be registered from whichever thread makes the allocation.
pub(crate) struct Planes {
    epolls: Vec<Epoll>,
    next: AtomicUsize,
    wake: OwnedFd,
    stop: AtomicBool,
}

impl Planes {
    pub(super) fn new(threads: usize) -> io::Result<Arc<Planes>> {
        // SAFETY: eventfd returns a new fd that we own, or -1.
        let wake = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: valid, owned descriptor.
        let wake = unsafe { OwnedFd::from_raw_fd(wake) };
        let mut epolls = Vec::new();
        for _ in 0..threads.max(1) {
            let ep = Epoll::new()?;
            // Level-triggered: every thread sees the one write at shutdown.
            ep.add(wake.as_raw_fd(), WAKE, false)?;
            epolls.push(ep);
        }
        Ok(Arc::new(Planes {
            epolls,
            next: AtomicUsize::new(0),
            wake,
            stop: AtomicBool::new(false),
        }))
    }

    pub(super) fn threads(&self) -> usize {
        self.epolls.len()
    }

    pub(super) fn register_relay(&self, rs: &RelaySocket, id: AllocId) -> io::Result<()> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.epolls.len();
        self.epolls[i].add(rs.fd(), id.to_u64(), true)
    }

    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a local to our eventfd.
        unsafe {
            libc::write(
                self.wake.as_raw_fd(),
                (&one as *const u64).cast(),
                size_of::<u64>(),
            );
        }
    }
}

struct Listener {
    sock: Arc<UdpSocket>,
    local: SocketAddr,
    sink: ClientSink,
}

/// Start data-plane thread `idx` with its listener sockets.
pub(super) fn spawn(
    shared: Arc<Shared>,
    planes: Arc<Planes>,
    idx: usize,
    socks: Vec<UdpSocket>,
) -> io::Result<std::thread::JoinHandle<()>> {
    let mut listeners = Vec::new();
    for (j, s) in socks.into_iter().enumerate() {
        planes.epolls[idx].add(s.as_raw_fd(), LISTENER | j as u64, true)?;
        let local = s.local_addr()?;
        let sock = Arc::new(s);
        listeners.push(Listener {
            sink: ClientSink::Udp(sock.clone()),
            sock,
            local,
        });
    }
    std::thread::Builder::new()
        .name(format!("turn-udp-{idx}"))
        .spawn(move || {
            let mut w = Worker::new(shared, listeners);
            w.run(&planes, idx);
        })
}

#[derive(Clone, Copy)]
struct RxMeta {
    from: Option<SocketAddr>,
    len: usize,
    /// Index into the round's relay socket list (peer side).
    src: usize,
}

enum Owner {
    Listener,
    /// Held only to keep the socket open until the send.
    #[allow(dead_code)]
    Relay(Arc<RelaySocket>),
    Client(ClientSink),
}

enum Buf {
    Rx(usize, usize),
    Tx(usize, usize),
}

struct Out {
    fd: RawFd,
    to: SocketAddr,
    buf: Buf,
    /// Keeps the socket open until the send, and carries stream sinks.
    owner: Owner,
}

struct Worker {
    shared: Arc<Shared>,
    listeners: Vec<Listener>,
    rx: Vec<u8>,
    meta: Vec<RxMeta>,
    batch: MmsgBatch,
    /// The core's output buffer (replies, Data indications).
    out: Vec<u8>,
    /// Copies of `out` waiting to be sent this round.
    tx: Vec<u8>,
    sends: Vec<Out>,
    pending: Vec<u64>,
}

impl Worker {
    fn new(shared: Arc<Shared>, listeners: Vec<Listener>) -> Worker {
        Worker {
            shared,
            listeners,
            rx: vec![0u8; SLOTS * SLOT],
            meta: vec![
                RxMeta {
                    from: None,
                    len: 0,
                    src: 0,
                };
                SLOTS
            ],
            batch: MmsgBatch::new(SLOTS),
            out: Vec::with_capacity(SLOT),
            tx: Vec::with_capacity(SLOTS * 256),
            sends: Vec::with_capacity(SLOTS),
            pending: Vec::new(),
        }
    }

    fn run(&mut self, planes: &Planes, idx: usize) {
        let epfd = planes.epolls[idx].0.as_raw_fd();
        // SAFETY: all-zero epoll_event is valid.
        let mut events = vec![unsafe { zeroed::<libc::epoll_event>() }; EVENTS];
        let mut tokens: Vec<u64> = Vec::with_capacity(EVENTS);
        let mut relays: Vec<u64> = Vec::with_capacity(EVENTS);
        loop {
            let timeout = if self.pending.is_empty() { -1 } else { 0 };
            // SAFETY: events has EVENTS entries.
            let n = unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), EVENTS as i32, timeout) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(error = %e, "epoll_wait failed; UDP data plane thread stops");
                return;
            }
            if planes.stop.load(Ordering::SeqCst) {
                return;
            }
            tokens.clear();
            tokens.extend(events[..n as usize].iter().map(|e| e.u64));
            tokens.append(&mut self.pending);
            if self.pending.capacity() == 0 {
                self.pending.reserve(16);
            }
            tokens.sort_unstable();
            tokens.dedup();
            relays.clear();
            for &t in &tokens {
                if t == WAKE {
                    continue;
                }
                if t & LISTENER == LISTENER {
                    self.drain_listener((t & 0xFFFF_FFFF) as usize);
                } else {
                    relays.push(t);
                }
            }
            for chunk in relays.chunks(SLOTS) {
                self.drain_relays(chunk);
            }
        }
    }

    /// `recvmmsg` into slots `first..first + count`, data at `headroom` in each.
    /// Returns how many datagrams arrived (0 when the socket was empty).
    fn recv(
        &mut self,
        fd: RawFd,
        first: usize,
        count: usize,
        headroom: usize,
    ) -> io::Result<usize> {
        let slots = self.rx[first * SLOT..(first + count) * SLOT]
            .chunks_mut(SLOT)
            .map(|slot| &mut slot[headroom..]);
        let r = self.batch.recv(fd, slots)?;
        for k in 0..r {
            let (len, from) = self.batch.received(k);
            self.meta[first + k] = RxMeta { from, len, src: 0 };
        }
        Ok(r)
    }

    fn drain_listener(&mut self, j: usize) {
        let Some(l) = self.listeners.get(j) else {
            return;
        };
        let fd = l.sock.as_raw_fd();
        let n = match self.recv(fd, 0, SLOTS, 0) {
            Ok(n) => n,
            Err(_) => {
                // e.g. a queued socket error; it is consumed, try again next round.
                self.pending.push(LISTENER | j as u64);
                return;
            }
        };
        if n == SLOTS {
            self.pending.push(LISTENER | j as u64);
        }
        if n == 0 {
            return;
        }
        let Worker {
            shared,
            listeners,
            rx,
            meta,
            out,
            tx,
            sends,
            ..
        } = self;
        let l = &listeners[j];
        let now = Instant::now();
        {
            let mut core = shared.core();
            for (k, m) in meta[..n].iter().enumerate() {
                let Some(from) = m.from else { continue };
                let packet = &rx[k * SLOT..k * SLOT + m.len];
                let ft = FiveTuple {
                    transport: Transport::Udp,
                    client: from,
                    server: l.local,
                };
                match core.handle_client(now, &ft, &l.sink, packet, out) {
                    ClientAction::None => {}
                    ClientAction::Reply => {
                        let start = tx.len();
                        tx.extend_from_slice(out);
                        sends.push(Out {
                            fd,
                            to: from,
                            buf: Buf::Tx(start, out.len()),
                            owner: Owner::Listener,
                        });
                    }
                    ClientAction::ToPeer {
                        relay: RelayHandle::Udp(relay),
                        peer,
                        data,
                    } => sends.push(Out {
                        fd: relay.fd(),
                        to: peer,
                        buf: Buf::Rx(k * SLOT + data.start, data.len()),
                        owner: Owner::Relay(relay),
                    }),
                    // Not over UDP: a TCP allocation's peers get no datagrams, and a
                    // ConnectionBind over UDP is answered 400.
                    ClientAction::ToPeer { .. } | ClientAction::ConnectionBound { .. } => {}
                }
            }
        }
        self.flush();
    }

    /// Drain up to SLOTS datagrams from the relay sockets behind `tokens`.
    fn drain_relays(&mut self, tokens: &[u64]) {
        let socks: Vec<(AllocId, Arc<RelaySocket>)> = {
            let core = self.shared.core();
            tokens
                .iter()
                .filter_map(|&t| {
                    let id = AllocId::from_u64(t);
                    match core.relay_of(id) {
                        Some(RelayHandle::Udp(r)) => Some((id, r.clone())),
                        _ => None,
                    }
                })
                .collect()
        };
        // Each ready socket gets a fair share of the arena: offering the first one every
        // slot would let a single flooded relay port starve all the others on this thread.
        let share = (SLOTS / socks.len().max(1)).max(1);
        let mut used = 0;
        for (si, (id, rs)) in socks.iter().enumerate() {
            if used == SLOTS {
                self.pending.push(id.to_u64());
                continue;
            }
            let want = share.min(SLOTS - used);
            match self.recv(rs.fd(), used, want, PEER_HEADROOM) {
                Ok(n) => {
                    if n == want {
                        self.pending.push(id.to_u64());
                    }
                    for m in &mut self.meta[used..used + n] {
                        m.src = si;
                    }
                    used += n;
                }
                Err(_) => self.pending.push(id.to_u64()),
            }
        }
        if used == 0 {
            return;
        }
        let Worker {
            shared,
            rx,
            meta,
            out,
            tx,
            sends,
            ..
        } = self;
        let now = Instant::now();
        {
            let mut core = shared.core();
            for (k, m) in meta[..used].iter().enumerate() {
                let Some(from) = m.from else { continue };
                let slot = &mut rx[k * SLOT..(k + 1) * SLOT];
                let id = socks[m.src].0;
                let (client, to, buf) = match core.handle_peer(now, id, from, slot, m.len, out) {
                    PeerAction::None => continue,
                    PeerAction::ChannelData { client, to, len } => {
                        (client, to, Buf::Rx(k * SLOT, len))
                    }
                    PeerAction::Indication { client, to } => {
                        let start = tx.len();
                        tx.extend_from_slice(out);
                        (client, to, Buf::Tx(start, out.len()))
                    }
                };
                let fd = match &client {
                    ClientSink::Udp(s) => s.as_raw_fd(),
                    ClientSink::Stream(_) => -1,
                };
                sends.push(Out {
                    fd,
                    to,
                    buf,
                    owner: Owner::Client(client),
                });
            }
        }
        drop(socks);
        self.flush();
    }

    /// Send everything queued this round: one `sendmmsg` per run of datagrams
    /// leaving through the same socket.
    fn flush(&mut self) {
        let mut sends = std::mem::take(&mut self.sends);
        sends.sort_by_key(|s| s.fd);
        let mut i = 0;
        while i < sends.len() {
            let fd = sends[i].fd;
            let mut j = i;
            while j < sends.len() && sends[j].fd == fd {
                j += 1;
            }
            if fd < 0 {
                for s in &sends[i..j] {
                    if let Owner::Client(c) = &s.owner {
                        c.send(self.bytes(&s.buf), s.to);
                    }
                }
            } else {
                self.sendmmsg(fd, &sends[i..j]);
            }
            i = j;
        }
        sends.clear();
        self.sends = sends;
        self.tx.clear();
    }

    fn bytes(&self, b: &Buf) -> &[u8] {
        bytes(&self.rx, &self.tx, b)
    }

    /// One `sendmmsg` per `SLOTS` datagrams of `batch`, all leaving through `fd`.
    fn sendmmsg(&mut self, fd: RawFd, batch: &[Out]) {
        let Worker {
            batch: mmsg,
            rx,
            tx,
            ..
        } = self;
        // Full send buffer: the rest is dropped, as a UDP send would; a datagram that
        // cannot be sent (unreachable, ...) is skipped.
        mmsg.send(fd, batch, |s| (bytes(rx, tx, &s.buf), s.to), |_| {});
    }
}

fn bytes<'a>(rx: &'a [u8], tx: &'a [u8], b: &Buf) -> &'a [u8] {
    match *b {
        Buf::Rx(s, n) => &rx[s..s + n],
        Buf::Tx(s, n) => &tx[s..s + n],
    }
}
