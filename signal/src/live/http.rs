//! The live streams over HTTP, made for a CDN in front (docs/live.md, "Behind a CDN"):
//!
//! - `GET /live/<key>/streams.json`: who is streamed (the viewer page polls it);
//! - `GET /live/<key>/<participant>/main.m3u8`: the multivariant playlist (one variant:
//!   codecs and bit rate), naming `index.m3u8` beside it: the media playlist, with blocking
//!   reloads (`_HLS_msn`, `_HLS_part`) and delta updates (`_HLS_skip`);
//! - `init.mp4`, `p<msn>.<part>.m4s`, `s<msn>.m4s` beside it: the init segment, parts and
//!   segments, immutable (names are never reused within a session, whose key is new).
//!
//! Playlists are cacheable for a second, with the query in the cache key: behind a caching
//! proxy that collapses requests, the server sees about one request per part and stream
//! however many viewers watch. The key is the only access check: anyone given the viewer
//! page's address may watch, as anyone given a conference's stream link may.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::{ConnectInfo, Path, RawQuery, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use media_out::hls::{
    packager::PackagerConfig,
    playlist::{parse_uri, part_uri, segment_uri, Resource},
};
use serde_json::json;

use crate::{access::client_ip, keys::is_key};

use super::{
    stream::{
        wait_change, LiveStream, Lookup, PlaylistAnswer, INIT, MEDIA_PLAYLIST,
        MULTIVARIANT_PLAYLIST,
    },
    LiveRooms,
};

/// Requests one client address may have waiting at once (blocking reloads and hinted
/// parts). A player holds two or three per stream; a CDN collapses its viewers' requests
/// into about one per stream.
const MAX_WAITING_PER_ADDRESS: usize = 64;
/// ... and all clients together: each waiting request holds a task and a watcher.
const MAX_WAITING: usize = 8192;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// A playlist answer is good for a second: a viewer that gets it from a cache is at most
/// that far from the live edge and catches up with its next blocking request.
const PLAYLIST_CACHE: &str = "public, max-age=1";
/// A part that will never exist (a preload hint the stream did not follow: every viewer asks
/// for one per segment): a cache answers the others, instead of each asking the origin.
const NEVER_CACHE: &str = "public, max-age=60";

#[derive(Clone)]
struct LiveHttp {
    rooms: Arc<LiveRooms>,
    waiting: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

pub fn routes(rooms: Arc<LiveRooms>) -> Router {
    Router::new()
        .route("/live/{key}/streams.json", get(streams))
        .route("/live/{key}/{participant}/{file}", get(file))
        .with_state(LiveHttp {
            rooms,
            waiting: Arc::default(),
        })
}

/// A request waiting for the stream, counted against its address while it waits.
struct Waiting {
    waiting: Arc<Mutex<HashMap<IpAddr, usize>>>,
    address: IpAddr,
}

impl Waiting {
    fn start(http: &LiveHttp, address: IpAddr) -> Option<Waiting> {
        let mut waiting = http.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if waiting.values().sum::<usize>() >= MAX_WAITING {
            return None;
        }
        let count = waiting.entry(address).or_default();
        if *count >= MAX_WAITING_PER_ADDRESS {
            return None;
        }
        *count += 1;
        Some(Waiting {
            waiting: http.waiting.clone(),
            address,
        })
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = waiting.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                waiting.remove(&self.address);
            }
        }
    }
}

/// How long a request may wait for the stream (RFC 8216bis 6.2.5.2: three target
/// durations), then 503.
fn hold_limit() -> Duration {
    PackagerConfig::default().playlist.hold_limit()
}

fn with_headers(
    body: impl IntoResponse,
    content_type: &'static str,
    cache: &'static str,
) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    // Viewers' pages may live on another site (an embed): the key is the access check.
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

fn error(status: StatusCode, message: &'static str) -> Response {
    let mut response = (status, message).into_response();
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

async fn streams(State(http): State<LiveHttp>, Path(key): Path<String>) -> Response {
    let Some(session) = is_key(&key).then(|| http.rooms.session(&key)).flatten() else {
        return error(
            StatusCode::NOT_FOUND,
            "no such live stream (it may have ended)",
        );
    };
    let streams: Vec<_> = session
        .streams()
        .into_iter()
        .filter(|s| s.stream.ready())
        .map(|s| {
            json!({
                "participant": s.participant,
                "name": s.name,
                "playlist": format!("{}/{MULTIVARIANT_PLAYLIST}", s.participant),
                "codecs": s.stream.codecs(),
                "ended": s.stream.ended(),
            })
        })
        .collect();
    let body = Json(json!({
        "room": session.room,
        "on": session.on_air(),
        "since": session.since(),
        "streams": streams,
    }));
    with_headers(body, "application/json", PLAYLIST_CACHE)
}

/// `_HLS_msn`, `_HLS_part`, `_HLS_skip` from a playlist request's query.
#[derive(Debug, Default, PartialEq, Eq)]
struct PlaylistQuery {
    block: Option<(u64, Option<u32>)>,
    skip: bool,
}

/// A number written as we write it (no sign, no leading zero): one URL per answer, so
/// nobody can walk around a cache with `_HLS_msn=007`.
fn canonical<T: std::str::FromStr + ToString>(value: &str) -> Option<T> {
    value.parse::<T>().ok().filter(|n| n.to_string() == value)
}

/// Only what LL-HLS players send: any other parameter would give the same answer under
/// another cache key, a way to make a CDN pass every request to the origin.
fn parse_query(query: Option<&str>) -> Result<PlaylistQuery, &'static str> {
    let mut msn = None;
    let mut part = None;
    let mut skip = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "_HLS_msn" => msn = Some(canonical(value).ok_or("_HLS_msn must be a number")?),
            "_HLS_part" => part = Some(canonical(value).ok_or("_HLS_part must be a number")?),
            "_HLS_skip" if matches!(value, "YES" | "v2") => skip = true,
            "_HLS_skip" => return Err("_HLS_skip must be YES or v2"),
            _ => return Err("only _HLS_msn, _HLS_part and _HLS_skip are taken"),
        }
    }
    match (msn, part) {
        (None, Some(_)) => Err("_HLS_part needs _HLS_msn"),
        (msn, part) => Ok(PlaylistQuery {
            block: msn.map(|msn| (msn, part)),
            skip,
        }),
    }
}

async fn file(
    State(http): State<LiveHttp>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((key, participant, file)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    // Behind a proxy on this machine (docs/deploy.md), the viewer it forwards for.
    let address = client_ip(peer.ip(), &headers);
    let stream = is_key(&key)
        .then(|| http.rooms.session(&key))
        .flatten()
        .and_then(|session| session.stream(&participant));
    let Some(stream) = stream else {
        return error(
            StatusCode::NOT_FOUND,
            "no such live stream (it may have ended)",
        );
    };
    match file.as_str() {
        MULTIVARIANT_PLAYLIST => match stream.multivariant() {
            Some(text) => with_headers(text, "application/vnd.apple.mpegurl", PLAYLIST_CACHE),
            None => error(StatusCode::NOT_FOUND, "the stream has not started"),
        },
        MEDIA_PLAYLIST => match parse_query(query.as_deref()) {
            Ok(query) => playlist(&http, address, &stream, query).await,
            Err(message) => error(StatusCode::BAD_REQUEST, message),
        },
        INIT => match stream.init() {
            Some(init) => with_headers(init, "video/mp4", IMMUTABLE),
            None => error(StatusCode::NOT_FOUND, "the stream has not started"),
        },
        name => match parse_uri(name) {
            // One name per part and segment, as we write them (no `p007.1.m4s`).
            Some(Resource::Part(msn, part)) if part_uri(msn, part) == name => {
                part_answer(&http, address, &stream, (msn, part)).await
            }
            Some(Resource::Segment(msn)) if segment_uri(msn) == name => match stream.segment(msn) {
                Some(bytes) => with_headers(bytes, "video/mp4", IMMUTABLE),
                None => error(
                    StatusCode::NOT_FOUND,
                    "no such segment (not complete, or gone)",
                ),
            },
            _ => error(StatusCode::NOT_FOUND, "no such file"),
        },
    }
}

async fn playlist(
    http: &LiveHttp,
    address: IpAddr,
    stream: &LiveStream,
    query: PlaylistQuery,
) -> Response {
    hold(
        http,
        address,
        stream,
        "the stream did not move on",
        || match stream.playlist(query.block, query.skip) {
            PlaylistAnswer::Ready(text) => Some(with_headers(
                text,
                "application/vnd.apple.mpegurl",
                PLAYLIST_CACHE,
            )),
            PlaylistAnswer::TooFar => Some(error(
                StatusCode::BAD_REQUEST,
                "_HLS_msn/_HLS_part is further ahead than the stream",
            )),
            PlaylistAnswer::NotStarted if query.block.is_none() => {
                Some(error(StatusCode::NOT_FOUND, "the stream has not started"))
            }
            PlaylistAnswer::Wait | PlaylistAnswer::NotStarted => None,
        },
    )
    .await
}

/// A part; the one the playlist hints at is waited for (RFC 8216bis 6.2.6).
async fn part_answer(
    http: &LiveHttp,
    address: IpAddr,
    stream: &LiveStream,
    position: (u64, u32),
) -> Response {
    hold(
        http,
        address,
        stream,
        "the part did not come",
        || match stream.part(position) {
            Lookup::Found(bytes) => Some(with_headers(bytes, "video/mp4", IMMUTABLE)),
            Lookup::Never => {
                let mut response = error(
                    StatusCode::NOT_FOUND,
                    "no such part, and there never will be",
                );
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static(NEVER_CACHE));
                Some(response)
            }
            Lookup::Missing => Some(error(StatusCode::NOT_FOUND, "no such part")),
            Lookup::Coming => None,
        },
    )
    .await
}

/// The answer `look` gives, waiting for the stream to change while it gives none: at most
/// the hold limit (then `503 timeout`), and as one of the address's waiting requests.
async fn hold(
    http: &LiveHttp,
    address: IpAddr,
    stream: &LiveStream,
    timeout: &'static str,
    mut look: impl FnMut() -> Option<Response>,
) -> Response {
    let mut waiting = None;
    let deadline = tokio::time::Instant::now() + hold_limit();
    loop {
        // Watched before looking: a change in between wakes the wait at once.
        let watcher = stream.watch();
        if let Some(answer) = look() {
            return answer;
        }
        if waiting.is_none() {
            waiting = Waiting::start(http, address);
            if waiting.is_none() {
                return error(StatusCode::TOO_MANY_REQUESTS, "too many requests waiting");
            }
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if !wait_change(watcher, left).await {
            return error(StatusCode::SERVICE_UNAVAILABLE, timeout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playlist_queries() {
        assert_eq!(parse_query(None), Ok(PlaylistQuery::default()));
        assert_eq!(
            parse_query(Some("_HLS_msn=12&_HLS_part=3&_HLS_skip=YES")),
            Ok(PlaylistQuery {
                block: Some((12, Some(3))),
                skip: true
            })
        );
        assert_eq!(
            parse_query(Some("_HLS_msn=0&_HLS_skip=v2")),
            Ok(PlaylistQuery {
                block: Some((0, None)),
                skip: true
            })
        );
        for bad in [
            "_HLS_part=1",
            "_HLS_msn=-1",
            "_HLS_msn=1&_HLS_part=x",
            "_HLS_msn=99999999999999999999999",
            "_HLS_msn=007",
            "_HLS_msn=+7",
            "_HLS_msn=4&x=1",
            "_HLS_skip=NO",
        ] {
            assert!(parse_query(Some(bad)).is_err(), "{bad}");
        }
    }
}
