//! SFU rooms watched live by audiences that do not join the call: Low-Latency HLS
//! (docs/live.md).
//!
//! A live room (created with `live`, so its video is H.264) is put on air by a participant
//! allowed to. Every publishing participant then gets a stream of its own: the SFU hands its
//! camera and microphone packets to taps, as for a recording, and a thread per participant
//! (`job.rs`) packages them with `media_out::hls` into CMAF parts kept in memory
//! (`stream.rs`), which `http.rs` serves under an unguessable path per session:
//! `/live/<key>/<participant>/index.m3u8`. The SFU's media thread never waits for a stream:
//! a thread that falls behind loses its taps and its stream ends.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::{Duration, Instant, SystemTime},
};

use serde::Serialize;
use sfu::{ParticipantId, Sfu};

pub mod http;
mod job;
pub mod stream;

use job::Job;
use stream::LiveStream;

use media_out::clock::unix_ms;

use crate::{
    keys::random_key,
    taps::{publishers, Taps},
};

/// Tap packets queued for one participant's thread: ~10 s of a camera and its microphone.
const TAP_QUEUE: usize = 2048;
/// An ended session, or an ended stream of a session on air, stays this long: its viewers
/// see the end of the playlist and play what they have.
const ENDED_KEPT: Duration = Duration::from_secs(60);
/// A session whose last stream ended waits this long before going off air: a speaker who
/// reloads the page (or whose media reconnects) is back within it, and the viewers' link
/// keeps working.
const EMPTY_GRACE: Duration = Duration::from_secs(10);

/// Whether a room is on air, as every participant is told (`live` event).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LiveState {
    pub on: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// The viewer page of this session (a path on this server); share it with the audience.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch: Option<String>,
    /// Why it stopped: `stopped`, `room_empty`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

impl LiveState {
    fn off(reason: Option<&'static str>) -> Self {
        LiveState {
            on: false,
            by: None,
            since: None,
            watch: None,
            reason,
        }
    }
}

/// Tells a room's participants that it went on or off air.
pub type Announce = Arc<dyn Fn(&str, &LiveState) + Send + Sync>;

/// One participant's stream in a session.
#[derive(Clone)]
pub struct StreamEntry {
    pub participant: ParticipantId,
    pub name: String,
    pub stream: Arc<LiveStream>,
}

/// A room on air, from `live {on: true}` to off.
pub struct LiveSession {
    pub key: String,
    pub room: String,
    state: LiveState,
    stop: Arc<AtomicBool>,
    streams: Mutex<Vec<StreamEntry>>,
    /// Participants whose taps are being attached (the session is not empty while this is
    /// non-zero).
    attaching: Mutex<usize>,
    ended_at: Mutex<Option<Instant>>,
}

impl LiveSession {
    pub fn streams(&self) -> Vec<StreamEntry> {
        lock(&self.streams).clone()
    }

    pub fn stream(&self, participant: &str) -> Option<Arc<LiveStream>> {
        lock(&self.streams)
            .iter()
            .find(|s| s.participant.to_string() == participant)
            .map(|s| s.stream.clone())
    }

    pub fn on_air(&self) -> bool {
        lock(&self.ended_at).is_none()
    }

    pub fn since(&self) -> Option<u64> {
        self.state.since
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LiveError {
    #[error("nobody in the room publishes media: nothing to stream")]
    NothingToStream,
}

#[derive(Default)]
struct Sessions {
    /// On air, by room.
    by_room: HashMap<String, Arc<LiveSession>>,
    /// On air or ended lately, by key.
    by_key: HashMap<String, Arc<LiveSession>>,
}

pub struct LiveRooms {
    sfu: Arc<Sfu>,
    announce: Announce,
    sessions: Mutex<Sessions>,
    /// Streams that ended, for `/metrics`.
    ended: AtomicU64,
}

/// What `/metrics` says of live viewing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveStats {
    /// Rooms on air.
    pub on_air: usize,
    /// Speakers' streams being packaged.
    pub streams: usize,
    pub ended: u64,
}

impl LiveRooms {
    pub fn new(sfu: Arc<Sfu>, announce: Announce) -> Arc<Self> {
        Arc::new(LiveRooms {
            sfu,
            announce,
            sessions: Mutex::new(Sessions::default()),
            ended: AtomicU64::new(0),
        })
    }

    pub fn stats(&self) -> LiveStats {
        let sessions = self.sessions();
        LiveStats {
            on_air: sessions.by_room.len(),
            streams: sessions
                .by_room
                .values()
                .flat_map(|s| s.streams())
                .filter(|s| !s.stream.ended())
                .count(),
            ended: self.ended.load(Ordering::Relaxed),
        }
    }

    fn sessions(&self) -> MutexGuard<'_, Sessions> {
        let mut sessions = lock(&self.sessions);
        // Ended sessions go after a while.
        sessions
            .by_key
            .retain(|_, s| lock(&s.ended_at).is_none_or(|at| at.elapsed() < ENDED_KEPT));
        sessions
    }

    /// The room's live state (for a joiner's answer).
    pub fn state(&self, room: &str) -> LiveState {
        self.sessions()
            .by_room
            .get(room)
            .map_or(LiveState::off(None), |s| s.state.clone())
    }

    /// A session on air or ended lately, by its key.
    pub fn session(&self, key: &str) -> Option<Arc<LiveSession>> {
        self.sessions().by_key.get(key).cloned()
    }

    /// Puts `room` on air (already on: nothing changes).
    pub async fn start(self: &Arc<Self>, room: &str, by: &str) -> Result<LiveState, LiveError> {
        if let Some(session) = self.sessions().by_room.get(room) {
            return Ok(session.state.clone());
        }
        let report = self.sfu.fresh_report().await;
        let publishers = publishers(&report, room);
        if publishers.is_empty() {
            return Err(LiveError::NothingToStream);
        }
        let key = random_key();
        let state = LiveState {
            on: true,
            by: Some(by.to_owned()),
            since: Some(unix_ms(SystemTime::now())),
            watch: Some(format!("/live.html?k={key}")),
            reason: None,
        };
        let session = Arc::new(LiveSession {
            key: key.clone(),
            room: room.to_owned(),
            state: state.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            streams: Mutex::new(Vec::new()),
            attaching: Mutex::new(publishers.len()),
            ended_at: Mutex::new(None),
        });
        {
            let mut sessions = self.sessions();
            if let Some(session) = sessions.by_room.get(room) {
                return Ok(session.state.clone());
            }
            sessions.by_room.insert(room.to_owned(), session.clone());
            sessions.by_key.insert(key, session.clone());
        }
        tracing::info!(%room, %by, "room on air");
        (self.announce)(room, &state);
        for (participant, name) in &publishers {
            let stream =
                self.clone()
                    .stream_participant(session.clone(), *participant, name.clone(), false);
            tokio::spawn(stream);
        }
        // Whoever joined while the first report was on its way came too early for `joined`
        // (no session yet) and too late for the report.
        let again = self.sfu.fresh_report().await;
        let late = crate::taps::publishers(&again, room)
            .into_iter()
            .filter(|(id, _)| !publishers.iter().any(|(first, _)| first == id));
        for (participant, name) in late {
            *lock(&session.attaching) += 1;
            let stream = self
                .clone()
                .stream_participant(session.clone(), participant, name, true);
            tokio::spawn(stream);
        }
        Ok(state)
    }

    /// Takes `room` off air (not on: nothing happens). Its streams end; viewers see the end
    /// of the playlists.
    pub fn stop(&self, room: &str, reason: &'static str) {
        let session = self.sessions().by_room.get(room).cloned();
        if let Some(session) = session {
            self.stop_session(&session, reason);
        }
    }

    /// Takes `session` off air, if it still is: never a newer session of the same room.
    fn stop_session(&self, session: &Arc<LiveSession>, reason: &'static str) {
        {
            let mut sessions = self.sessions();
            match sessions.by_room.get(&session.room) {
                Some(current) if Arc::ptr_eq(current, session) => {}
                _ => return,
            }
            sessions.by_room.remove(&session.room);
            // Under the same lock: nobody sees it gone from the room and still on air.
            *lock(&session.ended_at) = Some(Instant::now());
        }
        session.stop.store(true, Ordering::Relaxed);
        tracing::info!(room = %session.room, reason, "room off air");
        (self.announce)(&session.room, &LiveState::off(Some(reason)));
    }

    /// A participant joined `room`: streamed too if the room is on air.
    pub fn joined(self: &Arc<Self>, room: &str, participant: ParticipantId, name: &str) {
        let Some(session) = self.sessions().by_room.get(room).cloned() else {
            return;
        };
        *lock(&session.attaching) += 1;
        tokio::spawn(
            self.clone()
                .stream_participant(session, participant, name.to_owned(), true),
        );
    }

    async fn stream_participant(
        self: Arc<Self>,
        session: Arc<LiveSession>,
        participant: ParticipantId,
        name: String,
        retry: bool,
    ) {
        let taps = Taps::attach(&self.sfu, participant, retry, TAP_QUEUE).await;
        {
            let mut attaching = lock(&session.attaching);
            *attaching = attaching.saturating_sub(1);
        }
        if taps.taps.is_empty() || !session.on_air() {
            taps.detach(&self.sfu);
            self.participant_done(&session).await;
            return;
        }
        let stream = Arc::new(LiveStream::default());
        {
            // Asked twice (a joiner also in the second report of `start`): one stream.
            let mut streams = lock(&session.streams);
            if streams
                .iter()
                .any(|s| s.participant == participant && !s.stream.ended())
            {
                drop(streams);
                taps.detach(&self.sfu);
                return;
            }
            streams.push(StreamEntry {
                participant,
                name,
                stream: stream.clone(),
            });
        }
        let job = Job {
            sfu: self.sfu.clone(),
            participant,
            taps,
            stream: stream.clone(),
            stop: session.stop.clone(),
        };
        let outcome = tokio::task::spawn_blocking(move || job.run()).await;
        self.ended.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => tracing::warn!(%participant, reason, "live stream ended"),
            Err(error) => tracing::warn!(%participant, %error, "live stream thread failed"),
        }
        // Its parts go a while after its end (a session on air may see many come and go).
        let kept = session.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ENDED_KEPT).await;
            lock(&kept.streams).retain(|s| !Arc::ptr_eq(&s.stream, &stream));
        });
        self.participant_done(&session).await;
    }

    /// A participant's stream ended: the session goes off air once nobody has been
    /// streamed for [`EMPTY_GRACE`].
    async fn participant_done(&self, session: &Arc<LiveSession>) {
        let empty = || {
            let streaming = lock(&session.streams).iter().any(|s| !s.stream.ended());
            session.on_air() && !streaming && *lock(&session.attaching) == 0
        };
        if !empty() {
            return;
        }
        tokio::time::sleep(EMPTY_GRACE).await;
        if empty() {
            self.stop_session(session, "room_empty");
        }
    }
}
