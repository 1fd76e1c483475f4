//! `presenced [--config FILE] [--bind ADDR] [--demo]`: loads settings, starts
//! logging, runs the service; the one place errors become exit codes.

use clap::Parser;
use presenced::config::{LogFormat, Settings};
use presenced::{demo, Application};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// In-memory user-presence service, a drop-in for Rocket.Chat's users.presence.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML config file (see config/default.toml); PRESENCED_* variables override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen address, e.g. 127.0.0.1:3000 (overrides server.bind).
    #[arg(long, value_name = "ADDR")]
    bind: Option<SocketAddr>,
    /// Seed the users of the upstream API page plus churning simulated users, and
    /// serve the live roster page at /.
    #[arg(long)]
    demo: bool,
}

fn init_logging(settings: &Settings) {
    // RUST_LOG, not a PRESENCED_* name: those are all config keys, and unknown ones stop start-up.
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(settings.log.level.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match settings.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve(settings: Settings, demo: bool) -> std::io::Result<()> {
    let app = Application::build(&settings, demo)?;
    tracing::info!(
        "presenced listening on http://{}:{}",
        settings.server.bind.ip(),
        app.port()
    );
    if demo || settings.ui.roster {
        tracing::info!("roster page: http://localhost:{}/", app.port());
    }
    if demo {
        tracing::info!(
            "demo: try  curl -H 'X-Auth-Token: {}' -H 'X-User-Id: {}' http://localhost:{}/api/v1/users.presence   (ingest token: {})",
            demo::CALLER_TOKEN,
            demo::CALLER_ID,
            app.port(),
            settings.ingest.token.as_deref().map_or(demo::INGEST_TOKEN, |_| "<configured>"),
        );
    }
    app.run_until_stopped().await?;
    tracing::info!("presenced stopped");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut settings = match Settings::load(cli.config.as_deref(), std::env::vars()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("presenced: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(bind) = cli.bind {
        settings.server.bind = bind;
    }
    init_logging(&settings);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("presenced: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(settings, cli.demo)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("presenced: {e}");
            ExitCode::FAILURE
        }
    }
}
