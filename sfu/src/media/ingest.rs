//! A publisher's packet becomes an [`Incoming`]: what every sink needs to know about it,
//! worked out once (codec, keyframe or not, the header extensions that survive a hop)
//! instead of once per subscriber.

use std::{
    sync::Arc,
    time::{Instant, SystemTime},
};

use str0m::{
    format::{Codec, PayloadParams},
    rtp::{ExtensionValues, RtpHeader, Vp8Descriptor},
};

use crate::{
    api::TrackKind,
    media::{
        keyframe::starts_keyframe,
        munger::{PacketFacts, Vp8Ids},
        publication::Publication,
    },
};

/// Largest RTP payload forwarded. Browsers send ≤ ~1200-byte packets; str0m builds outgoing
/// datagrams in a 2000-byte buffer and panics on more, so a hostile publisher's oversized
/// payload must stop here.
pub const MAX_FORWARDED_PAYLOAD: usize = 1400;

/// One publisher packet, ready to be offered to every sink of its publication.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub kind: TrackKind,
    /// The simulcast layer (0 without simulcast).
    pub layer: u8,
    /// The publisher's extended sequence number (of this layer's stream).
    pub seq: u64,
    pub pt: u8,
    pub params: PayloadParams,
    /// The first packet of a keyframe (video only).
    pub keyframe: bool,
    pub rtp_time: u32,
    /// When it arrived (str0m's timestamp).
    pub arrived: Instant,
    /// When it was captured, on our clock (`media/capture.rs`): what the subscribers'
    /// sender reports pair its RTP time with. Its arrival until the core knows better.
    pub captured: Instant,
    pub marker: bool,
    /// End-to-end header extensions only.
    pub ext: ExtensionValues,
    pub payload: Arc<[u8]>,
    /// The VP8 payload descriptor of a simulcast stream (its ids are rewritten per
    /// subscriber when the subscriber switches layers).
    pub vp8: Option<Vp8Descriptor>,
    /// The publisher's latest RTCP sender report on this stream (what a recording needs to
    /// put audio and video on one timeline).
    pub sender_report: Option<SenderClock>,
}

/// A sender report's time pair: RTP time `rtp_time` was wall-clock time `ntp` at the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderClock {
    pub ntp: SystemTime,
    pub rtp_time: u32,
}

impl Incoming {
    /// What a subscription's layer switch needs of it.
    pub fn facts(&self) -> PacketFacts {
        PacketFacts {
            layer: self.layer,
            seq: self.seq,
            rtp_time: self.rtp_time,
            // Audio may start anywhere; video on a keyframe.
            start: self.keyframe || self.kind == TrackKind::Audio,
            marker: self.marker,
            arrived: self.arrived,
            clock_rate: self.params.spec().clock_rate.get(),
            vp8: self.vp8.and_then(|d| {
                Some(Vp8Ids {
                    picture_id: d.picture_id()?,
                    tl0_pic_idx: d.tl0_pic_idx(),
                })
            }),
        }
    }
}

/// Why a packet is not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its payload type is not one the publisher negotiated.
    UnknownPayloadType(u8),
    /// Larger than [`MAX_FORWARDED_PAYLOAD`].
    Oversized(usize),
    /// A layer the publication does not have.
    UnknownLayer(u8),
}

/// Works out the facts of one packet of `publication`'s `layer` and updates what the
/// publication learns from it (codec, loss, the layer's activity, a keyframe satisfying a
/// pending request). `lookup` finds a payload type in the publisher's codec config.
pub fn ingest(
    publication: &mut Publication,
    layer: u8,
    seq: u64,
    header: &RtpHeader,
    payload: Arc<[u8]>,
    arrived: Instant,
    lookup: impl FnOnce(u8) -> Option<PayloadParams>,
) -> Result<Incoming, Refused> {
    let pt = *header.payload_type;
    let params = publication
        .codec
        .params(pt, lookup)
        .ok_or(Refused::UnknownPayloadType(pt))?;
    if payload.len() > MAX_FORWARDED_PAYLOAD {
        return Err(Refused::Oversized(payload.len()));
    }
    let simulcast = publication.layers.is_simulcast();
    let Some(state) = publication.layers.get_mut(layer) else {
        return Err(Refused::UnknownLayer(layer));
    };
    state.packet(arrived, payload.len());
    state.loss.packet(seq);
    if publication.kind == TrackKind::Audio {
        publication.speaker.packet(header.ext_vals.audio_level);
    }
    let codec = params.spec().codec;
    let keyframe = publication.kind == TrackKind::Video && starts_keyframe(codec, &payload);
    if keyframe {
        state.keyframes.keyframe_received();
    }
    let vp8 = (simulcast && codec == Codec::Vp8)
        .then(|| Vp8Descriptor::parse(&payload).ok())
        .flatten();
    Ok(Incoming {
        kind: publication.kind,
        layer,
        seq,
        pt,
        params,
        keyframe,
        rtp_time: header.timestamp,
        arrived,
        captured: arrived,
        marker: header.marker,
        ext: end_to_end(&header.ext_vals),
        payload,
        vp8,
        sender_report: None,
    })
}

/// The header extensions that describe the media and survive a hop; transport-wide ones
/// (transport-cc, abs-send-time, MID/RID) belong to each connection and str0m sets its own.
fn end_to_end(ext: &ExtensionValues) -> ExtensionValues {
    ExtensionValues {
        audio_level: ext.audio_level,
        voice_activity: ext.voice_activity,
        video_orientation: ext.video_orientation,
        video_content_type: ext.video_content_type,
        tx_time_offs: ext.tx_time_offs,
        play_delay_min: ext.play_delay_min,
        play_delay_max: ext.play_delay_max,
        abs_capture_time: ext.abs_capture_time,
        ..Default::default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use str0m::{
        format::{Codec, CodecSpec, FormatParams},
        media::{Frequency, Mid},
    };

    use super::*;
    use crate::{
        ids::{ParticipantSlot, PublicationId},
        media::{keyframe::KeyframeThrottle, layers::Layers},
    };

    pub(crate) fn params(pt: u8, codec: Codec) -> PayloadParams {
        let clock_rate = if codec == Codec::Opus {
            Frequency::FORTY_EIGHT_KHZ
        } else {
            Frequency::NINETY_KHZ
        };
        PayloadParams::new(
            pt.into(),
            None,
            CodecSpec {
                codec,
                clock_rate,
                channels: None,
                format: FormatParams::default(),
            },
        )
    }

    pub(crate) fn video_publication() -> Publication {
        let id = "p000000000001".parse().unwrap();
        Publication::new(
            PublicationId(1),
            ParticipantSlot(0),
            id,
            Mid::from("1"),
            TrackKind::Video,
            crate::api::Source::Camera,
            Layers::new(&[], KeyframeThrottle::new(Duration::from_millis(500))),
        )
    }

    fn header(pt: u8, audio_level: Option<i8>) -> RtpHeader {
        let mut header = RtpHeader {
            payload_type: pt.into(),
            timestamp: 9000,
            marker: true,
            ..Default::default()
        };
        header.ext_vals.audio_level = audio_level;
        header.ext_vals.transport_cc = Some(7);
        header
    }

    #[test]
    fn facts_are_worked_out_once_per_packet() {
        let mut publication = video_publication();
        let mut lookups = 0;
        let mut lookup = |pt: u8| {
            lookups += 1;
            (pt == 96).then(|| params(96, Codec::Vp8))
        };
        let now = Instant::now();
        let key: Arc<[u8]> = Arc::from(&[0x10u8, 0x10][..]);
        let incoming = ingest(
            &mut publication,
            0,
            70_000,
            &header(96, Some(-30)),
            key.clone(),
            now,
            &mut lookup,
        )
        .unwrap();
        assert!(incoming.keyframe);
        assert_eq!((incoming.seq, incoming.pt), (70_000, 96));
        assert_eq!((incoming.rtp_time, incoming.marker), (9000, true));
        // End-to-end extensions pass, per-hop ones do not.
        assert_eq!(incoming.ext.audio_level, Some(-30));
        assert_eq!(incoming.ext.transport_cc, None);

        let delta: Arc<[u8]> = Arc::from(&[0x10u8, 0x11][..]);
        let incoming = ingest(
            &mut publication,
            0,
            70_002,
            &header(96, None),
            delta,
            now,
            &mut lookup,
        )
        .unwrap();
        assert!(!incoming.keyframe);
        assert_eq!(lookups, 1, "same payload type: looked up once");
        assert_eq!(publication.layers.lost(), 1);
    }

    #[test]
    fn unknown_payload_types_and_oversized_payloads_are_refused() {
        let mut publication = video_publication();
        let now = Instant::now();
        let lookup = |pt: u8| (pt == 96).then(|| params(96, Codec::Vp8));
        let small: Arc<[u8]> = Arc::from(&[0x10u8][..]);
        assert_eq!(
            ingest(
                &mut publication,
                0,
                1,
                &header(97, None),
                small,
                now,
                lookup
            )
            .unwrap_err(),
            Refused::UnknownPayloadType(97)
        );
        let big: Arc<[u8]> = vec![0u8; MAX_FORWARDED_PAYLOAD + 1].into();
        assert_eq!(
            ingest(&mut publication, 0, 2, &header(96, None), big, now, lookup).unwrap_err(),
            Refused::Oversized(MAX_FORWARDED_PAYLOAD + 1)
        );
        assert_eq!(
            publication.layers.lost(),
            0,
            "refused packets are not counted"
        );
    }

    #[test]
    fn a_keyframe_satisfies_a_remembered_request() {
        let mut publication = video_publication();
        let t0 = Instant::now();
        fn throttle(p: &mut Publication) -> &mut KeyframeThrottle {
            &mut p.layers.get_mut(0).unwrap().keyframes
        }
        assert!(throttle(&mut publication).request(t0));
        assert!(!throttle(&mut publication).request(t0));
        let key: Arc<[u8]> = Arc::from(&[0x10u8, 0x10][..]);
        let lookup = |_| Some(params(96, Codec::Vp8));
        ingest(&mut publication, 0, 1, &header(96, None), key, t0, lookup).unwrap();
        assert!(!throttle(&mut publication).pending());
    }
}
