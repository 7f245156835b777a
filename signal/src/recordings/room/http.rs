//! Room recordings over HTTP, for the operator: `GET /api/room-recordings` (an operator path:
//! the access guard checks the token) lists the sessions
//! (their manifests, newest first) with a signed link per file; `GET
//! /api/room-recordings/{room}/{session}/{file}?expires=…&sig=…` plays one (Range requests for
//! seeking). A `<video>` element cannot send the operator token, so the list hands out links
//! signed with a key of this process (HMAC-SHA256), valid for `LINK_LIFETIME`.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use axum::{
    extract::{rejection::QueryRejection, Path as UrlPath, Query, Request, State},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use ring::hmac;
use serde::Deserialize;
use serde_json::{json, Value};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::manifest::safe_component;
use crate::{access, auth::unix_now};

/// How long a listed file's link plays.
const LINK_LIFETIME: Duration = Duration::from_secs(3600);
/// Sessions listed at most (newest first).
const MAX_SESSIONS: usize = 200;
/// A manifest larger than this is not read (ours are a few KiB).
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

pub struct RoomFiles {
    /// `<recordings dir>/rooms`.
    dir: PathBuf,
    key: hmac::Key,
}

impl RoomFiles {
    pub fn new(recordings_dir: &Path) -> Arc<Self> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).expect("the OS random number generator is available");
        Arc::new(RoomFiles {
            dir: recordings_dir.join("rooms"),
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
        })
    }
}

pub fn routes(files: Arc<RoomFiles>) -> Router {
    Router::new()
        .route("/api/room-recordings", get(list))
        .route("/api/room-recordings/{room}/{session}/{file}", get(file))
        .with_state(files)
}

/// What a link names, `room/session/file`, and until when (Unix s) it plays.
fn signature(key: &hmac::Key, path: &str, expires: u64) -> String {
    let tag = hmac::sign(key, format!("{path}\n{expires}").as_bytes());
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn signature_valid(key: &hmac::Key, path: &str, expires: u64, sig: &str, now: u64) -> bool {
    expires >= now
        && access::constant_time_eq(signature(key, path, expires).as_bytes(), sig.as_bytes())
}

/// A session directory's name: `20261128T093000Z-<6 hex>` (manifest.rs `session_id`).
fn valid_session(name: &str) -> bool {
    name.len() == 23
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'T' | b'Z' | b'-' | b'a'..=b'f'))
}

/// A recording's file name as the recorder writes it: a safe stem and `.webm` or `.mp4`.
fn valid_file(name: &str) -> bool {
    let Some((stem, extension)) = name.rsplit_once('.') else {
        return false;
    };
    matches!(extension, "webm" | "mp4") && !stem.is_empty() && safe_component(stem) == stem
}

/// A room's directory name: what `safe_component` makes of a room name.
fn valid_room(name: &str) -> bool {
    !name.is_empty() && safe_component(name) == name
}

/// The sessions under `dir` (`<room>/<session>/manifest.json`), newest first, at most `max`:
/// each manifest as written, every file with its size on disk and a link (from `link`).
fn list_sessions(dir: &Path, max: usize, link: impl Fn(&str) -> String) -> Vec<Value> {
    let mut found: Vec<(String, String)> = Vec::new();
    for room in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let room_name = room.file_name().to_string_lossy().into_owned();
        if !valid_room(&room_name) {
            continue;
        }
        for session in std::fs::read_dir(room.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let session_name = session.file_name().to_string_lossy().into_owned();
            if valid_session(&session_name) {
                found.push((room_name.clone(), session_name));
            }
        }
    }
    // Session names start with their UTC start time.
    found.sort_by(|a, b| b.1.cmp(&a.1));
    found
        .into_iter()
        .take(max)
        .filter_map(|(room, session)| {
            let path = dir.join(&room).join(&session);
            let manifest = path.join("manifest.json");
            if std::fs::metadata(&manifest).ok()?.len() > MAX_MANIFEST_BYTES {
                return None;
            }
            let mut entry: Value = serde_json::from_slice(&std::fs::read(manifest).ok()?).ok()?;
            entry["dir"] = json!(format!("{room}/{session}"));
            for file in entry["files"].as_array_mut().into_iter().flatten() {
                let Some(name) = file["file"].as_str().filter(|n| valid_file(n)) else {
                    continue;
                };
                let name = name.to_owned();
                file["bytes"] = json!(std::fs::metadata(path.join(&name)).ok().map(|m| m.len()));
                file["url"] = json!(link(&format!("{room}/{session}/{name}")));
            }
            Some(entry)
        })
        .collect()
}

async fn list(State(files): State<Arc<RoomFiles>>) -> Response {
    let expires = unix_now() + LINK_LIFETIME.as_secs();
    let listing = files.clone();
    let sessions = tokio::task::spawn_blocking(move || {
        list_sessions(&listing.dir, MAX_SESSIONS, |path| {
            let sig = signature(&listing.key, path, expires);
            format!("/api/room-recordings/{path}?expires={expires}&sig={sig}")
        })
    })
    .await
    .unwrap_or_default();
    Json(json!({ "sessions": sessions })).into_response()
}

#[derive(Deserialize)]
struct Link {
    expires: u64,
    sig: String,
}

async fn file(
    State(files): State<Arc<RoomFiles>>,
    UrlPath((room, session, name)): UrlPath<(String, String, String)>,
    link: Result<Query<Link>, QueryRejection>,
    request: Request,
) -> Response {
    if !(valid_room(&room) && valid_session(&session) && valid_file(&name)) {
        return refuse(StatusCode::NOT_FOUND, "unknown", "no such recording");
    }
    let path = format!("{room}/{session}/{name}");
    let Ok(Query(link)) = link else {
        return refuse(
            StatusCode::FORBIDDEN,
            "link_needed",
            "open the link the operator's list gives",
        );
    };
    if !signature_valid(&files.key, &path, link.expires, &link.sig, unix_now()) {
        return refuse(
            StatusCode::FORBIDDEN,
            "link_invalid",
            "the link is wrong or has expired: list the recordings again",
        );
    }
    let content_type = if name.ends_with(".mp4") {
        "video/mp4"
    } else {
        "video/webm"
    };
    let mut response = match ServeFile::new(files.dir.join(&path)).oneshot(request).await {
        Ok(response) => response.into_response(),
        Err(never) => match never {},
    };
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The link is the secret: it goes into no cache and no Referer.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    response
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, b"test key")
    }

    #[test]
    fn links_play_until_they_expire_and_only_for_their_file() {
        let key = key();
        let path = "room/20261128T093000Z-0a1b2c/Ann-p1.webm";
        let sig = signature(&key, path, 1000);
        assert!(signature_valid(&key, path, 1000, &sig, 999));
        assert!(signature_valid(&key, path, 1000, &sig, 1000));
        assert!(!signature_valid(&key, path, 1000, &sig, 1001), "expired");
        assert!(
            !signature_valid(&key, path, 2000, &sig, 999),
            "expiry moved"
        );
        assert!(!signature_valid(
            &key,
            "room/20261128T093000Z-0a1b2c/Bob-p2.webm",
            1000,
            &sig,
            999
        ));
        assert!(!signature_valid(
            &hmac::Key::new(hmac::HMAC_SHA256, b"other"),
            path,
            1000,
            &sig,
            999
        ));
        assert!(!signature_valid(&key, path, 1000, "", 999));
    }

    #[test]
    fn only_names_the_recorder_writes_are_served() {
        assert!(valid_room("room-1_a"));
        for bad in ["", "..", "a b", "a/b", "%2e%2e"] {
            assert!(!valid_room(bad), "{bad}");
        }
        assert!(valid_session("20261128T093000Z-0a1b2c"));
        for bad in [
            "20261128T093000Z-0a1b2",
            "../../etc/passwd",
            "20261128T093000Z-0A1B2C",
        ] {
            assert!(!valid_session(bad), "{bad}");
        }
        assert!(valid_file("Ann-p1.webm") && valid_file("Bob-p2-3.mp4"));
        for bad in [
            "manifest.json",
            ".webm",
            "a.b.webm",
            "../x.webm",
            "x.webm.tmp",
            "x",
        ] {
            assert!(!valid_file(bad), "{bad}");
        }
    }

    #[test]
    fn sessions_are_listed_newest_first_with_links_and_sizes() {
        let dir = std::env::temp_dir().join(format!("room-files-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (room, session, file) in [
            ("a", "20261128T093000Z-000001", "Ann-p1.webm"),
            ("b", "20261128T103000Z-000002", "Bob-p2.mp4"),
            ("a", "20261127T093000Z-000003", "Cy-p3.webm"),
        ] {
            let path = dir.join(room).join(session);
            std::fs::create_dir_all(&path).unwrap();
            std::fs::write(path.join(file), b"12345").unwrap();
            let manifest =
                json!({ "room": room, "files": [{ "file": file }, { "file": "../../x.webm" }] });
            std::fs::write(path.join("manifest.json"), manifest.to_string()).unwrap();
        }
        // Not a session: ignored.
        std::fs::create_dir_all(dir.join("a").join("notes")).unwrap();
        let listed = list_sessions(&dir, 2, |path| format!("link:{path}"));
        let dirs: Vec<&str> = listed.iter().map(|s| s["dir"].as_str().unwrap()).collect();
        assert_eq!(
            dirs,
            ["b/20261128T103000Z-000002", "a/20261128T093000Z-000001"]
        );
        assert_eq!(
            listed[0]["files"][0]["url"],
            "link:b/20261128T103000Z-000002/Bob-p2.mp4"
        );
        assert_eq!(listed[0]["files"][0]["bytes"], 5);
        assert!(
            listed[0]["files"][1].get("url").is_none(),
            "a name the recorder never writes"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
