//! Enrichment of kept events (after the rules, before the sinks): GeoIP City
//! and ASN data for both addresses of the original tuple.
//!
//! Only PUBLIC addresses are looked up (a private, local or multicast
//! address gets no fields), once per address per kept event, through a
//! small LRU cache. A record of an unexpected shape is counted and warned
//! about once per database, never fatal. [`Enricher::reload`] (SIGHUP) and
//! [`Enricher::check_files`] (a replaced file) swap databases in between two
//! batches, so no event is lost; a broken new file keeps the old database.
//! `config.rs` holds the `[geoip]` keys and their validation.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
#[cfg(feature = "bench")]
pub(crate) mod bench;
pub(crate) mod cache;
pub(crate) mod config;
pub(crate) mod geoip;
pub(crate) mod process;
#[cfg(test)]
mod tests;

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

pub(crate) use self::config::{GeoipConfig, GeoipConfigError, RawGeoip};
use crate::event::{network::NetworkClass, Event, GeoInfo};

pub(crate) use self::geoip::DatabaseError;
use self::{
    cache::{Cache, Entry},
    geoip::{Database, FileId, Kind},
};

/// Lookup counters of one database, kept across reloads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DbStats {
    pub lookups: u64,
    pub found: u64,
    /// Lookups whose record (or tree) could not be decoded: no fields attached.
    pub decode_errors: u64,
}

/// One configured database and what the daemon knows of its file.
struct Slot {
    kind: Kind,
    path: PathBuf,
    db: Database,
    /// The file last seen at `path` (None: could not be stat'ed).
    seen: Option<FileId>,
    /// Whether the loaded database already warned about a wrong-shaped record.
    warned: bool,
    stats: DbStats,
}

impl Slot {
    fn open(path: &Path, kind: Kind) -> Result<Self, DatabaseError> {
        let db = Database::open(path, kind)?;
        Ok(Self { kind, path: path.into(), seen: Some(db.file), db, warned: false, stats: DbStats::default() })
    }

    fn lookup(&mut self, ip: IpAddr, info: &mut GeoInfo) {
        self.stats.lookups += 1;
        // The reader parses a file: a panic in it (a malformed database the
        // crate does not expect) is a decode error, not a dead daemon.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.db.lookup(ip, info)))
            .unwrap_or_else(|_| Err(maxminddb::MaxMindDbError::invalid_database("the reader panicked on this record")));
        match result {
            Ok(found) => self.stats.found += u64::from(found),
            Err(err) => {
                self.stats.decode_errors += 1;
                if !std::mem::replace(&mut self.warned, true) {
                    tracing::warn!(
                        key = self.kind.key(),
                        path = %self.path.display(),
                        database_type = self.db.database_type(),
                        address = %ip,
                        error = %err,
                        "GeoIP record has an unexpected shape (is this a GeoIP2/GeoLite2-compatible database?); \
                         such lookups attach no fields and are counted; this is reported once per database"
                    );
                }
            }
        }
    }

    /// Opens the file again; keeps the current database if that fails. True if swapped.
    fn reload(&mut self, reason: &str) -> bool {
        self.seen = FileId::of(&self.path).ok();
        match Database::open(&self.path, self.kind) {
            Ok(db) => {
                self.seen = Some(db.file);
                tracing::info!(reason, database = %db.describe(), "GeoIP database reloaded");
                self.db = db;
                self.warned = false;
                true
            }
            Err(err) => {
                tracing::warn!(reason, error = %err, "GeoIP reload failed; keeping the previous database");
                false
            }
        }
    }
}

/// Counters for the `conntrackd stopped` line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct EnrichStats {
    pub city: DbStats,
    pub asn: DbStats,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub reloads: u64,
    pub reload_failures: u64,
}

impl EnrichStats {
    pub fn describe(&self) -> String {
        let (c, a) = (self.city, self.asn);
        format!(
            "city.lookups={} city.found={} city.decode_errors={} asn.lookups={} asn.found={} asn.decode_errors={} \
             cache.hits={} cache.misses={} reloads={} reload_failures={}",
            c.lookups, c.found, c.decode_errors, a.lookups, a.found, a.decode_errors, self.cache_hits, self.cache_misses, self.reloads, self.reload_failures
        )
    }
}

/// The configured databases and the cache in front of them.
pub(crate) struct Enricher {
    city: Option<Slot>,
    asn: Option<Slot>,
    cache: Cache,
    reloads: u64,
    reload_failures: u64,
}

impl Enricher {
    /// Opens the configured databases; `Ok(None)` when none is configured.
    pub fn open(config: &GeoipConfig) -> Result<Option<Self>, DatabaseError> {
        let city = config.database.as_deref().map(|p| Slot::open(p, Kind::City)).transpose()?;
        let asn = config.asn_database.as_deref().map(|p| Slot::open(p, Kind::Asn)).transpose()?;
        if city.is_none() && asn.is_none() {
            return Ok(None);
        }
        Ok(Some(Self { city, asn, cache: Cache::new(config.cache_entries), reloads: 0, reload_failures: 0 }))
    }

    /// One line per database (type, build date, size) for `check` and the startup log.
    pub fn describe(&self) -> Vec<String> {
        self.slots().map(|s| s.db.describe()).collect()
    }

    fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.city.iter().chain(self.asn.iter())
    }

    fn slots_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.city.iter_mut().chain(self.asn.iter_mut())
    }

    /// Attaches GeoIP data to both addresses of the original tuple.
    pub fn enrich(&mut self, ev: &mut Event) {
        ev.src_geo = self.lookup(ev.orig.src);
        ev.dst_geo = self.lookup(ev.orig.dst);
    }

    /// What the daemon attaches for `ip` (None: nothing, e.g. a private address).
    pub fn lookup(&mut self, ip: IpAddr) -> Entry {
        let ip = ip.to_canonical();
        if NetworkClass::of(ip) != NetworkClass::Public {
            return None;
        }
        if let Some(entry) = self.cache.get(&ip) {
            return entry;
        }
        let mut info = GeoInfo::default();
        for slot in self.slots_mut() {
            slot.lookup(ip, &mut info);
        }
        let entry = (!info.is_empty()).then(|| Arc::new(info));
        self.cache.put(ip, entry.clone());
        entry
    }

    /// Reopens every database (SIGHUP); a file that fails keeps its old database.
    pub fn reload(&mut self, reason: &str) {
        let mut results = Vec::new();
        for slot in self.slots_mut() {
            results.push(slot.reload(reason));
        }
        self.count(&results);
    }

    /// Reopens the databases whose file was replaced or changed since last seen.
    pub fn check_files(&mut self) {
        let mut results = Vec::new();
        for slot in self.slots_mut() {
            let now = FileId::of(&slot.path).ok();
            if now != slot.seen {
                results.push(slot.reload("file changed"));
            }
        }
        self.count(&results);
    }

    fn count(&mut self, results: &[bool]) {
        let ok = results.iter().filter(|&&swapped| swapped).count() as u64;
        self.reloads += ok;
        // Cannot underflow: `ok` counts a subset of `results`.
        self.reload_failures += results.len() as u64 - ok;
        if ok > 0 {
            self.cache.clear();
        }
    }

    pub fn stats(&self) -> EnrichStats {
        EnrichStats {
            city: self.city.as_ref().map(|s| s.stats).unwrap_or_default(),
            asn: self.asn.as_ref().map(|s| s.stats).unwrap_or_default(),
            cache_hits: self.cache.hits,
            cache_misses: self.cache.misses,
            reloads: self.reloads,
            reload_failures: self.reload_failures,
        }
    }
}
