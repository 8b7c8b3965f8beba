//! The event's fields in the contract's order (README "Event fields"),
//! as one visitor every sink encodes from: JSON lines, journald `EVENT_*`,
//! syslog `@cee`, Loki structured metadata. Add a field here and every sink
//! carries it.
use std::net::IpAddr;

use super::{tcp_state_name, Endpoints, Event, DST, SRC};

/// One field value, borrowed from the event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum FieldValue<'a> {
    Str(&'a str),
    Ip(IpAddr),
    U64(u64),
    /// ns since the Unix epoch; encoded as RFC 3339.
    Time(i128),
    /// Coordinates; always finite.
    F64(f64),
}

impl FieldValue<'_> {
    /// The value as plain text (journald fields, logfmt): strings as they are,
    /// times as RFC 3339.
    pub fn write_text(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        let _ = match self {
            FieldValue::Str(s) => out.write_all(s.as_bytes()),
            FieldValue::Ip(ip) => write!(out, "{ip}"),
            FieldValue::U64(n) => write!(out, "{n}"),
            FieldValue::F64(x) => write!(out, "{x}"),
            FieldValue::Time(ns) => {
                super::time::write_rfc3339(out, *ns);
                Ok(())
            }
        };
    }
}

impl Event {
    /// Calls `f(name, value)` for each present field, in contract order:
    /// type, flow, prot, src_addr, dst_addr, src_port, dst_port, tcp_state,
    /// src_city, src_country, src_lat, src_lon, dst_city, dst_country,
    /// dst_lat, dst_lon, then the fields the original lacks (`community_id` last).
    pub fn for_each_field(&self, mut f: impl FnMut(&'static str, FieldValue<'_>)) {
        f("type", FieldValue::Str(self.kind.as_str()));
        if let Some(flow) = self.flow {
            f("flow", FieldValue::U64(u64::from(flow)));
        }
        f("prot", FieldValue::Str(self.protocol.as_str()));
        tuple(&mut f, ["src_addr", "dst_addr", "src_port", "dst_port"], &self.orig);
        if let Some(state) = self.tcp_state {
            f("tcp_state", FieldValue::Str(tcp_state_name(state)));
        }
        let geo = [(&SRC, self.src_geo.as_deref()), (&DST, self.dst_geo.as_deref())];
        for (names, info) in geo {
            if let Some(info) = info {
                info.contract_fields(names, &mut f);
            }
        }
        for (names, info) in geo {
            if let Some(info) = info {
                info.extra_fields(names, &mut f);
            }
        }
        if let Some(p) = &self.process {
            f("pid", FieldValue::U64(u64::from(p.pid)));
            f("uid", FieldValue::U64(u64::from(p.uid)));
            let optional = [("comm", &p.comm), ("user", &p.user), ("exe", &p.exe), ("cgroup", &p.cgroup), ("container_id", &p.container_id), ("unit", &p.unit)];
            for (name, value) in optional {
                if let Some(v) = value {
                    f(name, FieldValue::Str(v));
                }
            }
        }
        if let Some(reply) = self.reply.as_ref().filter(|r| !is_mirror(&self.orig, r)) {
            tuple(&mut f, ["reply_src_addr", "reply_dst_addr", "reply_src_port", "reply_dst_port"], reply);
        }
        if let Some(mark) = self.mark.filter(|&m| m != 0) {
            f("mark", FieldValue::U64(u64::from(mark)));
        }
        if let Some(zone) = self.zone.filter(|&z| z != 0) {
            f("zone", FieldValue::U64(u64::from(zone)));
        }
        if let Some(c) = &self.counters {
            f("orig_packets", FieldValue::U64(c.orig_packets));
            f("orig_bytes", FieldValue::U64(c.orig_bytes));
            f("reply_packets", FieldValue::U64(c.reply_packets));
            f("reply_bytes", FieldValue::U64(c.reply_bytes));
        }
        if let Some(start) = self.start_ns.filter(|&s| s != 0) {
            f("start", FieldValue::Time(i128::from(start)));
            if let Some(stop) = self.stop_ns.filter(|&s| s >= start) {
                // Cannot underflow: stop >= start (the filter above).
                f("duration_ms", FieldValue::U64((stop - start) / 1_000_000));
            }
        }
        if let Some(netns) = &self.netns {
            f("netns", FieldValue::Str(netns));
        }
        if let Some(id) = &self.community_id {
            f("community_id", FieldValue::Str(id.as_str()));
        }
    }
}

fn tuple(f: &mut impl FnMut(&'static str, FieldValue<'_>), names: [&'static str; 4], t: &Endpoints) {
    f(names[0], FieldValue::Ip(t.src));
    f(names[1], FieldValue::Ip(t.dst));
    f(names[2], FieldValue::U64(u64::from(t.src_port)));
    f(names[3], FieldValue::U64(u64::from(t.dst_port)));
}

/// True when the reply tuple is the plain mirror of the original (no NAT).
fn is_mirror(orig: &Endpoints, reply: &Endpoints) -> bool {
    orig.src == reply.dst && orig.dst == reply.src && orig.src_port == reply.dst_port && orig.dst_port == reply.src_port
}
