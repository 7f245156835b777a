//! ICE servers handed to browsers. TURN credentials are minted per request with the TURN
//! REST API scheme (a time-limited username signed with a secret shared with the relay), so
//! no password ever appears in page source.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha1::Sha1;

#[derive(Debug, Clone, Default)]
pub struct IceConfig {
    /// `stun:` URLs given as they are.
    pub stun_urls: Vec<String>,
    pub turn: Option<TurnConfig>,
}

#[derive(Clone)]
pub struct TurnConfig {
    /// `turn:`/`turns:` URLs; `{host}` is replaced by the host name the browser used to
    /// reach this server, which is right when the relay runs on the same machine.
    pub urls: Vec<String>,
    pub secret: String,
    pub ttl: Duration,
}

impl std::fmt::Debug for TurnConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnConfig")
            .field("urls", &self.urls)
            .field("secret", &"<redacted>")
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// One entry of `RTCConfiguration.iceServers`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IceServersResponse {
    #[serde(rename = "iceServers")]
    pub ice_servers: Vec<IceServer>,
    /// Seconds the credentials stay valid.
    pub ttl: u64,
}

impl IceConfig {
    /// The ICE servers for one browser. `host` is the host (without port) from the request.
    pub fn ice_servers(&self, host: &str, user_id: &str, now: SystemTime) -> IceServersResponse {
        let mut ice_servers = Vec::new();
        if !self.stun_urls.is_empty() {
            ice_servers.push(IceServer {
                urls: self.stun_urls.clone(),
                username: None,
                credential: None,
            });
        }
        let mut ttl = 0;
        if let Some(turn) = &self.turn {
            let (username, credential) = rest_credentials(&turn.secret, user_id, turn.ttl, now);
            let host = bracket_ipv6(host);
            ice_servers.push(IceServer {
                urls: turn
                    .urls
                    .iter()
                    .map(|u| u.replace("{host}", &host))
                    .collect(),
                username: Some(username),
                credential: Some(credential),
            });
            ttl = turn.ttl.as_secs();
        }
        IceServersResponse { ice_servers, ttl }
    }
}

fn bracket_ipv6(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// TURN REST API credentials (draft-uberti-behave-turn-rest, as coturn's
/// `use-auth-secret`): username `expiry:user_id`, password `base64(HMAC-SHA1(secret, username))`.
pub fn rest_credentials(
    secret: &str,
    user_id: &str,
    ttl: Duration,
    now: SystemTime,
) -> (String, String) {
    let expiry = now.duration_since(UNIX_EPOCH).unwrap_or_default() + ttl;
    let username = format!("{}:{user_id}", expiry.as_secs());
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_credentials_match_coturn_scheme() {
        // Reference value computed independently:
        //   printf '%s' 1700003600:alice | openssl dgst -sha1 -hmac secret -binary | base64
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (user, pass) = rest_credentials("secret", "alice", Duration::from_secs(3600), now);
        assert_eq!(user, "1700003600:alice");
        assert_eq!(pass, "LLPLO4qjdVL2qZhwr3eImhn7J20=");
    }

    #[test]
    fn no_servers_by_default() {
        let response = IceConfig::default().ice_servers("localhost", "x", SystemTime::now());
        assert!(response.ice_servers.is_empty());
        assert_eq!(response.ttl, 0);
    }

    #[test]
    fn turn_urls_follow_the_request_host() {
        let config = IceConfig {
            stun_urls: vec!["stun:stun.example:3478".into()],
            turn: Some(TurnConfig {
                urls: vec!["turn:{host}:3478?transport=udp".into()],
                secret: "s".into(),
                ttl: Duration::from_secs(600),
            }),
        };
        let response = config.ice_servers("::1", "u", SystemTime::now());
        assert_eq!(response.ice_servers.len(), 2);
        assert_eq!(
            response.ice_servers[1].urls,
            ["turn:[::1]:3478?transport=udp"]
        );
        assert!(response.ice_servers[1].credential.is_some());
        assert_eq!(response.ttl, 600);
        assert!(
            !format!("{:?}", config.turn).contains("\"s\""),
            "secret is redacted"
        );
    }
}
