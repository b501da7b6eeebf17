//! `production`: run a production, validate its config, or operate a running one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use interop::{Production, ProductionConfig};

// Messages are allocated on the actor threads and freed on the store's writer thread;
// glibc's allocator spends a large share of an ingest on exactly that (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "production",
    version,
    about = "Run and operate an interop-rs production"
)]
struct Cli {
    /// The production's config file.
    #[arg(
        long,
        short,
        global = true,
        default_value = "config/production.toml",
        env = "INTEROP_CONFIG"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the production in this process (the default).
    Run,
    /// Check a config: classes, settings, targets and message contracts.
    Validate,
    /// Create a host crate from a template, register its class and add a disabled item
    /// for it to the config: `production new operation op-audit`.
    New(production::scaffold::NewArgs),
    /// Operate a running production through its management API.
    #[command(flatten)]
    Api(production::cli::ApiCommand),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Validate => validate(&cli.config),
        Command::Run => start(&cli.config),
        Command::New(args) => production::scaffold::run(&cli.config, &args),
        Command::Api(command) => production::cli::run(&cli.config, command),
    }
}

fn validate(path: &Path) -> ExitCode {
    let config = match ProductionConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match production::registry().validate(&config) {
        Ok(items) => {
            println!(
                "{}: production '{}' is valid ({} items)",
                path.display(),
                config.production.name,
                items.len()
            );
            for i in items {
                println!(
                    "  {:<20} {:<12} {}{}",
                    i.config.name,
                    i.class.name,
                    i.class.kind.as_str(),
                    if i.config.enabled { "" } else { " (disabled)" }
                );
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{}: {} error(s):", path.display(), errors.len());
            for e in errors {
                eprintln!("  error: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

fn start(path: &Path) -> ExitCode {
    let system = actix::System::new();
    let result = system.block_on(run(path.to_path_buf()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(path: PathBuf) -> anyhow::Result<()> {
    let registry = Arc::new(production::registry());
    let config = interop::ProductionConfig::load(&path)?;
    // Refuse before anything starts: no item should run behind an exposed, open API.
    production::server::check_exposure(&config).map_err(anyhow::Error::msg)?;
    let production = Production::start(config, registry, Some(path)).await?;
    let server = match production::server::serve(production.clone()) {
        Ok(s) => s,
        Err(e) => {
            production.stop().await;
            anyhow::bail!(
                "cannot listen on {}: {e}",
                production.config().production.http
            );
        }
    };
    log::info!(
        "production '{}' running; HTTP on http://{} (portal: http://{}/portal)",
        production.name(),
        server.addr,
        server.addr
    );
    wait_for_signal().await;
    log::info!("signal received: stopping");
    server.stop().await;
    production.stop().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
