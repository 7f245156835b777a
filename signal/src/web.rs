//! HTTP routes: the static web client, the socket.io client script, and a small JSON API.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::IntoResponse,
    routing::get,
    Json, Router,
};
use socketioxide::layer::SocketIoLayer;
use tower_http::{
    services::{ServeDir, ServeFile},
    set_header::SetResponseHeaderLayer,
};

use crate::{ice::IceConfig, signaling::Hub};

/// Where `npm ci --prefix public` puts the socket.io browser client.
pub const SOCKET_IO_CLIENT: &str = "node_modules/socket.io-client/dist/socket.io.min.js";

#[derive(Clone)]
pub struct AppState {
    pub hub: Arc<Hub>,
    pub ice: Arc<IceConfig>,
}

/// The path of the socket.io client script inside `public_dir`, if it is installed.
pub fn socket_io_client(public_dir: &Path) -> Option<PathBuf> {
    let path = public_dir.join(SOCKET_IO_CLIENT);
    path.is_file().then_some(path)
}

pub fn router(public_dir: &Path, socket_io: SocketIoLayer, state: AppState) -> Router {
    let static_files = ServeDir::new(public_dir).append_index_html_on_directories(true);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/ice-servers", get(ice_servers))
        .route("/api/stats", get(stats))
        .route_service(
            "/vendor/socket.io.min.js",
            ServeFile::new(public_dir.join(SOCKET_IO_CLIENT)),
        )
        // The npm tree is an install detail, not content.
        .route(
            "/node_modules/{*rest}",
            get(|| async { StatusCode::NOT_FOUND }),
        )
        .fallback_service(static_files)
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        ))
        .layer(socket_io)
        .with_state(state)
}

async fn ice_servers(State(state): State<AppState>, headers: HeaderMap) -> impl IntoResponse {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(strip_port)
        .unwrap_or("localhost");
    // The username's id part only labels the allocation in the relay's logs.
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(state.ice.ice_servers(host, "web", SystemTime::now())),
    )
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
    use super::strip_port;

    #[test]
    fn host_without_port() {
        assert_eq!(strip_port("example.org:8443"), "example.org");
        assert_eq!(strip_port("example.org"), "example.org");
        assert_eq!(strip_port("[::1]:8443"), "::1");
        assert_eq!(strip_port("127.0.0.1:1"), "127.0.0.1");
    }
}
