//! What enrichment attaches to an event: the GeoIP data of an address and
//! the process that made the connection. The types live with the event (every
//! sink reads them through [`super::fields`]); `enrich` fills them in.
use super::fields::FieldValue;

/// What the databases know about one address. Never empty when attached.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct GeoInfo {
    /// English city name.
    pub city: Option<Box<str>>,
    /// English country name.
    pub country: Option<Box<str>>,
    /// ISO 3166-1 alpha-2 country code.
    pub country_code: Option<Box<str>>,
    /// Latitude and longitude, both valid, or none.
    pub coordinates: Option<(f64, f64)>,
    pub asn: Option<u32>,
    pub as_org: Option<Box<str>>,
}

/// Field names of one side of the tuple.
pub(crate) struct Names {
    city: &'static str,
    country: &'static str,
    lat: &'static str,
    lon: &'static str,
    country_code: &'static str,
    asn: &'static str,
    as_org: &'static str,
}

pub(crate) const SRC: Names =
    Names { city: "src_city", country: "src_country", lat: "src_lat", lon: "src_lon", country_code: "src_country_code", asn: "src_asn", as_org: "src_as_org" };

pub(crate) const DST: Names =
    Names { city: "dst_city", country: "dst_country", lat: "dst_lat", lon: "dst_lon", country_code: "dst_country_code", asn: "dst_asn", as_org: "dst_as_org" };

impl GeoInfo {
    pub fn is_empty(&self) -> bool {
        *self == GeoInfo::default()
    }

    /// The contract's fields: city, country, lat, lon.
    pub fn contract_fields<'a>(&'a self, n: &Names, f: &mut impl FnMut(&'static str, FieldValue<'a>)) {
        if let Some(city) = &self.city {
            f(n.city, FieldValue::Str(city));
        }
        if let Some(country) = &self.country {
            f(n.country, FieldValue::Str(country));
        }
        if let Some((lat, lon)) = self.coordinates {
            f(n.lat, FieldValue::F64(lat));
            f(n.lon, FieldValue::F64(lon));
        }
    }

    /// The fields the original lacks: country code, AS number and organisation.
    pub fn extra_fields<'a>(&'a self, n: &Names, f: &mut impl FnMut(&'static str, FieldValue<'a>)) {
        if let Some(code) = &self.country_code {
            f(n.country_code, FieldValue::Str(code));
        }
        if let Some(asn) = self.asn {
            f(n.asn, FieldValue::U64(u64::from(asn)));
        }
        if let Some(org) = &self.as_org {
            f(n.as_org, FieldValue::Str(org));
        }
    }
}

/// The process behind a connection; every field but `pid`/`uid` is optional.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Process {
    pub pid: u32,
    pub uid: u32,
    pub comm: Option<String>,
    pub user: Option<String>,
    pub exe: Option<String>,
    pub cgroup: Option<String>,
    pub container_id: Option<String>,
    pub unit: Option<String>,
}
