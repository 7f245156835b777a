//! The socket.io binding of the `/sfu` core: parse, lock, apply, unlock, ack or emit.
//!
//! Ordering, as on the 1-to-1 side (`signaling::socketio`): socketioxide calls a handler
//! *closure* while reading one socket's packets in order, and spawns the future it returns.
//! Everything that must keep that order — the state change and the request sent to the
//! media plane — runs in the closure; only waiting (for a join's answer, for a browser's
//! answer to `update`) happens in tasks. So a `candidate` emitted right after `join`
//! reaches the media plane after that join, never before it.

use std::{
    future::{ready, Ready},
    sync::{Arc, Mutex, MutexGuard},
    time::Instant,
};

use serde::Serialize;
use serde_json::{json, Value};
use sfu::{
    IceCandidate, JoinOptions, JoinRequest, Moderation, ModeratorRight, ParticipantEvent,
    ParticipantId, Sfu, SfuError, Source,
};
use socketioxide::{
    extract::{AckSender, Event, SocketRef, TryData},
    handler::ConnectHandler,
    socket::{DisconnectReason, Sid},
    SocketIo,
};
use tokio::sync::mpsc;

use super::{
    command::{ack_error, parse_command, parse_sdp, permitted, SfuCommand, SfuSignalError},
    core::{MediaPlane, Reply, SfuSignalingCore},
};
use crate::access::{Access, ConnectRefused};
use crate::auth::Claims;
use crate::live::{self, LiveError, LiveRooms};
use crate::passcode::{PasscodeError, PasscodeGuard};
use crate::recordings::room::{Announce, RoomRecorder, RoomRecordingError};
use crate::signaling::{
    command::RoomName, core::Admission, error::ErrorReport, rate_limit::RateLimit,
};

/// The socket.io namespace of SFU rooms.
pub const NAMESPACE: &str = "/sfu";

/// Signaling state of the `/sfu` namespace.
pub struct SfuHub {
    sfu: Arc<Sfu>,
    core: Mutex<SfuSignalingCore<Sid>>,
    recorder: Arc<RoomRecorder>,
    live: Arc<LiveRooms>,
    /// Wrong (or missing) passcodes per client address and room: a few, then one now and
    /// then. Per room, so that guessing one room's passcode does not lock the address (a
    /// whole office behind one NAT) out of the others.
    passcodes: PasscodeGuard,
}

/// What a joined socket is, kept in its extensions: the room (also its socket.io room, for
/// what concerns everyone in it) and its name.
#[derive(Debug, Clone)]
struct Member {
    room: RoomName,
    name: String,
    /// Its room is live-ready (H.264 video), as the media plane answered the join.
    live_room: bool,
}

/// The socket.io room of an SFU room's members.
fn room_key(room: &str) -> String {
    format!("room:{room}")
}

/// Tells everyone in an SFU room whether the server records it (`recording`).
pub fn announcer(io: &SocketIo) -> Announce {
    room_broadcast(io, "recording")
}

/// Tells everyone in an SFU room whether it is on air (`live`).
pub fn live_announcer(io: &SocketIo) -> live::Announce {
    room_broadcast(io, "live")
}

/// Tells everyone in a room a room-wide state (what [`Announce`] and [`live::Announce`] are).
type RoomBroadcast<T> = Arc<dyn Fn(&str, &T) + Send + Sync>;

/// Emits `event` with a room-wide state to everyone in the room.
fn room_broadcast<T: Serialize>(io: &SocketIo, event: &'static str) -> RoomBroadcast<T> {
    let io = io.clone();
    Arc::new(move |room: &str, state: &T| {
        let (Some(members), Ok(state)) = (io.of(NAMESPACE), serde_json::to_value(state)) else {
            return;
        };
        let key = room_key(room);
        tokio::spawn(async move {
            let _ = members.to(key).emit(event, &state).await;
        });
    })
}

/// The media plane as the core sees it: the SFU's sends.
struct Plane<'a>(&'a Sfu);

impl MediaPlane for Plane<'_> {
    type JoinReply = JoinRequest;

    fn join(
        &mut self,
        room: &RoomName,
        name: &str,
        offer: String,
        options: JoinOptions,
    ) -> (ParticipantId, JoinRequest) {
        let request = self.0.join(room.as_str(), name, offer, options);
        (request.id, request)
    }

    fn add_candidate(&mut self, id: ParticipantId, candidate: IceCandidate) {
        self.0.add_candidate(id, candidate);
    }

    fn restart(&mut self, id: ParticipantId) {
        self.0.restart(id);
    }

    fn prefer_layer(
        &mut self,
        id: ParticipantId,
        publisher: ParticipantId,
        source: Source,
        layer: Option<u8>,
    ) {
        self.0.prefer_layer(id, publisher, source, layer);
    }

    fn share(&mut self, id: ParticipantId, on: bool) {
        self.0.share(id, on);
    }

    fn leave(&mut self, id: ParticipantId) {
        // Sent now; nobody needs to wait for it to be done.
        drop(self.0.leave(id));
    }
}

impl SfuHub {
    pub fn new(
        sfu: Arc<Sfu>,
        rate_limit: RateLimit,
        recorder: Arc<RoomRecorder>,
        live: Arc<LiveRooms>,
    ) -> Arc<Self> {
        Arc::new(SfuHub {
            sfu,
            core: Mutex::new(SfuSignalingCore::new(rate_limit)),
            recorder,
            live,
            passcodes: PasscodeGuard::default(),
        })
    }

    pub fn sfu(&self) -> &Arc<Sfu> {
        &self.sfu
    }

    fn lock(&self) -> MutexGuard<'_, SfuSignalingCore<Sid>> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn on_connect(&self, socket: &SocketRef) {
        self.lock().connect(socket.id, Instant::now());
    }

    fn on_disconnect(&self, socket: &SocketRef, reason: DisconnectReason) {
        tracing::debug!(sid = %socket.id, ?reason, "sfu: signaling disconnected");
        self.lock().disconnect(socket.id, &mut Plane(&self.sfu));
    }

    fn on_event(self: &Arc<Self>, socket: &SocketRef, event: String, data: Value, ack: AckSender) {
        let now = Instant::now();
        let admission = self.lock().admit(socket.id, now);
        match admission {
            Admission::Accept => {}
            Admission::Refuse => return refuse(socket, &event, SfuSignalError::RateLimited, ack),
            Admission::Disconnect => {
                tracing::warn!(sid = %socket.id, "sfu: disconnecting a client that keeps flooding");
                let _ = socket.clone().disconnect();
                return;
            }
        }
        // Parsed outside the lock: validating a 64 KiB SDP must not hold up other rooms.
        let command = match parse_command(&event, &data) {
            Ok(command) => command,
            Err(error) => return refuse(socket, &event, error, ack),
        };
        if let Some(claims) = socket.extensions.get::<Claims>() {
            if let Err(error) = permitted(&claims, &command) {
                return refuse(socket, &event, error, ack);
            }
        }
        if let SfuCommand::Join { room, .. } = &command {
            if self.passcodes.blocked(socket, room.as_str()) {
                return refuse(socket, &event, PasscodeError::RateLimited.into(), ack);
            }
        }
        let joining = match &command {
            SfuCommand::Join { room, name, .. } => Some(Member {
                room: room.clone(),
                name: name.clone(),
                live_room: false,
            }),
            _ => None,
        };
        let leaving = matches!(command, SfuCommand::Leave);
        let result = self
            .lock()
            .handle(socket.id, command, now, &mut Plane(&self.sfu));
        match result {
            Ok(Reply::Ack(reply)) => {
                if leaving {
                    self.left(socket);
                }
                let _ = ack.send(&reply);
            }
            Ok(Reply::Joining(_, request)) => {
                let member = joining.expect("a join is joining");
                tokio::spawn(
                    self.clone()
                        .settle_join(socket.clone(), member, request, ack),
                );
            }
            Ok(Reply::Record(_, on)) => {
                let member = socket.extensions.get::<Member>();
                let Some(member) = member else {
                    return refuse(socket, &event, SfuSignalError::NotJoined, ack);
                };
                tokio::spawn(self.clone().record(socket.clone(), member, on, ack));
            }
            Ok(Reply::Live(_, on)) => {
                let member = socket.extensions.get::<Member>();
                let Some(member) = member else {
                    return refuse(socket, &event, SfuSignalError::NotJoined, ack);
                };
                if on && !member.live_room {
                    return refuse(socket, &event, SfuSignalError::NotLiveRoom, ack);
                }
                tokio::spawn(self.clone().go_live(socket.clone(), member, on, ack));
            }
            Ok(Reply::Moderate(id, action)) => {
                let Some(member) = socket.extensions.get::<Member>() else {
                    return refuse(socket, &event, SfuSignalError::NotJoined, ack);
                };
                // With tokens, `permitted` has checked the grant; without, the media plane
                // lets the room's longest-present participant moderate.
                let right = match socket.extensions.get::<Claims>() {
                    Some(_) => ModeratorRight::Granted,
                    None => ModeratorRight::IfHost,
                };
                tokio::spawn(
                    self.clone()
                        .moderate(socket.clone(), member, id, action, right, ack),
                );
            }
            Err(error) => refuse(socket, &event, error, ack),
        }
    }

    /// Asks the media plane to carry out a moderator's `action`; ending a room also ends its
    /// recording and its broadcast.
    async fn moderate(
        self: Arc<Self>,
        socket: SocketRef,
        member: Member,
        id: ParticipantId,
        action: Moderation,
        right: ModeratorRight,
        ack: AckSender,
    ) {
        match self.sfu.moderate(id, action, right).await {
            Ok(()) => {
                tracing::info!(%id, room = %member.room, ?action, "sfu: moderated");
                if action == Moderation::EndRoom {
                    self.recorder.stop(member.room.as_str(), "room_ended");
                    self.live.stop(member.room.as_str(), "room_ended");
                }
                let _ = ack.send(&json!({ "ok": true }));
            }
            Err(error) => {
                let error = match error {
                    SfuError::NotModerator => SfuSignalError::NotModerator,
                    SfuError::NotInRoom(_) => SfuSignalError::NoSuchParticipant,
                    SfuError::NotJoined => SfuSignalError::NotJoined,
                    _ => SfuSignalError::MediaError,
                };
                refuse(&socket, "moderate", error, ack);
            }
        }
    }

    /// The socket is no longer in its room: room-wide events stop reaching it.
    fn left(&self, socket: &SocketRef) {
        if let Some(member) = socket.extensions.remove::<Member>() {
            socket.leave(room_key(member.room.as_str()));
        }
    }

    /// Starts or stops the recording of `member`'s room; everyone in it hears about it.
    async fn record(self: Arc<Self>, socket: SocketRef, member: Member, on: bool, ack: AckSender) {
        let room = member.room.as_str();
        if !on {
            self.recorder.stop(room, "stopped");
            let _ = ack.send(&json!({ "ok": true, "recording": self.recorder.state(room) }));
            return;
        }
        match self.recorder.start(room, &member.name).await {
            Ok(state) => {
                let _ = ack.send(&json!({ "ok": true, "recording": state }));
            }
            Err(error) => {
                tracing::info!(%room, %error, "sfu: recording refused");
                let error = match error {
                    RoomRecordingError::NothingToRecord => SfuSignalError::NothingToRecord,
                    RoomRecordingError::Storage(_) => SfuSignalError::StorageFailed,
                };
                refuse(&socket, "record", error, ack);
            }
        }
    }

    /// Puts `member`'s room on or off air; everyone in it hears about it.
    async fn go_live(self: Arc<Self>, socket: SocketRef, member: Member, on: bool, ack: AckSender) {
        let room = member.room.as_str();
        if !on {
            self.live.stop(room, "stopped");
            let _ = ack.send(&json!({ "ok": true, "live": self.live.state(room) }));
            return;
        }
        match self.live.start(room, &member.name).await {
            Ok(state) => {
                let _ = ack.send(&json!({ "ok": true, "live": state }));
            }
            Err(LiveError::NothingToStream) => {
                refuse(&socket, "live", SfuSignalError::NothingToStream, ack);
            }
        }
    }

    /// Waits for the media plane's answer to a join and delivers it, unless the client
    /// left or went away meanwhile. Server offers (`update`) may only follow the answer.
    async fn settle_join(
        self: Arc<Self>,
        socket: SocketRef,
        member: Member,
        request: JoinRequest,
        ack: AckSender,
    ) {
        let id = request.id;
        let result = request.joined().await;
        let settled = self.lock().join_settled(socket.id, id, result.is_ok());
        match (result, settled) {
            (Ok(joined), Ok(())) => {
                let member = Member {
                    live_room: joined.live,
                    ..member
                };
                let room = member.room.as_str();
                socket.join(room_key(room));
                let reply = json!({
                    "id": id,
                    "type": "answer",
                    "sdp": joined.answer,
                    "participants": joined.participants,
                    "capacity": self.sfu.room_capacity(),
                    "recording": self.recorder.state(room),
                    "live_room": joined.live,
                    "live": self.live.state(room),
                    "moderation": moderation(&socket),
                });
                let _ = ack.send(&reply);
                self.sfu.ready(id);
                self.recorder.joined(room, id, &member.name);
                self.live.joined(room, id, &member.name);
                socket.extensions.insert(member);
                tokio::spawn(pump(self, socket, id, joined.events));
            }
            // Left or disconnected while the join was on its way (which already left).
            (Ok(_), Err(error)) => refuse(&socket, "join", error, ack),
            (Err(error), _) => {
                tracing::info!(sid = %socket.id, %error, "sfu: join refused");
                let error = match error {
                    SfuError::RoomFull => SfuSignalError::RoomFull,
                    SfuError::PasscodeRequired => {
                        self.passcodes.failed(&socket, member.room.as_str());
                        PasscodeError::Required.into()
                    }
                    SfuError::WrongPasscode => {
                        self.passcodes.failed(&socket, member.room.as_str());
                        PasscodeError::Wrong.into()
                    }
                    _ => SfuSignalError::MediaError,
                };
                refuse(&socket, "join", error, ack);
            }
        }
    }
}

/// Who moderates, as the join answer tells the page: `granted` (its token says it may),
/// `none` (its token does not), or `host` (no tokens: the room's longest-present
/// participant, first in the `participants` list).
fn moderation(socket: &SocketRef) -> &'static str {
    match socket.extensions.get::<Claims>() {
        Some(claims) if claims.grants.moderate => "granted",
        Some(_) => "none",
        None => "host",
    }
}

/// Tells the client why `event` was refused: in its ack and as an `sfu_error` event.
fn refuse(socket: &SocketRef, event: &str, error: SfuSignalError, ack: AckSender) {
    tracing::debug!(sid = %socket.id, %event, code = error.code(), "sfu: refused");
    let report = error.report(event);
    let _ = socket.emit("sfu_error", &report);
    let _ = ack.send(&ack_error(&report));
}

/// Delivers one participant's media-plane events to its socket, in order.
async fn pump(
    hub: Arc<SfuHub>,
    socket: SocketRef,
    id: ParticipantId,
    mut events: mpsc::UnboundedReceiver<ParticipantEvent>,
) {
    while let Some(event) = events.recv().await {
        match event {
            ParticipantEvent::Update { round, sdp } => {
                let offer = json!({ "type": "offer", "sdp": sdp });
                // The media plane gives up on the answer after this long (its own
                // deadline); the ack must not give up earlier (socketioxide's default is 5 s).
                let timed = socket.timeout(hub.sfu.update_timeout());
                match timed.emit_with_ack::<_, Value>("update", &offer) {
                    Ok(answer) => {
                        let hub = hub.clone();
                        tokio::spawn(async move {
                            let answer = match answer.await {
                                Ok(value) => {
                                    parse_sdp(Some(&value), "answer").map_err(|e| e.to_string())
                                }
                                Err(error) => Err(error.to_string()),
                            };
                            hub.sfu.answer(id, round, answer);
                        });
                    }
                    Err(error) => hub.sfu.answer(id, round, Err(error.to_string())),
                }
            }
            ParticipantEvent::Participants(list) => {
                let _ = socket.emit("participants", &list);
            }
            ParticipantEvent::Speakers(speakers) => {
                let _ = socket.emit("speakers", &speakers);
            }
            ParticipantEvent::PublishLayers(layers) => {
                let _ = socket.emit("publish_layers", &layers);
            }
            ParticipantEvent::VideoPaused {
                publisher,
                source,
                paused,
            } => {
                let state = if paused { "paused" } else { "active" };
                let _ = socket.emit(
                    "video_state",
                    &json!({ "participant": publisher, "source": source, "state": state }),
                );
            }
            ParticipantEvent::Removed { by, ended } => {
                hub.left(&socket);
                if hub
                    .lock()
                    .session_ended(socket.id, id, &mut Plane(&hub.sfu))
                {
                    let reason = if ended { "room_ended" } else { "removed" };
                    let _ = socket.emit("removed", &json!({ "by": by, "reason": reason }));
                }
                return;
            }
            ParticipantEvent::Failed => {
                hub.left(&socket);
                let left = hub
                    .lock()
                    .session_ended(socket.id, id, &mut Plane(&hub.sfu));
                if left {
                    tracing::info!(%id, "sfu: media connection failed; left");
                    let report = ErrorReport {
                        code: "media_failed",
                        message: "the media connection failed".into(),
                        event: "update",
                    };
                    let _ = socket.emit("sfu_error", &report);
                }
                return;
            }
        }
    }
}

/// Serves SFU rooms on the `/sfu` namespace of `io`.
pub fn attach(io: &SocketIo, hub: Arc<SfuHub>, access: Arc<Access>) {
    // As for 1-to-1 signaling, handlers are registered in a connect middleware so that a
    // `join` sent right after connecting is not missed; a refused token ends the handshake.
    let register = move |socket: SocketRef,
                         TryData(auth): TryData<Value>|
          -> Ready<Result<(), ConnectRefused>> {
        if let Err(refused) = access.admit_socket(&socket, auth.ok().as_ref()) {
            return ready(Err(refused));
        }
        hub.on_connect(&socket);
        let events = hub.clone();
        socket.on_fallback(
            move |socket: SocketRef,
                  Event(event): Event,
                  TryData(data): TryData<Value>,
                  ack: AckSender|
                  -> Ready<()> {
                events.on_event(&socket, event, data.unwrap_or(Value::Null), ack);
                ready(())
            },
        );
        let gone = hub.clone();
        socket.on_disconnect(
            move |socket: SocketRef, reason: DisconnectReason| -> Ready<()> {
                gone.on_disconnect(&socket, reason);
                ready(())
            },
        );
        ready(Ok(()))
    };
    io.ns(NAMESPACE, (|| ready(())).with(register));
}
