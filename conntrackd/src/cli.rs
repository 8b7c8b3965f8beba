//! Command line (clap) and logging setup.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use tracing_subscriber::{filter::LevelFilter, fmt, prelude::*};

/// Log Linux conntrack events, pre-filtered in the kernel by eBPF.
#[derive(Debug, Parser)]
#[command(name = "conntrackd", version)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the daemon.
    Run(RunArgs),
    /// Print the version.
    Version,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Configuration file (TOML). Default: /etc/conntrackd/conntrackd.toml if it exists.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log level: debug, info, warn or error.
    #[arg(long = "log.level", value_name = "LEVEL")]
    pub log_level: Option<String>,
}

/// Diagnostics go to stderr as `key=value` lines; events go to the sinks.
pub(crate) fn init_logging(level: LevelFilter) {
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let layer = fmt::layer().with_writer(std::io::stderr).with_target(false).with_ansi(ansi);
    let _ = tracing_subscriber::registry().with(layer.with_filter(level)).try_init();
}
