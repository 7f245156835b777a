//! One live stream's packaging, sans-IO: a participant's timed H.264 and Opus frames in (as
//! `recording.rs` times them), CMAF parts out, each listed in the stream's
//! [`MediaPlaylist`].
//!
//! Parts are cut at the video frame nearest `part_target` (about 200 ms); a segment starts at
//! the first keyframe `segment_target` (about 2 s) after the last one began, and the
//! packager says when to ask the publisher for that keyframe. Without video, parts are cut
//! on audio frames alike and segments by length.

use std::time::{Duration, SystemTime};

use super::playlist::{MediaPlaylist, Part, PartPosition, PlaylistConfig};
use crate::mp4::{Fmp4Writer, H264Track};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PackagerConfig {
    /// How long parts are made (the playlist's `PART-TARGET` leaves room for a frame's
    /// jitter above it).
    pub part_target: Duration,
    /// How long segments are made: a keyframe is asked for this long after a segment began.
    pub segment_target: Duration,
    pub playlist: PlaylistConfig,
}

impl Default for PackagerConfig {
    fn default() -> Self {
        PackagerConfig {
            part_target: Duration::from_millis(200),
            segment_target: Duration::from_secs(2),
            playlist: PlaylistConfig {
                part_target: Duration::from_millis(250),
                ..PlaylistConfig::default()
            },
        }
    }
}

/// A keyframe is asked for this long before a segment is due, for the publisher's answer to
/// arrive in time (a PLI's round trip and an encoder's next frame).
const KEYFRAME_LEAD: Duration = Duration::from_millis(300);

/// A part just packaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPart {
    pub position: PartPosition,
    /// `moof` + `mdat`.
    pub bytes: Vec<u8>,
    /// Segments that left the playlist: their parts can go.
    pub gone: Vec<u64>,
}

#[derive(Debug)]
pub struct LivePackager {
    config: PackagerConfig,
    writer: Fmp4Writer,
    playlist: MediaPlaylist,
    /// Wall-clock time of the stream's time 0.
    origin: SystemTime,
    has_video: bool,
    /// Where the current segment began, µs.
    segment_start: Option<u64>,
    /// The next part opens a segment.
    opens_segment: bool,
    /// The last frame's time and the gap before it (µs), to cut parts at the frame nearest
    /// the target.
    last_frame: Option<u64>,
    interval: u64,
    /// A keyframe was asked for the segment to come.
    keyframe_asked: bool,
}

impl LivePackager {
    /// A stream of `video` (H.264; `None`: audio only) and Opus audio (if `audio`), whose
    /// time 0 was `origin` on the wall clock; with its init segment.
    pub fn new(
        config: PackagerConfig,
        video: Option<H264Track>,
        audio: bool,
        origin: SystemTime,
    ) -> (Self, Vec<u8>) {
        let has_video = video.is_some();
        let mut writer = Fmp4Writer::for_parts(video, audio.then_some(2));
        let init = writer.init();
        let packager = LivePackager {
            config,
            writer,
            playlist: MediaPlaylist::new(config.playlist),
            origin,
            has_video,
            segment_start: None,
            opens_segment: true,
            last_frame: None,
            interval: 0,
            keyframe_asked: false,
        };
        (packager, init)
    }

    pub fn playlist(&self) -> &MediaPlaylist {
        &self.playlist
    }

    /// The codecs for the multivariant playlist and the player (`avc1.42c01f,opus`).
    pub fn codecs(&self) -> String {
        self.writer.codecs()
    }

    /// An H.264 access unit (Annex B) at `ms` after time 0.
    pub fn video(&mut self, ms: u64, keyframe: bool, annex_b: &[u8]) -> Option<NewPart> {
        if !self.has_video {
            return None;
        }
        let us = ms * 1000;
        // The frame before this one gets its duration now, and is ready.
        self.writer
            .video_frame(&mut Vec::new(), ms, keyframe, annex_b);
        self.frame_at(us);
        match self.segment_start {
            None if keyframe => {
                // The stream's first keyframe opens its first segment.
                self.segment_start = Some(us);
                None
            }
            None => None,
            Some(start) if keyframe && self.opens_next(us - start) => {
                // The part so far ends the segment; this keyframe opens the next one.
                let part = self.flush();
                self.segment_start = Some(us);
                self.opens_segment = true;
                self.keyframe_asked = false;
                part
            }
            Some(_) => self.cut_if_due(),
        }
    }

    /// An Opus frame at `ms` after time 0.
    pub fn audio(&mut self, ms: u64, frame: &[u8]) -> Option<NewPart> {
        self.writer.audio_frame(&mut Vec::new(), ms, frame);
        if self.has_video {
            return None; // parts follow the video
        }
        let us = ms * 1000;
        self.frame_at(us);
        let start = *self.segment_start.get_or_insert(us);
        if us - start >= self.config.segment_target.as_micros() as u64 {
            let part = self.flush();
            self.segment_start = Some(us);
            self.opens_segment = true;
            return part;
        }
        self.cut_if_due()
    }

    /// Whether to ask the publisher for a keyframe now, for the next segment to start on
    /// time (once per segment); `ms`: the stream's time now.
    pub fn keyframe_wanted(&mut self, ms: u64) -> bool {
        let Some(start) = self.segment_start.filter(|_| self.has_video) else {
            return false;
        };
        let due = start
            + self
                .config
                .segment_target
                .saturating_sub(KEYFRAME_LEAD)
                .as_micros() as u64;
        if self.keyframe_asked || ms * 1000 < due {
            return false;
        }
        self.keyframe_asked = true;
        true
    }

    /// The stream ends: what is ready goes into a last part and the playlist ends.
    pub fn finish(&mut self) -> Option<NewPart> {
        self.writer.release_held();
        let part = self.flush();
        self.playlist.end();
        part
    }

    /// Whether a keyframe `length` µs into the segment opens the next one: the one asked for
    /// does (from half the target on: not one the SFU asked for a new subscriber), any other
    /// once the segment is as long as the target, less half a frame.
    fn opens_next(&self, length: u64) -> bool {
        let target = self.config.segment_target.as_micros() as u64;
        length >= target.saturating_sub(self.interval / 2)
            || (self.keyframe_asked && length >= target / 2)
    }

    fn frame_at(&mut self, us: u64) {
        if let Some(last) = self.last_frame {
            if us > last {
                self.interval = us - last;
            }
        }
        self.last_frame = Some(us);
    }

    /// Cuts a part when what is ready is nearer the target than it would be a frame later.
    fn cut_if_due(&mut self) -> Option<NewPart> {
        let ready = self.writer.ready_us();
        let target = self.config.part_target.as_micros() as u64;
        if ready + self.interval / 2 >= target {
            self.flush()
        } else {
            None
        }
    }

    fn flush(&mut self) -> Option<NewPart> {
        let mut bytes = Vec::new();
        let fragment = self.writer.flush(&mut bytes)?;
        let opens = std::mem::take(&mut self.opens_segment);
        let (position, gone) = self.playlist.push_part(
            Part {
                duration: Duration::from_micros(fragment.duration_us),
                independent: fragment.independent,
            },
            opens,
            self.origin + Duration::from_micros(fragment.start_us),
        );
        Some(NewPart {
            position,
            bytes,
            gone,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::{
        codec::tests::{hex, PPS, SPS_320X240},
        hls::playlist::Blocking,
    };

    const IDR: [u8; 7] = [0, 0, 0, 1, 0x65, 0xAA, 0xBB];
    const SLICE: [u8; 6] = [0, 0, 0, 1, 0x41, 0xCC];

    fn packager() -> (LivePackager, Vec<u8>) {
        let track = H264Track {
            sps: hex(SPS_320X240),
            pps: hex(PPS),
            width: 320,
            height: 240,
        };
        LivePackager::new(PackagerConfig::default(), Some(track), true, UNIX_EPOCH)
    }

    /// Feeds `seconds` of 15 fps video and 20 ms audio frames, in time order, asking for
    /// keyframes as the packager says; the publisher's keyframe comes 4 frames (267 ms)
    /// after it is asked for. Returns the parts and the times keyframes were asked for.
    fn run(p: &mut LivePackager, seconds: u64) -> (Vec<NewPart>, Vec<u64>) {
        let mut parts = Vec::new();
        let mut asked = Vec::new();
        let mut keyframe_at = Some(0);
        let mut audio_ms = 0;
        for i in 0..seconds * 15 {
            let ms = i * 1000 / 15;
            while audio_ms <= ms {
                parts.extend(p.audio(audio_ms, &[0xFC, 1, 2]));
                audio_ms += 20;
            }
            let key = keyframe_at == Some(i);
            parts.extend(p.video(ms, key, if key { &IDR } else { &SLICE }));
            if p.keyframe_wanted(ms) {
                asked.push(ms);
                keyframe_at = Some(i + 4);
            }
        }
        (parts, asked)
    }

    #[test]
    fn parts_of_about_200_ms_and_segments_of_2_s_from_keyframes() {
        let (mut p, init) = packager();
        assert_eq!(&init[4..8], b"ftyp");
        assert_eq!(p.codecs(), "avc1.42c00d,opus");
        let (parts, asked) = run(&mut p, 7);
        // Keyframes asked for 1.7 s into each segment; the next segment opens on the answer.
        assert_eq!(asked, [1733, 3733, 5733]);
        let playlist = p.playlist();
        let segments: Vec<_> = playlist.segments().collect();
        assert_eq!(segments.len(), 4);
        for segment in &segments[..3] {
            assert!(segment.complete);
            let ms = segment.duration().as_millis();
            assert_eq!(ms, 2000, "segment {}", segment.msn);
            assert!(segment.parts[0].independent);
            assert!(segment.parts[1..].iter().all(|p| !p.independent));
            for part in &segment.parts {
                assert!(part.duration <= Duration::from_millis(250), "{part:?}");
            }
            // Every part but the last is a whole target's worth (3 frames at 15 fps).
            let whole = &segment.parts[..segment.parts.len() - 1];
            assert!(
                whole
                    .iter()
                    .all(|p| p.duration.as_millis().abs_diff(200) <= 1),
                "{whole:?}"
            );
        }
        // A segment's date is its first frame's on the wall clock.
        assert_eq!(
            segments[1].program_date,
            UNIX_EPOCH + Duration::from_millis(2000)
        );
        // Each part is a moof + mdat, numbered in order.
        assert!(parts.iter().all(|part| &part.bytes[4..8] == b"moof"));
        let positions: Vec<_> = parts.iter().map(|part| part.position).collect();
        assert_eq!(positions[0], (0, 0));
        assert!(positions
            .windows(2)
            .all(|w| w[1] == (w[0].0, w[0].1 + 1) || w[1] == (w[0].0 + 1, 0)));
        assert_eq!(playlist.blocking(3, Some(0)), Blocking::Ready);
    }

    #[test]
    fn a_part_holds_the_audio_up_to_its_video() {
        let (mut p, _) = packager();
        let (parts, _) = run(&mut p, 1);
        let first = &parts[0].bytes;
        // Two trafs: video (track 1) and audio (track 2).
        assert_eq!(first.windows(4).filter(|w| w == b"traf").count(), 2);
        let finished = p.finish();
        assert!(finished.is_some(), "the held frames go out at the end");
        assert!(p.playlist().ended());
    }

    #[test]
    fn audio_alone_is_cut_by_its_own_frames() {
        let (mut p, _) = LivePackager::new(PackagerConfig::default(), None, true, UNIX_EPOCH);
        let parts: Vec<_> = (0..250u64)
            .filter_map(|i| p.audio(i * 20, &[0xFC]))
            .collect();
        assert!(parts.len() >= 20, "{} parts in 5 s", parts.len());
        let segments: Vec<_> = p.playlist().segments().collect();
        assert_eq!(segments.len(), 3);
        assert!(segments[0].parts.iter().all(|part| part.independent));
        assert!(segments[0].duration().as_millis().abs_diff(2000) <= 20);
        assert!(!p.keyframe_wanted(4000));
    }
}
