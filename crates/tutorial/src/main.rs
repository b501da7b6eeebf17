//! `tutorial`: the production binary with the tutorial's classes added, to run your own
//! hosts without touching the `production` crate.
//!
//! ```sh
//! cargo run -p tutorial                          # run crates/tutorial/tutorial.toml
//! cargo run -p tutorial -- validate [CONFIG]     # check a config against these classes
//! cargo run -p tutorial -- run [CONFIG]
//! ```
//!
//! Operate it with the `production` CLI: `cargo run -p production -- --config
//! crates/tutorial/tutorial.toml status` (the CLI finds the address in the config).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use interop::{Production, ProductionConfig};

const DEFAULT_CONFIG: &str = "crates/tutorial/tutorial.toml";

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, config) = match args.as_slice() {
        [] => ("run", DEFAULT_CONFIG),
        [command] => (command.as_str(), DEFAULT_CONFIG),
        [command, config] => (command.as_str(), config.as_str()),
        _ => ("help", ""),
    };
    let config = PathBuf::from(config);
    match command {
        "run" => run(&config),
        "validate" => validate(&config),
        _ => {
            eprintln!("usage: tutorial [run|validate] [CONFIG] (default: {DEFAULT_CONFIG})");
            ExitCode::from(2)
        }
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
    match tutorial::registry().validate(&config) {
        Ok(items) => {
            println!("{}: valid ({} items)", path.display(), items.len());
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

fn run(path: &Path) -> ExitCode {
    let system = actix_rt::System::new();
    match system.block_on(serve(path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(path: &Path) -> Result<(), String> {
    let registry = Arc::new(tutorial::registry());
    let config = interop::ProductionConfig::load(path).map_err(|e| e.to_string())?;
    production::server::check_exposure(&config)?;
    let production = Production::start(config, registry, Some(path.to_path_buf()))
        .await
        .map_err(|e| e.to_string())?;
    let server = match production::server::serve(production.clone()) {
        Ok(s) => s,
        Err(e) => {
            production.stop().await;
            return Err(format!("cannot listen: {e}"));
        }
    };
    log::info!("production running; portal: http://{}/portal", server.addr);
    let _ = tokio::signal::ctrl_c().await;
    server.stop().await;
    production.stop().await;
    Ok(())
}
