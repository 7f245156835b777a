//! What the server's recordings and live streams share about listening to a participant:
//! attaching taps to its camera and microphone, learning their codecs from the first
//! packets, and handing the packets to `media_out`.

use std::{
    sync::mpsc::{sync_channel, Receiver},
    time::{Duration, Instant},
};

use media_out::{
    assembler::Packet,
    codec::Codec,
    recording::{ParticipantRecording, SenderReport, TrackKind as MediaKind},
};
use sfu::{
    MediaCodec, ParticipantId, RoomsReport, Sfu, SfuError, TapId, TapOutput, TapPacket, TrackKind,
};

/// A joiner's tracks may not be published yet when its join is answered: tried again once.
const ATTACH_RETRY: Duration = Duration::from_millis(1500);
/// How long the first packets wait for the other track's, to learn both codecs. A video tap
/// starts on a keyframe, which a publisher short of CPU or bandwidth may take seconds to send
/// (measured: more than 2 s now and then, in a live room just put on air); without it a live
/// stream would be audio only for good, and a recording's first file would have no video.
const CODEC_WAIT: Duration = Duration::from_secs(5);

/// The participants of `room` who publish media (id, display name), as `report` saw them.
pub fn publishers(report: &RoomsReport, room: &str) -> Vec<(ParticipantId, String)> {
    report
        .rooms
        .iter()
        .filter(|r| r.room == room)
        .flat_map(|r| r.participants.iter())
        .filter(|p| !p.publishing.is_empty())
        .map(|p| (p.id, p.name.clone()))
        .collect()
}

/// Taps on a participant's camera and microphone, and the queue they feed.
pub struct Taps {
    pub taps: Vec<(TapId, TrackKind)>,
    pub queue: Receiver<TapOutput>,
}

impl Taps {
    /// Attaches to what `participant` publishes (`retry`: a joiner, whose tracks may come a
    /// little later). The queue holds `queue` packets; the SFU drops taps whose queue is
    /// full rather than wait.
    pub async fn attach(sfu: &Sfu, participant: ParticipantId, retry: bool, queue: usize) -> Self {
        let (sink, receiver) = sync_channel(queue);
        let mut taps = Vec::new();
        for attempt in 0..if retry { 2 } else { 1 } {
            if attempt > 0 {
                tokio::time::sleep(ATTACH_RETRY).await;
            }
            for kind in [TrackKind::Video, TrackKind::Audio] {
                if taps.iter().any(|(_, k)| *k == kind) {
                    continue;
                }
                match sfu.attach_tap(participant, kind, sink.clone()).await {
                    Ok(tap) => taps.push((tap, kind)),
                    Err(SfuError::NotPublishing(_)) => {}
                    Err(error) => tracing::debug!(%participant, %error, "no tap"),
                }
            }
            if taps.len() == 2 {
                break;
            }
        }
        Taps {
            taps,
            queue: receiver,
        }
    }

    pub fn detach(&self, sfu: &Sfu) {
        for (tap, _) in &self.taps {
            sfu.detach_tap(*tap);
        }
    }

    /// The video tap, to ask its publisher for keyframes.
    pub fn video(&self) -> Option<TapId> {
        self.taps
            .iter()
            .find(|(_, kind)| *kind == TrackKind::Video)
            .map(|(tap, _)| *tap)
    }

    /// Hands `packet` to `recording` as the track its tap listens to.
    pub fn feed(&self, recording: &mut ParticipantRecording, packet: TapPacket) {
        let Some((_, kind)) = self.taps.iter().find(|(tap, _)| *tap == packet.tap) else {
            return;
        };
        let kind = match kind {
            TrackKind::Audio => MediaKind::Audio,
            TrackKind::Video => MediaKind::Video,
        };
        let report = packet.sender_report.map(|r| SenderReport {
            ntp: r.ntp,
            rtp_time: r.rtp_time,
        });
        recording.push(
            kind,
            Packet {
                seq: packet.seq,
                rtp_time: packet.rtp_time,
                marker: packet.marker,
                payload: packet.payload,
                arrived: packet.arrived,
            },
            report,
        );
    }
}

/// The first packets of a participant's taps, held until each track's codec is known (or
/// [`CODEC_WAIT`] passed): a recording or a stream is set up for its codecs.
#[derive(Default)]
pub struct CodecProbe {
    first: Option<Instant>,
    held: Vec<TapPacket>,
    /// Each track's codec once its first packet came (`Some(None)`: one we cannot write).
    video: Option<Option<Codec>>,
    audio: Option<Option<Codec>>,
}

/// What a probe learnt.
pub struct Probed {
    pub video: Option<Codec>,
    pub audio: Option<Codec>,
    /// The video tap's codec when `media_out` cannot write it ("vp8", "an unknown codec").
    pub unwritable_video: Option<String>,
    /// The packets held meanwhile, in arrival order.
    pub held: Vec<TapPacket>,
}

impl CodecProbe {
    pub fn push(&mut self, packet: TapPacket) {
        let codec = media_codec(&packet);
        match packet.kind {
            TrackKind::Video if self.video.is_none() => self.video = Some(codec),
            TrackKind::Audio if self.audio.is_none() => self.audio = Some(codec),
            _ => {}
        }
        self.first.get_or_insert(packet.arrived);
        self.held.push(packet);
    }

    /// Whether every tapped track's codec is known, or waiting longer is pointless.
    pub fn done(&self, tapped: &[(TapId, TrackKind)], now: Instant) -> bool {
        let Some(first) = self.first else {
            return false;
        };
        let all_known = tapped.iter().all(|(_, kind)| match kind {
            TrackKind::Video => self.video.is_some(),
            TrackKind::Audio => self.audio.is_some(),
        });
        all_known || now >= first + CODEC_WAIT
    }

    pub fn finish(self) -> Probed {
        let unwritable_video = self.video.filter(Option::is_none).map(|_| {
            self.held
                .iter()
                .find(|p| p.kind == TrackKind::Video)
                .and_then(TapPacket::codec)
                .map_or("an unknown codec".into(), |c| c.to_string())
        });
        Probed {
            video: self.video.flatten(),
            audio: self.audio.flatten(),
            unwritable_video,
            held: self.held,
        }
    }
}

/// The codec of a tap's packets, if `media_out` writes it (WebM: VP8, VP9, Opus; MP4 and
/// HLS: H.264, Opus).
fn media_codec(packet: &TapPacket) -> Option<Codec> {
    match packet.codec()? {
        MediaCodec::Opus => Some(Codec::Opus),
        MediaCodec::Vp8 => Some(Codec::Vp8),
        MediaCodec::Vp9 => Some(Codec::Vp9),
        MediaCodec::H264 => Some(Codec::H264),
        MediaCodec::Av1 | MediaCodec::H265 => None,
    }
}

/// A codec's name in manifests and logs.
pub fn codec_name(codec: Codec) -> &'static str {
    match codec {
        Codec::Opus => "opus",
        Codec::Vp8 => "vp8",
        Codec::Vp9 => "vp9",
        Codec::H264 => "h264",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tapped(kinds: &[TrackKind]) -> Vec<(TapId, TrackKind)> {
        kinds.iter().zip(1..).map(|(k, n)| (TapId(n), *k)).collect()
    }

    #[test]
    fn learning_ends_with_every_codec_or_after_the_wait() {
        let t0 = Instant::now();
        let both = tapped(&[TrackKind::Audio, TrackKind::Video]);
        let mut probe = CodecProbe::default();
        assert!(!probe.done(&both, t0 + CODEC_WAIT * 2), "nothing came yet");
        probe.first = Some(t0);
        probe.audio = Some(Some(Codec::Opus));
        assert!(!probe.done(&both, t0 + CODEC_WAIT - Duration::from_millis(1)));
        assert!(probe.done(&both, t0 + CODEC_WAIT), "the video is given up");
        probe.video = Some(Some(Codec::H264));
        assert!(probe.done(&both, t0));
    }
}
