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
    /// GeoIP tools.
    #[command(subcommand)]
    Geoip(GeoipCommand),
    /// Print the version.
    Version,
}

#[derive(Debug, Subcommand)]
pub(crate) enum GeoipCommand {
    /// Print the GeoIP fields the daemon would attach for an address (as a destination).
    Lookup {
        /// The address to look up.
        ip: std::net::IpAddr,
        #[command(flatten)]
        args: RunArgs,
    },
    /// Measure lookup and per-event enrichment cost on one core (used by `cargo xtask bench`).
    #[command(hide = true)]
    Bench {
        /// Lookups per measurement.
        #[arg(long, default_value_t = 2_000_000)]
        lookups: usize,
        #[command(flatten)]
        args: RunArgs,
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
    /// GeoIP City database (MaxMind DB). Replaces the config's `geoip.database`.
    #[arg(long = "geoip.database", value_name = "FILE")]
    pub geoip_database: Option<PathBuf>,
}

impl RunArgs {
    pub fn overrides(&self) -> crate::config::Overrides {
        crate::config::Overrides {
            log_level: self.log_level.clone(),
            filter: self.filter.clone(),
            geoip_database: self.geoip_database.clone(),
        }
    }
}

/// Diagnostics go to stderr as `key=value` lines; events go to the sinks.
pub(crate) fn init_logging(level: LevelFilter) {
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let layer = fmt::layer().with_writer(std::io::stderr).with_target(false).with_ansi(ansi);
    let _ = tracing_subscriber::registry().with(layer.with_filter(level)).try_init();
}
