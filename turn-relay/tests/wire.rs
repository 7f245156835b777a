//! Protocol behaviour of the `turn-relay` binary checked on the wire with a
//! minimal STUN client (no coturn tools needed).

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;
use turn_relay::stun::attributes as attr;
use turn_relay::stun::{Class, Message, Method};

const CREDS: (&str, &str) = ("test", "pw");

fn lifetime(s: u32) -> (u16, Vec<u8>) {
    (attr::LIFETIME, s.to_be_bytes().to_vec())
}

#[test]
fn wrong_password_gets_401_with_realm_and_nonce() {
    let relay = Relay::start("");
    let mut c = StunClient::new(relay.addr);
    assert_eq!(c.allocate(("test", "not-the-password")), Err(401));
    let r = c.request(
        Method::ALLOCATE,
        Some(("test", "nope")),
        &[(attr::REQUESTED_TRANSPORT, vec![17, 0, 0, 0])],
    );
    assert_eq!(r.code(), 401);
    let m = r.msg();
    assert_eq!(m.get(attr::REALM), Some(REALM.as_bytes()));
    assert!(m.get(attr::NONCE).is_some());
    // Unknown user, too.
    assert_eq!(
        StunClient::new(relay.addr).allocate(("nobody", "pw")),
        Err(401)
    );
    // And the right one works.
    assert!(StunClient::new(relay.addr).allocate(CREDS).is_ok());
}

#[test]
fn rest_api_credentials_from_the_library() {
    let relay = Relay::start("");
    let (u, p) = turn_relay::rest_auth::credentials(
        SECRET,
        "alice",
        Duration::from_secs(600),
        std::time::SystemTime::now(),
    );
    assert!(StunClient::new(relay.addr).allocate((&u, &p)).is_ok());
    let (u, p) = turn_relay::rest_auth::credentials(
        "other-secret",
        "alice",
        Duration::from_secs(600),
        std::time::SystemTime::now(),
    );
    assert_eq!(StunClient::new(relay.addr).allocate((&u, &p)), Err(401));
}

#[test]
fn stale_nonce_gets_438() {
    let relay = Relay::start("stale-nonce=1");
    let mut c = StunClient::new(relay.addr);
    c.allocate(CREDS).unwrap();
    // The nonce stays valid for 1 s; after 2.2 s (2 whole seconds on the relay's
    // clock) it is stale.
    std::thread::sleep(Duration::from_millis(2200));
    let r = c.request(Method::REFRESH, Some(CREDS), &[]);
    assert_eq!(r.code(), 438);
    // The 438 carried a fresh nonce, which works.
    assert_eq!(c.request(Method::REFRESH, Some(CREDS), &[]).code(), 0);
}

#[test]
fn refresh_with_lifetime_zero_deletes() {
    let relay = Relay::start("");
    let mut c = StunClient::new(relay.addr);
    c.allocate(CREDS).unwrap();
    let r = c.request(Method::REFRESH, Some(CREDS), &[lifetime(0)]);
    assert_eq!(r.code(), 0);
    assert_eq!(
        attr::decode_u32(r.msg().get(attr::LIFETIME).unwrap()),
        Ok(0)
    );
    // Gone: a further refresh is an allocation mismatch.
    assert_eq!(c.request(Method::REFRESH, Some(CREDS), &[]).code(), 437);
    // And the 5-tuple may allocate again.
    assert!(c.allocate(CREDS).is_ok());
}

#[test]
fn peer_data_needs_a_permission() {
    let relay = Relay::start("allow-loopback-peers");
    let mut c = StunClient::new(relay.addr);
    let relayed = c.allocate(CREDS).unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer_addr: SocketAddr = peer.local_addr().unwrap();
    // No permission yet: the relay drops the peer's datagram.
    peer.send_to(b"unsolicited", relayed).unwrap();
    assert!(
        c.recv(Duration::from_millis(300)).is_none(),
        "data without permission was relayed"
    );
    let pa = c.peer_attr(peer_addr);
    assert_eq!(
        c.request(Method::CREATE_PERMISSION, Some(CREDS), &[pa])
            .code(),
        0
    );
    peer.send_to(b"welcome", relayed).unwrap();
    let got = c.recv(Duration::from_secs(2)).expect("Data indication");
    let m = Message::parse(&got).unwrap();
    assert_eq!((m.method, m.class), (Method::DATA, Class::Indication));
    assert_eq!(m.get(attr::DATA), Some(&b"welcome"[..]));
    assert_eq!(
        m.get_xor_address(attr::XOR_PEER_ADDRESS).unwrap().unwrap(),
        peer_addr
    );
}

#[test]
fn quota_exceeded_gets_486() {
    let relay = Relay::start("user-quota=1");
    let mut a = StunClient::new(relay.addr);
    a.allocate(CREDS).unwrap();
    let mut b = StunClient::new(relay.addr);
    assert_eq!(b.allocate(CREDS), Err(486));
    // Releasing the first makes room.
    assert_eq!(
        a.request(Method::REFRESH, Some(CREDS), &[lifetime(0)])
            .code(),
        0
    );
    assert!(
        b.request(
            Method::ALLOCATE,
            Some(CREDS),
            &[(attr::REQUESTED_TRANSPORT, vec![17, 0, 0, 0])]
        )
        .code()
            == 0
    );
}

#[test]
fn denied_peers_get_403() {
    // Default policy: no loopback peers.
    let relay = Relay::start("denied-peer-ip=198.51.100.0-198.51.100.255");
    let mut c = StunClient::new(relay.addr);
    c.allocate(CREDS).unwrap();
    for p in [
        "127.0.0.1:5000",
        "[::ffff:127.0.0.1]:5000",
        "0.0.0.0:5000",
        "224.0.0.1:5000",
        "198.51.100.7:5000",
    ] {
        let pa = c.peer_attr(p.parse().unwrap());
        assert_eq!(
            c.request(Method::CREATE_PERMISSION, Some(CREDS), &[pa])
                .code(),
            403,
            "{p}"
        );
    }
    let pa = c.peer_attr("192.0.2.1:5000".parse().unwrap());
    assert_eq!(
        c.request(Method::CREATE_PERMISSION, Some(CREDS), &[pa])
            .code(),
        0
    );
}

#[test]
fn garbage_does_not_kill_the_server() {
    let relay = Relay::start("");
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut x: u32 = 7;
    for i in 0..2000u32 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let len = (x % 200) as usize;
        let mut p: Vec<u8> = (0..len).map(|k| (x >> (k % 24)) as u8).collect();
        if i % 3 == 0 && p.len() >= 20 {
            p[0] &= 0x3F;
            p[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
        }
        s.send_to(&p, relay.addr).unwrap();
    }
    // Same over TCP: a garbage stream is closed, the listener lives on.
    if let Ok(mut t) = std::net::TcpStream::connect(relay.addr) {
        use std::io::Write;
        let _ = t.write_all(&[0xFF; 64]);
    }
    let c = StunClient::new(relay.addr);
    assert!(
        c.try_binding().is_some(),
        "relay stopped answering after garbage"
    );
}

/// TCP allocations (RFC 6062) listen with `SO_REUSEPORT`, so binding a taken port would not
/// fail: with a one-port range, a second TCP allocation must be refused (508) while the
/// first holds the port, and get it once the first is deleted.
#[test]
fn tcp_allocations_never_share_a_port() {
    let relay = Relay::start("min-port=41500\nmax-port=41500");
    let mut first = StunClient::new_tcp(relay.addr);
    let relayed = first.allocate_transport(CREDS, 6).unwrap();
    assert_eq!(relayed.port(), 41500);
    let mut second = StunClient::new_tcp(relay.addr);
    assert_eq!(second.allocate_transport(CREDS, 6), Err(508));
    let r = first.request(Method::REFRESH, Some(CREDS), &[lifetime(0)]);
    assert_eq!(r.code(), 0);
    assert_eq!(second.allocate_transport(CREDS, 6), Ok(relayed));
    // Over UDP, a TCP allocation is a bad request.
    assert_eq!(
        StunClient::new(relay.addr).allocate_transport(CREDS, 6),
        Err(400)
    );
}

/// A TCP allocation's bytes (RFC 6062) are counted and obey `max-bps` like datagrams: the
/// relay waits where a datagram would be dropped, so the sender is slowed to the cap.
#[test]
fn tcp_allocation_bytes_are_counted_and_capped() {
    const CAP: usize = 20_000; // bytes per second, with a second of burst
    let metrics_port = free_port();
    let relay = Relay::start(&format!(
        "allow-loopback-peers\nmax-bps={CAP}\nprometheus\nprometheus-port={metrics_port}"
    ));
    let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut control = StunClient::new_tcp(relay.addr);
    control.allocate_transport(CREDS, 6).unwrap();
    let to_peer = control.peer_attr(peer.local_addr().unwrap());
    let r = control.authed(Method::CONNECT, CREDS, &[to_peer]);
    assert_eq!(r.code(), 0);
    let id = r.msg().get(attr::CONNECTION_ID).unwrap().to_vec();
    let (mut peer_side, _) = peer.accept().unwrap();
    let mut data = StunClient::new_tcp(relay.addr);
    let r = data.authed(Method::CONNECTION_BIND, CREDS, &[(attr::CONNECTION_ID, id)]);
    assert_eq!(r.code(), 0);
    let mut client_side = data.into_stream();

    // Three seconds' worth: the first goes at once, the other two at the cap.
    let sent = vec![7u8; 3 * CAP];
    let start = std::time::Instant::now();
    let writer = {
        let sent = sent.clone();
        let mut client_side = client_side.try_clone().unwrap();
        std::thread::spawn(move || client_side.write_all(&sent).unwrap())
    };
    peer_side
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut received = vec![0u8; sent.len()];
    peer_side.read_exact(&mut received).unwrap();
    let took = start.elapsed();
    writer.join().unwrap();
    assert_eq!(received, sent);
    // A lower bound only: a slow machine makes it longer, never shorter.
    assert!(
        took >= Duration::from_millis(1800),
        "{took:?} for {} bytes",
        sent.len()
    );

    peer_side.write_all(b"and back").unwrap();
    let mut back = [0u8; 8];
    client_side.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"and back");
    let body = metrics(metrics_port);
    assert_eq!(
        metric(&body, "turn_bytes_to_peer_total"),
        Some(3 * CAP as u64)
    );
    assert_eq!(metric(&body, "turn_bytes_to_client_total"), Some(8));
}
