//! What the server knows of browser recordings and what it accepts, without I/O: the
//! upload rules (chunks in order, idempotent, resumable), sizes and quotas. The driver
//! (`mod.rs`) writes the bytes and asks here first.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_chunk_bytes: 16 << 20,
            max_recording_bytes: 1 << 30,
            quota_bytes: 2 << 30,
            max_open: 4,
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
    /// Who may add to it and whose quota it counts against: `user:<token subject>` with join
    /// tokens, else `address:<client IP>`.
    pub owner: String,
    pub room: Option<String>,
    /// The MediaRecorder type, e.g. `video/webm;codecs=vp9,opus`.
    pub mime: String,
    /// Unix seconds.
    pub created: u64,
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
    #[error("this recording belongs to someone else")]
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
    #[error("the recordings quota ({quota} bytes) is used up: delete or download some")]
    QuotaExceeded { quota: u64 },
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

    /// Starts a recording under a fresh `id` (the caller makes it unguessable).
    pub fn create(
        &mut self,
        id: String,
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
        let recording = Recording {
            id: id.clone(),
            owner: owner.to_owned(),
            room,
            mime: mime.to_owned(),
            created: now,
            finished: None,
            state: State::Recording,
            next: 0,
            bytes: 0,
            duration_ms: None,
        };
        Ok(self.recordings.entry(id).or_insert(recording))
    }

    /// Whether chunk `seq` of `len` bytes is taken. `owner` is checked when given (with join
    /// tokens, only the same user may add to a recording; without, its id is the key).
    pub fn check_chunk(
        &self,
        id: &str,
        owner: Option<&str>,
        seq: u32,
        len: u64,
    ) -> Result<Chunk, RecordingError> {
        let recording = self.owned(id, owner)?;
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
        Ok(Chunk::Append)
    }

    /// The driver stored chunk `seq` (checked with [`Catalog::check_chunk`]).
    pub fn appended(&mut self, id: &str, seq: u32, len: u64) -> Option<&Recording> {
        let recording = self.recordings.get_mut(id)?;
        debug_assert_eq!(seq, recording.next);
        recording.next = seq + 1;
        recording.bytes += len;
        Some(recording)
    }

    /// Whether the recording may be finished now (`Ok(None)`: it is already).
    pub fn check_finish(
        &self,
        id: &str,
        owner: Option<&str>,
    ) -> Result<Option<&Recording>, RecordingError> {
        let recording = self.owned(id, owner)?;
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

    fn owned(&self, id: &str, owner: Option<&str>) -> Result<&Recording, RecordingError> {
        let recording = self.recordings.get(id).ok_or(RecordingError::Unknown)?;
        match owner {
            Some(owner) if owner != recording.owner => Err(RecordingError::NotYours),
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
        })
    }

    fn store(c: &mut Catalog, id: &str, seq: u32, len: u64) -> Result<Chunk, RecordingError> {
        let verdict = c.check_chunk(id, None, seq, len)?;
        if verdict == Chunk::Append {
            c.appended(id, seq, len);
        }
        Ok(verdict)
    }

    #[test]
    fn chunks_in_order_retries_answered_gaps_refused() {
        let mut c = catalog();
        c.create("r1".into(), "address:1.2.3.4", None, WEBM, 10)
            .unwrap();
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
    fn sizes_and_quota() {
        let mut c = catalog();
        c.create("a".into(), "user:ann", None, WEBM, 0).unwrap();
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
        c.create("b".into(), "user:ann", None, WEBM, 0).unwrap();
        store(&mut c, "b", 0, 100).unwrap();
        store(&mut c, "b", 1, 100).unwrap();
        assert_eq!(
            store(&mut c, "b", 2, 1),
            Err(RecordingError::QuotaExceeded { quota: 400 }),
            "ann keeps 400 bytes"
        );
        assert_eq!(
            c.create("c".into(), "user:ann", None, WEBM, 0).unwrap_err(),
            RecordingError::TooManyOpen { max: 2 }
        );
        // Another owner has a quota of their own.
        c.create("d".into(), "user:bob", None, WEBM, 0).unwrap();
        assert_eq!(store(&mut c, "d", 0, 100), Ok(Chunk::Append));
    }

    #[test]
    fn owner_checked_when_given() {
        let mut c = catalog();
        c.create("a".into(), "user:ann", None, WEBM, 0).unwrap();
        assert_eq!(
            c.check_chunk("a", Some("user:eve"), 0, 1),
            Err(RecordingError::NotYours)
        );
        assert_eq!(
            c.check_chunk("a", Some("user:ann"), 0, 1),
            Ok(Chunk::Append)
        );
        assert_eq!(c.check_chunk("a", None, 0, 1), Ok(Chunk::Append));
        assert_eq!(
            c.check_finish("a", Some("user:eve")).unwrap_err(),
            RecordingError::NotYours
        );
    }

    #[test]
    fn finish_once_and_not_empty() {
        let mut c = catalog();
        c.create("a".into(), "o", None, WEBM, 0).unwrap();
        assert_eq!(
            c.check_finish("a", None).unwrap_err(),
            RecordingError::Empty
        );
        store(&mut c, "a", 0, 10).unwrap();
        assert!(c.check_finish("a", None).unwrap().is_some());
        c.finished("a", 20, Some(1500));
        assert_eq!(
            c.check_finish("a", None),
            Ok(None),
            "finishing again is a no-op"
        );
        assert_eq!(store(&mut c, "a", 1, 10), Err(RecordingError::Finished));
        assert_eq!(store(&mut c, "a", 0, 10), Ok(Chunk::AlreadyStored));
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
                    c.create("x".into(), "o", None, bad, 0),
                    Err(RecordingError::BadType(_))
                ),
                "{bad}"
            );
        }
        c.create("m".into(), "o", None, "video/mp4;codecs=avc1,opus", 0)
            .unwrap();
        assert_eq!(c.get("m").unwrap().extension(), "mp4");
    }
}
