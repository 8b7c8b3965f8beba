//! The string fields rules test and the tests on them (`==`, `in`,
//! `startsWith`, `endsWith`, `contains`, `matches` with a literal), as the
//! fast tree evaluates them: the field is read (an address written into a
//! stack buffer), never allocated.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::{fmt::Write as _, net::IpAddr};

use super::ast::{ProcessField, Side};
use crate::event::Event;

/// A string field of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextField {
    Type,
    Protocol,
    /// The side's address as the daemon writes it, IPv4-mapped IPv6 as IPv4.
    Address(Side),
    /// Empty when the process (or the field) is not known.
    Process(ProcessField),
    /// The destination's DNS name; empty until names are observed.
    Domain,
}

impl TextField {
    /// The field's text on `ev`; an address is written into `buf`.
    pub fn read<'e>(self, ev: &'e Event, buf: &'e mut AddrBuf) -> &'e str {
        match self {
            TextField::Address(side) => buf.write(address(ev, side)),
            other => other.borrowed(ev).unwrap_or_default(),
        }
    }

    /// The field's text when it is stored in the event (every field but the addresses).
    pub fn borrowed(self, ev: &Event) -> Option<&str> {
        match self {
            TextField::Type => Some(ev.kind.as_str()),
            TextField::Protocol => Some(ev.protocol.as_str()),
            TextField::Address(_) => None,
            TextField::Process(field) => Some(process_field(ev, field)),
            TextField::Domain => Some(""),
        }
    }
}

/// The side's address of the original tuple.
pub(crate) fn address(ev: &Event, side: Side) -> IpAddr {
    if side == Side::Source {
        ev.orig.src
    } else {
        ev.orig.dst
    }
}

/// A process field, empty when the process (or the field) is not known.
pub(crate) fn process_field(ev: &Event, field: ProcessField) -> &str {
    let Some(p) = ev.process.as_ref() else { return "" };
    let value = match field {
        ProcessField::Comm => &p.comm,
        ProcessField::User => &p.user,
        ProcessField::Exe => &p.exe,
    };
    value.as_deref().unwrap_or("")
}

/// A compiled regular expression, compared by its pattern.
#[derive(Debug, Clone)]
pub(crate) struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for Pattern {}

/// What a string field is tested for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TextTest {
    /// Equal to one of the values.
    OneOf(Vec<String>),
    StartsWith(String),
    EndsWith(String),
    Contains(String),
    /// CEL `matches`: the pattern matches somewhere in the text (RE2 syntax).
    Matches(Pattern),
}

impl TextTest {
    pub fn test(&self, text: &str) -> bool {
        match self {
            TextTest::OneOf(values) => values.iter().any(|v| v == text),
            TextTest::StartsWith(p) => text.starts_with(p.as_str()),
            TextTest::EndsWith(s) => text.ends_with(s.as_str()),
            TextTest::Contains(s) => text.contains(s.as_str()),
            TextTest::Matches(re) => re.0.is_match(text),
        }
    }
}

/// Room for an address written as text, on the stack (an IPv6 address is at most 39 bytes).
pub(crate) struct AddrBuf {
    bytes: [u8; 48],
    len: usize,
}

impl Default for AddrBuf {
    fn default() -> Self {
        Self { bytes: [0; 48], len: 0 }
    }
}

impl std::fmt::Write for AddrBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl AddrBuf {
    /// The canonical text of `ip` (IPv4-mapped IPv6 as IPv4).
    pub fn write(&mut self, ip: IpAddr) -> &str {
        self.len = 0;
        let _ = write!(self, "{}", ip.to_canonical());
        self.bytes.get(..self.len).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or("")
    }
}

/// The text an address field has for `ip`: what a literal compared with it must be.
pub(crate) fn canonical(ip: IpAddr) -> String {
    ip.to_canonical().to_string()
}
