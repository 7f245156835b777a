//! The SFU's SDP intake: a browser's offer as it arrives in `join`, arbitrary text. The
//! pure helpers see everything; an offer that str0m parses is joined to a real core (one per
//! process, reused: a join builds a str0m connection, too slow to do per input) and left.
//! Nothing panics, and a join's answer is SDP str0m reads back.
#![no_main]

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use libfuzzer_sys::fuzz_target;
use sfu::{
    core::{sdp, Command, Output, Reply, SfuCore},
    ids::IdGen,
    JoinOptions,
};
use str0m::change::SdpAnswer;

struct Harness {
    core: SfuCore,
    ids: IdGen,
    now: Instant,
}

static HARNESS: Mutex<Option<Harness>> = Mutex::new(None);

fn harness() -> Harness {
    let (core, now) = rtc_fuzz::sfu_core();
    Harness {
        core,
        ids: IdGen::new(0, 2),
        now,
    }
}

fuzz_target!(|data: &[u8]| {
    let offer = String::from_utf8_lossy(data);
    let _ = sdp::media_sections(&offer);
    let _ = sdp::receive_only_answer(&offer);
    // No parse here first: the join parses the offer before anything else and refuses what
    // str0m cannot read (parsing it here too cost a second parse per input).
    let mut guard = HARNESS.lock().unwrap_or_else(|p| p.into_inner());
    let h = guard.get_or_insert_with(harness);
    h.now += Duration::from_millis(10);
    let id = h.ids.participant();
    let join = Command::Join {
        id,
        room: "r".into(),
        name: "fuzz".into(),
        offer: offer.into_owned(),
        options: JoinOptions {
            live: data.len() % 2 == 0,
            passcode: None,
        },
    };
    if let Ok(Reply::Joined(answer)) = h.core.handle_command(h.now, join) {
        SdpAnswer::from_sdp_string(&answer.sdp).expect("our answer is SDP");
        let _ = h.core.handle_command(h.now, Command::Ready { id });
    }
    let _ = h.core.handle_command(h.now, Command::Leave { id });
    while !matches!(h.core.poll_output(), Output::Timeout(_)) {}
    assert_eq!(h.core.inventory().participants, 0, "a leave leaves nothing");
});
