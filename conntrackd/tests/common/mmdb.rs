//! Small MaxMind DB files for GeoIP tests, written with the `mmdb-writer`
//! crate: City- and ASN-shaped records, edge cases (IPv6, no city, no
//! coordinates, out-of-range coordinates, empty names, a private range the
//! daemon must never look up) and wrong-shaped records (the flat layout of
//! the `@ip-location-db` files). Shared by the unit tests (`#[path]`) and the
//! integration tests.
#![allow(dead_code)]

use mmdb_writer::{ipnet::IpNet, Value, Writer};

/// `{"names": {"en": name, "de": "x"}}`
fn named(name: &str) -> Value {
    Value::map([("names", Value::map([("en", Value::from(name)), ("de", Value::from("x"))]))])
}

/// A GeoIP2-City-shaped record.
pub fn city_record(city: Option<&str>, country: Option<(&str, &str)>, coords: Option<(f64, f64)>) -> Value {
    let mut entries: Vec<(String, Value)> = Vec::new();
    if let Some(city) = city {
        entries.push(("city".into(), named(city)));
    }
    if let Some((name, code)) = country {
        let mut country = vec![("iso_code".to_string(), Value::from(code))];
        country.push(("names".into(), Value::map([("en", Value::from(name))])));
        country.push(("geoname_id".into(), Value::from(2_635_167u32)));
        entries.push(("country".into(), country.into_iter().collect()));
    }
    if let Some((lat, lon)) = coords {
        let location = [("latitude", Value::from(lat)), ("longitude", Value::from(lon)), ("accuracy_radius", Value::from(100u16))];
        entries.push(("location".into(), Value::map(location)));
    }
    entries.push(("continent".into(), named("Europe")));
    entries.into_iter().collect()
}

fn net(cidr: &str) -> IpNet {
    cidr.parse().unwrap_or_else(|e| panic!("bad CIDR {cidr}: {e}"))
}

/// Writes records under `database_type` and returns the file's bytes.
pub fn build(database_type: &str, records: &[(&str, Value)]) -> Vec<u8> {
    let mut writer = Writer::new(database_type);
    for (cidr, value) in records {
        writer.insert_value(net(cidr), value.clone()).unwrap_or_else(|e| panic!("insert {cidr}: {e}"));
    }
    writer.to_bytes().expect("write mmdb")
}

/// A City database whose 203.0.113.0/24 (a test-host range) is in `city`.
pub fn city_db(city: &str) -> Vec<u8> {
    build("GeoLite2-City", &[("203.0.113.0/24", city_record(Some(city), Some(("Testland", "TL")), Some((10.5, -20.25))))])
}

/// The edge cases the unit tests check, in a GeoLite2-City database.
pub fn edge_city_db() -> Vec<u8> {
    build(
        "GeoLite2-City",
        &[
            ("203.0.113.0/24", city_record(Some("Alpha"), Some(("Testland", "TL")), Some((10.5, -20.25)))),
            // Country and coordinates, no city.
            ("198.51.100.0/25", city_record(None, Some(("Testland", "TL")), Some((1.0, 2.0)))),
            // City and country, no coordinates.
            ("198.51.100.128/25", city_record(Some("Nowhere"), Some(("Testland", "TL")), None)),
            // Empty names and out-of-range coordinates: none of them is emitted.
            ("192.0.2.0/25", city_record(Some(""), Some(("", "")), Some((95.0, 10.0)))),
            // Only a country code.
            ("192.0.2.128/25", Value::map([("country", Value::map([("iso_code", Value::from("ZZ"))]))])),
            ("2001:db8:1::/48", city_record(Some("Sixville"), Some(("Testland", "TL")), Some((-33.5, 151.25)))),
            // A private range: the daemon never looks it up.
            ("10.0.0.0/8", city_record(Some("Private"), Some(("Testland", "TL")), Some((1.0, 1.0)))),
            // Wrong shape: the flat layout of the @ip-location-db files.
            ("100.64.0.0/24", flat_record()),
            // Wrong shape inside: a string where the location map belongs.
            ("100.64.1.0/24", Value::map([("location", Value::from("51.5,-0.1"))])),
        ],
    )
}

/// A record as the flat `@ip-location-db` city files store it.
pub fn flat_record() -> Value {
    Value::map([("city", Value::from("London")), ("country_code", Value::from("GB")), ("latitude", Value::from(51.5f64)), ("longitude", Value::from(-0.1f64))])
}

/// A GeoLite2-ASN database with 203.0.113.0/24 in AS 64500 and edge cases.
pub fn asn_db(org: &str) -> Vec<u8> {
    let record = |asn: u32, org: Option<&str>| {
        let mut entries = vec![("autonomous_system_number".to_string(), Value::from(asn))];
        if let Some(org) = org {
            entries.push(("autonomous_system_organization".into(), Value::from(org)));
        }
        entries.into_iter().collect::<Value>()
    };
    build(
        "GeoLite2-ASN",
        &[
            ("203.0.113.0/24", record(64_500, Some(org))),
            ("198.51.100.0/24", record(64_501, None)),
            ("2001:db8:1::/48", record(64_502, Some("Six Networks"))),
            ("100.64.0.0/24", Value::map([("autonomous_system_number", Value::from("AS64500"))])),
        ],
    )
}
