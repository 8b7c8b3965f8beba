//! conntrackd: logs Linux conntrack events, pre-filtered in the kernel by eBPF.
//!
//! The data flows `source/ -> filter/ -> sink/`, wired together in `app.rs`.
//! [`main_entry`] is the command line; [`fuzzing`] exposes the parsers to
//! the cargo-fuzz targets and nothing else is public.
mod app;
mod cli;
mod config;
mod enrich;
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
        cli::Command::Check(args) => print_or_fail(load(&args).and_then(|config| app::check_report(&config))),
        cli::Command::Geoip(cli::GeoipCommand::Lookup { ip, args }) => print_or_fail(load(&args).and_then(|config| {
            cli::init_logging(config.log.level);
            app::geoip_lookup(&config, ip)
        })),
        cli::Command::Geoip(cli::GeoipCommand::Bench { lookups, args }) => {
            print_or_fail(load(&args).and_then(|config| Ok(enrich::bench::run(&config.geoip, lookups)?)))
        }
        cli::Command::Run(args) => match run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("conntrackd: error: {err:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn load(args: &cli::RunArgs) -> anyhow::Result<config::Config> {
    Ok(config::Config::load(args.config.as_deref(), &args.overrides())?)
}

/// Prints a command's output, or its error on stderr with a failing exit code.
fn print_or_fail(result: anyhow::Result<String>) -> ExitCode {
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("conntrackd: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: cli::RunArgs) -> anyhow::Result<()> {
    let config = config::Config::load(args.config.as_deref(), &args.overrides())?;
    cli::init_logging(config.log.level);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(app::run(config))
}
