//! Server-initiated negotiation: building an `update` offer from what a participant should
//! receive (and an ICE restart when its path was lost), and applying the browser's answer.

use std::time::Instant;

use str0m::{
    change::SdpAnswer,
    media::{Direction, MediaKind},
};

use super::{
    contain::contain,
    participant::Participant,
    screen::ScreenChange,
    sdp::{check_payload_types, without_transport_cc},
    SfuCore,
};
use crate::{
    api::{BandwidthEstimation, ParticipantEvent, TrackKind},
    ids::{ParticipantSlot, PublicationSlot, Round, SubscriptionSlot},
    media::{
        layers::pick,
        sink::Sink,
        subscription::{SubState, Subscription},
    },
};

impl SfuCore {
    /// Brings the participant's subscriptions in line with the room and offers the change
    /// (with new ICE credentials if `restart_ice`).
    pub(super) fn start_round(&mut self, now: Instant, slot: ParticipantSlot, restart_ice: bool) {
        let participant = &self.participants[slot.0];
        if participant.failed {
            self.participants[slot.0].negotiation.nothing_to_offer(now);
            return;
        }
        let wanted: Vec<PublicationSlot> = self
            .others(&participant.room, slot)
            .into_iter()
            .flat_map(|other| self.participants[other.0].publications.clone())
            .collect();
        let participant = &mut self.participants[slot.0];
        for publication in wanted {
            let subscribed = participant
                .subscriptions
                .iter()
                .any(|(_, s)| s.publication == Some(publication));
            if !subscribed {
                let target = &mut self.publications[publication.0];
                // What the page said its tile needs, else the best there is. Audio is
                // never held back.
                let wanted = match target.kind {
                    TrackKind::Video => participant.layer_wish(target.owner_id, target.source),
                    TrackKind::Audio => Some(u8::MAX),
                };
                let layer = pick(wanted, target.layers.active(now), target.layers.len());
                let mut subscription =
                    Subscription::new(publication, target.id, target.kind, layer);
                subscription.wanted = wanted;
                let subscription = SubscriptionSlot(participant.subscriptions.insert(subscription));
                target.sinks.add(Sink::Subscriber {
                    participant: slot,
                    subscription,
                });
            }
        }
        let Participant {
            span,
            rtc,
            subscriptions,
            screen,
            ..
        } = participant;
        let _span = span.enter();
        // Publications that ended: never offered → forget; open → stop the m-line.
        subscriptions.retain(|_, s| !(s.publication.is_none() && s.state == SubState::ToOpen));
        let mut change = rtc.sdp_api();
        for (_, subscription) in subscriptions.iter_mut() {
            match (subscription.state, subscription.publication) {
                (SubState::ToOpen, Some(publication)) => {
                    let publication = &self.publications[publication.0];
                    let mid = change.add_media(
                        subscription.kind.into(),
                        Direction::SendOnly,
                        // The page groups tracks into tiles by stream id.
                        Some(publication.stream_id()),
                        Some(publication.track_id()),
                        None,
                    );
                    subscription.state = SubState::Negotiating(mid);
                }
                (SubState::Open(mid), None) | (SubState::ToStop(mid), _) => {
                    change.stop_media(mid);
                    subscription.state = SubState::Stopping(mid);
                }
                _ => {}
            }
        }
        if let Some(screen_change) = screen.change() {
            let mid = match screen_change {
                // The page sends its screen on it; the msid is the browser's to give.
                ScreenChange::Open => {
                    change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None)
                }
                ScreenChange::Stop(mid) => {
                    change.stop_media(mid);
                    mid
                }
            };
            screen.offered(screen_change, mid);
        }
        let new_ufrag = restart_ice.then(|| change.ice_restart(true).ufrag);
        let applied = if change.has_changes() {
            change.apply()
        } else {
            None
        };
        drop(_span);
        let Some((offer, pending)) = applied else {
            participant.negotiation.nothing_to_offer(now);
            return;
        };
        let replaced_ufrag = new_ufrag.map(|ufrag| {
            self.demux.add_ufrag(ufrag.clone(), slot);
            participant.liveness.restart_offered();
            participant.stats.ice_restarts += 1;
            self.totals.ice_restarts += 1;
            std::mem::replace(&mut participant.ufrag, ufrag)
        });
        let round = participant.negotiation.offered(
            pending,
            now,
            self.config.update_timeout,
            replaced_ufrag,
        );
        tracing::debug!(parent: &participant.span, %round, restart_ice, "offer sent");
        let id = participant.id;
        self.emit(
            id,
            ParticipantEvent::Update {
                round,
                sdp: match self.config.bandwidth_estimation {
                    BandwidthEstimation::Receiver => without_transport_cc(&offer.to_sdp_string()),
                    _ => offer.to_sdp_string(),
                },
            },
        );
    }

    /// The browser's answer to `round` (or why there is none).
    pub(super) fn answer(
        &mut self,
        now: Instant,
        slot: ParticipantSlot,
        round: Round,
        answer: Result<String, String>,
    ) {
        let participant = &mut self.participants[slot.0];
        let Some(pending) = participant.negotiation.take_pending(round) else {
            tracing::debug!(parent: &participant.span, %round, "answer to a round no longer pending");
            return;
        };
        let accepted = answer
            .and_then(|sdp| {
                check_payload_types(&sdp).map_err(|e| e.to_string())?;
                SdpAnswer::from_sdp_string(&sdp).map_err(|e| e.to_string())
            })
            .and_then(|answer| {
                let _span = participant.span.enter();
                let rtc = &mut participant.rtc;
                contain("answer", || {
                    rtc.sdp_api().accept_answer(pending.offer, answer)
                })
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
            });
        if let Err(reason) = accepted {
            // The browser may have applied the offer without us knowing, and str0m has
            // already changed its session: the two sides no longer agree. Only a fresh
            // connection repairs that, so the participant is dropped (the page gets
            // `media_failed` and can join again).
            tracing::warn!(parent: &participant.span, %round, %reason, "update failed");
            self.fail(slot, "update failed");
            return;
        }
        let mut opened = Vec::new();
        let mut open_but_ended = false;
        participant.subscriptions.retain(|_, s| match s.state {
            SubState::Negotiating(mid) => {
                s.state = SubState::Open(mid);
                match s.publication {
                    Some(publication) if s.kind == TrackKind::Video => {
                        if let Some(layer) = s.switch.keyframe_wanted() {
                            opened.push((publication, layer));
                        }
                    }
                    Some(_) => {}
                    None => open_but_ended = true,
                }
                true
            }
            // Its sink went with the publication; the m-line is now stopped on both sides.
            SubState::Stopping(_) => false,
            _ => true,
        });
        if let Some(old) = pending.replaced_ufrag {
            self.demux.remove_ufrag(&old, slot);
            participant.liveness.restart_answered(now);
            tracing::info!(parent: &participant.span, "ICE restart answered");
        }
        tracing::debug!(parent: &participant.span, %round, opened = opened.len(), "renegotiated");
        participant.negotiation.finished(now);
        let screen = participant.screen.answered();
        if open_but_ended || screen.again {
            participant.negotiation.request(now);
        }
        // The page put its screen on the m-line we offered (it may have answered
        // `inactive`, having stopped sharing meanwhile), unless it has since said it stopped.
        let screen_sent = screen.opened.filter(|mid| {
            participant.screen.wanted
                && participant
                    .rtc
                    .media(*mid)
                    .is_some_and(|m| m.direction() == Direction::RecvOnly)
        });
        if participant.connected {
            for (publication, layer) in opened {
                self.want_keyframe(now, publication, layer, Some(slot));
            }
        }
        if let Some(mid) = screen_sent {
            self.publish(now, slot, mid, TrackKind::Video, Vec::new());
        }
        // Applying our offer switched the browser's simulcast layers back on: the next
        // selection tick tells it again which it need not send.
        for publication in &self.participants[slot.0].publications {
            if let Some(publication) = self.publications.get_mut(publication.0) {
                publication.publisher_layers.renegotiated();
            }
        }
        self.mark_dirty(slot);
    }
}
