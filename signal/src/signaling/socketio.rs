//! The socket.io binding of the signaling core: parse, lock, apply, unlock, emit.
//!
//! Ordering matters here: socketioxide spawns one task per event, so work done inside an
//! async handler could let an ICE candidate overtake the offer sent just before it. All our
//! handling therefore runs synchronously in the handler *closure* (which socketioxide calls
//! while reading this socket's packets in order) and only an empty future is spawned.

use std::{
    collections::HashMap,
    convert::Infallible,
    future::{ready, Ready},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use socketioxide::{
    adapter::LocalAdapter,
    extract::{Event, SocketRef, TryData},
    handler::{ConnectHandler, FromMessage, FromMessageParts, Value as PacketValue},
    socket::{Sid, Socket},
    SocketIo, SocketIoBuilder,
};

use super::{
    command::{parse_command, Command},
    core::{Admission, Outgoing, ServerEvent, SignalingCore},
    error::SignalError,
    rate_limit::RateLimit,
};

use crate::{
    access::{Access, ConnectRefused},
    auth::Claims,
    passcode::{PasscodeError, PasscodeGuard},
};

/// Engine.IO liveness: a vanished peer is noticed within interval + timeout.
pub const PING_INTERVAL: Duration = Duration::from_secs(2);
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest Engine.IO packet or WebSocket message; bigger ones close the connection
/// (socket.io's own rule). `message` payloads have a smaller, friendlier limit with an
/// error event.
pub const MAX_PACKET_BYTES: usize = 1024 * 1024;
/// Per-connection WebSocket read buffer. Signaling messages are small (candidates ~200 B,
/// SDPs a few KiB, read in several chunks); 1 KiB instead of socketioxide's 4 KiB saved
/// ~3 KiB of RSS per connection in `bench/signal` at 2,000 clients, at no measurable CPU cost.
const WS_READ_BUFFER: usize = 1024;

#[derive(Debug, Clone, Copy)]
pub struct SignalingConfig {
    pub room_capacity: usize,
    pub rate_limit: RateLimit,
}

/// Shared signaling state: the sans-IO core plus the sockets to deliver to.
pub struct Hub {
    inner: Mutex<Inner>,
    /// Wrong (or missing) passcodes per client address and room.
    passcodes: PasscodeGuard,
}

struct Inner {
    core: SignalingCore<Sid>,
    sockets: HashMap<Sid, SocketRef>,
}

/// Live counts, for `/api/stats` and logs.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct HubStats {
    pub clients: usize,
    pub rooms: usize,
    /// Rooms with two members or more.
    pub calls: usize,
}

impl Hub {
    pub fn new(config: SignalingConfig) -> Arc<Self> {
        Arc::new(Hub {
            inner: Mutex::new(Inner {
                core: SignalingCore::new(config.room_capacity, config.rate_limit),
                sockets: HashMap::new(),
            }),
            passcodes: PasscodeGuard::default(),
        })
    }

    pub fn stats(&self) -> HubStats {
        let inner = self.lock();
        HubStats {
            clients: inner.core.client_count(),
            rooms: inner.core.room_count(),
            calls: inner.core.call_count(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the core half-updated in a way that
        // matters more than stopping signaling for everyone, so keep serving.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn on_connect(&self, socket: &SocketRef) {
        let mut inner = self.lock();
        inner.core.connect(socket.id, Instant::now());
        inner.sockets.insert(socket.id, socket.clone());
    }

    fn on_disconnect(&self, socket: &SocketRef) {
        let mut out = Vec::new();
        let deliveries = {
            let mut inner = self.lock();
            inner.sockets.remove(&socket.id);
            inner.core.disconnect(socket.id, &mut out);
            inner.resolve(out)
        };
        deliver(deliveries);
    }

    fn on_event(&self, socket: &SocketRef, mut event: RawEvent) {
        let now = Instant::now();
        let admission = self.lock().core.admit(socket.id, now);
        let result = match admission {
            // Parsed outside the lock: validating a 64 KiB SDP must not hold up other rooms.
            Admission::Accept => event.take_command().and_then(|command| {
                let joining = match &command {
                    Command::Join(room, _) => Some(room.clone()),
                    _ => None,
                };
                if let Some(room) = &joining {
                    if let Some(claims) = socket.extensions.get::<Claims>() {
                        if !claims.allows_room(room.as_str()) {
                            return Err(SignalError::RoomNotAllowed);
                        }
                    }
                    if self.passcodes.blocked(socket, room.as_str()) {
                        return Err(PasscodeError::RateLimited.into());
                    }
                }
                let mut out = Vec::new();
                let mut inner = self.lock();
                let handled = inner.core.handle(socket.id, command, now, &mut out);
                if let (Some(room), Err(SignalError::Passcode(error))) = (&joining, &handled) {
                    if error.is_guess() {
                        self.passcodes.failed(socket, room.as_str());
                    }
                }
                handled?;
                Ok(inner.resolve(out))
            }),
            Admission::Refuse => Err(SignalError::RateLimited),
            Admission::Disconnect => {
                tracing::warn!(sid = %socket.id, "disconnecting a client that keeps flooding");
                let _ = socket.clone().disconnect();
                return;
            }
        };
        match result {
            Ok(deliveries) => deliver(deliveries),
            Err(error) => {
                tracing::debug!(sid = %socket.id, event = %event.name, code = error.code(), "refused");
                let _ = socket.emit("signal_error", &error.report(&event.name));
            }
        }
    }
}

impl Inner {
    /// Pairs each outgoing event with its socket while the lock is held; emitting happens
    /// after the lock is released.
    fn resolve(&self, out: Vec<Outgoing<Sid>>) -> Vec<(SocketRef, ServerEvent<Sid>)> {
        out.into_iter()
            .filter_map(|o| Some((self.sockets.get(&o.to)?.clone(), o.event)))
            .collect()
    }
}

fn deliver(deliveries: Vec<(SocketRef, ServerEvent<Sid>)>) {
    for (socket, event) in deliveries {
        let sent = match &event {
            ServerEvent::Joined {
                room,
                id,
                peers,
                capacity,
            } => {
                let peers: Vec<&str> = peers.iter().map(Sid::as_str).collect();
                let info = json!({ "peers": peers, "capacity": capacity });
                socket.emit("joined", &(room, id.as_str(), info))
            }
            ServerEvent::OtherJoined { room, id } => socket
                .emit("other_joined", &(room, id.as_str()))
                // The course's published client listens for this older name.
                .and_then(|()| socket.emit("otherjoin", &(room, id.as_str()))),
            ServerEvent::Full { room, id } => socket.emit("full", &(room, id.as_str())),
            ServerEvent::Leaved { room, id } => socket.emit("leaved", &(room, id.as_str())),
            ServerEvent::Bye { room, id } => socket.emit("bye", &(room, id.as_str())),
            ServerEvent::Message { room, data } => socket.emit("message", &(room, &**data)),
        };
        if let Err(error) = sent {
            // A client whose send buffer is full is too slow to keep up; the peer will
            // see the call fail and can rejoin. Never block the sender for it.
            tracing::debug!(sid = %socket.id, %error, "could not deliver");
        }
    }
}

/// One received event, taken apart synchronously: its name, its positional arguments and
/// its encoded size.
pub struct RawEvent {
    name: String,
    args: Result<Vec<Value>, ()>,
    encoded_len: usize,
}

impl RawEvent {
    /// Parses the arguments into a command, taking them (no copy of the payload).
    fn take_command(&mut self) -> Result<super::command::Command, SignalError> {
        let args = std::mem::replace(&mut self.args, Ok(Vec::new()))
            .map_err(|()| SignalError::InvalidMessage)?;
        parse_command(&self.name, args, self.encoded_len)
    }
}

impl FromMessage<LocalAdapter> for RawEvent {
    type Error = Infallible;

    fn from_message(
        socket: Arc<Socket<LocalAdapter>>,
        mut value: PacketValue,
        ack_id: Option<i64>,
    ) -> Result<Self, Infallible> {
        let encoded_len = match &value {
            PacketValue::Str(text, binaries) => {
                text.len()
                    + binaries
                        .as_ref()
                        .map_or(0, |b| b.iter().map(|b| b.len()).sum())
            }
            PacketValue::Bytes(bytes) => bytes.len(),
        };
        let name = Event::from_message_parts(&socket, &mut value, &ack_id)
            .map(|Event(name)| name)
            .unwrap_or_default();
        let TryData(args) = TryData::<Args>::from_message_parts(&socket, &mut value, &ack_id)
            .unwrap_or_else(|e| match e {});
        Ok(RawEvent {
            name,
            args: args.map(|Args(args)| args).map_err(|_| ()),
            encoded_len,
        })
    }
}

/// All positional arguments of an event. socketioxide hands a handler every argument only
/// when it deserializes a tuple (otherwise just the first), so this asks for a tuple and
/// accepts any length.
struct Args(Vec<Value>);

impl<'de> serde::Deserialize<'de> for Args {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Args;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("event arguments")
            }
            fn visit_seq<S: serde::de::SeqAccess<'de>>(self, mut seq: S) -> Result<Args, S::Error> {
                let mut args = Vec::new();
                while let Some(arg) = seq.next_element()? {
                    args.push(arg);
                }
                Ok(Args(args))
            }
        }
        deserializer.deserialize_tuple(usize::MAX, Visitor)
    }
}

/// Engine.IO / socket.io settings for signaling.
///
/// `rate_limit` sizes each connection's send buffer: a burst the limiter lets through from a
/// peer must fit in the receiver's buffer, or part of it would be dropped on delivery
/// (socketioxide's default of 128 packets is below the default burst of 256). Twice the
/// burst leaves room for the server's own events.
pub fn builder(rate_limit: RateLimit) -> SocketIoBuilder {
    SocketIo::builder()
        .max_buffer_size(2 * rate_limit.burst.max(64) as usize)
        .ping_interval(PING_INTERVAL)
        .ping_timeout(PING_TIMEOUT)
        .max_payload(MAX_PACKET_BYTES as u64)
        // The WebSocket transport has its own limits (64 MiB by default).
        .ws_max_message_size(MAX_PACKET_BYTES)
        .ws_max_frame_size(MAX_PACKET_BYTES)
        .ws_read_buffer_size(WS_READ_BUFFER)
}

/// Serves the signaling protocol on the default namespace of `io`.
pub fn attach(io: &SocketIo, hub: Arc<Hub>, access: Arc<Access>) {
    // Handlers are registered in a connect *middleware*: it runs before the client is told
    // it is connected, whereas the connect handler runs after and would race the client's
    // first event (a `join` buffered before the connection was up). A refused token ends
    // the handshake there (`connect_error`).
    let register = move |socket: SocketRef,
                         TryData(auth): TryData<Value>|
          -> Ready<Result<(), ConnectRefused>> {
        if let Err(refused) = access.admit_socket(&socket, auth.ok().as_ref()) {
            return ready(Err(refused));
        }
        hub.on_connect(&socket);
        let events = hub.clone();
        socket.on_fallback(move |socket: SocketRef, event: RawEvent| -> Ready<()> {
            events.on_event(&socket, event);
            ready(())
        });
        let gone = hub.clone();
        socket.on_disconnect(move |socket: SocketRef| -> Ready<()> {
            gone.on_disconnect(&socket);
            ready(())
        });
        ready(Ok(()))
    };
    io.ns("/", (|| ready(())).with(register));
}
