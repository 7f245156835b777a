//! What recording one SFU participant costs the server's CPU (docs/BENCHMARKS.md, "Recording
//! SFU rooms on the server"), beside ffmpeg remuxing the same media, in the same run.
//!
//! Ours: `SECONDS` of a participant's RTP — VP8 at `KBPS` (30 fps, a keyframe every 2 s, the
//! frames cut into ≤1100-byte packets with their payload descriptors) and Opus (50 packets a
//! second) with a sender report a second — through `media_out`'s `ParticipantRecording` into a
//! file, fsynced every 0.7 s of media as the server does: depacketising, reordering, timing by
//! the reports, WebM muxing, writing. Time is virtual: the run goes as fast as the CPU allows,
//! and the CPU it takes per second of media is the share of a core one participant needs.
//!
//! The peer: `ffmpeg -c copy` remuxing the WebM we wrote (demux + mux + write, no RTP, no
//! reordering): a lower bound for a recorder built on ffmpeg (mediasoup's usual recipe, which
//! also receives and depacketises RTP).
//!
//!   cargo build --release -p bench --bin room-record-cpu && target/release/room-record-cpu
//! Knobs (env): SECONDS=300 KBPS=1500 RUNS=5 SYNC_MS=700 (0: no fsync while recording)

use std::{
    env,
    fs::File,
    io::Write,
    process::Command,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use bench::{cpu, knob, median, Noise};
use media_out::{
    assembler::Packet,
    codec::Codec,
    recording::{ParticipantRecording, RecordingConfig, SenderReport, TrackKind},
};

/// Feeds `seconds` of media through a recording into `path`; returns our CPU seconds.
fn record(seconds: u64, kbps: u64, sync_ms: u64, path: &str) -> f64 {
    let t0 = Instant::now();
    let wall0 = SystemTime::now();
    let mut recording = ParticipantRecording::new(
        RecordingConfig::default(),
        Some(Codec::Vp8),
        Some(Codec::Opus),
        (t0, wall0),
    );
    let mut file = File::create(path).expect("output file");
    let mut noise = Noise(0x2545_f491_4f6c_dd1d);
    let (mut video_seq, mut audio_seq) = (0u64, 0u64);
    let frame_bytes = (kbps * 1000 / 8 / 30) as usize;
    let mut last_sync = 0;
    let cpu0 = cpu(libc::RUSAGE_SELF);
    for ms in 0..seconds * 1000 {
        // Audio every 20 ms; video at 30 fps (a frame when the frame number changes).
        let frame = ms * 30 / 1000;
        let video_due = ms == 0 || frame != (ms - 1) * 30 / 1000;
        if ms % 20 != 0 && !video_due {
            continue;
        }
        let now = t0 + Duration::from_millis(ms);
        let report_due = ms % 1000 == 0;
        if ms % 20 == 0 {
            audio_seq += 1;
            let mut payload = vec![0u8; 120];
            noise.fill(&mut payload);
            payload[0] = 0xFC;
            let rtp_time = (ms * 48) as u32;
            recording.push(
                TrackKind::Audio,
                Packet {
                    seq: audio_seq,
                    rtp_time,
                    marker: false,
                    payload: Arc::from(payload),
                    arrived: now,
                },
                report_due.then_some(SenderReport {
                    ntp: wall0 + Duration::from_millis(ms),
                    rtp_time,
                }),
            );
        }
        if video_due {
            // Keyframes, 4× the size, every 2 s.
            let key = frame % 60 == 0;
            let mut frame = vec![0u8; if key { frame_bytes * 4 } else { frame_bytes }];
            noise.fill(&mut frame);
            if key {
                frame[..10]
                    .copy_from_slice(&[0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x07, 0x38, 0x04]);
            } else {
                // An inter frame's tag: frame type 1, version 0, shown (ffmpeg's parser reads it).
                frame[0] = 0x11;
            }
            let rtp_time = (ms * 90) as u32;
            let parts: Vec<&[u8]> = frame.chunks(1100).collect();
            for (i, part) in parts.iter().enumerate() {
                video_seq += 1;
                let mut payload = Vec::with_capacity(part.len() + 1);
                payload.push(if i == 0 { 0x10 } else { 0x00 });
                payload.extend_from_slice(part);
                recording.push(
                    TrackKind::Video,
                    Packet {
                        seq: video_seq,
                        rtp_time,
                        marker: i + 1 == parts.len(),
                        payload: Arc::from(payload),
                        arrived: now,
                    },
                    (report_due && i == 0).then_some(SenderReport {
                        ntp: wall0 + Duration::from_millis(ms),
                        rtp_time,
                    }),
                );
            }
        }
        recording.poll(now);
        file.write_all(&recording.take_bytes()).expect("write");
        if sync_ms > 0 && ms >= last_sync + sync_ms {
            file.sync_data().expect("fsync");
            last_sync = ms;
        }
    }
    recording.finish();
    file.write_all(&recording.take_bytes()).expect("write");
    file.sync_all().expect("fsync");
    let summary = recording.summary();
    assert!(summary.video_frames >= seconds * 29, "{summary:?}");
    cpu(libc::RUSAGE_SELF) - cpu0
}

fn main() {
    let (seconds, kbps, runs) = (knob("SECONDS", 300), knob("KBPS", 1500), knob("RUNS", 5));
    let sync_ms = knob("SYNC_MS", 700);
    let dir = env::temp_dir().join(format!("room-record-cpu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (ours_path, theirs_path) = (dir.join("ours.webm"), dir.join("ffmpeg.webm"));
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let cpu_s = record(seconds, kbps, sync_ms, ours_path.to_str().expect("utf-8"));
        let before = cpu(libc::RUSAGE_CHILDREN);
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-i"])
            .arg(&ours_path)
            .args(["-c", "copy", "-f", "webm"])
            .arg(&theirs_path)
            .status()
            .expect("ffmpeg (Debian's ffmpeg package)");
        assert!(status.success(), "ffmpeg failed");
        let ffmpeg_s = cpu(libc::RUSAGE_CHILDREN) - before;
        let size = std::fs::metadata(&ours_path).map(|m| m.len()).unwrap_or(0);
        println!(
            "run {run}: {seconds} s at {kbps} kbit/s ({:.1} MiB): ours {:.0} ms CPU, ffmpeg -c copy {:.0} ms",
            size as f64 / 1048576.0,
            cpu_s * 1000.0,
            ffmpeg_s * 1000.0
        );
        ours.push(cpu_s);
        theirs.push(ffmpeg_s);
    }
    let (ours, theirs) = (median(ours), median(theirs));
    println!(
        "medians of {runs}: ours {:.3} % of a core per participant ({:.0} participants per core), \
         ffmpeg -c copy {:.3} %; ratio {:.2}×",
        ours / seconds as f64 * 100.0,
        seconds as f64 / ours,
        theirs / seconds as f64 * 100.0,
        ours / theirs
    );
    let _ = std::fs::remove_dir_all(&dir);
}
