//! coturn-compatible configuration (`turnserver.conf`).
//!
//! The same file must start coturn or this relay, so the syntax is coturn's:
//! one `key=value` (or `key value`, or a bare `flag`) per line, `#` comment lines.
//! Keys we do not implement produce a warning naming the key, never an error.

use crate::policy::IpRange;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("line {line}: {key}: {message}")]
    Invalid {
        line: usize,
        key: String,
        message: String,
    },
    #[error("{0}")]
    Inconsistent(String),
}

/// A static user's secret: a password, or coturn's precomputed key (`0x<hex>`).
#[derive(Clone, PartialEq, Eq)]
pub enum UserSecret {
    Password(String),
    Key([u8; 16]),
}

impl fmt::Debug for UserSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserSecret::Password(_) => f.write_str("Password(<redacted>)"),
            UserSecret::Key(_) => f.write_str("Key(<redacted>)"),
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub secret: UserSecret,
}

impl fmt::Debug for User {
    // Passwords never reach logs, even at trace level.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "User({:?}, <redacted>)", self.name)
    }
}

#[derive(Clone)]
pub struct RelayConfig {
    /// `listening-ip` (repeatable); empty = all IPv4 and IPv6 addresses.
    pub listening_ips: Vec<IpAddr>,
    pub listening_port: u16,
    pub tls_listening_port: u16,
    /// `relay-ip` (repeatable); empty = derived from listening/local addresses.
    pub relay_ips: Vec<IpAddr>,
    /// `external-ip=public[/private]` (repeatable).
    pub external_ips: Vec<(IpAddr, Option<IpAddr>)>,
    pub min_port: u16,
    pub max_port: u16,
    pub realm: String,
    pub users: Vec<User>,
    pub lt_cred_mech: bool,
    pub use_auth_secret: bool,
    pub static_auth_secret: Option<String>,
    pub no_auth: bool,
    pub cert: Option<PathBuf>,
    pub pkey: Option<PathBuf>,
    pub no_tls: bool,
    pub no_dtls: bool,
    pub no_udp: bool,
    pub no_tcp: bool,
    pub fingerprint: bool,
    pub allow_loopback_peers: bool,
    pub no_multicast_peers: bool,
    pub denied_peer_ips: Vec<IpRange>,
    pub allowed_peer_ips: Vec<IpRange>,
    /// Exact peer addresses allowed whatever the IP rules say (not a coturn key: set by a
    /// program embedding the relay, e.g. for its own SFU's media port).
    pub allowed_peer_addrs: Vec<std::net::SocketAddr>,
    /// Allocations per user; 0 = unlimited.
    pub user_quota: u32,
    /// Allocations in total; 0 = unlimited.
    pub total_quota: u32,
    /// Bytes per second per allocation; 0 = unlimited.
    pub max_bps: u64,
    pub stale_nonce_secs: u64,
    pub max_allocate_lifetime_secs: u64,
    pub channel_lifetime_secs: u64,
    pub permission_lifetime_secs: u64,
    pub log_file: Option<PathBuf>,
    pub verbose: bool,
    pub no_cli: bool,
    /// Serve Prometheus metrics on `prometheus_port` (coturn's default 9641).
    pub prometheus: bool,
    pub prometheus_port: u16,
    /// Address for the metrics listener; loopback unless set.
    pub prometheus_address: Option<IpAddr>,
    /// Warnings gathered while parsing (unknown keys and the like).
    pub warnings: Vec<String>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            listening_ips: Vec::new(),
            listening_port: 3478,
            tls_listening_port: 5349,
            relay_ips: Vec::new(),
            external_ips: Vec::new(),
            min_port: 49152,
            max_port: 65535,
            realm: "rtc.local".into(),
            users: Vec::new(),
            lt_cred_mech: false,
            use_auth_secret: false,
            static_auth_secret: None,
            no_auth: false,
            cert: None,
            pkey: None,
            no_tls: false,
            no_dtls: false,
            no_udp: false,
            no_tcp: false,
            fingerprint: false,
            allow_loopback_peers: false,
            no_multicast_peers: false,
            denied_peer_ips: Vec::new(),
            allowed_peer_ips: Vec::new(),
            allowed_peer_addrs: Vec::new(),
            user_quota: 0,
            total_quota: 0,
            max_bps: 0,
            stale_nonce_secs: 600,
            max_allocate_lifetime_secs: 3600,
            channel_lifetime_secs: 600,
            permission_lifetime_secs: 300,
            log_file: None,
            verbose: false,
            no_cli: false,
            prometheus: false,
            prometheus_port: 9641,
            prometheus_address: None,
            warnings: Vec::new(),
        }
    }
}

impl fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayConfig")
            .field("listening_ips", &self.listening_ips)
            .field("listening_port", &self.listening_port)
            .field("tls_listening_port", &self.tls_listening_port)
            .field("relay_ips", &self.relay_ips)
            .field("external_ips", &self.external_ips)
            .field("ports", &(self.min_port..=self.max_port))
            .field("realm", &self.realm)
            .field("users", &self.users)
            .field("use_auth_secret", &self.use_auth_secret)
            .field(
                "static_auth_secret",
                &self.static_auth_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_loopback_peers", &self.allow_loopback_peers)
            .field("user_quota", &self.user_quota)
            .field("total_quota", &self.total_quota)
            .field("max_bps", &self.max_bps)
            .finish_non_exhaustive()
    }
}

fn flag(value: Option<&str>) -> Result<bool, String> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("1") | Some("true") | Some("yes") | Some("on") => Ok(true),
        Some("0") | Some("false") | Some("no") | Some("off") => Ok(false),
        Some(v) => Err(format!("expected a boolean, got {v:?}")),
    }
}

fn need(value: Option<&str>) -> Result<&str, String> {
    match value.map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err("needs a value".into()),
    }
}

fn num<T: std::str::FromStr>(value: Option<&str>) -> Result<T, String> {
    let v = need(value)?;
    v.parse()
        .map_err(|_| format!("expected a number, got {v:?}"))
}

fn ip(value: &str) -> Result<IpAddr, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("expected an IP address, got {value:?}"))
}

fn unquote(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v)
}

/// coturn keys that are accepted and deliberately ignored (no effect here), so
/// they do not produce "unknown key" noise.
const IGNORED: &[&str] = &[
    "no-stdout-log",
    "simple-log",
    "syslog",
    "pidfile",
    "proc-user",
    "proc-group",
    "server-name",
    "no-software-attribute",
    "no-rfc5780",
    "no-stun-backward-compatibility",
    "response-origin-only-with-rfc5780",
    "no-tlsv1",
    "no-tlsv1_1",
    "dh2066",
    "cli-password",
    "new-log-timestamp",
];

impl RelayConfig {
    /// Read and parse a coturn-style configuration file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<RelayConfig, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parse configuration text. Unknown keys are collected in `warnings` (and
    /// logged), never an error.
    pub fn parse(text: &str) -> Result<RelayConfig, ConfigError> {
        let mut cfg = RelayConfig::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = match line.find(|c: char| c == '=' || c.is_whitespace()) {
                // `key = value` splits at the blank; drop the '=' that follows it.
                Some(p) if line.as_bytes()[p] != b'=' => (
                    &line[..p],
                    Some(line[p..].trim_start().trim_start_matches('=').trim()),
                ),
                Some(p) => (line[..p].trim(), Some(line[p + 1..].trim())),
                None => (line, None),
            };
            let key = key.trim_start_matches("--");
            cfg.set(key, value)
                .map_err(|message| ConfigError::Invalid {
                    line: i + 1,
                    key: key.to_owned(),
                    message,
                })?;
        }
        Ok(cfg)
    }

    /// Apply one setting. Used for file lines and for command-line overrides, so
    /// both accept exactly the same keys and values.
    pub fn set(&mut self, key: &str, value: Option<&str>) -> Result<(), String> {
        let value = value.map(unquote);
        match key {
            "listening-ip" => self.listening_ips.push(ip(need(value)?)?),
            "listening-port" => self.listening_port = num(value)?,
            "tls-listening-port" => self.tls_listening_port = num(value)?,
            "relay-ip" => self.relay_ips.push(ip(need(value)?)?),
            "external-ip" => {
                let v = need(value)?;
                let mapping = match v.split_once('/') {
                    Some((public, private)) => (ip(public)?, Some(ip(private)?)),
                    None => (ip(v)?, None),
                };
                self.external_ips.push(mapping);
            }
            "min-port" => self.min_port = num(value)?,
            "max-port" => self.max_port = num(value)?,
            "realm" => self.realm = need(value)?.to_owned(),
            "user" => {
                let v = need(value)?;
                let (name, secret) = v
                    .split_once(':')
                    .ok_or_else(|| "expected name:password".to_string())?;
                if name.is_empty() {
                    return Err("empty user name".into());
                }
                let secret = match secret.strip_prefix("0x") {
                    Some(hex) if hex.len() == 32 => UserSecret::Key(parse_key(hex)?),
                    _ => UserSecret::Password(secret.to_owned()),
                };
                self.users.retain(|u| u.name != name);
                self.users.push(User {
                    name: name.to_owned(),
                    secret,
                });
            }
            "lt-cred-mech" | "a" => self.lt_cred_mech = flag(value)?,
            "no-auth" | "z" => self.no_auth = flag(value)?,
            "use-auth-secret" => self.use_auth_secret = flag(value)?,
            "static-auth-secret" => self.static_auth_secret = Some(need(value)?.to_owned()),
            "cert" => self.cert = Some(need(value)?.into()),
            "pkey" => self.pkey = Some(need(value)?.into()),
            "no-tls" => self.no_tls = flag(value)?,
            "no-dtls" => self.no_dtls = flag(value)?,
            "no-udp" => self.no_udp = flag(value)?,
            "no-tcp" => self.no_tcp = flag(value)?,
            "fingerprint" | "f" => self.fingerprint = flag(value)?,
            "allow-loopback-peers" => self.allow_loopback_peers = flag(value)?,
            "no-multicast-peers" => self.no_multicast_peers = flag(value)?,
            "denied-peer-ip" => self.denied_peer_ips.push(IpRange::parse(need(value)?)?),
            "allowed-peer-ip" => self.allowed_peer_ips.push(IpRange::parse(need(value)?)?),
            "user-quota" => self.user_quota = num(value)?,
            "total-quota" => self.total_quota = num(value)?,
            "max-bps" => self.max_bps = num(value)?,
            "stale-nonce" => {
                // coturn: a bare `stale-nonce` means the default of 600 s.
                self.stale_nonce_secs = match value {
                    None | Some("") => 600,
                    v => num(v)?,
                }
            }
            "max-allocate-lifetime" => self.max_allocate_lifetime_secs = num(value)?,
            "channel-lifetime" => self.channel_lifetime_secs = num(value)?,
            "permission-lifetime" => self.permission_lifetime_secs = num(value)?,
            "log-file" => self.log_file = Some(need(value)?.into()),
            "verbose" | "v" | "Verbose" | "V" => self.verbose = flag(value)?,
            "no-cli" => self.no_cli = flag(value)?,
            "prometheus" => self.prometheus = flag(value)?,
            "prometheus-port" => self.prometheus_port = num(value)?,
            "prometheus-address" => self.prometheus_address = Some(ip(need(value)?)?),
            k if IGNORED.contains(&k) => {}
            k => {
                let w = format!("unknown configuration key {k:?} ignored");
                tracing::warn!("{w}");
                self.warnings.push(w);
            }
        }
        Ok(())
    }

    /// Static users and the REST secret together: coturn refuses the mix (its REST mode
    /// replaces the user database); this relay serves both, and says so at startup, since a
    /// file that mixes them will not run under coturn.
    pub fn mixed_credentials_warning(&self) -> Option<String> {
        (self.use_auth_secret && !self.users.is_empty()).then(|| {
            format!(
                "{} static user(s) and use-auth-secret together: usernames of the form \
                 <expiry>:<name> are checked against the secret, the others against the static \
                 users (coturn refuses this mix and will not run this file)",
                self.users.len()
            )
        })
    }

    /// Cross-field checks, run by `TurnServer::start`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Inconsistent(m.to_owned()));
        if self.min_port == 0 || self.min_port > self.max_port {
            return bad("min-port must be non-zero and not above max-port");
        }
        if self.use_auth_secret && self.static_auth_secret.is_none() {
            return bad("use-auth-secret needs static-auth-secret");
        }
        if self.use_auth_secret {
            // A REST username (`<expiry>[:<name>]`) is checked against the secret, never the
            // static users: such a static user could not log in.
            if let Some(user) = self
                .users
                .iter()
                .find(|u| crate::rest_auth::expiry_of(&u.name).is_some())
            {
                return Err(ConfigError::Inconsistent(format!(
                    "user {:?} has the form of a TURN REST username (<expiry>:<name>), which \
                     use-auth-secret checks against the secret: rename it",
                    user.name
                )));
            }
        }
        if !self.no_auth && !self.use_auth_secret && self.users.is_empty() {
            return bad(
                "no credentials: set user=, use-auth-secret with static-auth-secret, or no-auth",
            );
        }
        if self.realm.is_empty() || self.realm.len() > 127 {
            return bad("realm must be 1..127 characters");
        }
        if self.cert.is_some() != self.pkey.is_some() {
            return bad("cert and pkey go together");
        }
        Ok(())
    }

    /// The secret used for REST credentials, if that scheme is on.
    pub fn rest_secret(&self) -> Option<&str> {
        if self.use_auth_secret {
            self.static_auth_secret.as_deref()
        } else {
            None
        }
    }
}

fn parse_key(hex: &str) -> Result<[u8; 16], String> {
    let mut k = [0u8; 16];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or("bad key")?, 16)
            .map_err(|_| "bad hex key".to_string())?;
    }
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_coturn_syntax() {
        let c = RelayConfig::parse(
            r#"
# comment
listening-port=3479
listening-ip=127.0.0.1
listening-ip = ::1
relay-ip=127.0.0.1
external-ip=203.0.113.5/10.0.0.5
external-ip=2001:db8::5
min-port=40000
max-port=40100
realm=example.org
lt-cred-mech
user=alice:pw:with:colons
user=bob:0x00112233445566778899aabbccddeeff
use-auth-secret
static-auth-secret="s3cret"
fingerprint
allow-loopback-peers
no-multicast-peers
denied-peer-ip=10.0.0.0-10.255.255.255
allowed-peer-ip=10.1.1.1
user-quota=2
total-quota=100
max-bps=64000
stale-nonce
max-allocate-lifetime=1800
channel-lifetime=300
permission-lifetime=120
no-tls
no-dtls
no-cli
verbose
prometheus
log-file=/tmp/x.log
no-stdout-log
"#,
        )
        .unwrap();
        assert_eq!(c.listening_port, 3479);
        assert_eq!(c.listening_ips.len(), 2);
        assert_eq!(c.external_ips[0].1, Some("10.0.0.5".parse().unwrap()));
        assert_eq!(c.external_ips[1].1, None);
        assert_eq!((c.min_port, c.max_port), (40000, 40100));
        assert_eq!(c.realm, "example.org");
        assert_eq!(
            c.users[0].secret,
            UserSecret::Password("pw:with:colons".into())
        );
        assert!(matches!(c.users[1].secret, UserSecret::Key(k) if k[1] == 0x11));
        assert_eq!(c.rest_secret(), Some("s3cret"));
        assert!(c.fingerprint && c.allow_loopback_peers && c.no_multicast_peers);
        assert_eq!(c.user_quota, 2);
        assert_eq!(c.max_bps, 64000);
        assert_eq!(c.stale_nonce_secs, 600);
        assert_eq!(c.max_allocate_lifetime_secs, 1800);
        assert!(c.prometheus && c.verbose && c.no_tls);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        c.validate().unwrap();
    }

    #[test]
    fn unknown_key_is_a_warning_naming_it() {
        let c = RelayConfig::parse("user=a:b\nmobility\nfrobnicate=3\n").unwrap();
        assert_eq!(c.warnings.len(), 2);
        assert!(c.warnings[0].contains("\"mobility\""));
        assert!(c.warnings[1].contains("\"frobnicate\""));
    }

    #[test]
    fn bad_values_name_line_and_key() {
        let e = RelayConfig::parse("realm=x\nmin-port=lots\n").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("line 2") && s.contains("min-port"), "{s}");
        assert!(RelayConfig::parse("listening-ip=nope").is_err());
        assert!(RelayConfig::parse("user=nocolon").is_err());
        assert!(RelayConfig::parse("denied-peer-ip=1.2.3.4-1.2.3.1").is_err());
    }

    #[test]
    fn validation() {
        assert!(RelayConfig::parse("realm=x").unwrap().validate().is_err());
        assert!(RelayConfig::parse("use-auth-secret")
            .unwrap()
            .validate()
            .is_err());
        assert!(RelayConfig::parse("no-auth").unwrap().validate().is_ok());
        assert!(RelayConfig::parse("no-auth\nmin-port=5\nmax-port=4")
            .unwrap()
            .validate()
            .is_err());
    }

    #[test]
    fn static_users_beside_the_rest_secret_are_served_with_a_warning() {
        let mixed =
            RelayConfig::parse("user=alice:pw\nuse-auth-secret\nstatic-auth-secret=s").unwrap();
        assert!(mixed.validate().is_ok());
        let warning = mixed.mixed_credentials_warning().expect("a warning");
        assert!(warning.contains("coturn refuses"), "{warning}");
        assert!(RelayConfig::parse("user=alice:pw")
            .unwrap()
            .mixed_credentials_warning()
            .is_none());
        assert!(RelayConfig::parse("use-auth-secret\nstatic-auth-secret=s")
            .unwrap()
            .mixed_credentials_warning()
            .is_none());
        // A static user the secret would shadow cannot log in: refused.
        let shadowed =
            RelayConfig::parse("user=1700000000:pw\nuse-auth-secret\nstatic-auth-secret=s")
                .unwrap();
        let error = shadowed.validate().unwrap_err().to_string();
        assert!(error.contains("REST username"), "{error}");
        assert!(RelayConfig::parse("user=1700000000:pw")
            .unwrap()
            .validate()
            .is_ok());
    }

    #[test]
    fn debug_redacts_secrets() {
        let c =
            RelayConfig::parse("user=alice:hunter2\nuse-auth-secret\nstatic-auth-secret=topsecret")
                .unwrap();
        let d = format!("{c:?}");
        assert!(!d.contains("hunter2") && !d.contains("topsecret"), "{d}");
        assert!(d.contains("alice"));
    }

    #[test]
    fn the_repo_example_parses_cleanly() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../turnserver.conf");
        let c = RelayConfig::from_file(path).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(c.listening_port, 3478);
        assert!(c.use_auth_secret && c.static_auth_secret.is_some());
        assert!(!c.allow_loopback_peers);
        c.validate().unwrap();
    }
}
