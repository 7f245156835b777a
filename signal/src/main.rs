use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use signal::config::{Cli, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SIGNAL_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let config = Config::load(Cli::parse()).context("configuration")?;
    signal::server::serve(config).await.context("server")?;
    Ok(())
}
