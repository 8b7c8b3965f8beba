//! The load-time check of a parsed CEL expression: a light type inference
//! over the `cel` crate's tree (the variables' types, literal types, the
//! signatures of `types.rs`) that rejects what can only fail or never match
//! (`destination.port == "443"`, `source.address + 1`, unknown variables and
//! functions, wrong arity), and literal arguments that are wrong for every
//! event: an unknown network class, a bad CIDR or regular expression, an
//! empty `in_range`. Errors name the column of the node.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use cel::common::ast::{Expr, IdedExpr, LiteralValue, SourceInfo};

use super::{
    types::{self, Ty},
    vars::{NAMESPACES, VARIABLES},
};
use crate::filter::{ast::Cidr, keyword::network_bit, ParseError};

/// Maps node ids to rule columns.
pub(crate) struct Positions<'a> {
    pub info: &'a SourceInfo,
    /// The expression (the crate's node offsets count its bytes).
    pub text: &'a str,
    /// The rule column of the expression's first character.
    pub base: usize,
}

impl Positions<'_> {
    /// The rule column of the character at byte `offset`.
    fn at(&self, offset: usize) -> usize {
        self.base + self.text.get(..self.text.floor_char_boundary(offset)).map_or(0, |s| s.chars().count())
    }

    /// The column where the node starts (an operator's is the operator, a call's its '(').
    pub fn column(&self, id: u64) -> usize {
        self.at(self.info.offset_for(id).map_or(0, |(start, _)| start as usize))
    }

    /// A call's column: its name, when the name stands right before the '('.
    pub fn call_column(&self, id: u64, name: &str) -> usize {
        let Some((open, _)) = self.info.offset_for(id) else { return self.base };
        let open = open as usize;
        let named = self.text.get(..open).is_some_and(|before| before.ends_with(name));
        self.at(if named { open - name.len() } else { open })
    }

    pub fn error(&self, id: u64, message: String) -> ParseError {
        ParseError { column: self.column(id), message }
    }
}

/// The dotted name an identifier or a chain of field selections spells.
pub(crate) fn qualified_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Ident(name) => Some(name.clone()),
        Expr::Select(s) if !s.test => qualified_name(&s.operand.expr).map(|q| format!("{q}.{}", s.field)),
        _ => None,
    }
}

fn root_ident(e: &Expr) -> Option<&str> {
    match e {
        Expr::Ident(name) => Some(name),
        Expr::Select(s) => root_ident(&s.operand.expr),
        _ => None,
    }
}

pub(crate) fn unknown_variable(name: &str) -> String {
    let names: Vec<&str> = VARIABLES.iter().map(|(n, _)| *n).collect();
    match names.split_last() {
        Some((last, rest)) => format!("unknown variable '{name}': expected {} or {last}", rest.join(", ")),
        None => format!("unknown variable '{name}'"),
    }
}

const TYPE_NAMES: [&str; 11] = ["int", "uint", "double", "string", "bool", "bytes", "list", "map", "null_type", "type", "dyn"];

/// Walks one expression.
pub(crate) struct Checker<'a> {
    pub pos: &'a Positions<'a>,
    /// The type of a declared variable by its (dotted) name.
    pub lookup: &'a dyn Fn(&str) -> Option<Ty>,
    /// Comprehension variables in scope, innermost last.
    scopes: Vec<(String, Ty)>,
}

impl<'a> Checker<'a> {
    pub fn new(pos: &'a Positions<'a>, lookup: &'a dyn Fn(&str) -> Option<Ty>) -> Self {
        Self { pos, lookup, scopes: Vec::new() }
    }

    fn scoped(&self, name: &str) -> Option<&Ty> {
        self.scopes.iter().rev().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// The type of `e`, or the first error in it.
    pub fn check(&mut self, e: &IdedExpr) -> Result<Ty, ParseError> {
        match &e.expr {
            Expr::Literal(lit) => Ok(literal_type(lit)),
            Expr::Ident(name) => self.ident(e.id, name),
            Expr::Select(s) => {
                if !s.test {
                    if let (Some(name), Some(root)) = (qualified_name(&e.expr), root_ident(&e.expr)) {
                        if self.scoped(root).is_none() {
                            if let Some(t) = (self.lookup)(&name) {
                                return Ok(t);
                            }
                            if NAMESPACES.contains(&root) || ((self.lookup)(root).is_none() && !TYPE_NAMES.contains(&root)) {
                                return Err(self.pos.error(s.operand.id, unknown_variable(&name)));
                            }
                        }
                    }
                }
                let operand = self.check(&s.operand)?;
                match operand {
                    Ty::Map(k, v) if matches!(*k, Ty::String | Ty::Dyn) => Ok(if s.test { Ty::Bool } else { *v }),
                    Ty::Dyn => Ok(if s.test { Ty::Bool } else { Ty::Dyn }),
                    other => Err(self.pos.error(e.id, format!("cannot select the field '{}' of a value of type {other}", s.field))),
                }
            }
            Expr::List(list) => {
                let mut elem: Option<Ty> = None;
                for x in &list.elements {
                    let t = self.check(x)?;
                    elem = Some(elem.map_or(t.clone(), |e| e.unify(&t)));
                }
                Ok(Ty::List(Box::new(elem.unwrap_or(Ty::Dyn))))
            }
            Expr::Map(map) => {
                let (mut key, mut value): (Option<Ty>, Option<Ty>) = (None, None);
                for entry in &map.entries {
                    let cel::common::ast::EntryExpr::MapEntry(m) = &entry.expr else {
                        return Err(self.pos.error(entry.id, "message fields are not supported in rules".into()));
                    };
                    let k = self.check(&m.key)?;
                    if !matches!(k, Ty::Int | Ty::Uint | Ty::String | Ty::Bool | Ty::Dyn) {
                        return Err(self.pos.error(m.key.id, format!("a map key must be an int, uint, string or bool, found {k}")));
                    }
                    let v = self.check(&m.value)?;
                    key = Some(key.map_or(k.clone(), |x| x.unify(&k)));
                    value = Some(value.map_or(v.clone(), |x| x.unify(&v)));
                }
                Ok(Ty::Map(Box::new(key.unwrap_or(Ty::Dyn)), Box::new(value.unwrap_or(Ty::Dyn))))
            }
            Expr::Struct(_) => Err(self.pos.error(e.id, "message types are not supported in rules".into())),
            Expr::Comprehension(c) => {
                let range = self.check(&c.iter_range)?;
                let (first, second) = match range {
                    Ty::List(elem) => (if c.iter_var2.is_some() { Ty::Int } else { (*elem).clone() }, *elem),
                    Ty::Map(k, v) => (*k, *v),
                    Ty::Dyn => (Ty::Dyn, Ty::Dyn),
                    other => return Err(self.pos.error(c.iter_range.id, format!("cannot iterate over a value of type {other}"))),
                };
                let init = self.check(&c.accu_init)?;
                let accu = match init {
                    Ty::List(e) if *e == Ty::Dyn => Ty::Dyn,
                    Ty::Map(..) => Ty::Dyn,
                    other => other,
                };
                self.scopes.push((c.accu_var.clone(), accu));
                self.scopes.push((c.iter_var.clone(), first));
                if let Some(v2) = &c.iter_var2 {
                    self.scopes.push((v2.clone(), second));
                }
                let cond = self.check(&c.loop_cond);
                let step = self.check(&c.loop_step);
                self.scopes.truncate(self.scopes.len() - 1 - usize::from(c.iter_var2.is_some()));
                let result = self.check(&c.result);
                self.scopes.pop();
                let cond = cond?;
                step?;
                if !matches!(cond, Ty::Bool | Ty::Dyn) {
                    return Err(self.pos.error(c.loop_cond.id, format!("the macro's condition must be a bool, found {cond}")));
                }
                result
            }
            Expr::Call(call) => {
                let mut args = Vec::with_capacity(call.args.len() + 1);
                if let Some(target) = &call.target {
                    args.push(self.check(target)?);
                }
                let member = call.target.is_some();
                let column = if call.func_name.starts_with(|c: char| c.is_ascii_alphabetic()) && !member {
                    self.pos.call_column(e.id, &call.func_name)
                } else {
                    self.pos.column(e.id)
                };
                if !types::known(&call.func_name, member) {
                    // Named before its arguments are checked: `[1].all(x)` is not the macro.
                    let message = types::call(&call.func_name, member, &args).err().unwrap_or_default();
                    return Err(ParseError { column, message });
                }
                for a in &call.args {
                    args.push(self.check(a)?);
                }
                let ty = types::call(&call.func_name, member, &args).map_err(|message| match (member, call.args.as_slice(), args.as_slice()) {
                    (false, [a, b], [ta, tb]) if call.func_name.starts_with('_') || call.func_name == "@in" => ParseError {
                        column: self.pos.column(b.id),
                        message: format!("{} does not apply to {} and {}", types::display_name(&call.func_name), describe(a, ta), describe(b, tb)),
                    },
                    _ => ParseError { column, message },
                })?;
                self.literal_arguments(&call.func_name, call.target.as_deref(), &call.args)?;
                Ok(ty)
            }
            Expr::Unspecified => Err(self.pos.error(e.id, "an incomplete expression".into())),
        }
    }

    fn ident(&self, id: u64, name: &str) -> Result<Ty, ParseError> {
        if let Some(t) = self.scoped(name) {
            return Ok(t.clone());
        }
        if let Some(t) = (self.lookup)(name) {
            return Ok(t);
        }
        if TYPE_NAMES.contains(&name) {
            return Ok(Ty::Type);
        }
        if NAMESPACES.contains(&name) {
            let fields: Vec<&str> = VARIABLES.iter().map(|(n, _)| *n).filter(|n| n.starts_with(&format!("{name}."))).collect();
            return Err(self.pos.error(id, format!("'{name}' is not a variable: use {}", fields.join(" or "))));
        }
        Err(self.pos.error(id, unknown_variable(name)))
    }

    /// Literal arguments that make a call fail or never match on every event.
    fn literal_arguments(&self, func: &str, target: Option<&IdedExpr>, args: &[IdedExpr]) -> Result<(), ParseError> {
        let string = |e: &IdedExpr| match &e.expr {
            Expr::Literal(LiteralValue::String(s)) => Some(s.inner().to_string()),
            _ => None,
        };
        let int = |e: &IdedExpr| match &e.expr {
            Expr::Literal(LiteralValue::Int(i)) => Some(*i.inner()),
            _ => None,
        };
        match (func, target, args) {
            ("is_network", None, [_, class]) => match string(class) {
                Some(c) if network_bit(&c.to_ascii_uppercase()).is_none() => {
                    Err(self.pos.error(class.id, format!("unknown network class \"{c}\": expected LOCAL, PRIVATE, PUBLIC or MULTICAST")))
                }
                _ => Ok(()),
            },
            ("in_cidr", None, [_, cidr]) => match string(cidr) {
                Some(c) if Cidr::parse(&c).is_none() => Err(self.pos.error(cidr.id, format!("expected a CIDR such as \"10.0.0.0/8\", found \"{c}\""))),
                _ => Ok(()),
            },
            ("in_range", None, [_, lo, hi]) => match (int(lo), int(hi)) {
                (Some(l), Some(h)) if l > h => Err(self.pos.error(lo.id, format!("in_range({l}, {h}) is empty: the low bound is above the high bound"))),
                _ => Ok(()),
            },
            ("matches", Some(_), [re]) | ("matches", None, [_, re]) => match string(re) {
                Some(r) => regex::Regex::new(&r).map(drop).map_err(|e| self.pos.error(re.id, format!("bad regular expression: {}", one_line(&e.to_string())))),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

/// An operand as an error names it: the variable or literal, and its type.
pub(crate) fn describe(e: &IdedExpr, ty: &Ty) -> String {
    match (&e.expr, qualified_name(&e.expr)) {
        (Expr::Literal(LiteralValue::String(s)), _) => format!("the string {:?}", s.inner()),
        (Expr::Literal(LiteralValue::Int(i)), _) => format!("the int {}", i.inner()),
        (_, Some(name)) => format!("'{name}' ({})", with_article(ty)),
        _ => format!("a value of type {ty}"),
    }
}

/// "an int", "a string".
pub(crate) fn with_article(ty: &Ty) -> String {
    let name = ty.to_string();
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    format!("{article} {name}")
}

fn one_line(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

fn literal_type(lit: &LiteralValue) -> Ty {
    match lit {
        LiteralValue::Boolean(_) => Ty::Bool,
        LiteralValue::Bytes(_) => Ty::Bytes,
        LiteralValue::Double(_) => Ty::Double,
        LiteralValue::Int(_) => Ty::Int,
        LiteralValue::Null => Ty::Null,
        LiteralValue::String(_) => Ty::String,
        LiteralValue::UInt(_) => Ty::Uint,
    }
}
