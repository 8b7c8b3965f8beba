//! The kernel program: load it (once), fill its policy maps, attach it to
//! sockets, and decode the records it writes into the ring buffer.
use std::os::fd::OwnedFd;

use aya::{
    maps::{lpm_trie::Key, Array, LpmTrie, MapData, PerCpuArray, RingBuf},
    programs::SocketFilter,
    Ebpf, EbpfLoader,
};
use conntrackd_common::{
    EventRecord, Policy, COUNTER_COUNT, EVENT_RECORD_SIZE, GLOBAL_CAPTURE_COMM, MAP_COUNTERS, MAP_DST_CLASSES, MAP_EVENTS, MAP_POLICY, MAP_SRC_CLASSES,
};

use crate::{
    event::{network::PREFIXES, prefilter::Prefilter, Event, RecordError},
    source::{KernelCounters, SourceConfig},
};

/// The kernel program, built by `cargo xtask build-ebpf`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("CONNTRACKD_EBPF_OBJ"));
const PROGRAM: &str = "conntrack_events";

/// SHA-256 of the embedded kernel object, for `conntrackd version`.
pub(crate) fn object_sha256() -> String {
    use sha2::Digest;
    sha2::Sha256::digest(OBJECT).iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ProgramError {
    #[error("cannot load the eBPF object: {0} (needs CAP_BPF, or root)")]
    Load(#[source] aya::EbpfError),
    #[error("the eBPF object has no {0}")]
    Missing(&'static str),
    #[error("eBPF map {name}: {source}")]
    Map { name: &'static str, source: aya::maps::MapError },
    #[error("eBPF program {PROGRAM}: {0}")]
    Program(#[from] aya::programs::ProgramError),
}

/// A loaded (and verified) kernel program with its maps.
pub(crate) struct KernelProgram {
    pub ring: RingBuf<MapData>,
    pub counters: Counters,
    pub logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    pub capture_comm: bool,
    ebpf: Ebpf,
}

impl KernelProgram {
    /// Loads the object, fills the maps from `prefilter` and loads the program.
    pub fn load(config: &SourceConfig, prefilter: &Prefilter) -> Result<Self, ProgramError> {
        let capture_comm = has_cap_perfmon();
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(MAP_EVENTS, config.ring_buffer_bytes)
            .override_global(GLOBAL_CAPTURE_COMM, &u8::from(capture_comm), true)
            .load(OBJECT)
            .map_err(ProgramError::Load)?;
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => Some(logger),
            Err(err) => {
                tracing::warn!(error = %err, "kernel program diagnostics are unavailable");
                None
            }
        };
        fill_maps(&mut ebpf, prefilter, wakeup_bytes(config.ring_buffer_bytes))?;
        program(&mut ebpf)?.load()?;
        let ring = RingBuf::try_from(take(&mut ebpf, MAP_EVENTS)?).map_err(map_err(MAP_EVENTS))?;
        let counters = PerCpuArray::try_from(take(&mut ebpf, MAP_COUNTERS)?).map_err(map_err(MAP_COUNTERS))?;
        Ok(Self { ring, counters: Counters(counters), logger, capture_comm, ebpf })
    }

    /// Runs the program once on `message` with BPF_PROG_TEST_RUN; returns its return value.
    #[cfg(test)]
    pub fn test_run(&mut self, message: &[u8]) -> Result<u32, ProgramError> {
        use aya::programs::{TestRun, TestRunOptions};
        // The kernel treats test input as an Ethernet frame and, for socket
        // filters, hands the program the data after the 14-byte MAC header.
        let mut frame = vec![0u8; 14];
        frame.extend_from_slice(message);
        let opts = TestRunOptions { data_in: Some(&frame), ..TestRunOptions::new() };
        Ok(program(&mut self.ebpf)?.test_run(opts)?.return_value)
    }

    /// Splits off the ring buffer, the counters and the logger; what remains
    /// keeps the program (and its policy maps) loaded.
    pub fn into_parts(self) -> (RingBuf<MapData>, Counters, Option<aya_log::EbpfLogger<&'static dyn log::Log>>, Loaded) {
        (self.ring, self.counters, self.logger, Loaded(self.ebpf))
    }
}

/// The loaded program and its policy maps.
pub(crate) struct Loaded(Ebpf);

impl Loaded {
    /// Attaches the program to `socket` (SO_ATTACH_BPF; the attachment ends when the socket closes).
    pub fn attach(&mut self, socket: &OwnedFd) -> Result<(), ProgramError> {
        Ok(program(&mut self.0)?.attach(socket)?)
    }

    pub fn write_policy(&mut self, prefilter: &Prefilter, wakeup_bytes: u32) -> Result<(), ProgramError> {
        write_policy(&mut self.0, prefilter, wakeup_bytes)
    }
}

/// The per-CPU kernel counters map.
pub(crate) struct Counters(PerCpuArray<MapData, u64>);

impl Counters {
    /// Sums over CPUs.
    pub fn read(&self) -> KernelCounters {
        let mut sums = KernelCounters::default();
        for (index, sum) in (0..COUNTER_COUNT).zip(sums.0.iter_mut()) {
            if let Ok(values) = self.0.get(&index, 0) {
                *sum = values.iter().sum();
            }
        }
        sums
    }
}

/// Why a ring buffer record is not an event.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum DecodeError {
    #[error("record of {0} bytes, expected {EVENT_RECORD_SIZE}")]
    Size(usize),
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// One ring buffer record -> the cookie of its socket and an event; `offset`
/// converts CLOCK_MONOTONIC to wall time.
pub(crate) fn decode(bytes: &[u8], offset: i128) -> Result<(u64, Event), DecodeError> {
    if bytes.len() != EVENT_RECORD_SIZE {
        return Err(DecodeError::Size(bytes.len()));
    }
    // SAFETY: the length is checked; EventRecord is plain-old-data, read unaligned.
    let rec: EventRecord = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    Ok((rec.cookie, Event::from_record(&rec, offset)?))
}

fn fill_maps(ebpf: &mut Ebpf, prefilter: &Prefilter, wakeup_bytes: u32) -> Result<(), ProgramError> {
    for name in [MAP_DST_CLASSES, MAP_SRC_CLASSES] {
        let mut trie: LpmTrie<_, [u8; 16], u32> = LpmTrie::try_from(map(ebpf, name)?).map_err(map_err(name))?;
        for p in PREFIXES {
            trie.insert(&Key::new(u32::from(p.len), p.addr.octets()), p.class.kernel_value(), 0).map_err(map_err(name))?;
        }
    }
    write_policy(ebpf, prefilter, wakeup_bytes)
}

/// Writes the pre-filter table (atomically: one map element).
fn write_policy(ebpf: &mut Ebpf, prefilter: &Prefilter, wakeup_bytes: u32) -> Result<(), ProgramError> {
    let mut policy: Array<_, Policy> = Array::try_from(map(ebpf, MAP_POLICY)?).map_err(map_err(MAP_POLICY))?;
    policy.set(0, prefilter.policy(wakeup_bytes), 0).map_err(map_err(MAP_POLICY))
}

/// Wake the daemon once a quarter of the ring (at most 128 KiB) is waiting;
/// smaller amounts are collected by its drain timer.
pub(crate) fn wakeup_bytes(ring_bytes: u32) -> u32 {
    (ring_bytes / 4).min(128 << 10)
}

fn program(ebpf: &mut Ebpf) -> Result<&mut SocketFilter, ProgramError> {
    let program = ebpf.program_mut(PROGRAM).ok_or(ProgramError::Missing(PROGRAM))?;
    Ok(program.try_into()?)
}

fn map<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut aya::maps::Map, ProgramError> {
    ebpf.map_mut(name).ok_or(ProgramError::Missing(name))
}

fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, ProgramError> {
    ebpf.take_map(name).ok_or(ProgramError::Missing(name))
}

fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> ProgramError {
    move |source| ProgramError::Map { name, source }
}

/// CAP_PERFMON (bit 38) in the effective set lets the program read `comm`.
fn has_cap_perfmon() -> bool {
    const CAP_PERFMON: u32 = 38;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return false };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_PERFMON) != 0)
}
