//! The daemon's layers (docs/architecture.md "Layers"), checked from the
//! source: every `crate::…` path (in `use` lines and in code) and every
//! `super::…` path that climbs to the crate root is a reference from the
//! top-level module of the file it is in to the module it names. Comments,
//! strings and character literals are skipped.
//!
//! Checked: the graph of top-level modules has no cycle; `event` imports no
//! other module of the daemon; every reference goes down the layer table
//! [`LAYERS`] (a new module must be placed in it).
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Layers from the bottom; a module may only reference modules of lower layers.
const LAYERS: &[&[&str]] = &[
    // The event, what enrichment attaches to it, its clocks; host facts; sd_notify;
    // how configuration keys are declared (every component declares its own).
    &["event", "host", "notify", "schema"],
    // The components: the rules (they derive the kernel table, an `event` type),
    // the sources, enrichment and the sinks. Each owns its config section;
    // none imports another.
    &["filter", "source", "enrich", "sink"],
    // Composition of the configuration; the metrics that read every component's counters.
    &["config", "metrics"],
    // The command line and the `filter` command.
    &["cli", "filter_command"],
    // The daemon: wires sources, rules, enrichment and sinks.
    &["app"],
    // The one-shot commands (they reuse the daemon's wiring).
    &["commands"],
    // Entry points of the benches and fuzz targets.
    &["bench_support", "fuzzing"],
];

/// Files whose module is the crate root itself (may reference every module).
const ROOT_FILES: &[&str] = &["lib.rs", "main.rs"];

/// One reference: the file and line it is on, the module it names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Reference {
    file: String,
    line: usize,
    to: String,
}

/// `text` with comments removed and string and character literals emptied
/// (their quotes kept); newlines kept so line numbers stay right.
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let keep_newlines = |out: &mut String, s: &[u8]| out.extend(s.iter().filter(|&&c| c == b'\n').map(|_| '\n'));
    let ident_before = |i: usize| i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if rest.starts_with(b"/*") {
            let (start, mut depth) = (i, 0usize);
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            keep_newlines(&mut out, &b[start..i]);
        } else if let Some(len) = raw_string_len(rest).filter(|_| !ident_before(i)) {
            keep_newlines(&mut out, &rest[..len]);
            out.push_str("\"\"");
            i += len;
        } else if b[i] == b'"' {
            let start = i;
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            keep_newlines(&mut out, &b[start..i.min(b.len())]);
            out.push_str("\"\"");
        } else if b[i] == b'\'' {
            // A character literal ('a', '\n', '\u{1F600}', '"'), else a lifetime or label.
            let close = if rest.get(1) == Some(&b'\\') { rest.iter().skip(3).position(|&c| c == b'\'').map(|p| p + 3) } else { char_close(rest) };
            match close {
                Some(end) => {
                    out.push_str("' '");
                    i += end + 1;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let ch = text[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Length of a raw (byte) string literal at the start of `s`: r"…", r#"…"#, br"…".
fn raw_string_len(s: &[u8]) -> Option<usize> {
    let start = if s.starts_with(b"br") {
        2
    } else if s.starts_with(b"r") {
        1
    } else {
        return None;
    };
    let hashes = s[start..].iter().take_while(|&&c| c == b'#').count();
    if s.get(start + hashes) != Some(&b'"') {
        return None;
    }
    let mut end = Vec::from(&b"\""[..]);
    end.extend(std::iter::repeat_n(b'#', hashes));
    let body = start + hashes + 1;
    s[body..].windows(end.len()).position(|w| w == end.as_slice()).map(|p| body + p + end.len())
}

/// The closing quote of an unescaped character literal such as 'a' or 'é'.
fn char_close(s: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(&s[1..]).ok().or_else(|| std::str::from_utf8(&s[1..s.len().min(5)]).ok())?;
    let ch = text.chars().next()?;
    (s.get(1 + ch.len_utf8()) == Some(&b'\'')).then_some(1 + ch.len_utf8())
}

/// Identifier-or-punctuation tokens with their line numbers.
fn tokens(code: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut chars = code.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\n' {
            line += 1;
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if !(d.is_alphanumeric() || d == '_') {
                    break;
                }
                end = j + d.len_utf8();
                chars.next();
            }
            out.push((code[i..end].to_string(), line));
        } else if c == ':' && chars.peek().map(|&(_, d)| d) == Some(':') {
            chars.next();
            out.push(("::".into(), line));
        } else if !c.is_whitespace() {
            out.push((c.to_string(), line));
        }
    }
    out
}

/// The module depth of a file below the crate root: `a.rs` and `a/mod.rs` are 1, `a/b.rs` is 2.
fn file_depth(rel: &Path) -> usize {
    let parts = rel.components().count();
    if rel.file_name().is_some_and(|n| n == "mod.rs") {
        parts - 1
    } else {
        parts
    }
}

/// The top-level modules that `code` (of a file at module depth `depth`) names.
fn references(code: &str, depth: usize) -> Vec<(usize, String)> {
    let t = tokens(code);
    let tok = |i: usize| t.get(i).map(|(s, _)| s.as_str());
    let mut out = Vec::new();
    // Inline `mod name { … }` blocks deepen `super::`: (brace depth at which each closes).
    let mut inline: Vec<usize> = Vec::new();
    let mut braces = 0usize;
    let mut i = 0;
    while i < t.len() {
        let (word, line) = (&t[i].0, t[i].1);
        match word.as_str() {
            "{" => braces += 1,
            "}" => {
                braces = braces.saturating_sub(1);
                if inline.last() == Some(&braces) {
                    inline.pop();
                }
            }
            "mod" if tok(i + 2) == Some("{") => {
                inline.push(braces);
            }
            "crate" | "$crate" if tok(i + 1) == Some("::") && tok(i.wrapping_sub(1)) != Some("::") => match tok(i + 2) {
                Some("{") => out.extend(group_heads(&t, i + 3).into_iter().map(|name| (line, name))),
                Some(name) => out.push((line, name.to_string())),
                None => {}
            },
            "super" if tok(i.wrapping_sub(1)) != Some("::") => {
                let mut j = i;
                let mut ups = 0;
                while tok(j) == Some("super") && tok(j + 1) == Some("::") {
                    ups += 1;
                    j += 2;
                }
                if ups >= depth + inline.len() {
                    match tok(j) {
                        Some("{") => out.extend(group_heads(&t, j + 1).into_iter().map(|name| (line, name))),
                        Some(name) => out.push((line, name.to_string())),
                        None => {}
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The first names of the paths in a `{ a, b::c, d::{e, f} }` group starting after its `{`.
fn group_heads(t: &[(String, usize)], mut i: usize) -> Vec<String> {
    let mut heads = Vec::new();
    let (mut depth, mut expect_head) = (1usize, true);
    while i < t.len() && depth > 0 {
        match t[i].0.as_str() {
            "{" => depth += 1,
            "}" => depth -= 1,
            "," if depth == 1 => expect_head = true,
            name if depth == 1 && expect_head => {
                heads.push(name.to_string());
                expect_head = false;
            }
            _ => {}
        }
        i += 1;
    }
    heads
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// For every top-level module of src/, the modules it references and where.
fn graph() -> BTreeMap<String, BTreeMap<String, Vec<Reference>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut modules = BTreeSet::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if (path.is_dir() || path.extension().is_some_and(|e| e == "rs")) && !ROOT_FILES.contains(&path.file_name().unwrap().to_str().unwrap()) {
            modules.insert(name);
        }
    }
    let mut graph: BTreeMap<String, BTreeMap<String, Vec<Reference>>> = modules.iter().map(|m| (m.clone(), BTreeMap::new())).collect();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        if ROOT_FILES.iter().any(|r| rel == Path::new(r)) {
            continue;
        }
        let from = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        let code = strip(&std::fs::read_to_string(&file).unwrap());
        for (line, to) in references(&code, file_depth(rel)) {
            if to != from && modules.contains(&to) {
                let reference = Reference { file: rel.display().to_string(), line, to: to.clone() };
                graph.get_mut(&from).unwrap().entry(to).or_default().push(reference);
            }
        }
    }
    graph
}

/// A cycle of the graph, as the list of modules along it (first repeated last).
fn find_cycle(graph: &BTreeMap<String, BTreeMap<String, Vec<Reference>>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeMap<String, Vec<Reference>>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flat_map(BTreeMap::keys) {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = path.iter().position(|n| n == next).unwrap();
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(cycle) = visit(next, graph, state, path) {
                        return Some(cycle);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    graph.keys().find_map(|node| if state.contains_key(node) { None } else { visit(node, graph, &mut state, &mut Vec::new()) })
}

fn first_place(refs: &[Reference]) -> String {
    let r = &refs[0];
    let more = if refs.len() > 1 { format!(" and {} more", refs.len() - 1) } else { String::new() };
    format!("src/{}:{}{more}", r.file, r.line)
}

#[test]
fn no_cycle_among_top_level_modules() {
    let graph = graph();
    if let Some(cycle) = find_cycle(&graph) {
        let steps: Vec<String> = cycle.windows(2).map(|w| format!("{} -> {} ({})", w[0], w[1], first_place(&graph[&w[0]][&w[1]]))).collect();
        panic!("import cycle {}:\n  {}", cycle.join(" -> "), steps.join("\n  "));
    }
}

#[test]
fn event_imports_no_other_module() {
    let graph = graph();
    let event = graph.get("event").expect("src/event exists");
    let found: Vec<String> = event.iter().map(|(to, refs)| format!("event -> {to} ({})", first_place(refs))).collect();
    assert!(found.is_empty(), "event is the bottom layer and must import nothing of the daemon:\n  {}", found.join("\n  "));
}

#[test]
fn every_reference_goes_down_the_layers() {
    let layer_of = |m: &str| LAYERS.iter().position(|layer| layer.contains(&m));
    let graph = graph();
    let mut wrong = Vec::new();
    for (from, targets) in &graph {
        let Some(from_layer) = layer_of(from) else {
            wrong.push(format!("module {from} is in no layer: add it to LAYERS in tests/layers.rs and to docs/architecture.md"));
            continue;
        };
        for (to, refs) in targets {
            let to_layer = layer_of(to);
            if to_layer.is_none_or(|l| l >= from_layer) {
                wrong.push(format!("{from} (layer {from_layer}) -> {to} (layer {to_layer:?}) at {}", first_place(refs)));
            }
        }
    }
    assert!(wrong.is_empty(), "references that do not go down the layers:\n  {}", wrong.join("\n  "));
    for name in LAYERS.iter().flat_map(|l| l.iter()) {
        assert!(graph.contains_key(*name), "LAYERS names {name}, which is not a module of src/");
    }
}

#[test]
fn the_scanner_sees_paths_and_skips_comments_and_strings() {
    let code = strip(
        "use crate::{a, b::{c, d}, e::f};\n// crate::comment\n/* crate::block /* nested */ crate::still */\nlet s = \"crate::string\";\n\
         let r = r#\"crate::raw \"# ;\nlet c = '\"'; let q = '\\''; fn x<'a>(_: &'a str) { crate::g::h(); }\nmod tests { use super::super::i; }\n",
    );
    let names: Vec<String> = references(&code, 1).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["a", "b", "e", "g", "i"]);
    let lines: Vec<usize> = references(&code, 1).into_iter().map(|(l, _)| l).collect();
    assert_eq!(lines, [1, 1, 1, 6, 7]);
    // `super::x` from a/mod.rs is the crate's x; from a/b.rs it is a's.
    assert_eq!(references("use super::x;", 1), [(1, "x".to_string())]);
    assert!(references("use super::x;", 2).is_empty());
    assert_eq!(file_depth(Path::new("a/mod.rs")), 1);
    assert_eq!(file_depth(Path::new("a/b.rs")), 2);
}
