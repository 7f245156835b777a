//! HTTP routes: the static web client, the socket.io client script, and a small JSON API.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode, Uri},
    middleware,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use socketioxide::layer::SocketIoLayer;
use tower_http::{
    services::{ServeDir, ServeFile},
    set_header::SetResponseHeaderLayer,
};

use crate::{ice::IceConfig, signaling::Hub};

/// Browser libraries that `npm ci --prefix public` installs, served at `/vendor/`: the URL
/// and the file inside `public_dir`. Nothing else of the npm tree is reachable.
pub const VENDOR_FILES: [(&str, &str); 4] = [
    (
        "/vendor/socket.io.min.js",
        "node_modules/socket.io-client/dist/socket.io.min.js",
    ),
    // The statistics panel's charts (public/lib/stats-panel.js).
    (
        "/vendor/uPlot.esm.js",
        "node_modules/uplot/dist/uPlot.esm.js",
    ),
    (
        "/vendor/uPlot.min.css",
        "node_modules/uplot/dist/uPlot.min.css",
    ),
    // The live viewer page's player (public/live.js), an ES module.
    ("/vendor/hls.mjs", "node_modules/hls.js/dist/hls.min.mjs"),
];

#[derive(Clone)]
pub struct AppState {
    pub hub: Arc<Hub>,
    pub ice: Arc<IceConfig>,
    /// `--public-host`: the name put in ICE server URLs instead of the one the browser used.
    pub public_host: Option<Arc<str>>,
}

/// The vendor files missing from `public_dir` (npm's packages not installed).
pub fn missing_vendor_files(public_dir: &Path) -> Vec<PathBuf> {
    VENDOR_FILES
        .iter()
        .map(|(_, file)| public_dir.join(file))
        .filter(|path| !path.is_file())
        .collect()
}

pub fn router(public_dir: &Path, socket_io: SocketIoLayer, state: AppState) -> Router {
    let static_files = ServeDir::new(public_dir).append_index_html_on_directories(true);
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/ice-servers", get(ice_servers))
        .route("/api/stats", get(stats));
    for (url, file) in VENDOR_FILES {
        router = router.route_service(url, ServeFile::new(public_dir.join(file)));
    }
    let router = router
        // The npm tree is an install detail, not content.
        .route(
            "/node_modules/{*rest}",
            get(|| async { StatusCode::NOT_FOUND }),
        )
        .fallback_service(static_files);
    common_headers(router).layer(socket_io).with_state(state)
}

/// What every HTTP answer of ours carries (the other modules' routes too): `nosniff`, so a
/// browser never runs uploaded or served bytes as another type than we say (recordings are
/// users' bytes on our origin); `no-cache` unless a route says otherwise; UTF-8 text.
pub fn common_headers<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        ))
        .layer(middleware::map_response(utf8_text))
}

async fn ice_servers(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let host = match state.public_host.as_deref() {
        Some(host) => host,
        None => match request_host(&uri, &headers) {
            Some(host) => host,
            None => {
                return (
                    StatusCode::BAD_REQUEST,
                    "cannot tell which host name this server was reached by (no valid :authority or Host); \
                     start the server with --public-host NAME",
                )
                    .into_response()
            }
        },
    };
    // The username's id part only labels the allocation in the relay's logs.
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(state.ice.ice_servers(host, "web", SystemTime::now())),
    )
        .into_response()
}

/// The host (without port) the client addressed: HTTP/2 carries it in the `:authority`
/// pseudo-header, which hyper puts in the request URI (there is no `Host` header), HTTP/1.1
/// in `Host`. Only a plausible DNS name or IP literal is returned: the value ends up in the
/// ICE server URLs we hand back.
pub fn request_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    let authority = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(header::HOST)?.to_str().ok())?;
    // `user@host` cannot come from a browser; refuse rather than guess.
    if authority.contains('@') {
        return None;
    }
    let host = strip_port(authority);
    is_valid_host(host).then_some(host)
}

/// A DNS name or an IP literal (no scheme, no port).
pub fn is_valid_host(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Adds `charset=utf-8` to text responses that name no charset. `ServeDir` sends
/// `text/html` and `text/javascript` bare, and a browser then decodes a page without
/// `<meta charset>` as windows-1252 and refuses a UTF-8 script with non-ASCII characters.
/// Everything we serve is UTF-8.
async fn utf8_text(mut response: Response) -> Response {
    let Some(value) = response.headers().get(header::CONTENT_TYPE) else {
        return response;
    };
    if let Some(with_charset) = value.to_str().ok().and_then(with_utf8_charset) {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, with_charset);
    }
    response
}

fn with_utf8_charset(content_type: &str) -> Option<HeaderValue> {
    let lower = content_type.to_ascii_lowercase();
    let essence = lower.split(';').next().unwrap_or("").trim();
    let textual = essence.starts_with("text/")
        || matches!(
            essence,
            "application/javascript"
                | "application/xml"
                | "image/svg+xml"
                | "application/manifest+json"
        );
    if !textual || lower.contains("charset=") {
        return None;
    }
    HeaderValue::from_str(&format!("{content_type}; charset=utf-8")).ok()
}

async fn stats(State(state): State<AppState>) -> impl IntoResponse {
    Json(state.hub.stats())
}

/// `example.org:8443` → `example.org`, `[::1]:8443` → `::1`.
pub fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_from_http2_authority_or_http1_host() {
        let h2: Uri = "https://call.example:8443/api/ice-servers".parse().unwrap();
        assert_eq!(request_host(&h2, &HeaderMap::new()), Some("call.example"));
        let h1: Uri = "/api/ice-servers".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("[2001:db8::1]:8443"));
        assert_eq!(request_host(&h1, &headers), Some("2001:db8::1"));
        assert_eq!(request_host(&h1, &HeaderMap::new()), None);
        for bad in ["evil.example/x?", "a b", "", "x..y", "a@b"] {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, HeaderValue::from_str(bad).unwrap());
            assert_eq!(request_host(&h1, &headers), None, "{bad:?}");
        }
    }

    #[test]
    fn text_types_get_utf8() {
        let get = |t: &str| with_utf8_charset(t).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            get("text/html").as_deref(),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(
            get("text/javascript").as_deref(),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(get("text/css; charset=ISO-8859-1"), None, "kept as given");
        assert_eq!(get("application/json"), None, "JSON is UTF-8 by definition");
        assert_eq!(get("image/png"), None);
    }

    #[test]
    fn host_without_port() {
        assert_eq!(strip_port("example.org:8443"), "example.org");
        assert_eq!(strip_port("example.org"), "example.org");
        assert_eq!(strip_port("[::1]:8443"), "::1");
        assert_eq!(strip_port("127.0.0.1:1"), "127.0.0.1");
    }
}
