//! Lip sync through the SFU: the sender reports a subscriber gets must say when the media
//! was captured, as the publisher's do, or the receiver cannot line audio up with video.

use std::time::{Duration, Instant, SystemTime};

use sfu::core::AUDIO_REPORT_INTERVAL;

use crate::lab::{ms, secs, Frame, Lab};

/// Per stream kind, the median of (arrival at the subscriber − capture as its sender
/// reports say), in ms, give or take a constant: the delays a receiver's lip sync evens out.
fn reported_delay_ms(frames: &[Frame], video: bool, since: Instant, lab: &Lab) -> f64 {
    // Instants become wall-clock times through one reading of both clocks, as in str0m, but
    // not the same one: each delay is off by a constant, the same for audio and video.
    let (anchor, anchor_wall) = (lab.now, SystemTime::now());
    let mut delays: Vec<f64> = frames
        .iter()
        .filter(|f| f.video == video && f.at >= since)
        .filter_map(|f| {
            let arrived = anchor_wall - anchor.duration_since(f.at);
            let captured = f.reported_capture()?;
            Some(match arrived.duration_since(captured) {
                Ok(d) => d.as_secs_f64() * 1000.0,
                Err(e) => -e.duration().as_secs_f64() * 1000.0,
            })
        })
        .collect();
    assert!(
        delays.len() > 20,
        "frames with a sender report: {}",
        delays.len()
    );
    delays.sort_by(f64::total_cmp);
    delays[delays.len() / 2]
}

/// Ada's encoder sends each video frame 60 ms after its capture; her audio goes at once.
/// Bob's receiver, reading our sender reports, must see her video 60 ms later after its
/// capture than her audio, as it would receiving from her directly, and delay her audio to
/// match. Reports built from arrival times at the SFU would hide the encoder's 60 ms: the
/// receiver would see equal delays and play her audio 60 ms ahead of her video.
#[test]
fn subscribers_sender_reports_carry_the_publishers_capture_times() {
    let encode = ms(60);
    let mut lab = Lab::new();
    let ada = lab.client("Ada", true);
    let bob = lab.client("Bob", false);
    lab.clients[ada].encode_delay = encode;
    lab.join(ada, "r").unwrap();
    lab.join(bob, "r").unwrap();
    // Frames count once Ada's first audio report has reached the SFU (str0m's clients, like
    // Chrome, report on audio every 5 s) and our next one has reached Bob (the first report
    // on each of his streams goes before anything was written on it, saying RTP time 0:
    // docs/sfu.md, str0m note 11).
    lab.run_for(secs(5) + AUDIO_REPORT_INTERVAL + secs(1));
    let since = lab.now;
    lab.run_for(secs(5));
    let frames = &lab.clients[bob].frames;
    let video = reported_delay_ms(frames, true, since, &lab);
    let audio = reported_delay_ms(frames, false, since, &lab);
    let skew = Duration::from_secs_f64((video - audio).max(0.0) / 1000.0);
    assert!(
        skew.abs_diff(encode) <= ms(10),
        "video {video:.1} ms after capture, audio {audio:.1} ms: {skew:?} apart, not the encoder's {encode:?}"
    );
}
