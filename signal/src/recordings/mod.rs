//! Recordings made in the browser (the course's way, seed 004): the page records the call
//! with MediaRecorder and uploads it a chunk a second while recording; the server appends
//! the chunks in order, makes a WebM seekable when the page finishes, and serves the file
//! with HTTP Range requests (docs/recording.md).
//!
//! - [`catalog`]: the upload rules, sizes, quotas and idle expiry, without I/O;
//! - `media_out::webm::make_seekable`: Duration, Cues and known sizes for a live WebM;
//! - this file: the HTTP API and the files (`<dir>/<id>.json` for the record, `<id>.part`
//!   while recording, `<id>.webm|.mp4` when finished), and the sweeper that finishes
//!   recordings their page abandoned.
//!
//! A recording's id (128 random bits) is the key to playing it back, like an unlisted link.
//! Adding to it, finishing or deleting it takes its upload key (another 128 bits, given only
//! to its creator in the `X-Upload-Key` header's value), so that a shared link gives nothing
//! more, and an upload outlives the join token that started it. With join tokens, starting
//! a recording needs one, for the room it names.

pub mod catalog;
pub mod room;

use std::{
    collections::HashMap,
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use axum::{
    extract::{ConnectInfo, Path as UrlPath, Request, State},
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
    auth::unix_now,
    keys::{is_key, random_key},
};
use catalog::{Catalog, Chunk, Limits, Recording, RecordingError, State as RecState};

/// The header that carries a recording's upload key.
pub const UPLOAD_KEY: &str = "x-upload-key";
/// WebM rewrites at once (each holds its file in memory twice).
const CONCURRENT_FINISHES: usize = 2;

/// Where recordings live and how big they may get (`[recordings]`).
#[derive(Debug, Clone)]
pub struct RecordingsConfig {
    pub dir: PathBuf,
    /// SFU rooms recorded by the server.
    pub room: room::RoomRecordingConfig,
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
    finishing: tokio::sync::Semaphore,
    access: Arc<Access>,
}

/// Why a request failed: a rule of the catalog, a bad token, or the disk.
enum Failure {
    Rule(RecordingError),
    Token(crate::auth::AuthError),
    Storage(std::io::Error),
}

impl From<RecordingError> for Failure {
    fn from(error: RecordingError) -> Self {
        Failure::Rule(error)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::Rule(error) => {
                let status = match &error {
                    RecordingError::Unknown => StatusCode::NOT_FOUND,
                    RecordingError::NotYours => StatusCode::FORBIDDEN,
                    RecordingError::Finished | RecordingError::OutOfOrder { .. } => {
                        StatusCode::CONFLICT
                    }
                    RecordingError::ChunkTooLarge { .. }
                    | RecordingError::RecordingTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                    RecordingError::QuotaExceeded { .. }
                    | RecordingError::TooManyOpen { .. }
                    | RecordingError::ServerFull => StatusCode::INSUFFICIENT_STORAGE,
                    RecordingError::BadType(_)
                    | RecordingError::EmptyChunk
                    | RecordingError::Empty => StatusCode::BAD_REQUEST,
                };
                // `next`: where to resume, machine-readable.
                let next = match error {
                    RecordingError::OutOfOrder { next, .. } => Some(next),
                    _ => None,
                };
                error_json(status, error.code(), &error, next)
            }
            Failure::Token(error) => {
                error_json(StatusCode::UNAUTHORIZED, error.code(), &error, None)
            }
            Failure::Storage(error) => {
                tracing::error!(%error, "recordings: cannot write");
                // Likely to pass (a full disk being cleaned, a restart): the page retries.
                let mut response = error_json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_failed",
                    "the server cannot store recordings right now",
                    None,
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                response
            }
        }
    }
}

/// `{error: {code, message[, next]}}`.
fn error_json(
    status: StatusCode,
    code: &str,
    message: impl std::fmt::Display,
    next: Option<u32>,
) -> Response {
    let mut error = json!({ "code": code, "message": message.to_string() });
    if let Some(next) = next {
        error["next"] = json!(next);
    }
    (status, Json(json!({ "error": error }))).into_response()
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
            let Some(recording) = record.filter(|r| is_key(&r.id)) else {
                tracing::warn!(path = %path.display(), "not a recording record; ignored");
                continue;
            };
            if recording.state == RecState::Recording {
                // A chunk is on disk before its record says so: only a tail can be extra.
                let part = config.dir.join(format!("{}.part", recording.id));
                if let Ok(file) = std::fs::OpenOptions::new().write(true).open(&part) {
                    if file.metadata().is_ok_and(|m| m.len() > recording.bytes) {
                        let _ = file.set_len(recording.bytes);
                    }
                }
            }
            catalog.restore(recording);
        }
        Ok(Arc::new(Recordings {
            dir: config.dir.clone(),
            catalog: Mutex::new(catalog),
            writers: Mutex::new(HashMap::new()),
            finishing: tokio::sync::Semaphore::new(CONCURRENT_FINISHES),
            access,
        }))
    }

    /// Finishes, every so often, the recordings whose page stopped sending (closed, crashed).
    pub fn spawn_sweeper(self: &Arc<Self>) {
        let idle = self.catalog().limits().idle_seconds;
        let every = Duration::from_secs((idle / 2).clamp(1, 60));
        let recordings = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(recordings) = recordings.upgrade() else {
                    return;
                };
                let abandoned = recordings.catalog().abandoned(unix_now());
                for id in abandoned {
                    match recordings.finish(&id, None).await {
                        Ok(r) => {
                            tracing::info!(%id, bytes = r.bytes, "abandoned recording finished")
                        }
                        Err(Failure::Rule(RecordingError::Empty)) => {
                            // Nothing was ever recorded: nothing to keep.
                            let _ = recordings.delete(&id, None).await;
                        }
                        Err(_) => tracing::warn!(%id, "abandoned recording could not be finished"),
                    }
                }
            }
        });
    }

    fn catalog(&self) -> MutexGuard<'_, Catalog> {
        self.catalog.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lock that orders writes to one recording; only for ids the catalog knows, so
    /// requests for made-up ids cannot grow the map.
    fn writer(&self, id: &str) -> Result<Arc<tokio::sync::Mutex<()>>, Failure> {
        if self.catalog().get(id).is_none() {
            return Err(RecordingError::Unknown.into());
        }
        let mut writers = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        Ok(writers.entry(id.to_owned()).or_default().clone())
    }

    fn forget_writer(&self, id: &str) {
        self.writers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    fn path(&self, id: &str, extension: &str) -> PathBuf {
        self.dir.join(format!("{id}.{extension}"))
    }

    /// Writes the record beside the file, atomically and durably: it is what a restart
    /// believes.
    fn save(&self, recording: &Recording) -> Result<(), Failure> {
        let write = || -> std::io::Result<()> {
            let tmp = self.path(&recording.id, "json.tmp");
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&serde_json::to_vec_pretty(recording)?)?;
            file.sync_all()?;
            std::fs::rename(tmp, self.path(&recording.id, "json"))?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(Failure::Storage)
    }

    /// Finishes a recording: with its upload key, or `None` for the server itself.
    async fn finish(&self, id: &str, key: Option<&str>) -> Result<Recording, Failure> {
        let writer = self.writer(id)?;
        let _writing = writer.lock().await;
        let verdict = self.catalog().check_finish(id, key).map(|r| r.cloned());
        let Some(recording) = verdict? else {
            // Finished already (a retry): the same answer as the first time.
            return self
                .catalog()
                .get(id)
                .cloned()
                .ok_or(RecordingError::Unknown.into());
        };
        let _permit = self.finishing.acquire().await;
        let part = self.path(id, "part");
        let done = self.path(id, recording.extension());
        let webm = recording.extension() == "webm";
        let finished = tokio::task::spawn_blocking(move || put_in_place(&part, &done, webm))
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("finishing task failed")))
            .map_err(Failure::Storage)?;
        let recording = self
            .catalog()
            .finished(id, unix_now(), finished)
            .cloned()
            .ok_or(RecordingError::Unknown)?;
        self.save(&recording)?;
        self.forget_writer(id);
        tracing::info!(%id, bytes = recording.bytes, duration_ms = ?recording.duration_ms, "recording finished");
        Ok(recording)
    }

    /// Deletes a recording and its files: with its upload key, or `None` for the operator.
    async fn delete(&self, id: &str, key: Option<&str>) -> Result<(), Failure> {
        let writer = self.writer(id)?;
        let _writing = writer.lock().await;
        let recording = self.catalog().remove(id, key)?;
        for extension in ["part", recording.extension(), "json"] {
            match std::fs::remove_file(self.path(id, extension)) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    tracing::warn!(%id, %error, "recording file not deleted");
                }
                _ => {}
            }
        }
        self.forget_writer(id);
        tracing::info!(%id, "recording deleted");
        Ok(())
    }
}

/// Moves the finished file in place; a WebM is made seekable on the way (`Some` duration).
fn put_in_place(part: &Path, done: &Path, webm: bool) -> std::io::Result<Option<u64>> {
    if !webm {
        std::fs::rename(part, done)?;
        return Ok(None);
    }
    let bytes = std::fs::read(part)?;
    match media_out::webm::make_seekable(&bytes) {
        Ok(seekable) => {
            let tmp = done.with_extension("webm.tmp");
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&seekable.bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, done)?;
            std::fs::remove_file(part)?;
            Ok(Some(seekable.duration_ms))
        }
        Err(error) => {
            // Keep the file as recorded: it plays, only without seeking.
            tracing::warn!(%error, "recording: not made seekable");
            std::fs::rename(part, done)?;
            Ok(None)
        }
    }
}

/// The routes: `POST /api/recordings`, `GET /api/recordings` (operator),
/// `GET|DELETE /api/recordings/{id}`, `PUT /api/recordings/{id}/chunks/{n}`,
/// `POST /api/recordings/{id}/finish`, `GET /api/recordings/{id}/file`.
pub fn routes(recordings: Arc<Recordings>) -> Router {
    Router::new()
        .route("/api/recordings", post(create).get(list))
        .route("/api/recordings/{id}", get(status).delete(delete))
        .route("/api/recordings/{id}/chunks/{seq}", put(chunk))
        .route("/api/recordings/{id}/finish", post(finish))
        .route("/api/recordings/{id}/file", get(file))
        .with_state(recordings)
}

fn upload_key(headers: &HeaderMap) -> &str {
    headers
        .get(UPLOAD_KEY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
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
    // Whose quota: the token's user, else the client's address.
    let token = access::request_token(&uri, &headers);
    let claims = match recordings.access.authenticate(token.as_deref()) {
        Ok(claims) => claims,
        Err(error) => return Failure::Token(error).into_response(),
    };
    if let Some(room) = &request.room {
        if crate::signaling::command::RoomName::parse(&json!(room)).is_err() {
            return error_json(StatusCode::BAD_REQUEST, "bad_room", "not a room name", None);
        }
    }
    let owner = match &claims {
        Some(claims) => {
            // A token is for a room: the recording names it.
            let allowed = request
                .room
                .as_deref()
                .is_some_and(|r| claims.allows_room(r));
            if !allowed {
                return error_json(
                    StatusCode::FORBIDDEN,
                    "room_not_allowed",
                    "name the room your token is for",
                    None,
                );
            }
            format!("user:{}", claims.sub)
        }
        None => format!("address:{}", access::client_ip(peer.ip(), &headers)),
    };
    let recording = {
        let mut catalog = recordings.catalog();
        let created = catalog.create(
            random_key(),
            random_key(),
            &owner,
            request.room,
            &request.mime,
            unix_now(),
        );
        match created {
            Ok(recording) => recording.clone(),
            Err(error) => return Failure::Rule(error).into_response(),
        }
    };
    if let Err(failure) = recordings.save(&recording) {
        return failure.into_response();
    }
    tracing::info!(id = %recording.id, %owner, mime = %recording.mime, "recording started");
    let mut body = public(&recording);
    body["upload_key"] = json!(recording.upload_key);
    (StatusCode::CREATED, Json(body)).into_response()
}

/// What anyone with the id sees (not the owner, not the upload key).
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

fn operator(recordings: &Recordings, headers: &HeaderMap) -> Result<(), access::Refusal> {
    access::operator_allowed(headers, recordings.access.config.operator_token.as_deref())
}

async fn list(State(recordings): State<Arc<Recordings>>, headers: HeaderMap) -> Response {
    if let Err(refused) = operator(&recordings, &headers) {
        return refused.into_response();
    }
    let catalog = recordings.catalog();
    let mut all: Vec<serde_json::Value> = catalog
        .all()
        .map(|r| {
            let mut entry = public(r);
            entry["owner"] = json!(r.owner);
            entry
        })
        .collect();
    all.sort_by_key(|r| std::cmp::Reverse(r["created"].as_u64()));
    Json(json!({ "recordings": all })).into_response()
}

async fn status(
    State(recordings): State<Arc<Recordings>>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    match recordings.catalog().get(&id) {
        Some(recording) => Json(public(recording)).into_response(),
        None => Failure::Rule(RecordingError::Unknown).into_response(),
    }
}

async fn chunk(
    State(recordings): State<Arc<Recordings>>,
    UrlPath((id, seq)): UrlPath<(String, u32)>,
    request: Request,
) -> Response {
    match store_chunk(&recordings, &id, seq, request).await {
        Ok(next) => Json(json!({ "next": next })).into_response(),
        Err(failure) => failure.into_response(),
    }
}

/// Checks a chunk against its declared length before reading it, reads at most the limit,
/// and appends it durably unless it is stored already; returns the next chunk wanted.
async fn store_chunk(
    recordings: &Recordings,
    id: &str,
    seq: u32,
    request: Request,
) -> Result<u32, Failure> {
    let (parts, body) = request.into_parts();
    let key = upload_key(&parts.headers).to_owned();
    let max = recordings.catalog().limits().max_chunk_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    // Refused before a byte of the body is read: wrong key, gap, size.
    recordings
        .catalog()
        .check_chunk(id, &key, seq, declared.unwrap_or(1).min(max + 1))?;
    let bytes = axum::body::to_bytes(body, max as usize + 1)
        .await
        .map_err(|_| RecordingError::ChunkTooLarge { max })?;
    let len = bytes.len() as u64;
    let writer = recordings.writer(id)?;
    let _writing = writer.lock().await;
    // Again under the writer's lock: a retry of the same chunk may have been first.
    if recordings.catalog().check_chunk(id, &key, seq, len)? == Chunk::Append {
        let offset = recordings.catalog().get(id).map_or(0, |r| r.bytes);
        let path = recordings.path(id, "part");
        tokio::task::spawn_blocking(move || append(&path, offset, &bytes))
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("writer task failed")))
            .map_err(Failure::Storage)?;
        let recording = recordings
            .catalog()
            .appended(id, seq, len, unix_now())
            .cloned();
        if let Some(recording) = recording {
            recordings.save(&recording)?;
        }
    }
    Ok(recordings.catalog().get(id).map_or(0, |r| r.next))
}

/// Appends a chunk durably at `offset` (the stored length): a failed or partial write is
/// cut off again, so the file always ends at a chunk boundary.
fn append(path: &Path, offset: u64, data: &[u8]) -> std::io::Result<()> {
    use std::io::Seek;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    file.set_len(offset)?;
    file.seek(std::io::SeekFrom::Start(offset))?;
    let result = file.write_all(data).and_then(|()| file.sync_data());
    if result.is_err() {
        let _ = file.set_len(offset);
    }
    result
}

async fn finish(
    State(recordings): State<Arc<Recordings>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    match recordings.finish(&id, Some(upload_key(&headers))).await {
        Ok(recording) => Json(public(&recording)).into_response(),
        Err(failure) => failure.into_response(),
    }
}

/// `DELETE /api/recordings/{id}`: its uploader (upload key) or the operator.
async fn delete(
    State(recordings): State<Arc<Recordings>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let key = if headers.contains_key(UPLOAD_KEY) {
        Some(upload_key(&headers))
    } else if let Err(refused) = operator(&recordings, &headers) {
        return refused.into_response();
    } else {
        None
    };
    match recordings.delete(&id, key).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(failure) => failure.into_response(),
    }
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
                return error_json(
                    StatusCode::CONFLICT,
                    "not_finished",
                    "the recording is not finished",
                    None,
                )
            }
            None => return Failure::Rule(RecordingError::Unknown).into_response(),
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
