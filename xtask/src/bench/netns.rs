//! The benchmark's network: a client namespace `ctbench-cli` and a server
//! namespace `ctbench-srv` joined by a veth pair, created per invocation and
//! always deleted by [`Lab`]'s `Drop`; plus helpers that run commands inside.
//!
//! Packets only ever travel over the veth pair: the client's routes are the
//! connected 203.0.113.0/24 and 10.77.0.0/24 via the server (which holds
//! 10.77.0.10 too), and the server drops the load at input.
use std::{
    io::Write,
    net::Ipv4Addr,
    path::PathBuf,
    process::{Command, Output, Stdio},
    time::Duration,
};

use anyhow::{bail, Context, Result};

use super::process;

pub(crate) const CLIENT: &str = "ctbench-cli";
pub(crate) const SERVER: &str = "ctbench-srv";
/// Where the load goes: the server's address and a port it drops.
pub(crate) const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub(crate) const LOAD_PORT: u16 = 9;
/// The server's second address, in a PRIVATE network (the `mixed` load).
pub(crate) const PRIVATE_SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 10);
const PRIVATE_NET: &str = "10.77.0.0/24";
/// The client's first address; further load sources follow it (.2, .3, ...).
pub(crate) const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const PREFIX_LEN: u8 = 24;
const CLIENT_IF: &str = "ctb0";
const SERVER_IF: &str = "ctb1";
/// Fixed so the client can hold a permanent neighbour entry (no ARP during load).
const SERVER_MAC: &str = "02:cb:00:71:00:0a";

/// Makes conntrack track every packet the client sends.
const CLIENT_RULES: &str = "table inet t {\n\tchain output {\n\t\ttype filter hook output priority 0;\n\t\tct state new,established accept\n\t}\n}\n";
/// Drops the load at the server so no RST (and no conntrack update) comes back.
const SERVER_RULES: &str = "table inet t {\n\tchain input {\n\t\ttype filter hook input priority 0;\n\t\ttcp dport 9 drop\n\t}\n}\n";

/// The two namespaces; dropping it deletes them (and with them the veth pair).
pub(crate) struct Lab {
    created: Vec<&'static str>,
}

impl Lab {
    /// Creates and configures both namespaces; `sources` are the client
    /// addresses the generator sends from (the first must be [`CLIENT_ADDR`]).
    pub fn create(sources: &[Ipv4Addr]) -> Result<Self> {
        remove_stale()?;
        let mut lab = Lab { created: Vec::new() };
        for ns in [CLIENT, SERVER] {
            run(Command::new("ip").args(["netns", "add", ns]), &format!("creating namespace {ns}"))?;
            lab.created.push(ns);
            disable_ipv6(ns)?;
        }
        wire(sources)?;
        configure_client()?;
        nft(SERVER, SERVER_RULES)?;
        Ok(lab)
    }

    /// Empties the client's conntrack table (one DESTROY event per entry).
    pub fn flush_client(&self) -> Result<()> {
        run_in(CLIENT, &["conntrack", "-F"]).map(drop)
    }

    /// [`Lab::flush_client`], returning the CPU `conntrack -F` used (`ip netns
    /// exec` becomes it): the kernel emits each DESTROY event, and runs every
    /// listener's socket filter, in its context. Children reaped meanwhile by
    /// other threads would be counted too; the benchmark reaps none then.
    pub fn flush_client_cpu(&self) -> Result<Duration> {
        let before = process::children_cpu_time()?;
        self.flush_client()?;
        Ok(process::children_cpu_time()?.saturating_sub(before))
    }

    /// Number of entries in the client's conntrack table.
    pub fn client_entries(&self) -> Result<u64> {
        let out = run_in(CLIENT, &["conntrack", "-C"])?;
        out.trim().parse().with_context(|| format!("conntrack -C printed {:?}, not a number", out.trim()))
    }

    /// Number of entries in the client's table whose original destination is `dst`.
    pub fn client_entries_to(&self, dst: Ipv4Addr) -> Result<u64> {
        let out = run_in(CLIENT, &["conntrack", "-L", "-p", "tcp", "-d", &dst.to_string()])?;
        Ok(out.lines().filter(|l| !l.trim().is_empty()).count() as u64)
    }

    /// The client's links, addresses and routes, for a failure report.
    pub fn describe_client(&self) -> String {
        let show = |args: &[&str]| {
            let out = run(Command::new("ip").args(["-n", CLIENT, "-brief"]).args(args), "describing the client");
            out.unwrap_or_else(|err| format!("{err:#}\n"))
        };
        let routes = run(Command::new("ip").args(["-n", CLIENT, "route", "show"]), "listing the client's routes");
        show(&["link"]) + &show(&["addr"]) + &routes.unwrap_or_else(|err| format!("{err:#}\n"))
    }

    /// A sysctl as seen from inside the client namespace.
    pub fn client_sysctl(&self, key: &str) -> Result<String> {
        Ok(run_in(CLIENT, &["sysctl", "-n", key])?.trim().to_string())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.created.drain(..).rev() {
            if let Err(err) = run(Command::new("ip").args(["netns", "delete", ns]), &format!("deleting namespace {ns}")) {
                eprintln!("bench: {err:#}; delete it by hand: ip netns delete {ns}");
            }
        }
    }
}

/// The bind-mounted namespace file `setns` needs.
pub(crate) fn path(ns: &str) -> PathBuf {
    PathBuf::from("/var/run/netns").join(ns)
}

/// `ip netns exec NS` followed by `args`, not yet started.
pub(crate) fn command_in(ns: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).args(args);
    cmd
}

/// Runs `args` inside `ns` and returns its stdout.
pub(crate) fn run_in(ns: &str, args: &[&str]) -> Result<String> {
    run(&mut command_in(ns, args), &format!("{} in {ns}", args.join(" ")))
}

/// Deletes our namespaces left behind by an invocation that was killed.
fn remove_stale() -> Result<()> {
    let list = run(Command::new("ip").args(["netns", "list"]), "listing namespaces")?;
    for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
        if ns == CLIENT || ns == SERVER {
            eprintln!("bench: deleting namespace {ns} left by an earlier run");
            run(Command::new("ip").args(["netns", "delete", ns]), &format!("deleting stale namespace {ns}"))?;
        }
    }
    Ok(())
}

/// No IPv6 in either namespace, so neighbour discovery adds no conntrack entries.
fn disable_ipv6(ns: &str) -> Result<()> {
    if !std::path::Path::new("/proc/sys/net/ipv6").exists() {
        return Ok(());
    }
    for key in ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"] {
        run_in(ns, &["sysctl", "-q", "-w", key])?;
    }
    Ok(())
}

fn wire(sources: &[Ipv4Addr]) -> Result<()> {
    run(
        Command::new("ip").args(["link", "add", CLIENT_IF, "netns", CLIENT, "type", "veth", "peer", "name", SERVER_IF, "netns", SERVER, "address", SERVER_MAC]),
        "creating the veth pair",
    )?;
    if sources.first() != Some(&CLIENT_ADDR) {
        bail!("the first load source must be {CLIENT_ADDR}");
    }
    for addr in sources {
        ip(CLIENT, &["addr", "add", &format!("{addr}/{PREFIX_LEN}"), "dev", CLIENT_IF])?;
    }
    ip(SERVER, &["addr", "add", &format!("{SERVER_ADDR}/{PREFIX_LEN}"), "dev", SERVER_IF])?;
    ip(SERVER, &["addr", "add", &format!("{PRIVATE_SERVER_ADDR}/{PREFIX_LEN}"), "dev", SERVER_IF])?;
    for (ns, dev) in [(CLIENT, CLIENT_IF), (SERVER, SERVER_IF), (CLIENT, "lo"), (SERVER, "lo")] {
        ip(ns, &["link", "set", dev, "up"])?;
    }
    ip(CLIENT, &["neigh", "replace", &SERVER_ADDR.to_string(), "lladdr", SERVER_MAC, "dev", CLIENT_IF, "nud", "permanent"])?;
    // The private address is reached through the server's public one, whose
    // neighbour entry is permanent: no ARP for it either.
    ip(CLIENT, &["route", "add", PRIVATE_NET, "via", &SERVER_ADDR.to_string(), "dev", CLIENT_IF])
}

fn configure_client() -> Result<()> {
    nft(CLIENT, CLIENT_RULES)?;
    // After the ct rule: conntrack is now active in the namespace.
    run_in(CLIENT, &["sysctl", "-q", "-w", "net.netfilter.nf_conntrack_events=1"]).map(drop)
}

fn ip(ns: &str, args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(["-n", ns]).args(args), &format!("ip {} in {ns}", args.join(" "))).map(drop)
}

/// Loads an nft ruleset (given on stdin) inside `ns`.
fn nft(ns: &str, rules: &str) -> Result<()> {
    let what = format!("loading nft rules in {ns}");
    let mut child = command_in(ns, &["nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("{what}: cannot start nft"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(rules.as_bytes()).with_context(|| format!("{what}: writing the rules"))?;
    }
    check(child.wait_with_output().with_context(|| format!("{what}: waiting for nft"))?, &what).map(drop)
}

/// Runs `cmd` to completion; its stdout, or an error quoting its stderr.
pub(crate) fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("{what}: cannot start {:?}", cmd.get_program()))?;
    check(out, what)
}

fn check(out: Output, what: &str) -> Result<String> {
    if !out.status.success() {
        bail!("{what} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
