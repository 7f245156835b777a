//! What one live stream costs the server's CPU (docs/BENCHMARKS.md, "Live streams"), beside
//! ffmpeg packaging the same media into HLS, in the same run.
//!
//! Ours: `SECONDS` of a speaker's RTP — H.264 at `KBPS` (30 fps; the first frame and every
//! frame after the packager asks for one are keyframes with their parameter sets in a STAP-A,
//! as Chromium sends them; slices cut into ≤ 1100-byte FU-A fragments) and Opus (50 packets a
//! second), a sender report a second — through `media_out`'s live `ParticipantRecording` as
//! the server's live thread does it every 20 ms: depacketising, reordering, timing by the
//! reports, CMAF parts of 200 ms and segments of 2 s; then what `signal`'s stream store does
//! per part (the bytes kept by position, the playlist cloned) and one playlist rendered per
//! part (what a CDN in front asks for). Time is virtual: the CPU it takes per second of media
//! is the share of a core one live stream needs. HTTP serving is not in it.
//!
//! The peer: ffmpeg's HLS muxer packaging the stream we made (init and parts, as one
//! fragmented MP4) into fMP4 segments of 2 s with `-c copy` (demux, mux, write; no RTP, no
//! reordering, no parts): a lower bound for a packager built on ffmpeg. The SPS says 320×240
//! (the slices are noise: nothing decodes them); only the bit rate matters here.
//!
//!   cargo build --release -p bench --bin live-cpu && target/release/live-cpu
//! Knobs (env): SECONDS=300 KBPS=1500 RUNS=5

use std::{
    collections::HashMap,
    env,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use bench::{cpu, knob, median, Noise};
use media_out::{
    assembler::Packet,
    codec::Codec,
    hls::{packager::PackagerConfig, playlist::PartPosition},
    recording::{ParticipantRecording, RecordingConfig, SenderReport, TrackKind},
};

/// A 320×240 baseline SPS and its PPS, as Chromium's OpenH264 sends them.
const SPS: [u8; 24] = [
    0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00,
    0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0xa4, 0x80,
];
const PPS: [u8; 5] = [0x68, 0xcb, 0x83, 0xcb, 0x20];
/// How often the server's live thread takes what its taps queued (`signal/src/live/job.rs`).
const PASS: Duration = Duration::from_millis(20);

/// One H.264 access unit as RTP payloads (RFC 6184): parameter sets in a STAP-A before a
/// keyframe, the slice whole or in FU-A fragments.
fn h264_payloads(keyframe: bool, slice_bytes: usize, noise: &mut Noise) -> Vec<Vec<u8>> {
    let mut payloads = Vec::new();
    if keyframe {
        let mut stap = vec![0x78];
        for nal in [&SPS[..], &PPS[..]] {
            stap.extend((nal.len() as u16).to_be_bytes());
            stap.extend(nal);
        }
        payloads.push(stap);
    }
    let header: u8 = if keyframe { 0x65 } else { 0x41 };
    let mut body = vec![0u8; slice_bytes];
    noise.fill(&mut body);
    // A slice header ffmpeg's parser takes (first macroblock 0, I or P slice, PPS 0); the
    // rest is noise.
    body[..2].copy_from_slice(if keyframe {
        &[0x88, 0x80]
    } else {
        &[0x9a, 0x02]
    });
    let chunks: Vec<&[u8]> = body.chunks(1100).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let mut fu = vec![(header & 0xe0) | 28, header & 0x1f];
        if i == 0 {
            fu[1] |= 0x80;
        }
        if i + 1 == chunks.len() {
            fu[1] |= 0x40;
        }
        fu.extend_from_slice(chunk);
        payloads.push(fu);
    }
    payloads
}

/// Streams `seconds` of media; returns our CPU seconds and the stream as one fragmented MP4
/// (init segment and every part).
fn stream(seconds: u64, kbps: u64) -> (f64, Vec<u8>, usize) {
    let t0 = Instant::now();
    let wall0 = SystemTime::now();
    let mut live = ParticipantRecording::live(
        RecordingConfig::live(),
        PackagerConfig::default(),
        Some(Codec::H264),
        Some(Codec::Opus),
        (t0, wall0),
    );
    let mut noise = Noise(0x2545_f491_4f6c_dd1d);
    let (mut video_seq, mut audio_seq) = (0u64, 0u64);
    let frame_bytes = (kbps * 1000 / 8 / 30) as usize;
    // The store: parts by position, the playlist as of the last part (signal's stream.rs).
    let mut parts: HashMap<PartPosition, Arc<[u8]>> = HashMap::new();
    let mut playlist = None;
    let mut file = Vec::new();
    let mut part_count = 0;
    let mut keyframe_asked = true;
    let mut last_pass = 0;
    let cpu0 = cpu(libc::RUSAGE_SELF);
    for ms in 0..seconds * 1000 {
        let frame = ms * 30 / 1000;
        let video_due = ms == 0 || frame != (ms - 1) * 30 / 1000;
        let now = t0 + Duration::from_millis(ms);
        let report_due = ms % 1000 == 0;
        if ms % 20 == 0 {
            audio_seq += 1;
            let mut payload = vec![0u8; 120];
            noise.fill(&mut payload);
            payload[0] = 0xFC;
            let rtp_time = (ms * 48) as u32;
            let packet = Packet {
                seq: audio_seq,
                rtp_time,
                marker: false,
                payload: Arc::from(payload),
                arrived: now,
            };
            let report = report_due.then_some(SenderReport {
                ntp: wall0 + Duration::from_millis(ms),
                rtp_time,
            });
            live.push(TrackKind::Audio, packet, report);
        }
        if video_due {
            // The publisher answers a keyframe request with its next frame, 4× the size.
            let keyframe = std::mem::take(&mut keyframe_asked);
            let size = if keyframe {
                frame_bytes * 4
            } else {
                frame_bytes
            };
            let payloads = h264_payloads(keyframe, size, &mut noise);
            let rtp_time = (ms * 90) as u32;
            let last = payloads.len() - 1;
            for (i, payload) in payloads.into_iter().enumerate() {
                video_seq += 1;
                let packet = Packet {
                    seq: video_seq,
                    rtp_time,
                    marker: i == last,
                    payload: Arc::from(payload),
                    arrived: now,
                };
                let report = (report_due && i == 0).then_some(SenderReport {
                    ntp: wall0 + Duration::from_millis(ms),
                    rtp_time,
                });
                live.push(TrackKind::Video, packet, report);
            }
        }
        if ms < last_pass + PASS.as_millis() as u64 {
            continue;
        }
        last_pass = ms;
        live.poll(now);
        file.extend(live.take_bytes());
        keyframe_asked |= live.take_keyframe_wanted();
        let new = live.take_parts();
        if new.is_empty() {
            continue;
        }
        for part in new {
            file.extend_from_slice(&part.bytes);
            parts.insert(part.position, Arc::from(part.bytes));
            for msn in part.gone {
                parts.retain(|(m, _), _| *m != msn);
            }
            part_count += 1;
            // One playlist answer per part: a CDN in front asks for each once.
            if let Some(current) = live.live_playlist() {
                std::hint::black_box(current.render("init.mp4", false));
            }
        }
        playlist = live.live_playlist().cloned();
    }
    live.finish();
    let cpu_s = cpu(libc::RUSAGE_SELF) - cpu0;
    for part in live.take_parts() {
        file.extend_from_slice(&part.bytes);
        part_count += 1;
    }
    assert!(playlist.is_some(), "the stream started");
    assert!(
        part_count as u64 >= seconds * 4,
        "{part_count} parts in {seconds} s"
    );
    (cpu_s, file, part_count)
}

fn main() {
    let (seconds, kbps, runs) = (knob("SECONDS", 300), knob("KBPS", 1500), knob("RUNS", 5));
    let dir = env::temp_dir().join(format!("live-cpu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let input = dir.join("stream.mp4");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let (cpu_s, file, parts) = stream(seconds, kbps);
        std::fs::write(&input, &file).expect("write the stream");
        let out = dir.join(format!("hls-{run}"));
        std::fs::create_dir_all(&out).expect("hls dir");
        let before = cpu(libc::RUSAGE_CHILDREN);
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-i"])
            .arg(&input)
            .args([
                "-c",
                "copy",
                "-f",
                "hls",
                "-hls_time",
                "2",
                "-hls_list_size",
                "0",
                "-hls_segment_type",
                "fmp4",
            ])
            .arg(out.join("index.m3u8"))
            // Its decoder, probing the stream, complains about the noise slices.
            .stderr(Stdio::null())
            .status()
            .expect("ffmpeg (Debian's ffmpeg package)");
        assert!(status.success(), "ffmpeg failed");
        let ffmpeg_s = cpu(libc::RUSAGE_CHILDREN) - before;
        let segments = std::fs::read_dir(&out).map_or(0, |d| d.count());
        println!(
            "run {run}: {seconds} s at {kbps} kbit/s ({:.1} MiB, {parts} parts): ours {:.0} ms CPU, \
             ffmpeg -f hls -c copy {:.0} ms ({segments} files)",
            file.len() as f64 / 1048576.0,
            cpu_s * 1000.0,
            ffmpeg_s * 1000.0
        );
        let _ = std::fs::remove_dir_all(&out);
        ours.push(cpu_s);
        theirs.push(ffmpeg_s);
    }
    let (ours, theirs) = (median(ours), median(theirs));
    println!(
        "medians of {runs}: ours {:.3} % of a core per live stream ({:.0} streams per core), \
         ffmpeg -f hls -c copy {:.3} %; ratio {:.2}×",
        ours / seconds as f64 * 100.0,
        seconds as f64 / ours,
        theirs / seconds as f64 * 100.0,
        ours / theirs
    );
    let _ = std::fs::remove_dir_all(&dir);
}
