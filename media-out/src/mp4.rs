//! A fragmented MP4 writer (ISO/IEC 14496-12, CMAF-style) for H.264 and Opus, which WebM
//! cannot hold together: an init segment (`ftyp` + `moov`, no samples), then a `moof` +
//! `mdat` fragment per video keyframe (about a second of audio without video). Every byte
//! written is final, so a file cut short plays up to its last whole fragment; [`Fmp4Writer::
//! duration_patch`] gives the bytes that put the total duration into the init segment's
//! `mehd` when the recording ends.
//!
//! Times come in as milliseconds after time 0; video is kept at 90 kHz and audio at 48 kHz
//! (their RTP clocks). A sample's duration is known when the next one comes, so each track
//! holds its latest sample back.
//!
//! Live HLS ([`Fmp4Writer::for_parts`]) cuts fragments itself: nothing is written until
//! [`Fmp4Writer::flush`], which makes the samples ready so far one fragment (a CMAF part).

const VIDEO_TRACK: u32 = 1;
const AUDIO_TRACK: u32 = 2;
const VIDEO_TIMESCALE: u64 = 90_000;
const AUDIO_TIMESCALE: u64 = 48_000;
/// Movie timescale (`mvhd`, `mehd`): milliseconds.
const MOVIE_TIMESCALE: u32 = 1000;
/// Without video, a fragment per second of audio.
const AUDIO_FRAGMENT_MS: u64 = 1000;
/// `trun` sample flags: a sync sample, and one that depends on others.
const SYNC_SAMPLE: u32 = 0x0200_0000;
const NON_SYNC_SAMPLE: u32 = 0x0101_0000;

/// H.264 video: its parameter sets (from the first keyframe) and picture size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H264Track {
    pub sps: Vec<u8>,
    pub pps: Vec<u8>,
    pub width: u16,
    pub height: u16,
}

#[derive(Debug)]
struct Sample {
    duration: u32,
    keyframe: bool,
    data: Vec<u8>,
}

/// A sample whose duration waits for the next one.
#[derive(Debug)]
struct Held {
    time: u64,
    keyframe: bool,
    data: Vec<u8>,
}

#[derive(Debug, Default)]
struct TrackState {
    /// Samples ready for the next fragment, and the time of the first.
    samples: Vec<Sample>,
    start: Option<u64>,
    held: Option<Held>,
    last_duration: u32,
    /// The end of the last sample: the track's length.
    end: u64,
}

impl TrackState {
    /// `time` (in the track's timescale) of a new sample: the held one gets its duration.
    fn push(&mut self, time: u64, keyframe: bool, data: Vec<u8>) {
        if let Some(held) = self.held.take() {
            // Never 0: two frames in one millisecond still follow each other.
            let duration = time.saturating_sub(held.time).max(1) as u32;
            self.release(held, duration);
        }
        self.held = Some(Held {
            time: time.max(self.end),
            keyframe,
            data,
        });
    }

    fn release(&mut self, held: Held, duration: u32) {
        self.start.get_or_insert(held.time);
        self.end = held.time + u64::from(duration);
        self.last_duration = duration;
        self.samples.push(Sample {
            duration,
            keyframe: held.keyframe,
            data: held.data,
        });
    }

    /// The samples ready for a fragment, and the time of the first; the held one stays.
    fn take_ready(&mut self) -> Option<(u64, Vec<Sample>)> {
        let start = self.start.take()?;
        Some((start, std::mem::take(&mut self.samples)))
    }

    /// The end: the held sample gets the duration of the one before it.
    fn flush(&mut self, default_duration: u32) {
        if let Some(held) = self.held.take() {
            let duration = if self.last_duration > 0 {
                self.last_duration
            } else {
                default_duration
            };
            self.release(held, duration);
        }
    }
}

#[derive(Debug)]
pub struct Fmp4Writer {
    video: Option<H264Track>,
    /// Opus channels.
    audio: Option<u8>,
    video_state: TrackState,
    audio_state: TrackState,
    sequence: u32,
    /// Where the `mehd` duration is, from the start of the init segment.
    mehd_offset: usize,
    /// Fragments only on `flush` (live parts), not at each keyframe.
    on_flush: bool,
}

/// A fragment [`Fmp4Writer::flush`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// Its start and length on the stream's timeline (video's if there is video, else
    /// audio's), in the track's ticks turned to microseconds.
    pub start_us: u64,
    pub duration_us: u64,
    /// It opens with a video keyframe (or there is no video): playable on its own.
    pub independent: bool,
}

impl Fmp4Writer {
    pub fn new(video: Option<H264Track>, audio_channels: Option<u8>) -> Self {
        Fmp4Writer {
            video,
            audio: audio_channels,
            video_state: TrackState::default(),
            audio_state: TrackState::default(),
            sequence: 0,
            mehd_offset: 0,
            on_flush: false,
        }
    }

    /// A writer for live parts: fragments are cut by [`Fmp4Writer::flush`] only.
    pub fn for_parts(video: Option<H264Track>, audio_channels: Option<u8>) -> Self {
        Fmp4Writer {
            on_flush: true,
            ..Fmp4Writer::new(video, audio_channels)
        }
    }

    /// How much of the stream's timeline is ready for the next fragment, in microseconds
    /// (the samples whose duration is known).
    pub fn ready_us(&self) -> u64 {
        let (state, scale) = self.reference();
        let ticks: u64 = state.samples.iter().map(|s| u64::from(s.duration)).sum();
        ticks * 1_000_000 / scale
    }

    /// Writes every ready sample (all but each track's latest) as one fragment.
    pub fn flush(&mut self, out: &mut Vec<u8>) -> Option<Fragment> {
        let (state, scale) = self.reference();
        let start = state.start?;
        let ticks: u64 = state.samples.iter().map(|s| u64::from(s.duration)).sum();
        let independent = self.video.is_none() || state.samples.first().is_some_and(|s| s.keyframe);
        let fragment = Fragment {
            start_us: start * 1_000_000 / scale,
            duration_us: ticks * 1_000_000 / scale,
            independent,
        };
        self.fragment(out);
        Some(fragment)
    }

    /// The track that times fragments: video if there is video.
    fn reference(&self) -> (&TrackState, u64) {
        if self.video.is_some() {
            (&self.video_state, VIDEO_TIMESCALE)
        } else {
            (&self.audio_state, AUDIO_TIMESCALE)
        }
    }

    /// The codecs, as HLS and MSE name them (`avc1.42c00d,opus`).
    pub fn codecs(&self) -> String {
        let mut codecs = Vec::new();
        if let Some(video) = &self.video {
            let profile = video.sps.get(1..4).unwrap_or(&[0x42, 0xc0, 0x1e]);
            codecs.push(format!(
                "avc1.{:02x}{:02x}{:02x}",
                profile[0], profile[1], profile[2]
            ));
        }
        if self.audio.is_some() {
            codecs.push("opus".into());
        }
        codecs.join(",")
    }

    /// The init segment: `ftyp` and a `moov` that describes the tracks and holds no sample.
    pub fn init(&mut self) -> Vec<u8> {
        let mut out = boxed(
            b"ftyp",
            &[
                b"iso5".as_slice(),
                &512u32.to_be_bytes(),
                b"iso5",
                b"iso6",
                b"mp41",
            ]
            .concat(),
        );
        let mut moov = full_box(b"mvhd", 0, 0, &mvhd_body());
        if let Some(video) = &self.video {
            moov.extend(video_trak(video));
        }
        if let Some(channels) = self.audio {
            moov.extend(audio_trak(channels));
        }
        // mvex: mehd (filled in when the recording ends), a trex per track.
        let mehd = full_box(b"mehd", 1, 0, &0u64.to_be_bytes());
        let mut mvex_body = mehd.clone();
        for track in self.tracks() {
            let mut trex = track.to_be_bytes().to_vec();
            trex.extend([1u32, 0, 0, 0].iter().flat_map(|v| v.to_be_bytes()));
            mvex_body.extend(full_box(b"trex", 0, 0, &trex));
        }
        let mvex = boxed(b"mvex", &mvex_body);
        // The duration is the last 8 bytes of mehd, which opens mvex's body.
        let mvex_at = out.len() + 8 + moov.len();
        self.mehd_offset = mvex_at + 8 + mehd.len() - 8;
        moov.extend(mvex);
        out.extend(boxed(b"moov", &moov));
        out
    }

    /// An H.264 access unit (Annex B) at `ms`. A keyframe opens a new fragment.
    pub fn video_frame(&mut self, out: &mut Vec<u8>, ms: u64, keyframe: bool, annex_b: &[u8]) {
        if self.video.is_none() {
            return;
        }
        // The held frame gets its duration from this one, which is held in turn…
        self.video_state
            .push(ms * VIDEO_TIMESCALE / 1000, keyframe, to_avcc(annex_b));
        // …so a keyframe sends out everything before it.
        if keyframe && !self.on_flush && !self.video_state.samples.is_empty() {
            self.fragment(out);
        }
    }

    /// An Opus frame at `ms`.
    pub fn audio_frame(&mut self, out: &mut Vec<u8>, ms: u64, frame: &[u8]) {
        if self.audio.is_none() {
            return;
        }
        self.audio_state
            .push(ms * AUDIO_TIMESCALE / 1000, true, frame.to_vec());
        let long = self.audio_state.start.is_some_and(|start| {
            self.audio_state.end.saturating_sub(start) * 1000 / AUDIO_TIMESCALE >= AUDIO_FRAGMENT_MS
        });
        if self.video.is_none() && long && !self.on_flush {
            self.fragment(out);
        }
    }

    /// The end: everything held goes into a last fragment.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.release_held();
        self.fragment(out);
    }

    /// The end of the stream: each track's latest sample is ready too (with the duration of
    /// the one before it).
    pub fn release_held(&mut self) {
        self.video_state.flush((VIDEO_TIMESCALE / 30) as u32);
        self.audio_state.flush((AUDIO_TIMESCALE / 50) as u32);
    }

    /// Where in the file (the init segment at its start) to write what, to give the finished
    /// recording its duration (`mehd`), in ms.
    pub fn duration_patch(&self) -> (u64, [u8; 8]) {
        let ms = [
            (self.video_state.end, VIDEO_TIMESCALE),
            (self.audio_state.end, AUDIO_TIMESCALE),
        ]
        .iter()
        .map(|(end, scale)| end * u64::from(MOVIE_TIMESCALE) / scale)
        .max()
        .unwrap_or(0);
        (self.mehd_offset as u64, ms.to_be_bytes())
    }

    fn tracks(&self) -> Vec<u32> {
        let mut tracks = Vec::new();
        if self.video.is_some() {
            tracks.push(VIDEO_TRACK);
        }
        if self.audio.is_some() {
            tracks.push(AUDIO_TRACK);
        }
        tracks
    }

    /// Writes the ready samples of both tracks as one `moof` + `mdat`.
    fn fragment(&mut self, out: &mut Vec<u8>) {
        let ready: Vec<(u32, u64, Vec<Sample>)> = [
            (VIDEO_TRACK, &mut self.video_state),
            (AUDIO_TRACK, &mut self.audio_state),
        ]
        .into_iter()
        .filter_map(|(track, state)| {
            let (start, samples) = state.take_ready()?;
            Some((track, start, samples))
        })
        .collect();
        if ready.is_empty() {
            return;
        }
        self.sequence += 1;
        let moof = |offsets: &[u32]| {
            let mut body = full_box(b"mfhd", 0, 0, &self.sequence.to_be_bytes());
            for ((track, start, samples), offset) in ready.iter().zip(offsets) {
                body.extend(traf(*track, *start, samples, *offset));
            }
            boxed(b"moof", &body)
        };
        let size = moof(&vec![0; ready.len()]).len() as u32;
        let mut offsets = Vec::new();
        let mut at = size + 8;
        for (_, _, samples) in &ready {
            offsets.push(at);
            at += samples.iter().map(|s| s.data.len() as u32).sum::<u32>();
        }
        out.extend(moof(&offsets));
        let data: Vec<u8> = ready
            .iter()
            .flat_map(|(_, _, samples)| samples.iter().flat_map(|s| s.data.iter().copied()))
            .collect();
        out.extend(boxed(b"mdat", &data));
    }
}

/// Annex B (start codes) to the length-prefixed NAL units MP4 holds; parameter sets and
/// access unit delimiters left out (they are in `avcC`).
fn to_avcc(annex_b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(annex_b.len());
    for nal in crate::codec::nal_units(annex_b) {
        if nal.is_empty() || matches!(nal[0] & 0x1f, 7..=9) {
            continue;
        }
        out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        out.extend_from_slice(nal);
    }
    out
}

fn traf(track: u32, start: u64, samples: &[Sample], data_offset: u32) -> Vec<u8> {
    // default-base-is-moof: data offsets count from the moof.
    let mut body = full_box(b"tfhd", 0, 0x02_0000, &track.to_be_bytes());
    body.extend(full_box(b"tfdt", 1, 0, &start.to_be_bytes()));
    let mut trun = (samples.len() as u32).to_be_bytes().to_vec();
    trun.extend(data_offset.to_be_bytes());
    for sample in samples {
        trun.extend(sample.duration.to_be_bytes());
        trun.extend((sample.data.len() as u32).to_be_bytes());
        let flags = if sample.keyframe {
            SYNC_SAMPLE
        } else {
            NON_SYNC_SAMPLE
        };
        trun.extend(flags.to_be_bytes());
    }
    // data-offset, sample duration, size and flags present.
    body.extend(full_box(b"trun", 0, 0x0701, &trun));
    boxed(b"traf", &body)
}

fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend(((body.len() + 8) as u32).to_be_bytes());
    out.extend(kind);
    out.extend(body);
    out
}

fn full_box(kind: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
    let mut full = (u32::from(version) << 24 | flags).to_be_bytes().to_vec();
    full.extend(body);
    boxed(kind, &full)
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

fn mvhd_body() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend([0u32, 0].iter().flat_map(|v| v.to_be_bytes())); // creation, modification
    b.extend(MOVIE_TIMESCALE.to_be_bytes());
    b.extend(0u32.to_be_bytes()); // duration: in mehd
    b.extend(0x0001_0000u32.to_be_bytes()); // rate 1.0
    b.extend(0x0100u16.to_be_bytes()); // volume 1.0
    b.extend([0u8; 10]);
    b.extend(MATRIX.iter().flat_map(|v| v.to_be_bytes()));
    b.extend([0u8; 24]);
    b.extend((AUDIO_TRACK + 1).to_be_bytes()); // next track id
    b
}

fn tkhd(track: u32, audio: bool, width: u16, height: u16) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend([0u32, 0, track, 0, 0].iter().flat_map(|v| v.to_be_bytes()));
    b.extend([0u8; 8]);
    b.extend([0u16, 0].iter().flat_map(|v| v.to_be_bytes())); // layer, alternate group
    b.extend(if audio { 0x0100u16 } else { 0 }.to_be_bytes());
    b.extend([0u8; 2]);
    b.extend(MATRIX.iter().flat_map(|v| v.to_be_bytes()));
    b.extend((u32::from(width) << 16).to_be_bytes());
    b.extend((u32::from(height) << 16).to_be_bytes());
    full_box(b"tkhd", 0, 3, &b) // enabled, in movie
}

fn mdia(timescale: u64, handler: &[u8; 4], name: &str, minf: Vec<u8>) -> Vec<u8> {
    let mut mdhd = Vec::new();
    mdhd.extend(
        [0u32, 0, timescale as u32, 0]
            .iter()
            .flat_map(|v| v.to_be_bytes()),
    );
    mdhd.extend(0x55c4u16.to_be_bytes()); // language "und"
    mdhd.extend([0u8; 2]);
    let mut hdlr = 0u32.to_be_bytes().to_vec();
    hdlr.extend(handler);
    hdlr.extend([0u8; 12]);
    hdlr.extend(name.as_bytes());
    hdlr.push(0);
    let mut body = full_box(b"mdhd", 0, 0, &mdhd);
    body.extend(full_box(b"hdlr", 0, 0, &hdlr));
    body.extend(minf);
    boxed(b"mdia", &body)
}

/// `minf` with its media header, a self-contained `dinf`, and a `stbl` of one sample entry
/// and no samples (they are in the fragments).
fn minf(media_header: Vec<u8>, sample_entry: Vec<u8>) -> Vec<u8> {
    let url = full_box(b"url ", 0, 1, &[]);
    let dref = full_box(b"dref", 0, 0, &[1u32.to_be_bytes().to_vec(), url].concat());
    let mut stbl = full_box(
        b"stsd",
        0,
        0,
        &[1u32.to_be_bytes().to_vec(), sample_entry].concat(),
    );
    stbl.extend(full_box(b"stts", 0, 0, &0u32.to_be_bytes()));
    stbl.extend(full_box(b"stsc", 0, 0, &0u32.to_be_bytes()));
    stbl.extend(full_box(
        b"stsz",
        0,
        0,
        &[0u32, 0]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect::<Vec<_>>(),
    ));
    stbl.extend(full_box(b"stco", 0, 0, &0u32.to_be_bytes()));
    let mut body = media_header;
    body.extend(boxed(b"dinf", &dref));
    body.extend(boxed(b"stbl", &stbl));
    boxed(b"minf", &body)
}

/// What every sample entry starts with: 6 reserved bytes and the data reference index.
fn sample_entry_start() -> Vec<u8> {
    let mut entry = vec![0u8; 6];
    entry.extend(1u16.to_be_bytes());
    entry
}

fn video_trak(video: &H264Track) -> Vec<u8> {
    let mut avc1 = sample_entry_start();
    avc1.extend([0u8; 16]);
    avc1.extend(video.width.to_be_bytes());
    avc1.extend(video.height.to_be_bytes());
    avc1.extend(
        [0x0048_0000u32, 0x0048_0000, 0]
            .iter()
            .flat_map(|v| v.to_be_bytes()),
    );
    avc1.extend(1u16.to_be_bytes()); // frame count
    avc1.extend([0u8; 32]); // compressor name
    avc1.extend(0x0018u16.to_be_bytes());
    avc1.extend(0xffffu16.to_be_bytes());
    let mut avcc = vec![
        1,
        video.sps.get(1).copied().unwrap_or(0x42),
        video.sps.get(2).copied().unwrap_or(0),
        video.sps.get(3).copied().unwrap_or(0x1f),
    ];
    avcc.push(0xff); // 4-byte NAL lengths
    avcc.push(0xe1); // one SPS
    avcc.extend((video.sps.len() as u16).to_be_bytes());
    avcc.extend(&video.sps);
    avcc.push(1); // one PPS
    avcc.extend((video.pps.len() as u16).to_be_bytes());
    avcc.extend(&video.pps);
    avc1.extend(boxed(b"avcC", &avcc));
    let vmhd = full_box(b"vmhd", 0, 1, &[0u8; 8]);
    let mut body = tkhd(VIDEO_TRACK, false, video.width, video.height);
    body.extend(mdia(
        VIDEO_TIMESCALE,
        b"vide",
        "video",
        minf(vmhd, boxed(b"avc1", &avc1)),
    ));
    boxed(b"trak", &body)
}

fn audio_trak(channels: u8) -> Vec<u8> {
    let mut entry = sample_entry_start();
    entry.extend([0u8; 8]);
    entry.extend(u16::from(channels).to_be_bytes());
    entry.extend(16u16.to_be_bytes()); // sample size
    entry.extend([0u8; 4]);
    entry.extend((48_000u32 << 16).to_be_bytes());
    // dOps (Opus in ISO BMFF, 4.3.2): version, channels, pre-skip, input rate, gain, mapping.
    let mut dops = vec![0, channels];
    dops.extend(0u16.to_be_bytes());
    dops.extend(48_000u32.to_be_bytes());
    dops.extend(0i16.to_be_bytes());
    dops.push(0);
    entry.extend(boxed(b"dOps", &dops));
    let smhd = full_box(b"smhd", 0, 0, &[0u8; 4]);
    let mut body = tkhd(AUDIO_TRACK, true, 0, 0);
    body.extend(mdia(
        AUDIO_TIMESCALE,
        b"soun",
        "audio",
        minf(smhd, boxed(b"Opus", &entry)),
    ));
    boxed(b"trak", &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::tests::{hex, PPS, SPS_320X240};

    /// (kind, size, body start) of the boxes at the top level of `bytes`.
    fn top_boxes(bytes: &[u8]) -> Vec<(String, usize, usize)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 8 <= bytes.len() {
            let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            out.push((
                String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned(),
                size,
                at + 8,
            ));
            assert!(size >= 8, "box at {at}");
            at += size;
        }
        assert_eq!(at, bytes.len(), "boxes end where the bytes do");
        out
    }

    fn writer() -> Fmp4Writer {
        let track = H264Track {
            sps: hex(SPS_320X240),
            pps: hex(PPS),
            width: 320,
            height: 240,
        };
        Fmp4Writer::new(Some(track), Some(2))
    }

    #[test]
    fn an_init_segment_then_a_fragment_per_keyframe() {
        let mut w = writer();
        let mut file = w.init();
        let kinds: Vec<String> = top_boxes(&file).into_iter().map(|b| b.0).collect();
        assert_eq!(kinds, ["ftyp", "moov"]);
        // 5 s: video at 10 fps with a keyframe every 2 s, audio every 20 ms.
        let idr = [0, 0, 0, 1, 0x65, 0xAA, 0xBB];
        let slice = [0, 0, 0, 1, 0x41, 0xCC];
        let mut audio_ms = 0;
        for i in 0..50u64 {
            let ms = i * 100;
            while audio_ms < ms {
                w.audio_frame(&mut file, audio_ms, &[0xFC, 1, 2]);
                audio_ms += 20;
            }
            let key = i % 20 == 0;
            w.video_frame(&mut file, ms, key, if key { &idr } else { &slice });
        }
        w.finish(&mut file);
        let boxes = top_boxes(&file);
        let kinds: Vec<&str> = boxes.iter().map(|b| b.0.as_str()).collect();
        assert_eq!(
            kinds,
            ["ftyp", "moov", "moof", "mdat", "moof", "mdat", "moof", "mdat"],
            "a fragment per keyframe (0, 2, 4 s)"
        );
        let (offset, bytes) = w.duration_patch();
        assert_eq!(
            u64::from_be_bytes(bytes),
            5000,
            "the last video frame ends at 5 s"
        );
        assert_eq!(
            &file[offset as usize - 12..offset as usize - 4],
            b"\x00\x00\x00\x14mehd"
        );
        // The first fragment's video samples: 20 frames of 100 ms (9000 ticks), the first a
        // sync sample, each NAL length-prefixed (4 + 3 bytes).
        let moof = &file[boxes[2].2..boxes[2].2 + boxes[2].1 - 8];
        let trun_at = moof.windows(4).position(|w| w == b"trun").unwrap() + 4;
        let count = u32::from_be_bytes(moof[trun_at + 4..trun_at + 8].try_into().unwrap());
        assert_eq!(count, 20);
        let first = &moof[trun_at + 12..trun_at + 24];
        assert_eq!(u32::from_be_bytes(first[0..4].try_into().unwrap()), 9000);
        assert_eq!(u32::from_be_bytes(first[4..8].try_into().unwrap()), 7);
        assert_eq!(
            u32::from_be_bytes(first[8..12].try_into().unwrap()),
            SYNC_SAMPLE
        );
        // The data offset points at the first sample in the mdat: its length prefix, then 0x65.
        let data_offset =
            u32::from_be_bytes(moof[trun_at + 8..trun_at + 12].try_into().unwrap()) as usize;
        let moof_start = boxes[2].2 - 8;
        assert_eq!(
            &file[moof_start + data_offset..moof_start + data_offset + 5],
            &[0, 0, 0, 3, 0x65]
        );
    }

    #[test]
    fn audio_alone_makes_a_fragment_a_second() {
        let mut w = Fmp4Writer::new(None, Some(1));
        let mut file = w.init();
        for i in 0..150u64 {
            w.audio_frame(&mut file, i * 20, &[0xFC]);
        }
        w.finish(&mut file);
        let moofs = top_boxes(&file).iter().filter(|b| b.0 == "moof").count();
        assert_eq!(moofs, 3);
        assert_eq!(u64::from_be_bytes(w.duration_patch().1), 3000);
    }
}
