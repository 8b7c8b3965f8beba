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
    /// Validate the configuration and rules; print the kernel pre-filter they give.
    Check(RunArgs),
    /// Print the version.
    Version,
    /// Benchmark helper: Loki encoder throughput as JSON lines.
    #[command(name = "bench-loki-encoder", hide = true)]
    BenchLokiEncoder {
        #[arg(long, default_value_t = 200_000)]
        events: usize,
    },
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Configuration file (TOML). Default: /etc/conntrackd/conntrackd.toml if it exists.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log level: debug, info, warn or error.
    #[arg(long = "log.level", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// A rule (`log|drop <expression>`); repeat it for a list. Replaces the config's `filter`.
    #[arg(long = "filter", value_name = "RULE")]
    pub filter: Vec<String>,
}

impl RunArgs {
    pub fn overrides(&self) -> crate::config::Overrides {
        crate::config::Overrides { log_level: self.log_level.clone(), filter: self.filter.clone() }
    }
}

/// Diagnostics go to stderr as `key=value` lines; events go to the sinks.
pub(crate) fn init_logging(level: LevelFilter) {
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let layer = fmt::layer().with_writer(std::io::stderr).with_target(false).with_ansi(ansi);
    let _ = tracing_subscriber::registry().with(layer.with_filter(level)).try_init();
}
