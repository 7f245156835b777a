//! Which layer each video subscription forwards: the highest the subscriber asked for (its
//! tile's size; nothing for a hidden tile) among the layers its publisher is sending now.
//!
//! Re-evaluated on a short tick rather than per packet: a layer counts as stopped only
//! after [`ACTIVE_WINDOW`](crate::media::layers::ACTIVE_WINDOW) without packets, and a
//! subscriber's wish changes a few times a minute at most. A switch up or down waits for a
//! keyframe of the new layer, asked for here (throttled per layer) until it comes.
//!
//! The same tick tells each simulcast publisher which layers anybody needs
//! ([`needed`]: the subscribers' wishes, a tap's top layer, always the lowest): a layer
//! nobody needed for [`PAUSE_DELAY`](crate::media::layers::PAUSE_DELAY) is switched off at
//! the publisher, a needed one back on at once (`publish_layers`; LiveKit calls it dynacast).

use std::time::{Duration, Instant};

use super::SfuCore;
use crate::{
    api::{ParticipantEvent, PublishLayers, SfuError, TrackKind},
    ids::{ParticipantId, PublicationSlot},
    media::{
        layers::{needed, pick},
        sink::Sink,
    },
};

/// How often layer choices are revisited.
pub(super) const SELECTION_TICK: Duration = Duration::from_millis(250);

impl SfuCore {
    /// `id` wants at most `layer` of `publisher`'s video (`None`: nothing, its tile is
    /// hidden; `Some(u8::MAX)`: the best there is).
    pub(super) fn prefer_layer(
        &mut self,
        now: Instant,
        id: ParticipantId,
        publisher: ParticipantId,
        layer: Option<u8>,
    ) -> Result<(), SfuError> {
        let slot = self.slot(id)?;
        let publisher_id = publisher;
        let publisher = self.slot(publisher)?;
        let publications = &self.participants[publisher.0].publications.clone();
        let by_id = &self.by_id;
        let subscriber = &mut self.participants[slot.0];
        // One wish per publisher still here: bounded by the room's size.
        subscriber
            .layer_wishes
            .retain(|(p, _)| *p != publisher_id && by_id.contains_key(p));
        subscriber.layer_wishes.push((publisher_id, layer));
        for (_, sub) in subscriber.subscriptions.iter_mut() {
            if sub.kind == TrackKind::Video
                && sub.publication.is_some_and(|p| publications.contains(&p))
            {
                sub.wanted = layer;
            }
        }
        self.select_layers(now);
        Ok(())
    }

    /// Brings every video subscription's target layer in line with its wish and what its
    /// publisher sends; asks for the keyframes pending switches wait for.
    pub(super) fn select_layers(&mut self, now: Instant) {
        self.next_selection = now + SELECTION_TICK;
        let mut keyframes: Vec<(PublicationSlot, u8)> = Vec::new();
        for (_, participant) in self.participants.iter_mut() {
            let span = &participant.span;
            for (_, sub) in participant.subscriptions.iter_mut() {
                if sub.kind != TrackKind::Video {
                    continue;
                }
                let Some(publication) = sub.publication else {
                    continue;
                };
                let Some(target) = self.publications.get(publication.0) else {
                    continue;
                };
                let layers = &target.layers;
                let layer = pick(sub.wanted, layers.active(now), layers.len());
                if layer != sub.switch.target() {
                    tracing::debug!(parent: span, publication = %target.id, from = ?sub.switch.target(), to = ?layer, "layer");
                    sub.switch.set_target(layer);
                }
                // A start is asked for by the packets it waits on; a switch while the old
                // layer still flows is asked for here.
                if sub.is_open() && sub.switch.current().is_some() {
                    if let Some(layer) = sub.switch.keyframe_wanted() {
                        keyframes.push((publication, layer));
                    }
                }
            }
        }
        keyframes.sort_unstable_by_key(|(p, l)| (p.0, *l));
        keyframes.dedup();
        for (publication, layer) in keyframes {
            self.want_keyframe(now, publication, layer, None);
        }
        self.ask_publishers(now);
    }

    /// Tells simulcast publishers which layers to send (see the module docs).
    fn ask_publishers(&mut self, now: Instant) {
        let mut asks = Vec::new();
        for (_, publication) in self.publications.iter_mut() {
            if !publication.layers.is_simulcast() {
                continue;
            }
            let top = publication.layers.top();
            let participants = &self.participants;
            let wishes = publication.sinks.iter().map(|sink| match sink {
                Sink::Subscriber {
                    participant,
                    subscription,
                } => participants
                    .get(participant.0)
                    .and_then(|p| p.subscriptions.get(subscription.0))
                    .filter(|s| s.is_open())
                    .and_then(|s| s.wanted),
                Sink::Tap(_) => Some(top),
            });
            let needed = needed(wishes, publication.layers.len());
            if let Some(asked) = publication.publisher_layers.update(needed, now) {
                let active = publication
                    .layers
                    .iter()
                    .enumerate()
                    .filter_map(|(i, l)| Some((l.rid?.to_string(), asked.contains(i as u8))))
                    .collect();
                asks.push((
                    publication.owner_id,
                    PublishLayers {
                        mid: publication.mid.to_string(),
                        active,
                    },
                ));
            }
        }
        for (owner, ask) in asks {
            tracing::debug!(%owner, mid = %ask.mid, active = ?ask.active, "publisher layers");
            self.emit(owner, ParticipantEvent::PublishLayers(ask));
        }
    }
}
