//! Signaling for SFU rooms: the socket.io `/sfu` namespace (docs/protocol.md, "SFU rooms")
//! in front of the [`sfu`] media plane, and `GET /api/rooms`.
//!
//! - [`command`]: validation of untrusted events (no I/O).
//! - this module: per-connection state (idle → joining → joined), rate limiting, and the
//!   binding of [`sfu::Sfu`] to socket.io: the join answer goes back in the `join` ack;
//!   server offers go out as `update` with the browser's answer in its ack.

pub mod command;

use std::{
    collections::HashMap,
    convert::Infallible,
    future::{ready, Ready},
    sync::{Arc, Mutex, MutexGuard},
    time::Instant,
};

use axum::{extract::State, routing::get, Json, Router};
use serde_json::{json, Value};
use sfu::{ParticipantEvent, Sfu, SfuError};
use socketioxide::{
    extract::{AckSender, Event, SocketRef, TryData},
    handler::ConnectHandler,
    socket::{DisconnectReason, Sid},
    SocketIo,
};
use tokio::sync::mpsc;

use crate::signaling::rate_limit::{RateLimit, TokenBucket};
use command::{parse_command, parse_sdp, SfuCommand, SfuSignalError};

/// The socket.io namespace of SFU rooms.
pub const NAMESPACE: &str = "/sfu";
/// A client whose events keep being refused is disconnected after this many refusals.
const MAX_REFUSED: u32 = 64;

/// Signaling state of the `/sfu` namespace.
pub struct SfuHub {
    sfu: Arc<Sfu>,
    rate_limit: RateLimit,
    conns: Mutex<HashMap<Sid, Conn>>,
}

struct Conn {
    bucket: TokenBucket,
    state: ConnState,
}

#[derive(Debug, Clone, PartialEq)]
enum ConnState {
    Idle,
    Joining { cancelled: bool },
    Joined(Arc<str>),
}

impl SfuHub {
    pub fn new(sfu: Arc<Sfu>, rate_limit: RateLimit) -> Arc<Self> {
        Arc::new(SfuHub {
            sfu,
            rate_limit,
            conns: Mutex::new(HashMap::new()),
        })
    }

    pub fn sfu(&self) -> &Arc<Sfu> {
        &self.sfu
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Sid, Conn>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn on_connect(&self, socket: &SocketRef) {
        self.lock().insert(
            socket.id,
            Conn {
                bucket: TokenBucket::new(self.rate_limit, Instant::now()),
                state: ConnState::Idle,
            },
        );
    }

    async fn on_disconnect(self: Arc<Self>, socket: SocketRef, reason: DisconnectReason) {
        let state = self.lock().remove(&socket.id).map(|c| c.state);
        if let Some(ConnState::Joined(id)) = state {
            tracing::info!(sid = %socket.id, %id, ?reason, "sfu: signaling disconnected; leaving");
            self.sfu.leave(&id).await;
        } else {
            tracing::debug!(sid = %socket.id, ?reason, "sfu: signaling disconnected");
        }
    }

    /// Rate limit; `Err(true)` = disconnect the flooder.
    fn admit(&self, sid: Sid) -> Result<(), bool> {
        let mut conns = self.lock();
        let Some(conn) = conns.get_mut(&sid) else {
            return Err(false);
        };
        if conn.bucket.try_take(Instant::now()) {
            Ok(())
        } else {
            Err(conn.bucket.refused >= MAX_REFUSED)
        }
    }

    async fn on_event(
        self: Arc<Self>,
        socket: SocketRef,
        event: String,
        data: Value,
        ack: AckSender,
    ) {
        let result = match self.admit(socket.id) {
            Ok(()) => match parse_command(&event, &data) {
                Ok(command) => self.clone().handle(&socket, command).await,
                Err(error) => Err(error),
            },
            Err(true) => {
                tracing::warn!(sid = %socket.id, "sfu: disconnecting a client that keeps flooding");
                let _ = socket.disconnect();
                return;
            }
            Err(false) => Err(SfuSignalError::RateLimited),
        };
        match result {
            Ok((reply, joined)) => {
                let _ = ack.send(&reply);
                // Server offers may only follow the join answer.
                if let Some(id) = joined {
                    self.sfu.ready(&id);
                }
            }
            Err(error) => {
                tracing::debug!(sid = %socket.id, %event, code = error.code(), "sfu: refused");
                let report = error.report(&event);
                let _ = socket.emit("sfu_error", &report["error"]);
                let _ = ack.send(&report);
            }
        }
    }

    /// Applies a command; the reply is the ack. For a join, also the participant to start
    /// negotiating once the ack is sent.
    async fn handle(
        self: Arc<Self>,
        socket: &SocketRef,
        command: SfuCommand,
    ) -> Result<(Value, Option<Arc<str>>), SfuSignalError> {
        match command {
            SfuCommand::Join { room, name, offer } => {
                {
                    let mut conns = self.lock();
                    let conn = conns.get_mut(&socket.id).ok_or(SfuSignalError::NotJoined)?;
                    if conn.state != ConnState::Idle {
                        return Err(SfuSignalError::AlreadyJoined);
                    }
                    conn.state = ConnState::Joining { cancelled: false };
                }
                let joined = match self.sfu.join(room.as_str(), &name, offer).await {
                    Ok(joined) => joined,
                    Err(error) => {
                        if let Some(conn) = self.lock().get_mut(&socket.id) {
                            conn.state = ConnState::Idle;
                        }
                        tracing::info!(%room, %error, "sfu: join refused");
                        return Err(match error {
                            SfuError::RoomFull => SfuSignalError::RoomFull,
                            _ => SfuSignalError::MediaError,
                        });
                    }
                };
                let still_wanted = match self.lock().get_mut(&socket.id) {
                    Some(conn) if conn.state == (ConnState::Joining { cancelled: false }) => {
                        conn.state = ConnState::Joined(joined.id.clone());
                        true
                    }
                    Some(conn) => {
                        conn.state = ConnState::Idle;
                        false
                    }
                    None => false,
                };
                if !still_wanted {
                    // Left or disconnected while the connection was being built.
                    self.sfu.leave(&joined.id).await;
                    return Err(SfuSignalError::NotJoined);
                }
                let reply = json!({
                    "id": &*joined.id,
                    "sdp": joined.answer,
                    "type": "answer",
                    "participants": joined.participants,
                    "capacity": self.sfu.room_capacity(),
                });
                tokio::spawn(pump(
                    self.clone(),
                    socket.clone(),
                    joined.id.clone(),
                    joined.events,
                ));
                Ok((reply, Some(joined.id)))
            }
            SfuCommand::Candidate {
                candidate,
                sdp_mid,
                sdp_mline_index,
            } => {
                let id = match &self.lock().get(&socket.id).map(|c| c.state.clone()) {
                    Some(ConnState::Joined(id)) => id.clone(),
                    _ => return Err(SfuSignalError::NotJoined),
                };
                self.sfu
                    .add_candidate(&id, candidate, sdp_mid, sdp_mline_index)
                    .await
                    .map_err(|_| SfuSignalError::InvalidCandidate)?;
                Ok((json!({ "ok": true }), None))
            }
            SfuCommand::Leave => {
                let id = {
                    let mut conns = self.lock();
                    let conn = conns.get_mut(&socket.id).ok_or(SfuSignalError::NotJoined)?;
                    match std::mem::replace(&mut conn.state, ConnState::Idle) {
                        ConnState::Joined(id) => id,
                        ConnState::Joining { .. } => {
                            conn.state = ConnState::Joining { cancelled: true };
                            return Ok((json!({ "ok": true }), None));
                        }
                        ConnState::Idle => return Err(SfuSignalError::NotJoined),
                    }
                };
                tracing::info!(sid = %socket.id, %id, "sfu: leave");
                self.sfu.leave(&id).await;
                Ok((json!({ "ok": true }), None))
            }
        }
    }
}

/// Delivers one participant's media-plane events to its socket.
async fn pump(
    hub: Arc<SfuHub>,
    socket: SocketRef,
    id: Arc<str>,
    mut events: mpsc::UnboundedReceiver<ParticipantEvent>,
) {
    while let Some(event) = events.recv().await {
        match event {
            ParticipantEvent::Update { sdp, answer } => {
                let offer = json!({ "type": "offer", "sdp": sdp });
                // The SFU gives up on the answer after this long; the ack must not give up
                // earlier (socketioxide's default is 5 s).
                let timed = socket.timeout(hub.sfu.update_timeout());
                match timed.emit_with_ack::<_, Value>("update", &offer) {
                    Ok(ack) => {
                        tokio::spawn(async move {
                            let reply = match ack.await {
                                Ok(value) => {
                                    parse_sdp(Some(&value), "answer").map_err(|e| e.to_string())
                                }
                                Err(error) => Err(error.to_string()),
                            };
                            let _ = answer.send(reply);
                        });
                    }
                    Err(error) => {
                        let _ = answer.send(Err(error.to_string()));
                    }
                }
            }
            ParticipantEvent::Participants(list) => {
                let _ = socket.emit("participants", &list);
            }
            ParticipantEvent::Failed => {
                let joined = {
                    let mut conns = hub.lock();
                    match conns.get_mut(&socket.id) {
                        Some(conn) if conn.state == ConnState::Joined(id.clone()) => {
                            conn.state = ConnState::Idle;
                            true
                        }
                        _ => false,
                    }
                };
                if joined {
                    tracing::info!(%id, "sfu: media connection failed; leaving");
                    hub.sfu.leave(&id).await;
                    let _ = socket.emit(
                        "sfu_error",
                        &json!({"code": "media_failed", "message": "the media connection failed", "event": "update"}),
                    );
                }
                return;
            }
        }
    }
}

/// Serves SFU rooms on the `/sfu` namespace of `io`.
pub fn attach(io: &SocketIo, hub: Arc<SfuHub>) {
    // As for 1-to-1 signaling, handlers are registered in a connect middleware so that a
    // `join` sent right after connecting is not missed.
    let register = move |socket: SocketRef| -> Ready<Result<(), Infallible>> {
        hub.on_connect(&socket);
        let events = hub.clone();
        socket.on_fallback(
            move |socket: SocketRef,
                  Event(event): Event,
                  TryData(data): TryData<Value>,
                  ack: AckSender| {
                let hub = events.clone();
                async move {
                    hub.on_event(socket, event, data.unwrap_or(Value::Null), ack)
                        .await;
                }
            },
        );
        let gone = hub.clone();
        socket.on_disconnect(move |socket: SocketRef, reason: DisconnectReason| {
            let hub = gone.clone();
            async move { hub.on_disconnect(socket, reason).await }
        });
        ready(Ok(()))
    };
    io.ns(NAMESPACE, (|| ready(())).with(register));
}

/// `GET /api/rooms`: per-room, per-participant media statistics.
pub fn routes(hub: Arc<SfuHub>) -> Router {
    Router::new()
        .route("/api/rooms", get(rooms))
        .with_state(hub)
}

async fn rooms(State(hub): State<Arc<SfuHub>>) -> Json<sfu::RoomsReport> {
    Json(hub.sfu.report().await)
}

/// SFU settings resolved from flags and the config file.
#[derive(Debug, Clone)]
pub struct SfuSettings {
    pub rtc_ports: Option<std::ops::RangeInclusive<u16>>,
    pub public_ip: Option<std::net::IpAddr>,
    pub room_capacity: usize,
}

impl SfuSettings {
    pub fn merge(
        rtc_ports: Option<String>,
        public_ip: Option<std::net::IpAddr>,
        room_capacity: Option<u16>,
    ) -> Result<Self, crate::config::ConfigError> {
        let rtc_ports = rtc_ports
            .map(|text| sfu::ports::parse_range(&text))
            .transpose()
            .map_err(|e| crate::config::ConfigError::Invalid(format!("rtc_ports: {e}")))?;
        let room_capacity = usize::from(room_capacity.unwrap_or(16));
        if room_capacity == 0 {
            return Err(crate::config::ConfigError::Invalid(
                "sfu_room_capacity must be at least 1".into(),
            ));
        }
        Ok(SfuSettings {
            rtc_ports,
            public_ip,
            room_capacity,
        })
    }
}

/// Creates the media plane from the configuration, serves `/sfu` on `io`, and returns the
/// HTTP routes to merge (`GET /api/rooms`).
///
/// Media sockets bind to the announced address when it is loopback (tests), to the listen
/// address when that is loopback, and to every interface otherwise.
/// Starts the SFU and its `/sfu` namespace; returns the routes of its HTTP API and the
/// SFU's announced media address (if its socket is bound).
pub fn start(
    io: &SocketIo,
    config: &crate::config::Config,
) -> (Router, Option<std::net::SocketAddr>) {
    let listen_ip = config.listen.ip();
    let bind_ip = match config.sfu.public_ip {
        Some(ip) if ip.is_loopback() => ip,
        _ if listen_ip.is_loopback() => listen_ip,
        _ if listen_ip.is_ipv6() => std::net::IpAddr::from([0u16; 8]),
        _ => std::net::IpAddr::from([0u8; 4]),
    };
    let mut sfu_config = sfu::SfuConfig::new(sfu::NetConfig {
        bind_ip,
        public_ip: config.sfu.public_ip.filter(|ip| *ip != bind_ip),
    });
    sfu_config.ports = config.sfu.rtc_ports.clone();
    sfu_config.room_capacity = config.sfu.room_capacity;
    let sfu = Sfu::new(sfu_config);
    let media_addr = sfu.media_addr();
    let hub = SfuHub::new(sfu, config.rate_limit);
    attach(io, hub.clone());
    (routes(hub), media_addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings() {
        let s = SfuSettings::merge(Some("40000-40099".into()), None, None).unwrap();
        assert_eq!(s.rtc_ports, Some(40000..=40099));
        assert_eq!(s.room_capacity, 16);
        assert!(SfuSettings::merge(Some("9-1".into()), None, None).is_err());
        assert!(SfuSettings::merge(None, None, Some(0)).is_err());
    }
}
