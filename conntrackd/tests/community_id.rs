//! The event's `community_id` against the reference implementation, PyPI
//! `communityid` (Corelight's), which `cargo xtask setup` installs into
//! `target/contrib-tools/python`: 20 000 random TCP and UDP flows, IPv4 and
//! IPv6, with seed 0 and random seeds, including equal addresses and the
//! extreme ports. The specification's own vectors are a unit test.
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

#[test]
fn community_id_matches_the_reference_implementation() {
    let py = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/contrib-tools/python");
    assert!(py.join("communityid").is_dir(), "PyPI communityid is missing from {}: run `cargo xtask setup`", py.display());
    let flows = flows();
    let mut input = String::new();
    for (seed, protocol, src, dst) in &flows {
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
    let expected: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(expected.len(), flows.len(), "one reference line per flow");
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
