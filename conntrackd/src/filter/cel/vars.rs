//! The variables a CEL rule can read, their types, and their values on an
//! event (the same for the fast tree and the interpreter).
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use super::types::Ty;
use crate::{
    event::Event,
    filter::{
        ast::{ProcessField, Side},
        text::TextField,
    },
};

/// One event variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Var {
    Type,
    Protocol,
    Address(Side),
    Port(Side),
    Process(ProcessField),
    Domain,
}

/// Every variable by name, in the order errors list them.
pub(crate) const VARIABLES: [(&str, Var); 10] = [
    ("event.type", Var::Type),
    ("protocol", Var::Protocol),
    ("source.address", Var::Address(Side::Source)),
    ("destination.address", Var::Address(Side::Destination)),
    ("source.port", Var::Port(Side::Source)),
    ("destination.port", Var::Port(Side::Destination)),
    ("process.comm", Var::Process(ProcessField::Comm)),
    ("process.user", Var::Process(ProcessField::User)),
    ("process.exe", Var::Process(ProcessField::Exe)),
    ("destination.domain", Var::Domain),
];

/// The first segments of the dotted variables: alone they are no value.
pub(crate) const NAMESPACES: [&str; 4] = ["event", "source", "destination", "process"];

impl Var {
    pub fn lookup(name: &str) -> Option<Var> {
        VARIABLES.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
    }

    pub fn ty(self) -> Ty {
        match self {
            Var::Port(_) => Ty::Int,
            _ => Ty::String,
        }
    }

    /// The string field the variable is, or `None` for the ports (ints).
    pub fn text(self) -> Option<TextField> {
        match self {
            Var::Type => Some(TextField::Type),
            Var::Protocol => Some(TextField::Protocol),
            Var::Address(side) => Some(TextField::Address(side)),
            Var::Process(field) => Some(TextField::Process(field)),
            Var::Domain => Some(TextField::Domain),
            Var::Port(_) => None,
        }
    }

    pub fn int(self, ev: &Event) -> Option<i64> {
        match self {
            Var::Port(Side::Source) => Some(i64::from(ev.orig.src_port)),
            Var::Port(_) => Some(i64::from(ev.orig.dst_port)),
            _ => None,
        }
    }
}
