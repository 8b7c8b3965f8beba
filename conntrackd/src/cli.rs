//! Command line (clap) and logging setup. The flags of `run` and `check` are
//! generated from the configuration key table (`config/keys.rs`), so every
//! key has a flag with the original's dotted name and a help text.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::{io::IsTerminal, path::PathBuf};

use clap::{builder::PossibleValuesParser, Arg, ArgAction, ArgMatches, Args, Command, CommandFactory, FromArgMatches, Parser, Subcommand};
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
    /// Apply the rules to saved events: read event lines (the stream sink's JSON) on stdin, write those the rules log, unchanged.
    /// A line that is not an event is an error naming its number (exit 1 at the end; the other lines are still processed).
    Filter(FilterArgs),
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
    /// Benchmark helper: Loki encoder throughput as JSON lines.
    #[command(name = "bench-loki-encoder", hide = true)]
    BenchLokiEncoder {
        #[arg(long, default_value_t = 200_000)]
        events: usize,
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
pub(crate) struct FilterArgs {
    /// Write every event line as `log|drop<TAB>rule N|no rule<TAB>line` instead of the logged lines only.
    #[arg(long)]
    pub explain: bool,
    #[command(flatten)]
    pub args: RunArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Configuration file: .toml, .yaml/.yml or .json. [default: /etc/conntrackd/conntrackd.{toml,yaml,yml,json} if one exists, else the built-in default]
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
        CommandKind::Run(args) | CommandKind::Check(args) | CommandKind::Filter(FilterArgs { args, .. }) => args,
        CommandKind::Geoip(GeoipCommand::Lookup { args, .. } | GeoipCommand::Bench { args, .. }) => {
            let Some((_, inner)) = sub.subcommand() else { return cli };
            sub = inner;
            args
        }
        CommandKind::Version | CommandKind::Completions { .. } | CommandKind::BenchLokiEncoder { .. } | CommandKind::Man { .. } => return cli,
    };
    args.overrides = Overrides { env: std::env::vars().collect(), flags: flag_values(sub) };
    cli
}

/// The clap command with the key flags added to `run`, `check` and `filter`.
pub(crate) fn command() -> Command {
    Cli::command()
        .mut_subcommand("run", with_keys)
        .mut_subcommand("check", with_keys)
        .mut_subcommand("filter", with_keys)
        .mut_subcommand("geoip", |g| g.mut_subcommand("lookup", with_keys).mut_subcommand("bench", with_keys))
}

fn with_keys(cmd: Command) -> Command {
    cmd.args(KEYS.iter().map(|k| {
        let arg = Arg::new(k.path).long(k.path).help(k.help).value_name("VALUE");
        match k.kind {
            Kind::Bool => arg.num_args(0..=1).require_equals(true).default_missing_value("true").value_name("BOOL"),
            Kind::List => arg.action(ArgAction::Append),
            // Case as the file's validation takes it; help lists the values.
            Kind::Enum(values) => arg.value_parser(PossibleValuesParser::new(values)).ignore_case(true),
            Kind::Int | Kind::Str | Kind::Url(_) => arg,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An enumerated key's flag offers exactly the table's values and refuses others by name.
    #[test]
    fn enum_flags_list_and_check_their_values() {
        let mut cmd = command();
        let help = cmd.find_subcommand_mut("run").expect("run").render_long_help().to_string();
        for key in KEYS {
            let Kind::Enum(values) = key.kind else { continue };
            let listed = format!("[possible values: {}]", values.join(", "));
            assert!(help.contains(&listed), "--{} help lacks {listed}:\n{help}", key.path);
            for value in values {
                let flag = format!("--{}={}", key.path, value.to_ascii_uppercase());
                let m = command().try_get_matches_from(["conntrackd", "run", &flag]).unwrap_or_else(|e| panic!("{flag}: {e}"));
                let (_, run) = m.subcommand().expect("run");
                assert_eq!(flag_values(run), vec![(key.path, vec![value.to_ascii_uppercase()])], "{flag}");
            }
            let flag = format!("--{}=bogus", key.path);
            let err = command().try_get_matches_from(["conntrackd", "run", &flag]).expect_err(&flag).to_string();
            assert!(err.contains("invalid value 'bogus'") && err.contains(&format!("[possible values: {}]", values.join(", "))), "{flag}: {err}");
        }
    }
}
