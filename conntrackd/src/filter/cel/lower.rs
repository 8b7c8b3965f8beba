//! Turns a checked CEL expression into the fast tree of `ast.rs`: `&&`, `||`,
//! `!` and `?:` over comparisons of a variable with a constant, `in` a
//! constant list, `is_network`/`in_cidr`/`in_range` with constant arguments
//! and `startsWith`/`endsWith`/`contains`/`matches` on a variable with a
//! constant, and `all`/`exists` over a constant list (unrolled), become typed nodes the kernel pre-filter can reason about and
//! that evaluate without allocating. Constant subexpressions (`[80, 400 + 43]`,
//! `1 == 1`) are evaluated once, here. Any other subtree is an
//! [`Expr::Cel`] node for the interpreter.
//!
//! A constant compared with a string variable must be a value the variable
//! can have (`"TCP"`, not `"tcp"`; an address as the daemon writes it):
//! anything else could never match and is an error naming its column.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::net::IpAddr;

use cel::{
    common::{
        ast::{ComprehensionExpr, Expr as CelExpr, IdedExpr, LiteralValue},
        types::{CelBool, CelDouble, CelInt, CelString, CelUInt},
    },
    Value,
};

use super::{
    check::{qualified_name, Positions},
    runtime::{evaluate, Opaque},
    vars::Var,
};
use crate::filter::{
    ast::{Bits, Cidr, Expr, PortSet},
    keyword::{network_bit, protocol_bit, type_bit},
    text::{canonical, Pattern, TextField, TextTest},
    ParseError,
};

/// Lowers one rule's expression.
pub(crate) struct Lower<'a> {
    pub pos: &'a Positions<'a>,
}

const TYPE_NAMES: [&str; 11] = ["int", "uint", "double", "string", "bool", "bytes", "list", "map", "null_type", "type", "dyn"];

fn var(e: &IdedExpr) -> Option<Var> {
    qualified_name(&e.expr).and_then(|n| Var::lookup(&n))
}

/// Whether `e` reads a variable not bound inside it (so it is not a constant).
fn reads_variables(e: &IdedExpr, bound: &mut Vec<String>) -> bool {
    match &e.expr {
        CelExpr::Ident(name) => !bound.contains(name) && !TYPE_NAMES.contains(&name.as_str()),
        CelExpr::Select(s) => reads_variables(&s.operand, bound),
        CelExpr::Literal(_) | CelExpr::Unspecified => false,
        CelExpr::Call(c) => c.target.as_deref().is_some_and(|t| reads_variables(t, bound)) || c.args.iter().any(|a| reads_variables(a, bound)),
        CelExpr::List(l) => l.elements.iter().any(|x| reads_variables(x, bound)),
        CelExpr::Map(m) => m.entries.iter().any(|entry| match &entry.expr {
            cel::common::ast::EntryExpr::MapEntry(m) => reads_variables(&m.key, bound) || reads_variables(&m.value, bound),
            cel::common::ast::EntryExpr::StructField(f) => reads_variables(&f.value, bound),
        }),
        CelExpr::Struct(_) => true,
        CelExpr::Comprehension(c) => {
            if reads_variables(&c.iter_range, bound) || reads_variables(&c.accu_init, bound) {
                return true;
            }
            let before = bound.len();
            bound.extend([c.accu_var.clone(), c.iter_var.clone()]);
            bound.extend(c.iter_var2.clone());
            let reads = [&c.loop_cond, &c.loop_step, &c.result].iter().any(|x| reads_variables(x, bound));
            bound.truncate(before);
            reads
        }
    }
}

/// The value of a constant subexpression (one that reads no variable and does not fail).
fn constant(e: &IdedExpr) -> Option<Value> {
    if let CelExpr::Literal(lit) = &e.expr {
        return match lit {
            LiteralValue::Int(i) => Some(Value::Int(*i.inner())),
            LiteralValue::String(s) => Some(Value::String(s.inner().to_string().into())),
            LiteralValue::Boolean(b) => Some(Value::Bool(*b.inner())),
            _ => evaluate(e, None, &[]).ok(),
        };
    }
    if reads_variables(e, &mut Vec::new()) {
        return None;
    }
    evaluate(e, None, &[]).ok()
}

impl Lower<'_> {
    /// The fast tree of a boolean expression.
    pub fn condition(&self, e: &IdedExpr) -> Result<Expr, ParseError> {
        if let CelExpr::Comprehension(c) = &e.expr {
            return self.unroll(e, c);
        }
        let CelExpr::Call(call) = &e.expr else { return self.fallback(e) };
        match (call.func_name.as_str(), call.target.as_deref(), call.args.as_slice()) {
            ("_&&_", None, [a, b]) => Ok(Expr::all(vec![self.condition(a)?, self.condition(b)?])),
            ("_||_", None, [a, b]) => Ok(Expr::any(vec![self.condition(a)?, self.condition(b)?])),
            ("!_", None, [a]) => Ok(Expr::not(self.condition(a)?)),
            ("_?_:_", None, [c, a, b]) => Ok(Expr::If(Box::new([self.condition(c)?, self.condition(a)?, self.condition(b)?]))),
            (op @ ("_==_" | "_!=_" | "_<_" | "_<=_" | "_>_" | "_>=_"), None, [a, b]) => self.compare(e, op, a, b),
            ("@in", None, [a, b]) => self.membership(e, a, b),
            (name @ ("is_network" | "in_cidr" | "in_range"), None, args) => self.function(e, name, args),
            (name @ ("startsWith" | "endsWith" | "contains" | "matches"), Some(target), [arg]) => self.text_call(e, name, target, arg),
            _ => self.fallback(e),
        }
    }

    /// A constant condition is evaluated now; anything else is for the
    /// interpreter, which recurses once per level of its tree (a macro two):
    /// deeper than [`MAX_INTERPRETED_DEPTH`] is an error.
    fn fallback(&self, e: &IdedExpr) -> Result<Expr, ParseError> {
        match constant(e) {
            Some(Value::Bool(b)) => Ok(Expr::Const(b)),
            _ if depth(e) > MAX_INTERPRETED_DEPTH => {
                Err(self.pos.error(e.id, format!("nesting deeper than {MAX_INTERPRETED_DEPTH} levels in a part the CEL interpreter runs (macros count two)")))
            }
            _ => Ok(Expr::Cel(Box::new(Opaque { expr: e.clone() }))),
        }
    }

    /// `all` and `exists` over a constant list (of at most [`MAX_UNROLLED`]
    /// scalars) become `&&` and `||` of the body with each element in place
    /// of the variable: `["10.0.0.0/8", "fd00::/8"].exists(n, in_cidr(source.address, n))`
    /// is two fast tests. CEL's logic is the same: a true (for `exists`) or
    /// false (for `all`) element decides over errors of the others.
    fn unroll(&self, e: &IdedExpr, c: &ComprehensionExpr) -> Result<Expr, ParseError> {
        let (Some(Value::List(items)), CelExpr::Call(step), CelExpr::Literal(LiteralValue::Boolean(init))) =
            (constant(&c.iter_range), &c.loop_step.expr, &c.accu_init.expr)
        else {
            return self.fallback(e);
        };
        let exists = match (step.func_name.as_str(), *init.inner()) {
            ("_||_", false) => true,
            ("_&&_", true) => false,
            _ => return self.fallback(e),
        };
        let [accu, body] = step.args.as_slice() else { return self.fallback(e) };
        let literals: Option<Vec<LiteralValue>> = items.iter().map(literal).collect();
        let (true, None, Some(literals)) = (matches!(&accu.expr, CelExpr::Ident(n) if *n == c.accu_var), &c.iter_var2, literals) else {
            return self.fallback(e);
        };
        if literals.len() > MAX_UNROLLED || mentions(body, &c.accu_var) {
            return self.fallback(e);
        }
        let parts = literals.iter().map(|lit| self.condition(&substitute(body, &c.iter_var, lit))).collect::<Result<Vec<_>, _>>()?;
        Ok(if exists { Expr::any(parts) } else { Expr::all(parts) })
    }

    fn compare(&self, e: &IdedExpr, op: &str, a: &IdedExpr, b: &IdedExpr) -> Result<Expr, ParseError> {
        let (v, lit, node, op) = match (var(a), var(b)) {
            (Some(v), None) => (v, constant(b), b, op),
            (None, Some(v)) => (v, constant(a), a, flip(op)),
            _ => return self.fallback(e),
        };
        let column = self.pos.column(node.id);
        match (v.text(), lit) {
            (None, Some(Value::Int(i))) => match v {
                Var::Port(side) => Ok(Expr::Port(side, port_range(op, i))),
                _ => self.fallback(e),
            },
            (Some(field), Some(Value::String(s))) if op == "_==_" || op == "_!=_" => {
                let positive = self.equals(field, std::slice::from_ref(&*s), column)?;
                Ok(if op == "_==_" { positive } else { Expr::not(positive) })
            }
            _ => self.fallback(e),
        }
    }

    /// `field == one of values`, each a value the field can have.
    fn equals(&self, field: TextField, values: &[String], column: usize) -> Result<Expr, ParseError> {
        let error = |message: String| ParseError { column, message };
        let bits = |bit: fn(&str) -> Option<u8>, expected: &str| -> Result<Bits, ParseError> {
            values.iter().try_fold(Bits::default(), |acc, v| bit(v).map(|b| acc.with(b)).ok_or_else(|| error(format!("expected {expected}, found \"{v}\""))))
        };
        match field {
            TextField::Type => Ok(Expr::Type(bits(type_bit, "\"NEW\", \"UPDATE\" or \"DESTROY\"")?)),
            TextField::Protocol => Ok(Expr::Protocol(bits(protocol_bit, "\"TCP\" or \"UDP\"")?)),
            TextField::Address(side) => {
                let mut cidrs = Vec::with_capacity(values.len());
                for v in values {
                    let Ok(ip) = v.parse::<IpAddr>() else {
                        return Err(error(format!("expected an IP address, found \"{v}\" (use in_cidr() for networks)")));
                    };
                    let written = canonical(ip);
                    if written != *v {
                        return Err(error(format!("\"{v}\" never equals an address: conntrackd writes this address \"{written}\"")));
                    }
                    cidrs.extend(Cidr::parse(v));
                }
                Ok(Expr::Address(side, cidrs, None))
            }
            field @ (TextField::Process(_) | TextField::Domain) => Ok(Expr::Text(field, TextTest::OneOf(values.to_vec()))),
        }
    }

    fn membership(&self, e: &IdedExpr, a: &IdedExpr, b: &IdedExpr) -> Result<Expr, ParseError> {
        let (Some(v), Some(Value::List(items))) = (var(a), constant(b)) else { return self.fallback(e) };
        match v.text() {
            None => {
                let ports: Option<Vec<i64>> = items.iter().map(|x| if let Value::Int(i) = x { Some(*i) } else { None }).collect();
                let Some(ports) = ports else { return self.fallback(e) };
                let ranges = ports.into_iter().filter_map(|p| u16::try_from(p).ok()).map(|p| (p, p)).collect();
                match v {
                    Var::Port(side) => Ok(Expr::Port(side, PortSet(ranges))),
                    _ => self.fallback(e),
                }
            }
            Some(field) => {
                let strings: Option<Vec<String>> = items.iter().map(|x| if let Value::String(s) = x { Some(s.to_string()) } else { None }).collect();
                match strings {
                    Some(values) => self.equals(field, &values, self.pos.column(b.id)),
                    None => self.fallback(e),
                }
            }
        }
    }

    fn function(&self, e: &IdedExpr, name: &str, args: &[IdedExpr]) -> Result<Expr, ParseError> {
        let string = |x: &IdedExpr| match constant(x) {
            Some(Value::String(s)) => Some(s.to_string()),
            _ => None,
        };
        let int = |x: &IdedExpr| match constant(x) {
            Some(Value::Int(i)) => Some(i),
            _ => None,
        };
        match (name, args) {
            ("is_network", [a, class]) => match (var(a), string(class)) {
                (Some(Var::Address(side)), Some(c)) => match network_bit(&c.to_ascii_uppercase()) {
                    Some(bit) => Ok(Expr::Network(side, Bits::default().with(bit))),
                    None => Err(self.pos.error(class.id, format!("unknown network class \"{c}\": expected LOCAL, PRIVATE, PUBLIC or MULTICAST"))),
                },
                _ => self.fallback(e),
            },
            ("in_cidr", [a, cidr]) => match (var(a), string(cidr)) {
                (Some(Var::Address(side)), Some(c)) => match Cidr::parse(&c) {
                    Some(net) => Ok(Expr::Address(side, vec![net], None)),
                    None => Err(self.pos.error(cidr.id, format!("expected a CIDR such as \"10.0.0.0/8\", found \"{c}\""))),
                },
                _ => self.fallback(e),
            },
            ("in_range", [a, lo, hi]) => match (var(a), int(lo), int(hi)) {
                (Some(Var::Port(side)), Some(l), Some(h)) => {
                    if l > h {
                        return Err(self.pos.error(lo.id, format!("in_range({l}, {h}) is empty: the low bound is above the high bound")));
                    }
                    let PortSet(from) = port_range("_>=_", l);
                    let ranges = from.into_iter().filter(|&(lo, _)| i64::from(lo) <= h).map(|(lo, top)| (lo, clamp(h.min(i64::from(top))))).collect();
                    Ok(Expr::Port(side, PortSet(ranges)))
                }
                _ => self.fallback(e),
            },
            _ => self.fallback(e),
        }
    }

    fn text_call(&self, e: &IdedExpr, name: &str, target: &IdedExpr, arg: &IdedExpr) -> Result<Expr, ParseError> {
        let (Some(field), Some(Value::String(s))) = (var(target).and_then(Var::text), constant(arg)) else { return self.fallback(e) };
        let s = s.to_string();
        let test = match name {
            "startsWith" => TextTest::StartsWith(s),
            "endsWith" => TextTest::EndsWith(s),
            "contains" => TextTest::Contains(s),
            _ => match regex::Regex::new(&s) {
                Ok(re) => TextTest::Matches(Pattern(re)),
                Err(err) => {
                    return Err(self.pos.error(arg.id, format!("bad regular expression: {}", err.to_string().lines().last().unwrap_or_default().trim())))
                }
            },
        };
        Ok(Expr::Text(field, test))
    }
}

/// The longest constant list `all`/`exists` is unrolled over.
const MAX_UNROLLED: usize = 64;

/// A constant scalar as a literal node.
fn literal(v: &Value) -> Option<LiteralValue> {
    Some(match v {
        Value::Int(i) => LiteralValue::Int(CelInt::from(*i)),
        Value::UInt(u) => LiteralValue::UInt(CelUInt::from(*u)),
        Value::Float(f) => LiteralValue::Double(CelDouble::from(*f)),
        Value::String(s) => LiteralValue::String(CelString::from(s.to_string())),
        Value::Bool(b) => LiteralValue::Boolean(CelBool::from(*b)),
        Value::Null => LiteralValue::Null,
        _ => return None,
    })
}

/// Whether the identifier `name` appears in `e` (bound or not).
fn mentions(e: &IdedExpr, name: &str) -> bool {
    let mut found = false;
    let _ = substitute_with(e, name, &mut |_| {
        found = true;
        None
    });
    found
}

/// `e` with the free identifier `name` replaced by the literal.
fn substitute(e: &IdedExpr, name: &str, lit: &LiteralValue) -> IdedExpr {
    substitute_with(e, name, &mut |_| Some(lit.clone()))
}

fn substitute_with(e: &IdedExpr, name: &str, with: &mut dyn FnMut(&IdedExpr) -> Option<LiteralValue>) -> IdedExpr {
    let mut sub = |x: &IdedExpr| substitute_with(x, name, with);
    let expr = match &e.expr {
        CelExpr::Ident(n) if n == name => match with(e) {
            Some(lit) => CelExpr::Literal(lit),
            None => e.expr.clone(),
        },
        CelExpr::Select(s) => {
            let mut s = s.clone();
            *s.operand = sub(&s.operand);
            CelExpr::Select(s)
        }
        CelExpr::Call(c) => {
            let mut c = c.clone();
            c.target = c.target.as_deref().map(|t| Box::new(sub(t)));
            c.args = c.args.iter().map(&mut sub).collect();
            CelExpr::Call(c)
        }
        CelExpr::List(l) => {
            let mut l = l.clone();
            l.elements = l.elements.iter().map(&mut sub).collect();
            CelExpr::List(l)
        }
        CelExpr::Comprehension(c) => {
            let mut c = c.clone();
            c.iter_range = sub(&c.iter_range);
            c.accu_init = sub(&c.accu_init);
            // An inner comprehension that binds the name shadows it.
            if c.iter_var != name && c.accu_var != name && c.iter_var2.as_deref() != Some(name) {
                c.loop_cond = sub(&c.loop_cond);
                c.loop_step = sub(&c.loop_step);
                c.result = sub(&c.result);
            }
            CelExpr::Comprehension(c)
        }
        CelExpr::Map(m) => {
            let mut m = m.clone();
            for entry in &mut m.entries {
                if let cel::common::ast::EntryExpr::MapEntry(me) = &mut entry.expr {
                    me.key = sub(&me.key);
                    me.value = sub(&me.value);
                }
            }
            CelExpr::Map(m)
        }
        // Literals, other identifiers; messages are refused by the check.
        other => other.clone(),
    };
    IdedExpr { id: e.id, expr }
}

/// How deep the interpreter may recurse in one CEL part: its evaluation
/// needs a few KiB of stack per level optimized (tens unoptimized).
pub(crate) const MAX_INTERPRETED_DEPTH: usize = 100;

/// The depth of the tree the interpreter walks; a comprehension counts two.
fn depth(e: &IdedExpr) -> usize {
    let max = |xs: &mut dyn Iterator<Item = &IdedExpr>| xs.map(depth).max().unwrap_or(0);
    1 + match &e.expr {
        CelExpr::Literal(_) | CelExpr::Ident(_) | CelExpr::Unspecified => 0,
        CelExpr::Select(s) => depth(&s.operand),
        CelExpr::Call(c) => max(&mut c.target.as_deref().into_iter().chain(c.args.iter())),
        CelExpr::List(l) => max(&mut l.elements.iter()),
        CelExpr::Map(m) => max(&mut m
            .entries
            .iter()
            .filter_map(|entry| match &entry.expr {
                cel::common::ast::EntryExpr::MapEntry(m) => Some([&m.key, &m.value]),
                cel::common::ast::EntryExpr::StructField(_) => None,
            })
            .flatten()),
        CelExpr::Struct(_) => 0,
        CelExpr::Comprehension(c) => 1 + max(&mut [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result].into_iter()),
    }
}

/// `a op b` as `b op' a`.
fn flip(op: &str) -> &str {
    match op {
        "_<_" => "_>_",
        "_<=_" => "_>=_",
        "_>_" => "_<_",
        "_>=_" => "_<=_",
        other => other,
    }
}

fn clamp(v: i64) -> u16 {
    u16::try_from(v.clamp(0, 65535)).unwrap_or(u16::MAX)
}

/// The ports `p` with `p op value`, as ranges (possibly none).
pub(crate) fn port_range(op: &str, value: i64) -> PortSet {
    let range = |lo: i64, hi: i64| if lo > hi || hi < 0 || lo > 65535 { vec![] } else { vec![(clamp(lo), clamp(hi))] };
    PortSet(match op {
        "_==_" => range(value, value),
        "_!=_" => [range(0, value.saturating_sub(1)), range(value.saturating_add(1), 65535)].concat(),
        "_<_" => range(0, value.saturating_sub(1)),
        "_<=_" => range(0, value),
        "_>_" => range(value.saturating_add(1), 65535),
        _ => range(value, 65535),
    })
}
