//! conntrackd: logs Linux conntrack events, pre-filtered in the kernel by eBPF.
//!
//! This is the edge of the program: command line, logging setup, runtime.
//! The data flows `source/ -> sink/`, wired together in `app.rs`.
mod app;
mod cli;
mod config;
mod event;
mod filter;
mod sink;
mod source;
mod time;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Version => {
            println!("conntrackd {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        cli::Command::Check(args) => match config::Config::load(args.config.as_deref(), &args.overrides()) {
            Ok(config) => {
                print!("{}", app::check_report(&config));
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("conntrackd: {err}");
                ExitCode::FAILURE
            }
        },
        cli::Command::Run(args) => match run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("conntrackd: error: {err:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run(args: cli::RunArgs) -> anyhow::Result<()> {
    let config = config::Config::load(args.config.as_deref(), &args.overrides())?;
    cli::init_logging(config.log.level);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(app::run(config))
}
