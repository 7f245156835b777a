//! The sans-IO relay core.
//!
//! [`Relay`] takes packets and the current time and returns what to send; it never
//! touches a socket or reads a clock. The only I/O it asks for goes through
//! [`RelayIo`] (binding and releasing relay sockets; for TCP allocations, listening,
//! connecting to peers and closing their connections), which tests replace with a fake.
//! The tokio driver in `server/` owns the sockets and calls into this. RFC 6062's part
//! of the core is in `relay/tcp.rs`.

mod tcp;

pub use tcp::{ConnectionId, Direction, CONNECTION_BIND_TIMEOUT, MAX_CONNECTIONS};

use crate::allocation::{AllocId, Allocation, AllocationTable, BindError, FiveTuple};
use crate::auth::Authenticator;
use crate::nonce::{NonceCheck, NonceIssuer};
use crate::policy::{normalize_addr, Denied, PeerPolicy};
use crate::quota::{Quotas, TokenBucket};
use crate::stun::attributes::{self as attr, reason};
use crate::stun::channel_data::{is_valid_channel, write_header, ChannelData};
use crate::stun::{classify, Class, Message, MessageWriter, Method, PacketKind};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::{Duration, Instant};

/// Room the driver leaves in front of peer data so a ChannelData header can be
/// written in place (no copy on the channel path).
pub const PEER_HEADROOM: usize = 4;

/// Protocol tunables, resolved from the configuration.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    pub default_lifetime: Duration,
    pub max_lifetime: Duration,
    pub permission_lifetime: Duration,
    pub channel_lifetime: Duration,
    pub stale_nonce: Duration,
    /// Add FINGERPRINT to every response (otherwise only when the request had one).
    pub fingerprint: bool,
    /// Per-allocation bandwidth cap in bytes/s, 0 = none.
    pub max_bps: u64,
    /// external-ip mappings: (public, private). A mapping without a private address
    /// applies to every relay address of the same family.
    pub external: Vec<(IpAddr, Option<IpAddr>)>,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            permission_lifetime: Duration::from_secs(300),
            channel_lifetime: Duration::from_secs(600),
            stale_nonce: Duration::from_secs(600),
            fingerprint: false,
            max_bps: 0,
            external: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn of(a: &SocketAddr) -> Family {
        if a.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayBindError {
    /// No relay address of that family is configured (→ 440).
    FamilyUnsupported,
    /// Port range exhausted or bind failed (→ 508).
    Exhausted,
}

/// Which port a relay socket needs (`EVEN-PORT`, RFC 8656 §14.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortWish {
    Any,
    Even,
    /// An even port, and the next one held for a later allocation (the R bit: RTP on the
    /// even port, RTCP on the odd one).
    EvenAndNext,
}

/// A relay socket just bound, and for [`PortWish::EvenAndNext`] the next port's, bound but
/// not receiving yet (it is adopted by the allocation that redeems the reservation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundRelay<R> {
    pub local: SocketAddr,
    pub relay: R,
    pub next: Option<(SocketAddr, R)>,
}

/// The I/O the core needs from its driver.
pub trait RelayIo {
    /// Handle used to send from a relay socket.
    type Relay: Clone;
    /// Handle used to send to a client (its listener socket or stream).
    type Client: Clone;

    /// Bind a relay socket for allocation `id`; peer traffic arriving on it must be
    /// fed to [`Relay::handle_peer`] with that id.
    fn bind_relay(
        &mut self,
        id: AllocId,
        family: Family,
        wish: PortWish,
    ) -> Result<BoundRelay<Self::Relay>, RelayBindError>;

    /// A reserved socket (from [`BoundRelay::next`]) now belongs to allocation `id`: peer
    /// traffic arriving on it must be fed to [`Relay::handle_peer`] with that id.
    fn adopt_relay(&mut self, relay: &Self::Relay, id: AllocId) -> Result<(), RelayBindError>;

    /// The allocation (or reservation) is gone: stop the relay socket's receive path.
    fn release_relay(&mut self, relay: &Self::Relay);

    /// A TCP allocation (RFC 6062): listen on a relayed address for peers' connections,
    /// which must be fed to [`Relay::peer_accepted`] with `id`. Released with
    /// [`release_relay`](Self::release_relay).
    fn listen_tcp(
        &mut self,
        id: AllocId,
        family: Family,
    ) -> Result<(SocketAddr, Self::Relay), RelayBindError>;

    /// Open a TCP connection from the relayed address `from` to `peer`, and report how it
    /// went to [`Relay::peer_connected`].
    fn connect_peer(&mut self, connection: ConnectionId, from: SocketAddr, peer: SocketAddr);

    /// Close `connection`'s peer connection, and its client data connection if bound.
    fn close_connection(&mut self, connection: ConnectionId);
}

/// How long a port reserved by `EVEN-PORT` with the R bit waits to be redeemed (RFC 8656
/// §7.2: "at least 30 seconds").
pub const RESERVATION_LIFETIME: Duration = Duration::from_secs(30);

/// A port held for the allocation that presents its RESERVATION-TOKEN.
struct Reservation<R> {
    token: [u8; 8],
    local: SocketAddr,
    relay: R,
    expires: Instant,
}

/// Counters for `/metrics` and logs.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub allocations_created: u64,
    pub allocations_expired: u64,
    pub auth_failures: u64,
    pub rejected_peers: u64,
    pub quota_rejections: u64,
    pub packets_to_peer: u64,
    pub bytes_to_peer: u64,
    pub packets_to_client: u64,
    pub bytes_to_client: u64,
    pub dropped_no_permission: u64,
    pub dropped_rate_limited: u64,
    pub malformed: u64,
    pub tcp_connections_bound: u64,
}

/// What to do with a packet from a client.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientAction<R> {
    None,
    /// Send `out` back to the client.
    Reply,
    /// Send `packet[data]` from `relay` to `peer`.
    ToPeer {
        relay: R,
        peer: SocketAddr,
        data: Range<usize>,
    },
    /// Send `out` back to the client; from then on this (TCP/TLS) connection is the client
    /// data connection of `connection` (RFC 6062): its bytes and the peer's are piped.
    ConnectionBound {
        connection: ConnectionId,
    },
}

/// What to do with a packet from a peer.
#[derive(Debug, PartialEq, Eq)]
pub enum PeerAction<C> {
    None,
    /// `buf[..len]` now holds a ChannelData message for the client.
    ChannelData {
        client: C,
        to: SocketAddr,
        len: usize,
    },
    /// `out` holds a Data indication for the client.
    Indication {
        client: C,
        to: SocketAddr,
    },
}

struct Cred {
    username: Box<str>,
    key: Option<[u8; 16]>,
}

pub struct Relay<I: RelayIo> {
    cfg: CoreConfig,
    auth: Authenticator,
    nonces: NonceIssuer,
    policy: PeerPolicy,
    quotas: Quotas,
    table: AllocationTable<I::Relay, I::Client>,
    reservations: Vec<Reservation<I::Relay>>,
    reservations_made: u64,
    io: I,
    epoch: Instant,
    epoch_unix: u64,
    indication_seq: u64,
    connections: tcp::Connections,
    pub stats: Stats,
}

impl<I: RelayIo> Relay<I> {
    /// `now`/`unix_now` anchor the core's clock: later calls pass only an
    /// `Instant`, and wall time (for REST credential expiry and nonces) is derived.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: CoreConfig,
        auth: Authenticator,
        policy: PeerPolicy,
        quotas: Quotas,
        io: I,
        nonce_key: [u8; 32],
        now: Instant,
        unix_now: u64,
    ) -> Self {
        let nonces = NonceIssuer::new(nonce_key, cfg.stale_nonce.as_secs());
        Relay {
            cfg,
            auth,
            nonces,
            policy,
            quotas,
            table: AllocationTable::default(),
            reservations: Vec::new(),
            reservations_made: 0,
            io,
            epoch: now,
            epoch_unix: unix_now,
            indication_seq: 0,
            connections: tcp::Connections::default(),
            stats: Stats::default(),
        }
    }

    pub fn allocation_count(&self) -> usize {
        self.table.len()
    }

    /// The relay socket handle of allocation `id`, if it still exists.
    pub fn relay_of(&self, id: AllocId) -> Option<&I::Relay> {
        self.table.get(id).map(|a| &a.relay)
    }

    pub fn io(&self) -> &I {
        &self.io
    }

    fn unix(&self, now: Instant) -> u64 {
        self.epoch_unix + now.saturating_duration_since(self.epoch).as_secs()
    }

    /// Handle one packet (a datagram, or one framed message from a stream).
    pub fn handle_client(
        &mut self,
        now: Instant,
        ft: &FiveTuple,
        client: &I::Client,
        packet: &[u8],
        out: &mut Vec<u8>,
    ) -> ClientAction<I::Relay> {
        match classify(packet) {
            PacketKind::ChannelData => self.client_channel_data(now, ft, packet),
            PacketKind::Stun => match Message::parse(packet) {
                Ok(m) => self.client_stun(now, ft, client, &m, packet, out),
                Err(_) => {
                    self.stats.malformed += 1;
                    ClientAction::None
                }
            },
            PacketKind::Other => {
                self.stats.malformed += 1;
                ClientAction::None
            }
        }
    }

    /// The hot path for channel mode: one hash lookup, two short scans.
    fn client_channel_data(
        &mut self,
        now: Instant,
        ft: &FiveTuple,
        packet: &[u8],
    ) -> ClientAction<I::Relay> {
        let Some(cd) = ChannelData::parse(packet) else {
            self.stats.malformed += 1;
            return ClientAction::None;
        };
        let Some(a) = self.table.find(ft).and_then(|id| self.table.get_mut(id)) else {
            return ClientAction::None;
        };
        if a.expires <= now {
            return ClientAction::None;
        }
        let Some(peer) = a.channel_peer(cd.channel, now) else {
            return ClientAction::None;
        };
        // The peer passed the policy when the channel was bound; the permission
        // (installed by the same ChannelBind) may have lapsed since.
        if !a.has_permission(peer.ip(), now) {
            self.stats.dropped_no_permission += 1;
            return ClientAction::None;
        }
        if let Some(b) = &mut a.bucket {
            if !b.allow(now, cd.data.len()) {
                self.stats.dropped_rate_limited += 1;
                return ClientAction::None;
            }
        }
        self.stats.packets_to_peer += 1;
        self.stats.bytes_to_peer += cd.data.len() as u64;
        ClientAction::ToPeer {
            relay: a.relay.clone(),
            peer,
            data: 4..4 + cd.data.len(),
        }
    }

    fn client_stun(
        &mut self,
        now: Instant,
        ft: &FiveTuple,
        client: &I::Client,
        m: &Message<'_>,
        packet: &[u8],
        out: &mut Vec<u8>,
    ) -> ClientAction<I::Relay> {
        if !m.check_fingerprint() {
            self.stats.malformed += 1;
            return ClientAction::None;
        }
        match (m.class, m.method) {
            (Class::Indication, Method::SEND) => return self.send_indication(now, ft, m, packet),
            (Class::Request, _) => {}
            // Responses and other indications from clients are ignored.
            _ => return ClientAction::None,
        }
        let fp = self.cfg.fingerprint || m.fingerprint_offset().is_some();
        let unknown: Vec<u16> = m.unknown_required().take(8).collect();
        if !unknown.is_empty() {
            let mut list = Vec::with_capacity(unknown.len() * 2);
            for t in unknown {
                list.extend_from_slice(&t.to_be_bytes());
            }
            let mut w = MessageWriter::new(out, m.method, Class::Error, m.transaction_id);
            w.add_error(420, reason(420));
            w.add(attr::UNKNOWN_ATTRIBUTES, &list);
            if fp {
                w.add_fingerprint();
            }
            return ClientAction::Reply;
        }
        match m.method {
            Method::BINDING => {
                let mut w =
                    MessageWriter::new(out, Method::BINDING, Class::Success, m.transaction_id);
                w.add_xor_address(attr::XOR_MAPPED_ADDRESS, ft.client);
                w.add_address(attr::MAPPED_ADDRESS, ft.client);
                if !ft.server.ip().is_unspecified() {
                    w.add_address(attr::RESPONSE_ORIGIN, ft.server);
                }
                if fp {
                    w.add_fingerprint();
                }
                ClientAction::Reply
            }
            Method::ALLOCATE
            | Method::REFRESH
            | Method::CREATE_PERMISSION
            | Method::CHANNEL_BIND
            | Method::CONNECT
            | Method::CONNECTION_BIND => {
                let cred = match self.authenticate(now, ft, m, fp, out) {
                    Ok(c) => c,
                    Err(a) => return a,
                };
                let done = match m.method {
                    Method::ALLOCATE => self.allocate(now, ft, client, m, &cred, fp, out),
                    Method::REFRESH => self.refresh(now, ft, m, &cred, fp, out),
                    Method::CREATE_PERMISSION => self.create_permission(now, ft, m, &cred, fp, out),
                    Method::CHANNEL_BIND => self.channel_bind(now, ft, m, &cred, fp, out),
                    Method::CONNECT => match self.connect(ft, m, &cred, fp) {
                        // Answered once the connection to the peer is made (or not).
                        Ok(()) => return ClientAction::None,
                        Err(code) => Err(code),
                    },
                    _ => match self.connection_bind(ft, m, &cred, fp, out) {
                        // The answer goes out first; then the connection carries the peer's
                        // bytes.
                        Ok(connection) => return ClientAction::ConnectionBound { connection },
                        Err(code) => Err(code),
                    },
                };
                if let Err(code) = done {
                    self.error(out, m, code, cred.key.as_ref(), fp);
                }
                ClientAction::Reply
            }
            _ => {
                self.error(out, m, 400, None, fp);
                ClientAction::Reply
            }
        }
    }

    fn error(
        &self,
        out: &mut Vec<u8>,
        m: &Message<'_>,
        code: u16,
        key: Option<&[u8; 16]>,
        fp: bool,
    ) {
        let mut w = MessageWriter::new(out, m.method, Class::Error, m.transaction_id);
        w.add_error(code, reason(code));
        w.seal(key.map(|k| &k[..]), fp);
    }

    /// 401 / 438 carry REALM and a fresh NONCE and nothing else (RFC 8489 §9.2.4);
    /// kept minimal so an unauthenticated request cannot buy a large answer.
    fn challenge(
        &mut self,
        now: Instant,
        ft: &FiveTuple,
        m: &Message<'_>,
        code: u16,
        fp: bool,
        out: &mut Vec<u8>,
    ) {
        self.stats.auth_failures += 1;
        let nonce = self.nonces.issue(self.unix(now), ft.client.ip());
        let mut w = MessageWriter::new(out, m.method, Class::Error, m.transaction_id);
        w.add_error(code, reason(code));
        w.add(attr::REALM, self.auth.realm().as_bytes());
        w.add(attr::NONCE, &nonce);
        if fp {
            w.add_fingerprint();
        }
    }

    /// Long-term credential check (RFC 8489 §9.2.4). `Err` means a response has
    /// already been written to `out`.
    fn authenticate(
        &mut self,
        now: Instant,
        ft: &FiveTuple,
        m: &Message<'_>,
        fp: bool,
        out: &mut Vec<u8>,
    ) -> Result<Cred, ClientAction<I::Relay>> {
        if self.auth.open {
            let username = m
                .get(attr::USERNAME)
                .and_then(|u| std::str::from_utf8(u).ok())
                .unwrap_or("");
            return Ok(Cred {
                username: username.into(),
                key: None,
            });
        }
        if m.integrity_offset().is_none() {
            self.challenge(now, ft, m, 401, fp, out);
            return Err(ClientAction::Reply);
        }
        let (Some(user), Some(_realm), Some(nonce)) = (
            m.get(attr::USERNAME),
            m.get(attr::REALM),
            m.get(attr::NONCE),
        ) else {
            self.error(out, m, 400, None, fp);
            return Err(ClientAction::Reply);
        };
        let unix = self.unix(now);
        match self.nonces.check(nonce, unix, ft.client.ip()) {
            NonceCheck::Valid => {}
            NonceCheck::Stale | NonceCheck::Invalid => {
                self.challenge(now, ft, m, 438, fp, out);
                return Err(ClientAction::Reply);
            }
        }
        let Ok(user) = std::str::from_utf8(user) else {
            self.error(out, m, 400, None, fp);
            return Err(ClientAction::Reply);
        };
        // The key is derived with our realm: a client that used another realm
        // fails the integrity check below, which is the intended 401.
        let key = match self.auth.key_for(user, unix) {
            Ok(k) => k,
            Err(_) => {
                tracing::debug!(username = user, client = %ft.client, "auth: unknown or expired user");
                self.challenge(now, ft, m, 401, fp, out);
                return Err(ClientAction::Reply);
            }
        };
        if !m.check_integrity(&key) {
            tracing::debug!(username = user, client = %ft.client, "auth: bad MESSAGE-INTEGRITY");
            self.challenge(now, ft, m, 401, fp, out);
            return Err(ClientAction::Reply);
        }
        Ok(Cred {
            username: user.into(),
            key: Some(key),
        })
    }

    fn lifetime(&self, requested: Option<u32>) -> Duration {
        match requested {
            None => self.cfg.default_lifetime,
            Some(s) => Duration::from_secs(s as u64)
                .min(self.cfg.max_lifetime)
                .max(self.cfg.default_lifetime.min(self.cfg.max_lifetime)),
        }
    }

    fn external(&self, local: SocketAddr) -> SocketAddr {
        for (public, private) in &self.cfg.external {
            let hit = match private {
                Some(p) => *p == local.ip(),
                None => public.is_ipv4() == local.is_ipv4(),
            };
            if hit {
                return SocketAddr::new(*public, local.port());
            }
        }
        local
    }

    /// The allocation of this 5-tuple, checked against the request's username.
    fn owned(&self, ft: &FiveTuple, cred: &Cred) -> Result<AllocId, u16> {
        let id = self.table.find(ft).ok_or(437u16)?;
        let a = self.table.get(id).ok_or(437u16)?;
        if a.username != cred.username {
            return Err(441);
        }
        Ok(id)
    }

    #[allow(clippy::too_many_arguments)]
    fn allocate(
        &mut self,
        now: Instant,
        ft: &FiveTuple,
        client: &I::Client,
        m: &Message<'_>,
        cred: &Cred,
        fp: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), u16> {
        if let Some(id) = self.table.find(ft) {
            let a = self.table.get(id).ok_or(500u16)?;
            if a.alloc_tid != m.transaction_id || a.username != cred.username {
                return Err(437);
            }
            // A retransmitted Allocate: answer as before, with the time left.
            let left = a.expires.saturating_duration_since(now).as_secs() as u32;
            // Its reservation, if it made one, is not told again: the first answer had it.
            let relayed = a.relayed;
            self.allocate_success(out, m, (relayed, left, None), ft.client, cred, fp);
            return Ok(());
        }
        let tcp = match m.get(attr::REQUESTED_TRANSPORT) {
            None => return Err(400),
            Some([17, _, _, _]) => false,
            Some([6, _, _, _]) => {
                tcp::check_allocate(ft, m)?;
                true
            }
            Some(v) if v.len() == 4 => return Err(442),
            Some(_) => return Err(400),
        };
        let family_attr = m.get(attr::REQUESTED_ADDRESS_FAMILY);
        let even_port = m.get(attr::EVEN_PORT);
        let token = match m.get(attr::RESERVATION_TOKEN) {
            None => None,
            // RFC 8656 §7.2: a token names the address already; EVEN-PORT or a family with
            // it is a bad request.
            Some(_) if even_port.is_some() || family_attr.is_some() => return Err(400),
            Some(token) => Some(<[u8; 8]>::try_from(token).map_err(|_| 400u16)?),
        };
        let family = match family_attr.map(attr::decode_family) {
            None => Family::V4,
            Some(Ok(attr::FAMILY_IPV4)) => Family::V4,
            Some(Ok(_)) => Family::V6,
            Some(Err(_)) => return Err(440),
        };
        let wish = match even_port {
            None => PortWish::Any,
            // The R bit (the first bit of its one byte) reserves the next port too.
            Some([flags, ..]) if flags & 0x80 != 0 => PortWish::EvenAndNext,
            Some([_, ..]) => PortWish::Even,
            Some([]) => return Err(400),
        };
        let requested = match m.get(attr::LIFETIME).map(attr::decode_u32) {
            Some(Ok(s)) => Some(s),
            Some(Err(_)) => return Err(400),
            None => None,
        };
        // An unknown or expired token: its port is not held (any more).
        let reserved = match token {
            Some(token) => {
                let at = self
                    .reservations
                    .iter()
                    .position(|r| r.token == token && r.expires > now)
                    .ok_or(508u16)?;
                Some(self.reservations.swap_remove(at))
            }
            None => None,
        };
        if self.quotas.try_acquire(&cred.username).is_err() {
            self.stats.quota_rejections += 1;
            tracing::info!(username = &*cred.username, client = %ft.client, "allocation quota reached");
            if let Some(reservation) = reserved {
                self.reservations.push(reservation);
            }
            return Err(486);
        }
        let id = self.table.next_id();
        let bound = match reserved {
            Some(reservation) => self
                .io
                .adopt_relay(&reservation.relay, id)
                .map(|()| BoundRelay {
                    local: reservation.local,
                    relay: reservation.relay.clone(),
                    next: None,
                })
                .inspect_err(|_| self.io.release_relay(&reservation.relay)),
            None if tcp => self
                .io
                .listen_tcp(id, family)
                .map(|(local, relay)| BoundRelay {
                    local,
                    relay,
                    next: None,
                }),
            None => self.io.bind_relay(id, family, wish),
        };
        let BoundRelay { local, relay, next } = match bound {
            Ok(bound) => bound,
            Err(e) => {
                self.quotas.release(&cred.username);
                return Err(match e {
                    RelayBindError::FamilyUnsupported => 440,
                    RelayBindError::Exhausted => 508,
                });
            }
        };
        let reservation_token = next.map(|(local, relay)| {
            self.reservations_made += 1;
            let token = self.nonces.reservation_token(self.reservations_made);
            self.reservations.push(Reservation {
                token,
                local,
                relay,
                expires: now + RESERVATION_LIFETIME,
            });
            token
        });
        let lifetime = self.lifetime(requested);
        let relayed = self.external(local);
        let bucket = (self.cfg.max_bps > 0).then(|| TokenBucket::new(self.cfg.max_bps, now));
        let inserted = self.table.insert(Allocation {
            five_tuple: *ft,
            username: cred.username.clone(),
            key: cred.key.unwrap_or_default(),
            local,
            relayed,
            expires: now + lifetime,
            alloc_tid: m.transaction_id,
            permissions: Vec::new(),
            channels: Vec::new(),
            relay,
            client: client.clone(),
            bucket,
            tcp,
        });
        debug_assert_eq!(inserted, id);
        self.stats.allocations_created += 1;
        tracing::debug!(username = &*cred.username, client = %ft.client, relayed = %relayed, tcp, "allocation created");
        self.allocate_success(
            out,
            m,
            (relayed, lifetime.as_secs() as u32, reservation_token),
            ft.client,
            cred,
            fp,
        );
        Ok(())
    }

    /// `granted`: the relayed address, its lifetime (s) and the token of the next port if
    /// one was reserved.
    fn allocate_success(
        &self,
        out: &mut Vec<u8>,
        m: &Message<'_>,
        granted: (SocketAddr, u32, Option<[u8; 8]>),
        client: SocketAddr,
        cred: &Cred,
        fp: bool,
    ) {
        let (relayed, lifetime, reservation) = granted;
        let mut w = MessageWriter::new(out, Method::ALLOCATE, Class::Success, m.transaction_id);
        w.add_xor_address(attr::XOR_RELAYED_ADDRESS, relayed);
        w.add_u32(attr::LIFETIME, lifetime);
        if let Some(token) = reservation {
            w.add(attr::RESERVATION_TOKEN, &token);
        }
        w.add_xor_address(attr::XOR_MAPPED_ADDRESS, client);
        w.seal(cred.key.as_ref().map(|k| &k[..]), fp);
    }

    fn success(
        &self,
        out: &mut Vec<u8>,
        m: &Message<'_>,
        cred: &Cred,
        fp: bool,
        lifetime: Option<u32>,
    ) {
        let mut w = MessageWriter::new(out, m.method, Class::Success, m.transaction_id);
        if let Some(l) = lifetime {
            w.add_u32(attr::LIFETIME, l);
        }
        w.seal(cred.key.as_ref().map(|k| &k[..]), fp);
    }

    fn refresh(
        &mut self,
        now: Instant,
        ft: &FiveTuple,
        m: &Message<'_>,
        cred: &Cred,
        fp: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), u16> {
        let id = self.owned(ft, cred)?;
        let requested = match m.get(attr::LIFETIME).map(attr::decode_u32) {
            Some(Ok(s)) => Some(s),
            Some(Err(_)) => return Err(400),
            None => None,
        };
        if let Some(fam) = m.get(attr::REQUESTED_ADDRESS_FAMILY) {
            let a = self.table.get(id).ok_or(437u16)?;
            let want = match attr::decode_family(fam) {
                Ok(attr::FAMILY_IPV4) => Family::V4,
                Ok(_) => Family::V6,
                Err(_) => return Err(400),
            };
            if want != Family::of(&a.local) {
                return Err(443);
            }
        }
        if requested == Some(0) {
            self.remove(id);
            tracing::debug!(client = %ft.client, "allocation deleted by refresh");
            self.success(out, m, cred, fp, Some(0));
            return Ok(());
        }
        let lifetime = self.lifetime(requested);
        if let Some(a) = self.table.get_mut(id) {
            a.expires = now + lifetime;
        }
        self.success(out, m, cred, fp, Some(lifetime.as_secs() as u32));
        Ok(())
    }

    /// Decode, normalise and policy-check a peer address for `a`'s family.
    fn peer_for(
        &mut self,
        m: &Message<'_>,
        v: &[u8],
        relay_local: SocketAddr,
    ) -> Result<SocketAddr, u16> {
        let peer = attr::decode_xor_address(v, &m.transaction_id).map_err(|_| 400u16)?;
        let peer = normalize_addr(peer);
        if peer.is_ipv4() != relay_local.is_ipv4() {
            return Err(443);
        }
        self.policy
            .check_ip(peer.ip())
            .map_err(|d| self.rejected(peer, d))?;
        Ok(peer)
    }

    fn rejected(&mut self, peer: SocketAddr, why: Denied) -> u16 {
        self.stats.rejected_peers += 1;
        tracing::debug!(peer = %peer, reason = ?why, "peer address rejected by policy");
        403
    }

    fn create_permission(
        &mut self,
        now: Instant,
        ft: &FiveTuple,
        m: &Message<'_>,
        cred: &Cred,
        fp: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), u16> {
        let id = self.owned(ft, cred)?;
        let local = self.table.get(id).ok_or(437u16)?.local;
        let mut peers: Vec<IpAddr> = Vec::new();
        for (t, v) in m.attributes() {
            if t == attr::XOR_PEER_ADDRESS {
                let p = self.peer_for(m, v, local)?;
                if peers.len() >= crate::allocation::MAX_PERMISSIONS {
                    return Err(508);
                }
                peers.push(p.ip());
            }
        }
        if peers.is_empty() {
            return Err(400);
        }
        let expires = now + self.cfg.permission_lifetime;
        let a = self.table.get_mut(id).ok_or(437u16)?;
        // All or nothing (RFC 8656 §9.2): check capacity before installing any.
        let new = peers
            .iter()
            .filter(|ip| !a.permissions.iter().any(|p| p.ip == **ip))
            .count();
        if a.permissions.len() + new > crate::allocation::MAX_PERMISSIONS {
            return Err(508);
        }
        for ip in peers {
            a.add_permission(ip, expires).map_err(|_| 508u16)?;
        }
        self.success(out, m, cred, fp, None);
        Ok(())
    }

    fn channel_bind(
        &mut self,
        now: Instant,
        ft: &FiveTuple,
        m: &Message<'_>,
        cred: &Cred,
        fp: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), u16> {
        let id = self.owned(ft, cred)?;
        let a = self.table.get(id).ok_or(437u16)?;
        // A TCP allocation has no channels (RFC 6062 §5.1).
        if a.tcp {
            return Err(400);
        }
        let local = a.local;
        let number = m
            .get(attr::CHANNEL_NUMBER)
            .and_then(|v| attr::decode_channel_number(v).ok())
            .filter(|n| is_valid_channel(*n))
            .ok_or(400u16)?;
        let v = m.get(attr::XOR_PEER_ADDRESS).ok_or(400u16)?;
        let peer = self.peer_for(m, v, local)?;
        self.policy
            .check_addr(peer)
            .map_err(|d| self.rejected(peer, d))?;
        let ch_exp = now + self.cfg.channel_lifetime;
        let perm_exp = now + self.cfg.permission_lifetime;
        let a = self.table.get_mut(id).ok_or(437u16)?;
        a.bind_channel(number, peer, ch_exp).map_err(|e| match e {
            BindError::Conflict => 400u16,
            BindError::Full => 508,
        })?;
        a.add_permission(peer.ip(), perm_exp).map_err(|_| 508u16)?;
        self.success(out, m, cred, fp, None);
        Ok(())
    }

    fn send_indication(
        &mut self,
        now: Instant,
        ft: &FiveTuple,
        m: &Message<'_>,
        packet: &[u8],
    ) -> ClientAction<I::Relay> {
        let Some(id) = self.table.find(ft) else {
            return ClientAction::None;
        };
        let (Some(Ok(peer)), Some(data)) =
            (m.get_xor_address(attr::XOR_PEER_ADDRESS), m.get(attr::DATA))
        else {
            self.stats.malformed += 1;
            return ClientAction::None;
        };
        let peer = normalize_addr(peer);
        if let Err(d) = self.policy.check_addr(peer) {
            self.rejected(peer, d);
            return ClientAction::None;
        }
        let Some(a) = self.table.get_mut(id) else {
            return ClientAction::None;
        };
        // A TCP allocation's peers are reached over their own connections only.
        if a.expires <= now || a.tcp || peer.is_ipv4() != a.local.is_ipv4() {
            return ClientAction::None;
        }
        if !a.has_permission(peer.ip(), now) {
            self.stats.dropped_no_permission += 1;
            return ClientAction::None;
        }
        if let Some(b) = &mut a.bucket {
            if !b.allow(now, data.len()) {
                self.stats.dropped_rate_limited += 1;
                return ClientAction::None;
            }
        }
        self.stats.packets_to_peer += 1;
        self.stats.bytes_to_peer += data.len() as u64;
        // `data` borrows from `packet`, so its offset is pointer arithmetic.
        let start = data.as_ptr() as usize - packet.as_ptr() as usize;
        ClientAction::ToPeer {
            relay: a.relay.clone(),
            peer,
            data: start..start + data.len(),
        }
    }

    /// Handle a datagram from `peer` on allocation `id`'s relay socket. The data is
    /// `buf[PEER_HEADROOM..PEER_HEADROOM + len]`.
    pub fn handle_peer(
        &mut self,
        now: Instant,
        id: AllocId,
        peer: SocketAddr,
        buf: &mut [u8],
        len: usize,
        out: &mut Vec<u8>,
    ) -> PeerAction<I::Client> {
        let peer = normalize_addr(peer);
        let Some(a) = self.table.get_mut(id) else {
            return PeerAction::None;
        };
        if a.expires <= now {
            return PeerAction::None;
        }
        // Permission implies the peer IP passed the policy when it was installed.
        if !a.has_permission(peer.ip(), now) {
            self.stats.dropped_no_permission += 1;
            return PeerAction::None;
        }
        if let Some(b) = &mut a.bucket {
            if !b.allow(now, len) {
                self.stats.dropped_rate_limited += 1;
                return PeerAction::None;
            }
        }
        if self.policy.check_inbound(peer).is_err() {
            // Traffic from our own listeners (a loop), or from a port of an IP that is let
            // in for one exact address only, is never forwarded. The rest of the policy was
            // applied to this IP when its permission was made.
            self.stats.rejected_peers += 1;
            return PeerAction::None;
        }
        self.stats.packets_to_client += 1;
        self.stats.bytes_to_client += len as u64;
        let to = a.five_tuple.client;
        let client = a.client.clone();
        if let Some(ch) = a.channel_for(peer, now) {
            let mut h = [0u8; 4];
            write_header(&mut h, ch, len);
            buf[..4].copy_from_slice(&h);
            return PeerAction::ChannelData {
                client,
                to,
                len: PEER_HEADROOM + len,
            };
        }
        self.indication_seq += 1;
        let mut tid = [0u8; 12];
        tid[4..].copy_from_slice(&self.indication_seq.to_be_bytes());
        let mut w = MessageWriter::new(out, Method::DATA, Class::Indication, tid);
        w.add_xor_address(attr::XOR_PEER_ADDRESS, peer);
        w.add(attr::DATA, &buf[PEER_HEADROOM..PEER_HEADROOM + len]);
        PeerAction::Indication { client, to }
    }

    fn remove(&mut self, id: AllocId) {
        if let Some(a) = self.table.remove(id) {
            self.quotas.release(&a.username);
            self.io.release_relay(&a.relay);
            if a.tcp {
                self.close_connections_of(id);
            }
        }
    }

    /// A stream client went away: its allocation goes with it (RFC 8656 §3.1).
    pub fn remove_client(&mut self, ft: &FiveTuple) -> bool {
        match self.table.find(ft) {
            Some(id) => {
                self.remove(id);
                true
            }
            None => false,
        }
    }

    /// Expire allocations, permissions, channels and reserved ports. Call about once a
    /// second.
    pub fn tick(&mut self, now: Instant) -> usize {
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reservations)
            .into_iter()
            .partition(|r| r.expires <= now);
        self.reservations = kept;
        for reservation in gone {
            self.io.release_relay(&reservation.relay);
        }
        let expired = self.table.ids_where(|a| a.expires <= now);
        let n = expired.len();
        for id in expired {
            self.remove(id);
        }
        self.stats.allocations_expired += n as u64;
        for a in self.table.iter_mut() {
            a.expire(now);
        }
        self.expire_connections(now);
        n
    }

    /// Remove every allocation and reservation (graceful shutdown).
    pub fn clear(&mut self) {
        for reservation in std::mem::take(&mut self.reservations) {
            self.io.release_relay(&reservation.relay);
        }
        for id in self.table.ids_where(|_| true) {
            self.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::integrity::long_term_key;
    use crate::Transport;

    /// Relay handles are the bound port; released ports are recorded, and so are the
    /// TCP connections asked for and closed.
    #[derive(Default)]
    pub(super) struct FakeIo {
        next: u16,
        pub(super) released: Vec<u16>,
        adopted: Vec<u16>,
        exhausted: bool,
        /// `connect_peer` calls: (connection, from, peer).
        pub(super) connecting: Vec<(ConnectionId, SocketAddr, SocketAddr)>,
        pub(super) closed: Vec<ConnectionId>,
    }

    impl RelayIo for FakeIo {
        type Relay = u16;
        type Client = ();
        fn bind_relay(
            &mut self,
            _id: AllocId,
            family: Family,
            wish: PortWish,
        ) -> Result<BoundRelay<u16>, RelayBindError> {
            if self.exhausted {
                return Err(RelayBindError::Exhausted);
            }
            if family == Family::V6 {
                return Err(RelayBindError::FamilyUnsupported);
            }
            self.next += 1;
            let mut port = 50000 + self.next;
            if wish != PortWish::Any && port % 2 == 1 {
                self.next += 1;
                port += 1;
            }
            let addr = |port| SocketAddr::from(([192, 0, 2, 100], port));
            let next = (wish == PortWish::EvenAndNext).then(|| {
                self.next += 1;
                (addr(port + 1), port + 1)
            });
            Ok(BoundRelay {
                local: addr(port),
                relay: port,
                next,
            })
        }
        fn adopt_relay(&mut self, relay: &u16, _id: AllocId) -> Result<(), RelayBindError> {
            self.adopted.push(*relay);
            Ok(())
        }
        fn release_relay(&mut self, relay: &u16) {
            self.released.push(*relay);
        }
        fn listen_tcp(
            &mut self,
            id: AllocId,
            family: Family,
        ) -> Result<(SocketAddr, u16), RelayBindError> {
            let bound = self.bind_relay(id, family, PortWish::Any)?;
            Ok((bound.local, bound.relay))
        }
        fn connect_peer(&mut self, connection: ConnectionId, from: SocketAddr, peer: SocketAddr) {
            self.connecting.push((connection, from, peer));
        }
        fn close_connection(&mut self, connection: ConnectionId) {
            self.closed.push(connection);
        }
    }

    pub(super) const REALM: &str = "rtc.local";

    pub(super) struct T {
        pub(super) relay: Relay<FakeIo>,
        t0: Instant,
        pub(super) out: Vec<u8>,
        pub(super) tid: u8,
    }

    pub(super) fn ft(port: u16) -> FiveTuple {
        FiveTuple {
            transport: Transport::Udp,
            client: SocketAddr::from(([198, 51, 100, 7], port)),
            server: SocketAddr::from(([192, 0, 2, 100], 3478)),
        }
    }

    pub(super) fn peer(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    impl T {
        pub(super) fn new(policy: PeerPolicy, quotas: Quotas) -> T {
            Self::with(CoreConfig::default(), policy, quotas)
        }

        pub(super) fn with(cfg: CoreConfig, policy: PeerPolicy, quotas: Quotas) -> T {
            let mut auth = Authenticator::new(REALM, Some("sekrit".into()), false);
            auth.add_user("alice", "pw");
            auth.add_user("bob", "pw");
            let t0 = Instant::now();
            T {
                relay: Relay::new(
                    cfg,
                    auth,
                    policy,
                    quotas,
                    FakeIo::default(),
                    [9; 32],
                    t0,
                    1_700_000_000,
                ),
                t0,
                out: Vec::new(),
                tid: 0,
            }
        }

        pub(super) fn at(&self, secs: u64) -> Instant {
            self.t0 + Duration::from_secs(secs)
        }

        pub(super) fn nonce(&mut self, now: Instant, ft: &FiveTuple) -> Vec<u8> {
            // Ask for a challenge, the way a client does on its first request.
            let r = self.request(now, ft, Method::ALLOCATE, None, &[]);
            assert_eq!(r.0, 401);
            r.1.expect("401 carries a nonce")
        }

        /// Send a request; returns what the core made of it (its answer in `self.out`).
        pub(super) fn send(
            &mut self,
            now: Instant,
            ft: &FiveTuple,
            method: Method,
            auth: Option<(&str, &str, &[u8])>,
            attrs: &[(u16, Vec<u8>)],
        ) -> ClientAction<u16> {
            self.tid += 1;
            let tid = [self.tid; 12];
            let mut req = Vec::new();
            let mut w = MessageWriter::new(&mut req, method, Class::Request, tid);
            for (t, v) in attrs {
                w.add(*t, v);
            }
            if let Some((user, pass, nonce)) = auth {
                w.add(attr::USERNAME, user.as_bytes());
                w.add(attr::REALM, REALM.as_bytes());
                w.add(attr::NONCE, nonce);
                w.add_integrity(&long_term_key(user, REALM, pass));
            }
            self.relay.handle_client(now, ft, &(), &req, &mut self.out)
        }

        /// Send a request; returns (status code or 0 for success, NONCE if any, raw response).
        #[allow(clippy::type_complexity)]
        pub(super) fn request(
            &mut self,
            now: Instant,
            ft: &FiveTuple,
            method: Method,
            auth: Option<(&str, &str, &[u8])>,
            attrs: &[(u16, Vec<u8>)],
        ) -> (u16, Option<Vec<u8>>, Vec<u8>) {
            let action = self.send(now, ft, method, auth, attrs);
            assert_eq!(action, ClientAction::Reply);
            let tid = [self.tid; 12];
            let m = Message::parse(&self.out).unwrap();
            assert_eq!(m.transaction_id, tid);
            let code = match m.class {
                Class::Success => 0,
                Class::Error => {
                    attr::decode_error(m.get(attr::ERROR_CODE).unwrap())
                        .unwrap()
                        .0
                }
                c => panic!("unexpected class {c:?}"),
            };
            (
                code,
                m.get(attr::NONCE).map(|n| n.to_vec()),
                self.out.clone(),
            )
        }

        fn allocate(&mut self, now: Instant, ft: &FiveTuple, user: &str) -> u16 {
            let nonce = self.nonce(now, ft);
            self.request(
                now,
                ft,
                Method::ALLOCATE,
                Some((user, "pw", &nonce)),
                &[transport_udp()],
            )
            .0
        }

        fn authed(
            &mut self,
            now: Instant,
            ft: &FiveTuple,
            method: Method,
            attrs: &[(u16, Vec<u8>)],
        ) -> u16 {
            let nonce = self.nonce(now, ft);
            self.request(now, ft, method, Some(("alice", "pw", &nonce)), attrs)
                .0
        }

        pub(super) fn peer_attr(&self, p: SocketAddr) -> (u16, Vec<u8>) {
            // XOR with the *next* request's transaction id.
            let mut v = [0u8; 20];
            let n = attr::encode_xor_address(p, &[self.tid + 2; 12], &mut v);
            (attr::XOR_PEER_ADDRESS, v[..n].to_vec())
        }
    }

    fn transport_udp() -> (u16, Vec<u8>) {
        (attr::REQUESTED_TRANSPORT, vec![17, 0, 0, 0])
    }

    fn channel(n: u16) -> (u16, Vec<u8>) {
        let b = n.to_be_bytes();
        (attr::CHANNEL_NUMBER, vec![b[0], b[1], 0, 0])
    }

    fn lifetime(s: u32) -> (u16, Vec<u8>) {
        (attr::LIFETIME, s.to_be_bytes().to_vec())
    }

    pub(super) fn open_policy() -> PeerPolicy {
        PeerPolicy::default()
    }

    #[test]
    fn binding_needs_no_auth() {
        let mut t = T::new(open_policy(), Quotas::default());
        let now = t.at(0);
        let (code, _, raw) = t.request(now, &ft(1000), Method::BINDING, None, &[]);
        assert_eq!(code, 0);
        let m = Message::parse(&raw).unwrap();
        assert_eq!(
            m.get_xor_address(attr::XOR_MAPPED_ADDRESS)
                .unwrap()
                .unwrap(),
            ft(1000).client
        );
    }

    #[test]
    fn allocate_challenge_then_success() {
        let mut t = T::new(open_policy(), Quotas::default());
        let now = t.at(0);
        let f = ft(1000);
        // 401 without credentials: REALM and NONCE, no MESSAGE-INTEGRITY.
        let (code, nonce, raw) = t.request(now, &f, Method::ALLOCATE, None, &[transport_udp()]);
        assert_eq!(code, 401);
        let m = Message::parse(&raw).unwrap();
        assert_eq!(m.get(attr::REALM), Some(REALM.as_bytes()));
        assert!(m.integrity_offset().is_none());
        let nonce = nonce.unwrap();
        let (code, _, raw) = t.request(
            now,
            &f,
            Method::ALLOCATE,
            Some(("alice", "pw", &nonce)),
            &[transport_udp()],
        );
        assert_eq!(code, 0);
        let m = Message::parse(&raw).unwrap();
        assert!(m.check_integrity(&long_term_key("alice", REALM, "pw")));
        let relayed = m
            .get_xor_address(attr::XOR_RELAYED_ADDRESS)
            .unwrap()
            .unwrap();
        assert_eq!(relayed, peer("192.0.2.100:50001"));
        assert_eq!(attr::decode_u32(m.get(attr::LIFETIME).unwrap()), Ok(600));
        assert_eq!(t.relay.allocation_count(), 1);
    }

    /// EVEN-PORT with the R bit (RFC 8656 §7.2): an even port now, the next one held for 30 s
    /// for whoever presents the token (turnutils_uclient's RTP/RTCP pairs).
    #[test]
    fn even_port_reserves_the_next_port_for_its_token() {
        let mut t = T::new(open_policy(), Quotas::default());
        let now = t.at(0);
        let (rtp, rtcp, late) = (ft(1000), ft(1001), ft(1002));
        let relayed = |raw: &[u8]| {
            let m = Message::parse(raw).unwrap();
            let addr = m
                .get_xor_address(attr::XOR_RELAYED_ADDRESS)
                .unwrap()
                .unwrap();
            (addr, m.get(attr::RESERVATION_TOKEN).map(<[u8]>::to_vec))
        };
        let nonce = t.nonce(now, &rtp);
        let creds = Some(("alice", "pw", nonce.as_slice()));
        let reserve = (attr::EVEN_PORT, vec![0x80]);
        let (code, _, raw) = t.request(
            now,
            &rtp,
            Method::ALLOCATE,
            creds,
            &[transport_udp(), reserve],
        );
        assert_eq!(code, 0);
        let (even, token) = relayed(&raw);
        assert_eq!(even.port() % 2, 0, "{even}");
        let token = token.expect("a RESERVATION-TOKEN for the next port");
        assert_eq!(token.len(), 8);

        let nonce = t.nonce(now, &rtcp);
        let creds = Some(("alice", "pw", nonce.as_slice()));
        let redeem = (attr::RESERVATION_TOKEN, token.clone());
        // With EVEN-PORT or a family as well: a bad request.
        for extra in [
            (attr::EVEN_PORT, vec![0]),
            (attr::REQUESTED_ADDRESS_FAMILY, vec![1, 0, 0, 0]),
        ] {
            let attrs = [transport_udp(), redeem.clone(), extra];
            assert_eq!(
                t.request(now, &rtcp, Method::ALLOCATE, creds, &attrs).0,
                400
            );
        }
        let (code, _, raw) = t.request(
            now,
            &rtcp,
            Method::ALLOCATE,
            creds,
            &[transport_udp(), redeem.clone()],
        );
        assert_eq!(code, 0);
        let (odd, none) = relayed(&raw);
        assert_eq!(odd.port(), even.port() + 1);
        assert_eq!(none, None);
        assert_eq!(
            t.relay.io().adopted,
            [odd.port()],
            "the held socket now receives"
        );
        // A token is good once.
        let nonce = t.nonce(now, &late);
        let creds = Some(("alice", "pw", nonce.as_slice()));
        assert_eq!(
            t.request(
                now,
                &late,
                Method::ALLOCATE,
                creds,
                &[transport_udp(), redeem]
            )
            .0,
            508
        );

        // A reservation nobody redeems is released after 30 s, and its token is dead.
        let (code, _, raw) = t.request(
            now,
            &late,
            Method::ALLOCATE,
            creds,
            &[transport_udp(), (attr::EVEN_PORT, vec![0x80])],
        );
        assert_eq!(code, 0);
        let (second, token) = relayed(&raw);
        assert_ne!(token, Some(redeem_token(&t, 1)), "tokens differ");
        t.relay
            .tick(now + RESERVATION_LIFETIME - Duration::from_secs(1));
        assert!(!t.relay.io().released.contains(&(second.port() + 1)));
        t.relay.tick(now + RESERVATION_LIFETIME);
        assert!(
            t.relay.io().released.contains(&(second.port() + 1)),
            "{:?}",
            t.relay.io().released
        );
        let other = ft(1003);
        let nonce = t.nonce(now, &other);
        let creds = Some(("alice", "pw", nonce.as_slice()));
        let attrs = [transport_udp(), (attr::RESERVATION_TOKEN, token.unwrap())];
        assert_eq!(
            t.request(
                now + RESERVATION_LIFETIME,
                &other,
                Method::ALLOCATE,
                creds,
                &attrs
            )
            .0,
            508
        );
    }

    /// The token of reservation `seq`, as the relay makes it.
    fn redeem_token(t: &T, seq: u64) -> Vec<u8> {
        t.relay.nonces.reservation_token(seq).to_vec()
    }

    #[test]
    fn an_unauthenticated_allocate_buys_at_most_three_times_its_size() {
        // The smallest Allocate (header + REQUESTED-TRANSPORT, 28 bytes) from a spoofed
        // address, to a relay that adds FINGERPRINT to everything (turnserver.conf's
        // `fingerprint`, realm rtc.local): the 401 is the largest answer it can get. coturn
        // stays within 3×; ours was 92 bytes (3.3×) with 24-character nonces.
        let cfg = CoreConfig {
            fingerprint: true,
            ..CoreConfig::default()
        };
        let mut t = T::with(cfg, open_policy(), Quotas::default());
        let now = t.at(0);
        let mut req = Vec::new();
        MessageWriter::new(&mut req, Method::ALLOCATE, Class::Request, [1; 12])
            .add(attr::REQUESTED_TRANSPORT, &transport_udp().1);
        assert_eq!(req.len(), 28);
        let action = t.relay.handle_client(now, &ft(1000), &(), &req, &mut t.out);
        assert_eq!(action, ClientAction::Reply);
        let m = Message::parse(&t.out).unwrap();
        assert_eq!(
            attr::decode_error(m.get(attr::ERROR_CODE).unwrap())
                .unwrap()
                .0,
            401
        );
        assert!(
            t.out.len() <= 3 * req.len(),
            "{} bytes answer {} bytes",
            t.out.len(),
            req.len()
        );
    }

    #[test]
    fn wrong_password_and_unknown_user_get_401() {
        let mut t = T::new(open_policy(), Quotas::default());
        let now = t.at(0);
        let f = ft(1000);
        let nonce = t.nonce(now, &f);
        let r = t.request(
            now,
            &f,
            Method::ALLOCATE,
            Some(("alice", "nope", &nonce)),
            &[transport_udp()],
        );
        assert_eq!(r.0, 401);
        let r = t.request(
            now,
            &f,
            Method::ALLOCATE,
            Some(("mallory", "pw", &nonce)),
            &[transport_udp()],
        );
        assert_eq!(r.0, 401);
        assert_eq!(t.relay.allocation_count(), 0);
        assert!(t.relay.stats.auth_failures >= 3);
    }

    #[test]
    fn rest_credentials_and_expiry() {
        let mut t = T::new(open_policy(), Quotas::default());
        let now = t.at(0);
        let f = ft(1000);
        let wall = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (user, pass) =
            crate::rest_auth::credentials("sekrit", "u1", Duration::from_secs(60), wall);
        let nonce = t.nonce(now, &f);
        let r = t.request(
            now,
            &f,
            Method::ALLOCATE,
            Some((&user, &pass, &nonce)),
            &[transport_udp()],
        );
        assert_eq!(r.0, 0);
        // The same credentials after their expiry (wall time derived from `now`).
        let later = t.at(61);
        let f2 = ft(1001);
        let nonce = t.nonce(later, &f2);
        let r = t.request(
            later,
            &f2,
            Method::ALLOCATE,
            Some((&user, &pass, &nonce)),
            &[transport_udp()],
        );
        assert_eq!(r.0, 401);
    }

    #[test]
    fn stale_nonce_gets_438_with_a_fresh_nonce() {
        let mut t = T::new(open_policy(), Quotas::default());
        let f = ft(1000);
        let old = t.nonce(t.at(0), &f);
        let later = t.at(601);
        let (code, fresh, _) = t.request(
            later,
            &f,
            Method::ALLOCATE,
            Some(("alice", "pw", &old)),
            &[transport_udp()],
        );
        assert_eq!(code, 438);
        let fresh = fresh.unwrap();
        assert_ne!(fresh, old);
        let (code, _, _) = t.request(
            later,
            &f,
            Method::ALLOCATE,
            Some(("alice", "pw", &fresh)),
            &[transport_udp()],
        );
        assert_eq!(code, 0);
        // A forged nonce is treated like a stale one.
        let r = t.request(
            later,
            &ft(1001),
            Method::ALLOCATE,
            Some(("alice", "pw", b"000000000000000000000000")),
            &[transport_udp()],
        );
        assert_eq!(r.0, 438);
    }

    #[test]
    fn allocate_errors() {
        let mut t = T::new(open_policy(), Quotas::default());
        let now = t.at(0);
        let f = ft(1000);
        let nonce = t.nonce(now, &f);
        let creds = Some(("alice", "pw", nonce.as_slice()));
        assert_eq!(t.request(now, &f, Method::ALLOCATE, creds, &[]).0, 400);
        // SCTP: not ours to relay. TCP (RFC 6062) is, but not for a client over UDP.
        let sctp = (attr::REQUESTED_TRANSPORT, vec![132, 0, 0, 0]);
        assert_eq!(t.request(now, &f, Method::ALLOCATE, creds, &[sctp]).0, 442);
        let tcp = (attr::REQUESTED_TRANSPORT, vec![6, 0, 0, 0]);
        assert_eq!(t.request(now, &f, Method::ALLOCATE, creds, &[tcp]).0, 400);
        let v6 = (attr::REQUESTED_ADDRESS_FAMILY, vec![2, 0, 0, 0]);
        assert_eq!(
            t.request(now, &f, Method::ALLOCATE, creds, &[transport_udp(), v6])
                .0,
            440
        );
        let token = (attr::RESERVATION_TOKEN, vec![0; 8]);
        assert_eq!(
            t.request(now, &f, Method::ALLOCATE, creds, &[transport_udp(), token])
                .0,
            508
        );
        // An unknown comprehension-required attribute: 420.
        let odd = (0x7777, vec![1, 2, 3, 4]);
        assert_eq!(
            t.request(now, &f, Method::ALLOCATE, creds, &[transport_udp(), odd])
                .0,
            420
        );
        assert_eq!(
            t.request(now, &f, Method::ALLOCATE, creds, &[transport_udp()])
                .0,
            0
        );
        // Second Allocate on the same 5-tuple with a new transaction: 437.
        assert_eq!(
            t.request(now, &f, Method::ALLOCATE, creds, &[transport_udp()])
                .0,
            437
        );
        // Refresh by another user on this 5-tuple: 441.
        let r = t.request(now, &f, Method::REFRESH, Some(("bob", "pw", &nonce)), &[]);
        assert_eq!(r.0, 441);
        // Refresh without an allocation: 437.
        assert_eq!(t.authed(now, &ft(2000), Method::REFRESH, &[]), 437);
        // Port exhaustion: 508, and the quota slot is given back.
        t.relay.io.exhausted = true;
        assert_eq!(t.allocate(now, &ft(3000), "bob"), 508);
        assert_eq!(t.relay.quotas.total(), 1);
    }

    #[test]
    fn retransmitted_allocate_gets_the_same_answer() {
        let mut t = T::new(open_policy(), Quotas::default());
        let now = t.at(0);
        let f = ft(1000);
        let nonce = t.nonce(now, &f);
        let mut req = Vec::new();
        let mut w = MessageWriter::new(&mut req, Method::ALLOCATE, Class::Request, [0xEE; 12]);
        w.add(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        w.add(attr::USERNAME, b"alice");
        w.add(attr::REALM, REALM.as_bytes());
        w.add(attr::NONCE, &nonce);
        w.add_integrity(&long_term_key("alice", REALM, "pw"));
        let mut out = Vec::new();
        t.relay.handle_client(now, &f, &(), &req, &mut out);
        let first = out.clone();
        t.relay.handle_client(now, &f, &(), &req, &mut out);
        assert_eq!(out, first);
        assert_eq!(t.relay.allocation_count(), 1);
    }

    #[test]
    fn refresh_zero_deletes_and_releases() {
        let mut t = T::new(open_policy(), Quotas::new(1, 0));
        let now = t.at(0);
        let f = ft(1000);
        assert_eq!(t.allocate(now, &f, "alice"), 0);
        // Lifetime is clamped to [default, max].
        let nonce = t.nonce(now, &f);
        let (code, _, raw) = t.request(
            now,
            &f,
            Method::REFRESH,
            Some(("alice", "pw", &nonce)),
            &[lifetime(99_999)],
        );
        assert_eq!(code, 0);
        let m = Message::parse(&raw).unwrap();
        assert_eq!(attr::decode_u32(m.get(attr::LIFETIME).unwrap()), Ok(3600));
        assert_eq!(t.authed(now, &f, Method::REFRESH, &[lifetime(0)]), 0);
        assert_eq!(t.relay.allocation_count(), 0);
        assert_eq!(t.relay.io.released, vec![50001]);
        // Quota slot released: the user can allocate again.
        assert_eq!(t.allocate(now, &ft(1001), "alice"), 0);
        // And the deleted allocation's 5-tuple no longer refreshes.
        assert_eq!(t.authed(now, &f, Method::REFRESH, &[]), 437);
    }

    #[test]
    fn allocation_expires_on_tick() {
        let mut t = T::new(open_policy(), Quotas::default());
        let f = ft(1000);
        assert_eq!(t.allocate(t.at(0), &f, "alice"), 0);
        assert_eq!(t.relay.tick(t.at(599)), 0);
        assert_eq!(t.relay.tick(t.at(600)), 1);
        assert_eq!(t.relay.allocation_count(), 0);
        assert_eq!(t.relay.io.released.len(), 1);
    }

    #[test]
    fn quota_486() {
        let mut t = T::new(open_policy(), Quotas::new(2, 3));
        let now = t.at(0);
        assert_eq!(t.allocate(now, &ft(1), "alice"), 0);
        assert_eq!(t.allocate(now, &ft(2), "alice"), 0);
        assert_eq!(t.allocate(now, &ft(3), "alice"), 486);
        assert_eq!(t.allocate(now, &ft(4), "bob"), 0);
        assert_eq!(t.allocate(now, &ft(5), "bob"), 486, "total quota");
        assert_eq!(t.relay.stats.quota_rejections, 2);
    }

    fn allocated() -> (T, FiveTuple) {
        let mut t = T::new(open_policy(), Quotas::default());
        let f = ft(1000);
        assert_eq!(t.allocate(t.at(0), &f, "alice"), 0);
        (t, f)
    }

    #[test]
    fn denied_peers_get_403_including_v4_mapped() {
        let (mut t, f) = allocated();
        let now = t.at(0);
        for p in [
            "127.0.0.1:9",
            "[::ffff:127.0.0.1]:9",
            "0.0.0.0:9",
            "224.0.0.5:9",
            "169.254.0.1:9",
        ] {
            // The nonce request consumes a tid, so build the attribute for the one after.
            let a = t.peer_attr(peer(p));
            assert_eq!(
                t.authed(now, &f, Method::CREATE_PERMISSION, &[a]),
                403,
                "{p}"
            );
            let a = t.peer_attr(peer(p));
            assert_eq!(
                t.authed(now, &f, Method::CHANNEL_BIND, &[channel(0x4000), a]),
                403,
                "{p}"
            );
        }
        assert!(t.relay.stats.rejected_peers >= 10);
        let a = t.peer_attr(peer("[2001:db8::1]:9"));
        assert_eq!(t.authed(now, &f, Method::CREATE_PERMISSION, &[a]), 443);
        assert_eq!(t.authed(now, &f, Method::CREATE_PERMISSION, &[]), 400);
    }

    #[test]
    fn denied_range_and_own_listener() {
        let policy = PeerPolicy {
            denied: vec![crate::policy::IpRange::parse("10.0.0.0/8").unwrap()],
            own: vec![peer("192.0.2.100:3478")],
            ..Default::default()
        };
        let mut t = T::new(policy, Quotas::default());
        let f = ft(1000);
        let now = t.at(0);
        assert_eq!(t.allocate(now, &f, "alice"), 0);
        let a = t.peer_attr(peer("10.1.2.3:9"));
        assert_eq!(t.authed(now, &f, Method::CREATE_PERMISSION, &[a]), 403);
        // Our own listener cannot be a channel peer (a relay loop).
        let a = t.peer_attr(peer("192.0.2.100:3478"));
        assert_eq!(
            t.authed(now, &f, Method::CHANNEL_BIND, &[channel(0x4000), a]),
            403
        );
        // Another client's relayed address on the same host is fine.
        let a = t.peer_attr(peer("192.0.2.100:50009"));
        assert_eq!(
            t.authed(now, &f, Method::CHANNEL_BIND, &[channel(0x4000), a]),
            0
        );
    }

    fn send_indication(p: SocketAddr, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        let tid = [0x55; 12];
        let mut w = MessageWriter::new(&mut v, Method::SEND, Class::Indication, tid);
        w.add_xor_address(attr::XOR_PEER_ADDRESS, p);
        w.add(attr::DATA, data);
        v
    }

    #[test]
    fn send_indication_needs_permission() {
        let (mut t, f) = allocated();
        let now = t.at(0);
        let p = peer("203.0.113.9:4000");
        let ind = send_indication(p, b"hello");
        let mut out = Vec::new();
        assert_eq!(
            t.relay.handle_client(now, &f, &(), &ind, &mut out),
            ClientAction::None
        );
        assert_eq!(t.relay.stats.dropped_no_permission, 1);
        let a = t.peer_attr(p);
        assert_eq!(t.authed(now, &f, Method::CREATE_PERMISSION, &[a]), 0);
        match t.relay.handle_client(now, &f, &(), &ind, &mut out) {
            ClientAction::ToPeer {
                relay,
                peer: to,
                data,
            } => {
                assert_eq!((relay, to), (50001, p));
                assert_eq!(&ind[data], b"hello");
            }
            other => panic!("{other:?}"),
        }
        // Permissions last 300 s.
        let late = t.at(300);
        assert_eq!(
            t.relay.handle_client(late, &f, &(), &ind, &mut out),
            ClientAction::None
        );
        // A Send to a denied peer is dropped even with nothing else wrong.
        let bad = send_indication(peer("[::ffff:127.0.0.1]:4000"), b"x");
        assert_eq!(
            t.relay.handle_client(now, &f, &(), &bad, &mut out),
            ClientAction::None
        );
        // A Send from a 5-tuple without allocation is dropped.
        assert_eq!(
            t.relay.handle_client(now, &ft(9), &(), &ind, &mut out),
            ClientAction::None
        );
    }

    fn peer_packet(
        t: &mut T,
        now: Instant,
        id: AllocId,
        from: SocketAddr,
        data: &[u8],
    ) -> (PeerAction<()>, Vec<u8>, Vec<u8>) {
        let mut buf = vec![0u8; PEER_HEADROOM + data.len()];
        buf[PEER_HEADROOM..].copy_from_slice(data);
        let mut out = Vec::new();
        let a = t
            .relay
            .handle_peer(now, id, from, &mut buf, data.len(), &mut out);
        (a, buf, out)
    }

    #[test]
    fn peer_data_without_permission_is_dropped() {
        let (mut t, f) = allocated();
        let now = t.at(0);
        let id = t.relay.table.find(&f).unwrap();
        let p = peer("203.0.113.9:4000");
        let (a, _, _) = peer_packet(&mut t, now, id, p, b"hi");
        assert_eq!(a, PeerAction::None);
        assert_eq!(t.relay.stats.dropped_no_permission, 1);
        let pa = t.peer_attr(p);
        assert_eq!(t.authed(now, &f, Method::CREATE_PERMISSION, &[pa]), 0);
        // Permission is per IP: any port of that IP may send (RFC 8656 §9).
        let (a, _, out) = peer_packet(&mut t, now, id, peer("203.0.113.9:4001"), b"hi");
        assert_eq!(
            a,
            PeerAction::Indication {
                client: (),
                to: f.client
            }
        );
        let m = Message::parse(&out).unwrap();
        assert_eq!((m.method, m.class), (Method::DATA, Class::Indication));
        assert_eq!(m.get(attr::DATA), Some(&b"hi"[..]));
        assert_eq!(
            m.get_xor_address(attr::XOR_PEER_ADDRESS).unwrap().unwrap(),
            peer("203.0.113.9:4001")
        );
        // Another IP is still dropped; so is a stale AllocId.
        let (a, _, _) = peer_packet(&mut t, now, id, peer("203.0.113.10:4000"), b"hi");
        assert_eq!(a, PeerAction::None);
        assert_eq!(t.authed(now, &f, Method::REFRESH, &[lifetime(0)]), 0);
        let (a, _, _) = peer_packet(&mut t, now, id, p, b"hi");
        assert_eq!(a, PeerAction::None);
    }

    #[test]
    fn channel_data_both_ways() {
        let (mut t, f) = allocated();
        let now = t.at(0);
        let id = t.relay.table.find(&f).unwrap();
        let p = peer("203.0.113.9:4000");
        // ChannelData on an unbound channel is dropped.
        let cd = [0x40, 0x00, 0x00, 0x03, 1, 2, 3, 0];
        let mut out = Vec::new();
        assert_eq!(
            t.relay.handle_client(now, &f, &(), &cd, &mut out),
            ClientAction::None
        );
        let pa = t.peer_attr(p);
        assert_eq!(
            t.authed(now, &f, Method::CHANNEL_BIND, &[channel(0x4000), pa]),
            0
        );
        match t.relay.handle_client(now, &f, &(), &cd, &mut out) {
            ClientAction::ToPeer {
                relay,
                peer: to,
                data,
            } => {
                assert_eq!((relay, to), (50001, p));
                assert_eq!(&cd[data], &[1, 2, 3]);
            }
            other => panic!("{other:?}"),
        }
        let (a, buf, _) = peer_packet(&mut t, now, id, p, &[9, 8, 7]);
        assert_eq!(
            a,
            PeerAction::ChannelData {
                client: (),
                to: f.client,
                len: 7
            }
        );
        assert_eq!(&buf[..7], &[0x40, 0x00, 0x00, 0x03, 9, 8, 7]);
        // Bad channel numbers and conflicting rebinds are 400.
        let pa = t.peer_attr(p);
        assert_eq!(
            t.authed(now, &f, Method::CHANNEL_BIND, &[channel(0x3FFF), pa]),
            400
        );
        let pa = t.peer_attr(p);
        assert_eq!(
            t.authed(now, &f, Method::CHANNEL_BIND, &[channel(0x4001), pa]),
            400
        );
        let other = t.peer_attr(peer("203.0.113.9:4001"));
        assert_eq!(
            t.authed(now, &f, Method::CHANNEL_BIND, &[channel(0x4000), other]),
            400
        );
        // Channel bind installed a permission, which lapses after 300 s while the
        // channel (600 s) lives on: data is then dropped until it is refreshed.
        let late = t.at(301);
        assert_eq!(
            t.relay.handle_client(late, &f, &(), &cd, &mut out),
            ClientAction::None
        );
        let (a, _, _) = peer_packet(&mut t, late, id, p, &[1]);
        assert_eq!(a, PeerAction::None);
    }

    #[test]
    fn bandwidth_cap_drops_excess() {
        let cfg = CoreConfig {
            max_bps: 1000,
            ..Default::default()
        };
        let mut t = T::with(cfg, open_policy(), Quotas::default());
        let f = ft(1000);
        let now = t.at(0);
        assert_eq!(t.allocate(now, &f, "alice"), 0);
        let p = peer("203.0.113.9:4000");
        let pa = t.peer_attr(p);
        assert_eq!(t.authed(now, &f, Method::CREATE_PERMISSION, &[pa]), 0);
        let ind = send_indication(p, &[0u8; 400]);
        let mut out = Vec::new();
        let sent = (0..5)
            .filter(|_| t.relay.handle_client(now, &f, &(), &ind, &mut out) != ClientAction::None)
            .count();
        assert_eq!(sent, 2);
        assert_eq!(t.relay.stats.dropped_rate_limited, 3);
    }

    #[test]
    fn external_ip_mapping() {
        let cfg = CoreConfig {
            external: vec![(
                "203.0.113.77".parse().unwrap(),
                Some("192.0.2.100".parse().unwrap()),
            )],
            ..Default::default()
        };
        let mut t = T::with(cfg, open_policy(), Quotas::default());
        let f = ft(1000);
        let now = t.at(0);
        let nonce = t.nonce(now, &f);
        let (code, _, raw) = t.request(
            now,
            &f,
            Method::ALLOCATE,
            Some(("alice", "pw", &nonce)),
            &[transport_udp()],
        );
        assert_eq!(code, 0);
        let m = Message::parse(&raw).unwrap();
        let relayed = m
            .get_xor_address(attr::XOR_RELAYED_ADDRESS)
            .unwrap()
            .unwrap();
        assert_eq!(relayed, peer("203.0.113.77:50001"));
    }

    #[test]
    fn fingerprint_echoed_and_bad_fingerprint_dropped() {
        let mut t = T::new(open_policy(), Quotas::default());
        let mut req = Vec::new();
        MessageWriter::new(&mut req, Method::BINDING, Class::Request, [3; 12]).add_fingerprint();
        let mut out = Vec::new();
        assert_eq!(
            t.relay.handle_client(t.at(0), &ft(1), &(), &req, &mut out),
            ClientAction::Reply
        );
        let m = Message::parse(&out).unwrap();
        assert!(m.fingerprint_offset().is_some() && m.check_fingerprint());
        let n = req.len();
        req[n - 1] ^= 0xFF;
        assert_eq!(
            t.relay.handle_client(t.at(0), &ft(1), &(), &req, &mut out),
            ClientAction::None
        );
    }

    #[test]
    fn garbage_never_panics_or_allocates_state() {
        let mut t = T::new(open_policy(), Quotas::default());
        let mut out = Vec::new();
        let mut x: u64 = 0x1234_5678;
        for i in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 120) as usize;
            let mut p: Vec<u8> = (0..len).map(|k| (x >> (k % 56)) as u8).collect();
            if i % 2 == 0 && p.len() >= 20 {
                // Valid header so the attribute walker gets exercised.
                p[0] &= 0x3F;
                p[4..8].copy_from_slice(&crate::stun::message::MAGIC_COOKIE.to_be_bytes());
                let l = ((p.len() - 20) & !3) as u16;
                p.truncate(20 + l as usize);
                p[2..4].copy_from_slice(&l.to_be_bytes());
            }
            let _ = t
                .relay
                .handle_client(t.at(0), &ft((i % 50) as u16), &(), &p, &mut out);
        }
        assert_eq!(t.relay.allocation_count(), 0);
        assert_eq!(t.relay.quotas.users(), 0);
    }
}
