//! Who is in which room and what they publish: join, publish, leave, taps, and the
//! participant lists the pages draw their tiles from.

use std::time::{Duration, Instant};

use slab::Slab;
use str0m::{
    bwe::Bitrate,
    change::SdpOffer,
    media::{Direction, Mid, Rid},
    Candidate, Rtc,
};

use super::{
    contain::contain,
    liveness::{Limits, Liveness},
    negotiation::Negotiation,
    participant::{Downlink, Participant, Stats},
    quality::QualityMeter,
    sdp::{
        check_payload_types, media_sections, offered_media, receive_only_answer, OurDirection,
        MAX_OFFER_MEDIA,
    },
    Output, SfuCore, TapOutput,
};
use crate::{
    api::{
        BandwidthEstimation, JoinAnswer, JoinOptions, MediaCodec, ParticipantEvent,
        ParticipantInfo, SfuError, Source, TrackKind,
    },
    ids::{ParticipantId, ParticipantSlot, PublicationSlot, TapId, TapSlot},
    media::{
        fanout::Tap,
        keyframe::KeyframeThrottle,
        layers::Layers,
        publication::{stream_id, Publication},
        sink::Sink,
    },
};

/// How often str0m reports RTT and loss (for `GET /api/rooms`).
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// How often we send a sender report on each audio stream (str0m's default is 5 s, video's
/// 1 s). str0m sends a stream's first report before anything is written on it, saying RTP
/// time 0; a receiver rejects the next reports as inconsistent with it and starts over
/// after three, so lip sync cannot start until the fourth: 20 s into each subscription at
/// 5 s, 4 s at 1 s (docs/sfu.md, str0m note 11).
pub const AUDIO_REPORT_INTERVAL: Duration = Duration::from_secs(1);

impl SfuCore {
    pub(super) fn join(
        &mut self,
        now: Instant,
        id: ParticipantId,
        room: String,
        name: String,
        offer: String,
        options: JoinOptions,
    ) -> Result<JoinAnswer, SfuError> {
        if self.by_id.contains_key(&id) {
            return Err(SfuError::Exists(id));
        }
        self.rooms.admits(&room, options.passcode.as_ref())?;
        if self.rooms.size(&room) >= self.config.room_capacity {
            return Err(SfuError::RoomFull);
        }
        let count = media_sections(&offer);
        if count > MAX_OFFER_MEDIA {
            return Err(SfuError::TooManyMedia {
                count,
                max: MAX_OFFER_MEDIA,
            });
        }
        check_payload_types(&offer)?;
        let offered = offered_media(&offer);
        let offer = SdpOffer::from_sdp_string(&offer)?;
        // A live room only where H.264 is offered at all.
        let live = self.rooms.is_live(&room, options.live)
            && self.config.codecs.contains(&MediaCodec::H264);
        let span = tracing::info_span!("participant", %id, %room);
        let (rtc, ufrag, answer) = span.in_scope(|| -> Result<_, SfuError> {
            let mut rtc = self.rtc_config(live).build(now);
            let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
            rtc.add_local_candidate(Candidate::host(self.local, "udp")?);
            let answer = contain("offer", || rtc.sdp_api().accept_offer(offer))??;
            // Our state must say what the answer says: set_direction changes the session at
            // once (the change list itself is dropped: the answer already told the browser).
            let (answer, receive_only) = receive_only_answer(&answer.to_sdp_string());
            let mut api = rtc.sdp_api();
            for (mid, direction) in receive_only {
                let direction = match direction {
                    OurDirection::RecvOnly => Direction::RecvOnly,
                    OurDirection::Inactive => Direction::Inactive,
                };
                api.set_direction(Mid::from(mid.as_str()), direction);
            }
            Ok((rtc, ufrag, answer))
        })?;
        let limits = Limits {
            connect_timeout: self.config.connect_timeout,
            silence_limit: self.config.silence_limit,
            restart_timeout: self.config.restart_timeout,
        };
        let slot = ParticipantSlot(self.participants.insert(Participant {
            id,
            name: name.clone(),
            room: room.clone(),
            span,
            rtc,
            joined_at: now,
            next_timeout: now,
            paced: matches!(
                self.config.bandwidth_estimation,
                BandwidthEstimation::SendSide { .. }
            ),
            unsent: 0,
            timed_out: false,
            dirty: false,
            connected: false,
            failed: false,
            muted: false,
            ufrag: ufrag.clone(),
            sending_to: None,
            moved_to: None,
            negotiation: Negotiation::default(),
            liveness: Liveness::new(limits, now),
            publications: Vec::new(),
            ssrcs: Vec::new(),
            subscriptions: Slab::new(),
            layer_wishes: Vec::new(),
            screen: Default::default(),
            capture: Default::default(),
            stats: Stats::default(),
            quality: QualityMeter::default(),
            downlink: Downlink::default(),
            interval: None,
        }));
        self.by_id.insert(id, slot);
        self.demux.add_ufrag(ufrag, slot);
        self.rooms.add(&room, slot, live, options.passcode);
        // The m-lines it sends on are publications at once, not when str0m reports them
        // (`MediaAdded`, once DTLS is up): the others renegotiate for them while its ICE and
        // DTLS run, instead of after (docs/sfu.md, "Publications").
        for (mid, rids) in offered {
            let mid = Mid::from(mid.as_str());
            let Some(media) = self.participants[slot.0].rtc.media(mid) else {
                continue;
            };
            if matches!(media.direction(), Direction::RecvOnly | Direction::SendRecv) {
                let kind = TrackKind::from(media.kind());
                let rids = rids.iter().map(|rid| Rid::from(rid.as_str())).collect();
                self.add_publication(now, slot, mid, kind, rids);
            }
        }
        self.poll_participant(slot, now);
        self.totals.joins += 1;
        let participants = self.room_info(&room);
        for other in self.others(&room, slot) {
            let other = self.participants[other.0].id;
            self.emit(other, ParticipantEvent::Participants(participants.clone()));
        }
        let speakers = self.rooms.speakers(&room);
        if !speakers.is_empty() {
            let speakers = speakers.to_vec();
            self.emit(id, ParticipantEvent::Speakers(speakers));
        }
        tracing::info!(parent: &self.participants[slot.0].span, %name, "joined");
        Ok(JoinAnswer {
            sdp: answer,
            participants,
            live,
        })
    }

    /// Only codecs whose keyframes we recognise: video starts on a keyframe per subscriber.
    /// In a `live` room, video is H.264 only: what HLS players decode, and one codec for
    /// everyone, so every publisher can be packaged without transcoding.
    fn rtc_config(&self, live: bool) -> str0m::RtcConfig {
        let mut config = Rtc::builder()
            .set_rtp_mode(true)
            .set_stats_interval(Some(STATS_INTERVAL))
            .set_rtcp_report_interval_audio(AUDIO_REPORT_INTERVAL)
            .enable_bwe(match self.config.bandwidth_estimation {
                BandwidthEstimation::SendSide { start_bps } => Some(Bitrate::bps(start_bps)),
                BandwidthEstimation::Off | BandwidthEstimation::Receiver => None,
            })
            .clear_codecs();
        let codecs = self
            .config
            .codecs
            .iter()
            .filter(|codec| !live || matches!(codec, MediaCodec::Opus | MediaCodec::H264));
        for codec in codecs {
            config = match codec {
                MediaCodec::Opus => config.enable_opus(true, false),
                MediaCodec::Vp8 => config.enable_vp8(true),
                MediaCodec::Vp9 => config.enable_vp9(true),
                MediaCodec::H264 => config.enable_h264(true),
                MediaCodec::Av1 => config.enable_av1(true),
                MediaCodec::H265 => config.enable_h265(true),
            };
        }
        config
    }

    /// The browser sends on a new m-line: a publication the others subscribe to, and the
    /// room's tiles say so. (Once per m-line: one published at join is not again.)
    pub(super) fn publish(
        &mut self,
        now: Instant,
        slot: ParticipantSlot,
        mid: Mid,
        kind: TrackKind,
        rids: Vec<Rid>,
    ) {
        let participant = &self.participants[slot.0];
        let known = participant
            .publications
            .iter()
            .any(|p| self.publications[p.0].mid == mid);
        if known {
            return;
        }
        let room = participant.room.clone();
        self.add_publication(now, slot, mid, kind, rids);
        // Tiles show who publishes what (a joiner was listed before its media connected).
        self.broadcast_participants(&room);
    }

    /// A publication on `mid`; the others renegotiate to subscribe.
    fn add_publication(
        &mut self,
        now: Instant,
        slot: ParticipantSlot,
        mid: Mid,
        kind: TrackKind,
        rids: Vec<Rid>,
    ) {
        let id = self.ids.publication();
        let participant = &mut self.participants[slot.0];
        let source = if participant.screen.carries(mid) {
            Source::Screen
        } else {
            Source::Camera
        };
        let lean_start = self.config.bandwidth_estimation == BandwidthEstimation::Off;
        let publication = Publication::new(
            id,
            slot,
            participant.id,
            mid,
            kind,
            source,
            Layers::new(&rids, KeyframeThrottle::new(self.config.keyframe_interval)),
        )
        .with_lean_start(lean_start);
        let publication = PublicationSlot(self.publications.insert(publication));
        participant.publications.push(publication);
        tracing::info!(parent: &participant.span, ?kind, ?source, %mid, layers = rids.len().max(1), "publishing");
        let room = participant.room.clone();
        for other in self.others(&room, slot) {
            self.participants[other.0].negotiation.request(now);
        }
    }

    /// Leaves: the participant's publications end (every subscriber renegotiates, taps
    /// end), its subscriptions stop feeding, its connection says goodbye and is dropped.
    pub(super) fn leave(&mut self, now: Instant, slot: ParticipantSlot) {
        let mut participant = self.participants.remove(slot.0);
        self.by_id.remove(&participant.id);
        self.rooms.remove(&participant.room, slot);
        self.demux.forget(slot);
        self.dirty.retain(|s| *s != slot);
        for publication in participant.publications.drain(..) {
            self.end_publication(now, publication);
        }
        for (_, subscription) in participant.subscriptions.iter() {
            if let Some(publication) = subscription.publication {
                if let Some(publication) = self.publications.get_mut(publication.0) {
                    publication.sinks.remove_participant(slot);
                }
            }
        }
        participant.close(&mut self.outputs);
        self.totals.leaves += 1;
        tracing::info!(parent: &participant.span, "left");
        self.broadcast_participants(&participant.room);
    }

    pub(super) fn end_publication(&mut self, now: Instant, slot: PublicationSlot) {
        let publication = self.publications.remove(slot.0);
        for sink in publication.sinks.iter() {
            match sink {
                Sink::Subscriber {
                    participant,
                    subscription,
                } => {
                    let Some(subscriber) = self.participants.get_mut(participant.0) else {
                        continue;
                    };
                    if let Some(subscription) = subscriber.subscriptions.get_mut(subscription.0) {
                        subscription.publication = None;
                    }
                    subscriber.negotiation.request(now);
                }
                Sink::Tap(tap) => {
                    let tap = self.taps.remove(tap.0);
                    self.outputs
                        .push_back(Output::Tap(TapOutput::Ended(tap.id)));
                }
            }
        }
    }

    pub(super) fn attach_tap(
        &mut self,
        now: Instant,
        publisher: ParticipantId,
        kind: TrackKind,
    ) -> Result<TapId, SfuError> {
        let slot = self.slot(publisher)?;
        let publication = self.participants[slot.0]
            .publications
            .iter()
            .copied()
            .find(|p| {
                let publication = &self.publications[p.0];
                publication.kind == kind && publication.source == Source::Camera
            })
            .ok_or(SfuError::NotPublishing(kind))?;
        let id = self.ids.tap();
        let layer = self.publications[publication.0].layers.top();
        let tap = TapSlot(self.taps.insert(Tap::new(id, publication, layer)));
        self.publications[publication.0].sinks.add(Sink::Tap(tap));
        // Video starts on a keyframe, as for a subscriber.
        self.want_keyframe(now, publication, layer, None);
        Ok(id)
    }

    pub(super) fn tap_keyframe(&mut self, now: Instant, id: TapId) {
        let wanted = self
            .taps
            .iter()
            .find(|(_, tap)| tap.id == id)
            .and_then(|(_, tap)| Some((tap.publication, tap.layer()?)));
        if let Some((publication, layer)) = wanted {
            self.want_keyframe(now, publication, layer, None);
        }
    }

    pub(super) fn detach_tap(&mut self, id: TapId) {
        let Some(slot) = self
            .taps
            .iter()
            .find(|(_, tap)| tap.id == id)
            .map(|(slot, _)| TapSlot(slot))
        else {
            return;
        };
        let tap = self.taps.remove(slot.0);
        if let Some(publication) = self.publications.get_mut(tap.publication.0) {
            publication.sinks.remove(Sink::Tap(slot));
        }
    }

    /// Members of `room` other than `slot`.
    pub(super) fn others(&self, room: &str, slot: ParticipantSlot) -> Vec<ParticipantSlot> {
        self.rooms
            .members(room)
            .iter()
            .copied()
            .filter(|s| *s != slot)
            .collect()
    }

    fn room_info(&self, room: &str) -> Vec<ParticipantInfo> {
        self.rooms
            .members(room)
            .iter()
            .map(|slot| {
                let participant = &self.participants[slot.0];
                let publishes = |kind, source| {
                    participant.publications.iter().any(|p| {
                        let publication = &self.publications[p.0];
                        publication.kind == kind && publication.source == source
                    })
                };
                let audio = publishes(TrackKind::Audio, Source::Camera);
                let video = publishes(TrackKind::Video, Source::Camera);
                let screen = publishes(TrackKind::Video, Source::Screen);
                ParticipantInfo {
                    id: participant.id,
                    name: participant.name.clone(),
                    // The m-lines of its tracks carry its id as their stream id.
                    streams: [
                        (audio || video).then(|| stream_id(participant.id, Source::Camera)),
                        screen.then(|| stream_id(participant.id, Source::Screen)),
                    ]
                    .into_iter()
                    .flatten()
                    .collect(),
                    audio,
                    video,
                    screen: screen.then(|| stream_id(participant.id, Source::Screen)),
                    quality: participant.quality.reported(),
                    muted: participant.muted,
                }
            })
            .collect()
    }

    pub(super) fn broadcast_participants(&mut self, room: &str) {
        let info = self.room_info(room);
        for slot in self.rooms.members(room).to_vec() {
            let id = self.participants[slot.0].id;
            self.emit(id, ParticipantEvent::Participants(info.clone()));
        }
    }
}
