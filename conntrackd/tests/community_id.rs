//! The event's `community_id` against the reference implementation, PyPI
//! `communityid` (Corelight's), which `cargo xtask setup` installs into
//! `target/contrib-tools/python`: 20 000 random TCP and UDP flows, IPv4 and
//! IPv6, with seed 0 and random seeds, including equal addresses and the
//! extreme ports; and on the daemon's events (NEW and DESTROY, v4 and v6,
//! `community_id_seed` from the file and changed by SIGHUP). The
//! specification's own vectors are a unit test.
mod common;

use std::{
    io::Write,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    process::{Command, Stdio},
};

const FLOWS: usize = 20_000;

/// The reference, reading `proto saddr daddr sport dport seed` lines.
const REFERENCE: &str = r#"
import sys, communityid
ids = {}
for line in sys.stdin:
    proto, saddr, daddr, sport, dport, seed = line.split()
    seed = int(seed)
    if seed not in ids:
        ids[seed] = communityid.CommunityID(seed=seed)
    print(ids[seed].calc(communityid.FlowTuple(int(proto), saddr, daddr, int(sport), int(dport))))
"#;

/// xorshift64*: the same flows on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn port(&mut self) -> u16 {
        match self.next() % 8 {
            0 => 0,
            1 => u16::MAX,
            _ => self.next() as u16,
        }
    }

    fn addr(&mut self, v6: bool) -> IpAddr {
        if v6 {
            IpAddr::V6(Ipv6Addr::from(u128::from(self.next()) << 64 | u128::from(self.next())))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.next() as u32))
        }
    }
}

/// (seed, protocol, source, destination).
type Flow = (u16, u8, (IpAddr, u16), (IpAddr, u16));

fn flows() -> Vec<Flow> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    (0..FLOWS)
        .map(|i| {
            let v6 = i % 2 == 1;
            let protocol = if rng.next().is_multiple_of(2) { 6 } else { 17 };
            let seed = if i % 3 == 0 { 0 } else { rng.next() as u16 };
            let src = (rng.addr(v6), rng.port());
            // One flow in sixteen between two ports of one address.
            let dst = if rng.next().is_multiple_of(16) { (src.0, rng.port()) } else { (rng.addr(v6), rng.port()) };
            (seed, protocol, src, dst)
        })
        .collect()
}

/// The reference's Community ID of each `(seed, protocol, source, destination)`.
fn reference(flows: &[Flow]) -> Vec<String> {
    let py = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/contrib-tools/python");
    assert!(py.join("communityid").is_dir(), "PyPI communityid is missing from {}: run `cargo xtask setup`", py.display());
    let mut input = String::new();
    for (seed, protocol, src, dst) in flows {
        input.push_str(&format!("{protocol} {} {} {} {} {seed}\n", src.0, dst.0, src.1, dst.1));
    }
    let mut child = Command::new("python3")
        .args(["-c", REFERENCE])
        .env("PYTHONPATH", &py)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is missing (`cargo xtask setup` installs it)");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("python3 ran");
    writer.join().expect("writer").expect("write to python3");
    assert!(out.status.success(), "the reference failed: {}", String::from_utf8_lossy(&out.stderr));
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(ids.len(), flows.len(), "one reference line per flow");
    ids
}

#[test]
fn community_id_matches_the_reference_implementation() {
    let flows = flows();
    let expected = reference(&flows);
    let mut differ = Vec::new();
    for ((seed, protocol, src, dst), want) in flows.iter().zip(&expected) {
        let ours = conntrackd::testing::community_id(*seed, *protocol, *src, *dst);
        let reverse = conntrackd::testing::community_id(*seed, *protocol, *dst, *src);
        if ours != *want || reverse != *want {
            differ.push(format!("seed {seed} proto {protocol} {src:?} -> {dst:?}: ours {ours} (reverse {reverse}), reference {want}"));
        }
    }
    let v6 = flows.iter().filter(|f| f.2 .0.is_ipv6()).count();
    println!("community_id: {} flows ({} IPv6), {} differ from the reference", flows.len(), v6, differ.len());
    assert!(differ.is_empty(), "{} of {} flows differ, first: {:#?}", differ.len(), flows.len(), &differ[..differ.len().min(5)]);
}

/// Every event of a flow carries the reference's id for the configured
/// seed, in every sink's field list (the stream sink here; journald, syslog
/// and Loki encode the same field visitor); SIGHUP changes the seed.
#[test]
fn events_carry_the_community_id_of_their_flow() {
    use common::{entry::Entry, require_root_and_tools, Daemon, Netns};
    require_root_and_tools();
    let ns = Netns::new("cid");
    let config = |seed: u16| format!("community_id_seed = {seed}\nfilter = [\"log any\"]\n[sink.stream]\nenable = true\n");
    let d = Daemon::start(&ns, &config(4242));
    let v4 = Entry::tcp("10.99.0.1", "203.0.113.9", 40001, 443);
    let v6 = Entry::udp("2001:db8::1", "2001:db8:ffff::53", 5353, 53);
    v4.insert(&ns);
    v6.insert(&ns);
    v4.delete(&ns);
    let mut events = d.events(3);
    std::fs::write(d.config_path(), config(0)).expect("rewrite the config");
    d.signal(libc::SIGHUP);
    d.wait_log("configuration reloaded");
    v6.delete(&ns);
    events.extend(d.events(1));
    let ip = |s: &str| s.parse::<IpAddr>().expect("an address");
    let flow = |seed: u16, protocol: u8, (src, sport, dst, dport): (&str, u16, &str, u16)| (seed, protocol, (ip(src), sport), (ip(dst), dport));
    let tcp = ("10.99.0.1", 40001, "203.0.113.9", 443);
    let udp = ("2001:db8::1", 5353, "2001:db8:ffff::53", 53);
    let want = reference(&[flow(4242, 6, tcp), flow(4242, 17, udp), flow(0, 17, udp)]);
    let id_of = |proto: &str, kind: &str| -> Vec<&str> {
        events.iter().filter(|e| e["prot"] == proto && e["type"] == kind).filter_map(|e| e["community_id"].as_str()).collect()
    };
    assert_eq!(id_of("TCP", "NEW"), [want[0].as_str()], "TCP NEW, seed 4242: {events:#?}");
    assert_eq!(id_of("TCP", "DESTROY"), [want[0].as_str()], "TCP DESTROY, seed 4242: {events:#?}");
    assert_eq!(id_of("UDP", "NEW"), [want[1].as_str()], "UDP v6 NEW, seed 4242: {events:#?}");
    assert_eq!(id_of("UDP", "DESTROY"), [want[2].as_str()], "UDP v6 DESTROY after SIGHUP to seed 0: {events:#?}");
    assert_ne!(want[1], want[2], "the seed changes the hash");
}
