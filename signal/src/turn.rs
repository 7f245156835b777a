//! The TURN relay embedded in the default run, and the TURN entries handed to browsers.
//!
//! The relay and this server share a secret: the relay checks REST-API credentials that
//! [`crate::ice`] mints per page load, so no password is ever in page source.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use base64::Engine as _;
use turn_relay::{config::RelayConfig, Transport, TurnServer};

use crate::{config::TurnSettings, ice::TurnConfig};

#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    #[error("embedded TURN relay: {0} (use --no-turn to run without it, or --turn-config FILE)")]
    Relay(#[from] turn_relay::Error),
    #[error("embedded TURN relay config: {0}")]
    Config(#[from] turn_relay::config::ConfigError),
}

/// The running relay (if embedded) and what browsers are told about TURN.
pub struct Turn {
    pub server: Option<TurnServer>,
    pub ice: Option<TurnConfig>,
}

/// Starts the embedded relay (unless settings say otherwise). `sfu_media` is our SFU's media
/// address: the relay may reach that one address even where its peer policy denies the IP
/// (loopback, a private range), so a participant behind a UDP-blocking firewall can reach
/// the SFU over TURN/TCP without the relay being opened to anything else there.
/// `public_ip` (`--public-ip`, NAT 1:1) becomes the relay's `external-ip` unless its config
/// file names one.
pub async fn start(
    settings: &TurnSettings,
    public_ip: Option<IpAddr>,
    sfu_media: Option<SocketAddr>,
) -> Result<Turn, TurnError> {
    if !settings.embedded {
        let ice = settings.secret.as_ref().map(|secret| TurnConfig {
            urls: settings.urls.clone(),
            secret: secret.clone(),
            ttl: settings.credential_ttl,
        });
        return Ok(Turn { server: None, ice });
    }
    let mut config = match &settings.config {
        Some(path) => RelayConfig::from_file(path)?,
        None => default_relay_config(),
    };
    if let (Some(ip), true) = (public_ip, config.external_ips.is_empty()) {
        tracing::info!(%ip, "the TURN relay announces the public address as its external-ip");
        config.external_ips.push((ip, None));
    }
    if let Some(addr) = sfu_media {
        tracing::info!(%addr, "the TURN relay may reach the SFU's media port");
        config.allowed_peer_addrs.push(addr);
    }
    for warning in &config.warnings {
        tracing::warn!("embedded TURN relay config: {warning}");
    }
    let secret = config.rest_secret().map(str::to_owned);
    let server = TurnServer::start(config).await?;
    let addrs = server.local_addrs();
    for (transport, addr) in &addrs {
        tracing::info!("TURN relay listening on {transport:?} {addr}");
    }
    let ice = match secret {
        Some(secret) => Some(TurnConfig {
            urls: if settings.urls.is_empty() {
                ice_urls(&addrs)
            } else {
                settings.urls.clone()
            },
            secret,
            ttl: settings.credential_ttl,
        }),
        None => {
            tracing::warn!(
                "the embedded TURN relay does not use use-auth-secret/static-auth-secret: \
                 browsers get no TURN credentials from /api/ice-servers"
            );
            None
        }
    };
    Ok(Turn {
        server: Some(server),
        ice,
    })
}

/// The embedded relay's defaults: coturn's ports, REST-API credentials with a secret that
/// lives only as long as this process, and the safe peer policy of `turn-relay`.
fn default_relay_config() -> RelayConfig {
    RelayConfig {
        use_auth_secret: true,
        static_auth_secret: Some(random_secret()),
        fingerprint: true,
        no_tls: true,
        no_dtls: true,
        no_multicast_peers: true,
        user_quota: 12,
        total_quota: 1200,
        ..RelayConfig::default()
    }
}

fn random_secret() -> String {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("the OS random number generator is available");
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

/// `stun:`/`turn:`/`turns:` URLs for the relay's listeners. `{host}` stands for
/// `--public-host`, else the host name the page was loaded from: a name (not the relay's
/// `external-ip`) so that a `turns:` URL can match the certificate.
fn ice_urls(addrs: &[(Transport, SocketAddr)]) -> Vec<String> {
    let host = "{host}";
    let mut urls = Vec::new();
    let mut push = |url: String| {
        if !urls.contains(&url) {
            urls.push(url);
        }
    };
    for (transport, addr) in addrs {
        let port = addr.port();
        match transport {
            Transport::Udp => {
                push(format!("stun:{host}:{port}"));
                push(format!("turn:{host}:{port}?transport=udp"));
            }
            Transport::Tcp => push(format!("turn:{host}:{port}?transport=tcp")),
            Transport::Tls => push(format!("turns:{host}:{port}?transport=tcp")),
        }
    }
    urls
}

/// Stops the relay, letting allocations go.
pub async fn stop(turn: Turn) {
    if let Some(server) = turn.server {
        tokio::time::timeout(Duration::from_secs(2), server.shutdown())
            .await
            .ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_cover_each_transport_once() {
        let addrs = [
            (Transport::Udp, "0.0.0.0:3478".parse().unwrap()),
            (Transport::Udp, "[::]:3478".parse().unwrap()),
            (Transport::Tcp, "0.0.0.0:3478".parse().unwrap()),
            (Transport::Tls, "0.0.0.0:5349".parse().unwrap()),
        ];
        assert_eq!(
            ice_urls(&addrs),
            [
                "stun:{host}:3478",
                "turn:{host}:3478?transport=udp",
                "turn:{host}:3478?transport=tcp",
                "turns:{host}:5349?transport=tcp",
            ]
        );
    }

    #[test]
    fn default_relay_uses_a_fresh_rest_secret() {
        let a = default_relay_config();
        let b = default_relay_config();
        assert!(a.rest_secret().is_some_and(|s| s.len() >= 32));
        assert_ne!(a.rest_secret(), b.rest_secret());
        assert!(!a.allow_loopback_peers, "safe peer policy by default");
        a.validate().unwrap();
    }
}
