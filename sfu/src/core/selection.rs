//! Which layer each video subscription forwards: the highest the subscriber asked for (its
//! tile's size; nothing for a hidden tile) among the layers its publisher is sending now,
//! as far as the subscriber's connection carries them. With bandwidth estimation on, each
//! subscriber's send-side estimate (str0m's, from transport-wide feedback), less its audio
//! and a share for headers, is split between its videos by [`allocate`] (the active
//! speaker's first; down at once, up after a hold); a video that does not fit at its lowest
//! layer is paused and the subscriber told (`VideoPaused`). str0m's BWE is told what is sent
//! and what everybody would get unconstrained, so that it probes for the difference; with
//! the browser's own estimate (REMB) instead, [`probe`](crate::media::probe) raises the
//! budget by a layer now and then, for the browser to see more and raise its estimate.
//!
//! Re-evaluated on a short tick rather than per packet: a layer counts as stopped only
//! after [`ACTIVE_WINDOW`](crate::media::layers::ACTIVE_WINDOW) without packets, and a
//! subscriber's wish changes a few times a minute at most. A switch up or down waits for a
//! keyframe of the new layer, asked for here (throttled per layer) until it comes.
//!
//! The same tick tells each simulcast publisher which layers anybody needs
//! ([`needed`]: the subscribers' wishes, a tap's top layer, always the lowest): a layer
//! nobody needed for [`PAUSE_DELAY`](crate::media::layers::PAUSE_DELAY) (or ever, since the
//! publication began, without bandwidth estimation) is switched off at the publisher, a
//! needed one back on at once (`publish_layers`; LiveKit calls it dynacast).

use std::time::{Duration, Instant};

use str0m::bwe::Bitrate;

use super::{participant::Downlink, SfuCore};
use crate::{
    api::{BandwidthEstimation, ParticipantEvent, PublishLayers, SfuError, Source, TrackKind},
    ids::{ParticipantId, ParticipantSlot, PublicationSlot},
    media::{
        allocator::{allocate, Track},
        layers::{needed, pick},
        probe::Tick,
        sink::Sink,
        subscription::Allocated,
    },
};

/// How often layer choices are revisited.
pub(super) const SELECTION_TICK: Duration = Duration::from_millis(250);
/// Percent of a subscriber's estimate its video may take, after its audio: RTP headers,
/// RTCP and retransmissions take the rest (str0m's estimate counts whole packets, the
/// layer bitrates only payload).
const BUDGET_SHARE: u64 = 90;
/// How long after joining a subscriber's estimate starts to count.
const BWE_WARMUP: Duration = Duration::from_secs(5);
/// While a subscriber's videos are held below their wish, str0m's BWE is made to probe for
/// more this often.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// Whether a (minimum, desired) pair moved by more than a tenth (str0m's BWE is told only
/// then).
/// The budget to allocate with under the browser's own estimate: the tick's, or a probe's.
fn probe(now: Instant, tick: Tick, downlink: &mut Downlink, span: &tracing::Span) -> u64 {
    let decision = downlink.probe.budget(now, tick);
    if let Some(outcome) = decision.ended {
        tracing::debug!(parent: span, ?outcome, ?tick, "probe ended");
    }
    if decision.started {
        tracing::debug!(parent: span, ?tick, "probe");
        downlink.hysteresis.step_up_now(now);
    }
    decision.budget
}

fn differs(a: (u64, u64), b: (u64, u64)) -> bool {
    let far = |x: u64, y: u64| x.abs_diff(y) * 10 > x.max(y);
    far(a.0, b.0) || far(a.1, b.1)
}

impl SfuCore {
    /// `id` wants at most `layer` of `publisher`'s video from `source` (`None`: nothing,
    /// its tile is hidden; `Some(u8::MAX)`: the best there is).
    pub(super) fn prefer_layer(
        &mut self,
        now: Instant,
        id: ParticipantId,
        publisher: ParticipantId,
        source: Source,
        layer: Option<u8>,
    ) -> Result<(), SfuError> {
        let slot = self.slot(id)?;
        let publisher_id = publisher;
        let publisher = self.slot(publisher)?;
        let publications: Vec<PublicationSlot> = self.participants[publisher.0]
            .publications
            .iter()
            .copied()
            .filter(|p| self.publications[p.0].source == source)
            .collect();
        let by_id = &self.by_id;
        let subscriber = &mut self.participants[slot.0];
        // One wish per source of each publisher still here: bounded by the room's size.
        subscriber
            .layer_wishes
            .retain(|(p, s, _)| !(*p == publisher_id && *s == source) && by_id.contains_key(p));
        subscriber.layer_wishes.push((publisher_id, source, layer));
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

    /// The selection tick: layer bitrates are measured, then layers chosen.
    pub(super) fn selection_tick(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.measured_at);
        self.measured_at = now;
        for (_, publication) in self.publications.iter_mut() {
            publication.layers.measure(elapsed);
        }
        self.select_layers(now);
    }

    /// Brings every video subscription's target layer in line with its wish, what its
    /// publisher sends and what the subscriber's connection carries; asks for the keyframes
    /// pending switches wait for.
    pub(super) fn select_layers(&mut self, now: Instant) {
        self.next_selection = now + SELECTION_TICK;
        let mut keyframes: Vec<(PublicationSlot, u8)> = Vec::new();
        let mut paused: Vec<(ParticipantId, ParticipantId, Source, bool, Option<u64>)> = Vec::new();
        let mode = self.config.bandwidth_estimation;
        let probing = matches!(mode, BandwidthEstimation::SendSide { .. });
        let mut tracks = Vec::new();
        let mut keys = Vec::new();
        let mut rearmed = Vec::new();
        for (slot, participant) in self.participants.iter_mut() {
            // What each video wants (its wish within what its publisher sends) and costs.
            tracks.clear();
            keys.clear();
            let mut audio = 0;
            let speakers = self.rooms.speakers(&participant.room);
            for (key, sub) in participant.subscriptions.iter() {
                let Some(target) = sub.publication.and_then(|p| self.publications.get(p.0)) else {
                    continue;
                };
                let layers = &target.layers;
                if sub.kind == TrackKind::Audio {
                    audio += layers.bitrates(now)[0].unwrap_or(0);
                    continue;
                }
                // A shared screen first (it is shown large), then the active speaker.
                let priority = if target.source == Source::Screen {
                    2
                } else {
                    u8::from(speakers.iter().any(|s| s.id == target.owner_id))
                };
                tracks.push(Track {
                    priority,
                    rates: layers.bitrates(now),
                    max: pick(sub.wanted, layers.active(now), layers.len()),
                });
                keys.push(key);
            }
            // Audio payload plus its packets' headers (small packets: about half again).
            let audio = audio * 3 / 2;
            // The first seconds' estimate says little: str0m's start-up probes need video
            // (with RTX) flowing, and before that it estimates from the audio alone.
            let estimate = participant
                .downlink
                .estimate
                .filter(|_| now.saturating_duration_since(participant.joined_at) >= BWE_WARMUP);
            // Heavy loss reported: no more than what got through (a link that suddenly
            // carries less is seen there before the estimate follows).
            let loss = &participant.downlink.loss;
            let estimate = estimate.map(|e| loss.cap(e));
            let lossy = loss.congested();
            let budget = estimate.map(|e| (e * BUDGET_SHARE / 100).saturating_sub(audio));
            // A track whose wish (or what its publisher sends) changed is allocated afresh:
            // the hold before a step up is for a rising estimate, not for a tile that grew.
            let current: Vec<Option<Option<u8>>> = keys
                .iter()
                .zip(&tracks)
                .map(|(k, track)| {
                    participant.subscriptions[*k]
                        .allocated
                        .filter(|a| a.max == track.max)
                        .map(|a| a.layer)
                })
                .collect();
            let mut plan = allocate(budget.unwrap_or(u64::MAX), &tracks);
            if let (BandwidthEstimation::Receiver, Some(estimate), Some(budget)) =
                (mode, estimate, budget)
            {
                let sending = tracks
                    .iter()
                    .zip(&current)
                    .map(|(track, layer)| track.cost(layer.flatten()))
                    .sum();
                let tick = Tick {
                    estimate,
                    budget,
                    sending,
                    used: plan.used,
                    step: plan.next_step(&tracks),
                    congested: lossy,
                };
                let probed = probe(now, tick, &mut participant.downlink, &participant.span);
                if probed > budget {
                    plan = allocate(probed, &tracks);
                }
            }
            let lowest: Vec<Option<u8>> = tracks.iter().map(Track::lowest).collect();
            let congested = budget.is_some() && lossy;
            let settled = participant.downlink.hysteresis.settle_congested(
                now,
                &current,
                &plan.layers,
                &lowest,
                congested,
            );
            let span = &participant.span;
            for ((track, key), layer) in tracks.iter().zip(&keys).zip(settled) {
                let sub = &mut participant.subscriptions[*key];
                // Nothing measured yet (the publisher is starting): wait for what is wanted.
                let layer = if track.rates.iter().all(Option::is_none) {
                    track.max
                } else {
                    layer
                };
                let allocated = Allocated {
                    layer,
                    max: track.max,
                };
                let was_starved = sub.allocated.is_some_and(|a| a.starved());
                let starved = allocated.starved();
                sub.allocated = Some(allocated);
                let Some(publication) = sub.publication else {
                    continue;
                };
                let publisher = self.publications[publication.0].id;
                if layer != sub.switch.target() {
                    tracing::debug!(parent: span, %publisher, from = ?sub.switch.target(), to = ?layer, budget, "layer");
                    sub.switch.set_target(layer);
                }
                if starved != was_starved && sub.is_open() {
                    let target = &self.publications[publication.0];
                    paused.push((
                        participant.id,
                        target.owner_id,
                        target.source,
                        starved,
                        estimate,
                    ));
                }
                // A start is asked for by the packets it waits on; a switch while the old
                // layer still flows is asked for here.
                if sub.is_open() && sub.switch.current().is_some() {
                    if let Some(layer) = sub.switch.keyframe_wanted() {
                        keyframes.push((publication, layer));
                    }
                }
            }
            if probing {
                // Keep what is sent; probe toward what everybody would get unconstrained.
                // str0m probes when the desired rate rises above its estimate, so while
                // videos are held below their wish it is raised a little every
                // PROBE_INTERVAL (and lowered back on the next tick).
                let desired = plan.optimal + audio;
                let downlink = &mut participant.downlink;
                let bump = plan.used < plan.optimal
                    && estimate.is_some_and(|e| e < desired)
                    && downlink
                        .probed_at
                        .is_none_or(|at| now.saturating_duration_since(at) >= PROBE_INTERVAL);
                let asked = (
                    plan.used + audio,
                    if bump { desired * 21 / 20 } else { desired },
                );
                if bump || downlink.bumped || differs(asked, downlink.asked) {
                    if bump {
                        downlink.probed_at = Some(now);
                    }
                    downlink.bumped = bump;
                    downlink.asked = asked;
                    let _span = participant.span.enter();
                    participant
                        .rtc
                        .bwe()
                        .set_bitrate(Bitrate::bps(asked.0), Bitrate::bps(asked.1.max(asked.0)));
                    // Its timers moved: poll it again.
                    rearmed.push(ParticipantSlot(slot));
                }
            }
        }
        for slot in rearmed {
            self.mark_dirty(slot);
        }
        for (subscriber, publisher, source, paused, estimate) in paused {
            tracing::info!(%subscriber, %publisher, ?source, paused, ?estimate, "video paused for lack of bandwidth");
            self.emit(
                subscriber,
                ParticipantEvent::VideoPaused {
                    publisher,
                    source,
                    paused,
                },
            );
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
