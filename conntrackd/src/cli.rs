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
    keys::{keys, Kind},
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
    /// Print shell completions (`completion bash`, as the original; `completions` works too).
    #[command(visible_alias = "completions")]
    Completion {
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
        CommandKind::Geoip(GeoipCommand::Lookup { args, .. }) => {
            let Some((_, inner)) = sub.subcommand() else { return cli };
            sub = inner;
            args
        }
        CommandKind::Version | CommandKind::Completion { .. } | CommandKind::Man { .. } => return cli,
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
        .mut_subcommand("geoip", |g| g.mut_subcommand("lookup", with_keys))
}

fn with_keys(cmd: Command) -> Command {
    cmd.args(keys().iter().map(|k| {
        let arg = Arg::new(k.path).long(k.path).help(k.help()).value_name("VALUE");
        match k.kind {
            Kind::Bool => arg.num_args(0..=1).require_equals(true).default_missing_value("true").value_name("BOOL"),
            // The original's --sink.loki.labels is a comma-separated list (pflag StringSlice).
            Kind::List if k.path == "sink.loki.labels" => arg.action(ArgAction::Append).value_delimiter(','),
            Kind::List => arg.action(ArgAction::Append),
            // Case as the file's validation takes it; help lists the values.
            // The original's log.level also takes an offset (info+2): the help lists the names.
            Kind::Enum(values) if k.path == "log.level" => {
                let listed = format!("[possible values: {}]", values.join(", "));
                arg.help(format!("{} {listed}", k.help())).value_parser(move |text: &str| level_flag(values, &listed, text))
            }
            Kind::Enum(values) => arg.value_parser(PossibleValuesParser::new(values)).ignore_case(true),
            Kind::Int | Kind::Str | Kind::Url(_) | Kind::Table(_) => arg,
        }
    }))
}

/// `--log.level`: one of the names in any case, optionally with a signed offset.
fn level_flag(names: &[&str], listed: &str, text: &str) -> Result<String, String> {
    let name = text.split(['+', '-']).next().unwrap_or_default();
    let offset = text.get(name.len()..).unwrap_or_default();
    let known = names.iter().any(|n| n.eq_ignore_ascii_case(name));
    if known && (offset.is_empty() || offset.parse::<i64>().is_ok()) {
        Ok(text.to_string())
    } else {
        Err(format!("{listed}, optionally with an offset such as info+2"))
    }
}

fn flag_values(m: &ArgMatches) -> Vec<(&'static str, Vec<String>)> {
    keys().iter().filter_map(|k| m.get_many::<String>(k.path).map(|v| (k.path, v.cloned().collect()))).collect()
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
        for key in keys() {
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

    fn run_flags(args: &[&str]) -> Vec<(&'static str, Vec<String>)> {
        let m = command().try_get_matches_from([&["conntrackd", "run"], args].concat()).unwrap();
        flag_values(m.subcommand_matches("run").unwrap())
    }

    #[test]
    fn loki_labels_split_on_commas_as_the_originals_other_lists_do_not() {
        let flags = run_flags(&["--sink.loki.labels", "env=prod,dc=fra", "--sink.loki.labels=team=net", "--filter", "log any, drop any"]);
        let get = |path| flags.iter().find(|(p, _)| *p == path).map(|(_, v)| v.clone()).unwrap();
        assert_eq!(get("sink.loki.labels"), ["env=prod", "dc=fra", "team=net"]);
        assert_eq!(get("filter"), ["log any, drop any"], "a rule may contain commas");
    }

    #[test]
    fn the_originals_command_names_and_profiler_flags_parse() {
        let flags = run_flags(&["--profiler.enable", "--profiler.address", "http://localhost:4040"]);
        assert!(flags.iter().any(|(p, v)| *p == "profiler.enable" && v == &["true"]), "{flags:?}");
        for name in ["completion", "completions"] {
            let m = command().try_get_matches_from(["conntrackd", name, "bash"]).unwrap();
            assert_eq!(m.subcommand_name(), Some("completion"), "{name}");
        }
    }
}
