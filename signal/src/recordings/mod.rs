//! Recordings made in the browser (the course's way, seed 004): the page records the call
//! with MediaRecorder and uploads it a chunk a second while recording; the server appends
//! the chunks in order, makes a WebM seekable when the page finishes, and serves the file
//! with HTTP Range requests (docs/recording.md).
//!
//! - [`catalog`]: the upload rules, sizes and quotas, without I/O;
//! - [`webm`]: Duration, Cues and known sizes for a live WebM;
//! - this file: the HTTP API and the files (`<dir>/<id>.json` for the record, `<id>.part`
//!   while recording, `<id>.webm|.mp4` when finished).
//!
//! A recording's id (128 random bits) is the key to it, like an unlisted link: whoever has
//! it may play it back. With join tokens, starting one needs a token, and only its user may
//! add to it; the operator lists them all.

pub mod catalog;
pub mod webm;

use std::{
    collections::HashMap,
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
};

use axum::{
    body::Bytes,
    extract::{ConnectInfo, DefaultBodyLimit, Path as UrlPath, Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::{get, post, put},
    Json, Router,
};
use serde::Deserialize;
use serde_json::json;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::{
    access::{self, Access},
    auth::{unix_now, AuthError},
};
use catalog::{Catalog, Chunk, Limits, Recording, RecordingError, State as RecState};

/// Where recordings live and how big they may get (`[recordings]`).
#[derive(Debug, Clone)]
pub struct RecordingsConfig {
    pub dir: PathBuf,
    pub limits: Limits,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("recordings directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// The recordings of this server.
pub struct Recordings {
    dir: PathBuf,
    catalog: Mutex<Catalog>,
    /// One writer at a time per recording (chunks of one upload may race on retries).
    writers: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    access: Arc<Access>,
}

impl Recordings {
    /// Opens (creating) the directory and reads back what is there. A recording cut off
    /// mid-chunk (the server stopped while writing) is trimmed to its last whole chunk.
    pub fn open(config: &RecordingsConfig, access: Arc<Access>) -> Result<Arc<Self>, StoreError> {
        let dir_error = |source| StoreError::Dir {
            dir: config.dir.clone(),
            source,
        };
        std::fs::create_dir_all(&config.dir).map_err(dir_error)?;
        let mut catalog = Catalog::new(config.limits);
        for entry in std::fs::read_dir(&config.dir).map_err(dir_error)? {
            let path = entry.map_err(dir_error)?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let record = std::fs::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Recording>(&bytes).ok());
            let Some(recording) = record.filter(|r| valid_id(&r.id)) else {
                tracing::warn!(path = %path.display(), "not a recording record; ignored");
                continue;
            };
            if recording.state == RecState::Recording {
                let part = config.dir.join(format!("{}.part", recording.id));
                if let Ok(file) = std::fs::OpenOptions::new().write(true).open(&part) {
                    let _ = file.set_len(recording.bytes);
                }
            }
            catalog.restore(recording);
        }
        Ok(Arc::new(Recordings {
            dir: config.dir.clone(),
            catalog: Mutex::new(catalog),
            writers: Mutex::new(HashMap::new()),
            access,
        }))
    }

    fn catalog(&self) -> MutexGuard<'_, Catalog> {
        self.catalog.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn writer(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut writers = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        writers.entry(id.to_owned()).or_default().clone()
    }

    fn path(&self, id: &str, extension: &str) -> PathBuf {
        self.dir.join(format!("{id}.{extension}"))
    }

    /// Writes the record beside the file, atomically.
    fn save(&self, recording: &Recording) -> std::io::Result<()> {
        let tmp = self.path(&recording.id, "json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(recording)?)?;
        std::fs::rename(tmp, self.path(&recording.id, "json"))
    }
}

/// The routes: `POST /api/recordings`, `GET /api/recordings` (operator),
/// `GET /api/recordings/{id}`, `PUT /api/recordings/{id}/chunks/{n}`,
/// `POST /api/recordings/{id}/finish`, `GET /api/recordings/{id}/file`.
pub fn routes(recordings: Arc<Recordings>) -> Router {
    let max_chunk = recordings.catalog().limits().max_chunk_bytes as usize;
    Router::new()
        .route("/api/recordings", post(create).get(list))
        .route("/api/recordings/{id}", get(status))
        .route(
            "/api/recordings/{id}/chunks/{seq}",
            // One byte over the limit, so that the catalog (not axum) says why.
            put(chunk).layer(DefaultBodyLimit::max(max_chunk + 1)),
        )
        .route("/api/recordings/{id}/finish", post(finish))
        .route("/api/recordings/{id}/file", get(file))
        .with_state(recordings)
}

/// A refusal as JSON: `{error: {code, message}}`.
fn refuse(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message.to_string() } })),
    )
        .into_response()
}

fn refusal(error: RecordingError) -> Response {
    let status = match &error {
        RecordingError::Unknown => StatusCode::NOT_FOUND,
        RecordingError::NotYours => StatusCode::FORBIDDEN,
        RecordingError::Finished | RecordingError::OutOfOrder { .. } => StatusCode::CONFLICT,
        RecordingError::ChunkTooLarge { .. } | RecordingError::RecordingTooLarge { .. } => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        RecordingError::QuotaExceeded { .. } | RecordingError::TooManyOpen { .. } => {
            StatusCode::INSUFFICIENT_STORAGE
        }
        RecordingError::BadType(_) | RecordingError::EmptyChunk | RecordingError::Empty => {
            StatusCode::BAD_REQUEST
        }
    };
    let mut response = refuse(status, error.code(), &error);
    if let RecordingError::OutOfOrder { next, .. } = error {
        // Where to resume, machine-readable.
        response = (
            status,
            Json(json!({ "error": { "code": error.code(), "message": error.to_string(), "next": next } })),
        )
            .into_response();
    }
    response
}

fn storage_failed(error: std::io::Error) -> Response {
    tracing::error!(%error, "recordings: cannot write");
    refuse(
        StatusCode::INSUFFICIENT_STORAGE,
        "storage_failed",
        "the server cannot store recordings right now",
    )
}

/// 32 lowercase hex digits.
fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn new_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random number generator is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Who is asking: with join tokens, their user (an error when the token is missing or bad);
/// without, their address. `strict` is whether the owner must match.
struct Caller {
    owner: String,
    strict: bool,
    claims: Option<crate::auth::Claims>,
}

fn caller(
    access: &Access,
    peer: SocketAddr,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Caller, AuthError> {
    let token = access::request_token(uri, headers);
    match access.authenticate(token.as_deref()) {
        Ok(Some(claims)) => Ok(Caller {
            owner: format!("user:{}", claims.sub),
            strict: true,
            claims: Some(claims),
        }),
        Ok(None) => Ok(Caller {
            owner: format!("address:{}", access::client_ip(peer.ip(), headers)),
            strict: false,
            claims: None,
        }),
        Err(error) => Err(error),
    }
}

impl Caller {
    fn owner_check(&self) -> Option<&str> {
        self.strict.then_some(self.owner.as_str())
    }
}

#[derive(Deserialize)]
struct CreateRequest {
    /// The MediaRecorder's `mimeType`.
    mime: String,
    room: Option<String>,
}

async fn create(
    State(recordings): State<Arc<Recordings>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    Json(request): Json<CreateRequest>,
) -> Response {
    let caller = match caller(&recordings.access, peer, &uri, &headers) {
        Ok(caller) => caller,
        Err(error) => return refuse(StatusCode::UNAUTHORIZED, error.code(), &error),
    };
    let room = match request.room {
        Some(room) if crate::signaling::command::RoomName::parse(&json!(room)).is_err() => {
            return refuse(StatusCode::BAD_REQUEST, "bad_room", "not a room name")
        }
        room => room,
    };
    if let (Some(claims), Some(room)) = (&caller.claims, &room) {
        if !claims.allows_room(room) {
            return refuse(
                StatusCode::FORBIDDEN,
                "room_not_allowed",
                "your token is for another room",
            );
        }
    }
    let recording = {
        let mut catalog = recordings.catalog();
        match catalog.create(new_id(), &caller.owner, room, &request.mime, unix_now()) {
            Ok(recording) => recording.clone(),
            Err(error) => return refusal(error),
        }
    };
    if let Err(error) = recordings.save(&recording) {
        return storage_failed(error);
    }
    tracing::info!(id = %recording.id, owner = %recording.owner, mime = %recording.mime, "recording started");
    (StatusCode::CREATED, Json(public(&recording))).into_response()
}

/// What anyone with the id sees (not the owner).
fn public(r: &Recording) -> serde_json::Value {
    json!({
        "id": r.id,
        "room": r.room,
        "mime": r.mime,
        "state": r.state,
        "next": r.next,
        "bytes": r.bytes,
        "created": r.created,
        "finished": r.finished,
        "duration_ms": r.duration_ms,
        "file": (r.state == RecState::Finished).then(|| format!("/api/recordings/{}/file", r.id)),
    })
}

async fn list(State(recordings): State<Arc<Recordings>>, headers: HeaderMap) -> Response {
    if let Err(refusal) =
        access::operator_allowed(&headers, recordings.access.config.operator_token.as_deref())
    {
        return refusal.into_response();
    }
    let catalog = recordings.catalog();
    let mut all: Vec<&Recording> = catalog.all().collect();
    all.sort_by_key(|r| std::cmp::Reverse(r.created));
    Json(json!({ "recordings": all })).into_response()
}

async fn status(
    State(recordings): State<Arc<Recordings>>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    match recordings.catalog().get(&id) {
        Some(recording) => Json(public(recording)).into_response(),
        None => refusal(RecordingError::Unknown),
    }
}

async fn chunk(
    State(recordings): State<Arc<Recordings>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    UrlPath((id, seq)): UrlPath<(String, u32)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = match caller(&recordings.access, peer, &uri, &headers) {
        Ok(caller) => caller,
        Err(error) => return refuse(StatusCode::UNAUTHORIZED, error.code(), &error),
    };
    let len = body.len() as u64;
    let check = |recordings: &Recordings| {
        recordings
            .catalog()
            .check_chunk(&id, caller.owner_check(), seq, len)
    };
    if let Err(error) = check(&recordings) {
        return refusal(error);
    }
    let writer = recordings.writer(&id);
    let _writing = writer.lock().await;
    // Again under the writer's lock: a retry of the same chunk may have been first.
    match check(&recordings) {
        Err(error) => return refusal(error),
        Ok(Chunk::AlreadyStored) => {}
        Ok(Chunk::Append) => {
            let (path, before) = {
                let catalog = recordings.catalog();
                let bytes = catalog.get(&id).map_or(0, |r| r.bytes);
                (recordings.path(&id, "part"), bytes)
            };
            let written = tokio::task::spawn_blocking(move || append(&path, before, &body)).await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return storage_failed(error),
                Err(_) => return storage_failed(std::io::Error::other("writer task failed")),
            }
            let recording = recordings.catalog().appended(&id, seq, len).cloned();
            if let Some(recording) = recording {
                if let Err(error) = recordings.save(&recording) {
                    return storage_failed(error);
                }
            }
        }
    }
    let next = recordings.catalog().get(&id).map_or(0, |r| r.next);
    Json(json!({ "next": next })).into_response()
}

/// Appends a chunk durably at `offset` (the stored length): a failed or partial write is
/// cut off again, so the file always ends at a chunk boundary.
fn append(path: &Path, offset: u64, data: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    file.set_len(offset)?;
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(offset))?;
    let result = file.write_all(data).and_then(|()| file.sync_data());
    if result.is_err() {
        let _ = file.set_len(offset);
    }
    result
}

async fn finish(
    State(recordings): State<Arc<Recordings>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    UrlPath(id): UrlPath<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let caller = match caller(&recordings.access, peer, &uri, &headers) {
        Ok(caller) => caller,
        Err(error) => return refuse(StatusCode::UNAUTHORIZED, error.code(), &error),
    };
    let writer = recordings.writer(&id);
    let _writing = writer.lock().await;
    let verdict = recordings
        .catalog()
        .check_finish(&id, caller.owner_check())
        .map(|r| r.cloned());
    let recording = match verdict {
        Ok(Some(recording)) => recording,
        // Finished already (a retry): answer as the first time.
        Ok(None) => return status(State(recordings.clone()), UrlPath(id)).await,
        Err(error) => return refusal(error),
    };
    let part = recordings.path(&id, "part");
    let done = recordings.path(&id, recording.extension());
    let webm = recording.extension() == "webm";
    let finished = tokio::task::spawn_blocking(move || -> std::io::Result<Option<u64>> {
        if !webm {
            std::fs::rename(&part, &done)?;
            return Ok(None);
        }
        let bytes = std::fs::read(&part)?;
        match webm::make_seekable(&bytes) {
            Ok(seekable) => {
                let tmp = done.with_extension("webm.tmp");
                std::fs::write(&tmp, &seekable.bytes)?;
                std::fs::File::open(&tmp)?.sync_data()?;
                std::fs::rename(&tmp, &done)?;
                std::fs::remove_file(&part)?;
                Ok(Some(seekable.duration_ms))
            }
            Err(error) => {
                // Keep the file as recorded: it plays, only without seeking.
                tracing::warn!(%error, "recording: not made seekable");
                std::fs::rename(&part, &done)?;
                Ok(None)
            }
        }
    })
    .await;
    let duration_ms = match finished {
        Ok(Ok(duration)) => duration,
        Ok(Err(error)) => return storage_failed(error),
        Err(_) => return storage_failed(std::io::Error::other("finishing task failed")),
    };
    let recording = recordings
        .catalog()
        .finished(&id, unix_now(), duration_ms)
        .cloned();
    let Some(recording) = recording else {
        return refusal(RecordingError::Unknown);
    };
    if let Err(error) = recordings.save(&recording) {
        return storage_failed(error);
    }
    tracing::info!(id = %recording.id, bytes = recording.bytes, duration_ms = ?recording.duration_ms, "recording finished");
    Json(public(&recording)).into_response()
}

async fn file(
    State(recordings): State<Arc<Recordings>>,
    UrlPath(id): UrlPath<String>,
    request: Request,
) -> Response {
    let (path, mime) = {
        let catalog = recordings.catalog();
        match catalog.get(&id) {
            Some(r) if r.state == RecState::Finished => {
                (recordings.path(&id, r.extension()), r.mime.clone())
            }
            Some(_) => {
                return refuse(
                    StatusCode::CONFLICT,
                    "not_finished",
                    "the recording is not finished",
                )
            }
            None => return refusal(RecordingError::Unknown),
        }
    };
    // ServeFile answers Range requests (seeking in the player).
    let content_type = mime
        .split(';')
        .next()
        .unwrap_or("application/octet-stream")
        .to_owned();
    let mut response = match ServeFile::new(path).oneshot(request).await {
        Ok(response) => response.into_response(),
        Err(never) => match never {},
    };
    if let Ok(value) = HeaderValue::from_str(&content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}
