//! `turn-relay -c turnserver.conf [flags]`: the standalone relay.
//!
//! Flags carry coturn's long names and override the file; they go through the
//! same `RelayConfig::set` as file lines, so both accept identical values.

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use turn_relay::config::RelayConfig;
use turn_relay::TurnServer;

#[derive(Parser, Debug)]
#[command(version, about = "STUN/TURN relay that reads coturn's turnserver.conf")]
struct Args {
    /// Configuration file (coturn syntax).
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    #[arg(short = 'p', long)]
    listening_port: Option<u16>,
    #[arg(long)]
    tls_listening_port: Option<u16>,
    /// Repeatable.
    #[arg(short = 'L', long)]
    listening_ip: Vec<String>,
    /// Repeatable.
    #[arg(short = 'E', long)]
    relay_ip: Vec<String>,
    /// public[/private], repeatable.
    #[arg(short = 'X', long)]
    external_ip: Vec<String>,
    #[arg(long)]
    min_port: Option<u16>,
    #[arg(long)]
    max_port: Option<u16>,
    #[arg(short = 'r', long)]
    realm: Option<String>,
    /// name:password, repeatable.
    #[arg(short = 'u', long)]
    user: Vec<String>,
    #[arg(short = 'a', long)]
    lt_cred_mech: bool,
    #[arg(long)]
    use_auth_secret: bool,
    #[arg(long, env = "TURN_STATIC_AUTH_SECRET", hide_env_values = true)]
    static_auth_secret: Option<String>,
    #[arg(short = 'z', long)]
    no_auth: bool,
    #[arg(long)]
    cert: Option<PathBuf>,
    #[arg(long)]
    pkey: Option<PathBuf>,
    #[arg(long)]
    no_tls: bool,
    #[arg(long)]
    no_udp: bool,
    #[arg(long)]
    no_tcp: bool,
    #[arg(short = 'f', long)]
    fingerprint: bool,
    #[arg(long)]
    allow_loopback_peers: bool,
    #[arg(long)]
    user_quota: Option<u32>,
    #[arg(long)]
    total_quota: Option<u32>,
    #[arg(long)]
    max_bps: Option<u64>,
    #[arg(long)]
    stale_nonce: Option<u64>,
    #[arg(long)]
    prometheus: bool,
    #[arg(long)]
    prometheus_port: Option<u16>,
    #[arg(short = 'l', long)]
    log_file: Option<PathBuf>,
    #[arg(short = 'v', long)]
    verbose: bool,
    /// Any other coturn key, as key or key=value (repeatable).
    #[arg(long = "set", value_name = "KEY[=VALUE]")]
    set: Vec<String>,
}

impl Args {
    /// Overrides as (key, value) pairs in coturn's vocabulary.
    fn overrides(&self) -> Vec<(String, Option<String>)> {
        let mut o: Vec<(String, Option<String>)> = Vec::new();
        let mut kv = |k: &str, v: Option<String>| o.push((k.to_owned(), v));
        let s = |v: &dyn ToString| Some(v.to_string());
        if let Some(v) = self.listening_port {
            kv("listening-port", s(&v))
        }
        if let Some(v) = self.tls_listening_port {
            kv("tls-listening-port", s(&v))
        }
        for v in &self.listening_ip {
            kv("listening-ip", s(v))
        }
        for v in &self.relay_ip {
            kv("relay-ip", s(v))
        }
        for v in &self.external_ip {
            kv("external-ip", s(v))
        }
        if let Some(v) = self.min_port {
            kv("min-port", s(&v))
        }
        if let Some(v) = self.max_port {
            kv("max-port", s(&v))
        }
        if let Some(v) = &self.realm {
            kv("realm", s(v))
        }
        for v in &self.user {
            kv("user", s(v))
        }
        if let Some(v) = &self.static_auth_secret {
            kv("static-auth-secret", s(v))
        }
        if let Some(v) = &self.cert {
            kv("cert", Some(v.display().to_string()))
        }
        if let Some(v) = &self.pkey {
            kv("pkey", Some(v.display().to_string()))
        }
        if let Some(v) = self.user_quota {
            kv("user-quota", s(&v))
        }
        if let Some(v) = self.total_quota {
            kv("total-quota", s(&v))
        }
        if let Some(v) = self.max_bps {
            kv("max-bps", s(&v))
        }
        if let Some(v) = self.stale_nonce {
            kv("stale-nonce", s(&v))
        }
        if let Some(v) = self.prometheus_port {
            kv("prometheus-port", s(&v))
        }
        if let Some(v) = &self.log_file {
            kv("log-file", Some(v.display().to_string()))
        }
        for (on, key) in [
            (self.lt_cred_mech, "lt-cred-mech"),
            (self.use_auth_secret, "use-auth-secret"),
            (self.no_auth, "no-auth"),
            (self.no_tls, "no-tls"),
            (self.no_udp, "no-udp"),
            (self.no_tcp, "no-tcp"),
            (self.fingerprint, "fingerprint"),
            (self.allow_loopback_peers, "allow-loopback-peers"),
            (self.prometheus, "prometheus"),
            (self.verbose, "verbose"),
        ] {
            if on {
                kv(key, None);
            }
        }
        for v in &self.set {
            match v.split_once('=') {
                Some((k, val)) => kv(k, Some(val.to_owned())),
                None => kv(v, None),
            }
        }
        o
    }
}

fn init_logging(cfg: &RelayConfig) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let default = if cfg.verbose {
        "turn_relay=debug,info"
    } else {
        "info"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match &cfg.log_file {
        // coturn's "stdout" pseudo-file.
        Some(p) if p.as_os_str() != "stdout" => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening log file {}", p.display()))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f))
                .init();
        }
        _ => builder.with_writer(std::io::stderr).init(),
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut cfg = match &args.config {
        Some(p) => RelayConfig::from_file(p).with_context(|| format!("loading {}", p.display()))?,
        None => RelayConfig::default(),
    };
    for (k, v) in args.overrides() {
        cfg.set(&k, v.as_deref())
            .map_err(|e| anyhow::anyhow!("--{k}: {e}"))?;
    }
    init_logging(&cfg)?;
    // Warnings were gathered before the subscriber existed; log them now.
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let nofile = raise_nofile_limit();
    tracing::debug!(nofile, "open file limit (one descriptor per allocation)");
    let server = TurnServer::start(cfg).await.context("starting the relay")?;
    if let Some(m) = server.metrics_addr() {
        tracing::info!("metrics on http://{m}/metrics");
    }
    wait_for_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

/// Every allocation holds a relay socket, so raise the soft open-file limit to
/// the hard one (coturn does the same). Returns the limit in force.
fn raise_nofile_limit() -> libc::rlim_t {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 && rl.rlim_cur < rl.rlim_max {
            let want = libc::rlimit {
                rlim_cur: rl.rlim_max,
                rlim_max: rl.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                rl = want;
            }
        }
    }
    rl.rlim_cur
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
