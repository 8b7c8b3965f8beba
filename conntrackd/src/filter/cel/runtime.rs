//! The general path: the `cel` crate's interpreter with the standard library,
//! our functions `is_network`, `in_cidr`, `in_range`, and the event's
//! variables, read only when the expression asks for them (no per-event map
//! is built). Used for the subtrees the fast tree cannot express, for
//! constant subexpressions at load time, and by the conformance test.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::{
    net::IpAddr,
    sync::{Arc, LazyLock},
};

use cel::{
    common::{
        types::{CelBool, CelInt, CelString},
        value::CowVal,
    },
    context::VariableResolver,
    Context, Env, ExecutionError, IdedExpr, Value,
};

use super::vars::Var;
use crate::{
    event::{network::NetworkClass, Event},
    filter::{
        ast::Cidr,
        keyword::network_bit,
        text::{address, canonical, TextField},
    },
};

/// The environment every rule runs in: the standard library (no optional
/// syntax, no time types) and our three functions.
pub(crate) static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib().with_optional_support(false);
    let ours = [
        // The macro would name them in camel case (isNetwork): the names are given.
        cel::add_overload!(env, fn is_network: (CelString, CelString) -> Result<CelBool>, name = "is_network"),
        cel::add_overload!(env, fn in_cidr: (CelString, CelString) -> Result<CelBool>, name = "in_cidr"),
        cel::add_overload!(env, fn in_range: (CelInt, CelInt, CelInt) -> CelBool, name = "in_range"),
    ];
    for result in ours {
        if let Err(err) = result {
            tracing::error!(error = %err, "CEL: declaring a rule function failed; rules calling it fail when they run");
        }
    }
    Arc::new(env)
});

fn ip_arg(function: &str, text: &str) -> Result<IpAddr, ExecutionError> {
    text.parse().map_err(|_| ExecutionError::function_error(function, format!("\"{text}\" is not an IP address")))
}

fn is_network(ip: &CelString, class: &CelString) -> Result<CelBool, ExecutionError> {
    let ip = ip_arg("is_network", ip.inner())?;
    let bit = network_bit(&class.inner().to_ascii_uppercase())
        .ok_or_else(|| ExecutionError::function_error("is_network", format!("unknown network class \"{}\"", class.inner())))?;
    Ok(CelBool::from(crate::filter::ast::class_bit(NetworkClass::of(ip)) == bit))
}

fn in_cidr(ip: &CelString, cidr: &CelString) -> Result<CelBool, ExecutionError> {
    let ip = ip_arg("in_cidr", ip.inner())?;
    let net = Cidr::parse(cidr.inner()).ok_or_else(|| ExecutionError::function_error("in_cidr", format!("\"{}\" is not a CIDR", cidr.inner())))?;
    Ok(CelBool::from(net.contains(crate::filter::ast::addr_bits(ip))))
}

fn in_range(v: &CelInt, lo: &CelInt, hi: &CelInt) -> CelBool {
    CelBool::from(lo.inner() <= v.inner() && v.inner() <= hi.inner())
}

/// The event's variables, as the interpreter asks for them.
struct EventVars<'e>(&'e Event);

impl VariableResolver for EventVars<'_> {
    fn resolve<'b>(&'b self, name: &str) -> Option<CowVal<'b, 'b>> {
        let ev = self.0;
        let var = Var::lookup(name)?;
        Some(match var.text() {
            None => CowVal::owned(CelInt::from(var.int(ev).unwrap_or_default())),
            Some(TextField::Address(side)) => CowVal::owned(CelString::from(canonical(address(ev, side)))),
            Some(field) => CowVal::owned(CelString::from(field.borrowed(ev).unwrap_or_default())),
        })
    }
}

/// Why an expression failed on an event (the rule does not match it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EvalError(pub String);

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A subtree the fast tree cannot express, run by the interpreter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Opaque {
    pub expr: IdedExpr,
}

// A parsed tree equals itself: CEL has no NaN literal (`double("NaN")` is a call).
impl Eq for Opaque {}

impl Opaque {
    /// Evaluates to a bool on `ev`; anything else (or a failure) is an error.
    pub fn eval(&self, ev: &Event) -> Result<bool, EvalError> {
        let vars = EventVars(ev);
        let mut ctx = Context::with_env(Arc::clone(&ENV));
        ctx.set_variable_resolver(&vars);
        let value = Value::resolve_val(&self.expr, &ctx).map_err(|e| EvalError(e.to_string()))?;
        match value.downcast_ref::<CelBool>() {
            Some(b) => Ok(*b.inner()),
            None => Err(EvalError(format!("the expression gave a {}, not a bool", value.get_type().name()))),
        }
    }
}

/// Evaluates `expr` with the event's variables (if any) and extra bindings:
/// the same interpreter and environment the rules use.
pub(crate) fn evaluate(expr: &IdedExpr, ev: Option<&Event>, bindings: &[(String, Value)]) -> Result<Value, ExecutionError> {
    evaluate_typed(expr, ev, bindings).map(|(value, _)| value)
}

/// [`evaluate`], with the CEL type name of the result (a type value is a `Value::String` of its name).
pub(crate) fn evaluate_typed(expr: &IdedExpr, ev: Option<&Event>, bindings: &[(String, Value)]) -> Result<(Value, String), ExecutionError> {
    let vars = ev.map(EventVars);
    let mut ctx = Context::with_env(Arc::clone(&ENV));
    if let Some(vars) = &vars {
        ctx.set_variable_resolver(vars);
    }
    for (name, value) in bindings {
        ctx.add_variable_from_value(name.clone(), value.clone());
    }
    let val = Value::resolve_val(expr, &ctx)?;
    let type_name = val.get_type().name().to_string();
    Ok((Value::try_from(val.as_ref())?, type_name))
}
