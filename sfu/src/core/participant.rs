//! One participant: its connection (a str0m `Rtc`), its negotiation and liveness, what it
//! publishes and what it receives. Every call into its `Rtc` runs inside its tracing span,
//! so str0m's own log lines say whom they concern.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    time::{Duration, Instant},
};

use slab::Slab;
use str0m::{
    bwe::BweKind,
    media::{Direction, Mid, Rid},
    net::Protocol,
    rtp::RtpPacket,
    Candidate, CandidateKind, Event, Input, Output as RtcOutput, Rtc,
};
use tracing::Span;

use crate::{
    api::{Source, TrackKind},
    core::{
        contain::contain,
        liveness::Liveness,
        negotiation::Negotiation,
        output::{Output, Transmit},
        quality::{Quality, QualityMeter, Sample},
        screen::ScreenShare,
    },
    ids::{ParticipantId, PublicationSlot},
    media::{
        allocator::Hysteresis, capture::CaptureClock, loss_control::LossControl, probe::MediaProbe,
        subscription::Subscription,
    },
};

/// A timeout str0m's pacer wants within this of `now` is given at once (see
/// [`Participant::drain`]).
const PACER_SLACK: Duration = Duration::from_millis(1);
/// Bounds one drain (a send queue holds a few hundred packets at most).
const MAX_PACER_ROUNDS: usize = 4096;
/// How long the pacer's request for a timeout after its last queued packet is put off (see
/// [`Participant::drain`]); str0m's other timers are due no sooner than that request, so
/// they run at most this late.
const PACER_IDLE: Duration = Duration::from_millis(5);

pub struct Participant {
    pub id: ParticipantId,
    pub name: String,
    pub room: String,
    pub span: Span,
    pub rtc: Rtc,
    pub joined_at: Instant,
    /// When str0m next wants `Input::Timeout`.
    pub next_timeout: Instant,
    /// str0m paces this connection (bandwidth estimation is on).
    pub paced: bool,
    /// RTP packets written to it that str0m has not sent yet.
    pub unsent: u32,
    /// A timeout was given since the last drain.
    pub timed_out: bool,
    /// Written to since the last flush: needs a timeout (str0m releases queued RTP only
    /// then) and a poll.
    pub dirty: bool,
    /// DTLS is up: str0m can protect what we write.
    pub connected: bool,
    /// `ParticipantEvent::Failed` was sent; waiting for the signaling side's leave.
    pub failed: bool,
    /// Our current ICE ufrag (changes with an ICE restart).
    pub ufrag: String,
    /// Where str0m sends this participant's media (its nominated path).
    pub sending_to: Option<SocketAddr>,
    /// The browser nominated a path from another address (NAT rebinding): follow it once
    /// the old one has gone quiet.
    pub moved_to: Option<SocketAddr>,
    pub negotiation: Negotiation,
    pub liveness: Liveness,
    pub(crate) publications: Vec<PublicationSlot>,
    /// Incoming SSRC → publication and layer, learnt from the first packet of each.
    pub(crate) ssrcs: Vec<(u32, PublicationSlot, u8)>,
    pub subscriptions: Slab<Subscription>,
    /// The layer this participant wants of each publisher's video, as it last said: kept for
    /// subscriptions that do not exist yet (a tile may be measured before its m-line is
    /// negotiated) and for the ones a renegotiation replaces.
    pub layer_wishes: Vec<(ParticipantId, Source, Option<u8>)>,
    /// Its screen m-line (`core/screen.rs`).
    pub screen: ScreenShare,
    /// Its packets' capture times on our clock, for the sender reports of what it publishes.
    pub capture: CaptureClock,
    /// A moderator muted it: its audio goes nowhere (`moderation.rs`).
    pub muted: bool,
    pub stats: Stats,
    /// Connection quality, both directions, with hysteresis.
    pub quality: QualityMeter,
    pub downlink: Downlink,
    /// The statistics interval being read (see `event`).
    pub(super) interval: Option<Sample>,
}

#[derive(Debug, Default)]
pub struct Stats {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub keyframes_requested: u64,
    /// Datagrams to this participant the socket refused (send buffer full).
    pub dropped: u64,
    pub ice_restarts: u64,
    pub rtt_ms: Option<f64>,
    /// Per outgoing m-line, from the browser's receiver reports / NACKs (str0m egress stats).
    pub lost_outbound: HashMap<Mid, u64>,
    pub nacks: HashMap<Mid, u64>,
    /// (when, bytes in, bytes out) at the previous report, for bitrates; `None` = join.
    pub rate_sample: Option<(Instant, u64, u64)>,
}

/// The send-side bandwidth estimate toward this participant and what the allocator made of
/// it (`core/selection.rs`).
#[derive(Debug, Default)]
pub struct Downlink {
    /// Bits per second, while transport-wide feedback (or the browser's REMB) keeps it
    /// current; `None` before the first and when feedback stops.
    pub estimate: Option<u64>,
    pub hysteresis: Hysteresis,
    /// (minimum, desired) last given to str0m's BWE, bits per second.
    pub asked: (u64, u64),
    /// When the desired rate was last raised to make str0m probe, and whether it still is.
    pub probed_at: Option<Instant>,
    pub bumped: bool,
    /// A ceiling on the estimate from the loss the subscriber's feedback reports.
    pub loss: LossControl,
    /// Room above the browser's own estimate (REMB), found by sending more.
    pub probe: MediaProbe,
}

/// What a poll of one participant's `Rtc` turned up that concerns the rest of the core.
#[derive(Default)]
pub struct Polled {
    pub packets: Vec<RtpPacket>,
    /// Keyframe requests (PLI/FIR) from this participant as a subscriber, by m-line.
    pub keyframe_requests: Vec<Mid>,
    /// m-lines the browser sends on: new publications, with their simulcast RIDs (lowest
    /// layer first; none without simulcast).
    pub added: Vec<(Mid, TrackKind, Vec<Rid>)>,
    /// DTLS came up.
    pub connected: bool,
    /// Media moved to another path (the nominated pair changed).
    pub path_changed: bool,
    /// The connection quality changed (a statistics interval ended).
    pub quality: Option<Quality>,
}

impl Polled {
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
            && self.keyframe_requests.is_empty()
            && self.added.is_empty()
            && !self.connected
            && !self.path_changed
            && self.quality.is_none()
    }
}

impl Participant {
    /// Feeds one input; `false` if str0m refused it.
    pub fn handle_input(&mut self, input: Input) -> bool {
        let _span = self.span.enter();
        let rtc = &mut self.rtc;
        match contain("datagram", || rtc.handle_input(input)) {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::debug!(%error, "input refused");
                false
            }
            // Fuzzing cannot reach str0m's DTLS, SRTP and RTP paths (docs/fuzzing.md): a
            // panic there ends this connection only (the core fails it on its next check).
            Err(_) => {
                self.rtc.disconnect();
                false
            }
        }
    }

    pub fn timeout(&mut self, now: Instant) {
        self.handle_input(Input::Timeout(now));
        self.timed_out = true;
    }

    /// Polls the `Rtc` until it has nothing more to say, and lets its pacer release what it
    /// has queued.
    ///
    /// With bandwidth estimation on, str0m's pacer releases one packet per timeout and then
    /// asks for a timeout a microsecond later (its gate). A tokio timer cannot wait a
    /// microsecond (the driver would send one packet per millisecond), so those timeouts are
    /// given here, at `now` itself: the gate opens with any timeout, and the connection's
    /// clock must not run ahead of the core's (the arrival times in its transport-wide
    /// feedback come from it). They are given while packets we wrote are still queued or the
    /// pacer keeps releasing its own (retransmissions, probes). The gate's request after the
    /// last of them is put off by [`PACER_IDLE`]: the next packet's flush gives a timeout
    /// anyway. Even so the gate costs about one timeout per forwarded packet where the null
    /// pacer needs one per flush, and each walks every stream of the connection: +30 % server
    /// CPU per packet with BWE on (docs/BENCHMARKS.md, "Bandwidth estimation"). Without
    /// BWE a poll is all it takes.
    pub fn drain(&mut self, now: Instant, out: &mut VecDeque<Output>, polled: &mut Polled) {
        let mut sent = self.poll(out, polled);
        if !self.paced {
            // str0m's null pacer sends everything queued at the timeout that precedes a poll.
            self.unsent = 0;
            return;
        }
        for _ in 0..MAX_PACER_ROUNDS {
            // The packets we wrote went out, and nothing else did (a retransmission or a
            // probe may have more to come).
            let ours_done = sent > 0 && sent == self.unsent;
            self.unsent = self.unsent.saturating_sub(sent);
            if sent == 0 && std::mem::take(&mut self.timed_out) {
                // The pacer saw what we wrote and sent none of it: it is not coming (a count
                // left over would keep later drains from putting the gate off).
                self.unsent = 0;
            }
            if self.next_timeout > now + PACER_SLACK {
                break;
            }
            if ours_done && self.next_timeout > now {
                self.next_timeout = now + PACER_IDLE;
                break;
            }
            self.timeout(now);
            sent = self.poll(out, polled);
            if sent == 0 {
                break;
            }
        }
        self.timed_out = false;
    }

    /// Polls the `Rtc` until it has nothing more to say: datagrams go to `out`, what
    /// concerns others to `polled`. Returns how many RTP packets it sent.
    fn poll(&mut self, out: &mut VecDeque<Output>, polled: &mut Polled) -> u32 {
        // A clone (a reference count) so that `self` stays free for the events.
        let span = self.span.clone();
        let _span = span.enter();
        let mut sent = 0;
        loop {
            let rtc = &mut self.rtc;
            let Ok(output) = contain("datagram", || rtc.poll_output()) else {
                self.rtc.disconnect();
                return sent;
            };
            match output {
                Ok(RtcOutput::Transmit(t)) => {
                    // STUN goes wherever a check came from or is due; media and DTLS go
                    // down the nominated path.
                    let stun = t.contents.first().is_some_and(|b| *b < 2);
                    if !stun {
                        // Media now takes another path (an ICE restart onto the relay, a new
                        // public address): what was sent on the old one while it was dying
                        // is lost both ways.
                        if self.sending_to.is_some_and(|old| old != t.destination) {
                            polled.path_changed = true;
                        }
                        self.sending_to = Some(t.destination);
                    }
                    sent += u32::from(is_rtp(&t.contents));
                    out.push_back(Output::Transmit(Transmit {
                        participant: self.id,
                        destination: t.destination,
                        contents: t.contents.into(),
                    }));
                }
                Ok(RtcOutput::Timeout(at)) => {
                    self.next_timeout = at;
                    if let Some(interval) = self.interval.take() {
                        polled.quality = self.quality.interval(&interval);
                    }
                    return sent;
                }
                Ok(RtcOutput::Event(event)) => self.event(event, polled),
                Err(error) => {
                    tracing::warn!(%error, "connection failed");
                    self.rtc.disconnect();
                    return sent;
                }
            }
        }
    }

    fn event(&mut self, event: Event, polled: &mut Polled) {
        match event {
            Event::RtpPacket(packet) => polled.packets.push(packet),
            Event::KeyframeRequest(request) => polled.keyframe_requests.push(request.mid),
            Event::MediaAdded(media) => {
                // The browser sends on it: a publication. (str0m announces the m-lines of
                // the browser's offers only; the screen m-line we offer is published when
                // its answer comes, `rounds.rs`.)
                if matches!(media.direction, Direction::RecvOnly | Direction::SendRecv) {
                    // Our side of the browser's `a=simulcast:send …` is `recv`.
                    let rids = media
                        .simulcast
                        .map(|s| if s.recv.is_empty() { s.send } else { s.recv })
                        .unwrap_or_default()
                        .into_iter()
                        .map(|layer| layer.rid)
                        .collect();
                    polled
                        .added
                        .push((media.mid, TrackKind::from(media.kind), rids));
                }
            }
            Event::Connected => {
                tracing::debug!("media connected");
                self.connected = true;
                self.liveness.connected();
                polled.connected = true;
            }
            Event::IceConnectionStateChange(state) => {
                tracing::debug!(?state, "ICE");
                self.liveness.ice_state(state);
            }
            Event::PeerStats(stats) => {
                self.stats.rtt_ms = stats.rtt.map(|d| d.as_secs_f64() * 1000.0);
                // What got through of what we sent: a ceiling on the estimate.
                if self.connected {
                    let downlink = &mut self.downlink;
                    downlink.loss.interval(
                        stats.timestamp,
                        stats.egress_loss_fraction,
                        stats.peer_bytes_tx,
                        downlink.estimate,
                    );
                    if downlink.loss.congested() {
                        tracing::debug!(loss = ?stats.egress_loss_fraction, ceiling = ?downlink.loss.ceiling(), estimate = ?downlink.estimate, "heavy loss toward this subscriber");
                    }
                }
                // An interval's statistics start with the peer's; the media streams' follow
                // in the same poll (str0m queues them together). Graded once connected.
                // Loss from transport-wide feedback, both ways: this hop only. (Receiver
                // reports would not do on the way out: a subscriber counts the gaps of a
                // lossy publisher's stream, which we forward as they are, as its own.)
                self.interval = self.connected.then_some(Sample {
                    loss: worse(stats.ingress_loss_fraction, stats.egress_loss_fraction),
                    rtt_ms: self.stats.rtt_ms,
                    jitter_ms: None,
                });
            }
            Event::MediaIngressStats(stats) => {
                // Our receiver reports' jitter on its microphone: its uplink. (Its reports
                // on what we send it would add the publishers' jitter to its own.)
                let jitter = self.audio_jitter_ms(stats.mid, stats.jitter);
                if let Some(interval) = &mut self.interval {
                    interval.jitter_ms = worse(interval.jitter_ms, jitter);
                }
            }
            Event::MediaEgressStats(stats) => {
                if let Some(remote) = &stats.remote {
                    self.stats
                        .lost_outbound
                        .insert(stats.mid, remote.packets_lost);
                }
                if let Some(interval) = &mut self.interval {
                    if interval.rtt_ms.is_none() {
                        interval.rtt_ms = stats.rtt.map(|d| d.as_secs_f64() * 1000.0);
                    }
                }
                self.stats.nacks.insert(stats.mid, stats.nacks);
                if self.stats.rtt_ms.is_none() {
                    self.stats.rtt_ms = stats.rtt.map(|d| d.as_secs_f64() * 1000.0);
                }
            }
            Event::EgressBitrateEstimate(BweKind::Twcc {
                estimate,
                can_probe,
            }) => {
                // Without probing (no transport-wide feedback negotiated, or none yet) the
                // figure is the configured start, not a measurement.
                self.downlink.estimate = can_probe.then(|| estimate.as_u64());
            }
            Event::EgressBitrateEstimate(BweKind::Remb { estimate, .. }) => {
                tracing::trace!(estimate = estimate.as_u64(), "REMB");
                self.downlink.estimate = Some(estimate.as_u64());
            }
            Event::Closed => tracing::debug!("connection closed"),
            _ => {}
        }
    }

    /// Jitter in ms from RTP timestamp units, for audio m-lines (48 kHz Opus); video's
    /// jitter mixes in frame pacing and says less about the path.
    fn audio_jitter_ms(&self, mid: Mid, jitter: u32) -> Option<f64> {
        let audio = self
            .rtc
            .media(mid)
            .is_some_and(|m| m.kind() == str0m::media::MediaKind::Audio);
        audio.then(|| f64::from(jitter) / 48.0)
    }

    /// Says goodbye (DTLS close_notify) and queues what that sends.
    pub fn close(&mut self, out: &mut VecDeque<Output>) {
        let _span = self.span.enter();
        let _ = self.rtc.close();
        while let Ok(output) = self.rtc.poll_output() {
            match output {
                RtcOutput::Transmit(t) => out.push_back(Output::Transmit(Transmit {
                    participant: self.id,
                    destination: t.destination,
                    contents: t.contents.into(),
                })),
                RtcOutput::Timeout(_) => break,
                RtcOutput::Event(_) => {}
            }
        }
    }

    /// Stops sending to `addr`: str0m drops the candidate pairs that use it and moves to
    /// the best other path the browser nominated (a tie in priority, as after a NAT
    /// rebinding, would otherwise keep the old one).
    pub fn forget_remote_address(&mut self, addr: SocketAddr) -> bool {
        let _span = self.span.enter();
        let mut forgotten = false;
        // It was learnt from a check (peer-reflexive) or signalled (host).
        for kind in [CandidateKind::PeerReflexive, CandidateKind::Host] {
            let candidate = Candidate::from_parts(
                String::new(),
                1,
                Protocol::Udp,
                0,
                addr,
                kind,
                None,
                None,
                None,
            );
            forgotten |= self.rtc.direct_api().invalidate_candidate(&candidate);
        }
        forgotten
    }

    /// The layer this participant wants of `publisher`'s video from `source` (the best
    /// there is until it says otherwise).
    pub fn layer_wish(&self, publisher: ParticipantId, source: Source) -> Option<u8> {
        self.layer_wishes
            .iter()
            .find(|(p, s, _)| *p == publisher && *s == source)
            .map_or(Some(u8::MAX), |(_, _, layer)| *layer)
    }

    /// The next instant this participant needs the core's attention.
    pub fn deadline(&self) -> Instant {
        let mut at = self.next_timeout;
        if let Some(t) = self.negotiation.deadline() {
            at = at.min(t);
        }
        if !self.failed {
            if let Some(t) = self.liveness.deadline() {
                at = at.min(t);
            }
        }
        at
    }

    /// The publication and layer an incoming SSRC belongs to (learnt from str0m's stream →
    /// m-line and RID mapping on its first packet).
    pub(crate) fn publication_of(
        &mut self,
        ssrc: u32,
        layer_of: impl Fn(PublicationSlot, Mid, Option<Rid>) -> Option<u8>,
    ) -> Option<(PublicationSlot, u8)> {
        if let Some((_, slot, layer)) = self.ssrcs.iter().find(|(s, _, _)| *s == ssrc) {
            return Some((*slot, *layer));
        }
        let (mid, rid) = {
            let mut api = self.rtc.direct_api();
            let stream = api.stream_rx(&ssrc.into())?;
            (stream.mid(), stream.rid())
        };
        let (slot, layer) = self
            .publications
            .iter()
            .find_map(|slot| layer_of(*slot, mid, rid).map(|layer| (*slot, layer)))?;
        self.ssrcs.push((ssrc, slot, layer));
        Some((slot, layer))
    }
}

/// An RTP packet (not RTCP, RFC 5761 §4; not STUN or DTLS, RFC 7983).
fn is_rtp(datagram: &[u8]) -> bool {
    matches!(datagram, [first, second, ..] if first >> 6 == 2 && !(192..=223).contains(second))
}

/// The worse (larger) of two optional figures.
fn worse<T: PartialOrd>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b > a { b } else { a }),
        (a, b) => a.or(b),
    }
}
