//! The media loop: one thread owns the UDP socket and every participant's sans-IO [`Rtc`]
//! (str0m, RTP mode), and moves packets between them. Nothing here is shared: the signaling
//! side talks to it with [`Command`]s (see [`crate::Sfu`]), and the only tasks besides the
//! loop are those waiting for a browser's answer to an `update`.
//!
//! Packet path: datagram → `Rtc::handle_input` of the participant owning the source address
//! (learnt from its first STUN check) → `Event::RtpPacket` → for every open subscription of
//! that publication: `StreamTx::write_rtp` on the subscriber's `Rtc` (str0m sets SSRC,
//! extension ids and MID; we map the payload type and rebase the sequence number) → after
//! the read batch, each touched subscriber gets one `Input::Timeout` (str0m only releases
//! written packets on a timeout) and is polled: SRTP-protected datagrams go to the socket.

use std::{
    collections::{BTreeMap, HashMap},
    io::ErrorKind,
    net::SocketAddr,
    sync::{
        atomic::{AtomicI64, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde::Serialize;
use str0m::{
    change::{SdpAnswer, SdpOffer, SdpPendingOffer},
    format::{Codec, PayloadParams},
    media::{Direction, KeyframeRequestKind, MediaKind, Mid},
    net::{Protocol, Receive},
    rtp::{ExtensionValues, RtpPacket, RtpWrite},
    Candidate, Event, IceConnectionState, Input, Output, Rtc,
};
use tokio::{
    net::UdpSocket,
    sync::{mpsc, oneshot},
};

use crate::{
    conference::{
        Joined, ParticipantEvent, ParticipantId, ParticipantInfo, ParticipantReport, RoomReport,
        RoomsReport, SfuConfig, SfuError,
    },
    demux::stun_username_ufrag,
    forwarding::{LossCounter, PtMap, SeqRebase},
    keyframe::{starts_keyframe, KeyframeThrottle, VideoCodec},
    negotiation::{receive_only_answer, Negotiation, OurDirection},
    net::Outbox,
};

/// A publisher's audio and video m-lines appear together; other changes a few ms apart are
/// folded into one offer.
const NEGOTIATION_DEBOUNCE: Duration = Duration::from_millis(40);
/// ICE `Disconnected` this long (after str0m's own consent checks failed) = a vanished peer.
const ICE_GRACE: Duration = Duration::from_secs(3);
/// Nothing received from a connected browser for this long = a vanished peer. A browser
/// sends RTCP at least every second while it receives media, and a STUN consent check every
/// 4-6 s even when alone; str0m's own ICE verdict takes over 15 s.
const SILENCE_LIMIT: Duration = Duration::from_secs(8);
/// Datagrams read before the touched subscribers are flushed.
const READ_BATCH: usize = 64;
/// The loop wakes at least this often (keyframe-request throttle, ICE grace).
const MAX_SLEEP: Duration = Duration::from_millis(100);
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// Largest RTP payload forwarded. Browsers send ≤ ~1200-byte packets; str0m builds outgoing
/// datagrams in a 2000-byte buffer and panics on more, so a hostile publisher's oversized
/// payload must stop here.
const MAX_FORWARDED_PAYLOAD: usize = 1400;
/// Media sections accepted in a join offer (a browser sends audio + video, maybe a screen).
const MAX_OFFER_MEDIA: usize = 4;
/// Source addresses remembered per participant (one per ICE candidate pair it uses).
const MAX_ADDRS_PER_PARTICIPANT: usize = 8;

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Audio,
    Video,
}

impl From<MediaKind> for Kind {
    fn from(kind: MediaKind) -> Self {
        match kind {
            MediaKind::Audio => Kind::Audio,
            MediaKind::Video => Kind::Video,
        }
    }
}

impl From<Kind> for MediaKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Audio => MediaKind::Audio,
            Kind::Video => MediaKind::Video,
        }
    }
}

/// What the signaling side asks of the loop.
pub(crate) enum Command {
    Join {
        room: String,
        name: String,
        offer: String,
        reply: oneshot::Sender<Result<Joined, SfuError>>,
    },
    Ready {
        id: String,
    },
    Candidate {
        id: String,
        candidate: String,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    Leave {
        id: String,
        reply: oneshot::Sender<()>,
    },
    /// The browser's answer to `update` round `round` (or why there is none).
    Answer {
        key: Key,
        round: u64,
        answer: Result<String, String>,
    },
    Report {
        reply: oneshot::Sender<RoomsReport>,
    },
}

/// Figures the façade reads without a round trip to the loop.
#[derive(Default)]
pub(crate) struct Shared {
    pub rooms: AtomicUsize,
    pub participants: AtomicUsize,
    /// Tasks waiting for an `update` answer.
    pub update_tasks: AtomicI64,
}

pub(crate) type Key = u64;
type PubId = u64;
type SubId = u64;

#[derive(Default)]
struct Totals {
    joins: u64,
    leaves: u64,
    forwarded_packets: u64,
    forwarded_bytes: u64,
    dropped_packets: u64,
    keyframe_requests_sent: u64,
}

#[derive(Default)]
struct Stats {
    packets_in: u64,
    bytes_in: u64,
    packets_out: u64,
    bytes_out: u64,
    keyframes_requested: u64,
    /// Datagrams to this participant the socket refused (send buffer full).
    dropped: u64,
    rtt_ms: Option<f64>,
    /// Per outgoing m-line, from the browser's receiver reports / NACKs (str0m egress stats).
    lost_outbound: HashMap<Mid, u64>,
    nacks: HashMap<Mid, u64>,
    /// (when, bytes in, bytes out) at the previous report, for bitrates; `None` = join.
    rate_sample: Option<(Instant, u64, u64)>,
}

struct Participant {
    key: Key,
    id: ParticipantId,
    name: String,
    room: String,
    rtc: Rtc,
    events: mpsc::UnboundedSender<ParticipantEvent>,
    joined_at: Instant,
    next_timeout: Instant,
    /// In `Engine::dirty`: written to, must get a timeout and be polled.
    dirty: bool,
    /// DTLS is up: str0m can protect what we write.
    connected: bool,
    ice_lost_since: Option<Instant>,
    /// When the last datagram from this browser arrived.
    last_received: Instant,
    /// `ParticipantEvent::Failed` was sent; waiting for the signaling side's `leave`.
    failed: bool,
    negotiation: Negotiation,
    negotiate_at: Option<Instant>,
    /// The offer in flight and its round number.
    pending: Option<(SdpPendingOffer, u64)>,
    round: u64,
    publications: Vec<PubId>,
    /// Incoming SSRC → publication, learnt from the first packet.
    ssrc_publications: Vec<(u32, PubId)>,
    subscriptions: Vec<Subscription>,
    addrs: Vec<SocketAddr>,
    ufrag: String,
    stats: Stats,
}

struct Publication {
    owner: Key,
    owner_id: ParticipantId,
    mid: Mid,
    kind: Kind,
    /// The payload type of the last packet and what it is.
    last_pt: Option<(u8, Option<PayloadParams>, VideoCodec)>,
    keyframes: KeyframeThrottle,
    /// Subscriptions fed by this publication.
    sinks: Vec<(Key, SubId)>,
    loss: LossCounter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubState {
    /// Wanted; goes into the next offer.
    ToOpen,
    Negotiating(Mid),
    Open(Mid),
    /// Its publication ended; the m-line is stopped in the next offer.
    ToStop(Mid),
    Stopping(Mid),
}

struct Subscription {
    id: SubId,
    publication: PubId,
    kind: Kind,
    state: SubState,
    seq: SeqRebase,
    pts: PtMap,
    /// Video starts on a keyframe: what comes before cannot be decoded.
    waiting_keyframe: bool,
}

pub(crate) struct Engine {
    config: SfuConfig,
    socket: UdpSocket,
    /// Our host candidate (and the destination str0m is told datagrams arrived at).
    local: SocketAddr,
    participants: HashMap<Key, Participant>,
    ids: HashMap<ParticipantId, Key>,
    rooms: HashMap<String, Vec<Key>>,
    publications: HashMap<PubId, Publication>,
    by_addr: HashMap<SocketAddr, Key>,
    /// Our ICE ufrag of each connection: a datagram from an unknown address is looked up by
    /// the USERNAME of its STUN check, never matched against every connection.
    by_ufrag: HashMap<String, Key>,
    dirty: Vec<Key>,
    /// Datagrams of this pass, sent together at its end.
    outbox: Outbox,
    next_id: u64,
    seed: u64,
    /// For the answer tasks; weak so that the loop ends when the `Sfu` (the only strong
    /// sender) is dropped.
    commands: mpsc::WeakUnboundedSender<Command>,
    shared: Arc<Shared>,
    totals: Totals,
    started: Instant,
}

fn codec_of(params: &PayloadParams) -> VideoCodec {
    match params.spec().codec {
        Codec::Vp8 => VideoCodec::Vp8,
        Codec::Vp9 => VideoCodec::Vp9,
        Codec::H264 => VideoCodec::H264,
        _ => VideoCodec::Other,
    }
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

/// Sends one datagram; a full socket buffer drops it (str0m keeps video in its resend
/// buffer, so a NACK can still repair it).
fn transmit(
    socket: &UdpSocket,
    contents: &[u8],
    to: SocketAddr,
    stats: &mut Stats,
    totals: &mut Totals,
) {
    match socket.try_send_to(contents, to) {
        Ok(_) => {}
        Err(error) if error.kind() == ErrorKind::WouldBlock => {
            stats.dropped += 1;
            totals.dropped_packets += 1;
        }
        Err(error) => tracing::debug!(%to, %error, "sfu: send failed"),
    }
}

impl Engine {
    pub(crate) fn new(
        config: SfuConfig,
        socket: UdpSocket,
        local: SocketAddr,
        commands: mpsc::WeakUnboundedSender<Command>,
        shared: Arc<Shared>,
        seed: u64,
    ) -> Self {
        Engine {
            config,
            socket,
            local,
            participants: HashMap::new(),
            ids: HashMap::new(),
            rooms: HashMap::new(),
            publications: HashMap::new(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            dirty: Vec::new(),
            outbox: Outbox::default(),
            next_id: 1,
            seed,
            commands,
            shared,
            totals: Totals::default(),
            started: Instant::now(),
        }
    }

    /// The loop: commands, datagrams and timeouts, until the [`crate::Sfu`] is dropped.
    pub(crate) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut buf = vec![0u8; 2048];
        loop {
            let now = Instant::now();
            let deadline = self.deadline(now);
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => break,
                },
                ready = self.socket.readable() => {
                    if ready.is_ok() {
                        self.read_batch(&mut buf);
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
            self.drive(Instant::now());
        }
        for key in self.participants.keys().copied().collect::<Vec<_>>() {
            self.remove(key);
        }
        self.send_outbox();
    }

    fn random(&mut self) -> u64 {
        self.next_id += 1;
        let mut x = self.seed ^ self.next_id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x
    }

    fn deadline(&self, now: Instant) -> Instant {
        let mut deadline = now + MAX_SLEEP;
        for p in self.participants.values() {
            deadline = deadline.min(p.next_timeout);
            if let Some(at) = p.negotiate_at {
                deadline = deadline.min(at);
            }
        }
        deadline.max(now)
    }

    fn command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Join {
                room,
                name,
                offer,
                reply,
            } => {
                let result = self.join(room, name, offer, now);
                if let Err(Ok(joined)) = reply.send(result) {
                    // The signaling side gave up waiting: undo.
                    self.leave(&joined.id);
                }
            }
            Command::Ready { id } => {
                if let Some(p) = self
                    .ids
                    .get(id.as_str())
                    .and_then(|k| self.participants.get_mut(k))
                {
                    if p.negotiation.request_and_join() {
                        p.negotiate_at = Some(now);
                    }
                }
            }
            Command::Candidate {
                id,
                candidate,
                reply,
            } => {
                let _ = reply.send(self.add_candidate(&id, &candidate));
            }
            Command::Leave { id, reply } => {
                self.leave(&id);
                let _ = reply.send(());
            }
            Command::Answer { key, round, answer } => self.answer(key, round, answer, now),
            Command::Report { reply } => {
                let _ = reply.send(self.report(now));
            }
        }
    }

    fn join(
        &mut self,
        room: String,
        name: String,
        offer: String,
        now: Instant,
    ) -> Result<Joined, SfuError> {
        if self.rooms.get(&room).map_or(0, Vec::len) >= self.config.room_capacity {
            return Err(SfuError::RoomFull);
        }
        let media = offer.lines().filter(|l| l.starts_with("m=")).count();
        if media > MAX_OFFER_MEDIA {
            return Err(SfuError::Media(format!(
                "the offer has {media} media sections; at most {MAX_OFFER_MEDIA} are accepted"
            )));
        }
        let offer =
            SdpOffer::from_sdp_string(&offer).map_err(|e| SfuError::Media(e.to_string()))?;
        // Only codecs whose keyframes we recognise: video starts on a keyframe per subscriber.
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .set_stats_interval(Some(STATS_INTERVAL))
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_vp9(true)
            .enable_h264(true)
            .build(now);
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        let candidate =
            Candidate::host(self.local, "udp").map_err(|e| SfuError::Media(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| SfuError::Media(e.to_string()))?;
        // Our state must say what the answer says: set_direction changes the session at once
        // (the change list itself is dropped: the answer already told the browser).
        let (answer, receive_only) = receive_only_answer(&answer.to_sdp_string());
        {
            let mut api = rtc.sdp_api();
            for (mid, direction) in receive_only {
                let direction = match direction {
                    OurDirection::RecvOnly => Direction::RecvOnly,
                    OurDirection::Inactive => Direction::Inactive,
                };
                api.set_direction(Mid::from(mid.as_str()), direction);
            }
        }

        let key = self.random();
        let id: ParticipantId = format!("p{:012x}", key & 0xffff_ffff_ffff).into();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        self.participants.insert(
            key,
            Participant {
                key,
                id: id.clone(),
                name: name.clone(),
                room: room.clone(),
                rtc,
                events: events_tx,
                joined_at: now,
                next_timeout: now,
                dirty: false,
                connected: false,
                ice_lost_since: None,
                last_received: now,
                failed: false,
                negotiation: Negotiation::default(),
                negotiate_at: None,
                pending: None,
                round: 0,
                publications: Vec::new(),
                ssrc_publications: Vec::new(),
                subscriptions: Vec::new(),
                addrs: Vec::new(),
                ufrag: ufrag.clone(),
                stats: Stats::default(),
            },
        );
        self.ids.insert(id.clone(), key);
        self.by_ufrag.insert(ufrag, key);
        self.rooms.entry(room.clone()).or_default().push(key);
        // Its m-lines become publications (MediaAdded) once its media connects; `publish`
        // then tells the room again.
        self.poll(key, now);
        self.totals.joins += 1;
        self.update_counts();
        let participants = self.room_info(&room);
        for other in self
            .members(&room)
            .filter(|k| *k != key)
            .collect::<Vec<_>>()
        {
            if let Some(p) = self.participants.get(&other) {
                let _ = p
                    .events
                    .send(ParticipantEvent::Participants(participants.clone()));
            }
        }
        tracing::info!(%room, %id, %name, "sfu: joined");
        Ok(Joined {
            id,
            answer,
            participants,
            events: events_rx,
        })
    }

    fn add_candidate(&mut self, id: &str, candidate: &str) -> Result<(), SfuError> {
        let key = *self.ids.get(id).ok_or(SfuError::NotJoined)?;
        let p = self.participants.get_mut(&key).ok_or(SfuError::NotJoined)?;
        let text = candidate.trim().trim_start_matches("a=");
        let candidate =
            Candidate::from_sdp_string(text).map_err(|e| SfuError::Media(e.to_string()))?;
        p.rtc.add_remote_candidate(candidate);
        self.mark_dirty(key);
        Ok(())
    }

    fn leave(&mut self, id: &str) {
        let Some(&key) = self.ids.get(id) else {
            return;
        };
        let room = self.remove(key);
        self.totals.leaves += 1;
        self.update_counts();
        if let Some(room) = room {
            self.broadcast_participants(&room);
            tracing::info!(%room, %id, "sfu: left");
        }
    }

    /// Drops a participant: its publications end (every subscriber renegotiates), its
    /// subscriptions stop feeding, its `Rtc` says goodbye (DTLS close_notify) and is dropped.
    fn remove(&mut self, key: Key) -> Option<String> {
        let mut p = self.participants.remove(&key)?;
        self.ids.remove(&p.id);
        if let Some(members) = self.rooms.get_mut(&p.room) {
            members.retain(|k| *k != key);
            if members.is_empty() {
                self.rooms.remove(&p.room);
            }
        }
        for addr in &p.addrs {
            self.by_addr.remove(addr);
        }
        self.by_ufrag.remove(&p.ufrag);
        let now = Instant::now();
        let mut affected = Vec::new();
        for pub_id in &p.publications {
            if let Some(publication) = self.publications.remove(pub_id) {
                affected.extend(publication.sinks.iter().map(|(k, _)| *k));
            }
        }
        for sub in &p.subscriptions {
            if let Some(publication) = self.publications.get_mut(&sub.publication) {
                publication.sinks.retain(|(k, _)| *k != key);
            }
        }
        affected.sort_unstable();
        affected.dedup();
        for other in affected {
            self.request_negotiation(other, now);
        }
        let _ = p.rtc.close();
        while let Ok(output) = p.rtc.poll_output() {
            match output {
                Output::Transmit(t) => transmit(
                    &self.socket,
                    &t.contents,
                    t.destination,
                    &mut p.stats,
                    &mut self.totals,
                ),
                Output::Timeout(_) => break,
                Output::Event(_) => {}
            }
        }
        Some(p.room)
    }

    fn request_negotiation(&mut self, key: Key, now: Instant) {
        if let Some(p) = self.participants.get_mut(&key) {
            if p.negotiation.request() {
                p.negotiate_at = Some(now + NEGOTIATION_DEBOUNCE);
            }
        }
    }

    fn members(&self, room: &str) -> impl Iterator<Item = Key> + '_ {
        self.rooms.get(room).into_iter().flatten().copied()
    }

    fn room_info(&self, room: &str) -> Vec<ParticipantInfo> {
        self.members(room)
            .filter_map(|k| self.participants.get(&k))
            .map(|p| {
                let kinds: Vec<Kind> = p
                    .publications
                    .iter()
                    .filter_map(|id| self.publications.get(id))
                    .map(|x| x.kind)
                    .collect();
                let audio = kinds.contains(&Kind::Audio);
                let video = kinds.contains(&Kind::Video);
                ParticipantInfo {
                    id: p.id.to_string(),
                    name: p.name.clone(),
                    streams: if audio || video {
                        vec![p.id.to_string()]
                    } else {
                        vec![]
                    },
                    audio,
                    video,
                }
            })
            .collect()
    }

    fn broadcast_participants(&self, room: &str) {
        let info = self.room_info(room);
        for key in self.members(room) {
            if let Some(p) = self.participants.get(&key) {
                let _ = p.events.send(ParticipantEvent::Participants(info.clone()));
            }
        }
    }

    fn update_counts(&self) {
        self.shared.rooms.store(self.rooms.len(), Ordering::Relaxed);
        self.shared
            .participants
            .store(self.participants.len(), Ordering::Relaxed);
    }

    fn mark_dirty(&mut self, key: Key) {
        if let Some(p) = self.participants.get_mut(&key) {
            if !p.dirty {
                p.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    fn read_batch(&mut self, buf: &mut [u8]) {
        for _ in 0..READ_BATCH {
            match self.socket.try_recv_from(buf) {
                Ok((n, source)) => self.receive(&buf[..n], source, Instant::now()),
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(error) => {
                    // ICMP port unreachable from a vanished browser, etc.
                    tracing::debug!(%error, "sfu: recv failed");
                    break;
                }
            }
        }
        self.flush(Instant::now());
    }

    fn receive(&mut self, data: &[u8], source: SocketAddr, now: Instant) {
        let Ok(receive) = Receive::new(Protocol::Udp, source, self.local, data) else {
            return;
        };
        let input = Input::Receive(now, receive);
        let key = match self.by_addr.get(&source) {
            Some(key) => *key,
            None => {
                // A new address: only a STUN check naming one of our connections (ICE
                // ufrag, then str0m checks its integrity) opens it.
                let Some(p) = stun_username_ufrag(data)
                    .and_then(|ufrag| self.by_ufrag.get(ufrag))
                    .and_then(|key| self.participants.get_mut(key))
                    .filter(|p| p.rtc.accepts(&input))
                else {
                    tracing::trace!(%source, "sfu: datagram for no connection");
                    return;
                };
                if p.addrs.len() >= MAX_ADDRS_PER_PARTICIPANT {
                    let oldest = p.addrs.remove(0);
                    self.by_addr.remove(&oldest);
                }
                p.addrs.push(source);
                self.by_addr.insert(source, p.key);
                p.key
            }
        };
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        match p.rtc.handle_input(input) {
            Ok(()) => p.last_received = now,
            Err(error) => tracing::debug!(id = %p.id, %error, "sfu: input refused"),
        }
        self.poll(key, now);
    }

    /// Timeouts, negotiation rounds and vanished peers, then whatever was written.
    fn drive(&mut self, now: Instant) {
        let due: Vec<Key> = self
            .participants
            .values()
            .filter(|p| p.next_timeout <= now)
            .map(|p| p.key)
            .collect();
        for key in due {
            if let Some(p) = self.participants.get_mut(&key) {
                if let Err(error) = p.rtc.handle_input(Input::Timeout(now)) {
                    tracing::debug!(id = %p.id, %error, "sfu: timeout refused");
                }
            }
            self.poll(key, now);
        }
        let rounds: Vec<Key> = self
            .participants
            .values()
            .filter(|p| p.negotiate_at.is_some_and(|at| at <= now))
            .map(|p| p.key)
            .collect();
        for key in rounds {
            self.start_round(key, now);
        }
        let connect_timeout = self.config.connect_timeout;
        for p in self.participants.values_mut() {
            let vanished = p
                .ice_lost_since
                .is_some_and(|t| now.duration_since(t) >= ICE_GRACE)
                || (p.connected && now.duration_since(p.last_received) >= SILENCE_LIMIT)
                || (!p.connected && now.duration_since(p.joined_at) >= connect_timeout);
            if (vanished || !p.rtc.is_alive()) && !p.failed {
                tracing::info!(id = %p.id, "sfu: media connection lost");
                p.failed = true;
                let _ = p.events.send(ParticipantEvent::Failed);
            }
        }
        self.flush(now);
    }

    /// Gives every participant written to a timeout (str0m releases queued RTP only then)
    /// and polls it; polling may touch others (keyframe requests), hence the loop.
    fn flush(&mut self, now: Instant) {
        while let Some(key) = self.dirty.pop() {
            if let Some(p) = self.participants.get_mut(&key) {
                p.dirty = false;
                if let Err(error) = p.rtc.handle_input(Input::Timeout(now)) {
                    tracing::debug!(id = %p.id, %error, "sfu: timeout refused");
                }
            }
            self.poll(key, now);
        }
        self.send_outbox();
    }

    fn send_outbox(&mut self) {
        if self.outbox.is_empty() {
            return;
        }
        let (participants, totals) = (&mut self.participants, &mut self.totals);
        self.outbox.send(&self.socket, |owner| {
            totals.dropped_packets += 1;
            if let Some(p) = participants.get_mut(&owner) {
                p.stats.dropped += 1;
            }
        });
    }

    /// Polls one participant's `Rtc` until it has nothing more to say.
    fn poll(&mut self, key: Key, now: Instant) {
        let mut packets = Vec::new();
        let mut keyframe_requests = Vec::new();
        let mut added = Vec::new();
        let mut connected = false;
        {
            let Some(p) = self.participants.get_mut(&key) else {
                return;
            };
            loop {
                match p.rtc.poll_output() {
                    Ok(Output::Transmit(t)) => {
                        self.outbox.push(key, t.contents.into(), t.destination)
                    }
                    Ok(Output::Timeout(t)) => {
                        p.next_timeout = t;
                        break;
                    }
                    Ok(Output::Event(event)) => match event {
                        Event::RtpPacket(packet) => packets.push(packet),
                        Event::KeyframeRequest(request) => keyframe_requests.push(request.mid),
                        Event::MediaAdded(media) => {
                            // The browser sends on it: a publication. Our own send-only
                            // m-lines (subscriptions) come back here too and are skipped.
                            if matches!(media.direction, Direction::RecvOnly | Direction::SendRecv)
                            {
                                added.push((media.mid, Kind::from(media.kind)));
                            }
                        }
                        Event::Connected => {
                            tracing::debug!(id = %p.id, "sfu: media connected");
                            p.connected = true;
                            connected = true;
                        }
                        Event::IceConnectionStateChange(state) => {
                            tracing::debug!(id = %p.id, ?state, "sfu: ICE");
                            p.ice_lost_since = match state {
                                IceConnectionState::Disconnected => p.ice_lost_since.or(Some(now)),
                                _ => None,
                            };
                        }
                        Event::PeerStats(stats) => {
                            p.stats.rtt_ms = stats.rtt.map(|d| d.as_secs_f64() * 1000.0);
                        }
                        Event::MediaEgressStats(stats) => {
                            if let Some(remote) = stats.remote {
                                p.stats.lost_outbound.insert(stats.mid, remote.packets_lost);
                            }
                            p.stats.nacks.insert(stats.mid, stats.nacks);
                            if p.stats.rtt_ms.is_none() {
                                p.stats.rtt_ms = stats.rtt.map(|d| d.as_secs_f64() * 1000.0);
                            }
                        }
                        Event::Closed => {
                            tracing::debug!(id = %p.id, "sfu: connection closed");
                        }
                        _ => {}
                    },
                    Err(error) => {
                        tracing::warn!(id = %p.id, %error, "sfu: connection failed");
                        p.rtc.disconnect();
                        break;
                    }
                }
            }
        }
        for (mid, kind) in added {
            self.publish(key, mid, kind);
        }
        if connected {
            self.subscriber_connected(key, now);
        }
        for mid in keyframe_requests {
            self.keyframe_request_from_subscriber(key, mid, now);
        }
        for packet in packets {
            self.forward(key, packet, now);
        }
    }

    fn publish(&mut self, key: Key, mid: Mid, kind: Kind) {
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        let pub_id = self.next_id;
        self.next_id += 1;
        p.publications.push(pub_id);
        tracing::info!(id = %p.id, ?kind, %mid, "sfu: publishing");
        let room = p.room.clone();
        self.publications.insert(
            pub_id,
            Publication {
                owner: key,
                owner_id: p.id.clone(),
                mid,
                kind,
                last_pt: None,
                keyframes: KeyframeThrottle::new(self.config.keyframe_interval),
                sinks: Vec::new(),
                loss: LossCounter::default(),
            },
        );
        let now = Instant::now();
        for other in self
            .members(&room)
            .filter(|k| *k != key)
            .collect::<Vec<_>>()
        {
            self.request_negotiation(other, now);
        }
        // Tiles show who publishes what (a joiner was listed before its media connected).
        self.broadcast_participants(&room);
    }

    /// DTLS is up: its open video subscriptions want a keyframe to start from.
    fn subscriber_connected(&mut self, key: Key, now: Instant) {
        let Some(p) = self.participants.get(&key) else {
            return;
        };
        let wanted: Vec<PubId> = p
            .subscriptions
            .iter()
            .filter(|s| s.kind == Kind::Video && matches!(s.state, SubState::Open(_)))
            .map(|s| s.publication)
            .collect();
        for pub_id in wanted {
            self.want_keyframe(pub_id, key, now);
        }
    }

    fn keyframe_request_from_subscriber(&mut self, key: Key, mid: Mid, now: Instant) {
        let Some(p) = self.participants.get(&key) else {
            return;
        };
        let Some(sub) = p
            .subscriptions
            .iter()
            .find(|s| matches!(s.state, SubState::Open(m) if m == mid))
        else {
            return;
        };
        let pub_id = sub.publication;
        self.want_keyframe(pub_id, key, now);
    }

    /// A keyframe is wanted on behalf of `requester`; the publication's throttle decides
    /// whether a PLI goes upstream now, later, or not at all.
    fn want_keyframe(&mut self, pub_id: PubId, requester: Key, now: Instant) {
        if let Some(p) = self.participants.get_mut(&requester) {
            p.stats.keyframes_requested += 1;
        }
        let Some(publication) = self.publications.get_mut(&pub_id) else {
            return;
        };
        if publication.kind != Kind::Video {
            return;
        }
        if publication.keyframes.request(now) {
            self.send_keyframe_request(pub_id);
        } else {
            tracing::debug!(owner = %publication.owner_id, "sfu: keyframe request throttled");
        }
    }

    fn send_keyframe_request(&mut self, pub_id: PubId) {
        let Some(publication) = self.publications.get(&pub_id) else {
            return;
        };
        let (owner, mid) = (publication.owner, publication.mid);
        // PLI unless the publisher's codec negotiated only FIR.
        let kind = match publication.last_pt {
            Some((_, Some(params), _)) if !params.fb_pli() && params.fb_fir() => {
                KeyframeRequestKind::Fir
            }
            _ => KeyframeRequestKind::Pli,
        };
        let Some(p) = self.participants.get_mut(&owner) else {
            return;
        };
        let mut api = p.rtc.direct_api();
        let Some(stream) = api.stream_rx_by_mid(mid, None) else {
            tracing::debug!(id = %p.id, %mid, "sfu: no stream to request a keyframe on yet");
            return;
        };
        stream.request_keyframe(kind);
        tracing::debug!(id = %p.id, %mid, ?kind, "sfu: keyframe requested upstream");
        self.totals.keyframe_requests_sent += 1;
        self.mark_dirty(owner);
    }

    /// One publisher packet to every open subscription of its publication.
    fn forward(&mut self, key: Key, packet: RtpPacket, now: Instant) {
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        p.stats.packets_in += 1;
        p.stats.bytes_in += packet.payload.len() as u64;
        let ssrc = *packet.header.ssrc;
        let pub_id = match p.ssrc_publications.iter().find(|(s, _)| *s == ssrc) {
            Some((_, id)) => *id,
            None => {
                let Some(mid) = p
                    .rtc
                    .direct_api()
                    .stream_rx(&packet.header.ssrc)
                    .map(|s| s.mid())
                else {
                    return;
                };
                let Some(id) = p
                    .publications
                    .iter()
                    .copied()
                    .find(|id| self.publications.get(id).is_some_and(|x| x.mid == mid))
                else {
                    return;
                };
                p.ssrc_publications.push((ssrc, id));
                id
            }
        };
        let Some(publication) = self.publications.get_mut(&pub_id) else {
            return;
        };
        let pt = *packet.header.payload_type;
        let (params, codec) = match publication.last_pt {
            Some((last, params, codec)) if last == pt => (params, codec),
            _ => {
                let params = p
                    .rtc
                    .codec_config()
                    .params()
                    .iter()
                    .find(|x| *x.pt() == pt)
                    .copied();
                let codec = params.as_ref().map_or(VideoCodec::Other, codec_of);
                publication.last_pt = Some((pt, params, codec));
                (params, codec)
            }
        };
        let Some(params) = params else {
            return;
        };
        if packet.payload.len() > MAX_FORWARDED_PAYLOAD {
            self.totals.dropped_packets += 1;
            tracing::debug!(
                len = packet.payload.len(),
                "sfu: oversized RTP payload dropped"
            );
            return;
        }
        publication.loss.packet(*packet.seq_no);
        let video = publication.kind == Kind::Video;
        let keyframe = video && starts_keyframe(codec, &packet.payload);
        if keyframe {
            publication.keyframes.keyframe_received();
        }
        let mut request_due = publication.keyframes.poll(now);
        let ext = end_to_end(&packet.header.ext_vals);
        let len = packet.payload.len() as u64;
        for &(sub_key, sub_id) in &publication.sinks {
            let Some(s) = self.participants.get_mut(&sub_key) else {
                continue;
            };
            if !s.connected {
                continue;
            }
            let Some(sub) = s.subscriptions.iter_mut().find(|x| x.id == sub_id) else {
                continue;
            };
            let SubState::Open(mid) = sub.state else {
                continue;
            };
            if sub.waiting_keyframe {
                if !keyframe {
                    // The PLI or its keyframe may have been lost: ask again (throttled).
                    if !publication.keyframes.pending() {
                        request_due |= publication.keyframes.request(now);
                    }
                    continue;
                }
                sub.waiting_keyframe = false;
                tracing::debug!(id = %s.id, from = %publication.owner_id, "sfu: video starts");
            }
            let rtc = &mut s.rtc;
            let Some(out_pt) = sub.pts.get(pt, || {
                rtc.codec_config().match_params(params).map(|x| *x.pt())
            }) else {
                continue;
            };
            let Some(seq) = sub.seq.map(*packet.seq_no) else {
                continue;
            };
            let mut api = rtc.direct_api();
            let Some(stream) = api.stream_tx_by_mid(mid, None) else {
                continue;
            };
            stream.write_rtp(
                RtpWrite::new(
                    out_pt.into(),
                    seq.into(),
                    packet.header.timestamp,
                    packet.timestamp,
                    packet.payload.clone(),
                )
                .marker(packet.header.marker)
                .ext_vals(ext.clone())
                .nackable(video),
            );
            s.stats.packets_out += 1;
            s.stats.bytes_out += len;
            self.totals.forwarded_packets += 1;
            self.totals.forwarded_bytes += len;
            if !s.dirty {
                s.dirty = true;
                self.dirty.push(sub_key);
            }
        }
        if request_due {
            self.send_keyframe_request(pub_id);
        }
    }

    /// Brings the participant's subscriptions in line with the room and offers the change.
    fn start_round(&mut self, key: Key, now: Instant) {
        let Some(p) = self.participants.get(&key) else {
            return;
        };
        let wanted: Vec<(PubId, Kind)> = self
            .members(&p.room)
            .filter(|k| *k != key)
            .filter_map(|k| self.participants.get(&k))
            .flat_map(|o| o.publications.iter())
            .filter_map(|id| self.publications.get(id).map(|x| (*id, x.kind)))
            .collect();
        let mut new_subs = Vec::new();
        for (pub_id, kind) in &wanted {
            if !p.subscriptions.iter().any(|s| s.publication == *pub_id) {
                let id = self.next_id + new_subs.len() as u64;
                new_subs.push(Subscription {
                    id,
                    publication: *pub_id,
                    kind: *kind,
                    state: SubState::ToOpen,
                    seq: SeqRebase::default(),
                    pts: PtMap::default(),
                    waiting_keyframe: *kind == Kind::Video,
                });
            }
        }
        self.next_id += new_subs.len() as u64;
        for sub in &new_subs {
            if let Some(publication) = self.publications.get_mut(&sub.publication) {
                publication.sinks.push((key, sub.id));
            }
        }
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        p.negotiate_at = None;
        p.subscriptions.extend(new_subs);
        // Publications that ended: never offered → forget; open → stop the m-line.
        p.subscriptions.retain_mut(|s| {
            if wanted.iter().any(|(id, _)| *id == s.publication) {
                return true;
            }
            match s.state {
                SubState::ToOpen => false,
                SubState::Open(mid) => {
                    s.state = SubState::ToStop(mid);
                    true
                }
                _ => true,
            }
        });
        let mut change = p.rtc.sdp_api();
        for s in p.subscriptions.iter_mut() {
            match s.state {
                SubState::ToOpen => {
                    let Some(publication) = self.publications.get(&s.publication) else {
                        continue;
                    };
                    let stream_id = publication.owner_id.to_string();
                    let kind = match s.kind {
                        Kind::Audio => "audio",
                        Kind::Video => "video",
                    };
                    let track_id = format!("{stream_id}-{kind}-{}", s.publication);
                    let mid = change.add_media(
                        s.kind.into(),
                        Direction::SendOnly,
                        Some(stream_id),
                        Some(track_id),
                        None,
                    );
                    s.state = SubState::Negotiating(mid);
                }
                SubState::ToStop(mid) => {
                    change.stop_media(mid);
                    s.state = SubState::Stopping(mid);
                }
                _ => {}
            }
        }
        let applied = if change.has_changes() {
            change.apply()
        } else {
            None
        };
        let Some((offer, pending)) = applied else {
            if p.negotiation.finished() {
                p.negotiate_at = Some(now);
            }
            return;
        };
        p.round += 1;
        let round = p.round;
        tracing::debug!(id = %p.id, round, "sfu: offer sent");
        p.pending = Some((pending, round));
        let (answer_tx, answer_rx) = oneshot::channel();
        let sent = p.events.send(ParticipantEvent::Update {
            sdp: offer.to_sdp_string(),
            answer: answer_tx,
        });
        if sent.is_err() {
            return;
        }
        let commands = self.commands.clone();
        let timeout = self.config.update_timeout;
        let shared = self.shared.clone();
        shared.update_tasks.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let answer = match tokio::time::timeout(timeout, answer_rx).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => Err("signaling gone".to_owned()),
                Err(_) => Err("timed out".to_owned()),
            };
            if let Some(commands) = commands.upgrade() {
                let _ = commands.send(Command::Answer { key, round, answer });
            }
            shared.update_tasks.fetch_sub(1, Ordering::Relaxed);
        });
    }

    fn answer(&mut self, key: Key, round: u64, answer: Result<String, String>, now: Instant) {
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        let Some((pending, _)) = p.pending.take_if(|(_, r)| *r == round) else {
            return;
        };
        let accepted = answer
            .and_then(|sdp| SdpAnswer::from_sdp_string(&sdp).map_err(|e| e.to_string()))
            .and_then(|answer| {
                p.rtc
                    .sdp_api()
                    .accept_answer(pending, answer)
                    .map_err(|e| e.to_string())
            });
        let mut stopped = Vec::new();
        let mut opened = Vec::new();
        match accepted {
            Ok(()) => {
                p.subscriptions.retain_mut(|s| match s.state {
                    SubState::Negotiating(mid) => {
                        s.state = SubState::Open(mid);
                        if s.kind == Kind::Video {
                            opened.push(s.publication);
                        }
                        true
                    }
                    SubState::Stopping(_) => {
                        stopped.push((s.publication, s.id));
                        false
                    }
                    _ => true,
                });
                tracing::debug!(id = %p.id, opened = opened.len(), stopped = stopped.len(), "sfu: renegotiated");
            }
            Err(reason) => {
                // The browser may have applied the offer without us knowing, and str0m has
                // already stopped m-lines: the two sides no longer agree on the session. Only
                // a fresh connection repairs that, so the participant is dropped (the page
                // gets `media_failed` and can join again).
                tracing::warn!(id = %p.id, %reason, "sfu: update not answered; dropping the participant");
                if !p.failed {
                    p.failed = true;
                    let _ = p.events.send(ParticipantEvent::Failed);
                }
                return;
            }
        }
        if p.negotiation.finished() {
            p.negotiate_at = Some(now);
        }
        let connected = p.connected;
        for (pub_id, sub_id) in stopped {
            if let Some(publication) = self.publications.get_mut(&pub_id) {
                publication
                    .sinks
                    .retain(|(k, s)| !(*k == key && *s == sub_id));
            }
        }
        if connected {
            for pub_id in opened {
                self.want_keyframe(pub_id, key, now);
            }
        }
        self.mark_dirty(key);
    }

    fn report(&mut self, now: Instant) -> RoomsReport {
        let mut rooms: Vec<(&String, &Vec<Key>)> = self.rooms.iter().collect();
        rooms.sort_by(|a, b| a.0.cmp(b.0));
        let mut tasks_by_kind = BTreeMap::new();
        if !self.participants.is_empty() {
            tasks_by_kind.insert("rtc".to_owned(), self.participants.len() as i64);
        }
        let updates = self.shared.update_tasks.load(Ordering::Relaxed);
        if updates != 0 {
            tasks_by_kind.insert("update".to_owned(), updates);
        }
        let mut report = RoomsReport {
            rooms: Vec::new(),
            participants: self.participants.len(),
            joins: self.totals.joins,
            leaves: self.totals.leaves,
            forwarded_packets: self.totals.forwarded_packets,
            forwarded_bytes: self.totals.forwarded_bytes,
            dropped_packets: self.totals.dropped_packets,
            keyframe_requests_sent: self.totals.keyframe_requests_sent,
            retransmissions: 0,
            media_address: self.local.to_string(),
            tasks: tasks_by_kind.values().sum(),
            tasks_by_kind,
            uptime_seconds: self.started.elapsed().as_secs(),
        };
        let keys: Vec<(String, Vec<Key>)> = rooms
            .into_iter()
            .map(|(room, keys)| (room.clone(), keys.clone()))
            .collect();
        for (room, keys) in keys {
            let participants = keys
                .iter()
                .filter_map(|k| self.participant_report(*k, now))
                .collect();
            report.rooms.push(RoomReport { room, participants });
        }
        report
    }

    fn participant_report(&mut self, key: Key, now: Instant) -> Option<ParticipantReport> {
        let p = self.participants.get_mut(&key)?;
        let s = &mut p.stats;
        let (since, bytes_in, bytes_out) = s.rate_sample.unwrap_or((p.joined_at, 0, 0));
        let elapsed = now.duration_since(since).as_secs_f64();
        let (bitrate_in, bitrate_out) = if elapsed > 0.0 {
            (
                ((s.bytes_in - bytes_in) as f64 * 8.0 / elapsed) as u64,
                ((s.bytes_out - bytes_out) as f64 * 8.0 / elapsed) as u64,
            )
        } else {
            (0, 0)
        };
        s.rate_sample = Some((now, s.bytes_in, s.bytes_out));
        let publications: Vec<&Publication> = p
            .publications
            .iter()
            .filter_map(|id| self.publications.get(id))
            .collect();
        Some(ParticipantReport {
            id: p.id.to_string(),
            name: p.name.clone(),
            seconds: now.duration_since(p.joined_at).as_secs(),
            publishing: publications.iter().map(|x| x.kind).collect(),
            subscriptions: p
                .subscriptions
                .iter()
                .filter(|x| matches!(x.state, SubState::Open(_)))
                .count(),
            bitrate_in_bps: bitrate_in,
            bitrate_out_bps: bitrate_out,
            packets_in: s.packets_in,
            packets_out: s.packets_out,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            packets_lost_inbound: publications.iter().map(|x| x.loss.lost()).sum(),
            packets_lost_outbound: s.lost_outbound.values().sum::<u64>() as i64,
            rtt_ms: s.rtt_ms,
            keyframes_requested: s.keyframes_requested,
            keyframes_sent_upstream: publications.iter().map(|x| x.keyframes.sent).sum(),
            nacks_received: s.nacks.values().sum(),
            retransmitted: 0,
            dropped: s.dropped,
            negotiations: p.negotiation.rounds,
        })
    }
}

impl Negotiation {
    /// `ready` + a first request, atomically: subscribe to what the room already has.
    fn request_and_join(&mut self) -> bool {
        let start = self.request();
        start || self.joined()
    }
}
