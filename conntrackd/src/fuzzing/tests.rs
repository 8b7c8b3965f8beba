//! Replays the committed fuzz corpora (`conntrackd/fuzz/regressions/<target>`,
//! every input that once crashed or that reaches a limit, and the seeds in
//! `conntrackd/fuzz/corpus/<target>`) through the fuzz targets' own entry
//! points, on stable Rust and a 2 MiB thread; checks the dictionaries.
use std::path::{Path, PathBuf};

use super::TARGETS;

const FUZZ_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz");

/// The files of a corpus directory, sorted; none if it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect()).unwrap_or_default();
    files.sort();
    files
}

/// Runs every input of `dir` through `entry` on a thread with 2 MiB of stack; returns how many ran.
fn replay(dir: &Path, entry: super::Entry) -> usize {
    let files = inputs(dir);
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let name = file.display().to_string();
        std::thread::Builder::new()
            .name(name.clone())
            .stack_size(2 << 20)
            .spawn(move || entry(&data))
            .expect("spawn")
            .join()
            .unwrap_or_else(|_| panic!("{name} fails its fuzz target again"));
    }
    files.len()
}

#[test]
fn targets_are_the_fuzz_crates_binaries() {
    let manifest = std::fs::read_to_string(Path::new(FUZZ_DIR).join("Cargo.toml")).expect("conntrackd/fuzz/Cargo.toml");
    let bins: Vec<&str> = manifest.lines().filter_map(|l| l.strip_prefix("name = \"")?.strip_suffix('"')).filter(|n| *n != "conntrackd-fuzz").collect();
    assert_eq!(bins, TARGETS.iter().map(|(n, _)| *n).collect::<Vec<_>>());
    for (name, _) in TARGETS {
        let source = std::fs::read_to_string(Path::new(FUZZ_DIR).join("fuzz_targets").join(format!("{name}.rs"))).expect("target source");
        assert!(source.contains(&format!("conntrackd::fuzzing::{name}(data)")), "fuzz_targets/{name}.rs calls fuzzing::{name}");
    }
}

#[test]
fn every_target_replays_its_regression_corpus() {
    for (target, entry) in TARGETS {
        let dir = Path::new(FUZZ_DIR).join("regressions").join(target);
        let n = replay(&dir, entry);
        assert!(n > 0, "{} has no inputs: every target keeps a regression corpus", dir.display());
    }
}

#[test]
fn seed_corpora_replay_and_belong_to_targets() {
    let root = Path::new(FUZZ_DIR).join("corpus");
    let dirs = std::fs::read_dir(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    let mut seen = 0;
    for dir in dirs.filter_map(|e| e.ok().map(|e| e.path())) {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let (_, entry) = TARGETS.iter().find(|(t, _)| *t == name).unwrap_or_else(|| panic!("{} is not a fuzz target's corpus", dir.display()));
        seen += replay(&dir, *entry);
    }
    assert!(seen > 0, "no seed inputs under {}", root.display());
}

/// The entries of a libFuzzer dictionary (`"…"` or `name="…"` with `\\`, `\"` and `\xNN` escapes).
fn dictionary(name: &str) -> Vec<Vec<u8>> {
    let path = Path::new(FUZZ_DIR).join("dict").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#')) {
        let quoted = line.split_once('=').filter(|(k, _)| !k.contains('"')).map_or(line, |(_, v)| v);
        let inner = quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')).unwrap_or_else(|| panic!("{name}:{}: not a quoted entry: {line}", n + 1));
        let (mut bytes, mut rest) = (Vec::new(), inner.as_bytes());
        while let Some((&b, tail)) = rest.split_first() {
            rest = tail;
            match (b, rest) {
                (b'\\', [b'\\' | b'"', tail @ ..]) => {
                    bytes.push(rest[0]);
                    rest = tail;
                }
                (b'\\', [b'x', h, l, tail @ ..]) => {
                    let hex = std::str::from_utf8(&[*h, *l]).ok().and_then(|s| u8::from_str_radix(s, 16).ok());
                    bytes.push(hex.unwrap_or_else(|| panic!("{name}:{}: bad \\x escape", n + 1)));
                    rest = tail;
                }
                (b'\\' | b'"', _) => panic!("{name}:{}: unescaped {:?}", n + 1, b as char),
                _ => bytes.push(b),
            }
        }
        entries.push(bytes);
    }
    entries
}

#[test]
fn rules_dictionary_covers_every_word_and_operator_of_the_valid_documented_examples() {
    let dict = dictionary("rules.dict");
    let has = |w: &str| dict.iter().any(|e| e.eq_ignore_ascii_case(w.as_bytes()));
    let docs = include_str!("../../../docs/rules.md");
    let mut in_block = false;
    let mut checked = 0;
    for line in docs.lines() {
        match line.trim_end() {
            "```rules" => in_block = true,
            "```" => in_block = false,
            rule if in_block => {
                for token in crate::filter::lexer::tokenize(rule, 1).into_iter().flatten() {
                    let text = match token.kind {
                        crate::filter::lexer::Tok::Word(w) if w.chars().all(|c| c.is_ascii_alphabetic() || c == '_' || c == '.') => w.to_string(),
                        crate::filter::lexer::Tok::Op(op) => op.to_string(),
                        _ => continue,
                    };
                    assert!(has(&text), "rules.dict lacks {text:?} (from docs/rules.md: {rule})");
                    checked += 1;
                }
            }
            _ => {}
        }
    }
    assert!(checked > 100, "only {checked} tokens checked");
}

#[test]
fn config_dictionary_has_every_table_and_key() {
    let dict = dictionary("config.dict");
    for key in crate::config::keys::keys() {
        let (table, leaf) = key.path.rsplit_once('.').unwrap_or(("", key.path));
        let entry = format!("{leaf} = ");
        assert!(dict.iter().any(|e| e == entry.as_bytes()), "config.dict lacks {entry:?} ({})", key.path);
        if !table.is_empty() {
            let header = format!("[{table}]\n");
            assert!(dict.iter().any(|e| e == header.as_bytes()), "config.dict lacks {header:?} ({})", key.path);
        }
    }
}
