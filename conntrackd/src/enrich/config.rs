//! `[geoip]`: the keys, declared once ([`RawGeoip`]: type, default, help),
//! and their validation into a [`GeoipConfig`]. The databases are opened by [`super::Enricher::open`].
use std::path::PathBuf;

use crate::schema::section;

/// A `[geoip]` key with a value outside its range.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GeoipConfigError {
    #[error("config {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

section! {
    /// `[geoip]`
    pub(crate) struct RawGeoip at "geoip" {
        /// GeoIP City database (GeoLite2-City, GeoIP2-City, DB-IP City Lite); empty = none
        database: Option<PathBuf> = None, Str;
        /// GeoIP ASN database (GeoLite2-ASN); empty = none
        asn_database: Option<PathBuf> = None, Str;
        /// GeoIP lookup cache size; 0 disables it
        cache_entries: usize = 4096, Int;
        /// How often the GeoIP files are checked for a replacement; 0 = only SIGHUP
        watch_interval_ms: u64 = 10_000, Int;
    }
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
        let cache_entries = self.cache_entries;
        if cache_entries > 10_000_000 {
            return invalid("geoip.cache_entries", format!("expected 0 (no cache) to 10000000, found {cache_entries}"));
        }
        let watch_ms = self.watch_interval_ms;
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
