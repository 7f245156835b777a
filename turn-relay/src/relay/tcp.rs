//! TCP allocations (RFC 6062), sans-IO like the rest of the core.
//!
//! A client on a TCP or TLS control connection allocates with REQUESTED-TRANSPORT TCP: the
//! relayed address is then a listening TCP port. Each peer connection (one the client asks
//! for with Connect, or one a peer opens to the relayed address, announced with a
//! ConnectionAttempt indication) gets a CONNECTION-ID; the client opens a new connection to
//! the server and sends ConnectionBind with that id, and from the success response on, the
//! two connections are piped byte for byte by the driver. A peer connection nobody binds
//! within [`CONNECTION_BIND_TIMEOUT`] is closed; so is every connection of an allocation
//! that goes away.
//!
//! What this file decides: who may connect where (the peer policy for Connect, a
//! permission for an incoming peer), the ids, the answers and the timeouts. The driver
//! opens, accepts, pipes and closes the sockets ([`RelayIo`]).

use super::{Cred, Relay, RelayIo};
use crate::allocation::{AllocId, FiveTuple};
use crate::policy::normalize_addr;
use crate::stun::attributes as attr;
use crate::stun::{Class, Message, MessageWriter, Method, TransactionId};
use crate::Transport;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a peer connection waits for the client's ConnectionBind (RFC 6062 §5.2, §5.3).
pub const CONNECTION_BIND_TIMEOUT: Duration = Duration::from_secs(30);
/// Peer connections per allocation, whatever their state; beyond, Connect gets 508 and an
/// incoming peer is refused.
pub const MAX_CONNECTIONS: usize = 64;

/// The CONNECTION-ID of a peer connection: keyed-random, so one client cannot guess
/// another's (ConnectionBind also needs the allocation's credentials).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnectionId(pub u32);

/// Which way the bytes of a bound connection go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    ToPeer,
    ToClient,
}

#[derive(Debug)]
enum State {
    /// The driver is connecting to the peer; the Connect request is answered when it is
    /// done.
    Connecting {
        tid: TransactionId,
        key: Option<[u8; 16]>,
        fp: bool,
    },
    /// Connected, waiting for the client's ConnectionBind.
    Unbound { until: Instant },
    /// Piped to a client data connection.
    Bound,
}

#[derive(Debug)]
struct Connection {
    alloc: AllocId,
    peer: SocketAddr,
    state: State,
}

#[derive(Default)]
pub(super) struct Connections {
    by_id: HashMap<ConnectionId, Connection>,
    made: u64,
}

impl Connections {
    fn of(&self, alloc: AllocId) -> impl Iterator<Item = (&ConnectionId, &Connection)> {
        self.by_id.iter().filter(move |(_, c)| c.alloc == alloc)
    }

    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }
}

/// The checks of an Allocate for TCP (RFC 6062 §5.1) before anything is bound.
pub(super) fn check_allocate(ft: &FiveTuple, m: &Message<'_>) -> Result<(), u16> {
    if ft.transport == Transport::Udp {
        return Err(400);
    }
    let not_for_tcp = [
        attr::EVEN_PORT,
        attr::RESERVATION_TOKEN,
        attr::DONT_FRAGMENT,
    ];
    if not_for_tcp.iter().any(|t| m.get(*t).is_some()) {
        return Err(400);
    }
    Ok(())
}

impl<I: RelayIo> Relay<I> {
    fn new_connection_id(&mut self) -> ConnectionId {
        loop {
            self.connections.made += 1;
            let id = ConnectionId(self.nonces.connection_id(self.connections.made));
            if !self.connections.by_id.contains_key(&id) {
                return id;
            }
        }
    }

    /// Connect (RFC 6062 §5.2): starts the connection to the peer; `Ok` means the answer
    /// waits for [`Relay::peer_connected`].
    pub(super) fn connect(
        &mut self,
        ft: &FiveTuple,
        m: &Message<'_>,
        cred: &Cred,
        fp: bool,
    ) -> Result<(), u16> {
        let id = self.owned(ft, cred)?;
        let a = self.table.get(id).ok_or(437u16)?;
        if !a.tcp {
            return Err(400);
        }
        let local = a.local;
        let v = m.get(attr::XOR_PEER_ADDRESS).ok_or(400u16)?;
        let peer = self.peer_for(m, v, local)?;
        self.policy
            .check_addr(peer)
            .map_err(|d| self.rejected(peer, d))?;
        if self.connections.of(id).any(|(_, c)| c.peer == peer) {
            return Err(446);
        }
        if self.connections.of(id).count() >= MAX_CONNECTIONS {
            return Err(508);
        }
        let connection = self.new_connection_id();
        self.connections.by_id.insert(
            connection,
            Connection {
                alloc: id,
                peer,
                state: State::Connecting {
                    tid: m.transaction_id,
                    key: cred.key,
                    fp,
                },
            },
        );
        tracing::debug!(client = %ft.client, %peer, connection = connection.0, "connecting to peer");
        self.io.connect_peer(connection, local, peer);
        Ok(())
    }

    /// The driver's connection to the peer for `connection` succeeded or failed. Writes the
    /// Connect answer to `out` and returns where it goes, or `None` if nobody waits for it
    /// any more (the allocation went away meanwhile: the driver drops the connection).
    pub fn peer_connected(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        ok: bool,
        out: &mut Vec<u8>,
    ) -> Option<(I::Client, SocketAddr)> {
        let c = self.connections.by_id.get_mut(&connection)?;
        let State::Connecting { tid, key, fp } = c.state else {
            return None;
        };
        let Some(a) = self.table.get(c.alloc) else {
            self.connections.by_id.remove(&connection);
            return None;
        };
        let reply_to = (a.client.clone(), a.five_tuple.client);
        if ok {
            c.state = State::Unbound {
                until: now + CONNECTION_BIND_TIMEOUT,
            };
            let mut w = MessageWriter::new(out, Method::CONNECT, Class::Success, tid);
            w.add_u32(attr::CONNECTION_ID, connection.0);
            w.seal(key.as_ref().map(|k| &k[..]), fp);
        } else {
            tracing::debug!(peer = %c.peer, "connection to peer failed");
            self.connections.by_id.remove(&connection);
            let mut w = MessageWriter::new(out, Method::CONNECT, Class::Error, tid);
            w.add_error(447, attr::reason(447));
            w.seal(key.as_ref().map(|k| &k[..]), fp);
        }
        Some(reply_to)
    }

    /// A peer connected to the relayed address of TCP allocation `alloc` (RFC 6062 §5.3).
    /// With a permission for its address, the connection gets an id and a ConnectionAttempt
    /// indication for the client is written to `out`; otherwise `None`, and the driver
    /// closes it.
    pub fn peer_accepted(
        &mut self,
        now: Instant,
        alloc: AllocId,
        peer: SocketAddr,
        out: &mut Vec<u8>,
    ) -> Option<(ConnectionId, I::Client, SocketAddr)> {
        let peer = normalize_addr(peer);
        let a = self.table.get(alloc)?;
        if !a.tcp || a.expires <= now {
            return None;
        }
        if !a.has_permission(peer.ip(), now) {
            self.stats.dropped_no_permission += 1;
            return None;
        }
        if self.policy.check_inbound(peer).is_err() {
            self.stats.rejected_peers += 1;
            return None;
        }
        if self.connections.of(alloc).count() >= MAX_CONNECTIONS {
            return None;
        }
        let reply_to = (a.client.clone(), a.five_tuple.client);
        let connection = self.new_connection_id();
        self.connections.by_id.insert(
            connection,
            Connection {
                alloc,
                peer,
                state: State::Unbound {
                    until: now + CONNECTION_BIND_TIMEOUT,
                },
            },
        );
        self.indication_seq += 1;
        let mut tid = [0u8; 12];
        tid[4..].copy_from_slice(&self.indication_seq.to_be_bytes());
        let mut w = MessageWriter::new(out, Method::CONNECTION_ATTEMPT, Class::Indication, tid);
        w.add_xor_address(attr::XOR_PEER_ADDRESS, peer);
        w.add_u32(attr::CONNECTION_ID, connection.0);
        w.seal(None, self.cfg.fingerprint);
        tracing::debug!(%peer, connection = connection.0, "peer connected");
        Some((connection, reply_to.0, reply_to.1))
    }

    /// ConnectionBind (RFC 6062 §5.4), on a new connection of the client's: binds it to an
    /// unbound peer connection of an allocation made with the same credentials.
    pub(super) fn connection_bind(
        &mut self,
        ft: &FiveTuple,
        m: &Message<'_>,
        cred: &Cred,
        fp: bool,
        out: &mut Vec<u8>,
    ) -> Result<ConnectionId, u16> {
        // Only a fresh TCP/TLS connection can become a data connection; a control
        // connection (it has an allocation) cannot.
        if ft.transport == Transport::Udp || self.table.find(ft).is_some() {
            return Err(400);
        }
        let connection = match m.get(attr::CONNECTION_ID).map(attr::decode_u32) {
            Some(Ok(id)) => ConnectionId(id),
            _ => return Err(400),
        };
        let c = self.connections.by_id.get_mut(&connection).ok_or(400u16)?;
        if !matches!(c.state, State::Unbound { .. }) {
            return Err(400);
        }
        let a = self.table.get(c.alloc).ok_or(400u16)?;
        if a.username != cred.username {
            return Err(441);
        }
        c.state = State::Bound;
        self.stats.tcp_connections_bound += 1;
        tracing::debug!(client = %ft.client, peer = %c.peer, connection = connection.0, "data connection bound");
        self.success(out, m, cred, fp, None);
        Ok(connection)
    }

    /// `len` bytes read on bound `connection` are to be written on: they count in the byte
    /// counters and against the allocation's `max-bps`, which a stream obeys by waiting
    /// (TCP slows the sender down) where a datagram would be dropped. Returns how long the
    /// driver waits before writing them, or `None` if the connection is no longer bound
    /// (its allocation went: the driver stops).
    pub fn tcp_relayed(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        direction: Direction,
        len: usize,
    ) -> Option<Duration> {
        let c = self.connections.by_id.get(&connection)?;
        if !matches!(c.state, State::Bound) {
            return None;
        }
        let a = self.table.get_mut(c.alloc)?;
        let wait = a
            .bucket
            .as_mut()
            .map_or(Duration::ZERO, |b| b.pace(now, len));
        match direction {
            Direction::ToPeer => self.stats.bytes_to_peer += len as u64,
            Direction::ToClient => self.stats.bytes_to_client += len as u64,
        }
        Some(wait)
    }

    /// A bound connection ended (either side closed): it is forgotten, and the driver told
    /// to close what is left of it.
    pub fn connection_closed(&mut self, connection: ConnectionId) {
        if self.connections.by_id.remove(&connection).is_some() {
            self.io.close_connection(connection);
        }
    }

    /// Number of peer connections (any state), for metrics and tests.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    pub(super) fn close_connections_of(&mut self, alloc: AllocId) {
        let gone: Vec<ConnectionId> = self.connections.of(alloc).map(|(id, _)| *id).collect();
        for id in gone {
            self.connections.by_id.remove(&id);
            self.io.close_connection(id);
        }
    }

    /// Peer connections not bound in time are closed.
    pub(super) fn expire_connections(&mut self, now: Instant) {
        let late: Vec<ConnectionId> = self
            .connections
            .by_id
            .iter()
            .filter(|(_, c)| matches!(c.state, State::Unbound { until } if until <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            tracing::debug!(connection = id.0, "peer connection not bound in time");
            self.connections.by_id.remove(&id);
            self.io.close_connection(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ft, open_policy, peer, T};
    use super::*;
    use crate::quota::Quotas;
    use crate::relay::{ClientAction, CoreConfig};

    const PEER: &str = "203.0.113.5:4000";

    /// A five-tuple over TCP (a control or a data connection).
    fn tcp(port: u16) -> FiveTuple {
        FiveTuple {
            transport: Transport::Tcp,
            ..ft(port)
        }
    }

    fn transport_tcp() -> (u16, Vec<u8>) {
        (attr::REQUESTED_TRANSPORT, vec![6, 0, 0, 0])
    }

    /// XOR-PEER-ADDRESS for the next request `t` sends.
    fn peer_attr(t: &T, p: SocketAddr) -> (u16, Vec<u8>) {
        let mut v = [0u8; 20];
        let n = attr::encode_xor_address(p, &[t.tid + 1; 12], &mut v);
        (attr::XOR_PEER_ADDRESS, v[..n].to_vec())
    }

    fn connection_attr(id: ConnectionId) -> (u16, Vec<u8>) {
        (attr::CONNECTION_ID, id.0.to_be_bytes().to_vec())
    }

    /// `user` sends `method` on `on`, signed; returns what the core did.
    fn signed(
        t: &mut T,
        now: Instant,
        on: &FiveTuple,
        user: &str,
        method: Method,
        attrs: impl FnOnce(&T) -> Vec<(u16, Vec<u8>)>,
    ) -> ClientAction<u16> {
        let nonce = t.nonce(now, on);
        let attrs = attrs(t);
        t.send(now, on, method, Some((user, "pw", &nonce)), &attrs)
    }

    /// The error code of the answer in `t.out` (0: success).
    fn code(t: &T) -> u16 {
        let m = Message::parse(&t.out).unwrap();
        match m.class {
            Class::Success => 0,
            _ => {
                attr::decode_error(m.get(attr::ERROR_CODE).unwrap())
                    .unwrap()
                    .0
            }
        }
    }

    fn connection_id(t: &T) -> ConnectionId {
        let m = Message::parse(&t.out).unwrap();
        ConnectionId(attr::decode_u32(m.get(attr::CONNECTION_ID).unwrap()).unwrap())
    }

    /// alice's TCP allocation on control connection `control`.
    fn tcp_allocation(control: &FiveTuple) -> T {
        tcp_allocation_with(CoreConfig::default(), control)
    }

    fn tcp_allocation_with(cfg: CoreConfig, control: &FiveTuple) -> T {
        let mut t = T::with(cfg, open_policy(), Quotas::default());
        let now = t.at(0);
        let action = signed(&mut t, now, control, "alice", Method::ALLOCATE, |_| {
            vec![transport_tcp()]
        });
        assert_eq!(action, ClientAction::Reply);
        assert_eq!(code(&t), 0);
        t
    }

    #[test]
    fn connect_then_bind_a_data_connection() {
        let control = tcp(1000);
        let mut t = tcp_allocation(&control);
        let now = t.at(1);
        let peer = peer(PEER);
        let action = signed(&mut t, now, &control, "alice", Method::CONNECT, |t| {
            vec![peer_attr(t, peer)]
        });
        assert_eq!(action, ClientAction::None, "answered once connected");
        let (connection, from, to) = t.relay.io.connecting[0];
        assert_eq!((from.port(), to), (50001, peer), "from the relayed address");

        // The same peer again while that one is pending: 446.
        signed(&mut t, now, &control, "alice", Method::CONNECT, |t| {
            vec![peer_attr(t, peer)]
        });
        assert_eq!(code(&t), 446);

        let (_, to) = t
            .relay
            .peer_connected(now, connection, true, &mut t.out)
            .unwrap();
        assert_eq!(to, control.client);
        assert_eq!(code(&t), 0);
        assert_eq!(connection_id(&t), connection);

        // A new connection binds it; nothing else can.
        let data = tcp(1001);
        let action = signed(&mut t, now, &data, "alice", Method::CONNECTION_BIND, |_| {
            vec![connection_attr(connection)]
        });
        assert_eq!(action, ClientAction::ConnectionBound { connection });
        assert_eq!(code(&t), 0);
        assert_eq!(t.relay.stats.tcp_connections_bound, 1);
        signed(
            &mut t,
            now,
            &tcp(1002),
            "alice",
            Method::CONNECTION_BIND,
            |_| vec![connection_attr(connection)],
        );
        assert_eq!(code(&t), 400, "already bound");

        // Bound connections do not expire; a closed one is forgotten, and the peer can be
        // connected to again.
        t.relay.tick(now + CONNECTION_BIND_TIMEOUT * 2);
        assert_eq!(t.relay.connection_count(), 1);
        t.relay.connection_closed(connection);
        assert_eq!(t.relay.io.closed, vec![connection]);
        assert_eq!(t.relay.connection_count(), 0);
        let action = signed(&mut t, now, &control, "alice", Method::CONNECT, |t| {
            vec![peer_attr(t, peer)]
        });
        assert_eq!(action, ClientAction::None);
    }

    #[test]
    fn a_failed_connect_is_answered_447() {
        let control = tcp(1000);
        let mut t = tcp_allocation(&control);
        let now = t.at(1);
        signed(&mut t, now, &control, "alice", Method::CONNECT, |t| {
            vec![peer_attr(t, peer(PEER))]
        });
        let (connection, ..) = t.relay.io.connecting[0];
        assert!(t
            .relay
            .peer_connected(now, connection, false, &mut t.out)
            .is_some());
        assert_eq!(code(&t), 447);
        assert_eq!(t.relay.connection_count(), 0);
        // Reported twice (a late report): nobody waits for it.
        assert!(t
            .relay
            .peer_connected(now, connection, true, &mut t.out)
            .is_none());
    }

    #[test]
    fn an_incoming_peer_needs_a_permission_and_a_bind_within_30_s() {
        let control = tcp(1000);
        let mut t = tcp_allocation(&control);
        let now = t.at(1);
        let alloc = t.relay.table.find(&control).unwrap();
        let peer = peer(PEER);
        assert!(
            t.relay
                .peer_accepted(now, alloc, peer, &mut t.out)
                .is_none(),
            "no permission"
        );
        signed(
            &mut t,
            now,
            &control,
            "alice",
            Method::CREATE_PERMISSION,
            |t| vec![peer_attr(t, peer)],
        );
        assert_eq!(code(&t), 0);

        let (connection, _, to) = t.relay.peer_accepted(now, alloc, peer, &mut t.out).unwrap();
        assert_eq!(to, control.client);
        let m = Message::parse(&t.out).unwrap();
        assert_eq!(
            (m.class, m.method),
            (Class::Indication, Method::CONNECTION_ATTEMPT)
        );
        assert_eq!(m.get_xor_address(attr::XOR_PEER_ADDRESS), Some(Ok(peer)));
        assert_eq!(connection_id(&t), connection);

        // Not bound in time: closed, and a late ConnectionBind is refused.
        t.relay
            .tick(now + CONNECTION_BIND_TIMEOUT - Duration::from_secs(1));
        assert!(t.relay.io.closed.is_empty());
        t.relay.tick(now + CONNECTION_BIND_TIMEOUT);
        assert_eq!(t.relay.io.closed, vec![connection]);
        let later = now + CONNECTION_BIND_TIMEOUT;
        signed(
            &mut t,
            later,
            &tcp(1001),
            "alice",
            Method::CONNECTION_BIND,
            |_| vec![connection_attr(connection)],
        );
        assert_eq!(code(&t), 400);
    }

    #[test]
    fn only_the_allocation_owner_binds_on_a_fresh_connection() {
        let control = tcp(1000);
        let mut t = tcp_allocation(&control);
        let now = t.at(1);
        let alloc = t.relay.table.find(&control).unwrap();
        let peer = peer(PEER);
        signed(
            &mut t,
            now,
            &control,
            "alice",
            Method::CREATE_PERMISSION,
            |t| vec![peer_attr(t, peer)],
        );
        let (connection, ..) = t.relay.peer_accepted(now, alloc, peer, &mut t.out).unwrap();
        let bind = |t: &mut T, on: &FiveTuple, user: &str, id: ConnectionId| {
            signed(t, now, on, user, Method::CONNECTION_BIND, |_| {
                vec![connection_attr(id)]
            });
            code(t)
        };
        assert_eq!(bind(&mut t, &tcp(1001), "bob", connection), 441);
        assert_eq!(
            bind(&mut t, &tcp(1001), "alice", ConnectionId(connection.0 ^ 1)),
            400
        );
        assert_eq!(
            bind(&mut t, &control, "alice", connection),
            400,
            "not the control connection"
        );
        assert_eq!(
            bind(&mut t, &ft(1001), "alice", connection),
            400,
            "not over UDP"
        );
        signed(
            &mut t,
            now,
            &tcp(1001),
            "alice",
            Method::CONNECTION_BIND,
            |_| vec![],
        );
        assert_eq!(code(&t), 400, "no CONNECTION-ID");
        assert_eq!(bind(&mut t, &tcp(1001), "alice", connection), 0);
    }

    #[test]
    fn what_a_tcp_allocation_refuses() {
        let control = tcp(1000);
        let mut t = tcp_allocation(&control);
        let now = t.at(1);
        let even_port = (attr::EVEN_PORT, vec![0x80]);
        signed(&mut t, now, &tcp(2000), "alice", Method::ALLOCATE, |_| {
            vec![transport_tcp(), even_port]
        });
        assert_eq!(code(&t), 400, "EVEN-PORT");
        signed(&mut t, now, &tcp(2000), "alice", Method::ALLOCATE, |_| {
            vec![transport_tcp(), (attr::DONT_FRAGMENT, vec![])]
        });
        assert_eq!(code(&t), 400, "DONT-FRAGMENT");
        let channel = (attr::CHANNEL_NUMBER, vec![0x40, 0, 0, 0]);
        signed(&mut t, now, &control, "alice", Method::CHANNEL_BIND, |t| {
            vec![channel, peer_attr(t, peer(PEER))]
        });
        assert_eq!(code(&t), 400, "no channels");
        signed(&mut t, now, &control, "alice", Method::CONNECT, |_| vec![]);
        assert_eq!(code(&t), 400, "no peer");
        signed(&mut t, now, &control, "alice", Method::CONNECT, |t| {
            vec![peer_attr(t, peer("127.0.0.1:80"))]
        });
        assert_eq!(code(&t), 403, "the peer policy");
        signed(&mut t, now, &tcp(3000), "alice", Method::CONNECT, |t| {
            vec![peer_attr(t, peer(PEER))]
        });
        assert_eq!(code(&t), 437, "no allocation");
        // A UDP allocation has no Connect.
        let udp = ft(4000);
        signed(&mut t, now, &udp, "alice", Method::ALLOCATE, |_| {
            vec![(attr::REQUESTED_TRANSPORT, vec![17, 0, 0, 0])]
        });
        assert_eq!(code(&t), 0);
        signed(&mut t, now, &udp, "alice", Method::CONNECT, |t| {
            vec![peer_attr(t, peer(PEER))]
        });
        assert_eq!(code(&t), 400);
        assert!(t.relay.io.connecting.is_empty());
    }

    #[test]
    fn connections_go_with_their_allocation() {
        let control = tcp(1000);
        let mut t = tcp_allocation(&control);
        let now = t.at(1);
        let alloc = t.relay.table.find(&control).unwrap();
        for p in ["203.0.113.5:4000", "203.0.113.6:4000"] {
            signed(&mut t, now, &control, "alice", Method::CONNECT, |t| {
                vec![peer_attr(t, peer(p))]
            });
        }
        signed(
            &mut t,
            now,
            &control,
            "alice",
            Method::CREATE_PERMISSION,
            |t| vec![peer_attr(t, peer(PEER))],
        );
        t.relay
            .peer_accepted(now, alloc, peer("203.0.113.5:5000"), &mut t.out)
            .unwrap();
        assert_eq!(t.relay.connection_count(), 3);
        assert!(t.relay.remove_client(&control));
        assert_eq!(t.relay.connection_count(), 0);
        assert_eq!(t.relay.io.closed.len(), 3);
        assert_eq!(t.relay.io.released, vec![50001], "the listener too");
        // A connection that completes after its allocation went: dropped.
        let (connection, ..) = t.relay.io.connecting[0];
        assert!(t
            .relay
            .peer_connected(now, connection, true, &mut t.out)
            .is_none());
    }

    #[test]
    fn connections_per_allocation_are_capped() {
        let control = tcp(1000);
        let mut t = tcp_allocation(&control);
        let now = t.at(1);
        for i in 0..MAX_CONNECTIONS as u16 {
            let action = signed(&mut t, now, &control, "alice", Method::CONNECT, |t| {
                vec![peer_attr(t, SocketAddr::from(([203, 0, 113, 9], 1000 + i)))]
            });
            assert_eq!(action, ClientAction::None);
        }
        signed(&mut t, now, &control, "alice", Method::CONNECT, |t| {
            vec![peer_attr(t, peer(PEER))]
        });
        assert_eq!(code(&t), 508);
    }

    /// A connection to PEER made on `control` and bound on a data connection.
    fn bound_connection(t: &mut T, now: Instant, control: &FiveTuple) -> ConnectionId {
        signed(t, now, control, "alice", Method::CONNECT, |t| {
            vec![peer_attr(t, peer(PEER))]
        });
        let (connection, ..) = *t.relay.io.connecting.last().unwrap();
        t.relay.peer_connected(now, connection, true, &mut t.out);
        let action = signed(t, now, &tcp(1001), "alice", Method::CONNECTION_BIND, |_| {
            vec![connection_attr(connection)]
        });
        assert_eq!(action, ClientAction::ConnectionBound { connection });
        connection
    }

    #[test]
    fn bound_bytes_are_counted_and_wait_for_the_bandwidth_cap() {
        let control = tcp(1000);
        let cfg = CoreConfig {
            max_bps: 1000,
            ..Default::default()
        };
        let mut t = tcp_allocation_with(cfg, &control);
        let now = t.at(1);
        signed(&mut t, now, &control, "alice", Method::CONNECT, |t| {
            vec![peer_attr(t, peer(PEER))]
        });
        let (unbound, ..) = t.relay.io.connecting[0];
        assert_eq!(
            t.relay.tcp_relayed(now, unbound, Direction::ToPeer, 1),
            None,
            "not bound: nothing is relayed"
        );
        t.relay.connection_closed(unbound);

        let connection = bound_connection(&mut t, now, &control);
        let ms = Duration::from_millis;
        let mut relay = |at: Instant, direction, len| {
            t.relay.tcp_relayed(at, connection, direction, len).unwrap()
        };
        // A second's worth at once, both ways together, as for datagrams.
        assert_eq!(relay(now, Direction::ToPeer, 600), Duration::ZERO);
        assert_eq!(relay(now, Direction::ToClient, 600), ms(200));
        // The debt is paid in time: what comes meanwhile waits behind it.
        assert_eq!(relay(now, Direction::ToPeer, 100), ms(300));
        assert_eq!(relay(now + ms(300), Direction::ToPeer, 100), ms(100));
        assert_eq!(
            relay(now + ms(1400), Direction::ToPeer, 1000),
            Duration::ZERO
        );
        assert_eq!(t.relay.stats.bytes_to_peer, 1800);
        assert_eq!(t.relay.stats.bytes_to_client, 600);

        // Its allocation gone, the connection is not relayed any more.
        t.relay.remove_client(&control);
        assert_eq!(
            t.relay.tcp_relayed(now, connection, Direction::ToPeer, 1),
            None
        );
    }

    #[test]
    fn without_a_cap_bound_bytes_never_wait() {
        let control = tcp(1000);
        let mut t = tcp_allocation(&control);
        let now = t.at(1);
        let connection = bound_connection(&mut t, now, &control);
        for _ in 0..100 {
            assert_eq!(
                t.relay
                    .tcp_relayed(now, connection, Direction::ToClient, 64 * 1024),
                Some(Duration::ZERO)
            );
        }
        assert_eq!(t.relay.stats.bytes_to_client, 100 * 64 * 1024);
    }
}
