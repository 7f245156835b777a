//! What the server knows of browser recordings and what it accepts, without I/O: the
//! upload rules (chunks in order, idempotent, resumable, only with the recording's upload
//! key), sizes, quotas, and when an abandoned recording is finished for its owner. The
//! driver (`mod.rs`) writes the bytes and asks here first; time is passed in.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::access::constant_time_eq;

/// How big things may get (`[recordings]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// One chunk (the page sends one a second: ~1 MB at 8 Mbit/s).
    pub max_chunk_bytes: u64,
    /// One recording.
    pub max_recording_bytes: u64,
    /// Everything one owner keeps, finished or not.
    pub quota_bytes: u64,
    /// Recordings one owner may have open (started, not finished) at once.
    pub max_open: usize,
    /// Everything on this server's disk, all owners together.
    pub max_total_bytes: u64,
    /// A recording that got no chunk for this long is finished with what it has (its tab
    /// closed or crashed), so it plays and frees its owner's open slot.
    pub idle_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_chunk_bytes: 16 << 20,
            max_recording_bytes: 1 << 30,
            quota_bytes: 2 << 30,
            max_open: 4,
            max_total_bytes: 10 << 30,
            idle_seconds: 600,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Taking chunks.
    Recording,
    /// Complete: the file is in place (and a WebM seekable).
    Finished,
}

/// A recording's record, kept as `<id>.json` beside its file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    pub id: String,
    /// Whose quota it counts against: `user:<token subject>` with join tokens, else
    /// `address:<client IP>`.
    pub owner: String,
    /// The secret that adds chunks, finishes or deletes it: given to its creator only (the
    /// id alone, which plays it back, may be shared).
    pub upload_key: String,
    pub room: Option<String>,
    /// The MediaRecorder type, e.g. `video/webm;codecs=vp9,opus`.
    pub mime: String,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds of the last chunk (or the creation).
    #[serde(default)]
    pub updated: u64,
    pub finished: Option<u64>,
    pub state: State,
    /// The next chunk expected; chunks `0..next` are stored.
    pub next: u32,
    pub bytes: u64,
    /// Known for WebM once finished (from its blocks).
    pub duration_ms: Option<u64>,
}

impl Recording {
    /// `webm` or `mp4`.
    pub fn extension(&self) -> &'static str {
        container(&self.mime).unwrap_or("bin")
    }
}

/// The container a MediaRecorder type names, if we accept it.
pub fn container(mime: &str) -> Option<&'static str> {
    let essence = mime.split(';').next()?.trim();
    match essence {
        "video/webm" | "audio/webm" => Some("webm"),
        "video/mp4" | "audio/mp4" => Some("mp4"),
        _ => None,
    }
}

/// A type as browsers write it: `type/subtype[;codecs=a,b]`, short, plain ASCII.
fn valid_mime(mime: &str) -> bool {
    mime.len() <= 100
        && container(mime).is_some()
        && mime
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b";=,./-+ \"".contains(&b))
}

/// What to do with a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// The next one: append it.
    Append,
    /// Stored already (a retry after a lost answer): answer as if appended.
    AlreadyStored,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordingError {
    #[error("no such recording")]
    Unknown,
    #[error("this recording belongs to someone else (no or a wrong X-Upload-Key)")]
    NotYours,
    #[error("the recording is finished")]
    Finished,
    #[error("chunk {got} is ahead: the server has chunks up to {}, send chunk {next}", next.saturating_sub(1))]
    OutOfOrder { got: u32, next: u32 },
    #[error("an empty chunk")]
    EmptyChunk,
    #[error("a chunk may be at most {max} bytes")]
    ChunkTooLarge { max: u64 },
    #[error("a recording may be at most {max} bytes")]
    RecordingTooLarge { max: u64 },
    #[error("the recordings quota ({quota} bytes) is used up: delete some")]
    QuotaExceeded { quota: u64 },
    #[error("the server's space for recordings is used up")]
    ServerFull,
    #[error("at most {max} recordings may be open at once: finish one first")]
    TooManyOpen { max: usize },
    #[error("{0:?} is not a recording type this server keeps (video/webm or video/mp4)")]
    BadType(String),
    #[error("nothing was recorded")]
    Empty,
}

impl RecordingError {
    /// The `code` of the JSON error answer (docs/protocol.md).
    pub fn code(&self) -> &'static str {
        match self {
            RecordingError::Unknown => "unknown_recording",
            RecordingError::NotYours => "not_yours",
            RecordingError::Finished => "finished",
            RecordingError::OutOfOrder { .. } => "out_of_order",
            RecordingError::EmptyChunk => "empty_chunk",
            RecordingError::ChunkTooLarge { .. } => "chunk_too_large",
            RecordingError::RecordingTooLarge { .. } => "recording_too_large",
            RecordingError::QuotaExceeded { .. } => "quota_exceeded",
            RecordingError::ServerFull => "server_full",
            RecordingError::TooManyOpen { .. } => "too_many_open",
            RecordingError::BadType(_) => "bad_type",
            RecordingError::Empty => "empty",
        }
    }
}

#[derive(Debug, Default)]
pub struct Catalog {
    recordings: HashMap<String, Recording>,
    limits: Limits,
}

impl Catalog {
    pub fn new(limits: Limits) -> Self {
        Catalog {
            recordings: HashMap::new(),
            limits,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Adds a recording read back from disk.
    pub fn restore(&mut self, recording: Recording) {
        self.recordings.insert(recording.id.clone(), recording);
    }

    pub fn get(&self, id: &str) -> Option<&Recording> {
        self.recordings.get(id)
    }

    pub fn all(&self) -> impl Iterator<Item = &Recording> {
        self.recordings.values()
    }

    /// Bytes an owner keeps.
    pub fn used_by(&self, owner: &str) -> u64 {
        self.recordings
            .values()
            .filter(|r| r.owner == owner)
            .map(|r| r.bytes)
            .sum()
    }

    /// Bytes on disk, all owners.
    pub fn used_total(&self) -> u64 {
        self.recordings.values().map(|r| r.bytes).sum()
    }

    /// Starts a recording under a fresh `id` and `upload_key` (the caller makes both
    /// unguessable).
    pub fn create(
        &mut self,
        id: String,
        upload_key: String,
        owner: &str,
        room: Option<String>,
        mime: &str,
        now: u64,
    ) -> Result<&Recording, RecordingError> {
        if !valid_mime(mime) {
            return Err(RecordingError::BadType(mime.chars().take(100).collect()));
        }
        let open = self
            .recordings
            .values()
            .filter(|r| r.owner == owner && r.state == State::Recording)
            .count();
        if open >= self.limits.max_open {
            return Err(RecordingError::TooManyOpen {
                max: self.limits.max_open,
            });
        }
        if self.used_by(owner) >= self.limits.quota_bytes {
            return Err(RecordingError::QuotaExceeded {
                quota: self.limits.quota_bytes,
            });
        }
        if self.used_total() >= self.limits.max_total_bytes {
            return Err(RecordingError::ServerFull);
        }
        let recording = Recording {
            id: id.clone(),
            owner: owner.to_owned(),
            upload_key,
            room,
            mime: mime.to_owned(),
            created: now,
            updated: now,
            finished: None,
            state: State::Recording,
            next: 0,
            bytes: 0,
            duration_ms: None,
        };
        Ok(self.recordings.entry(id).or_insert(recording))
    }

    /// Whether chunk `seq` of `len` bytes is taken from the holder of `key`.
    pub fn check_chunk(
        &self,
        id: &str,
        key: &str,
        seq: u32,
        len: u64,
    ) -> Result<Chunk, RecordingError> {
        let recording = self.keyed(id, Some(key))?;
        if seq < recording.next {
            return Ok(Chunk::AlreadyStored);
        }
        if recording.state == State::Finished {
            return Err(RecordingError::Finished);
        }
        if seq > recording.next {
            return Err(RecordingError::OutOfOrder {
                got: seq,
                next: recording.next,
            });
        }
        if len == 0 {
            return Err(RecordingError::EmptyChunk);
        }
        if len > self.limits.max_chunk_bytes {
            return Err(RecordingError::ChunkTooLarge {
                max: self.limits.max_chunk_bytes,
            });
        }
        if recording.bytes + len > self.limits.max_recording_bytes {
            return Err(RecordingError::RecordingTooLarge {
                max: self.limits.max_recording_bytes,
            });
        }
        if self.used_by(&recording.owner) + len > self.limits.quota_bytes {
            return Err(RecordingError::QuotaExceeded {
                quota: self.limits.quota_bytes,
            });
        }
        if self.used_total() + len > self.limits.max_total_bytes {
            return Err(RecordingError::ServerFull);
        }
        Ok(Chunk::Append)
    }

    /// The driver stored chunk `seq` (checked with [`Catalog::check_chunk`]).
    pub fn appended(&mut self, id: &str, seq: u32, len: u64, now: u64) -> Option<&Recording> {
        let recording = self.recordings.get_mut(id)?;
        debug_assert_eq!(seq, recording.next);
        recording.next = seq + 1;
        recording.bytes += len;
        recording.updated = now;
        Some(recording)
    }

    /// Whether the recording may be finished now (`Ok(None)`: it is already). `key`: the
    /// uploader's; `None` when the server finishes an abandoned recording itself.
    pub fn check_finish(
        &self,
        id: &str,
        key: Option<&str>,
    ) -> Result<Option<&Recording>, RecordingError> {
        let recording = self.keyed(id, key)?;
        match recording.state {
            State::Finished => Ok(None),
            State::Recording if recording.bytes == 0 => Err(RecordingError::Empty),
            State::Recording => Ok(Some(recording)),
        }
    }

    /// The driver put the finished file in place.
    pub fn finished(&mut self, id: &str, now: u64, duration_ms: Option<u64>) -> Option<&Recording> {
        let recording = self.recordings.get_mut(id)?;
        recording.state = State::Finished;
        recording.finished = Some(now);
        recording.duration_ms = duration_ms;
        Some(recording)
    }

    /// Recordings that got nothing for `idle_seconds`: to be finished as they are.
    pub fn abandoned(&self, now: u64) -> Vec<String> {
        self.recordings
            .values()
            .filter(|r| {
                r.state == State::Recording
                    && r.updated.saturating_add(self.limits.idle_seconds) <= now
            })
            .map(|r| r.id.clone())
            .collect()
    }

    /// Forgets a recording (its files are the driver's to delete); `key`: its uploader's,
    /// `None` for the operator.
    pub fn remove(&mut self, id: &str, key: Option<&str>) -> Result<Recording, RecordingError> {
        self.keyed(id, key)?;
        self.recordings.remove(id).ok_or(RecordingError::Unknown)
    }

    fn keyed(&self, id: &str, key: Option<&str>) -> Result<&Recording, RecordingError> {
        let recording = self.recordings.get(id).ok_or(RecordingError::Unknown)?;
        match key {
            Some(key) if !constant_time_eq(key.as_bytes(), recording.upload_key.as_bytes()) => {
                Err(RecordingError::NotYours)
            }
            _ => Ok(recording),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEBM: &str = "video/webm;codecs=vp9,opus";

    fn catalog() -> Catalog {
        Catalog::new(Limits {
            max_chunk_bytes: 100,
            max_recording_bytes: 250,
            quota_bytes: 400,
            max_open: 2,
            max_total_bytes: 650,
            idle_seconds: 60,
        })
    }

    fn start(c: &mut Catalog, id: &str, owner: &str) {
        c.create(id.into(), format!("key-{id}"), owner, None, WEBM, 0)
            .unwrap();
    }

    fn store(c: &mut Catalog, id: &str, seq: u32, len: u64) -> Result<Chunk, RecordingError> {
        let verdict = c.check_chunk(id, &format!("key-{id}"), seq, len)?;
        if verdict == Chunk::Append {
            c.appended(id, seq, len, 1);
        }
        Ok(verdict)
    }

    #[test]
    fn chunks_in_order_retries_answered_gaps_refused() {
        let mut c = catalog();
        start(&mut c, "r1", "address:1.2.3.4");
        assert_eq!(store(&mut c, "r1", 0, 50), Ok(Chunk::Append));
        assert_eq!(store(&mut c, "r1", 0, 50), Ok(Chunk::AlreadyStored));
        assert_eq!(
            store(&mut c, "r1", 2, 50),
            Err(RecordingError::OutOfOrder { got: 2, next: 1 })
        );
        assert_eq!(store(&mut c, "r1", 1, 60), Ok(Chunk::Append));
        let r = c.get("r1").unwrap();
        assert_eq!((r.next, r.bytes), (2, 110), "the retry did not count twice");
        assert_eq!(store(&mut c, "r1", 2, 0), Err(RecordingError::EmptyChunk));
        assert_eq!(store(&mut c, "nope", 0, 1), Err(RecordingError::Unknown));
    }

    #[test]
    fn sizes_quota_and_the_server_cap() {
        let mut c = catalog();
        start(&mut c, "a", "user:ann");
        assert_eq!(
            store(&mut c, "a", 0, 101),
            Err(RecordingError::ChunkTooLarge { max: 100 })
        );
        store(&mut c, "a", 0, 100).unwrap();
        store(&mut c, "a", 1, 100).unwrap();
        assert_eq!(
            store(&mut c, "a", 2, 51),
            Err(RecordingError::RecordingTooLarge { max: 250 })
        );
        start(&mut c, "b", "user:ann");
        store(&mut c, "b", 0, 100).unwrap();
        store(&mut c, "b", 1, 100).unwrap();
        assert_eq!(
            store(&mut c, "b", 2, 1),
            Err(RecordingError::QuotaExceeded { quota: 400 }),
            "ann keeps 400 bytes"
        );
        assert_eq!(
            c.create("c".into(), "k".into(), "user:ann", None, WEBM, 0)
                .unwrap_err(),
            RecordingError::TooManyOpen { max: 2 }
        );
        // Others have quotas of their own, until the server's space (650) is used up.
        start(&mut c, "d", "user:bob");
        store(&mut c, "d", 0, 100).unwrap();
        store(&mut c, "d", 1, 100).unwrap();
        start(&mut c, "e", "user:cy");
        assert_eq!(store(&mut c, "e", 0, 100), Err(RecordingError::ServerFull));
        assert_eq!(
            store(&mut c, "e", 0, 50),
            Ok(Chunk::Append),
            "up to the byte"
        );
        assert_eq!(
            c.create("f".into(), "k".into(), "user:dan", None, WEBM, 0)
                .unwrap_err(),
            RecordingError::ServerFull
        );
        // Deleting frees space.
        assert_eq!(c.remove("a", Some("key-a")).unwrap().bytes, 200);
        assert_eq!(store(&mut c, "e", 1, 100), Ok(Chunk::Append));
    }

    #[test]
    fn only_the_upload_key_adds_finishes_or_deletes() {
        let mut c = catalog();
        start(&mut c, "a", "user:ann");
        assert_eq!(
            c.check_chunk("a", "key-b", 0, 1),
            Err(RecordingError::NotYours)
        );
        assert_eq!(c.check_chunk("a", "", 0, 1), Err(RecordingError::NotYours));
        assert_eq!(c.check_chunk("a", "key-a", 0, 1), Ok(Chunk::Append));
        assert_eq!(
            c.check_finish("a", Some("key-b")).unwrap_err(),
            RecordingError::NotYours
        );
        assert_eq!(
            c.remove("a", Some("key-")).unwrap_err(),
            RecordingError::NotYours
        );
        assert!(c.remove("a", None).is_ok(), "the operator needs no key");
    }

    #[test]
    fn finish_once_and_not_empty() {
        let mut c = catalog();
        start(&mut c, "a", "o");
        assert_eq!(
            c.check_finish("a", Some("key-a")).unwrap_err(),
            RecordingError::Empty
        );
        store(&mut c, "a", 0, 10).unwrap();
        assert!(c.check_finish("a", Some("key-a")).unwrap().is_some());
        c.finished("a", 20, Some(1500));
        assert_eq!(
            c.check_finish("a", Some("key-a")),
            Ok(None),
            "finishing again is a no-op"
        );
        assert_eq!(store(&mut c, "a", 1, 10), Err(RecordingError::Finished));
        assert_eq!(store(&mut c, "a", 0, 10), Ok(Chunk::AlreadyStored));
    }

    #[test]
    fn abandoned_after_the_idle_time() {
        let mut c = catalog();
        start(&mut c, "a", "o");
        start(&mut c, "b", "o");
        c.check_chunk("b", "key-b", 0, 5).unwrap();
        c.appended("b", 0, 5, 30);
        assert!(c.abandoned(59).is_empty());
        assert_eq!(c.abandoned(60), vec!["a".to_owned()]);
        let mut both = c.abandoned(90);
        both.sort();
        assert_eq!(both, ["a", "b"]);
        c.finished("b", 90, None);
        assert_eq!(c.abandoned(1000), ["a"], "a finished one is not abandoned");
    }

    #[test]
    fn types() {
        let mut c = catalog();
        for ok in [
            WEBM,
            "video/webm;codecs=vp8,opus",
            "video/mp4;codecs=avc1,opus",
            "video/webm",
        ] {
            assert!(valid_mime(ok), "{ok}");
        }
        for bad in ["text/html", "video/webm<script>", "", "video/quicktime"] {
            assert!(
                matches!(
                    c.create("x".into(), "k".into(), "o", None, bad, 0),
                    Err(RecordingError::BadType(_))
                ),
                "{bad}"
            );
        }
        c.create(
            "m".into(),
            "k".into(),
            "o",
            None,
            "video/mp4;codecs=avc1,opus",
            0,
        )
        .unwrap();
        assert_eq!(c.get("m").unwrap().extension(), "mp4");
    }
}
