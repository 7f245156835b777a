//! Configuration: an optional TOML file (see `signal/config-sample.toml`), overridden by
//! command-line flags, resolved into one [`Config`].

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use clap::Parser;
use serde::Deserialize;

use crate::{
    access::{AccessConfig, MIN_OPERATOR_TOKEN_LEN},
    recordings::{catalog::Limits, room::RoomRecordingConfig, RecordingsConfig},
    signaling::rate_limit::RateLimit,
};

#[derive(Debug, Parser)]
#[command(
    name = "signal",
    version,
    about = "Web server, socket.io signaling and media for self-hosted WebRTC calls",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// TOML configuration file; flags override its values.
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address and port of the HTTPS (web + socket.io) listener [default: 0.0.0.0:8443].
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain; with --key. Without both, CERT_DIR/cert.pem is used or generated.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key; with --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Where a self-signed development certificate is kept [default: certs].
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Directory of the web client [default: public].
    #[arg(long, value_name = "DIR")]
    pub public_dir: Option<PathBuf>,
    /// Members allowed in one room [default: 2].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub room_capacity: Option<u16>,
    /// Also listen for plain HTTP on this port and redirect it to HTTPS.
    #[arg(long, value_name = "PORT")]
    pub http_redirect_port: Option<u16>,
    /// Serve plain HTTP instead of HTTPS (behind a TLS-terminating proxy, or for benchmarks).
    /// Browsers only allow camera access on https:// or localhost.
    #[arg(long)]
    pub plain_http: bool,
    /// Host name (or IP) put in the STUN/TURN URLs handed to browsers [default: the name the
    /// browser used to reach this server]. Set it when browsers reach the web page through a
    /// name that does not lead to this machine's TURN ports (a CDN or a proxy elsewhere).
    #[arg(long, value_name = "NAME")]
    pub public_host: Option<String>,
    /// A STUN URL to hand to browsers (repeatable), e.g. stun:stun.example.org:3478.
    #[arg(long = "stun-url", value_name = "URL")]
    pub stun_urls: Vec<String>,
    /// UDP ports the SFU's media socket may bind (the first free one; all participants
    /// share it), e.g. 40000-40009 [default: any port]. Config file: `[sfu] ports`.
    #[arg(long, value_name = "MIN-MAX")]
    pub rtc_ports: Option<String>,
    /// Address put in the SFU's ICE candidates (NAT 1:1, like coturn's external-ip).
    /// Config file: `[sfu] public_ip`.
    #[arg(long, value_name = "IP")]
    pub public_ip: Option<std::net::IpAddr>,
    /// Participants allowed in one SFU room [default: 16]. Config file: `[sfu] room_capacity`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub sfu_room_capacity: Option<u16>,
    /// Start the embedded TURN relay from this coturn-style file (the format of
    /// turn-relay and coturn). Without it the relay runs on defaults: UDP+TCP 3478 on all
    /// addresses, REST-API credentials with a secret generated at startup.
    #[arg(long, value_name = "FILE", conflicts_with = "no_turn")]
    pub turn_config: Option<PathBuf>,
    /// Do not start the embedded TURN relay.
    #[arg(long)]
    pub no_turn: bool,
    /// TURN URL handed to browsers instead of the ones derived from the embedded relay's
    /// listeners (repeatable; `{host}` stands for the host the page was loaded from). With
    /// --no-turn, this points browsers at an external relay sharing --turn-secret.
    #[arg(long = "turn-url", value_name = "URL")]
    pub turn_urls: Vec<String>,
    /// Shared secret of an external relay (coturn's static-auth-secret), with --no-turn.
    #[arg(
        long,
        value_name = "SECRET",
        env = "SIGNAL_TURN_SECRET",
        hide_env_values = true
    )]
    pub turn_secret: Option<String>,
    /// How long the TURN credentials handed to a browser stay valid, in seconds
    /// [default: 43200]. A relayed call outliving them cannot refresh its allocation.
    #[arg(long, value_name = "SECONDS")]
    pub turn_credential_ttl: Option<u64>,
    /// An origin (scheme://host[:port]) besides this server's own whose pages may open
    /// signaling connections (repeatable). Config file: `[access] allowed_origins`.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<String>,
    /// Bearer token for the operator endpoints (GET /api/rooms, /api/stats, /metrics); without one
    /// they are off. Config file: `[access] operator_token`.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "SIGNAL_OPERATOR_TOKEN",
        hide_env_values = true
    )]
    pub operator_token: Option<String>,
    /// Secret of the join tokens (at least 32 characters): with it, every signaling
    /// connection and ICE-servers request needs a token (`signal token`, docs/security.md).
    /// Config file: `[access] auth_secret`.
    #[arg(
        long,
        value_name = "SECRET",
        env = "SIGNAL_AUTH_SECRET",
        hide_env_values = true
    )]
    pub auth_secret: Option<String>,
    /// Where recordings made in the browser are kept [default: recordings]. Config file:
    /// `[recordings] dir`.
    #[arg(long, value_name = "DIR")]
    pub recordings_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print a join token for a room (docs/security.md shows how a backend mints them).
    Token(TokenArgs),
}

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// The room: a name, `prefix*` for every room starting with it, or `*`.
    #[arg(long)]
    pub room: String,
    /// Who the bearer is (your application's user id).
    #[arg(long)]
    pub identity: String,
    /// How long it is valid: seconds, or 90s, 30m, 2h, 7d.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ttl: std::time::Duration,
    /// Join as a viewer: no camera, microphone or screen.
    #[arg(long)]
    pub no_publish: bool,
    /// May start and stop the server's recording of the room.
    #[arg(long)]
    pub record: bool,
    /// May put the room on air for live viewers (HLS).
    #[arg(long)]
    pub live: bool,
    /// May moderate the room: remove a participant, mute someone's audio, end the room.
    #[arg(long)]
    pub moderate: bool,
    /// The auth secret [default: `[access] auth_secret` of --config].
    #[arg(long, env = "SIGNAL_AUTH_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// The server's configuration file, to read the secret from.
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `3600`, `90s`, `30m`, `2h`, `7d`.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: a number of seconds, or with s, m, h or d"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    if seconds == 0 {
        return Err("a token must live at least one second".into());
    }
    Ok(std::time::Duration::from_secs(seconds))
}

impl TokenArgs {
    /// The token these arguments describe, minted now.
    pub fn mint(&self) -> Result<String, ConfigError> {
        let secret = match &self.secret {
            Some(secret) => secret.clone(),
            None => self
                .config
                .as_deref()
                .map(read_file)
                .transpose()?
                .and_then(|file| file.access?.auth_secret)
                .ok_or_else(|| {
                    ConfigError::Invalid(
                        "no auth secret: give --secret, SIGNAL_AUTH_SECRET, or -c FILE with [access] auth_secret".into(),
                    )
                })?,
        };
        check_auth_secret(&secret)?;
        let now = crate::auth::unix_now();
        let claims = crate::auth::Claims {
            sub: self.identity.clone(),
            room: self.room.clone(),
            exp: now + self.ttl.as_secs(),
            nbf: None,
            iat: Some(now),
            grants: crate::auth::Grants {
                publish: !self.no_publish,
                record: self.record,
                live: self.live,
                moderate: self.moderate,
            },
        };
        Ok(crate::auth::Authority::new(&secret).mint(&claims))
    }
}

fn check_auth_secret(secret: &str) -> Result<(), ConfigError> {
    if secret.len() < crate::auth::MIN_SECRET_LEN {
        return Err(ConfigError::Invalid(format!(
            "the auth secret must be at least {} characters (e.g. `openssl rand -base64 32`)",
            crate::auth::MIN_SECRET_LEN
        )));
    }
    Ok(())
}

/// The file format. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub cert_dir: Option<PathBuf>,
    pub public_dir: Option<PathBuf>,
    pub room_capacity: Option<u16>,
    pub http_redirect_port: Option<u16>,
    pub plain_http: Option<bool>,
    pub public_host: Option<String>,
    #[serde(default)]
    pub stun_urls: Vec<String>,
    pub rate_limit: Option<RateLimitConfig>,
    pub turn: Option<TurnFileConfig>,
    pub sfu: Option<SfuFileConfig>,
    pub access: Option<AccessFileConfig>,
    pub recordings: Option<RecordingsFileConfig>,
    /// Deprecated: `[sfu] ports`.
    pub rtc_ports: Option<String>,
    /// Deprecated: `[sfu] public_ip`.
    pub public_ip: Option<std::net::IpAddr>,
    /// Deprecated: `[sfu] room_capacity`.
    pub sfu_room_capacity: Option<u16>,
}

/// `[sfu]` table: the media plane of multi-party rooms (`/sfu.html`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SfuFileConfig {
    /// UDP ports the media socket may bind, `"MIN-MAX"`; all participants share the first
    /// free one (`--rtc-ports`).
    pub ports: Option<String>,
    /// Address put in the media server's ICE candidates (NAT 1:1; `--public-ip`).
    pub public_ip: Option<std::net::IpAddr>,
    /// Participants per room (`--sfu-room-capacity`).
    pub room_capacity: Option<u16>,
    /// Seconds a browser has to answer an `update`.
    pub update_timeout: Option<u64>,
    /// Seconds a joiner's media has to connect.
    pub connect_timeout: Option<u64>,
    /// Seconds of silence from a connected browser before the server restarts ICE.
    pub silence_limit: Option<u64>,
    /// Seconds media has to come back after the browser answered an ICE restart.
    pub restart_timeout: Option<u64>,
    /// Minimum milliseconds between keyframe requests to one publisher track.
    pub keyframe_interval_ms: Option<u64>,
    /// Codecs offered to browsers, from opus, vp8, vp9, h264, av1, h265.
    pub codecs: Option<Vec<String>>,
    /// Bandwidth estimation toward each subscriber, which picks the layers it gets:
    /// `"remb"` (the browser's own estimate), `"transport-cc"` or `true` (ours, from
    /// transport-wide feedback), `false` (default; docs/sfu.md says why).
    pub bandwidth_estimation: Option<EstimationSetting>,
    /// The estimate each subscriber starts from, kbit/s (default 1000).
    pub start_bitrate_kbps: Option<u32>,
}

/// `bandwidth_estimation`: a switch, or which estimate (anything else is refused by name).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum EstimationSetting {
    Switch(bool),
    Named(String),
    Other(toml::Value),
}

/// `[access]` table: who may use what (docs/security.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessFileConfig {
    /// Origins besides the server's own whose pages may open signaling connections.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Bearer token for the operator endpoints.
    pub operator_token: Option<String>,
    /// Secret of the join tokens.
    pub auth_secret: Option<String>,
}

/// `[recordings]` table: recordings made in the browser and uploaded (docs/recording.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingsFileConfig {
    /// Directory of the files (`--recordings-dir`).
    pub dir: Option<PathBuf>,
    /// Largest recording, MiB.
    pub max_recording_mb: Option<u64>,
    /// What one user (join token identity, else client address) may keep, MiB.
    pub quota_mb: Option<u64>,
    /// All recordings together, MiB.
    pub max_total_mb: Option<u64>,
    /// Seconds without a chunk after which a recording is finished as it is.
    pub idle_seconds: Option<u64>,
    /// A room recording starts a new file per participant after this many seconds.
    pub room_file_seconds: Option<u64>,
    /// A room recording session stops once its files hold this much, MiB.
    pub room_max_mb: Option<u64>,
}

/// `[turn]` table: the embedded relay and the credentials handed to browsers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnFileConfig {
    /// `false` turns the embedded relay off.
    pub enabled: Option<bool>,
    /// coturn-style relay configuration file.
    pub config: Option<PathBuf>,
    #[serde(default)]
    pub urls: Vec<String>,
    pub secret: Option<String>,
    pub credential_ttl: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub burst: u32,
    pub per_second: u32,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub cert_dir: PathBuf,
    pub public_dir: PathBuf,
    pub room_capacity: usize,
    pub http_redirect_port: Option<u16>,
    pub plain_http: bool,
    pub public_host: Option<String>,
    pub stun_urls: Vec<String>,
    pub rate_limit: RateLimit,
    pub turn: TurnSettings,
    /// The SFU's media plane, resolved (bind address from the listener, see
    /// `sfu::NetConfig::for_listener`).
    pub sfu: sfu::SfuConfig,
    pub access: AccessConfig,
    pub recordings: RecordingsConfig,
}

/// What to do about TURN.
#[derive(Clone)]
pub struct TurnSettings {
    /// Run the relay inside this process.
    pub embedded: bool,
    /// The embedded relay's coturn-style file; built-in defaults when `None`.
    pub config: Option<PathBuf>,
    /// URLs handed to browsers instead of derived ones.
    pub urls: Vec<String>,
    /// Secret of an external relay (only without the embedded one).
    pub secret: Option<String>,
    pub credential_ttl: std::time::Duration,
}

impl std::fmt::Debug for TurnSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnSettings")
            .field("embedded", &self.embedded)
            .field("config", &self.config)
            .field("urls", &self.urls)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("credential_ttl", &self.credential_ttl)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    pub fn load(cli: Cli) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Config::merge(file, cli)
    }

    /// Flags win over the file; the file wins over defaults.
    pub fn merge(file: FileConfig, cli: Cli) -> Result<Config, ConfigError> {
        let (cert, key) = match (cli.cert, cli.key) {
            (Some(cert), Some(key)) => (Some(cert), Some(key)),
            _ => (file.cert, file.key),
        };
        if cert.is_some() != key.is_some() {
            return Err(ConfigError::Invalid(
                "cert and key must be given together".into(),
            ));
        }
        let rate_limit = match file.rate_limit {
            Some(RateLimitConfig { burst, per_second }) if burst == 0 || per_second == 0 => {
                return Err(ConfigError::Invalid(
                    "rate_limit.burst and rate_limit.per_second must be positive".into(),
                ))
            }
            Some(RateLimitConfig { burst, per_second }) => RateLimit { burst, per_second },
            None => RateLimit::default(),
        };
        let turn_file = file.turn.unwrap_or_default();
        let turn = TurnSettings {
            embedded: !cli.no_turn && turn_file.enabled.unwrap_or(true),
            config: cli.turn_config.or(turn_file.config),
            urls: if cli.turn_urls.is_empty() {
                turn_file.urls
            } else {
                cli.turn_urls
            },
            secret: cli.turn_secret.or(turn_file.secret),
            credential_ttl: std::time::Duration::from_secs(
                cli.turn_credential_ttl
                    .or(turn_file.credential_ttl)
                    .unwrap_or(12 * 3600),
            ),
        };
        if turn.embedded && turn.secret.is_some() {
            return Err(ConfigError::Invalid(
                "turn secret is for an external relay: with the embedded one, set static-auth-secret in its config file".into(),
            ));
        }
        if !turn.embedded && turn.secret.is_some() == turn.urls.is_empty() {
            return Err(ConfigError::Invalid(
                "an external TURN relay needs both turn urls and its secret".into(),
            ));
        }
        let public_host = cli.public_host.or(file.public_host);
        if let Some(host) = &public_host {
            if !crate::web::is_valid_host(host) {
                return Err(ConfigError::Invalid(format!(
                    "public_host {host:?} is not a host name or IP address (no scheme, no port)"
                )));
            }
        }
        let access = access_config(
            file.access.unwrap_or_default(),
            cli.allowed_origins,
            cli.operator_token,
            cli.auth_secret,
            public_host.clone(),
        )?;
        let room_capacity = cli.room_capacity.or(file.room_capacity).unwrap_or(2);
        if room_capacity == 0 {
            return Err(ConfigError::Invalid(
                "room_capacity must be at least 1".into(),
            ));
        }
        let listen = cli
            .listen
            .or(file.listen)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 8443)));
        let sfu = sfu_config(
            listen,
            SfuFileConfig::with_deprecated_keys(
                file.sfu,
                file.rtc_ports,
                file.public_ip,
                file.sfu_room_capacity,
            )?,
            cli.rtc_ports,
            cli.public_ip,
            cli.sfu_room_capacity,
        )?;
        Ok(Config {
            listen,
            cert,
            key,
            cert_dir: cli
                .cert_dir
                .or(file.cert_dir)
                .unwrap_or_else(|| "certs".into()),
            public_dir: cli
                .public_dir
                .or(file.public_dir)
                .unwrap_or_else(|| "public".into()),
            room_capacity: usize::from(room_capacity),
            http_redirect_port: cli.http_redirect_port.or(file.http_redirect_port),
            plain_http: cli.plain_http || file.plain_http.unwrap_or(false),
            public_host,
            stun_urls: if cli.stun_urls.is_empty() {
                file.stun_urls
            } else {
                cli.stun_urls
            },
            rate_limit,
            turn,
            sfu,
            access,
            recordings: recordings_config(file.recordings.unwrap_or_default(), cli.recordings_dir)?,
        })
    }
}

impl SfuFileConfig {
    /// The `[sfu]` table with the flat keys of earlier versions folded in (each with a
    /// deprecation warning; setting both forms is an error).
    fn with_deprecated_keys(
        table: Option<SfuFileConfig>,
        rtc_ports: Option<String>,
        public_ip: Option<std::net::IpAddr>,
        sfu_room_capacity: Option<u16>,
    ) -> Result<SfuFileConfig, ConfigError> {
        fn fold<T>(
            old_key: &str,
            new_key: &str,
            old: Option<T>,
            new: &mut Option<T>,
        ) -> Result<(), ConfigError> {
            let Some(old) = old else { return Ok(()) };
            if new.is_some() {
                return Err(ConfigError::Invalid(format!(
                    "`{old_key}` and `[sfu] {new_key}` are both set: keep `[sfu] {new_key}`"
                )));
            }
            tracing::warn!("config: `{old_key}` is deprecated; set `{new_key}` in the [sfu] table");
            *new = Some(old);
            Ok(())
        }
        let mut table = table.unwrap_or_default();
        fold("rtc_ports", "ports", rtc_ports, &mut table.ports)?;
        fold("public_ip", "public_ip", public_ip, &mut table.public_ip)?;
        fold(
            "sfu_room_capacity",
            "room_capacity",
            sfu_room_capacity,
            &mut table.room_capacity,
        )?;
        Ok(table)
    }
}

/// `[access]` and its flags (flags replace the file's list and token).
fn access_config(
    file: AccessFileConfig,
    cli_origins: Vec<String>,
    cli_token: Option<String>,
    cli_auth_secret: Option<String>,
    public_host: Option<String>,
) -> Result<AccessConfig, ConfigError> {
    let allowed_origins = if cli_origins.is_empty() {
        file.allowed_origins
    } else {
        cli_origins
    };
    for origin in &allowed_origins {
        let host = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        let valid = host.is_some_and(|h| {
            !h.is_empty()
                && crate::web::is_valid_host(crate::web::strip_port(h))
                && !h.contains('/')
        });
        if !valid {
            return Err(ConfigError::Invalid(format!(
                "allowed origin {origin:?} is not an origin: scheme://host[:port], e.g. https://app.example.org"
            )));
        }
    }
    let operator_token = cli_token.or(file.operator_token);
    if let Some(token) = &operator_token {
        if token.trim().len() < MIN_OPERATOR_TOKEN_LEN || token.trim() != token {
            return Err(ConfigError::Invalid(format!(
                "operator_token must be at least {MIN_OPERATOR_TOKEN_LEN} characters without surrounding spaces \
                 (e.g. `openssl rand -hex 16`)"
            )));
        }
    }
    let auth_secret = cli_auth_secret.or(file.auth_secret);
    if let Some(secret) = &auth_secret {
        check_auth_secret(secret)?;
    }
    Ok(AccessConfig {
        allowed_origins,
        operator_token,
        public_host,
        auth_secret,
    })
}

/// Recordings: the flag over the `[recordings]` table over the defaults.
fn recordings_config(
    file: RecordingsFileConfig,
    dir: Option<PathBuf>,
) -> Result<RecordingsConfig, ConfigError> {
    let mut limits = Limits::default();
    let mib = |key: &str, value: Option<u64>, default: u64| match value {
        None => Ok(default),
        Some(0) => Err(ConfigError::Invalid(format!(
            "[recordings] {key} must be at least 1"
        ))),
        Some(mb) => Ok(mb << 20),
    };
    limits.max_recording_bytes = mib(
        "max_recording_mb",
        file.max_recording_mb,
        limits.max_recording_bytes,
    )?;
    limits.quota_bytes = mib("quota_mb", file.quota_mb, limits.quota_bytes)?;
    limits.max_total_bytes = mib("max_total_mb", file.max_total_mb, limits.max_total_bytes)?;
    limits.idle_seconds = match file.idle_seconds {
        Some(0) => {
            return Err(ConfigError::Invalid(
                "[recordings] idle_seconds must be at least 1".into(),
            ))
        }
        Some(seconds) => seconds,
        None => limits.idle_seconds,
    };
    let mut room = RoomRecordingConfig::default();
    match file.room_file_seconds {
        Some(0) => {
            return Err(ConfigError::Invalid(
                "[recordings] room_file_seconds must be at least 1".into(),
            ))
        }
        Some(seconds) => room.file_length = std::time::Duration::from_secs(seconds),
        None => {}
    }
    if file.room_max_mb.is_some() {
        room.max_bytes = Some(mib("room_max_mb", file.room_max_mb, 0)?);
    }
    Ok(RecordingsConfig {
        dir: dir.or(file.dir).unwrap_or_else(|| "recordings".into()),
        room,
        limits,
    })
}

/// The SFU's settings: flags over the `[sfu]` table over the defaults.
fn sfu_config(
    listen: SocketAddr,
    file: SfuFileConfig,
    rtc_ports: Option<String>,
    public_ip: Option<std::net::IpAddr>,
    room_capacity: Option<u16>,
) -> Result<sfu::SfuConfig, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid(format!("[sfu] {message}"));
    let public_ip = public_ip.or(file.public_ip);
    let mut config = sfu::SfuConfig::new(sfu::NetConfig::for_listener(listen.ip(), public_ip));
    config.ports = rtc_ports
        .or(file.ports)
        .map(|text| sfu::net::parse_port_range(&text))
        .transpose()
        .map_err(|e| invalid(format!("ports: {e}")))?;
    let room_capacity = room_capacity.or(file.room_capacity).unwrap_or(16);
    if !(1..=1024).contains(&room_capacity) {
        return Err(invalid("room_capacity must be 1-1024".into()));
    }
    config.room_capacity = usize::from(room_capacity);
    let seconds = |key: &str, value: Option<u64>, default: std::time::Duration| match value {
        None => Ok(default),
        Some(0) => Err(invalid(format!("{key} must be at least 1 second"))),
        Some(secs) => Ok(std::time::Duration::from_secs(secs)),
    };
    config.update_timeout = seconds("update_timeout", file.update_timeout, config.update_timeout)?;
    config.connect_timeout = seconds(
        "connect_timeout",
        file.connect_timeout,
        config.connect_timeout,
    )?;
    config.silence_limit = seconds("silence_limit", file.silence_limit, config.silence_limit)?;
    config.restart_timeout = seconds(
        "restart_timeout",
        file.restart_timeout,
        config.restart_timeout,
    )?;
    if let Some(ms) = file.keyframe_interval_ms {
        config.keyframe_interval = std::time::Duration::from_millis(ms);
    }
    let start_kbps = file.start_bitrate_kbps.unwrap_or(1000);
    if !(30..=100_000).contains(&start_kbps) {
        return Err(invalid("start_bitrate_kbps must be 30-100000".into()));
    }
    let send_side = sfu::BandwidthEstimation::SendSide {
        start_bps: u64::from(start_kbps) * 1000,
    };
    let refused = |value: &dyn std::fmt::Display| {
        invalid(format!(
            "bandwidth_estimation must be true, false, \"remb\", \"transport-cc\" or \"off\", not {value}"
        ))
    };
    config.bandwidth_estimation = match file.bandwidth_estimation {
        None | Some(EstimationSetting::Switch(false)) => sfu::BandwidthEstimation::Off,
        Some(EstimationSetting::Switch(true)) => send_side,
        Some(EstimationSetting::Named(name)) => match name.as_str() {
            "off" => sfu::BandwidthEstimation::Off,
            "remb" => sfu::BandwidthEstimation::Receiver,
            "transport-cc" => send_side,
            other => return Err(refused(&format!("{other:?}"))),
        },
        Some(EstimationSetting::Other(value)) => {
            let described = match value {
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(x) => x.to_string(),
                toml::Value::Array(_) => "a list".into(),
                toml::Value::Table(_) => "a table".into(),
                other => format!("{other:?}"),
            };
            return Err(refused(&described));
        }
    };
    if let Some(codecs) = file.codecs {
        config.codecs = codecs
            .iter()
            .map(|name| name.parse::<sfu::MediaCodec>())
            .collect::<Result<_, _>>()
            .map_err(|e| invalid(format!("codecs: {e}")))?;
        if !config.codecs.contains(&sfu::MediaCodec::Opus) {
            return Err(invalid(
                "codecs must include opus (the only audio codec)".into(),
            ));
        }
        if config.codecs.len() < 2 {
            return Err(invalid("codecs must include a video codec".into()));
        }
    }
    Ok(config)
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source: Box::new(source),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("signal").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults() {
        let config = Config::merge(FileConfig::default(), cli(&[])).unwrap();
        assert_eq!(config.listen, "0.0.0.0:8443".parse::<SocketAddr>().unwrap());
        assert_eq!(config.room_capacity, 2);
        assert_eq!(config.public_dir, PathBuf::from("public"));
        assert!(!config.plain_http);
    }

    #[test]
    fn flags_override_file() {
        let file: FileConfig = toml::from_str(
            "listen = \"127.0.0.1:9000\"\nroom_capacity = 4\n[rate_limit]\nburst = 10\nper_second = 5\n",
        )
        .unwrap();
        let config = Config::merge(file, cli(&["--room-capacity", "3"])).unwrap();
        assert_eq!(
            config.listen,
            "127.0.0.1:9000".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(config.room_capacity, 3);
        assert_eq!(config.rate_limit.burst, 10);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(toml::from_str::<FileConfig>("lisen = \"x\"").is_err());
        assert!(Cli::try_parse_from(["signal", "--room-capacity", "0"]).is_err());
        assert!(Cli::try_parse_from(["signal", "--cert", "c.pem"]).is_err());
        let file: FileConfig = toml::from_str("[rate_limit]\nburst = 0\nper_second = 1\n").unwrap();
        assert!(Config::merge(file, cli(&[])).is_err());
    }

    #[test]
    fn room_recording_settings() {
        let defaults = Config::merge(FileConfig::default(), cli(&[])).unwrap();
        assert_eq!(defaults.recordings.room, RoomRecordingConfig::default());
        assert_eq!(defaults.recordings.room.max_bytes, None);
        let file: FileConfig =
            toml::from_str("[recordings]\nroom_file_seconds = 60\nroom_max_mb = 3\n").unwrap();
        let room = Config::merge(file, cli(&[])).unwrap().recordings.room;
        assert_eq!(room.file_length.as_secs(), 60);
        assert_eq!(room.max_bytes, Some(3 << 20));
        for bad in ["room_max_mb = 0", "room_file_seconds = 0"] {
            let file: FileConfig = toml::from_str(&format!("[recordings]\n{bad}\n")).unwrap();
            assert!(Config::merge(file, cli(&[])).is_err(), "{bad}");
        }
    }

    #[test]
    fn turn_settings() {
        let embedded = Config::merge(FileConfig::default(), cli(&[])).unwrap();
        assert!(embedded.turn.embedded && embedded.turn.config.is_none());
        assert_eq!(embedded.turn.credential_ttl.as_secs(), 12 * 3600);
        let external = cli(&[
            "--no-turn",
            "--turn-url",
            "turn:relay.example:3478",
            "--turn-secret",
            "s",
        ]);
        let external = Config::merge(FileConfig::default(), external).unwrap();
        assert!(!external.turn.embedded && external.turn.secret.is_some());
        assert!(
            !format!("{:?}", external.turn).contains("\"s\""),
            "secret redacted"
        );
        // A secret without URLs (or the reverse) is a half-configured relay.
        assert!(Config::merge(
            FileConfig::default(),
            cli(&["--no-turn", "--turn-secret", "s"])
        )
        .is_err());
        assert!(Config::merge(FileConfig::default(), cli(&["--turn-secret", "s"])).is_err());
        assert!(Cli::try_parse_from(["signal", "--no-turn", "--turn-config", "x"]).is_err());
    }

    #[test]
    fn public_host_is_a_bare_name() {
        let ok = Config::merge(
            FileConfig::default(),
            cli(&["--public-host", "call.example"]),
        );
        assert_eq!(ok.unwrap().public_host.as_deref(), Some("call.example"));
        for bad in ["https://call.example", "call.example:443", "a b"] {
            assert!(
                Config::merge(FileConfig::default(), cli(&["--public-host", bad])).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn sfu_table_flags_and_deprecated_keys() {
        let file: FileConfig = toml::from_str(
            "listen = \"127.0.0.1:9000\"\n[sfu]\nports = \"40000-40009\"\nroom_capacity = 8\n\
             update_timeout = 5\nrestart_timeout = 12\nkeyframe_interval_ms = 250\n\
             codecs = [\"opus\", \"vp8\"]\nbandwidth_estimation = true\nstart_bitrate_kbps = 600\n",
        )
        .unwrap();
        let config = Config::merge(file, cli(&["--sfu-room-capacity", "4"])).unwrap();
        let sfu = &config.sfu;
        assert_eq!(sfu.ports, Some(40000..=40009));
        assert_eq!(sfu.room_capacity, 4, "the flag wins");
        assert_eq!(sfu.update_timeout.as_secs(), 5);
        assert_eq!(sfu.restart_timeout.as_secs(), 12);
        assert_eq!(sfu.connect_timeout.as_secs(), 20, "default");
        assert_eq!(sfu.keyframe_interval.as_millis(), 250);
        assert_eq!(sfu.codecs, [sfu::MediaCodec::Opus, sfu::MediaCodec::Vp8]);
        assert_eq!(
            sfu.bandwidth_estimation,
            sfu::BandwidthEstimation::SendSide { start_bps: 600_000 }
        );
        let estimation = |value: &str| {
            let file: FileConfig =
                toml::from_str(&format!("[sfu]\nbandwidth_estimation = {value}\n")).unwrap();
            Config::merge(file, cli(&[])).map(|c| c.sfu.bandwidth_estimation)
        };
        assert_eq!(
            estimation("\"remb\"").unwrap(),
            sfu::BandwidthEstimation::Receiver
        );
        assert_eq!(estimation("false").unwrap(), sfu::BandwidthEstimation::Off);
        assert!(matches!(
            estimation("\"transport-cc\"").unwrap(),
            sfu::BandwidthEstimation::SendSide {
                start_bps: 1_000_000
            }
        ));
        for (bad, named) in [("\"googcc\"", "\"googcc\""), ("1", "not 1")] {
            let err = estimation(bad).unwrap_err().to_string();
            assert!(err.contains("\"remb\"") && err.contains(named), "{err}");
        }
        assert_eq!(
            sfu.net.bind_ip.to_string(),
            "0.0.0.0",
            "media binds every interface, even behind a proxy on loopback"
        );

        // The flat keys of earlier versions still work…
        let old: FileConfig =
            toml::from_str("rtc_ports = \"50000-50009\"\nsfu_room_capacity = 6\n").unwrap();
        let config = Config::merge(old, cli(&[])).unwrap();
        assert_eq!(config.sfu.ports, Some(50000..=50009));
        assert_eq!(config.sfu.room_capacity, 6);
        // …but not together with the table.
        let both: FileConfig =
            toml::from_str("rtc_ports = \"50000-50009\"\n[sfu]\nports = \"1-2\"\n").unwrap();
        assert!(Config::merge(both, cli(&[])).is_err());
    }

    #[test]
    fn bad_sfu_settings_are_errors() {
        for text in [
            "[sfu]\nports = \"9-1\"",
            "[sfu]\nroom_capacity = 0",
            "[sfu]\nupdate_timeout = 0",
            "[sfu]\ncodecs = [\"opus\", \"theora\"]",
            "[sfu]\ncodecs = [\"vp8\"]",
            "[sfu]\ncodecs = [\"opus\"]",
        ] {
            let file: FileConfig = toml::from_str(text).unwrap();
            assert!(Config::merge(file, cli(&[])).is_err(), "{text}");
        }
        assert!(
            toml::from_str::<FileConfig>("[sfu]\nport = \"1-2\"").is_err(),
            "unknown key"
        );
        assert!(Config::merge(FileConfig::default(), cli(&["--rtc-ports", "10"])).is_err());
    }

    #[test]
    fn access_table_and_flags() {
        let file: FileConfig = toml::from_str(
            "[access]\nallowed_origins = [\"https://app.example\"]\noperator_token = \"0123456789abcdef\"\n",
        )
        .unwrap();
        let config = Config::merge(file, cli(&["--public-host", "call.example"])).unwrap();
        assert_eq!(config.access.allowed_origins, ["https://app.example"]);
        assert_eq!(
            config.access.operator_token.as_deref(),
            Some("0123456789abcdef")
        );
        assert_eq!(config.access.public_host.as_deref(), Some("call.example"));
        let flags = cli(&[
            "--allow-origin",
            "http://localhost:3000",
            "--operator-token",
            "fedcba9876543210",
        ]);
        let config = Config::merge(FileConfig::default(), flags).unwrap();
        assert_eq!(config.access.allowed_origins, ["http://localhost:3000"]);
        assert_eq!(
            config.access.operator_token.as_deref(),
            Some("fedcba9876543210")
        );
        let closed = Config::merge(FileConfig::default(), cli(&[])).unwrap();
        assert_eq!(
            closed.access.operator_token, None,
            "operator endpoints off by default"
        );
        for bad in [
            &["--allow-origin", "app.example"][..],
            &["--allow-origin", "https://app.example/path"],
            &["--allow-origin", "ftp://app.example"],
            &["--allow-origin", "https://"],
            &["--operator-token", "short"],
            &["--operator-token", " 0123456789abcdef"],
        ] {
            assert!(
                Config::merge(FileConfig::default(), cli(bad)).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn sample_config_parses() {
        let text = include_str!("../config-sample.toml");
        let file: FileConfig = toml::from_str(text).unwrap();
        Config::merge(file, cli(&[])).unwrap();
    }
}
