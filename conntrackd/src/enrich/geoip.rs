//! One MaxMind DB file (City- or ASN-shaped), memory-mapped with the
//! `maxminddb` crate: opening with a check of its `database_type`, and the
//! lookup of one address into the few fields the daemon emits. Records are
//! decoded into borrowed, minimal structs, so a lookup allocates only for the
//! strings it keeps; a record of the wrong shape is an error, never a panic.
use std::{
    fmt,
    net::IpAddr,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::SystemTime,
};

use maxminddb::{MaxMindDbError, Mmap, Reader};
use serde::Deserialize;

use crate::event::GeoInfo;

/// What a database file must provide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `geoip.database`: GeoLite2-City, GeoIP2-City, DB-IP City Lite.
    City,
    /// `geoip.asn_database`: GeoLite2-ASN (or GeoIP2-ISP, DB-IP ASN Lite).
    Asn,
}

impl Kind {
    /// The config key that names this database.
    pub fn key(self) -> &'static str {
        match self {
            Kind::City => "geoip.database",
            Kind::Asn => "geoip.asn_database",
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Kind::City => "a City database (GeoLite2-City, GeoIP2-City or DBIP-City-Lite)",
            Kind::Asn => "an ASN database (GeoLite2-ASN, GeoIP2-ISP or DBIP-ASN-Lite)",
        }
    }

    /// Whether a `database_type` has this kind's record shape.
    fn accepts(self, database_type: &str) -> bool {
        let t = database_type.to_ascii_lowercase();
        match self {
            Kind::City => t.contains("city"),
            Kind::Asn => t.contains("asn") || t.contains("isp"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DatabaseError {
    #[error("{key} {path}: cannot read the file: {error}")]
    Io { key: &'static str, path: PathBuf, error: std::io::Error },
    #[error("{key} {path}: not a valid MaxMind DB file: {error}")]
    Invalid { key: &'static str, path: PathBuf, error: MaxMindDbError },
    #[error("{key} {path}: database_type is {found:?}, expected {expected}")]
    WrongType { key: &'static str, path: PathBuf, found: String, expected: &'static str },
}

/// Identity of the file behind a path, to notice an (atomic) replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: Option<SystemTime>,
}

impl FileId {
    pub fn of(path: &Path) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        Ok(Self { dev: meta.dev(), ino: meta.ino(), size: meta.len(), mtime: meta.modified().ok() })
    }
}

/// An open database file.
pub(crate) struct Database {
    pub kind: Kind,
    pub path: PathBuf,
    /// The file opened (as stat'ed just before mapping it).
    pub file: FileId,
    reader: Reader<Mmap>,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database").field("kind", &self.kind).field("path", &self.path).finish_non_exhaustive()
    }
}

impl Database {
    /// Maps the file and checks that its `database_type` fits `kind`.
    pub fn open(path: &Path, kind: Kind) -> Result<Self, DatabaseError> {
        let (key, owned) = (kind.key(), path.to_path_buf());
        let file = FileId::of(path).map_err(|error| DatabaseError::Io { key, path: owned.clone(), error })?;
        // SAFETY: the mapping is read-only. The file must not be changed in
        // place while mapped; geoipupdate (and the documented way to update)
        // writes a new file and renames it over the old one, which leaves
        // the mapped inode intact.
        let reader = unsafe { Reader::open_mmap(path) }.map_err(|error| match error {
            MaxMindDbError::Io(error) | MaxMindDbError::Mmap(error) => DatabaseError::Io { key, path: owned.clone(), error },
            error => DatabaseError::Invalid { key, path: owned.clone(), error },
        })?;
        let found = &reader.metadata().database_type;
        if !kind.accepts(found) {
            return Err(DatabaseError::WrongType { key, path: owned, found: found.clone(), expected: kind.expected() });
        }
        Ok(Self { kind, path: owned, file, reader })
    }

    /// `database_type` from the metadata.
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// One line for `conntrackd check` and the reload log: type, build date, size.
    pub fn describe(&self) -> String {
        let meta = self.reader.metadata();
        let mut built = Vec::new();
        crate::event::time::write_rfc3339(&mut built, i128::from(meta.build_epoch) * 1_000_000_000);
        format!(
            "{} {}: {}, built {}, {} search-tree nodes, IPv{}",
            self.kind.key(),
            self.path.display(),
            meta.database_type,
            String::from_utf8_lossy(&built),
            meta.node_count,
            meta.ip_version
        )
    }

    /// Looks `ip` up and adds what the record holds to `info`. `Ok(false)`:
    /// the database does not know the address.
    pub fn lookup(&self, ip: IpAddr, info: &mut GeoInfo) -> Result<bool, MaxMindDbError> {
        if ip.is_ipv6() && self.reader.metadata().ip_version == 4 {
            return Ok(false);
        }
        let result = self.reader.lookup(ip)?;
        match self.kind {
            Kind::City => Ok(result.decode::<CityRecord<'_>>()?.map(|r| r.fill(info)).is_some()),
            Kind::Asn => Ok(result.decode::<AsnRecord<'_>>()?.map(|r| r.fill(info)).is_some()),
        }
    }
}

/// The parts of a GeoIP2 City record the daemon emits; other keys are skipped.
#[derive(Deserialize)]
struct CityRecord<'a> {
    #[serde(borrow, default)]
    city: Option<Place<'a>>,
    #[serde(borrow, default)]
    country: Option<Place<'a>>,
    #[serde(default)]
    location: Option<Location>,
}

/// `city` or `country`: localized names and (countries) an ISO code.
#[derive(Deserialize)]
struct Place<'a> {
    #[serde(borrow, default)]
    names: Option<Names<'a>>,
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Names<'a> {
    #[serde(borrow, default)]
    en: Option<&'a str>,
}

#[derive(Deserialize)]
struct Location {
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
}

/// A GeoLite2-ASN record.
#[derive(Deserialize)]
struct AsnRecord<'a> {
    #[serde(default)]
    autonomous_system_number: Option<u32>,
    #[serde(borrow, default)]
    autonomous_system_organization: Option<&'a str>,
}

/// A name worth emitting: present and not blank.
fn text(s: Option<&str>) -> Option<Box<str>> {
    s.map(str::trim).filter(|s| !s.is_empty()).map(Into::into)
}

impl CityRecord<'_> {
    fn fill(self, info: &mut GeoInfo) {
        let english = |p: &Option<Place<'_>>| text(p.as_ref().and_then(|p| p.names.as_ref()).and_then(|n| n.en));
        info.city = english(&self.city);
        info.country = english(&self.country);
        info.country_code = text(self.country.as_ref().and_then(|c| c.iso_code));
        info.coordinates = self.location.and_then(|l| coordinates(l.latitude?, l.longitude?));
    }
}

/// Both coordinates or neither; a value off the globe or not finite is dropped.
pub(crate) fn coordinates(lat: f64, lon: f64) -> Option<(f64, f64)> {
    let valid = lat.is_finite() && lon.is_finite() && lat.abs() <= 90.0 && lon.abs() <= 180.0;
    valid.then_some((lat, lon))
}

impl AsnRecord<'_> {
    fn fill(self, info: &mut GeoInfo) {
        info.asn = self.autonomous_system_number.filter(|&n| n != 0);
        info.as_org = text(self.autonomous_system_organization);
    }
}
