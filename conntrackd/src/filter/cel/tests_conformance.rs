//! The CEL conformance data of cel-spec (`tests/data/cel-spec`, see its
//! README) through the rule engine's CEL: each case is parsed (nesting scan
//! included), checked at load time (unless the case disables the checker:
//! a valid expression refused at load is a failure), evaluated by the
//! interpreter the rules use, and, when its result is a bool or an error and
//! it needs no bindings, compiled as the rule `log EXPR` (fast tree and all)
//! and run on an event: it must log exactly when the result is `true`, and
//! an error must not log and must be counted.
//!
//! Prints the counts and every skip with its reason; fails on any failure
//! or when fewer cases pass than [`PASSING`].
use std::collections::HashMap;

use cel::{objects::Key, Value};

use super::{
    check::{Checker, Positions},
    runtime::evaluate_typed,
    textproto::{self, Field, Message, Scalar},
    types::Ty,
};
use crate::{
    event::{Endpoints, Event, EventType, Protocol},
    filter::Rules,
};

const FILES: [&str; 11] = ["basic", "comparisons", "conversions", "fp_math", "integer_math", "lists", "logic", "macros", "parse", "plumbing", "string"];

/// The cases that pass today: fewer is a regression.
const PASSING: usize = 937;

enum Outcome {
    /// Passed; `true` if it also ran as a rule.
    Pass(bool),
    Skip(&'static str),
    Fail(String),
}

/// Why a case is out of scope for rules, if it is.
fn skip_reason(test: &Message, expr: &str) -> Option<&'static str> {
    let uses = |words: &[&str]| words.iter().any(|w| expr.contains(w));
    if test.get("unknown").is_some() || test.get("any_unknowns").is_some() {
        return Some("unknown sets (partial evaluation): rules always have every variable");
    }
    if test.flag("check_only") {
        return Some("a type-checker-only case (deduced types): rules are checked by their own load-time check");
    }
    if test.flag("disable_macros") {
        return Some("macros disabled: rules always expand them");
    }
    if uses(&["TestAllTypes", "google.protobuf", "cel.expr.", "proto2", "proto3", "NestedMessage", "GlobalEnum"])
        || mentions(test, "object_value")
        || mentions(test, "enum_value")
    {
        return Some("protobuf message and enum types: rules have no messages");
    }
    if test.text("container").is_some_and(|c| !c.is_empty()) {
        return Some("expression containers (name resolution in a protobuf package): rules have none");
    }
    if uses(&["timestamp", "duration(", "getFullYear", "getHours", "getSeconds", "getMilliseconds", "getDay", "getMonth", "getDate", "getMinutes"]) {
        return Some("timestamps and durations: rules have no time values (the cel crate's chrono feature is off)");
    }
    if uses(&[".?", "[?", "optional."]) {
        return Some("optional values: an extension, not the standard library");
    }
    None
}

/// Whether a field of this name appears anywhere in the message.
fn mentions(m: &Message, name: &str) -> bool {
    m.0.iter().any(|(n, f)| n == name || matches!(f, Field::Message(inner) if mentions(inner, name)))
}

fn word(m: &Message, name: &str) -> Option<String> {
    m.text(name)
}

/// A `cel.expr.Value` as the crate's value and its CEL type name.
fn value(m: &Message) -> Result<(Value, &'static str), String> {
    let (name, field) = m.0.first().ok_or("an empty value")?;
    let scalar = || match field {
        Field::Scalar(Scalar::Word(w)) => Ok(w.clone()),
        Field::Scalar(Scalar::Str(b)) => Ok(String::from_utf8_lossy(b).into_owned()),
        Field::Message(_) => Err(format!("{name} is a message")),
    };
    let bytes = || match field {
        Field::Scalar(Scalar::Str(b)) => Ok(b.clone()),
        _ => Err(format!("{name} is not a string")),
    };
    let parse_err = |e: String| format!("{name}: {e}");
    Ok(match name.as_str() {
        "null_value" => (Value::Null, "null_type"),
        "bool_value" => (Value::Bool(scalar()? == "true"), "bool"),
        "int64_value" => (Value::Int(scalar()?.parse().map_err(|e: std::num::ParseIntError| parse_err(e.to_string()))?), "int"),
        "uint64_value" => (Value::UInt(scalar()?.parse().map_err(|e: std::num::ParseIntError| parse_err(e.to_string()))?), "uint"),
        "double_value" => (Value::Float(double(&scalar()?)?), "double"),
        "string_value" => (Value::String(String::from_utf8(bytes()?).map_err(|e| parse_err(e.to_string()))?.into()), "string"),
        "bytes_value" => (Value::Bytes(bytes()?.into()), "bytes"),
        "type_value" => (Value::String(scalar()?.into()), "type"),
        "list_value" => {
            let Field::Message(list) = field else { return Err("list_value is not a message".into()) };
            let items = list.messages("values").map(|v| value(v).map(|(v, _)| v)).collect::<Result<Vec<_>, _>>()?;
            (Value::List(items.into()), "list")
        }
        "map_value" => {
            let Field::Message(map) = field else { return Err("map_value is not a message".into()) };
            let mut entries = HashMap::new();
            for e in map.messages("entries") {
                let key = match value(e.message("key").ok_or("an entry without key")?)?.0 {
                    Value::Int(i) => Key::Int(i),
                    Value::UInt(u) => Key::Uint(u),
                    Value::Bool(b) => Key::Bool(b),
                    Value::String(s) => Key::String(s),
                    other => return Err(format!("a map key of {other:?}")),
                };
                entries.insert(key, value(e.message("value").ok_or("an entry without value")?)?.0);
            }
            (Value::Map(cel::objects::Map { map: entries.into() }), "map")
        }
        other => return Err(format!("the value kind {other}")),
    })
}

fn double(text: &str) -> Result<f64, String> {
    match text {
        "inf" | "infinity" => Ok(f64::INFINITY),
        "-inf" | "-infinity" => Ok(f64::NEG_INFINITY),
        "nan" => Ok(f64::NAN),
        t => t.trim_end_matches(['f', 'F']).parse().map_err(|e: std::num::ParseFloatError| format!("{t}: {e}")),
    }
}

/// Equal as values of the same type (not CEL's `==`, which says `1 == 1u`).
fn same(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Float(a), Value::Float(b)) => (a.is_nan() && b.is_nan()) || a == b,
        (Value::List(a), Value::List(b)) => a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| same(x, y)),
        (Value::Map(a), Value::Map(b)) => a.map.len() == b.map.len() && a.map.iter().all(|(k, v)| b.map.get(k).is_some_and(|w| same(v, w))),
        (Value::Int(a), Value::Int(b)) => a == b,
        (Value::UInt(a), Value::UInt(b)) => a == b,
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Bytes(a), Value::Bytes(b)) => a == b,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Null, Value::Null) => true,
        _ => false,
    }
}

/// A declared type (`cel.expr.Type`) for the load-time check.
fn declared(t: Option<&Message>) -> Ty {
    let Some(t) = t else { return Ty::Dyn };
    match (word(t, "primitive").as_deref(), t.message("list_type"), t.message("map_type")) {
        (Some("BOOL"), ..) => Ty::Bool,
        (Some("INT64"), ..) => Ty::Int,
        (Some("UINT64"), ..) => Ty::Uint,
        (Some("DOUBLE"), ..) => Ty::Double,
        (Some("STRING"), ..) => Ty::String,
        (Some("BYTES"), ..) => Ty::Bytes,
        (_, Some(l), _) => Ty::List(Box::new(declared(l.message("elem_type")))),
        (_, _, Some(m)) => Ty::Map(Box::new(declared(m.message("key_type"))), Box::new(declared(m.message("value_type")))),
        _ if t.get("null").is_some() => Ty::Null,
        _ => Ty::Dyn,
    }
}

fn event() -> Event {
    let orig = Endpoints { src: "10.0.0.1".parse().unwrap(), dst: "203.0.113.7".parse().unwrap(), src_port: 40000, dst_port: 443 };
    Event::bare(EventType::New, Protocol::Tcp, orig)
}

fn run(test: &Message) -> Outcome {
    let Some(expr) = test.text("expr") else { return Outcome::Fail("no expr".into()) };
    if let Some(reason) = skip_reason(test, &expr) {
        return Outcome::Skip(reason);
    }
    let mut bindings = Vec::new();
    for b in test.messages("bindings") {
        let (Some(key), Some(v)) = (b.text("key"), b.message("value").and_then(|v| v.message("value"))) else {
            return Outcome::Fail("a binding without key or value".into());
        };
        match value(v) {
            Ok((v, _)) => bindings.push((key, v)),
            Err(e) => return Outcome::Fail(format!("binding {key}: {e}")),
        }
    }
    let declared: Vec<(String, Ty)> =
        test.messages("type_env").filter_map(|d| Some((d.text("name")?, declared(d.message("ident").and_then(|i| i.message("type")))))).collect();
    let (parsed, info) = match super::parse(&expr, 1) {
        Ok(p) => p,
        Err(e) => return Outcome::Fail(format!("does not parse: column {}: {}", e.column, e.message)),
    };
    let check = !test.flag("disable_check");
    let mut condition = false;
    if check {
        let names: Vec<String> = bindings.iter().map(|(n, _)| n.clone()).collect();
        let lookup =
            |name: &str| declared.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone()).or_else(|| names.iter().any(|n| n == name).then_some(Ty::Dyn));
        let pos = Positions { info: &info, text: &expr, base: 1 };
        match Checker::new(&pos, &lookup).check(&parsed) {
            Ok(ty) => condition = matches!(ty, Ty::Bool | Ty::Dyn),
            Err(e) => return Outcome::Fail(format!("refused at load: column {}: {}", e.column, e.message)),
        }
    }
    let got = evaluate_typed(&parsed, None, &bindings);
    let want = match (
        test.message("value").or_else(|| test.message("typed_result").and_then(|t| t.message("result"))),
        test.get("eval_error").or_else(|| test.get("any_eval_errors")),
    ) {
        (Some(v), _) => match value(v) {
            Ok(v) => Some(v),
            Err(e) => return Outcome::Fail(format!("expected value: {e}")),
        },
        (None, Some(_)) => None,
        (None, None) => Some((Value::Bool(true), "bool")),
    };
    match (&got, &want) {
        (Ok((v, t)), Some((w, wt))) if !(same(v, w) && t == wt) => return Outcome::Fail(format!("gave {v:?} ({t}), expected {w:?} ({wt})")),
        (Err(e), Some((w, _))) => return Outcome::Fail(format!("failed ({e}), expected {w:?}")),
        (Ok((v, _)), None) => return Outcome::Fail(format!("gave {v:?}, expected an error")),
        _ => {}
    }
    // As a rule: `log EXPR` logs exactly when EXPR is true; an error does not log and is counted.
    // (An expression that is not a condition, such as `1 / 0`, is no rule: it is refused at load.)
    let as_rule = matches!(want, None | Some((Value::Bool(_), _)));
    if condition && bindings.is_empty() && as_rule {
        let rules = match Rules::compile(&[format!("log {expr}"), "drop any".into()]) {
            Ok(r) => r,
            Err(e) => return Outcome::Fail(format!("as a rule: {e}")),
        };
        let (logged, matched) = rules.decide(&event());
        let errors = rules.errors().counts();
        let ok = match want {
            Some((Value::Bool(b), _)) => logged == b && matched == Some(usize::from(!b)) && errors == [0, 0],
            _ => !logged && matched == Some(1) && errors == [1, 0],
        };
        if !ok {
            return Outcome::Fail(format!("as a rule: logged {logged}, rule {matched:?}, errors {errors:?}"));
        }
        return Outcome::Pass(true);
    }
    Outcome::Pass(false)
}

#[test]
fn cel_conformance() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/cel-spec");
    let (mut pass, mut as_rules, mut skips, mut fails) = (0, 0, Vec::new(), Vec::new());
    for file in FILES {
        let path = format!("{dir}/{file}.textproto");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let parsed = textproto::parse(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        for section in parsed.messages("section") {
            for test in section.messages("test") {
                let name = format!("{file}/{}/{}", section.text("name").unwrap_or_default(), test.text("name").unwrap_or_default());
                match run(test) {
                    Outcome::Pass(rule) => {
                        pass += 1;
                        as_rules += usize::from(rule);
                    }
                    Outcome::Skip(reason) => skips.push((name, reason)),
                    Outcome::Fail(why) => fails.push((name, test.text("expr").unwrap_or_default(), why)),
                }
            }
        }
    }
    for (name, reason) in &skips {
        println!("skip {name}: {reason}");
    }
    for (name, expr, why) in &fails {
        println!("FAIL {name}: {expr:?}: {why}");
    }
    println!("cel conformance: passed {pass} ({as_rules} of them also as rules), skipped {}, failed {}", skips.len(), fails.len());
    assert!(fails.is_empty(), "{} conformance cases failed (listed above)", fails.len());
    assert!(pass >= PASSING, "{pass} conformance cases pass, fewer than the {PASSING} that passed before");
}
