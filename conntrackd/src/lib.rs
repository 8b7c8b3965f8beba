//! conntrackd: logs Linux conntrack events, pre-filtered in the kernel by eBPF.
//!
//! The data flows `source/ -> filter/ -> sink/`, wired together in `app.rs`.
//! [`main_entry`] is the command line; [`fuzzing`] exposes the parsers to
//! the cargo-fuzz targets and nothing else is public.
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

#[doc(hidden)]
pub mod fuzzing;

/// Parses the command line and runs the command.
pub fn main_entry() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Version => {
            println!("conntrackd {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        cli::Command::BenchLokiEncoder { events } => {
            use sink::loki::{config::Encoding, throughput};
            for encoding in [Encoding::Protobuf, Encoding::Json] {
                println!("{}", throughput::measure(events, encoding).json());
            }
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
    if let Some(loki) = &config.loki {
        let default = std::path::Path::new(config::DEFAULT_PATH);
        let file = args.config.as_deref().or(default.exists().then_some(default));
        file.into_iter().for_each(|f| loki.warn_if_secrets_readable(f));
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(app::run(config))
}
