//! `presenced [--config FILE] [--bind ADDR] [--demo]`: loads settings, starts
//! logging, runs the service; the one place errors become exit codes.

use clap::Parser;
use presenced::config::{LogFormat, Settings, CONFIG_FILE_VAR, DEFAULT_TOML};
use presenced::{demo, Application};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Where settings come from and the variables a first start needs, for `--help`.
/// The full key list is `--print-config` (and docs/configuration.md).
const AFTER_HELP: &str = "\
Settings, each layer overriding the one before:
  1. built-in defaults (print them with --print-config)
  2. the TOML file named by --config FILE, else by PRESENCED_CONFIG;
     no other file is looked for
  3. PRESENCED_<SECTION>_<KEY> variables, e.g. PRESENCED_PRESENCE_MAX_IDS=500
  4. flags (--bind)
An unknown key or PRESENCED_* variable, or a bad value, stops start-up with
exit code 2 and a message naming it.

Variables a first start needs:
  PRESENCED_BIND          listen address (server.bind), default 127.0.0.1:3000
  PRESENCED_INGEST_TOKEN  bearer token of the internal API (ingest.token);
                          without one /internal/v1 answers 403
  PRESENCED_CONFIG        the config file, when --config is not given
  RUST_LOG                a full tracing filter, instead of log.level";

/// In-memory user-presence service, a drop-in for Rocket.Chat's users.presence.
#[derive(Debug, Parser)]
#[command(version, about, after_help = AFTER_HELP)]
struct Cli {
    /// TOML config file; PRESENCED_* variables override what it sets.
    #[arg(long, value_name = "FILE", env = CONFIG_FILE_VAR)]
    config: Option<PathBuf>,
    /// Listen address, e.g. 127.0.0.1:3000 (overrides server.bind and PRESENCED_BIND).
    #[arg(long, value_name = "ADDR")]
    bind: Option<SocketAddr>,
    /// Seed the users of the upstream API page plus churning simulated users, and
    /// serve the live roster page at /.
    #[arg(long)]
    demo: bool,
    /// Print the built-in defaults, every key with its meaning, as a config file
    /// to start from, and exit.
    #[arg(long, exclusive = true)]
    print_config: bool,
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
    if cli.print_config {
        print!("{DEFAULT_TOML}");
        return ExitCode::SUCCESS;
    }
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
