//! The media plane's public face: [`Sfu`] forwards each call to the media loop
//! ([`crate::engine`]) as a command and awaits its reply. The types the signaling side sees
//! (`Joined`, `ParticipantEvent`, the reports) are defined here.

use std::{
    hash::{BuildHasher, Hasher},
    net::SocketAddr,
    ops::RangeInclusive,
    sync::{atomic::Ordering, Arc},
    thread,
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::{
    engine::{Command, Engine, Kind, Shared},
    keyframe::DEFAULT_MIN_INTERVAL,
    net::{self, NetConfig},
};

pub type ParticipantId = Arc<str>;

#[derive(Debug, Clone)]
pub struct SfuConfig {
    pub net: NetConfig,
    /// UDP ports the media socket may bind (the first free one); `None` = any free port.
    pub ports: Option<RangeInclusive<u16>>,
    pub room_capacity: usize,
    /// How long a browser has to answer an `update`.
    pub update_timeout: Duration,
    /// A participant whose media has not connected this long after joining gives its seat
    /// back (`ParticipantEvent::Failed`).
    pub connect_timeout: Duration,
    pub keyframe_interval: Duration,
}

impl SfuConfig {
    pub fn new(net: NetConfig) -> Self {
        SfuConfig {
            net,
            ports: None,
            room_capacity: 16,
            update_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(20),
            keyframe_interval: DEFAULT_MIN_INTERVAL,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    #[error("the room is full")]
    RoomFull,
    #[error("the media socket could not be bound")]
    NoPort,
    #[error("not in a room")]
    NotJoined,
    #[error("{0}")]
    Media(String),
    #[error("the media plane stopped")]
    Stopped,
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
    /// `None` when the media socket could not be bound: every join fails.
    commands: Option<mpsc::UnboundedSender<Command>>,
    /// The address put in our ICE candidates (`None` when the socket could not be bound).
    media_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    /// The last report and when it was made: `GET /api/rooms` is public, and each report
    /// costs the media loop a pass over every participant.
    last_report: tokio::sync::Mutex<Option<(Instant, RoomsReport)>>,
}

/// Reports asked for within this interval share one pass of the media loop.
const REPORT_REUSE: Duration = Duration::from_millis(100);

/// Exits the process when the media thread dies of a panic: a server whose media plane is
/// gone but whose web side still accepts joins is worse than one its supervisor restarts.
struct ExitOnPanic;

impl Drop for ExitOnPanic {
    fn drop(&mut self) {
        if thread::panicking() {
            tracing::error!("sfu: the media thread panicked; exiting");
            std::process::exit(70);
        }
    }
}

impl Sfu {
    /// Binds the media socket and starts the media loop on its own thread.
    pub fn new(config: SfuConfig) -> Arc<Sfu> {
        let shared = Arc::new(Shared::default());
        let (commands, media_addr) = match Self::start(&config, shared.clone()) {
            Ok((commands, media_addr)) => (Some(commands), Some(media_addr)),
            Err(error) => {
                tracing::error!(%error, "sfu: cannot start the media plane");
                (None, None)
            }
        };
        Arc::new(Sfu {
            config,
            commands,
            media_addr,
            shared,
            last_report: tokio::sync::Mutex::new(None),
        })
    }

    fn start(
        config: &SfuConfig,
        shared: Arc<Shared>,
    ) -> std::io::Result<(mpsc::UnboundedSender<Command>, SocketAddr)> {
        let socket = net::bind(&config.net, config.ports.as_ref())?;
        let local = net::announced_addr(&config.net, socket.local_addr()?);
        tracing::info!(bound = %socket.local_addr()?, announced = %local, "sfu: media socket");
        let (tx, rx) = mpsc::unbounded_channel();
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let config = config.clone();
        let loop_tx = tx.downgrade();
        thread::Builder::new()
            .name("sfu-media".into())
            .spawn(move || {
                let _exit_on_panic = ExitOnPanic;
                runtime.block_on(async move {
                    let socket = match tokio::net::UdpSocket::from_std(socket) {
                        Ok(socket) => socket,
                        Err(error) => {
                            tracing::error!(%error, "sfu: media socket");
                            return;
                        }
                    };
                    // The loop keeps only a weak sender (for its answer tasks): it stops
                    // when the `Sfu` is dropped.
                    Engine::new(config, socket, local, loop_tx, shared, seed)
                        .run(rx)
                        .await;
                })
            })?;
        Ok((tx, local))
    }

    /// The media address announced to browsers (what a TURN relay must be allowed to reach
    /// for a participant behind a UDP-blocking firewall); `None` if the socket is not bound.
    pub fn media_addr(&self) -> Option<SocketAddr> {
        self.media_addr
    }

    pub fn room_capacity(&self) -> usize {
        self.config.room_capacity
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.commands.as_ref()?.send(make(tx)).ok()?;
        rx.await.ok()
    }

    /// Joins `room` with the browser's offer. The returned answer must reach the browser
    /// before anything from `events`; then call [`Sfu::ready`].
    pub async fn join(
        self: &Arc<Self>,
        room: &str,
        name: &str,
        offer: String,
    ) -> Result<Joined, SfuError> {
        if self.commands.is_none() {
            return Err(SfuError::NoPort);
        }
        let (room, name) = (room.to_owned(), name.to_owned());
        self.call(|reply| Command::Join {
            room,
            name,
            offer,
            reply,
        })
        .await
        .unwrap_or(Err(SfuError::Stopped))
    }

    /// The join answer was delivered: server-initiated negotiation may start.
    pub fn ready(self: &Arc<Self>, id: &str) {
        if let Some(commands) = &self.commands {
            let _ = commands.send(Command::Ready { id: id.to_owned() });
        }
    }

    pub async fn add_candidate(
        &self,
        id: &str,
        candidate: String,
        _sdp_mid: Option<String>,
        _sdp_mline_index: Option<u16>,
    ) -> Result<(), SfuError> {
        let id = id.to_owned();
        self.call(|reply| Command::Candidate {
            id,
            candidate,
            reply,
        })
        .await
        .unwrap_or(Err(SfuError::Stopped))
    }

    /// Leaves the room (also on disconnect). Idempotent.
    pub async fn leave(self: &Arc<Self>, id: &str) {
        let id = id.to_owned();
        self.call(|reply| Command::Leave { id, reply }).await;
    }

    /// Per-room, per-participant figures for `GET /api/rooms`.
    pub async fn report(&self) -> RoomsReport {
        // Held across the call: concurrent requests wait for one pass instead of each
        // queueing their own.
        let mut last = self.last_report.lock().await;
        if let Some((at, report)) = last.as_ref() {
            if at.elapsed() < REPORT_REUSE {
                return report.clone();
            }
        }
        let report = self
            .call(|reply| Command::Report { reply })
            .await
            .unwrap_or_default();
        *last = Some((Instant::now(), report.clone()));
        report
    }

    /// How long a browser has to answer an `update` offer.
    pub fn update_timeout(&self) -> Duration {
        self.config.update_timeout
    }

    /// Rooms and participants currently held (for tests and the churn check).
    pub fn counts(&self) -> (usize, usize) {
        (
            self.shared.rooms.load(Ordering::Relaxed),
            self.shared.participants.load(Ordering::Relaxed),
        )
    }
}

#[derive(Debug, Clone, Default, Serialize)]
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
    /// The media socket's address as announced in our ICE candidates.
    pub media_address: String,
    /// Media-plane state alive: `rtc` (participants' connections) and `update` (tasks
    /// waiting for a browser's answer).
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use str0m::{
        change::SdpAnswer,
        media::{Direction, MediaKind},
        Rtc,
    };

    use super::*;

    fn loopback_config() -> SfuConfig {
        SfuConfig::new(NetConfig {
            bind_ip: "127.0.0.1".parse().unwrap(),
            public_ip: None,
        })
    }

    fn sfu(room_capacity: usize) -> Arc<Sfu> {
        let mut config = loopback_config();
        config.room_capacity = room_capacity;
        Sfu::new(config)
    }

    /// A client's offer (audio + video to publish) and the means to apply the answer.
    fn client_offer() -> (Rtc, str0m::change::SdpPendingOffer, String) {
        let mut rtc = Rtc::new(Instant::now());
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        (rtc, pending, offer.to_sdp_string())
    }

    #[tokio::test]
    async fn join_answer_capacity_and_leave() {
        let sfu = sfu(1);
        let (mut client, pending, offer) = client_offer();
        let joined = sfu.join("r", "Ada", offer).await.unwrap();
        // The answer is one a WebRTC peer accepts, with our host candidate in it.
        assert!(joined.answer.contains("typ host"));
        let answer = SdpAnswer::from_sdp_string(&joined.answer).unwrap();
        client.sdp_api().accept_answer(pending, answer).unwrap();
        assert_eq!(joined.participants.len(), 1);
        assert_eq!(sfu.counts(), (1, 1));

        let (_, _, offer) = client_offer();
        assert!(matches!(
            sfu.join("r", "Brian", offer).await,
            Err(SfuError::RoomFull)
        ));
        assert!(matches!(
            sfu.join("r2", "Chen", "v=0\r\nnonsense".into()).await,
            Err(SfuError::Media(_))
        ));

        sfu.leave(&joined.id).await;
        sfu.leave(&joined.id).await; // idempotent
        assert_eq!(sfu.counts(), (0, 0));
        let report = sfu.report().await;
        assert_eq!((report.joins, report.leaves, report.tasks), (1, 1, 0));
    }

    #[tokio::test]
    async fn a_participant_that_never_connects_gives_its_seat_back() {
        let mut config = loopback_config();
        config.connect_timeout = Duration::from_millis(300);
        let sfu = Sfu::new(config);
        let (_client, _pending, offer) = client_offer();
        let mut joined = sfu.join("r", "Ada", offer).await.unwrap();
        let started = Instant::now();
        let failed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match joined.events.recv().await {
                    Some(ParticipantEvent::Failed) => return true,
                    Some(_) => continue,
                    None => return false,
                }
            }
        })
        .await;
        assert_eq!(
            failed,
            Ok(true),
            "Failed for a connection that never came up"
        );
        assert!(started.elapsed() >= Duration::from_millis(300));
        sfu.leave(&joined.id).await;
        assert_eq!(sfu.counts(), (0, 0));
    }
}
