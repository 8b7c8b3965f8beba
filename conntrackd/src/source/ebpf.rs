//! The eBPF source: loads the kernel program, fills its policy maps, attaches
//! it to the ctnetlink socket and turns ring buffer records into [`Event`]s.
use std::os::fd::OwnedFd;

use aya::{
    maps::{lpm_trie::Key, Array, LpmTrie, MapData, PerCpuArray, RingBuf},
    programs::SocketFilter,
    Ebpf, EbpfLoader,
};
use conntrackd_common::{
    EventRecord, Policy, COUNTER_COUNT, EVENT_RECORD_SIZE, GLOBAL_CAPTURE_COMM, MAP_COUNTERS, MAP_DST_CLASSES,
    MAP_EVENTS, MAP_POLICY, MAP_PROTOCOLS, MAP_SRC_CLASSES,
};
use tokio::io::unix::AsyncFd;

use super::{socket, KernelCounters};
use crate::{
    config::SourceConfig,
    event::Event,
    filter::{network::PREFIXES, Prefilter},
};

/// The kernel program, built by `cargo xtask build-ebpf`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("CONNTRACKD_EBPF_OBJ"));
const PROGRAM: &str = "conntrack_events";

#[derive(Debug, thiserror::Error)]
pub(crate) enum EbpfSourceError {
    #[error("cannot load the eBPF object: {0} (needs CAP_BPF, or root)")]
    Load(#[source] aya::EbpfError),
    #[error("the eBPF object has no map {0}")]
    MissingMap(&'static str),
    #[error("eBPF map {name}: {source}")]
    Map { name: &'static str, source: aya::maps::MapError },
    #[error("eBPF program {PROGRAM}: {0}")]
    Program(#[from] aya::programs::ProgramError),
    #[error(transparent)]
    Socket(#[from] socket::SocketError),
    #[error("cannot poll the ring buffer: {0}")]
    Poll(std::io::Error),
}

/// A loaded and attached kernel program with its ring buffer.
pub(crate) struct EbpfSource {
    ring: AsyncFd<RingBuf<MapData>>,
    counters: PerCpuArray<MapData, u64>,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// Records that could not be turned into events (a kernel/daemon mismatch).
    pub decode_errors: u64,
    _socket: OwnedFd,
    _ebpf: Ebpf,
}

impl EbpfSource {
    /// Loads, configures and attaches the program, then subscribes the socket.
    pub fn open(config: &SourceConfig, prefilter: &Prefilter) -> Result<Self, EbpfSourceError> {
        let capture_comm = u8::from(has_cap_perfmon());
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(MAP_EVENTS, config.ring_buffer_bytes)
            .override_global(GLOBAL_CAPTURE_COMM, &capture_comm, true)
            .load(OBJECT)
            .map_err(EbpfSourceError::Load)?;
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => Some(logger),
            Err(err) => {
                tracing::warn!(error = %err, "kernel program diagnostics are unavailable");
                None
            }
        };
        fill_maps(&mut ebpf, prefilter, wakeup_bytes(config.ring_buffer_bytes))?;
        let socket = socket::open()?;
        let program: &mut SocketFilter = program(&mut ebpf)?;
        program.load()?;
        program.attach(&socket)?;
        socket::subscribe(&socket, &prefilter.kinds)?;
        let ring = RingBuf::try_from(take(&mut ebpf, MAP_EVENTS)?).map_err(map_err(MAP_EVENTS))?;
        let counters = PerCpuArray::try_from(take(&mut ebpf, MAP_COUNTERS)?).map_err(map_err(MAP_COUNTERS))?;
        tracing::info!(
            capture_comm = capture_comm == 1,
            ring_bytes = config.ring_buffer_bytes,
            prefilter = %prefilter,
            "kernel program attached"
        );
        Ok(Self {
            // SAFETY: the RingBuf owns its map fd for as long as the AsyncFd owns it.
            ring: unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
                .map_err(|e| EbpfSourceError::Poll(e.into()))?,
            counters,
            logger,
            decode_errors: 0,
            _socket: socket,
            _ebpf: ebpf,
        })
    }

    /// Waits until the kernel signals that records are waiting.
    pub async fn readable(&mut self) -> Result<(), EbpfSourceError> {
        let mut guard = self.ring.readable_mut().await.map_err(EbpfSourceError::Poll)?;
        guard.clear_ready();
        Ok(())
    }

    /// Moves every waiting record into `out` as events; returns how many were read.
    pub fn drain(&mut self, out: &mut Vec<Event>) -> usize {
        let offset = crate::time::monotonic_to_realtime_offset_ns();
        let ring = self.ring.get_mut();
        let mut read = 0;
        while let Some(item) = ring.next() {
            read += 1;
            match decode(&item, offset) {
                Ok(ev) => out.push(ev),
                Err(err) => {
                    self.decode_errors += 1;
                    tracing::debug!(error = %err, "undecodable ring buffer record");
                }
            }
        }
        if let Some(logger) = &mut self.logger {
            logger.flush();
        }
        read
    }

    /// The kernel counters, summed over CPUs.
    pub fn counters(&self) -> KernelCounters {
        let mut sums = KernelCounters::default();
        for index in 0..COUNTER_COUNT {
            if let Ok(values) = self.counters.get(&index, 0) {
                sums.0[index as usize] = values.iter().sum();
            }
        }
        sums
    }
}

/// Why a ring buffer record is not an event.
#[derive(Debug, thiserror::Error)]
enum DecodeError {
    #[error("record of {0} bytes, expected {EVENT_RECORD_SIZE}")]
    Size(usize),
    #[error(transparent)]
    Record(#[from] crate::event::RecordError),
}

fn decode(bytes: &[u8], offset: i128) -> Result<Event, DecodeError> {
    if bytes.len() != EVENT_RECORD_SIZE {
        return Err(DecodeError::Size(bytes.len()));
    }
    // SAFETY: the length is checked; EventRecord is plain-old-data.
    let rec: EventRecord = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    Ok(Event::from_record(&rec, offset)?)
}

fn fill_maps(ebpf: &mut Ebpf, prefilter: &Prefilter, wakeup_bytes: u32) -> Result<(), EbpfSourceError> {
    let mut protocols: Array<_, u32> = Array::try_from(map(ebpf, MAP_PROTOCOLS)?).map_err(map_err(MAP_PROTOCOLS))?;
    for &proto in &prefilter.protocols {
        protocols.set(u32::from(proto), 1, 0).map_err(map_err(MAP_PROTOCOLS))?;
    }
    for name in [MAP_DST_CLASSES, MAP_SRC_CLASSES] {
        let mut trie: LpmTrie<_, [u8; 16], u32> = LpmTrie::try_from(map(ebpf, name)?).map_err(map_err(name))?;
        for p in PREFIXES {
            trie.insert(&Key::new(u32::from(p.len), p.addr.octets()), p.class.kernel_value(), 0)
                .map_err(map_err(name))?;
        }
    }
    let mut policy: Array<_, Policy> = Array::try_from(map(ebpf, MAP_POLICY)?).map_err(map_err(MAP_POLICY))?;
    policy.set(0, prefilter.policy(wakeup_bytes), 0).map_err(map_err(MAP_POLICY))?;
    Ok(())
}

/// Wake the daemon once a quarter of the ring (at most 128 KiB) is waiting;
/// smaller amounts are collected by its drain timer.
fn wakeup_bytes(ring_bytes: u32) -> u32 {
    (ring_bytes / 4).min(128 << 10)
}

fn program(ebpf: &mut Ebpf) -> Result<&mut SocketFilter, EbpfSourceError> {
    let program = ebpf.program_mut(PROGRAM).ok_or(EbpfSourceError::MissingMap(PROGRAM))?;
    Ok(program.try_into()?)
}

fn map<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut aya::maps::Map, EbpfSourceError> {
    ebpf.map_mut(name).ok_or(EbpfSourceError::MissingMap(name))
}

fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, EbpfSourceError> {
    ebpf.take_map(name).ok_or(EbpfSourceError::MissingMap(name))
}

fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> EbpfSourceError {
    move |source| EbpfSourceError::Map { name, source }
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
