//! The file formats: TOML (the documented one), YAML and JSON (the Go
//! original's installer writes `conntrackd.yaml`), chosen by the file's
//! extension as the original does. The same keys in every format.
//!
//! Each file is read twice: once into the raw structs, so unknown keys and
//! wrong types are reported with the line and column the format's parser
//! knows; once into a generic document, which the environment and flags are
//! applied to before it is deserialized again. YAML and JSON documents are
//! turned into a TOML table for that second step; a key with no value
//! (`address:` in YAML, `null` in JSON) counts as absent.
//!
//! Nesting is bounded in every parser: the TOML parser's recursion limit,
//! serde-saphyr's budget (`max_depth` 64) and serde_json's limit of 128.
//! serde-saphyr is used for YAML because it is maintained, parses in safe
//! Rust without panics, enforces those budgets, and reports locations
//! (serde_yaml is archived; its forks wrap a C-port parser).
use std::path::{Path, PathBuf};

use super::{raw::RawConfig, ConfigError};

/// Where the daemon looks when `--config` is not given.
pub(crate) const DEFAULT_DIR: &str = "/etc/conntrackd";
/// The file names looked for there, in this order; a missing file is fine,
/// two present at once are an error.
pub(crate) const DEFAULT_NAMES: [&str; 4] = ["conntrackd.toml", "conntrackd.yaml", "conntrackd.yml", "conntrackd.json"];

/// A configuration file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Toml,
    Yaml,
    Json,
}

impl Format {
    /// The format of `path`, from its extension.
    pub fn of(path: &Path) -> Result<Self, ConfigError> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("toml") => Ok(Format::Toml),
            Some("yaml" | "yml") => Ok(Format::Yaml),
            Some("json") => Ok(Format::Json),
            _ => Err(ConfigError::Parse { path: path.into(), message: "unknown format: the file name must end in .toml, .yaml, .yml or .json".into() }),
        }
    }
}

/// The configuration file in `dir` (normally [`DEFAULT_DIR`]), if one exists.
pub(crate) fn default_file(dir: &Path) -> Result<Option<PathBuf>, ConfigError> {
    let found: Vec<PathBuf> = DEFAULT_NAMES.iter().map(|name| dir.join(name)).filter(|p| p.exists()).collect();
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        [first, second, ..] => Err(ConfigError::Parse {
            path: first.clone(),
            message: format!("{} exists too: keep one configuration file (conntrackd would not know which one to read)", second.display()),
        }),
    }
}

/// Checks the file's shape and returns it as a TOML table.
pub(crate) fn document(format: Format, file: &Path, text: &str) -> Result<toml::Table, ConfigError> {
    let error = |message: String| ConfigError::Parse { path: file.into(), message };
    match format {
        Format::Toml => {
            toml_parse::<RawConfig>(text).map_err(error)?;
            toml_parse::<toml::Table>(text).map_err(error)
        }
        Format::Yaml => {
            let options = serde_saphyr::options! { with_snippet: false };
            serde_saphyr::from_str_with_options::<RawConfig>(text, options.clone()).map_err(|e| error(yaml_message(&e)))?;
            let value: serde_json::Value = serde_saphyr::from_str_with_options(text, options).map_err(|e| error(yaml_message(&e)))?;
            table(value).map_err(error)
        }
        Format::Json => {
            serde_path_to_error::deserialize::<_, RawConfig>(&mut serde_json::Deserializer::from_str(text)).map_err(|e| {
                let key = e.path().to_string();
                let message = json_message(e.inner());
                error(if key == "." { message } else { message.replacen(": ", &format!(": {key}: "), 1) })
            })?;
            let value: serde_json::Value = serde_json::from_str(text).map_err(|e| error(json_message(&e)))?;
            table(value).map_err(error)
        }
    }
}

fn toml_parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|err| toml_message(text, &err))
}

/// "key.path: message" (serde_path_to_error tracks where in the document
/// the value was that did not fit); just the message for a syntax error.
pub(super) fn keyed(err: &serde_path_to_error::Error<toml::de::Error>) -> String {
    let message = err.inner().message().trim_end();
    match err.path().to_string() {
        root if root == "." => message.to_string(),
        key => format!("{key}: {message}"),
    }
}

/// "line L, column C: key.path: message" from a toml error's span.
fn toml_message(text: &str, err: &serde_path_to_error::Error<toml::de::Error>) -> String {
    let mut message = keyed(err);
    // The TOML parser bounds nesting itself (arrays, inline tables, dotted keys).
    if message.ends_with("recursion limit exceeded") {
        message.push_str(" (arrays, inline tables or dotted keys nested too deeply)");
    }
    let Some(span) = err.inner().span() else { return message };
    let before = text.get(..text.floor_char_boundary(span.start)).unwrap_or(text);
    let line = before.matches('\n').count().saturating_add(1);
    // `nl` is the index of a byte of `before`, so `before.len() - nl - 1` cannot underflow.
    let column = before.rfind('\n').map_or(before.len(), |nl| before.len() - nl - 1).saturating_add(1);
    format!("line {line}, column {column}: {message}")
}

fn yaml_message(err: &serde_saphyr::Error) -> String {
    // serde-saphyr appends " at line L, column C"; say it first, as for the other formats.
    let message = err.to_string();
    let first = message.lines().next().unwrap_or_default().trim_end();
    let text = first.rsplit_once(" at line ").map_or(first, |(m, _)| m);
    match err.location() {
        Some(at) => format!("line {}, column {}: {text}", at.line(), at.column()),
        None => text.to_string(),
    }
}

fn json_message(err: &serde_json::Error) -> String {
    // serde_json appends " at line L column C"; say it first, as for the other formats.
    let message = err.to_string();
    let text = message.rsplit_once(" at line ").map_or(message.as_str(), |(m, _)| m);
    format!("line {}, column {}: {text}", err.line(), err.column())
}

/// A YAML or JSON document as a TOML table; nulls count as absent.
fn table(value: serde_json::Value) -> Result<toml::Table, String> {
    match value {
        serde_json::Value::Null => Ok(toml::Table::new()),
        serde_json::Value::Object(map) => {
            Ok(map.into_iter().filter_map(|(k, v)| Some(toml_value(v).transpose()?.map(|v| (k, v)))).collect::<Result<_, _>>()?)
        }
        other => Err(format!("expected a mapping of keys at the top, found {}", kind(&other))),
    }
}

fn toml_value(value: serde_json::Value) -> Result<Option<toml::Value>, String> {
    use serde_json::Value as J;
    Ok(Some(match value {
        J::Null => return Ok(None),
        J::Bool(b) => toml::Value::Boolean(b),
        J::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => toml::Value::Integer(i),
            (None, Some(f)) if n.is_f64() => toml::Value::Float(f),
            _ => return Err(format!("the number {n} is out of range")),
        },
        J::String(s) => toml::Value::String(s),
        J::Array(items) => toml::Value::Array(items.into_iter().filter_map(|v| toml_value(v).transpose()).collect::<Result<_, _>>()?),
        J::Object(map) => toml::Value::Table(table(J::Object(map))?),
    }))
}

fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "nothing",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a mapping",
    }
}
