//! The packet path through the core: a publisher's RTP packet is ingested once, offered to
//! every sink of its publication, and keyframes are asked for on the sinks' behalf.

use std::{collections::VecDeque, time::Instant};

use slab::Slab;
use str0m::{
    media::{KeyframeRequestKind, Mid},
    rtp::RtpPacket,
};

use super::{participant::Participant, Output, SfuCore, TapOutput, Totals};
use crate::{
    api::TrackKind,
    ids::{ParticipantSlot, PublicationSlot},
    media::{
        fanout::{fan_out, Deliver, Tap},
        ingest::{ingest, Incoming, Refused, SenderClock},
        sink::{Delivery, Sink},
    },
};

impl SfuCore {
    /// One publisher packet to every sink of its publication.
    pub(super) fn forward(&mut self, now: Instant, slot: ParticipantSlot, packet: RtpPacket) {
        let participant = &mut self.participants[slot.0];
        participant.stats.packets_in += 1;
        participant.stats.bytes_in += packet.payload.len() as u64;
        let publications = &self.publications;
        let Some((publication, layer)) =
            participant.publication_of(*packet.header.ssrc, |p, mid, rid| {
                let p = publications.get(p.0).filter(|p| p.mid == mid)?;
                p.layers.index_of(rid)
            })
        else {
            return;
        };
        // Muted by a moderator: its audio reaches no subscriber, recording or live stream,
        // and its level no speaker ranking.
        if participant.muted && self.publications[publication.0].kind == TrackKind::Audio {
            return;
        }
        let sender_report = packet.last_sender_info.map(|info| SenderClock {
            ntp: info.ntp_time,
            rtp_time: info.rtp_time.numer() as u32,
        });
        let rtc = &self.participants[slot.0].rtc;
        let target = &mut self.publications[publication.0];
        let mut incoming = match ingest(
            target,
            layer,
            *packet.seq_no,
            &packet.header,
            packet.payload,
            packet.timestamp,
            |pt| {
                rtc.codec_config()
                    .params()
                    .iter()
                    .find(|p| *p.pt() == pt)
                    .copied()
            },
        ) {
            Ok(incoming) => incoming,
            Err(Refused::Oversized(len)) => {
                self.totals.dropped_packets += 1;
                tracing::debug!(len, "oversized RTP payload dropped");
                return;
            }
            Err(Refused::UnknownPayloadType(_) | Refused::UnknownLayer(_)) => return,
        };
        incoming.captured = self.participants[slot.0].capture.captured(
            incoming.arrived,
            incoming.rtp_time,
            incoming.params.spec().clock_rate.get(),
            sender_report,
        );
        incoming.sender_report = sender_report;
        let request_due = target
            .layers
            .get_mut(layer)
            .is_some_and(|l| l.keyframes.poll(now))
            .then_some(layer);
        let mut deliver = ToSinks {
            participants: &mut self.participants,
            taps: &mut self.taps,
            outputs: &mut self.outputs,
            dirty: &mut self.dirty,
            totals: &mut self.totals,
        };
        let result = fan_out(&incoming, &target.sinks, &mut deliver);
        if let Some(layer) = request_due {
            self.send_keyframe_request(publication, layer);
        }
        // A sink waits for a keyframe (the PLI or the keyframe may have been lost): ask
        // again, throttled.
        for wanted in result.keyframes_wanted.iter() {
            let Some(state) = self.publications[publication.0].layers.get_mut(wanted) else {
                continue;
            };
            if !state.keyframes.pending() && state.keyframes.request(now) {
                self.send_keyframe_request(publication, wanted);
            }
        }
    }

    /// DTLS is up: its open video subscriptions want a keyframe to start from.
    pub(super) fn subscriber_connected(&mut self, now: Instant, slot: ParticipantSlot) {
        let wanted: Vec<(PublicationSlot, u8)> = self.participants[slot.0]
            .subscriptions
            .iter()
            .filter(|(_, s)| s.kind == TrackKind::Video && s.is_open())
            .filter_map(|(_, s)| Some((s.publication?, s.switch.keyframe_wanted()?)))
            .collect();
        for (publication, layer) in wanted {
            self.want_keyframe(now, publication, layer, Some(slot));
        }
    }

    /// The participant's media moved to another path: the packets sent on the old one while
    /// it was dying are lost both ways, so every decoder on either side waits for a keyframe.
    /// Asking now saves the browsers' own timeouts (NACKs first, a PLI seconds later).
    pub(super) fn path_changed(&mut self, now: Instant, slot: ParticipantSlot) {
        tracing::debug!(parent: &self.participants[slot.0].span, "media path changed: keyframes both ways");
        let receiving: Vec<(PublicationSlot, u8)> = self.participants[slot.0]
            .subscriptions
            .iter()
            .filter(|(_, s)| s.kind == TrackKind::Video && s.is_open())
            .filter_map(|(_, s)| Some((s.publication?, s.switch.current().or(s.switch.target())?)))
            .collect();
        let sending: Vec<(PublicationSlot, u8)> = self
            .publications
            .iter()
            .filter(|(_, p)| p.owner == slot && p.kind == TrackKind::Video)
            .flat_map(|(id, p)| {
                p.publisher_layers
                    .asked()
                    .iter()
                    .filter(|layer| usize::from(*layer) < p.layers.len())
                    .map(move |layer| (PublicationSlot(id), layer))
            })
            .collect();
        for (publication, layer) in receiving {
            self.want_keyframe(now, publication, layer, Some(slot));
        }
        for (publication, layer) in sending {
            self.want_keyframe(now, publication, layer, None);
        }
    }

    /// A subscriber's PLI/FIR on one of its m-lines.
    pub(super) fn keyframe_request_from_subscriber(
        &mut self,
        now: Instant,
        slot: ParticipantSlot,
        mid: Mid,
    ) {
        // The layer it receives (or is about to).
        let wanted = self.participants[slot.0]
            .subscriptions
            .iter()
            .find(|(_, s)| s.state == crate::media::subscription::SubState::Open(mid))
            .and_then(|(_, s)| Some((s.publication?, s.switch.current().or(s.switch.target())?)));
        if let Some((publication, layer)) = wanted {
            self.want_keyframe(now, publication, layer, Some(slot));
        }
    }

    /// A keyframe of `layer` is wanted (on behalf of `requester`, if a participant); the
    /// layer's throttle decides whether a request goes upstream now, later, or not at all.
    pub(super) fn want_keyframe(
        &mut self,
        now: Instant,
        publication: PublicationSlot,
        layer: u8,
        requester: Option<ParticipantSlot>,
    ) {
        if let Some(requester) = requester.and_then(|r| self.participants.get_mut(r.0)) {
            requester.stats.keyframes_requested += 1;
        }
        let Some(target) = self.publications.get_mut(publication.0) else {
            return;
        };
        if target.kind != TrackKind::Video {
            return;
        }
        // A publisher whose media is not up yet (published at join) starts with keyframes;
        // a request now would only spend the throttle.
        if !self
            .participants
            .get(target.owner.0)
            .is_some_and(|p| p.connected)
        {
            return;
        }
        let Some(state) = target.layers.get_mut(layer) else {
            return;
        };
        if state.keyframes.request(now) {
            self.send_keyframe_request(publication, layer);
        } else {
            tracing::debug!(owner = %target.owner_id, "keyframe request throttled");
        }
    }

    /// Remembered keyframe requests whose interval has passed.
    pub(super) fn poll_keyframe_throttles(&mut self, now: Instant) {
        let mut due = Vec::new();
        for (slot, p) in self.publications.iter_mut() {
            if p.layers.keyframe_deadline().is_none_or(|at| at > now) {
                continue;
            }
            for (layer, state) in p.layers.iter_mut().enumerate() {
                if state.keyframes.poll(now) {
                    due.push((PublicationSlot(slot), layer as u8));
                }
            }
        }
        for (publication, layer) in due {
            self.send_keyframe_request(publication, layer);
        }
    }

    fn send_keyframe_request(&mut self, publication: PublicationSlot, layer: u8) {
        let Some(target) = self.publications.get(publication.0) else {
            return;
        };
        // PLI unless the publisher's codec negotiated only FIR.
        let kind = match target.codec.current() {
            Some(params) if !params.fb_pli() && params.fb_fir() => KeyframeRequestKind::Fir,
            _ => KeyframeRequestKind::Pli,
        };
        let (owner, mid) = (target.owner, target.mid);
        let rid = target.layers.get(layer).and_then(|l| l.rid);
        let Some(publisher) = self.participants.get_mut(owner.0) else {
            return;
        };
        {
            let _span = publisher.span.enter();
            let mut api = publisher.rtc.direct_api();
            let Some(stream) = api.stream_rx_by_mid(mid, rid) else {
                tracing::debug!(%mid, ?rid, "no stream to request a keyframe on yet");
                return;
            };
            stream.request_keyframe(kind);
            tracing::debug!(%mid, ?rid, ?kind, "keyframe requested upstream");
        }
        self.totals.keyframe_requests_sent += 1;
        self.mark_dirty(owner);
    }
}

/// Delivery into the core's sinks: a subscriber's connection or a tap's output.
struct ToSinks<'a> {
    participants: &'a mut Slab<Participant>,
    taps: &'a mut Slab<Tap>,
    outputs: &'a mut VecDeque<Output>,
    dirty: &'a mut Vec<ParticipantSlot>,
    totals: &'a mut Totals,
}

impl Deliver for ToSinks<'_> {
    fn deliver(&mut self, sink: Sink, packet: &Incoming) -> Delivery {
        match sink {
            Sink::Subscriber {
                participant,
                subscription,
            } => {
                let Some(subscriber) = self.participants.get_mut(participant.0) else {
                    return Delivery::Skipped;
                };
                if !subscriber.connected {
                    return Delivery::Skipped;
                }
                let Some(sub) = subscriber.subscriptions.get_mut(subscription.0) else {
                    return Delivery::Skipped;
                };
                let delivery = sub.forward(&mut subscriber.rtc, packet);
                if let Delivery::Written { bytes, first } = delivery {
                    subscriber.stats.packets_out += 1;
                    subscriber.stats.bytes_out += bytes;
                    subscriber.unsent += 1;
                    self.totals.forwarded_packets += 1;
                    self.totals.forwarded_bytes += bytes;
                    if !subscriber.dirty {
                        subscriber.dirty = true;
                        self.dirty.push(participant);
                    }
                    if first && packet.kind == TrackKind::Video {
                        tracing::debug!(parent: &subscriber.span, "video starts");
                    }
                }
                delivery
            }
            Sink::Tap(tap) => {
                let Some(tap) = self.taps.get_mut(tap.0) else {
                    return Delivery::Skipped;
                };
                match tap.forward(packet) {
                    Ok(out) => {
                        let bytes = out.payload.len() as u64;
                        self.outputs.push_back(Output::Tap(TapOutput::Packet(out)));
                        Delivery::Written {
                            bytes,
                            first: false,
                        }
                    }
                    Err(delivery) => delivery,
                }
            }
        }
    }
}
