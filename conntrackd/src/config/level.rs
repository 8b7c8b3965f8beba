//! `log.level` as the original reads it (Go's `slog.Level.UnmarshalText`):
//! `debug`, `info`, `warn` or `error` in any case, optionally followed by a
//! signed offset (`info+2`, `DEBUG-4`). slog's levels are numbers (DEBUG -4,
//! INFO 0, WARN 4, ERROR 8) and a level shows the records at or above it;
//! the result is the tracing filter that shows the same records: the least
//! severe level at or above the number (below DEBUG: TRACE; above ERROR:
//! nothing).
use tracing_subscriber::filter::LevelFilter;

const NAMES: [(&str, i64); 4] = [("debug", -4), ("info", 0), ("warn", 4), ("error", 8)];

/// The level names, for the key table (and clap, which also takes an offset).
// Evaluated at compile time: an index out of range is a build error, not a panic.
#[allow(clippy::indexing_slicing)]
pub(super) const LEVEL_NAMES: [&str; NAMES.len()] = {
    let mut out = [""; NAMES.len()];
    let mut i = 0;
    while i < NAMES.len() {
        out[i] = NAMES[i].0;
        i += 1;
    }
    out
};

/// The filter for `text`, or what was expected.
pub(super) fn parse(text: &str) -> Result<LevelFilter, String> {
    let expected = || format!("expected debug, info, warn or error, optionally with an offset such as info+2, found {text:?}");
    let (name, offset) = match text.find(['+', '-']) {
        Some(at) => {
            let (name, offset) = text.split_at_checked(at).ok_or_else(expected)?;
            (name, offset.parse::<i64>().map_err(|_| expected())?)
        }
        None => (text, 0),
    };
    let base = NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|&(_, v)| v).ok_or_else(expected)?;
    Ok(match base.saturating_add(offset) {
        v if v <= -5 => LevelFilter::TRACE,
        -4 => LevelFilter::DEBUG,
        -3..=0 => LevelFilter::INFO,
        1..=4 => LevelFilter::WARN,
        5..=8 => LevelFilter::ERROR,
        _ => LevelFilter::OFF,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_any_case_and_slog_offsets() {
        for (text, level) in [
            ("debug", LevelFilter::DEBUG),
            ("INFO", LevelFilter::INFO),
            ("Warn", LevelFilter::WARN),
            ("error", LevelFilter::ERROR),
            // slog: info+2 is level 2, so INFO (0) records are hidden and WARN (4) shown.
            ("info+2", LevelFilter::WARN),
            ("info+4", LevelFilter::WARN),
            ("info-1", LevelFilter::INFO),
            ("warn-4", LevelFilter::INFO),
            ("DEBUG-4", LevelFilter::TRACE),
            ("debug+1", LevelFilter::INFO),
            ("error+1", LevelFilter::OFF),
            ("error-3", LevelFilter::ERROR),
        ] {
            assert_eq!(parse(text), Ok(level), "{text}");
        }
    }

    #[test]
    fn what_slog_refuses_is_refused() {
        for bad in ["", "warning", "trace", "info+", "info+x", "+2", "info 2", "infoo"] {
            let err = parse(bad).unwrap_err();
            assert!(err.starts_with("expected debug, info, warn or error") && err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }
}
