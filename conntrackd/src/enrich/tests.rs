//! Unit tests of every GeoIP field rule, on MaxMind's test databases and on
//! small databases written by `tests/common/mmdb.rs`; reload and cache.
use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use super::*;
use crate::event::{fields::FieldValue, SRC};

/// The event's fields as one JSON object, in order (the JSON sinks write
/// the same after their `time`, `level` and `msg`; enrich does not use them).
fn write_line(out: &mut Vec<u8>, ev: &Event) {
    out.push(b'{');
    ev.for_each_field(|name, value| {
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(format!("{}:", serde_json::Value::from(name)).as_bytes());
        match value {
            FieldValue::Str(s) => out.extend_from_slice(serde_json::Value::from(s).to_string().as_bytes()),
            FieldValue::Ip(ip) => out.extend_from_slice(format!("\"{ip}\"").as_bytes()),
            other => other.write_text(out),
        }
    });
    out.extend_from_slice(b"}\n");
}

#[path = "../../tests/common/mmdb.rs"]
mod mmdb;

fn maxmind(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/maxmind").join(name)
}

/// A file in a fresh temporary directory, removed with it on drop.
struct TempDb(PathBuf);

impl TempDb {
    fn new(bytes: &[u8]) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!("ctd-geoip-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir_all(&dir).unwrap();
        let db = Self(dir.join("db.mmdb"));
        db.replace(bytes);
        db
    }

    /// Writes a new file and renames it over the old one, as geoipupdate does.
    fn replace(&self, bytes: &[u8]) {
        let tmp = self.0.with_extension("tmp");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, &self.0).unwrap();
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
    }
}

fn config(city: Option<&Path>, asn: Option<&Path>, cache_entries: usize) -> GeoipConfig {
    GeoipConfig { database: city.map(Into::into), asn_database: asn.map(Into::into), cache_entries, watch_interval: None }
}

fn enricher(city: Option<&Path>, asn: Option<&Path>, cache_entries: usize) -> Enricher {
    Enricher::open(&config(city, asn, cache_entries)).unwrap().expect("a database is configured")
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn lookup(e: &mut Enricher, addr: &str) -> Option<GeoInfo> {
    e.lookup(ip(addr)).map(|info| (*info).clone())
}

fn info(city: Option<&str>, country: Option<&str>, code: Option<&str>, coordinates: Option<(f64, f64)>) -> GeoInfo {
    GeoInfo { city: city.map(Into::into), country: country.map(Into::into), country_code: code.map(Into::into), coordinates, ..GeoInfo::default() }
}

#[test]
fn maxmind_test_database_london() {
    let mut e = enricher(Some(&maxmind("GeoIP2-City-Test.mmdb")), None, 16);
    let want = info(Some("London"), Some("United Kingdom"), Some("GB"), Some((51.5142, -0.0931)));
    assert_eq!(lookup(&mut e, "81.2.69.160"), Some(want.clone()));
    assert_eq!(lookup(&mut e, "::ffff:81.2.69.160"), Some(want), "IPv4-mapped IPv6 is looked up as IPv4");
    // A country without a city in the test data.
    assert_eq!(lookup(&mut e, "2001:218::1"), Some(info(None, Some("Japan"), Some("JP"), Some((35.68536, 139.75309)))));
    assert_eq!(lookup(&mut e, "1.1.1.1"), None, "not in the database");
}

#[test]
fn event_fields_in_contract_order() {
    let mut e = enricher(Some(&maxmind("GeoIP2-City-Test.mmdb")), Some(&maxmind("GeoLite2-ASN-Test.mmdb")), 16);
    let mut ev = crate::event::tests::tcp_v4_event(0);
    ev.orig.dst = ip("81.2.69.160");
    ev.reply = None;
    e.enrich(&mut ev);
    assert!(ev.src_geo.is_none(), "10.99.0.1 is private");
    let mut out = Vec::new();
    write_line(&mut out, &ev);
    let line = String::from_utf8(out).unwrap();
    let fields = line.split_once("\"tcp_state\":\"ESTABLISHED\",").unwrap().1;
    assert_eq!(
        fields,
        "\"dst_city\":\"London\",\"dst_country\":\"United Kingdom\",\"dst_lat\":51.5142,\"dst_lon\":-0.0931,\
         \"dst_country_code\":\"GB\",\"pid\":4242,\"uid\":1000,\"comm\":\"curl\",\"mark\":42}\n"
    );
    // Source fields come first, each group in order.
    ev.orig.src = ip("81.2.69.160");
    ev.orig.dst = ip("2001:218::1");
    e.enrich(&mut ev);
    let mut out = Vec::new();
    write_line(&mut out, &ev);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).filter(|k| k.starts_with("src_") || k.starts_with("dst_")).collect();
    let want = [
        "src_addr",
        "dst_addr",
        "src_port",
        "dst_port",
        "src_city",
        "src_country",
        "src_lat",
        "src_lon",
        "dst_country",
        "dst_lat",
        "dst_lon",
        "src_country_code",
        "dst_country_code",
    ];
    assert_eq!(keys, want, "{v}");
    assert_eq!(v["dst_lon"], 139.75309, "coordinates are JSON numbers");
}

#[test]
fn private_local_and_multicast_addresses_get_nothing_even_if_the_database_knows_them() {
    let db = TempDb::new(&mmdb::edge_city_db());
    let mut e = enricher(Some(&db.0), None, 0);
    for addr in ["10.1.2.3", "127.0.0.1", "::1", "fe80::1", "fd00::1", "224.0.0.1", "169.254.1.1", "::ffff:10.1.2.3"] {
        assert_eq!(lookup(&mut e, addr), None, "{addr}");
    }
    assert_eq!(e.stats().city.lookups, 0, "non-public addresses are never looked up");
}

#[test]
fn partial_records() {
    let db = TempDb::new(&mmdb::edge_city_db());
    let mut e = enricher(Some(&db.0), None, 0);
    assert_eq!(lookup(&mut e, "203.0.113.9"), Some(info(Some("Alpha"), Some("Testland"), Some("TL"), Some((10.5, -20.25)))));
    assert_eq!(lookup(&mut e, "198.51.100.1"), Some(info(None, Some("Testland"), Some("TL"), Some((1.0, 2.0)))), "no city");
    assert_eq!(lookup(&mut e, "198.51.100.200"), Some(info(Some("Nowhere"), Some("Testland"), Some("TL"), None)), "no coordinates");
    assert_eq!(lookup(&mut e, "192.0.2.1"), None, "empty names and a latitude off the globe give nothing");
    assert_eq!(lookup(&mut e, "192.0.2.200"), Some(info(None, None, Some("ZZ"), None)), "only a country code");
    assert_eq!(lookup(&mut e, "2001:db8:1::5"), Some(info(Some("Sixville"), Some("Testland"), Some("TL"), Some((-33.5, 151.25)))));
    assert_eq!(lookup(&mut e, "2001:db8:2::5"), None);
    assert_eq!(e.stats().city.decode_errors, 0);
}

#[test]
fn coordinates_rule() {
    assert_eq!(geoip::coordinates(51.5, -0.1), Some((51.5, -0.1)));
    assert_eq!(geoip::coordinates(90.0, 180.0), Some((90.0, 180.0)));
    assert_eq!(geoip::coordinates(90.5, 0.0), None);
    assert_eq!(geoip::coordinates(0.0, -180.5), None);
    assert_eq!(geoip::coordinates(f64::NAN, 0.0), None);
    assert_eq!(geoip::coordinates(0.0, f64::INFINITY), None);
}

#[test]
fn wrong_shaped_records_are_counted_not_fatal() {
    let city = TempDb::new(&mmdb::edge_city_db());
    let asn = TempDb::new(&mmdb::asn_db("Example Org"));
    let mut e = enricher(Some(&city.0), Some(&asn.0), 0);
    // The flat @ip-location-db layout: a string where the city map belongs; the ASN is a string.
    assert_eq!(lookup(&mut e, "100.64.0.1"), None);
    assert_eq!(lookup(&mut e, "100.64.0.2"), None);
    assert_eq!(lookup(&mut e, "100.64.1.1"), None, "a string where the location map belongs");
    let stats = e.stats();
    assert_eq!((stats.city.lookups, stats.city.decode_errors), (3, 3));
    assert_eq!((stats.asn.lookups, stats.asn.decode_errors), (3, 2));
    assert!(e.city.as_ref().unwrap().warned && e.asn.as_ref().unwrap().warned, "each database warned (once)");
    // Good records still work.
    assert_eq!(lookup(&mut e, "203.0.113.1").unwrap().city.as_deref(), Some("Alpha"));
}

#[test]
fn asn_fields() {
    let asn = TempDb::new(&mmdb::asn_db("Example Org"));
    let mut e = enricher(None, Some(&asn.0), 0);
    let with_org = GeoInfo { asn: Some(64_500), as_org: Some("Example Org".into()), ..GeoInfo::default() };
    assert_eq!(lookup(&mut e, "203.0.113.1"), Some(with_org.clone()));
    assert_eq!(lookup(&mut e, "198.51.100.1"), Some(GeoInfo { asn: Some(64_501), ..GeoInfo::default() }), "no organisation");
    assert_eq!(lookup(&mut e, "2001:db8:1::1").unwrap().asn, Some(64_502));
    let mut fields = Vec::new();
    with_org.extra_fields(&SRC, &mut |name, value| fields.push((name, value)));
    assert_eq!(fields, [("src_asn", FieldValue::U64(64_500)), ("src_as_org", FieldValue::Str("Example Org"))]);
    // MaxMind's ASN test data.
    let mut e = enricher(Some(&maxmind("GeoIP2-City-Test.mmdb")), Some(&maxmind("GeoLite2-ASN-Test.mmdb")), 0);
    let google = lookup(&mut e, "1.0.0.1").unwrap();
    assert_eq!((google.asn, google.as_org.as_deref()), (Some(15_169), Some("Google Inc.")));
}

#[test]
fn startup_errors_name_the_file_and_the_problem() {
    let err = |city: &Path, asn: Option<&Path>| match Enricher::open(&config(Some(city), asn, 0)) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{} opened", city.display()),
    };
    let country = maxmind("GeoIP2-Country-Test.mmdb");
    let text = err(&country, None);
    assert!(text.contains("geoip.database") && text.contains("GeoIP2-Country-Test.mmdb") && text.contains("database_type is \"GeoIP2-Country\""), "{text}");
    let text = err(&maxmind("GeoIP2-City-Test.mmdb"), Some(&maxmind("GeoIP2-City-Test.mmdb")));
    assert!(text.contains("geoip.asn_database") && text.contains("\"GeoIP2-City\", expected an ASN database"), "{text}");
    let text = err(Path::new("/nonexistent/City.mmdb"), None);
    assert!(text.contains("/nonexistent/City.mmdb: cannot read the file: No such file"), "{text}");
    let whole = std::fs::read(maxmind("GeoIP2-City-Test.mmdb")).unwrap();
    let truncated = TempDb::new(&whole[..whole.len() / 2]);
    let text = err(&truncated.0, None);
    assert!(text.contains("not a valid MaxMind DB file") && text.contains("metadata"), "{text}");
    assert!(Enricher::open(&GeoipConfig::default()).unwrap().is_none(), "no database configured");
}

#[test]
fn cache_hits_and_disabled_cache() {
    let db = TempDb::new(&mmdb::edge_city_db());
    let mut e = enricher(Some(&db.0), None, 2);
    for _ in 0..3 {
        lookup(&mut e, "203.0.113.1");
    }
    lookup(&mut e, "1.2.3.4");
    let s = e.stats();
    assert_eq!((s.cache_hits, s.cache_misses, s.city.lookups), (2, 2, 2), "misses are cached too");
    lookup(&mut e, "1.2.3.5");
    lookup(&mut e, "1.2.3.6");
    assert_eq!(e.cache.len(), 2, "bounded");
    let mut off = enricher(Some(&db.0), None, 0);
    for _ in 0..3 {
        lookup(&mut off, "203.0.113.1");
    }
    assert_eq!((off.stats().cache_hits, off.stats().city.lookups), (0, 3));
}

#[test]
fn replaced_file_is_reloaded_and_a_broken_one_keeps_the_old_database() {
    let db = TempDb::new(&mmdb::city_db("Alpha"));
    let mut e = enricher(Some(&db.0), None, 16);
    assert_eq!(lookup(&mut e, "203.0.113.1").unwrap().city.as_deref(), Some("Alpha"));
    e.check_files();
    assert_eq!(e.stats().reloads, 0, "unchanged file");
    db.replace(&mmdb::city_db("Beta"));
    e.check_files();
    assert_eq!(lookup(&mut e, "203.0.113.1").unwrap().city.as_deref(), Some("Beta"), "cache cleared on reload");
    assert_eq!(e.stats().reloads, 1);
    db.replace(b"not a database");
    e.check_files();
    e.check_files();
    assert_eq!(e.stats().reload_failures, 1, "a broken file is tried once, until it changes again");
    assert_eq!(lookup(&mut e, "203.0.113.2").unwrap().city.as_deref(), Some("Beta"), "old database kept");
    db.replace(&mmdb::build("GeoLite2-ASN", &[]));
    e.reload("SIGHUP");
    assert_eq!(e.stats().reload_failures, 2, "a wrong type is refused on reload too");
    db.replace(&mmdb::city_db("Gamma"));
    e.reload("SIGHUP");
    assert_eq!(lookup(&mut e, "203.0.113.3").unwrap().city.as_deref(), Some("Gamma"));
    std::fs::remove_file(&db.0).unwrap();
    e.check_files();
    assert_eq!(e.stats().reload_failures, 3, "a missing file keeps the old database");
    assert_eq!(lookup(&mut e, "203.0.113.4").unwrap().city.as_deref(), Some("Gamma"));
}
