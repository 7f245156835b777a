//! Recording SFU rooms on the server (docs/recording.md, "Rooms recorded by the server").
//!
//! A participant allowed to starts or stops the recording of its room; everyone in the room
//! sees that it is on. Each publishing participant gets its own file: the SFU hands its
//! camera and microphone packets to taps (as it would to a subscriber, from a keyframe on),
//! and `media_out` makes them a WebM or a fragmented MP4 without transcoding. Files and a
//! `manifest.json` go to `<recordings dir>/rooms/<room>/<start>-<id>/`.
//!
//! Each recorded participant has a thread of its own (`job.rs`, a blocking-pool thread): it
//! drains its taps' bounded queue, writes and fsyncs now and then. The SFU's media thread
//! never waits for it: a queue that fills up loses its taps, and the recording stops with
//! `fell_behind`. A write that fails (a full disk) stops the room's recording with
//! `storage_failed`, a session at its size cap with `size_limit`; the call goes on.
//! `manifest.rs` writes the manifest and names things; `http.rs` lists the sessions for the
//! operator.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime},
};

use serde::Serialize;
use sfu::{ParticipantId, Sfu};

pub mod http;
mod job;
mod manifest;

use job::Job;
use manifest::{safe_component, session_id, unix_ms, write_manifest, Manifest};

use crate::taps::{publishers, Taps};

/// Tap packets queued for one participant's thread: ~10 s of a 1.5 Mbit/s camera and its
/// microphone. A thread that cannot keep up with that has lost its disk.
const TAP_QUEUE: usize = 2048;

/// `[recordings] room_*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRecordingConfig {
    /// A participant's file is closed and the next one started (at a keyframe) after this:
    /// an hour by default (`room_file_seconds`), files a player and the seekable rewrite
    /// (which reads the whole file) handle easily.
    pub file_length: Duration,
    /// A session stops (`size_limit`) once its files hold this many bytes (`room_max_mb`);
    /// `None`: only a full disk stops it.
    pub max_bytes: Option<u64>,
}

impl Default for RoomRecordingConfig {
    fn default() -> Self {
        RoomRecordingConfig {
            file_length: Duration::from_secs(3600),
            max_bytes: None,
        }
    }
}

/// Whether a room is being recorded, as every participant is told (`recording` event).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecordingState {
    pub on: bool,
    /// Who started it (its display name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// Why it stopped: `stopped`, `room_empty`, `storage_failed`, `fell_behind`,
    /// `size_limit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

impl RecordingState {
    fn off(reason: &'static str) -> Self {
        RecordingState {
            on: false,
            by: None,
            since: None,
            reason: Some(reason),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RoomRecordingError {
    #[error("nobody in the room publishes media")]
    NothingToRecord,
    #[error("cannot create the recording's directory: {0}")]
    Storage(#[from] std::io::Error),
}

/// Tells a room's participants that its recording started or stopped.
pub type Announce = Arc<dyn Fn(&str, &RecordingState) + Send + Sync>;

pub struct RoomRecorder {
    sfu: Arc<Sfu>,
    dir: PathBuf,
    config: RoomRecordingConfig,
    announce: Announce,
    sessions: Mutex<HashMap<String, Session>>,
}

struct Session {
    id: String,
    dir: PathBuf,
    state: RecordingState,
    /// Set to stop every participant's thread.
    stop: Arc<AtomicBool>,
    manifest: Arc<Mutex<Manifest>>,
    /// Participants being recorded (their threads run).
    recording: Vec<ParticipantId>,
    /// Participants whose taps are being attached: the session is not empty while any are.
    attaching: usize,
    /// Bytes its files hold, all participants together (`max_bytes`).
    written: Arc<AtomicU64>,
}

impl RoomRecorder {
    /// Recordings go to `<recordings_dir>/rooms/`.
    pub fn new(
        sfu: Arc<Sfu>,
        recordings_dir: &Path,
        config: RoomRecordingConfig,
        announce: Announce,
    ) -> Arc<Self> {
        Arc::new(RoomRecorder {
            sfu,
            dir: recordings_dir.join("rooms"),
            config,
            announce,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The room's recording state (for a joiner's answer).
    pub fn state(&self, room: &str) -> RecordingState {
        self.sessions()
            .get(room)
            .map(|s| s.state.clone())
            .unwrap_or(RecordingState {
                on: false,
                by: None,
                since: None,
                reason: None,
            })
    }

    /// Starts recording `room` (already on: nothing changes).
    pub async fn start(
        self: &Arc<Self>,
        room: &str,
        by: &str,
    ) -> Result<RecordingState, RoomRecordingError> {
        if let Some(session) = self.sessions().get(room) {
            return Ok(session.state.clone());
        }
        let report = self.sfu.fresh_report().await;
        let publishers = publishers(&report, room);
        if publishers.is_empty() {
            return Err(RoomRecordingError::NothingToRecord);
        }
        let now = SystemTime::now();
        let id = session_id(now);
        let session_id = id.clone();
        let dir = self.dir.join(safe_component(room)).join(&id);
        let state = RecordingState {
            on: true,
            by: Some(by.to_owned()),
            since: Some(unix_ms(now)),
            reason: None,
        };
        let manifest = Manifest {
            room: room.to_owned(),
            session: id.clone(),
            started_by: by.to_owned(),
            started: unix_ms(now),
            stopped: None,
            stop_reason: None,
            files: Vec::new(),
        };
        // Directory and manifest fsynced off the async workers.
        let (dir, manifest) = tokio::task::spawn_blocking(move || {
            fs::create_dir_all(&dir)?;
            write_manifest(&dir, &manifest)?;
            Ok::<_, std::io::Error>((dir, manifest))
        })
        .await
        .map_err(std::io::Error::other)??;
        {
            let mut sessions = self.sessions();
            if let Some(session) = sessions.get(room) {
                // Started by someone else meanwhile.
                let _ = fs::remove_dir_all(&dir);
                return Ok(session.state.clone());
            }
            sessions.insert(
                room.to_owned(),
                Session {
                    id: session_id,
                    dir,
                    state: state.clone(),
                    stop: Arc::new(AtomicBool::new(false)),
                    manifest: Arc::new(Mutex::new(manifest)),
                    recording: Vec::new(),
                    attaching: publishers.len(),
                    written: Arc::new(AtomicU64::new(0)),
                },
            );
        }
        tracing::info!(%room, %by, "room recording started");
        (self.announce)(room, &state);
        for (participant, name) in publishers {
            let recorder = self.clone();
            let attach =
                recorder.record_participant(room.to_owned(), id.clone(), participant, name, false);
            tokio::spawn(attach);
        }
        Ok(state)
    }

    /// Stops recording `room` (not on: nothing happens).
    pub fn stop(&self, room: &str, reason: &'static str) {
        let Some(session) = self.sessions().remove(room) else {
            return;
        };
        session.stop.store(true, Ordering::Relaxed);
        let stopped = unix_ms(SystemTime::now());
        let finish = move || {
            let mut manifest = session.manifest.lock().unwrap_or_else(|p| p.into_inner());
            manifest.stopped = Some(stopped);
            manifest.stop_reason = Some(reason);
            if let Err(error) = write_manifest(&session.dir, &manifest) {
                tracing::warn!(%error, "room recording manifest");
            }
        };
        // Called from async tasks: the fsync goes to the blocking pool.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(finish)),
            Err(_) => finish(),
        }
        tracing::info!(%room, reason, "room recording stopped");
        (self.announce)(room, &RecordingState::off(reason));
    }

    /// A participant joined `room`: recorded too if the room is.
    pub fn joined(self: &Arc<Self>, room: &str, participant: ParticipantId, name: &str) {
        let session = match self.sessions().get_mut(room) {
            Some(session) => {
                session.attaching += 1;
                session.id.clone()
            }
            None => return,
        };
        let recorder = self.clone();
        let attach = recorder.record_participant(
            room.to_owned(),
            session,
            participant,
            name.to_owned(),
            true,
        );
        tokio::spawn(attach);
    }

    /// Attaches taps to `participant`'s camera and microphone and records them until its
    /// taps end or the room's recording stops.
    async fn record_participant(
        self: Arc<Self>,
        room: String,
        session_id: String,
        participant: ParticipantId,
        name: String,
        retry: bool,
    ) {
        let taps = Taps::attach(&self.sfu, participant, retry, TAP_QUEUE).await;
        // Ok: the job to run; Err: nothing to record of this participant (it publishes
        // nothing, or left), and whether the session has nobody left either.
        let next = {
            let mut sessions = self.sessions();
            let mut session = sessions.get_mut(&room).filter(|s| s.id == session_id);
            if let Some(session) = session.as_mut() {
                session.attaching = session.attaching.saturating_sub(1);
            }
            match session {
                Some(session)
                    if !taps.taps.is_empty() && !session.recording.contains(&participant) =>
                {
                    session.recording.push(participant);
                    Ok(Job {
                        sfu: self.sfu.clone(),
                        participant,
                        name,
                        taps,
                        stop: session.stop.clone(),
                        manifest: session.manifest.clone(),
                        dir: session.dir.clone(),
                        session: session.id.clone(),
                        file_length: self.config.file_length,
                        written: session.written.clone(),
                        max_bytes: self.config.max_bytes,
                    })
                }
                session => Err((
                    taps,
                    session.is_some_and(|s| s.recording.is_empty() && s.attaching == 0),
                )),
            }
        };
        let job = match next {
            Ok(job) => job,
            Err((taps, nobody)) => {
                taps.detach(&self.sfu);
                if nobody {
                    self.stop(&room, "room_empty");
                }
                return;
            }
        };
        let session = job.session.clone();
        let outcome = tokio::task::spawn_blocking(move || job.run()).await;
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(reason)) => Some(reason),
            Err(_) => Some("storage_failed"),
        };
        self.participant_done(&room, &session, participant, failure);
    }

    fn participant_done(
        &self,
        room: &str,
        session_id: &str,
        participant: ParticipantId,
        failure: Option<&'static str>,
    ) {
        let empty = {
            let mut sessions = self.sessions();
            let Some(session) = sessions.get_mut(room).filter(|s| s.id == session_id) else {
                return;
            };
            session.recording.retain(|p| *p != participant);
            session.recording.is_empty()
        };
        if let Some(reason) = failure {
            self.stop(room, reason);
        } else if empty {
            self.stop(room, "room_empty");
        }
    }
}
