//! The CEL subset of the original's 1.4 rules, compiled into the same typed
//! tree as the keyword language. Variables: `event.type`, `protocol`
//! (strings), `source.address`, `destination.address` (strings),
//! `source.port`, `destination.port` (ints), `process.comm`, `process.user`,
//! `process.exe` (strings; never equal when the process is not known); functions `is_network(ip, class)`,
//! `in_cidr(ip, cidr)`, `in_range(v, lo, hi)`; operators `== != < <= > >=
//! && || !` and parentheses; `true`, `false`, string and int literals.
//!
//! A general CEL interpreter would need a per-event activation (allocations,
//! string compares) and hide the structure the kernel pre-filter is derived
//! from; this subset compiles every comparison into a typed predicate.
//!
//! Each `!`, `(` and function call opens a nesting level, at most
//! [`MAX_NESTING`](super::MAX_NESTING).
use super::{
    ast::{Bits, Cidr, Expr, PortSet, ProcessField, Side},
    keyword::{network_bit, protocol_bit, type_bit},
    lexer::{Tok, Token},
    Nesting, ParseError,
};

/// Parses a whole CEL expression.
pub(crate) fn parse(tokens: &[Token<'_>], end_column: usize) -> Result<Expr, ParseError> {
    let mut p = Parser { toks: tokens, pos: 0, end_column, nesting: Nesting::default() };
    let expr = p.or()?;
    if p.pos < tokens.len() {
        return Err(p.expected("'&&', '||' or the end of the rule"));
    }
    p.boolean(expr)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Type,
    Protocol,
    Address(Side),
    Port(Side),
    Process(ProcessField),
}

impl Var {
    fn lookup(name: &str) -> Option<Var> {
        match name {
            "event.type" => Some(Var::Type),
            "protocol" => Some(Var::Protocol),
            "source.address" => Some(Var::Address(Side::Source)),
            "destination.address" => Some(Var::Address(Side::Destination)),
            "source.port" => Some(Var::Port(Side::Source)),
            "destination.port" => Some(Var::Port(Side::Destination)),
            "process.comm" => Some(Var::Process(ProcessField::Comm)),
            "process.user" => Some(Var::Process(ProcessField::User)),
            "process.exe" => Some(Var::Process(ProcessField::Exe)),
            _ => None,
        }
    }
}

/// A parsed operand before it is known to be a boolean.
#[derive(Debug)]
enum Value<'a> {
    Bool(Expr, usize),
    Var(Var, &'a str, usize),
    Str(&'a str, usize),
    Int(i64, usize),
}

impl Value<'_> {
    fn column(&self) -> usize {
        match self {
            Value::Bool(_, c) | Value::Var(_, _, c) | Value::Str(_, c) | Value::Int(_, c) => *c,
        }
    }

    fn describe(&self) -> String {
        match self {
            Value::Bool(..) => "a condition".into(),
            Value::Var(_, name, _) => format!("'{name}'"),
            Value::Str(s, _) => format!("the string \"{s}\""),
            Value::Int(i, _) => format!("the number {i}"),
        }
    }
}

struct Parser<'t, 'a> {
    toks: &'t [Token<'a>],
    pos: usize,
    end_column: usize,
    nesting: Nesting,
}

impl<'a> Parser<'_, 'a> {
    fn peek(&self) -> Option<&Tok<'a>> {
        self.toks.get(self.pos).map(|t| &t.kind)
    }

    fn column(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end_column, |t| t.column)
    }

    fn expected(&self, what: &str) -> ParseError {
        let found = self.peek().map_or_else(|| "end of rule".to_string(), Tok::describe);
        ParseError { column: self.column(), message: format!("expected {what}, found {found}") }
    }

    fn eat(&mut self, tok: &Tok<'_>) -> bool {
        let hit = self.peek() == Some(tok);
        self.pos += usize::from(hit);
        hit
    }

    fn boolean(&self, v: Value<'_>) -> Result<Expr, ParseError> {
        match v {
            Value::Bool(e, _) => Ok(e),
            other => Err(ParseError { column: other.column(), message: format!("expected a condition, found {}", other.describe()) }),
        }
    }

    /// Comparisons joined by `&&` and `||` (`&&` binds tighter), in one frame:
    /// a long chain is a loop, not recursion. A lone operand may be any value.
    fn or(&mut self) -> Result<Value<'a>, ParseError> {
        let first = self.comparison()?;
        let col = first.column();
        let (mut any, mut all, mut pending) = (Vec::new(), Vec::new(), first);
        while let Some(Tok::Op(op @ ("&&" | "||"))) = self.peek().cloned() {
            self.pos += 1;
            let rhs = self.comparison()?;
            all.push(self.boolean(pending)?);
            if op == "||" {
                any.push(Expr::all(std::mem::take(&mut all)));
            }
            pending = rhs;
        }
        if any.is_empty() && all.is_empty() {
            return Ok(pending);
        }
        all.push(self.boolean(pending)?);
        any.push(Expr::all(all));
        Ok(Value::Bool(Expr::any(any), col))
    }

    fn comparison(&mut self) -> Result<Value<'a>, ParseError> {
        let lhs = self.unary()?;
        let Some(Tok::Op(op)) = self.peek().cloned() else { return Ok(lhs) };
        if op == "&&" || op == "||" {
            return Ok(lhs);
        }
        let op_col = self.column();
        self.pos += 1;
        let rhs = self.unary()?;
        let col = lhs.column();
        compare(lhs, op, rhs, op_col).map(|e| Value::Bool(e, col))
    }

    /// `!`s (counted in a loop, not recursion), then a primary.
    fn unary(&mut self) -> Result<Value<'a>, ParseError> {
        let col = self.column();
        let mut negations = 0;
        while self.peek() == Some(&Tok::Bang) {
            self.nesting.enter(self.column())?;
            self.pos += 1;
            negations += 1;
        }
        let value = self.primary()?;
        if negations == 0 {
            return Ok(value);
        }
        let mut expr = self.boolean(value)?;
        for _ in 0..negations {
            self.nesting.leave();
            expr = Expr::not(expr);
        }
        Ok(Value::Bool(expr, col))
    }

    fn primary(&mut self) -> Result<Value<'a>, ParseError> {
        let col = self.column();
        let Some(tok) = self.peek().cloned() else { return Err(self.expected("a condition")) };
        self.pos += 1;
        match tok {
            Tok::LParen => {
                self.nesting.enter(col)?;
                let inner = self.or()?;
                if !self.eat(&Tok::RParen) {
                    return Err(self.unclosed(col));
                }
                self.nesting.leave();
                Ok(inner)
            }
            Tok::Str(s) => Ok(Value::Str(s, col)),
            Tok::Word("true") => Ok(Value::Bool(Expr::Const(true), col)),
            Tok::Word("false") => Ok(Value::Bool(Expr::Const(false), col)),
            Tok::Word(w) if self.peek() == Some(&Tok::LParen) => self.call(w, col),
            Tok::Word(w) => word(w, col),
            _ => {
                self.pos -= 1;
                Err(self.expected("a condition, a variable or a literal"))
            }
        }
    }

    #[cold]
    fn unclosed(&self, open: usize) -> ParseError {
        self.expected(&format!("')' to close the '(' at column {open}"))
    }

    fn call(&mut self, name: &'a str, col: usize) -> Result<Value<'a>, ParseError> {
        let open = self.column();
        self.pos += 1; // '('
        self.nesting.enter(open)?;
        let mut args = Vec::new();
        if !self.eat(&Tok::RParen) {
            loop {
                args.push(self.or()?);
                if self.eat(&Tok::RParen) {
                    break;
                }
                if !self.eat(&Tok::Comma) {
                    return Err(self.expected(&format!("',' or ')' in the arguments of {name}")));
                }
            }
        }
        self.nesting.leave();
        function(name, args, col).map(|e| Value::Bool(e, col))
    }
}

fn word(w: &str, col: usize) -> Result<Value<'_>, ParseError> {
    if let Some(var) = Var::lookup(w) {
        return Ok(Value::Var(var, w, col));
    }
    if let Ok(i) = w.parse::<i64>() {
        return Ok(Value::Int(i, col));
    }
    Err(ParseError {
        column: col,
        message: format!(
            "unknown variable '{w}': expected event.type, protocol, source.address, destination.address, \
             source.port, destination.port, process.comm, process.user or process.exe"
        ),
    })
}

fn error<T>(column: usize, message: String) -> Result<T, ParseError> {
    Err(ParseError { column, message })
}

/// Compiles `lhs op rhs`; a variable must be compared with a literal of its type.
fn compare(lhs: Value<'_>, op: &str, rhs: Value<'_>, op_col: usize) -> Result<Expr, ParseError> {
    let (var, name, lit, op) = match (lhs, rhs) {
        (Value::Var(v, n, _), lit @ (Value::Str(..) | Value::Int(..))) => (v, n, lit, op),
        (lit @ (Value::Str(..) | Value::Int(..)), Value::Var(v, n, _)) => (v, n, lit, flip(op)),
        (Value::Int(a, _), Value::Int(b, _)) => return Ok(Expr::Const(int_cmp(a, op, b))),
        (Value::Str(a, _), Value::Str(b, _)) if op == "==" || op == "!=" => return Ok(Expr::Const((a == b) == (op == "=="))),
        (l, r) => return error(op_col, format!("cannot compare {} with {} using '{op}'", l.describe(), r.describe())),
    };
    let (text, int, col) = match lit {
        Value::Str(s, c) => (Some(s), None, c),
        Value::Int(i, c) => (None, Some(i), c),
        _ => unreachable!("literal"),
    };
    let positive = match (var, text, int) {
        (Var::Type | Var::Protocol | Var::Address(_) | Var::Process(_), Some(s), _) if op == "==" || op == "!=" => string_pred(var, s, col)?,
        (Var::Port(side), _, Some(i)) => return Ok(Expr::Port(side, port_range(op, i))),
        (Var::Port(_), _, None) => return error(col, format!("'{name}' is a number: compare it with a number, not a string")),
        (_, None, _) => return error(col, format!("'{name}' is a string: compare it with a quoted string, not a number")),
        _ => return error(op_col, format!("'{name}' is a string: only '==' and '!=' apply")),
    };
    Ok(if op == "==" { positive } else { Expr::not(positive) })
}

fn string_pred(var: Var, s: &str, col: usize) -> Result<Expr, ParseError> {
    match var {
        Var::Type => type_bit(s)
            .map(|b| Expr::Type(Bits::default().with(b)))
            .ok_or_else(|| ParseError { column: col, message: format!("expected \"NEW\", \"UPDATE\" or \"DESTROY\", found \"{s}\"") }),
        Var::Protocol => protocol_bit(s)
            .map(|b| Expr::Protocol(Bits::default().with(b)))
            .ok_or_else(|| ParseError { column: col, message: format!("expected \"TCP\" or \"UDP\", found \"{s}\"") }),
        Var::Address(side) => match s.parse::<std::net::IpAddr>().ok().and_then(|_| Cidr::parse(s)) {
            Some(cidr) => Ok(Expr::Address(side, vec![cidr], None)),
            None => error(col, format!("expected an IP address, found \"{s}\" (use in_cidr() for networks)")),
        },
        Var::Process(field) => Ok(Expr::Process(field, vec![s.to_string()])),
        Var::Port(_) => unreachable!("ports are numbers"),
    }
}

fn flip(op: &str) -> &str {
    match op {
        "<" => ">",
        "<=" => ">=",
        ">" => "<",
        ">=" => "<=",
        other => other,
    }
}

fn int_cmp(a: i64, op: &str, b: i64) -> bool {
    match op {
        "==" => a == b,
        "!=" => a != b,
        "<" => a < b,
        "<=" => a <= b,
        ">" => a > b,
        _ => a >= b,
    }
}

/// The ports `p` with `p op value`, as ranges (possibly none).
fn port_range(op: &str, value: i64) -> PortSet {
    let clamp = |v: i64| v.clamp(0, 65535) as u16;
    let range = |lo: i64, hi: i64| if lo > hi || hi < 0 || lo > 65535 { vec![] } else { vec![(clamp(lo), clamp(hi))] };
    PortSet(match op {
        "==" => range(value, value),
        "!=" => [range(0, value - 1), range(value + 1, 65535)].concat(),
        "<" => range(0, value - 1),
        "<=" => range(0, value),
        ">" => range(value + 1, 65535),
        _ => range(value, 65535),
    })
}

fn function(name: &str, args: Vec<Value<'_>>, col: usize) -> Result<Expr, ParseError> {
    let arity = match name {
        "is_network" | "in_cidr" => 2,
        "in_range" => 3,
        _ => return error(col, format!("unknown function '{name}': expected is_network, in_cidr or in_range")),
    };
    if args.len() != arity {
        return error(col, format!("{name}() takes {arity} arguments, found {}", args.len()));
    }
    let mut args = args.into_iter();
    let first = args.next().expect("arity checked");
    match (name, first) {
        ("is_network", Value::Var(Var::Address(side), ..)) => {
            let (class, c) = string_arg(args.next(), name)?;
            match network_bit(&class.to_ascii_uppercase()) {
                Some(bit) => Ok(Expr::Network(side, Bits::default().with(bit))),
                None => error(c, format!("unknown network class \"{class}\": expected LOCAL, PRIVATE, PUBLIC or MULTICAST")),
            }
        }
        ("in_cidr", Value::Var(Var::Address(side), ..)) => {
            let (cidr, c) = string_arg(args.next(), name)?;
            match Cidr::parse(cidr) {
                Some(cidr) => Ok(Expr::Address(side, vec![cidr], None)),
                None => error(c, format!("expected a CIDR such as \"10.0.0.0/8\", found \"{cidr}\"")),
            }
        }
        ("in_range", Value::Var(Var::Port(side), ..)) => {
            let (lo, c) = int_arg(args.next(), name)?;
            let (hi, _) = int_arg(args.next(), name)?;
            if lo > hi {
                return error(c, format!("in_range({lo}, {hi}) is empty: the low bound is above the high bound"));
            }
            Ok(Expr::Port(side, port_range(">=", lo)).intersect_port(hi))
        }
        (_, other) => {
            let want = if name == "in_range" { "source.port or destination.port" } else { "source.address or destination.address" };
            error(other.column(), format!("the first argument of {name}() must be {want}, found {}", other.describe()))
        }
    }
}

fn string_arg<'a>(v: Option<Value<'a>>, name: &str) -> Result<(&'a str, usize), ParseError> {
    match v {
        Some(Value::Str(s, c)) => Ok((s, c)),
        Some(other) => error(other.column(), format!("{name}() expects a quoted string here, found {}", other.describe())),
        None => unreachable!("arity checked"),
    }
}

fn int_arg(v: Option<Value<'_>>, name: &str) -> Result<(i64, usize), ParseError> {
    match v {
        Some(Value::Int(i, c)) => Ok((i, c)),
        Some(other) => error(other.column(), format!("{name}() expects a number here, found {}", other.describe())),
        None => unreachable!("arity checked"),
    }
}

impl Expr {
    /// `Port(side, p >= lo)` narrowed to `p <= hi`.
    fn intersect_port(self, hi: i64) -> Expr {
        match self {
            Expr::Port(side, PortSet(ranges)) => {
                let ranges = ranges.into_iter().filter(|&(lo, _)| i64::from(lo) <= hi).map(|(lo, h)| (lo, i64::from(h).min(hi) as u16)).collect();
                Expr::Port(side, PortSet(ranges))
            }
            other => other,
        }
    }
}
