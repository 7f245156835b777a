//! The SFU core, sans-IO: rooms, participants and their str0m connections, negotiation and
//! liveness, and the packet path between them — with no socket, no task and no clock.
//!
//! Like str0m's own `Rtc` (and turn-relay's `Relay`), it is driven from outside:
//!
//! - [`SfuCore::handle_command`]`(now, command)`: what the signaling side asks (join, the
//!   answer to an `update`, leave, …), answered at once;
//! - [`SfuCore::handle_datagram`]`(now, source, bytes)`: one datagram from the media socket
//!   ([`SfuCore::handle_datagram_at`] with the kernel's arrival time, when it waited);
//! - [`SfuCore::handle_timeout`]`(now)`: time has reached the last [`Output::Timeout`];
//! - [`SfuCore::poll_output`]: what to do next — a datagram to send, an event for a
//!   participant's signaling, a packet for a tap — until it says [`Output::Timeout`].
//!
//! Every deadline (str0m's timers, the debounce of a negotiation round, the answer to an
//! `update`, a participant's liveness, a throttled keyframe request) is an instant compared
//! with the `now` given, so tests run the core on virtual time (`sfu/tests/core`).
//!
//! The work is split by concept: [`rooms`], [`demux`], [`participant`], [`negotiation`],
//! [`liveness`], [`quality`] and [`sdp`] hold state and rules; `membership.rs` (join, publish, leave),
//! `rounds.rs` (building offers, applying answers, ICE restarts), [`screen`] (screen sharing), `forward.rs` (the packet
//! path, see [`crate::media`]), `selection.rs` (which simulcast layer each subscription
//! gets), `speakers.rs` (who speaks in each room), `moderation.rs` (removing, muting, ending)
//! and `report.rs` put them together.

pub(crate) mod demux;
pub mod liveness;
pub mod negotiation;
pub mod output;
pub(crate) mod participant;
pub mod quality;
pub(crate) mod rooms;
pub mod screen;
pub mod sdp;

mod contain;
mod forward;
mod membership;
mod moderation;
mod report;
mod rounds;
mod selection;
mod speakers;

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    time::{Duration, Instant},
};

use slab::Slab;
use str0m::{
    net::{Protocol, Receive},
    Input,
};

use crate::{
    api::{
        IceCandidate, JoinAnswer, JoinOptions, Moderation, ModeratorRight, ParticipantEvent,
        SfuConfig, SfuError, Source, TrackKind,
    },
    ids::{IdGen, ParticipantId, ParticipantSlot, Round, TapId},
    media::{fanout::Tap, publication::Publication},
    report::RoomsReport,
};
use contain::contain;
use demux::{Demux, Route};
use liveness::Verdict;
pub use membership::AUDIO_REPORT_INTERVAL;
pub use output::{Output, TapOutput, Transmit};
use participant::{Participant, Polled};
use rooms::Rooms;

/// With nobody to serve, the core still asks to be woken this often (nothing is due, but a
/// driver should not sleep forever on a stale instant).
const IDLE_WAKE: Duration = Duration::from_secs(1);
/// A participant whose browser nominated a path from a new address is moved to it once
/// nothing has come from the old address for this long (NAT rebinding). The old path
/// still carrying traffic means the new one is not a move (or is a replayed check).
const REBIND_SILENCE: Duration = Duration::from_secs(1);

/// What the signaling side asks of the media plane.
#[derive(Debug)]
pub enum Command {
    /// `id` is made by the caller (so that later commands can name the participant before
    /// this one is answered); `offer` is the browser's SDP.
    Join {
        id: ParticipantId,
        room: String,
        name: String,
        offer: String,
        options: JoinOptions,
    },
    /// The join answer reached the browser: server offers may start.
    Ready {
        id: ParticipantId,
    },
    /// The browser's answer to `update` `round`, or why there is none.
    Answer {
        id: ParticipantId,
        round: Round,
        answer: Result<String, String>,
    },
    Candidate {
        id: ParticipantId,
        candidate: IceCandidate,
    },
    /// The browser asks for an ICE restart (its path looks broken from its side).
    Restart {
        id: ParticipantId,
    },
    /// Leave the room (also on disconnect). Idempotent.
    Leave {
        id: ParticipantId,
    },
    /// `id` wants at most `layer` of `publisher`'s video from `source`: 0 the lowest,
    /// `u8::MAX` the best there is, `None` nothing (its tile is hidden).
    PreferLayer {
        id: ParticipantId,
        publisher: ParticipantId,
        source: Source,
        layer: Option<u8>,
    },
    /// `id`'s page starts (`on`) or stops sharing its screen (`core/screen.rs`).
    Share {
        id: ParticipantId,
        on: bool,
    },
    /// Attach a tap to `publisher`'s track of `kind`.
    AttachTap {
        publisher: ParticipantId,
        kind: TrackKind,
    },
    DetachTap {
        tap: TapId,
    },
    /// The tap's consumer lost frames (or has none to start from): ask for a keyframe.
    TapKeyframe {
        tap: TapId,
    },
    /// `by` moderates its room (`moderation.rs`).
    Moderate {
        by: ParticipantId,
        action: Moderation,
        right: ModeratorRight,
    },
    Report,
}

#[derive(Debug)]
pub enum Reply {
    Joined(JoinAnswer),
    Done,
    Tap(TapId),
    Report(Box<RoomsReport>),
}

#[derive(Debug, Default)]
struct Totals {
    joins: u64,
    leaves: u64,
    forwarded_packets: u64,
    forwarded_bytes: u64,
    dropped_packets: u64,
    keyframe_requests_sent: u64,
    ice_restarts: u64,
}

/// What the core holds, for leak checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inventory {
    pub rooms: usize,
    pub participants: usize,
    pub publications: usize,
    pub taps: usize,
    /// No address or ufrag is remembered.
    pub demux_empty: bool,
}

pub struct SfuCore {
    config: SfuConfig,
    /// Our host candidate, and the destination str0m is told datagrams arrived at.
    local: SocketAddr,
    ids: IdGen,
    participants: Slab<Participant>,
    by_id: HashMap<ParticipantId, ParticipantSlot>,
    rooms: Rooms,
    demux: Demux,
    publications: Slab<Publication>,
    taps: Slab<Tap>,
    outputs: VecDeque<Output>,
    /// Participants written to since the last flush.
    dirty: Vec<ParticipantSlot>,
    /// Reused between polls (its vectors keep their capacity).
    polled: Polled,
    totals: Totals,
    started: Instant,
    /// The latest instant given; str0m needs time to never go back.
    now: Instant,
    /// When layer choices are next revisited.
    next_selection: Instant,
    /// When layer bitrates were last measured.
    measured_at: Instant,
    /// When speech levels are next scored.
    next_speakers: Instant,
}

impl SfuCore {
    /// `local` is the media socket's announced address; `seed` makes ids unpredictable.
    pub fn new(config: SfuConfig, local: SocketAddr, seed: u64, now: Instant) -> Self {
        SfuCore {
            ids: IdGen::new(config.shard, seed),
            config,
            local,
            participants: Slab::new(),
            by_id: HashMap::new(),
            rooms: Rooms::default(),
            demux: Demux::default(),
            publications: Slab::new(),
            taps: Slab::new(),
            outputs: VecDeque::new(),
            dirty: Vec::new(),
            polled: Polled::default(),
            totals: Totals::default(),
            started: now,
            now,
            next_selection: now,
            measured_at: now,
            next_speakers: now,
        }
    }

    pub fn config(&self) -> &SfuConfig {
        &self.config
    }

    pub fn media_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn handle_command(&mut self, now: Instant, command: Command) -> Result<Reply, SfuError> {
        let now = self.advance(now);
        match command {
            Command::Join {
                id,
                room,
                name,
                offer,
                options,
            } => self
                .join(now, id, room, name, offer, options)
                .map(Reply::Joined),
            Command::Ready { id } => {
                let slot = self.slot(id)?;
                self.participants[slot.0].negotiation.ready(now);
                Ok(Reply::Done)
            }
            Command::Answer { id, round, answer } => {
                if let Ok(slot) = self.slot(id) {
                    self.answer(now, slot, round, answer);
                }
                Ok(Reply::Done)
            }
            Command::Candidate { id, candidate } => {
                let slot = self.slot(id)?;
                let rtc = &mut self.participants[slot.0].rtc;
                if contain("candidate", || rtc.add_remote_candidate(candidate.0)).is_err() {
                    rtc.disconnect();
                }
                self.mark_dirty(slot);
                Ok(Reply::Done)
            }
            Command::Restart { id } => {
                let slot = self.slot(id)?;
                self.participants[slot.0].liveness.restart_requested();
                self.check_liveness(slot, now);
                Ok(Reply::Done)
            }
            Command::Leave { id } => {
                if let Ok(slot) = self.slot(id) {
                    self.leave(now, slot);
                }
                Ok(Reply::Done)
            }
            Command::AttachTap { publisher, kind } => {
                self.attach_tap(now, publisher, kind).map(Reply::Tap)
            }
            Command::TapKeyframe { tap } => {
                self.tap_keyframe(now, tap);
                Ok(Reply::Done)
            }
            Command::DetachTap { tap } => {
                self.detach_tap(tap);
                Ok(Reply::Done)
            }
            Command::PreferLayer {
                id,
                publisher,
                source,
                layer,
            } => self
                .prefer_layer(now, id, publisher, source, layer)
                .map(|()| Reply::Done),
            Command::Share { id, on } => self.share(now, id, on).map(|()| Reply::Done),
            Command::Moderate { by, action, right } => {
                self.moderate(now, by, action, right).map(|()| Reply::Done)
            }
            Command::Report => Ok(Reply::Report(Box::new(self.report(now)))),
        }
    }

    /// One datagram that arrived on the media socket from `source`.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, datagram: &[u8]) {
        self.handle_datagram_at(now, now, source, datagram);
    }

    /// A datagram read at `now` that arrived at `arrived` (the kernel's stamp): str0m's
    /// transport-wide feedback and receive statistics get the arrival time, everything
    /// else the core's clock.
    pub fn handle_datagram_at(
        &mut self,
        now: Instant,
        arrived: Instant,
        source: SocketAddr,
        datagram: &[u8],
    ) {
        let now = self.advance(now);
        let Ok(receive) = Receive::new(Protocol::Udp, source, self.local, datagram) else {
            return;
        };
        let input = Input::Receive(arrived.min(now), receive);
        let slot = match self.demux.route(source, datagram, now) {
            Route::Known(slot) => slot,
            Route::Check { slot, nominating } => {
                // A new address: only a check that this participant's connection accepts
                // (ufrag and message integrity) opens it.
                let participant = &mut self.participants[slot.0];
                if !participant.rtc.accepts(&input) {
                    tracing::trace!(%source, "check refused");
                    return;
                }
                self.demux.learn(source, slot, now);
                if nominating
                    && participant.connected
                    && participant.sending_to.is_some_and(|to| to != source)
                {
                    tracing::debug!(parent: &participant.span, %source, "nominated from a new address");
                    participant.moved_to = Some(source);
                }
                slot
            }
            Route::Unknown => {
                tracing::trace!(%source, "datagram for no participant");
                return;
            }
        };
        let participant = &mut self.participants[slot.0];
        if participant.handle_input(input) {
            participant.liveness.received(now);
        }
        self.poll_participant(slot, now);
    }

    /// Time has passed: str0m's timers, negotiation rounds and their deadlines, liveness,
    /// throttled keyframe requests.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        let due: Vec<ParticipantSlot> = self
            .participants
            .iter()
            .filter(|(_, p)| p.deadline() <= now)
            .map(|(slot, _)| ParticipantSlot(slot))
            .collect();
        for slot in due {
            let Some(participant) = self.participants.get_mut(slot.0) else {
                continue;
            };
            if participant.next_timeout <= now {
                participant.timeout(now);
                self.poll_participant(slot, now);
            }
            let Some(participant) = self.participants.get_mut(slot.0) else {
                continue;
            };
            if let Some(overdue) = participant.negotiation.take_overdue(now) {
                tracing::warn!(parent: &participant.span, round = %overdue.round, "update not answered in time");
                self.fail(slot, "update not answered in time");
                continue;
            }
            if let Some(restart_ice) = participant.negotiation.take_due(now) {
                self.start_round(now, slot, restart_ice);
            }
            self.check_liveness(slot, now);
        }
        self.poll_keyframe_throttles(now);
        if now >= self.next_selection {
            self.selection_tick(now);
        }
        if now >= self.next_speakers {
            self.rank_speakers(now);
        }
    }

    /// What to do next. Datagrams written during the last inputs are released here: each
    /// participant written to gets one timeout (str0m sends queued RTP only then) and is
    /// polled, once for the whole batch.
    pub fn poll_output(&mut self) -> Output {
        if self.outputs.is_empty() {
            self.flush();
        }
        if let Some(output) = self.outputs.pop_front() {
            return output;
        }
        Output::Timeout(self.deadline())
    }

    /// The socket refused a datagram for `participant` (send buffer full).
    pub fn datagram_dropped(&mut self, participant: ParticipantId) {
        self.totals.dropped_packets += 1;
        if let Ok(slot) = self.slot(participant) {
            self.participants[slot.0].stats.dropped += 1;
        }
    }

    /// Rooms and participants held.
    pub fn counts(&self) -> (usize, usize) {
        (self.rooms.len(), self.participants.len())
    }

    pub fn inventory(&self) -> Inventory {
        Inventory {
            rooms: self.rooms.len(),
            participants: self.participants.len(),
            publications: self.publications.len(),
            taps: self.taps.len(),
            demux_empty: self.demux.is_empty(),
        }
    }

    /// Leaves everyone (the server is stopping): their connections say goodbye.
    pub fn shutdown(&mut self) {
        let now = self.now;
        let slots: Vec<ParticipantSlot> = self
            .participants
            .iter()
            .map(|(slot, _)| ParticipantSlot(slot))
            .collect();
        for slot in slots {
            self.leave(now, slot);
        }
    }

    fn advance(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.now
    }

    fn slot(&self, id: ParticipantId) -> Result<ParticipantSlot, SfuError> {
        self.by_id.get(&id).copied().ok_or(SfuError::NotJoined)
    }

    fn emit(&mut self, participant: ParticipantId, event: ParticipantEvent) {
        self.outputs.push_back(Output::Event { participant, event });
    }

    fn mark_dirty(&mut self, slot: ParticipantSlot) {
        if let Some(participant) = self.participants.get_mut(slot.0) {
            if !participant.dirty {
                participant.dirty = true;
                self.dirty.push(slot);
            }
        }
    }

    fn flush(&mut self) {
        let now = self.now;
        while let Some(slot) = self.dirty.pop() {
            if let Some(participant) = self.participants.get_mut(slot.0) {
                participant.dirty = false;
                participant.timeout(now);
                self.poll_participant(slot, now);
            }
        }
    }

    /// Polls one participant's connection and acts on what it says.
    fn poll_participant(&mut self, slot: ParticipantSlot, now: Instant) {
        let Some(participant) = self.participants.get_mut(slot.0) else {
            return;
        };
        let mut polled = std::mem::take(&mut self.polled);
        participant.drain(now, &mut self.outputs, &mut polled);
        if !polled.is_empty() {
            for (mid, kind, rids) in polled.added.drain(..) {
                self.publish(now, slot, mid, kind, rids);
            }
            if std::mem::take(&mut polled.connected) {
                self.subscriber_connected(now, slot);
            }
            if std::mem::take(&mut polled.path_changed) {
                self.path_changed(now, slot);
            }
            if let Some(quality) = polled.quality.take() {
                let participant = &self.participants[slot.0];
                tracing::info!(parent: &participant.span, ?quality, "connection quality");
                let room = participant.room.clone();
                self.broadcast_participants(&room);
            }
            for mid in polled.keyframe_requests.drain(..) {
                self.keyframe_request_from_subscriber(now, slot, mid);
            }
            for packet in polled.packets.drain(..) {
                self.forward(now, slot, packet);
            }
        }
        self.polled = polled;
        self.check_liveness(slot, now);
    }

    fn check_liveness(&mut self, slot: ParticipantSlot, now: Instant) {
        let Some(participant) = self.participants.get_mut(slot.0) else {
            return;
        };
        if participant.failed {
            return;
        }
        if let Some(new) = participant.moved_to {
            match participant.sending_to {
                Some(old) if old != new => {
                    let quiet = self
                        .demux
                        .last_seen(old)
                        .is_none_or(|seen| now >= seen + REBIND_SILENCE);
                    if quiet {
                        tracing::info!(parent: &participant.span, %old, %new, "address changed; following it");
                        participant.forget_remote_address(old);
                        participant.moved_to = None;
                        self.mark_dirty(slot);
                        return self.check_liveness(slot, now);
                    }
                }
                _ => participant.moved_to = None,
            }
        }
        if !participant.rtc.is_alive() {
            self.fail(slot, "connection closed");
            return;
        }
        match participant.liveness.verdict(now) {
            Verdict::Fine => {}
            Verdict::RestartIce => {
                tracing::info!(parent: &participant.span, "media path lost: restarting ICE");
                participant.negotiation.request_ice_restart(now);
            }
            Verdict::Failed(reason) => self.fail(slot, reason),
        }
    }

    /// The participant's media is given up on: its signaling gets `Failed` (once) and is
    /// expected to leave.
    fn fail(&mut self, slot: ParticipantSlot, reason: &str) {
        let Some(participant) = self.participants.get_mut(slot.0) else {
            return;
        };
        if participant.failed {
            return;
        }
        participant.failed = true;
        tracing::info!(parent: &participant.span, reason, "media connection lost");
        let id = participant.id;
        self.emit(id, ParticipantEvent::Failed);
    }

    fn deadline(&self) -> Instant {
        let participants = self.participants.iter().map(|(_, p)| p.deadline());
        let throttles = self
            .publications
            .iter()
            .filter_map(|(_, p)| p.layers.keyframe_deadline());
        let busy = !self.publications.is_empty();
        let ticks = [self.next_selection, self.next_speakers]
            .into_iter()
            .filter(|_| busy);
        participants
            .chain(throttles)
            .chain(ticks)
            .min()
            .unwrap_or(self.now + IDLE_WAKE)
            .max(self.now)
    }
}
