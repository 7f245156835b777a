//! A live WebM writer: the header once, then frames as they come, in Clusters of unknown
//! size, so that every byte written is final (a crash loses only what was not written yet)
//! and the file plays up to its last whole frame. [`super::make_seekable`] adds Duration and
//! Cues when the recording ends cleanly.

use std::time::{Duration, SystemTime};

use super::ebml::*;

const VIDEO_TRACK: u8 = 1;
const AUDIO_TRACK: u8 = 2;
/// Matroska's DateUTC counts from 2001-01-01T00:00:00 UTC.
const MATROSKA_EPOCH: Duration = Duration::from_secs(978_307_200);
/// Longest cluster. A block's time is an i16 of milliseconds after its cluster's; 5 s also
/// bounds how far a player reads to find the next cluster.
const MAX_CLUSTER_MS: u64 = 5_000;
/// What a decoder discards before an Opus seek point (RFC 7845 recommends 80 ms).
const OPUS_SEEK_PRE_ROLL_NS: u64 = 80_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    Vp8,
    Vp9,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoTrack {
    pub codec: VideoCodec,
    pub width: u16,
    pub height: u16,
}

/// Opus at 48 kHz.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioTrack {
    pub channels: u8,
}

#[derive(Debug)]
pub struct WebmWriter {
    video: Option<VideoTrack>,
    audio: Option<AudioTrack>,
    /// The open cluster's time (ms).
    cluster: Option<u64>,
}

impl WebmWriter {
    pub fn new(video: Option<VideoTrack>, audio: Option<AudioTrack>) -> Self {
        WebmWriter {
            video,
            audio,
            cluster: None,
        }
    }

    /// The file's start: EBML header, Segment (unknown size), Info and Tracks. `date` is the
    /// wall-clock time of the first frame (time 0).
    pub fn header(&self, date: SystemTime) -> Vec<u8> {
        let mut header = Vec::new();
        put_uint(&mut header, EBML_VERSION, 1);
        put_uint(&mut header, EBML_READ_VERSION, 1);
        put_uint(&mut header, EBML_MAX_ID_LENGTH, 4);
        put_uint(&mut header, EBML_MAX_SIZE_LENGTH, 8);
        put_str(&mut header, DOC_TYPE, "webm");
        put_uint(&mut header, DOC_TYPE_VERSION, 4);
        put_uint(&mut header, DOC_TYPE_READ_VERSION, 2);
        let mut out = Vec::new();
        put_element(&mut out, EBML, &header);
        open_unknown(&mut out, SEGMENT);

        let mut info = Vec::new();
        put_uint(&mut info, TIMECODE_SCALE, 1_000_000); // ms
        put_str(&mut info, MUXING_APP, "rtc-call media-out");
        put_str(&mut info, WRITING_APP, "rtc-call signal");
        let since = date
            .duration_since(SystemTime::UNIX_EPOCH + MATROSKA_EPOCH)
            .unwrap_or_default();
        put_element(
            &mut info,
            DATE_UTC,
            &(since.as_nanos() as i64).to_be_bytes(),
        );
        put_element(&mut out, INFO, &info);

        let mut tracks = Vec::new();
        if let Some(video) = self.video {
            let mut entry = track_entry(VIDEO_TRACK, 1);
            put_str(
                &mut entry,
                CODEC_ID,
                match video.codec {
                    VideoCodec::Vp8 => "V_VP8",
                    VideoCodec::Vp9 => "V_VP9",
                },
            );
            let mut v = Vec::new();
            put_uint(&mut v, PIXEL_WIDTH, video.width.into());
            put_uint(&mut v, PIXEL_HEIGHT, video.height.into());
            put_element(&mut entry, VIDEO, &v);
            put_element(&mut tracks, TRACK_ENTRY, &entry);
        }
        if let Some(audio) = self.audio {
            let mut entry = track_entry(AUDIO_TRACK, 2);
            put_str(&mut entry, CODEC_ID, "A_OPUS");
            put_element(&mut entry, CODEC_PRIVATE, &opus_head(audio.channels));
            put_uint(&mut entry, SEEK_PRE_ROLL, OPUS_SEEK_PRE_ROLL_NS);
            let mut a = Vec::new();
            put_float(&mut a, SAMPLING_FREQUENCY, 48_000.0);
            put_uint(&mut a, CHANNELS, audio.channels.into());
            put_element(&mut entry, AUDIO, &a);
            put_element(&mut tracks, TRACK_ENTRY, &entry);
        }
        put_element(&mut out, TRACKS, &tracks);
        out
    }

    /// A video frame at `ms` after time 0 (a track's times never go back: the caller's
    /// promise). A keyframe starts a cluster, so the Cues added on finishing point at it.
    pub fn video_frame(&mut self, out: &mut Vec<u8>, ms: u64, keyframe: bool, frame: &[u8]) {
        if self.video.is_some() {
            self.block(out, VIDEO_TRACK, ms, keyframe, keyframe, frame);
        }
    }

    /// An Opus frame at `ms` after time 0; every one is a keyframe.
    pub fn audio_frame(&mut self, out: &mut Vec<u8>, ms: u64, frame: &[u8]) {
        if self.audio.is_some() {
            // Without video, audio opens the clusters.
            self.block(out, AUDIO_TRACK, ms, true, false, frame);
        }
    }

    fn block(
        &mut self,
        out: &mut Vec<u8>,
        track: u8,
        ms: u64,
        key: bool,
        opens: bool,
        frame: &[u8],
    ) {
        let start_new = match self.cluster {
            None => true,
            Some(start) => {
                (opens && ms > start) || ms >= start + MAX_CLUSTER_MS || ms + MAX_CLUSTER_MS < start
            }
        };
        if start_new {
            open_unknown(out, CLUSTER);
            put_uint(out, TIMECODE, ms);
            self.cluster = Some(ms);
        }
        let start = self.cluster.unwrap_or(ms);
        // Within ±5 s of the cluster by the test above: fits an i16.
        let relative = (ms as i64 - start as i64) as i16;
        put_id(out, SIMPLE_BLOCK);
        put_size8(out, 4 + frame.len() as u64);
        out.push(0x80 | track); // track number as a 1-byte variable-length integer
        out.extend_from_slice(&relative.to_be_bytes());
        out.push(if key { 0x80 } else { 0 });
        out.extend_from_slice(frame);
    }
}

fn track_entry(number: u8, kind: u64) -> Vec<u8> {
    let mut entry = Vec::new();
    put_uint(&mut entry, TRACK_NUMBER, number.into());
    put_uint(&mut entry, TRACK_UID, number.into());
    put_uint(&mut entry, TRACK_TYPE, kind);
    put_uint(&mut entry, FLAG_LACING, 0);
    entry
}

/// RFC 7845 5.1: the identification header, which is WebM's Opus CodecPrivate. No pre-skip:
/// the frames come from a live encoder whose first samples were sent long ago.
fn opus_head(channels: u8) -> Vec<u8> {
    let mut head = b"OpusHead".to_vec();
    head.push(1); // version
    head.push(channels);
    head.extend_from_slice(&0u16.to_le_bytes()); // pre-skip
    head.extend_from_slice(&48_000u32.to_le_bytes()); // input sample rate
    head.extend_from_slice(&0i16.to_le_bytes()); // output gain
    head.push(0); // channel mapping family: mono or stereo
    head
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webm::{make_seekable, seekable::tests::check};

    fn frame(n: u8) -> Vec<u8> {
        vec![n; 10]
    }

    #[test]
    fn a_live_file_becomes_seekable_with_every_frame_and_a_cue_per_keyframe() {
        let video = VideoTrack {
            codec: VideoCodec::Vp8,
            width: 320,
            height: 240,
        };
        let mut writer = WebmWriter::new(Some(video), Some(AudioTrack { channels: 2 }));
        let mut file = writer.header(SystemTime::now());
        // 12 s: video at 10 fps with a keyframe every 3 s, audio every 20 ms.
        let mut audio_ms = 0;
        for i in 0..120u64 {
            let ms = i * 100;
            while audio_ms < ms {
                writer.audio_frame(&mut file, audio_ms, &frame(2));
                audio_ms += 20;
            }
            writer.video_frame(&mut file, ms, i % 30 == 0, &frame(1));
        }
        let clusters = file
            .windows(4)
            .filter(|w| *w == [0x1F, 0x43, 0xB6, 0x75])
            .count();
        assert_eq!(
            clusters, 4,
            "one per keyframe (3 s apart, under the 5 s limit)"
        );
        let seekable = make_seekable(&file).unwrap();
        // The last frame's time plus its track's frame spacing.
        assert_eq!(seekable.duration_ms, 12_000);
        let (duration, cues) = check(&seekable.bytes);
        assert_eq!(duration, 12_000.0);
        let times: Vec<u64> = cues.iter().map(|c| c.0).collect();
        assert_eq!(times, [0, 3_000, 6_000, 9_000], "a cue per keyframe");
    }

    #[test]
    fn audio_alone_opens_clusters_every_five_seconds_and_times_stay_in_range() {
        let mut writer = WebmWriter::new(None, Some(AudioTrack { channels: 1 }));
        let mut file = writer.header(SystemTime::now());
        for i in 0..600u64 {
            writer.audio_frame(&mut file, i * 20, &frame(3));
        }
        let clusters = file
            .windows(4)
            .filter(|w| *w == [0x1F, 0x43, 0xB6, 0x75])
            .count();
        assert_eq!(clusters, 3, "12 s of audio in clusters of at most 5 s");
        // A video frame on a writer without video is ignored.
        let before = file.len();
        writer.video_frame(&mut file, 12_000, true, &frame(1));
        assert_eq!(file.len(), before);
        assert_eq!(make_seekable(&file).unwrap().duration_ms, 12_000);
    }
}
