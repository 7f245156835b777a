//! The relay core (`turn-relay/src/relay.rs`) driven by an arbitrary sequence of client
//! packets, peer packets and clock steps, on a fake I/O.
//!
//! Random bytes never carry a valid MESSAGE-INTEGRITY, so a step may ask the harness to sign
//! its STUN message as user `alice` with the last NONCE the relay gave: that way the
//! fuzzer reaches Allocate, permissions, channels and Send behind the authentication.
//! TCP allocations (RFC 6062) too: the fake I/O records the connections the core asks for,
//! and steps complete them (or not), bring in peers on TCP listeners and close bound ones.
//! Checks: nothing panics; every answer is a well-formed STUN message; a relayed range lies
//! within the packet; a peer packet's ChannelData fits the buffer.
#![no_main]

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use libfuzzer_sys::fuzz_target;
use turn_relay::{
    allocation::{AllocId, FiveTuple},
    auth::Authenticator,
    policy::PeerPolicy,
    quota::Quotas,
    relay::{
        BoundRelay, ClientAction, ConnectionId, CoreConfig, Family, PeerAction, PortWish, Relay,
        RelayBindError, RelayIo, PEER_HEADROOM,
    },
    stun::{attributes as attr, integrity::long_term_key, Message, MessageWriter},
    Transport,
};

const REALM: &str = "rtc.local";

/// Relay sockets are numbered; the ids the core bound them for are kept to address peers'
/// packets to.
#[derive(Default)]
struct FakeIo {
    next: u16,
    live: Vec<(u16, AllocId)>,
    /// TCP allocations' listeners.
    listening: Vec<(u16, AllocId)>,
    /// Connections the core asked the driver to make.
    connecting: Vec<ConnectionId>,
}

impl RelayIo for FakeIo {
    type Relay = u16;
    type Client = u8;
    fn bind_relay(
        &mut self,
        id: AllocId,
        family: Family,
        wish: PortWish,
    ) -> Result<BoundRelay<u16>, RelayBindError> {
        if family == Family::V6 || self.next > 60 {
            return Err(RelayBindError::Exhausted);
        }
        self.next += 2;
        let port = 50000 + self.next;
        self.live.push((port, id));
        let addr = |port| SocketAddr::from(([192, 0, 2, 100], port));
        Ok(BoundRelay {
            local: addr(port),
            relay: port,
            next: (wish == PortWish::EvenAndNext).then(|| (addr(port + 1), port + 1)),
        })
    }
    fn adopt_relay(&mut self, relay: &u16, id: AllocId) -> Result<(), RelayBindError> {
        self.live.push((*relay, id));
        Ok(())
    }
    fn release_relay(&mut self, relay: &u16) {
        self.live.retain(|(port, _)| port != relay);
        self.listening.retain(|(port, _)| port != relay);
    }
    fn listen_tcp(
        &mut self,
        id: AllocId,
        family: Family,
    ) -> Result<(SocketAddr, u16), RelayBindError> {
        let bound = self.bind_relay(id, family, PortWish::Any)?;
        self.live.retain(|(port, _)| *port != bound.relay);
        self.listening.push((bound.relay, id));
        Ok((bound.local, bound.relay))
    }
    fn connect_peer(&mut self, connection: ConnectionId, _from: SocketAddr, _peer: SocketAddr) {
        self.connecting.push(connection);
    }
    fn close_connection(&mut self, connection: ConnectionId) {
        self.connecting.retain(|c| *c != connection);
    }
}

/// Reads the fuzzer's bytes as steps.
struct Steps<'a>(&'a [u8]);

impl<'a> Steps<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    /// A length-prefixed chunk (at most 1500 bytes).
    fn chunk(&mut self) -> Option<&'a [u8]> {
        let len = u16::from_be_bytes([self.byte()?, self.byte()?]) as usize % 1501;
        let len = len.min(self.0.len());
        let (chunk, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(chunk)
    }
}

fn five_tuple(selector: u8) -> FiveTuple {
    let transport = match selector % 3 {
        0 => Transport::Udp,
        1 => Transport::Tcp,
        _ => Transport::Tls,
    };
    FiveTuple {
        transport,
        client: SocketAddr::from(([198, 51, 100, 7], 1000 + (selector as u16 / 3) % 4)),
        server: SocketAddr::from(([192, 0, 2, 100], 3478)),
    }
}

/// `packet` re-signed as alice with `nonce`, if it is a STUN message; a CONNECTION-ID in it
/// names one of `ids` (picked by its first byte).
fn signed(packet: &[u8], nonce: &[u8], ids: &[ConnectionId], out: &mut Vec<u8>) -> bool {
    let Ok(message) = Message::parse(packet) else {
        return false;
    };
    let mut writer = MessageWriter::new(out, message.method, message.class, message.transaction_id);
    for (t, value) in message.attributes() {
        if !matches!(
            t,
            attr::USERNAME
                | attr::REALM
                | attr::NONCE
                | attr::MESSAGE_INTEGRITY
                | attr::FINGERPRINT
        ) {
            match (t, value.first()) {
                (attr::CONNECTION_ID, Some(pick)) if !ids.is_empty() => {
                    writer.add_u32(t, ids[*pick as usize % ids.len()].0);
                }
                _ => {
                    writer.add(t, value);
                }
            }
        }
    }
    writer.add(attr::USERNAME, b"alice");
    writer.add(attr::REALM, REALM.as_bytes());
    writer.add(attr::NONCE, nonce);
    writer.add_integrity(&long_term_key("alice", REALM, "pw"));
    true
}

fuzz_target!(|data: &[u8]| {
    let mut steps = Steps(data);
    let Some(mode) = steps.byte() else { return };
    let mut auth = Authenticator::new(REALM, None, false);
    auth.add_user("alice", "pw");
    let config = CoreConfig {
        fingerprint: mode & 1 == 1,
        max_bps: if mode & 2 == 2 { 10_000 } else { 0 },
        ..CoreConfig::default()
    };
    let policy = PeerPolicy {
        allow_loopback: mode & 4 == 4,
        ..PeerPolicy::default()
    };
    let t0 = Instant::now();
    let mut now = t0;
    let mut relay = Relay::new(
        config,
        auth,
        policy,
        Quotas::new(4, 16),
        FakeIo::default(),
        [7; 32],
        t0,
        1_700_000_000,
    );
    let (mut out, mut signed_packet, mut nonce) = (Vec::new(), Vec::new(), b"none".to_vec());
    let mut peer_buf = vec![0u8; 1600];
    let mut bound = Vec::new();
    // CONNECTION-IDs the relay handed out: a signed ConnectionBind names one of them.
    let mut ids: Vec<ConnectionId> = Vec::new();
    while let Some(step) = steps.byte() {
        match step % 4 {
            // A client packet, signed by the harness when the step says so.
            0 | 1 => {
                let Some(selector) = steps.byte() else { return };
                let Some(packet) = steps.chunk() else { return };
                let packet = if step % 4 == 1 && signed(packet, &nonce, &ids, &mut signed_packet) {
                    &signed_packet[..]
                } else {
                    packet
                };
                match relay.handle_client(now, &five_tuple(selector), &selector, packet, &mut out) {
                    ClientAction::Reply => {
                        let answer =
                            Message::parse(&out).expect("the relay answers well-formed STUN");
                        if let Some(n) = answer.get(attr::NONCE) {
                            nonce = n.to_vec();
                        }
                    }
                    ClientAction::ToPeer { data, .. } => {
                        assert!(data.end <= packet.len() && data.start <= data.end)
                    }
                    ClientAction::ConnectionBound { connection } => {
                        Message::parse(&out).expect("a ConnectionBind answer is well-formed STUN");
                        bound.push(connection);
                    }
                    ClientAction::None => {}
                }
            }
            // TCP allocations: a connection to a peer completes or fails, a peer connects,
            // or a bound connection ends.
            2 if steps.0.first().is_some_and(|b| b & 0x80 != 0) => {
                let Some(selector) = steps.byte() else { return };
                let peer =
                    SocketAddr::from(([203, 0, 113, selector % 4], 4000 + (selector as u16 % 3)));
                let io = relay.io();
                match selector % 3 {
                    0 if !io.connecting.is_empty() => {
                        let connection = io.connecting[selector as usize % io.connecting.len()];
                        if relay
                            .peer_connected(now, connection, selector & 8 == 0, &mut out)
                            .is_some()
                        {
                            Message::parse(&out).expect("a Connect answer is well-formed STUN");
                            ids.push(connection);
                        }
                    }
                    1 if !io.listening.is_empty() => {
                        let (_, id) = io.listening[selector as usize % io.listening.len()];
                        if let Some((connection, ..)) = relay.peer_accepted(now, id, peer, &mut out)
                        {
                            Message::parse(&out).expect("a ConnectionAttempt is well-formed STUN");
                            ids.push(connection);
                        }
                    }
                    _ if !bound.is_empty() => {
                        relay.connection_closed(bound.swap_remove(selector as usize % bound.len()));
                    }
                    _ => {}
                }
            }
            // A peer's datagram to one of the relay's sockets.
            2 => {
                let Some(selector) = steps.byte() else { return };
                let Some(payload) = steps.chunk() else { return };
                let live = &relay.io().live;
                if live.is_empty() {
                    continue;
                }
                let (_, id) = live[selector as usize % live.len()];
                let peer =
                    SocketAddr::from(([203, 0, 113, selector % 4], 4000 + (selector as u16 % 3)));
                let len = payload.len().min(peer_buf.len() - PEER_HEADROOM);
                peer_buf[PEER_HEADROOM..PEER_HEADROOM + len].copy_from_slice(&payload[..len]);
                match relay.handle_peer(now, id, peer, &mut peer_buf, len, &mut out) {
                    PeerAction::ChannelData { len: sent, .. } => assert!(sent <= peer_buf.len()),
                    PeerAction::Indication { .. } => {
                        Message::parse(&out).expect("a Data indication is well-formed STUN");
                    }
                    PeerAction::None => {}
                }
            }
            // Time passes; expired allocations, permissions and reservations go.
            _ => {
                let Some(seconds) = steps.byte() else { return };
                now += Duration::from_secs(seconds as u64 * 8);
                relay.tick(now);
            }
        }
    }
});
