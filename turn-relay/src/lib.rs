//! `turn-relay`: a STUN/TURN server (RFC 8489, RFC 8656, RFC 6156) that can stand
//! in for coturn, standalone (`turn-relay -c turnserver.conf`) or embedded.
//!
//! Embedding:
//! ```no_run
//! # async fn run() -> Result<(), turn_relay::Error> {
//! let config = turn_relay::config::RelayConfig::from_file("turnserver.conf")?;
//! let server = turn_relay::TurnServer::start(config).await?;
//! for (transport, addr) in server.local_addrs() {
//!     println!("{transport:?} {addr}");
//! }
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Layout: `stun/` is the codec; `relay` is the sans-IO core built from
//! `allocation`, `auth`, `nonce`, `policy` and `quota`; `server/` is the tokio driver.

pub mod allocation;
pub mod auth;
pub mod config;
pub mod metrics;
pub mod nonce;
pub mod policy;
pub mod quota;
pub mod relay;
pub mod rest_auth;
pub mod server;
pub mod stun;

pub use server::{MetricsSource, TurnServer};

/// Transport between a client and the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot bind {transport:?} listener on {addr}: {source}")]
    Bind {
        transport: Transport,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("no listener could be started (all transports disabled?)")]
    NoListeners,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
