//! [`Sfu`]: the media plane as the signaling side sees it. Every call becomes a request to
//! the driver's thread, sent at once — so calls made one after the other from one socket's
//! handler reach the core in that order, even when the caller awaits none of them (a
//! `candidate` right after its `join` is applied after the join).

use std::{
    future::Future,
    hash::{BuildHasher, Hasher},
    net::SocketAddr,
    sync::{atomic::Ordering, mpsc::SyncSender, Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, oneshot};

use crate::{
    api::{
        IceCandidate, JoinAnswer, JoinOptions, Moderation, ModeratorRight, ParticipantEvent,
        ParticipantInfo, SfuConfig, SfuError, Source, TrackKind,
    },
    core::{Command, Reply, SfuCore, TapOutput},
    driver::{self, Request, Shared},
    ids::{IdGen, ParticipantId, Round, TapId},
    net,
    report::RoomsReport,
};

/// Reports asked for within this interval share one pass of the media loop:
/// `GET /api/rooms` is public, and each report costs a pass over every participant.
const REPORT_REUSE: Duration = Duration::from_millis(100);

pub struct Sfu {
    config: SfuConfig,
    requests: mpsc::UnboundedSender<Request>,
    media_addr: SocketAddr,
    /// Participant ids are made here, not in the core, so that the caller knows a
    /// participant's id before the core has answered its join.
    ids: Mutex<IdGen>,
    shared: Arc<Shared>,
    last_report: tokio::sync::Mutex<Option<(Instant, RoomsReport)>>,
}

/// A participant that joined.
pub struct Joined {
    pub id: ParticipantId,
    /// The SDP answer for the browser; it must reach the browser before anything from
    /// `events`, then call [`Sfu::ready`].
    pub answer: String,
    pub participants: Vec<ParticipantInfo>,
    /// The room is a live room (H.264 video).
    pub live: bool,
    pub events: mpsc::UnboundedReceiver<ParticipantEvent>,
}

/// A join sent to the media plane, not answered yet.
pub struct JoinRequest {
    pub id: ParticipantId,
    reply: oneshot::Receiver<Result<JoinAnswer, SfuError>>,
    events: mpsc::UnboundedReceiver<ParticipantEvent>,
}

impl JoinRequest {
    /// The media plane's answer. Dropping the request instead undoes the join.
    pub async fn joined(self) -> Result<Joined, SfuError> {
        let answer = self.reply.await.unwrap_or(Err(SfuError::Stopped))?;
        Ok(Joined {
            id: self.id,
            answer: answer.sdp,
            participants: answer.participants,
            live: answer.live,
            events: self.events,
        })
    }
}

impl Sfu {
    /// Binds the media socket and starts the media thread. A socket that cannot be bound
    /// is an error here, not a dead SFU later.
    pub fn new(config: SfuConfig) -> Result<Arc<Sfu>, SfuError> {
        let socket = net::bind(&config.net, config.ports.as_ref())?;
        let bound = socket.local_addr().map_err(|source| SfuError::Bind {
            ip: config.net.bind_ip,
            ports: "any".into(),
            source,
        })?;
        let media_addr = net::announced_addr(&config.net, bound);
        tracing::info!(%bound, announced = %media_addr, "SFU media socket");
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let core = SfuCore::new(config.clone(), media_addr, seed, Instant::now());
        let shared = Arc::new(Shared::default());
        let requests = driver::spawn(core, socket, shared.clone())?;
        Ok(Arc::new(Sfu {
            ids: Mutex::new(IdGen::new(config.shard, seed.rotate_left(17))),
            config,
            requests,
            media_addr,
            shared,
            last_report: tokio::sync::Mutex::new(None),
        }))
    }

    /// The media address announced to browsers (what a TURN relay must be allowed to reach
    /// for a participant behind a UDP-blocking firewall).
    pub fn media_addr(&self) -> SocketAddr {
        self.media_addr
    }

    pub fn config(&self) -> &SfuConfig {
        &self.config
    }

    pub fn room_capacity(&self) -> usize {
        self.config.room_capacity
    }

    /// How long a browser has to answer an `update` offer.
    pub fn update_timeout(&self) -> Duration {
        self.config.update_timeout
    }

    /// Joins `room` with the browser's offer. The id is known at once; the answer follows.
    pub fn join(&self, room: &str, name: &str, offer: String, options: JoinOptions) -> JoinRequest {
        let id = self
            .ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .participant();
        let (events, events_rx) = mpsc::unbounded_channel();
        let (reply, reply_rx) = oneshot::channel();
        let request = Request::Join {
            command: Command::Join {
                id,
                room: room.to_owned(),
                name: name.to_owned(),
                offer,
                options,
            },
            events,
            reply,
        };
        // If the loop is gone the reply channel closes: `joined` says `Stopped`.
        let _ = self.requests.send(request);
        JoinRequest {
            id,
            reply: reply_rx,
            events: events_rx,
        }
    }

    /// The join answer was delivered: server-initiated negotiation may start.
    pub fn ready(&self, id: ParticipantId) {
        self.tell(Command::Ready { id });
    }

    /// The browser's answer to `update` `round` (or why there is none).
    pub fn answer(&self, id: ParticipantId, round: Round, answer: Result<String, String>) {
        self.tell(Command::Answer { id, round, answer });
    }

    pub fn add_candidate(&self, id: ParticipantId, candidate: IceCandidate) {
        self.tell(Command::Candidate { id, candidate });
    }

    /// The browser asks for an ICE restart; an `update` with new credentials follows
    /// (folded with one already under way).
    pub fn restart(&self, id: ParticipantId) {
        self.tell(Command::Restart { id });
    }

    /// `id` wants at most `layer` of `publisher`'s video from `source` (0 the lowest,
    /// `u8::MAX` the best there is, `None` nothing). Unknown ids are ignored: the publisher
    /// may have just left.
    pub fn prefer_layer(
        &self,
        id: ParticipantId,
        publisher: ParticipantId,
        source: Source,
        layer: Option<u8>,
    ) {
        self.tell(Command::PreferLayer {
            id,
            publisher,
            source,
            layer,
        });
    }

    /// `id`'s page starts (`on`) or stops sharing its screen: an `update` follows that
    /// offers (or stops) the m-line it sends it on.
    pub fn share(&self, id: ParticipantId, on: bool) {
        self.tell(Command::Share { id, on });
    }

    /// `by` moderates its room with `right` (a token's grant, checked by the caller, or
    /// the room-host rule): [`SfuError::NotModerator`] or [`SfuError::NotInRoom`] if not
    /// done. A removed participant's signaling hears [`ParticipantEvent::Removed`].
    pub async fn moderate(
        &self,
        by: ParticipantId,
        action: Moderation,
        right: ModeratorRight,
    ) -> Result<(), SfuError> {
        self.ask(Command::Moderate { by, action, right })
            .await
            .unwrap_or(Err(SfuError::Stopped))
            .map(drop)
    }

    /// Leaves the room (also on disconnect). Idempotent. Sent at once; the future resolves
    /// when the media plane has done it.
    pub fn leave(&self, id: ParticipantId) -> impl Future<Output = ()> + Send + 'static {
        let reply = self.ask(Command::Leave { id });
        async move {
            let _ = reply.await;
        }
    }

    /// Attaches a tap to `publisher`'s camera or microphone track (`kind`): its packets,
    /// from a keyframe on, go to `sink`, then [`TapOutput::Ended`] when the track ends. A
    /// `sink` that is full loses the tap (its sender is dropped without `Ended`): the media
    /// thread never waits for a consumer.
    pub async fn attach_tap(
        &self,
        publisher: ParticipantId,
        kind: TrackKind,
        sink: SyncSender<TapOutput>,
    ) -> Result<TapId, SfuError> {
        let (reply, rx) = oneshot::channel();
        let _ = self.requests.send(Request::AttachTap {
            publisher,
            kind,
            sink,
            reply,
        });
        rx.await.unwrap_or(Err(SfuError::Stopped))
    }

    pub fn detach_tap(&self, tap: TapId) {
        self.tell(Command::DetachTap { tap });
    }

    /// The tap's consumer wants a keyframe (it lost frames, or has none to start from).
    pub fn tap_keyframe(&self, tap: TapId) {
        self.tell(Command::TapKeyframe { tap });
    }

    /// Per-room, per-participant figures for `GET /api/rooms` and metrics: may be one made
    /// up to 100 ms ago.
    pub async fn report(&self) -> RoomsReport {
        self.report_within(REPORT_REUSE).await
    }

    /// A report made now, for decisions that must see what the media plane holds at this
    /// moment: a room put on air or recorded right after someone joined it (a reused report
    /// would not have them yet, and the room would be refused as having nothing to stream).
    pub async fn fresh_report(&self) -> RoomsReport {
        self.report_within(Duration::ZERO).await
    }

    /// The last report if younger than `max_age`, else a new one (kept for the next caller).
    async fn report_within(&self, max_age: Duration) -> RoomsReport {
        // Held across the call: concurrent requests wait for one pass instead of each
        // queueing their own.
        let mut last = self.last_report.lock().await;
        if let Some((at, report)) = last.as_ref() {
            if at.elapsed() < max_age {
                return report.clone();
            }
        }
        let report = match self.ask(Command::Report).await {
            Ok(Ok(Reply::Report(report))) => *report,
            _ => RoomsReport::default(),
        };
        *last = Some((Instant::now(), report.clone()));
        report
    }

    /// Rooms and participants currently held (for tests and the churn check).
    pub fn counts(&self) -> (usize, usize) {
        (
            self.shared.rooms.load(Ordering::Relaxed),
            self.shared.participants.load(Ordering::Relaxed),
        )
    }

    fn tell(&self, command: Command) {
        let _ = self.requests.send(Request::Command {
            command,
            reply: None,
        });
    }

    fn ask(&self, command: Command) -> oneshot::Receiver<Result<Reply, SfuError>> {
        let (reply, rx) = oneshot::channel();
        let _ = self.requests.send(Request::Command {
            command,
            reply: Some(reply),
        });
        rx
    }
}
