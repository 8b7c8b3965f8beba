//! The table of every configuration key, collected from the sections'
//! declarations ([`crate::schema::section!`] in `raw.rs` and the
//! components' config modules), which drives the environment variables
//! (`CONNTRACKD_` + path with `_`), the command-line flags (the original's
//! dotted names) and their help texts. Overrides are applied to the parsed
//! TOML document before it is deserialized, so precedence is defaults < file
//! < environment < flags for every key alike.
//!
//! Enumerations list their values in the key's declaration (`Kind::Enum`
//! from the value's [`crate::schema::choice!`], and the schemes of a
//! `Kind::Url`): clap offers and checks them, and tests derive their cases
//! from them (a unit test proves validation accepts exactly these; the
//! option matrix reads the table through `conntrackd::testing::keys`).
use std::sync::LazyLock;

use toml::{Table, Value};

pub(crate) use crate::schema::{Key, Kind};

/// Every key of the file, in declaration order.
static KEYS: LazyLock<Vec<Key>> = LazyLock::new(|| crate::schema::flatten(&super::raw::RawConfig::keys()));

/// Every key of the file (tests check this table against the schema and the example config).
pub(crate) fn keys() -> &'static [Key] {
    &KEYS
}

/// The environment variable of a key: `sink.loki.enable` -> `CONNTRACKD_SINK_LOKI_ENABLE`.
pub(crate) fn env_name(path: &str) -> String {
    format!("CONNTRACKD_{}", path.replace('.', "_").to_ascii_uppercase())
}

/// Where an override came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    Env(String),
    Flag(&'static str),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::Flag(path) => write!(f, "--{path}"),
        }
    }
}

/// A value that can not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {message}")]
pub(crate) struct OverrideError {
    pub origin: Origin,
    pub message: String,
}

/// Variables that start like ours but are not configuration keys.
const NOT_KEYS: [&str; 1] = ["CONNTRACKD_EBPF_OBJ"];

/// Applies every `CONNTRACKD_*` variable that names a key; returns the names
/// of those that do not (to be warned about: a typo is not silently ignored).
pub(crate) fn apply_env(doc: &mut Table, vars: &[(String, String)]) -> Result<Vec<String>, OverrideError> {
    let mut unknown = Vec::new();
    for (name, text) in vars.iter().filter(|(n, _)| n.starts_with("CONNTRACKD_") && !NOT_KEYS.contains(&n.as_str())) {
        let origin = Origin::Env(name.clone());
        let Some(key) = keys().iter().find(|k| env_name(k.path) == *name) else {
            unknown.push(name.clone());
            continue;
        };
        let value = match key.kind {
            Kind::List => parse_array(text),
            kind => parse_scalar(kind, text),
        }
        .map_err(|message| OverrideError { origin, message })?;
        set(doc, key.path, value);
    }
    Ok(unknown)
}

/// Applies flags given as (key path, values); a list flag's values form the list.
pub(crate) fn apply_flags(doc: &mut Table, flags: &[(&'static str, Vec<String>)]) -> Result<(), OverrideError> {
    for (path, values) in flags {
        let Some(key) = keys().iter().find(|k| k.path == *path) else { continue };
        let origin = Origin::Flag(key.path);
        let value = match (key.kind, values.last()) {
            (Kind::List, _) => Ok(Value::Array(values.iter().cloned().map(Value::String).collect())),
            (kind, Some(text)) => parse_scalar(kind, text),
            (_, None) => continue,
        }
        .map_err(|message| OverrideError { origin, message })?;
        set(doc, key.path, value);
    }
    Ok(())
}

fn parse_scalar(kind: Kind, text: &str) -> Result<Value, String> {
    match kind {
        Kind::Bool => match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" => Ok(Value::Boolean(false)),
            _ => Err(format!("expected true or false, found {text:?}")),
        },
        // Every integer key is a count, size or interval: none is negative.
        Kind::Int => match text.trim().parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Value::Integer(n)),
            Ok(_) => Err(format!("expected a whole number of at least 0, found {text:?}")),
            Err(_) => Err(format!("expected a whole number, found {text:?}")),
        },
        Kind::Str | Kind::Enum(_) | Kind::Url(_) | Kind::List | Kind::Table(_) => Ok(Value::String(text.to_string())),
    }
}

/// A TOML array such as `["log any", "drop any"]`.
fn parse_array(text: &str) -> Result<Value, String> {
    let doc: Table = toml::from_str(&format!("v = {text}")).map_err(|e| format!("expected a TOML array of strings such as [\"a\", \"b\"]: {}", e.message()))?;
    match doc.get("v") {
        Some(Value::Array(items)) if items.iter().all(Value::is_str) => Ok(Value::Array(items.clone())),
        _ => Err(format!("expected a TOML array of strings such as [\"a\", \"b\"], found {text:?}")),
    }
}

/// Sets `a.b.c` in the document, creating tables on the way.
fn set(doc: &mut Table, path: &str, value: Value) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().unwrap_or(path);
    let mut table = doc;
    for part in parts {
        let entry = table.entry(part.to_string()).or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        let Value::Table(inner) = entry else { return };
        table = inner;
    }
    table.insert(last.to_string(), value);
}
