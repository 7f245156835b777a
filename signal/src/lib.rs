//! `signal`: the server side of the calling system.
//!
//! - [`web`]: HTTPS, the static web client and a small JSON API.
//! - [`access`]: who may use what over HTTP (origins, operator token, request budgets).
//! - [`signaling`]: socket.io signaling for 1-to-1 rooms (a sans-IO core and its binding).
//! - [`ice`]: the ICE servers (STUN, time-limited TURN credentials) handed to browsers.
//! - [`tls`]: certificates, including a generated development one.
//! - [`turn`]: the embedded TURN relay (`turn-relay`) and its browser credentials.
//! - [`metrics`]: Prometheus `/metrics` for the operator.
//! - [`recordings`]: recordings made in the browser: resumable upload, seekable WebM, playback;
//!   and SFU rooms recorded by the server.
//! - [`live`]: SFU rooms watched live over Low-Latency HLS.
//! - [`keys`]: unguessable ids (recordings, live sessions).
//! - [`taps`]: what recordings and live streams share: listening to a participant's media.
//! - [`config`], [`server`]: configuration and wiring.

pub mod access;
pub mod auth;
pub mod config;
pub mod ice;
pub mod keys;
pub mod live;
pub mod metrics;
pub mod passcode;
pub mod recordings;
pub mod server;
pub mod sfu_signaling;
pub mod signaling;
pub mod taps;
pub mod tls;
pub mod turn;
pub mod web;
