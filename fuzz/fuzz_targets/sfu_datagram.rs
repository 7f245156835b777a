//! The SFU's media socket: arbitrary datagrams from arbitrary sources reach the core's demux
//! (which participant, if any, a datagram is for) and, for a STUN check naming a
//! participant's ICE username, its connection. The fuzzer cannot guess the server's random
//! ufrag, so the harness writes it wherever the input says `UFRG`.
//!
//! One core per process with one joined participant (a join builds a str0m connection, too
//! slow per input); it is joined again if a datagram made it fail or leave.
#![no_main]

use std::{
    net::SocketAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use libfuzzer_sys::fuzz_target;
use sfu::{
    core::{Command, Output, Reply, SfuCore},
    ids::{IdGen, ParticipantId},
    JoinOptions,
};
use str0m::{
    media::{Direction, MediaKind},
    Rtc,
};

struct Harness {
    core: SfuCore,
    ids: IdGen,
    now: Instant,
    /// The joined participant and the server's ICE ufrag for it.
    joined: Option<(ParticipantId, String)>,
}

static HARNESS: Mutex<Option<Harness>> = Mutex::new(None);

impl Harness {
    fn new() -> Self {
        let (core, now) = rtc_fuzz::sfu_core();
        Harness {
            core,
            ids: IdGen::new(0, 3),
            now,
            joined: None,
        }
    }

    fn join(&mut self) {
        let mut client = Rtc::new(self.now);
        let mut api = client.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
        let (offer, _) = api.apply().expect("an offer");
        let id = self.ids.participant();
        let join = Command::Join {
            id,
            room: "r".into(),
            name: "fuzz".into(),
            offer: offer.to_sdp_string(),
            options: JoinOptions::default(),
        };
        let Ok(Reply::Joined(answer)) = self.core.handle_command(self.now, join) else {
            panic!("a str0m offer joins");
        };
        let ufrag = answer
            .sdp
            .lines()
            .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
            .expect("the answer has a ufrag")
            .to_owned();
        let _ = self.core.handle_command(self.now, Command::Ready { id });
        self.joined = Some((id, ufrag));
    }
}

/// `datagram` with every `UFRG` replaced by `ufrag`.
fn with_ufrag(datagram: &[u8], ufrag: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(datagram.len() + 8);
    let mut rest = datagram;
    while let Some(at) = rest.windows(4).position(|w| w == b"UFRG") {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(ufrag.as_bytes());
        rest = &rest[at + 4..];
    }
    out.extend_from_slice(rest);
    out
}

fuzz_target!(|data: &[u8]| {
    let mut guard = HARNESS.lock().unwrap_or_else(|p| p.into_inner());
    let h = guard.get_or_insert_with(Harness::new);
    if h.joined.is_none() || h.core.inventory().participants == 0 {
        h.join();
    }
    let ufrag = h
        .joined
        .as_ref()
        .map(|(_, u)| u.clone())
        .unwrap_or_default();
    // Steps: [source][len][bytes]…; the source picks one of a few addresses and ports.
    let mut rest = data;
    while let [source, len, tail @ ..] = rest {
        let len = (*len as usize * 8).min(tail.len());
        let (datagram, after) = tail.split_at(len);
        rest = after;
        let from = SocketAddr::from(([198, 51, 100, source % 4], 50000 + (*source as u16 >> 2)));
        h.now += Duration::from_millis(1 + (*source as u64 % 50));
        h.core
            .handle_datagram(h.now, from, &with_ufrag(datagram, &ufrag));
        loop {
            match h.core.poll_output() {
                Output::Timeout(at) => {
                    if at <= h.now {
                        h.core.handle_timeout(h.now);
                        continue;
                    }
                    break;
                }
                Output::Event {
                    participant,
                    event: sfu::ParticipantEvent::Failed,
                } => {
                    let _ = h
                        .core
                        .handle_command(h.now, Command::Leave { id: participant });
                    h.joined = None;
                }
                _ => {}
            }
        }
    }
});
