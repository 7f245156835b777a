use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use signal::config::{Cli, Command, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SIGNAL_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let mut cli = Cli::parse();
    if let Some(Command::Token(args)) = cli.command.take() {
        println!("{}", args.mint().context("token")?);
        return Ok(());
    }
    let config = Config::load(cli).context("configuration")?;
    signal::server::serve(config).await.context("server")?;
    Ok(())
}
