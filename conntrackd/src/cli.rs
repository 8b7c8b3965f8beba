//! Command line (clap) and logging setup. The flags of `run` and `check` are
//! generated from the configuration key table (`config/keys.rs`), so every
//! key has a flag with the original's dotted name and a help text.
use std::{io::IsTerminal, path::PathBuf};

use clap::{Arg, ArgAction, ArgMatches, Args, Command, CommandFactory, FromArgMatches, Parser, Subcommand};
use tracing_subscriber::{filter::LevelFilter, fmt, prelude::*, reload};

use crate::config::{
    keys::{Kind, KEYS},
    Overrides,
};

/// Log Linux conntrack events, pre-filtered in the kernel by eBPF.
#[derive(Debug, Parser)]
#[command(name = "conntrackd", version)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: CommandKind,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CommandKind {
    /// Run the daemon.
    Run(RunArgs),
    /// Validate the configuration and rules; print the kernel pre-filter they give. Exits 1 on errors.
    Check(RunArgs),
    /// GeoIP tools.
    #[command(subcommand)]
    Geoip(GeoipCommand),
    /// Print the version, git commit, aya version and the eBPF object's hash.
    Version,
    /// Print shell completions.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (conntrackd.1, conntrackd-run.1, ...) into a directory (used by `cargo xtask dist`).
    #[command(hide = true)]
    Man {
        /// Output directory; created if missing.
        dir: PathBuf,
    },
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
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Configuration file (TOML). [default: /etc/conntrackd/conntrackd.toml if it exists, else the built-in default]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[arg(skip)]
    pub overrides: Overrides,
}

/// Parses the command line, with one flag per configuration key.
pub(crate) fn parse() -> Cli {
    let matches = command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let Some((_, mut sub)) = matches.subcommand() else { return cli };
    let args = match &mut cli.command {
        CommandKind::Run(args) | CommandKind::Check(args) => args,
        CommandKind::Geoip(GeoipCommand::Lookup { args, .. }) => {
            let Some((_, inner)) = sub.subcommand() else { return cli };
            sub = inner;
            args
        }
        CommandKind::Version | CommandKind::Completions { .. } | CommandKind::Man { .. } => return cli,
    };
    args.overrides = Overrides { env: std::env::vars().collect(), flags: flag_values(sub) };
    cli
}

/// The clap command with the key flags added to `run` and `check`.
pub(crate) fn command() -> Command {
    Cli::command().mut_subcommand("run", with_keys).mut_subcommand("check", with_keys).mut_subcommand("geoip", |g| g.mut_subcommand("lookup", with_keys))
}

fn with_keys(cmd: Command) -> Command {
    cmd.args(KEYS.iter().map(|k| {
        let arg = Arg::new(k.path).long(k.path).help(k.help).value_name("VALUE");
        match k.kind {
            Kind::Bool => arg.num_args(0..=1).require_equals(true).default_missing_value("true").value_name("BOOL"),
            Kind::List => arg.action(ArgAction::Append),
            Kind::Int | Kind::Str => arg,
        }
    }))
}

fn flag_values(m: &ArgMatches) -> Vec<(&'static str, Vec<String>)> {
    KEYS.iter().filter_map(|k| m.get_many::<String>(k.path).map(|v| (k.path, v.cloned().collect()))).collect()
}

/// Handle to change the log level on reload.
pub(crate) type LevelHandle = reload::Handle<LevelFilter, tracing_subscriber::Registry>;

/// Diagnostics go to stderr: text on a terminal, JSON lines otherwise, or as `format` says.
pub(crate) fn init_logging(level: LevelFilter, format: Option<&str>) -> Option<LevelHandle> {
    let json = match format {
        Some(f) => f == "json",
        None => !std::io::stderr().is_terminal(),
    };
    let (filter, handle) = reload::Layer::new(level);
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry.with(fmt::layer().json().flatten_event(true).with_writer(std::io::stderr).with_target(false)).try_init()
    } else {
        let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        registry.with(fmt::layer().with_writer(std::io::stderr).with_target(false).with_ansi(ansi)).try_init()
    };
    result.ok().map(|()| handle)
}
