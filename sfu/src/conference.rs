//! Rooms, participants, publications and subscriptions, and the tasks that move packets
//! between them. Policy lives in the sans-IO modules; this file wires them to the engine.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hasher},
    ops::RangeInclusive,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering},
        Arc, Mutex, MutexGuard, RwLock, Weak,
    },
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

use crate::{
    keyframe::{starts_keyframe, KeyframeThrottle, VideoCodec, DEFAULT_MIN_INTERVAL},
    nack_buffer::NackBuffer,
    negotiation::Negotiation,
    ports::PortPool,
    rewrite::Rewriter,
    rtc_engine::{
        packet_len, packet_payload, packet_seq, rewrite_packet, rewrite_retransmission,
        EngineError, Feedback, InTrack, Kind, NetConfig, OutTrack, Peer, PeerEvent, PeerStats,
        RtpPacket,
    },
    subscriber_queue::{Push, SharedQueue, DEFAULT_CAPACITY},
};

pub type ParticipantId = Arc<str>;

const NEGOTIATION_DEBOUNCE: Duration = Duration::from_millis(40);

/// Tasks of the media plane still alive, by kind (the churn test checks they return to zero).
static LIVE_TASKS: Mutex<Vec<(&'static str, i64)>> = Mutex::new(Vec::new());

fn count_task(kind: &'static str, delta: i64) {
    let mut live = lock(&LIVE_TASKS);
    match live.iter_mut().find(|(k, _)| *k == kind) {
        Some((_, n)) => *n += delta,
        None => live.push((kind, delta)),
    }
}

struct TaskGuard(&'static str);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        count_task(self.0, -1);
    }
}

/// `tokio::spawn`, counted under `kind` until the task ends or is aborted.
fn spawn<F>(kind: &'static str, future: F) -> JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    count_task(kind, 1);
    let guard = TaskGuard(kind);
    tokio::spawn(async move {
        let _guard = guard;
        future.await
    })
}

#[derive(Debug, Clone)]
pub struct SfuConfig {
    pub net: NetConfig,
    /// UDP ports for peer connections; `None` = any free port.
    pub ports: Option<RangeInclusive<u16>>,
    pub room_capacity: usize,
    /// How long a browser has to answer an `update`.
    pub update_timeout: Duration,
    pub queue_capacity: usize,
    pub keyframe_interval: Duration,
    pub nack_buffer_packets: usize,
}

impl SfuConfig {
    pub fn new(net: NetConfig) -> Self {
        SfuConfig {
            net,
            ports: None,
            room_capacity: 16,
            update_timeout: Duration::from_secs(10),
            queue_capacity: DEFAULT_CAPACITY,
            keyframe_interval: DEFAULT_MIN_INTERVAL,
            nack_buffer_packets: 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    #[error("the room is full")]
    RoomFull,
    #[error("no UDP port left in the configured range")]
    NoPort,
    #[error("not in a room")]
    NotJoined,
    #[error("{0}")]
    Media(#[from] EngineError),
}

/// What the signaling side must deliver to one participant's browser.
pub enum ParticipantEvent {
    /// Send `update {sdp}`; reply with the browser's answer SDP (or an error text).
    Update {
        sdp: String,
        answer: oneshot::Sender<Result<String, String>>,
    },
    /// The room's participants changed.
    Participants(Vec<ParticipantInfo>),
    /// The media connection failed: treat as a leave.
    Failed,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ParticipantInfo {
    pub id: String,
    pub name: String,
    /// `MediaStream.id`s under which this participant's tracks reach the others.
    pub streams: Vec<String>,
    pub audio: bool,
    pub video: bool,
}

pub struct Joined {
    pub id: ParticipantId,
    pub answer: String,
    pub participants: Vec<ParticipantInfo>,
    pub events: mpsc::UnboundedReceiver<ParticipantEvent>,
}

pub struct Sfu {
    config: SfuConfig,
    state: Mutex<State>,
    ports: Option<Mutex<PortPool>>,
    next_id: AtomicU64,
    seed: u64,
    started: Instant,
    totals: Totals,
}

#[derive(Default)]
struct State {
    rooms: HashMap<String, Vec<ParticipantId>>,
    participants: HashMap<ParticipantId, Arc<Participant>>,
    /// Places taken by joins still building their connection.
    reserved: HashMap<String, usize>,
}

#[derive(Default)]
struct Totals {
    joins: AtomicU64,
    leaves: AtomicU64,
    forwarded_packets: AtomicU64,
    forwarded_bytes: AtomicU64,
    dropped_packets: AtomicU64,
    keyframe_requests_sent: AtomicU64,
    retransmissions: AtomicU64,
}

#[derive(Default)]
struct Counters {
    packets_in: AtomicU64,
    bytes_in: AtomicU64,
    packets_out: AtomicU64,
    bytes_out: AtomicU64,
    keyframes_requested: AtomicU64,
    nacks_received: AtomicU64,
    retransmitted: AtomicU64,
    dropped: AtomicU64,
}

struct Participant {
    id: ParticipantId,
    name: String,
    room: String,
    peer: Peer,
    port: Option<u16>,
    joined_at: Instant,
    events: mpsc::UnboundedSender<ParticipantEvent>,
    negotiation: Mutex<Negotiation>,
    publications: Mutex<Vec<Arc<Publication>>>,
    /// Keyed by publication id. Only the negotiation task adds or removes while it runs.
    subscriptions: tokio::sync::Mutex<HashMap<u64, Subscription>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    counters: Counters,
    rate_sample: Mutex<(Instant, u64, u64)>,
    closed: AtomicBool,
    /// Set with `closed`: wakes a negotiation round waiting for this participant's answer.
    gone: tokio::sync::watch::Sender<bool>,
    /// DTLS is up: packets written before would be dropped by the library.
    connected: tokio::sync::watch::Sender<bool>,
}

struct Publication {
    id: u64,
    owner: ParticipantId,
    kind: Kind,
    video_codec: VideoCodec,
    track: InTrack,
    sinks: RwLock<Vec<Arc<Sink>>>,
    nack: Mutex<NackBuffer<RtpPacket>>,
    keyframes: Mutex<KeyframeThrottle>,
    fir_sequence: AtomicU8,
    ended: AtomicBool,
}

/// The publisher-side end of a subscription.
struct Sink {
    queue: SharedQueue<RtpPacket>,
    active: AtomicBool,
}

struct Subscription {
    publication: Arc<Publication>,
    out: Arc<OutTrack>,
    sink: Arc<Sink>,
    rewriter: Arc<Mutex<Option<Rewriter>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Subscription {
    fn stop(&self) {
        self.sink.queue.close();
        self.publication
            .sinks
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|s| !Arc::ptr_eq(s, &self.sink));
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sfu {
    pub fn new(config: SfuConfig) -> Arc<Sfu> {
        let ports = config.ports.clone().map(|r| Mutex::new(PortPool::new(r)));
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Arc::new(Sfu {
            config,
            state: Mutex::new(State::default()),
            ports,
            next_id: AtomicU64::new(1),
            seed,
            started: Instant::now(),
            totals: Totals::default(),
        })
    }

    pub fn room_capacity(&self) -> usize {
        self.config.room_capacity
    }

    fn random(&self) -> u64 {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut x = self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x
    }

    /// Joins `room` with the browser's offer. The returned answer must reach the browser
    /// before anything from `events`; then call [`Sfu::ready`].
    pub async fn join(
        self: &Arc<Self>,
        room: &str,
        name: &str,
        offer: String,
    ) -> Result<Joined, SfuError> {
        {
            let mut state = lock(&self.state);
            let present = state.rooms.get(room).map_or(0, Vec::len);
            let reserved = state.reserved.get(room).copied().unwrap_or(0);
            if present + reserved >= self.config.room_capacity {
                return Err(SfuError::RoomFull);
            }
            *state.reserved.entry(room.to_owned()).or_default() += 1;
        }
        let result = self.build_participant(room, name, offer).await;
        let mut state = lock(&self.state);
        if let Some(count) = state.reserved.get_mut(room) {
            *count -= 1;
            if *count == 0 {
                state.reserved.remove(room);
            }
        }
        let (participant, answer, events) = result?;
        let id = participant.id.clone();
        state
            .rooms
            .entry(room.to_owned())
            .or_default()
            .push(id.clone());
        state.participants.insert(id.clone(), participant);
        let participants = Self::room_info(&state, room);
        let others = Self::members(&state, room, Some(&id));
        drop(state);
        self.totals.joins.fetch_add(1, Ordering::Relaxed);
        for other in others {
            let _ = other
                .events
                .send(ParticipantEvent::Participants(participants.clone()));
        }
        tracing::info!(%room, id = %id, %name, "sfu: joined");
        Ok(Joined {
            id,
            answer,
            participants,
            events,
        })
    }

    async fn build_participant(
        self: &Arc<Self>,
        room: &str,
        name: &str,
        offer: String,
    ) -> Result<
        (
            Arc<Participant>,
            String,
            mpsc::UnboundedReceiver<ParticipantEvent>,
        ),
        SfuError,
    > {
        let port = match &self.ports {
            Some(pool) => Some(lock(pool).take().ok_or(SfuError::NoPort)?),
            None => None,
        };
        let release = |sfu: &Sfu| {
            if let (Some(pool), Some(port)) = (&sfu.ports, port) {
                lock(pool).release(port);
            }
        };
        let (peer_tx, peer_rx) = mpsc::unbounded_channel();
        let peer = match Peer::new(&self.config.net, port.unwrap_or(0), peer_tx).await {
            Ok(peer) => peer,
            Err(error) => {
                release(self);
                return Err(error.into());
            }
        };
        let answer = match peer.answer(offer).await {
            Ok(answer) => answer,
            Err(error) => {
                peer.close().await;
                release(self);
                return Err(error.into());
            }
        };
        let id: ParticipantId = format!("p{:012x}", self.random() & 0xffff_ffff_ffff).into();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let now = Instant::now();
        let participant = Arc::new(Participant {
            id,
            name: name.to_owned(),
            room: room.to_owned(),
            peer,
            port,
            joined_at: now,
            events: events_tx,
            negotiation: Mutex::new(Negotiation::default()),
            publications: Mutex::new(Vec::new()),
            subscriptions: tokio::sync::Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
            counters: Counters::default(),
            rate_sample: Mutex::new((now, 0, 0)),
            closed: AtomicBool::new(false),
            gone: tokio::sync::watch::channel(false).0,
            connected: tokio::sync::watch::channel(false).0,
        });
        let task = spawn(
            "peer_events",
            Self::peer_events(Arc::downgrade(self), Arc::downgrade(&participant), peer_rx),
        );
        lock(&participant.tasks).push(task);
        Ok((participant, answer, events_rx))
    }

    /// The join answer was delivered: server-initiated negotiation may start.
    pub fn ready(self: &Arc<Self>, id: &str) {
        let Some(participant) = self.participant(id) else {
            return;
        };
        // Subscribe to what the room already publishes.
        let start = lock(&participant.negotiation).request_and_join();
        if start {
            self.spawn_negotiation(participant);
        }
    }

    pub async fn add_candidate(
        &self,
        id: &str,
        candidate: String,
        sdp_mid: Option<String>,
        sdp_mline_index: Option<u16>,
    ) -> Result<(), SfuError> {
        let participant = self.participant(id).ok_or(SfuError::NotJoined)?;
        participant
            .peer
            .add_candidate(candidate, sdp_mid, sdp_mline_index)
            .await?;
        Ok(())
    }

    fn participant(&self, id: &str) -> Option<Arc<Participant>> {
        lock(&self.state).participants.get(id).cloned()
    }

    fn members(state: &State, room: &str, except: Option<&ParticipantId>) -> Vec<Arc<Participant>> {
        state
            .rooms
            .get(room)
            .into_iter()
            .flatten()
            .filter(|id| Some(*id) != except)
            .filter_map(|id| state.participants.get(id).cloned())
            .collect()
    }

    fn room_info(state: &State, room: &str) -> Vec<ParticipantInfo> {
        Self::members(state, room, None)
            .iter()
            .map(|p| {
                let publications = lock(&p.publications);
                let audio = publications.iter().any(|x| x.kind == Kind::Audio);
                let video = publications.iter().any(|x| x.kind == Kind::Video);
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
        let state = lock(&self.state);
        let info = Self::room_info(&state, room);
        for member in Self::members(&state, room, None) {
            let _ = member
                .events
                .send(ParticipantEvent::Participants(info.clone()));
        }
    }

    /// Leaves the room (also on disconnect). Idempotent.
    pub async fn leave(self: &Arc<Self>, id: &str) {
        let (participant, others) = {
            let mut state = lock(&self.state);
            let Some(participant) = state.participants.remove(id) else {
                return;
            };
            if let Some(members) = state.rooms.get_mut(&participant.room) {
                members.retain(|m| &**m != id);
                if members.is_empty() {
                    state.rooms.remove(&participant.room);
                }
            }
            let others = Self::members(&state, &participant.room, None);
            (participant, others)
        };
        participant.closed.store(true, Ordering::Release);
        participant.gone.send_replace(true);
        self.totals.leaves.fetch_add(1, Ordering::Relaxed);
        // Its publications end: every other participant drops its subscriptions to them.
        let publications: Vec<_> = lock(&participant.publications).drain(..).collect();
        for publication in &publications {
            publication.ended.store(true, Ordering::Release);
            for sink in publication
                .sinks
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .drain(..)
            {
                sink.queue.close();
            }
        }
        // The others learn first (their tiles go at once); our side is torn down after.
        if !publications.is_empty() {
            for other in &others {
                if lock(&other.negotiation).request() {
                    self.spawn_negotiation(other.clone());
                }
            }
        }
        self.broadcast_participants(&participant.room);
        for task in lock(&participant.tasks).drain(..) {
            task.abort();
        }
        // Its own subscriptions end (a negotiation round in flight holds this lock; it is
        // abandoned when `gone` is set).
        participant.peer.close().await;
        for (_, subscription) in participant.subscriptions.lock().await.drain() {
            subscription.stop();
        }
        if let (Some(pool), Some(port)) = (&self.ports, participant.port) {
            lock(pool).release(port);
        }
        tracing::info!(room = %participant.room, id = %participant.id, "sfu: left");
    }

    /// Handles what the participant's peer connection reports.
    async fn peer_events(
        sfu: Weak<Sfu>,
        participant: Weak<Participant>,
        mut events: mpsc::UnboundedReceiver<PeerEvent>,
    ) {
        while let Some(event) = events.recv().await {
            let (Some(sfu), Some(participant)) = (sfu.upgrade(), participant.upgrade()) else {
                return;
            };
            if participant.closed.load(Ordering::Acquire) {
                return;
            }
            match event {
                PeerEvent::Track(track) => {
                    let Some(track) = participant.peer.in_track(track).await else {
                        continue;
                    };
                    sfu.publish(&participant, track);
                }
                PeerEvent::Failed => {
                    let _ = participant.events.send(ParticipantEvent::Failed);
                }
                PeerEvent::Connected => {
                    tracing::debug!(id = %participant.id, "sfu: media connected");
                    participant.connected.send_replace(true);
                }
            }
        }
    }

    fn publish(self: &Arc<Self>, participant: &Arc<Participant>, track: InTrack) {
        let video_codec = VideoCodec::from_mime(&track.codec_key.mime);
        let publication = Arc::new(Publication {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            owner: participant.id.clone(),
            kind: track.kind,
            video_codec,
            track,
            sinks: RwLock::new(Vec::new()),
            nack: Mutex::new(NackBuffer::new(self.config.nack_buffer_packets)),
            keyframes: Mutex::new(KeyframeThrottle::new(self.config.keyframe_interval)),
            fir_sequence: AtomicU8::new(0),
            ended: AtomicBool::new(false),
        });
        tracing::info!(id = %participant.id, kind = ?publication.kind, codec = %publication.track.codec_key.mime, "sfu: publishing");
        lock(&participant.publications).push(publication.clone());
        let task = spawn(
            "forward",
            Self::forward(
                Arc::downgrade(self),
                publication,
                Arc::downgrade(participant),
            ),
        );
        lock(&participant.tasks).push(task);
        let others = {
            let state = lock(&self.state);
            Self::members(&state, &participant.room, Some(&participant.id))
        };
        for other in others {
            if lock(&other.negotiation).request() {
                self.spawn_negotiation(other);
            }
        }
        self.broadcast_participants(&participant.room);
    }

    /// The publisher's read loop: buffer for NACKs, hand a copy to every subscriber's queue.
    /// Never waits for a subscriber.
    async fn forward(sfu: Weak<Sfu>, publication: Arc<Publication>, owner: Weak<Participant>) {
        while let Some(packet) = publication.track.next().await {
            let Some(sfu) = sfu.upgrade() else { return };
            let now = Instant::now();
            if let Some(owner) = owner.upgrade() {
                owner.counters.packets_in.fetch_add(1, Ordering::Relaxed);
                owner
                    .counters
                    .bytes_in
                    .fetch_add(packet_len(&packet) as u64, Ordering::Relaxed);
            }
            let keyframe = publication.kind == Kind::Video
                && starts_keyframe(publication.video_codec, packet_payload(&packet));
            if keyframe {
                lock(&publication.keyframes).keyframe_received();
            }
            lock(&publication.nack).push(packet_seq(&packet), packet.clone());
            let mut want_keyframe = false;
            {
                let sinks = publication.sinks.read().unwrap_or_else(|p| p.into_inner());
                for sink in sinks.iter().filter(|s| s.active.load(Ordering::Acquire)) {
                    if let Push::Dropped { request_keyframe } =
                        sink.queue.push(packet.clone(), keyframe)
                    {
                        sfu.totals.dropped_packets.fetch_add(1, Ordering::Relaxed);
                        want_keyframe |= request_keyframe;
                    }
                }
            }
            let send = {
                let mut throttle = lock(&publication.keyframes);
                if want_keyframe {
                    throttle.request(now)
                } else {
                    throttle.poll(now)
                }
            };
            if send {
                // Not awaited here: the read loop must never wait on the driver.
                let (sfu, publication) = (sfu.clone(), publication.clone());
                spawn("keyframe_request", async move {
                    sfu.send_keyframe_request(&publication).await
                });
            }
        }
        tracing::debug!(owner = %publication.owner, kind = ?publication.kind, "sfu: publication ended");
    }

    async fn send_keyframe_request(&self, publication: &Publication) {
        let sequence = publication.fir_sequence.fetch_add(1, Ordering::Relaxed);
        self.totals
            .keyframe_requests_sent
            .fetch_add(1, Ordering::Relaxed);
        publication.track.request_keyframe(sequence).await;
    }

    async fn request_keyframe(&self, publication: &Publication, requester: &Participant) {
        if publication.kind != Kind::Video {
            return;
        }
        requester
            .counters
            .keyframes_requested
            .fetch_add(1, Ordering::Relaxed);
        let send = lock(&publication.keyframes).request(Instant::now());
        if send {
            self.send_keyframe_request(publication).await;
        }
    }

    fn spawn_negotiation(self: &Arc<Self>, participant: Arc<Participant>) {
        let sfu = self.clone();
        spawn("negotiation", async move {
            // A publisher's audio and video start a few ms apart: fold them into one offer.
            tokio::time::sleep(NEGOTIATION_DEBOUNCE).await;
            let mut gone = participant.gone.subscribe();
            loop {
                // Once the participant is gone, calls on its closed connection may never
                // return: abandon the round (this drops the subscriptions lock for `leave`).
                tokio::select! {
                    _ = sfu.negotiate(&participant) => {}
                    _ = gone.wait_for(|gone| *gone) => return,
                }
                if participant.closed.load(Ordering::Acquire) {
                    return;
                }
                if !lock(&participant.negotiation).finished() {
                    return;
                }
            }
        });
    }

    /// One server-initiated round: bring the subscriptions in line with the room, offer,
    /// wait for the browser's answer, then start forwarding to the new subscriptions.
    async fn negotiate(self: &Arc<Self>, participant: &Arc<Participant>) {
        let wanted: Vec<Arc<Publication>> = {
            let state = lock(&self.state);
            Self::members(&state, &participant.room, Some(&participant.id))
                .iter()
                .flat_map(|p| lock(&p.publications).clone())
                .filter(|p| !p.ended.load(Ordering::Acquire))
                .collect()
        };
        let mut subscriptions = participant.subscriptions.lock().await;
        if participant.closed.load(Ordering::Acquire) {
            return;
        }
        let mut changed = false;
        let gone: Vec<u64> = subscriptions
            .keys()
            .filter(|id| !wanted.iter().any(|p| p.id == **id))
            .copied()
            .collect();
        for id in gone {
            if let Some(subscription) = subscriptions.remove(&id) {
                subscription.stop();
                participant.peer.remove_out_track(&subscription.out).await;
                changed = true;
            }
        }
        let mut added = Vec::new();
        for publication in wanted {
            if subscriptions.contains_key(&publication.id) {
                continue;
            }
            let ssrc = (self.random() as u32).max(1);
            let kind = match publication.kind {
                Kind::Audio => "audio",
                Kind::Video => "video",
            };
            let track_id = format!("{}-{kind}-{}", publication.owner, publication.id);
            let out = match participant
                .peer
                .add_out_track(&publication.track, &publication.owner, &track_id, ssrc)
                .await
            {
                Ok(out) => Arc::new(out),
                Err(error) => {
                    tracing::warn!(id = %participant.id, %error, "sfu: cannot add a track");
                    continue;
                }
            };
            let sink = Arc::new(Sink {
                queue: SharedQueue::new(
                    self.config.queue_capacity,
                    publication.kind == Kind::Video,
                ),
                active: AtomicBool::new(false),
            });
            publication
                .sinks
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .push(sink.clone());
            subscriptions.insert(
                publication.id,
                Subscription {
                    publication: publication.clone(),
                    out,
                    sink,
                    rewriter: Arc::new(Mutex::new(None)),
                    tasks: Vec::new(),
                },
            );
            added.push(publication.id);
            changed = true;
        }
        if !changed {
            return;
        }
        let started = Instant::now();
        let offer = match participant.peer.offer().await {
            Ok(offer) => offer,
            Err(error) => {
                tracing::warn!(id = %participant.id, %error, "sfu: cannot create an offer");
                return;
            }
        };
        let (answer_tx, answer_rx) = oneshot::channel();
        if participant
            .events
            .send(ParticipantEvent::Update {
                sdp: offer,
                answer: answer_tx,
            })
            .is_err()
        {
            return;
        }
        let answer = match tokio::time::timeout(self.config.update_timeout, answer_rx).await {
            Ok(Ok(Ok(answer))) => answer,
            outcome => {
                let reason = match outcome {
                    Err(_) => "timed out".to_owned(),
                    Ok(Err(_)) => "signaling gone".to_owned(),
                    Ok(Ok(Err(error))) => error,
                    Ok(Ok(Ok(_))) => unreachable!(),
                };
                tracing::warn!(id = %participant.id, %reason, "sfu: update not answered");
                participant.peer.rollback().await;
                return;
            }
        };
        if let Err(error) = participant.peer.accept_answer(answer).await {
            tracing::warn!(id = %participant.id, %error, "sfu: bad answer to update");
            participant.peer.rollback().await;
            return;
        }
        tracing::debug!(id = %participant.id, added = added.len(), ms = started.elapsed().as_millis() as u64, "sfu: renegotiated");
        for id in added {
            let Some(subscription) = subscriptions.get_mut(&id) else {
                continue;
            };
            self.activate(participant, subscription).await;
        }
    }

    /// The subscriber answered: map its payload types and extension ids, start its writer
    /// and feedback tasks, and ask the publisher for a keyframe.
    async fn activate(
        self: &Arc<Self>,
        participant: &Arc<Participant>,
        subscription: &mut Subscription,
    ) {
        let publication = subscription.publication.clone();
        let Some((codecs, extensions)) = subscription.out.negotiated().await else {
            return;
        };
        let publisher_extensions: Vec<(u8, &str)> = publication
            .track
            .extensions
            .iter()
            .map(|(id, uri)| (*id, uri.as_str()))
            .collect();
        let subscriber_extensions: Vec<(u8, &str)> = extensions
            .iter()
            .map(|(id, uri)| (*id, uri.as_str()))
            .collect();
        let rewriter = Rewriter::new(
            subscription.out.ssrc,
            &publication.track.codecs,
            &codecs,
            &publisher_extensions,
            &subscriber_extensions,
        );
        *lock(&subscription.rewriter) = Some(rewriter);

        let writer = {
            let sink = subscription.sink.clone();
            let out = subscription.out.clone();
            let rewriter = subscription.rewriter.clone();
            let subscriber = Arc::downgrade(participant);
            let sfu = Arc::downgrade(self);
            spawn("writer", async move {
                while let Some(popped) = sink.queue.pop().await {
                    let mut packet = popped.item;
                    let ok = lock(&rewriter)
                        .as_mut()
                        .is_some_and(|r| rewrite_packet(r, &mut packet, popped.after_skip));
                    if !ok {
                        continue;
                    }
                    let len = packet_len(&packet) as u64;
                    if out.write(packet).await {
                        if let Some(p) = subscriber.upgrade() {
                            p.counters.packets_out.fetch_add(1, Ordering::Relaxed);
                            p.counters.bytes_out.fetch_add(len, Ordering::Relaxed);
                        }
                        if let Some(sfu) = sfu.upgrade() {
                            sfu.totals.forwarded_packets.fetch_add(1, Ordering::Relaxed);
                            sfu.totals.forwarded_bytes.fetch_add(len, Ordering::Relaxed);
                        }
                    }
                }
            })
        };
        let feedback = {
            let out = subscription.out.clone();
            let rewriter = subscription.rewriter.clone();
            let publication = publication.clone();
            let subscriber = Arc::downgrade(participant);
            let sfu = Arc::downgrade(self);
            spawn("feedback", async move {
                while let Some(feedback) = out.next_feedback().await {
                    let (Some(sfu), Some(subscriber)) = (sfu.upgrade(), subscriber.upgrade())
                    else {
                        return;
                    };
                    match feedback {
                        Feedback::KeyframeRequest => {
                            sfu.request_keyframe(&publication, &subscriber).await;
                        }
                        Feedback::Nack(seqs) => {
                            subscriber
                                .counters
                                .nacks_received
                                .fetch_add(seqs.len() as u64, Ordering::Relaxed);
                            for out_seq in seqs {
                                let packet = {
                                    let rewriter = lock(&rewriter);
                                    let Some(rewriter) = rewriter.as_ref() else {
                                        break;
                                    };
                                    let Some(original) = rewriter.original_sequence(out_seq) else {
                                        continue;
                                    };
                                    let Some(mut packet) =
                                        lock(&publication.nack).get(original).cloned()
                                    else {
                                        continue;
                                    };
                                    if !rewrite_retransmission(rewriter, &mut packet, out_seq) {
                                        continue;
                                    }
                                    packet
                                };
                                if out.write(packet).await {
                                    subscriber
                                        .counters
                                        .retransmitted
                                        .fetch_add(1, Ordering::Relaxed);
                                    sfu.totals.retransmissions.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                }
            })
        };
        subscription.tasks.push(writer);
        subscription.tasks.push(feedback);
        // Start forwarding once the subscriber's DTLS is up, with a fresh keyframe.
        let starter = {
            let sink = subscription.sink.clone();
            let subscriber = Arc::downgrade(participant);
            let sfu = Arc::downgrade(self);
            let mut connected = participant.connected.subscribe();
            spawn("starter", async move {
                if connected.wait_for(|up| *up).await.is_err() {
                    return;
                }
                sink.active.store(true, Ordering::Release);
                if let (Some(sfu), Some(subscriber)) = (sfu.upgrade(), subscriber.upgrade()) {
                    sfu.request_keyframe(&publication, &subscriber).await;
                }
            })
        };
        subscription.tasks.push(starter);
    }

    /// Per-room, per-participant figures for `GET /api/rooms`.
    pub async fn report(&self) -> RoomsReport {
        let rooms: Vec<(String, Vec<Arc<Participant>>)> = {
            let state = lock(&self.state);
            let mut rooms: Vec<_> = state
                .rooms
                .keys()
                .map(|room| (room.clone(), Self::members(&state, room, None)))
                .collect();
            rooms.sort_by(|a, b| a.0.cmp(&b.0));
            rooms
        };
        let tasks_by_kind: std::collections::BTreeMap<String, i64> = lock(&LIVE_TASKS)
            .iter()
            .filter(|(_, n)| *n != 0)
            .map(|(k, n)| ((*k).to_owned(), *n))
            .collect();
        let mut report = RoomsReport {
            rooms: Vec::new(),
            participants: 0,
            joins: self.totals.joins.load(Ordering::Relaxed),
            leaves: self.totals.leaves.load(Ordering::Relaxed),
            forwarded_packets: self.totals.forwarded_packets.load(Ordering::Relaxed),
            forwarded_bytes: self.totals.forwarded_bytes.load(Ordering::Relaxed),
            dropped_packets: self.totals.dropped_packets.load(Ordering::Relaxed),
            keyframe_requests_sent: self.totals.keyframe_requests_sent.load(Ordering::Relaxed),
            retransmissions: self.totals.retransmissions.load(Ordering::Relaxed),
            ports_in_use: self.ports.as_ref().map(|p| lock(p).in_use()),
            tasks: tasks_by_kind.values().sum(),
            tasks_by_kind,
            uptime_seconds: self.started.elapsed().as_secs(),
        };
        for (room, members) in rooms {
            let mut participants = Vec::new();
            for p in members {
                participants.push(p.report().await);
            }
            report.participants += participants.len();
            report.rooms.push(RoomReport { room, participants });
        }
        report
    }

    /// Rooms and participants currently held (for tests and the churn check).
    pub fn counts(&self) -> (usize, usize) {
        let state = lock(&self.state);
        (state.rooms.len(), state.participants.len())
    }
}

impl Negotiation {
    /// `ready` + a first request, atomically: subscribe to what the room already has.
    fn request_and_join(&mut self) -> bool {
        let start = self.request();
        start || self.joined()
    }
}

impl Participant {
    async fn report(&self) -> ParticipantReport {
        let c = &self.counters;
        let bytes_in = c.bytes_in.load(Ordering::Relaxed);
        let bytes_out = c.bytes_out.load(Ordering::Relaxed);
        let now = Instant::now();
        let (bitrate_in, bitrate_out) = {
            let mut sample = lock(&self.rate_sample);
            let elapsed = now.duration_since(sample.0).as_secs_f64();
            let rates = if elapsed > 0.0 {
                (
                    ((bytes_in - sample.1) as f64 * 8.0 / elapsed) as u64,
                    ((bytes_out - sample.2) as f64 * 8.0 / elapsed) as u64,
                )
            } else {
                (0, 0)
            };
            *sample = (now, bytes_in, bytes_out);
            rates
        };
        let PeerStats {
            rtt_seconds,
            packets_lost_outbound,
            packets_lost_inbound,
        } = self.peer.stats().await;
        let publications = lock(&self.publications);
        let keyframes_sent_upstream = publications.iter().map(|p| lock(&p.keyframes).sent).sum();
        let publishing = publications.iter().map(|p| p.kind).collect();
        drop(publications);
        let (subscriptions, dropped) = match self.subscriptions.try_lock() {
            Ok(subs) => (
                subs.len(),
                subs.values().map(|s| s.sink.queue.drops().0).sum::<u64>(),
            ),
            Err(_) => (0, 0),
        };
        c.dropped.store(dropped, Ordering::Relaxed);
        ParticipantReport {
            id: self.id.to_string(),
            name: self.name.clone(),
            seconds: self.joined_at.elapsed().as_secs(),
            publishing,
            subscriptions,
            bitrate_in_bps: bitrate_in,
            bitrate_out_bps: bitrate_out,
            packets_in: c.packets_in.load(Ordering::Relaxed),
            packets_out: c.packets_out.load(Ordering::Relaxed),
            bytes_in,
            bytes_out,
            packets_lost_inbound,
            packets_lost_outbound,
            rtt_ms: rtt_seconds.map(|s| s * 1000.0),
            keyframes_requested: c.keyframes_requested.load(Ordering::Relaxed),
            keyframes_sent_upstream,
            nacks_received: c.nacks_received.load(Ordering::Relaxed),
            retransmitted: c.retransmitted.load(Ordering::Relaxed),
            dropped,
            negotiations: lock(&self.negotiation).rounds,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RoomsReport {
    pub rooms: Vec<RoomReport>,
    pub participants: usize,
    pub joins: u64,
    pub leaves: u64,
    pub forwarded_packets: u64,
    pub forwarded_bytes: u64,
    pub dropped_packets: u64,
    pub keyframe_requests_sent: u64,
    pub retransmissions: u64,
    pub ports_in_use: Option<usize>,
    /// Media-plane tasks alive (forwarding, writers, feedback, negotiation, peer events).
    pub tasks: i64,
    pub tasks_by_kind: std::collections::BTreeMap<String, i64>,
    pub uptime_seconds: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoomReport {
    pub room: String,
    pub participants: Vec<ParticipantReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ParticipantReport {
    pub id: String,
    pub name: String,
    pub seconds: u64,
    pub publishing: Vec<Kind>,
    pub subscriptions: usize,
    pub bitrate_in_bps: u64,
    pub bitrate_out_bps: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Lost on the way from the browser (from our receive statistics).
    pub packets_lost_inbound: i64,
    /// Lost on the way to the browser (from its receiver reports).
    pub packets_lost_outbound: i64,
    pub rtt_ms: Option<f64>,
    /// Keyframe requests made on this participant's behalf (its PLI/FIR, joins, congestion).
    pub keyframes_requested: u64,
    /// Keyframe requests sent to this participant as a publisher, after throttling.
    pub keyframes_sent_upstream: u64,
    pub nacks_received: u64,
    pub retransmitted: u64,
    pub dropped: u64,
    pub negotiations: u64,
}
