//! The static types of the load-time check and the signatures of the
//! standard operators and functions (and ours) over them. `Dyn` is a value
//! whose type is only known when the rule runs: it matches every parameter.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ty {
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Null,
    List(Box<Ty>),
    Map(Box<Ty>, Box<Ty>),
    Type,
    Dyn,
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Bool => f.write_str("bool"),
            Ty::Int => f.write_str("int"),
            Ty::Uint => f.write_str("uint"),
            Ty::Double => f.write_str("double"),
            Ty::String => f.write_str("string"),
            Ty::Bytes => f.write_str("bytes"),
            Ty::Null => f.write_str("null"),
            Ty::List(e) => write!(f, "list({e})"),
            Ty::Map(k, v) => write!(f, "map({k}, {v})"),
            Ty::Type => f.write_str("type"),
            Ty::Dyn => f.write_str("dyn"),
        }
    }
}

impl Ty {
    pub fn is_numeric(&self) -> bool {
        matches!(self, Ty::Int | Ty::Uint | Ty::Double)
    }

    fn is(&self, want: &Ty) -> bool {
        *self == Ty::Dyn || self == want
    }

    /// The common type of two values (list elements, branches): `Dyn` if they differ.
    pub fn unify(&self, other: &Ty) -> Ty {
        match (self, other) {
            (a, b) if a == b => a.clone(),
            (Ty::List(a), Ty::List(b)) => Ty::List(Box::new(a.unify(b))),
            (Ty::Map(k1, v1), Ty::Map(k2, v2)) => Ty::Map(Box::new(k1.unify(k2)), Box::new(v1.unify(v2))),
            _ => Ty::Dyn,
        }
    }

    /// Whether `==` between the two can be true: same types, numbers of any
    /// kind (CEL compares them by value), `null` or `Dyn` with anything.
    pub fn comparable(&self, other: &Ty) -> bool {
        match (self, other) {
            (Ty::Dyn | Ty::Null, _) | (_, Ty::Dyn | Ty::Null) => true,
            (a, b) if a.is_numeric() && b.is_numeric() => true,
            (Ty::List(a), Ty::List(b)) => a.comparable(b),
            (Ty::Map(k1, v1), Ty::Map(k2, v2)) => k1.comparable(k2) && v1.comparable(v2),
            (a, b) => a == b,
        }
    }

    fn ordered(&self, other: &Ty) -> bool {
        match (self, other) {
            (Ty::Dyn, b) | (b, Ty::Dyn) => matches!(b, Ty::Dyn | Ty::Int | Ty::Uint | Ty::Double | Ty::String | Ty::Bytes | Ty::Bool),
            (a, b) if a.is_numeric() && b.is_numeric() => true,
            (a, b) => a == b && matches!(a, Ty::String | Ty::Bytes | Ty::Bool),
        }
    }
}

/// How an operator or function reads in an error.
pub(crate) fn display_name(func: &str) -> String {
    match func {
        "_+_" => "'+'".into(),
        "_-_" | "-_" => "'-'".into(),
        "_*_" => "'*'".into(),
        "_/_" => "'/'".into(),
        "_%_" => "'%'".into(),
        "_==_" => "'=='".into(),
        "_!=_" => "'!='".into(),
        "_<_" => "'<'".into(),
        "_<=_" => "'<='".into(),
        "_>_" => "'>'".into(),
        "_>=_" => "'>='".into(),
        "@in" => "'in'".into(),
        "!_" => "'!'".into(),
        "_&&_" => "'&&'".into(),
        "_||_" => "'||'".into(),
        "_[_]" => "'[]'".into(),
        "_?_:_" => "'?:'".into(),
        other => format!("{other}()"),
    }
}

/// The functions a rule can call, for the error naming an unknown one.
pub(crate) const FUNCTIONS: &str = "size, contains, startsWith, endsWith, matches, int, uint, double, string, bytes, bool, dyn, type, \
                                    is_network, in_cidr, in_range, and the macros has, all, exists, exists_one, map, filter";

/// Whether a function or method of this name exists (whatever its arguments).
pub(crate) fn known(func: &str, member: bool) -> bool {
    const GLOBAL: [&str; 16] = [
        "size",
        "matches",
        "int",
        "uint",
        "double",
        "string",
        "bytes",
        "bool",
        "dyn",
        "type",
        "is_network",
        "in_cidr",
        "in_range",
        "@in",
        "@not_strictly_false",
        "-_",
    ];
    const METHODS: [&str; 5] = ["size", "contains", "startsWith", "endsWith", "matches"];
    if member {
        METHODS.contains(&func)
    } else {
        GLOBAL.contains(&func) || (func.starts_with('_') && func.ends_with('_')) || func == "!_" || func == "_[_]"
    }
}

/// The result type of `func` applied to `args` (a member call's target first),
/// or what is wrong. `member` tells `x.f(y)` from `f(x, y)`.
pub(crate) fn call(func: &str, member: bool, args: &[Ty]) -> Result<Ty, String> {
    let mismatch = || {
        let types: Vec<String> = args.iter().map(ToString::to_string).collect();
        match types.split_first() {
            Some((target, rest)) if member => format!("no {} method on {} taking ({})", func, target, rest.join(", ")),
            _ => format!("{} does not apply to ({})", display_name(func), types.join(", ")),
        }
    };
    let one = || -> Result<&Ty, String> { arity::<1>(func, member, args).map(|[a]| a) };
    let two = || arity::<2>(func, member, args);
    let unary = |ok: &dyn Fn(&Ty) -> Option<Ty>| -> Result<Ty, String> { ok(one()?).ok_or_else(mismatch) };
    match (func, member) {
        ("_+_" | "_-_" | "_*_" | "_/_" | "_%_", false) => {
            let [a, b] = two()?;
            arithmetic(func, a, b).ok_or_else(mismatch)
        }
        ("-_", false) => unary(&|t| matches!(t, Ty::Int | Ty::Double | Ty::Dyn).then(|| t.clone())),
        ("!_" | "@not_strictly_false", false) => unary(&|t| t.is(&Ty::Bool).then_some(Ty::Bool)),
        ("_&&_" | "_||_", false) => {
            let [a, b] = two()?;
            (a.is(&Ty::Bool) && b.is(&Ty::Bool)).then_some(Ty::Bool).ok_or_else(mismatch)
        }
        ("_==_" | "_!=_", false) => {
            let [a, b] = two()?;
            a.comparable(b).then_some(Ty::Bool).ok_or_else(mismatch)
        }
        ("_<_" | "_<=_" | "_>_" | "_>=_", false) => {
            let [a, b] = two()?;
            a.ordered(b).then_some(Ty::Bool).ok_or_else(mismatch)
        }
        ("@in", false) => {
            let [a, b] = two()?;
            let ok = match b {
                Ty::Dyn => true,
                Ty::List(e) => a.comparable(e),
                Ty::Map(k, _) => a.comparable(k),
                _ => false,
            };
            ok.then_some(Ty::Bool).ok_or_else(mismatch)
        }
        ("_[_]", false) => {
            let [a, b] = two()?;
            match (a, b) {
                (Ty::Dyn, _) => Some(Ty::Dyn),
                (Ty::List(e), i) if i.is_numeric() || *i == Ty::Dyn => Some((**e).clone()),
                (Ty::Map(k, v), key) if k.comparable(key) => Some((**v).clone()),
                _ => None,
            }
            .ok_or_else(mismatch)
        }
        ("_?_:_", false) => {
            let [c, a, b] = arity::<3>(func, member, args)?;
            c.is(&Ty::Bool).then(|| a.unify(b)).ok_or_else(mismatch)
        }
        ("size", _) => unary(&|t| matches!(t, Ty::String | Ty::Bytes | Ty::List(_) | Ty::Map(..) | Ty::Dyn).then_some(Ty::Int)),
        ("contains" | "startsWith" | "endsWith", true) | ("matches", _) => {
            let [a, b] = two()?;
            (a.is(&Ty::String) && b.is(&Ty::String)).then_some(Ty::Bool).ok_or_else(mismatch)
        }
        ("int" | "uint" | "double", false) => {
            let to = match func {
                "int" => Ty::Int,
                "uint" => Ty::Uint,
                _ => Ty::Double,
            };
            unary(&|t| matches!(t, Ty::Int | Ty::Uint | Ty::Double | Ty::String | Ty::Dyn).then(|| to.clone()))
        }
        ("string", false) => unary(&|t| matches!(t, Ty::Int | Ty::Uint | Ty::Double | Ty::Bool | Ty::String | Ty::Bytes | Ty::Dyn).then_some(Ty::String)),
        ("bytes", false) => unary(&|t| matches!(t, Ty::String | Ty::Bytes | Ty::Dyn).then_some(Ty::Bytes)),
        ("bool", false) => unary(&|t| matches!(t, Ty::Bool | Ty::String | Ty::Dyn).then_some(Ty::Bool)),
        ("dyn", false) => unary(&|_| Some(Ty::Dyn)),
        ("type", false) => unary(&|_| Some(Ty::Type)),
        ("is_network" | "in_cidr", false) => {
            let [a, b] = two()?;
            (a.is(&Ty::String) && b.is(&Ty::String)).then_some(Ty::Bool).ok_or_else(mismatch)
        }
        ("in_range", false) => {
            let all = arity::<3>(func, member, args)?;
            all.iter().all(|a| a.is(&Ty::Int)).then_some(Ty::Bool).ok_or_else(mismatch)
        }
        (_, true) => Err(format!("unknown method '{func}' on {}: expected one of {FUNCTIONS}", args.first().map_or(Ty::Dyn, Clone::clone))),
        (_, false) => Err(format!("unknown function '{func}': expected one of {FUNCTIONS}")),
    }
}

/// The `N` arguments of a call (a member call's target first), or the arity
/// error: a member call's counts leave the target out.
fn arity<'t, const N: usize>(func: &str, member: bool, args: &'t [Ty]) -> Result<&'t [Ty; N], String> {
    args.try_into().map_err(|_| {
        let (shown, n) = if member { (args.len().saturating_sub(1), N.saturating_sub(1)) } else { (args.len(), N) };
        format!("{} takes {n} argument{}, found {shown}", display_name(func), if n == 1 { "" } else { "s" })
    })
}

fn arithmetic(func: &str, a: &Ty, b: &Ty) -> Option<Ty> {
    let kinds: &[Ty] = match func {
        "_+_" => &[Ty::Int, Ty::Uint, Ty::Double, Ty::String, Ty::Bytes],
        "_%_" => &[Ty::Int, Ty::Uint],
        _ => &[Ty::Int, Ty::Uint, Ty::Double],
    };
    let fits = |t: &Ty| kinds.contains(t) || (func == "_+_" && matches!(t, Ty::List(_)));
    match (a, b) {
        (Ty::Dyn, Ty::Dyn) => Some(Ty::Dyn),
        (Ty::Dyn, t) | (t, Ty::Dyn) => fits(t).then(|| t.clone()),
        (Ty::List(x), Ty::List(y)) if func == "_+_" => Some(Ty::List(Box::new(x.unify(y)))),
        (x, y) => (x == y && fits(x)).then(|| x.clone()),
    }
}
