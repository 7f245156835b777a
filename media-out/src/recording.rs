//! One participant's recording (sans-IO): the RTP of its microphone and camera in, the bytes
//! of a live WebM out, audio and video on one timeline from the senders' reports.
//!
//! Timing. A browser stamps audio and video with unrelated RTP clocks; its RTCP sender
//! reports tie each to its own wall clock (NTP). Every frame's time is that wall-clock time,
//! so the two tracks stay in sync however late either arrives. Until both tracks have a
//! report (Chromium sends the first within a second or two) the frames wait, for at most
//! `sync_wait`; a track still without a report is then timed by arrival. Time 0 is the first
//! video keyframe (audio before it is dropped). A track's times never go back.
//!
//! Output: bytes to append to the file, and whether a video keyframe is wanted (at the start
//! and after a hole). Frames of the two tracks are written in time order: one waits for the
//! other for up to `interleave_wait`, then goes on alone (a muted camera sends nothing).
//!
//! A live stream ([`ParticipantRecording::live`]) is timed the same way; its output is the
//! init segment (as bytes) and LL-HLS parts ([`ParticipantRecording::take_parts`]), and it
//! also wants a keyframe for each new segment.

use std::{
    collections::VecDeque,
    time::{Duration, Instant, SystemTime},
};

use crate::{
    assembler::{AssemblerStats, Frame, FrameAssembler, Packet},
    codec::{h264_parameter_sets, Codec},
    hls::{
        packager::{LivePackager, NewPart, PackagerConfig},
        playlist::MediaPlaylist,
    },
    mp4::{Fmp4Writer, H264Track},
    webm::{AudioTrack, VideoCodec, VideoTrack, WebmWriter},
};

/// What a recording is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// VP8 or VP9 with Opus.
    Webm,
    /// H.264 with Opus (fragmented).
    Mp4,
}

impl Container {
    pub fn extension(self) -> &'static str {
        match self {
            Container::Webm => "webm",
            Container::Mp4 => "mp4",
        }
    }
}

/// The writer of the recording's container.
#[derive(Debug)]
enum Muxer {
    Webm(WebmWriter),
    Mp4(Box<Fmp4Writer>),
    Live(Box<LiveMuxer>),
}

/// A live stream's packager, its init segment until written, the parts it made and not yet
/// taken, and whether it wants a keyframe for its next segment.
#[derive(Debug)]
struct LiveMuxer {
    packager: LivePackager,
    init: Vec<u8>,
    parts: Vec<NewPart>,
    keyframe_wanted: bool,
}

impl Muxer {
    fn header(&mut self, date: SystemTime) -> Vec<u8> {
        match self {
            Muxer::Webm(webm) => webm.header(date),
            Muxer::Mp4(mp4) => mp4.init(),
            Muxer::Live(live) => std::mem::take(&mut live.init),
        }
    }

    fn video(&mut self, out: &mut Vec<u8>, ms: u64, keyframe: bool, frame: &[u8]) {
        match self {
            Muxer::Webm(webm) => webm.video_frame(out, ms, keyframe, frame),
            Muxer::Mp4(mp4) => mp4.video_frame(out, ms, keyframe, frame),
            Muxer::Live(live) => {
                live.parts.extend(live.packager.video(ms, keyframe, frame));
                live.keyframe_wanted |= live.packager.keyframe_wanted(ms);
            }
        }
    }

    fn audio(&mut self, out: &mut Vec<u8>, ms: u64, frame: &[u8]) {
        match self {
            Muxer::Webm(webm) => webm.audio_frame(out, ms, frame),
            Muxer::Mp4(mp4) => mp4.audio_frame(out, ms, frame),
            Muxer::Live(live) => live.parts.extend(live.packager.audio(ms, frame)),
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        match self {
            Muxer::Webm(_) => {}
            Muxer::Mp4(mp4) => mp4.finish(out),
            Muxer::Live(live) => live.parts.extend(live.packager.finish()),
        }
    }
}

/// A sender report's time pair: `rtp_time` (in the stream's own RTP timeline) was `ntp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport {
    pub ntp: SystemTime,
    pub rtp_time: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct RecordingConfig {
    /// How long a hole is waited for (retransmissions).
    pub hold: Duration,
    /// How long frames wait for both tracks' first sender reports.
    pub sync_wait: Duration,
    /// How long one track's frames wait for the other's before being written alone.
    pub interleave_wait: Duration,
}

impl RecordingConfig {
    /// The waits of a live stream, shorter than a recording's: every millisecond here is
    /// latency for every viewer.
    pub fn live() -> Self {
        RecordingConfig {
            // A retransmission arrives within a round trip or two.
            hold: Duration::from_millis(150),
            // Chromium sends its first sender reports within a second of sending.
            sync_wait: Duration::from_millis(1500),
            // Audio frames come every 20 ms, video every 33-66 ms.
            interleave_wait: Duration::from_millis(150),
        }
    }
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            hold: Duration::from_millis(500),
            sync_wait: Duration::from_secs(3),
            interleave_wait: Duration::from_millis(800),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    Audio,
    Video,
}

/// What the recording has done, for its manifest.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecordingSummary {
    /// Wall-clock time of time 0 (`None`: nothing written yet).
    pub started: Option<SystemTime>,
    /// The last frame written, in ms after time 0.
    pub duration_ms: u64,
    pub video_frames: u64,
    pub audio_frames: u64,
    pub video_size: Option<(u16, u16)>,
    pub video: AssemblerStats,
    pub audio: AssemblerStats,
    /// Frames timed by arrival because their track had no sender report in time.
    pub timed_by_arrival: u64,
    /// The least time (ms) from a frame's capture (its sender report's clock) to its arrival,
    /// per track: the path's delay where sender and server clocks agree, and their
    /// difference where not. Audio and video far apart here point at a sender's reports.
    pub audio_transit_ms: Option<i64>,
    pub video_transit_ms: Option<i64>,
}

#[derive(Debug)]
struct Track {
    codec: Codec,
    assembler: FrameAssembler,
    report: Option<SenderReport>,
    /// Frames assembled, not written yet.
    queue: VecDeque<Frame>,
    last_ms: u64,
}

impl Track {
    fn new(codec: Codec, config: &RecordingConfig) -> Self {
        Track {
            codec,
            assembler: FrameAssembler::new(codec, config.hold),
            report: None,
            queue: VecDeque::new(),
            last_ms: 0,
        }
    }

    /// The wall-clock time of an (extended) RTP time, from the latest sender report.
    fn wall(&self, rtp_time: u64) -> Option<SystemTime> {
        let report = self.report?;
        // How far the frame is from the report, in RTP ticks (either way, across a wrap).
        let ticks = -i64::from(report.rtp_time.wrapping_sub(rtp_time as u32) as i32);
        let nanos = ticks as i128 * 1_000_000_000 / i128::from(self.codec.clock_rate());
        Some(if nanos >= 0 {
            report.ntp + Duration::from_nanos(nanos as u64)
        } else {
            report.ntp - Duration::from_nanos(nanos.unsigned_abs() as u64)
        })
    }
}

/// One participant's recording: feed it packets and time, take bytes.
#[derive(Debug)]
pub struct ParticipantRecording {
    config: RecordingConfig,
    video: Option<Track>,
    audio: Option<Track>,
    /// Instant ↔ wall clock, for frames timed by arrival.
    anchor: (Instant, SystemTime),
    container: Container,
    /// A live stream (LL-HLS parts), not a file.
    live: Option<PackagerConfig>,
    muxer: Option<Muxer>,
    origin: Option<SystemTime>,
    out: Vec<u8>,
    summary: RecordingSummary,
}

impl ParticipantRecording {
    /// `video`/`audio`: the codecs of the tracks to record (`None`: no such track, or one we
    /// cannot write). `anchor` ties the monotonic clock to the wall clock.
    pub fn new(
        config: RecordingConfig,
        video: Option<Codec>,
        audio: Option<Codec>,
        anchor: (Instant, SystemTime),
    ) -> Self {
        ParticipantRecording {
            video: video
                .filter(|c| c.is_video())
                .map(|c| Track::new(c, &config)),
            audio: audio
                .filter(|c| !c.is_video())
                .map(|c| Track::new(c, &config)),
            config,
            anchor,
            container: if video == Some(Codec::H264) {
                Container::Mp4
            } else {
                Container::Webm
            },
            live: None,
            muxer: None,
            origin: None,
            out: Vec::new(),
            summary: RecordingSummary::default(),
        }
    }

    /// A live stream of H.264 `video` (no video, or another codec: audio only) and Opus
    /// `audio`: the init segment comes out as bytes, then LL-HLS parts
    /// ([`ParticipantRecording::take_parts`]).
    pub fn live(
        config: RecordingConfig,
        packager: PackagerConfig,
        video: Option<Codec>,
        audio: Option<Codec>,
        anchor: (Instant, SystemTime),
    ) -> Self {
        ParticipantRecording {
            live: Some(packager),
            // CMAF, with or without video.
            container: Container::Mp4,
            ..ParticipantRecording::new(config, video.filter(|c| *c == Codec::H264), audio, anchor)
        }
    }

    /// A live stream's parts made since the last call.
    pub fn take_parts(&mut self) -> Vec<NewPart> {
        match self.muxer.as_mut() {
            Some(Muxer::Live(live)) => std::mem::take(&mut live.parts),
            _ => Vec::new(),
        }
    }

    /// A live stream's playlist, once it started.
    pub fn live_playlist(&self) -> Option<&MediaPlaylist> {
        match self.muxer.as_ref() {
            Some(Muxer::Live(live)) => Some(live.packager.playlist()),
            _ => None,
        }
    }

    /// A live stream's codecs (`avc1.42c01f,opus`), once it started.
    pub fn live_codecs(&self) -> Option<String> {
        match self.muxer.as_ref() {
            Some(Muxer::Live(live)) => Some(live.packager.codecs()),
            _ => None,
        }
    }

    pub fn push(&mut self, kind: TrackKind, packet: Packet, report: Option<SenderReport>) {
        let track = match kind {
            TrackKind::Audio => self.audio.as_mut(),
            TrackKind::Video => self.video.as_mut(),
        };
        if let Some(track) = track {
            if report.is_some() {
                track.report = report;
            }
            track.assembler.push(packet);
        }
    }

    /// Moves what is due by `now` into the output.
    pub fn poll(&mut self, now: Instant) {
        for track in [self.video.as_mut(), self.audio.as_mut()]
            .into_iter()
            .flatten()
        {
            while let Some(frame) = track.assembler.pop(now) {
                track.queue.push_back(frame);
            }
        }
        if self.muxer.is_none() && !self.start(now) {
            return;
        }
        self.write(now, false);
    }

    /// The recording ends: everything held is written.
    pub fn finish(&mut self) {
        for track in [self.video.as_mut(), self.audio.as_mut()]
            .into_iter()
            .flatten()
        {
            let frames = track.assembler.drain();
            track.queue.extend(frames);
        }
        let far = Instant::now() + Duration::from_secs(3600);
        if self.muxer.is_some() || self.start(far) {
            self.write(far, true);
        }
        if let Some(muxer) = self.muxer.as_mut() {
            muxer.finish(&mut self.out);
        }
    }

    /// The container the recording is written in, by its video codec: MP4 for H.264, WebM
    /// otherwise.
    pub fn container(&self) -> Container {
        self.container
    }

    /// For MP4, once finished: where in the file to write what, to give it its duration.
    pub fn duration_patch(&self) -> Option<(u64, [u8; 8])> {
        match &self.muxer {
            Some(Muxer::Mp4(mp4)) => Some(mp4.duration_patch()),
            _ => None,
        }
    }

    /// Bytes to append to the file since the last call.
    pub fn take_bytes(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Whether the publisher should be asked for a keyframe: none yet to start from, or a
    /// hole was given up on.
    pub fn take_keyframe_wanted(&mut self) -> bool {
        let Some(video) = self.video.as_mut() else {
            return false;
        };
        let for_segment = match self.muxer.as_mut() {
            Some(Muxer::Live(live)) => std::mem::take(&mut live.keyframe_wanted),
            _ => false,
        };
        video.assembler.take_keyframe_wanted() | for_segment
    }

    /// When `poll` should be called without a new packet.
    pub fn deadline(&self) -> Option<Instant> {
        let tracks = [self.video.as_ref(), self.audio.as_ref()];
        let assemblers = tracks
            .iter()
            .flatten()
            .filter_map(|t| t.assembler.deadline());
        let queued = tracks
            .iter()
            .flatten()
            .filter_map(|t| t.queue.front())
            .map(|f| f.arrived + self.config.interleave_wait.max(self.config.sync_wait));
        assemblers.chain(queued).min()
    }

    pub fn summary(&self) -> RecordingSummary {
        let mut summary = self.summary.clone();
        summary.video = self
            .video
            .as_ref()
            .map(|t| t.assembler.stats())
            .unwrap_or_default();
        summary.audio = self
            .audio
            .as_ref()
            .map(|t| t.assembler.stats())
            .unwrap_or_default();
        summary
    }

    /// Writes the header once the start is known: a keyframe first (if there is video), and
    /// both tracks' reports (or `sync_wait` passed).
    fn start(&mut self, now: Instant) -> bool {
        let first_arrival = [self.video.as_ref(), self.audio.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|t| t.queue.front().map(|f| f.arrived))
            .min();
        let Some(first_arrival) = first_arrival else {
            return false;
        };
        let waited = now >= first_arrival + self.config.sync_wait;
        let reports = [self.video.as_ref(), self.audio.as_ref()]
            .into_iter()
            .flatten()
            .all(|t| t.report.is_some());
        let origin_frame = match &self.video {
            Some(video) => match video.queue.front() {
                Some(frame) => frame,
                // Audio alone until the camera's first keyframe: wait, up to `sync_wait`.
                None if !waited => return false,
                None => match self.audio.as_ref().and_then(|a| a.queue.front()) {
                    Some(frame) => frame,
                    None => return false,
                },
            },
            None => match self.audio.as_ref().and_then(|a| a.queue.front()) {
                Some(frame) => frame,
                None => return false,
            },
        };
        if !reports && !waited {
            return false;
        }
        let from_video = self.video.as_ref().is_some_and(|v| !v.queue.is_empty());
        let origin_track = if from_video { &self.video } else { &self.audio };
        let origin = Self::wall_of(origin_track, &self.anchor, origin_frame);
        self.origin = Some(origin);
        let first = self
            .video
            .as_ref()
            .and_then(|v| Some((v.codec, v.queue.front()?)));
        let size = first.and_then(|(_, frame)| frame.size);
        self.summary.video_size = size;
        let audio = self.audio.is_some();
        let codec = self.video.as_ref().map(|v| v.codec);
        let (mut muxer, has_video) = match self.container {
            Container::Mp4 if self.live.is_some() => {
                let track = h264_track(first.map(|(_, frame)| frame), size);
                let has_video = track.is_some();
                let config = self.live.expect("live");
                let (packager, init) = LivePackager::new(config, track, audio, origin);
                let live = LiveMuxer {
                    packager,
                    init,
                    parts: Vec::new(),
                    keyframe_wanted: false,
                };
                (Muxer::Live(Box::new(live)), has_video)
            }
            Container::Mp4 => {
                let track = h264_track(first.map(|(_, frame)| frame), size);
                let has_video = track.is_some();
                (
                    Muxer::Mp4(Box::new(Fmp4Writer::new(track, audio.then_some(2)))),
                    has_video,
                )
            }
            Container::Webm => {
                let video = size.map(|(width, height)| VideoTrack {
                    codec: if codec == Some(Codec::Vp9) {
                        VideoCodec::Vp9
                    } else {
                        VideoCodec::Vp8
                    },
                    width,
                    height,
                });
                let webm = WebmWriter::new(video, audio.then_some(AudioTrack { channels: 2 }));
                (Muxer::Webm(webm), video.is_some())
            }
        };
        self.out.extend(muxer.header(origin));
        self.muxer = Some(muxer);
        self.summary.started = Some(origin);
        // No keyframe came in time: the file is audio only.
        if !has_video {
            self.video = None;
        }
        true
    }

    /// Writes queued frames in time order; `all`: the end, nothing more will come.
    fn write(&mut self, now: Instant, all: bool) {
        let (Some(muxer), Some(origin)) = (self.muxer.as_mut(), self.origin) else {
            return;
        };
        loop {
            let head = |t: &Option<Track>| t.as_ref().and_then(|t| t.queue.front()).cloned();
            let (video, audio) = (head(&self.video), head(&self.audio));
            let video_time = video
                .as_ref()
                .map(|f| Self::wall_of(&self.video, &self.anchor, f));
            let audio_time = audio
                .as_ref()
                .map(|f| Self::wall_of(&self.audio, &self.anchor, f));
            // One track alone: the other may still come with earlier frames, unless it does not
            // exist, this is the end, or the waiting frame has waited long enough.
            let alone = |other: &Option<Track>, frame: &Option<Frame>| {
                other.is_none()
                    || all
                    || frame
                        .as_ref()
                        .is_some_and(|f| now >= f.arrived + self.config.interleave_wait)
            };
            let kind = match (video_time, audio_time) {
                (Some(v), Some(a)) if v <= a => TrackKind::Video,
                (Some(_), Some(_)) => TrackKind::Audio,
                (Some(_), None) if alone(&self.audio, &video) => TrackKind::Video,
                (None, Some(_)) if alone(&self.video, &audio) => TrackKind::Audio,
                _ => return,
            };
            let (track, time) = match kind {
                TrackKind::Video => (self.video.as_mut().expect("video"), video_time),
                TrackKind::Audio => (self.audio.as_mut().expect("audio"), audio_time),
            };
            let frame = track.queue.pop_front().expect("a head");
            if track.report.is_none() {
                self.summary.timed_by_arrival += 1;
            } else if let Some(time) = time {
                let arrived =
                    self.anchor.1 + frame.arrived.saturating_duration_since(self.anchor.0);
                let transit = match arrived.duration_since(time) {
                    Ok(late) => late.as_millis() as i64,
                    Err(early) => -(early.duration().as_millis() as i64),
                };
                let least = match kind {
                    TrackKind::Video => &mut self.summary.video_transit_ms,
                    TrackKind::Audio => &mut self.summary.audio_transit_ms,
                };
                *least = Some(least.map_or(transit, |l| l.min(transit)));
            }
            let Ok(since) = time.expect("timed").duration_since(origin) else {
                continue; // before time 0: audio before the first keyframe
            };
            let ms = (since.as_millis() as u64).max(track.last_ms);
            track.last_ms = ms;
            self.summary.duration_ms = self.summary.duration_ms.max(ms);
            match kind {
                TrackKind::Video => {
                    muxer.video(&mut self.out, ms, frame.keyframe, &frame.data);
                    self.summary.video_frames += 1;
                }
                TrackKind::Audio => {
                    muxer.audio(&mut self.out, ms, &frame.data);
                    self.summary.audio_frames += 1;
                }
            }
        }
    }

    /// A frame's wall-clock time: from its track's sender report, else by arrival.
    fn wall_of(track: &Option<Track>, anchor: &(Instant, SystemTime), frame: &Frame) -> SystemTime {
        track
            .as_ref()
            .and_then(|t| t.wall(frame.rtp_time))
            .unwrap_or_else(|| anchor.1 + frame.arrived.saturating_duration_since(anchor.0))
    }
}

/// The H.264 track of a stream whose first frame is `keyframe` (of `size`): its parameter sets
/// must be in it.
fn h264_track(keyframe: Option<&Frame>, size: Option<(u16, u16)>) -> Option<H264Track> {
    let (width, height) = size?;
    let (sps, pps) = h264_parameter_sets(&keyframe?.data)?;
    Some(H264Track {
        sps: sps.to_vec(),
        pps: pps.to_vec(),
        width,
        height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VP8_KEY: [u8; 10] = [0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];

    /// (track, ms, keyframe) of every SimpleBlock, in file order.
    fn blocks(file: &[u8]) -> Vec<(u8, u64, bool)> {
        let vint = |at: &mut usize, keep_marker: bool| -> u64 {
            let first = file[*at];
            let len = first.leading_zeros() as usize + 1;
            let mut value = u64::from(if keep_marker {
                first
            } else {
                first & (0xFFu16 >> len) as u8
            });
            for i in 1..len {
                value = value << 8 | u64::from(file[*at + i]);
            }
            *at += len;
            value
        };
        let (mut at, mut cluster, mut out) = (0, 0, Vec::new());
        while at < file.len() {
            let id = vint(&mut at, true);
            let size = vint(&mut at, false);
            match id {
                0x1853_8067 | 0x1F43_B675 => {} // Segment, Cluster: their children follow
                0xE7 => {
                    cluster = file[at..at + size as usize]
                        .iter()
                        .fold(0u64, |v, b| v << 8 | u64::from(*b));
                    at += size as usize;
                }
                0xA3 => {
                    let track = file[at] & 0x7F;
                    let relative = i16::from_be_bytes([file[at + 1], file[at + 2]]);
                    out.push((
                        track,
                        (cluster as i64 + i64::from(relative)) as u64,
                        file[at + 3] & 0x80 != 0,
                    ));
                    at += size as usize;
                }
                _ => at += size as usize,
            }
        }
        out
    }

    /// A browser's capture: `ms` after capture start, each track's RTP time from its own
    /// random base; its wall clock is `wall0` at capture start.
    struct Sender {
        t0: Instant,
        wall0: SystemTime,
        video_seq: u64,
        audio_seq: u64,
    }

    const VIDEO_BASE: u32 = 4_000_000_000; // wraps after 3.3 h… and soon after 0 here
    const AUDIO_BASE: u32 = 1_234;

    impl Sender {
        fn video(&mut self, ms: u64, delay_ms: u64) -> (Packet, SenderReport) {
            self.video_seq += 1;
            let key = ms % 2000 == 0;
            let mut payload = vec![0x10];
            payload.extend_from_slice(if key { &VP8_KEY } else { &[0x01, 0xAA, 0xBB] });
            let packet = Packet {
                seq: self.video_seq,
                rtp_time: VIDEO_BASE.wrapping_add((ms * 90) as u32),
                marker: true,
                payload: payload.into(),
                arrived: self.t0 + Duration::from_millis(ms + delay_ms),
            };
            (
                packet,
                SenderReport {
                    ntp: self.wall0,
                    rtp_time: VIDEO_BASE,
                },
            )
        }

        fn audio(&mut self, ms: u64, delay_ms: u64) -> (Packet, SenderReport) {
            self.audio_seq += 1;
            let packet = Packet {
                seq: self.audio_seq,
                rtp_time: AUDIO_BASE.wrapping_add((ms * 48) as u32),
                marker: false,
                payload: vec![0xFC, 0x01].into(),
                arrived: self.t0 + Duration::from_millis(ms + delay_ms),
            };
            (
                packet,
                SenderReport {
                    ntp: self.wall0,
                    rtp_time: AUDIO_BASE,
                },
            )
        }
    }

    /// Runs `seconds` of capture through a recording; audio arrives `audio_late_ms` after
    /// video; reports from `reports_from_ms` on (never if `None`).
    fn record(
        seconds: u64,
        audio_late_ms: u64,
        reports_from_ms: Option<u64>,
    ) -> (Vec<u8>, RecordingSummary) {
        let t0 = Instant::now();
        // The server's wall clock is 7 s off the sender's: only the reports can align them.
        let server_wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut sender = Sender {
            t0,
            wall0: server_wall - Duration::from_secs(7),
            video_seq: 0,
            audio_seq: 0,
        };
        let mut recording = ParticipantRecording::new(
            RecordingConfig::default(),
            Some(Codec::Vp8),
            Some(Codec::Opus),
            (t0, server_wall),
        );
        let mut file = Vec::new();
        for ms in (0..seconds * 1000).step_by(20) {
            let reported = |at: u64| reports_from_ms.is_some_and(|from| at >= from);
            if ms % 100 == 0 {
                let (packet, report) = sender.video(ms, 10);
                recording.push(TrackKind::Video, packet, reported(ms).then_some(report));
            }
            let (packet, report) = sender.audio(ms, 10 + audio_late_ms);
            recording.push(TrackKind::Audio, packet, reported(ms).then_some(report));
            recording.poll(t0 + Duration::from_millis(ms + 10 + audio_late_ms));
            file.extend(recording.take_bytes());
        }
        recording.finish();
        file.extend(recording.take_bytes());
        (file, recording.summary())
    }

    #[test]
    fn audio_and_video_share_the_senders_timeline_however_late_either_arrives() {
        let (file, summary) = record(6, 240, Some(0));
        let blocks = blocks(&file);
        let video: Vec<u64> = blocks.iter().filter(|b| b.0 == 1).map(|b| b.1).collect();
        let audio: Vec<u64> = blocks.iter().filter(|b| b.0 == 2).map(|b| b.1).collect();
        assert_eq!(video.len(), 60);
        assert!(
            video
                .iter()
                .enumerate()
                .all(|(i, ms)| *ms == i as u64 * 100),
            "{video:?}"
        );
        // Captured together → the same time in the file, although audio came 240 ms later.
        assert_eq!(audio.len(), 300);
        assert!(
            audio.iter().enumerate().all(|(i, ms)| *ms == i as u64 * 20),
            "{audio:?}"
        );
        assert!(
            blocks[0].2 && blocks[0].0 == 1,
            "the file starts with a video keyframe"
        );
        let times: Vec<u64> = blocks.iter().map(|b| b.1).collect();
        assert!(
            times.windows(2).all(|w| w[1] >= w[0]),
            "written in time order"
        );
        assert_eq!(summary.duration_ms, 5_980);
        assert_eq!(summary.timed_by_arrival, 0);
        assert_eq!(summary.video_size, Some((320, 240)));
        assert_eq!(
            summary.started,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 - 7))
        );
        let seekable = crate::webm::make_seekable(&file).unwrap();
        assert_eq!(seekable.duration_ms, 6_000);
    }

    #[test]
    fn reports_that_come_late_are_waited_for() {
        // The first reports 1.5 s in: nothing is written before; then the same timeline.
        let (file, summary) = record(4, 240, Some(1_500));
        let audio: Vec<u64> = blocks(&file)
            .iter()
            .filter(|b| b.0 == 2)
            .map(|b| b.1)
            .collect();
        assert_eq!(audio.first(), Some(&0));
        assert!(audio.iter().enumerate().all(|(i, ms)| *ms == i as u64 * 20));
        assert_eq!(summary.timed_by_arrival, 0);
    }

    /// Sends `seconds` of H.264 at 10 fps and Opus every 20 ms through `recording` (reports
    /// from the start, the sender's clock at `wall`): a keyframe with its parameter sets
    /// first, then whenever `keyframe(i, asked)` says, `asked` being whether the recording
    /// asked for one since the last frame.
    fn send_h264(
        recording: &mut ParticipantRecording,
        t0: Instant,
        wall: SystemTime,
        seconds: u64,
        keyframe: impl Fn(u64, bool) -> bool,
    ) -> Vec<u64> {
        use crate::codec::tests::{hex, PPS, SPS_320X240};
        let report = |rtp_time| {
            Some(SenderReport {
                ntp: wall,
                rtp_time,
            })
        };
        let (mut seq, mut audio_seq) = (0, 0);
        let mut asked = false;
        let mut keyframes = Vec::new();
        for i in 0..seconds * 10 {
            let ms = i * 100;
            let at = t0 + Duration::from_millis(ms);
            let mut payloads = Vec::new();
            if keyframe(i, asked) {
                keyframes.push(ms);
                // STAP-A with the parameter sets, then the IDR slice.
                let mut stap = vec![0x78];
                for nal in [hex(SPS_320X240), hex(PPS)] {
                    stap.extend((nal.len() as u16).to_be_bytes());
                    stap.extend(nal);
                }
                payloads.push(stap);
                payloads.push(vec![0x65, 0x88, 0x80, 0x40]);
            } else {
                payloads.push(vec![0x41, 0x9a, 0x02, 0x10]);
            }
            let last = payloads.len() - 1;
            for (n, payload) in payloads.into_iter().enumerate() {
                seq += 1;
                let packet = Packet {
                    seq,
                    rtp_time: (ms * 90) as u32,
                    marker: n == last,
                    payload: payload.into(),
                    arrived: at,
                };
                recording.push(TrackKind::Video, packet, report(0));
            }
            for k in 0..5 {
                audio_seq += 1;
                let audio_ms = ms + k * 20;
                let packet = Packet {
                    seq: audio_seq,
                    rtp_time: (audio_ms * 48) as u32,
                    marker: false,
                    payload: vec![0xFC, 1].into(),
                    arrived: at,
                };
                recording.push(TrackKind::Audio, packet, report(0));
            }
            recording.poll(at);
            asked = recording.take_keyframe_wanted();
        }
        keyframes
    }

    #[test]
    fn h264_goes_into_a_fragmented_mp4_from_its_first_keyframe() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut recording = ParticipantRecording::new(
            RecordingConfig::default(),
            Some(Codec::H264),
            Some(Codec::Opus),
            (t0, wall),
        );
        assert_eq!(recording.container(), Container::Mp4);
        send_h264(&mut recording, t0, wall, 3, |i, _| i % 10 == 0);
        recording.finish();
        let file = recording.take_bytes();
        assert_eq!(&file[4..8], b"ftyp");
        let fragments = file.windows(4).filter(|w| *w == b"moof").count();
        assert_eq!(fragments, 3, "a fragment per keyframe (0, 1, 2 s)");
        let summary = recording.summary();
        assert_eq!(
            (summary.video_frames, summary.video_size),
            (30, Some((320, 240)))
        );
        assert_eq!(summary.audio_frames, 150);
        let (_, duration) = recording
            .duration_patch()
            .expect("an MP4 has a duration to patch");
        assert_eq!(u64::from_be_bytes(duration), 3000);
        assert!(recording.take_parts().is_empty() && recording.live_playlist().is_none());
    }

    #[test]
    fn a_live_stream_is_an_init_segment_then_parts_in_segments_opened_by_keyframes_it_asks_for() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let config = RecordingConfig {
            hold: Duration::from_millis(150),
            sync_wait: Duration::from_secs(3),
            interleave_wait: Duration::from_millis(150),
        };
        let mut live = ParticipantRecording::live(
            config,
            PackagerConfig::default(),
            Some(Codec::H264),
            Some(Codec::Opus),
            (t0, wall),
        );
        // The publisher answers a keyframe request at its next frame.
        let keyframes = send_h264(&mut live, t0, wall, 7, |i, asked| i == 0 || asked);
        let init = live.take_bytes();
        assert_eq!(&init[4..8], b"ftyp");
        assert!(
            !init.windows(4).any(|w| w == b"moof"),
            "the init segment holds no media"
        );
        assert_eq!(live.live_codecs().as_deref(), Some("avc1.42c00d,opus"));
        // Asked 1.7 s into each segment, answered at the next frame (100 ms later).
        assert_eq!(keyframes, [0, 1800, 3600, 5400]);
        let parts = live.take_parts();
        assert!(parts.iter().all(|p| &p.bytes[4..8] == b"moof"));
        assert_eq!(parts[0].position, (0, 0));
        let playlist = live.live_playlist().expect("started");
        let segments: Vec<_> = playlist.segments().collect();
        assert_eq!(segments.len(), 4);
        assert_eq!(
            segments[0].program_date, wall,
            "time 0 is the first keyframe's capture"
        );
        assert_eq!(segments[1].program_date, wall + Duration::from_millis(1800));
        for segment in &segments[..3] {
            assert_eq!(segment.duration(), Duration::from_millis(1800));
            assert!(segment.parts[0].independent);
            // 200 ms parts: two frames at 10 fps.
            assert!(segment
                .parts
                .iter()
                .all(|p| p.duration == Duration::from_millis(200)));
        }
        live.finish();
        let last = live.take_parts();
        assert!(!last.is_empty(), "the end flushes what was held");
        assert!(live.live_playlist().expect("started").ended());
    }

    #[test]
    fn without_reports_frames_are_timed_by_arrival_after_the_wait() {
        let (file, summary) = record(5, 240, None);
        let blocks = blocks(&file);
        let audio: Vec<u64> = blocks.iter().filter(|b| b.0 == 2).map(|b| b.1).collect();
        // By arrival, audio captured with the keyframe is 240 ms late: what the reports fix.
        assert_eq!(audio[0], 240);
        assert!(audio
            .iter()
            .enumerate()
            .all(|(i, ms)| *ms == 240 + i as u64 * 20));
        assert!(summary.timed_by_arrival > 0);
        assert_eq!(summary.video_frames, 50);
    }
}
