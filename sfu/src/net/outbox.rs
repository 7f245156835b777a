//! Datagrams in and out of the media socket in batches: one `recvmmsg` per wake-up reads
//! up to [`BATCH`] datagrams, and the datagrams a pass of the core produced leave in one
//! `sendmmsg` per [`BATCH`] (each datagram still costs the kernel its UDP send, but not a
//! system call). The batching itself is `udp-batch`, shared with turn-relay.

use std::{
    io,
    net::SocketAddr,
    os::fd::RawFd,
    time::{Duration, Instant, SystemTime},
};

use udp_batch::MmsgBatch;

use crate::ids::ParticipantId;

/// Datagrams per system call.
pub const BATCH: usize = 64;
/// Receive buffer per datagram: more than any MTU a browser uses; a larger datagram is
/// truncated by the kernel and dropped.
const SLOT: usize = 2048;

/// Datagrams queued for one send, each with the participant it is for (reported back if
/// the kernel refuses it).
#[derive(Default)]
pub struct Outbox {
    datagrams: Vec<(ParticipantId, Vec<u8>, SocketAddr)>,
}

impl Outbox {
    pub fn push(&mut self, owner: ParticipantId, contents: Vec<u8>, to: SocketAddr) {
        self.datagrams.push((owner, contents, to));
    }

    pub fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }

    pub fn len(&self) -> usize {
        self.datagrams.len()
    }

    /// Sends everything queued. A datagram the kernel refuses because the send buffer is
    /// full is dropped and reported with `dropped(owner)`; a slow receiver is the only way
    /// to fill it, and str0m keeps video in its resend buffer for the NACK.
    pub fn send(
        &mut self,
        socket: RawFd,
        batch: &mut MmsgBatch,
        mut dropped: impl FnMut(ParticipantId),
    ) {
        let datagrams = &self.datagrams;
        let result = batch.send(
            socket,
            datagrams,
            |(_, contents, to)| (contents.as_slice(), *to),
            |i| dropped(datagrams[i].0),
        );
        if result.failed > 0 {
            tracing::debug!(failed = result.failed, "datagrams could not be sent");
        }
        self.datagrams.clear();
    }
}

/// The receive side: a fixed arena of [`BATCH`] datagram buffers.
pub struct Inbox {
    arena: Vec<u8>,
    batch: MmsgBatch,
    received: usize,
}

impl Default for Inbox {
    fn default() -> Self {
        Inbox {
            arena: vec![0; BATCH * SLOT],
            batch: MmsgBatch::new(BATCH),
            received: 0,
        }
    }
}

impl Inbox {
    /// Reads what is waiting (at most [`BATCH`] datagrams); returns how many arrived.
    pub fn recv(&mut self, socket: RawFd) -> io::Result<usize> {
        self.received = 0;
        self.received = self.batch.recv(socket, self.arena.chunks_mut(SLOT))?;
        Ok(self.received)
    }

    /// The datagrams of the last [`recv`](Self::recv) (truncated ones left out), each with
    /// the kernel's arrival stamp if the socket gives them.
    pub fn datagrams(&self) -> impl Iterator<Item = Received<'_>> + '_ {
        (0..self.received).filter_map(|k| {
            let (len, from) = self.batch.received(k);
            Some(Received {
                from: from?,
                data: &self.arena[k * SLOT..k * SLOT + len],
                at: self.batch.received_at(k),
            })
        })
    }
}

/// One datagram of a batch.
pub struct Received<'a> {
    pub from: SocketAddr,
    pub data: &'a [u8],
    /// When the kernel received it (wall clock), if it says.
    pub at: Option<SystemTime>,
}

/// Puts the kernel's wall-clock arrival stamps of one batch on the monotonic clock the core
/// runs on, from one reading of both clocks when the batch was read.
pub struct ArrivalClock {
    read: Instant,
    wall: SystemTime,
}

impl ArrivalClock {
    /// Longer than a datagram plausibly waits in the socket: a stamp older than that (or in
    /// the future) says the wall clock stepped, and the read time is used.
    const MAX_WAIT: Duration = Duration::from_secs(1);

    pub fn new(read: Instant, wall: SystemTime) -> Self {
        ArrivalClock { read, wall }
    }

    /// When a datagram stamped `at` arrived, never later than the read.
    pub fn arrived(&self, at: Option<SystemTime>) -> Instant {
        at.and_then(|at| self.wall.duration_since(at).ok())
            .filter(|waited| *waited < Self::MAX_WAIT)
            .and_then(|waited| self.read.checked_sub(waited))
            .unwrap_or(self.read)
    }
}

#[cfg(test)]
mod tests {
    use std::{net::UdpSocket, os::fd::AsRawFd};

    use super::*;

    #[test]
    fn a_pass_goes_out_in_batches_and_comes_back_in_order() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver.set_nonblocking(true).unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = receiver.local_addr().unwrap();
        let owner: ParticipantId = "p000000000001".parse().unwrap();
        let mut outbox = Outbox::default();
        for i in 0..100u8 {
            outbox.push(owner, vec![i; 10], to);
        }
        let mut batch = MmsgBatch::new(BATCH);
        let mut dropped = 0;
        outbox.send(sender.as_raw_fd(), &mut batch, |_| dropped += 1);
        assert!(outbox.is_empty());
        assert_eq!(dropped, 0);
        let mut inbox = Inbox::default();
        let mut got = Vec::new();
        while inbox.recv(receiver.as_raw_fd()).unwrap() > 0 {
            for datagram in inbox.datagrams() {
                assert_eq!(
                    (datagram.from, datagram.data.len()),
                    (sender.local_addr().unwrap(), 10)
                );
                got.push(datagram.data[0]);
            }
        }
        assert_eq!(got, (0..100).collect::<Vec<u8>>());
    }

    #[test]
    fn arrival_stamps_go_on_the_monotonic_clock_unless_the_wall_clock_stepped() {
        let read = Instant::now();
        let wall = SystemTime::now();
        let clock = ArrivalClock::new(read, wall);
        let ms = Duration::from_millis;
        assert_eq!(clock.arrived(Some(wall - ms(7))), read - ms(7));
        assert_eq!(clock.arrived(Some(wall)), read);
        assert_eq!(clock.arrived(None), read, "no stamp");
        assert_eq!(
            clock.arrived(Some(wall + ms(3))),
            read,
            "stamped after the read"
        );
        assert_eq!(clock.arrived(Some(wall - ms(5000))), read, "stepped clock");
    }
}
