//! One recorded participant's thread: its taps' packets into `media_out`, the bytes to its
//! files, fsynced now and then, a new file once one is long enough.

use std::{
    fs::{self, File},
    io::{Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::RecvTimeoutError,
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime},
};

use media_out::{
    codec::Codec,
    recording::{ParticipantRecording, RecordingConfig, RecordingSummary},
};
use sfu::{ParticipantId, Sfu, TapOutput, TapPacket, TrackKind};

use super::manifest::{safe_component, unix_ms, write_manifest, Manifest, ManifestFile};
use crate::taps::{codec_name, CodecProbe, Taps};

/// How often a recording's file is fsynced: with the frames' own wait (holes, the other
/// track) at most ~2 s of media is lost if the server dies.
const SYNC_EVERY: Duration = Duration::from_millis(700);
/// A participant's thread takes what its taps queued at most this often (a 1.5 Mbit/s camera
/// sends ~200 packets a second; a pass per packet made recording cost ~8× as much, measured).
const PASS_EVERY: Duration = Duration::from_millis(50);

/// One participant's recording thread.
pub(super) struct Job {
    pub(super) sfu: Arc<Sfu>,
    pub(super) participant: ParticipantId,
    pub(super) name: String,
    pub(super) taps: Taps,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) manifest: Arc<Mutex<Manifest>>,
    pub(super) dir: PathBuf,
    pub(super) session: String,
    /// How long a file gets before the next one starts.
    pub(super) file_length: Duration,
    /// Bytes the session's files hold, every participant's thread adding its own.
    pub(super) written: Arc<AtomicU64>,
    /// The session stops (`size_limit`) once they hold this much.
    pub(super) max_bytes: Option<u64>,
}

/// The recording of one participant: its codecs being learnt, then its files one by one.
enum Stage {
    Learning(CodecProbe),
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
    pub(super) fn run(self) -> Result<(), &'static str> {
        let span = tracing::info_span!("room_recording", participant = %self.participant);
        let _span = span.enter();
        let result = self.record();
        self.taps.detach(&self.sfu);
        result
    }

    fn record(&self) -> Result<(), &'static str> {
        let mut stage = Stage::Learning(CodecProbe::default());
        let mut ended = 0;
        let mut lost_tap = false;
        let mut full = false;
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
                Stage::Learning(_) => None,
            }
            .unwrap_or(SYNC_EVERY)
            .min(SYNC_EVERY);
            let first = match self.taps.queue.recv_timeout(wait) {
                Ok(output) => Some(output),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    // Every sender is gone: the taps ended (counted), or the SFU took them
                    // from a queue that was full.
                    lost_tap = ended < self.taps.taps.len();
                    break;
                }
            };
            // Everything queued meanwhile is taken in the same pass.
            let queued = std::iter::from_fn(|| self.taps.queue.try_recv().ok());
            for output in first.into_iter().chain(queued) {
                let packet = match output {
                    TapOutput::Packet(packet) => packet,
                    TapOutput::Ended(_) => {
                        ended += 1;
                        continue;
                    }
                };
                match &mut stage {
                    Stage::Learning(probe) => probe.push(packet),
                    Stage::Recording(segment) => {
                        if self.starts_next_file(segment, &packet) {
                            let next = self.open(segment.entry.part + 1, segment.codecs, None)?;
                            let done = std::mem::replace(segment, Box::new(next));
                            self.close(*done)?;
                        }
                        self.taps.feed(&mut segment.recording, packet);
                    }
                }
            }
            if self.stop.load(Ordering::Relaxed) || ended >= self.taps.taps.len() {
                break;
            }
            let now = Instant::now();
            if let Stage::Learning(probe) = &mut stage {
                if probe.done(&self.taps.taps, now) {
                    let probed = std::mem::take(probe).finish();
                    let skipped = probed.unwritable_video.map(|codec| {
                        format!("video in {codec}: not recorded (VP8, VP9 and H.264 are)")
                    });
                    let mut segment = self.open(1, (probed.video, probed.audio), skipped)?;
                    for packet in probed.held {
                        self.taps.feed(&mut segment.recording, packet);
                    }
                    stage = Stage::Recording(Box::new(segment));
                }
            }
            if let Stage::Recording(segment) = &mut stage {
                self.keep_up(segment, now)?;
            }
            if self
                .max_bytes
                .is_some_and(|max| self.written.load(Ordering::Relaxed) >= max)
            {
                // The file is finished like any other: what it holds plays.
                full = true;
                break;
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
        if full {
            tracing::warn!(
                max_bytes = self.max_bytes,
                "the room's recording is as large as allowed: stopped"
            );
            return Err("size_limit");
        }
        Ok(())
    }

    /// Writes what is due, asks for keyframes, fsyncs now and then, and asks for the keyframe
    /// the next file will start on once this one is long enough.
    fn keep_up(&self, segment: &mut Segment, now: Instant) -> Result<(), &'static str> {
        segment.recording.poll(now);
        let mut keyframe = segment.recording.take_keyframe_wanted();
        self.write_out(segment)?;
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
            if let Some(tap) = self.taps.video() {
                self.sfu.tap_keyframe(tap);
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
            self.write_out(&mut segment)?;
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

    /// Appends what the recording made to its file, and counts it against the session's size.
    fn write_out(&self, segment: &mut Segment) -> Result<(), &'static str> {
        let bytes = segment.recording.take_bytes();
        if bytes.is_empty() {
            return Ok(());
        }
        segment.file.write_all(&bytes).map_err(storage)?;
        self.written
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
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

fn storage(error: std::io::Error) -> &'static str {
    tracing::warn!(%error, "room recording: storage failed");
    "storage_failed"
}
