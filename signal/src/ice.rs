//! ICE servers handed to browsers. TURN credentials are minted per request with the TURN
//! REST API scheme (a time-limited username signed with a secret shared with the relay), so
//! no password ever appears in page source.

use std::time::{Duration, SystemTime};

use serde::Serialize;

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
            let (username, credential) =
                turn_relay::rest_auth::credentials(&turn.secret, user_id, turn.ttl, now);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_what_the_relay_expects() {
        // Reference value computed independently:
        //   printf '%s' 1700003600:web | openssl dgst -sha1 -hmac secret -binary | base64
        let config = IceConfig {
            stun_urls: vec![],
            turn: Some(TurnConfig {
                urls: vec!["turn:{host}:3478".into()],
                secret: "secret".into(),
                ttl: Duration::from_secs(3600),
            }),
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let server = &config.ice_servers("h", "web", now).ice_servers[0];
        assert_eq!(server.username.as_deref(), Some("1700003600:web"));
        assert_eq!(
            server.credential.as_deref(),
            Some("bV+2LLPOtbiQL9SugFOqnks1eXA=")
        );
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
