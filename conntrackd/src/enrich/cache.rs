//! A small LRU cache of lookup results per address (hits and misses alike,
//! since most kept events go to a few busy destinations). Capacity 0
//! disables it. It is cleared whenever a database is reloaded.
use std::{net::IpAddr, num::NonZeroUsize, sync::Arc};

use lru::LruCache;

use super::GeoInfo;

/// What the daemon attaches for one address: `None` when nothing is known.
pub(crate) type Entry = Option<Arc<GeoInfo>>;

pub(crate) struct Cache {
    lru: Option<LruCache<IpAddr, Entry>>,
    pub hits: u64,
    pub misses: u64,
}

impl Cache {
    pub fn new(capacity: usize) -> Self {
        Self { lru: NonZeroUsize::new(capacity).map(LruCache::new), hits: 0, misses: 0 }
    }

    /// The cached entry for `ip`, if any (a cached "nothing known" is `Some(None)`).
    pub fn get(&mut self, ip: &IpAddr) -> Option<Entry> {
        let lru = self.lru.as_mut()?;
        match lru.get(ip) {
            Some(entry) => {
                self.hits += 1;
                Some(entry.clone())
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    pub fn put(&mut self, ip: IpAddr, entry: Entry) {
        if let Some(lru) = self.lru.as_mut() {
            lru.put(ip, entry);
        }
    }

    pub fn clear(&mut self) {
        if let Some(lru) = self.lru.as_mut() {
            lru.clear();
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lru.as_ref().map_or(0, LruCache::len)
    }
}
