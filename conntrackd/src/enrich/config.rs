//! `[geoip]`: the keys as written ([`RawGeoip`]) and their validation into a
//! [`GeoipConfig`]. The databases are opened by [`super::Enricher::open`].
use std::path::PathBuf;

use serde::Deserialize;

/// A `[geoip]` key with a value outside its range.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GeoipConfigError {
    #[error("config {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// `[geoip]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGeoip {
    /// City database (GeoLite2-City, GeoIP2-City, DB-IP City Lite); empty = none.
    pub database: Option<PathBuf>,
    /// Optional ASN database (GeoLite2-ASN); empty = none.
    pub asn_database: Option<PathBuf>,
    /// Addresses whose lookup result is cached (LRU); 0 disables the cache.
    pub cache_entries: Option<usize>,
    /// How often the files are checked for a replacement, in milliseconds; 0 = only on SIGHUP.
    pub watch_interval_ms: Option<u64>,
}

/// Validated `[geoip]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct GeoipConfig {
    pub database: Option<PathBuf>,
    pub asn_database: Option<PathBuf>,
    pub cache_entries: usize,
    /// None: no periodic check of the files (SIGHUP still reloads).
    pub watch_interval: Option<std::time::Duration>,
}

impl RawGeoip {
    /// Checks every key and fills in the defaults.
    pub fn validate(self) -> Result<GeoipConfig, GeoipConfigError> {
        let invalid = |key, message| Err(GeoipConfigError::Invalid { key, message });
        // An empty path means "no database", as in the original's default config.
        let path = |p: Option<PathBuf>| p.filter(|p| !p.as_os_str().is_empty());
        let cache_entries = self.cache_entries.unwrap_or(4096);
        if cache_entries > 10_000_000 {
            return invalid("geoip.cache_entries", format!("expected 0 (no cache) to 10000000, found {cache_entries}"));
        }
        let watch_ms = self.watch_interval_ms.unwrap_or(10_000);
        if watch_ms > 86_400_000 {
            return invalid("geoip.watch_interval_ms", format!("expected 0 (off) to 86400000, found {watch_ms}"));
        }
        Ok(GeoipConfig {
            database: path(self.database),
            asn_database: path(self.asn_database),
            cache_entries,
            watch_interval: (watch_ms > 0).then(|| std::time::Duration::from_millis(watch_ms)),
        })
    }
}
