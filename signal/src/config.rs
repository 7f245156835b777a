//! Configuration: an optional TOML file (see `signal/config-sample.toml`), overridden by
//! command-line flags, resolved into one [`Config`].

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use clap::Parser;
use serde::Deserialize;

use crate::signaling::rate_limit::RateLimit;

#[derive(Debug, Parser)]
#[command(
    name = "signal",
    version,
    about = "Web server, socket.io signaling and media for self-hosted WebRTC calls"
)]
pub struct Cli {
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
    /// A STUN URL to hand to browsers (repeatable), e.g. stun:stun.example.org:3478.
    #[arg(long = "stun-url", value_name = "URL")]
    pub stun_urls: Vec<String>,
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
    #[serde(default)]
    pub stun_urls: Vec<String>,
    pub rate_limit: Option<RateLimitConfig>,
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
    pub stun_urls: Vec<String>,
    pub rate_limit: RateLimit,
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
        let room_capacity = cli.room_capacity.or(file.room_capacity).unwrap_or(2);
        if room_capacity == 0 {
            return Err(ConfigError::Invalid(
                "room_capacity must be at least 1".into(),
            ));
        }
        Ok(Config {
            listen: cli
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 8443))),
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
            stun_urls: if cli.stun_urls.is_empty() {
                file.stun_urls
            } else {
                cli.stun_urls
            },
            rate_limit,
        })
    }
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
        assert_eq!(config.listen, "0.0.0.0:8443".parse().unwrap());
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
        assert_eq!(config.listen, "127.0.0.1:9000".parse().unwrap());
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
    fn sample_config_parses() {
        let text = include_str!("../config-sample.toml");
        let file: FileConfig = toml::from_str(text).unwrap();
        Config::merge(file, cli(&[])).unwrap();
    }
}
