//! conntrackd: logs Linux conntrack events, pre-filtered in the kernel by eBPF.
//!
//! The data flows `source/ -> filter/ -> sink/`, wired together in `app.rs`.
//! [`main_entry`] is the command line; `fuzzing` (feature `fuzzing`, and in
//! tests) exposes the parsers to the cargo-fuzz targets; with the features
//! `bench` and `testing` (which the benches and tests enable, the daemon's
//! build does not), `bench_support` holds the micro-benchmarks of `benches/`
//! and `testing` the journal transport for the tests against the real
//! journald and the Community ID hash for the test against the reference
//! implementation; nothing else is public.
mod app;
mod cli;
mod commands;
mod config;
mod enrich;
mod event;
mod filter;
mod filter_command;
mod host;
mod metrics;
mod notify;
mod schema;
mod sink;
mod source;

use std::process::ExitCode;

#[cfg(feature = "bench")]
#[doc(hidden)]
pub mod bench_support;
/// Only with the `fuzzing` feature (the fuzz crate's) and in tests.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;

/// For the integration tests: the journal sink's transport (`tests/logsinks`),
/// so an entry larger than any event the kernel can produce today can be sent
/// to the real journald, the configuration key table (`tests/options`) and the
/// Community ID hash (`tests/community_id.rs`).
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing {
    use std::path::Path;

    pub use crate::schema::{Key, Kind};

    /// Every configuration key (`tests/options` derives its cases from them).
    pub fn keys() -> Vec<Key> {
        crate::config::keys::keys().to_vec()
    }

    /// Sets keys in a parsed file as the flags `(path, values)` would.
    pub fn apply_flags(doc: &mut toml::Table, flags: &[(&'static str, Vec<String>)]) -> Result<(), String> {
        crate::config::keys::apply_flags(doc, flags).map_err(|e| e.to_string())
    }

    /// The environment variable of a key path.
    pub fn env_name(path: &str) -> String {
        crate::config::keys::env_name(path)
    }

    /// Sends one entry of `fields` to the journal socket at `socket`;
    /// returns true when it went through a memfd.
    pub fn journal_send(socket: &Path, fields: &[(&str, &[u8])]) -> Result<bool, String> {
        let mut entry = Vec::new();
        for (name, value) in fields {
            crate::sink::journal::put_field(&mut entry, name.as_bytes(), value);
        }
        let sock = crate::sink::journal::JournalSocket::new(socket).map_err(|e| e.to_string())?;
        let route = sock.send(&entry).map_err(|e| e.to_string())?;
        Ok(route == crate::sink::journal::Route::Memfd)
    }

    /// For `tests/community_id.rs`: the event's `community_id` of a flow,
    /// compared there with the reference implementation.
    pub fn community_id(seed: u16, protocol: u8, src: (std::net::IpAddr, u16), dst: (std::net::IpAddr, u16)) -> String {
        crate::event::community_id::CommunityId::new(seed, protocol, src, dst).to_string()
    }
}

/// Parses the command line and runs the command.
pub fn main_entry() -> ExitCode {
    let cli = cli::parse();
    match cli.command {
        cli::CommandKind::Version => {
            stdout(&format!(
                "conntrackd {}\ngit commit: {}\naya: {}\neBPF object sha256: {}\n",
                env!("CARGO_PKG_VERSION"),
                env!("CTD_BUILD_GIT_COMMIT"),
                env!("CTD_BUILD_AYA_VERSION"),
                source::ebpf::program::object_sha256()
            ));
            ExitCode::SUCCESS
        }
        cli::CommandKind::Completion { shell } => {
            // Into a buffer first: clap_complete panics on a closed pipe (`| head`).
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cli::command(), "conntrackd", &mut out);
            stdout(&String::from_utf8_lossy(&out));
            ExitCode::SUCCESS
        }
        cli::CommandKind::Man { dir } => print_or_fail(write_man_pages(&dir)),
        cli::CommandKind::Check(args) => print_or_fail(load(&args).and_then(|config| commands::check_report(&config))),
        cli::CommandKind::Filter(cli::FilterArgs { explain, args }) => match load(&args) {
            Ok(config) => {
                cli::init_logging(config.log.level, config.log.format.as_deref());
                filter_command::run(&config.rules, explain)
            }
            Err(err) => {
                eprintln!("conntrackd: {err}");
                ExitCode::FAILURE
            }
        },
        cli::CommandKind::Geoip(cli::GeoipCommand::Lookup { ip, args }) => print_or_fail(load(&args).and_then(|config| {
            cli::init_logging(config.log.level, config.log.format.as_deref());
            commands::geoip_lookup(&config, ip)
        })),
        cli::CommandKind::Run(args) => match run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("conntrackd: error: {err:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Writes one page per visible command (clap_mangen) into `dir`; returns the list of files.
fn write_man_pages(dir: &std::path::Path) -> anyhow::Result<String> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cmd = cli::command().version(env!("CARGO_PKG_VERSION"));
    clap_mangen::generate_to(cmd, dir).with_context(|| format!("writing manual pages to {}", dir.display()))?;
    let mut names: Vec<String> = std::fs::read_dir(dir)?.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    Ok(names.into_iter().map(|n| n + "\n").collect())
}

fn load(args: &cli::RunArgs) -> anyhow::Result<config::Config> {
    Ok(config::Config::load(args.config.as_deref(), &args.overrides)?)
}

/// Writes to stdout; a closed pipe (`conntrackd version | head -1`) is not an error.
fn stdout(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().write_all(text.as_bytes());
}

/// Prints a command's output, or its error on stderr with a failing exit code.
fn print_or_fail(result: anyhow::Result<String>) -> ExitCode {
    match result {
        Ok(out) => {
            stdout(&out);
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("conntrackd: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: cli::RunArgs) -> anyhow::Result<()> {
    let config = config::Config::load(args.config.as_deref(), &args.overrides)?;
    let level = cli::init_logging(config.log.level, config.log.format.as_deref());
    if let (Some(loki), Some(file)) = (&config.sinks.loki, &config.file) {
        loki.warn_if_secrets_readable(file);
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(app::run(config, app::Reload { path: args.config, overrides: args.overrides, level }))
}
