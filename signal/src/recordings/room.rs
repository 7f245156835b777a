//! Recording SFU rooms on the server (docs/recording.md, "Rooms recorded by the server").
//!
//! A participant allowed to starts or stops the recording of its room; everyone in the room
//! sees that it is on. Each publishing participant gets its own file: the SFU hands its
//! camera and microphone packets to taps (as it would to a subscriber, from a keyframe on),
//! and `media_out` makes them a WebM without transcoding. Files and a `manifest.json` go to
//! `<recordings dir>/rooms/<room>/<start>-<id>/`.
//!
//! Each recorded participant has a thread of its own (a blocking-pool thread): it drains
//! its taps' bounded queue, writes and fsyncs at least every `SYNC_EVERY`. The SFU's media
//! thread never waits for it: a queue that fills up loses its taps, and the recording stops
//! with `fell_behind`. A write that fails (a full disk) stops the room's recording with
//! `storage_failed`; the call goes on.

use std::{
    collections::HashMap,
    fs::{self, File},
    io::{Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::{sync_channel, Receiver, RecvTimeoutError},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use media_out::{
    assembler::Packet,
    codec::Codec,
    recording::{
        ParticipantRecording, RecordingConfig, RecordingSummary, SenderReport,
        TrackKind as MediaKind,
    },
};
use serde::Serialize;
use sfu::{MediaCodec, ParticipantId, Sfu, SfuError, TapId, TapOutput, TapPacket, TrackKind};

/// Tap packets queued for one participant's thread: ~10 s of a 1.5 Mbit/s camera and its
/// microphone. A thread that cannot keep up with that has lost its disk.
const TAP_QUEUE: usize = 2048;
/// How often a recording's file is fsynced: with the frames' own wait (holes, the other
/// track) at most ~2 s of media is lost if the server dies.
const SYNC_EVERY: Duration = Duration::from_millis(700);
/// A participant's thread takes what its taps queued at most this often (a 1.5 Mbit/s camera
/// sends ~200 packets a second; a pass per packet made recording cost ~8× as much, measured).
const PASS_EVERY: Duration = Duration::from_millis(50);
/// A joiner's tracks may not be published yet when its join is answered: tried again once.
const ATTACH_RETRY: Duration = Duration::from_millis(1500);
/// How long the first packets wait for the other track's, to learn both codecs.
const CODEC_WAIT: Duration = Duration::from_secs(2);
/// A participant's file is closed and the next one started after an hour by default
/// (`[recordings] room_file_seconds`): files a player and the seekable rewrite (which reads
/// the whole file) handle easily.
pub const DEFAULT_FILE_LENGTH: Duration = Duration::from_secs(3600);

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
    /// Why it stopped: `stopped`, `room_empty`, `storage_failed`, `fell_behind`.
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
    /// How long a participant's file gets before the next one starts.
    file_length: Duration,
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
}

/// `manifest.json`: what a recording session holds, for players and offline tools.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub room: String,
    pub session: String,
    pub started_by: String,
    /// Unix ms.
    pub started: u64,
    pub stopped: Option<u64>,
    pub stop_reason: Option<&'static str>,
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ManifestFile {
    pub participant: ParticipantId,
    pub name: String,
    pub file: String,
    /// 1 for a participant's first file; long recordings go on in more.
    pub part: u32,
    pub video: Option<&'static str>,
    pub audio: Option<&'static str>,
    /// Wall-clock time (sender's clock, Unix ms) of the file's time 0: files of one session
    /// line up by it.
    pub starts_at: Option<u64>,
    pub duration_ms: u64,
    pub width: Option<u16>,
    pub height: Option<u16>,
    pub video_frames: u64,
    pub audio_frames: u64,
    /// Video holes not repaired in time (frames dropped until the next keyframe).
    pub video_holes: u64,
    /// Least capture-to-arrival time per track (see `media_out::recording::RecordingSummary`).
    pub audio_transit_ms: Option<i64>,
    pub video_transit_ms: Option<i64>,
    pub finished: bool,
    pub error: Option<String>,
    /// A track not written, and why.
    pub skipped: Option<String>,
}

impl RoomRecorder {
    /// Recordings go to `<recordings_dir>/rooms/`; a participant's file is closed and the
    /// next one started (at a keyframe) after `file_length`.
    pub fn new(
        sfu: Arc<Sfu>,
        recordings_dir: &Path,
        file_length: Duration,
        announce: Announce,
    ) -> Arc<Self> {
        Arc::new(RoomRecorder {
            sfu,
            dir: recordings_dir.join("rooms"),
            file_length,
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
        let report = self.sfu.report().await;
        let publishers: Vec<(ParticipantId, String)> = report
            .rooms
            .iter()
            .filter(|r| r.room == room)
            .flat_map(|r| r.participants.iter())
            .filter(|p| !p.publishing.is_empty())
            .map(|p| (p.id, p.name.clone()))
            .collect();
        if publishers.is_empty() {
            return Err(RoomRecordingError::NothingToRecord);
        }
        let now = SystemTime::now();
        let id = session_id(now);
        let session_id = id.clone();
        let dir = self.dir.join(safe_component(room)).join(&id);
        fs::create_dir_all(&dir)?;
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
        write_manifest(&dir, &manifest)?;
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
        {
            let mut manifest = session.manifest.lock().unwrap_or_else(|p| p.into_inner());
            manifest.stopped = Some(unix_ms(SystemTime::now()));
            manifest.stop_reason = Some(reason);
            if let Err(error) = write_manifest(&session.dir, &manifest) {
                tracing::warn!(%error, "room recording manifest");
            }
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
        let (sink, queue) = sync_channel(TAP_QUEUE);
        let mut taps = Vec::new();
        for attempt in 0..if retry { 2 } else { 1 } {
            if attempt > 0 {
                tokio::time::sleep(ATTACH_RETRY).await;
            }
            for kind in [TrackKind::Video, TrackKind::Audio] {
                if taps.iter().any(|(_, k)| *k == kind) {
                    continue;
                }
                match self.sfu.attach_tap(participant, kind, sink.clone()).await {
                    Ok(tap) => taps.push((tap, kind)),
                    Err(SfuError::NotPublishing(_)) => {}
                    Err(error) => tracing::debug!(%participant, %error, "no tap"),
                }
            }
            if taps.len() == 2 {
                break;
            }
        }
        drop(sink);
        // Ok: the job to run; Err: nothing to record of this participant (it publishes
        // nothing, or left), and whether the session has nobody left either.
        let next = {
            let mut sessions = self.sessions();
            let mut session = sessions.get_mut(&room).filter(|s| s.id == session_id);
            if let Some(session) = session.as_mut() {
                session.attaching = session.attaching.saturating_sub(1);
            }
            match session {
                Some(session) if !taps.is_empty() && !session.recording.contains(&participant) => {
                    session.recording.push(participant);
                    Ok(Job {
                        sfu: self.sfu.clone(),
                        participant,
                        name,
                        taps,
                        queue,
                        stop: session.stop.clone(),
                        manifest: session.manifest.clone(),
                        dir: session.dir.clone(),
                        session: session.id.clone(),
                        file_length: self.file_length,
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
                for (tap, _) in taps {
                    self.sfu.detach_tap(tap);
                }
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

/// One participant's recording thread.
struct Job {
    sfu: Arc<Sfu>,
    participant: ParticipantId,
    name: String,
    taps: Vec<(TapId, TrackKind)>,
    queue: Receiver<TapOutput>,
    stop: Arc<AtomicBool>,
    manifest: Arc<Mutex<Manifest>>,
    dir: PathBuf,
    session: String,
    /// How long a file gets before the next one starts.
    file_length: Duration,
}

/// The recording of one participant: its codecs being learnt, then its files one by one.
enum Stage {
    /// Each track's codec once its first packet came (`Some(None)`: one we cannot write).
    Learning {
        first: Option<Instant>,
        held: Vec<TapPacket>,
        video: Option<Option<Codec>>,
        audio: Option<Option<Codec>>,
    },
    Recording(Box<Segment>),
}

/// One file of a participant's recording.
struct Segment {
    path: PathBuf,
    file: File,
    recording: ParticipantRecording,
    entry: ManifestFile,
    codecs: (Option<Codec>, Option<Codec>),
    last_sync: Instant,
    /// Long enough: a keyframe was asked for, the next file starts on it.
    rotating: bool,
}

impl Job {
    /// Records until the taps end (the participant left) or the room's recording stops.
    /// `Err`: why the room's recording must stop.
    fn run(self) -> Result<(), &'static str> {
        let span = tracing::info_span!("room_recording", participant = %self.participant);
        let _span = span.enter();
        let result = self.record();
        for (tap, _) in &self.taps {
            self.sfu.detach_tap(*tap);
        }
        result
    }

    fn record(&self) -> Result<(), &'static str> {
        let mut stage = Stage::Learning {
            first: None,
            held: Vec::new(),
            video: None,
            audio: None,
        };
        let mut ended = 0;
        let mut lost_tap = false;
        let mut last_pass = Instant::now();
        loop {
            // At most a pass every PASS_EVERY: packets wait in the queue and are taken
            // together, rather than a thread wake-up and a write per packet.
            if let Some(rest) = PASS_EVERY.checked_sub(last_pass.elapsed()) {
                std::thread::sleep(rest);
            }
            last_pass = Instant::now();
            let wait = match &stage {
                Stage::Recording(segment) => segment
                    .recording
                    .deadline()
                    .map(|d| d.saturating_duration_since(Instant::now())),
                Stage::Learning { .. } => None,
            }
            .unwrap_or(SYNC_EVERY)
            .min(SYNC_EVERY);
            let first = match self.queue.recv_timeout(wait) {
                Ok(output) => Some(output),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    // Every sender is gone: the taps ended (counted), or the SFU took them
                    // from a queue that was full.
                    lost_tap = ended < self.taps.len();
                    break;
                }
            };
            // Everything queued meanwhile is taken in the same pass.
            let queued = std::iter::from_fn(|| self.queue.try_recv().ok());
            for output in first.into_iter().chain(queued) {
                let packet = match output {
                    TapOutput::Packet(packet) => packet,
                    TapOutput::Ended(_) => {
                        ended += 1;
                        continue;
                    }
                };
                match &mut stage {
                    Stage::Learning {
                        first,
                        held,
                        video,
                        audio,
                    } => {
                        let codec = media_codec(&packet);
                        match packet.kind {
                            TrackKind::Video if video.is_none() => *video = Some(codec),
                            TrackKind::Audio if audio.is_none() => *audio = Some(codec),
                            _ => {}
                        }
                        first.get_or_insert(packet.arrived);
                        held.push(packet);
                    }
                    Stage::Recording(segment) => {
                        if self.starts_next_file(segment, &packet) {
                            let next = self.open(segment.entry.part + 1, segment.codecs, None)?;
                            let done = std::mem::replace(segment, Box::new(next));
                            self.close(*done)?;
                        }
                        feed(&mut segment.recording, &self.taps, packet);
                    }
                }
            }
            if self.stop.load(Ordering::Relaxed) || ended >= self.taps.len() {
                break;
            }
            let now = Instant::now();
            if let Stage::Learning {
                first: Some(first),
                held,
                video,
                audio,
            } = &mut stage
            {
                let all_known = self.taps.iter().all(|(_, kind)| match kind {
                    TrackKind::Video => video.is_some(),
                    TrackKind::Audio => audio.is_some(),
                });
                if all_known || now >= *first + CODEC_WAIT {
                    let skipped = video.filter(Option::is_none).map(|_| {
                        let codec = held
                            .iter()
                            .find(|p| p.kind == TrackKind::Video)
                            .and_then(TapPacket::codec);
                        format!(
                            "video in {}: not recorded (VP8, VP9 and H.264 are)",
                            codec.map_or("an unknown codec".into(), |c| c.to_string())
                        )
                    });
                    let codecs = (video.flatten(), audio.flatten());
                    let mut segment = self.open(1, codecs, skipped)?;
                    for packet in held.drain(..) {
                        feed(&mut segment.recording, &self.taps, packet);
                    }
                    stage = Stage::Recording(Box::new(segment));
                }
            }
            if let Stage::Recording(segment) = &mut stage {
                self.keep_up(segment, now)?;
            }
        }
        if let Stage::Recording(segment) = stage {
            if lost_tap {
                // What was written stays; the file is left live (not rewritten).
                let mut segment = *segment;
                segment.entry.error = Some("fell_behind".into());
                self.update_manifest(&segment.entry);
            } else {
                self.close(*segment)?;
            }
        }
        if lost_tap {
            tracing::warn!("the recording fell behind the media: stopped");
            return Err("fell_behind");
        }
        Ok(())
    }

    /// Writes what is due, asks for keyframes, fsyncs now and then, and asks for the keyframe
    /// the next file will start on once this one is long enough.
    fn keep_up(&self, segment: &mut Segment, now: Instant) -> Result<(), &'static str> {
        segment.recording.poll(now);
        let mut keyframe = segment.recording.take_keyframe_wanted();
        write(&mut segment.file, &segment.recording.take_bytes())?;
        if now >= segment.last_sync + SYNC_EVERY {
            segment.file.sync_data().map_err(storage)?;
            segment.last_sync = now;
            let summary = segment.recording.summary();
            summarize(&mut segment.entry, &summary);
            self.update_manifest(&segment.entry);
            if !segment.rotating
                && Duration::from_millis(summary.duration_ms) >= self.file_length
                && segment.codecs.0.is_some()
            {
                segment.rotating = true;
                keyframe = true;
            }
        }
        if keyframe {
            if let Some((tap, _)) = self.taps.iter().find(|(_, k)| *k == TrackKind::Video) {
                self.sfu.tap_keyframe(*tap);
            }
        }
        Ok(())
    }

    /// Whether `packet` starts the next file: the keyframe asked for once the file was long
    /// enough (or, without video, any packet then).
    fn starts_next_file(&self, segment: &Segment, packet: &TapPacket) -> bool {
        if segment.codecs.0.is_none() {
            return Duration::from_millis(segment.entry.duration_ms) >= self.file_length;
        }
        segment.rotating && packet.kind == TrackKind::Video && packet.keyframe
    }

    /// Starts file number `part`.
    fn open(
        &self,
        part: u32,
        codecs: (Option<Codec>, Option<Codec>),
        skipped: Option<String>,
    ) -> Result<Segment, &'static str> {
        let anchor = (Instant::now(), SystemTime::now());
        let recording =
            ParticipantRecording::new(RecordingConfig::default(), codecs.0, codecs.1, anchor);
        let extension = recording.container().extension();
        let stem = format!("{}-{}", safe_component(&self.name), self.participant);
        let name = match part {
            1 => format!("{stem}.{extension}"),
            n => format!("{stem}-{n}.{extension}"),
        };
        let path = self.dir.join(&name);
        let file = File::create_new(&path).map_err(|error| {
            tracing::warn!(%error, path = %path.display(), "cannot create the recording");
            "storage_failed"
        })?;
        let entry = ManifestFile {
            participant: self.participant,
            name: self.name.clone(),
            file: name,
            part,
            video: codecs.0.map(codec_name),
            audio: codecs.1.map(codec_name),
            starts_at: None,
            duration_ms: 0,
            width: None,
            height: None,
            video_frames: 0,
            audio_frames: 0,
            video_holes: 0,
            audio_transit_ms: None,
            video_transit_ms: None,
            finished: false,
            error: None,
            skipped,
        };
        self.update_manifest(&entry);
        Ok(Segment {
            path,
            file,
            recording,
            entry,
            codecs,
            last_sync: Instant::now(),
            rotating: false,
        })
    }

    /// Writes what the file still holds, makes it seekable and says so in the manifest.
    fn close(&self, mut segment: Segment) -> Result<(), &'static str> {
        let result = (|| {
            segment.recording.finish();
            write(&mut segment.file, &segment.recording.take_bytes())?;
            summarize(&mut segment.entry, &segment.recording.summary());
            // MP4: the duration into the init segment; WebM: rewritten seekable.
            let patch = segment.recording.duration_patch();
            if let Some((offset, bytes)) = patch {
                segment
                    .file
                    .seek(SeekFrom::Start(offset))
                    .map_err(storage)?;
                segment.file.write_all(&bytes).map_err(storage)?;
            }
            segment.file.sync_all().map_err(storage)?;
            match patch {
                Some(_) => Ok(()),
                None => make_seekable(&segment.path, &self.dir),
            }
        })();
        match result {
            Ok(()) => segment.entry.finished = true,
            Err(reason) => segment.entry.error = Some(reason.into()),
        }
        self.update_manifest(&segment.entry);
        result
    }

    fn update_manifest(&self, entry: &ManifestFile) {
        let mut manifest = self.manifest.lock().unwrap_or_else(|p| p.into_inner());
        match manifest.files.iter_mut().find(|f| f.file == entry.file) {
            Some(file) => *file = entry.clone(),
            None => manifest.files.push(entry.clone()),
        }
        if let Err(error) = write_manifest(&self.dir, &manifest) {
            tracing::warn!(%error, "room recording manifest");
        }
    }
}

/// Rewrites a finished file with Duration and Cues (the live file stays if that fails).
fn make_seekable(path: &Path, dir: &Path) -> Result<(), &'static str> {
    let bytes = fs::read(path).map_err(storage)?;
    if bytes.is_empty() {
        return Ok(());
    }
    let seekable = match media_out::webm::make_seekable(&bytes) {
        Ok(seekable) => seekable,
        Err(error) => {
            tracing::warn!(%error, "recording left as written");
            return Ok(());
        }
    };
    let tmp = path.with_extension("webm.tmp");
    let mut out = File::create(&tmp).map_err(storage)?;
    out.write_all(&seekable.bytes).map_err(storage)?;
    out.sync_all().map_err(storage)?;
    fs::rename(&tmp, path).map_err(storage)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(storage)
}

fn feed(recording: &mut ParticipantRecording, taps: &[(TapId, TrackKind)], packet: TapPacket) {
    let Some((_, kind)) = taps.iter().find(|(tap, _)| *tap == packet.tap) else {
        return;
    };
    let kind = match kind {
        TrackKind::Audio => MediaKind::Audio,
        TrackKind::Video => MediaKind::Video,
    };
    let report = packet.sender_report.map(|r| SenderReport {
        ntp: r.ntp,
        rtp_time: r.rtp_time,
    });
    recording.push(
        kind,
        Packet {
            seq: packet.seq,
            rtp_time: packet.rtp_time,
            marker: packet.marker,
            payload: packet.payload,
            arrived: packet.arrived,
        },
        report,
    );
}

/// The codec of a tap's packets, if we write it (WebM: VP8, VP9, Opus; MP4: H.264, Opus).
fn media_codec(packet: &TapPacket) -> Option<Codec> {
    match packet.codec()? {
        MediaCodec::Opus => Some(Codec::Opus),
        MediaCodec::Vp8 => Some(Codec::Vp8),
        MediaCodec::Vp9 => Some(Codec::Vp9),
        MediaCodec::H264 => Some(Codec::H264),
        MediaCodec::Av1 | MediaCodec::H265 => None,
    }
}

fn codec_name(codec: Codec) -> &'static str {
    match codec {
        Codec::Opus => "opus",
        Codec::Vp8 => "vp8",
        Codec::Vp9 => "vp9",
        Codec::H264 => "h264",
    }
}

fn summarize(entry: &mut ManifestFile, summary: &RecordingSummary) {
    entry.starts_at = summary.started.map(unix_ms);
    entry.duration_ms = summary.duration_ms;
    entry.width = summary.video_size.map(|s| s.0);
    entry.height = summary.video_size.map(|s| s.1);
    entry.video_frames = summary.video_frames;
    entry.audio_frames = summary.audio_frames;
    entry.video_holes = summary.video.holes;
    entry.audio_transit_ms = summary.audio_transit_ms;
    entry.video_transit_ms = summary.video_transit_ms;
}

fn write(file: &mut File, bytes: &[u8]) -> Result<(), &'static str> {
    if bytes.is_empty() {
        return Ok(());
    }
    file.write_all(bytes).map_err(storage)
}

fn storage(error: std::io::Error) -> &'static str {
    tracing::warn!(%error, "room recording: storage failed");
    "storage_failed"
}

fn write_manifest(dir: &Path, manifest: &Manifest) -> std::io::Result<()> {
    let tmp = dir.join("manifest.json.tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(&serde_json::to_vec_pretty(manifest).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join("manifest.json"))
}

/// A name as a path component: letters, digits, `-` and `_` kept, the rest `_`, at most 40
/// characters, never empty (no `..`, no `/`, whatever a participant calls itself).
pub fn safe_component(name: &str) -> String {
    let safe: String = name
        .chars()
        .take(40)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() {
        "_".into()
    } else {
        safe
    }
}

/// `20261128T093000Z-<6 hex>`: sorts by time, unique.
fn session_id(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let mut random = [0u8; 3];
    getrandom::fill(&mut random).expect("the OS random number generator is available");
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z-{}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        random
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// Days since 1970-01-01 to a (year, month, day) date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_leave_the_directory() {
        assert_eq!(safe_component(".."), "__");
        assert_eq!(safe_component("../../etc/passwd"), "______etc_passwd");
        assert_eq!(safe_component("Zoë & Bob"), "Zo____Bob");
        assert_eq!(safe_component(""), "_");
        assert_eq!(safe_component(&"x".repeat(100)).len(), 40);
        assert_eq!(safe_component("room-1_a"), "room-1_a");
    }

    #[test]
    fn session_ids_sort_by_time() {
        let id = session_id(UNIX_EPOCH + Duration::from_secs(1_795_858_200));
        assert!(id.starts_with("20261128T093000Z-"), "{id}");
        assert_eq!(id.len(), "20261128T093000Z-".len() + 6);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_785), (2026, 11, 28));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
