//! The generator's own correctness: after each load, before the flush, the
//! client's table must hold exactly one entry per requested connection
//! (`conntrack -C`), and as many to the public address as the mode sends
//! there (`conntrack -L -d 203.0.113.10`).
use serde::Serialize;

use super::{mode::Mode, netns, report::RunResult};

/// One run's requested and created entries.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct GeneratorCheck {
    pub run: String,
    pub requested: u64,
    /// `conntrack -C` in the client namespace.
    pub created: u64,
    pub requested_public: u64,
    /// `conntrack -L -p tcp -d <public>` lines.
    pub listed_public: u64,
    pub ok: bool,
}

/// Checks every run (each repetition on its own).
pub(crate) fn generator(samples: &[RunResult], connections: u32) -> Vec<GeneratorCheck> {
    samples
        .iter()
        .map(|r| {
            let requested = u64::from(connections);
            let requested_public = Mode::ALL.iter().find(|m| m.label() == r.mode).map_or(requested, |m| public_of(*m, requested));
            GeneratorCheck {
                run: format!("{} on {} at {}", r.consumer, r.mode, r.rate),
                requested,
                created: r.table_entries,
                requested_public,
                listed_public: r.public_entries,
                ok: r.table_entries == requested && r.public_entries == requested_public,
            }
        })
        .collect()
}

/// How many of `connections` the mode sends to the public address.
fn public_of(mode: Mode, connections: u64) -> u64 {
    (0..connections).filter(|&i| mode.destination(i) == netns::SERVER_ADDR).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_entry_fails_the_check() {
        let run = |entries, public| RunResult { mode: Mode::Mixed.label(), table_entries: entries, public_entries: public, ..RunResult::default() };
        let checks = generator(&[run(1000, 100), run(999, 100), run(1000, 99)], 1000);
        assert_eq!(checks.iter().map(|c| c.ok).collect::<Vec<_>>(), [true, false, false]);
        assert_eq!(checks[0].requested_public, 100);
    }
}
