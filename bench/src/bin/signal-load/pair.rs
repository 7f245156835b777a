//! One room of two clients, driven by a single task: both sockets are polled in one loop,
//! so the ping-pong needs no cross-task channels and a room costs one task.
//!
//! Phases are separated by checkpoints (1 connected, 2 joined, 3 relay done): the task
//! reports its arrival, then keeps servicing its sockets (Engine.IO pings arrive every
//! 2 s and must be answered within 2 s) until the orchestrator releases the next phase.
//! Every task passes every checkpoint exactly once, even with dead sockets, so the
//! orchestrator can simply count arrivals.

use crate::sio::{self, Packet};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;

/// Keep at most this many error descriptions per room: enough to diagnose, bounded memory.
const MAX_SAMPLES: usize = 3;

pub struct Config {
    pub addr: SocketAddr,
    /// `ws://HOST:PORT/socket.io/?EIO=4&transport=websocket`
    pub url: String,
    pub ws: WebSocketConfig,
    pub pairs: usize,
    pub room_prefix: String,
    pub capacity: u64,
    /// Gap between successive rooms' join starts.
    pub join_interval: Duration,
    /// Gap between a client's messages (1 / rate).
    pub period: Duration,
    pub duration: Duration,
    pub rounds: Option<u64>,
    /// Bound for every awaited reply (connect, joined, relay echo).
    pub timeout: Duration,
}

pub struct Shared {
    pub cfg: Config,
    /// Bounds concurrent handshakes so the connect phase does not become a SYN flood.
    pub connect_gate: Semaphore,
    pub arrivals: mpsc::UnboundedSender<u8>,
}

#[derive(Default, Debug)]
pub struct Errors {
    pub connect: u64,
    pub disconnect: u64,
    /// `joined`, `other_joined` or `otherjoin` not received in time.
    pub join_missing: u64,
    pub relay_timeout: u64,
    pub signal_error: BTreeMap<String, u64>,
    /// Events that must not happen here (`full`, `bye`, wrong arguments, altered data...).
    pub unexpected: u64,
    pub samples: Vec<String>,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.connect
            + self.disconnect
            + self.join_missing
            + self.relay_timeout
            + self.signal_error.values().sum::<u64>()
            + self.unexpected
    }

    fn note(&mut self, what: String) {
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(what);
        }
    }
}

#[derive(Default, Debug)]
pub struct Report {
    pub connect_us: Vec<u32>,
    pub join_us: Vec<u32>,
    pub rtt_us: Vec<u32>,
    /// Messages delivered to the other member of the room, both directions.
    pub relayed: u64,
    /// Relay rounds started.
    pub rounds: u64,
    /// Echoes that arrived after their round had timed out.
    pub late: u64,
    pub errors: Errors,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Side {
    A,
    B,
}

struct Peer {
    ws: Option<Ws>,
    sid: String,
}

enum Step {
    Event(Side, String, Vec<Value>),
    Deadline,
    Go,
}

struct Pair {
    sh: Arc<Shared>,
    idx: usize,
    room: String,
    a: Peer,
    b: Peer,
    /// Set in the final phase: closes are expected then, not errors.
    closing: bool,
    r: Report,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

async fn recv(
    ws: &mut Option<Ws>,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match ws {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

/// TCP + WebSocket + Engine.IO open + socket.io CONNECT; returns the socket id.
async fn connect(cfg: &Config) -> Result<(Ws, String), String> {
    let tcp = TcpStream::connect(cfg.addr)
        .await
        .map_err(|e| format!("tcp connect: {e}"))?;
    // Small frames in a request/response pattern: never wait for Nagle.
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(cfg.url.as_str(), tcp, Some(cfg.ws))
            .await
            .map_err(|e| format!("websocket handshake: {e}"))?;
    let mut opened = false;
    loop {
        let text = match ws.next().await {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => return Err(format!("connect: unexpected {other:?}")),
        };
        match sio::parse(&text) {
            Packet::Open if !opened => {
                opened = true;
                ws.send(Message::text(sio::CONNECT))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Packet::Ping => ws
                .send(Message::text(sio::PONG))
                .await
                .map_err(|e| e.to_string())?,
            Packet::Connected(sid) if opened => return Ok((ws, sid)),
            p => return Err(format!("connect: unexpected packet {p:?}")),
        }
    }
}

pub async fn run(idx: usize, sh: Arc<Shared>, mut go: watch::Receiver<u8>) -> Report {
    let room = format!("{}{idx}", sh.cfg.room_prefix);
    let mut p = Pair {
        sh,
        idx,
        room,
        a: Peer {
            ws: None,
            sid: String::new(),
        },
        b: Peer {
            ws: None,
            sid: String::new(),
        },
        closing: false,
        r: Report::default(),
    };
    p.connect_both().await;
    p.checkpoint(1, &mut go).await;
    p.join_phase().await;
    p.checkpoint(2, &mut go).await;
    p.relay_phase().await;
    p.checkpoint(3, &mut go).await;
    p.close().await;
    p.r
}

impl Pair {
    fn peer(&mut self, side: Side) -> &mut Peer {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    fn alive(&self) -> bool {
        self.a.ws.is_some() && self.b.ws.is_some()
    }

    async fn connect_both(&mut self) {
        let sh = self.sh.clone();
        let Ok(_permit) = sh.connect_gate.acquire().await else {
            return;
        };
        for side in [Side::A, Side::B] {
            let t = Instant::now();
            match timeout(sh.cfg.timeout, connect(&sh.cfg)).await {
                Ok(Ok((ws, sid))) => {
                    self.r.connect_us.push(micros(t.elapsed()));
                    *self.peer(side) = Peer { ws: Some(ws), sid };
                }
                Ok(Err(e)) => {
                    self.r.errors.connect += 1;
                    self.r.errors.note(format!("{side:?}: {e}"));
                }
                Err(_) => {
                    self.r.errors.connect += 1;
                    self.r.errors.note(format!("{side:?}: connect timed out"));
                }
            }
        }
    }

    async fn send(&mut self, side: Side, text: String) {
        let peer = self.peer(side);
        let Some(ws) = peer.ws.as_mut() else { return };
        if let Err(e) = ws.send(Message::text(text)).await {
            peer.ws = None;
            if !self.closing {
                self.r.errors.disconnect += 1;
                self.r.errors.note(format!("{side:?}: send failed: {e}"));
            }
        }
    }

    fn lost(&mut self, side: Side, why: String) {
        self.peer(side).ws = None;
        if !self.closing {
            self.r.errors.disconnect += 1;
            self.r.errors.note(format!("{side:?}: {why}"));
        }
    }

    /// Services both sockets (pongs, closes) until an event arrives, `deadline` passes, or
    /// the orchestrator releases phase `go_at` (when given).
    async fn next(
        &mut self,
        deadline: Instant,
        mut go: Option<(&mut watch::Receiver<u8>, u8)>,
    ) -> Step {
        loop {
            if let Some((rx, k)) = go.as_mut() {
                if *rx.borrow_and_update() >= *k {
                    return Step::Go;
                }
            }
            let go_changed = async {
                match go.as_mut() {
                    // A closed channel means the orchestrator is gone: treat as a release.
                    Some((rx, _)) => {
                        let _ = rx.changed().await;
                    }
                    None => std::future::pending().await,
                }
            };
            let (side, msg) = tokio::select! {
                m = recv(&mut self.a.ws) => (Side::A, m),
                m = recv(&mut self.b.ws) => (Side::B, m),
                _ = sleep_until(deadline) => return Step::Deadline,
                _ = go_changed => continue,
            };
            let text = match msg {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(f))) => {
                    self.lost(side, format!("server closed the websocket: {f:?}"));
                    continue;
                }
                Some(Ok(other)) => {
                    self.r.errors.unexpected += 1;
                    self.r
                        .errors
                        .note(format!("{side:?}: unexpected frame {other:?}"));
                    continue;
                }
                Some(Err(e)) => {
                    self.lost(side, format!("websocket error: {e}"));
                    continue;
                }
                None => {
                    self.lost(side, "connection ended".into());
                    continue;
                }
            };
            match sio::parse(&text) {
                Packet::Ping => self.send(side, sio::PONG.into()).await,
                Packet::Event(name, args) => return Step::Event(side, name, args),
                Packet::Close => self.lost(side, "engine.io close packet".into()),
                Packet::Disconnect => self.lost(side, "socket.io disconnect packet".into()),
                p => {
                    self.r.errors.unexpected += 1;
                    self.r
                        .errors
                        .note(format!("{side:?}: unexpected packet {p:?}"));
                }
            }
        }
    }

    /// Books an event the current phase has no use for.
    fn stray(&mut self, side: Side, name: &str, args: &[Value]) {
        if self.closing {
            return;
        }
        if name == "signal_error" {
            let code = args
                .first()
                .and_then(|e| e.get("code"))
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned();
            *self.r.errors.signal_error.entry(code).or_default() += 1;
        } else {
            self.r.errors.unexpected += 1;
        }
        let args = Value::Array(args.to_vec());
        self.r.errors.note(format!(
            "{side:?} ({}): unexpected {name} {args}",
            self.room
        ));
    }

    async fn checkpoint(&mut self, k: u8, go: &mut watch::Receiver<u8>) {
        let _ = self.sh.arrivals.send(k);
        let forever = Instant::now() + Duration::from_secs(86_400);
        loop {
            match self.next(forever, Some((go, k))).await {
                Step::Go | Step::Deadline => return,
                Step::Event(side, name, args) => {
                    if name == "message" {
                        // An echo for a round that already timed out.
                        self.r.late += 1;
                    } else {
                        self.stray(side, &name, &args);
                    }
                }
            }
        }
    }

    /// `joined(room, id, {peers, capacity})` as docs/protocol.md specifies it.
    fn check_joined(&self, args: &[Value], me: &str, peers: &[&str]) -> Result<(), String> {
        let ok = args.len() == 3
            && args[0].as_str() == Some(self.room.as_str())
            && args[1].as_str() == Some(me)
            && args[2].get("capacity").and_then(Value::as_u64) == Some(self.sh.cfg.capacity)
            && args[2]
                .get("peers")
                .and_then(Value::as_array)
                .is_some_and(|p| {
                    p.iter()
                        .map(Value::as_str)
                        .eq(peers.iter().map(|s| Some(*s)))
                });
        if ok {
            Ok(())
        } else {
            Err(format!(
                "joined has wrong arguments: {} (expected [{:?}, {me:?}, {{peers: {peers:?}, capacity: {}}}])",
                Value::Array(args.to_vec()),
                self.room,
                self.sh.cfg.capacity
            ))
        }
    }

    /// A joins the empty room; once A has `joined`, B joins, and A must be told with both
    /// `other_joined` and `otherjoin`.
    async fn join_phase(&mut self) {
        let at = Instant::now() + self.sh.cfg.join_interval * self.idx as u32;
        while let Step::Event(side, name, args) = self.next(at, None).await {
            self.stray(side, &name, &args);
        }
        if !self.alive() {
            return;
        }
        let t = Instant::now();
        self.send(Side::A, sio::join(&self.room)).await;
        let deadline = t + self.sh.cfg.timeout;
        loop {
            match self.next(deadline, None).await {
                Step::Event(Side::A, name, args) if name == "joined" => {
                    self.r.join_us.push(micros(t.elapsed()));
                    if let Err(e) = self.check_joined(&args, &self.a.sid, &[]) {
                        self.r.errors.unexpected += 1;
                        self.r.errors.note(format!("A: {e}"));
                    }
                    break;
                }
                Step::Event(side, name, args) => self.stray(side, &name, &args),
                _ => {
                    self.r.errors.join_missing += 1;
                    self.r.errors.note(format!("A ({}): no joined", self.room));
                    return;
                }
            }
        }

        let t = Instant::now();
        self.send(Side::B, sio::join(&self.room)).await;
        let deadline = t + self.sh.cfg.timeout;
        let (mut joined, mut other_joined, mut otherjoin) = (false, false, false);
        let expect_other = |room: &str, id: &str, args: &[Value]| {
            args.len() == 2 && args[0].as_str() == Some(room) && args[1].as_str() == Some(id)
        };
        while !(joined && other_joined && otherjoin) {
            match self.next(deadline, None).await {
                Step::Event(Side::B, name, args) if name == "joined" && !joined => {
                    joined = true;
                    self.r.join_us.push(micros(t.elapsed()));
                    let a_sid = self.a.sid.clone();
                    if let Err(e) = self.check_joined(&args, &self.b.sid, &[&a_sid]) {
                        self.r.errors.unexpected += 1;
                        self.r.errors.note(format!("B: {e}"));
                    }
                }
                Step::Event(Side::A, name, args)
                    if (name == "other_joined" && !other_joined)
                        || (name == "otherjoin" && !otherjoin) =>
                {
                    if name == "other_joined" {
                        other_joined = true;
                    } else {
                        otherjoin = true;
                    }
                    if !expect_other(&self.room, &self.b.sid, &args) {
                        self.r.errors.unexpected += 1;
                        self.r.errors.note(format!(
                            "A: {name} has wrong arguments {}",
                            Value::Array(args)
                        ));
                    }
                }
                Step::Event(side, name, args) => self.stray(side, &name, &args),
                _ => {
                    for (got, what) in [
                        (joined, "B: no joined"),
                        (other_joined, "A: no other_joined"),
                        (otherjoin, "A: no otherjoin"),
                    ] {
                        if !got {
                            self.r.errors.join_missing += 1;
                            self.r.errors.note(format!("{what} ({})", self.room));
                        }
                    }
                    return;
                }
            }
        }
    }

    /// Ping-pong: A sends candidate `seq` on its schedule, B echoes it at once, A times the
    /// round trip. Each client sends at most one message per period (10/s by default),
    /// well under the server's 64 events/s budget. Closed loop: a slow server gets fewer
    /// rounds, never an unbounded queue.
    async fn relay_phase(&mut self) {
        let cfg = &self.sh.cfg;
        let (period, timeout_d) = (cfg.period, cfg.timeout);
        let start = Instant::now();
        let end = start + cfg.duration;
        let max_rounds = cfg.rounds.unwrap_or(u64::MAX);
        // Spread rooms over one period so they do not all send in the same instant.
        let mut next_send = start + period * self.idx as u32 / cfg.pairs as u32;
        let mut outstanding: Option<(u64, Instant)> = None;
        while self.alive() {
            let deadline = match outstanding {
                Some((_, sent)) => sent + timeout_d,
                None if Instant::now() >= end || self.r.rounds >= max_rounds => break,
                None => next_send,
            };
            match self.next(deadline, None).await {
                Step::Deadline => match outstanding.take() {
                    Some((seq, _)) => {
                        self.r.errors.relay_timeout += 1;
                        self.r
                            .errors
                            .note(format!("{}: no echo for seq {seq}", self.room));
                    }
                    None => {
                        if Instant::now() >= end {
                            break;
                        }
                        let seq = self.r.rounds;
                        self.r.rounds += 1;
                        let now = Instant::now();
                        outstanding = Some((seq, now));
                        next_send = (next_send + period).max(now);
                        self.send(Side::A, sio::candidate_message(&self.room, seq))
                            .await;
                    }
                },
                Step::Event(side, name, args) if name == "message" => {
                    let seq = match self.check_relayed(&args) {
                        Ok(seq) => seq,
                        Err(e) => {
                            self.r.errors.unexpected += 1;
                            self.r.errors.note(format!("{side:?}: {e}"));
                            continue;
                        }
                    };
                    self.r.relayed += 1;
                    match side {
                        Side::B => {
                            self.send(Side::B, sio::candidate_message(&self.room, seq))
                                .await
                        }
                        Side::A => match outstanding {
                            Some((s, sent)) if s == seq => {
                                self.r.rtt_us.push(micros(sent.elapsed()));
                                outstanding = None;
                            }
                            _ => self.r.late += 1,
                        },
                    }
                }
                Step::Event(side, name, args) => self.stray(side, &name, &args),
                Step::Go => unreachable!("no release awaited in the relay phase"),
            }
        }
    }

    fn check_relayed(&self, args: &[Value]) -> Result<u64, String> {
        if args.len() != 2 || args[0].as_str() != Some(self.room.as_str()) {
            return Err(format!(
                "message with wrong room/arity: {}",
                Value::Array(args.to_vec())
            ));
        }
        sio::relayed_seq(&args[1])
    }

    /// Leaves the way a closing browser tab does (socket.io disconnect, then WebSocket
    /// close) and waits briefly for the server to finish the close handshake.
    async fn close(&mut self) {
        self.closing = true;
        for side in [Side::A, Side::B] {
            self.send(side, sio::DISCONNECT.into()).await;
            if let Some(ws) = self.peer(side).ws.as_mut() {
                let _ = ws.close(None).await;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.a.ws.is_some() || self.b.ws.is_some() {
            if let Step::Deadline = self.next(deadline, None).await {
                break;
            }
        }
    }
}
