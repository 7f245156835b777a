//! The physical-limit reference: the same fan-out over plain UDP sockets (no ICE, no DTLS, no
//! SRTP, no RTCP), relayed by a single-threaded process (`sfu-load relay`).

use std::{
    collections::HashMap,
    net::{SocketAddr, UdpSocket},
};

use anyhow::Result;

/// `SUB` + room (u32): register the sender as a member of that room.
pub const HELLO: &[u8; 3] = b"SUB";

/// Runs the relay: every packet from a room member goes to every other member of its room
/// (the room id is in the SSRC field of the 12-byte RTP-like header).
pub fn relay() -> Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    println!("port {}", socket.local_addr()?.port());
    let mut rooms: HashMap<u32, Vec<SocketAddr>> = HashMap::new();
    let mut buf = [0u8; 2048];
    loop {
        let (n, from) = socket.recv_from(&mut buf)?;
        if n == 7 && &buf[..3] == HELLO {
            let room = u32::from_be_bytes(buf[3..7].try_into()?);
            let members = rooms.entry(room).or_default();
            if !members.contains(&from) {
                members.push(from);
            }
            let _ = socket.send_to(HELLO, from);
            continue;
        }
        if n < 12 {
            continue;
        }
        let room = u32::from_be_bytes(buf[8..12].try_into()?);
        if let Some(members) = rooms.get(&room) {
            for to in members.iter().filter(|m| **m != from) {
                let _ = socket.send_to(&buf[..n], to);
            }
        }
    }
}
