//! Who may use what over HTTP (docs/security.md): the `Origin` of signaling connections,
//! join tokens (`auth.rs`) on signaling connections and TURN credentials, the operator
//! endpoints, and a per-address budget for TURN credentials.
//!
//! The rules are plain functions over what a request carries (tested without a server);
//! [`guard`] is the one middleware that applies them.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::auth::{unix_now, AuthError, Authority, Claims};
use axum::{
    extract::{ConnectInfo, Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode, Uri},
    middleware::Next,
    response::{IntoResponse, Response},
};

/// Paths that list rooms, participants' names or server figures: operators only.
pub const OPERATOR_PATHS: [&str; 4] = [
    "/api/rooms",
    "/api/stats",
    "/metrics",
    "/api/room-recordings",
];
/// socket.io's endpoint (both namespaces, polling and WebSocket).
const SOCKET_IO_PATH: &str = "/socket.io/";
/// `/api/ice-servers` per client address: this many at once, then one per interval.
pub const ICE_SERVERS_BURST: u32 = 20;
pub const ICE_SERVERS_INTERVAL: Duration = Duration::from_secs(3);
/// Addresses remembered by the limiter before the idle ones are forgotten.
const MAX_TRACKED_ADDRESSES: usize = 10_000;
/// The shortest operator token accepted (guessable tokens protect nothing).
pub const MIN_OPERATOR_TOKEN_LEN: usize = 16;

/// The access policy, resolved from the configuration.
#[derive(Clone, Default)]
pub struct AccessConfig {
    /// Origins (`scheme://host[:port]`) besides the server's own whose pages may open
    /// signaling connections.
    pub allowed_origins: Vec<String>,
    /// Bearer token for [`OPERATOR_PATHS`]; without one they are refused.
    pub operator_token: Option<String>,
    /// `--public-host`: another name this server's pages are loaded from.
    pub public_host: Option<String>,
    /// Secret of the join tokens; without one, no token is asked for (an open server).
    pub auth_secret: Option<String>,
}

impl std::fmt::Debug for AccessConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("AccessConfig")
            .field("allowed_origins", &self.allowed_origins)
            .field("operator_token", &redacted(&self.operator_token))
            .field("public_host", &self.public_host)
            .field("auth_secret", &redacted(&self.auth_secret))
            .finish()
    }
}

/// Why a request was refused, with the text the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Origin(String),
    OperatorDisabled,
    OperatorUnauthorized,
    RateLimited(Duration),
    Token(AuthError),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Origin(origin) => (
                StatusCode::FORBIDDEN,
                format!(
                    "origin {origin} may not open signaling connections to this server \
                     (add it to [access] allowed_origins / --allow-origin)"
                ),
            )
                .into_response(),
            Refusal::OperatorDisabled => (
                StatusCode::FORBIDDEN,
                "operator endpoints are off: set [access] operator_token (or \
                 SIGNAL_OPERATOR_TOKEN) and send it as `Authorization: Bearer <token>`",
            )
                .into_response(),
            Refusal::OperatorUnauthorized => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "this endpoint needs `Authorization: Bearer <operator token>`",
            )
                .into_response(),
            Refusal::Token(error) => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                format!("{}: {error}", error.code()),
            )
                .into_response(),
            Refusal::RateLimited(wait) => (
                StatusCode::TOO_MANY_REQUESTS,
                [(
                    header::RETRY_AFTER,
                    HeaderValue::from(wait.as_secs().max(1)),
                )],
                "too many requests for ICE servers from this address: try again later",
            )
                .into_response(),
        }
    }
}

/// Whether a page from `origin` (the `Origin` header) may open a signaling connection to a
/// server it reached as `authority` (`Host`, or HTTP/2's `:authority`): its own pages, a
/// page served under `public_host`, or an allowed origin. Compared without the default port
/// of the origin's scheme, case-insensitively.
pub fn origin_allowed(origin: &str, authority: Option<&str>, config: &AccessConfig) -> bool {
    let Some((scheme, origin_authority)) = split_origin(origin) else {
        return false;
    };
    let origin_authority = without_default_port(scheme, &origin_authority);
    let same_server = authority
        .is_some_and(|a| without_default_port(scheme, &a.to_ascii_lowercase()) == origin_authority)
        || config.public_host.as_deref().is_some_and(|host| {
            crate::web::strip_port(&origin_authority).eq_ignore_ascii_case(host)
        });
    same_server
        || config.allowed_origins.iter().any(|allowed| {
            split_origin(allowed).is_some_and(|(s, a)| {
                s == scheme && without_default_port(s, &a) == origin_authority
            })
        })
}

/// `https://Example.org:8443` → `("https", "example.org:8443")`; `None` for `null` and
/// anything that is not a serialised origin.
fn split_origin(origin: &str) -> Option<(&'static str, String)> {
    let lower = origin.trim().to_ascii_lowercase();
    let (scheme, rest) = if let Some(rest) = lower.strip_prefix("https://") {
        ("https", rest)
    } else if let Some(rest) = lower.strip_prefix("http://") {
        ("http", rest)
    } else {
        return None;
    };
    let valid = !rest.is_empty() && !rest.contains(['/', '@', '?', '#', ' ']);
    valid.then(|| (scheme, rest.to_owned()))
}

fn without_default_port(scheme: &str, authority: &str) -> String {
    let default = if scheme == "https" { ":443" } else { ":80" };
    authority
        .strip_suffix(default)
        .unwrap_or(authority)
        .to_ascii_lowercase()
}

/// Checks an operator request's `Authorization` against the configured token.
pub fn operator_allowed(headers: &HeaderMap, token: Option<&str>) -> Result<(), Refusal> {
    let token = token.ok_or(Refusal::OperatorDisabled)?;
    let given = bearer(headers).ok_or(Refusal::OperatorUnauthorized)?;
    if constant_time_eq(given.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::OperatorUnauthorized)
    }
}

/// Equality whose time does not depend on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b.get(i).copied().unwrap_or(!x);
    }
    diff == 0
}

/// The client's address: the connection's peer, or, when the peer is a proxy on this
/// machine, the last address the proxy put in `X-Forwarded-For` (or `X-Real-IP`).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    if !peer.is_loopback() {
        return peer;
    }
    let forwarded = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .or_else(|| headers.get("x-real-ip").and_then(|v| v.to_str().ok()));
    forwarded
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(peer)
}

/// A socket.io client's address, as [`client_ip`] reads it.
pub fn socket_ip(socket: &socketioxide::extract::SocketRef) -> Option<IpAddr> {
    let parts = socket.req_parts();
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()?
        .0;
    Some(client_ip(peer.ip(), &parts.headers))
}

/// A per-address budget (GCRA: one "theoretical arrival time" per address, or per any key
/// `K` that includes one), time passed in.
#[derive(Debug)]
pub struct AddressLimiter<K = IpAddr> {
    burst: u32,
    interval: Duration,
    next: HashMap<K, Instant>,
}

impl<K: std::hash::Hash + Eq + Clone> AddressLimiter<K> {
    pub fn new(burst: u32, interval: Duration) -> Self {
        AddressLimiter {
            burst,
            interval,
            next: HashMap::new(),
        }
    }

    /// Whether `ip` has used its budget up (what [`AddressLimiter::take`] would refuse),
    /// without taking anything.
    pub fn blocked(&self, ip: &K, now: Instant) -> bool {
        let ahead = now + self.interval * self.burst.saturating_sub(1);
        self.next.get(ip).is_some_and(|tat| *tat > ahead)
    }

    /// Takes one request for `ip`; `Err` says how long until the next one is allowed.
    pub fn take(&mut self, ip: K, now: Instant) -> Result<(), Duration> {
        if self.next.len() >= MAX_TRACKED_ADDRESSES && !self.next.contains_key(&ip) {
            // Addresses whose budget is full again are the same as never seen.
            self.next.retain(|_, at| *at > now);
            if self.next.len() >= MAX_TRACKED_ADDRESSES {
                return Err(self.interval);
            }
        }
        let tat = self.next.get(&ip).copied().unwrap_or(now).max(now);
        // Allowed while the theoretical arrival time is at most a burst ahead of now.
        let ahead = now + self.interval * self.burst.saturating_sub(1);
        if tat > ahead {
            return Err(tat - ahead);
        }
        self.next.insert(ip, tat + self.interval);
        Ok(())
    }
}

/// What [`guard`] and the signaling handshakes need.
#[derive(Debug)]
pub struct Access {
    pub config: AccessConfig,
    pub ice_servers: Mutex<AddressLimiter>,
    /// Checks join tokens; `None`: no token is asked for.
    pub authority: Option<Authority>,
}

impl Access {
    pub fn new(config: AccessConfig) -> Arc<Self> {
        Arc::new(Access {
            authority: config.auth_secret.as_deref().map(Authority::new),
            config,
            ice_servers: Mutex::new(AddressLimiter::new(ICE_SERVERS_BURST, ICE_SERVERS_INTERVAL)),
        })
    }

    /// The claims of `token`, when tokens are required (`Ok(None)`: they are not).
    pub fn authenticate(&self, token: Option<&str>) -> Result<Option<Claims>, AuthError> {
        let Some(authority) = &self.authority else {
            return Ok(None);
        };
        authority
            .verify(token.unwrap_or_default(), unix_now())
            .map(Some)
    }

    /// The handshake of a signaling connection (both namespaces): with tokens on, a valid
    /// one, whose claims stay in the socket's extensions for its joins to be checked against.
    pub fn admit_socket(
        &self,
        socket: &socketioxide::extract::SocketRef,
        auth: Option<&serde_json::Value>,
    ) -> Result<(), ConnectRefused> {
        let token = handshake_token(auth, socket.req_parts().uri.query());
        match self.authenticate(token.as_deref()) {
            Ok(Some(claims)) => {
                tracing::info!(sid = %socket.id, identity = %claims.sub, room = %claims.room, "signaling connection with a token");
                socket.extensions.insert(claims);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(error) => {
                tracing::info!(sid = %socket.id, code = error.code(), "signaling connection refused");
                Err(ConnectRefused(error))
            }
        }
    }
}

/// Why a signaling connection was refused at its handshake: the client's `connect_error`
/// carries `code: message` (docs/protocol.md).
#[derive(Debug)]
pub struct ConnectRefused(pub AuthError);

impl std::fmt::Display for ConnectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.0.code(), self.0)
    }
}

/// The token of a socket.io handshake: `auth.token` (socket.io clients from v3 on), else the
/// `token` query parameter (v2 clients have no `auth`).
pub fn handshake_token(auth: Option<&serde_json::Value>, query: Option<&str>) -> Option<String> {
    if let Some(token) = auth.and_then(|a| a.get("token")).and_then(|t| t.as_str()) {
        return Some(token.to_owned());
    }
    query_token(query)
}

/// `token=…` of a query string (base64url JWTs need no decoding).
fn query_token(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .map(str::to_owned)
}

/// The credential of `Authorization: Bearer …`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// An HTTP request's token: `Authorization: Bearer …`, else `?token=`.
pub fn request_token(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    bearer(headers)
        .map(str::to_owned)
        .or_else(|| query_token(uri.query()))
}

/// The middleware in front of every route: the origin of signaling connections, the
/// operator token, and for ICE servers the join token and the per-address budget.
pub async fn guard(
    State(access): State<Arc<Access>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let headers = request.headers();
    if path.starts_with(SOCKET_IO_PATH) {
        // Browsers always send Origin on WebSocket and cross-origin requests; a client that
        // is not a browser cannot be lured into anything by a web site.
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("(not text)");
            let authority = request_authority(request.uri(), headers);
            if !origin_allowed(origin, authority, &access.config) {
                tracing::info!(%origin, ?authority, "signaling connection from another origin refused");
                return Refusal::Origin(origin.to_owned()).into_response();
            }
        }
    } else if OPERATOR_PATHS.contains(&path) {
        if let Err(refusal) = operator_allowed(headers, access.config.operator_token.as_deref()) {
            return refusal.into_response();
        }
    } else if path == "/api/ice-servers" {
        // TURN credentials only for clients that may join (with tokens on).
        if let Err(error) = access.authenticate(request_token(request.uri(), headers).as_deref()) {
            return Refusal::Token(error).into_response();
        }
        let ip = client_ip(peer.ip(), headers);
        // A loopback address is this machine, or a proxy that does not say whom it serves
        // (all its clients would share one budget): no budget then (docs/security.md).
        if ip.is_loopback() {
            return next.run(request).await;
        }
        let taken = access
            .ice_servers
            .lock()
            .map_or(Ok(()), |mut limiter| limiter.take(ip, Instant::now()));
        if let Err(wait) = taken {
            tracing::info!(%ip, "ICE servers request over the address's budget");
            return Refusal::RateLimited(wait).into_response();
        }
    }
    next.run(request).await
}

/// The authority the client addressed (`:authority` over HTTP/2, `Host` over HTTP/1.1).
fn request_authority<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    uri.authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(header::HOST)?.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(allowed: &[&str]) -> AccessConfig {
        AccessConfig {
            allowed_origins: allowed.iter().map(|s| s.to_string()).collect(),
            ..AccessConfig::default()
        }
    }

    #[test]
    fn a_page_of_this_server_may_connect_and_another_site_may_not() {
        let c = config(&[]);
        let host = Some("call.example:8443");
        assert!(origin_allowed("https://call.example:8443", host, &c));
        assert!(origin_allowed("https://CALL.example:8443", host, &c));
        assert!(!origin_allowed("https://evil.example", host, &c));
        assert!(!origin_allowed("https://call.example:9443", host, &c));
        assert!(!origin_allowed(
            "https://call.example.evil.example:8443",
            host,
            &c
        ));
        assert!(
            !origin_allowed("null", host, &c),
            "sandboxed frames, file://"
        );
        assert!(!origin_allowed("https://call.example:8443", None, &c));
        // Default ports are left out by browsers, and may or may not be in Host.
        assert!(origin_allowed(
            "https://call.example",
            Some("call.example"),
            &c
        ));
        assert!(origin_allowed(
            "https://call.example",
            Some("call.example:443"),
            &c
        ));
        assert!(origin_allowed(
            "http://call.example",
            Some("call.example:80"),
            &c
        ));
    }

    #[test]
    fn allowed_origins_and_the_public_host() {
        let c = config(&["https://app.example", "http://localhost:3000"]);
        let host = Some("call.example");
        assert!(origin_allowed("https://app.example", host, &c));
        assert!(origin_allowed("https://app.example:443", host, &c));
        assert!(
            !origin_allowed("http://app.example", host, &c),
            "scheme matters"
        );
        assert!(origin_allowed("http://localhost:3000", host, &c));
        assert!(!origin_allowed("http://localhost:3001", host, &c));
        let behind_cdn = AccessConfig {
            public_host: Some("call.example".into()),
            ..AccessConfig::default()
        };
        assert!(origin_allowed(
            "https://call.example",
            Some("10.0.0.5:8080"),
            &behind_cdn
        ));
    }

    #[test]
    fn operator_endpoints_need_the_token() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            operator_allowed(&headers, None),
            Err(Refusal::OperatorDisabled)
        );
        let token = Some("0123456789abcdef");
        assert_eq!(
            operator_allowed(&headers, token),
            Err(Refusal::OperatorUnauthorized)
        );
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer 0123456789abcdeX"),
        );
        assert_eq!(
            operator_allowed(&headers, token),
            Err(Refusal::OperatorUnauthorized)
        );
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer 0123456789abcdef0"),
        );
        assert_eq!(
            operator_allowed(&headers, token),
            Err(Refusal::OperatorUnauthorized)
        );
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic 0123456789abcdef"),
        );
        assert_eq!(
            operator_allowed(&headers, token),
            Err(Refusal::OperatorUnauthorized)
        );
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer 0123456789abcdef"),
        );
        assert_eq!(operator_allowed(&headers, token), Ok(()));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(!constant_time_eq(b"a", b""));
    }

    #[test]
    fn the_client_address_behind_a_local_proxy() {
        let mut headers = HeaderMap::new();
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(client_ip(peer, &headers), peer);
        assert_eq!(client_ip(local, &headers), local);
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.1, 192.0.2.7"),
        );
        assert_eq!(
            client_ip(local, &headers),
            "192.0.2.7".parse::<IpAddr>().unwrap(),
            "the proxy's own entry"
        );
        assert_eq!(
            client_ip(peer, &headers),
            peer,
            "only a local proxy is believed"
        );
        headers.insert("x-forwarded-for", HeaderValue::from_static("junk"));
        assert_eq!(client_ip(local, &headers), local);
    }

    #[test]
    fn tokens_come_in_the_handshake_auth_or_the_query() {
        let auth = serde_json::json!({"token": "a.b.c"});
        assert_eq!(
            handshake_token(Some(&auth), Some("EIO=4&token=x.y.z")).as_deref(),
            Some("a.b.c")
        );
        assert_eq!(
            handshake_token(None, Some("EIO=3&token=x.y.z&transport=websocket")).as_deref(),
            Some("x.y.z")
        );
        assert_eq!(
            handshake_token(Some(&serde_json::json!({})), Some("EIO=4")),
            None
        );
        assert_eq!(handshake_token(None, None), None);
        let mut headers = HeaderMap::new();
        let uri: Uri = "/api/ice-servers?token=q.q.q".parse().unwrap();
        assert_eq!(request_token(&uri, &headers).as_deref(), Some("q.q.q"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer h.h.h"),
        );
        assert_eq!(request_token(&uri, &headers).as_deref(), Some("h.h.h"));
        let debug = format!(
            "{:?}",
            AccessConfig {
                operator_token: Some("secret-operator".into()),
                auth_secret: Some("secret-auth".into()),
                ..AccessConfig::default()
            }
        );
        assert!(!debug.contains("secret-"), "{debug}");
    }

    #[test]
    fn the_address_budget_allows_a_burst_then_one_per_interval() {
        let t0 = Instant::now();
        let mut limiter = AddressLimiter::new(3, Duration::from_secs(3));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(!limiter.blocked(&a, t0), "blocked says what take would");
            assert_eq!(limiter.take(a, t0), Ok(()));
        }
        assert!(limiter.blocked(&a, t0));
        assert_eq!(limiter.take(a, t0), Err(Duration::from_secs(3)));
        assert_eq!(
            limiter.take(b, t0),
            Ok(()),
            "another address has its own budget"
        );
        assert_eq!(
            limiter.take(a, t0 + Duration::from_secs(2)),
            Err(Duration::from_secs(1))
        );
        assert!(!limiter.blocked(&a, t0 + Duration::from_secs(3)));
        assert_eq!(limiter.take(a, t0 + Duration::from_secs(3)), Ok(()));
        assert!(limiter.take(a, t0 + Duration::from_secs(3)).is_err());
        // A long pause refills the whole burst, not more.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limiter.take(a, later), Ok(()));
        }
        assert!(limiter.take(a, later).is_err());
    }
}
